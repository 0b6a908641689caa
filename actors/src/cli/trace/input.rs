//! Where events come from: trace files and flight-recorder dumps (either form, through
//! the kernel's reader: damage stops a file's read with a warning naming the offset),
//! and running nodes' `GET /trace/recent` (JSON lines). The HTTP calls are
//! [`fetch`] and, for `--live`, [`open_stream`]: the only two functions here that
//! know how HTTP is spoken.
//!
//! What can be asked of a node is asked of it (`task=`, `framework=`, `kind=`...,
//! `since=` a minute early since node clocks differ), so fewer events travel; the
//! exact filtering is done here after the merge. `--follow` asks for everything (the
//! tree crosses every filter); `keel trace task` asks for the task's events, then for
//! its framework's Accepts (which may not name the task).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use keel_kernel::trace::{read_json_lines, read_trace_bytes, EventKind, TraceEvent};

use super::filter::Filter;
use super::labels::node_of;
use super::{Selection, TraceOptions, UsageError};
use crate::cli::http::HttpStatus;

/// How much earlier than `--since` nodes are asked for events (their clocks differ).
const SINCE_SLACK_US: u64 = 60_000_000;
/// The most bytes of an error answer kept.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Events read, and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The events, source after source.
    pub events: Vec<TraceEvent>,
    /// Damaged files, unreachable nodes...
    pub warnings: Vec<String>,
}

impl Loaded {
    fn extend(&mut self, other: Loaded) {
        self.events.extend(other.events);
        self.warnings.extend(other.warnings);
    }
}

/// Reads every input of `options`: its files (an unreadable one is an error) and its
/// nodes (an unreachable one is a warning, unless none answers and there are no
/// files; a node refusing the filters is a usage error).
pub fn load(options: &TraceOptions) -> anyhow::Result<Loaded> {
    let mut loaded = Loaded::default();
    for path in &options.files {
        loaded.extend(read_file(path)?);
    }
    let mut answered = 0;
    for node in &options.nodes {
        match load_node(node, options) {
            Ok(events) => {
                answered += 1;
                loaded.extend(events);
            }
            Err(e) if e.downcast_ref::<UsageError>().is_some() => return Err(e),
            Err(e) => loaded.warnings.push(format!("cannot read {node}: {e:#}")),
        }
    }
    if !options.nodes.is_empty() && answered == 0 && options.files.is_empty() {
        anyhow::bail!("no node answered: {}", loaded.warnings.join("; "));
    }
    Ok(loaded)
}

/// Reads a trace file or dump (`-`: standard input). Events without a recording
/// node (the older file sink) are given the one the file's own sends and receipts
/// point at.
pub fn read_file(path: &Path) -> anyhow::Result<Loaded> {
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        io::stdin().lock().read_to_end(&mut bytes)?;
        bytes
    } else {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
    };
    let outcome = read_trace_bytes(&bytes);
    let mut events = outcome.events;
    fill_nodes(&mut events, None);
    let name = path.display();
    Ok(Loaded { events, warnings: outcome.warnings.into_iter().map(|w| format!("{name}: {w}")).collect() })
}

/// Gives events without a `node` the node most of the source's events were
/// recorded on (the sender's for sends, the receiver's otherwise), or `fallback`.
pub fn fill_nodes(events: &mut [TraceEvent], fallback: Option<&str>) {
    if events.iter().all(|e| !e.node.is_empty()) {
        return;
    }
    let mut votes: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for e in events.iter() {
        let node = if e.event == EventKind::Send { node_of(&e.from) } else { node_of(&e.to) };
        *votes.entry(node).or_default() += 1;
    }
    let elected = votes.into_iter().max_by_key(|(_, count)| *count).map(|(node, _)| node.to_string());
    let Some(node) = fallback.map(str::to_string).or(elected) else { return };
    for e in events.iter_mut().filter(|e| e.node.is_empty()) {
        e.node = node.clone();
    }
}

