//! The framework API for schedulers: implement [`Scheduler`], start it with
//! [`start_scheduler`]; the driver process handles subscription and its retries,
//! master reconnection (resubscribing with the framework id), and status update
//! acknowledgements (automatic by default).
//!
//! Callbacks get a [`SchedulerDriver`], which queues calls (launch, decline, kill,
//! ...) that the driver process sends when the callback returns. A scheduler is an
//! actor: it can install its own typed messages with [`Scheduler::install`] by
//! implementing `keel_kernel::Handle<M>` for `SchedulerProcess<Self>` and using
//! [`SchedulerProcess::split`] inside.

use std::time::Duration;

use keel_kernel::{Handle, Handlers, Message, Node, Process, ProcessContext, ProcessRef, Upid};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use crate::messages::common::*;
use crate::messages::scheduler::*;
use crate::task::{Filters, FrameworkInfo, Offer, TaskInfo, TaskStatus};

/// A framework's scheduler. Every callback has a default but `offers`.
///
/// A complete scheduler that runs one shell command on a local cluster:
///
/// ```
/// use std::sync::Arc;
/// use keel_actors::scheduler::{start_scheduler, Scheduler, SchedulerConfig, SchedulerDriver};
/// use keel_actors::task::{CommandInfo, FrameworkInfo, Offer, TaskInfo, TaskState, TaskStatus};
/// use keel_actors::local::{LocalCluster, LocalConfig};
///
/// struct Once { launched: bool, outcome: std::rc::Rc<std::cell::Cell<Option<TaskState>>> }
///
/// impl Scheduler for Once {
///     fn offers(&mut self, driver: &mut SchedulerDriver, offers: Vec<Offer>) {
///         for offer in offers {
///             if self.launched {
///                 driver.decline(offer.id, None);
///                 continue;
///             }
///             self.launched = true;
///             let task = TaskInfo::command("hello", &offer, "cpus:0.1;mem:32".parse().unwrap(), CommandInfo::shell("true"));
///             driver.launch(offer.id, vec![task]);
///         }
///     }
///
///     fn status_update(&mut self, driver: &mut SchedulerDriver, status: &TaskStatus) {
///         if status.state.is_terminal() {
///             self.outcome.set(Some(status.state));
///             driver.stop(false);
///         }
///     }
/// }
///
/// actix_rt::System::new().block_on(async {
///     let cluster = LocalCluster::start(LocalConfig { agents: 1, ..LocalConfig::default() }).await.unwrap();
///     let framework = FrameworkInfo::new("doc-example");
///     let config = SchedulerConfig::new(cluster.master_upid().clone(), framework);
///     let outcome = std::rc::Rc::new(std::cell::Cell::new(None));
///     let once = Once { launched: false, outcome: outcome.clone() };
///     let handle = start_scheduler(cluster.node(), "doc", config, once).unwrap();
///     handle.wait().await;
///     assert_eq!(outcome.get(), Some(TaskState::Finished));
///     cluster.shutdown().await;
/// });
/// ```
pub trait Scheduler: Sized + Unpin + 'static {
    /// The framework is subscribed (first time, or again after a master failover).
    fn subscribed(&mut self, driver: &mut SchedulerDriver, framework_id: &FrameworkId) {
        let _ = (driver, framework_id);
    }

    /// New offers. Launch on them or decline them; unused offers tie up resources.
    fn offers(&mut self, driver: &mut SchedulerDriver, offers: Vec<Offer>);

    /// An offer is no longer valid.
    fn rescinded(&mut self, driver: &mut SchedulerDriver, offer_id: &OfferId) {
        let _ = (driver, offer_id);
    }

    /// A task's status changed. With implicit acknowledgements (the default) the
    /// driver acknowledges it after this returns.
    fn status_update(&mut self, driver: &mut SchedulerDriver, status: &TaskStatus) {
        let _ = (driver, status);
    }

    /// Data from an executor (best effort).
    fn framework_message(
        &mut self,
        driver: &mut SchedulerDriver,
        executor_id: &ExecutorId,
        agent_id: &AgentId,
        data: Vec<u8>,
    ) {
        let _ = (driver, executor_id, agent_id, data);
    }

    /// An agent is gone (unreachable or removed).
    fn agent_lost(&mut self, driver: &mut SchedulerDriver, agent_id: &AgentId) {
        let _ = (driver, agent_id);
    }

    /// An executor exited with `status`.
    fn executor_lost(
        &mut self,
        driver: &mut SchedulerDriver,
        executor_id: &ExecutorId,
        agent_id: &AgentId,
        status: i32,
    ) {
        let _ = (driver, executor_id, agent_id, status);
    }

    /// The connection to the master broke; the driver resubscribes on its own.
    fn disconnected(&mut self, driver: &mut SchedulerDriver) {
        let _ = driver;
    }

    /// The master refused or ended the framework; the driver stops after this.
    fn error(&mut self, driver: &mut SchedulerDriver, message: &str) {
        let _ = (driver, message);
    }

    /// Installs the scheduler's own message handlers (frameworks as actors).
    fn install(handlers: &mut Handlers<SchedulerProcess<Self>>) {
        let _ = handlers;
    }
}

