//! The flight recorder: every node keeps its last N message events in memory, in
//! the compact binary form ([`super::binary`]), always on. Recording an event is a
//! lock, a copy of its bytes into a ring, and (only when someone listens) a copy to
//! the file sink's buffer and to live subscribers; reading decodes on demand.
//!
//! The ring is a byte buffer of variable-length records that never wrap: a record
//! that does not fit before the end starts again at 0, and the oldest records are
//! evicted until there is room; at most `capacity` events are kept.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::binary::{self, RawEvent};
use super::event::TraceEvent;

/// The default number of events a node keeps.
pub const DEFAULT_EVENTS: usize = 100_000;

/// Bytes set aside per event (records average about 100 bytes).
const BYTES_PER_EVENT: usize = 160;

/// What a subscriber of the live tap is sent.
pub(crate) type Delivery = Box<dyn Fn(&TraceEvent) + Send + Sync>;

/// One node's recorder.
pub struct Recorder {
    node: String,
    capacity: usize,
    ring: Mutex<Ring>,
    /// Live subscribers: while there are none, recording stops at the ring (and sink).
    listeners: AtomicUsize,
    subscribers: Mutex<Vec<(u64, Delivery)>>,
    next_subscriber: AtomicU64,
    /// Events the file sink could not keep up with.
    sink_dropped: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("node", &self.node).field("capacity", &self.capacity).finish()
    }
}

struct Ring {
    bytes: Vec<u8>,
    /// Offsets of the records, oldest first.
    records: VecDeque<(usize, usize)>,
    /// Where the next record goes.
    tail: usize,
    /// Events recorded since the start (including evicted ones).
    total: u64,
    /// Records waiting for the file sink, encoded; `None` when no sink is attached.
    sink: Option<Vec<u8>>,
    /// The most the sink buffer may hold.
    sink_limit: usize,
}

impl Recorder {
    /// A recorder for `node` keeping at most `capacity` events (0: it keeps none).
    pub fn new(node: impl Into<String>, capacity: usize) -> Recorder {
        let bytes = vec![0; capacity.saturating_mul(BYTES_PER_EVENT)];
        Recorder {
            node: node.into(),
            capacity,
            ring: Mutex::new(Ring {
                bytes,
                records: VecDeque::with_capacity(capacity.min(1 << 20)),
                tail: 0,
                total: 0,
                sink: None,
                sink_limit: 0,
            }),
            listeners: AtomicUsize::new(0),
            subscribers: Mutex::new(Vec::new()),
            next_subscriber: AtomicU64::new(1),
            sink_dropped: AtomicU64::new(0),
        }
    }

