//! The agent's decisions: registration with the master, tasks in containers (the
//! built-in command executor runs a command task's command as the container itself;
//! custom executors are processes that register back), one status update stream
//! per task until the scheduler acknowledges it, and what recovery needs
//! checkpointed.
//!
//! ```text
//! Registering --Registered--> Registered --link exit, Ping{connected: false}, no ping
//!                               for max_ping_timeouts intervals--> Reregistering
//! Reregistering --Reregistered--> Registered;   any --ShutdownAgent--> Terminating
//! ```
//! Registration is retried with capped exponential backoff and jitter. A RunTask
//! from a master older than the one the agent registered with, or for a launch the
//! master gave up on (see [`CheckLaunches`]), is refused. Checkpoints are effects
//! placed before the sends that depend on them: the shell makes each durable
//! before it executes the next effect.
//!
//! Files: `executors.rs` (run, kill, executor lifecycle, container ends),
//! `updates.rs` (status update streams), `state.rs`, `container.rs`.

pub mod container;
mod executors;
pub mod recovery;
#[cfg(test)]
mod recovery_tests;
pub mod state;
#[cfg(test)]
mod tests;
mod updates;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use keel_proto::messages::agent::*;
use keel_proto::messages::common::StatusUpdate;
use keel_proto::messages::Msg;
use keel_proto::resources::Resources;
use keel_proto::task::{AgentInfo, ExecutorInfo, FrameworkInfo, TaskInfo, TaskState};

use self::container::{ContainerId, ContainerSpec, Limits, Termination};
pub use self::recovery::{RecoveredAgent, RecoveredExecutor, RecoveredFramework, RecoveredTask};
pub use self::state::{AgentMetrics, Connection, FrameworkEntry};
use crate::detector::{self, DetectedMaster};
use crate::timers::{SetTimer, TimerId, Timers};

pub use self::state::{ExecutorEntry, ExecutorKind, Stream, TaskEntry};

/// Pings the master may miss before it gives up on the agent, until the master
/// says (Mesos's default `max_agent_ping_timeouts`).
const DEFAULT_MAX_PING_TIMEOUTS: u32 = 5;

/// Launches the master gave up on that the agent remembers (to refuse them).
const MAX_DROPPED_LAUNCHES: usize = 100_000;

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The agent's own UPID.
    pub upid: Upid,
    /// The master's UPID.
    pub master: Upid,
    /// Where sandboxes go (`<work_dir>/frameworks/...`).
    pub work_dir: PathBuf,
    /// The agent's description (resources, attributes, hostname); `id` is ignored.
    pub info: AgentInfo,
    /// Random per agent process start: tells the master a restart from a retry.
    pub incarnation: u64,
    /// The agent's software version.
    pub version: String,
    /// First registration retry delay.
    pub registration_backoff: Duration,
    /// Cap of the registration retry delay.
    pub registration_backoff_max: Duration,
    /// First status update retry delay (doubles until acknowledged).
    pub status_update_retry: Duration,
    /// Cap of the status update retry delay.
    pub status_update_retry_max: Duration,
    /// How long a custom executor has to register.
    pub executor_registration_timeout: Duration,
    /// How long a recovered custom executor has to reregister (Mesos: 2 s).
    pub executor_reregistration_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when a task is killed.
    pub kill_grace_period: Duration,
    /// Time an executor has to exit after being told to shut down.
    pub executor_shutdown_grace_period: Duration,
    /// Seed of the agent's randomness (container ids, update ids, jitter).
    pub seed: u64,
}

impl AgentConfig {
    /// Mesos-like defaults, scaled for quick feedback.
    pub fn new(upid: Upid, master: Upid, work_dir: PathBuf, info: AgentInfo) -> AgentConfig {
        AgentConfig {
            upid,
            master,
            work_dir,
            info,
            incarnation: 0,
            version: String::new(),
            registration_backoff: Duration::from_millis(200),
            registration_backoff_max: Duration::from_secs(5),
            status_update_retry: Duration::from_secs(2),
            status_update_retry_max: Duration::from_secs(60),
            executor_registration_timeout: Duration::from_secs(60),
            executor_reregistration_timeout: Duration::from_secs(5),
            kill_grace_period: Duration::from_secs(3),
            executor_shutdown_grace_period: Duration::from_secs(5),
            seed: 0,
        }
    }
}

