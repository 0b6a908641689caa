//! `keel trace task TASK_ID`: one task's life as a list of hops, each a message with
//! its send, receipt and latency on the merged clock:
//!
//! - `accept`: the framework's Accept that launched it, found by following the
//!   RunTask's causal parents (the master sends the RunTask while handling the
//!   Accept), else an Accept about the task, else the framework's last Accept to the
//!   master before the launch (said so in the notes);
//! - `launch`: the master's RunTask to the agent;
//! - `update N`: the agent's N-th status update (the first, usually TASK_RUNNING, is
//!   the container's launch), `update N fwd` the master's forward to the framework,
//!   `ack N` the framework's acknowledgement to the master, `ack N fwd` the master's
//!   to the agent;
//! - other messages about the task (kills, launch checks...) by their kind.
//!
//! A *retry* is a second send of the same update: the agent keeps one update per task
//! in flight and sends the next only once the previous one is acknowledged, so an
//! update sent before any acknowledgement reached the agent since the previous one is
//! that one again (when the updates carry a `uuid` subject, it decides). The total
//! runs from the accept's send (the launch's if no accept is found) to the agent's
//! receipt of the acknowledgement of the terminal update (by its `state` subject, else
//! the last update).

use std::collections::{HashMap, HashSet};

use keel_kernel::trace::{MessageId, TraceEvent};

use super::labels::short_kind;
use super::messages::{group, Message, Outcome};

/// What a hop is in the task's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The framework accepts offers, launching the task.
    Accept,
    /// The master's RunTask.
    Launch,
    /// A status update from the agent to the master.
    Update,
    /// The master forwarding an update to the framework (or one of its own).
    Forward,
    /// The framework's acknowledgement to the master.
    Ack,
    /// The master's acknowledgement to the agent.
    AckForward,
    /// Any other message about the task.
    Other,
}

/// One message of the task's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// What it is.
    pub step: Step,
    /// `accept`, `launch`, `update 2`, `update 2 fwd`, `ack 2`, `ack 2 fwd`, or a kind.
    pub label: String,
    /// The update it carries or acknowledges (1 for the first).
    pub update: Option<usize>,
    /// 1 for a first send, 2 for the first retry...
    pub attempt: usize,
    /// The message.
    pub message: Message,
}

impl Hop {
    /// The task state it carries, from its `state` subject.
    pub fn state(&self) -> Option<&str> {
        self.message.subject("state")
    }
}

/// A task's life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// The task.
    pub task: String,
    /// Its framework, from the messages' subjects.
    pub framework: Option<String>,
    /// Its agent, from the messages' subjects.
    pub agent: Option<String>,
    /// The hops, in time order.
    pub hops: Vec<Hop>,
    /// The accept's send (or the launch's).
    pub start_us: Option<u64>,
    /// The agent's receipt of the terminal update's acknowledgement.
    pub end_us: Option<u64>,
    /// The last update's state, if the updates say.
    pub terminal_state: Option<String>,
    /// From the launch's send to the first update's (the container's launch).
    pub launch_to_first_update_us: Option<u64>,
    /// Retried sends of updates.
    pub retries: usize,
    /// Messages dropped on the way.
    pub drops: usize,
    /// Messages that met an injected fault.
    pub faults: usize,
    /// What could not be found, or was found only by a guess.
    pub notes: Vec<String>,
    /// Every event of the hops, in merged order (what the renderers draw).
    pub events: Vec<TraceEvent>,
}

impl Timeline {
    /// From the accept to the acknowledged terminal update.
    pub fn total_us(&self) -> Option<u64> {
        Some(self.end_us?.saturating_sub(self.start_us?))
    }
}

const TERMINAL_STATES: &[&str] = &[
    "TASK_FINISHED",
    "TASK_FAILED",
    "TASK_KILLED",
    "TASK_LOST",
    "TASK_ERROR",
    "TASK_DROPPED",
    "TASK_GONE",
    "TASK_GONE_BY_OPERATOR",
];

