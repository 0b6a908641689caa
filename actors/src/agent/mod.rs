//! The agent process: a shell around the pure [`keel_core::agent::Agent`]. It feeds
//! the core every message, link exit, timer and container event, and executes its
//! effects in order: sends, links, timers, container launches, signals, updates and
//! destroys through the containerizer, and checkpoints, each durable (fsync) before
//! the next effect runs. A checkpoint that cannot be written stops the agent (as
//! Mesos's agent aborts): nobody is told what is not durable.
//!
//! Recovery (`--recover reconnect`, the default): when it starts, the process reads
//! what a previous agent process on the same work dir checkpointed, asks the
//! containerizer which of its containers still run, destroys those it does not
//! recover, and gives the core the rest (`Input::Recover`); a tree it cannot take
//! back whole is set aside and the agent starts afresh under a new id. With
//! `--recover cleanup` it destroys every container it finds, forgets the tree and
//! exits. With a master detector it follows the leading master
//! (`Input::MasterDetected`).
//!
//! Files: `checkpoint.rs` (the work dir's meta tree), `detect.rs` (resources),
//! `http.rs` (/state, /metrics/snapshot, /monitor/statistics, /files/*), `files.rs`
//! (the files API limited to sandboxes), `gc.rs` (sandbox garbage collection).

pub mod checkpoint;
pub mod detect;
pub mod files;
mod gc;
pub mod http;
mod recovery;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_core::agent::container::{Command, ContainerId, ContainerSpec, ExitStatus, Limits, Termination};
use keel_core::agent::{Agent as Core, AgentConfig as CoreConfig, Effect, Input};
use keel_isolation::{ContainerConfig, Containerizer, ExitStatusKind, LaunchCommand, Limitation};
use keel_kernel::{Handle, Handlers, Node, Process, ProcessContext, ProcessRef, Upid};
use keel_proto::messages::agent::*;
use keel_proto::messages::common::*;
use keel_proto::messages::executor::*;
use keel_proto::messages::Msg;

use self::checkpoint::Checkpoints;
use crate::shell::{self, CoreTimer, LeaderWatch, ShellTimers};
use crate::task::AgentInfo;

pub use keel_core::agent::{Connection as AgentState, ExecutorKind};

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
    /// Called when the agent stops for good (shut down by the master, or a
    /// checkpoint failed), with the reason; `keel agent` exits.
    pub on_exit: Option<ExitHook>,
    /// What to do with a previous agent process's work (Mesos's `--recover`).
    pub recover: RecoverMode,
    /// The containerizer is this agent's alone: containers under it that no
    /// checkpoint names are a previous agent's orphans and are destroyed. (Agents
    /// sharing one containerizer in one process must leave this off.)
    pub destroy_orphans: bool,
    /// The leading master, as a detector sees it (`None`: `master` is fixed).
    pub leader: Option<LeaderWatch>,
}

/// What a starting agent does with what a previous agent process left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoverMode {
    /// Reconnect with the executors and tasks still running, reporting the rest.
    #[default]
    Reconnect,
    /// Kill every container the previous agent left, forget its state, and exit.
    Cleanup,
}

impl std::str::FromStr for RecoverMode {
    type Err = String;
    fn from_str(text: &str) -> Result<RecoverMode, String> {
        match text {
            "reconnect" => Ok(RecoverMode::Reconnect),
            "cleanup" => Ok(RecoverMode::Cleanup),
            other => Err(format!("--recover must be reconnect or cleanup, not {other:?}")),
        }
    }
}

/// What runs when the agent stops for good, with an exit code (0: shut down by the
/// master, 1: a failure) and the reason.
pub type ExitHook = Arc<dyn Fn(i32, &str) + Send + Sync>;

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
            on_exit: None,
            recover: RecoverMode::Reconnect,
            destroy_orphans: false,
            leader: None,
        }
    }
}

/// The agent process.
pub struct Agent {
    core: Core,
    config: AgentConfig,
    checkpoints: Checkpoints,
    timers: ShellTimers,
    /// Sandbox garbage collection.
    sandbox_gc: gc::SandboxGc,
    /// Stopping for good: no more inputs.
    exiting: bool,
    /// The core has started (or recovered); until then inputs are held.
    core_started: bool,
    held: Vec<Input>,
    /// HTTP executors (Mesos's v1 executor API).
    v1: Arc<crate::v1::executor::ExecutorHub>,
}