/// One input of the agent.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // moved once, never stored in bulk
pub enum Input {
    /// The agent starts afresh: it registers.
    Start,
    /// The agent starts from a previous process's checkpoints: it takes them back
    /// and reregisters (instead of `Start`).
    Recover(Box<RecoveredAgent>),
    /// The master detector names the leading master (`None`: none is known).
    MasterDetected(Option<DetectedMaster>),
    /// A message from another process.
    Message {
        /// The sender.
        from: Upid,
        /// The message.
        message: Msg,
    },
    /// A linked process exited or became unreachable.
    Exited(Upid),
    /// A timer fired.
    Timer(TimerId),
    /// A container could not be launched.
    LaunchFailed {
        /// The container.
        container: ContainerId,
        /// Why.
        message: String,
    },
    /// A container's main process ended.
    ContainerExited {
        /// The container.
        container: ContainerId,
        /// How.
        termination: Termination,
    },
}

/// What the agent checkpoints. The shell writes each durably (fsync) before it
/// executes the next effect; a failed write stops the agent.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // moved once, never stored in bulk
pub enum Checkpoint {
    /// The agent's info with its id.
    Agent(AgentInfo),
    /// The agent's total with dynamic reservations.
    Resources(Resources),
    /// A framework with work here.
    Framework {
        /// Its id.
        framework_id: FrameworkId,
        /// Its description.
        info: FrameworkInfo,
        /// Its scheduler.
        scheduler: Upid,
    },
    /// An executor and its container.
    Executor {
        /// Its framework.
        framework_id: FrameworkId,
        /// Its id.
        executor_id: ExecutorId,
        /// Its description (custom executors).
        info: Option<ExecutorInfo>,
        /// A custom executor's process, once it registered.
        pid: Option<Upid>,
        /// Its container.
        container: ContainerId,
        /// Its sandbox.
        sandbox: PathBuf,
    },
    /// A task, its state and its unacknowledged updates.
    Task {
        /// Its framework.
        framework_id: FrameworkId,
        /// Its executor.
        executor_id: ExecutorId,
        /// Its description.
        info: TaskInfo,
        /// Its latest state.
        state: TaskState,
        /// Updates waiting for acknowledgement.
        pending: Vec<StatusUpdate>,
    },
    /// An executor is forgotten.
    RemoveExecutor {
        /// Its framework.
        framework_id: FrameworkId,
        /// Its id.
        executor_id: ExecutorId,
    },
    /// A framework is forgotten.
    RemoveFramework {
        /// Its id.
        framework_id: FrameworkId,
    },
    /// Everything is forgotten: the master shut this agent down, so the next agent
    /// process on this work dir starts afresh under a new id (as Mesos's does).
    Clear,
}

/// One effect of the agent, for its shell to execute in order.
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
    /// A timer is no longer needed.
    CancelTimer(TimerId),
    /// Launch a container; `Input::LaunchFailed` if it cannot start, else
    /// `Input::ContainerExited` when its main process ends.
    Launch(ContainerSpec),
    /// Send a signal to a container's processes.
    Signal {
        /// The container.
        container: ContainerId,
        /// The signal number.
        signal: i32,
    },
    /// Change a running container's limits.
    Update {
        /// The container.
        container: ContainerId,
        /// The new limits.
        limits: Limits,
    },
    /// Kill everything in a container and remove it.
    Destroy(ContainerId),
    /// Make this durable before going on.
    Checkpoint(Checkpoint),
    /// The master shut the agent down: the shell stops it once the destroys are done.
    Exit {
        /// Why.
        reason: String,
    },
}

/// What an agent timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    /// Retry (re)registration.
    Registration,
    /// Check that the master still pings (`epoch` of the registration that armed it).
    PingCheck { epoch: u64 },
    /// Resend the head of a task's stream if it is still `uuid`.
    RetryUpdate {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        task_id: TaskId,
        uuid: keel_proto::ids::UpdateId,
    },
    /// A kill's grace period is over: destroy the container.
    KillEscalation { container: ContainerId },
    /// A custom executor did not (re)register in time.
    ExecutorRegistration { container: ContainerId },
    /// Move to the master the detector named (after a small random delay).
    FollowMaster,
}

