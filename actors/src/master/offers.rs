//! Offers: turning allocations into offers, accepting (launch validation), declining
//! with filters, reviving and suppressing, and rescinding on timeout or disconnect.

use std::collections::{BTreeMap, HashSet};

use keel_kernel::{Handle, Message, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

use super::state::{validate_task, OfferState, Refusal};
use super::Master;
use crate::allocator::messages::{self as alloc, Allocated};
use crate::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId, UpdateId};
use crate::messages::agent::RunTask;
use crate::messages::common::StatusUpdate;
use crate::messages::scheduler::*;
use crate::resources::Resources;
use crate::task::{Offer, StatusSource, Task, TaskInfo, TaskReason, TaskState, TaskStatus};

/// An offer's timeout expired.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct OfferTimeout {
    pub offer_id: OfferId,
}
keel_kernel::message!(OfferTimeout, "keel.master.OfferTimeout");

impl Handle<Allocated> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: Allocated) {
        if from != self.allocator {
            self.metrics.invalid_senders += 1;
            return;
        }
        let mut by_framework: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for allocation in m.allocations {
            let framework =
                self.frameworks.get(&allocation.framework_id).filter(|f| f.connected && f.pid.is_some());
            let agent = self.agents.get(&allocation.agent_id).filter(|a| a.connected);
            let (Some(framework), Some(agent)) = (framework, agent) else {
                self.allocator(
                    ctx,
                    alloc::RecoverResources {
                        framework_id: allocation.framework_id,
                        agent_id: allocation.agent_id,
                        resources: allocation.resources,
                        refuse_seconds: None,
                        role: Some(allocation.role),
                    },
                );
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
                let timer = self
                    .config
                    .offer_timeout
                    .map(|t| ctx.delay(t, OfferTimeout { offer_id: offer.id.clone() }));
                if let Some(agent) = self.agents.get_mut(&offer.agent_id) {
                    agent.offered += offer.resources.clone();
                }
                if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                    framework.offers.insert(offer.id.clone());
                }
                self.offers.insert(offer.id.clone(), OfferState { offer: offer.clone(), timer });
            }
            self.metrics.offers_sent += offers.len() as u64;
            if let Some(pid) = self.frameworks.get(&framework_id).and_then(|f| f.pid.clone()) {
                ctx.send(&pid, ResourceOffers { offers });
            }
        }
    }
}

impl Master {
    /// Removes an outstanding offer, returning its resources to the allocator (with
    /// a filter when given); tells the framework when `rescind`.
    pub(super) fn remove_offer(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        offer_id: &OfferId,
        rescind: bool,
        refuse_seconds: Option<f64>,
    ) -> Option<Offer> {
        let state = self.offers.remove(offer_id)?;
        if let Some(timer) = state.timer {
            ctx.cancel(timer);
        }
        let offer = state.offer;
        if let Some(agent) = self.agents.get_mut(&offer.agent_id) {
            agent.offered -= offer.resources.clone();
        }
        if let Some(framework) = self.frameworks.get_mut(&offer.framework_id) {
            framework.offers.remove(offer_id);
            if rescind {
                if let Some(pid) = &framework.pid {
                    ctx.send(pid, RescindOffer { offer_id: offer_id.clone() });
                }
                self.metrics.offers_rescinded += 1;
            }
        }
        self.allocator(
            ctx,
            alloc::RecoverResources {
                framework_id: offer.framework_id.clone(),
                agent_id: offer.agent_id.clone(),
                resources: offer.resources.clone(),
                refuse_seconds,
                role: Some(offer.role.clone()),
            },
        );
        Some(offer)
    }

    /// Returns resources a framework used on an agent to the allocator.
    pub(super) fn release_resources(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        resources: &Resources,
        role: Option<String>,
    ) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.used -= resources.clone();
        }
        self.allocator(
            ctx,
            alloc::RecoverResources {
                framework_id: framework_id.clone(),
                agent_id: agent_id.clone(),
                resources: resources.clone(),
                refuse_seconds: None,
                role,
            },
        );
    }

    /// Returns a task's resources.
    pub(super) fn release_task_resources(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        task: &Task,
    ) {
        self.release_resources(
            ctx,
            framework_id,
            &task.info.agent_id,
            &task.info.resources,
            task.role.clone(),
        );
    }

    /// Sends a master-generated status (no acknowledgement expected) to a framework.
    pub(super) fn tell_framework(
        &mut self,
        ctx: &ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        status: TaskStatus,
    ) {
        let Some(pid) = self.frameworks.get(framework_id).filter(|f| f.connected).and_then(|f| f.pid.clone())
        else {
            return;
        };
        let update = StatusUpdate {
            framework_id: framework_id.clone(),
            executor_id: status.executor_id.clone(),
            agent_id: status.agent_id.clone(),
            status,
            uuid: UpdateId::random(),
            agent_pid: None,
        };
        ctx.send(&pid, update);
    }

    fn refuse(
        &mut self,
        ctx: &ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        task_id: TaskId,
        agent_id: &AgentId,
        refusal: Refusal,
    ) {
        self.metrics.tasks_refused += 1;
        *self.metrics.terminal.entry(refusal.state.name()).or_default() += 1;
        let mut status = TaskStatus::new(task_id, refusal.state, StatusSource::Master)
            .with_reason(refusal.reason)
            .with_message(refusal.message);
        status.agent_id = Some(agent_id.clone());
        self.tell_framework(ctx, framework_id, status);
    }
}

