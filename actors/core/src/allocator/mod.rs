//! The allocation decision, pure and synchronous: no sockets, no clocks (time is an
//! argument, seconds on the caller's clock). The policy follows Mesos's hierarchical
//! allocator:
//!
//! - two-level weighted DRF over hierarchical roles (`sorter.rs`): at each level of the
//!   role tree, subtrees sorted by dominant share divided by weight; within a role,
//!   frameworks by their dominant share in that role. Multi-role frameworks are
//!   allocated per (framework, role), a *client*;
//! - quota (`quota.rs`): roles below their guarantee are served first (stage 1), and
//!   unreserved resources still needed for guarantees are held back from the others
//!   (stage 2); no role is ever allocated above its limit;
//! - reservations: resources reserved for a role go only to it and its descendants;
//! - filters (`filters.rs`) after refusals, suppress and revive per role, a minimum
//!   allocatable size, coarse-grained offers (an agent's whole remaining resources
//!   usable by a role, cut only by quota);
//! - "why pending" (`explain.rs`): per client, why it got nothing in the last runs.
//!
//! Allocations (offered or in use: the allocator does not tell them apart) are tracked
//! per agent and client, so that recovered resources go back to the right role.

mod events;
mod explain;
mod filters;
mod machine;
pub mod messages;
mod policy;
mod quantities;
mod quota;
mod reservations;
mod roles;
mod round;
mod sorter;
mod stats;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};

use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::resources::Resources;

pub use explain::{Explanation, PendingReason, RoleExplanation};
pub use machine::{AllocatorConfig, AllocatorEffect, AllocatorInput, AllocatorMachine};
pub use quota::Quota;
pub use stats::{AgentAccounting, ClientStats, RoleStats};

use filters::Filters;
use quantities::{Names, Quantities};
use roles::Roles;

/// Resources below this are not worth offering (Mesos: cpus 0.01, mem 32 MB): an
/// offer must reach at least one of the two.
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

/// Why a weight or quota was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    /// The role name is not valid (see [`validate_role`]), or is `*` for a quota.
    #[error("invalid role {role:?}: {reason}")]
    InvalidRole {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
    /// Weights are finite and positive.
    #[error("invalid weight {weight} for role {role:?}: weights are finite and positive")]
    InvalidWeight {
        /// The role.
        role: String,
        /// The weight.
        weight: f64,
    },
    /// A quota's guarantee is above its limit for some resource.
    #[error("quota of role {role:?}: the guarantee is above the limit for {resource}")]
    GuaranteeAboveLimit {
        /// The role.
        role: String,
        /// The resource name.
        resource: String,
    },
}

/// A framework in one of its roles: the unit DRF sorts within a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ClientRef {
    framework: u32,
    slot: u32,
}

/// Resources of one agent allocated to one client.
#[derive(Debug, Clone)]
struct Holding {
    client: ClientRef,
    resources: Resources,
}

#[derive(Debug, Clone)]
struct Agent {
    id: AgentId,
    total: Resources,
    total_q: Quantities,
    /// Everything allocated on the agent: the holdings plus `untracked`.
    allocated: Resources,
    /// `total - allocated`.
    available: Resources,
    /// Whether `available` has reserved entries.
    available_reserved: bool,
    active: bool,
    holdings: Vec<Holding>,
    /// Resources in use by frameworks the allocator does not know (yet).
    untracked: Vec<(FrameworkId, Resources)>,
}

impl Agent {
    fn refresh_available(&mut self) {
        self.available = &self.total - &self.allocated;
        self.available_reserved = self.available.iter().any(|entry| !entry.reservation().is_unreserved());
    }
}

/// What a client got, and why not, in the last runs.
#[derive(Debug, Clone, Default)]
struct History {
    last_allocation: Option<f64>,
    runs_without: u64,
    reasons: Vec<PendingReason>,
}

#[derive(Debug, Clone)]
struct Client {
    role: String,
    node: u32,
    suppressed: bool,
    allocated: Resources,
    allocated_q: Quantities,
    filters: Filters,
    history: History,
}

#[derive(Debug, Clone)]
struct Framework {
    id: FrameworkId,
    active: bool,
    clients: Vec<Client>,
}

/// What the last allocation run saw, for explanations.
#[derive(Debug, Clone, Default)]
struct RunSummary {
    at: f64,
    /// Agents with allocations in the run.
    agents_allocated: usize,
    /// Agents skipped because their free unreserved resources are held for guarantees.
    agents_held: usize,
    /// Roles that got allocations in the run.
    roles_served: BTreeSet<u32>,
}

/// The allocator's state and decision.
#[derive(Debug, Clone, Default)]
pub struct AllocatorCore {
    min: MinAllocatable,
    names: Names,
    agents: Vec<Option<Agent>>,
    agent_index: HashMap<AgentId, u32>,
    free_agents: Vec<u32>,
    frameworks: Vec<Option<Framework>>,
    framework_index: HashMap<FrameworkId, u32>,
    free_frameworks: Vec<u32>,
    roles: Roles,
    total: Resources,
    total_q: Quantities,
    last_run: Option<RunSummary>,
}

/// `a` ∩ `b`: the smaller scalar, the common ranges, per entry.
fn intersect(a: &Resources, b: &Resources) -> Resources {
    a - &(a - b)
}