/// The effects of one input.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub effects: Vec<Effect>,
}

impl Out {
    fn send(&mut self, to: &Upid, message: impl Into<Msg>) {
        self.effects.push(Effect::Send { to: to.clone(), message: message.into() });
    }

    fn checkpoint(&mut self, checkpoint: Checkpoint) {
        self.effects.push(Effect::Checkpoint(checkpoint));
    }
}

/// The agent.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    connection: Connection,
    agent_id: Option<AgentId>,
    /// The newest master epoch seen (RunTasks from older masters are refused).
    epoch: u64,
    /// This admission's number at the master (RunTasks of earlier ones are refused).
    session: u64,
    /// Pings the master may miss before it marks this agent unreachable.
    max_ping_timeouts: u32,
    /// The newest ping round of this epoch's master.
    ping_round: u64,
    now: f64,
    rng: fastrand::Rng,
    timers: Timers<Timer>,
    backoff: Duration,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    containers: BTreeMap<ContainerId, (FrameworkId, ExecutorId)>,
    /// Launches the master gave up on, refused if they ever arrive (bounded, oldest
    /// forgotten first).
    dropped_launches: BTreeSet<(FrameworkId, TaskId)>,
    dropped_order: VecDeque<(FrameworkId, TaskId)>,
    /// Ids of launches already taken (bounded, oldest forgotten first): a copy of a
    /// RunTask, even one arriving after its task ended, is dropped.
    seen_launches: BTreeSet<String>,
    seen_order: VecDeque<String>,
    metrics: AgentMetrics,
    started_secs: f64,
    /// The master's ping interval, from the last (re)registration.
    ping_interval: Duration,
    /// When the master last pinged (seconds).
    last_ping: f64,
    /// Bumped at every (re)registration so stale ping checks are ignored.
    ping_epoch: u64,
    /// The newest master the detector named, until the agent moves to it.
    next_master: Option<DetectedMaster>,
    /// The newest epoch the detector named.
    detected_epoch: u64,
}

impl Agent {
    /// An agent that has not started yet.
    pub fn new(config: AgentConfig) -> Agent {
        Agent {
            rng: fastrand::Rng::with_seed(config.seed),
            backoff: config.registration_backoff,
            config,
            connection: Connection::Registering,
            agent_id: None,
            epoch: 0,
            session: 0,
            max_ping_timeouts: DEFAULT_MAX_PING_TIMEOUTS,
            ping_round: 0,
            now: 0.0,
            timers: Timers::default(),
            frameworks: BTreeMap::new(),
            containers: BTreeMap::new(),
            dropped_launches: BTreeSet::new(),
            dropped_order: VecDeque::new(),
            seen_launches: BTreeSet::new(),
            seen_order: VecDeque::new(),
            metrics: AgentMetrics::default(),
            started_secs: 0.0,
            ping_interval: Duration::from_secs(15),
            last_ping: 0.0,
            ping_epoch: 0,
            next_master: None,
            detected_epoch: 0,
        }
    }

    /// Takes one input at `now` (seconds since the Unix epoch) and returns what to
    /// do, in order.
    pub fn handle(&mut self, now: f64, input: Input) -> Vec<Effect> {
        self.now = now;
        let mut out = Out::default();
        match input {
            Input::Start => {
                self.started_secs = now;
                self.last_ping = now;
                self.register(&mut out);
            }
            Input::Recover(recovered) => {
                self.started_secs = now;
                self.last_ping = now;
                self.recover(&mut out, *recovered);
            }
            _ if self.connection == Connection::Terminating => {}
            Input::MasterDetected(detected) => self.master_detected(&mut out, detected),
            Input::Message { from, message } => self.message(&mut out, from, message),
            Input::Exited(upid) => self.exited(&mut out, upid),
            Input::Timer(id) => {
                if let Some(timer) = self.timers.fire(id) {
                    self.timer(&mut out, timer);
                }
            }
            Input::LaunchFailed { container, message } => self.launch_failed(&mut out, &container, message),
            Input::ContainerExited { container, termination } => {
                self.container_terminated(&mut out, &container, termination)
            }
        }
        out.effects
    }

