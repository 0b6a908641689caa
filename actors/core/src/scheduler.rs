//! The scheduler driver's decisions: subscription and its retries (capped
//! exponential backoff, an optional deadline for the first answer), resubscription
//! with the framework id when the master's connection breaks, turning the
//! framework's calls into messages, and implicit acknowledgements.
//!
//! ```text
//! Subscribing --Subscribed--> Connected --link exit, a new master detected--> Subscribing (with the id)
//! any --FrameworkError, Stop, no master within the deadline--> Finished
//! ```
//! The framework's callbacks are events this core emits (`Effect::Event`); what the
//! framework asks comes back as `Input::Call`. Only messages from the master it
//! subscribed to are taken, and none from a master older (by epoch) than one seen.
//!
//! With a master detector (`Input::MasterDetected`), the driver follows the leading
//! master after a small random delay and resubscribes there with its framework id.
//! Calls made while it is not subscribed wait in a bounded queue and go out once it
//! is (kills, reconciliation, acknowledgements, revive/suppress, messages); a launch
//! cannot wait (its offers die with the connection) and its tasks are told
//! TASK_LOST / TASK_DROPPED with REASON_MASTER_DISCONNECTED at once, as Mesos's
//! driver does; declines are dropped.

use std::time::Duration;

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId, UpdateId};
use keel_proto::messages::common::*;
use keel_proto::messages::scheduler::*;
use keel_proto::messages::Msg;
use keel_proto::task::{Filters, FrameworkInfo, Offer, StatusSource, TaskReason, TaskState, TaskStatus};

use crate::detector::{self, DetectedMaster};
use crate::timers::{SetTimer, TimerId, Timers};

/// Calls kept while the driver is not subscribed; older ones are dropped beyond it.
const MAX_QUEUED_CALLS: usize = 10_000;

/// How an aborted driver's reason starts when no master answered the subscription
/// within [`DriverConfig::subscribe_timeout`].
pub const NO_MASTER_ANSWERED: &str = "no master answered";

/// How a scheduler driver connects.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The master.
    pub master: Upid,
    /// The framework (set `id` to fail over to an existing framework).
    pub framework: FrameworkInfo,
    /// Acknowledge status updates after the framework has seen them.
    pub implicit_acknowledgements: bool,
    /// First subscription retry delay.
    pub subscribe_backoff: Duration,
    /// Cap of the subscription retry delay.
    pub subscribe_backoff_max: Duration,
    /// Give up when no master has answered the first subscription in this long;
    /// retry forever when `None`.
    pub subscribe_timeout: Option<Duration>,
    /// Seed of the driver's randomness (call ids, subscription rounds, follow
    /// delays); 0 lets the shell draw one per driver process.
    pub seed: u64,
}

impl DriverConfig {
    /// Defaults: implicit acknowledgements, retries from 200 ms up to 5 s.
    pub fn new(master: Upid, framework: FrameworkInfo) -> DriverConfig {
        DriverConfig {
            master,
            framework,
            implicit_acknowledgements: true,
            subscribe_backoff: Duration::from_millis(200),
            subscribe_backoff_max: Duration::from_secs(5),
            subscribe_timeout: None,
            seed: 0,
        }
    }
}

/// How a driver ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverStatus {
    /// Still running.
    Running,
    /// Stopped by the scheduler.
    Stopped,
    /// Ended by an error from the master, or no master answered.
    Aborted(String),
}

