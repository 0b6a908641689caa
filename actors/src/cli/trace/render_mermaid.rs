//! The Mermaid rendering: a `sequenceDiagram` with one participant per actor (`P1`,
//! `P2`... aliased to their UPIDs, in order of first appearance) and one arrow per
//! message: `->>` received, `-x` dropped or lost to a fault (with the reason), `--)`
//! no receipt recorded. The text is the hop's label when given (the task timeline),
//! the kind without its package, and the latency.

use std::collections::HashMap;
use std::io::{self, Write};

use keel_kernel::trace::{EventKind, MessageId, TraceEvent};

use super::labels::{duration, short_kind};
use super::messages::{group, Message, Outcome};

/// Mermaid reads `;` as a statement's end and `#` as an entity's start.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ';' => ',',
            '#' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// The diagram of `events` (merged); `hop_labels` name some messages.
pub fn render_mermaid(
    events: &[TraceEvent],
    hop_labels: &HashMap<MessageId, String>,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut writer = MermaidWriter::default();
    writer.begin(out)?;
    let messages = group(events);
    for m in &messages {
        writer.declare(&m.from, out)?;
        writer.declare(&m.to, out)?;
    }
    for m in &messages {
        writer.arrow(m, hop_labels.get(&m.id).map(String::as_str), out)?;
    }
    Ok(())
}

/// Writes a diagram a message at a time (`--live` draws each message when its
/// receipt, drop or fault arrives).
#[derive(Debug, Default)]
pub struct MermaidWriter {
    participants: HashMap<String, String>,
}

impl MermaidWriter {
    /// The first line.
    pub fn begin(&mut self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "sequenceDiagram")
    }

    fn declare(&mut self, actor: &str, out: &mut impl Write) -> io::Result<String> {
        if let Some(id) = self.participants.get(actor) {
            return Ok(id.clone());
        }
        let id = format!("P{}", self.participants.len() + 1);
        writeln!(out, "    participant {id} as {}", clean(actor))?;
        self.participants.insert(actor.to_string(), id.clone());
        Ok(id)
    }

    /// One message's arrow (declaring its participants first if new).
    pub fn arrow(&mut self, m: &Message, label: Option<&str>, out: &mut impl Write) -> io::Result<()> {
        let from = self.declare(&m.from, out)?;
        let to = self.declare(&m.to, out)?;
        let kind = short_kind(&m.kind);
        let mut text = match label {
            Some(label) if label != kind => format!("{label}: {kind}"),
            _ => kind.to_string(),
        };
        let arrow = match m.outcome() {
            Outcome::Delivered => {
                if let Some(latency) = m.latency_us() {
                    text.push_str(&format!(" {}", duration(latency)));
                }
                "->>"
            }
            Outcome::Dropped | Outcome::Faulted => {
                for mishap in &m.mishaps {
                    let what = if mishap.event == EventKind::Drop { "dropped" } else { "fault" };
                    text.push_str(&format!(" {what}"));
                    if let Some(reason) = &mishap.reason {
                        text.push_str(&format!(" ({reason})"));
                    }
                }
                "-x"
            }
            Outcome::Unknown => {
                text.push_str(" (no receipt)");
                "--)"
            }
        };
        writeln!(out, "    {from}{arrow}{to}: {}", clean(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::trace::merge::merge;
    use crate::cli::trace::testing::{event, task_story};
    use crate::cli::trace::timeline::timeline;

    fn render(events: &[TraceEvent], labels: &HashMap<MessageId, String>) -> String {
        let mut out = Vec::new();
        render_mermaid(events, labels, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every line is one Mermaid statement of the forms written here.
    fn assert_mermaid_syntax(text: &str) {
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("sequenceDiagram"));
        let mut declared = Vec::new();
        for line in lines {
            let body = line.strip_prefix("    ").unwrap_or_else(|| panic!("not indented: {line:?}"));
            if let Some(rest) = body.strip_prefix("participant ") {
                let (id, alias) = rest.split_once(" as ").expect("participant ID as ALIAS");
                assert!(id.starts_with('P') && id[1..].parse::<u32>().is_ok(), "{line:?}");
                assert!(!alias.is_empty() && !alias.contains(';') && !alias.contains('#'), "{line:?}");
                declared.push(id.to_string());
                continue;
            }
            let (arrow, text) = body.split_once(": ").unwrap_or_else(|| panic!("no message text: {line:?}"));
            assert!(!text.contains(';') && !text.contains('#'), "{line:?}");
            let (from, rest) = arrow.split_at(arrow.find(['-']).expect("an arrow"));
            let (op, to) = ["->>", "-x", "--)"]
                .iter()
                .find_map(|op| rest.strip_prefix(op).map(|to| (*op, to)))
                .unwrap_or_else(|| panic!("unknown arrow in {line:?}"));
            assert!(!op.is_empty());
            assert!(declared.iter().any(|d| d == from) && declared.iter().any(|d| d == to), "{line:?}");
        }
    }

    #[test]
    fn a_sequence_diagram_with_an_arrow_per_message() {
        let (cluster, _) = task_story(&[("10.0.0.2:5051", 3_000)]);
        let events = merge(cluster.events.clone());
        let text = render(&events, &HashMap::new());
        assert_mermaid_syntax(&text);
        assert!(text.contains("    participant P1 as master@10.0.0.1:5050\n"), "{text}");
        assert!(text.contains("P1->>P3: RunTask 200us"), "{text}");
        assert_eq!(text.lines().filter(|l| l.contains("->>")).count(), 11);
    }

    #[test]
    fn timeline_hops_are_labelled_and_drops_crossed() {
        let (cluster, _) = task_story(&[]);
        let events = merge(cluster.events.clone());
        let story = timeline(&events, "t1");
        let labels: HashMap<MessageId, String> =
            story.hops.iter().map(|h| (h.message.id, h.label.clone())).collect();
        let text = render(&story.events, &labels);
        assert_mermaid_syntax(&text);
        assert!(text.contains(": accept: Accept 300us"), "{text}");
        assert!(text.contains(": ack 2 fwd: StatusUpdateAcknowledgement 200us"), "{text}");
        let mut dropped = event(EventKind::Drop, 5, "a@h:1", "b@h:2", "k.X", 1);
        dropped.reason = Some("full; mailbox #1".into());
        let text = render(&[event(EventKind::Send, 4, "a@h:1", "b@h:2", "k.X", 1), dropped], &HashMap::new());
        assert_mermaid_syntax(&text);
        assert!(text.contains("P1-xP2: X dropped (full, mailbox  1)"), "{text}");
        let text = render(&[event(EventKind::Send, 4, "a@h:1", "a@h:1", "k.Y", 2)], &HashMap::new());
        assert_mermaid_syntax(&text);
        assert!(text.contains("P1--)P1: Y (no receipt)"), "{text}");
    }
}
