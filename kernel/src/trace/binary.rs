//! The compact binary form of message events: what the flight recorder keeps in
//! memory and what the file sink writes. One record per event, little-endian:
//!
//! ```text
//! len:u16  event:u8  nsubjects:u8  time_us:u64  id:u64  parent:u64  size:u32
//! kind  from  to  reason  (key value)*nsubjects        each string: len:u8 bytes
//! ```
//! `len` counts the whole record. Strings longer than 255 bytes are cut (at a
//! character boundary). A file starts with [`MAGIC`] and the recording node's
//! address (`len:u8 bytes`), then records.

use std::collections::BTreeMap;

use super::event::{EventKind, TraceEvent};
use super::read::ReadOutcome;
use super::MessageId;

/// The first bytes of a binary trace file.
pub const MAGIC: &[u8] = b"KEELTRC1";

/// The event code of a node marker: the records after it were recorded by the node
/// it names (in its `kind` string), in a file fed by several nodes.
const NODE_MARKER: u8 = 0xFE;

/// The fixed part of a record, before its strings.
const HEAD: usize = 2 + 1 + 1 + 8 + 8 + 8 + 4;

/// The most subjects a record keeps.
pub const MAX_SUBJECTS: usize = 8;

/// An event as the hot path has it, borrowing everything.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    /// Microseconds since the Unix epoch.
    pub time_us: u64,
    /// What happened.
    pub event: EventKind,
    /// The sender.
    pub from: &'a str,
    /// The receiver.
    pub to: &'a str,
    /// The kind.
    pub kind: &'a str,
    /// The body's size.
    pub size: u64,
    /// The message id.
    pub id: MessageId,
    /// The parent id.
    pub parent: MessageId,
    /// Why (drops, faults).
    pub reason: Option<&'a str>,
}

/// Subjects collected for one record (no allocation: borrowed from the message).
#[derive(Debug, Default)]
pub struct SubjectList<'a> {
    items: [(&'a str, &'a str); MAX_SUBJECTS],
    len: usize,
}

impl<'a> SubjectList<'a> {
    /// Adds one (beyond [`MAX_SUBJECTS`] they are ignored).
    pub fn push(&mut self, key: &'a str, value: &'a str) {
        if self.len < MAX_SUBJECTS {
            self.items[self.len] = (key, value);
            self.len += 1;
        }
    }

    /// The subjects, in the order given.
    pub fn as_slice(&self) -> &[(&'a str, &'a str)] {
        &self.items[..self.len]
    }
}