/// How a scheduler driver connects.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The master.
    pub master: Upid,
    /// The framework (set `id` to fail over to an existing framework).
    pub framework: FrameworkInfo,
    /// Acknowledge status updates after `status_update` returns.
    pub implicit_acknowledgements: bool,
    /// First subscription retry delay.
    pub subscribe_backoff: Duration,
    /// Cap of the subscription retry delay.
    pub subscribe_backoff_max: Duration,
    /// Give up (the driver aborts) when no master has answered the first
    /// subscription in this long; retry forever when `None`.
    pub subscribe_timeout: Option<Duration>,
}

impl SchedulerConfig {
    /// Defaults: implicit acknowledgements, retries from 200 ms up to 5 s.
    pub fn new(master: Upid, framework: FrameworkInfo) -> SchedulerConfig {
        SchedulerConfig {
            master,
            framework,
            implicit_acknowledgements: true,
            subscribe_backoff: Duration::from_millis(200),
            subscribe_backoff_max: Duration::from_secs(5),
            subscribe_timeout: None,
        }
    }
}

/// How an [`DriverStatus::Aborted`] reason starts when no master answered the
/// subscription within [`SchedulerConfig::subscribe_timeout`].
pub const NO_MASTER_ANSWERED: &str = "no master answered";

/// How a driver ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverStatus {
    /// Still running.
    Running,
    /// Stopped by the scheduler.
    Stopped,
    /// Ended by an error from the master.
    Aborted(String),
}

type Deferred = Box<dyn FnOnce(&Node, &Upid)>;

/// What a callback can ask of the driver; the calls are sent when it returns.
pub struct SchedulerDriver {
    framework_id: Option<FrameworkId>,
    master: Upid,
    outbox: Vec<Deferred>,
    stop: Option<bool>,
}

impl std::fmt::Debug for SchedulerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerDriver").field("framework_id", &self.framework_id).finish()
    }
}

impl SchedulerDriver {
    fn queue_for_master<M: Message>(&mut self, message: M) {
        let master = self.master.clone();
        self.outbox.push(Box::new(move |node, me| node.send(me, &master, message)));
    }

    fn id(&self) -> FrameworkId {
        self.framework_id.clone().unwrap_or_default()
    }

