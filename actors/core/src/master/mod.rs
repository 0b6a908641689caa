//! The master's decisions: admits agents, subscribes frameworks, turns the
//! allocator's decisions into offers, validates launches, tracks tasks and their
//! status updates, reconciles, and watches agents with pings and links.
//!
//! ```text
//! Starting --Start--> Recovering --Recovered--> Serving --a registry write fails--> Aborted
//! ```
//! Messages that arrive before `Serving` are dropped and counted (senders retry).
//! Whatever must survive a master restart is persisted first (`Effect::Persist`),
//! and acted on and told only when the write's result comes back (`Input::Persisted`);
//! a failed write aborts the master, as Mesos's registrar does: its successor
//! recovers from what is durable.
//!
//! Files: `agents.rs` (registration, pings, disconnects, leaving), `frameworks.rs`
//! (subscribe, failover, teardown), `offers.rs` (allocations, accept, decline,
//! rescind), `tasks.rs` (status updates, kills, reconciliation, launch checks),
//! `operator.rs` (weights, quotas, reservations), `metrics.rs`, `state.rs` (the
//! data and the pure rules).

mod agents;
mod frameworks;
mod metrics;
mod offers;
mod operator;
pub mod state;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use keel_message::Upid;
use keel_proto::ids::{AgentId, FrameworkId, IdGenerator, OfferId};
use keel_proto::messages::agent::*;
use keel_proto::messages::scheduler::*;
use keel_proto::messages::Msg;
use keel_proto::registry::{AgentRecord, Operation, QuotaRecord, RegistryState, Term};
use keel_proto::resources::Resources;
use keel_proto::task::{FrameworkInfo, Task};

use crate::allocator::messages::{AllocatorCall, AllocatorEvent};
use crate::timers::{SetTimer, TimerId, Timers};

pub use metrics::MasterMetrics;
pub use operator::{OperatorCall, OperatorError};
pub use state::{AgentState, FrameworkState, OfferState};

/// How the master behaves.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The master's own UPID (what it tells schedulers).
    pub upid: Upid,
    /// The prefix of the ids it hands out (Mesos: the master's start time and a
    /// random number).
    pub id_prefix: String,
    /// Time between pings to each agent (Mesos: 15 s).
    pub agent_ping_timeout: Duration,
    /// Unanswered pings after which an agent is unreachable (Mesos: 5).
    pub max_agent_ping_timeouts: u32,
    /// How long an agent in the registry has to reregister after this master
    /// recovered before it is marked unreachable (Mesos: 10 minutes).
    pub agent_reregister_timeout: Duration,
    /// A task still STAGING this long after its launch is checked with its agent.
    pub launch_check_timeout: Duration,
    /// Outstanding offers are rescinded after this long; never when `None`.
    pub offer_timeout: Option<Duration>,
    /// Terminal tasks kept per framework for /state and reconciliation.
    pub max_completed_tasks_per_framework: usize,
    /// Removed frameworks kept for /state.
    pub max_completed_frameworks: usize,
    /// Seed of the master's randomness (update ids of its own statuses).
    pub seed: u64,
}

impl MasterConfig {
    /// Mesos-like defaults for a master at `upid`.
    pub fn new(upid: Upid, id_prefix: impl Into<String>) -> MasterConfig {
        MasterConfig {
            upid,
            id_prefix: id_prefix.into(),
            agent_ping_timeout: Duration::from_secs(15),
            max_agent_ping_timeouts: 5,
            agent_reregister_timeout: Duration::from_secs(600),
            launch_check_timeout: Duration::from_secs(60),
            offer_timeout: None,
            max_completed_tasks_per_framework: 1000,
            max_completed_frameworks: 50,
            seed: 0,
        }
    }
}

/// Where the master is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, not started.
    Starting,
    /// Reading the registry.
    Recovering,
    /// Serving.
    Serving,
    /// Stopped serving after a registry failure.
    Aborted,
}

/// A registry write the master waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// An operator request the master answers once.
pub type RequestId = u64;

/// Why a registry call failed, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryFailure(pub String);

