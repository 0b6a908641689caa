//! The agent: registers with the master, runs tasks in containers (the built-in
//! command executor for command tasks, custom executors as separate processes),
//! keeps one status update stream per task until the scheduler acknowledges it, and
//! checkpoints what recovery needs.
//!
//! States: `Registering -> Registered -> Disconnected -> Reregistering -> Registered`.
//! Registration is retried with capped exponential backoff; the master's link
//! exiting (or a ping saying the master does not know us) starts reregistration.
//!
//! Files: `executors.rs` (run, kill, executor lifecycle), `updates.rs` (status
//! update streams), `http.rs` (/state, /metrics/snapshot, /monitor/statistics,
//! /files/*), `files.rs` (the files API limited to sandboxes), `gc.rs` (sandbox
//! garbage collection), `detect.rs` (resources), `checkpoint.rs` (the work dir's meta
//! tree).

pub mod checkpoint;
pub mod detect;
mod executors;
pub mod files;
mod gc;
pub mod http;
mod updates;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_isolation::{ContainerId, Containerizer};
use keel_kernel::{Handle, Handlers, Node, Process, ProcessContext, ProcessRef, TimerId, Upid};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::messages::agent::*;
use crate::messages::common::*;
use crate::messages::executor::*;
use crate::task::{AgentInfo, ExecutorInfo, FrameworkInfo, TaskInfo, TaskState};

use self::checkpoint::Checkpoints;

/// Name of the agent process on its node.
pub const AGENT_NAME: &str = "agent";

/// How an agent runs.
#[derive(Clone)]
pub struct AgentConfig {
    /// The master's UPID.
    pub master: Upid,
    /// Where sandboxes and checkpoints go.
    pub work_dir: PathBuf,
    /// The agent's description (resources, attributes, hostname); `id` is ignored.
    pub info: AgentInfo,
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
    /// Time between SIGTERM and SIGKILL when a task is killed.
    pub kill_grace_period: Duration,
    /// Time an executor has to exit after being told to shut down.
    pub executor_shutdown_grace_period: Duration,
    /// The containerizer executors and command tasks run in.
    pub containerizer: Arc<dyn Containerizer>,
    /// How long the sandbox of an executor the agent no longer knows is kept.
    pub sandbox_gc_delay: Duration,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("master", &self.master)
            .field("work_dir", &self.work_dir)
            .field("resources", &self.info.resources.to_string())
            .field("containerizer", &self.containerizer.name())
            .field("sandbox_gc_delay", &self.sandbox_gc_delay)
            .finish()
    }
}

impl AgentConfig {
    /// A configuration with Mesos-like defaults (scaled for quick feedback).
    pub fn new(
        master: Upid,
        work_dir: PathBuf,
        info: AgentInfo,
        containerizer: Arc<dyn Containerizer>,
    ) -> AgentConfig {
        AgentConfig {
            master,
            work_dir,
            info,
            registration_backoff: Duration::from_millis(200),
            registration_backoff_max: Duration::from_secs(5),
            status_update_retry: Duration::from_secs(2),
            status_update_retry_max: Duration::from_secs(60),
            executor_registration_timeout: Duration::from_secs(60),
            kill_grace_period: Duration::from_secs(3),
            executor_shutdown_grace_period: Duration::from_secs(5),
            containerizer,
            sandbox_gc_delay: Duration::from_secs(3600),
        }
    }
}

/// The agent's connection to the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AgentState {
    /// Not registered yet; `RegisterAgent` is being retried.
    Registering,
    /// Registered (or reregistered).
    Registered,
    /// Lost the master; about to reregister.
    Disconnected,
    /// `ReregisterAgent` is being retried.
    Reregistering,
}

/// One task's status update stream: updates wait here, in order, until acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub pending: VecDeque<StatusUpdate>,
    pub timer: Option<TimerId>,
    pub backoff: Duration,
}

/// A task on this agent.
#[derive(Debug)]
pub(crate) struct TaskEntry {
    pub info: TaskInfo,
    pub state: TaskState,
    pub stream: Stream,
    pub kill_requested: bool,
}

