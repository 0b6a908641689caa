//! The framework API for executors: implement [`Executor`] and call
//! [`run_executor`] from the executor binary's `main`. The driver registers with the
//! agent named in the environment (`KEEL_AGENT_PID`, `KEEL_FRAMEWORK_ID`,
//! `KEEL_EXECUTOR_ID`), hands tasks to the executor, and keeps its status updates
//! until the agent has them. Like schedulers, executors are actors and may install
//! their own typed messages.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_kernel::{Handle, Handlers, Message, Node, NodeConfig, Process, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId, UpdateId};
use crate::messages::agent::ShutdownExecutor;
use crate::messages::common::*;
use crate::messages::executor::*;
use crate::task::{ExecutorInfo, FrameworkInfo, StatusSource, TaskInfo, TaskState, TaskStatus};

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

/// What an executor callback can ask of the driver; sent when it returns.
pub struct ExecutorDriver {
    agent: Upid,
    framework_id: FrameworkId,
    executor_id: ExecutorId,
    agent_id: Option<AgentId>,
    outbox: Vec<Deferred>,
    unacknowledged: BTreeMap<UpdateId, StatusUpdate>,
    stop: bool,
}

impl std::fmt::Debug for ExecutorDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorDriver").field("executor_id", &self.executor_id).finish()
    }
}

impl ExecutorDriver {
    /// Reports a task's new state (with an optional message).
    pub fn update(&mut self, task_id: &TaskId, state: TaskState, message: Option<&str>) {
        let mut status = TaskStatus::new(task_id.clone(), state, StatusSource::Executor);
        status.message = message.map(str::to_string);
        self.send_status_update(status);
    }

    /// Reports a full status; the driver assigns its uuid.
    pub fn send_status_update(&mut self, mut status: TaskStatus) {
        let uuid = UpdateId::random();
        status.uuid = Some(uuid.clone());
        status.executor_id = Some(self.executor_id.clone());
        status.agent_id = self.agent_id.clone();
        let update = StatusUpdate {
            latest_state: None,
            framework_id: self.framework_id.clone(),
            executor_id: Some(self.executor_id.clone()),
            agent_id: self.agent_id.clone(),
            status,
            uuid: uuid.clone(),
            agent_pid: None,
        };
        self.unacknowledged.insert(uuid, update.clone());
        self.send(self.agent.clone(), update);
    }

    /// Sends data to the scheduler (best effort).
    pub fn send_framework_message(&mut self, data: Vec<u8>) {
        let message = ExecutorToFrameworkMessage {
            agent_id: self.agent_id.clone().unwrap_or_default(),
            framework_id: self.framework_id.clone(),
            executor_id: self.executor_id.clone(),
            data,
        };
        self.send(self.agent.clone(), message);
    }

    /// Sends any typed message from the executor's process.
    pub fn send<M: Message>(&mut self, to: Upid, message: M) {
        self.outbox.push(Box::new(move |node, me| node.send(me, &to, message)));
    }

    /// Ends the executor once its updates are with the agent.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// The executor's id.
    pub fn executor_id(&self) -> &ExecutorId {
        &self.executor_id
    }
}

/// The driver process around an [`Executor`].
pub struct ExecutorProcess<E: Executor> {
    executor: E,
    driver: ExecutorDriver,
    registered: bool,
    stopping: bool,
}

/// Retry registration / check for the end.
#[derive(Debug, Serialize, Deserialize)]
struct ExecutorTick {}
keel_kernel::message!(ExecutorTick, "keel.executor.Tick");

impl<E: Executor> ExecutorProcess<E> {
    /// The executor and its driver, for custom handlers; call `flush` after.
    pub fn split(&mut self) -> (&mut E, &mut ExecutorDriver) {
        (&mut self.executor, &mut self.driver)
    }

    /// Sends what the driver queued; starts stopping when asked.
    pub fn flush(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let node = ctx.node().clone();
        let me = ctx.upid().clone();
        for deferred in self.driver.outbox.drain(..) {
            deferred(&node, &me);
        }
        if self.driver.stop && !self.stopping {
            self.stopping = true;
            ctx.delay(Duration::from_millis(10), ExecutorTick {});
            // Leave after a bounded wait even if some update is never acknowledged.
            ctx.delay(Duration::from_secs(5), ExecutorDeadline {});
        }
    }

    fn callback(&mut self, ctx: &mut ProcessContext<'_, Self>, f: impl FnOnce(&mut E, &mut ExecutorDriver)) {
        f(&mut self.executor, &mut self.driver);
        self.flush(ctx);
    }
}

