//! The trace file sink (`keel --trace FILE`): every node of the process copies its
//! encoded events into a buffer as it records them (see [`super::recorder`]), and
//! one writer thread drains the buffers every 20 ms into the file, off the hot path.
//! The file is binary ([`super::binary`]; a node marker precedes each node's batch)
//! or, for a name ending in `.jsonl` or `.json`, JSON lines (converted by the writer).
//! A sink that falls behind by more than [`SINK_BUFFER_BYTES`] per node drops
//! events and counts them (`Recorder::sink_dropped`); they are still in the flight
//! recorder.
//!
//! Also the JSON text helpers the event form uses.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use super::binary;
use super::recorder::Recorder;

/// The most encoded events waiting for the writer, per node.
pub const SINK_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// How often the writer drains.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// The process's file sink: the file and the recorders feeding it.
pub(crate) struct FileSink {
    path: PathBuf,
    json: bool,
    file: Mutex<BufWriter<File>>,
    recorders: Mutex<Vec<Weak<Recorder>>>,
}

static SINK: OnceLock<Arc<FileSink>> = OnceLock::new();

/// Opens `path` as the process's trace file and starts its writer. Nodes started
/// afterwards feed it. A second call (tests) keeps the first sink.
pub(crate) fn open(path: &Path) -> std::io::Result<Arc<FileSink>> {
    if let Some(sink) = SINK.get() {
        return Ok(sink.clone());
    }
    let json = matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "json"));
    let mut file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    if !json {
        file.write_all(binary::MAGIC)?;
        file.write_all(&[0])?; // No node in the header: each batch names its node.
    }
    let sink = Arc::new(FileSink {
        path: path.to_path_buf(),
        json,
        file: Mutex::new(file),
        recorders: Mutex::new(Vec::new()),
    });
    let sink = SINK.get_or_init(|| sink).clone();
    let writer = Arc::downgrade(&sink);
    std::thread::Builder::new().name("keel-trace-sink".into()).spawn(move || {
        let mut spare = Vec::new();
        loop {
            std::thread::sleep(DRAIN_EVERY);
            let Some(sink) = writer.upgrade() else { return };
            spare = sink.drain(spare);
        }
    })?;
    Ok(sink)
}

/// Makes a new node's recorder feed the process's file sink, if there is one.
pub(crate) fn attach(recorder: &Arc<Recorder>) {
    if let Some(sink) = SINK.get() {
        recorder.attach_sink(SINK_BUFFER_BYTES);
        sink.recorders.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(recorder));
    }
}

/// Writes what waits, now (at exit).
pub(crate) fn flush() {
    if let Some(sink) = SINK.get() {
        let _ = sink.drain(Vec::new());
    }
}

impl FileSink {
    /// Moves every node's waiting events to the file; returns a buffer to reuse.
    fn drain(&self, mut spare: Vec<u8>) -> Vec<u8> {
        let recorders: Vec<Arc<Recorder>> = {
            let mut list = self.recorders.lock().unwrap_or_else(|p| p.into_inner());
            list.retain(|r| r.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        for recorder in recorders {
            let batch = recorder.take_sink(spare);
            if !batch.is_empty() {
                let written = if self.json {
                    write_json(&mut *file, &batch, recorder.node())
                } else {
                    file.write_all(&binary::node_marker(recorder.node()))
                        .and_then(|()| file.write_all(&batch))
                };
                if let Err(e) = written {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot write the trace file");
                }
            }
            spare = batch;
        }
        let _ = file.flush();
        spare
    }
}

/// Converts a batch of binary records to JSON lines.
fn write_json(out: &mut impl Write, batch: &[u8], node: &str) -> std::io::Result<()> {
    let mut at = 0;
    while at < batch.len() {
        match binary::decode(&batch[at..], node) {
            Ok((event, len)) => {
                out.write_all(event.to_json_line().as_bytes())?;
                at += len;
            }
            Err(_) => break,
        }
    }
    Ok(())
}

/// Appends `s` escaped for a JSON string.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Appends `micros` (since the Unix epoch) as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
pub(crate) fn write_rfc3339_micros(out: &mut String, micros: u64) {
    write_rfc3339(out, std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros));
}

/// Appends `time` as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`.
fn write_rfc3339(out: &mut String, time: SystemTime) {
    let t = crate::clock::UtcTime::from_system(time);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.micros
    );
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let mut out = String::new();
        write_rfc3339(&mut out, UNIX_EPOCH + std::time::Duration::from_micros(1_795_230_218_516_123));
        assert_eq!(out, "2026-11-21T03:03:38.516123Z");
        out.clear();
        write_rfc3339(&mut out, UNIX_EPOCH);
        assert_eq!(out, "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        escape_into(&mut out, "a\"b\\c\nd\u{1}");
        assert_eq!(out, "a\\\"b\\\\c\\nd\\u0001");
        let parsed: String = serde_json::from_str(&format!("\"{out}\"")).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}");
    }
}