    /// The framework's id, once subscribed.
    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }

    /// Launches tasks on one offer.
    pub fn launch(&mut self, offer_id: OfferId, tasks: Vec<TaskInfo>) {
        self.launch_on(vec![offer_id], tasks, Filters::default());
    }

    /// Launches tasks on several offers of one agent, filtering what is left.
    pub fn launch_on(&mut self, offer_ids: Vec<OfferId>, tasks: Vec<TaskInfo>, filters: Filters) {
        self.accept(offer_ids, vec![Operation::Launch { tasks }], filters);
    }

    /// Accepts offers of one agent with operations applied in order (reserve,
    /// unreserve, launch), filtering what is left.
    pub fn accept(&mut self, offer_ids: Vec<OfferId>, operations: Vec<Operation>, filters: Filters) {
        let framework_id = self.id();
        self.queue_for_master(AcceptOffers { framework_id, offer_ids, operations, filters });
    }

    /// Declines an offer; `refuse_seconds` defaults to 5.
    pub fn decline(&mut self, offer_id: OfferId, refuse_seconds: Option<f64>) {
        let filters = refuse_seconds.map(|refuse_seconds| Filters { refuse_seconds }).unwrap_or_default();
        let framework_id = self.id();
        self.queue_for_master(DeclineOffers { framework_id, offer_ids: vec![offer_id], filters });
    }

    /// Kills a task.
    pub fn kill(&mut self, task_id: TaskId, agent_id: Option<AgentId>) {
        let framework_id = self.id();
        self.queue_for_master(KillTask { framework_id, task_id, agent_id });
    }

    /// Asks for the latest state of `tasks` (explicit) or of all tasks (empty: implicit).
    pub fn reconcile(&mut self, tasks: Vec<ReconcileTask>) {
        let framework_id = self.id();
        self.queue_for_master(ReconcileTasks { framework_id, tasks });
    }

    /// Clears filters and resumes offers.
    pub fn revive(&mut self) {
        let framework_id = self.id();
        self.queue_for_master(ReviveOffers { framework_id, roles: Vec::new() });
    }

    /// Stops offers until revived.
    pub fn suppress(&mut self) {
        let framework_id = self.id();
        self.queue_for_master(SuppressOffers { framework_id, roles: Vec::new() });
    }

    /// Acknowledges an update (needed only with explicit acknowledgements).
    pub fn acknowledge(&mut self, status: &TaskStatus) {
        let (Some(uuid), Some(agent_id)) = (status.uuid.clone(), status.agent_id.clone()) else { return };
        let framework_id = self.id();
        self.queue_for_master(StatusUpdateAcknowledgement {
            agent_id,
            framework_id,
            task_id: status.task_id.clone(),
            uuid,
        });
    }

    /// Sends data to an executor (best effort).
    pub fn send_framework_message(&mut self, executor_id: ExecutorId, agent_id: AgentId, data: Vec<u8>) {
        let framework_id = self.id();
        self.queue_for_master(FrameworkToExecutorMessage { agent_id, framework_id, executor_id, data });
    }

    /// Sends any typed message from the scheduler's process.
    pub fn send<M: Message>(&mut self, to: Upid, message: M) {
        self.outbox.push(Box::new(move |node, me| node.send(me, &to, message)));
    }

    /// Sends `message` to the scheduler's own process after `after` (a timer; the
    /// scheduler handles `M` through [`Scheduler::install`]).
    pub fn delay<M: Message>(&mut self, after: Duration, message: M) {
        self.outbox.push(Box::new(move |node, me| {
            let node = node.clone();
            let me = me.clone();
            let sleep = node.clock().sleep(after);
            actix_rt::spawn(async move {
                sleep.await;
                node.send(&me, &me, message);
            });
        }));
    }

    /// Stops the driver. With `failover`, the framework stays registered (its tasks
    /// keep running for its failover timeout); without, it is torn down.
    pub fn stop(&mut self, failover: bool) {
        self.stop = Some(failover);
    }
}

/// The driver process around a [`Scheduler`].
pub struct SchedulerProcess<S: Scheduler> {
    scheduler: S,
    config: SchedulerConfig,
    driver: SchedulerDriver,
    connected: bool,
    ever_connected: bool,
    started: std::time::Instant,
    backoff: Duration,
    status: watch::Sender<DriverStatus>,
}

