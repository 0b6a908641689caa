//! Resources in v1 JSON: `{"name", "type": "SCALAR"|"RANGES", "scalar": {"value"}
//! | "ranges": {"range": [{"begin", "end"}]}}` with the reservation either in the
//! pre-refinement form a framework without RESERVATION_REFINEMENT expects (`"role"`,
//! plus `"reservation": {"principal"}` when dynamic) or as a `"reservations"`
//! stack. Keel's algebra has no SET values, persistent volumes, revocable or shared
//! resources: reading one is a 400 that says so.

use keel_proto::resources::{Ranges, Reservation, Resource, Resources, Value as KeelValue};
use serde_json::{json, Map, Value};

use super::{array, get, number, required_string, string, Parsed};
use crate::v1::error::V1Error;

/// How reservations are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationFormat {
    /// `"role"` and `"reservation"` (frameworks without RESERVATION_REFINEMENT).
    PreRefinement,
    /// `"reservations": [{"type", "role", "principal"}]`.
    Refinement,
}

/// Resources as a v1 array; with `allocated_role`, each carries
/// `allocation_info` (MULTI_ROLE frameworks).
pub fn to_v1(resources: &Resources, format: ReservationFormat, allocated_role: Option<&str>) -> Value {
    Value::Array(resources.iter().map(|r| resource_to_v1(r, format, allocated_role)).collect())
}

/// Resources as a v1 array in the pre-refinement form (operator views).
pub fn to_v1_plain(resources: &Resources) -> Value {
    to_v1(resources, ReservationFormat::PreRefinement, None)
}

fn resource_to_v1(resource: &Resource, format: ReservationFormat, allocated_role: Option<&str>) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(resource.name()));
    match resource.value() {
        KeelValue::Scalar(scalar) => {
            out.insert("type".into(), json!("SCALAR"));
            out.insert("scalar".into(), json!({ "value": scalar.as_f64() }));
        }
        KeelValue::Ranges(ranges) => {
            out.insert("type".into(), json!("RANGES"));
            let range: Vec<Value> =
                ranges.as_slice().iter().map(|(b, e)| json!({ "begin": b, "end": e })).collect();
            out.insert("ranges".into(), json!({ "range": range }));
        }
    }
    match (format, resource.reservation()) {
        (ReservationFormat::PreRefinement, Reservation::Unreserved) => {
            out.insert("role".into(), json!("*"));
        }
        (ReservationFormat::PreRefinement, Reservation::Static { role }) => {
            out.insert("role".into(), json!(role.as_ref()));
        }
        (ReservationFormat::PreRefinement, Reservation::Dynamic { role, principal }) => {
            out.insert("role".into(), json!(role.as_ref()));
            let reservation = match principal {
                Some(p) => json!({ "principal": p.as_ref() }),
                None => json!({}),
            };
            out.insert("reservation".into(), reservation);
        }
        (ReservationFormat::Refinement, Reservation::Unreserved) => {}
        (ReservationFormat::Refinement, Reservation::Static { role }) => {
            out.insert("reservations".into(), json!([{ "type": "STATIC", "role": role.as_ref() }]));
        }
        (ReservationFormat::Refinement, Reservation::Dynamic { role, principal }) => {
            let mut entry = json!({ "type": "DYNAMIC", "role": role.as_ref() });
            if let Some(p) = principal {
                entry["principal"] = json!(p.as_ref());
            }
            out.insert("reservations".into(), json!([entry]));
        }
    }
    if let Some(role) = allocated_role {
        out.insert("allocation_info".into(), json!({ "role": role }));
    }
    Value::Object(out)
}

/// Reads a v1 resource array.
pub fn from_v1(items: &[Value]) -> Parsed<Resources> {
    let entries = items.iter().map(resource_from_v1).collect::<Parsed<Vec<Resource>>>()?;
    Resources::try_from(entries).map_err(|e| V1Error::bad(format!("invalid resources: {e}")))
}

/// Reads the resource array at `value[key]` (empty when absent).
pub fn field(value: &Value, key: &str) -> Parsed<Resources> {
    from_v1(array(value, key)?)
}