/// Starts an agent on `node` and adds its HTTP endpoints to the node's port.
pub fn start(node: &Node, config: AgentConfig) -> anyhow::Result<ProcessRef<Agent>> {
    let (agent, executors) = start_with_hub(node, AGENT_NAME, config)?;
    node.add_routes(http::routes(agent.clone()));
    // Mesos's v1 executor and operator APIs.
    node.add_routes(crate::v1::agent_operator::agent_routes(agent.clone(), executors));
    Ok(agent)
}

/// Starts an agent process named `name` without HTTP routes (several simulated
/// agents can share one node this way).
pub fn start_named(node: &Node, name: &str, config: AgentConfig) -> anyhow::Result<ProcessRef<Agent>> {
    Ok(start_with_hub(node, name, config)?.0)
}

type Started = (ProcessRef<Agent>, Arc<crate::v1::executor::ExecutorHub>);

fn start_with_hub(node: &Node, name: &str, config: AgentConfig) -> anyhow::Result<Started> {
    std::fs::create_dir_all(&config.work_dir)?;
    let checkpoints = Checkpoints::new(&config.work_dir);
    let mut core_config = CoreConfig::new(
        node.upid(name)?,
        config.master.clone(),
        config.work_dir.clone(),
        config.info.clone(),
    );
    core_config.incarnation = fastrand::u64(..);
    core_config.seed = fastrand::u64(..);
    core_config.version = env!("CARGO_PKG_VERSION").into();
    core_config.registration_backoff = config.registration_backoff;
    core_config.registration_backoff_max = config.registration_backoff_max;
    core_config.status_update_retry = config.status_update_retry;
    core_config.status_update_retry_max = config.status_update_retry_max;
    core_config.executor_registration_timeout = config.executor_registration_timeout;
    core_config.kill_grace_period = config.kill_grace_period;
    core_config.executor_shutdown_grace_period = config.executor_shutdown_grace_period;
    let executors = crate::v1::executor::ExecutorHub::new(node.clone(), node.upid(name)?);
    let agent = Agent {
        core: Core::new(core_config),
        checkpoints,
        timers: ShellTimers::default(),
        sandbox_gc: gc::SandboxGc::default(),
        exiting: false,
        core_started: false,
        held: Vec::new(),
        v1: executors.clone(),
        config,
    };
    Ok((node.spawn(name, agent)?, executors))
}

fn isolation_id(id: &ContainerId) -> keel_isolation::ContainerId {
    keel_isolation::ContainerId(id.0.clone())
}

fn isolation_limits(limits: Limits) -> keel_isolation::Limits {
    keel_isolation::Limits { cpus: limits.cpus, mem_bytes: limits.mem_bytes, pids: limits.pids }
}

fn container_config(spec: ContainerSpec) -> ContainerConfig {
    ContainerConfig {
        id: isolation_id(&spec.id),
        command: match spec.command {
            Command::Shell(text) => LaunchCommand::Shell(text),
            Command::Exec { program, args } => LaunchCommand::Exec { program, args },
        },
        env: spec.env,
        sandbox: spec.sandbox,
        user: spec.user,
        limits: isolation_limits(spec.limits),
    }
}

fn termination(result: Result<keel_isolation::Termination, keel_isolation::IsolationError>) -> Termination {
    match result {
        Ok(t) => Termination {
            status: match t.status {
                ExitStatusKind::Exited(keel_isolation::UNKNOWN_EXIT_CODE) => ExitStatus::Unknown,
                ExitStatusKind::Exited(code) => ExitStatus::Exited(code),
                ExitStatusKind::Signaled(signal) => ExitStatus::Signaled(signal),
            },
            memory_limit: match t.limitation {
                Some(Limitation::Memory { limit_bytes, peak_bytes }) => Some((limit_bytes, peak_bytes)),
                _ => None,
            },
            message: t.message,
        },
        Err(e) => Termination {
            status: ExitStatus::Signaled(9),
            message: format!("lost track of the container: {e}"),
            memory_limit: None,
        },
    }
}

impl Agent {
    /// The agent's id, once registered.
    pub fn agent_id(&self) -> Option<&crate::ids::AgentId> {
        self.core.agent_id()
    }

