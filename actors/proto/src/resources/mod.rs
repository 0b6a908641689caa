//! The resource algebra, after Mesos's `Resources`: named scalars (`cpus`, `mem`) and ranges
//! (`ports`), unreserved or reserved for a role, with exact arithmetic, `contains` and filters.
//!
//! A [`Resources`] is normalised: its entries are sorted by (name, kind, reservation), hold at
//! most one entry per key, and no zero scalar or empty ranges. Scalars are exact thousandths
//! ([`Scalar`]); subtraction saturates at zero; ranges add as union and subtract as set
//! difference. The text syntax (see [`Resources::parse`]) and the serde form (see
//! [`Resources`]) both round-trip.
//!
//! One corner differs from the text syntax: `parse` and deserialisation reject a name with
//! both scalar and range values, but arithmetic never drops data, so adding `foo:1` to
//! `foo:[1-2]` (custom names only: `cpus`, `mem`, `disk`, `gpus` and `ports` have fixed kinds)
//! keeps both entries, as Mesos does; that sum prints as text `parse` rejects.

mod codec;
mod error;
mod reservation;
mod text;
mod value;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::sync::{Arc, LazyLock};

pub use error::ResourcesError;
pub use reservation::{
    is_self_or_ancestor, validate_principal, validate_role, Reservation, MAX_ROLE_LEN, UNRESERVED_ROLE,
};
pub use value::{Ranges, Scalar, Value, ValueKind, MAX_SCALAR_MILLI, MILLI_PER_UNIT};

/// The longest resource name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Well-known names, with the kind of value each must have.
const WELL_KNOWN: [(&str, ValueKind); 5] = [
    ("cpus", ValueKind::Scalar),
    ("disk", ValueKind::Scalar),
    ("gpus", ValueKind::Scalar),
    ("mem", ValueKind::Scalar),
    ("ports", ValueKind::Ranges),
];

/// One shared allocation per well-known name, so parsing `cpus` does not allocate.
static WELL_KNOWN_NAMES: LazyLock<[Arc<str>; 5]> = LazyLock::new(|| WELL_KNOWN.map(|(name, _)| name.into()));

fn intern_name(name: &str) -> Arc<str> {
    match WELL_KNOWN.iter().position(|&(known, _)| known == name) {
        Some(i) => WELL_KNOWN_NAMES[i].clone(),
        None => name.into(),
    }
}

/// Checks a resource name: non-empty, at most [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9_.-]`.
fn validate_name(name: &str) -> Result<(), ResourcesError> {
    if name.is_empty() {
        return Err(ResourcesError::EmptyName { entry: name.to_string() });
    }
    let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if name.len() > MAX_NAME_LEN || !name.bytes().all(valid) {
        return Err(ResourcesError::InvalidName { name: name.to_string() });
    }
    Ok(())
}

/// One entry: a name, a value and a reservation, all validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    name: Arc<str>,
    value: Value,
    reservation: Reservation,
}

impl Resource {
    /// A validated resource: the name is non-empty `[A-Za-z0-9_.-]`, well-known names have
    /// their kind (`cpus`, `mem`, `disk`, `gpus` scalar; `ports` ranges) and the reservation
    /// passes [`Reservation::validate`]. A zero value is allowed here and dropped by
    /// [`Resources`].
    pub fn new(name: &str, value: Value, reservation: Reservation) -> Result<Resource, ResourcesError> {
        validate_name(name)?;
        if let Some(&(_, expected)) = WELL_KNOWN.iter().find(|&&(known, _)| known == name) {
            if value.kind() != expected {
                return Err(ResourcesError::WrongKind { name: name.to_string(), expected });
            }
        }
        reservation.validate()?;
        Ok(Resource { name: intern_name(name), value, reservation })
    }

    /// A scalar resource; `value` is rounded to thousandths and must be finite, non-negative
    /// and at most 10^12.
    pub fn scalar(name: &str, value: f64, reservation: Reservation) -> Result<Resource, ResourcesError> {
        let scalar = value::scalar_from_f64(value)
            .map_err(|problem| text::scalar_error(problem, name.to_string(), value.to_string()))?;
        Resource::new(name, Value::Scalar(scalar), reservation)
    }