    /// The node it records for.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How many events it keeps at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one event.
    pub fn record(&self, raw: &RawEvent<'_>, subjects: &[(&str, &str)]) {
        let len = binary::encoded_len(raw, subjects);
        {
            let mut ring = self.ring();
            ring.total += 1;
            if self.capacity > 0 && len <= ring.bytes.len() {
                let at = ring.make_room(len, self.capacity);
                binary::encode(raw, subjects, &mut ring.bytes[at..at + len]);
                ring.records.push_back((at, len));
                ring.tail = at + len;
            }
            if let Some(limit) = ring.sink.as_ref().map(|_| ring.sink_limit) {
                let sink = ring.sink.as_mut().expect("checked");
                if sink.len() + len <= limit {
                    let start = sink.len();
                    sink.resize(start + len, 0);
                    binary::encode(raw, subjects, &mut sink[start..]);
                } else {
                    self.sink_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if self.listeners.load(Ordering::Relaxed) > 0 {
            self.publish(raw, subjects);
        }
    }

    /// Hands the event to the live subscribers (only called while there are some).
    fn publish(&self, raw: &RawEvent<'_>, subjects: &[(&str, &str)]) {
        let subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if subscribers.is_empty() {
            return;
        }
        let mut bytes = vec![0; binary::encoded_len(raw, subjects)];
        binary::encode(raw, subjects, &mut bytes);
        let Ok((event, _)) = binary::decode(&bytes, &self.node) else { return };
        for (_, deliver) in subscribers.iter() {
            deliver(&event);
        }
    }

    /// The kept events, oldest first, that `keep` accepts (at most `limit`, the newest).
    pub fn recent(&self, keep: impl Fn(&TraceEvent) -> bool, limit: usize) -> Vec<TraceEvent> {
        let copy: Vec<u8>;
        let spans: Vec<(usize, usize)>;
        {
            let ring = self.ring();
            copy = ring.bytes.clone();
            spans = ring.records.iter().copied().collect();
        }
        let mut events: Vec<TraceEvent> = spans
            .into_iter()
            .filter_map(|(at, len)| binary::decode(&copy[at..at + len], &self.node).ok().map(|(e, _)| e))
            .filter(|e| keep(e))
            .collect();
        if events.len() > limit {
            events.drain(..events.len() - limit);
        }
        events
    }

    /// Events recorded since the node started (kept or not).
    pub fn total(&self) -> u64 {
        self.ring().total
    }

    /// Events the file sink dropped because it fell behind.
    pub fn sink_dropped(&self) -> u64 {
        self.sink_dropped.load(Ordering::Relaxed)
    }

    /// Starts buffering encoded events for a file sink (at most `limit` bytes waiting).
    pub(crate) fn attach_sink(&self, limit: usize) {
        let mut ring = self.ring();
        if ring.sink.is_none() {
            ring.sink = Some(Vec::with_capacity(64 * 1024));
            ring.sink_limit = limit;
        }
    }

    /// Takes what waits for the file sink (swapping in `spare`, cleared).
    pub(crate) fn take_sink(&self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        let mut ring = self.ring();
        match ring.sink.as_mut() {
            Some(buffer) => std::mem::replace(buffer, spare),
            None => spare,
        }
    }

    /// Adds a live subscriber; it is called with every event until removed.
    pub(crate) fn subscribe(&self, deliver: Delivery) -> u64 {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push((id, deliver));
        self.listeners.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// Removes a live subscriber.
    pub(crate) fn unsubscribe(&self, id: u64) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        let before = subscribers.len();
        subscribers.retain(|(s, _)| *s != id);
        if subscribers.len() < before {
            self.listeners.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// How many live subscribers there are.
    pub(crate) fn subscribers(&self) -> usize {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The kept events as a binary trace file (header and records).
    pub fn dump(&self) -> Vec<u8> {
        let mut out = binary::file_header(&self.node);
        let ring = self.ring();
        for (at, len) in &ring.records {
            out.extend_from_slice(&ring.bytes[*at..*at + *len]);
        }
        out
    }
}

impl Ring {
    /// Evicts the oldest records until `len` bytes fit at the tail (or, wrapping,
    /// at 0) and fewer than `capacity` records are kept; returns where it goes.
    fn make_room(&mut self, len: usize, capacity: usize) -> usize {
        while self.records.len() >= capacity {
            self.records.pop_front();
        }
        let mut at = self.tail;
        if at + len > self.bytes.len() {
            // Wrapping: the records after the tail are the previous lap's, the oldest.
            while self.records.front().is_some_and(|&(start, _)| start >= self.tail) {
                self.records.pop_front();
            }
            at = 0;
        }
        // The oldest records are the next ones in the buffer: evict those in the way.
        while self.records.front().is_some_and(|&(start, size)| start < at + len && at < start + size) {
            self.records.pop_front();
        }
        at
    }
}

/// A recorder shared by a node and its HTTP endpoints.
pub type SharedRecorder = Arc<Recorder>;

/// Every node's recorder in this process, for dumps.
static ALL: Mutex<Vec<std::sync::Weak<Recorder>>> = Mutex::new(Vec::new());

/// Remembers a node's recorder for [`dump_all`].
pub fn register(recorder: &Arc<Recorder>) {
    let mut all = ALL.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|r| r.strong_count() > 0);
    all.push(Arc::downgrade(recorder));
}

/// Writes every live node's kept events to `dir` as binary trace files
/// (`keel-flight-<host>-<port>-<pid>-<seconds>.trace`); returns their paths.
pub fn dump_all(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let recorders: Vec<Arc<Recorder>> = {
        let all = ALL.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().filter_map(std::sync::Weak::upgrade).collect()
    };
    std::fs::create_dir_all(dir)?;
    let seconds = super::now_micros() / 1_000_000;
    let mut paths = Vec::new();
    for recorder in recorders {
        let node = recorder.node().replace([':', '[', ']'], "-");
        let path = dir.join(format!("keel-flight-{node}-{}-{seconds}.trace", std::process::id()));
        std::fs::write(&path, recorder.dump())?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{EventKind, MessageId};

    fn raw(id: u64, task: &str) -> (RawEvent<'static>, Vec<(&'static str, String)>) {
        let raw = RawEvent {
            time_us: 1_000 + id,
            event: EventKind::Send,
            from: "a@127.0.0.1:1",
            to: "b@127.0.0.1:2",
            kind: "k",
            size: id,
            id: MessageId(id),
            parent: MessageId::NONE,
            reason: None,
        };
        (raw, vec![("task", task.to_string())])
    }

    fn record(recorder: &Recorder, id: u64, task: &str) {
        let (raw, subjects) = raw(id, task);
        let subjects: Vec<(&str, &str)> = subjects.iter().map(|(k, v)| (*k, v.as_str())).collect();
        recorder.record(&raw, &subjects);
    }

    #[test]
    fn the_last_n_events_are_kept_oldest_first() {
        let recorder = Recorder::new("127.0.0.1:1", 100);
        for id in 1..=1000 {
            record(&recorder, id, if id % 2 == 0 { "even" } else { "odd" });
        }
        let all = recorder.recent(|_| true, usize::MAX);
        assert_eq!(all.len(), 100);
        assert_eq!(all.first().map(|e| e.id), Some(MessageId(901)));
        assert_eq!(all.last().map(|e| e.id), Some(MessageId(1000)));
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        let even = recorder.recent(|e| e.subject("task") == Some("even"), 10);
        assert_eq!(even.len(), 10);
        assert_eq!(even.last().map(|e| e.id), Some(MessageId(1000)));
        assert_eq!(recorder.total(), 1000);
    }

    #[test]
    fn records_of_every_size_wrap_without_corruption() {
        let recorder = Recorder::new("n", 50);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut last = 0;
        for id in 1..=5000u64 {
            let task = "t".repeat(rng.usize(0..200));
            record(&recorder, id, &task);
            last = id;
        }
        let all = recorder.recent(|_| true, usize::MAX);
        assert!(!all.is_empty() && all.len() <= 50);
        assert_eq!(all.last().map(|e| e.id), Some(MessageId(last)));
        assert!(all.windows(2).all(|w| w[0].id.0 + 1 == w[1].id.0), "a contiguous suffix");
        // The dump reads back as the same events.
        let read = crate::trace::read_trace_bytes(&recorder.dump());
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        assert_eq!(read.events, all);
    }

    #[test]
    fn a_recorder_of_zero_keeps_nothing() {
        let recorder = Recorder::new("n", 0);
        record(&recorder, 1, "t");
        assert!(recorder.recent(|_| true, 10).is_empty());
        assert_eq!(recorder.total(), 1);
    }

    #[test]
    fn subscribers_see_events_as_they_happen() {
        let recorder = Recorder::new("n", 10);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let id = recorder.subscribe(Box::new(move |e| sink.lock().unwrap().push(e.id)));
        record(&recorder, 1, "t");
        record(&recorder, 2, "t");
        recorder.unsubscribe(id);
        record(&recorder, 3, "t");
        assert_eq!(*seen.lock().unwrap(), vec![MessageId(1), MessageId(2)]);
        assert_eq!(recorder.subscribers(), 0);
    }
}
