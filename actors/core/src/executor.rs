//! The executor driver's decisions: registration with its agent (retried until
//! answered), status updates kept and resent until the agent acknowledges them,
//! reregistration with the unacknowledged updates when the agent's connection
//! breaks (for up to `recovery_timeout`), and a bounded wait for acknowledgements
//! before the executor exits.
//!
//! ```text
//! Registering --Registered--> Registered --link exit--> Reregistering
//! Reregistering --Reregistered--> Registered;  --recovery timeout--> exit
//! any --Shutdown, Stop--> Stopping --all acknowledged or deadline--> exit
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, TaskId, UpdateId};
use keel_proto::messages::common::*;
use keel_proto::messages::executor::*;
use keel_proto::messages::Msg;
use keel_proto::task::{ExecutorInfo, FrameworkInfo, StatusSource, TaskInfo, TaskState, TaskStatus};

use crate::timers::{SetTimer, TimerId, Timers};

/// How an executor driver runs.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The agent (from `KEEL_AGENT_PID`).
    pub agent: Upid,
    /// The framework (from `KEEL_FRAMEWORK_ID`).
    pub framework_id: FrameworkId,
    /// This executor (from `KEEL_EXECUTOR_ID`).
    pub executor_id: ExecutorId,
    /// Time between registration attempts.
    pub registration_retry: Duration,
    /// Time between resends of unacknowledged updates.
    pub update_retry: Duration,
    /// How long to keep trying to reregister after the agent's connection broke
    /// (Mesos: 15 minutes).
    pub recovery_timeout: Duration,
    /// How long an exiting executor waits for its updates' acknowledgements.
    pub shutdown_timeout: Duration,
    /// Seed of the update ids.
    pub seed: u64,
}

impl ExecutorConfig {
    /// Defaults for an executor of `framework_id` on `agent`.
    pub fn new(agent: Upid, framework_id: FrameworkId, executor_id: ExecutorId) -> ExecutorConfig {
        ExecutorConfig {
            agent,
            framework_id,
            executor_id,
            registration_retry: Duration::from_millis(500),
            update_retry: Duration::from_secs(2),
            recovery_timeout: Duration::from_secs(15 * 60),
            shutdown_timeout: Duration::from_secs(5),
            seed: 0,
        }
    }
}

/// What an executor asks of its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorCall {
    /// Reports a task's status (the driver assigns its uuid).
    Update(TaskStatus),
    /// Data for the scheduler (best effort).
    FrameworkMessage(Vec<u8>),
    /// Ends the executor once its updates are with the agent.
    Stop,
}

/// What the executor is told (its callbacks).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // moved once, never stored in bulk
pub enum ExecutorEvent {
    /// Registered with the agent.
    Registered {
        /// Its description.
        executor: ExecutorInfo,
        /// Its framework.
        framework: FrameworkInfo,
        /// The agent.
        agent_id: AgentId,
    },
    /// Run this task.
    Launch(TaskInfo),
    /// Kill this task.
    Kill(TaskId),
    /// Data from the scheduler.
    FrameworkMessage(Vec<u8>),
    /// The agent asks the executor to end.
    Shutdown,
}

/// One input of the driver.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // moved once, never stored in bulk
pub enum ExecutorInput {
    /// The driver starts: it registers.
    Start,
    /// A message.
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
    /// The executor's call.
    Call(ExecutorCall),
}

/// One effect of the driver.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // moved once, never stored in bulk
pub enum ExecutorEffect {
    /// Send a message.
    Send {
        /// The receiver.
        to: Upid,
        /// The message.
        message: Msg,
    },
    /// Link to a process.
    Link(Upid),
    /// Fire this timer back later.
    SetTimer(SetTimer),
    /// Tell the executor.
    Event(ExecutorEvent),
    /// The executor process ends.
    Exit {
        /// Why.
        reason: String,
    },
}