/// How an executor runs.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // few executors per agent; boxing buys nothing
pub(crate) enum ExecutorKind {
    /// The built-in command executor: the task's command is the container.
    Command,
    /// A custom executor process; `pid` once it registered, tasks queued until then.
    Custom {
        info: ExecutorInfo,
        pid: Option<Upid>,
        queued: Vec<TaskInfo>,
        registration_timer: Option<TimerId>,
    },
}

/// An executor on this agent.
#[derive(Debug)]
pub(crate) struct ExecutorEntry {
    pub kind: ExecutorKind,
    pub container: ContainerId,
    pub sandbox: PathBuf,
    pub tasks: BTreeMap<TaskId, TaskEntry>,
    pub terminated: bool,
    pub shutting_down: bool,
}

/// A framework with work on this agent.
#[derive(Debug)]
pub(crate) struct FrameworkEntry {
    pub info: FrameworkInfo,
    pub scheduler: Upid,
    pub executors: BTreeMap<ExecutorId, ExecutorEntry>,
    pub shutting_down: bool,
}

/// Agent counters under `slave/*`.
#[derive(Debug, Default, Clone)]
pub struct AgentMetrics {
    /// Tasks launched.
    pub tasks_launched: u64,
    /// Terminal states by name.
    pub terminal: BTreeMap<&'static str, u64>,
    /// Status updates sent (first sends).
    pub status_updates: u64,
    /// Status update retries.
    pub status_update_retries: u64,
    /// Acknowledgements for updates not at the head of a stream (duplicates, unknown).
    pub invalid_acknowledgements: u64,
    /// Messages from senders that are not who they claim.
    pub invalid_senders: u64,
    /// Messages for unknown frameworks, executors or tasks.
    pub unknown_targets: u64,
    /// Container launches that failed.
    pub container_launch_errors: u64,
    /// Executors that exited.
    pub executors_terminated: u64,
}

/// The agent process.
pub struct Agent {
    config: AgentConfig,
    state: AgentState,
    agent_id: Option<AgentId>,
    master: Upid,
    backoff: Duration,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    containers: HashMap<ContainerId, (FrameworkId, ExecutorId)>,
    checkpoints: Checkpoints,
    metrics: AgentMetrics,
    started_secs: f64,
    /// The master's ping interval, from the last (re)registration.
    ping_interval: Duration,
    /// When the master last pinged.
    last_ping: std::time::Instant,
    /// Bumped at every (re)registration so stale ping checks are ignored.
    ping_epoch: u64,
    /// Sandbox garbage collection.
    sandbox_gc: gc::SandboxGc,
    /// Random per agent process: tells the master a restarted agent from a retry.
    incarnation: u64,
}

/// Pings the agent may miss before it assumes the master lost it (Mesos's default
/// `max_agent_ping_timeouts`).
const MISSED_PINGS_BEFORE_REREGISTERING: u32 = 5;

/// Starts an agent on `node` and adds its HTTP endpoints to the node's port.
pub fn start(node: &Node, config: AgentConfig) -> anyhow::Result<ProcessRef<Agent>> {
    let agent = start_named(node, AGENT_NAME, config)?;
    node.add_routes(http::routes(agent.clone()));
    Ok(agent)
}

/// Starts an agent process named `name` without HTTP routes (several simulated
/// agents can share one node this way).
pub fn start_named(node: &Node, name: &str, config: AgentConfig) -> anyhow::Result<ProcessRef<Agent>> {
    std::fs::create_dir_all(&config.work_dir)?;
    let checkpoints = Checkpoints::new(&config.work_dir);
    let agent = Agent {
        state: AgentState::Registering,
        agent_id: None,
        master: config.master.clone(),
        backoff: config.registration_backoff,
        frameworks: BTreeMap::new(),
        containers: HashMap::new(),
        checkpoints,
        metrics: AgentMetrics::default(),
        started_secs: crate::shell::now_secs(),
        ping_interval: Duration::from_secs(15),
        last_ping: std::time::Instant::now(),
        ping_epoch: 0,
        sandbox_gc: gc::SandboxGc::default(),
        incarnation: fastrand::u64(..),
        config,
    };
    Ok(node.spawn(name, agent)?)
}

/// The registration retry timer.
#[derive(Debug, Serialize, Deserialize)]
struct RegistrationTick {}
keel_kernel::message!(RegistrationTick, "keel.agent.RegistrationTick");