fn take_slot<T>(slots: &mut Vec<Option<T>>, free: &mut Vec<u32>, value: T) -> u32 {
    match free.pop() {
        Some(i) => {
            slots[i as usize] = Some(value);
            i
        }
        None => {
            slots.push(Some(value));
            (slots.len() - 1) as u32
        }
    }
}

impl AllocatorCore {
    /// An empty allocator.
    pub fn new(min: MinAllocatable) -> AllocatorCore {
        AllocatorCore { min, ..AllocatorCore::default() }
    }

    fn agent_ix(&self, id: &AgentId) -> Option<u32> {
        self.agent_index.get(id).copied()
    }

    fn framework_ix(&self, id: &FrameworkId) -> Option<u32> {
        self.framework_index.get(id).copied()
    }

    fn client(&self, c: ClientRef) -> Option<&Client> {
        self.frameworks.get(c.framework as usize)?.as_ref()?.clients.get(c.slot as usize)
    }

    fn client_mut(&mut self, c: ClientRef) -> Option<&mut Client> {
        self.frameworks.get_mut(c.framework as usize)?.as_mut()?.clients.get_mut(c.slot as usize)
    }

    /// The minimum allocatable cpus and memory, in thousandths.
    fn min_milli(&self) -> (u64, u64) {
        let milli = |value: f64| (value.max(0.0) * 1000.0).round().min(u64::MAX as f64) as u64;
        (milli(self.min.cpus), milli(self.min.mem_mb))
    }

    /// Whether `resources` reach the minimum allocatable size.
    fn allocatable(&self, resources: &Resources) -> bool {
        let (cpus, mem) = self.min_milli();
        !resources.is_empty()
            && (resources.scalar_milli("cpus") >= cpus || resources.scalar_milli("mem") >= mem)
    }

    /// Whether the quota limit of role `node` leaves room for no offer of the minimum
    /// size (or, without a minimum, for nothing at all).
    fn limit_exhausted(&self, node: &roles::RoleNode) -> bool {
        if node.limit_q.is_empty() {
            return false;
        }
        match self.min_milli() {
            (cpus, mem) if cpus > 0 && mem > 0 => {
                node.limit_room(self.names.get("cpus")) < cpus && node.limit_room(self.names.get("mem")) < mem
            }
            _ => self
                .total_q
                .iter()
                .filter(|&(_, milli)| milli > 0)
                .all(|(n, _)| node.limit_room(Some(n)) == 0),
        }
    }

    /// Records `resources` on agent `a` as held by client `c`; with `count_on_agent`
    /// they are also added to the agent's allocated resources.
    fn hold(&mut self, a: u32, c: ClientRef, resources: &Resources, count_on_agent: bool) {
        if resources.is_empty() {
            return;
        }
        let quantities = self.names.quantities(resources);
        let Some(client) = self.client_mut(c) else { return };
        client.allocated += resources;
        client.allocated_q.add(&quantities);
        let node = client.node;
        self.roles.track(node, resources, &quantities, true);
        let Some(agent) = self.agents.get_mut(a as usize).and_then(Option::as_mut) else { return };
        match agent.holdings.iter_mut().find(|h| h.client == c) {
            Some(holding) => holding.resources += resources,
            None => agent.holdings.push(Holding { client: c, resources: resources.clone() }),
        }
        if count_on_agent {
            agent.allocated += resources;
            agent.refresh_available();
        }
    }

    /// Takes what client `c` holds of `resources` on agent `a` back; returns what it took.
    fn release(&mut self, a: u32, c: ClientRef, resources: &Resources) -> Resources {
        let Some(agent) = self.agents.get_mut(a as usize).and_then(Option::as_mut) else {
            return Resources::new();
        };
        let Some(position) = agent.holdings.iter().position(|h| h.client == c) else {
            return Resources::new();
        };
        let part = intersect(&agent.holdings[position].resources, resources);
        if part.is_empty() {
            return part;
        }
        agent.holdings[position].resources -= &part;
        if agent.holdings[position].resources.is_empty() {
            agent.holdings.swap_remove(position);
        }
        agent.allocated -= &part;
        agent.refresh_available();
        let quantities = self.names.quantities(&part);
        if let Some(client) = self.client_mut(c) {
            client.allocated -= &part;
            client.allocated_q.sub(&quantities);
            let node = client.node;
            self.roles.track(node, &part, &quantities, false);
        }
        part
    }

    /// Splits `resources` of framework `f` between its clients: each entry to the first
    /// role that may use its reservation (unreserved ones to the first role).
    fn split_by_role(&self, f: u32, resources: &Resources) -> Vec<(u32, Resources)> {
        let Some(framework) = self.frameworks.get(f as usize).and_then(Option::as_ref) else {
            return Vec::new();
        };
        let mut parts: Vec<(u32, Resources)> = Vec::new();
        for entry in resources {
            let slot = framework
                .clients
                .iter()
                .position(|client| entry.reservation().is_usable_by(&client.role))
                .unwrap_or(0) as u32;
            match parts.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, part)) => part.add_resource(entry),
                None => parts.push((slot, Resources::from(entry.clone()))),
            }
        }
        parts
    }

    /// The agents, in id order.
    pub fn agent_ids(&self) -> Vec<AgentId> {
        let mut ids: Vec<AgentId> = self.agent_index.keys().cloned().collect();
        ids.sort_unstable();
        ids
    }
}
