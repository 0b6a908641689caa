//! Scalar quantities without reservations: dense vectors of thousandths indexed by
//! interned resource names, for shares, quota guarantees, limits and headroom.

use std::collections::HashMap;
use std::sync::Arc;

use keel_proto::resources::{Reservation, Resource, Resources, Scalar, Value};

/// Interned scalar names: each name gets a small index for [`Quantities`].
#[derive(Debug, Clone, Default)]
pub(super) struct Names {
    index: HashMap<Arc<str>, usize>,
    names: Vec<Arc<str>>,
}

impl Names {
    /// The index of `name`, interning it.
    pub(super) fn intern(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.index.insert(name, self.names.len() - 1);
        self.names.len() - 1
    }

    /// The index of `name`, if interned.
    pub(super) fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The name at `i`.
    pub(super) fn name(&self, i: usize) -> &str {
        self.names.get(i).map_or("", |name| name)
    }

    /// How many names there are.
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// The scalar quantities of `resources` over all reservations, interning names.
    pub(super) fn quantities(&mut self, resources: &Resources) -> Quantities {
        let mut out = Quantities::default();
        for (name, milli) in resources.scalars_milli() {
            let i = self.intern(name);
            out.add_at(i, milli);
        }
        out
    }

    /// Quantities as unreserved resources, for display.
    pub(super) fn to_resources(&self, quantities: &Quantities) -> Resources {
        quantities
            .iter()
            .filter(|&(_, milli)| milli > 0)
            .filter_map(|(i, milli)| {
                let value = Value::Scalar(Scalar::from_milli(milli).unwrap_or(Scalar::MAX));
                Resource::new(self.name(i), value, Reservation::Unreserved).ok()
            })
            .collect()
    }
}

/// Thousandths per interned name (absent = 0). Arithmetic saturates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Quantities(Vec<u64>);

impl Quantities {
    /// The quantity of name `i`.
    pub(super) fn get(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }

    /// Sets name `i`.
    pub(super) fn set(&mut self, i: usize, milli: u64) {
        if self.0.len() <= i {
            if milli == 0 {
                return;
            }
            self.0.resize(i + 1, 0);
        }
        self.0[i] = milli;
    }

    /// Adds to name `i`.
    pub(super) fn add_at(&mut self, i: usize, milli: u64) {
        let sum = self.get(i).saturating_add(milli);
        self.set(i, sum);
    }

    /// Each `(index, milli)`, zeros included.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.0.iter().copied().enumerate()
    }

    /// Whether every quantity is zero.
    pub(super) fn is_zero(&self) -> bool {
        self.0.iter().all(|&milli| milli == 0)
    }

    /// Adds `other`, saturating.
    pub(super) fn add(&mut self, other: &Quantities) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// Subtracts `other`, saturating at zero.
    pub(super) fn sub(&mut self, other: &Quantities) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            *mine = mine.saturating_sub(*theirs);
        }
    }

    /// The largest `self[i] / total[i]` over names with a non-zero total (0 if none).
    pub(super) fn dominant_share(&self, total: &Quantities) -> f64 {
        self.0
            .iter()
            .zip(&total.0)
            .filter(|&(_, &total)| total > 0)
            .map(|(&used, &total)| used as f64 / total as f64)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_intern_names_and_compute_dominant_shares() {
        let mut names = Names::default();
        let total = names.quantities(&"cpus:10;mem:1000;cpus(eng):10;ports:[1-10]".parse().unwrap());
        let used = names.quantities(&"cpus:5;mem:100".parse().unwrap());
        assert_eq!(names.len(), 2);
        assert_eq!(total.get(names.get("cpus").unwrap()), 20_000);
        assert!((used.dominant_share(&total) - 0.25).abs() < 1e-12);
        let mut sum = used.clone();
        sum.add(&used);
        sum.sub(&total);
        assert!(sum.is_zero());
        assert_eq!(names.to_resources(&used), "cpus:5;mem:100".parse().unwrap());
    }
}