    fn message(&mut self, out: &mut Out, from: Upid, message: Msg) {
        match message {
            // Master.
            Msg::AgentRegistered(m) if self.is_master(&from) => {
                let admission = Admission {
                    ping_interval_secs: m.ping_interval_secs,
                    epoch: m.epoch,
                    max_ping_timeouts: m.max_ping_timeouts,
                    session: m.session,
                };
                self.on_registered(out, m.agent_id, admission, true)
            }
            Msg::AgentReregistered(m) if self.is_master(&from) => {
                let admission = Admission {
                    ping_interval_secs: m.ping_interval_secs,
                    epoch: m.epoch,
                    max_ping_timeouts: m.max_ping_timeouts,
                    session: m.session,
                };
                self.on_registered(out, m.agent_id, admission, false)
            }
            Msg::Ping(m) if self.is_master(&from) => self.ping(out, m),
            Msg::ShutdownAgent(m) if self.is_master(&from) => self.shutdown(out, m.message),
            Msg::RunTask(m) if self.is_master(&from) => self.run_task(out, m),
            Msg::CheckLaunches(m) if self.is_master(&from) => self.check_launches(out, m),
            Msg::KillTask(m) if self.is_master(&from) => self.kill_task(out, &m.framework_id, &m.task_id),
            Msg::StatusUpdateAcknowledgement(m) if self.is_master(&from) => self.acknowledged(out, m),
            Msg::ShutdownFramework(m) if self.is_master(&from) => {
                self.shutdown_framework(out, &m.framework_id)
            }
            Msg::ShutdownExecutor(m) if self.is_master(&from) => {
                self.shutdown_executor(out, &m.framework_id, &m.executor_id)
            }
            Msg::UpdateFramework(m) if self.is_master(&from) => {
                if let Some(framework) = self.frameworks.get_mut(&m.framework_id) {
                    framework.scheduler = m.scheduler;
                }
            }
            Msg::CheckpointResources(m) if self.is_master(&from) => {
                tracing::info!(resources = %m.total, "agent resources changed (reservations)");
                out.checkpoint(Checkpoint::Resources(m.total.clone()));
                self.config.info.resources = m.total;
            }
            Msg::FrameworkToExecutorMessage(m) if self.is_master(&from) => self.framework_to_executor(out, m),
            // Executors.
            Msg::RegisterExecutor(m) => self.register_executor(out, from, m),
            Msg::ReregisterExecutor(m) => self.reregister_executor(out, from, m),
            Msg::StatusUpdate(m) => self.executor_update(out, from, m),
            Msg::ExecutorToFrameworkMessage(m) => self.executor_to_framework(out, from, m),
            Msg::AgentRegistered(_)
            | Msg::AgentReregistered(_)
            | Msg::Ping(_)
            | Msg::ShutdownAgent(_)
            | Msg::RunTask(_)
            | Msg::CheckLaunches(_)
            | Msg::KillTask(_)
            | Msg::StatusUpdateAcknowledgement(_)
            | Msg::ShutdownFramework(_)
            | Msg::ShutdownExecutor(_)
            | Msg::UpdateFramework(_)
            | Msg::CheckpointResources(_)
            | Msg::FrameworkToExecutorMessage(_) => {
                self.metrics.invalid_senders += 1;
                tracing::warn!(%from, "ignoring a master message from a process that is not the master");
            }
            other => {
                self.metrics.unexpected_messages += 1;
                tracing::debug!(kind = other.kind(), %from, "the agent does not handle this kind");
            }
        }
    }

    fn timer(&mut self, out: &mut Out, timer: Timer) {
        match timer {
            Timer::Registration => {
                if matches!(self.connection, Connection::Registering | Connection::Reregistering) {
                    self.register(out);
                }
            }
            Timer::PingCheck { epoch } => self.ping_check(out, epoch),
            Timer::RetryUpdate { framework_id, executor_id, task_id, uuid } => {
                self.retry_update(out, &framework_id, &executor_id, &task_id, &uuid)
            }
            Timer::KillEscalation { container } => {
                if self.containers.contains_key(&container) {
                    tracing::debug!(%container, "grace period over: destroying the container");
                    out.effects.push(Effect::Destroy(container));
                }
            }
            Timer::ExecutorRegistration { container } => self.executor_registration_timeout(out, container),
            Timer::FollowMaster => self.follow_master(out),
        }
    }