impl Handle<AcceptOffers> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: AcceptOffers) {
        if !self.serving(AcceptOffers::KIND) || !self.caller(ctx, &from, &m.framework_id) {
            return;
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
        // Every offer must be outstanding, this framework's, and on one agent.
        let mut problem = None;
        let mut agent_id: Option<AgentId> = None;
        let unique: HashSet<&OfferId> = m.offer_ids.iter().collect();
        if unique.len() != m.offer_ids.len() {
            problem = Some("an offer is named twice".to_string());
        }
        for offer_id in &m.offer_ids {
            match self.offers.get(offer_id) {
                None => problem = Some(format!("offer {offer_id} is no longer valid")),
                Some(o) if o.offer.framework_id != framework_id => {
                    problem = Some(format!("offer {offer_id} belongs to another framework"))
                }
                Some(o) => match &agent_id {
                    Some(a) if a != &o.offer.agent_id => problem = Some("offers span several agents".into()),
                    _ => agent_id = Some(o.offer.agent_id.clone()),
                },
            }
        }
        if m.offer_ids.is_empty() {
            problem = Some("no offers named".into());
        }
        let agent_alive = agent_id.as_ref().and_then(|a| self.agents.get(a)).is_some_and(|a| a.connected);
        if problem.is_none() && !agent_alive {
            problem = Some("the offers' agent is gone".into());
        }
        let partition_aware = self.frameworks.get(&framework_id).is_some_and(|f| f.partition_aware());
        if let Some(message) = problem {
            // The whole accept is invalid: valid offers among it go back.
            for offer_id in &m.offer_ids {
                if self.offers.get(offer_id).is_some_and(|o| o.offer.framework_id == framework_id) {
                    self.remove_offer(ctx, offer_id, false, None);
                }
            }
            let state = if partition_aware { TaskState::Dropped } else { TaskState::Lost };
            for task in tasks {
                let refusal = Refusal { state, reason: TaskReason::InvalidOffers, message: message.clone() };
                self.refuse(ctx, &framework_id, task.task_id.clone(), &task.agent_id, refusal);
            }
            return;
        }
        let agent_id = agent_id.expect("checked above");
        // Tasks take the role of the offers they are launched on.
        let role = m.offer_ids.first().and_then(|id| self.offers.get(id)).map(|o| o.offer.role.clone());
        let mut remaining = Resources::default();
        for offer_id in &m.offer_ids {
            if let Some(offer) = self.remove_offer_without_recovery(ctx, offer_id) {
                remaining += offer.resources;
            }
        }
        let mut launched: HashSet<TaskId> = HashSet::new();
        for operation in m.operations {
            let tasks = match operation {
                Operation::Launch { tasks } => tasks,
                Operation::Reserve { resources } => {
                    self.reserve(ctx, &framework_id, &agent_id, &mut remaining, resources, true);
                    continue;
                }
                Operation::Unreserve { resources } => {
                    self.reserve(ctx, &framework_id, &agent_id, &mut remaining, resources, false);
                    continue;
                }
            };
            self.launch(ctx, &from, &framework_id, &agent_id, &role, &mut remaining, &mut launched, tasks);
        }
        if !remaining.is_empty() {
            self.allocator(
                ctx,
                alloc::RecoverResources {
                    framework_id,
                    agent_id,
                    resources: remaining,
                    refuse_seconds: Some(m.filters.refuse_seconds),
                    role,
                },
            );
        }
    }
}

