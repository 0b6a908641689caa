//! Message tracing: ids, the causal parent of the message being handled, the
//! `keel::msg` events, and the JSON-lines file sink.
//!
//! Every send, receive and drop is a `tracing` event with target `keel::msg` and the
//! fields `from`, `to`, `kind`, `size`, `id`, `parent` (and `reason` for drops).
//! While an actor handles a message, that message's id is the *current* one, and
//! every message sent meanwhile records it as its parent, so chains span nodes.

use std::cell::Cell;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub mod binary;
mod event;
mod read;
mod sink;

pub use event::{parse_rfc3339_micros, EventKind, TraceEvent};
pub use read::{read_json_lines, read_trace_bytes, read_trace_file, ReadOutcome};

use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
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

/// Keeps the trace file flushed; flushes once more when dropped.
pub struct TraceGuard {
    file: Option<Arc<Mutex<BufWriter<File>>>>,
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            if let Ok(mut f) = file.lock() {
                let _ = f.flush();
            }
        }
    }
}

impl fmt::Debug for TraceGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceGuard").field("file", &self.file.is_some()).finish()
    }
}

/// Installs the process's tracing subscriber: human logs on stderr (`RUST_LOG`,
/// default `info`) and, when `trace_file` is given, every `keel::msg` event as a
/// JSON line in that file (flushed every 100 ms and at exit).
pub fn init(trace_file: Option<&Path>) -> io::Result<TraceGuard> {
    init_with_default(trace_file, "info")
}

/// Like [`init`], with `default_filter` for stderr when `RUST_LOG` is not set
/// (command-line clients use `warn`).
pub fn init_with_default(trace_file: Option<&Path>, default_filter: &str) -> io::Result<TraceGuard> {
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let stderr =
        tracing_subscriber::fmt::layer().with_writer(io::stderr).with_target(true).with_filter(stderr_filter);
    let (file_layer, file) = match trace_file {
        Some(path) => {
            let shared = Arc::new(Mutex::new(BufWriter::with_capacity(256 * 1024, File::create(path)?)));
            spawn_flusher(Arc::downgrade(&shared));
            let layer = sink::JsonLines { file: shared.clone() }
                .with_filter(Targets::new().with_target(TARGET, LevelFilter::DEBUG));
            (Some(layer), Some(shared))
        }
        None => (None, None),
    };
    // A second init in one process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(stderr).with(file_layer).try_init();
    Ok(TraceGuard { file })
}

fn spawn_flusher(file: Weak<Mutex<BufWriter<File>>>) {
    std::thread::Builder::new()
        .name("keel-trace-flush".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            let Some(file) = file.upgrade() else { return };
            let mut writer = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = writer.flush();
        })
        .map(|_| ())
        .unwrap_or_else(|e| tracing::warn!(error = %e, "cannot start the trace flusher thread"));
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