/// The life of `task` in `events` (merged). A task in no message gives an empty
/// timeline, with a note.
pub fn timeline(events: &[TraceEvent], task: &str) -> Timeline {
    let mut messages: Vec<Message> =
        group(&events.iter().filter(|e| e.subject("task") == Some(task)).cloned().collect::<Vec<_>>());
    let mut out = Timeline { task: task.to_string(), ..Timeline::default() };
    if messages.is_empty() {
        out.notes.push(format!("no message about task {task} in these traces"));
        return out;
    }
    let first_subject = |name: &str| messages.iter().find_map(|m| m.subject(name).map(str::to_string));
    out.framework = first_subject("framework");
    out.agent = first_subject("agent");
    let launch = messages.iter().find(|m| short_kind(&m.kind) == "RunTask").cloned();
    let master = launch.as_ref().map(|m| m.from.clone()).or_else(|| {
        messages.iter().flat_map(|m| [&m.from, &m.to]).find(|a| a.starts_with("master@")).cloned()
    });
    let agent = launch.as_ref().map(|m| m.to.clone()).or_else(|| {
        let master = master.as_deref()?;
        messages
            .iter()
            .find(|m| short_kind(&m.kind) == "StatusUpdate" && m.to == master)
            .map(|m| m.from.clone())
    });
    if !messages.iter().any(|m| short_kind(&m.kind) == "Accept") {
        match find_accept(events, launch.as_ref(), out.framework.as_deref(), master.as_deref()) {
            (Some(accept), None) => messages.push(accept),
            (Some(accept), Some(note)) => {
                messages.push(accept);
                out.notes.push(note);
            }
            (None, note) => out.notes.extend(note),
        }
        messages.sort_by_key(Message::at_us);
    }
    out.hops = classify(messages, master.as_deref(), agent.as_deref());
    number_updates(&mut out.hops);
    summarise(&mut out);
    let ids: HashSet<MessageId> = out.hops.iter().map(|h| h.message.id).collect();
    out.events = events.iter().filter(|e| ids.contains(&e.id) && !e.id.is_none()).cloned().collect();
    out
}

/// The Accept that launched the task: through the launch's causal parents, else by
/// the framework and time. The note says how it was found when it was a guess.
fn find_accept(
    events: &[TraceEvent],
    launch: Option<&Message>,
    framework: Option<&str>,
    master: Option<&str>,
) -> (Option<Message>, Option<String>) {
    let Some(launch) = launch else {
        return (None, Some("no RunTask for the task in these traces".into()));
    };
    let mut first: HashMap<MessageId, &TraceEvent> = HashMap::new();
    for event in events {
        first.entry(event.id).or_insert(event);
    }
    let of = |id: MessageId| -> Message {
        let chosen: Vec<TraceEvent> = events.iter().filter(|e| e.id == id).cloned().collect();
        group(&chosen).remove(0)
    };
    let mut at = launch.parent;
    for _ in 0..32 {
        let Some(event) = first.get(&at).filter(|_| !at.is_none()) else { break };
        if short_kind(&event.kind) == "Accept" {
            return (Some(of(at)), None);
        }
        at = event.parent;
    }
    let launched_at = launch.at_us();
    let guess = events
        .iter()
        .filter(|e| short_kind(&e.kind) == "Accept" && !e.id.is_none() && e.time_us <= launched_at)
        .filter(|e| framework.is_some_and(|f| e.subject("framework") == Some(f)))
        .filter(|e| master.is_none_or(|m| e.to == m))
        .max_by_key(|e| e.time_us);
    match guess {
        Some(event) => (
            Some(of(event.id)),
            Some("the accept was found by its framework and time (the RunTask's causal parents are not in these traces)".into()),
        ),
        None => (None, Some("no accept found: the RunTask's causal parents are not in these traces".into())),
    }
}

