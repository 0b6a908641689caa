//! The allocation decision, pure and synchronous: no sockets, no clocks (time is an
//! argument). A simple fair policy for now: each agent's available resources go,
//! whole, to the active framework with the lowest dominant share that has not
//! suppressed offers or filtered that agent. Weighted hierarchical DRF, quotas and
//! reservations-by-role refine this in the allocator issue.

use std::collections::{BTreeMap, HashMap};

use crate::ids::{AgentId, FrameworkId};
use crate::resources::Resources;

use super::messages::Allocation;

/// Resources below this are not worth offering (Mesos: cpus 0.01, mem 32 MB).
#[derive(Debug, Clone)]
pub struct MinAllocatable {
    /// Minimum cpus.
    pub cpus: f64,
    /// Minimum memory in MB.
    pub mem_mb: f64,
}

impl Default for MinAllocatable {
    fn default() -> Self {
        MinAllocatable { cpus: 0.01, mem_mb: 32.0 }
    }
}

#[derive(Debug, Clone)]
struct AgentEntry {
    total: Resources,
    allocated: Resources,
    active: bool,
}

#[derive(Debug, Clone)]
struct FrameworkEntry {
    roles: Vec<String>,
    active: bool,
    suppressed: bool,
    /// agent -> time (seconds, the caller's clock) until which it is filtered.
    filters: HashMap<AgentId, f64>,
    allocated: Resources,
}

/// The allocator's state and decision.
#[derive(Debug, Default)]
pub struct AllocatorCore {
    agents: BTreeMap<AgentId, AgentEntry>,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    total: Resources,
    min: MinAllocatable,
}

impl AllocatorCore {
    /// An empty allocator.
    pub fn new(min: MinAllocatable) -> AllocatorCore {
        AllocatorCore { min, ..AllocatorCore::default() }
    }

    /// Adds (or replaces) a framework.
    pub fn add_framework(
        &mut self,
        id: FrameworkId,
        roles: Vec<String>,
        used: &[(AgentId, Resources)],
        active: bool,
    ) {
        let mut allocated = Resources::default();
        for (agent_id, resources) in used {
            allocated += resources.clone();
            if let Some(agent) = self.agents.get_mut(agent_id) {
                agent.allocated += resources.clone();
            }
        }
        let roles = if roles.is_empty() { vec!["*".to_string()] } else { roles };
        self.frameworks.insert(
            id,
            FrameworkEntry { roles, active, suppressed: false, filters: HashMap::new(), allocated },
        );
    }

    /// Removes a framework.
    pub fn remove_framework(&mut self, id: &FrameworkId) {
        self.frameworks.remove(id);
    }

    /// (De)activates a framework.
    pub fn set_framework_active(&mut self, id: &FrameworkId, active: bool) {
        if let Some(framework) = self.frameworks.get_mut(id) {
            framework.active = active;
        }
    }

    /// Adds (or replaces) an agent.
    pub fn add_agent(&mut self, id: AgentId, total: Resources, used: &[(FrameworkId, Resources)]) {
        if let Some(old) = self.agents.remove(&id) {
            self.total -= old.total;
        }
        let mut allocated = Resources::default();
        for (framework_id, resources) in used {
            allocated += resources.clone();
            if let Some(framework) = self.frameworks.get_mut(framework_id) {
                framework.allocated += resources.clone();
            }
        }
        self.total += total.clone();
        self.agents.insert(id, AgentEntry { total, allocated, active: true });
    }

    /// Removes an agent.
    pub fn remove_agent(&mut self, id: &AgentId) {
        if let Some(agent) = self.agents.remove(id) {
            self.total -= agent.total;
        }
        for framework in self.frameworks.values_mut() {
            framework.filters.remove(id);
        }
    }

    /// (De)activates an agent.
    pub fn set_agent_active(&mut self, id: &AgentId, active: bool) {
        if let Some(agent) = self.agents.get_mut(id) {
            agent.active = active;
        }
    }

