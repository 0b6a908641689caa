//! The master process: a shell around the pure [`keel_core::master::Master`]. It
//! feeds the core every message, link exit, timer, registry result, allocator
//! answer and operator request, and executes the effects in order: sends, links,
//! timers, registry writes (one at a time, in order), allocator calls, answers. A
//! registry failure makes the core abort: the process stops and `on_abort` runs
//! (`keel master` exits).
//!
//! The core sits behind a mutex shared with the HTTP endpoints (`http.rs`), which
//! read it directly, so `/state` and `/metrics` answer however long the mailbox is.

pub mod ha;
pub mod http;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::master::{
    Effect, Input, Master as Core, MasterConfig as CoreConfig, OperatorCall, OperatorError, RegistryFailure,
    RequestId, WriteId,
};
use keel_kernel::{Handle, Handlers, Node, Process, ProcessContext, ProcessRef, Upid};
use keel_proto::messages::agent::*;
use keel_proto::messages::common::*;
use keel_proto::messages::scheduler::*;
use keel_proto::messages::Msg;
use keel_proto::registry::{Operation, Term};
use tokio::sync::oneshot;

use crate::allocator::messages::{Allocated, AllocatorEvent, AvailableUpdated, OverLimit};
use crate::allocator::{lock, Allocator, AllocatorConfig, SendAllocator, SharedAllocator, ALLOCATOR_NAME};
use crate::registry::Registry;
use crate::shell::{self, CoreTimer, ShellTimers};

pub use keel_core::master::{AgentState, FrameworkState, MasterMetrics, OfferState, Phase};

/// Name of the master process.
pub const MASTER_NAME: &str = "master";

/// What runs when the master aborts (it is given the reason).
pub type AbortHook = Arc<dyn Fn(&str) + Send + Sync>;

/// How the master behaves.
#[derive(Clone)]
pub struct MasterConfig {
    /// Time between pings to each agent (Mesos: 15 s).
    pub agent_ping_timeout: Duration,
    /// Unanswered pings after which an agent is unreachable (Mesos: 5).
    pub max_agent_ping_timeouts: u32,
    /// How long agents in the registry have to reregister after a master restart.
    pub agent_reregister_timeout: Duration,
    /// A task STAGING this long is checked with its agent.
    pub launch_check_timeout: Duration,
    /// Outstanding offers are rescinded after this long; never when `None`.
    pub offer_timeout: Option<Duration>,
    /// Terminal tasks kept per framework for /state.
    pub max_completed_tasks_per_framework: usize,
    /// Removed frameworks kept for /state.
    pub max_completed_frameworks: usize,
    /// The allocator's settings.
    pub allocator: AllocatorConfig,
    /// Called when the master aborts (a registry write failed); `keel master` exits.
    pub on_abort: Option<AbortHook>,
    /// The epoch this master was elected with (high availability): it recovers the
    /// registry at that term instead of claiming the next one.
    pub elected_term: Option<Term>,
}

impl std::fmt::Debug for MasterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterConfig")
            .field("agent_ping_timeout", &self.agent_ping_timeout)
            .field("max_agent_ping_timeouts", &self.max_agent_ping_timeouts)
            .field("offer_timeout", &self.offer_timeout)
            .finish()
    }
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            agent_ping_timeout: Duration::from_secs(15),
            max_agent_ping_timeouts: 5,
            agent_reregister_timeout: Duration::from_secs(600),
            launch_check_timeout: Duration::from_secs(60),
            offer_timeout: None,
            max_completed_tasks_per_framework: 1000,
            max_completed_frameworks: 50,
            allocator: AllocatorConfig::default(),
            on_abort: None,
            elected_term: None,
        }
    }
}

/// The master's core, shared between its process and its HTTP endpoints.
pub type SharedMaster = Arc<Mutex<Core>>;

/// The master process.
pub struct Master {
    core: SharedMaster,
    registry: Arc<dyn Registry>,
    allocator: Upid,
    timers: ShellTimers,
    writes: VecDeque<(WriteId, Term, Vec<Operation>)>,
    writing: bool,
    requests: HashMap<RequestId, oneshot::Sender<Result<(), OperatorError>>>,
    next_request: RequestId,
    on_abort: Option<AbortHook>,
    elected_term: Option<Term>,
    /// HTTP scheduler subscriptions (Mesos's v1 scheduler API).
    v1: Arc<crate::v1::scheduler::SchedulerHub>,
    /// Operator API event subscribers.
    events: Arc<crate::v1::events::OperatorEvents>,
}