impl<S: Scheduler> SchedulerProcess<S> {
    /// The scheduler.
    pub fn scheduler(&mut self) -> &mut S {
        &mut self.scheduler
    }

    /// The scheduler and a driver, for custom message handlers; call
    /// [`SchedulerProcess::flush`] after using the driver.
    pub fn split(&mut self) -> (&mut S, &mut SchedulerDriver) {
        (&mut self.scheduler, &mut self.driver)
    }

    /// Sends what the driver queued and applies a requested stop.
    pub fn flush(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let node = ctx.node().clone();
        let me = ctx.upid().clone();
        for deferred in self.driver.outbox.drain(..) {
            deferred(&node, &me);
        }
        if let Some(failover) = self.driver.stop.take() {
            let framework_id = self.driver.id();
            if self.driver.framework_id.is_some() {
                if failover {
                    ctx.send(&self.config.master, DeactivateFramework { framework_id });
                } else {
                    ctx.send(&self.config.master, TeardownFramework { framework_id });
                }
            }
            self.finish(ctx, DriverStatus::Stopped);
        }
    }

    fn finish(&mut self, ctx: &mut ProcessContext<'_, Self>, status: DriverStatus) {
        ctx.unlink(&self.config.master);
        let _ = self.status.send(status);
        ctx.stop();
    }

    fn callback(&mut self, ctx: &mut ProcessContext<'_, Self>, f: impl FnOnce(&mut S, &mut SchedulerDriver)) {
        f(&mut self.scheduler, &mut self.driver);
        self.flush(ctx);
    }

    fn subscribe(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let mut framework = self.config.framework.clone();
        framework.id = self.driver.framework_id.clone().or(framework.id);
        ctx.link(&self.config.master);
        ctx.send(&self.config.master, SubscribeFramework { framework });
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.config.subscribe_backoff_max);
        ctx.delay(delay, SubscribeRetry {});
    }

    fn is_master(&self, from: &Upid) -> bool {
        from == &self.config.master
    }
}

/// The subscription retry timer.
#[derive(Debug, Serialize, Deserialize)]
struct SubscribeRetry {}
keel_kernel::message!(SubscribeRetry, "keel.scheduler.SubscribeRetry");

impl<S: Scheduler> Process for SchedulerProcess<S> {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            .install::<FrameworkSubscribed>()
            .install::<FrameworkError>()
            .install::<ResourceOffers>()
            .install::<RescindOffer>()
            .install::<StatusUpdate>()
            .install::<AgentLost>()
            .install::<ExecutorLost>()
            .install::<ExecutorToFrameworkMessage>()
            .install::<SubscribeRetry>();
        S::install(handlers);
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        self.subscribe(ctx);
    }

    fn exited(&mut self, ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        if upid == self.config.master && self.connected {
            self.connected = false;
            self.backoff = self.config.subscribe_backoff;
            tracing::warn!(master = %upid, "lost the master; resubscribing");
            self.callback(ctx, |s, d| s.disconnected(d));
            self.subscribe(ctx);
        }
    }
}

impl<S: Scheduler> Handle<SubscribeRetry> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: SubscribeRetry) {
        if &from != ctx.upid() || self.connected || *self.status.borrow() != DriverStatus::Running {
            return;
        }
        if let Some(timeout) = self.config.subscribe_timeout.filter(|_| !self.ever_connected) {
            if self.started.elapsed() > timeout {
                let message = format!("{NO_MASTER_ANSWERED} at {} within {timeout:?}", self.config.master);
                tracing::error!(error = %message, "giving up subscribing");
                self.callback(ctx, |s, d| s.error(d, &message));
                self.finish(ctx, DriverStatus::Aborted(message));
                return;
            }
        }
        self.subscribe(ctx);
    }
}

