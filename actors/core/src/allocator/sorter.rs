//! Weighted hierarchical DRF ordering for one allocation stage.
//!
//! At each node of the role tree, the entries are the child roles (keyed by their
//! subtree's dominant share divided by their weight) and, when frameworks subscribe
//! to the node's role itself, an `Own` entry (keyed by the role's own allocation's
//! share divided by its weight, Mesos's virtual leaf). Under `Own`, the role's
//! framework roles ("clients") are keyed by their own dominant share. Ties go to the
//! lower index (creation order).
//!
//! The order is built once per stage with only the clients that may take something,
//! then kept up to date incrementally: after an allocation only the entries on the
//! path from the client to the root are re-keyed (O(depth log n)); exhausted roles and
//! clients are removed.

use std::collections::{BTreeSet, HashMap};

use super::quantities::Quantities;
use super::roles::{Roles, ROOT};
use super::ClientRef;

/// An entry at a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    /// The node's own clients.
    Own(u32),
    /// A child role's subtree.
    Child(u32),
}

/// The ordering state of one node.
#[derive(Debug, Default)]
struct Slot {
    /// The key of `Child(this)` in the parent's entries, when present.
    present: Option<u64>,
    /// The key of `Own(this)` in this node's entries, when present.
    own: Option<u64>,
    entries: BTreeSet<(u64, Entry)>,
    clients: BTreeSet<(u64, ClientRef)>,
    /// Removed for the rest of the stage.
    blocked: bool,
}

/// What the walk reaches, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// A role's subtree, before descending into it.
    Subtree(u32),
    /// A role's own clients, before visiting them.
    Role(u32),
    /// A client of the role last announced by `Role`.
    Client(ClientRef),
}

/// What the visitor wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Go on (descend into a subtree or a role's clients; next client).
    Go,
    /// Skip this subtree or role (or the rest of the role's clients).
    Skip,
    /// Stop the walk.
    Stop,
}

/// A sort key: the bits of a non-negative share (same order as the float).
fn key(share: f64) -> u64 {
    if share.is_finite() && share > 0.0 {
        share.to_bits()
    } else {
        0
    }
}

/// The order of one stage.
#[derive(Debug, Default)]
pub(super) struct Order {
    slots: Vec<Slot>,
    client_keys: HashMap<ClientRef, (u32, u64)>,
}

impl Order {
    /// An empty order for `roles`.
    pub(super) fn new(roles: &Roles) -> Order {
        Order { slots: (0..roles.slots()).map(|_| Slot::default()).collect(), client_keys: HashMap::new() }
    }

    /// Whether nothing is left to visit.
    pub(super) fn is_empty(&self) -> bool {
        self.slots.first().is_none_or(|root| root.entries.is_empty())
    }

    /// Adds a client of role `role` whose dominant share is `share`.
    pub(super) fn insert(
        &mut self,
        roles: &Roles,
        total: &Quantities,
        role: u32,
        client: ClientRef,
        share: f64,
    ) {
        let r = role as usize;
        if r >= self.slots.len() || self.slots[r].blocked || self.client_keys.contains_key(&client) {
            return;
        }
        let k = key(share);
        self.slots[r].clients.insert((k, client));
        self.client_keys.insert(client, (role, k));
        if self.slots[r].own.is_none() {
            let own = key(roles.node(role).own_weighted_share(total));
            self.slots[r].entries.insert((own, Entry::Own(role)));
            self.slots[r].own = Some(own);
        }
        self.activate(roles, total, role);
    }

    /// Links `i` (which has entries) into its ancestors up to the root.
    fn activate(&mut self, roles: &Roles, total: &Quantities, mut i: u32) {
        while i != ROOT {
            let slot = &self.slots[i as usize];
            if slot.present.is_some() || slot.blocked || slot.entries.is_empty() {
                return;
            }
            let Some(parent) = roles.node(i).parent else { return };
            let k = key(roles.node(i).weighted_share(total));
            self.slots[parent as usize].entries.insert((k, Entry::Child(i)));
            self.slots[i as usize].present = Some(k);
            i = parent;
        }
    }