/// One input of the master.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // moved once, never stored in bulk
pub enum Input {
    /// The master starts: it asks for the registry.
    Start,
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
    /// The registry was claimed and read: the term to write with and the state.
    Recovered(Result<(Term, RegistryState), RegistryFailure>),
    /// A registry write finished.
    Persisted {
        /// The write.
        write: WriteId,
        /// Its outcome.
        result: Result<(), RegistryFailure>,
    },
    /// The allocator's answer.
    Allocator(AllocatorEvent),
    /// An operator's request (HTTP).
    Operator {
        /// The id the answer names.
        request: RequestId,
        /// What is asked.
        call: OperatorCall,
    },
}

/// One effect of the master, for its shell to execute in order.
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
    /// Link to a process: `Input::Exited` follows when it goes away.
    Link(Upid),
    /// Remove a link.
    Unlink(Upid),
    /// Fire this timer back later.
    SetTimer(SetTimer),
    /// A timer is no longer needed (a shell may ignore this: stale timers fire
    /// into nothing).
    CancelTimer(TimerId),
    /// Claim the registry and read it; answer with `Input::Recovered`.
    Recover,
    /// Apply these operations atomically with the master's term; answer with
    /// `Input::Persisted`. Writes are applied one at a time, in order.
    Persist {
        /// The write, named in the answer.
        write: WriteId,
        /// The term (fencing).
        term: Term,
        /// The operations.
        operations: Vec<Operation>,
    },
    /// Tell the allocator.
    Allocator(AllocatorCall),
    /// Answer an operator request.
    Answer {
        /// The request.
        request: RequestId,
        /// The outcome.
        result: Result<(), OperatorError>,
    },
    /// Stop serving: a registry call failed.
    Abort {
        /// Why.
        reason: String,
    },
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

    fn link(&mut self, to: &Upid) {
        self.effects.push(Effect::Link(to.clone()));
    }

    fn unlink(&mut self, to: &Upid) {
        self.effects.push(Effect::Unlink(to.clone()));
    }

    fn allocator(&mut self, call: impl Into<AllocatorCall>) {
        self.effects.push(Effect::Allocator(call.into()));
    }
}

/// What a master timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    /// The ping round (also resends launch checks).
    Ping,
    /// An offer's timeout.
    Offer(OfferId),
    /// A disconnected framework's failover timeout.
    Failover(FrameworkId),
    /// Agents in the registry that have not reregistered since recovery.
    Reregister,
}

/// A reregistration waiting for its admission, with the tasks its frameworks were
/// told are LOST.
pub(crate) type Reregistration = (Box<ReregisterAgent>, BTreeSet<(FrameworkId, keel_proto::ids::TaskId)>);

/// What to do when a registry write succeeds.
#[derive(Debug, Clone)]
enum Pending {
    /// A new agent (or one unknown to this master) is admitted.
    Admit {
        pid: Upid,
        info: keel_proto::task::AgentInfo,
        version: String,
        incarnation: u64,
        /// A reregistration, with the tasks its frameworks were told are LOST.
        reregister: Option<Reregistration>,
    },
    /// An agent that is not registered (unreachable, or recovered from the
    /// registry) is marked gone: a new agent took its address.
    Forget { agent_id: AgentId, then: (Upid, Box<RegisterAgent>) },
    /// An agent is marked unreachable or gone; `then` is a registration that
    /// waits for the address to be free.
    Leave {
        agent_id: AgentId,
        leaving: state::Leaving,
        reason: keel_proto::task::TaskReason,
        then: Option<(Upid, Box<RegisterAgent>)>,
    },
    /// Agents that did not reregister in time are marked unreachable.
    Unreachable,
    /// A new framework is recorded.
    AddFramework { pid: Upid, info: FrameworkInfo, subscription: u64 },
    /// A resubscribed framework's record is updated.
    Resubscribe { pid: Upid, framework_id: FrameworkId, subscription: u64, reactivate: bool },
    /// A framework is removed.
    RemoveFramework { framework_id: FrameworkId },
    /// Weights are set.
    Weights { request: RequestId, weights: Vec<(String, f64)> },
    /// A quota is set or removed.
    Quota { request: RequestId, role: String, quota: Option<QuotaRecord> },
}

