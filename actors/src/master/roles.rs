//! Roles: weights and quotas set by operators (persisted in the registry, then given
//! to the allocator), and offers rescinded when a lowered limit is exceeded.

use keel_kernel::{Handle, ProcessContext, Upid};
use tokio::sync::oneshot;

use super::Master;
use crate::allocator::messages::{OverLimit, RemoveQuota, SetQuota, SetWeights};
use crate::registry::{Operation, QuotaRecord};

/// The answer an operator endpoint waits for.
pub type Done = oneshot::Sender<Result<(), String>>;

impl Master {
    /// The role weights.
    pub fn weights(&self) -> &std::collections::BTreeMap<String, f64> {
        &self.weights
    }

    /// The role quotas.
    pub fn quotas(&self) -> &std::collections::BTreeMap<String, QuotaRecord> {
        &self.quotas
    }

    /// Persists weights, then applies them; `done` hears the outcome.
    pub fn update_weights(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        weights: Vec<(String, f64)>,
        done: Done,
    ) {
        let operations = weights
            .iter()
            .map(|(role, weight)| Operation::SetWeight { role: role.clone(), weight: *weight })
            .collect();
        self.persist(ctx, operations, move |master, ctx, result| {
            if let Err(e) = result {
                let _ = done.send(Err(e.to_string()));
                return;
            }
            for (role, weight) in &weights {
                master.weights.insert(role.clone(), *weight);
            }
            master.allocator(ctx, SetWeights { weights });
            let _ = done.send(Ok(()));
        });
    }

    /// Persists a role's quota (or its removal with `None`), then applies it.
    pub fn update_quota(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        role: String,
        quota: Option<QuotaRecord>,
        done: Done,
    ) {
        let operation = match &quota {
            Some(quota) => Operation::SetQuota { role: role.clone(), quota: quota.clone() },
            None => Operation::RemoveQuota { role: role.clone() },
        };
        self.persist(ctx, vec![operation], move |master, ctx, result| {
            if let Err(e) = result {
                let _ = done.send(Err(e.to_string()));
                return;
            }
            match quota {
                Some(quota) => {
                    master.quotas.insert(role.clone(), quota.clone());
                    master.allocator(ctx, SetQuota { role, guarantee: quota.guarantee, limit: quota.limit });
                }
                None => {
                    master.quotas.remove(&role);
                    master.allocator(ctx, RemoveQuota { role });
                }
            }
            let _ = done.send(Ok(()));
        });
    }
}

impl Master {
    /// Records an operator's reservation change on an agent whose resources the
    /// allocator already switched: the agent's total and its checkpoint follow.
    pub fn apply_reservation(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        agent_id: &crate::ids::AgentId,
        from: &crate::resources::Resources,
        to: &crate::resources::Resources,
    ) -> Result<(), String> {
        let agent =
            self.agents.get_mut(agent_id).ok_or_else(|| format!("agent {agent_id} is not registered"))?;
        if !agent.info.resources.contains(from) {
            return Err(format!("agent {agent_id} does not have {from}"));
        }
        agent.info.resources = agent.info.resources.clone() - from.clone() + to.clone();
        let total = agent.info.resources.clone();
        ctx.send(&agent.pid, crate::messages::agent::CheckpointResources { total });
        Ok(())
    }

    /// Whether an agent is registered.
    pub fn has_agent(&self, agent_id: &crate::ids::AgentId) -> bool {
        self.agents.contains_key(agent_id)
    }
}

impl Handle<OverLimit> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: OverLimit) {
        if from != self.allocator {
            self.metrics.invalid_senders += 1;
            return;
        }
        for (framework_id, role) in m.allocations {
            let offers: Vec<_> = self
                .offers
                .iter()
                .filter(|(_, o)| o.offer.framework_id == framework_id && o.offer.role == role)
                .map(|(id, _)| id.clone())
                .collect();
            for offer_id in offers {
                tracing::info!(framework_id = %framework_id, %role, offer_id = %offer_id, "rescinding an offer above the role's quota limit");
                self.remove_offer(ctx, &offer_id, true, None);
            }
        }
    }
}