fn classify(messages: Vec<Message>, master: Option<&str>, agent: Option<&str>) -> Vec<Hop> {
    let is = |actor: &str, role: Option<&str>| role == Some(actor);
    messages
        .into_iter()
        .map(|message| {
            let kind = short_kind(&message.kind);
            let step = match kind {
                "Accept" => Step::Accept,
                "RunTask" => Step::Launch,
                "StatusUpdate" if is(&message.from, agent) && is(&message.to, master) => Step::Update,
                "StatusUpdate" if is(&message.from, master) && !is(&message.to, agent) => Step::Forward,
                "StatusUpdateAcknowledgement" if is(&message.to, master) && !is(&message.from, agent) => {
                    Step::Ack
                }
                "StatusUpdateAcknowledgement" if is(&message.from, master) && is(&message.to, agent) => {
                    Step::AckForward
                }
                _ => Step::Other,
            };
            let label = match step {
                Step::Accept => "accept".to_string(),
                Step::Launch => "launch".to_string(),
                _ => kind.to_string(),
            };
            Hop { step, label, update: None, attempt: 1, message }
        })
        .collect()
}

/// Numbers the updates (retries keep their number) and gives forwards and acks the
/// number of the update they carry, through their causal parents or else the latest
/// one that arrived before them.
fn number_updates(hops: &mut [Hop]) {
    let ack_arrivals: Vec<u64> = hops
        .iter()
        .filter(|h| h.step == Step::AckForward)
        .filter_map(|h| {
            let m = &h.message;
            m.received_us.or(if m.outcome() == Outcome::Unknown { m.sent_us } else { None })
        })
        .collect();
    let mut number_of: HashMap<MessageId, usize> = HashMap::new();
    let mut arrivals: Vec<(Step, u64, usize)> = Vec::new();
    let mut current: Option<(usize, Option<String>, Option<String>, u64)> = None;
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for hop in hops.iter_mut() {
        let at = hop.message.at_us();
        let number = match hop.step {
            Step::Update => {
                let uuid = hop.message.subject("uuid").map(str::to_string);
                let state = hop.message.subject("state").map(str::to_string);
                let fresh = match &current {
                    None => true,
                    Some((_, last_uuid, last_state, last_at)) => match (&uuid, last_uuid) {
                        (Some(a), Some(b)) => a != b,
                        _ => {
                            ack_arrivals.iter().any(|t| *t > *last_at && *t <= at)
                                || matches!((&state, last_state), (Some(a), Some(b)) if a != b)
                        }
                    },
                };
                let number = match (&current, fresh) {
                    (Some((n, ..)), false) => *n,
                    (Some((n, ..)), true) => n + 1,
                    (None, _) => 1,
                };
                current = Some((number, uuid, state, at));
                let attempt = counts.entry(number).or_default();
                *attempt += 1;
                hop.attempt = *attempt;
                Some(number)
            }
            Step::Forward | Step::Ack | Step::AckForward => {
                let before = match hop.step {
                    Step::Forward => Step::Update,
                    Step::Ack => Step::Forward,
                    _ => Step::Ack,
                };
                number_of.get(&hop.message.parent).copied().or_else(|| {
                    arrivals
                        .iter()
                        .filter(|(step, t, _)| *step == before && *t <= at)
                        .map(|(_, _, n)| *n)
                        .next_back()
                })
            }
            _ => None,
        };
        if let Some(number) = number {
            number_of.insert(hop.message.id, number);
            arrivals.push((hop.step, hop.message.received_us.unwrap_or(at), number));
            arrivals.sort_by_key(|(_, t, _)| *t);
        }
        hop.update = number;
        let n = number.map_or(String::new(), |n| format!(" {n}"));
        hop.label = match hop.step {
            Step::Update if hop.attempt > 1 => format!("update{n} retry {}", hop.attempt - 1),
            Step::Update => format!("update{n}"),
            Step::Forward if number.is_some() => format!("update{n} fwd"),
            Step::Forward => "update (master)".to_string(),
            Step::Ack => format!("ack{n}"),
            Step::AckForward => format!("ack{n} fwd"),
            _ => std::mem::take(&mut hop.label),
        };
    }
}