/// The master.
#[derive(Debug)]
pub struct Master {
    config: MasterConfig,
    phase: Phase,
    term: Term,
    now: f64,
    rng: fastrand::Rng,
    ids: IdGenerator,
    timers: Timers<Timer>,
    frameworks: BTreeMap<FrameworkId, FrameworkState>,
    /// Subscriptions being persisted, by scheduler.
    adding_frameworks: BTreeMap<Upid, FrameworkId>,
    completed_frameworks: VecDeque<(FrameworkInfo, Vec<Task>)>,
    removed_frameworks: BTreeSet<FrameworkId>,
    agents: BTreeMap<AgentId, AgentState>,
    agents_by_pid: BTreeMap<Upid, AgentId>,
    /// Registrations being persisted, by agent process.
    admitting: BTreeMap<Upid, u64>,
    /// Agents in the registry that have not reregistered since this master recovered.
    recovered_agents: BTreeMap<AgentId, AgentRecord>,
    unreachable_agents: BTreeMap<AgentId, f64>,
    gone_agents: BTreeMap<AgentId, f64>,
    /// Addresses of agents that are not registered but may come back (unreachable,
    /// recovered): a new agent there means they will not.
    former_pids: BTreeMap<Upid, AgentId>,
    /// Agents being marked gone because a new agent took their address.
    forgetting: BTreeSet<AgentId>,
    offers: BTreeMap<OfferId, OfferState>,
    writes: BTreeMap<WriteId, Pending>,
    next_write: u64,
    /// The ping round (pings and launches carry it).
    ping_round: u64,
    /// The next agent admission's number.
    next_session: u64,
    /// Operator reservations waiting for the allocator.
    reservations: BTreeMap<RequestId, (AgentId, Resources, Resources)>,
    metrics: MasterMetrics,
    started_secs: f64,
    weights: BTreeMap<String, f64>,
    quotas: BTreeMap<String, QuotaRecord>,
}

impl Master {
    /// A master that has not started yet.
    pub fn new(config: MasterConfig) -> Master {
        Master {
            rng: fastrand::Rng::with_seed(config.seed),
            ids: IdGenerator::new(config.id_prefix.clone()),
            config,
            phase: Phase::Starting,
            term: Term(0),
            now: 0.0,
            timers: Timers::default(),
            frameworks: BTreeMap::new(),
            adding_frameworks: BTreeMap::new(),
            completed_frameworks: VecDeque::new(),
            removed_frameworks: BTreeSet::new(),
            agents: BTreeMap::new(),
            agents_by_pid: BTreeMap::new(),
            admitting: BTreeMap::new(),
            recovered_agents: BTreeMap::new(),
            unreachable_agents: BTreeMap::new(),
            gone_agents: BTreeMap::new(),
            former_pids: BTreeMap::new(),
            forgetting: BTreeSet::new(),
            offers: BTreeMap::new(),
            writes: BTreeMap::new(),
            next_write: 1,
            ping_round: 0,
            next_session: 1,
            reservations: BTreeMap::new(),
            metrics: MasterMetrics::default(),
            started_secs: 0.0,
            weights: BTreeMap::new(),
            quotas: BTreeMap::new(),
        }
    }

    /// Takes one input at `now` (seconds since the Unix epoch, the shell's clock)
    /// and returns what to do, in order.
    pub fn handle(&mut self, now: f64, input: Input) -> Vec<Effect> {
        self.now = now;
        let mut out = Out::default();
        match input {
            Input::Start => self.start(&mut out),
            Input::Recovered(result) => self.recovered(&mut out, result),
            Input::Persisted { write, result } => self.persisted(&mut out, write, result),
            _ if self.phase != Phase::Serving => {
                self.metrics.dropped_while_not_serving += 1;
            }
            Input::Message { from, message } => self.message(&mut out, from, message),
            Input::Exited(upid) => self.exited(&mut out, upid),
            Input::Timer(id) => {
                if let Some(timer) = self.timers.fire(id) {
                    self.timer(&mut out, timer);
                }
            }
            Input::Allocator(event) => self.allocator_event(&mut out, event),
            Input::Operator { request, call } => self.operator(&mut out, request, call),
        }
        out.effects
    }