fn resource_from_v1(item: &Value) -> Parsed<Resource> {
    let name = required_string(item, "name")?;
    for unsupported in ["disk", "revocable", "shared"] {
        let present = match get(item, unsupported) {
            // An empty disk info is a plain disk.
            Some(Value::Object(map)) if unsupported == "disk" => {
                map.contains_key("persistence") || map.contains_key("volume")
            }
            Some(_) => true,
            None => false,
        };
        if present {
            return Err(V1Error::bad(format!(
                "resource {name:?}: Keel does not support {unsupported} resources (persistent volumes, \
                 revocable and shared resources are not implemented)"
            )));
        }
    }
    let reservation = reservation_from_v1(item)?;
    let kind = string(item, "type")?.unwrap_or_else(|| "SCALAR".into());
    let bad = |e: keel_proto::resources::ResourcesError| V1Error::bad(format!("resource {name:?}: {e}"));
    match kind.as_str() {
        "SCALAR" => {
            let scalar = get(item, "scalar")
                .ok_or_else(|| V1Error::bad(format!("resource {name:?}: missing 'scalar'")))?;
            let value = number(scalar, "value")?
                .ok_or_else(|| V1Error::bad(format!("resource {name:?}: missing 'scalar.value'")))?;
            Resource::scalar(&name, value, reservation).map_err(bad)
        }
        "RANGES" => {
            let ranges = get(item, "ranges")
                .ok_or_else(|| V1Error::bad(format!("resource {name:?}: missing 'ranges'")))?;
            let mut intervals = Vec::new();
            for range in array(ranges, "range")?.iter().take(100_000) {
                let bound = |key| -> Parsed<u64> {
                    let value = number(range, key)?
                        .ok_or_else(|| V1Error::bad(format!("resource {name:?}: a range needs '{key}'")))?;
                    if !(0.0..=u64::MAX as f64).contains(&value) || value.fract() != 0.0 {
                        return Err(V1Error::bad(format!(
                            "resource {name:?}: range bound {value} is not a u64"
                        )));
                    }
                    Ok(value as u64)
                };
                intervals.push((bound("begin")?, bound("end")?));
            }
            if Ranges::new(intervals.iter().copied()).is_none() {
                return Err(V1Error::bad(format!("resource {name:?}: a range has begin > end")));
            }
            Resource::ranges(&name, &intervals, reservation).map_err(bad)
        }
        "SET" => Err(V1Error::bad(format!("resource {name:?}: Keel does not support SET resources"))),
        other => Err(V1Error::bad(format!("resource {name:?}: unknown type {other:?}"))),
    }
}

/// The reservation of a v1 resource, in either format.
fn reservation_from_v1(item: &Value) -> Parsed<Reservation> {
    let stack = array(item, "reservations")?;
    if let Some(last) = stack.last() {
        let role = required_string(last, "role")?;
        let principal = string(last, "principal")?;
        return Ok(match string(last, "type")?.as_deref() {
            Some("STATIC") => Reservation::Static { role: role.as_str().into() },
            Some("DYNAMIC") | None => Reservation::Dynamic {
                role: role.as_str().into(),
                principal: principal.map(|p| p.as_str().into()),
            },
            Some(other) => return Err(V1Error::bad(format!("unknown reservation type {other:?}"))),
        });
    }
    let role = string(item, "role")?.unwrap_or_else(|| "*".into());
    if role == "*" {
        return Ok(Reservation::Unreserved);
    }
    Ok(match get(item, "reservation") {
        Some(reservation) => {
            let principal = string(reservation, "principal")?;
            Reservation::Dynamic {
                role: role.as_str().into(),
                principal: principal.map(|p| p.as_str().into()),
            }
        }
        None => Reservation::Static { role: role.as_str().into() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_round_trip_in_both_formats() {
        let keel: Resources =
            "cpus:2;mem:512;ports:[31000-31005,32000-32000];cpus(eng,dynamic=alice):1;disk(ops):10"
                .parse()
                .unwrap();
        for format in [ReservationFormat::PreRefinement, ReservationFormat::Refinement] {
            let v1 = to_v1(&keel, format, None);
            let back = from_v1(v1.as_array().unwrap()).unwrap();
            assert_eq!(back, keel, "{format:?}: {v1}");
        }
        let v1 = to_v1_plain(&keel);
        let cpus = v1.as_array().unwrap().iter().find(|r| r["name"] == "cpus" && r["role"] == "eng").unwrap();
        assert_eq!(cpus["reservation"]["principal"], "alice");
        assert_eq!(cpus["scalar"]["value"], 1.0);
    }

    #[test]
    fn what_clients_send_is_read() {
        // pymesos sends plain ints and decimals, and often no role.
        let v1 = json!([
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31001}]}, "role": "*"},
        ]);
        let keel = from_v1(v1.as_array().unwrap()).unwrap();
        assert_eq!(keel, "cpus:0.1;mem:32;ports:[31000-31001]".parse().unwrap());
    }

    #[test]
    fn unsupported_and_invalid_resources_are_refused() {
        let cases = [
            json!([{"name": "x", "type": "SET", "set": {"item": ["a"]}}]),
            json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 1}, "disk": {"persistence": {"id": "v"}}}]),
            json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": -1}}]),
            json!([{"name": "cpus", "type": "RANGES", "ranges": {"range": []}}]),
            json!([{"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 5, "end": 1}]}}]),
            json!([{"name": "cpus", "type": "SCALAR"}]),
            json!([{"type": "SCALAR", "scalar": {"value": 1}}]),
            json!([{"name": "cpus", "type": "NOPE"}]),
        ];
        for case in cases {
            assert!(from_v1(case.as_array().unwrap()).is_err(), "{case}");
        }
    }
}