    /// The work dir (sandboxes, checkpoints).
    pub fn work_dir(&self) -> &std::path::Path {
        &self.config.work_dir
    }

    /// The agent's HTTP executors.
    pub fn executor_hub(&self) -> &Arc<crate::v1::executor::ExecutorHub> {
        &self.v1
    }

    /// The decision core (read-only).
    pub fn core(&self) -> &Core {
        &self.core
    }

    fn feed(&mut self, ctx: &mut ProcessContext<'_, Self>, input: Input) {
        if self.exiting {
            return;
        }
        if !self.core_started {
            if !matches!(input, Input::Start | Input::Recover(_)) {
                // Recovery is still reading what the previous process left: wait.
                self.held.push(input);
                return;
            }
            self.core_started = true;
            let held = std::mem::take(&mut self.held);
            self.feed(ctx, input);
            for input in held {
                self.feed(ctx, input);
            }
            return;
        }
        let mut inputs = vec![input];
        // Effects may produce inputs (a launch that fails at once): handled in order.
        while let Some(input) = inputs.pop() {
            let effects = self.core.handle(shell::now_secs(), input);
            let mut follow_ups = Vec::new();
            for effect in effects {
                if self.exiting {
                    return;
                }
                self.execute(ctx, effect, &mut follow_ups);
            }
            follow_ups.reverse();
            inputs.extend(follow_ups);
        }
    }

    fn feed_message(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, message: Msg) {
        self.feed(ctx, Input::Message { from, message });
    }

    fn execute(&mut self, ctx: &mut ProcessContext<'_, Self>, effect: Effect, follow_ups: &mut Vec<Input>) {
        match effect {
            // HTTP executors' pseudo-UPIDs are streams, not processes (see `crate::v1`).
            Effect::Send { to, message } => {
                if let Some(message) = self.v1.intercept(&to, message) {
                    shell::send(ctx, &to, message);
                }
            }
            Effect::Link(to) => {
                if !self.v1.link(&to) {
                    ctx.link(&to);
                }
            }
            Effect::Unlink(to) => {
                if !self.v1.is_pseudo(&to) {
                    ctx.unlink(&to);
                }
            }
            Effect::SetTimer(timer) => self.timers.set(ctx, timer),
            Effect::CancelTimer(id) => self.timers.cancel(ctx, id),
            Effect::Launch(spec) => {
                let id = spec.id.clone();
                match self.config.containerizer.launch(container_config(spec)) {
                    Ok(pid) => {
                        if let Err(e) = self.checkpoints.write_container_pid(&id, pid) {
                            self.stop_for_good(ctx, 1, format!("cannot record container {id}'s pid: {e}"));
                            return;
                        }
                        self.wait_for(ctx, id);
                    }
                    Err(e) => follow_ups.push(Input::LaunchFailed { container: id, message: e.to_string() }),
                }
            }
            Effect::Signal { container, signal } => {
                if let Err(e) = self.config.containerizer.signal(&isolation_id(&container), signal) {
                    tracing::debug!(%container, error = %e, "signal to a container");
                }
            }
            Effect::Update { container, limits } => {
                if let Err(e) =
                    self.config.containerizer.update(&isolation_id(&container), isolation_limits(limits))
                {
                    tracing::warn!(%container, error = %e, "cannot update a container's limits");
                }
            }
            Effect::Destroy(container) => {
                let destroy = self.config.containerizer.destroy(&isolation_id(&container));
                ctx.spawn(destroy, move |agent: &mut Agent, _, result| match result {
                    Ok(()) => agent.checkpoints.remove_container_pid(&container),
                    Err(e) => tracing::debug!(%container, error = %e, "container destroy"),
                });
            }
            Effect::Checkpoint(checkpoint) => {
                if let Err(e) = self.checkpoints.write(&checkpoint) {
                    self.stop_for_good(ctx, 1, format!("cannot checkpoint: {e}"));
                }
            }
            Effect::Exit { reason } => {
                self.stop_for_good(ctx, 0, format!("the master shut this agent down: {reason}"))
            }
        }
    }

    /// Feeds the container's end to the core when its main process exits.
    fn wait_for(&mut self, ctx: &mut ProcessContext<'_, Self>, id: ContainerId) {
        let wait = self.config.containerizer.wait(&isolation_id(&id));
        ctx.spawn(wait, move |agent: &mut Agent, ctx, result| {
            agent.feed(ctx, Input::ContainerExited { container: id, termination: termination(result) });
        });
    }