/// Where the driver is with its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorState {
    /// Registering.
    Registering,
    /// Registered.
    Registered,
    /// The agent's connection broke; reregistering.
    Reregistering,
    /// Waiting for acknowledgements before exiting.
    Stopping,
    /// Exited.
    Exited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Retry (re)registration.
    Register,
    /// Resend unacknowledged updates.
    Resend,
    /// Stop reregistering.
    RecoveryDeadline,
    /// Check whether every update is acknowledged.
    StopCheck,
    /// Stop waiting.
    StopDeadline,
}

/// The executor driver.
#[derive(Debug)]
pub struct ExecutorDriverCore {
    config: ExecutorConfig,
    state: ExecutorState,
    agent_id: Option<AgentId>,
    rng: fastrand::Rng,
    timers: Timers<Timer>,
    unacknowledged: BTreeMap<UpdateId, StatusUpdate>,
    /// Tasks given to the executor and not yet terminal.
    tasks: BTreeMap<TaskId, TaskInfo>,
    resending: bool,
    now: f64,
}

impl ExecutorDriverCore {
    /// A driver that has not started.
    pub fn new(config: ExecutorConfig) -> ExecutorDriverCore {
        ExecutorDriverCore {
            rng: fastrand::Rng::with_seed(config.seed),
            config,
            state: ExecutorState::Registering,
            agent_id: None,
            timers: Timers::default(),
            unacknowledged: BTreeMap::new(),
            tasks: BTreeMap::new(),
            resending: false,
            now: 0.0,
        }
    }

    /// Where the driver is.
    pub fn state(&self) -> ExecutorState {
        self.state
    }

    /// The executor's id.
    pub fn executor_id(&self) -> &ExecutorId {
        &self.config.executor_id
    }