/// A running master: its process, its allocator, and their shared state.
#[derive(Clone)]
pub struct MasterHandle {
    /// The master process.
    pub master: ProcessRef<Master>,
    /// The allocator process.
    pub allocator: ProcessRef<Allocator>,
    /// The master's core.
    pub core: SharedMaster,
    /// The allocator's state.
    pub allocator_state: SharedAllocator,
    /// The registry, as `/state` names it.
    pub registry: String,
    /// HTTP scheduler subscriptions (Mesos's v1 scheduler API).
    pub v1: Arc<crate::v1::scheduler::SchedulerHub>,
    /// Operator API event subscribers.
    pub events: Arc<crate::v1::events::OperatorEvents>,
}

impl std::fmt::Debug for MasterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterHandle").field("master", self.master.upid()).finish()
    }
}

impl MasterHandle {
    /// Reads the master's core.
    pub fn read<R>(&self, f: impl FnOnce(&Core) -> R) -> R {
        f(&lock(&self.core))
    }
}

/// `YYYYMMDD-HHMMSS` of now (UTC) and a random number: the prefix of a master's ids,
/// like Mesos's.
fn id_prefix() -> String {
    let t = keel_kernel::clock::UtcTime::from_system(std::time::SystemTime::now());
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{:04x}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        fastrand::u16(..)
    )
}

/// Starts a master and its allocator on `node`, and adds the master's HTTP
/// endpoints to the node's port.
pub fn start(node: &Node, config: MasterConfig, registry: Arc<dyn Registry>) -> anyhow::Result<MasterHandle> {
    let handle = start_processes(node, config, registry)?;
    node.add_routes(http::routes(handle.clone()));
    Ok(handle)
}

/// Starts a master and its allocator on `node`, without HTTP endpoints (an elected
/// master's endpoints are already there, serving its standby view until now).
pub fn start_processes(
    node: &Node,
    config: MasterConfig,
    registry: Arc<dyn Registry>,
) -> anyhow::Result<MasterHandle> {
    let upid = node.upid(MASTER_NAME)?;
    let prefix = id_prefix();
    let v1 = crate::v1::scheduler::SchedulerHub::new(node.clone(), upid.clone(), &prefix);
    let events = Arc::new(crate::v1::events::OperatorEvents::default());
    let allocator_process = Allocator::new(upid.clone(), config.allocator.clone());
    let allocator_state = allocator_process.shared();
    let allocator = node.spawn(ALLOCATOR_NAME, allocator_process)?;
    let mut core_config = CoreConfig::new(upid, prefix);
    core_config.agent_ping_timeout = config.agent_ping_timeout;
    core_config.max_agent_ping_timeouts = config.max_agent_ping_timeouts;
    core_config.agent_reregister_timeout = config.agent_reregister_timeout;
    core_config.launch_check_timeout = config.launch_check_timeout;
    core_config.offer_timeout = config.offer_timeout;
    core_config.max_completed_tasks_per_framework = config.max_completed_tasks_per_framework;
    core_config.max_completed_frameworks = config.max_completed_frameworks;
    core_config.seed = fastrand::u64(..);
    let core = Arc::new(Mutex::new(Core::new(core_config)));
    let registry_name = registry.describe();
    let process = Master {
        core: core.clone(),
        registry,
        allocator: allocator.upid().clone(),
        timers: ShellTimers::default(),
        writes: VecDeque::new(),
        writing: false,
        requests: HashMap::new(),
        next_request: 1,
        on_abort: config.on_abort,
        elected_term: config.elected_term,
        v1: v1.clone(),
        events: events.clone(),
    };
    let master = node.spawn(MASTER_NAME, process)?;
    Ok(MasterHandle { master, allocator, core, allocator_state, registry: registry_name, v1, events })
}

impl Master {
    fn feed(&mut self, ctx: &mut ProcessContext<'_, Self>, input: Input) {
        let effects = {
            let mut core = lock(&self.core);
            let effects = core.handle(shell::now_secs(), input);
            // Operator event subscribers see each input's changes (no-op without any).
            self.events.observe(&core);
            effects
        };
        for effect in effects {
            self.execute(ctx, effect);
        }
    }

    fn feed_message(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, message: Msg) {
        self.feed(ctx, Input::Message { from, message });
    }

