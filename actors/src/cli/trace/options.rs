//! `keel trace`'s flags (clap), checked and turned into [`TraceOptions`]. A malformed
//! value is refused by clap itself (exit status 2, with the reason).

use std::path::PathBuf;
use std::time::Duration;

use keel_kernel::trace::MessageId;
use keel_kernel::NodeAddr;

use super::filter::{
    parse_actor, parse_duration_us, parse_id, parse_kinds, parse_time_bound, ActorPattern, Filter, TimeBound,
};
use super::{Format, Selection, TraceOptions, UsageError};

/// The long help's explanation of inputs, clocks, filters and exit statuses.
const HELP: &str = "\
Inputs: trace files (`keel ... --trace FILE`) and flight-recorder dumps, JSON lines
or binary (a damaged file is read up to the damage, with a warning naming the
offset), `-` for standard input; and running nodes (--node HOST:PORT, repeatable),
whose /trace/recent is read. With --live, each node's /trace/stream is followed too
and merged as events arrive (held 0.5 s to be put in order), until --live-for
passes or the command is interrupted.

Clocks: each node stamps its events with its own clock. For two nodes A and B, the
smallest (receipt time - send time) over A's messages to B, d_AB, and over B's to A,
d_BA, bound B's clock offset from A's: -d_BA <= offset <= d_AB. As NTP does, the
estimate is the middle, (d_AB - d_BA)/2, good to +/-(d_AB + d_BA)/2; with messages
one way only, the clocks are left as they are unless a receipt would precede its
send, and then moved just enough. The node that exchanged messages with the most
others is the reference; every other node is placed through the chain of pairs with
the smallest uncertainty, then every pair's bound is enforced, so no receipt
precedes its send (if the clocks drifted so that no offsets fit, the receipts still
ahead are moved to their sends). Each node's events keep their order. Times shown
are the reference's; the terminal output lists each node's offset.

Filters (all must hold; they narrow what is shown, a tree or a timeline is found on
everything): --task, --framework, --agent, --executor: the message is about it.
--actor: a UPID (master@10.0.0.1:5050), a name (master) or a node (10.0.0.1:5050),
sending or receiving. --kind: RunTask or keel.agent.RunTask, comma-separated or
repeated for several. --since/--until (inclusive): RFC 3339 (2026-12-02T05:07:39Z,
2026-12-02T06:07:39.5+01:00) or a duration ago (30s, 5m, 1h30m, 500ms; units us ms
s m h d).

Exit status: 0 (also when nothing matches: an unknown id or task is an empty
result), 1 when an input cannot be read (or no node answers), 2 for a malformed
option or filter, or one a node refuses.";

/// The timeline's explanation.
const TASK_HELP: &str = "\
Hops: `accept` (the framework's Accept that launched the task, found through the
RunTask's causal parents, else by its framework and time), `launch` (the master's
RunTask), `update N` (the agent's N-th status update; the first is the container's
launch), `update N fwd` (the master's forward to the framework), `ack N` (the
framework's acknowledgement) and `ack N fwd` (the master's, to the agent), each with
its latency (send to receipt, on the merged clock); drops and faults under the hop.
`update N retry K` is the same update sent again (no acknowledgement reached the
agent in between). The total runs from the accept's send to the agent's receipt of
the acknowledgement of the terminal update.";

