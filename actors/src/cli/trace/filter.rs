//! Which events to show: by subject (`--task`, `--framework`, `--agent`,
//! `--executor`: the message is about it), by actor (`--actor`: a UPID, a process
//! name, or a node's `host:port`; sender or receiver), by kind (`--kind`: the full
//! name or the part after the last dot, comma-separated or repeated: any of them),
//! and by time (`--since`/`--until`, inclusive, on the merged clock). A time is RFC
//! 3339 (`2026-12-02T05:07:39Z`, `2026-12-02T06:07:39.5+01:00`) or a duration ago
//! (`30s`, `5m`, `1h30m`, `500ms`, `2d`; units us, ms, s, m, h, d), resolved against
//! the wall clock when the command starts. Every given criterion must hold.

use keel_kernel::trace::{parse_rfc3339_micros, TraceEvent};
use keel_kernel::{NodeAddr, Upid};

use super::labels::split_upid;

/// A `--since`/`--until` value before it is resolved against "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// Microseconds since the epoch.
    At(u64),
    /// This many microseconds before now.
    Ago(u64),
}

impl TimeBound {
    /// Microseconds since the epoch, with `now_us` for relative bounds.
    pub fn resolve(self, now_us: u64) -> u64 {
        match self {
            TimeBound::At(us) => us,
            TimeBound::Ago(us) => now_us.saturating_sub(us),
        }
    }
}

/// Parses a `--since`/`--until` value (see the module header).
pub fn parse_time_bound(text: &str) -> Result<TimeBound, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty time".into());
    }
    if text == "now" {
        return Ok(TimeBound::Ago(0));
    }
    let dated = text
        .get(..5)
        .is_some_and(|year| year.ends_with('-') && year[..4].bytes().all(|b| b.is_ascii_digit()));
    if dated {
        return parse_rfc3339(text).map(TimeBound::At).ok_or_else(|| {
            format!("{text:?} is not an RFC 3339 time (e.g. 2026-12-02T05:07:39Z or ...+01:00)")
        });
    }
    parse_duration_us(text).map(TimeBound::Ago)
}

/// Parses a duration like `30s`, `1h30m`, `500ms`, `1.5s` into microseconds.
pub fn parse_duration_us(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("{text:?} is neither a duration ago (30s, 5m, 1h30m, 500ms; units us ms s m h d) nor an RFC 3339 time")
    };
    let mut total: f64 = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if number_end == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "us" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            "m" => 60e6,
            "h" => 3600e6,
            "d" => 86_400e6,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    // At most a hundred years: beyond that the number is a mistake.
    if !total.is_finite() || total > 100.0 * 365.0 * 86_400e6 {
        return Err(format!("{text:?} is too long ago"));
    }
    Ok(total as u64)
}

/// RFC 3339 with `Z` or a `±HH:MM` offset (a space or `T` between date and time).
fn parse_rfc3339(text: &str) -> Option<u64> {
    let text = text.replace(' ', "T").to_ascii_uppercase();
    if let Some(utc) = text.strip_suffix('Z') {
        return parse_rfc3339_micros(&format!("{utc}Z"));
    }
    let (base, sign, offset) = match text.rfind(['+', '-']) {
        Some(at) if at > 10 => (&text[..at], &text[at..at + 1], &text[at + 1..]),
        _ => return None,
    };
    let (hours, minutes) = offset.split_once(':')?;
    let (hours, minutes): (i64, i64) = (hours.parse().ok()?, minutes.parse().ok()?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    let local = parse_rfc3339_micros(&format!("{base}Z"))? as i64;
    let shift = (hours * 3600 + minutes * 60) * 1_000_000;
    let utc = if sign == "+" { local - shift } else { local + shift };
    u64::try_from(utc).ok()
}

/// An `--actor` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorPattern {
    /// A full UPID.
    Upid(String),
    /// A process name: that process on any node.
    Name(String),
    /// A node's `host:port`: every process on it.
    Node(String),
}

/// Parses an `--actor` value.
pub fn parse_actor(text: &str) -> Result<ActorPattern, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(format!("{text:?} is not an actor (a UPID name@host:port, a name, or host:port)"));
    }
    if text.contains('@') {
        let upid: Upid = text.parse().map_err(|e| format!("{text:?} is not a UPID: {e}"))?;
        return Ok(ActorPattern::Upid(upid.to_string()));
    }
    if text.contains(':') {
        let node: NodeAddr = text.parse().map_err(|e| format!("{text:?} is not host:port: {e}"))?;
        return Ok(ActorPattern::Node(node.to_string()));
    }
    Ok(ActorPattern::Name(text.to_string()))
}

/// Parses a `--kind` value: one kind or several, comma-separated.
pub fn parse_kinds(text: &str) -> Result<Vec<String>, String> {
    let kinds: Vec<String> = text.split(',').map(|k| k.trim().to_string()).collect();
    if kinds.iter().any(|k| k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(format!("{text:?} is not a list of kinds (e.g. RunTask,keel.common.StatusUpdate)"));
    }
    Ok(kinds)
}

/// Parses a subject id (`--task` and the like): anything but empty.
pub fn parse_id(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("an empty id".into());
    }
    Ok(text.to_string())
}

impl ActorPattern {
    fn matches(&self, upid: &str) -> bool {
        match self {
            ActorPattern::Upid(full) => upid == full,
            ActorPattern::Name(name) => split_upid(upid).0 == name,
            ActorPattern::Node(node) => split_upid(upid).1 == node,
        }
    }
}

