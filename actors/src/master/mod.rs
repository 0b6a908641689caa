//! The master: admits agents, subscribes frameworks, turns the allocator's
//! decisions into offers, validates launches, tracks tasks and forwards their
//! status updates, reconciles, and watches agents with pings and links.
//!
//! Lifecycle: `Recovering` (reading the registry) -> `Serving`. Messages that arrive
//! while recovering are dropped and counted; senders retry. Registry writes are
//! queued and applied one at a time, in order, fenced by the master's term.
//!
//! Files: `frameworks.rs` (subscribe, failover, teardown), `offers.rs` (allocations,
//! accept, decline, rescind), `agents.rs` (registration, pings, disconnects),
//! `tasks.rs` (status updates, kills, reconciliation, framework messages),
//! `http.rs` (/state, /metrics), `state.rs` (the data and pure rules).

mod agents;
mod frameworks;
pub mod http;
mod offers;
mod roles;
pub mod state;
mod tasks;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use keel_kernel::{Handlers, Message, Node, Process, ProcessContext, ProcessRef, Upid};

use crate::allocator::{Allocator, AllocatorConfig, ALLOCATOR_NAME};
use crate::ids::{AgentId, FrameworkId, IdGenerator, OfferId};
use crate::messages::agent::*;
use crate::messages::common::*;
use crate::messages::scheduler::*;
use crate::registry::{Operation, QuotaRecord, Registry, RegistryError, RegistryState, Term};
use crate::task::{FrameworkInfo, Task};

use self::state::{AgentState, FrameworkState, OfferState};

/// Name of the master process.
pub const MASTER_NAME: &str = "master";

/// How the master behaves.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Time between pings to each agent (Mesos: 15 s).
    pub agent_ping_timeout: Duration,
    /// Unanswered pings after which an agent is unreachable (Mesos: 5).
    pub max_agent_ping_timeouts: u32,
    /// Outstanding offers are rescinded after this long; never when `None`.
    pub offer_timeout: Option<Duration>,
    /// Terminal tasks kept per framework for /state.
    pub max_completed_tasks_per_framework: usize,
    /// Removed frameworks kept for /state.
    pub max_completed_frameworks: usize,
    /// The allocator's settings.
    pub allocator: AllocatorConfig,
    /// The leadership term the master writes the registry with.
    pub term: Term,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            agent_ping_timeout: Duration::from_secs(15),
            max_agent_ping_timeouts: 5,
            offer_timeout: None,
            max_completed_tasks_per_framework: 1000,
            max_completed_frameworks: 50,
            allocator: AllocatorConfig::default(),
            // Above any term a previous run wrote (see the registry's fencing).
            term: Term((crate::task::now_secs() * 1000.0) as u64),
        }
    }
}

/// Counters the master exposes under `master/*`.
#[derive(Debug, Default, Clone)]
pub struct MasterMetrics {
    /// Messages dropped because they came from an unknown or wrong sender.
    pub invalid_senders: u64,
    /// Framework calls naming an unknown framework.
    pub unknown_framework_calls: u64,
    /// Status updates for unknown tasks or agents.
    pub invalid_status_updates: u64,
    /// Status updates forwarded to schedulers.
    pub status_updates_forwarded: u64,
    /// Acknowledgements for unknown updates or agents.
    pub invalid_acknowledgements: u64,
    /// Kills of unknown tasks.
    pub unknown_task_kills: u64,
    /// Messages dropped while the master was recovering.
    pub dropped_while_recovering: u64,
    /// Tasks launched.
    pub tasks_launched: u64,
    /// Tasks refused at launch.
    pub tasks_refused: u64,
    /// Reserve/unreserve operations refused.
    pub invalid_operations: u64,
    /// Terminal states reached, by state name.
    pub terminal: BTreeMap<&'static str, u64>,
    /// Offers sent.
    pub offers_sent: u64,
    /// Offers declined.
    pub offers_declined: u64,
    /// Offers rescinded.
    pub offers_rescinded: u64,
    /// Agents that became unreachable.
    pub agents_unreachable: u64,
    /// Frameworks removed (teardown or failover timeout).
    pub frameworks_removed: u64,
    /// Registry writes that failed.
    pub registry_write_failures: u64,
}