    fn message(&mut self, out: &mut Out, from: Upid, message: Msg) {
        match message {
            // Schedulers.
            Msg::SubscribeFramework(m) => self.subscribe(out, from, m),
            Msg::AcceptOffers(m) => self.accept(out, from, m),
            Msg::DeclineOffers(m) => self.decline(out, from, m),
            Msg::ReviveOffers(m) => self.revive(out, from, m),
            Msg::SuppressOffers(m) => self.suppress(out, from, m),
            Msg::KillTask(m) => self.kill(out, from, m),
            Msg::StatusUpdateAcknowledgement(m) => self.acknowledge(out, from, m),
            Msg::ReconcileTasks(m) => self.reconcile(out, from, m),
            Msg::TeardownFramework(m) => self.teardown(out, from, m),
            Msg::DeactivateFramework(m) => self.deactivate(out, from, m),
            Msg::FrameworkToExecutorMessage(m) => self.framework_to_executor(out, from, m),
            Msg::ShutdownExecutor(m) => self.shutdown_executor(out, from, m),
            // Agents.
            Msg::RegisterAgent(m) => self.register_agent(out, from, m),
            Msg::ReregisterAgent(m) => self.reregister_agent(out, from, m),
            Msg::Pong(_) => self.pong(from),
            Msg::UnregisterAgent(m) => self.unregister_agent(out, from, m),
            Msg::StatusUpdate(m) => self.status_update(out, from, m),
            Msg::ExitedExecutor(m) => self.exited_executor(out, from, m),
            Msg::ExecutorToFrameworkMessage(m) => self.executor_to_framework(out, from, m),
            Msg::LaunchesChecked(m) => self.launches_checked(out, from, m),
            other => {
                self.metrics.unexpected_messages += 1;
                tracing::debug!(kind = other.kind(), %from, "the master does not handle this kind");
            }
        }
    }