impl Master {
    /// Reserves (or unreserves) part of what an accept's offers hold: the agent's
    /// total changes form, the allocator follows, the agent checkpoints it.
    fn reserve(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        remaining: &mut Resources,
        resources: Resources,
        reserve: bool,
    ) {
        let roles = self.frameworks.get(framework_id).map(|f| f.info.effective_roles()).unwrap_or_default();
        let dynamic_for_framework = |r: &crate::resources::Resource| matches!(r.reservation(), crate::resources::Reservation::Dynamic { role, .. } if roles.iter().any(|x| x.as_str() == &**role));
        let problem = if resources.is_empty() {
            Some("nothing to reserve".to_string())
        } else if !resources.iter().all(dynamic_for_framework) {
            Some(format!("{resources} must be dynamic reservations for the framework's roles {roles:?}"))
        } else {
            None
        };
        let unreserved = resources.without_reservations();
        let (from, to) = if reserve { (unreserved, resources) } else { (resources, unreserved) };
        if let Some(message) = problem.or_else(|| {
            (!remaining.contains(&from)).then(|| format!("{from} is not in the offers ({remaining})"))
        }) {
            self.metrics.invalid_operations += 1;
            // The resources stay in the offer's remainder and go back to the allocator.
            tracing::warn!(framework_id = %framework_id, %message, "refusing a reservation operation");
            return;
        }
        *remaining = remaining.clone() - from.clone() + to.clone();
        self.allocator(
            ctx,
            alloc::UpdateAllocation {
                framework_id: framework_id.clone(),
                agent_id: agent_id.clone(),
                from: from.clone(),
                to: to.clone(),
            },
        );
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.info.resources = agent.info.resources.clone() - from + to;
            let total = agent.info.resources.clone();
            ctx.send(&agent.pid, crate::messages::agent::CheckpointResources { total });
        }
    }

    /// Launches the tasks of one launch operation on what is left of the offers.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        from: &Upid,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &Option<String>,
        remaining: &mut Resources,
        launched: &mut HashSet<TaskId>,
        tasks: Vec<TaskInfo>,
    ) {
        let framework_id = framework_id.clone();
        let agent_id = agent_id.clone();
        let from = from.clone();
        for task in tasks {
            let Some(framework) = self.frameworks.get(&framework_id) else { return };
            if let Err(refusal) = validate_task(framework, &task, &agent_id, remaining, launched) {
                self.refuse(ctx, &framework_id, task.task_id.clone(), &agent_id, refusal);
                continue;
            }
            launched.insert(task.task_id.clone());
            let mut used = task.resources.clone();
            let executor_id = match &task.executor {
                Some(executor) => {
                    let framework = self.frameworks.get_mut(&framework_id).expect("checked above");
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
            *remaining -= used.clone();
            let framework = self.frameworks.get_mut(&framework_id).expect("checked above");
            let entry = Task {
                info: task.clone(),
                framework_id: framework_id.clone(),
                executor_id,
                state: TaskState::Staging,
                status: None,
                role: role.clone(),
            };
            framework.tasks.insert(task.task_id.clone(), entry);
            let framework_info = framework.info.clone();
            let scheduler = framework.pid.clone().unwrap_or_else(|| from.clone());
            let agent = self.agents.get_mut(&agent_id).expect("checked above");
            agent.used += used;
            agent.tasks.entry(framework_id.clone()).or_default().insert(task.task_id.clone());
            ctx.send(&agent.pid, RunTask { framework: framework_info, scheduler, task });
            self.metrics.tasks_launched += 1;
        }
    }
}

impl Master {
    /// Removes an offer whose resources are being used (not returned).
    fn remove_offer_without_recovery(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        offer_id: &OfferId,
    ) -> Option<Offer> {
        let state = self.offers.remove(offer_id)?;
        if let Some(timer) = state.timer {
            ctx.cancel(timer);
        }
        if let Some(agent) = self.agents.get_mut(&state.offer.agent_id) {
            agent.offered -= state.offer.resources.clone();
        }
        if let Some(framework) = self.frameworks.get_mut(&state.offer.framework_id) {
            framework.offers.remove(offer_id);
        }
        Some(state.offer)
    }
}

impl Handle<DeclineOffers> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: DeclineOffers) {
        if !self.serving(DeclineOffers::KIND) || !self.caller(ctx, &from, &m.framework_id) {
            return;
        }
        let refuse = Some(m.filters.refuse_seconds).filter(|s| s.is_finite() && *s > 0.0);
        for offer_id in &m.offer_ids {
            if self.offers.get(offer_id).is_some_and(|o| o.offer.framework_id == m.framework_id) {
                self.remove_offer(ctx, offer_id, false, refuse);
                self.metrics.offers_declined += 1;
            }
        }
    }
}

impl Handle<ReviveOffers> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ReviveOffers) {
        if self.serving(ReviveOffers::KIND) && self.caller(ctx, &from, &m.framework_id) {
            self.allocator(ctx, alloc::Revive { framework_id: m.framework_id, roles: m.roles });
        }
    }
}

impl Handle<SuppressOffers> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: SuppressOffers) {
        if self.serving(SuppressOffers::KIND) && self.caller(ctx, &from, &m.framework_id) {
            self.allocator(ctx, alloc::Suppress { framework_id: m.framework_id, roles: m.roles });
        }
    }
}

impl Handle<OfferTimeout> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: OfferTimeout) {
        if &from == ctx.upid() {
            self.remove_offer(ctx, &m.offer_id, true, None);
        }
    }
}