type RegistryCallback =
    Box<dyn FnOnce(&mut Master, &mut ProcessContext<'_, Master>, Result<(), RegistryError>)>;

/// The master process.
pub struct Master {
    config: MasterConfig,
    registry: Arc<dyn Registry>,
    recovered: bool,
    allocator: Upid,
    ids: IdGenerator,
    frameworks: HashMap<FrameworkId, FrameworkState>,
    completed_frameworks: VecDeque<(FrameworkInfo, Vec<Task>)>,
    removed_framework_ids: HashSet<FrameworkId>,
    agents: HashMap<AgentId, AgentState>,
    agents_by_pid: HashMap<Upid, AgentId>,
    admitting: HashSet<Upid>,
    /// Agents admitted in the registry (as recovered), for choosing admit vs readmit.
    registry_agents: HashSet<AgentId>,
    unreachable_agents: BTreeMap<AgentId, f64>,
    gone_agents: BTreeMap<AgentId, f64>,
    offers: HashMap<OfferId, OfferState>,
    registry_queue: VecDeque<(Vec<Operation>, RegistryCallback)>,
    registry_busy: bool,
    metrics: MasterMetrics,
    started_secs: f64,
    /// Role weights, as in the registry.
    weights: BTreeMap<String, f64>,
    /// Role quotas, as in the registry.
    quotas: BTreeMap<String, QuotaRecord>,
}

/// A running master: its node, its process and its allocator.
#[derive(Clone)]
pub struct MasterHandle {
    /// The master process.
    pub master: ProcessRef<Master>,
    /// The allocator process.
    pub allocator: ProcessRef<Allocator>,
}

impl std::fmt::Debug for MasterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterHandle").field("master", self.master.upid()).finish()
    }
}

/// Starts a master and its allocator on `node`, and adds the master's HTTP
/// endpoints to the node's port.
pub fn start(node: &Node, config: MasterConfig, registry: Arc<dyn Registry>) -> anyhow::Result<MasterHandle> {
    let master_upid = node.upid(MASTER_NAME)?;
    let allocator = node.spawn(ALLOCATOR_NAME, Allocator::new(master_upid, config.allocator.clone()))?;
    let prefix = format!("{}-{:04x}", chrono_like_date(), fastrand::u16(..));
    let master = Master {
        allocator: allocator.upid().clone(),
        config,
        registry,
        recovered: false,
        ids: IdGenerator::new(prefix),
        frameworks: HashMap::new(),
        completed_frameworks: VecDeque::new(),
        removed_framework_ids: HashSet::new(),
        agents: HashMap::new(),
        agents_by_pid: HashMap::new(),
        admitting: HashSet::new(),
        registry_agents: HashSet::new(),
        unreachable_agents: BTreeMap::new(),
        gone_agents: BTreeMap::new(),
        offers: HashMap::new(),
        registry_queue: VecDeque::new(),
        registry_busy: false,
        metrics: MasterMetrics::default(),
        started_secs: crate::task::now_secs(),
        weights: BTreeMap::new(),
        quotas: BTreeMap::new(),
    };
    let master = node.spawn(MASTER_NAME, master)?;
    node.add_routes(http::routes(master.clone(), allocator.clone()));
    Ok(MasterHandle { master, allocator })
}