    fn set_timer(&mut self, out: &mut Out, after: Duration, timer: Timer) -> TimerId {
        let id = self.timers.set(timer);
        out.effects.push(Effect::SetTimer(SetTimer { id, after }));
        id
    }

    fn cancel_timer(&mut self, out: &mut Out, id: TimerId) {
        if self.timers.cancel(id) {
            out.effects.push(Effect::CancelTimer(id));
        }
    }

    fn is_master(&self, from: &Upid) -> bool {
        from == &self.config.master
    }

    fn exited(&mut self, out: &mut Out, upid: Upid) {
        if upid == self.config.master {
            if self.connection == Connection::Registered {
                tracing::warn!(master = %upid, "lost the master; reregistering");
                self.reregister(out);
            }
            return;
        }
        // An executor's link broke: the end of its container finishes its tasks.
        tracing::debug!(executor = %upid, "executor connection lost");
    }

    /// Starts reregistering (from scratch: first retry soon).
    fn reregister(&mut self, out: &mut Out) {
        self.connection = Connection::Reregistering;
        self.backoff = self.config.registration_backoff;
        self.register(out);
    }

    /// The detector named a leading master: move to it after a small random delay
    /// (unless it is the one followed already). Older epochs are stale.
    fn master_detected(&mut self, out: &mut Out, detected: Option<DetectedMaster>) {
        let Some(detected) = detected else {
            tracing::warn!(master = %self.config.master, "the detector knows no leading master");
            return;
        };
        if detected.epoch < self.detected_epoch.max(self.epoch) {
            tracing::debug!(master = %detected.upid, epoch = detected.epoch, "ignoring a stale detection");
            return;
        }
        self.detected_epoch = detected.epoch;
        if detected.upid == self.config.master && self.next_master.is_none() {
            return;
        }
        let armed = self.next_master.is_some();
        self.next_master = Some(detected);
        if !armed {
            let delay = detector::follow_delay(&mut self.rng);
            self.set_timer(out, delay, Timer::FollowMaster);
        }
    }

    fn follow_master(&mut self, out: &mut Out) {
        let Some(next) = self.next_master.take() else { return };
        if next.upid == self.config.master {
            return;
        }
        tracing::info!(master = %next.upid, epoch = next.epoch, "following the new leading master");
        out.effects.push(Effect::Unlink(self.config.master.clone()));
        self.config.master = next.upid;
        match self.connection {
            Connection::Registering => {
                self.backoff = self.config.registration_backoff;
                self.register(out);
            }
            Connection::Registered | Connection::Reregistering => self.reregister(out),
            Connection::Terminating => {}
        }
    }