    fn timer(&mut self, out: &mut Out, timer: Timer) {
        match timer {
            Timer::Ping => self.ping_round(out),
            Timer::Offer(offer_id) => {
                self.remove_offer(out, &offer_id, true, None);
            }
            Timer::Failover(framework_id) => self.failover_expired(out, &framework_id),
            Timer::Reregister => self.reregister_timeout(out),
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

    fn start(&mut self, out: &mut Out) {
        if self.phase != Phase::Starting {
            return;
        }
        self.phase = Phase::Recovering;
        self.started_secs = self.now;
        out.effects.push(Effect::Recover);
    }

    fn recovered(&mut self, out: &mut Out, result: Result<(Term, RegistryState), RegistryFailure>) {
        if self.phase != Phase::Recovering {
            return;
        }
        let (term, state) = match result {
            Ok(recovered) => recovered,
            Err(RegistryFailure(reason)) => {
                self.abort(out, format!("cannot recover the registry: {reason}"));
                return;
            }
        };
        self.term = term;
        // Ids are unique across masters: each term has its own prefix.
        self.ids = IdGenerator::new(format!("{}-{}", self.config.id_prefix, term.0));
        for (agent_id, record) in &state.unreachable {
            self.unreachable_agents.insert(agent_id.clone(), record.since_secs);
            self.former_pids.insert(record.record.pid.clone(), agent_id.clone());
        }
        for (agent_id, record) in &state.agents {
            self.former_pids.insert(record.pid.clone(), agent_id.clone());
        }
        for (agent_id, record) in &state.gone {
            self.gone_agents.insert(agent_id.clone(), record.since_secs);
        }
        self.recovered_agents = state.agents.clone();
        self.removed_frameworks = state.removed_frameworks.keys().cloned().collect();
        self.weights = state.weights.clone();
        self.quotas = state.quotas.clone();
        if !self.weights.is_empty() {
            let weights = self.weights.iter().map(|(r, w)| (r.clone(), *w)).collect();
            out.allocator(crate::allocator::messages::SetWeights { weights });
        }
        for (role, quota) in &self.quotas {
            out.allocator(crate::allocator::messages::SetQuota {
                role: role.clone(),
                guarantee: quota.guarantee.clone(),
                limit: quota.limit.clone(),
            });
        }
        // Frameworks wait for their schedulers: at least as long as agents have to
        // come back with their tasks.
        let grace = self.config.agent_reregister_timeout;
        for (framework_id, record) in &state.frameworks {
            let mut framework = FrameworkState::new(record.info.clone(), None, false, record.registered_secs);
            framework.info.id = Some(framework_id.clone());
            let timeout = keel_proto::time::clamp_secs(record.info.failover_timeout_secs).max(grace);
            framework.failover_timer =
                Some(self.set_timer(out, timeout, Timer::Failover(framework_id.clone())));
            out.allocator(crate::allocator::messages::AddFramework {
                framework_id: framework_id.clone(),
                roles: framework.info.effective_roles(),
                used: Vec::new(),
                active: false,
            });
            self.frameworks.insert(framework_id.clone(), framework);
        }
        if !self.recovered_agents.is_empty() {
            self.set_timer(out, self.config.agent_reregister_timeout, Timer::Reregister);
        }
        self.phase = Phase::Serving;
        self.set_timer(out, self.config.agent_ping_timeout, Timer::Ping);
        tracing::info!(
            term = %term,
            agents = state.agents.len(),
            unreachable = state.unreachable.len(),
            frameworks = state.frameworks.len(),
            "master recovered the registry"
        );
    }

    /// Queues a registry transaction; `then` happens when it is durable.
    fn persist(&mut self, out: &mut Out, operations: Vec<Operation>, then: Pending) {
        let write = WriteId(self.next_write);
        self.next_write += 1;
        self.writes.insert(write, then);
        out.effects.push(Effect::Persist { write, term: self.term, operations });
    }

    fn persisted(&mut self, out: &mut Out, write: WriteId, result: Result<(), RegistryFailure>) {
        let Some(pending) = self.writes.remove(&write) else { return };
        if self.phase != Phase::Serving {
            return;
        }
        if let Err(RegistryFailure(reason)) = result {
            self.metrics.registry_write_failures += 1;
            self.abort(out, format!("a registry write failed: {reason}"));
            return;
        }
        match pending {
            Pending::Admit { pid, info, version, incarnation, reregister } => {
                self.admitted(out, pid, info, version, incarnation, reregister)
            }
            Pending::Leave { agent_id, leaving, reason, then } => {
                self.left(out, &agent_id, leaving, reason, then)
            }
            Pending::Forget { agent_id, then } => self.forgotten(out, &agent_id, then),
            Pending::Unreachable => {}
            Pending::AddFramework { pid, info, subscription } => {
                self.framework_added(out, pid, info, subscription)
            }
            Pending::Resubscribe { pid, framework_id, subscription, reactivate } => {
                if self.frameworks.get(&framework_id).is_some_and(|f| f.pid.as_ref() == Some(&pid)) {
                    let master = self.config.upid.clone();
                    let subscribed = FrameworkSubscribed {
                        framework_id: framework_id.clone(),
                        master,
                        subscription,
                        epoch: self.term.0,
                    };
                    out.send(&pid, subscribed);
                }
                // Offers only once the scheduler knows it is subscribed.
                if reactivate && self.frameworks.get(&framework_id).is_some_and(|f| f.active) {
                    out.allocator(crate::allocator::messages::SetFrameworkActive {
                        framework_id,
                        active: true,
                    });
                }
            }
            Pending::RemoveFramework { framework_id } => self.framework_removed(out, &framework_id),
            Pending::Weights { request, weights } => self.weights_set(out, request, weights),
            Pending::Quota { request, role, quota } => self.quota_set(out, request, role, quota),
        }
    }

    /// Stops serving: nothing more is decided; the shell stops the process.
    fn abort(&mut self, out: &mut Out, reason: String) {
        tracing::error!(%reason, "the master aborts");
        self.phase = Phase::Aborted;
        out.effects.push(Effect::Abort { reason });
    }

    fn allocator_event(&mut self, out: &mut Out, event: AllocatorEvent) {
        match event {
            AllocatorEvent::Allocated(m) => self.allocated(out, m),
            AllocatorEvent::OverLimit(m) => self.over_limit(out, m),
            AllocatorEvent::AvailableUpdated(m) => self.available_updated(out, m),
        }
    }

    fn exited(&mut self, out: &mut Out, upid: Upid) {
        if let Some(agent_id) = self.agents_by_pid.get(&upid).cloned() {
            self.agent_disconnected(out, &agent_id);
        }
        let frameworks: Vec<FrameworkId> = self
            .frameworks
            .iter()
            .filter(|(_, f)| f.pid.as_ref() == Some(&upid) && f.connected)
            .map(|(id, _)| id.clone())
            .collect();
        for framework_id in frameworks {
            self.framework_disconnected(out, &framework_id);
        }
    }

    /// An update id for a status the master makes up itself.
    fn update_id(&mut self) -> keel_proto::ids::UpdateId {
        keel_proto::ids::UpdateId::from_rng(&mut self.rng)
    }
}

/// Read access for views (HTTP, the simulator's invariants, tests).
impl Master {
    /// Where the master is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The registry term the master writes with (its epoch).
    pub fn term(&self) -> Term {
        self.term
    }

    /// The master's UPID.
    pub fn upid(&self) -> &Upid {
        &self.config.upid
    }

    /// The configuration.
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// When the master started (seconds).
    pub fn started_secs(&self) -> f64 {
        self.started_secs
    }

    /// Frameworks, by id.
    pub fn frameworks(&self) -> &BTreeMap<FrameworkId, FrameworkState> {
        &self.frameworks
    }

    /// Removed frameworks, with their tasks, oldest first (bounded).
    pub fn completed_frameworks(&self) -> &VecDeque<(FrameworkInfo, Vec<Task>)> {
        &self.completed_frameworks
    }

    /// Ids of removed frameworks (they never come back).
    pub fn removed_frameworks(&self) -> &BTreeSet<FrameworkId> {
        &self.removed_frameworks
    }

    /// Registered agents, by id.
    pub fn agents(&self) -> &BTreeMap<AgentId, AgentState> {
        &self.agents
    }

    /// Agents in the registry that have not reregistered since recovery.
    pub fn recovered_agents(&self) -> &BTreeMap<AgentId, AgentRecord> {
        &self.recovered_agents
    }

    /// Unreachable agents and since when.
    pub fn unreachable_agents(&self) -> &BTreeMap<AgentId, f64> {
        &self.unreachable_agents
    }

    /// Gone agents and since when.
    pub fn gone_agents(&self) -> &BTreeMap<AgentId, f64> {
        &self.gone_agents
    }

    /// Outstanding offers.
    pub fn offers(&self) -> &BTreeMap<OfferId, OfferState> {
        &self.offers
    }

    /// Role weights, as in the registry.
    pub fn weights(&self) -> &BTreeMap<String, f64> {
        &self.weights
    }

    /// Role quotas, as in the registry.
    pub fn quotas(&self) -> &BTreeMap<String, QuotaRecord> {
        &self.quotas
    }

    /// The counters.
    pub fn metrics(&self) -> &MasterMetrics {
        &self.metrics
    }

    /// Resources in use on an agent: its live tasks, its executors, and tasks
    /// being killed after their frameworks were told they are lost.
    pub fn used_on(&self, agent_id: &AgentId) -> Resources {
        let Some(agent) = self.agents.get(agent_id) else { return Resources::default() };
        let mut used = Resources::default();
        for (framework_id, resources) in self.used_by_framework(agent_id) {
            let _ = framework_id;
            used += resources;
        }
        for resources in agent.zombies.values() {
            used += resources.clone();
        }
        used
    }

    /// Resources in outstanding offers on an agent.
    pub fn offered_on(&self, agent_id: &AgentId) -> Resources {
        self.offers
            .values()
            .filter(|o| &o.offer.agent_id == agent_id)
            .map(|o| o.offer.resources.clone())
            .sum()
    }

    /// Resources in use on an agent per framework (live tasks and executors).
    pub fn used_by_framework(&self, agent_id: &AgentId) -> Vec<(FrameworkId, Resources)> {
        let mut used: BTreeMap<FrameworkId, Resources> = BTreeMap::new();
        let Some(agent) = self.agents.get(agent_id) else { return Vec::new() };
        for (framework_id, task_ids) in &agent.tasks {
            let Some(framework) = self.frameworks.get(framework_id) else { continue };
            for task_id in task_ids {
                if let Some(task) = framework.tasks.get(task_id).filter(|t| !t.state.is_terminal()) {
                    *used.entry(framework_id.clone()).or_default() += task.info.resources.clone();
                }
            }
        }
        for (framework_id, framework) in &self.frameworks {
            for executor in framework.executors.get(agent_id).into_iter().flat_map(|e| e.values()) {
                *used.entry(framework_id.clone()).or_default() += executor.resources.clone();
            }
        }
        used.into_iter().filter(|(_, r)| !r.is_empty()).collect()
    }
}