    /// A ranges resource from inclusive `(begin, end)` intervals, coalesced.
    pub fn ranges(
        name: &str,
        intervals: &[(u64, u64)],
        reservation: Reservation,
    ) -> Result<Resource, ResourcesError> {
        let ranges = Ranges::new(intervals.iter().copied()).ok_or_else(|| {
            let &(begin, end) = intervals.iter().find(|&&(begin, end)| begin > end).unwrap_or(&(0, 0));
            ResourcesError::InvalidRange { name: name.to_string(), range: format!("{begin}-{end}") }
        })?;
        Resource::new(name, Value::Ranges(ranges), reservation)
    }

    /// The name, such as `cpus`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The reservation.
    pub fn reservation(&self) -> &Reservation {
        &self.reservation
    }

    /// Whether the value is zero or empty.
    pub fn is_empty(&self) -> bool {
        self.value.is_zero()
    }

    /// The normalisation order: name, kind, reservation.
    fn key_cmp(&self, other: &Resource) -> Ordering {
        self.name
            .cmp(&other.name)
            .then_with(|| self.value.kind().cmp(&other.value.kind()))
            .then_with(|| self.reservation.cmp(&other.reservation))
    }
}

/// A normalised collection of resources, such as an agent's total or an offer.
///
/// Serialised as a list of entries in normalised order (by name, kind, reservation), each a map with `name`, either `scalar` (a number) or `ranges` (a list of
/// inclusive `[begin, end]` pairs), `role` (`*` when unreserved), and for dynamic
/// reservations `"dynamic": true` and maybe `principal`:
///
/// ```json
/// [{"name":"cpus","scalar":4.0,"role":"*"},
///  {"name":"ports","ranges":[[31000,32000]],"role":"eng","dynamic":true,"principal":"alice"}]
/// ```
///
/// Deserialisation validates every entry (as [`Resource::new`] does; a missing `role` is
/// `*`), rejects a name with both kinds, sums repeated entries and drops zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(try_from = "Vec<Resource>")]
pub struct Resources {
    entries: Vec<Resource>,
}

impl Resources {
    /// No resources.
    pub fn new() -> Resources {
        Resources::default()
    }

    /// Sorts, sums entries with the same key and drops zeros.
    fn from_unsorted(mut entries: Vec<Resource>) -> Resources {
        entries.sort_by(Resource::key_cmp);
        let mut merged: Vec<Resource> = Vec::with_capacity(entries.len());
        for entry in entries {
            match merged.last_mut() {
                Some(last) if last.key_cmp(&entry) == Ordering::Equal => last.value.add_assign(&entry.value),
                _ => merged.push(entry),
            }
        }
        merged.retain(|entry| !entry.is_empty());
        Resources { entries: merged }
    }

    /// Like `from_unsorted`, but rejects a name with both scalar and range values.
    fn from_unsorted_checked(entries: Vec<Resource>) -> Result<Resources, ResourcesError> {
        let mut entries = entries;
        entries.sort_by(Resource::key_cmp);
        if let Some(pair) = entries
            .windows(2)
            .find(|pair| pair[0].name == pair[1].name && pair[0].value.kind() != pair[1].value.kind())
        {
            return Err(ResourcesError::MixedKinds { name: pair[0].name.to_string() });
        }
        Ok(Resources::from_unsorted(entries))
    }