    /// Sends (re)registration and arms the next retry.
    fn register(&mut self, out: &mut Out) {
        match self.connection {
            Connection::Registered | Connection::Terminating => return,
            Connection::Registering => {
                let agent = AgentInfo { id: None, ..self.config.info.clone() };
                let message = RegisterAgent {
                    agent,
                    version: self.config.version.clone(),
                    incarnation: self.config.incarnation,
                };
                out.send(&self.config.master, message);
            }
            Connection::Reregistering => {
                let message = self.reregistration();
                out.send(&self.config.master, message);
            }
        }
        out.effects.push(Effect::Link(self.config.master.clone()));
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.registration_backoff_max);
        // Jitter keeps many agents from retrying in lockstep.
        let jitter = delay.mul_f64(self.rng.f64() * 0.5);
        self.set_timer(out, delay + jitter, Timer::Registration);
    }

    fn reregistration(&self) -> ReregisterAgent {
        let mut tasks = Vec::new();
        let mut executors = Vec::new();
        let mut frameworks = Vec::new();
        for (framework_id, framework) in &self.frameworks {
            frameworks.push(framework.info.clone());
            for (executor_id, executor) in &framework.executors {
                if let ExecutorKind::Custom { info, .. } = &executor.kind {
                    if !executor.terminated {
                        executors.push(info.clone());
                    }
                }
                for task in executor.tasks.values() {
                    tasks.push(keel_proto::task::Task {
                        info: task.info.clone(),
                        framework_id: framework_id.clone(),
                        executor_id: executor_id.clone(),
                        state: task.state,
                        // The update in flight (Mesos's `status_update_state`): what
                        // the master may tell through reconciliation, never ahead of
                        // what the framework is being sent.
                        status: task.stream.pending.front().map(|u| u.status.clone()),
                        role: None,
                    });
                }
            }
        }
        let agent = AgentInfo { id: self.agent_id.clone(), ..self.config.info.clone() };
        ReregisterAgent {
            agent,
            tasks,
            executors,
            frameworks,
            version: self.config.version.clone(),
            incarnation: self.config.incarnation,
        }
    }

    fn on_registered(&mut self, out: &mut Out, agent_id: AgentId, admission: Admission, first: bool) {
        let Admission { ping_interval_secs, epoch, max_ping_timeouts, session } = admission;
        let expected = match self.connection {
            Connection::Registering => first,
            Connection::Reregistering => !first && self.agent_id.as_ref() == Some(&agent_id),
            Connection::Registered | Connection::Terminating => false,
        };
        if !expected {
            if self.agent_id.as_ref() != Some(&agent_id) {
                tracing::warn!(agent_id = %agent_id, "ignoring a registration for another id");
            }
            return;
        }
        if epoch < self.epoch.max(self.detected_epoch) {
            tracing::warn!(epoch, "ignoring a registration from a master older than one already seen");
            return;
        }
        if let Some(interval) =
            keel_proto::time::duration_from_secs(ping_interval_secs).filter(|d| !d.is_zero())
        {
            self.ping_interval = interval;
        }
        if epoch > self.epoch {
            self.epoch = epoch;
            self.session = session;
            self.ping_round = 0;
        } else if epoch == self.epoch {
            self.session = self.session.max(session);
        }
        if max_ping_timeouts > 0 {
            self.max_ping_timeouts = max_ping_timeouts.min(1000);
        }
        self.last_ping = self.now;
        self.ping_epoch += 1;
        let ping_epoch = self.ping_epoch;
        self.set_timer(out, self.ping_interval, Timer::PingCheck { epoch: ping_epoch });
        self.connection = Connection::Registered;
        self.backoff = self.config.registration_backoff;
        if self.agent_id.is_none() {
            self.agent_id = Some(agent_id.clone());
            let info = AgentInfo { id: Some(agent_id.clone()), ..self.config.info.clone() };
            out.checkpoint(Checkpoint::Agent(info));
        }
        tracing::info!(agent_id = %agent_id, master = %self.config.master, "agent registered");
        // Resend what waits for acknowledgement.
        self.flush_streams(out);
    }

    fn ping(&mut self, out: &mut Out, ping: Ping) {
        let master = self.config.master.clone();
        out.send(&master, Pong {});
        if ping.epoch < self.epoch {
            // From an older master, delayed: it says nothing of this one.
            return;
        }
        self.last_ping = self.now;
        self.ping_round = self.ping_round.max(ping.round);
        if !ping.connected && self.connection == Connection::Registered {
            tracing::warn!("the master does not consider this agent connected; reregistering");
            self.reregister(out);
        }
    }

    fn ping_check(&mut self, out: &mut Out, epoch: u64) {
        if epoch != self.ping_epoch || self.connection != Connection::Registered {
            return;
        }
        let silence = self.now - self.last_ping;
        if silence > (self.ping_interval * self.max_ping_timeouts).as_secs_f64() {
            tracing::warn!(master = %self.config.master, silence, "no ping from the master; reregistering");
            self.reregister(out);
            return;
        }
        self.set_timer(out, self.ping_interval, Timer::PingCheck { epoch });
    }

    /// The master shut this agent down: everything is destroyed, then the agent exits.
    fn shutdown(&mut self, out: &mut Out, reason: String) {
        tracing::warn!(%reason, "the master shut this agent down");
        self.connection = Connection::Terminating;
        for container in self.containers.keys() {
            out.effects.push(Effect::Destroy(container.clone()));
        }
        out.checkpoint(Checkpoint::Clear);
        out.effects.push(Effect::Exit { reason });
    }

    /// Whether a launch may be too late: sent in an earlier admission, or long enough
    /// ago (in the master's ping rounds, or by this agent's silence) that the master
    /// may have marked this agent unreachable and told the framework the task is
    /// LOST. Such a launch is refused; the master's launch check then settles it.
    ///
    /// The master gives up on a silent agent after `max_ping_timeouts` pings without
    /// a pong, sooner if pongs were already missing when it sent the launch
    /// (`RunTask::pings_missed`). The agent refuses once it has heard the last ping
    /// the master sends before it may give up, or once it has been silent for as
    /// many intervals as that ping is rounds away (sound while pings are delayed
    /// less than an interval).
    pub(super) fn launch_too_late(&self, run: &RunTask) -> Option<&'static str> {
        let same_master = run.epoch == self.epoch;
        if same_master && run.session != 0 && run.session < self.session {
            return Some("sent before this agent's current admission");
        }
        let patience = u64::from(self.max_ping_timeouts.max(2) - 1);
        let mut rounds_left = patience;
        if same_master && run.ping_round > 0 {
            let last_round = run.ping_round + patience.saturating_sub(u64::from(run.pings_missed));
            if self.ping_round >= last_round {
                return Some("the master may have given up on this agent since it sent the launch");
            }
            rounds_left = rounds_left.min(last_round - self.ping_round);
        }
        let silence = self.now - self.last_ping;
        if silence >= self.ping_interval.as_secs_f64() * rounds_left as f64 {
            return Some("the master has not pinged for so long it may have given up on this agent");
        }
        None
    }

    /// Answers which of these launches the agent has; the others it will refuse.
    fn check_launches(&mut self, out: &mut Out, m: CheckLaunches) {
        let mut answer = LaunchesChecked { known: Vec::new(), dropped: Vec::new() };
        for launch in m.tasks.into_iter().take(MAX_DROPPED_LAUNCHES) {
            if self.find_task_executor(&launch.framework_id, &launch.task_id).is_some() {
                answer.known.push(launch);
            } else {
                self.drop_launch(launch.framework_id.clone(), launch.task_id.clone());
                answer.dropped.push(launch);
            }
        }
        let master = self.config.master.clone();
        out.send(&master, answer);
    }

    /// Records a launch id; false if it was seen before.
    fn first_sight(&mut self, launch_id: &str) -> bool {
        if launch_id.len() > 64 || !self.seen_launches.insert(launch_id.to_string()) {
            return false;
        }
        self.seen_order.push_back(launch_id.to_string());
        while self.seen_order.len() > MAX_DROPPED_LAUNCHES {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen_launches.remove(&old);
            }
        }
        true
    }

    fn drop_launch(&mut self, framework_id: FrameworkId, task_id: TaskId) {
        let key = (framework_id, task_id);
        if self.dropped_launches.insert(key.clone()) {
            self.dropped_order.push_back(key);
            while self.dropped_order.len() > MAX_DROPPED_LAUNCHES {
                if let Some(old) = self.dropped_order.pop_front() {
                    self.dropped_launches.remove(&old);
                }
            }
        }
    }
}