fn summarise(out: &mut Timeline) {
    let hops = &out.hops;
    let first_send = |step: Step| hops.iter().find(|h| h.step == step).map(|h| h.message.at_us());
    out.start_us =
        first_send(Step::Accept).or(first_send(Step::Launch)).or(hops.first().map(|h| h.message.at_us()));
    if first_send(Step::Accept).is_none() && first_send(Step::Launch).is_some() {
        out.notes.push("the total runs from the launch (no accept found)".into());
    }
    out.launch_to_first_update_us =
        first_send(Step::Launch).zip(first_send(Step::Update)).map(|(l, u)| u.saturating_sub(l));
    let updates: Vec<&Hop> = hops.iter().filter(|h| h.step == Step::Update).collect();
    let terminal = updates
        .iter()
        .find(|h| h.state().is_some_and(|s| TERMINAL_STATES.contains(&s)))
        .or(updates.last())
        .copied();
    out.terminal_state = terminal.and_then(|h| h.state().map(str::to_string));
    if let Some(terminal) = terminal {
        out.end_us = hops
            .iter()
            .filter(|h| h.step == Step::AckForward && h.update == terminal.update)
            .filter_map(|h| h.message.received_us)
            .min();
        if out.end_us.is_none() {
            out.notes.push(format!(
                "the acknowledgement of update {} did not reach the agent in these traces",
                terminal.update.unwrap_or(0)
            ));
        }
    } else {
        out.notes.push("no status update from the agent in these traces".into());
    }
    out.retries = hops.iter().filter(|h| h.step == Step::Update && h.attempt > 1).count();
    out.drops = hops.iter().filter(|h| h.message.outcome() == Outcome::Dropped).count();
    out.faults = hops
        .iter()
        .filter(|h| h.message.mishaps.iter().any(|m| m.event == keel_kernel::trace::EventKind::Fault))
        .count();
}

#[cfg(test)]
mod tests {
    use keel_kernel::trace::EventKind;

    use super::*;
    use crate::cli::trace::merge::merge;
    use crate::cli::trace::testing::{task_story, Cluster, Hop as TestHop};

    const T0: u64 = 1_800_000_000_000_000;

    fn labels(timeline: &Timeline) -> Vec<&str> {
        timeline.hops.iter().map(|h| h.label.as_str()).collect()
    }

    #[test]
    fn every_hop_from_the_accept_to_the_acknowledged_terminal_update() {
        // The agent's clock is 4 ms behind, the scheduler's 9 ms ahead.
        let (cluster, _) = task_story(&[("10.0.0.2:5051", -4_000), ("10.0.0.9:7000", 9_000)]);
        let events = merge(cluster.events.clone());
        let t = timeline(&events, "t1");
        assert_eq!(
            labels(&t),
            vec![
                "accept",
                "launch",
                "update 1",
                "update 1 fwd",
                "ack 1",
                "ack 1 fwd",
                "update 2",
                "update 2 fwd",
                "ack 2",
                "ack 2 fwd"
            ]
        );
        let latencies: Vec<u64> = t.hops.iter().map(|h| h.message.latency_us().unwrap()).collect();
        assert_eq!(latencies, vec![300, 200, 200, 300, 300, 200, 200, 300, 300, 200]);
        // Accept sent at T0 + 1 ms (true time); FINISHED acknowledged to the agent at
        // T0 + 10 ms + 1.1 ms + 200 us.
        assert_eq!(t.total_us(), Some(10_300));
        assert_eq!(t.terminal_state.as_deref(), Some("TASK_FINISHED"));
        assert_eq!(t.launch_to_first_update_us, Some(1_500));
        assert_eq!((t.retries, t.drops, t.faults), (0, 0, 0));
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        assert_eq!((t.framework.as_deref(), t.agent.as_deref()), (Some("F1"), Some("A1")));
        assert_eq!(t.events.len(), 20);
    }