    /// Updates the agent has not acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.unacknowledged.len()
    }

    /// Takes one input at `now` (seconds) and returns what to do, in order.
    pub fn handle(&mut self, now: f64, input: ExecutorInput) -> Vec<ExecutorEffect> {
        self.now = now;
        let mut out = Vec::new();
        if self.state == ExecutorState::Exited {
            return out;
        }
        match input {
            ExecutorInput::Start => self.register(&mut out),
            ExecutorInput::Message { from, message } if from == self.config.agent => {
                self.message(&mut out, message)
            }
            ExecutorInput::Message { .. } => {}
            ExecutorInput::Exited(upid) => {
                if upid == self.config.agent && self.state == ExecutorState::Registered {
                    tracing::warn!(agent = %upid, "lost the agent; reregistering");
                    self.state = ExecutorState::Reregistering;
                    let deadline = self.config.recovery_timeout;
                    self.set_timer(&mut out, deadline, Timer::RecoveryDeadline);
                    self.register(&mut out);
                }
            }
            ExecutorInput::Timer(id) => match self.timers.fire(id) {
                Some(Timer::Register) => {
                    if matches!(self.state, ExecutorState::Registering | ExecutorState::Reregistering) {
                        self.register(&mut out);
                    }
                }
                Some(Timer::Resend) => {
                    self.resending = false;
                    if self.state == ExecutorState::Registered || self.state == ExecutorState::Stopping {
                        self.resend(&mut out);
                    }
                }
                Some(Timer::RecoveryDeadline) if self.state == ExecutorState::Reregistering => {
                    self.exit(&mut out, "the agent did not come back in time".into());
                }
                Some(Timer::RecoveryDeadline) => {}
                Some(Timer::StopCheck) => {
                    if self.unacknowledged.is_empty() {
                        self.exit(&mut out, "stopped".into());
                    } else {
                        self.set_timer(&mut out, Duration::from_millis(50), Timer::StopCheck);
                    }
                }
                Some(Timer::StopDeadline) => {
                    self.exit(&mut out, "stopped (some updates unacknowledged)".into())
                }
                None => {}
            },
            ExecutorInput::Call(call) => self.call(&mut out, call),
        }
        out
    }

    fn set_timer(&mut self, out: &mut Vec<ExecutorEffect>, after: Duration, timer: Timer) {
        let id = self.timers.set(timer);
        out.push(ExecutorEffect::SetTimer(SetTimer { id, after }));
    }

    fn send(&self, out: &mut Vec<ExecutorEffect>, message: impl Into<Msg>) {
        out.push(ExecutorEffect::Send { to: self.config.agent.clone(), message: message.into() });
    }

    fn register(&mut self, out: &mut Vec<ExecutorEffect>) {
        out.push(ExecutorEffect::Link(self.config.agent.clone()));
        let framework_id = self.config.framework_id.clone();
        let executor_id = self.config.executor_id.clone();
        if self.state == ExecutorState::Reregistering {
            let tasks = self.tasks.values().cloned().collect();
            let updates = self.unacknowledged.values().cloned().collect();
            self.send(out, ReregisterExecutor { framework_id, executor_id, tasks, updates });
        } else {
            self.send(out, RegisterExecutor { framework_id, executor_id });
        }
        let retry = self.config.registration_retry;
        self.set_timer(out, retry, Timer::Register);
    }

    fn resend(&mut self, out: &mut Vec<ExecutorEffect>) {
        let updates: Vec<StatusUpdate> = self.unacknowledged.values().cloned().collect();
        for update in updates {
            self.send(out, update);
        }
        self.arm_resend(out);
    }

    fn arm_resend(&mut self, out: &mut Vec<ExecutorEffect>) {
        if !self.resending && !self.unacknowledged.is_empty() {
            self.resending = true;
            let retry = self.config.update_retry;
            self.set_timer(out, retry, Timer::Resend);
        }
    }

    fn exit(&mut self, out: &mut Vec<ExecutorEffect>, reason: String) {
        self.state = ExecutorState::Exited;
        out.push(ExecutorEffect::Exit { reason });
    }

    fn stop(&mut self, out: &mut Vec<ExecutorEffect>) {
        if self.state == ExecutorState::Stopping {
            return;
        }
        self.state = ExecutorState::Stopping;
        self.set_timer(out, Duration::from_millis(10), Timer::StopCheck);
        let deadline = self.config.shutdown_timeout;
        self.set_timer(out, deadline, Timer::StopDeadline);
    }

    fn message(&mut self, out: &mut Vec<ExecutorEffect>, message: Msg) {
        match message {
            Msg::ExecutorRegistered(m) => {
                if self.state != ExecutorState::Registering {
                    return;
                }
                self.state = ExecutorState::Registered;
                self.agent_id = Some(m.agent_id.clone());
                out.push(ExecutorEffect::Event(ExecutorEvent::Registered {
                    executor: m.executor,
                    framework: m.framework,
                    agent_id: m.agent_id,
                }));
                self.resend(out);
            }
            Msg::ExecutorReregistered(m) => {
                if self.state == ExecutorState::Reregistering {
                    self.state = ExecutorState::Registered;
                    self.agent_id = Some(m.agent_id);
                    // The agent took the unacknowledged updates with the reregistration
                    // and acknowledges each; resends follow until it has.
                    self.arm_resend(out);
                }
            }
            Msg::LaunchTask(m) => {
                if self.tasks.len() < 100_000 {
                    self.tasks.insert(m.task.task_id.clone(), m.task.clone());
                }
                out.push(ExecutorEffect::Event(ExecutorEvent::Launch(m.task)));
            }
            Msg::KillTask(m) => out.push(ExecutorEffect::Event(ExecutorEvent::Kill(m.task_id))),
            Msg::StatusUpdateAcknowledgement(m) => {
                self.unacknowledged.remove(&m.uuid);
            }
            Msg::FrameworkToExecutorMessage(m) => {
                out.push(ExecutorEffect::Event(ExecutorEvent::FrameworkMessage(m.data)))
            }
            Msg::ShutdownExecutor(_) => {
                out.push(ExecutorEffect::Event(ExecutorEvent::Shutdown));
                self.stop(out);
            }
            other => tracing::debug!(kind = other.kind(), "the executor driver does not handle this kind"),
        }
    }

    fn call(&mut self, out: &mut Vec<ExecutorEffect>, call: ExecutorCall) {
        match call {
            ExecutorCall::Update(mut status) => {
                let uuid = UpdateId::from_rng(&mut self.rng);
                status.uuid = Some(uuid.clone());
                status.executor_id = Some(self.config.executor_id.clone());
                status.agent_id = self.agent_id.clone();
                status.source = StatusSource::Executor;
                if status.timestamp == 0.0 {
                    status.timestamp = self.now;
                }
                if status.state.is_terminal() {
                    self.tasks.remove(&status.task_id);
                }
                let update = StatusUpdate {
                    framework_id: self.config.framework_id.clone(),
                    executor_id: Some(self.config.executor_id.clone()),
                    agent_id: self.agent_id.clone(),
                    latest_state: Some(status.state),
                    status,
                    uuid: uuid.clone(),
                    agent_pid: None,
                };
                // Bounded: an executor that floods updates its agent never takes loses the oldest.
                if self.unacknowledged.len() >= 10_000 {
                    if let Some(oldest) = self.unacknowledged.keys().next().cloned() {
                        self.unacknowledged.remove(&oldest);
                    }
                }
                self.unacknowledged.insert(uuid, update.clone());
                if matches!(self.state, ExecutorState::Registered | ExecutorState::Stopping) {
                    self.send(out, update);
                    self.arm_resend(out);
                }
            }
            ExecutorCall::FrameworkMessage(data) => {
                let message = ExecutorToFrameworkMessage {
                    agent_id: self.agent_id.clone().unwrap_or_default(),
                    framework_id: self.config.framework_id.clone(),
                    executor_id: self.config.executor_id.clone(),
                    data,
                };
                self.send(out, message);
            }
            ExecutorCall::Stop => self.stop(out),
        }
    }

    /// Tasks the executor has been given and not finished.
    pub fn live_tasks(&self) -> BTreeSet<TaskId> {
        self.tasks.keys().cloned().collect()
    }
}

