//! Quota: guarantees (unreserved resources held back as headroom so that roles below
//! their guarantee can reach it) and limits (a role's allocation, offers included,
//! never goes above). The per-run headroom bookkeeping and the "chop" of an offer to
//! what a role may take live here.
//!
//! Hierarchical guarantees: a role's outstanding need is the larger of its own unmet
//! guarantee and the sum of its children's needs; the required headroom is the
//! root's need. Allocating `x` to a role lowers the required headroom by
//! `min(x, room)`, where `room` ([`Headroom::guarantee_room`]) is computed walking up
//! the tree. A role may take unreserved resources up to `room + surplus`, where the
//! surplus is the available unreserved headroom minus the required headroom.

use keel_proto::resources::{Resource, Resources, Scalar, Value};

use super::quantities::{Names, Quantities};
use super::roles::{Roles, ROOT};

/// A role's quota, after Mesos: a guarantee and an optional limit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quota {
    /// Resources the role is guaranteed to be able to get (scalars; reservations ignored):
    /// unreserved resources are held back from other roles until it has them.
    pub guarantee: Resources,
    /// The most the role (with its descendants) may be allocated, offers included.
    /// Scalar names absent from the limit are unlimited; `None` is no limit.
    pub limit: Option<Resources>,
}

/// The headroom bookkeeping of one allocation run.
#[derive(Debug, Default)]
pub(super) struct Headroom {
    /// Whether some role has a guarantee.
    pub(super) guarantees: bool,
    /// Whether some role has a limit.
    pub(super) limits: bool,
    /// Per role node: its outstanding need (root: the required headroom).
    needed: Vec<Quantities>,
    /// Per role node: the sum of its children's needs.
    children_needed: Vec<Quantities>,
    /// Unreserved resources not allocated, on active agents.
    available: Quantities,
    /// How many names there are.
    width: usize,
}

fn max_into(target: &mut Quantities, other: &Quantities, width: usize) {
    for i in 0..width {
        if other.get(i) > target.get(i) {
            target.set(i, other.get(i));
        }
    }
}

/// The unmet guarantee of a node.
fn own_need(roles: &Roles, i: u32, width: usize) -> Quantities {
    let node = roles.node(i);
    let mut need = Quantities::default();
    for n in 0..width {
        need.set(n, node.guarantee_q.get(n).saturating_sub(node.allocated_q.get(n)));
    }
    need
}

impl Headroom {
    /// The state at the start of a run; `available` is the unreserved free quantities.
    pub(super) fn new(roles: &Roles, names: &Names, available: Quantities) -> Headroom {
        let mut headroom = Headroom {
            guarantees: roles.has_guarantees(),
            limits: roles.has_limits(),
            needed: vec![Quantities::default(); roles.slots()],
            children_needed: vec![Quantities::default(); roles.slots()],
            available,
            width: names.len(),
        };
        if headroom.guarantees {
            headroom.fill(roles, ROOT);
        }
        headroom
    }

    fn fill(&mut self, roles: &Roles, i: u32) {
        let mut sum = Quantities::default();
        for &child in &roles.node(i).children {
            self.fill(roles, child);
            sum.add(&self.needed[child as usize]);
        }
        let mut needed = own_need(roles, i, self.width);
        max_into(&mut needed, &sum, self.width);
        self.children_needed[i as usize] = sum;
        self.needed[i as usize] = needed;
    }

    /// The unreserved quantities still needed for outstanding guarantees.
    pub(super) fn required(&self) -> Quantities {
        self.needed.get(ROOT as usize).cloned().unwrap_or_default()
    }

    /// Available unreserved headroom beyond the required headroom, for name `n`.
    pub(super) fn surplus(&self, n: usize) -> u64 {
        let required = self.needed.get(ROOT as usize).map_or(0, |q| q.get(n));
        self.available.get(n).saturating_sub(required)
    }

    /// How much of an allocation to role `i` counts toward outstanding guarantees.
    pub(super) fn guarantee_room(&self, roles: &Roles, i: u32) -> Quantities {
        let mut room = Quantities::default();
        if !self.guarantees {
            return room;
        }
        let (Some(needed), Some(children)) =
            (self.needed.get(i as usize), self.children_needed.get(i as usize))
        else {
            return room;
        };
        for n in 0..self.width {
            room.set(n, needed.get(n).saturating_sub(children.get(n)));
        }
        let mut node = i;
        while let Some(parent) = roles.node(node).parent {
            let p = parent as usize;
            for n in 0..self.width {
                let rest = self.children_needed[p].get(n).saturating_sub(room.get(n));
                room.set(n, self.needed[p].get(n).saturating_sub(rest));
            }
            node = parent;
        }
        room
    }