    #[test]
    fn a_retried_update_and_a_drop_are_shown() {
        const MASTER: &str = "master@10.0.0.1:5050";
        const AGENT: &str = "agent@10.0.0.2:5051";
        const SCHED: &str = "sched@10.0.0.9:7000";
        let task: &[(&str, &str)] = &[("framework", "F1"), ("task", "t1")];
        let mut c = Cluster::with_skews(&[]);
        let run = c.hop(TestHop {
            from: MASTER,
            to: AGENT,
            kind: "keel.agent.RunTask",
            at_us: T0,
            delay_us: Some(100),
            parent: 0,
            subjects: task,
        });
        // The first RUNNING is lost to a fault; the agent retries 2 s later.
        let lost = c.hop(TestHop {
            from: AGENT,
            to: MASTER,
            kind: "keel.common.StatusUpdate",
            at_us: T0 + 1_000,
            delay_us: None,
            parent: run,
            subjects: task,
        });
        c.mishap(lost, EventKind::Fault, "10.0.0.1:5050", T0 + 1_100, "drop");
        let retry = c.hop(TestHop {
            from: AGENT,
            to: MASTER,
            kind: "keel.common.StatusUpdate",
            at_us: T0 + 2_001_000,
            delay_us: Some(100),
            parent: 0,
            subjects: task,
        });
        let forward = c.hop(TestHop {
            from: MASTER,
            to: SCHED,
            kind: "keel.common.StatusUpdate",
            at_us: T0 + 2_001_200,
            delay_us: Some(100),
            parent: retry,
            subjects: task,
        });
        let ack = c.hop(TestHop {
            from: SCHED,
            to: MASTER,
            kind: "keel.common.StatusUpdateAcknowledgement",
            at_us: T0 + 2_001_400,
            delay_us: Some(100),
            parent: forward,
            subjects: task,
        });
        // The master's ack to the agent is dropped (unreachable): the agent retries again.
        let dropped = c.hop(TestHop {
            from: MASTER,
            to: AGENT,
            kind: "keel.common.StatusUpdateAcknowledgement",
            at_us: T0 + 2_001_600,
            delay_us: None,
            parent: ack,
            subjects: task,
        });
        c.mishap(dropped, EventKind::Drop, "10.0.0.1:5050", T0 + 2_001_600, "unreachable");
        c.hop(TestHop {
            from: AGENT,
            to: MASTER,
            kind: "keel.common.StatusUpdate",
            at_us: T0 + 4_001_000,
            delay_us: Some(100),
            parent: 0,
            subjects: task,
        });
        let events = merge(c.events.clone());
        let t = timeline(&events, "t1");
        assert_eq!(
            labels(&t),
            vec![
                "launch",
                "update 1",
                "update 1 retry 1",
                "update 1 fwd",
                "ack 1",
                "ack 1 fwd",
                "update 1 retry 2"
            ]
        );
        assert_eq!((t.retries, t.drops, t.faults), (2, 1, 1));
        assert_eq!(t.hops[1].message.outcome(), Outcome::Faulted);
        assert_eq!(t.hops[5].message.outcome(), Outcome::Dropped);
        assert_eq!(t.total_us(), None, "the acknowledgement never reached the agent");
        assert!(t.notes.iter().any(|n| n.contains("no accept")), "{:?}", t.notes);
        assert!(t.notes.iter().any(|n| n.contains("did not reach the agent")), "{:?}", t.notes);
    }

    #[test]
    fn the_accept_is_found_by_framework_when_the_causal_chain_is_cut() {
        let (mut cluster, run) = task_story(&[]);
        for event in cluster.events.iter_mut().filter(|e| e.id == MessageId(run)) {
            event.parent = MessageId::NONE;
        }
        let t = timeline(&merge(cluster.events), "t1");
        assert_eq!(t.hops[0].label, "accept");
        assert!(t.notes[0].contains("by its framework and time"), "{:?}", t.notes);
        assert_eq!(t.total_us(), Some(10_300));
    }

    #[test]
    fn an_unknown_task_gives_an_empty_timeline() {
        let (cluster, _) = task_story(&[]);
        let t = timeline(&cluster.events, "nope");
        assert!(t.hops.is_empty() && t.events.is_empty());
        assert_eq!(t.total_us(), None);
    }
}
