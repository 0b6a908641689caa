//! Dynamic reservations: offer operations (`RESERVE`/`UNRESERVE` inside an offer, which
//! relabel resources a framework holds) and operator endpoints (which relabel free
//! resources of an agent). Quantities do not change, only reservations.

use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::resources::Resources;

use super::quantities::Quantities;
use super::AllocatorCore;

/// Whether `from` and `to` are the same resources up to reservations.
fn same_quantities(from: &Resources, to: &Resources) -> bool {
    !from.is_empty() && from.without_reservations() == to.without_reservations()
}

impl AllocatorCore {
    /// A framework's offer operation relabels resources it holds on an agent: `from`
    /// (held in one of its roles) becomes `to` (same quantities, reservations usable by
    /// that role). The agent's total changes accordingly. Returns whether it applied.
    pub fn update_allocation(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        from: &Resources,
        to: &Resources,
    ) -> bool {
        if !same_quantities(from, to) {
            return false;
        }
        let (Some(a), Some(f)) = (self.agent_ix(agent_id), self.framework_ix(framework_id)) else {
            return false;
        };
        let Some(agent) = self.agents[a as usize].as_ref() else { return false };
        let Some(c) = agent
            .holdings
            .iter()
            .find(|h| h.client.framework == f && h.resources.contains(from))
            .map(|h| h.client)
        else {
            return false;
        };
        let Some(client) = self.client_mut(c) else { return false };
        if !to.iter().all(|entry| entry.reservation().is_usable_by(&client.role)) {
            return false;
        }
        client.allocated = &(&client.allocated - from) + to;
        let node = client.node;
        let none = Quantities::default();
        self.roles.track(node, from, &none, false);
        self.roles.track(node, to, &none, true);
        self.total = &(&self.total - from) + to;
        let Some(agent) = self.agents[a as usize].as_mut() else { return false };
        if let Some(holding) = agent.holdings.iter_mut().find(|h| h.client == c) {
            holding.resources = &(&holding.resources - from) + to;
        }
        agent.total = &(&agent.total - from) + to;
        agent.allocated = &(&agent.allocated - from) + to;
        agent.refresh_available();
        true
    }

    /// An operator relabels free resources of an agent: `from` (free on the agent)
    /// becomes `to` (same quantities). Returns whether it applied.
    pub fn update_available(&mut self, agent_id: &AgentId, from: &Resources, to: &Resources) -> bool {
        if !same_quantities(from, to) {
            return false;
        }
        let Some(agent) = self.agent_ix(agent_id).and_then(|a| self.agents[a as usize].as_mut()) else {
            return false;
        };
        if !agent.available.contains(from) {
            return false;
        }
        agent.total = &(&agent.total - from) + to;
        agent.refresh_available();
        self.total = &(&self.total - from) + to;
        true
    }
}
