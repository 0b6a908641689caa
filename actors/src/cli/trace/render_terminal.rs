//! The terminal rendering: a sequence diagram with one column per actor (in order of
//! first appearance) and one row per message, an arrow from sender to receiver with
//! the kind and latency, the time since the first message (ms) in the margin; a
//! dropped or faulted message's arrow ends in `X` with a note row under it, one with
//! no recorded receipt in `?`. Everything fits the given width (80 by default): kinds
//! and actors are abbreviated (`RunTask`, `master@:5050`, or `P1`... with a legend),
//! and with too many actors for columns the rows become a list. Also: the causal tree
//! of `--follow` and the task timeline as indented lists.

use std::collections::HashMap;
use std::io::{self, Write};

use keel_kernel::trace::{EventKind, TraceEvent};

use super::causal::CausalTree;
use super::labels::{duration, fit_kind, rfc3339, short_kind, since_start, tiny_kind, truncate, ActorLabels};
use super::merge::ClockReport;
use super::messages::{group, Message, Outcome};
use super::timeline::Timeline;

/// The time margin: 9 characters and a space.
const MARGIN: usize = 10;
/// The narrowest column worth drawing.
const MIN_COLUMN: usize = 8;
/// The widest column (wider ones only spread the diagram).
const MAX_COLUMN: usize = 26;

/// The narrowest width rendered (smaller ones are taken as this).
pub const MIN_WIDTH: usize = 40;

/// The actors of `messages`, in order of first appearance.
fn actors(messages: &[Message]) -> Vec<String> {
    let mut actors: Vec<String> = Vec::new();
    for m in messages {
        for actor in [&m.from, &m.to] {
            if !actors.contains(actor) {
                actors.push(actor.clone());
            }
        }
    }
    actors
}

/// The outcome of a message in a few characters: latency, `DROPPED`, `FAULT`, `no receipt`.
fn outcome_text(m: &Message) -> String {
    let mut text = match m.outcome() {
        Outcome::Delivered => m.latency_us().map_or_else(|| "received".to_string(), duration),
        Outcome::Dropped => "DROPPED".to_string(),
        Outcome::Faulted => "FAULT".to_string(),
        Outcome::Unknown => "no receipt".to_string(),
    };
    if m.receipts > 1 {
        text.push_str(&format!(" x{}", m.receipts));
    }
    text
}

/// What befell a message, for the note row under its arrow.
fn mishap_notes(m: &Message) -> Vec<String> {
    let mut notes: Vec<String> = m
        .mishaps
        .iter()
        .map(|mishap| {
            let what = if mishap.event == EventKind::Drop { "dropped" } else { "fault" };
            let reason = mishap.reason.as_deref().map_or(String::new(), |r| format!(": {r}"));
            format!("{what} at {}{reason}", mishap.node)
        })
        .collect();
    if m.receipts > 1 {
        notes.push(format!("received {} times", m.receipts));
    }
    notes
}

