//! Mesos v1 JSON (proto2 through stout's rules) to and from Keel's protocol types.
//!
//! The rules (see `mesos-v1-api.md`): snake_case proto field names, ids as objects
//! `{"value": ...}`, enums by name, `bytes` as padded standard base64, numbers also
//! accepted as strings (and `"Infinity"`), unknown fields ignored, no `null`s
//! written. Readers take a `serde_json::Value` and answer a [`V1Error`] (400) that
//! names the field; writers build values with `json!`.
//!
//! Files: `resources.rs` (resources and reservations), `task.rs` (task, executor,
//! command and framework descriptions, statuses, offers), `scheduler.rs` (calls and
//! events of the scheduler API), `executor.rs` (the executor API's), `state.rs`
//! (the operator API's view of agents, frameworks, tasks and executors).

pub mod executor;
pub mod resources;
pub mod scheduler;
pub mod state;
pub mod task;

use base64::Engine as _;
use keel_proto::ids::UpdateId;
use serde_json::{json, Value};

use super::error::V1Error;

/// Result of reading v1 JSON.
pub type Parsed<T> = Result<T, V1Error>;

/// The Mesos version Keel's v1 APIs speak (`GET /version`, `master_info.version`):
/// clients parse it as digits and dots, and 1.x makes them use v1 features.
pub const MESOS_VERSION: &str = "1.11.0";

/// An id object `{"value": id}`.
pub fn id(value: impl std::fmt::Display) -> Value {
    json!({ "value": value.to_string() })
}

/// `value[key]` unless absent or `null`.
pub fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value.get(key).filter(|v| !v.is_null())
}

/// `value[key]`, which must be there.
pub fn required<'a>(value: &'a Value, key: &str) -> Parsed<&'a Value> {
    get(value, key).ok_or_else(|| V1Error::bad(format!("missing required field '{key}'")))
}

/// An optional string field.
pub fn string(value: &Value, key: &str) -> Parsed<Option<String>> {
    match get(value, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(V1Error::bad(format!("field '{key}' must be a string, not {other}"))),
    }
}

/// A required string field.
pub fn required_string(value: &Value, key: &str) -> Parsed<String> {
    string(value, key)?.ok_or_else(|| V1Error::bad(format!("missing required field '{key}'")))
}

/// An optional id field `{"value": "..."}` with a non-empty value.
pub fn id_field(value: &Value, key: &str) -> Parsed<Option<String>> {
    let Some(object) = get(value, key) else { return Ok(None) };
    match get(object, "value") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(Some(s.clone())),
        _ => Err(V1Error::bad(format!("field '{key}' must be an id object {{\"value\": \"...\"}}"))),
    }
}

/// A required id field.
pub fn required_id(value: &Value, key: &str) -> Parsed<String> {
    id_field(value, key)?.ok_or_else(|| V1Error::bad(format!("missing required field '{key}'")))
}

/// A number: a JSON number or a numeric string (`"Infinity"` included).
pub fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.trim() {
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.parse().ok(),
        },
        _ => None,
    }
}

/// An optional number field.
pub fn number(value: &Value, key: &str) -> Parsed<Option<f64>> {
    match get(value, key) {
        None => Ok(None),
        Some(v) => as_number(v)
            .map(Some)
            .ok_or_else(|| V1Error::bad(format!("field '{key}' must be a number, not {v}"))),
    }
}

/// An optional boolean field.
pub fn boolean(value: &Value, key: &str) -> Parsed<Option<bool>> {
    match get(value, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(V1Error::bad(format!("field '{key}' must be a boolean, not {other}"))),
    }
}

/// A repeated field: an empty slice when absent.
pub fn array<'a>(value: &'a Value, key: &str) -> Parsed<&'a [Value]> {
    match get(value, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(V1Error::bad(format!("field '{key}' must be an array, not {other}"))),
    }
}

/// A repeated string field.
pub fn strings(value: &Value, key: &str) -> Parsed<Vec<String>> {
    array(value, key)?
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| V1Error::bad(format!("field '{key}' must hold strings, not {item}")))
        })
        .collect()
}

/// An optional `bytes` field (standard base64).
pub fn bytes(value: &Value, key: &str) -> Parsed<Option<Vec<u8>>> {
    let Some(text) = string(value, key)? else { return Ok(None) };
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(Some)
        .map_err(|e| V1Error::bad(format!("field '{key}' is not base64: {e}")))
}

/// `bytes` as Mesos writes them: padded standard base64.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Keel update id as the bytes of a Mesos uuid: Keel's ids are 32 hex digits (16
/// bytes); an id that is not hex travels as its text.
pub fn uuid_bytes(uuid: &UpdateId) -> Vec<u8> {
    let text = uuid.as_str();
    let hex = text.len() % 2 == 0 && !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit());
    if hex {
        (0..text.len()).step_by(2).filter_map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

/// A Mesos uuid (any bytes) as a Keel update id: lower-case hex, so that
/// [`uuid_bytes`] gives the same bytes back.
pub fn uuid_from_bytes(bytes: &[u8]) -> UpdateId {
    UpdateId(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A Keel update id as a Mesos `uuid` field (base64).
pub fn uuid_base64(uuid: &UpdateId) -> String {
    base64(&uuid_bytes(uuid))
}

/// A fresh random UUID in its text form (stream ids).
pub fn random_uuid() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000; // version 4
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000; // RFC 4122 variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// An `f64` as JSON (non-finite values, which JSON lacks, as Mesos's strings).
pub fn float(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else if value > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

/// Drops the `null` fields of an object (Keel never writes `null` in v1 JSON).
pub fn compact(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_through_base64() {
        let keel = UpdateId::from_rng(&mut fastrand::Rng::with_seed(7));
        let b64 = uuid_base64(&keel);
        assert_eq!(b64.len(), 24, "16 bytes, padded");
        let bytes = base64::engine::general_purpose::STANDARD.decode(&b64).unwrap();
        assert_eq!(uuid_from_bytes(&bytes), keel);
        // A client's uuid (pymesos: uuid4().bytes in base64) comes back unchanged.
        let theirs = "DdBSTYvIS2ShHmQIfaj5Rw==";
        let bytes = base64::engine::general_purpose::STANDARD.decode(theirs).unwrap();
        assert_eq!(uuid_base64(&uuid_from_bytes(&bytes)), theirs);
        assert_eq!(random_uuid().len(), 36);
    }

    #[test]
    fn numbers_are_read_like_stout() {
        assert_eq!(number(&json!({"x": 1}), "x").unwrap(), Some(1.0));
        assert_eq!(number(&json!({"x": "2.5"}), "x").unwrap(), Some(2.5));
        assert_eq!(number(&json!({"x": "Infinity"}), "x").unwrap(), Some(f64::INFINITY));
        assert!(number(&json!({"x": [1]}), "x").is_err());
        assert_eq!(number(&json!({"x": null}), "x").unwrap(), None);
    }

    #[test]
    fn ids_must_be_objects() {
        assert_eq!(id_field(&json!({"task_id": {"value": "t"}}), "task_id").unwrap(), Some("t".into()));
        assert!(id_field(&json!({"task_id": "t"}), "task_id").is_err());
        assert!(id_field(&json!({"task_id": {"value": ""}}), "task_id").is_err());
        assert!(required_id(&json!({}), "task_id").is_err());
        assert!(bytes(&json!({"data": "not base64!"}), "data").is_err());
    }
}