/// Checks that the master still pings (a silent partition does not close links).
#[derive(Debug, Serialize, Deserialize)]
struct PingCheck {
    epoch: u64,
}
keel_kernel::message!(PingCheck, "keel.agent.PingCheck");

impl Process for Agent {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            // Master.
            .install::<AgentRegistered>()
            .install::<AgentReregistered>()
            .install::<Ping>()
            .install::<ShutdownAgent>()
            .install::<RunTask>()
            .install::<KillTask>()
            .install::<StatusUpdateAcknowledgement>()
            .install::<ShutdownFramework>()
            .install::<ShutdownExecutor>()
            .install::<UpdateFramework>()
            .install::<CheckpointResources>()
            .install::<FrameworkToExecutorMessage>()
            // Executors.
            .install::<RegisterExecutor>()
            .install::<ReregisterExecutor>()
            .install::<StatusUpdate>()
            .install::<ExecutorToFrameworkMessage>()
            // Timers.
            .install::<RegistrationTick>()
            .install::<PingCheck>()
            .install::<updates::RetryUpdate>()
            .install::<executors::KillEscalation>()
            .install::<executors::RegistrationTimeout>()
            .install::<gc::GcTick>();
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        tracing::info!(
            agent = %ctx.upid(),
            master = %self.master,
            resources = %self.config.info.resources,
            isolation = %self.config.containerizer.isolation(),
            "agent started"
        );
        self.register(ctx);
        self.start_sandbox_gc(ctx);
    }

    fn exited(&mut self, ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        if upid == self.master {
            if self.state == AgentState::Registered {
                tracing::warn!(master = %upid, "lost the master; reregistering");
                self.state = AgentState::Disconnected;
                self.backoff = self.config.registration_backoff;
                self.register(ctx);
            }
            return;
        }
        // An executor's link broke: the end of its container (reaped by the
        // containerizer) finishes its tasks, so there is nothing to do here.
        tracing::debug!(executor = %upid, "executor connection lost");
    }
}

impl Agent {
    /// The agent's id, once registered.
    pub fn agent_id(&self) -> Option<&AgentId> {
        self.agent_id.as_ref()
    }

    /// Sends (re)registration and arms the next retry.
    fn register(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        match self.state {
            AgentState::Registered => return,
            AgentState::Registering => {
                let agent = AgentInfo { id: None, ..self.config.info.clone() };
                ctx.send(
                    &self.master,
                    RegisterAgent {
                        agent,
                        version: env!("CARGO_PKG_VERSION").into(),
                        incarnation: self.incarnation,
                    },
                );
            }
            AgentState::Disconnected | AgentState::Reregistering => {
                self.state = AgentState::Reregistering;
                let message = self.reregistration();
                ctx.send(&self.master, message);
            }
        }
        ctx.link(&self.master.clone());
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.registration_backoff_max);
        // Jitter keeps many agents from retrying in lockstep.
        let jitter = delay.mul_f64(fastrand::f64() * 0.5);
        ctx.delay(delay + jitter, RegistrationTick {});
    }

    fn reregistration(&self) -> ReregisterAgent {
        let mut tasks = Vec::new();
        let mut executors = Vec::new();
        let mut frameworks = Vec::new();
        for (framework_id, framework) in &self.frameworks {
            frameworks.push(framework.info.clone());
            for (executor_id, executor) in &framework.executors {
                if let ExecutorKind::Custom { info, .. } = &executor.kind {
                    executors.push(info.clone());
                }
                for task in executor.tasks.values() {
                    tasks.push(crate::task::Task {
                        info: task.info.clone(),
                        framework_id: framework_id.clone(),
                        executor_id: executor_id.clone(),
                        state: task.state,
                        status: task.stream.pending.back().map(|u| u.status.clone()),
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
            version: env!("CARGO_PKG_VERSION").into(),
            incarnation: self.incarnation,
        }
    }

    fn is_master(&mut self, ctx: &ProcessContext<'_, Self>, from: &Upid) -> bool {
        if from == &self.master {
            true
        } else {
            self.metrics.invalid_senders += 1;
            tracing::warn!(%from, agent = %ctx.upid(), "ignoring a master message from a process that is not the master");
            false
        }
    }

    fn registered(&mut self, ctx: &mut ProcessContext<'_, Self>, agent_id: AgentId, ping_interval_secs: f64) {
        if ping_interval_secs.is_finite() && ping_interval_secs > 0.0 {
            self.ping_interval = Duration::from_secs_f64(ping_interval_secs);
        }
        self.last_ping = ctx.node().clock().now();
        self.ping_epoch += 1;
        ctx.delay(self.ping_interval, PingCheck { epoch: self.ping_epoch });
        let first = self.agent_id.is_none();
        self.agent_id = Some(agent_id.clone());
        self.state = AgentState::Registered;
        self.backoff = self.config.registration_backoff;
        if first {
            let info = AgentInfo { id: Some(agent_id.clone()), ..self.config.info.clone() };
            if let Err(e) = checkpoint::write_json(&self.checkpoints.agent(), &info) {
                tracing::warn!(error = %e, "cannot checkpoint the agent's info");
            }
        }
        tracing::info!(agent_id = %agent_id, master = %self.master, "agent registered");
        // Resend what waits for acknowledgement.
        self.flush_streams(ctx);
    }
}

impl Handle<RegistrationTick> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: RegistrationTick) {
        if &from == ctx.upid() && self.state != AgentState::Registered {
            self.register(ctx);
        }
    }
}

impl Handle<PingCheck> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: PingCheck) {
        if &from != ctx.upid() || m.epoch != self.ping_epoch || self.state != AgentState::Registered {
            return;
        }
        let silence = ctx.node().clock().now().saturating_duration_since(self.last_ping);
        if silence > self.ping_interval * MISSED_PINGS_BEFORE_REREGISTERING {
            tracing::warn!(master = %self.master, ?silence, "no ping from the master; reregistering");
            self.state = AgentState::Disconnected;
            self.backoff = self.config.registration_backoff;
            self.register(ctx);
            return;
        }
        ctx.delay(self.ping_interval, PingCheck { epoch: m.epoch });
    }
}

