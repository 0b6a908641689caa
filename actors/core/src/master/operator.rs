//! Operator requests: role weights and quotas (validated, persisted, then given to
//! the allocator), and reservations of an agent's free resources (switched by the
//! allocator first, so both keep the same accounting, then checkpointed by the
//! agent).

use keel_proto::ids::AgentId;
use keel_proto::messages::agent::CheckpointResources;
use keel_proto::registry::{Operation, QuotaRecord};
use keel_proto::resources::{validate_role, Reservation, Resources};

use super::{Effect, Master, Out, Pending, RequestId};
use crate::allocator::messages::{self as alloc, AvailableUpdated};

/// What an operator asks of the master.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorCall {
    /// Sets role weights.
    SetWeights(Vec<(String, f64)>),
    /// Sets a role's quota.
    SetQuota {
        /// The role.
        role: String,
        /// The quota.
        quota: QuotaRecord,
    },
    /// Removes a role's quota.
    RemoveQuota {
        /// The role.
        role: String,
    },
    /// Reserves (`reserve`) or unreserves free resources of an agent.
    Reservation {
        /// The agent.
        agent_id: AgentId,
        /// Dynamic reservations, e.g. `cpus(ads,dynamic):1`.
        resources: Resources,
        /// Reserve or unreserve.
        reserve: bool,
    },
    /// Tears a framework down, as its scheduler's teardown would (Mesos's
    /// `/teardown` and the v1 operator call TEARDOWN).
    Teardown {
        /// The framework.
        framework_id: keel_proto::ids::FrameworkId,
    },
}

/// Why an operator request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorError {
    /// The request is not valid (HTTP 400).
    Invalid(String),
    /// What it names does not exist (404).
    NotFound(String),
    /// It conflicts with the current state (409).
    Conflict(String),
    /// The master cannot serve it now (503).
    Unavailable(String),
}

impl std::fmt::Display for OperatorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperatorError::Invalid(m)
            | OperatorError::NotFound(m)
            | OperatorError::Conflict(m)
            | OperatorError::Unavailable(m) => f.write_str(m),
        }
    }
}

fn answer(out: &mut Out, request: RequestId, result: Result<(), OperatorError>) {
    out.effects.push(Effect::Answer { request, result });
}

impl Master {
    pub(super) fn operator(&mut self, out: &mut Out, request: RequestId, call: OperatorCall) {
        match call {
            OperatorCall::SetWeights(weights) => {
                let mut operations = Vec::new();
                for (role, weight) in &weights {
                    let operation = Operation::SetWeight { role: role.clone(), weight: *weight };
                    if let Err(e) = operation.validate() {
                        return answer(out, request, Err(OperatorError::Invalid(e.to_string())));
                    }
                    operations.push(operation);
                }
                if operations.is_empty() {
                    return answer(out, request, Ok(()));
                }
                self.persist(out, operations, Pending::Weights { request, weights });
            }
            OperatorCall::SetQuota { role, quota } => {
                let operation = Operation::SetQuota { role: role.clone(), quota: quota.clone() };
                if let Err(e) = operation.validate() {
                    return answer(out, request, Err(OperatorError::Invalid(e.to_string())));
                }
                self.persist(out, vec![operation], Pending::Quota { request, role, quota: Some(quota) });
            }
            OperatorCall::RemoveQuota { role } => {
                if !self.quotas.contains_key(&role) {
                    let message = format!("role {role} has no quota");
                    return answer(out, request, Err(OperatorError::NotFound(message)));
                }
                let operation = Operation::RemoveQuota { role: role.clone() };
                self.persist(out, vec![operation], Pending::Quota { request, role, quota: None });
            }
            OperatorCall::Reservation { agent_id, resources, reserve } => {
                self.reservation(out, request, agent_id, resources, reserve)
            }
            OperatorCall::Teardown { framework_id } => match self.frameworks.get(&framework_id) {
                Some(framework) if !framework.removing => {
                    tracing::info!(framework_id = %framework_id, "an operator tears the framework down");
                    self.remove_framework(out, &framework_id);
                    answer(out, request, Ok(()));
                }
                _ => {
                    let message = format!("no framework {framework_id} is subscribed");
                    answer(out, request, Err(OperatorError::NotFound(message)));
                }
            },
        }
    }

    pub(super) fn weights_set(&mut self, out: &mut Out, request: RequestId, weights: Vec<(String, f64)>) {
        for (role, weight) in &weights {
            self.weights.insert(role.clone(), *weight);
        }
        out.allocator(alloc::SetWeights { weights });
        answer(out, request, Ok(()));
    }

    pub(super) fn quota_set(
        &mut self,
        out: &mut Out,
        request: RequestId,
        role: String,
        quota: Option<QuotaRecord>,
    ) {
        match quota {
            Some(quota) => {
                self.quotas.insert(role.clone(), quota.clone());
                out.allocator(alloc::SetQuota { role, guarantee: quota.guarantee, limit: quota.limit });
            }
            None => {
                self.quotas.remove(&role);
                out.allocator(alloc::RemoveQuota { role });
            }
        }
        answer(out, request, Ok(()));
    }

    fn reservation(
        &mut self,
        out: &mut Out,
        request: RequestId,
        agent_id: AgentId,
        resources: Resources,
        reserve: bool,
    ) {
        let dynamic = |r: &keel_proto::resources::Resource| matches!(r.reservation(), Reservation::Dynamic { role, .. } if validate_role(role).is_ok());
        if resources.is_empty() || !resources.iter().all(dynamic) {
            let message = format!("{resources} must be dynamic reservations such as cpus(ads,dynamic):1");
            return answer(out, request, Err(OperatorError::Invalid(message)));
        }
        let Some(agent) = self.agents.get(&agent_id).filter(|a| a.leaving.is_none()) else {
            let message = format!("agent {agent_id} is not registered");
            return answer(out, request, Err(OperatorError::NotFound(message)));
        };
        let unreserved = resources.without_reservations();
        let (from, to) = if reserve { (unreserved, resources) } else { (resources, unreserved) };
        if !agent.info.resources.contains(&from) {
            let message = format!("agent {agent_id} does not have {from}");
            return answer(out, request, Err(OperatorError::Conflict(message)));
        }
        self.reservations.insert(request, (agent_id.clone(), from.clone(), to.clone()));
        out.allocator(alloc::UpdateAvailable { request, agent_id, from, to });
    }

    /// The allocator switched (or could not switch) an operator reservation.
    pub(super) fn available_updated(&mut self, out: &mut Out, m: AvailableUpdated) {
        let Some((agent_id, from, to)) = self.reservations.remove(&m.request) else { return };
        if !m.updated {
            let message =
                format!("{from} is not free on agent {agent_id} (it is offered, in use, or not there)");
            return answer(out, m.request, Err(OperatorError::Conflict(message)));
        }
        match self.agents.get_mut(&agent_id) {
            Some(agent) => {
                agent.info.resources = agent.info.resources.clone() - from + to;
                let total = agent.info.resources.clone();
                out.send(&agent.pid, CheckpointResources { total });
                answer(out, m.request, Ok(()));
            }
            None => {
                // The agent left meanwhile; the allocator forgot it with it.
                let message = format!("agent {agent_id} left");
                answer(out, m.request, Err(OperatorError::NotFound(message)));
            }
        }
    }
}
