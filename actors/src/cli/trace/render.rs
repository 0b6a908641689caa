//! Picks the renderer for a format and a view (events, a causal tree, a timeline),
//! and writes `--format json`: the merged events, on the reference clock, as JSON
//! lines (which `keel trace` reads back).

use std::collections::HashMap;
use std::io::Write;

use keel_kernel::trace::{MessageId, TraceEvent};

use super::causal::CausalTree;
use super::merge::ClockReport;
use super::render_mermaid::render_mermaid;
use super::render_perfetto::render_perfetto;
use super::render_terminal::{render_clocks, render_diagram, render_heading, render_timeline, render_tree};
use super::timeline::Timeline;
use super::Format;

/// What is shown.
#[derive(Debug, Clone)]
pub enum View {
    /// Merged, filtered events.
    Events(Vec<TraceEvent>),
    /// One message's causal tree, and the events of its messages.
    Tree(CausalTree, Vec<TraceEvent>),
    /// One task's life.
    Timeline(Timeline),
}

impl View {
    /// The events drawn.
    pub fn events(&self) -> &[TraceEvent] {
        match self {
            View::Events(events) | View::Tree(_, events) => events,
            View::Timeline(timeline) => &timeline.events,
        }
    }
}

/// Writes `view` in `format` (terminal: `width` columns at most, with the clock
/// corrections after it).
pub fn render(
    view: &View,
    clocks: &ClockReport,
    format: Format,
    width: usize,
    out: &mut impl Write,
) -> std::io::Result<()> {
    match format {
        Format::Terminal => {
            match view {
                View::Events(events) => {
                    render_heading(events, width, out)?;
                    render_diagram(events, width, out)?;
                }
                View::Tree(tree, events) => render_tree(tree, events, width, out)?,
                View::Timeline(timeline) => render_timeline(timeline, width, out)?,
            }
            if view.events().is_empty() {
                return Ok(());
            }
            render_clocks(clocks, width, out)
        }
        Format::Mermaid => {
            let labels: HashMap<MessageId, String> = match view {
                View::Timeline(timeline) => {
                    timeline.hops.iter().map(|h| (h.message.id, h.label.clone())).collect()
                }
                _ => HashMap::new(),
            };
            render_mermaid(view.events(), &labels, out)
        }
        Format::Perfetto => render_perfetto(view.events(), out),
        Format::Json => render_json(view.events(), out),
    }
}

/// The events as JSON lines.
pub fn render_json(events: &[TraceEvent], out: &mut impl Write) -> std::io::Result<()> {
    for event in events {
        out.write_all(event.to_json_line().as_bytes())?;
    }
    Ok(())
}