    /// Resources come back from a framework, optionally filtered until `filter_until`.
    pub fn recover(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        resources: &Resources,
        filter_until: Option<f64>,
    ) {
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.allocated -= resources.clone();
        }
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.allocated -= resources.clone();
            if let Some(until) = filter_until {
                framework.filters.insert(agent_id.clone(), until);
            }
        }
    }

    /// Clears filters and suppression.
    pub fn revive(&mut self, framework_id: &FrameworkId) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.filters.clear();
            framework.suppressed = false;
        }
    }

    /// Suppresses offers.
    pub fn suppress(&mut self, framework_id: &FrameworkId) {
        if let Some(framework) = self.frameworks.get_mut(framework_id) {
            framework.suppressed = true;
        }
    }

    fn dominant_share(&self, allocated: &Resources) -> f64 {
        let share = |used: f64, total: f64| if total > 0.0 { used / total } else { 0.0 };
        share(allocated.cpus(), self.total.cpus())
            .max(share(allocated.mem_mb(), self.total.mem_mb()))
            .max(share(allocated.disk_mb(), self.total.disk_mb()))
    }

    fn allocatable(&self, resources: &Resources) -> bool {
        resources.cpus() >= self.min.cpus || resources.mem_mb() >= self.min.mem_mb
    }

    /// One allocation run at time `now` (seconds): every active agent's available
    /// resources go to the neediest eligible framework. `agent_order` is the order
    /// agents are visited in (the caller shuffles it).
    pub fn allocate(&mut self, now: f64, agent_order: &[AgentId]) -> Vec<Allocation> {
        let mut allocations = Vec::new();
        for agent_id in agent_order {
            let Some(agent) = self.agents.get(agent_id) else { continue };
            if !agent.active {
                continue;
            }
            let available = agent.total.clone() - agent.allocated.clone();
            if !self.allocatable(&available) {
                continue;
            }
            let mut best: Option<(f64, &FrameworkId, &str)> = None;
            for (framework_id, framework) in &self.frameworks {
                if !framework.active || framework.suppressed {
                    continue;
                }
                if framework.filters.get(agent_id).is_some_and(|until| now < *until) {
                    continue;
                }
                let share = self.dominant_share(&framework.allocated);
                if best.is_none_or(|(best_share, _, _)| share < best_share) {
                    best = Some((share, framework_id, framework.roles[0].as_str()));
                }
            }
            let Some((_, framework_id, role)) = best else { continue };
            let resources = available.allocatable_to(role);
            if !self.allocatable(&resources) {
                continue;
            }
            let framework_id = framework_id.clone();
            let role = role.to_string();
            if let Some(agent) = self.agents.get_mut(agent_id) {
                agent.allocated += resources.clone();
            }
            if let Some(framework) = self.frameworks.get_mut(&framework_id) {
                framework.allocated += resources.clone();
                framework.filters.retain(|_, until| now < *until);
            }
            allocations.push(Allocation { framework_id, role, agent_id: agent_id.clone(), resources });
        }
        allocations
    }

    /// The agents, in id order.
    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.agents.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Resources {
        text.parse().unwrap()
    }

    #[test]
    fn an_agent_goes_whole_to_the_framework_with_the_lowest_share() {
        let mut core = AllocatorCore::new(MinAllocatable::default());
        core.add_agent("a1".into(), res("cpus:4;mem:4096"), &[]);
        core.add_agent("a2".into(), res("cpus:4;mem:4096"), &[]);
        core.add_framework("f1".into(), vec![], &[], true);
        core.add_framework("f2".into(), vec![], &[], true);
        let order = core.agent_ids();
        let allocations = core.allocate(0.0, &order);
        assert_eq!(allocations.len(), 2);
        assert_ne!(allocations[0].framework_id, allocations[1].framework_id, "one agent each");
        assert_eq!(allocations[0].resources, res("cpus:4;mem:4096"));
        // Everything is allocated: nothing more to offer.
        assert!(core.allocate(1.0, &order).is_empty());
    }

    #[test]
    fn filters_suppression_and_inactive_frameworks_are_respected() {
        let mut core = AllocatorCore::new(MinAllocatable::default());
        core.add_agent("a1".into(), res("cpus:2;mem:1024"), &[]);
        core.add_framework("f1".into(), vec![], &[], true);
        let order = core.agent_ids();
        let first = core.allocate(0.0, &order);
        assert_eq!(first.len(), 1);
        core.recover(&"f1".into(), &"a1".into(), &first[0].resources, Some(5.0));
        assert!(core.allocate(1.0, &order).is_empty(), "filtered until 5.0");
        assert_eq!(core.allocate(5.0, &order).len(), 1, "filter expired");
        core.recover(&"f1".into(), &"a1".into(), &res("cpus:2;mem:1024"), None);
        core.suppress(&"f1".into());
        assert!(core.allocate(6.0, &order).is_empty(), "suppressed");
        core.revive(&"f1".into());
        assert_eq!(core.allocate(6.0, &order).len(), 1, "revived");
        core.recover(&"f1".into(), &"a1".into(), &res("cpus:2;mem:1024"), None);
        core.set_framework_active(&"f1".into(), false);
        assert!(core.allocate(7.0, &order).is_empty(), "inactive");
    }

    #[test]
    fn used_resources_and_inactive_agents_are_not_offered() {
        let mut core = AllocatorCore::new(MinAllocatable::default());
        core.add_framework("f1".into(), vec![], &[], true);
        core.add_agent("a1".into(), res("cpus:4;mem:4096"), &[("f1".into(), res("cpus:3;mem:1024"))]);
        let order = core.agent_ids();
        let allocations = core.allocate(0.0, &order);
        assert_eq!(allocations[0].resources, res("cpus:1;mem:3072"));
        core.recover(&"f1".into(), &"a1".into(), &allocations[0].resources, None);
        core.set_agent_active(&"a1".into(), false);
        assert!(core.allocate(1.0, &order).is_empty());
    }
}