/// A status of `task_id` in `state`, for [`ExecutorCall::Update`].
pub fn status(task_id: &TaskId, state: TaskState, message: Option<&str>) -> TaskStatus {
    let mut status = TaskStatus::new(task_id.clone(), state, StatusSource::Executor);
    status.message = message.map(str::to_string);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = "agent@127.0.0.1:5051";

    fn upid(text: &str) -> Upid {
        text.parse().unwrap()
    }

    fn driver() -> ExecutorDriverCore {
        ExecutorDriverCore::new(ExecutorConfig::new(
            upid(AGENT),
            FrameworkId("F".into()),
            ExecutorId("E".into()),
        ))
    }

    fn from_agent(message: impl Into<Msg>) -> ExecutorInput {
        ExecutorInput::Message { from: upid(AGENT), message: message.into() }
    }

    fn registered() -> ExecutorDriverCore {
        let mut d = driver();
        d.handle(0.0, ExecutorInput::Start);
        let info = ExecutorInfo {
            executor_id: ExecutorId("E".into()),
            framework_id: None,
            command: keel_proto::task::CommandInfo::shell("x"),
            resources: Default::default(),
            name: None,
        };
        let registered = ExecutorRegistered {
            executor: info,
            framework: FrameworkInfo::new("fw"),
            agent_id: AgentId("S1".into()),
            hostname: "h".into(),
        };
        d.handle(0.1, from_agent(registered));
        d
    }

    fn sends(effects: &[ExecutorEffect]) -> Vec<Msg> {
        effects
            .iter()
            .filter_map(|e| {
                if let ExecutorEffect::Send { message, .. } = e {
                    Some(message.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    fn timers(effects: &[ExecutorEffect]) -> Vec<SetTimer> {
        effects
            .iter()
            .filter_map(|e| if let ExecutorEffect::SetTimer(t) = e { Some(*t) } else { None })
            .collect()
    }

    #[test]
    fn updates_are_resent_until_the_agent_acknowledges_them() {
        // Bug 8: an update lost on its way to the agent is sent again.
        let mut d = registered();
        let effects = d.handle(
            1.0,
            ExecutorInput::Call(ExecutorCall::Update(status(&TaskId("t".into()), TaskState::Running, None))),
        );
        let uuid = match &sends(&effects)[..] {
            [Msg::StatusUpdate(u)] => u.uuid.clone(),
            other => panic!("{other:?}"),
        };
        let resend = timers(&effects).pop().unwrap();
        let effects = d.handle(3.0, ExecutorInput::Timer(resend.id));
        assert!(matches!(&sends(&effects)[..], [Msg::StatusUpdate(u)] if u.uuid == uuid));
        let ack = StatusUpdateAcknowledgement {
            agent_id: AgentId("S1".into()),
            framework_id: FrameworkId("F".into()),
            task_id: TaskId("t".into()),
            uuid,
        };
        d.handle(3.1, from_agent(ack));
        assert_eq!(d.unacknowledged(), 0);
        let next = timers(&effects).pop().unwrap();
        assert!(sends(&d.handle(5.0, ExecutorInput::Timer(next.id))).is_empty(), "nothing left to resend");
    }

    #[test]
    fn after_the_agent_connection_breaks_it_reregisters_with_its_unacknowledged_updates() {
        let mut d = registered();
        let task = TaskInfo {
            name: "t".into(),
            task_id: TaskId("t".into()),
            agent_id: AgentId("S1".into()),
            resources: "cpus:1;mem:32".parse().unwrap(),
            command: None,
            executor: None,
            data: None,
            labels: Default::default(),
        };
        d.handle(0.2, from_agent(LaunchTask { framework_id: FrameworkId("F".into()), task }));
        d.handle(
            1.0,
            ExecutorInput::Call(ExecutorCall::Update(status(&TaskId("t".into()), TaskState::Running, None))),
        );
        let effects = d.handle(2.0, ExecutorInput::Exited(upid(AGENT)));
        assert_eq!(d.state(), ExecutorState::Reregistering);
        match &sends(&effects)[..] {
            [Msg::ReregisterExecutor(m)] => {
                assert_eq!(m.updates.len(), 1);
                assert_eq!(m.tasks.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        d.handle(2.5, from_agent(ExecutorReregistered { agent_id: AgentId("S1".into()) }));
        assert_eq!(d.state(), ExecutorState::Registered);
        // Without an agent coming back it gives up after the recovery timeout.
        let mut d = registered();
        let effects = d.handle(1.0, ExecutorInput::Exited(upid(AGENT)));
        let deadline = timers(&effects).into_iter().find(|t| t.after == Duration::from_secs(900)).unwrap();
        let effects = d.handle(901.0, ExecutorInput::Timer(deadline.id));
        assert!(matches!(effects.as_slice(), [ExecutorEffect::Exit { .. }]));
    }

    #[test]
    fn shutdown_waits_for_acknowledgements_within_a_bound() {
        let mut d = registered();
        d.handle(
            1.0,
            ExecutorInput::Call(ExecutorCall::Update(status(&TaskId("t".into()), TaskState::Finished, None))),
        );
        let effects = d.handle(
            1.1,
            from_agent(keel_proto::messages::agent::ShutdownExecutor {
                framework_id: FrameworkId("F".into()),
                executor_id: ExecutorId("E".into()),
            }),
        );
        assert!(matches!(effects[0], ExecutorEffect::Event(ExecutorEvent::Shutdown)));
        let check = timers(&effects)[0];
        let deadline = timers(&effects)[1];
        let effects = d.handle(1.2, ExecutorInput::Timer(check.id));
        assert!(
            !effects.iter().any(|e| matches!(e, ExecutorEffect::Exit { .. })),
            "an update is unacknowledged"
        );
        let effects = d.handle(6.2, ExecutorInput::Timer(deadline.id));
        assert!(matches!(effects.as_slice(), [ExecutorEffect::Exit { .. }]));
        assert_eq!(d.state(), ExecutorState::Exited);
    }
}
