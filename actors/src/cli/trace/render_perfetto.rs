//! The Perfetto rendering: Chrome trace-event JSON (an array of events), loadable in
//! Perfetto and chrome://tracing. Each node is a process (`pid`, named by its
//! `host:port`) and each actor a thread of its node (`tid`, named by its UPID). A
//! send is a 1 us slice on the sender's track, a receipt one on the receiver's, and a
//! flow goes from each send to its receipt (`"ph":"s"` at the send, `"ph":"f"` with
//! `"bp":"e"` at the receipt, the same `id`); drops and faults are instant events.
//! Timestamps are microseconds since the first event on the merged clock, kept
//! increasing per track (a slice starts no earlier than the previous one ends, and a
//! receipt no earlier than its send).

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use keel_kernel::trace::{EventKind, MessageId, TraceEvent};
use serde_json::{json, Value};

use super::labels::{node_of, short_kind};

/// The trace of `events` (merged). Flows are drawn for messages received in them.
pub fn render_perfetto(events: &[TraceEvent], out: &mut impl Write) -> io::Result<()> {
    let received: HashSet<MessageId> =
        events.iter().filter(|e| e.event == EventKind::Recv).map(|e| e.id).collect();
    let mut writer = PerfettoWriter::new(Some(received));
    writer.begin(out)?;
    for event in events {
        writer.event(event, out)?;
    }
    writer.end(out)
}

/// Writes the trace an event at a time (`--live`).
#[derive(Debug)]
pub struct PerfettoWriter {
    /// Messages that will be received (flows only for them); `None`: unknown (live).
    received: Option<HashSet<MessageId>>,
    pids: HashMap<String, u64>,
    tids: HashMap<String, (u64, u64)>,
    next_tid: u64,
    /// The end of the last slice per track.
    track_end: HashMap<(u64, u64), u64>,
    /// Flow id and send time per message sent.
    flows: HashMap<MessageId, (u64, u64)>,
    ended: HashSet<MessageId>,
    t0: Option<u64>,
    first: bool,
}

impl PerfettoWriter {
    /// A writer; with `received`, flows start only for the messages in it.
    pub fn new(received: Option<HashSet<MessageId>>) -> PerfettoWriter {
        PerfettoWriter {
            received,
            pids: HashMap::new(),
            tids: HashMap::new(),
            next_tid: 1,
            track_end: HashMap::new(),
            flows: HashMap::new(),
            ended: HashSet::new(),
            t0: None,
            first: true,
        }
    }

