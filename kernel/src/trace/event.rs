//! One message event as the trace tools see it, whatever recorded it (the flight
//! recorder, the file sink, a live tap), and its JSON-lines form:
//!
//! ```text
//! {"timestamp":"2026-12-02T05:07:39.278975Z","node":"127.0.0.1:5050","message":"send",
//!  "from":"master@127.0.0.1:5050","to":"agent@127.0.0.1:5051","kind":"keel.agent.RunTask",
//!  "size":412,"id":"3f0c...","parent":"9a1e...","framework":"F1","task":"t1"}
//! ```
//! `message` is `send`, `recv`, `drop` or `fault` (a fault injected on purpose);
//! `reason` says why for the last two. `size` is the encoded body's length on both
//! sides. Subjects (`framework`, `agent`, `executor`, `task`, ...) are what the
//! message is about, as its type declares them; absent ones are left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::MessageId;

/// What happened to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// Sent by `from`.
    Send,
    /// Received by `to`.
    Recv,
    /// Dropped (unknown target, full mailbox, unreachable node, bad input...).
    Drop,
    /// Dropped, delayed or duplicated by an injected fault.
    Fault,
}

impl EventKind {
    /// `send`, `recv`, `drop` or `fault`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Send => "send",
            EventKind::Recv => "recv",
            EventKind::Drop => "drop",
            EventKind::Fault => "fault",
        }
    }

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<EventKind> {
        match text {
            "send" => Some(EventKind::Send),
            "recv" => Some(EventKind::Recv),
            "drop" => Some(EventKind::Drop),
            "fault" => Some(EventKind::Fault),
            _ => None,
        }
    }

    /// The code in the binary form.
    pub(crate) fn code(self) -> u8 {
        match self {
            EventKind::Send => 0,
            EventKind::Recv => 1,
            EventKind::Drop => 2,
            EventKind::Fault => 3,
        }
    }

    /// The kind of a binary code.
    pub(crate) fn from_code(code: u8) -> Option<EventKind> {
        match code {
            0 => Some(EventKind::Send),
            1 => Some(EventKind::Recv),
            2 => Some(EventKind::Drop),
            3 => Some(EventKind::Fault),
            _ => None,
        }
    }
}

/// One recorded message event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// When, in microseconds since the Unix epoch, on the recording node's clock.
    pub time_us: u64,
    /// The node that recorded it (`host:port`).
    pub node: String,
    /// What happened.
    pub event: EventKind,
    /// The sender's UPID.
    pub from: String,
    /// The receiver's UPID.
    pub to: String,
    /// The message kind, e.g. `keel.agent.RunTask`.
    pub kind: String,
    /// The encoded body's length in bytes.
    pub size: u64,
    /// The message's id.
    pub id: MessageId,
    /// The id of the message being handled when it was sent (0: none).
    pub parent: MessageId,
    /// Why it was dropped, or which fault was injected.
    pub reason: Option<String>,
    /// What the message is about: `framework`, `agent`, `executor`, `task`, ...
    pub subjects: BTreeMap<String, String>,
}

/// Keys of a JSON line that are not subjects.
const FIXED_KEYS: &[&str] = &[
    "timestamp",
    "time_us",
    "node",
    "message",
    "from",
    "to",
    "kind",
    "size",
    "id",
    "parent",
    "reason",
    "level",
    "target",
];

impl TraceEvent {
    /// The subject `name` (e.g. `task`), if the message has one.
    pub fn subject(&self, name: &str) -> Option<&str> {
        self.subjects.get(name).map(String::as_str)
    }