/// `YYYYMMDD-HHMMSS` of now (UTC), for id prefixes like Mesos's.
fn chrono_like_date() -> String {
    let t = keel_kernel::clock::UtcTime::from_system(std::time::SystemTime::now());
    format!("{:04}{:02}{:02}-{:02}{:02}{:02}", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

impl Process for Master {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            // Schedulers.
            .install::<SubscribeFramework>()
            .install::<AcceptOffers>()
            .install::<DeclineOffers>()
            .install::<ReviveOffers>()
            .install::<SuppressOffers>()
            .install::<KillTask>()
            .install::<StatusUpdateAcknowledgement>()
            .install::<ReconcileTasks>()
            .install::<TeardownFramework>()
            .install::<DeactivateFramework>()
            .install::<FrameworkToExecutorMessage>()
            // Agents.
            .install::<RegisterAgent>()
            .install::<ReregisterAgent>()
            .install::<Pong>()
            .install::<UnregisterAgent>()
            .install::<StatusUpdate>()
            .install::<ExitedExecutor>()
            .install::<ExecutorToFrameworkMessage>()
            // Allocator and timers.
            .install::<crate::allocator::messages::Allocated>()
            .install::<agents::PingTick>()
            .install::<offers::OfferTimeout>()
            .install::<frameworks::FailoverTimeout>()
            .install::<crate::allocator::messages::OverLimit>();
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let recover = self.registry.recover(self.config.term);
        ctx.spawn(recover, |master, ctx, result: Result<RegistryState, RegistryError>| match result {
            Ok(state) => master.recover(ctx, state),
            Err(e) => {
                tracing::error!(error = %e, "cannot recover the registry; the master stops");
                ctx.stop();
            }
        });
        ctx.delay(self.config.agent_ping_timeout, agents::PingTick {});
        tracing::info!(master = %ctx.upid(), registry = %self.registry.describe(), "master started");
    }

    fn exited(&mut self, ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        if let Some(agent_id) = self.agents_by_pid.get(&upid).cloned() {
            self.agent_disconnected(ctx, &agent_id);
        }
        let frameworks: Vec<FrameworkId> = self
            .frameworks
            .iter()
            .filter(|(_, f)| f.pid.as_ref() == Some(&upid) && f.connected)
            .map(|(id, _)| id.clone())
            .collect();
        for framework_id in frameworks {
            self.framework_disconnected(ctx, &framework_id);
        }
    }
}

impl Master {
    fn recover(&mut self, ctx: &mut ProcessContext<'_, Self>, state: RegistryState) {
        // Agents in the registry must reregister; until then they are remembered so
        // their reregistration is accepted. (Marking the missing ones unreachable
        // after a timeout belongs to the high-availability issue.)
        for (agent_id, record) in &state.unreachable {
            self.unreachable_agents.insert(agent_id.clone(), record.since_secs);
        }
        for (agent_id, record) in &state.gone {
            self.gone_agents.insert(agent_id.clone(), record.since_secs);
        }
        self.registry_agents = state.agents.keys().cloned().collect();
        self.weights = state.weights.clone();
        self.quotas = state.quotas.clone();
        let weights: Vec<(String, f64)> = self.weights.iter().map(|(r, w)| (r.clone(), *w)).collect();
        if !weights.is_empty() {
            self.allocator(ctx, crate::allocator::messages::SetWeights { weights });
        }
        for (role, quota) in &self.quotas {
            let message = crate::allocator::messages::SetQuota {
                role: role.clone(),
                guarantee: quota.guarantee.clone(),
                limit: quota.limit.clone(),
            };
            self.allocator(ctx, message);
        }

        self.recovered = true;
        tracing::info!(
            agents = state.agents.len(),
            unreachable = state.unreachable.len(),
            frameworks = state.frameworks.len(),
            "master recovered the registry"
        );
    }

    /// Whether the master can serve; counts the drop when it cannot.
    fn serving(&mut self, kind: &str) -> bool {
        if !self.recovered {
            self.metrics.dropped_while_recovering += 1;
            tracing::debug!(kind, "dropping a message while recovering");
        }
        self.recovered
    }

    /// Queues a registry transaction; `then` runs with its result, in order.
    fn persist(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        operations: Vec<Operation>,
        then: impl FnOnce(&mut Master, &mut ProcessContext<'_, Master>, Result<(), RegistryError>) + 'static,
    ) {
        self.registry_queue.push_back((operations, Box::new(then)));
        self.next_registry_write(ctx);
    }

    fn next_registry_write(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        if self.registry_busy {
            return;
        }
        let Some((operations, then)) = self.registry_queue.pop_front() else { return };
        self.registry_busy = true;
        let write = self.registry.apply(self.config.term, operations);
        ctx.spawn(write, move |master, ctx, result| {
            master.registry_busy = false;
            let result = result.map(|_version| ());
            if let Err(e) = &result {
                master.metrics.registry_write_failures += 1;
                tracing::warn!(error = %e, "registry write failed");
            }
            then(master, ctx, result);
            master.next_registry_write(ctx);
        });
    }

    /// Sends to the allocator.
    fn allocator<M: Message>(&self, ctx: &ProcessContext<'_, Self>, message: M) {
        ctx.send(&self.allocator, message);
    }

    /// The metrics snapshot, Mesos-style keys.
    pub fn metrics_snapshot(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: f64| {
            out.insert(k.to_string(), v);
        };
        put("master/elected", if self.recovered { 1.0 } else { 0.0 });
        put("master/uptime_secs", crate::task::now_secs() - self.started_secs);
        put("master/slaves_active", self.agents.values().filter(|a| a.connected).count() as f64);
        put("master/slaves_connected", self.agents.values().filter(|a| a.connected).count() as f64);
        put("master/slaves_disconnected", self.agents.values().filter(|a| !a.connected).count() as f64);
        put("master/slaves_unreachable", self.unreachable_agents.len() as f64);
        put("master/frameworks_active", self.frameworks.values().filter(|f| f.connected).count() as f64);
        put("master/frameworks_connected", self.frameworks.values().filter(|f| f.connected).count() as f64);
        put(
            "master/frameworks_disconnected",
            self.frameworks.values().filter(|f| !f.connected).count() as f64,
        );
        put("master/outstanding_offers", self.offers.len() as f64);
        let mut by_state: BTreeMap<&'static str, u64> = BTreeMap::new();
        for framework in self.frameworks.values() {
            for task in framework.tasks.values() {
                *by_state.entry(task.state.name()).or_default() += 1;
            }
            *by_state.entry("TASK_UNREACHABLE").or_default() += framework.unreachable_tasks.len() as u64;
        }
        for state in ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_UNREACHABLE"] {
            let key = format!("master/tasks_{}", state.trim_start_matches("TASK_").to_lowercase());
            put(&key, *by_state.get(state).unwrap_or(&0) as f64);
        }
        for state in [
            "TASK_FINISHED",
            "TASK_FAILED",
            "TASK_KILLED",
            "TASK_LOST",
            "TASK_ERROR",
            "TASK_DROPPED",
            "TASK_GONE",
        ] {
            let key = format!("master/tasks_{}", state.trim_start_matches("TASK_").to_lowercase());
            put(&key, *self.metrics.terminal.get(state).unwrap_or(&0) as f64);
        }
        let m = &self.metrics;
        put("master/invalid_senders", m.invalid_senders as f64);
        put("master/invalid_framework_calls", m.unknown_framework_calls as f64);
        put("master/invalid_status_updates", m.invalid_status_updates as f64);
        put("master/valid_status_updates", m.status_updates_forwarded as f64);
        put("master/invalid_status_update_acknowledgements", m.invalid_acknowledgements as f64);
        put("master/invalid_kill_task", m.unknown_task_kills as f64);
        put("master/dropped_messages_while_recovering", m.dropped_while_recovering as f64);
        put("master/tasks_launched", m.tasks_launched as f64);
        put("master/tasks_refused", m.tasks_refused as f64);
        put("master/invalid_operations", m.invalid_operations as f64);
        put("master/offers_sent", m.offers_sent as f64);
        put("master/offers_declined", m.offers_declined as f64);
        put("master/offers_rescinded", m.offers_rescinded as f64);
        put("master/slave_unreachable_completed", m.agents_unreachable as f64);
        put("master/frameworks_removed", m.frameworks_removed as f64);
        put("master/registrar/write_failures", m.registry_write_failures as f64);
        let total: crate::resources::Resources = self.agents.values().map(|a| a.info.resources.clone()).sum();
        let used: crate::resources::Resources = self.agents.values().map(|a| a.used.clone()).sum();
        put("master/cpus_total", total.cpus());
        put("master/cpus_used", used.cpus());
        put("master/mem_total", total.mem_mb());
        put("master/mem_used", used.mem_mb());
        put("master/disk_total", total.disk_mb());
        put("master/disk_used", used.disk_mb());
        out
    }
}
