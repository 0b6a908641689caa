//! Resource values: exact fixed-point scalars (thousandths, as Mesos rounds them) and
//! sorted, coalesced sets of inclusive `u64` ranges.

use std::fmt;

/// Thousandths in one unit: scalars are stored exactly as integer thousandths.
pub const MILLI_PER_UNIT: u64 = 1000;

/// The largest scalar, in thousandths (10^12 units: a trillion cpus, or an exabyte of MB).
///
/// Sums saturate here. Below this bound `milli as f64 / 1000.0` converts back to the same
/// thousandths, so the JSON form (`f64`) round-trips exactly.
pub const MAX_SCALAR_MILLI: u64 = 1_000_000_000_000_000;

/// A non-negative quantity stored exactly in thousandths, so `0.1 + 0.2 == 0.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Scalar(u64);

impl Scalar {
    /// Zero.
    pub const ZERO: Scalar = Scalar(0);
    /// The largest scalar, [`MAX_SCALAR_MILLI`] thousandths.
    pub const MAX: Scalar = Scalar(MAX_SCALAR_MILLI);

    /// The scalar of `milli` thousandths, or `None` above [`MAX_SCALAR_MILLI`].
    pub fn from_milli(milli: u64) -> Option<Scalar> {
        (milli <= MAX_SCALAR_MILLI).then_some(Scalar(milli))
    }

    /// `value` rounded to the nearest thousandth (halves away from zero, as Mesos does), or
    /// `None` if it is negative, NaN, infinite or above [`Scalar::MAX`].
    pub fn from_f64(value: f64) -> Option<Scalar> {
        scalar_from_f64(value).ok()
    }

    /// The value in thousandths.
    pub fn milli(self) -> u64 {
        self.0
    }

    /// The value as a float (the nearest `f64` to the exact decimal).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / MILLI_PER_UNIT as f64
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The sum, saturating at [`Scalar::MAX`].
    pub fn saturating_add(self, other: Scalar) -> Scalar {
        Scalar(self.0.saturating_add(other.0).min(MAX_SCALAR_MILLI))
    }

    /// The difference, saturating at zero.
    pub fn saturating_sub(self, other: Scalar) -> Scalar {
        Scalar(self.0.saturating_sub(other.0))
    }
}

/// The shortest exact decimal: `4`, `0.5`, `1.125`.
impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = self.0 / MILLI_PER_UNIT;
        let milli = self.0 % MILLI_PER_UNIT;
        match milli {
            0 => write!(f, "{units}"),
            m if m % 100 == 0 => write!(f, "{units}.{}", m / 100),
            m if m % 10 == 0 => write!(f, "{units}.{:02}", m / 10),
            m => write!(f, "{units}.{m:03}"),
        }
    }
}

/// Why a scalar was rejected; the caller adds the name and the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScalarProblem {
    NotANumber,
    Negative,
    NonFinite,
    TooLarge,
}

pub(super) fn scalar_from_f64(value: f64) -> Result<Scalar, ScalarProblem> {
    if !value.is_finite() {
        return Err(ScalarProblem::NonFinite);
    }
    if value < 0.0 {
        return Err(ScalarProblem::Negative);
    }
    let milli = (value * MILLI_PER_UNIT as f64).round();
    if milli > MAX_SCALAR_MILLI as f64 {
        return Err(ScalarProblem::TooLarge);
    }
    Ok(Scalar(milli as u64))
}

/// Parses a scalar. Plain decimals (`12`, `0.125`, `.5`, `3.`) are parsed exactly, rounding
/// the fourth decimal half up; anything else (`1e3`, `-1`, `inf`) goes through `f64`.
pub(super) fn parse_scalar(text: &str) -> Result<Scalar, ScalarProblem> {
    let (integer, fraction) = text.split_once('.').unwrap_or((text, ""));
    let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if integer.len() + fraction.len() == 0 || !is_digits(integer) || !is_digits(fraction) {
        return match text.parse::<f64>() {
            Ok(value) => scalar_from_f64(value),
            Err(_) => Err(ScalarProblem::NotANumber),
        };
    }
    let mut milli: u64 = 0;
    for digit in integer.bytes() {
        milli = milli
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(digit - b'0')))
            .ok_or(ScalarProblem::TooLarge)?;
    }
    let mut digits = fraction.bytes().map(|b| u64::from(b - b'0'));
    let mut thousandths = 0;
    for scale in [100, 10, 1] {
        thousandths += digits.next().unwrap_or(0) * scale;
    }
    if digits.next().is_some_and(|d| d >= 5) {
        thousandths += 1;
    }
    milli
        .checked_mul(MILLI_PER_UNIT)
        .and_then(|m| m.checked_add(thousandths))
        .and_then(Scalar::from_milli)
        .ok_or(ScalarProblem::TooLarge)
}