/// The events of one node's flight recorder for `options`.
fn load_node(node: &str, options: &TraceOptions) -> anyhow::Result<Loaded> {
    let since = options.filter.since_us.map(|s| s.saturating_sub(SINCE_SLACK_US));
    let mut loaded = Loaded::default();
    match &options.selection {
        Selection::All => {
            let query = pushed_filters(&options.filter, since, options.limit);
            loaded.extend(recent(node, &query)?);
        }
        Selection::Follow(_) => loaded.extend(recent(node, &time_and_limit(since, options.limit))?),
        Selection::Task(task) => {
            let mut query = time_and_limit(since, options.limit);
            query.push(("task", task.clone()));
            let about = recent(node, &query)?;
            let frameworks: std::collections::BTreeSet<String> =
                about.events.iter().filter_map(|e| e.subject("framework").map(str::to_string)).collect();
            loaded.extend(about);
            for framework in frameworks {
                let mut query = time_and_limit(since, options.limit);
                query.push(("framework", framework));
                query.push(("kind", "keel.scheduler.Accept".to_string()));
                loaded.extend(recent(node, &query)?);
            }
        }
    }
    Ok(loaded)
}

fn time_and_limit(since: Option<u64>, limit: usize) -> Vec<(&'static str, String)> {
    let mut query = vec![("limit", limit.to_string())];
    if let Some(since) = since {
        query.push(("since", since.to_string()));
    }
    query
}