/// The diagram of `events` (merged), then the legend.
pub fn render_diagram(events: &[TraceEvent], width: usize, out: &mut impl Write) -> io::Result<()> {
    let width = width.max(MIN_WIDTH);
    let messages = group(events);
    let Some(first) = messages.first() else {
        return writeln!(out, "no matching events");
    };
    let t0 = first.at_us();
    let actors = actors(&messages);
    let column = ((width - MARGIN) / actors.len()).min(MAX_COLUMN);
    if column < MIN_COLUMN {
        return render_list(&messages, &actors, t0, width, out);
    }
    let labels = ActorLabels::new(&actors, column - 1);
    let centre: HashMap<&str, usize> =
        actors.iter().enumerate().map(|(i, a)| (a.as_str(), MARGIN + i * column + column / 2)).collect();
    let lifelines = || {
        let mut row = vec![' '; width];
        for x in centre.values() {
            row[*x] = '|';
        }
        row
    };
    let mut header = vec![' '; width];
    put(&mut header, 0, &format!("{:>9}", "ms"), MARGIN);
    for (i, actor) in actors.iter().enumerate() {
        let label = labels.label(actor);
        let len = label.chars().count();
        let start = (MARGIN + i * column + column / 2).saturating_sub(len / 2).max(MARGIN + i * column);
        put(&mut header, start, label, column);
    }
    writeln!(out, "{}", line(&header))?;
    writeln!(out, "{}", line(&lifelines()))?;
    for m in &messages {
        let mut row = lifelines();
        put(&mut row, 0, &format!("{:>9}", since_start(m.at_us().saturating_sub(t0))), 9);
        let (a, b) = (centre[m.from.as_str()], centre[m.to.as_str()]);
        draw_arrow(&mut row, a, b, m);
        writeln!(out, "{}", line(&row))?;
        for note in mishap_notes(m) {
            let mut row = lifelines();
            let start = a.min(b) + 2;
            let text = format!("^ {note}");
            let start = if start + text.chars().count() <= width { start } else { MARGIN };
            put(&mut row, start, &text, width - start);
            writeln!(out, "{}", line(&row))?;
        }
    }
    for entry in labels.legend() {
        writeln!(out, "{}", truncate(&entry, width))?;
    }
    Ok(())
}

/// Draws the arrow of `m` from column `a` to column `b` on `row`.
fn draw_arrow(row: &mut [char], a: usize, b: usize, m: &Message) {
    let head = match m.outcome() {
        Outcome::Delivered => None,
        Outcome::Dropped | Outcome::Faulted => Some('X'),
        Outcome::Unknown => Some('?'),
    };
    // The kind with its latency if that fits, in its short or tiny form; else the
    // kind alone, cut if it must be.
    let label = |room: usize| {
        if let Some(latency) = m.latency_us() {
            let latency = duration(latency);
            for kind in [short_kind(&m.kind), tiny_kind(&m.kind)] {
                let text = format!("{kind} {latency}");
                if text.chars().count() <= room {
                    return text;
                }
            }
        }
        fit_kind(&m.kind, room)
    };
    if a == b {
        // To itself: a loop mark and the label, up to the row's end.
        let room = row.len().saturating_sub(a + 3);
        row[a + 1] = '<';
        put(row, a + 3, &label(room), room);
        return;
    }
    let (left, right) = (a.min(b), a.max(b));
    for cell in row.iter_mut().take(right).skip(left + 1) {
        *cell = '-';
    }
    if a < b {
        row[b - 1] = head.unwrap_or('>');
        let room = (b - a).saturating_sub(4);
        put(row, a + 2, &label(room), room);
    } else {
        row[b + 1] = head.unwrap_or('<');
        let room = (a - b).saturating_sub(4);
        put(row, b + 3, &label(room), room);
    }
}

/// With too many actors for columns: one line per message.
fn render_list(
    messages: &[Message],
    actors: &[String],
    t0: u64,
    width: usize,
    out: &mut impl Write,
) -> io::Result<()> {
    let labels = ActorLabels::new(actors, 16);
    writeln!(out, "{:>9} message", "ms")?;
    for m in messages {
        let text = format!(
            "{:>9} {} -> {} {} {}",
            since_start(m.at_us().saturating_sub(t0)),
            labels.label(&m.from),
            labels.label(&m.to),
            short_kind(&m.kind),
            outcome_text(m)
        );
        writeln!(out, "{}", truncate(&text, width))?;
        for note in mishap_notes(m) {
            writeln!(out, "{}", truncate(&format!("{:>9}   ^ {note}", ""), width))?;
        }
    }
    for entry in labels.legend() {
        writeln!(out, "{}", truncate(&entry, width))?;
    }
    Ok(())
}