    /// The cap on unreserved resources for role `i` given its guarantee room: room +
    /// surplus per name, or `None` when no guarantee is outstanding anywhere.
    pub(super) fn unreserved_cap(&self, room: &Quantities) -> Option<Vec<u64>> {
        if !self.guarantees || self.required().is_zero() {
            return None;
        }
        Some((0..self.width).map(|n| room.get(n).saturating_add(self.surplus(n))).collect())
    }

    /// Updates needs along the path of role `i` after an allocation to it (already
    /// tracked in `roles`), and the available headroom by its unreserved part.
    pub(super) fn allocated(&mut self, roles: &Roles, i: u32, unreserved: &Quantities) {
        self.available.sub(unreserved);
        if !self.guarantees {
            return;
        }
        let mut change: Option<(Quantities, Quantities)> = None;
        for node in roles.path(i) {
            let n = node as usize;
            if n >= self.needed.len() {
                return;
            }
            if let Some((old, new)) = change.take() {
                self.children_needed[n].sub(&old);
                self.children_needed[n].add(&new);
            }
            let old = self.needed[n].clone();
            let mut needed = own_need(roles, node, self.width);
            max_into(&mut needed, &self.children_needed[n], self.width);
            self.needed[n] = needed.clone();
            change = Some((old, needed));
        }
    }
}

/// The room left under the limits of role `i` and its ancestors, per name (`u64::MAX`
/// when unlimited), or `None` when no limit applies.
pub(super) fn limit_room(roles: &Roles, names: &Names, i: u32) -> Option<Vec<u64>> {
    let mut room: Option<Vec<u64>> = None;
    for node in roles.path(i) {
        let node = roles.node(node);
        for &(n, limit) in &node.limit_q {
            let room = room.get_or_insert_with(|| vec![u64::MAX; names.len().max(n + 1)]);
            if room.len() <= n {
                room.resize(n + 1, u64::MAX);
            }
            room[n] = room[n].min(limit.saturating_sub(node.allocated_q.get(n)));
        }
    }
    room
}

/// `offer` cut down so that every scalar fits `limit` (reserved entries first, then
/// unreserved) and unreserved scalars also fit `unreserved`; `None` if it already fits.
pub(super) fn chop(
    offer: &Resources,
    names: &Names,
    limit: Option<&[u64]>,
    unreserved: Option<&[u64]>,
) -> Option<Resources> {
    if limit.is_none() && unreserved.is_none() {
        return None;
    }
    let cap = |caps: Option<&[u64]>, n: Option<usize>| match (caps, n) {
        (Some(caps), Some(n)) => caps.get(n).copied().unwrap_or(u64::MAX),
        _ => u64::MAX,
    };
    let fits = {
        let mut reserved_q = Quantities::default();
        let mut unreserved_q = Quantities::default();
        for entry in offer {
            if let (Some(scalar), Some(n)) = (entry.value().as_scalar(), names.get(entry.name())) {
                let target =
                    if entry.reservation().is_unreserved() { &mut unreserved_q } else { &mut reserved_q };
                target.add_at(n, scalar.milli());
            }
        }
        (0..names.len()).all(|n| {
            let total = reserved_q.get(n).saturating_add(unreserved_q.get(n));
            total <= cap(limit, Some(n)) && unreserved_q.get(n) <= cap(unreserved, Some(n))
        })
    };
    if fits {
        return None;
    }
    let mut budget: Vec<u64> = (0..names.len()).map(|n| cap(limit, Some(n))).collect();
    let mut out: Vec<Resource> = Vec::with_capacity(offer.len());
    for pass_unreserved in [false, true] {
        for entry in offer.iter().filter(|e| e.reservation().is_unreserved() == pass_unreserved) {
            let Some(scalar) = entry.value().as_scalar() else {
                out.push(entry.clone());
                continue;
            };
            let n = names.get(entry.name());
            let mut take = scalar.milli();
            if let Some(n) = n {
                take = take.min(budget[n]);
                if pass_unreserved {
                    take = take.min(cap(unreserved, Some(n)));
                }
                budget[n] -= take;
            }
            if take == 0 {
                continue;
            }
            let value = Value::Scalar(Scalar::from_milli(take).unwrap_or(Scalar::MAX));
            if let Ok(resource) = Resource::new(entry.name(), value, entry.reservation().clone()) {
                out.push(resource);
            }
        }
    }
    Some(out.into_iter().collect())
}