    /// Unlinks `i` from its parent, and the parent if that empties it, and so on.
    fn deactivate(&mut self, roles: &Roles, mut i: u32) {
        while i != ROOT {
            let Some(k) = self.slots[i as usize].present.take() else { return };
            let Some(parent) = roles.node(i).parent else { return };
            let entries = &mut self.slots[parent as usize].entries;
            entries.remove(&(k, Entry::Child(i)));
            if !entries.is_empty() {
                return;
            }
            i = parent;
        }
    }

    /// Removes the own clients of role `i`.
    pub(super) fn remove_own(&mut self, roles: &Roles, i: u32) {
        let Some(slot) = self.slots.get_mut(i as usize) else { return };
        if let Some(k) = slot.own.take() {
            slot.entries.remove(&(k, Entry::Own(i)));
            if slot.entries.is_empty() {
                self.deactivate(roles, i);
            }
        }
    }

    /// Removes role `i`'s whole subtree for the rest of the stage.
    pub(super) fn block(&mut self, roles: &Roles, i: u32) {
        if i == ROOT || i as usize >= self.slots.len() {
            return;
        }
        self.slots[i as usize].blocked = true;
        self.deactivate(roles, i);
    }

    /// Re-keys `client` (of role `role`) and the entries on the path to the root after
    /// its allocation changed.
    pub(super) fn update(
        &mut self,
        roles: &Roles,
        total: &Quantities,
        role: u32,
        client: ClientRef,
        share: f64,
    ) {
        if role as usize >= self.slots.len() {
            return;
        }
        if let Some((_, old)) = self.client_keys.get(&client).copied() {
            let k = key(share);
            let slot = &mut self.slots[role as usize];
            if slot.clients.remove(&(old, client)) {
                slot.clients.insert((k, client));
                self.client_keys.insert(client, (role, k));
            }
        }
        let slot = &mut self.slots[role as usize];
        if let Some(old) = slot.own {
            let k = key(roles.node(role).own_weighted_share(total));
            slot.entries.remove(&(old, Entry::Own(role)));
            slot.entries.insert((k, Entry::Own(role)));
            slot.own = Some(k);
        }
        let mut i = role;
        while i != ROOT {
            let Some(parent) = roles.node(i).parent else { return };
            let Some(old) = self.slots[i as usize].present else { return };
            let k = key(roles.node(i).weighted_share(total));
            let entries = &mut self.slots[parent as usize].entries;
            entries.remove(&(old, Entry::Child(i)));
            entries.insert((k, Entry::Child(i)));
            self.slots[i as usize].present = Some(k);
            i = parent;
        }
    }

    /// Visits entries in order (depth first, lowest key first) until `visit` stops;
    /// returns whether it stopped.
    pub(super) fn walk(&self, visit: &mut impl FnMut(Step) -> Flow) -> bool {
        self.walk_from(ROOT, visit)
    }

    fn walk_from(&self, i: u32, visit: &mut impl FnMut(Step) -> Flow) -> bool {
        let Some(slot) = self.slots.get(i as usize) else { return false };
        for &(_, entry) in &slot.entries {
            match entry {
                Entry::Child(child) => match visit(Step::Subtree(child)) {
                    Flow::Stop => return true,
                    Flow::Skip => {}
                    Flow::Go => {
                        if self.walk_from(child, visit) {
                            return true;
                        }
                    }
                },
                Entry::Own(role) => match visit(Step::Role(role)) {
                    Flow::Stop => return true,
                    Flow::Skip => {}
                    Flow::Go => {
                        for &(_, client) in &self.slots[role as usize].clients {
                            match visit(Step::Client(client)) {
                                Flow::Stop => return true,
                                Flow::Skip => break,
                                Flow::Go => {}
                            }
                        }
                    }
                },
            }
        }
        false
    }
}