/// A heading for a listing: how many messages over what span.
pub fn render_heading(events: &[TraceEvent], width: usize, out: &mut impl Write) -> io::Result<()> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(()) };
    let mut nodes: Vec<&str> = events.iter().map(|e| e.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let text = format!(
        "{} events on {} node{} from {} over {}",
        events.len(),
        nodes.len(),
        if nodes.len() == 1 { "" } else { "s" },
        rfc3339(first.time_us),
        duration(last.time_us - first.time_us)
    );
    writeln!(out, "{}", truncate(&text, width.max(MIN_WIDTH)))
}

/// The clock corrections, one line each.
pub fn render_clocks(clocks: &ClockReport, width: usize, out: &mut impl Write) -> io::Result<()> {
    for line in clocks.describe() {
        writeln!(out, "{}", truncate(&line, width.max(MIN_WIDTH)))?;
    }
    Ok(())
}

/// The causal tree as an indented list, then its diagram.
pub fn render_tree(
    tree: &CausalTree,
    events: &[TraceEvent],
    width: usize,
    out: &mut impl Write,
) -> io::Result<()> {
    let width = width.max(MIN_WIDTH);
    if tree.rows.is_empty() {
        return writeln!(out, "message {} is in no trace", tree.target);
    }
    let messages: HashMap<_, _> = group(events).into_iter().map(|m| (m.id, m)).collect();
    let listed: Vec<Message> = tree.rows.iter().filter_map(|r| messages.get(&r.id).cloned()).collect();
    let labels = ActorLabels::new(&actors(&listed), 16);
    let t0 = listed.iter().map(Message::at_us).min().unwrap_or(0);
    let heading = format!(
        "causal tree of {}: {} ancestors, {} descendants",
        tree.target,
        tree.ancestors.len(),
        tree.descendants.len()
    );
    writeln!(out, "{}", truncate(&heading, width))?;
    for row in &tree.rows {
        // One column per level; past 24 levels the depth is written out.
        let indent = " ".repeat(row.depth.min(24));
        let branch = match row.depth {
            0 => String::new(),
            1..=24 => "`- ".to_string(),
            deep => format!("`{deep}- "),
        };
        let marker = if row.followed { " <=" } else { "" };
        let text = match messages.get(&row.id) {
            Some(m) => format!(
                "{:>9} {indent}{branch}{} {} -> {} {}{marker}",
                since_start(m.at_us().saturating_sub(t0)),
                fit_kind(&m.kind, 14),
                labels.label(&m.from),
                labels.label(&m.to),
                outcome_text(m)
            ),
            None => format!("{:>9} {indent}{branch}{} (not in these traces){marker}", "", row.id),
        };
        writeln!(out, "{}", truncate(&text, width))?;
    }
    writeln!(out)?;
    render_diagram(events, width, out)
}

