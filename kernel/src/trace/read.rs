//! Reading recorded events back: a trace file or a flight-recorder dump, in the
//! JSON-lines form ([`TraceEvent::to_json_line`]) or the file sink's binary form. A
//! file damaged part way (truncated, corrupted) is read up to the damage, with a
//! warning that names the offset; nothing in it panics the reader.

use std::path::Path;

use super::event::TraceEvent;

/// What a read found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The events, in file order.
    pub events: Vec<TraceEvent>,
    /// What stopped the read early or was skipped, with the byte offset.
    pub warnings: Vec<String>,
}

/// Reads a trace file (either form; told apart by its first bytes).
pub fn read_trace_file(path: &Path) -> std::io::Result<ReadOutcome> {
    let bytes = std::fs::read(path)?;
    Ok(read_trace_bytes(&bytes))
}

/// Reads trace bytes (either form).
pub fn read_trace_bytes(bytes: &[u8]) -> ReadOutcome {
    if bytes.starts_with(super::binary::MAGIC) {
        return super::binary::read(bytes);
    }
    read_json_lines(bytes)
}

/// Reads JSON lines: a line that does not parse is skipped with a warning, and a
/// last line without its newline (a file cut short) too.
pub fn read_json_lines(bytes: &[u8]) -> ReadOutcome {
    let mut outcome = ReadOutcome::default();
    let mut offset = 0usize;
    for raw in bytes.split_inclusive(|b| *b == b'\n') {
        let at = offset;
        offset += raw.len();
        let complete = raw.ends_with(b"\n");
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match TraceEvent::parse_json_line(line) {
            Ok(event) => outcome.events.push(event),
            Err(reason) if !complete => {
                outcome.warnings.push(format!("the trace ends in a partial line at byte {at}: {reason}"));
            }
            Err(reason) => outcome.warnings.push(format!("skipped the line at byte {at}: {reason}")),
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::trace::{EventKind, MessageId};

    fn event(id: u64) -> TraceEvent {
        TraceEvent {
            time_us: 1_000 + id,
            node: "127.0.0.1:1".into(),
            event: EventKind::Recv,
            from: "a@127.0.0.1:2".into(),
            to: "b@127.0.0.1:1".into(),
            kind: "k".into(),
            size: 7,
            id: MessageId(id),
            parent: MessageId::NONE,
            reason: None,
            subjects: BTreeMap::new(),
        }
    }

    #[test]
    fn a_damaged_file_is_read_up_to_the_damage_with_warnings_naming_offsets() {
        let mut text: String = (1..=3).map(|i| event(i).to_json_line()).collect();
        let second_line_at = event(1).to_json_line().len();
        text.replace_range(second_line_at..second_line_at + 3, "###");
        let cut = text.len() - 10;
        let outcome = read_json_lines(&text.as_bytes()[..cut]);
        assert_eq!(outcome.events, vec![event(1)]);
        assert_eq!(outcome.warnings.len(), 2, "{:?}", outcome.warnings);
        assert!(outcome.warnings[0].contains(&format!("byte {second_line_at}")), "{:?}", outcome.warnings);
        assert!(outcome.warnings[1].contains("partial line"), "{:?}", outcome.warnings);
    }
}