/// What a framework asks of its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// Accepts offers of one agent with operations; what is left is filtered.
    Accept {
        /// The offers.
        offer_ids: Vec<OfferId>,
        /// The operations, applied in order.
        operations: Vec<Operation>,
        /// Filters for what is left.
        filters: Filters,
    },
    /// Declines offers.
    Decline {
        /// The offers.
        offer_ids: Vec<OfferId>,
        /// How long to keep them away.
        filters: Filters,
    },
    /// Kills a task.
    Kill {
        /// The task.
        task_id: TaskId,
        /// Its agent, if known.
        agent_id: Option<AgentId>,
    },
    /// Asks for tasks' latest states (all when empty).
    Reconcile(Vec<ReconcileTask>),
    /// Clears filters and resumes offers.
    Revive,
    /// Stops offers until revived.
    Suppress,
    /// Acknowledges a status update.
    Acknowledge {
        /// The agent that sent it.
        agent_id: AgentId,
        /// The task.
        task_id: TaskId,
        /// The update.
        uuid: UpdateId,
    },
    /// Data for an executor.
    FrameworkMessage {
        /// The executor.
        executor_id: ExecutorId,
        /// Its agent.
        agent_id: AgentId,
        /// The payload.
        data: Vec<u8>,
    },
    /// Stops the driver: with `failover`, the framework stays for its failover
    /// timeout; without, it is torn down.
    Stop {
        /// Keep the framework.
        failover: bool,
    },
}

/// What the framework is told (its callbacks).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Subscribed for the first time.
    Subscribed(FrameworkId),
    /// Subscribed again (after the master's connection broke, or to a new leader).
    Resubscribed(FrameworkId),
    /// New offers.
    Offers(Vec<Offer>),
    /// An offer is no longer valid.
    Rescinded(OfferId),
    /// A task's status changed.
    Update(TaskStatus),
    /// Data from an executor.
    FrameworkMessage {
        /// The executor.
        executor_id: ExecutorId,
        /// Its agent.
        agent_id: AgentId,
        /// The payload.
        data: Vec<u8>,
    },
    /// An agent is gone.
    AgentLost(AgentId),
    /// An executor exited.
    ExecutorLost {
        /// The executor.
        executor_id: ExecutorId,
        /// Its agent.
        agent_id: AgentId,
        /// Its wait status.
        status: i32,
    },
    /// The master's connection broke; the driver resubscribes.
    Disconnected,
    /// The master refused or ended the framework (the driver finishes next).
    Error(String),
}

/// One input of the driver.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // moved once, never stored in bulk
pub enum Input {
    /// The driver starts: it subscribes.
    Start,
    /// A message from another process.
    Message {
        /// The sender.
        from: Upid,
        /// The message.
        message: Msg,
    },
    /// A linked process exited.
    Exited(Upid),
    /// A timer fired.
    Timer(TimerId),
    /// The framework's call.
    Call(Call),
    /// The master detector names the leading master (`None`: none is known).
    MasterDetected(Option<DetectedMaster>),
}

/// One effect of the driver.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // moved once, never stored in bulk
pub enum Effect {
    /// Send a message.
    Send {
        /// The receiver.
        to: Upid,
        /// The message.
        message: Msg,
    },
    /// Link to a process.
    Link(Upid),
    /// Remove a link.
    Unlink(Upid),
    /// Fire this timer back later.
    SetTimer(SetTimer),
    /// Tell the framework.
    Event(Event),
    /// The driver is done.
    Finished(DriverStatus),
}

/// How many delivered update ids and final states the driver remembers to drop
/// stale copies (the network may duplicate and reorder).
const REMEMBERED_UPDATES: usize = 100_000;

/// The scheduler driver.
#[derive(Debug)]
pub struct SchedulerDriverCore {
    config: DriverConfig,
    /// Ids of updates delivered, oldest first (bounded): a copy is acknowledged again
    /// but not delivered twice.
    delivered: std::collections::BTreeSet<UpdateId>,
    delivered_order: std::collections::VecDeque<UpdateId>,
    /// The final state delivered per task and its timestamp (bounded): an older
    /// update of the task arriving late is not delivered.
    finals: std::collections::BTreeMap<TaskId, (keel_proto::task::TaskState, f64)>,
    finals_order: std::collections::VecDeque<TaskId>,
    framework_id: Option<FrameworkId>,
    connected: bool,
    ever_connected: bool,
    status: DriverStatus,
    started: f64,
    now: f64,
    backoff: Duration,
    timers: Timers<Timer>,
    rng: fastrand::Rng,
    /// The current round of subscription attempts (only its answer is taken).
    subscription: u64,
    /// The newest master epoch seen (detected or answered).
    epoch: u64,
    /// The newest master the detector named, until the driver moves to it.
    next_master: Option<DetectedMaster>,
    /// Calls waiting for a subscription, oldest first.
    queued: std::collections::VecDeque<Call>,
}

