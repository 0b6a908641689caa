//! The framework API for executors: implement [`Executor`] and call
//! [`run_executor`] from the executor binary's `main`. The driver registers with the
//! agent named in the environment (`KEEL_AGENT_PID`, `KEEL_FRAMEWORK_ID`,
//! `KEEL_EXECUTOR_ID`), hands tasks to the executor, and resends its status updates
//! until the agent has them, reregistering with them if the agent's connection
//! breaks. Like schedulers, executors are actors and may install their own typed
//! messages. The decisions are [`keel_core::executor::ExecutorDriverCore`]'s.

use keel_core::executor::{
    ExecutorCall, ExecutorConfig, ExecutorDriverCore, ExecutorEffect, ExecutorEvent, ExecutorInput,
};
use keel_kernel::{Handle, Handlers, Message, Node, NodeConfig, Process, ProcessContext, Upid};

use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::messages::agent::ShutdownExecutor;
use crate::messages::common::*;
use crate::messages::executor::*;
use crate::shell::{self, CoreTimer, ShellTimers};
use crate::task::{ExecutorInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus};

/// A custom executor.
///
/// ```
/// use keel_actors::executor::{Executor, ExecutorDriver};
/// use keel_actors::task::{TaskInfo, TaskState};
/// use keel_actors::ids::TaskId;
///
/// /// Runs each task "instantly": RUNNING, then FINISHED.
/// struct Instant;
///
/// impl Executor for Instant {
///     fn launch_task(&mut self, driver: &mut ExecutorDriver, task: TaskInfo) {
///         driver.update(&task.task_id, TaskState::Running, None);
///         driver.update(&task.task_id, TaskState::Finished, Some("done"));
///     }
///
///     fn kill_task(&mut self, driver: &mut ExecutorDriver, task_id: &TaskId) {
///         driver.update(task_id, TaskState::Killed, None);
///     }
/// }
///
/// // In the executor binary: `fn main() -> anyhow::Result<()> { keel_actors::executor::run_executor(Instant) }`.
/// // Outside an agent (no KEEL_AGENT_PID), run_executor refuses to start:
/// assert!(keel_actors::executor::run_executor(Instant).is_err());
/// ```
pub trait Executor: Sized + Unpin + 'static {
    /// Registered with the agent.
    fn registered(
        &mut self,
        driver: &mut ExecutorDriver,
        executor: &ExecutorInfo,
        framework: &FrameworkInfo,
        agent_id: &AgentId,
    ) {
        let _ = (driver, executor, framework, agent_id);
    }

    /// Run this task; report its states with [`ExecutorDriver::update`].
    fn launch_task(&mut self, driver: &mut ExecutorDriver, task: TaskInfo);

    /// Kill this task and report TASK_KILLED.
    fn kill_task(&mut self, driver: &mut ExecutorDriver, task_id: &TaskId);

    /// Data from the scheduler (best effort).
    fn framework_message(&mut self, driver: &mut ExecutorDriver, data: Vec<u8>) {
        let _ = (driver, data);
    }

    /// The agent asks the executor to end; the driver exits after this.
    fn shutdown(&mut self, driver: &mut ExecutorDriver) {
        let _ = driver;
    }

    /// Installs the executor's own message handlers (executors as actors).
    fn install(handlers: &mut Handlers<ExecutorProcess<Self>>) {
        let _ = handlers;
    }
}

type Deferred = Box<dyn FnOnce(&Node, &Upid)>;

/// A call a callback made, in order.
enum Queued {
    /// For the driver core.
    Call(ExecutorCall),
    /// A typed send of the executor's own.
    Custom(Deferred),
}

/// What an executor callback can ask of the driver; sent when it returns.
pub struct ExecutorDriver {
    executor_id: ExecutorId,
    outbox: Vec<Queued>,
}

impl std::fmt::Debug for ExecutorDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorDriver").field("executor_id", &self.executor_id).finish()
    }
}

impl ExecutorDriver {
    /// Reports a task's new state (with an optional message).
    pub fn update(&mut self, task_id: &TaskId, state: TaskState, message: Option<&str>) {
        self.send_status_update(keel_core::executor::status(task_id, state, message));
    }

    /// Reports a full status; the driver assigns its uuid and resends it until the
    /// agent has it.
    pub fn send_status_update(&mut self, status: TaskStatus) {
        self.outbox.push(Queued::Call(ExecutorCall::Update(status)));
    }

    /// Sends data to the scheduler (best effort).
    pub fn send_framework_message(&mut self, data: Vec<u8>) {
        self.outbox.push(Queued::Call(ExecutorCall::FrameworkMessage(data)));
    }

    /// Sends any typed message from the executor's process.
    pub fn send<M: Message>(&mut self, to: Upid, message: M) {
        self.outbox.push(Queued::Custom(Box::new(move |node, me| node.send(me, &to, message))));
    }

    /// Ends the executor once its updates are with the agent (or after a bound).
    pub fn stop(&mut self) {
        self.outbox.push(Queued::Call(ExecutorCall::Stop));
    }

    /// The executor's id.
    pub fn executor_id(&self) -> &ExecutorId {
        &self.executor_id
    }
}