    /// The event as one JSON line (with the trailing newline).
    pub fn to_json_line(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"timestamp\":\"");
        super::sink::write_rfc3339_micros(&mut out, self.time_us);
        out.push_str("\",\"time_us\":");
        let _ = write!(out, "{}", self.time_us);
        push_field(&mut out, "node", &self.node);
        push_field(&mut out, "message", self.event.name());
        push_field(&mut out, "from", &self.from);
        push_field(&mut out, "to", &self.to);
        push_field(&mut out, "kind", &self.kind);
        let _ = write!(out, ",\"size\":{}", self.size);
        push_field(&mut out, "id", &self.id.to_string());
        push_field(&mut out, "parent", &self.parent.to_string());
        if let Some(reason) = &self.reason {
            push_field(&mut out, "reason", reason);
        }
        for (name, value) in &self.subjects {
            push_field(&mut out, name, value);
        }
        out.push_str("}\n");
        out
    }

    /// Parses one JSON line (this form, or the older file sink's, which has no
    /// `node` or `time_us`): `Err` says what is wrong with it.
    pub fn parse_json_line(line: &str) -> Result<TraceEvent, String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(object) = value else { return Err("not a JSON object".into()) };
        let text = |key: &str| object.get(key).and_then(Value::as_str);
        let event = text("message")
            .and_then(EventKind::parse)
            .ok_or_else(|| "no message (send, recv, drop or fault)".to_string())?;
        let time_us = match object.get("time_us").and_then(Value::as_u64) {
            Some(time) => time,
            None => text("timestamp").and_then(parse_rfc3339_micros).ok_or("no valid timestamp")?,
        };
        let id = |key: &str| -> Result<MessageId, String> {
            match text(key) {
                None => Ok(MessageId::NONE),
                Some(hex) => {
                    u64::from_str_radix(hex, 16).map(MessageId).map_err(|_| format!("bad {key} {hex:?}"))
                }
            }
        };
        Ok(TraceEvent {
            time_us,
            node: text("node").unwrap_or_default().to_string(),
            event,
            from: text("from").ok_or("no from")?.to_string(),
            to: text("to").ok_or("no to")?.to_string(),
            kind: text("kind").ok_or("no kind")?.to_string(),
            size: object.get("size").and_then(Value::as_u64).unwrap_or(0),
            id: id("id")?,
            parent: id("parent")?,
            reason: text("reason").map(str::to_string),
            subjects: subjects_of(&object),
        })
    }
}

fn subjects_of(object: &Map<String, Value>) -> BTreeMap<String, String> {
    object
        .iter()
        .filter(|(key, _)| !FIXED_KEYS.contains(&key.as_str()))
        .filter_map(|(key, value)| value.as_str().map(|v| (key.clone(), v.to_string())))
        .collect()
}

fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(",\"");
    super::sink::escape_into(out, name);
    out.push_str("\":\"");
    super::sink::escape_into(out, value);
    out.push('"');
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` into microseconds since the Unix epoch.
pub fn parse_rfc3339_micros(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let digits: String = fraction.chars().take(6).collect();
    let micros: i64 = format!("{digits:0<6}").parse().ok()?;
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> TraceEvent {
        TraceEvent {
            time_us: 1_795_230_218_516_123,
            node: "127.0.0.1:5050".into(),
            event: EventKind::Send,
            from: "master@127.0.0.1:5050".into(),
            to: "agent@127.0.0.1:5051".into(),
            kind: "keel.agent.RunTask".into(),
            size: 412,
            id: MessageId(0x3f0c),
            parent: MessageId(0x9a1e),
            reason: None,
            subjects: BTreeMap::from([("framework".into(), "F1".into()), ("task".into(), "t \"1\"".into())]),
        }
    }

    #[test]
    fn events_round_trip_through_json_lines() {
        let line = event().to_json_line();
        assert!(line.starts_with("{\"timestamp\":\"2026-11-21T03:03:38.516123Z\""), "{line}");
        assert_eq!(TraceEvent::parse_json_line(&line).unwrap(), event());
        let mut dropped = event();
        dropped.event = EventKind::Drop;
        dropped.reason = Some("unknown_target".into());
        dropped.subjects.clear();
        assert_eq!(TraceEvent::parse_json_line(&dropped.to_json_line()).unwrap(), dropped);
    }

    #[test]
    fn the_older_file_sink_lines_still_parse() {
        let old = r#"{"timestamp":"2026-11-21T03:03:38.516123Z","level":"DEBUG","message":"recv","from":"a@127.0.0.1:1","to":"b@127.0.0.1:2","kind":"k","size":3,"id":"00000000000000ff","parent":"0000000000000000","target":"keel::msg"}"#;
        let event = TraceEvent::parse_json_line(old).unwrap();
        assert_eq!((event.event, event.size, event.id), (EventKind::Recv, 3, MessageId(255)));
        assert_eq!(event.time_us, 1_795_230_218_516_123);
        assert!(event.subjects.is_empty(), "level and target are not subjects");
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(TraceEvent::parse_json_line("{").unwrap_err().contains("not JSON"));
        assert!(TraceEvent::parse_json_line("[1]").unwrap_err().contains("object"));
        assert!(TraceEvent::parse_json_line(r#"{"message":"hop"}"#).unwrap_err().contains("message"));
        let no_time = r#"{"message":"send","from":"a","to":"b","kind":"k"}"#;
        assert!(TraceEvent::parse_json_line(no_time).unwrap_err().contains("timestamp"));
    }

    #[test]
    fn timestamps_parse_back() {
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(parse_rfc3339_micros("2000-02-29T12:00:00.000001Z"), Some(951_825_600_000_001));
        assert_eq!(parse_rfc3339_micros("2000-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_micros("garbage"), None);
    }
}