/// `keel trace`: follow messages across nodes.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, after_long_help = HELP)]
pub struct TraceArgs {
    /// A more specific view.
    #[command(subcommand)]
    pub command: Option<TraceCommand>,
    /// Show the causal tree of this message: its ancestors (through `parent`) and
    /// every descendant, across nodes (MSGID: the hex id in the traces).
    #[arg(long, value_name = "MSGID", value_parser = parse_message_id)]
    pub follow: Option<MessageId>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `keel trace` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TraceCommand {
    /// One task's life as a timeline: accept, RunTask, container launch, each status
    /// update and its acknowledgement, the latency of every hop and the total, and
    /// any drop, fault or retry on the way.
    #[command(after_long_help = TASK_HELP)]
    Task {
        /// The task's id.
        #[arg(value_parser = parse_id)]
        task_id: String,
        #[command(flatten)]
        common: Box<CommonArgs>,
    },
    /// Write a running node's flight recorder (its last message events) to a file,
    /// as JSON lines that `keel trace` reads back.
    Dump {
        /// The node, HOST:PORT.
        node: NodeAddr,
        /// The file to write (default: keel-flight-HOST-PORT.jsonl).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
}

/// Inputs, filters and output, shared by `keel trace` and `keel trace task`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Trace files or flight-recorder dumps (JSON lines or binary; `-`: stdin).
    #[arg(value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// A running node to read (its /trace/recent); repeat for several.
    #[arg(long = "node", value_name = "HOST:PORT", value_parser = parse_node)]
    pub nodes: Vec<String>,
    /// Keep streaming every --node's /trace/stream, merging as events arrive.
    #[arg(long)]
    pub live: bool,
    /// With --live: stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", requires = "live", value_parser = parse_live_for)]
    pub live_for: Option<Duration>,
    /// The most events asked of each node.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub limit: u64,
    /// Only messages about this task.
    #[arg(long, value_parser = parse_id)]
    pub task: Option<String>,
    /// Only messages about this framework.
    #[arg(long, value_parser = parse_id)]
    pub framework: Option<String>,
    /// Only messages about this agent.
    #[arg(long, value_parser = parse_id)]
    pub agent: Option<String>,
    /// Only messages about this executor.
    #[arg(long, value_parser = parse_id)]
    pub executor: Option<String>,
    /// Only messages sent or received by this actor: a UPID, a name, or a node's
    /// HOST:PORT (repeat: any of them).
    #[arg(long, value_parser = parse_actor)]
    pub actor: Vec<ActorPattern>,
    /// Only these kinds: RunTask or keel.agent.RunTask (comma-separated or repeated).
    #[arg(long, value_parser = |text: &str| parse_kinds(text).map(Kinds))]
    pub kind: Vec<Kinds>,
    /// Only events at or after: RFC 3339, or a duration ago (30s, 5m, 1h30m).
    #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
    pub since: Option<TimeBound>,
    /// Only events at or before: RFC 3339, or a duration ago.
    #[arg(long, value_name = "TIME", value_parser = parse_time_bound)]
    pub until: Option<TimeBound>,
    /// The output.
    #[arg(long, value_enum, default_value_t = Format::Terminal)]
    pub format: Format,
    /// The terminal's width (columns).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u16).range(40..=1000))]
    pub width: u16,
}

/// One `--kind` value: one kind or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kinds(pub Vec<String>);

/// A `--follow` value: a message id in hex (as the traces print it), not 0.
pub fn parse_message_id(text: &str) -> Result<MessageId, String> {
    let digits = text.trim().trim_start_matches("0x");
    match u64::from_str_radix(digits, 16) {
        Ok(0) => Err("0 is no message (it means \"no parent\")".into()),
        Ok(id) if digits.len() <= 16 => Ok(MessageId(id)),
        _ => Err(format!("{text:?} is not a message id (up to 16 hex digits, e.g. 3f0c00000000012a)")),
    }
}

/// A `--node` value: `HOST:PORT` (an `http://` prefix and a trailing `/` are fine).
pub fn parse_node(text: &str) -> Result<String, String> {
    let text = text.trim().trim_start_matches("http://").trim_end_matches('/');
    let node: NodeAddr = text.parse().map_err(|e| format!("{text:?} is not HOST:PORT: {e}"))?;
    Ok(node.to_string())
}

fn parse_live_for(text: &str) -> Result<Duration, String> {
    let us = parse_duration_us(text)?;
    if us == 0 {
        return Err("--live-for must be longer than 0".into());
    }
    Ok(Duration::from_micros(us))
}

impl CommonArgs {
    fn filter(&self, now_us: u64) -> Result<Filter, UsageError> {
        let since_us = self.since.map(|b| b.resolve(now_us));
        let until_us = self.until.map(|b| b.resolve(now_us));
        if let (Some(since), Some(until)) = (since_us, until_us) {
            if since > until {
                return Err(UsageError("--since is after --until: nothing could match".into()));
            }
        }
        Ok(Filter {
            task: self.task.clone(),
            framework: self.framework.clone(),
            agent: self.agent.clone(),
            executor: self.executor.clone(),
            actors: self.actor.clone(),
            kinds: self.kind.iter().flat_map(|k| k.0.iter().cloned()).collect(),
            since_us,
            until_us,
        })
    }
}

impl TraceArgs {
    /// The options, with relative times resolved against `now_us`.
    pub fn into_options(self, now_us: u64) -> Result<TraceOptions, UsageError> {
        let (common, selection) = match self.command {
            Some(TraceCommand::Task { task_id, common }) => (*common, Selection::Task(task_id)),
            Some(TraceCommand::Dump { .. }) => {
                return Err(UsageError("keel trace dump is not a view (see dump::run)".into()))
            }
            None => (self.common, self.follow.map_or(Selection::All, Selection::Follow)),
        };
        if common.files.is_empty() && common.nodes.is_empty() {
            return Err(UsageError("nothing to read: give trace files or --node HOST:PORT".into()));
        }
        if common.live && common.nodes.is_empty() {
            return Err(UsageError("--live streams from nodes: give --node HOST:PORT".into()));
        }
        Ok(TraceOptions {
            filter: common.filter(now_us)?,
            files: common.files,
            nodes: common.nodes,
            live: common.live,
            live_for: common.live_for,
            limit: common.limit as usize,
            selection,
            format: common.format,
            width: usize::from(common.width),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Trace(TraceArgs),
    }

    fn parse(args: &[&str]) -> Result<TraceOptions, String> {
        let cli = Cli::try_parse_from(["keel", "trace"].iter().chain(args)).map_err(|e| {
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        })?;
        let Top::Trace(args) = cli.command;
        args.into_options(1_000_000_000).map_err(|e| e.0)
    }

    #[test]
    fn files_nodes_follow_and_filters() {
        let options = parse(&[
            "a.jsonl",
            "b.bin",
            "--node",
            "http://127.0.0.1:5050/",
            "--follow",
            "00000000000001ff",
            "--kind",
            "RunTask,Ping",
            "--kind",
            "keel.common.StatusUpdate",
            "--actor",
            "master",
            "--since",
            "30s",
            "--format",
            "mermaid",
        ])
        .unwrap();
        assert_eq!(options.files, vec![PathBuf::from("a.jsonl"), PathBuf::from("b.bin")]);
        assert_eq!(options.nodes, vec!["127.0.0.1:5050"]);
        assert_eq!(options.selection, Selection::Follow(MessageId(0x1ff)));
        assert_eq!(options.filter.kinds, vec!["RunTask", "Ping", "keel.common.StatusUpdate"]);
        assert_eq!(options.filter.since_us, Some(970_000_000));
        assert_eq!((options.format, options.width), (Format::Mermaid, 80));
    }

    #[test]
    fn the_task_subcommand_takes_the_same_inputs() {
        let options = parse(&["task", "t1", "x.jsonl", "--node", "h:1", "--format", "perfetto"]).unwrap();
        assert_eq!(options.selection, Selection::Task("t1".into()));
        assert_eq!((options.files.len(), options.nodes.len(), options.format), (1, 1, Format::Perfetto));
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        let cases: &[(&[&str], &str)] = &[
            (&["f", "--since", "yesterday"], "neither a duration"),
            (&["f", "--until", "2026-13-01T00:00:00Z"], "RFC 3339"),
            (&["f", "--follow", "xyz"], "not a message id"),
            (&["f", "--follow", "0"], "no message"),
            (&["f", "--actor", "master@"], "not a UPID"),
            (&["f", "--kind", "RunTask,"], "not a list of kinds"),
            (&["f", "--task", ""], "empty id"),
            (&["--node", "localhost"], "not HOST:PORT"),
            (&["f", "--live-for", "5s"], "--live"),
            (&["f", "--format", "svg"], "svg"),
            (&["f", "--width", "10"], "10"),
            (&[], "nothing to read"),
            (&["f", "--live"], "give --node"),
            (&["f", "--since", "1m", "--until", "2m"], "after --until"),
        ];
        for (args, reason) in cases {
            let error = parse(args).expect_err(&format!("{args:?} parsed"));
            assert!(error.contains(reason), "{args:?}: {error}");
        }
    }
}
