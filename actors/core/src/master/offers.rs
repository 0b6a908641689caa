//! Offers: allocations become offers, accepts are validated (launches, reserve,
//! unreserve), declines filter, offers are rescinded on timeout, disconnection or a
//! lowered quota limit. Resources always go back to the allocator in the role they
//! were allocated to, so the allocator's accounting stays the master's.

use std::collections::{BTreeMap, BTreeSet};

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use keel_proto::messages::agent::{CheckpointResources, RunTask};
use keel_proto::messages::scheduler::*;
use keel_proto::resources::{Reservation, Resources};
use keel_proto::task::{Offer, StatusSource, Task, TaskInfo, TaskReason, TaskState, TaskStatus};

use super::state::{validate_task, OfferState, Refusal};
use super::{Master, Out, Timer};
use crate::allocator::messages::{self as alloc, Allocated, OverLimit};

/// The most offers, tasks or operations one call may name.
const MAX_PER_CALL: usize = 10_000;

impl Master {
    pub(super) fn allocated(&mut self, out: &mut Out, m: Allocated) {
        let mut by_framework: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for allocation in m.allocations {
            let framework = self
                .frameworks
                .get(&allocation.framework_id)
                .filter(|f| f.active && f.connected && !f.removing && f.pid.is_some());
            let agent = self.agents.get(&allocation.agent_id).filter(|a| a.active && a.leaving.is_none());
            let (Some(framework), Some(agent)) = (framework, agent) else {
                out.allocator(alloc::RecoverResources {
                    framework_id: allocation.framework_id,
                    agent_id: allocation.agent_id,
                    resources: allocation.resources,
                    refuse_seconds: None,
                    role: Some(allocation.role),
                });
                continue;
            };
            let executor_ids: Vec<ExecutorId> = framework
                .executors
                .get(&allocation.agent_id)
                .map(|e| e.keys().cloned().collect())
                .unwrap_or_default();
            let offer = Offer {
                id: OfferId(self.ids.next("O")),
                framework_id: allocation.framework_id.clone(),
                agent_id: allocation.agent_id.clone(),
                hostname: agent.info.hostname.clone(),
                agent_pid: agent.pid.clone(),
                resources: allocation.resources,
                attributes: agent.info.attributes.clone(),
                role: allocation.role,
                executor_ids,
            };
            by_framework.entry(allocation.framework_id).or_default().push(offer);
        }
        for (framework_id, offers) in by_framework {
            for offer in &offers {
                let timer =
                    self.config.offer_timeout.map(|t| self.set_timer(out, t, Timer::Offer(offer.id.clone())));
                if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                    framework.offers.insert(offer.id.clone());
                }
                self.offers.insert(offer.id.clone(), OfferState { offer: offer.clone(), timer });
            }
            self.metrics.offers_sent += offers.len() as u64;
            if let Some(pid) = self.frameworks.get(&framework_id).and_then(|f| f.pid.clone()) {
                out.send(&pid, ResourceOffers { offers });
            }
        }
    }

    /// Removes an outstanding offer, returning its resources to the allocator (with
    /// a filter when given); tells the framework when `rescind`.
    pub(super) fn remove_offer(
        &mut self,
        out: &mut Out,
        offer_id: &OfferId,
        rescind: bool,
        refuse_seconds: Option<f64>,
    ) -> Option<Offer> {
        let offer = self.take_offer(out, offer_id)?;
        if rescind {
            if let Some(pid) = self.frameworks.get(&offer.framework_id).and_then(|f| f.reachable_pid()) {
                out.send(pid, RescindOffer { offer_id: offer_id.clone() });
            }
            self.metrics.offers_rescinded += 1;
        }
        out.allocator(alloc::RecoverResources {
            framework_id: offer.framework_id.clone(),
            agent_id: offer.agent_id.clone(),
            resources: offer.resources.clone(),
            refuse_seconds,
            role: Some(offer.role.clone()),
        });
        Some(offer)
    }

    /// Removes an offer whose resources are being used (not returned).
    fn take_offer(&mut self, out: &mut Out, offer_id: &OfferId) -> Option<Offer> {
        let state = self.offers.remove(offer_id)?;
        if let Some(timer) = state.timer {
            self.cancel_timer(out, timer);
        }
        if let Some(framework) = self.frameworks.get_mut(&state.offer.framework_id) {
            framework.offers.remove(offer_id);
        }
        Some(state.offer)
    }

    /// Returns resources a framework used on an agent to the allocator.
    pub(super) fn release(
        &mut self,
        out: &mut Out,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        resources: &Resources,
        role: Option<String>,
    ) {
        if resources.is_empty() || !self.agents.contains_key(agent_id) {
            return;
        }
        out.allocator(alloc::RecoverResources {
            framework_id: framework_id.clone(),
            agent_id: agent_id.clone(),
            resources: resources.clone(),
            refuse_seconds: None,
            role,
        });
    }

    /// Returns a task's resources.
    pub(super) fn release_task(&mut self, out: &mut Out, framework_id: &FrameworkId, task: &Task) {
        self.release(out, framework_id, &task.info.agent_id, &task.info.resources, task.role.clone());
    }

    fn refuse(&mut self, out: &mut Out, framework_id: &FrameworkId, task: &TaskInfo, refusal: Refusal) {
        self.metrics.tasks_refused += 1;
        let live = self.frameworks.get(framework_id).is_some_and(|f| {
            f.tasks.contains_key(&task.task_id) || f.unreachable_tasks.contains_key(&task.task_id)
        });
        let declared =
            self.frameworks.get(framework_id).is_some_and(|f| f.declared.get(&task.task_id).is_some());
        if live || declared {
            // A late copy of a launch: the task is live (a refusal would read as its
            // end), or the framework was already told how it ended.
            tracing::debug!(framework_id = %framework_id, task_id = %task.task_id, "refusing a launch of a used task id silently");
            return;
        }
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.declared.remember(task.task_id.clone(), refusal.state);
        }
        *self.metrics.terminal.entry(refusal.state.name()).or_default() += 1;
        let mut status = TaskStatus::new(task.task_id.clone(), refusal.state, StatusSource::Master)
            .at(self.now)
            .with_reason(refusal.reason)
            .with_message(refusal.message);
        status.agent_id = Some(task.agent_id.clone());
        self.tell_framework(out, framework_id, status);
    }

    pub(super) fn accept(&mut self, out: &mut Out, from: Upid, m: AcceptOffers) {
        if !self.caller(out, &from, &m.framework_id) {
            return;
        }
        if let Some(call_id) = m.call_id.clone().filter(|id| id.len() <= 64) {
            let framework = self.frameworks.get_mut(&m.framework_id).expect("caller checked");
            if !framework.handled_calls.insert(call_id) {
                // A copy of an accept already handled (the network duplicates).
                self.metrics.duplicate_calls += 1;
                return;
            }
        }
        let framework_id = m.framework_id.clone();
        let tasks: Vec<TaskInfo> = m
            .operations
            .iter()
            .flat_map(|op| match op {
                Operation::Launch { tasks } => tasks.clone(),
                _ => Vec::new(),
            })
            .collect();
        // Every offer must be outstanding, this framework's, on one agent, in one role.
        let mut problem = None;
        let mut agent_id: Option<AgentId> = None;
        let mut role: Option<String> = None;
        let unique: BTreeSet<&OfferId> = m.offer_ids.iter().collect();
        if unique.len() != m.offer_ids.len() {
            problem = Some("an offer is named twice".to_string());
        }
        if m.offer_ids.len() > MAX_PER_CALL || tasks.len() > MAX_PER_CALL || m.operations.len() > MAX_PER_CALL
        {
            problem = Some(format!("an accept names at most {MAX_PER_CALL} offers, operations and tasks"));
        }
        for offer_id in &m.offer_ids {
            match self.offers.get(offer_id) {
                None => problem = Some(format!("offer {offer_id} is no longer valid")),
                Some(o) if o.offer.framework_id != framework_id => {
                    problem = Some(format!("offer {offer_id} belongs to another framework"))
                }
                Some(o) => {
                    match &agent_id {
                        Some(a) if a != &o.offer.agent_id => {
                            problem = Some("offers span several agents".into())
                        }
                        _ => agent_id = Some(o.offer.agent_id.clone()),
                    }
                    match &role {
                        Some(r) if r != &o.offer.role => {
                            problem = Some("aggregated offers must be allocated to the same role".into())
                        }
                        _ => role = Some(o.offer.role.clone()),
                    }
                }
            }
        }
        if m.offer_ids.is_empty() {
            problem = Some("no offers named".into());
        }
        let agent_alive = agent_id.as_ref().and_then(|a| self.agents.get(a)).is_some_and(|a| a.active);
        if problem.is_none() && !agent_alive {
            problem = Some("the offers' agent is gone".into());
        }
        let partition_aware = self.frameworks.get(&framework_id).is_some_and(|f| f.partition_aware());
        if let Some(message) = problem {
            // The whole accept is invalid: valid offers among it go back.
            for offer_id in &m.offer_ids {
                if self.offers.get(offer_id).is_some_and(|o| o.offer.framework_id == framework_id) {
                    self.remove_offer(out, offer_id, false, None);
                }
            }
            let state = if partition_aware { TaskState::Dropped } else { TaskState::Lost };
            for task in tasks.iter().take(MAX_PER_CALL) {
                let refusal = Refusal { state, reason: TaskReason::InvalidOffers, message: message.clone() };
                self.refuse(out, &framework_id, task, refusal);
            }
            return;
        }
        let (Some(agent_id), Some(role)) = (agent_id, role) else { return };
        let mut remaining = Resources::default();
        for offer_id in &m.offer_ids {
            if let Some(offer) = self.take_offer(out, offer_id) {
                remaining += offer.resources;
            }
        }
        let mut launched: BTreeSet<TaskId> = BTreeSet::new();
        for operation in m.operations {
            match operation {
                Operation::Launch { tasks } => self.launch(
                    out,
                    &from,
                    &framework_id,
                    &agent_id,
                    &role,
                    &mut remaining,
                    &mut launched,
                    tasks,
                ),
                Operation::Reserve { resources } => {
                    self.reserve(out, &framework_id, &agent_id, &role, &mut remaining, resources, true)
                }
                Operation::Unreserve { resources } => {
                    self.reserve(out, &framework_id, &agent_id, &role, &mut remaining, resources, false)
                }
            }
        }
        if !remaining.is_empty() {
            out.allocator(alloc::RecoverResources {
                framework_id,
                agent_id,
                resources: remaining,
                refuse_seconds: Some(m.filters.refuse_seconds),
                role: Some(role),
            });
        }
    }

    /// Reserves (or unreserves) part of what an accept's offers hold: the agent's
    /// total changes form, the allocator follows, the agent checkpoints it.
    #[allow(clippy::too_many_arguments)]
    fn reserve(
        &mut self,
        out: &mut Out,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        remaining: &mut Resources,
        resources: Resources,
        reserve: bool,
    ) {
        // Reservations are for the role the offers are allocated to (as Mesos checks),
        // so the allocator keeps them in the same holding.
        let for_role = |r: &keel_proto::resources::Resource| matches!(r.reservation(), Reservation::Dynamic { role: reserved, .. } if &**reserved == role);
        let problem = if resources.is_empty() {
            Some("nothing to reserve".to_string())
        } else if !resources.iter().all(for_role) {
            Some(format!("{resources} must be dynamic reservations for the offers' role {role}"))
        } else {
            None
        };
        let unreserved = resources.without_reservations();
        let (from, to) = if reserve { (unreserved, resources) } else { (resources, unreserved) };
        let problem = problem.or_else(|| {
            (!remaining.contains(&from)).then(|| format!("{from} is not in the offers ({remaining})"))
        });
        if let Some(message) = problem {
            self.metrics.invalid_operations += 1;
            // The resources stay in the offer's remainder and go back to the allocator.
            tracing::warn!(framework_id = %framework_id, %message, "refusing a reservation operation");
            return;
        }
        *remaining = remaining.clone() - from.clone() + to.clone();
        out.allocator(alloc::UpdateAllocation {
            framework_id: framework_id.clone(),
            agent_id: agent_id.clone(),
            from: from.clone(),
            to: to.clone(),
        });
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.info.resources = agent.info.resources.clone() - from + to;
            let total = agent.info.resources.clone();
            out.send(&agent.pid, CheckpointResources { total });
        }
    }

    /// Launches the tasks of one launch operation on what is left of the offers.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        out: &mut Out,
        from: &Upid,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        remaining: &mut Resources,
        launched: &mut BTreeSet<TaskId>,
        tasks: Vec<TaskInfo>,
    ) {
        for task in tasks {
            let Some(framework) = self.frameworks.get(framework_id) else { return };
            if framework.declared.get(&task.task_id).is_some() {
                // The framework was told how this task ended before its launch
                // arrived (a reconciliation overtook it): it must not start now.
                self.metrics.tasks_refused += 1;
                continue;
            }
            if let Err(refusal) = validate_task(framework, &task, agent_id, remaining, launched) {
                self.refuse(out, framework_id, &task, refusal);
                continue;
            }
            launched.insert(task.task_id.clone());
            let mut used = task.resources.clone();
            let framework = self.frameworks.get_mut(framework_id).expect("checked above");
            let executor_id = match &task.executor {
                Some(executor) => {
                    let executors = framework.executors.entry(agent_id.clone()).or_default();
                    if !executors.contains_key(&executor.executor_id) {
                        let mut executor = executor.clone();
                        executor.framework_id = Some(framework_id.clone());
                        used += executor.resources.clone();
                        executors.insert(executor.executor_id.clone(), executor);
                    }
                    executor.executor_id.clone()
                }
                None => ExecutorId(task.task_id.0.clone()),
            };
            *remaining -= used;
            let entry = Task {
                info: task.clone(),
                framework_id: framework_id.clone(),
                executor_id,
                state: TaskState::Staging,
                status: None,
                role: Some(role.to_string()),
            };
            framework.tasks.insert(task.task_id.clone(), entry);
            framework.staging_since.insert(task.task_id.clone(), self.now);
            let framework_info = framework.info.clone();
            let scheduler = framework.pid.clone().unwrap_or_else(|| from.clone());
            let agent = self.agents.get_mut(agent_id).expect("checked above");
            agent.tasks.entry(framework_id.clone()).or_default().insert(task.task_id.clone());
            let launch_id = Some(keel_proto::ids::UpdateId::from_rng(&mut self.rng).0);
            let agent = self.agents.get(agent_id).expect("checked above");
            let run = RunTask {
                framework: framework_info,
                scheduler,
                task,
                epoch: self.term.0,
                launch_id,
                session: agent.session,
                ping_round: self.ping_round,
                pings_missed: agent.pings_missed,
            };
            out.send(&agent.pid, run);
            self.metrics.tasks_launched += 1;
        }
    }

    pub(super) fn decline(&mut self, out: &mut Out, from: Upid, m: DeclineOffers) {
        if !self.caller(out, &from, &m.framework_id) {
            return;
        }
        let refuse = Some(m.filters.refuse_seconds).filter(|s| s.is_finite() && *s > 0.0);
        for offer_id in m.offer_ids.iter().take(MAX_PER_CALL) {
            if self.offers.get(offer_id).is_some_and(|o| o.offer.framework_id == m.framework_id) {
                self.remove_offer(out, offer_id, false, refuse);
                self.metrics.offers_declined += 1;
            }
        }
    }

    pub(super) fn revive(&mut self, out: &mut Out, from: Upid, m: ReviveOffers) {
        if self.caller(out, &from, &m.framework_id) {
            out.allocator(alloc::Revive { framework_id: m.framework_id, roles: m.roles });
        }
    }

    pub(super) fn suppress(&mut self, out: &mut Out, from: Upid, m: SuppressOffers) {
        if self.caller(out, &from, &m.framework_id) {
            out.allocator(alloc::Suppress { framework_id: m.framework_id, roles: m.roles });
        }
    }

    pub(super) fn over_limit(&mut self, out: &mut Out, m: OverLimit) {
        for (framework_id, role) in m.allocations {
            let offers: Vec<_> = self
                .offers
                .iter()
                .filter(|(_, o)| o.offer.framework_id == framework_id && o.offer.role == role)
                .map(|(id, _)| id.clone())
                .collect();
            for offer_id in offers {
                tracing::info!(framework_id = %framework_id, %role, offer_id = %offer_id, "rescinding an offer above the role's quota limit");
                self.remove_offer(out, &offer_id, true, None);
            }
        }
    }
}
