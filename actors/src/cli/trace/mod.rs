//! `keel trace`: reads message traces (files, flight-recorder dumps, running nodes'
//! `/trace/recent` and, with `--live`, `/trace/stream`), merges them onto one clock
//! ([`merge`]: offsets estimated from send/receipt pairs, NTP-style), selects (all,
//! `--follow`'s causal tree, or `keel trace task`'s timeline), filters, and renders
//! (terminal sequence diagram, Mermaid, Perfetto, JSON lines).
//!
//! ```text
//! input ─> merge ─> select (follow | timeline) ─> filter ─> render
//! ```
//! Everything after the input is pure: tests call [`merge::merge`],
//! [`timeline::timeline`], [`causal::follow`] and the `render_*` functions on
//! constructed events, and [`run`] on files.

pub mod causal;
pub mod filter;
pub mod input;
pub mod labels;
pub mod live;
pub mod merge;
pub mod messages;
pub mod options;
pub mod render;
pub mod render_mermaid;
pub mod render_perfetto;
pub mod render_terminal;
#[cfg(test)]
mod testing;
pub mod timeline;

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use keel_kernel::trace::{MessageId, TraceEvent};

pub use causal::{follow, CausalTree};
pub use filter::Filter;
pub use merge::{merge, merge_with_clocks, ClockReport, Merged};
pub use options::{TraceArgs, TraceCommand};
pub use render::{render, View};
pub use timeline::{timeline, Timeline};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A sequence diagram for the terminal (and the timeline or tree above it).
    Terminal,
    /// A Mermaid `sequenceDiagram`.
    Mermaid,
    /// Chrome trace-event JSON for Perfetto or chrome://tracing.
    Perfetto,
    /// The merged events as JSON lines.
    Json,
}

/// What to show of the merged events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Everything (that passes the filters).
    All,
    /// The causal tree of one message.
    Follow(MessageId),
    /// One task's life.
    Task(String),
}

/// What `keel trace` does, flags parsed and times resolved.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// Trace files and dumps (`-`: standard input).
    pub files: Vec<PathBuf>,
    /// Running nodes, `host:port`.
    pub nodes: Vec<String>,
    /// Keep streaming from the nodes.
    pub live: bool,
    /// Stop streaming after this long.
    pub live_for: Option<Duration>,
    /// The most events asked of each node.
    pub limit: usize,
    /// What to show.
    pub selection: Selection,
    /// Which events to show.
    pub filter: Filter,
    /// How.
    pub format: Format,
    /// The terminal's width.
    pub width: usize,
}

impl TraceOptions {
    /// Options reading `files`, showing everything on an 80-column terminal.
    pub fn files(files: Vec<PathBuf>) -> TraceOptions {
        TraceOptions {
            files,
            nodes: Vec::new(),
            live: false,
            live_for: None,
            limit: 100_000,
            selection: Selection::All,
            filter: Filter::default(),
            format: Format::Terminal,
            width: 80,
        }
    }
}

/// A malformed option or filter, or one a node refused: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs `keel trace`: reads, merges, selects, filters and renders to `out`; warnings
/// (damaged files, unreachable nodes) go to stderr. With `live`, streams until
/// `live_for` passes or the process is interrupted.
pub fn run(options: &TraceOptions, out: &mut impl Write) -> anyhow::Result<()> {
    if options.live {
        return live::run(options, out);
    }
    let loaded = input::load(options)?;
    for warning in &loaded.warnings {
        eprintln!("keel trace: {warning}");
    }
    let merged = merge_with_clocks(loaded.events);
    let view = select(&options.selection, merged.events, &options.filter);
    render(&view, &merged.clocks, options.format, options.width, out)?;
    out.flush()?;
    Ok(())
}

/// What is shown of merged `events`: the selection is made on all of them (a tree
/// or a timeline crosses every filter), then the filters narrow what is shown.
pub fn select(selection: &Selection, events: Vec<TraceEvent>, filter: &Filter) -> View {
    match selection {
        Selection::All => View::Events(filter.apply(events)),
        Selection::Follow(id) => {
            let tree = follow(&events, *id);
            let shown = filter.apply(tree.events(&events));
            View::Tree(tree, shown)
        }
        Selection::Task(task) => {
            let mut story = timeline(&events, task);
            if !filter.is_empty() {
                story.events = filter.apply(std::mem::take(&mut story.events));
                let kept: HashSet<MessageId> = story.events.iter().map(|e| e.id).collect();
                story.hops.retain(|h| kept.contains(&h.message.id));
            }
            View::Timeline(story)
        }
    }
}