/// What a driver timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Retry the subscription.
    Subscribe,
    /// Move to the detected master.
    FollowMaster,
}

impl SchedulerDriverCore {
    /// A driver that has not started.
    pub fn new(config: DriverConfig) -> SchedulerDriverCore {
        SchedulerDriverCore {
            framework_id: config.framework.id.clone(),
            backoff: config.subscribe_backoff,
            rng: fastrand::Rng::with_seed(config.seed),
            subscription: 0,
            epoch: 0,
            next_master: None,
            queued: Default::default(),
            config,
            connected: false,
            ever_connected: false,
            status: DriverStatus::Running,
            started: 0.0,
            now: 0.0,
            timers: Timers::default(),
            delivered: Default::default(),
            delivered_order: Default::default(),
            finals: Default::default(),
            finals_order: Default::default(),
        }
    }

    /// Whether `status` is news: not a copy of a delivered update, not older than
    /// a final state delivered for its task. Records it when it is.
    fn fresh(&mut self, status: &TaskStatus) -> bool {
        if let Some(uuid) = &status.uuid {
            if self.delivered.contains(uuid) {
                return false;
            }
        }
        if let Some((state, at)) = self.finals.get(&status.task_id) {
            // After a final state, what the master says of the task (reconciliation
            // answers, its own updates: no uuid) is old news, whenever it was said;
            // an agent's update is news only if newer (a reused task id's next life).
            if status.uuid.is_none()
                || status.timestamp < *at
                || (status.timestamp == *at && status.state != *state)
            {
                return false;
            }
        }
        if let Some(uuid) = &status.uuid {
            self.delivered.insert(uuid.clone());
            self.delivered_order.push_back(uuid.clone());
            if self.delivered_order.len() > REMEMBERED_UPDATES {
                if let Some(old) = self.delivered_order.pop_front() {
                    self.delivered.remove(&old);
                }
            }
        }
        if status.state.is_terminal() {
            if self.finals.insert(status.task_id.clone(), (status.state, status.timestamp)).is_none() {
                self.finals_order.push_back(status.task_id.clone());
            }
            if self.finals_order.len() > REMEMBERED_UPDATES {
                if let Some(old) = self.finals_order.pop_front() {
                    self.finals.remove(&old);
                }
            }
        }
        true
    }