    /// How many entries there are (one per name, kind and reservation).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no resources.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in normalised order; none is zero.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> + '_ {
        self.entries.iter()
    }

    /// Adds one resource.
    pub fn add_resource(&mut self, resource: &Resource) {
        if resource.is_empty() {
            return;
        }
        match self.entries.binary_search_by(|entry| entry.key_cmp(resource)) {
            Ok(i) => self.entries[i].value.add_assign(&resource.value),
            Err(i) => self.entries.insert(i, resource.clone()),
        }
    }

    /// Whether `self` covers every entry of `other` with the entry of the same name and
    /// reservation: a scalar at least as large, or a superset of ranges. No allocation.
    pub fn contains(&self, other: &Resources) -> bool {
        let mut rest = &self.entries[..];
        other.entries.iter().all(|wanted| {
            rest = &rest[rest.partition_point(|entry| entry.key_cmp(wanted) == Ordering::Less)..];
            rest.first().is_some_and(|entry| {
                entry.key_cmp(wanted) == Ordering::Equal && entry.value.contains(&wanted.value)
            })
        })
    }

    /// The entries named `name` (adjacent in normalised order).
    fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        let start = self.entries.partition_point(|entry| &*entry.name < name);
        self.entries[start..].iter().take_while(move |entry| &*entry.name == name)
    }

    /// The total of scalar `name` over all reservations, in thousandths.
    pub fn scalar_milli(&self, name: &str) -> u64 {
        self.named(name)
            .filter_map(|entry| entry.value.as_scalar())
            .fold(Scalar::ZERO, Scalar::saturating_add)
            .milli()
    }

    /// The total of scalar `name` over all reservations (0 if absent).
    pub fn scalar(&self, name: &str) -> f64 {
        Scalar::from_milli(self.scalar_milli(name)).unwrap_or(Scalar::MAX).as_f64()
    }

    /// Total cpus over all reservations.
    pub fn cpus(&self) -> f64 {
        self.scalar("cpus")
    }

    /// Total memory in MB over all reservations.
    pub fn mem_mb(&self) -> f64 {
        self.scalar("mem")
    }

    /// Total disk in MB over all reservations.
    pub fn disk_mb(&self) -> f64 {
        self.scalar("disk")
    }

    /// Total gpus over all reservations.
    pub fn gpus(&self) -> f64 {
        self.scalar("gpus")
    }

    /// The union of ranges `name` over all reservations, as sorted coalesced intervals.
    pub fn ranges(&self, name: &str) -> Vec<(u64, u64)> {
        self.named(name)
            .filter_map(|entry| entry.value.as_ranges())
            .fold(Ranges::default(), |all, ranges| all.union(ranges))
            .as_slice()
            .to_vec()
    }

    /// The names present, sorted.
    pub fn names(&self) -> BTreeSet<&str> {
        self.entries.iter().map(|entry| entry.name()).collect()
    }

    /// Each scalar name with its total over all reservations in thousandths, sorted by name.
    /// Allocation-free: meant for computing dominant shares.
    pub fn scalars_milli(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        let mut rest = &self.entries[..];
        std::iter::from_fn(move || loop {
            let (first, tail) = rest.split_first()?;
            let same = tail
                .iter()
                .take_while(|entry| entry.name == first.name && entry.value.kind() == first.value.kind());
            let group = 1 + same.count();
            let (group_entries, after) = rest.split_at(group);
            rest = after;
            if let Value::Scalar(_) = first.value {
                let total = group_entries
                    .iter()
                    .filter_map(|entry| entry.value.as_scalar())
                    .fold(Scalar::ZERO, Scalar::saturating_add);
                return Some((first.name(), total.milli()));
            }
        })
    }

    /// The entries for which `keep` is true.
    pub fn filter(&self, mut keep: impl FnMut(&Resource) -> bool) -> Resources {
        Resources { entries: self.entries.iter().filter(|entry| keep(entry)).cloned().collect() }
    }

    /// The unreserved entries.
    pub fn unreserved(&self) -> Resources {
        self.filter(|entry| entry.reservation.is_unreserved())
    }

    /// The entries reserved (statically or dynamically) for exactly `role`; `*` gives none.
    pub fn reserved(&self, role: &str) -> Resources {
        self.filter(|entry| !entry.reservation.is_unreserved() && entry.reservation.role() == role)
    }

    /// What `role` may be offered: unreserved entries, and those reserved for `role` or for
    /// one of its ancestors (Mesos offers a role's reservations to its descendants too).
    pub fn allocatable_to(&self, role: &str) -> Resources {
        self.filter(|entry| entry.reservation.is_usable_by(role))
    }

    /// Every entry as unreserved, summed: for comparing quantities regardless of roles.
    pub fn without_reservations(&self) -> Resources {
        if self.entries.iter().all(|entry| entry.reservation.is_unreserved()) {
            return self.clone();
        }
        self.with_reservation(&Reservation::Unreserved)
    }

    /// Every entry statically reserved for `role` (unreserved if `role` is `*`), summed.
    pub fn flatten_to(&self, role: &str) -> Result<Resources, ResourcesError> {
        Ok(self.with_reservation(&Reservation::for_role(role)?))
    }

    fn with_reservation(&self, reservation: &Reservation) -> Resources {
        let entries = self
            .entries
            .iter()
            .map(|entry| Resource {
                name: entry.name.clone(),
                value: entry.value.clone(),
                reservation: reservation.clone(),
            })
            .collect();
        Resources::from_unsorted(entries)
    }

    fn add_assign_ref(&mut self, other: &Resources) {
        let original = self.entries.len();
        for resource in &other.entries {
            match self.entries[..original].binary_search_by(|entry| entry.key_cmp(resource)) {
                Ok(i) => self.entries[i].value.add_assign(&resource.value),
                Err(_) => self.entries.push(resource.clone()),
            }
        }
        if self.entries.len() > original {
            // Two sorted runs: the stable sort merges them in linear time.
            self.entries.sort_by(Resource::key_cmp);
        }
    }

    fn sub_assign_ref(&mut self, other: &Resources) {
        let mut emptied = false;
        for resource in &other.entries {
            if let Ok(i) = self.entries.binary_search_by(|entry| entry.key_cmp(resource)) {
                self.entries[i].value.sub_assign(&resource.value);
                emptied |= self.entries[i].is_empty();
            }
        }
        if emptied {
            self.entries.retain(|entry| !entry.is_empty());
        }
    }
}