    fn execute(&mut self, ctx: &mut ProcessContext<'_, Self>, effect: Effect) {
        match effect {
            // HTTP schedulers' pseudo-UPIDs are streams, not processes (see `crate::v1`).
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
                if !self.v1.unlink(&to) {
                    ctx.unlink(&to);
                }
            }
            Effect::SetTimer(timer) => self.timers.set(ctx, timer),
            Effect::CancelTimer(id) => self.timers.cancel(ctx, id),
            Effect::Recover => {
                let claim = match self.elected_term {
                    // Elected: the term is the election's epoch, fenced by etcd.
                    Some(term) => {
                        let recover = self.registry.recover(term);
                        Box::pin(async move { recover.await.map(|state| (term, state)) })
                            as keel_kernel::transport::BoxFuture<'static, _>
                    }
                    None => self.registry.claim_next(),
                };
                ctx.spawn(claim, |master: &mut Master, ctx, result| {
                    let result = result.map_err(|e| RegistryFailure(e.to_string()));
                    master.feed(ctx, Input::Recovered(result));
                });
            }
            Effect::Persist { write, term, operations } => {
                self.writes.push_back((write, term, operations));
                self.next_write(ctx);
            }
            Effect::Allocator(call) => {
                let allocator = self.allocator.clone();
                call.visit(SendAllocator { ctx, to: &allocator });
            }
            Effect::Answer { request, result } => {
                if let Some(reply) = self.requests.remove(&request) {
                    let _ = reply.send(result);
                }
            }
            Effect::Abort { reason } => {
                tracing::error!(%reason, "the master stops serving");
                for (_, reply) in self.requests.drain() {
                    let _ =
                        reply.send(Err(OperatorError::Unavailable(format!("the master aborted: {reason}"))));
                }
                if let Some(hook) = &self.on_abort {
                    hook(&reason);
                }
                ctx.stop();
            }
        }
    }

    /// Writes go to the registry one at a time, in order.
    fn next_write(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        if self.writing {
            return;
        }
        let Some((write, term, operations)) = self.writes.pop_front() else { return };
        self.writing = true;
        let apply = self.registry.apply(term, operations);
        ctx.spawn(apply, move |master: &mut Master, ctx, result| {
            master.writing = false;
            let result = result.map(|_version| ()).map_err(|e| RegistryFailure(e.to_string()));
            master.feed(ctx, Input::Persisted { write, result });
            master.next_write(ctx);
        });
    }

    /// Hands an operator request to the core; the answer arrives on the receiver.
    pub fn operator(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        call: OperatorCall,
    ) -> oneshot::Receiver<Result<(), OperatorError>> {
        let (reply, answer) = oneshot::channel();
        let request = self.next_request;
        self.next_request += 1;
        self.requests.insert(request, reply);
        self.feed(ctx, Input::Operator { request, call });
        answer
    }
}

crate::feed_messages!(
    Master,
    feed_message,
    [
        // Schedulers.
        SubscribeFramework,
        AcceptOffers,
        DeclineOffers,
        ReviveOffers,
        SuppressOffers,
        KillTask,
        StatusUpdateAcknowledgement,
        ReconcileTasks,
        TeardownFramework,
        DeactivateFramework,
        FrameworkToExecutorMessage,
        ShutdownExecutor,
        // Agents.
        RegisterAgent,
        ReregisterAgent,
        Pong,
        UnregisterAgent,
        StatusUpdate,
        ExitedExecutor,
        ExecutorToFrameworkMessage,
        LaunchesChecked,
    ]
);

macro_rules! allocator_events {
    ($($m:ident),*) => {
        $(
            impl Handle<$m> for Master {
                fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: $m) {
                    if from != self.allocator {
                        tracing::warn!(%from, "ignoring an allocator message from another process");
                        return;
                    }
                    self.feed(ctx, Input::Allocator(AllocatorEvent::from(m)));
                }
            }
        )*
    };
}

allocator_events!(Allocated, OverLimit, AvailableUpdated);

impl Process for Master {
    fn install(handlers: &mut Handlers<Self>) {
        Self::install_messages(handlers);
        handlers
            .install::<Allocated>()
            .install::<OverLimit>()
            .install::<AvailableUpdated>()
            .install::<CoreTimer>()
            .install::<crate::v1::StreamClosed>();
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        tracing::info!(master = %ctx.upid(), registry = %self.registry.describe(), "master started");
        self.feed(ctx, Input::Start);
    }

    fn exited(&mut self, ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        self.feed(ctx, Input::Exited(upid));
    }
}

/// An HTTP scheduler's stream ended: its pseudo-UPID exited.
impl Handle<crate::v1::StreamClosed> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _: crate::v1::StreamClosed) {
        if self.v1.is_pseudo(&from) {
            self.feed(ctx, Input::Exited(from));
        }
    }
}

impl Handle<CoreTimer> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: CoreTimer) {
        if let Some(id) = self.timers.fired(ctx, &from, &m) {
            self.feed(ctx, Input::Timer(id));
        }
    }
}
