//! The role tree: hierarchical role names (`eng/ml/training`) as nodes under a root,
//! with per-role weights and quotas, and allocations summed up the tree (a role's
//! allocation counts toward its ancestors, as in Mesos's hierarchical DRF).

use std::collections::{BTreeMap, HashMap};

use keel_proto::resources::Resources;

use super::quantities::{Names, Quantities};
use super::quota::Quota;
use super::ClientRef;

/// The root node: the parent of top-level roles, never a role itself.
pub(super) const ROOT: u32 = 0;

/// One role (or the root).
#[derive(Debug, Clone, Default)]
pub(super) struct RoleNode {
    /// The full name (`eng/ml`); empty for the root.
    pub(super) name: String,
    /// The parent (`None` for the root).
    pub(super) parent: Option<u32>,
    /// The child roles.
    pub(super) children: Vec<u32>,
    /// The framework roles subscribed to exactly this role.
    pub(super) clients: Vec<ClientRef>,
    /// The weight (default 1).
    pub(super) weight: f64,
    /// What is allocated to this role and its descendants.
    pub(super) allocated: Resources,
    /// `allocated` as quantities.
    pub(super) allocated_q: Quantities,
    /// What is allocated to exactly this role.
    pub(super) own_q: Quantities,
    /// The quota, if any.
    pub(super) quota: Option<Quota>,
    /// The quota's guarantee as quantities (zero without quota).
    pub(super) guarantee_q: Quantities,
    /// The quota's limit as `(name index, milli)` pairs (names absent are unlimited).
    pub(super) limit_q: Vec<(usize, u64)>,
    /// Whether the slot is in use.
    live: bool,
}

impl RoleNode {
    /// The dominant share of this subtree's allocation divided by the weight.
    pub(super) fn weighted_share(&self, total: &Quantities) -> f64 {
        self.allocated_q.dominant_share(total) / self.weight
    }

    /// The dominant share of exactly this role's allocation divided by the weight.
    pub(super) fn own_weighted_share(&self, total: &Quantities) -> f64 {
        self.own_q.dominant_share(total) / self.weight
    }

    /// The room left under this node's own limit for name `n` (`u64::MAX` if unlimited).
    pub(super) fn limit_room(&self, n: Option<usize>) -> u64 {
        let Some(n) = n else { return u64::MAX };
        self.limit_q
            .iter()
            .find(|&&(limited, _)| limited == n)
            .map_or(u64::MAX, |&(_, limit)| limit.saturating_sub(self.allocated_q.get(n)))
    }

    /// Whether the allocation is above the quota limit for some name.
    pub(super) fn above_limit(&self) -> bool {
        self.limit_q.iter().any(|&(i, limit)| self.allocated_q.get(i) > limit)
    }
}

/// The role tree, its weights and quotas.
#[derive(Debug, Clone)]
pub(super) struct Roles {
    nodes: Vec<RoleNode>,
    index: HashMap<String, u32>,
    free: Vec<u32>,
    weights: BTreeMap<String, f64>,
    quotas: BTreeMap<String, Quota>,
}

impl Default for Roles {
    fn default() -> Self {
        let root = RoleNode { weight: 1.0, live: true, ..RoleNode::default() };
        Roles {
            nodes: vec![root],
            index: HashMap::new(),
            free: Vec::new(),
            weights: BTreeMap::new(),
            quotas: BTreeMap::new(),
        }
    }
}

/// The parent role's name: `eng` for `eng/ml`, `None` for a top-level role.
fn parent_name(role: &str) -> Option<&str> {
    role.rfind('/').map(|i| &role[..i])
}

impl Roles {
    /// The node at `i` (the root if `i` is out of range, which callers never pass).
    pub(super) fn node(&self, i: u32) -> &RoleNode {
        self.nodes.get(i as usize).unwrap_or(&self.nodes[ROOT as usize])
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut RoleNode> {
        self.nodes.get_mut(i as usize)
    }

    /// How many slots there are (live or not): the bound for per-node arrays.
    pub(super) fn slots(&self) -> usize {
        self.nodes.len()
    }

    /// The node of `role`, if it exists.
    pub(super) fn get(&self, role: &str) -> Option<u32> {
        self.index.get(role).copied()
    }

    /// The live roles (not the root), with their indices.
    pub(super) fn live(&self) -> impl Iterator<Item = (u32, &RoleNode)> + '_ {
        self.nodes.iter().enumerate().skip(1).filter(|(_, node)| node.live).map(|(i, node)| (i as u32, node))
    }

    /// Whether any role has a quota guarantee / a quota limit.
    pub(super) fn has_guarantees(&self) -> bool {
        self.quotas.values().any(|quota| !quota.guarantee.is_empty())
    }

    /// Whether any role has a quota limit.
    pub(super) fn has_limits(&self) -> bool {
        self.quotas.values().any(|quota| quota.limit.is_some())
    }