impl Handle<AgentRegistered> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: AgentRegistered) {
        if !self.is_master(ctx, &from) {
            return;
        }
        match self.state {
            AgentState::Registering => self.registered(ctx, m.agent_id, m.ping_interval_secs),
            _ if self.agent_id.as_ref() == Some(&m.agent_id) => {}
            _ => tracing::warn!(agent_id = %m.agent_id, "ignoring a registration for another id"),
        }
    }
}

impl Handle<AgentReregistered> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: AgentReregistered) {
        if !self.is_master(ctx, &from) {
            return;
        }
        if self.agent_id.as_ref() != Some(&m.agent_id) {
            tracing::warn!(agent_id = %m.agent_id, "ignoring a reregistration for another id");
            return;
        }
        if self.state != AgentState::Registered {
            self.registered(ctx, m.agent_id, m.ping_interval_secs);
        }
    }
}

impl Handle<Ping> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, ping: Ping) {
        if !self.is_master(ctx, &from) {
            return;
        }
        ctx.send(&from, Pong {});
        self.last_ping = ctx.node().clock().now();
        if !ping.connected && self.state == AgentState::Registered {
            self.state = AgentState::Disconnected;
            self.register(ctx);
        }
    }
}

impl Handle<ShutdownAgent> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ShutdownAgent) {
        if !self.is_master(ctx, &from) {
            return;
        }
        tracing::warn!(reason = %m.message, "the master shut this agent down");
        let frameworks: Vec<FrameworkId> = self.frameworks.keys().cloned().collect();
        for framework_id in frameworks {
            self.shutdown_framework(ctx, &framework_id);
        }
        self.state = AgentState::Registering;
        self.agent_id = None;
    }
}

impl Handle<CheckpointResources> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: CheckpointResources) {
        if !self.is_master(ctx, &from) {
            return;
        }
        if let Err(e) = checkpoint::write_json(&self.checkpoints.resources(), &m.total) {
            tracing::warn!(error = %e, "cannot checkpoint the agent's resources");
        }
        tracing::info!(resources = %m.total, "agent resources changed (reservations)");
        self.config.info.resources = m.total;
    }
}

impl Handle<UpdateFramework> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: UpdateFramework) {
        if !self.is_master(ctx, &from) {
            return;
        }
        if let Some(framework) = self.frameworks.get_mut(&m.framework_id) {
            framework.scheduler = m.scheduler;
        }
    }
}
