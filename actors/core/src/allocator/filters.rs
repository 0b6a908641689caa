//! Offer filters of one framework role: resources it refused on an agent, not offered
//! to it again until a time passes. As in Mesos, a filter applies to an offer that is
//! contained in the refused resources; a larger offer (the agent freed more) passes.

use std::collections::HashMap;

use keel_proto::resources::Resources;

/// The most filters kept per agent; beyond, the one that expires first is dropped.
const MAX_FILTERS_PER_AGENT: usize = 8;

/// One refusal.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Filter {
    /// Until when (seconds, the caller's clock).
    pub(super) until: f64,
    /// What was refused.
    pub(super) resources: Resources,
}

/// The filters of one framework role, by agent.
#[derive(Debug, Clone, Default)]
pub(super) struct Filters {
    by_agent: HashMap<u32, Vec<Filter>>,
    /// The earliest `until` among the filters (for cheap pruning).
    earliest: f64,
}

impl Filters {
    /// Filters `resources` on `agent` until `until`.
    pub(super) fn add(&mut self, agent: u32, until: f64, resources: Resources) {
        if !until.is_finite() || resources.is_empty() {
            return;
        }
        if self.by_agent.is_empty() || until < self.earliest {
            self.earliest = until;
        }
        let filters = self.by_agent.entry(agent).or_default();
        // A new filter covering an old one that expires no later replaces it.
        filters.retain(|old| !(resources.contains(&old.resources) && old.until <= until));
        if filters.len() >= MAX_FILTERS_PER_AGENT {
            if let Some(first) = filters
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.until.total_cmp(&b.1.until))
                .map(|(position, _)| position)
            {
                filters.swap_remove(first);
            }
        }
        filters.push(Filter { until, resources });
    }

    /// Whether `offer` on `agent` is filtered at `now`.
    pub(super) fn filters(&self, agent: u32, offer: &Resources, now: f64) -> bool {
        self.by_agent
            .get(&agent)
            .is_some_and(|filters| filters.iter().any(|f| now < f.until && f.resources.contains(offer)))
    }

    /// Drops expired filters, when some may have expired.
    pub(super) fn prune(&mut self, now: f64) {
        if self.by_agent.is_empty() || now < self.earliest {
            return;
        }
        let mut earliest = f64::INFINITY;
        self.by_agent.retain(|_, filters| {
            filters.retain(|f| now < f.until);
            for f in filters.iter() {
                earliest = earliest.min(f.until);
            }
            !filters.is_empty()
        });
        self.earliest = earliest;
    }

    /// Drops the filters on `agent`.
    pub(super) fn remove_agent(&mut self, agent: u32) {
        self.by_agent.remove(&agent);
    }

    /// Drops every filter.
    pub(super) fn clear(&mut self) {
        self.by_agent.clear();
    }

    /// How many agents have a filter (expired ones included until pruned).
    pub(super) fn agents(&self) -> usize {
        self.by_agent.len()
    }
}
