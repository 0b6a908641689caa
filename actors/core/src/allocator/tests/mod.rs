//! Tests of the allocator core: unit tests per rule (DRF, filters, quota,
//! reservations, explanations) and property tests over random clusters.

mod drf;
mod explain;
mod filters;
mod props;
mod quota;

use std::collections::BTreeMap;

use super::messages::Allocation;
use super::{AllocatorCore, MinAllocatable};
use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::resources::Resources;

pub(super) fn res(text: &str) -> Resources {
    text.parse().unwrap()
}

pub(super) fn roles(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

pub(super) fn fid(id: &str) -> FrameworkId {
    id.into()
}

pub(super) fn aid(id: &str) -> AgentId {
    id.into()
}

/// A core with `agents` agents `a0..` of `each`.
pub(super) fn cluster(agents: usize, each: &str) -> AllocatorCore {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    for i in 0..agents {
        core.add_agent(format!("a{i}").into(), res(each), &[]);
    }
    core
}

/// One run at `now` over the agents in id order.
pub(super) fn run(core: &mut AllocatorCore, now: f64) -> Vec<Allocation> {
    let order = core.agent_ids();
    core.allocate(now, &order)
}

/// How many allocations each framework got.
pub(super) fn count(allocations: &[Allocation]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for allocation in allocations {
        *counts.entry(allocation.framework_id.to_string()).or_insert(0) += 1;
    }
    counts
}

/// What each (framework, role) got, summed.
pub(super) fn sums(allocations: &[Allocation]) -> BTreeMap<(String, String), Resources> {
    let mut sums: BTreeMap<(String, String), Resources> = BTreeMap::new();
    for allocation in allocations {
        *sums.entry((allocation.framework_id.to_string(), allocation.role.clone())).or_default() +=
            &allocation.resources;
    }
    sums
}

/// Gives every allocation back (as declines, with an optional filter).
pub(super) fn decline_all(core: &mut AllocatorCore, allocations: &[Allocation], until: Option<f64>) {
    for allocation in allocations {
        core.recover_in_role(
            &allocation.framework_id,
            &allocation.agent_id,
            &allocation.role,
            &allocation.resources,
            until,
        );
    }
}
