//! `keel trace --live`: every `--node`'s `/trace/stream` followed on a thread of its
//! own (reconnecting with backoff when a stream ends; a `{"dropped": N}` line, the
//! node's count of events it dropped for this slow reader, is reported on stderr,
//! other unknown lines are skipped), after the nodes' `/trace/recent` (and any files)
//! as history. Events are held [`HOLD`] after they arrive, then merged in batches:
//! the clock offsets are re-estimated from every pair seen so far and each batch is
//! put in order on them, so a receipt arriving up to [`HOLD`] after its send is still
//! shown after it. Output is a line per event (terminal), JSON lines, Mermaid arrows
//! (drawn at each message's receipt, drop or fault), or a Perfetto array closed
//! when the stream stops (`--live-for`); an interrupted one still loads.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_kernel::trace::{EventKind, MessageId, TraceEvent};

use super::input::{self, open_stream, pushed_filters, refused, with_query};
use super::merge::{identity, Merger};
use super::messages::{Message, Mishap};
use super::render_mermaid::MermaidWriter;
use super::render_perfetto::PerfettoWriter;
use super::render_terminal::live_line;
use super::{follow, timeline, Format, Selection, TraceOptions, UsageError};

/// How long an event waits for the events it should follow.
pub const HOLD: Duration = Duration::from_millis(500);
/// How often held events are looked at.
const TICK: Duration = Duration::from_millis(100);
/// A stream silent this long is reopened.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Events in flight from the stream threads (a full channel slows the reading, and
/// the node then drops events for us and says so).
const CHANNEL: usize = 10_000;
/// Messages remembered for pairing, ordering and de-duplication.
const REMEMBERED: usize = 1 << 20;
/// The longest wait between reconnections.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What a stream thread reports.
enum Arrival {
    Event(TraceEvent),
    Dropped { node: String, count: u64 },
    Ended { node: String, error: String },
    Refused(String),
}

/// Streams until `options.live_for` passes (or forever).
pub fn run(options: &TraceOptions, out: &mut impl Write) -> anyhow::Result<()> {
    let (sender, arrivals) = mpsc::sync_channel(CHANNEL);
    let stop = Arc::new(AtomicBool::new(false));
    let query = match &options.selection {
        Selection::All => pushed_filters(&options.filter, None, options.limit),
        Selection::Follow(_) => Vec::new(),
        Selection::Task(task) => vec![("task", task.clone())],
    };
    let path = with_query("/trace/stream", &query);
    for node in &options.nodes {
        let (node, path, sender, stop) = (node.clone(), path.clone(), sender.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("keel-trace-{node}"))
            .spawn(move || follow_stream(&node, &path, &sender, &stop))?;
    }
    drop(sender);
    let deadline = options.live_for.map(|d| Instant::now() + d);
    let result = stream(options, &arrivals, deadline, out);
    stop.store(true, Ordering::Relaxed);
    result
}