impl<S: Scheduler> Handle<FrameworkSubscribed> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: FrameworkSubscribed) {
        if !self.is_master(&from) || self.connected {
            return;
        }
        self.connected = true;
        self.ever_connected = true;
        self.backoff = self.config.subscribe_backoff;
        self.driver.framework_id = Some(m.framework_id.clone());
        tracing::info!(framework_id = %m.framework_id, "framework subscribed");
        self.callback(ctx, |s, d| s.subscribed(d, &m.framework_id));
    }
}

impl<S: Scheduler> Handle<FrameworkError> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: FrameworkError) {
        if !self.is_master(&from) {
            return;
        }
        tracing::error!(error = %m.message, "the master ended the framework");
        self.callback(ctx, |s, d| s.error(d, &m.message));
        self.finish(ctx, DriverStatus::Aborted(m.message));
    }
}

impl<S: Scheduler> Handle<ResourceOffers> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ResourceOffers) {
        if self.is_master(&from) {
            self.callback(ctx, |s, d| s.offers(d, m.offers));
        }
    }
}

impl<S: Scheduler> Handle<RescindOffer> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: RescindOffer) {
        if self.is_master(&from) {
            self.callback(ctx, |s, d| s.rescinded(d, &m.offer_id));
        }
    }
}

impl<S: Scheduler> Handle<StatusUpdate> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: StatusUpdate) {
        if !self.is_master(&from) {
            return;
        }
        let implicit = self.config.implicit_acknowledgements;
        self.callback(ctx, |s, d| {
            s.status_update(d, &m.status);
            if implicit {
                d.acknowledge(&m.status);
            }
        });
    }
}

impl<S: Scheduler> Handle<AgentLost> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: AgentLost) {
        if self.is_master(&from) {
            self.callback(ctx, |s, d| s.agent_lost(d, &m.agent_id));
        }
    }
}

impl<S: Scheduler> Handle<ExecutorLost> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ExecutorLost) {
        if self.is_master(&from) {
            self.callback(ctx, |s, d| s.executor_lost(d, &m.executor_id, &m.agent_id, m.status));
        }
    }
}

impl<S: Scheduler> Handle<ExecutorToFrameworkMessage> for SchedulerProcess<S> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ExecutorToFrameworkMessage) {
        if self.is_master(&from) {
            self.callback(ctx, |s, d| s.framework_message(d, &m.executor_id, &m.agent_id, m.data));
        }
    }
}

/// A started scheduler.
pub struct SchedulerHandle<S: Scheduler> {
    /// The driver process (query it to read the scheduler's state).
    pub process: ProcessRef<SchedulerProcess<S>>,
    status: watch::Receiver<DriverStatus>,
}

impl<S: Scheduler> std::fmt::Debug for SchedulerHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle").field("process", self.process.upid()).finish()
    }
}

impl<S: Scheduler> SchedulerHandle<S> {
    /// Waits until the driver stops or aborts.
    pub async fn wait(&self) -> DriverStatus {
        let mut status = self.status.clone();
        loop {
            let current = status.borrow().clone();
            if current != DriverStatus::Running {
                return current;
            }
            if status.changed().await.is_err() {
                return DriverStatus::Stopped;
            }
        }
    }
}

/// Starts a scheduler driver process named `name` on `node`.
pub fn start_scheduler<S: Scheduler>(
    node: &Node,
    name: &str,
    config: SchedulerConfig,
    scheduler: S,
) -> anyhow::Result<SchedulerHandle<S>> {
    let (status, receiver) = watch::channel(DriverStatus::Running);
    let process = SchedulerProcess {
        scheduler,
        driver: SchedulerDriver {
            framework_id: config.framework.id.clone(),
            master: config.master.clone(),
            outbox: Vec::new(),
            stop: None,
        },
        backoff: config.subscribe_backoff,
        config,
        connected: false,
        ever_connected: false,
        started: std::time::Instant::now(),
        status,
    };
    let process = node.spawn(name, process)?;
    Ok(SchedulerHandle { process, status: receiver })
}