    /// The framework's id, once subscribed.
    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }

    /// Whether the driver is subscribed and its master's connection up.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// How the driver is doing.
    pub fn status(&self) -> &DriverStatus {
        &self.status
    }

    /// The master it talks to.
    pub fn master(&self) -> &Upid {
        &self.config.master
    }

    /// The seed of its randomness.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Takes one input at `now` (seconds) and returns what to do, in order.
    pub fn handle(&mut self, now: f64, input: Input) -> Vec<Effect> {
        self.now = now;
        let mut out = Vec::new();
        if self.status != DriverStatus::Running {
            return out;
        }
        match input {
            Input::Start => {
                self.started = now;
                self.subscription = self.rng.u64(1..);
                self.subscribe(&mut out);
            }
            Input::Message { from, message } if from == self.config.master => self.message(&mut out, message),
            Input::Message { .. } => {}
            Input::Exited(upid) => {
                if upid == self.config.master && self.connected {
                    tracing::warn!(master = %upid, "lost the master; resubscribing");
                    self.resubscribe(&mut out);
                }
            }
            Input::Timer(id) => match self.timers.fire(id) {
                Some(Timer::Subscribe) if !self.connected => self.retry(&mut out),
                Some(Timer::FollowMaster) => self.follow_master(&mut out),
                _ => {}
            },
            Input::Call(call) => self.call(&mut out, call),
            Input::MasterDetected(detected) => self.master_detected(&mut out, detected),
        }
        out
    }

    /// Starts a new subscription round from scratch (the connection is gone).
    fn resubscribe(&mut self, out: &mut Vec<Effect>) {
        if self.connected {
            self.connected = false;
            out.push(Effect::Event(Event::Disconnected));
        }
        self.backoff = self.config.subscribe_backoff;
        self.subscription = self.rng.u64(1..);
        self.subscribe(out);
    }

    /// The detector named a leading master: move to it after a small random delay
    /// (unless it is the one followed already). Older epochs are stale.
    fn master_detected(&mut self, out: &mut Vec<Effect>, detected: Option<DetectedMaster>) {
        let Some(detected) = detected else {
            tracing::warn!(master = %self.config.master, "the detector knows no leading master");
            return;
        };
        if detected.epoch < self.epoch {
            return;
        }
        self.epoch = detected.epoch;
        if detected.upid == self.config.master && self.next_master.is_none() {
            return;
        }
        let armed = self.next_master.is_some();
        self.next_master = Some(detected);
        if !armed {
            let id = self.timers.set(Timer::FollowMaster);
            let after = detector::follow_delay(&mut self.rng);
            out.push(Effect::SetTimer(SetTimer { id, after }));
        }
    }

    fn follow_master(&mut self, out: &mut Vec<Effect>) {
        let Some(next) = self.next_master.take() else { return };
        if next.upid == self.config.master {
            return;
        }
        tracing::info!(master = %next.upid, epoch = next.epoch, "following the new leading master");
        out.push(Effect::Unlink(self.config.master.clone()));
        self.config.master = next.upid;
        self.resubscribe(out);
    }

    fn send(&self, out: &mut Vec<Effect>, message: impl Into<Msg>) {
        out.push(Effect::Send { to: self.config.master.clone(), message: message.into() });
    }

    fn subscribe(&mut self, out: &mut Vec<Effect>) {
        let mut framework = self.config.framework.clone();
        framework.id = self.framework_id.clone().or(framework.id);
        out.push(Effect::Link(self.config.master.clone()));
        self.send(out, SubscribeFramework { framework, subscription: self.subscription });
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.subscribe_backoff_max);
        let id = self.timers.set(Timer::Subscribe);
        out.push(Effect::SetTimer(SetTimer { id, after: delay }));
    }

    fn retry(&mut self, out: &mut Vec<Effect>) {
        if let Some(timeout) = self.config.subscribe_timeout.filter(|_| !self.ever_connected) {
            if self.now - self.started > timeout.as_secs_f64() {
                let message = format!("{NO_MASTER_ANSWERED} at {} within {timeout:?}", self.config.master);
                tracing::error!(error = %message, "giving up subscribing");
                out.push(Effect::Event(Event::Error(message.clone())));
                self.finish(out, DriverStatus::Aborted(message));
                return;
            }
        }
        self.subscribe(out);
    }

    fn finish(&mut self, out: &mut Vec<Effect>, status: DriverStatus) {
        out.push(Effect::Unlink(self.config.master.clone()));
        self.status = status.clone();
        out.push(Effect::Finished(status));
    }

    fn message(&mut self, out: &mut Vec<Effect>, message: Msg) {
        match message {
            Msg::FrameworkSubscribed(m) => {
                // A late answer to an earlier round (its master may be gone) is not
                // this subscription's; 0 is an old master's that names none.
                if self.connected || (m.subscription != 0 && m.subscription != self.subscription) {
                    return;
                }
                if m.epoch != 0 && m.epoch < self.epoch {
                    tracing::warn!(
                        epoch = m.epoch,
                        "ignoring a subscription from a master older than one seen"
                    );
                    return;
                }
                self.epoch = self.epoch.max(m.epoch);
                self.connected = true;
                let again = self.ever_connected;
                self.ever_connected = true;
                self.backoff = self.config.subscribe_backoff;
                self.framework_id = Some(m.framework_id.clone());
                tracing::info!(framework_id = %m.framework_id, again, "framework subscribed");
                let event = if again {
                    Event::Resubscribed(m.framework_id)
                } else {
                    Event::Subscribed(m.framework_id)
                };
                out.push(Effect::Event(event));
                // What waited for the subscription goes out now, in order.
                let queued: Vec<Call> = self.queued.drain(..).collect();
                for call in queued {
                    self.call(out, call);
                }
            }
            Msg::FrameworkError(m) => {
                tracing::error!(error = %m.message, "the master ended the framework");
                out.push(Effect::Event(Event::Error(m.message.clone())));
                self.finish(out, DriverStatus::Aborted(m.message));
            }
            Msg::ResourceOffers(m) => out.push(Effect::Event(Event::Offers(m.offers))),
            Msg::RescindOffer(m) => out.push(Effect::Event(Event::Rescinded(m.offer_id))),
            Msg::StatusUpdate(m) => {
                let status = m.status;
                let fresh = self.fresh(&status);
                if fresh {
                    out.push(Effect::Event(Event::Update(status.clone())));
                }
                // A copy is acknowledged again (its first acknowledgement may be lost);
                // with explicit acknowledgements only what was delivered is.
                if self.config.implicit_acknowledgements || !fresh {
                    if let (Some(uuid), Some(agent_id)) = (status.uuid.clone(), status.agent_id.clone()) {
                        self.call(out, Call::Acknowledge { agent_id, task_id: status.task_id, uuid });
                    }
                }
            }
            Msg::AgentLost(m) => out.push(Effect::Event(Event::AgentLost(m.agent_id))),
            Msg::ExecutorLost(m) => out.push(Effect::Event(Event::ExecutorLost {
                executor_id: m.executor_id,
                agent_id: m.agent_id,
                status: m.status,
            })),
            Msg::ExecutorToFrameworkMessage(m) => out.push(Effect::Event(Event::FrameworkMessage {
                executor_id: m.executor_id,
                agent_id: m.agent_id,
                data: m.data,
            })),
            other => tracing::debug!(kind = other.kind(), "the scheduler driver does not handle this kind"),
        }
    }

    /// A call made while not subscribed: kept for the subscription, or (a launch)
    /// answered at once with its tasks lost.
    fn hold(&mut self, out: &mut Vec<Effect>, call: Call) {
        match call {
            Call::Accept { operations, .. } => {
                let state =
                    if self.config.framework.has(keel_proto::task::FrameworkCapability::PartitionAware) {
                        TaskState::Dropped
                    } else {
                        TaskState::Lost
                    };
                for operation in operations {
                    let Operation::Launch { tasks } = operation else { continue };
                    for task in tasks {
                        let status = TaskStatus::new(task.task_id, state, StatusSource::Master)
                            .at(self.now)
                            .with_reason(TaskReason::MasterDisconnected)
                            .with_message("the scheduler driver is not connected to a master");
                        if self.fresh(&status) {
                            out.push(Effect::Event(Event::Update(status)));
                        }
                    }
                }
            }
            Call::Decline { .. } => {}
            call => {
                if self.queued.len() >= MAX_QUEUED_CALLS {
                    self.queued.pop_front();
                }
                self.queued.push_back(call);
            }
        }
    }

    fn id(&self) -> FrameworkId {
        self.framework_id.clone().unwrap_or_default()
    }

    fn call(&mut self, out: &mut Vec<Effect>, call: Call) {
        if !self.connected && !matches!(call, Call::Stop { .. }) {
            self.hold(out, call);
            return;
        }
        let framework_id = self.id();
        match call {
            Call::Accept { offer_ids, operations, filters } => {
                let call_id = Some(UpdateId::from_rng(&mut self.rng).0);
                self.send(out, AcceptOffers { framework_id, offer_ids, operations, filters, call_id })
            }
            Call::Decline { offer_ids, filters } => {
                self.send(out, DeclineOffers { framework_id, offer_ids, filters })
            }
            Call::Kill { task_id, agent_id } => self.send(out, KillTask { framework_id, task_id, agent_id }),
            Call::Reconcile(tasks) => self.send(out, ReconcileTasks { framework_id, tasks }),
            Call::Revive => self.send(out, ReviveOffers { framework_id, roles: Vec::new() }),
            Call::Suppress => self.send(out, SuppressOffers { framework_id, roles: Vec::new() }),
            Call::Acknowledge { agent_id, task_id, uuid } => {
                self.send(out, StatusUpdateAcknowledgement { agent_id, framework_id, task_id, uuid })
            }
            Call::FrameworkMessage { executor_id, agent_id, data } => {
                self.send(out, FrameworkToExecutorMessage { agent_id, framework_id, executor_id, data })
            }
            Call::Stop { failover } => {
                if self.framework_id.is_some() {
                    if failover {
                        self.send(out, DeactivateFramework { framework_id });
                    } else {
                        self.send(out, TeardownFramework { framework_id });
                    }
                }
                self.finish(out, DriverStatus::Stopped);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upid(text: &str) -> Upid {
        text.parse().unwrap()
    }

    fn driver(timeout: Option<Duration>) -> SchedulerDriverCore {
        let mut config = DriverConfig::new(upid("master@127.0.0.1:5050"), FrameworkInfo::new("fw"));
        config.subscribe_timeout = timeout;
        SchedulerDriverCore::new(config)
    }

    fn from_master(message: impl Into<Msg>) -> Input {
        Input::Message { from: upid("master@127.0.0.1:5050"), message: message.into() }
    }

    fn timer(effects: &[Effect]) -> SetTimer {
        effects.iter().find_map(|e| if let Effect::SetTimer(t) = e { Some(*t) } else { None }).unwrap()
    }

    #[test]
    fn subscription_is_retried_with_backoff_and_resubscribes_with_the_id_after_a_disconnect() {
        let mut d = driver(None);
        let effects = d.handle(0.0, Input::Start);
        let first = timer(&effects);
        assert_eq!(first.after, Duration::from_millis(200));
        let effects = d.handle(0.2, Input::Timer(first.id));
        assert_eq!(timer(&effects).after, Duration::from_millis(400));
        let effects = d.handle(
            0.3,
            from_master(FrameworkSubscribed {
                framework_id: FrameworkId("F1".into()),
                master: upid("master@127.0.0.1:5050"),
                subscription: 0,
                epoch: 0,
            }),
        );
        assert!(matches!(effects.as_slice(), [Effect::Event(Event::Subscribed(id))] if id.as_str() == "F1"));
        // A duplicate answer is ignored; retry timers fire into nothing.
        assert!(d
            .handle(
                0.4,
                from_master(FrameworkSubscribed {
                    framework_id: FrameworkId("F1".into()),
                    master: upid("master@127.0.0.1:5050"),
                    subscription: 0,
                    epoch: 0,
                })
            )
            .is_empty());
        let effects = d.handle(1.0, Input::Exited(upid("master@127.0.0.1:5050")));
        assert!(matches!(effects[0], Effect::Event(Event::Disconnected)));
        let resubscribe = effects.iter().find_map(|e| match e {
            Effect::Send { message: Msg::SubscribeFramework(m), .. } => Some(m.clone()),
            _ => None,
        });
        assert_eq!(resubscribe.unwrap().framework.id, Some(FrameworkId("F1".into())));
        // Messages from anyone but the master are ignored.
        assert!(d
            .handle(
                1.1,
                Input::Message {
                    from: upid("x@127.0.0.1:1"),
                    message: FrameworkError { message: "no".into() }.into()
                }
            )
            .is_empty());
        assert_eq!(d.status(), &DriverStatus::Running);
    }

    fn subscription_of(effects: &[Effect]) -> u64 {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Send { message: Msg::SubscribeFramework(m), .. } => Some(m.subscription),
                _ => None,
            })
            .expect("a subscription")
    }

    #[test]
    fn a_late_answer_to_an_earlier_subscription_is_not_taken() {
        // Found by the simulator: a delayed FrameworkSubscribed from a master that
        // had since restarted made the driver believe it was subscribed to the new one.
        let mut d = driver(None);
        let first = subscription_of(&d.handle(0.0, Input::Start));
        let answer = |subscription| {
            from_master(FrameworkSubscribed {
                framework_id: FrameworkId("F1".into()),
                master: upid("master@127.0.0.1:5050"),
                subscription,
                epoch: 0,
            })
        };
        d.handle(0.1, answer(first));
        assert!(d.connected());
        let second = subscription_of(&d.handle(1.0, Input::Exited(upid("master@127.0.0.1:5050"))));
        assert_ne!(first, second, "each round has its own id");
        assert!(d.handle(1.1, answer(first)).is_empty(), "the old round's copy arrives late");
        assert!(!d.connected());
        assert!(matches!(d.handle(1.2, answer(second)).as_slice(), [Effect::Event(Event::Resubscribed(_))]));
    }

    #[test]
    fn no_master_within_the_deadline_aborts_and_an_error_ends_the_driver() {
        let mut d = driver(Some(Duration::from_secs(1)));
        let effects = d.handle(0.0, Input::Start);
        let effects = d.handle(2.0, Input::Timer(timer(&effects).id));
        assert!(
            matches!(effects.last(), Some(Effect::Finished(DriverStatus::Aborted(reason))) if reason.starts_with(NO_MASTER_ANSWERED))
        );
        let mut d = driver(None);
        d.handle(0.0, Input::Start);
        let effects = d.handle(0.1, from_master(FrameworkError { message: "removed".into() }));
        assert!(matches!(effects.last(), Some(Effect::Finished(DriverStatus::Aborted(_)))));
        assert!(d.handle(0.2, Input::Call(Call::Revive)).is_empty(), "a finished driver does nothing");
    }

    #[test]
    fn updates_are_told_then_acknowledged_and_calls_become_messages() {
        let mut d = driver(None);
        d.handle(0.0, Input::Start);
        d.handle(
            0.1,
            from_master(FrameworkSubscribed {
                framework_id: FrameworkId("F1".into()),
                master: upid("master@127.0.0.1:5050"),
                subscription: 0,
                epoch: 0,
            }),
        );
        let mut status = TaskStatus::new(
            TaskId("t".into()),
            keel_proto::task::TaskState::Running,
            keel_proto::task::StatusSource::Executor,
        );
        status.uuid = Some(UpdateId("u".into()));
        status.agent_id = Some(AgentId("S1".into()));
        let update = StatusUpdate {
            framework_id: FrameworkId("F1".into()),
            executor_id: None,
            agent_id: Some(AgentId("S1".into())),
            status,
            latest_state: None,
            uuid: UpdateId("u".into()),
            agent_pid: None,
        };
        let effects = d.handle(0.2, from_master(update));
        assert!(matches!(effects[0], Effect::Event(Event::Update(_))));
        assert!(
            matches!(&effects[1], Effect::Send { message: Msg::StatusUpdateAcknowledgement(a), .. } if a.uuid.as_str() == "u")
        );
        let effects = d.handle(0.3, Input::Call(Call::Kill { task_id: TaskId("t".into()), agent_id: None }));
        assert!(
            matches!(&effects[0], Effect::Send { message: Msg::KillTask(k), .. } if k.framework_id.as_str() == "F1")
        );
        let effects = d.handle(0.4, Input::Call(Call::Stop { failover: false }));
        assert!(matches!(&effects[0], Effect::Send { message: Msg::TeardownFramework(_), .. }));
        assert!(matches!(effects.last(), Some(Effect::Finished(DriverStatus::Stopped))));
    }

    #[test]
    fn the_driver_follows_a_detected_master_and_resubscribes_with_its_id() {
        let mut d = driver(None);
        let first = subscription_of(&d.handle(0.0, Input::Start));
        let subscribed = |subscription, epoch, master: &str| Input::Message {
            from: upid(master),
            message: FrameworkSubscribed {
                framework_id: FrameworkId("F1".into()),
                master: upid(master),
                subscription,
                epoch,
            }
            .into(),
        };
        d.handle(0.1, subscribed(first, 4, "master@127.0.0.1:5050"));
        assert!(d.connected());
        // A stale detection changes nothing.
        let stale = DetectedMaster { upid: upid("master@127.0.0.1:6060"), epoch: 3 };
        assert!(d.handle(0.2, Input::MasterDetected(Some(stale))).is_empty());
        let next = DetectedMaster { upid: upid("master@127.0.0.1:6060"), epoch: 8 };
        let effects = d.handle(1.0, Input::MasterDetected(Some(next)));
        let follow = timer(&effects);
        assert!(follow.after <= crate::detector::MAX_FOLLOW_DELAY);
        let effects = d.handle(1.1, Input::Timer(follow.id));
        assert!(matches!(effects[1], Effect::Event(Event::Disconnected)), "{effects:?}");
        let second = subscription_of(&effects);
        let resubscribe = effects.iter().find_map(|e| match e {
            Effect::Send { to, message: Msg::SubscribeFramework(m) }
                if to.to_string() == "master@127.0.0.1:6060" =>
            {
                Some(m.clone())
            }
            _ => None,
        });
        assert_eq!(resubscribe.expect("to the new master").framework.id, Some(FrameworkId("F1".into())));
        // The old master is not listened to any more, whatever it says.
        assert!(d.handle(1.2, subscribed(second, 4, "master@127.0.0.1:5050")).is_empty());
        // Calls made meanwhile wait; a launch cannot and its tasks are lost at once.
        let kill = d.handle(1.3, Input::Call(Call::Kill { task_id: TaskId("t".into()), agent_id: None }));
        assert!(kill.is_empty(), "a kill waits for the subscription");
        let task = keel_proto::task::TaskInfo {
            name: "x".into(),
            task_id: TaskId("x".into()),
            agent_id: AgentId("S1".into()),
            resources: Default::default(),
            command: Some(keel_proto::task::CommandInfo::shell("true")),
            executor: None,
            data: None,
            labels: Default::default(),
        };
        let launch = Call::Accept {
            offer_ids: vec![OfferId("O1".into())],
            operations: vec![Operation::Launch { tasks: vec![task] }],
            filters: Filters::default(),
        };
        let effects = d.handle(1.4, Input::Call(launch));
        assert!(matches!(&effects[..], [Effect::Event(Event::Update(s))]
            if s.state == keel_proto::task::TaskState::Lost && s.reason == Some(TaskReason::MasterDisconnected)));
        // An answer from the new master but older than its epoch is refused; the right one is taken.
        assert!(d.handle(1.5, subscribed(second, 7, "master@127.0.0.1:6060")).is_empty());
        let effects = d.handle(1.6, subscribed(second, 8, "master@127.0.0.1:6060"));
        assert!(matches!(effects[0], Effect::Event(Event::Resubscribed(_))));
        assert!(
            matches!(&effects[1], Effect::Send { to, message: Msg::KillTask(k) } if to.to_string() == "master@127.0.0.1:6060" && k.task_id.as_str() == "t"),
            "the waiting kill goes out: {effects:?}"
        );
    }
}