fn stream(
    options: &TraceOptions,
    arrivals: &mpsc::Receiver<Arrival>,
    deadline: Option<Instant>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut live = Live::new(options);
    live.sink.begin(out)?;
    let history = input::load(options)?;
    for warning in &history.warnings {
        eprintln!("keel trace: {warning}");
    }
    live.history(history.events);
    live.emit(None, out)?;
    loop {
        let wait = deadline.map_or(TICK, |d| d.saturating_duration_since(Instant::now()).min(TICK));
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        match arrivals.recv_timeout(wait) {
            Ok(Arrival::Event(event)) => live.arrive(event),
            Ok(Arrival::Dropped { node, count }) => {
                eprintln!("keel trace: {node} dropped {count} events for this stream (too slow a reader)")
            }
            Ok(Arrival::Ended { node, error }) => {
                eprintln!("keel trace: the stream from {node} ended: {error}")
            }
            Ok(Arrival::Refused(reason)) => return Err(UsageError(reason).into()),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        live.emit(Some(Instant::now()), out)?;
    }
    live.emit(None, out)?;
    live.sink.end(out)?;
    out.flush()?;
    Ok(())
}

/// Follows one node's stream, reopening it after it ends, until `stop`.
fn follow_stream(node: &str, path: &str, sender: &SyncSender<Arrival>, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(500);
    while !stop.load(Ordering::Relaxed) {
        let ended = match open_stream(node, path, IDLE_TIMEOUT) {
            Ok(reader) => {
                backoff = Duration::from_millis(500);
                read_lines(node, reader, sender, stop)
            }
            Err(e) => Err(refused(node, e)),
        };
        let error = match ended {
            Ok(()) => "closed by the node".to_string(),
            Err(e) if e.downcast_ref::<UsageError>().is_some() => {
                let _ = sender.send(Arrival::Refused(e.to_string()));
                return;
            }
            Err(e) => format!("{e:#}"),
        };
        if stop.load(Ordering::Relaxed)
            || sender.send(Arrival::Ended { node: node.to_string(), error }).is_err()
        {
            return;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn read_lines(
    node: &str,
    reader: Box<dyn BufRead + Send>,
    sender: &SyncSender<Arrival>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    for line in reader.lines() {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let line = line?;
        let arrival = match parse_stream_line(&line) {
            Some(StreamLine::Event(mut event)) => {
                if event.node.is_empty() {
                    event.node = node.to_string();
                }
                Arrival::Event(event)
            }
            Some(StreamLine::Dropped(count)) => Arrival::Dropped { node: node.to_string(), count },
            None => continue,
        };
        if sender.send(arrival).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A line of `/trace/stream`.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamLine {
    /// An event.
    Event(TraceEvent),
    /// `{"dropped": N}`: the node dropped N events for this subscriber.
    Dropped(u64),
}

/// Parses a line of a stream; `None` for blank lines and shapes not known here.
pub fn parse_stream_line(line: &str) -> Option<StreamLine> {
    let line = line.trim().trim_start_matches("data:").trim();
    if line.is_empty() {
        return None;
    }
    if let Ok(event) = TraceEvent::parse_json_line(line) {
        return Some(StreamLine::Event(event));
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("dropped")?.as_u64().map(StreamLine::Dropped)
}

/// The output, a format at a time.
enum Sink {
    Lines { width: usize },
    Json,
    Mermaid(MermaidWriter),
    Perfetto(Box<PerfettoWriter>),
}

impl Sink {
    fn begin(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        match self {
            Sink::Mermaid(writer) => writer.begin(out),
            Sink::Perfetto(writer) => writer.begin(out),
            _ => Ok(()),
        }
    }

    fn end(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        match self {
            Sink::Perfetto(writer) => writer.end(out),
            _ => Ok(()),
        }
    }
}

/// The merging state of a live session.
struct Live<'a> {
    options: &'a TraceOptions,
    merger: Merger,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    held: Vec<(Instant, TraceEvent)>,
    sink: Sink,
    /// `--follow`: the tree's messages so far (descendants join as they are sent).
    tree: Option<HashSet<MessageId>>,
    /// `task`: the accept found in the history.
    extra: HashSet<MessageId>,
    /// Sends shown, for latencies and Mermaid's arrows.
    sends: HashMap<MessageId, Message>,
    sends_order: VecDeque<MessageId>,
    drawn: HashSet<MessageId>,
}

impl<'a> Live<'a> {
    fn new(options: &'a TraceOptions) -> Live<'a> {
        let sink = match options.format {
            Format::Terminal => Sink::Lines { width: options.width },
            Format::Json => Sink::Json,
            Format::Mermaid => Sink::Mermaid(MermaidWriter::default()),
            Format::Perfetto => Sink::Perfetto(Box::new(PerfettoWriter::new(None))),
        };
        Live {
            options,
            merger: Merger::with_capacity(REMEMBERED),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            held: Vec::new(),
            sink,
            tree: None,
            extra: HashSet::new(),
            sends: HashMap::new(),
            sends_order: VecDeque::new(),
            drawn: HashSet::new(),
        }
    }

    /// False for an event already taken (history and stream overlap).
    fn first_time(&mut self, event: &TraceEvent) -> bool {
        let mut hasher = DefaultHasher::new();
        identity(event).hash(&mut hasher);
        let key = hasher.finish();
        if !self.seen.insert(key) {
            return false;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > REMEMBERED {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// The history: selected on all of it, released at once.
    fn history(&mut self, events: Vec<TraceEvent>) {
        let events: Vec<TraceEvent> = events.into_iter().filter(|e| self.first_time(e)).collect();
        self.merger.observe(&events);
        match &self.options.selection {
            Selection::Follow(id) => {
                let merged = super::merge(events.clone());
                let tree = follow(&merged, *id);
                let mut ids = tree.ids();
                ids.insert(*id);
                self.tree = Some(ids);
            }
            Selection::Task(task) => {
                let merged = super::merge(events.clone());
                self.extra = timeline(&merged, task).hops.iter().map(|h| h.message.id).collect();
            }
            Selection::All => {}
        }
        let released = Instant::now().checked_sub(HOLD * 2).unwrap_or_else(Instant::now);
        self.held.extend(events.into_iter().map(|e| (released, e)));
    }

    fn arrive(&mut self, event: TraceEvent) {
        if self.first_time(&event) {
            self.merger.observe(std::slice::from_ref(&event));
            self.held.push((Instant::now(), event));
        }
    }

    fn selected(&mut self, event: &TraceEvent) -> bool {
        let chosen = match &self.options.selection {
            Selection::All => true,
            Selection::Task(task) => {
                event.subject("task") == Some(task.as_str()) || self.extra.contains(&event.id)
            }
            Selection::Follow(_) => {
                let tree = self.tree.get_or_insert_with(HashSet::new);
                if !event.parent.is_none() && tree.contains(&event.parent) {
                    tree.insert(event.id);
                }
                tree.contains(&event.id)
            }
        };
        chosen && self.options.filter.matches(event)
    }

    /// Writes the events held long enough (all of them with `now` `None`), in order.
    fn emit(&mut self, now: Option<Instant>, out: &mut impl Write) -> anyhow::Result<()> {
        let ready: Vec<TraceEvent> = match now {
            None => self.held.drain(..).map(|(_, e)| e).collect(),
            Some(now) => {
                let (ready, waiting): (Vec<_>, Vec<_>) =
                    self.held.drain(..).partition(|(at, _)| now.duration_since(*at) >= HOLD);
                self.held = waiting;
                ready.into_iter().map(|(_, e)| e).collect()
            }
        };
        if ready.is_empty() {
            return Ok(());
        }
        let mut clocks = self.merger.clocks();
        for event in self.merger.order(ready, &mut clocks) {
            if self.selected(&event) {
                self.write(&event, out)?;
            }
        }
        out.flush()?;
        Ok(())
    }

    fn remember_send(&mut self, event: &TraceEvent) {
        let mut message = Message {
            id: event.id,
            parent: event.parent,
            kind: event.kind.clone(),
            from: event.from.clone(),
            to: event.to.clone(),
            size: event.size,
            subjects: event.subjects.clone(),
            sent_us: None,
            received_us: None,
            receipts: 0,
            mishaps: Vec::new(),
        };
        if event.event == EventKind::Send {
            message.sent_us = Some(event.time_us);
        }
        if self.sends.insert(event.id, message).is_none() {
            self.sends_order.push_back(event.id);
            if self.sends_order.len() > REMEMBERED {
                if let Some(old) = self.sends_order.pop_front() {
                    self.sends.remove(&old);
                    self.drawn.remove(&old);
                }
            }
        }
    }

    fn write(&mut self, event: &TraceEvent, out: &mut impl Write) -> anyhow::Result<()> {
        if event.event == EventKind::Send || !self.sends.contains_key(&event.id) {
            self.remember_send(event);
        }
        let sent = self.sends.get(&event.id).and_then(|m| m.sent_us);
        match &mut self.sink {
            Sink::Lines { width } => {
                let latency =
                    sent.filter(|_| event.event == EventKind::Recv).map(|s| event.time_us.saturating_sub(s));
                writeln!(out, "{}", live_line(event, latency, *width))?;
            }
            Sink::Json => out.write_all(event.to_json_line().as_bytes())?,
            Sink::Perfetto(writer) => writer.event(event, out)?,
            Sink::Mermaid(writer) => {
                if event.event == EventKind::Send || self.drawn.contains(&event.id) {
                    return Ok(());
                }
                let Some(mut message) = self.sends.get(&event.id).cloned() else { return Ok(()) };
                if event.event == EventKind::Recv {
                    message.received_us = Some(event.time_us);
                    message.receipts = 1;
                } else {
                    message.mishaps.push(Mishap {
                        time_us: event.time_us,
                        node: event.node.clone(),
                        event: event.event,
                        reason: event.reason.clone(),
                    });
                }
                self.drawn.insert(event.id);
                writer.arrow(&message, None, out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};
    use std::net::TcpListener;

    use super::*;
    use crate::cli::trace::testing::task_story;

    #[test]
    fn stream_lines_are_events_drop_counts_or_skipped() {
        let (cluster, _) = task_story(&[]);
        let event = cluster.events[0].clone();
        assert_eq!(parse_stream_line(&event.to_json_line()), Some(StreamLine::Event(event.clone())));
        assert_eq!(
            parse_stream_line(&format!("data: {}", event.to_json_line())),
            Some(StreamLine::Event(event))
        );
        assert_eq!(parse_stream_line(r#"{"dropped": 12}"#), Some(StreamLine::Dropped(12)));
        for other in ["", "   ", r#"{"hello": 1}"#, "not json", r#"{"dropped": "x"}"#] {
            assert_eq!(parse_stream_line(other), None, "{other:?}");
        }
    }

    /// A node on loopback answering /trace/recent with `recent` and /trace/stream with
    /// `stream` in chunks, then closing.
    fn fake_node(recent: String, stream: Vec<String>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for connection in listener.incoming().take(2) {
                let mut connection = connection.unwrap();
                let mut request = String::new();
                BufReader::new(&mut connection).read_line(&mut request).unwrap();
                if request.starts_with("GET /trace/recent") {
                    let _ = write!(
                        connection,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{recent}",
                        recent.len()
                    );
                } else {
                    let _ = write!(connection, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                    for chunk in &stream {
                        let _ = write!(connection, "{:x}\r\n{chunk}\r\n", chunk.len());
                    }
                    let _ = write!(connection, "0\r\n\r\n");
                }
                let _ = connection.flush();
                let mut rest = Vec::new();
                let _ = connection.read_to_end(&mut rest);
            }
        });
        address
    }

    #[test]
    fn a_live_session_merges_history_and_stream_in_order() {
        let (cluster, _) = task_story(&[("10.0.0.2:5051", -4_000)]);
        let events = cluster.per_node();
        let (history, streamed) = events.split_at(events.len() / 2);
        let recent: String = history.iter().map(TraceEvent::to_json_line).collect();
        // The stream repeats the history's last event and cuts a line across chunks.
        let mut text: String = history[history.len() - 1].to_json_line();
        text.push_str("{\"dropped\": 3}\n");
        text.extend(streamed.iter().map(TraceEvent::to_json_line));
        let stream: Vec<String> =
            text.as_bytes().chunks(97).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        let node = fake_node(recent, stream);
        let mut options = crate::cli::trace::TraceOptions::files(Vec::new());
        options.nodes = vec![node];
        options.live = true;
        options.live_for = Some(Duration::from_millis(1_500));
        options.format = Format::Json;
        let mut out = Vec::new();
        run(&options, &mut out).unwrap();
        let shown = keel_kernel::trace::read_json_lines(&out);
        assert!(shown.warnings.is_empty(), "{:?}", shown.warnings);
        assert_eq!(shown.events.len(), events.len(), "each event once");
        let sends: HashMap<MessageId, u64> =
            shown.events.iter().filter(|e| e.event == EventKind::Send).map(|e| (e.id, e.time_us)).collect();
        for e in shown.events.iter().filter(|e| e.event == EventKind::Recv) {
            assert!(e.time_us >= sends[&e.id], "{e:?} before its send");
        }
    }
}