/// The filters a node can apply exactly as given.
pub fn pushed_filters(filter: &Filter, since: Option<u64>, limit: usize) -> Vec<(&'static str, String)> {
    let mut query = time_and_limit(since, limit);
    for (name, value) in [
        ("task", &filter.task),
        ("framework", &filter.framework),
        ("agent", &filter.agent),
        ("executor", &filter.executor),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    if let [kind] = filter.kinds.as_slice() {
        if kind.contains('.') {
            query.push(("kind", kind.clone()));
        }
    }
    query
}

/// `path?name=value&...`, percent-encoded.
pub fn with_query(path: &str, query: &[(&str, String)]) -> String {
    let pairs: Vec<String> =
        query.iter().map(|(name, value)| format!("{name}={}", percent_encode(value))).collect();
    if pairs.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", pairs.join("&"))
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `GET /trace/recent` on `node`, parsed; a 400 is a [`UsageError`].
fn recent(node: &str, query: &[(&str, String)]) -> anyhow::Result<Loaded> {
    let body = fetch(node, &with_query("/trace/recent", query)).map_err(|e| refused(node, e))?;
    let outcome = read_json_lines(&body);
    let mut events = outcome.events;
    fill_nodes(&mut events, Some(node));
    Ok(Loaded { events, warnings: outcome.warnings.into_iter().map(|w| format!("{node}: {w}")).collect() })
}

/// A node's 400 answer as a usage error with its reason; other errors as they are.
pub fn refused(node: &str, error: anyhow::Error) -> anyhow::Error {
    match error.downcast_ref::<HttpStatus>() {
        Some(status) if status.status == 400 => {
            let body = String::from_utf8_lossy(&status.body);
            let reason = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.trim().to_string());
            anyhow::Error::new(UsageError(format!("{node} refused the request: {reason}")))
        }
        _ => error,
    }
}

/// Fetches `path` from `node` (`host:port`): the body of a 200 answer, else an
/// [`HttpStatus`] error.
pub fn fetch(node: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    crate::cli::http::get(node, path)
}

/// Opens `path` on `node` as a stream: the body's bytes as they come (chunked or
/// not). A non-200 answer is an [`HttpStatus`] error. Reads time out after
/// `idle_timeout` without data.
pub fn open_stream(
    node: &str,
    path: &str,
    idle_timeout: Duration,
) -> anyhow::Result<Box<dyn BufRead + Send>> {
    let address = node
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("cannot resolve {node}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {node}"))?;
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .map_err(|e| anyhow::anyhow!("cannot connect to {node}: {e}"))?;
    stream.set_read_timeout(Some(idle_timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {node}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let body: Box<dyn Read + Send> =
        if chunked { Box::new(Chunked { inner: reader, left: 0, done: false }) } else { Box::new(reader) };
    if status != 200 {
        let mut text = Vec::new();
        body.take(MAX_ERROR_BODY).read_to_end(&mut text)?;
        return Err(
            anyhow::Error::new(HttpStatus { status, body: text }).context(format!("GET {path} on {node}"))
        );
    }
    Ok(Box::new(BufReader::new(body)))
}

/// A chunked body, decoded as it arrives.
struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size = String::new();
            if self.inner.read_line(&mut size)? == 0 {
                self.done = true;
                return Ok(0);
            }
            if size.trim().is_empty() {
                // The CRLF after the previous chunk.
                size.clear();
                if self.inner.read_line(&mut size)? == 0 {
                    self.done = true;
                    return Ok(0);
                }
            }
            let digits = size.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(digits, 16).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {size:?}"))
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let read = self.inner.read(&mut buf[..want])?;
        if read == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside a chunk"));
        }
        self.left -= read;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use keel_kernel::trace::MessageId;

    use super::*;
    use crate::cli::trace::testing::event;

    #[test]
    fn chunked_bodies_decode_across_chunk_boundaries() {
        let wire = b"5\r\nhello\r\n7\r\n world\n\r\n0\r\n\r\n";
        let mut reader = BufReader::new(Chunked { inner: &wire[..], left: 0, done: false });
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello world\n");
    }

    #[test]
    fn filters_a_node_can_apply_are_asked_of_it_encoded() {
        let filter = Filter {
            task: Some("t 1&x".into()),
            kinds: vec!["keel.agent.RunTask".into()],
            actors: vec![crate::cli::trace::filter::parse_actor("master").unwrap()],
            ..Filter::default()
        };
        let path = with_query("/trace/recent", &pushed_filters(&filter, Some(5), 10));
        assert_eq!(path, "/trace/recent?limit=10&since=5&task=t%201%26x&kind=keel.agent.RunTask");
        let short_kind = Filter { kinds: vec!["RunTask".into()], ..Filter::default() };
        assert_eq!(with_query("/p", &pushed_filters(&short_kind, None, 1)), "/p?limit=1");
    }

    #[test]
    fn events_without_a_node_get_the_one_their_file_points_at() {
        let mut events = vec![
            event(EventKind::Send, 1, "a@h:1", "b@h:2", "k", 1),
            event(EventKind::Recv, 2, "b@h:2", "a@h:1", "k", 2),
            event(EventKind::Send, 3, "a@h:1", "c@h:3", "k", 3),
        ];
        for e in &mut events {
            e.node.clear();
        }
        fill_nodes(&mut events, None);
        assert!(events.iter().all(|e| e.node == "h:1"), "{events:?}");
        let mut other = vec![event(EventKind::Send, 1, "a@h:1", "b@h:2", "k", 1)];
        other[0].node.clear();
        fill_nodes(&mut other, Some("h:9"));
        assert_eq!(other[0].node, "h:9");
        assert_eq!(other[0].id, MessageId(1));
    }

    #[test]
    fn a_damaged_file_is_read_up_to_the_damage_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.jsonl");
        let mut text = event(EventKind::Send, 1, "a@h:1", "b@h:2", "k", 1).to_json_line();
        text.push_str("{\"timestamp\": garbage\n");
        text.push_str(&event(EventKind::Recv, 2, "a@h:1", "b@h:2", "k", 1).to_json_line()[..30]);
        std::fs::write(&path, text).unwrap();
        let loaded = read_file(&path).unwrap();
        assert_eq!(loaded.events.len(), 1);
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(
            loaded.warnings[0].contains("trace.jsonl: skipped the line at byte"),
            "{:?}",
            loaded.warnings
        );
        assert!(read_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn binary_dumps_are_read_with_their_node_and_subjects() {
        use keel_kernel::trace::binary::{encode, encoded_len, file_header, RawEvent};
        let raw = RawEvent {
            time_us: 42,
            event: EventKind::Send,
            from: "master@h:5050",
            to: "agent@h:5051",
            kind: "keel.agent.RunTask",
            size: 9,
            id: MessageId(7),
            parent: MessageId(3),
            reason: None,
        };
        let subjects = [("task", "t1")];
        let mut bytes = file_header("h:5050");
        let start = bytes.len();
        bytes.resize(start + encoded_len(&raw, &subjects), 0);
        encode(&raw, &subjects, &mut bytes[start..]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dump.bin");
        std::fs::write(&path, &bytes).unwrap();
        let loaded = read_file(&path).unwrap();
        assert_eq!(loaded.events.len(), 1);
        let event = &loaded.events[0];
        assert_eq!(
            (event.node.as_str(), event.subject("task"), event.parent),
            ("h:5050", Some("t1"), MessageId(3))
        );
        // Cut short: read up to the damage, with a warning.
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let loaded = read_file(&path).unwrap();
        assert!(loaded.events.is_empty());
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    }
}
