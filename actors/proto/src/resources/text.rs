//! The Mesos text syntax for resources: `cpus:4;mem(eng):1024;ports:[31000-32000]`.

use std::fmt;
use std::str::FromStr;

use super::value::{parse_scalar, ScalarProblem};
use super::{
    validate_principal, validate_role, Ranges, Reservation, Resource, Resources, ResourcesError, Value,
};

impl Resources {
    /// Parses the Mesos text syntax: entries `name:value` or `name(reservation):value`
    /// separated by `;`, whitespace allowed around every token, empty entries ignored (so
    /// `""` is no resources), repeated entries summed.
    ///
    /// - value: a scalar (`4`, `0.5`, `1e3`; rounded to thousandths) or ranges
    ///   (`[1-10, 20-30]`, a single value `[80]`, overlaps coalesced, `[]` empty);
    /// - reservation: `*` (unreserved, as is no parentheses), `role` (static),
    ///   `role,dynamic` or `role,dynamic=principal` (dynamic, a Keel extension).
    ///
    /// Every error is a [`ResourcesError`]; no input panics.
    pub fn parse(text: &str) -> Result<Resources, ResourcesError> {
        let entries = text
            .split(';')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(parse_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Resources::from_unsorted_checked(entries)
    }
}

impl FromStr for Resources {
    type Err = ResourcesError;

    fn from_str(text: &str) -> Result<Resources, ResourcesError> {
        Resources::parse(text)
    }
}

/// The text syntax, entries in normalised order separated by `;`, unreserved entries
/// without parentheses: `cpus:4;cpus(eng):0.5;ports:[31000-32000]`. Parses back to `self`.
impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, resource) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            resource.fmt(f)?;
        }
        Ok(())
    }
}

/// `name:value`, or `name(reservation):value` when reserved.
impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.reservation.is_unreserved() {
            write!(f, "({})", self.reservation)?;
        }
        write!(f, ":{}", self.value)
    }
}

fn syntax(entry: &str, reason: &'static str) -> ResourcesError {
    ResourcesError::Syntax { entry: entry.to_string(), reason }
}

/// Parses one trimmed, non-empty `name[(reservation)]:value`.
fn parse_entry(entry: &str) -> Result<Resource, ResourcesError> {
    let Some(name_end) = entry.find(['(', ':']) else {
        return Err(syntax(entry, "expected `name:value`"));
    };
    let name = entry[..name_end].trim();
    if name.is_empty() {
        return Err(ResourcesError::EmptyName { entry: entry.to_string() });
    }
    super::validate_name(name)?;
    let mut rest = &entry[name_end..];
    let mut reservation = Reservation::Unreserved;
    if let Some(after_paren) = rest.strip_prefix('(') {
        let Some(close) = after_paren.find(')') else {
            return Err(syntax(entry, "`(` without `)`"));
        };
        reservation = parse_reservation(entry, &after_paren[..close])?;
        rest = after_paren[close + 1..].trim_start();
    }
    let Some(value_text) = rest.strip_prefix(':') else {
        return Err(syntax(entry, "expected `:` after the name and reservation"));
    };
    let value_text = value_text.trim();
    let value = if let Some(inner) = value_text.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(syntax(entry, "`[` without a final `]`"));
        };
        Value::Ranges(parse_ranges(name, inner)?)
    } else if value_text.starts_with('{') {
        return Err(syntax(entry, "sets (`{a,b}`) are not supported"));
    } else {
        let scalar = parse_scalar(value_text)
            .map_err(|problem| scalar_error(problem, name.to_string(), value_text.to_string()))?;
        Value::Scalar(scalar)
    };
    Resource::new(name, value, reservation)
}

/// Parses the inside of the parentheses: `*`, `role`, `role,dynamic` or
/// `role,dynamic=principal`.
fn parse_reservation(entry: &str, inner: &str) -> Result<Reservation, ResourcesError> {
    let (role, kind) = match inner.split_once(',') {
        Some((role, kind)) => (role.trim(), Some(kind.trim())),
        None => (inner.trim(), None),
    };
    validate_role(role)?;
    let role_is_star = role == super::UNRESERVED_ROLE;
    let reservation = match kind {
        None if role_is_star => return Ok(Reservation::Unreserved),
        None => Reservation::Static { role: role.into() },
        Some("dynamic") => Reservation::Dynamic { role: role.into(), principal: None },
        Some(kind) => {
            let Some(principal) = kind.strip_prefix("dynamic").and_then(|k| k.trim_start().strip_prefix('='))
            else {
                return Err(syntax(
                    entry,
                    "expected `(role)`, `(role,dynamic)` or `(role,dynamic=principal)`",
                ));
            };
            let principal = principal.trim();
            validate_principal(principal)?;
            Reservation::Dynamic { role: role.into(), principal: Some(principal.into()) }
        }
    };
    reservation.validate()?;
    Ok(reservation)
}

/// Parses the inside of the brackets: `begin-end` or `value`, separated by `,`.
fn parse_ranges(name: &str, inner: &str) -> Result<Ranges, ResourcesError> {
    if inner.trim().is_empty() {
        return Ok(Ranges::default());
    }
    let parse_range = |range: &str| -> Option<(u64, u64)> {
        let (begin, end) = range.split_once('-').unwrap_or((range, range));
        let bounds = (begin.trim().parse().ok()?, end.trim().parse().ok()?);
        (bounds.0 <= bounds.1).then_some(bounds)
    };
    let intervals = inner
        .split(',')
        .map(|range| {
            parse_range(range.trim()).ok_or_else(|| ResourcesError::InvalidRange {
                name: name.to_string(),
                range: range.trim().to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ranges::new(intervals).unwrap_or_default())
}

/// The error for a rejected scalar of resource `name` written `value`.
pub(super) fn scalar_error(problem: ScalarProblem, name: String, value: String) -> ResourcesError {
    match problem {
        ScalarProblem::NotANumber => ResourcesError::InvalidNumber { name, value },
        ScalarProblem::Negative => ResourcesError::NegativeScalar { name, value },
        ScalarProblem::NonFinite => ResourcesError::NonFiniteScalar { name, value },
        ScalarProblem::TooLarge => ResourcesError::ScalarTooLarge { name, value },
    }
}