/// What an admission tells the agent.
#[derive(Debug, Clone, Copy)]
struct Admission {
    ping_interval_secs: f64,
    epoch: u64,
    max_ping_timeouts: u32,
    session: u64,
}

/// Read access for views (HTTP, the simulator's invariants, tests).
impl Agent {
    /// The agent's id, once registered.
    pub fn agent_id(&self) -> Option<&AgentId> {
        self.agent_id.as_ref()
    }

    /// Where the agent is with its master.
    pub fn connection(&self) -> Connection {
        self.connection
    }

    /// The master it follows.
    pub fn master(&self) -> &Upid {
        &self.config.master
    }

    /// The configuration (with the current resources).
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Frameworks with work here.
    pub fn frameworks(&self) -> &BTreeMap<FrameworkId, FrameworkEntry> {
        &self.frameworks
    }

    /// Running containers and whose they are.
    pub fn containers(&self) -> &BTreeMap<ContainerId, (FrameworkId, ExecutorId)> {
        &self.containers
    }

    /// The counters.
    pub fn metrics(&self) -> &AgentMetrics {
        &self.metrics
    }

    /// When the agent started (seconds).
    pub fn started_secs(&self) -> f64 {
        self.started_secs
    }

    /// The newest master epoch seen.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Containers whose sandboxes must stay: every executor the agent has
    /// (running or still delivering updates) and every container it watches.
    pub fn known_containers(&self) -> BTreeSet<String> {
        let executors =
            self.frameworks.values().flat_map(|f| f.executors.values()).map(|e| e.container.0.clone());
        executors.chain(self.containers.keys().map(|c| c.0.clone())).collect()
    }
}