/// Subjects copied out of a message (for when the message itself moves on before
/// the event is recorded): up to [`MAX_SUBJECTS`], 192 bytes of values in all.
#[derive(Debug)]
pub struct SubjectBuf {
    text: [u8; 192],
    used: usize,
    items: [(&'static str, u16, u16); MAX_SUBJECTS],
    len: usize,
}

impl Default for SubjectBuf {
    fn default() -> Self {
        SubjectBuf { text: [0; 192], used: 0, items: [("", 0, 0); MAX_SUBJECTS], len: 0 }
    }
}

impl SubjectBuf {
    /// Copies one in (a value that does not fit is cut at a character boundary).
    pub fn push(&mut self, key: &'static str, value: &str) {
        if self.len >= MAX_SUBJECTS {
            return;
        }
        let room = self.text.len() - self.used;
        let mut end = value.len().min(room);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let start = self.used;
        self.text[start..start + end].copy_from_slice(&value.as_bytes()[..end]);
        self.used += end;
        self.items[self.len] = (key, start as u16, self.used as u16);
        self.len += 1;
    }

    /// The subjects as pairs, for [`encode`].
    pub fn pairs(&self) -> ([(&str, &str); MAX_SUBJECTS], usize) {
        let mut out = [("", ""); MAX_SUBJECTS];
        for (slot, (key, start, end)) in out.iter_mut().zip(&self.items[..self.len]) {
            let value = std::str::from_utf8(&self.text[*start as usize..*end as usize]).unwrap_or_default();
            *slot = (key, value);
        }
        (out, self.len)
    }
}

/// `text` cut to at most 255 bytes at a character boundary.
fn short(text: &str) -> &str {
    if text.len() <= 255 {
        return text;
    }
    let mut end = 255;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The encoded length of a record.
pub fn encoded_len(raw: &RawEvent<'_>, subjects: &[(&str, &str)]) -> usize {
    let strings = [raw.kind, raw.from, raw.to, raw.reason.unwrap_or("")];
    let mut len = HEAD + strings.iter().map(|s| 1 + short(s).len()).sum::<usize>();
    for (key, value) in subjects {
        len += 2 + short(key).len() + short(value).len();
    }
    len
}

/// Writes a record into `out`, which must be exactly [`encoded_len`] bytes long.
pub fn encode(raw: &RawEvent<'_>, subjects: &[(&str, &str)], out: &mut [u8]) {
    let len = out.len();
    out[0..2].copy_from_slice(&(len as u16).to_le_bytes());
    out[2] = raw.event.code();
    out[3] = subjects.len() as u8;
    out[4..12].copy_from_slice(&raw.time_us.to_le_bytes());
    out[12..20].copy_from_slice(&raw.id.0.to_le_bytes());
    out[20..28].copy_from_slice(&raw.parent.0.to_le_bytes());
    out[28..32].copy_from_slice(&(raw.size.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    let mut at = HEAD;
    let mut put = |text: &str| {
        let text = short(text);
        out[at] = text.len() as u8;
        out[at + 1..at + 1 + text.len()].copy_from_slice(text.as_bytes());
        at += 1 + text.len();
    };
    put(raw.kind);
    put(raw.from);
    put(raw.to);
    put(raw.reason.unwrap_or(""));
    for (key, value) in subjects {
        put(key);
        put(value);
    }
}

/// Decodes one record at the start of `bytes`: the event (with `node` set) and
/// its length, or why it cannot be decoded.
pub fn decode(bytes: &[u8], node: &str) -> Result<(TraceEvent, usize), String> {
    if bytes.len() < HEAD {
        return Err(format!("a record needs {HEAD} bytes, {} are left", bytes.len()));
    }
    let len = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
    if len < HEAD || len > bytes.len() {
        return Err(format!("a record says it has {len} bytes ({} are left)", bytes.len()));
    }
    let record = &bytes[..len];
    let event = EventKind::from_code(record[2]).ok_or_else(|| format!("unknown event code {}", record[2]))?;
    let subjects = record[3] as usize;
    let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().unwrap_or([0; 8]));
    let mut at = HEAD;
    let mut take = || -> Result<String, String> {
        let n = *record.get(at).ok_or("a string runs past its record")? as usize;
        let text = record.get(at + 1..at + 1 + n).ok_or("a string runs past its record")?;
        at += 1 + n;
        String::from_utf8(text.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    };
    let kind = take()?;
    let from = take()?;
    let to = take()?;
    let reason = take()?;
    let mut map = BTreeMap::new();
    for _ in 0..subjects {
        let key = take()?;
        let value = take()?;
        map.insert(key, value);
    }
    let size = u32::from_le_bytes(record[28..32].try_into().unwrap_or([0; 4]));
    let event = TraceEvent {
        time_us: u64_at(4),
        node: node.to_string(),
        event,
        from,
        to,
        kind,
        size: u64::from(size),
        id: MessageId(u64_at(12)),
        parent: MessageId(u64_at(20)),
        reason: (!reason.is_empty()).then_some(reason),
        subjects: map,
    };
    Ok((event, len))
}

/// A node marker record naming `node`.
pub fn node_marker(node: &str) -> Vec<u8> {
    let raw = RawEvent {
        time_us: 0,
        event: EventKind::Send,
        from: "",
        to: "",
        kind: node,
        size: 0,
        id: MessageId::NONE,
        parent: MessageId::NONE,
        reason: None,
    };
    let mut out = vec![0; encoded_len(&raw, &[])];
    encode(&raw, &[], &mut out);
    out[2] = NODE_MARKER;
    out
}

/// The header of a binary file recorded by `node`.
pub fn file_header(node: &str) -> Vec<u8> {
    let node = short(node);
    let mut header = MAGIC.to_vec();
    header.push(node.len() as u8);
    header.extend_from_slice(node.as_bytes());
    header
}

/// Reads a binary trace file: its header, then records up to the first damage.
pub(crate) fn read(bytes: &[u8]) -> ReadOutcome {
    let mut outcome = ReadOutcome::default();
    let Some(&node_len) = bytes.get(MAGIC.len()) else {
        outcome.warnings.push("the binary trace ends inside its header".into());
        return outcome;
    };
    let start = MAGIC.len() + 1 + node_len as usize;
    let Some(node) = bytes.get(MAGIC.len() + 1..start) else {
        outcome.warnings.push("the binary trace ends inside its header".into());
        return outcome;
    };
    let mut node = String::from_utf8_lossy(node).into_owned();
    let mut at = start;
    while at < bytes.len() {
        if bytes.get(at + 2) == Some(&NODE_MARKER) {
            // Decode it as an event to check it, then take its node.
            let mut marker = bytes[at..].to_vec();
            marker[2] = EventKind::Send.code();
            match decode(&marker, "") {
                Ok((named, len)) => {
                    node = named.kind;
                    at += len;
                    continue;
                }
                Err(reason) => {
                    outcome
                        .warnings
                        .push(format!("the trace is damaged at byte {at} ({reason}); read up to there"));
                    break;
                }
            }
        }
        match decode(&bytes[at..], &node) {
            Ok((event, len)) => {
                outcome.events.push(event);
                at += len;
            }
            Err(reason) => {
                outcome
                    .warnings
                    .push(format!("the trace is damaged at byte {at} ({reason}); read up to there"));
                break;
            }
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>() -> RawEvent<'a> {
        RawEvent {
            time_us: 1_700_000_000_123_456,
            event: EventKind::Drop,
            from: "master@127.0.0.1:5050",
            to: "agent@127.0.0.1:5051",
            kind: "keel.agent.RunTask",
            size: 412,
            id: MessageId(u64::MAX - 1),
            parent: MessageId(7),
            reason: Some("unreachable"),
        }
    }

    fn record(raw: &RawEvent<'_>, subjects: &[(&str, &str)]) -> Vec<u8> {
        let mut out = vec![0; encoded_len(raw, subjects)];
        encode(raw, subjects, &mut out);
        out
    }

    #[test]
    fn records_round_trip() {
        let subjects = [("framework", "F1"), ("task", "t-1")];
        let bytes = record(&raw(), &subjects);
        let (event, len) = decode(&bytes, "127.0.0.1:5050").unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(event.reason.as_deref(), Some("unreachable"));
        assert_eq!(event.subject("task"), Some("t-1"));
        assert_eq!(
            (event.time_us, event.size, event.id, event.parent),
            (1_700_000_000_123_456, 412, MessageId(u64::MAX - 1), MessageId(7))
        );
        assert_eq!(event.node, "127.0.0.1:5050");
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary() {
        let long = "é".repeat(200);
        let mut event = raw();
        event.kind = &long;
        let (decoded, _) = decode(&record(&event, &[]), "n").unwrap();
        assert!(decoded.kind.len() <= 255 && decoded.kind.chars().all(|c| c == 'é'));
    }

    #[test]
    fn node_markers_name_the_node_of_the_records_after_them() {
        let mut file = file_header("");
        file.extend_from_slice(&node_marker("127.0.0.1:1"));
        file.extend_from_slice(&record(&raw(), &[]));
        file.extend_from_slice(&node_marker("127.0.0.1:2"));
        file.extend_from_slice(&record(&raw(), &[]));
        let outcome = read(&file);
        assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
        let nodes: Vec<&str> = outcome.events.iter().map(|e| e.node.as_str()).collect();
        assert_eq!(nodes, ["127.0.0.1:1", "127.0.0.1:2"]);
    }

    #[test]
    fn a_damaged_file_is_read_up_to_the_damage() {
        let mut file = file_header("127.0.0.1:1");
        let first = record(&raw(), &[]);
        file.extend_from_slice(&first);
        file.extend_from_slice(&record(&raw(), &[("task", "t")]));
        let damaged_at = file.len() - 5;
        let outcome = read(&file[..damaged_at]);
        assert_eq!(outcome.events.len(), 1);
        assert!(
            outcome.warnings[0].contains(&format!("byte {}", file_header("127.0.0.1:1").len() + first.len()))
        );
        // Garbage never panics.
        for cut in 0..file.len() {
            let _ = read(&file[..cut]);
        }
        let mut garbage = file.clone();
        for byte in garbage.iter_mut().skip(MAGIC.len()) {
            *byte = byte.wrapping_mul(31).wrapping_add(7);
        }
        let _ = read(&garbage);
    }
}