/// A set of `u64` values as sorted, disjoint, non-adjacent inclusive intervals, such as
/// `[31000-31005, 31010-32000]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// The union of inclusive `(begin, end)` intervals in any order (overlaps are coalesced),
    /// or `None` if some interval has `begin > end`.
    pub fn new(intervals: impl IntoIterator<Item = (u64, u64)>) -> Option<Ranges> {
        let mut intervals: Vec<(u64, u64)> = intervals.into_iter().collect();
        if intervals.iter().any(|&(begin, end)| begin > end) {
            return None;
        }
        intervals.sort_unstable();
        Some(Ranges(coalesce_sorted(intervals)))
    }

    /// The intervals: sorted, disjoint and non-adjacent.
    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Whether no value is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many values are in the set.
    pub fn count(&self) -> u128 {
        self.0.iter().map(|&(begin, end)| u128::from(end - begin) + 1).sum()
    }

    /// Whether `value` is in the set.
    pub fn contains_value(&self, value: u64) -> bool {
        let i = self.0.partition_point(|&(_, end)| end < value);
        self.0.get(i).is_some_and(|&(begin, _)| begin <= value)
    }

    /// Whether every value of `other` is in `self`. Linear, no allocation.
    pub fn contains(&self, other: &Ranges) -> bool {
        let mut i = 0;
        for &(begin, end) in &other.0 {
            while i < self.0.len() && self.0[i].1 < begin {
                i += 1;
            }
            match self.0.get(i) {
                Some(&(b, e)) if b <= begin && end <= e => {}
                _ => return false,
            }
        }
        true
    }

    /// The values in either set.
    pub fn union(&self, other: &Ranges) -> Ranges {
        if other.0.is_empty() {
            return self.clone();
        }
        let mut merged = Vec::with_capacity(self.0.len() + other.0.len());
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() || j < other.0.len() {
            if j == other.0.len() || (i < self.0.len() && self.0[i] <= other.0[j]) {
                merged.push(self.0[i]);
                i += 1;
            } else {
                merged.push(other.0[j]);
                j += 1;
            }
        }
        Ranges(coalesce_sorted(merged))
    }

    /// The values in `self` and not in `other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::with_capacity(self.0.len());
        let mut j = 0;
        for &(begin, end) in &self.0 {
            while j < other.0.len() && other.0[j].1 < begin {
                j += 1;
            }
            let mut begin = begin;
            let mut covered = false;
            for &(b, e) in other.0[j..].iter().take_while(|&&(b, _)| b <= end) {
                if b > begin {
                    out.push((begin, b - 1));
                }
                if e >= end {
                    covered = true;
                    break;
                }
                begin = e + 1;
            }
            if !covered {
                out.push((begin, end));
            }
        }
        Ranges(out)
    }
}

/// Merges overlapping or adjacent intervals of a list sorted by begin.
fn coalesce_sorted(sorted: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (begin, end) in sorted {
        match out.last_mut() {
            Some(last) if begin <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => out.push((begin, end)),
        }
    }
    out
}

/// `[1-10, 20-30]`, as Mesos writes ranges.
impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, (begin, end)) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{begin}-{end}")?;
        }
        f.write_str("]")
    }
}

/// Which kind of value a resource has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueKind {
    /// A [`Scalar`].
    Scalar,
    /// [`Ranges`].
    Ranges,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Scalar => "scalar",
            ValueKind::Ranges => "ranges",
        })
    }
}

/// A resource's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A quantity such as `cpus:2.5`.
    Scalar(Scalar),
    /// A set of values such as `ports:[31000-32000]`.
    Ranges(Ranges),
}

impl Value {
    /// The kind of value.
    pub fn kind(&self) -> ValueKind {
        match self {
            Value::Scalar(_) => ValueKind::Scalar,
            Value::Ranges(_) => ValueKind::Ranges,
        }
    }

    /// Whether this is a zero scalar or empty ranges.
    pub fn is_zero(&self) -> bool {
        match self {
            Value::Scalar(scalar) => scalar.is_zero(),
            Value::Ranges(ranges) => ranges.is_empty(),
        }
    }

    /// The scalar, if this is one.
    pub fn as_scalar(&self) -> Option<Scalar> {
        match self {
            Value::Scalar(scalar) => Some(*scalar),
            Value::Ranges(_) => None,
        }
    }

    /// The ranges, if these are ranges.
    pub fn as_ranges(&self) -> Option<&Ranges> {
        match self {
            Value::Scalar(_) => None,
            Value::Ranges(ranges) => Some(ranges),
        }
    }

    /// Adds a value of the same kind (sum or union); a value of another kind is ignored.
    pub(super) fn add_assign(&mut self, other: &Value) {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => *a = a.saturating_add(*b),
            (Value::Ranges(a), Value::Ranges(b)) => *a = a.union(b),
            _ => {}
        }
    }

    /// Subtracts a value of the same kind (saturating, or set difference); a value of another
    /// kind is ignored.
    pub(super) fn sub_assign(&mut self, other: &Value) {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => *a = a.saturating_sub(*b),
            (Value::Ranges(a), Value::Ranges(b)) if !b.is_empty() => *a = a.difference(b),
            _ => {}
        }
    }

    /// Whether `self` covers `other`: a scalar at least as large, or a superset.
    pub(super) fn contains(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Scalar(a), Value::Scalar(b)) => a >= b,
            (Value::Ranges(a), Value::Ranges(b)) => a.contains(b),
            _ => other.is_zero(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(scalar) => scalar.fmt(f),
            Value::Ranges(ranges) => ranges.fmt(f),
        }
    }
}