/// The task's timeline as a table of hops, a summary, then its diagram.
pub fn render_timeline(timeline: &Timeline, width: usize, out: &mut impl Write) -> io::Result<()> {
    let width = width.max(MIN_WIDTH);
    if timeline.hops.is_empty() {
        for note in &timeline.notes {
            writeln!(out, "{}", truncate(note, width))?;
        }
        return Ok(());
    }
    let about: Vec<String> = [("framework", &timeline.framework), ("agent", &timeline.agent)]
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name} {v}")))
        .collect();
    let about = if about.is_empty() { String::new() } else { format!(" ({})", about.join(", ")) };
    let state = timeline.terminal_state.as_deref().map_or(String::new(), |s| format!(": {s}"));
    writeln!(out, "{}", truncate(&format!("task {}{about}{state}", timeline.task), width))?;
    let total = match timeline.total_us() {
        Some(total) => format!("{} from the accept to the acknowledged terminal update", duration(total)),
        None => "total unknown (see the notes)".to_string(),
    };
    writeln!(out, "{}", truncate(&total, width))?;
    let mut counts = format!(
        "{} hops, {} retries, {} dropped, {} faulted",
        timeline.hops.len(),
        timeline.retries,
        timeline.drops,
        timeline.faults
    );
    if let Some(launch) = timeline.launch_to_first_update_us {
        counts.push_str(&format!("; container up {} after the RunTask", duration(launch)));
    }
    writeln!(out, "{}", truncate(&counts, width))?;
    writeln!(out)?;
    let hop_messages: Vec<Message> = timeline.hops.iter().map(|h| h.message.clone()).collect();
    let labels = ActorLabels::new(&actors(&hop_messages), 12);
    let t0 = timeline.start_us.unwrap_or(0);
    let heading = format!("{:>9} {:<16} {:<8} {:<28} {}", "ms", "hop", "kind", "from -> to", "latency");
    writeln!(out, "{}", truncate(&heading, width))?;
    for hop in &timeline.hops {
        let m = &hop.message;
        let route = format!("{} -> {}", labels.label(&m.from), labels.label(&m.to));
        let mut text = format!(
            "{:>9} {:<16} {:<8} {:<28} {}",
            since_start(m.at_us().saturating_sub(t0)),
            truncate(&hop.label, 16),
            fit_kind(&m.kind, 8),
            truncate(&route, 28),
            outcome_text(m)
        );
        if let Some(state) = hop.state() {
            text.push_str(&format!(" {}", state.strip_prefix("TASK_").unwrap_or(state)));
        }
        writeln!(out, "{}", truncate(&text, width))?;
        for note in mishap_notes(m) {
            writeln!(out, "{}", truncate(&format!("{:>9}   ^ {note}", ""), width))?;
        }
    }
    for note in &timeline.notes {
        writeln!(out, "{}", truncate(&format!("note: {note}"), width))?;
    }
    for entry in labels.legend() {
        writeln!(out, "{}", truncate(&entry, width))?;
    }
    writeln!(out)?;
    render_diagram(&timeline.events, width, out)
}

/// One line per event, as `--live` prints them: time, event, kind, sender and receiver.
pub fn live_line(event: &TraceEvent, latency_us: Option<u64>, width: usize) -> String {
    let time = rfc3339(event.time_us);
    let clock = time.get(11..26).unwrap_or(&time);
    let mut text = format!(
        "{clock} {:<5} {} {} -> {}",
        event.event.name(),
        short_kind(&event.kind),
        event.from,
        event.to
    );
    if let Some(latency) = latency_us {
        text.push_str(&format!(" {}", duration(latency)));
    }
    if let Some(reason) = &event.reason {
        text.push_str(&format!(" ({reason})"));
    }
    truncate(&text, width.max(MIN_WIDTH))
}

/// Writes `text` on `row` from `start`, at most `room` characters and not past the end.
fn put(row: &mut [char], start: usize, text: &str, room: usize) {
    for (i, c) in text.chars().take(room).enumerate() {
        if let Some(cell) = row.get_mut(start + i) {
            *cell = c;
        }
    }
}