impl From<Resource> for Resources {
    fn from(resource: Resource) -> Resources {
        Resources::from_unsorted(vec![resource])
    }
}

/// Collects entries, summing repeated keys; unlike `parse`, mixed kinds are kept.
impl FromIterator<Resource> for Resources {
    fn from_iter<I: IntoIterator<Item = Resource>>(iter: I) -> Resources {
        Resources::from_unsorted(iter.into_iter().collect())
    }
}

impl Extend<Resource> for Resources {
    fn extend<I: IntoIterator<Item = Resource>>(&mut self, iter: I) {
        self.add_assign_ref(&iter.into_iter().collect());
    }
}

impl TryFrom<Vec<Resource>> for Resources {
    type Error = ResourcesError;

    /// Normalises entries, rejecting a name with both scalar and range values.
    fn try_from(entries: Vec<Resource>) -> Result<Resources, ResourcesError> {
        Resources::from_unsorted_checked(entries)
    }
}

impl<'a> IntoIterator for &'a Resources {
    type Item = &'a Resource;
    type IntoIter = std::slice::Iter<'a, Resource>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

impl AddAssign<&Resources> for Resources {
    /// Sums scalars (saturating at [`Scalar::MAX`]) and unites ranges, per key.
    fn add_assign(&mut self, other: &Resources) {
        self.add_assign_ref(other);
    }
}

impl AddAssign for Resources {
    fn add_assign(&mut self, other: Resources) {
        self.add_assign_ref(&other);
    }
}

impl SubAssign<&Resources> for Resources {
    /// Subtracts per key: scalars saturate at zero, ranges lose `other`'s values; entries
    /// of `other` absent from `self` are ignored.
    fn sub_assign(&mut self, other: &Resources) {
        self.sub_assign_ref(other);
    }
}

impl SubAssign for Resources {
    fn sub_assign(&mut self, other: Resources) {
        self.sub_assign_ref(&other);
    }
}

macro_rules! binary_ops {
    ($($trait:ident $method:ident $assign:ident;)*) => {$(
        impl $trait for Resources {
            type Output = Resources;
            fn $method(mut self, other: Resources) -> Resources {
                self.$assign(&other);
                self
            }
        }
        impl $trait<&Resources> for Resources {
            type Output = Resources;
            fn $method(mut self, other: &Resources) -> Resources {
                self.$assign(other);
                self
            }
        }
        impl $trait<Resources> for &Resources {
            type Output = Resources;
            fn $method(self, other: Resources) -> Resources {
                let mut out = self.clone();
                out.$assign(&other);
                out
            }
        }
        impl $trait<&Resources> for &Resources {
            type Output = Resources;
            fn $method(self, other: &Resources) -> Resources {
                let mut out = self.clone();
                out.$assign(other);
                out
            }
        }
    )*};
}

binary_ops! {
    Add add add_assign_ref;
    Sub sub sub_assign_ref;
}

impl Sum for Resources {
    fn sum<I: Iterator<Item = Resources>>(iter: I) -> Resources {
        iter.fold(Resources::new(), |mut total, resources| {
            total += &resources;
            total
        })
    }
}

impl<'a> Sum<&'a Resources> for Resources {
    fn sum<I: Iterator<Item = &'a Resources>>(iter: I) -> Resources {
        iter.fold(Resources::new(), |mut total, resources| {
            total += resources;
            total
        })
    }
}