    /// The node of `role`, created with its ancestors if needed. `role` must be valid.
    pub(super) fn ensure(&mut self, role: &str, names: &mut Names) -> u32 {
        if let Some(i) = self.get(role) {
            return i;
        }
        let parent = match parent_name(role) {
            Some(parent) => self.ensure(parent, names),
            None => ROOT,
        };
        let weight = self.weights.get(role).copied().unwrap_or(1.0);
        let mut node = RoleNode {
            name: role.to_string(),
            parent: Some(parent),
            weight,
            live: true,
            ..RoleNode::default()
        };
        if let Some(quota) = self.quotas.get(role).cloned() {
            set_node_quota(&mut node, Some(quota), names);
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.index.insert(role.to_string(), i);
        if let Some(parent) = self.node_mut(parent) {
            parent.children.push(i);
        }
        i
    }

    /// `i` and its ancestors up to (and including) the root.
    pub(super) fn path(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(i), move |&i| self.node(i).parent)
    }

    /// Adds (or with `add` false, removes) an allocation to role `i` and its ancestors.
    pub(super) fn track(&mut self, i: u32, resources: &Resources, quantities: &Quantities, add: bool) {
        if let Some(node) = self.node_mut(i) {
            if add {
                node.own_q.add(quantities);
            } else {
                node.own_q.sub(quantities);
            }
        }
        let mut next = Some(i);
        while let Some(i) = next {
            let Some(node) = self.node_mut(i) else { break };
            if add {
                node.allocated += resources;
                node.allocated_q.add(quantities);
            } else {
                node.allocated -= resources;
                node.allocated_q.sub(quantities);
            }
            next = node.parent;
        }
    }

    /// Registers a client of role `i`.
    pub(super) fn add_client(&mut self, i: u32, client: ClientRef) {
        if let Some(node) = self.node_mut(i) {
            node.clients.push(client);
        }
    }

    /// Forgets a client of role `i`.
    pub(super) fn remove_client(&mut self, i: u32, client: ClientRef) {
        if let Some(node) = self.node_mut(i) {
            node.clients.retain(|c| *c != client);
        }
    }

    /// The weight of `role` (default 1).
    pub(super) fn weight_of(&self, role: &str) -> f64 {
        self.weights.get(role).copied().unwrap_or(1.0)
    }

    /// Sets the weight of `role` (1 removes the entry). Weight and role are validated.
    pub(super) fn set_weight(&mut self, role: &str, weight: f64) {
        if weight == 1.0 {
            self.weights.remove(role);
        } else {
            self.weights.insert(role.to_string(), weight);
        }
        if let Some(i) = self.get(role) {
            if let Some(node) = self.node_mut(i) {
                node.weight = weight;
            }
        }
    }

    /// The quota of `role`, if any.
    pub(super) fn quota_of(&self, role: &str) -> Option<&Quota> {
        self.quotas.get(role)
    }

    /// Sets (or with `None`, removes) the quota of `role`, creating its node.
    pub(super) fn set_quota(&mut self, role: &str, quota: Option<Quota>, names: &mut Names) {
        match &quota {
            Some(quota) => self.quotas.insert(role.to_string(), quota.clone()),
            None => self.quotas.remove(role),
        };
        let i = self.ensure(role, names);
        if let Some(node) = self.node_mut(i) {
            set_node_quota(node, quota, names);
        }
        self.prune(i);
    }

    /// Removes `i` and then its ancestors while they have no clients, children, quota or
    /// allocation.
    pub(super) fn prune(&mut self, i: u32) {
        let mut next = Some(i);
        while let Some(i) = next {
            if i == ROOT {
                return;
            }
            let node = self.node(i);
            if !node.live
                || !node.children.is_empty()
                || !node.clients.is_empty()
                || node.quota.is_some()
                || !node.allocated.is_empty()
            {
                return;
            }
            let parent = node.parent;
            let name = node.name.clone();
            self.index.remove(&name);
            if let Some(node) = self.node_mut(i) {
                *node = RoleNode::default();
            }
            self.free.push(i);
            if let Some(parent) = parent.and_then(|p| self.node_mut(p)) {
                parent.children.retain(|&child| child != i);
            }
            next = parent;
        }
    }
}

fn set_node_quota(node: &mut RoleNode, quota: Option<Quota>, names: &mut Names) {
    match &quota {
        Some(quota) => {
            node.guarantee_q = names.quantities(&quota.guarantee);
            // Names absent from the limit are unlimited (as in Mesos).
            node.limit_q = match &quota.limit {
                Some(limit) => names.quantities(limit).iter().filter(|&(_, milli)| milli > 0).collect(),
                None => Vec::new(),
            };
        }
        None => {
            node.guarantee_q = Quantities::default();
            node.limit_q = Vec::new();
        }
    }
    node.quota = quota;
}