/// `keel trace` from the command line: the exit status (0 done, even when nothing
/// matched; 1 no input could be read; 2 a malformed option or filter), having
/// printed any error on stderr.
pub fn main(args: TraceArgs) -> i32 {
    if let Some(options::TraceCommand::Dump { node, out }) = &args.command {
        return match dump(&node.to_string(), out.clone()) {
            Ok(path) => {
                println!("{}", path.display());
                0
            }
            Err(e) => {
                eprintln!("keel trace dump: {e:#}");
                1
            }
        };
    }
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let options = match args.into_options(now_us) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("keel trace: {e}");
            return 2;
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match run(&options, &mut out) {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("keel trace: {e:#}");
            2
        }
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("keel trace: {e:#}");
            1
        }
    }
}

/// `keel trace dump`: writes `node`'s flight recorder to `out` (or
/// `keel-flight-HOST-PORT.jsonl`); returns the path.
pub fn dump(node: &str, out: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let body = input::fetch(node, "/trace/recent?limit=10000000")?;
    let path =
        out.unwrap_or_else(|| format!("keel-flight-{}.jsonl", node.replace([':', '[', ']'], "-")).into());
    std::fs::write(&path, &body).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Output cut short by the reader (`keel trace ... | head`) is not a failure.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::trace::testing::task_story;

    fn run_on_files(options: &TraceOptions) -> String {
        let mut out = Vec::new();
        run(options, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Writes each node's events to a file of its own, as each node would.
    fn files_per_node(dir: &std::path::Path, events: &[TraceEvent]) -> Vec<PathBuf> {
        let mut nodes: Vec<&str> = events.iter().map(|e| e.node.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
            .iter()
            .map(|node| {
                let path = dir.join(format!("{}.jsonl", node.replace(':', "_")));
                let text: String =
                    events.iter().filter(|e| e.node == *node).map(|e| e.to_json_line()).collect();
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect()
    }

    #[test]
    fn run_reads_files_of_several_nodes_and_renders_each_format() {
        let dir = tempfile::tempdir().unwrap();
        let (cluster, run_task) = task_story(&[("10.0.0.2:5051", -3_000), ("10.0.0.9:7000", 6_000)]);
        let files = files_per_node(dir.path(), &cluster.per_node());
        assert_eq!(files.len(), 3);
        let mut options = TraceOptions::files(files);
        options.selection = Selection::Task("t1".into());
        let terminal = run_on_files(&options);
        assert!(
            terminal.contains("10.3ms from the accept to the acknowledged terminal update"),
            "{terminal}"
        );
        assert!(terminal.contains("clock 10.0.0.2:5051: -3000us vs 10.0.0.1:5050 ±200us"), "{terminal}");
        options.format = Format::Mermaid;
        let mermaid = run_on_files(&options);
        assert_eq!(mermaid.lines().filter(|l| l.contains("->>")).count(), 10, "{mermaid}");
        options.format = Format::Perfetto;
        let perfetto: serde_json::Value = serde_json::from_str(&run_on_files(&options)).unwrap();
        let flows = perfetto.as_array().unwrap().iter().filter(|e| e["ph"] == "s").count();
        assert_eq!(flows, 10);
        options.format = Format::Json;
        options.selection = Selection::Follow(MessageId(run_task));
        let json = run_on_files(&options);
        assert_eq!(json.lines().count(), 14);
        // The JSON output reads back: already merged, it needs no correction.
        let back = keel_kernel::trace::read_json_lines(json.as_bytes());
        assert!(back.warnings.is_empty());
        assert!(merge_with_clocks(back.events).clocks.offsets.iter().all(|o| o.offset_us == 0));
    }

    #[test]
    fn unknown_ids_and_tasks_give_empty_results() {
        let dir = tempfile::tempdir().unwrap();
        let (cluster, _) = task_story(&[]);
        let mut options = TraceOptions::files(files_per_node(dir.path(), &cluster.events));
        options.selection = Selection::Task("nope".into());
        assert_eq!(run_on_files(&options), "no message about task nope in these traces\n");
        options.selection = Selection::Follow(MessageId(12345));
        options.format = Format::Json;
        assert_eq!(run_on_files(&options), "");
        options.selection = Selection::All;
        options.filter.task = Some("nope".into());
        options.format = Format::Perfetto;
        assert_eq!(run_on_files(&options), "[\n\n]\n");
    }

    #[test]
    fn filters_narrow_a_timeline_to_the_hops_they_keep() {
        let (cluster, _) = task_story(&[]);
        let filter = Filter { kinds: vec!["RunTask".into(), "Accept".into()], ..Filter::default() };
        let View::Timeline(story) = select(&Selection::Task("t1".into()), merge(cluster.events), &filter)
        else {
            panic!("a timeline")
        };
        assert_eq!(story.hops.iter().map(|h| h.label.as_str()).collect::<Vec<_>>(), vec!["accept", "launch"]);
        assert_eq!(story.total_us(), Some(10_300), "the total is the whole story's");
    }
}
