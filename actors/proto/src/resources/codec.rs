//! The serde form of resources: a list of `{"name", "scalar" | "ranges", "role", ...}` maps,
//! validated and normalised on the way in.

use serde::{Deserialize, Serialize, Serializer};

use super::value::scalar_from_f64;
use super::{text, Ranges, Reservation, Resource, Resources, ResourcesError, Value, UNRESERVED_ROLE};

/// What an entry looks like on the wire, borrowed for serialising.
#[derive(Serialize)]
struct ResourceOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scalar: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ranges: Option<&'a [(u64, u64)]>,
    role: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dynamic: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
}

/// What an entry looks like on the wire, owned for deserialising; unknown fields are
/// ignored so that newer peers can add some.
#[derive(Deserialize)]
pub(super) struct ResourceIn {
    name: String,
    #[serde(default)]
    scalar: Option<f64>,
    #[serde(default)]
    ranges: Option<Vec<(u64, u64)>>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    dynamic: bool,
    #[serde(default)]
    principal: Option<String>,
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (dynamic, principal) = match &self.reservation {
            Reservation::Dynamic { principal, .. } => (true, principal.as_deref()),
            _ => (false, None),
        };
        ResourceOut {
            name: &self.name,
            scalar: self.value.as_scalar().map(|scalar| scalar.as_f64()),
            ranges: self.value.as_ranges().map(Ranges::as_slice),
            role: self.reservation.role(),
            dynamic,
            principal,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Resource, D::Error> {
        Resource::try_from(ResourceIn::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<ResourceIn> for Resource {
    type Error = ResourcesError;

    fn try_from(entry: ResourceIn) -> Result<Resource, ResourcesError> {
        let ResourceIn { name, scalar, ranges, role, dynamic, principal } = entry;
        let value = match (scalar, ranges) {
            (Some(scalar), None) => Value::Scalar(
                scalar_from_f64(scalar)
                    .map_err(|problem| text::scalar_error(problem, name.clone(), scalar.to_string()))?,
            ),
            (None, Some(intervals)) => {
                if let Some(&(begin, end)) = intervals.iter().find(|&&(begin, end)| begin > end) {
                    return Err(ResourcesError::InvalidRange { name, range: format!("{begin}-{end}") });
                }
                Value::Ranges(Ranges::new(intervals).unwrap_or_default())
            }
            (Some(_), Some(_)) => {
                return Err(ResourcesError::Syntax { entry: name, reason: "has both `scalar` and `ranges`" })
            }
            (None, None) => {
                return Err(ResourcesError::Syntax {
                    entry: name,
                    reason: "has neither `scalar` nor `ranges`",
                })
            }
        };
        let role = role.unwrap_or_else(|| UNRESERVED_ROLE.to_string());
        let reservation = match (dynamic, principal) {
            (true, principal) => {
                Reservation::Dynamic { role: role.into(), principal: principal.map(Into::into) }
            }
            (false, Some(principal)) => {
                return Err(ResourcesError::InvalidPrincipal {
                    principal,
                    reason: "a principal needs `\"dynamic\": true`",
                })
            }
            (false, None) if role == UNRESERVED_ROLE => Reservation::Unreserved,
            (false, None) => Reservation::Static { role: role.into() },
        };
        Resource::new(&name, value, reservation)
    }
}

impl Serialize for Resources {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.entries)
    }
}