/// The driver process around an [`Executor`].
pub struct ExecutorProcess<E: Executor> {
    executor: E,
    core: ExecutorDriverCore,
    driver: ExecutorDriver,
    timers: ShellTimers,
}

impl<E: Executor> ExecutorProcess<E> {
    /// The executor and its driver, for custom handlers; call `flush` after.
    pub fn split(&mut self) -> (&mut E, &mut ExecutorDriver) {
        (&mut self.executor, &mut self.driver)
    }

    /// Sends what the driver queued.
    pub fn flush(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let node = ctx.node().clone();
        let me = ctx.upid().clone();
        let queued: Vec<Queued> = self.driver.outbox.drain(..).collect();
        for queued in queued {
            match queued {
                Queued::Call(call) => self.feed(ctx, ExecutorInput::Call(call)),
                Queued::Custom(deferred) => deferred(&node, &me),
            }
        }
    }

    fn feed(&mut self, ctx: &mut ProcessContext<'_, Self>, input: ExecutorInput) {
        let effects = self.core.handle(shell::now_secs(), input);
        for effect in effects {
            match effect {
                ExecutorEffect::Send { to, message } => shell::send(ctx, &to, message),
                ExecutorEffect::Link(to) => ctx.link(&to),
                ExecutorEffect::SetTimer(timer) => self.timers.set(ctx, timer),
                ExecutorEffect::Event(event) => self.callback(ctx, event),
                ExecutorEffect::Exit { reason } => {
                    tracing::info!(%reason, "executor exits");
                    actix_rt::System::current().stop();
                }
            }
        }
    }

    fn callback(&mut self, ctx: &mut ProcessContext<'_, Self>, event: ExecutorEvent) {
        let (e, d) = (&mut self.executor, &mut self.driver);
        match event {
            ExecutorEvent::Registered { executor, framework, agent_id } => {
                e.registered(d, &executor, &framework, &agent_id)
            }
            ExecutorEvent::Launch(task) => e.launch_task(d, task),
            ExecutorEvent::Kill(task_id) => e.kill_task(d, &task_id),
            ExecutorEvent::FrameworkMessage(data) => e.framework_message(d, data),
            ExecutorEvent::Shutdown => e.shutdown(d),
        }
        self.flush(ctx);
    }

    fn feed_message(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        from: Upid,
        message: keel_proto::messages::Msg,
    ) {
        self.feed(ctx, ExecutorInput::Message { from, message });
    }
}

macro_rules! driver_messages {
    ($($m:ty),* $(,)?) => {
        $(
            impl<E: Executor> Handle<$m> for ExecutorProcess<E> {
                fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: $m) {
                    self.feed_message(ctx, from, keel_proto::messages::Msg::from(m));
                }
            }
        )*

        fn install_driver_messages<E: Executor>(handlers: &mut Handlers<ExecutorProcess<E>>) {
            $(handlers.install::<$m>();)*
        }
    };
}

driver_messages!(
    ExecutorRegistered,
    ExecutorReregistered,
    LaunchTask,
    KillTask,
    StatusUpdateAcknowledgement,
    FrameworkToExecutorMessage,
    ShutdownExecutor,
);

impl<E: Executor> Process for ExecutorProcess<E> {
    fn install(handlers: &mut Handlers<Self>) {
        install_driver_messages(handlers);
        handlers.install::<CoreTimer>();
        E::install(handlers);
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        self.feed(ctx, ExecutorInput::Start);
    }

    fn exited(&mut self, ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        self.feed(ctx, ExecutorInput::Exited(upid));
    }
}

impl<E: Executor> Handle<CoreTimer> for ExecutorProcess<E> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: CoreTimer) {
        if let Some(id) = self.timers.fired(ctx, &from, &m) {
            self.feed(ctx, ExecutorInput::Timer(id));
        }
    }
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .map_err(|_| anyhow::anyhow!("{name} is not set: executors are started by a Keel agent"))
}

/// Runs `executor` in this process until the agent shuts it down: reads the
/// agent's environment, starts a node on loopback, registers, serves.
pub fn run_executor<E: Executor>(executor: E) -> anyhow::Result<()> {
    let agent: Upid = env("KEEL_AGENT_PID")?.parse()?;
    let framework_id = FrameworkId(env("KEEL_FRAMEWORK_ID")?);
    let executor_id = ExecutorId(env("KEEL_EXECUTOR_ID")?);
    let _trace =
        keel_kernel::trace::init(std::env::var_os("KEEL_TRACE").map(std::path::PathBuf::from).as_deref())?;
    let system = actix_rt::System::new();
    system.block_on(async move {
        let host: std::net::IpAddr =
            agent.node().host().parse().unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let node = Node::start(NodeConfig { bind: (host, 0).into(), ..NodeConfig::default() }).await?;
        let mut config = ExecutorConfig::new(agent, framework_id, executor_id.clone());
        config.seed = fastrand::u64(..);
        let process = ExecutorProcess {
            executor,
            core: ExecutorDriverCore::new(config),
            driver: ExecutorDriver { executor_id, outbox: Vec::new() },
            timers: ShellTimers::default(),
        };
        node.spawn("executor", process)?;
        Ok::<(), anyhow::Error>(())
    })?;
    system.run()?;
    Ok(())
}
