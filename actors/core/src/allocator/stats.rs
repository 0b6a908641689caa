//! Fairness metrics: per role and per (framework, role) dominant shares and
//! allocations. "Allocated" counts offered and used resources alike (the allocator
//! cannot tell them apart; the master knows which are outstanding offers).

use std::collections::BTreeMap;

use keel_proto::ids::FrameworkId;
use keel_proto::resources::Resources;

use super::{AllocatorCore, Client};

/// A role's figures (its descendants included).
#[derive(Debug, Clone, PartialEq)]
pub struct RoleStats {
    /// The weight (default 1).
    pub weight: f64,
    /// The dominant share: the largest fraction of the cluster's total of any scalar
    /// resource allocated to the role and its descendants.
    pub dominant_share: f64,
    /// `dominant_share / weight`: what DRF sorts roles by.
    pub weighted_share: f64,
    /// Allocated to the role and its descendants (offered or in use).
    pub allocated: Resources,
    /// The quota guarantee, if any.
    pub guarantee: Option<Resources>,
    /// The quota limit, if any.
    pub limit: Option<Resources>,
    /// Frameworks subscribed to exactly this role.
    pub frameworks: usize,
}

/// A framework's figures in one of its roles.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientStats {
    /// Its dominant share in the role (what DRF sorts frameworks of a role by).
    pub dominant_share: f64,
    /// Allocated to it in the role (offered or in use).
    pub allocated: Resources,
    /// Whether it suppressed offers in the role.
    pub suppressed: bool,
    /// Agents on which it has offer filters (some may have expired).
    pub filtered_agents: usize,
}

impl AllocatorCore {
    /// Every known role (those with frameworks, quota or allocations, and their
    /// ancestors) with its weight, shares, allocation and quota.
    pub fn role_shares(&self) -> BTreeMap<String, RoleStats> {
        self.roles
            .live()
            .map(|(_, node)| {
                let dominant_share = node.allocated_q.dominant_share(&self.total_q);
                let stats = RoleStats {
                    weight: node.weight,
                    dominant_share,
                    weighted_share: dominant_share / node.weight,
                    allocated: node.allocated.clone(),
                    guarantee: node.quota.as_ref().map(|quota| quota.guarantee.clone()),
                    limit: node.quota.as_ref().and_then(|quota| quota.limit.clone()),
                    frameworks: node.clients.len(),
                };
                (node.name.clone(), stats)
            })
            .collect()
    }

    fn client_stats(&self, client: &Client) -> ClientStats {
        ClientStats {
            dominant_share: client.allocated_q.dominant_share(&self.total_q),
            allocated: client.allocated.clone(),
            suppressed: client.suppressed,
            filtered_agents: client.filters.agents(),
        }
    }

    /// A framework's figures per role, or `None` if it is unknown.
    pub fn framework_stats(&self, id: &FrameworkId) -> Option<BTreeMap<String, ClientStats>> {
        let framework = self.frameworks.get(self.framework_ix(id)? as usize)?.as_ref()?;
        Some(
            framework.clients.iter().map(|client| (client.role.clone(), self.client_stats(client))).collect(),
        )
    }

    /// Every framework's dominant share per role.
    pub fn framework_shares(&self) -> BTreeMap<FrameworkId, BTreeMap<String, f64>> {
        self.frameworks
            .iter()
            .flatten()
            .map(|framework| {
                let shares = framework
                    .clients
                    .iter()
                    .map(|client| (client.role.clone(), client.allocated_q.dominant_share(&self.total_q)))
                    .collect();
                (framework.id.clone(), shares)
            })
            .collect()
    }

    /// The cluster's total resources (all agents, active or not).
    pub fn total(&self) -> &Resources {
        &self.total
    }

    /// An agent as the allocator accounts for it: its total, what is allocated on it
    /// (offered or in use, known frameworks or not) and what is free. `None` for an
    /// agent it does not know. For checks that the master and the allocator agree.
    pub fn agent_accounting(&self, id: &keel_proto::ids::AgentId) -> Option<AgentAccounting> {
        let agent = self.agents[*self.agent_index.get(id)? as usize].as_ref()?;
        let held: Resources = agent.holdings.iter().map(|h| h.resources.clone()).sum();
        let untracked: Resources = agent.untracked.iter().map(|(_, r)| r.clone()).sum();
        Some(AgentAccounting {
            total: agent.total.clone(),
            allocated: agent.allocated.clone(),
            held: held + untracked,
            available: agent.available.clone(),
            active: agent.active,
        })
    }
}

/// One agent in the allocator's books.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentAccounting {
    /// Its total.
    pub total: Resources,
    /// Allocated on it (offered or in use).
    pub allocated: Resources,
    /// The sum of what each framework holds on it (equals `allocated`).
    pub held: Resources,
    /// `total - allocated`.
    pub available: Resources,
    /// Whether its resources are offered.
    pub active: bool,
}
