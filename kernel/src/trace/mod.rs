//! Message tracing: ids, the causal parent of the message being handled, the
//! `keel::msg` events, and the JSON-lines file sink.
//!
//! Every send, receive and drop is a `tracing` event with target `keel::msg` and the
//! fields `from`, `to`, `kind`, `size`, `id`, `parent` (and `reason` for drops).
//! While an actor handles a message, that message's id is the *current* one, and
//! every message sent meanwhile records it as its parent, so chains span nodes.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::path::Path;

pub mod binary;
mod event;
pub mod http;
mod read;
pub mod recorder;
mod sink;

pub use event::{parse_rfc3339_micros, EventKind, TraceEvent};
pub use read::{read_json_lines, read_trace_bytes, read_trace_file, ReadOutcome};
pub use recorder::{dump_all, Recorder, DEFAULT_EVENTS};

use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The target of message events.
pub const TARGET: &str = "keel::msg";

/// A message's id, unique per node run (a random base plus a counter). Printed as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageId(pub u64);

impl MessageId {
    /// The "no message" id.
    pub const NONE: MessageId = MessageId(0);

    /// Whether this is the "no message" id.
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

thread_local! {
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// The id of the message being handled on this thread, if any.
pub fn current_message() -> MessageId {
    MessageId(CURRENT.with(Cell::get))
}

/// Runs `f` with `id` as the current message, restoring the previous one after.
pub(crate) fn with_current<R>(id: MessageId, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|c| c.replace(id.0));
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(previous);
    f()
}

/// Microseconds since the Unix epoch, by the system clock (what trace events carry).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The fields of one traced message.
#[derive(Clone, Copy)]
pub(crate) struct MsgFields<'a> {
    pub from: &'a dyn fmt::Display,
    pub to: &'a dyn fmt::Display,
    pub kind: &'a str,
    pub size: usize,
    pub id: MessageId,
    pub parent: MessageId,
}

pub(crate) fn sent(m: MsgFields<'_>) {
    tracing::debug!(target: TARGET, from = %m.from, to = %m.to, kind = m.kind, size = m.size, id = %m.id, parent = %m.parent, "send");
}

pub(crate) fn received(m: MsgFields<'_>) {
    tracing::debug!(target: TARGET, from = %m.from, to = %m.to, kind = m.kind, size = m.size, id = %m.id, parent = %m.parent, "recv");
}

pub(crate) fn dropped(m: MsgFields<'_>, reason: &str) {
    tracing::debug!(target: TARGET, from = %m.from, to = %m.to, kind = m.kind, size = m.size, id = %m.id, parent = %m.parent, reason, "drop");
}

/// Writes what the trace file sink holds once more when dropped (at exit).
#[derive(Debug)]
pub struct TraceGuard {
    sink: bool,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if self.sink {
            sink::flush();
        }
    }
}

/// Installs the process's tracing subscriber: human logs on stderr (`RUST_LOG`,
/// default `info`) and, when `trace_file` is given, the file sink: every message
/// event of the nodes started afterwards, written off the hot path (binary, or JSON
/// lines for a `.jsonl`/`.json` name; see [`sink`]).
pub fn init(trace_file: Option<&Path>) -> io::Result<TraceGuard> {
    init_with_default(trace_file, "info")
}

/// Like [`init`], with `default_filter` for stderr when `RUST_LOG` is not set
/// (command-line clients use `warn`).
pub fn init_with_default(trace_file: Option<&Path>, default_filter: &str) -> io::Result<TraceGuard> {
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let stderr =
        tracing_subscriber::fmt::layer().with_writer(io::stderr).with_target(true).with_filter(stderr_filter);
    if let Some(path) = trace_file {
        sink::open(path)?;
    }
    // A second init in one process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(stderr).try_init();
    Ok(TraceGuard { sink: trace_file.is_some() })
}

/// Writes what the trace file sink holds now (before `std::process::exit`, which
/// skips [`TraceGuard`]'s drop).
pub fn flush() {
    sink::flush();
}

/// Remembers a node's recorder for dumps.
pub(crate) fn register_recorder(recorder: &std::sync::Arc<Recorder>) {
    recorder::register(recorder);
}

/// Writes every node's flight recorder to `dir` when the process panics and each
/// time it gets SIGUSR1 (must be called within a tokio runtime; once per process).
pub fn dump_on_panic_and_sigusr1(dir: std::path::PathBuf) {
    let on_panic = dir.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        match recorder::dump_all(&on_panic) {
            Ok(paths) => eprintln!("flight recorder written to {paths:?}"),
            Err(e) => eprintln!("cannot write the flight recorder to {}: {e}", on_panic.display()),
        }
        previous(info);
    }));
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    match recorder::dump_all(&dir) {
                        Ok(paths) => tracing::info!(?paths, "flight recorder written (SIGUSR1)"),
                        Err(e) => {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the flight recorder")
                        }
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGUSR1; flight recorder dumps on panic only")
        }
    }
}

/// Makes a new node's recorder feed the trace file, if one is open.
pub(crate) fn attach_file_sink(recorder: &std::sync::Arc<Recorder>) {
    sink::attach(recorder);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_message_is_scoped() {
        assert!(current_message().is_none());
        with_current(MessageId(7), || {
            assert_eq!(current_message(), MessageId(7));
            with_current(MessageId(9), || assert_eq!(current_message(), MessageId(9)));
            assert_eq!(current_message(), MessageId(7));
        });
        assert!(current_message().is_none());
    }
}