    /// What a previous agent process left is read and reattached (see [`recovery`]):
    /// the core gets it, or starts afresh.
    fn recovered(&mut self, ctx: &mut ProcessContext<'_, Self>, outcome: recovery::Outcome) {
        match outcome {
            recovery::Outcome::Fresh => self.feed(ctx, Input::Start),
            recovery::Outcome::Recovered { agent, reattached, ended } => {
                self.feed(ctx, Input::Recover(Box::new(agent)));
                for container in reattached {
                    self.wait_for(ctx, container);
                }
                for (container, termination) in ended {
                    self.feed(ctx, Input::ContainerExited { container, termination });
                }
            }
            recovery::Outcome::CleanedUp => {
                let hook = self.config.on_exit.clone();
                self.exiting = true;
                tracing::info!("recover=cleanup: the previous agent's containers are destroyed; exiting");
                if let Some(hook) = &hook {
                    hook(0, "recover=cleanup done");
                }
                ctx.stop();
            }
            recovery::Outcome::Failed(reason) => self.stop_for_good(ctx, 1, reason),
        }
        if let Some(leader) = self.config.leader.take() {
            let current = leader.borrow().clone();
            if current.is_some() {
                self.feed(ctx, Input::MasterDetected(current));
            }
            shell::follow_leader(ctx, leader, |agent: &mut Agent, ctx, detected| {
                agent.feed(ctx, Input::MasterDetected(detected));
            });
        }
    }

    /// Destroys every container, then stops the process and runs the exit hook.
    fn stop_for_good(&mut self, ctx: &mut ProcessContext<'_, Self>, code: i32, reason: String) {
        if self.exiting {
            return;
        }
        self.exiting = true;
        tracing::error!(%reason, "the agent stops");
        let containerizer = self.config.containerizer.clone();
        let hook = self.config.on_exit.clone();
        let destroy_all = async move {
            for container in containerizer.containers() {
                let _ = containerizer.destroy(&container).await;
            }
        };
        ctx.spawn(destroy_all, move |_: &mut Agent, ctx, ()| {
            if let Some(hook) = &hook {
                hook(code, &reason);
            }
            ctx.stop();
        });
    }
}

crate::feed_messages!(
    Agent,
    feed_message,
    [
        // Master.
        AgentRegistered,
        AgentReregistered,
        Ping,
        ShutdownAgent,
        RunTask,
        CheckLaunches,
        KillTask,
        StatusUpdateAcknowledgement,
        ShutdownFramework,
        ShutdownExecutor,
        UpdateFramework,
        CheckpointResources,
        FrameworkToExecutorMessage,
        // Executors.
        RegisterExecutor,
        ReregisterExecutor,
        StatusUpdate,
        ExecutorToFrameworkMessage,
    ]
);

impl Process for Agent {
    fn install(handlers: &mut Handlers<Self>) {
        Self::install_messages(handlers);
        handlers.install::<CoreTimer>().install::<gc::GcTick>().install::<crate::v1::StreamClosed>();
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        tracing::info!(
            agent = %ctx.upid(),
            master = %self.config.master,
            resources = %self.config.info.resources,
            isolation = %self.config.containerizer.isolation(),
            "agent started"
        );
        let recover = recovery::recover(
            self.checkpoints.clone(),
            self.config.containerizer.clone(),
            self.config.info.clone(),
            self.config.recover,
            self.config.destroy_orphans,
        );
        ctx.spawn(recover, |agent: &mut Agent, ctx, outcome| agent.recovered(ctx, outcome));
        self.start_sandbox_gc(ctx);
    }

    fn exited(&mut self, ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        self.feed(ctx, Input::Exited(upid));
    }
}

/// An HTTP executor's stream ended: its pseudo-UPID exited.
impl Handle<crate::v1::StreamClosed> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _: crate::v1::StreamClosed) {
        if self.v1.is_pseudo(&from) {
            self.feed(ctx, Input::Exited(from));
        }
    }
}

impl Handle<CoreTimer> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: CoreTimer) {
        if let Some(id) = self.timers.fired(ctx, &from, &m) {
            self.feed(ctx, Input::Timer(id));
        }
    }
}