impl<E: Executor> Process for ExecutorProcess<E> {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            .install::<ExecutorRegistered>()
            .install::<ExecutorReregistered>()
            .install::<LaunchTask>()
            .install::<KillTask>()
            .install::<StatusUpdateAcknowledgement>()
            .install::<FrameworkToExecutorMessage>()
            .install::<ShutdownExecutor>()
            .install::<ExecutorTick>();
        E::install(handlers);
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let agent = self.driver.agent.clone();
        ctx.link(&agent);
        ctx.send(
            &agent,
            RegisterExecutor {
                framework_id: self.driver.framework_id.clone(),
                executor_id: self.driver.executor_id.clone(),
            },
        );
        ctx.delay(Duration::from_millis(500), ExecutorTick {});
    }

    fn exited(&mut self, _ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        if upid == self.driver.agent {
            // Reattaching to a restarted agent belongs to agent recovery; without
            // it, an executor whose agent is gone has nothing left to do.
            tracing::warn!(agent = %upid, "lost the agent; exiting");
            actix_rt::System::current().stop();
        }
    }
}

impl<E: Executor> Handle<ExecutorTick> for ExecutorProcess<E> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: ExecutorTick) {
        if &from != ctx.upid() {
            return;
        }
        if self.stopping {
            // Leave once the agent has every update, or after a bounded wait.
            if self.driver.unacknowledged.is_empty() {
                actix_rt::System::current().stop();
            } else {
                ctx.delay(Duration::from_millis(50), ExecutorTick {});
            }
            return;
        }
        if !self.registered {
            let agent = self.driver.agent.clone();
            ctx.send(
                &agent,
                RegisterExecutor {
                    framework_id: self.driver.framework_id.clone(),
                    executor_id: self.driver.executor_id.clone(),
                },
            );
            ctx.delay(Duration::from_millis(500), ExecutorTick {});
        }
    }
}

/// The last moment an exiting executor waits for acknowledgements.
#[derive(Debug, Serialize, Deserialize)]
struct ExecutorDeadline {}
keel_kernel::message!(ExecutorDeadline, "keel.executor.Deadline");

impl<E: Executor> Handle<ExecutorRegistered> for ExecutorProcess<E> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ExecutorRegistered) {
        if from != self.driver.agent || self.registered {
            return;
        }
        self.registered = true;
        self.driver.agent_id = Some(m.agent_id.clone());
        self.callback(ctx, |e, d| e.registered(d, &m.executor, &m.framework, &m.agent_id));
    }
}

impl<E: Executor> Handle<ExecutorReregistered> for ExecutorProcess<E> {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ExecutorReregistered) {
        if from == self.driver.agent {
            self.driver.agent_id = Some(m.agent_id);
        }
    }
}

impl<E: Executor> Handle<LaunchTask> for ExecutorProcess<E> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: LaunchTask) {
        if from == self.driver.agent {
            self.callback(ctx, |e, d| e.launch_task(d, m.task));
        }
    }
}

impl<E: Executor> Handle<KillTask> for ExecutorProcess<E> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: KillTask) {
        if from == self.driver.agent {
            self.callback(ctx, |e, d| e.kill_task(d, &m.task_id));
        }
    }
}

impl<E: Executor> Handle<StatusUpdateAcknowledgement> for ExecutorProcess<E> {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, from: Upid, m: StatusUpdateAcknowledgement) {
        if from == self.driver.agent {
            self.driver.unacknowledged.remove(&m.uuid);
        }
    }
}

impl<E: Executor> Handle<FrameworkToExecutorMessage> for ExecutorProcess<E> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: FrameworkToExecutorMessage) {
        if from == self.driver.agent {
            self.callback(ctx, |e, d| e.framework_message(d, m.data));
        }
    }
}

impl<E: Executor> Handle<ShutdownExecutor> for ExecutorProcess<E> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: ShutdownExecutor) {
        if from == self.driver.agent {
            self.callback(ctx, |e, d| {
                e.shutdown(d);
                d.stop();
            });
        }
    }
}

impl<E: Executor> Handle<ExecutorDeadline> for ExecutorProcess<E> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: ExecutorDeadline) {
        if &from == ctx.upid() {
            actix_rt::System::current().stop();
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
        let process = ExecutorProcess {
            executor,
            driver: ExecutorDriver {
                agent,
                framework_id,
                executor_id,
                agent_id: None,
                outbox: Vec::new(),
                unacknowledged: BTreeMap::new(),
                stop: false,
            },
            registered: false,
            stopping: false,
        };
        node.spawn("executor", process)?;
        Ok::<(), anyhow::Error>(())
    })?;
    system.run()?;
    Ok(())
}