    /// Opens the array.
    pub fn begin(&mut self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "[")
    }

    /// Closes the array (a stream cut before this still loads: the `]` is optional).
    pub fn end(&mut self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "\n]")
    }

    fn write(&mut self, value: Value, out: &mut impl Write) -> io::Result<()> {
        if !self.first {
            writeln!(out, ",")?;
        }
        self.first = false;
        write!(out, "{value}")
    }

    /// The (pid, tid) of `actor`, naming its process and thread when new.
    fn track(&mut self, actor: &str, out: &mut impl Write) -> io::Result<(u64, u64)> {
        if let Some(track) = self.tids.get(actor) {
            return Ok(*track);
        }
        let node = node_of(actor).to_string();
        let pid = match self.pids.get(&node) {
            Some(pid) => *pid,
            None => {
                let pid = self.pids.len() as u64 + 1;
                self.pids.insert(node.clone(), pid);
                let name = if node.is_empty() { "unknown node".to_string() } else { format!("node {node}") };
                self.write(
                    json!({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}}),
                    out,
                )?;
                pid
            }
        };
        let tid = self.next_tid;
        self.next_tid += 1;
        self.tids.insert(actor.to_string(), (pid, tid));
        self.write(
            json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": actor}}),
            out,
        )?;
        Ok((pid, tid))
    }

    /// One event: its slice or instant, and its end of a flow.
    pub fn event(&mut self, event: &TraceEvent, out: &mut impl Write) -> io::Result<()> {
        let t0 = *self.t0.get_or_insert(event.time_us);
        let actor = match event.event {
            EventKind::Send => &event.from,
            EventKind::Recv => &event.to,
            // Drops and faults: on the actor of the node that recorded them.
            _ if !event.node.is_empty()
                && node_of(&event.to) == event.node
                && node_of(&event.from) != event.node =>
            {
                &event.to
            }
            _ => &event.from,
        };
        let (pid, tid) = self.track(actor, out)?;
        let mut ts =
            event.time_us.saturating_sub(t0).max(self.track_end.get(&(pid, tid)).copied().unwrap_or(0));
        let kind = short_kind(&event.kind);
        let mut args = json!({
            "id": event.id.to_string(),
            "parent": event.parent.to_string(),
            "kind": event.kind,
            "from": event.from,
            "to": event.to,
            "size": event.size,
            "node": event.node,
        });
        if let Some(reason) = &event.reason {
            args["reason"] = json!(reason);
        }
        for (key, value) in &event.subjects {
            args[key.as_str()] = json!(value);
        }
        match event.event {
            EventKind::Send => {
                self.write(json!({"ph": "X", "name": kind, "cat": "send", "ts": ts, "dur": 1, "pid": pid, "tid": tid, "args": args}), out)?;
                self.track_end.insert((pid, tid), ts.saturating_add(1));
                let flows = self.received.as_ref().is_none_or(|r| r.contains(&event.id));
                if flows && !event.id.is_none() && !self.flows.contains_key(&event.id) {
                    let flow = self.flows.len() as u64 + 1;
                    self.flows.insert(event.id, (flow, ts));
                    self.write(json!({"ph": "s", "name": kind, "cat": "msg", "id": flow, "ts": ts, "pid": pid, "tid": tid}), out)?;
                }
            }
            EventKind::Recv => {
                let flow = self.flows.get(&event.id).copied().filter(|_| !self.ended.contains(&event.id));
                if let Some((_, sent)) = flow {
                    ts = ts.max(sent);
                }
                self.write(json!({"ph": "X", "name": kind, "cat": "recv", "ts": ts, "dur": 1, "pid": pid, "tid": tid, "args": args}), out)?;
                self.track_end.insert((pid, tid), ts.saturating_add(1));
                if let Some((flow, _)) = flow {
                    self.ended.insert(event.id);
                    self.write(json!({"ph": "f", "bp": "e", "name": kind, "cat": "msg", "id": flow, "ts": ts, "pid": pid, "tid": tid}), out)?;
                }
            }
            EventKind::Drop | EventKind::Fault => {
                let name = format!("{} {kind}", event.event.name());
                self.write(json!({"ph": "i", "s": "t", "name": name, "cat": event.event.name(), "ts": ts, "pid": pid, "tid": tid, "args": args}), out)?;
                self.track_end.insert((pid, tid), ts);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::trace::merge::merge;
    use crate::cli::trace::testing::{event, task_story};

    fn render(events: &[TraceEvent]) -> Vec<Value> {
        let mut out = Vec::new();
        render_perfetto(events, &mut out).unwrap();
        let value: Value = serde_json::from_slice(&out).expect("valid JSON");
        value.as_array().expect("an array of events").clone()
    }

    /// What the integration test checks too: flows paired, time increasing per track.
    fn assert_structure(trace: &[Value]) {
        let mut starts = HashMap::new();
        let mut ends = HashMap::new();
        let mut last: HashMap<(u64, u64), f64> = HashMap::new();
        for e in trace {
            let ph = e["ph"].as_str().unwrap();
            if ph == "M" {
                continue;
            }
            let track = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
            let ts = e["ts"].as_f64().unwrap();
            assert!(ts >= last.get(&track).copied().unwrap_or(0.0), "time goes back on {track:?}: {e}");
            last.insert(track, ts);
            match ph {
                "s" => {
                    assert!(starts.insert(e["id"].as_u64().unwrap(), ts).is_none(), "flow started twice: {e}")
                }
                "f" => {
                    assert_eq!(e["bp"], "e");
                    assert!(ends.insert(e["id"].as_u64().unwrap(), ts).is_none(), "flow ended twice: {e}");
                }
                "X" | "i" => {}
                other => panic!("unexpected phase {other}"),
            }
        }
        assert_eq!(
            starts.keys().collect::<HashSet<_>>(),
            ends.keys().collect::<HashSet<_>>(),
            "unpaired flows"
        );
        for (id, start) in &starts {
            assert!(ends[id] >= *start, "flow {id} ends before it starts");
        }
    }

    #[test]
    fn tracks_per_actor_grouped_by_node_with_a_flow_per_message() {
        let (cluster, _) = task_story(&[("10.0.0.2:5051", -2_000), ("10.0.0.9:7000", 500)]);
        let trace = render(&merge(cluster.events.clone()));
        assert_structure(&trace);
        let named = |what: &str| trace.iter().filter(|e| e["name"] == what).count();
        assert_eq!((named("process_name"), named("thread_name")), (3, 3));
        assert_eq!(trace.iter().filter(|e| e["ph"] == "s").count(), 11);
        let run = trace.iter().find(|e| e["name"] == "RunTask" && e["cat"] == "recv").unwrap();
        assert_eq!(run["args"]["task"], "t1");
    }

    #[test]
    fn drops_are_instants_and_unreceived_messages_have_no_flow() {
        let mut dropped = event(EventKind::Drop, 30, "a@h:1", "b@h:2", "k.Lost", 2);
        dropped.reason = Some("unreachable".into());
        let events = vec![
            event(EventKind::Send, 10, "a@h:1", "b@h:2", "k.Ok", 1),
            event(EventKind::Send, 10, "a@h:1", "b@h:2", "k.Lost", 2),
            dropped,
            event(EventKind::Recv, 10, "a@h:1", "b@h:2", "k.Ok", 1),
            event(EventKind::Recv, 12, "a@h:1", "b@h:2", "k.Ok", 1), // duplicated
        ];
        let trace = render(&events);
        assert_structure(&trace);
        assert_eq!(trace.iter().filter(|e| e["ph"] == "s").count(), 1);
        let drop = trace.iter().find(|e| e["ph"] == "i").unwrap();
        assert_eq!(
            (drop["name"].as_str(), drop["args"]["reason"].as_str()),
            (Some("drop Lost"), Some("unreachable"))
        );
    }

    #[test]
    fn no_events_is_an_empty_array() {
        assert!(render(&[]).is_empty());
    }
}