/// The criteria, resolved (absolute times).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The message is about this task.
    pub task: Option<String>,
    /// ... this framework.
    pub framework: Option<String>,
    /// ... this agent.
    pub agent: Option<String>,
    /// ... this executor.
    pub executor: Option<String>,
    /// Sent or received by one of these (any).
    pub actors: Vec<ActorPattern>,
    /// One of these kinds (full or short names).
    pub kinds: Vec<String>,
    /// At or after, microseconds since the epoch (merged clock).
    pub since_us: Option<u64>,
    /// At or before.
    pub until_us: Option<u64>,
}

impl Filter {
    /// True when nothing is filtered.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &TraceEvent) -> bool {
        let subject = |name: &str, wanted: &Option<String>| {
            wanted.as_ref().is_none_or(|wanted| event.subject(name) == Some(wanted.as_str()))
        };
        subject("task", &self.task)
            && subject("framework", &self.framework)
            && subject("agent", &self.agent)
            && subject("executor", &self.executor)
            && (self.actors.is_empty()
                || self.actors.iter().any(|a| a.matches(&event.from) || a.matches(&event.to)))
            && (self.kinds.is_empty()
                || self.kinds.iter().any(|k| *k == event.kind || k == super::labels::short_kind(&event.kind)))
            && self.since_us.is_none_or(|since| event.time_us >= since)
            && self.until_us.is_none_or(|until| event.time_us <= until)
    }

    /// The events that pass, in order.
    pub fn apply(&self, events: Vec<TraceEvent>) -> Vec<TraceEvent> {
        if self.is_empty() {
            return events;
        }
        events.into_iter().filter(|e| self.matches(e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use keel_kernel::trace::EventKind;

    use super::*;
    use crate::cli::trace::testing::event;

    fn sample() -> Vec<TraceEvent> {
        let mut run = event(EventKind::Send, 1_000, "master@h:5050", "agent@h:5051", "keel.agent.RunTask", 1);
        run.subjects.insert("task".into(), "t1".into());
        run.subjects.insert("framework".into(), "F1".into());
        let mut update =
            event(EventKind::Recv, 2_000, "agent@h:5051", "master@h:5050", "keel.common.StatusUpdate", 2);
        update.subjects.insert("task".into(), "t2".into());
        let ping = event(EventKind::Send, 3_000, "master@h:5050", "agent@h:5052", "keel.agent.Ping", 3);
        vec![run, update, ping]
    }

    fn ids(filter: &Filter) -> Vec<u64> {
        filter.apply(sample()).iter().map(|e| e.id.0).collect()
    }

    #[test]
    fn subjects_actors_kinds_and_times_filter() {
        assert_eq!(ids(&Filter::default()), vec![1, 2, 3]);
        assert_eq!(ids(&Filter { task: Some("t1".into()), ..Filter::default() }), vec![1]);
        assert_eq!(
            ids(&Filter { framework: Some("F1".into()), task: Some("t2".into()), ..Filter::default() }),
            vec![0; 0]
        );
        assert_eq!(ids(&Filter { task: Some("nope".into()), ..Filter::default() }), vec![0; 0]);
        let by_actor =
            |text: &str| ids(&Filter { actors: vec![parse_actor(text).unwrap()], ..Filter::default() });
        assert_eq!(by_actor("agent"), vec![1, 2, 3]);
        assert_eq!(by_actor("agent@h:5052"), vec![3]);
        assert_eq!(by_actor("h:5051"), vec![1, 2]);
        let by_kind = |text: &str| ids(&Filter { kinds: parse_kinds(text).unwrap(), ..Filter::default() });
        assert_eq!(by_kind("RunTask"), vec![1]);
        assert_eq!(by_kind("keel.agent.Ping,StatusUpdate"), vec![2, 3]);
        assert_eq!(by_kind("Task"), vec![0; 0], "no partial names");
        let window = Filter { since_us: Some(2_000), until_us: Some(3_000), ..Filter::default() };
        assert_eq!(ids(&window), vec![2, 3]);
    }

    #[test]
    fn times_are_rfc3339_or_durations_ago() {
        assert_eq!(parse_time_bound("30s"), Ok(TimeBound::Ago(30_000_000)));
        assert_eq!(parse_time_bound("1h30m"), Ok(TimeBound::Ago(5_400_000_000)));
        assert_eq!(parse_time_bound("1.5ms"), Ok(TimeBound::Ago(1_500)));
        assert_eq!(parse_time_bound("now"), Ok(TimeBound::Ago(0)));
        assert_eq!(parse_time_bound("1970-01-01T00:00:01.5Z"), Ok(TimeBound::At(1_500_000)));
        assert_eq!(parse_time_bound("1970-01-01T01:00:01+01:00"), Ok(TimeBound::At(1_000_000)));
        assert_eq!(parse_time_bound("1970-01-01 00:00:01-00:30"), Ok(TimeBound::At(1_801_000_000)));
        assert_eq!(TimeBound::Ago(30).resolve(100), 70);
        for bad in [
            "",
            "30",
            "30x",
            "s",
            "yesterday",
            "ab\u{20ac}cdefghij",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "2026-13-01T00:00:00Z",
            "1970-01-01T00:00:00+25:00",
            "-5s",
        ] {
            assert!(parse_time_bound(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn malformed_actors_kinds_and_ids_are_refused() {
        assert!(parse_actor("a b").is_err());
        assert!(parse_actor("master@").is_err());
        assert!(parse_actor("host:notaport").is_err());
        assert_eq!(
            parse_actor("master@127.0.0.1:5050"),
            Ok(ActorPattern::Upid("master@127.0.0.1:5050".into()))
        );
        assert!(parse_kinds("RunTask,,Ping").is_err());
        assert!(parse_id(" ").is_err());
    }
}