fn line(row: &[char]) -> String {
    row.iter().collect::<String>().trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use keel_kernel::trace::MessageId;

    use super::*;
    use crate::cli::trace::causal::follow;
    use crate::cli::trace::merge::merge;
    use crate::cli::trace::testing::{event, task_story};
    use crate::cli::trace::timeline::timeline;

    fn text(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        render(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn assert_fits(text: &str, width: usize) {
        for line in text.lines() {
            assert!(line.chars().count() <= width, "{} chars: {line:?}", line.chars().count());
        }
    }

    #[test]
    fn the_diagram_has_a_column_per_actor_and_an_arrow_per_message_within_80_columns() {
        let (cluster, _) = task_story(&[("10.0.0.2:5051", 1_000)]);
        let events = merge(cluster.events.clone());
        let diagram = text(|out| render_diagram(&events, 80, out));
        assert_fits(&diagram, 80);
        let lines: Vec<&str> = diagram.lines().collect();
        // Full UPIDs fit three columns: no legend needed.
        assert!(
            lines[0].contains("master@10.0.0.1:5050") && lines[0].contains("agent@10.0.0.2:5051"),
            "{diagram}"
        );
        assert!(!diagram.contains(" = "), "{diagram}");
        assert!(diagram.contains("RunTask 200us"), "{diagram}");
        assert!(diagram.contains("Accept 300us"), "{diagram}");
        // 11 messages, 11 arrows.
        assert_eq!(lines.iter().filter(|l| l.contains('>') || l.contains('<')).count(), 11, "{diagram}");
    }

    #[test]
    fn drops_faults_and_missing_receipts_are_marked() {
        let mut dropped = event(EventKind::Drop, 20, "a@h:1", "b@h:2", "keel.agent.RunTask", 2);
        dropped.reason = Some("unreachable".into());
        let events = vec![
            event(EventKind::Send, 10, "a@h:1", "b@h:2", "keel.agent.Ping", 1),
            event(EventKind::Send, 20, "a@h:1", "b@h:2", "keel.agent.RunTask", 2),
            dropped,
            event(EventKind::Send, 30, "b@h:2", "a@h:1", "keel.agent.Pong", 3),
            event(EventKind::Recv, 35, "b@h:2", "a@h:1", "keel.agent.Pong", 3),
        ];
        let diagram = text(|out| render_diagram(&events, 80, out));
        assert_fits(&diagram, 80);
        assert!(diagram.contains("?"), "no receipt of the Ping: {diagram}");
        assert!(diagram.contains("X"), "the RunTask's drop: {diagram}");
        assert!(diagram.contains("^ dropped at h:1: unreachable"), "{diagram}");
        assert!(diagram.contains("<-"), "the Pong goes left: {diagram}");
    }

    #[test]
    fn many_actors_or_long_names_still_fit() {
        let mut events = Vec::new();
        for i in 0..12u64 {
            let from = format!("a-very-long-process-name-{i}@some.long.host.example.com:{}", 5000 + i);
            let to = format!("another-long-name@some.long.host.example.com:{}", 6000 + i);
            events.push(event(
                EventKind::Send,
                i * 10,
                &from,
                &to,
                "keel.common.StatusUpdateAcknowledgement",
                i + 1,
            ));
        }
        for width in [80, 40] {
            let listing = text(|out| render_diagram(&events, width, out));
            assert_fits(&listing, width);
            assert!(listing.contains("P1 -> P2"), "{listing}");
        }
        let few = &events[..3];
        let diagram = text(|out| render_diagram(few, 80, out));
        assert_fits(&diagram, 80);
        assert!(diagram.contains("P1 = a-very-long-process-name-0@"), "{diagram}");
    }

    #[test]
    fn the_tree_and_the_timeline_fit_too() {
        let (cluster, run) = task_story(&[("10.0.0.9:7000", -7_000)]);
        let events = merge(cluster.events.clone());
        let tree = follow(&events, MessageId(run));
        let rendered = text(|out| render_tree(&tree, &tree.events(&events), 80, out));
        assert_fits(&rendered, 80);
        assert!(
            rendered.contains("   1.500   `- RunTask master@:5050 -> agent@:5051 200us <="),
            "{rendered}"
        );
        let story = timeline(&events, "t1");
        let rendered = text(|out| render_timeline(&story, 80, out));
        assert_fits(&rendered, 80);
        assert!(
            rendered.contains("10.3ms from the accept to the acknowledged terminal update"),
            "{rendered}"
        );
        assert!(rendered.contains("ack 2 fwd"), "{rendered}");
        assert!(
            rendered.contains("update 2         Update   agent@:5051 -> master@:5050  200us FINISHED"),
            "{rendered}"
        );
        assert!(rendered.contains("TASK_FINISHED"), "{rendered}");
    }

    #[test]
    fn nothing_to_draw_says_so() {
        assert_eq!(text(|out| render_diagram(&[], 80, out)), "no matching events\n");
    }
}
