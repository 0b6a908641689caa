//! Merging the traces of several nodes onto one clock.
//!
//! Each node stamps its events with its own wall clock. A message sent by node A and
//! received by node B gives `recv_B - send_A = delay + (clock_B - clock_A)`. For each
//! ordered pair of nodes, the smallest such difference over their messages, `d_AB`,
//! bounds the offset `θ = clock_B - clock_A` from above (a delay is never negative),
//! and `d_BA` bounds it from below: `-d_BA <= θ <= d_AB`. As NTP does, the estimate is
//! the middle, `θ = (d_AB - d_BA) / 2`, good to ± `(d_AB + d_BA) / 2` (half the
//! shortest round trip), which assumes the fastest message took as long each way.
//! With messages one way only, the clocks are taken to agree unless a receipt would
//! then precede its send; then θ is set to the bound (the fastest message taken as
//! instantaneous). Drops and faults recorded on the receiving node count as receipts.
//!
//! The reference node is the one that exchanged messages with the most nodes (usually
//! the master; ties: more events, then the smaller address). Every other node's offset
//! is the sum of the pair estimates along the path from the reference with the
//! smallest total uncertainty (one-way pairs count as very uncertain), so a node that
//! never talked to the reference is placed through chains of pairs. Then every pair's
//! bound is enforced (`offset_B - offset_A <= d_AB` for every observed direction, a
//! system of difference constraints, relaxed Bellman-Ford style and re-anchored on the
//! reference), so after correction no receipt precedes its send. Nodes that exchanged
//! nothing with the reference's group keep their own clocks (anchored on a reference of
//! their own). If the bounds contradict each other (a clock drifted during the trace),
//! the receipts still ahead of their sends are moved to their sends' times, pushing the
//! same node's later events with them, and [`ClockReport::clamped`] counts them.
//!
//! Events of one node keep their order (sorted stably on their own clock); exact
//! duplicates (the same event from a dump and a file, or from `/trace/recent` and
//! `/trace/stream`) are kept once.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use keel_kernel::trace::{EventKind, MessageId, TraceEvent};

/// The cost of a one-way pair when choosing paths: any two-way chain is preferred.
const ONE_WAY_COST: u64 = 1 << 40;

/// One node's clock correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockOffset {
    /// The node (`host:port`).
    pub node: String,
    /// How far its clock is ahead of the reference's, in microseconds: corrected time
    /// = its time - `offset_us`.
    pub offset_us: i64,
    /// The uncertainty of the estimate (± microseconds), when every pair on the way
    /// had messages both ways.
    pub bound_us: Option<u64>,
    /// The node its clock was set against (itself for a reference).
    pub reference: String,
    /// Pairs on the way from the reference (0 for the reference, 1 for a direct pair).
    pub pairs: usize,
}

/// How the clocks were corrected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClockReport {
    /// The reference node, if any node was seen.
    pub reference: Option<String>,
    /// Every node's correction, by node.
    pub offsets: Vec<ClockOffset>,
    /// The pair bounds contradict each other (clock drift): some receipts were clamped.
    pub inconsistent: bool,
    /// Receipts moved to their send's time, and events moved with them.
    pub clamped: usize,
}

impl ClockReport {
    /// The offset of `node` (0 for a node not seen).
    pub fn offset_of(&self, node: &str) -> i64 {
        self.offsets.iter().find(|o| o.node == node).map_or(0, |o| o.offset_us)
    }

    /// One line per corrected node, for people.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for offset in &self.offsets {
            if offset.node == offset.reference {
                if self.reference.as_deref() != Some(offset.node.as_str()) {
                    lines.push(format!(
                        "clock {}: as recorded (no messages with the other nodes)",
                        offset.node
                    ));
                } else if self.offsets.len() > 1 {
                    lines.push(format!("clock {}: reference", offset.node));
                }
                continue;
            }
            let bound = match offset.bound_us {
                Some(bound) => format!(" ±{bound}us"),
                None => " (one-way pairs: at most)".to_string(),
            };
            lines.push(format!(
                "clock {}: {:+}us vs {}{bound}",
                offset.node, offset.offset_us, offset.reference
            ));
        }
        if self.clamped > 0 {
            lines.push(format!(
                "clocks: {} events moved after their sends (the pair bounds disagree: clock drift?)",
                self.clamped
            ));
        }
        lines
    }
}

/// Merged events and how their clocks were corrected.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// Every event once, on the reference clock, in time order.
    pub events: Vec<TraceEvent>,
    /// The corrections.
    pub clocks: ClockReport,
}

/// Merges events of any number of nodes onto the reference node's clock (see the
/// module header): corrected times, receipts never before their sends, time order.
pub fn merge(events: Vec<TraceEvent>) -> Vec<TraceEvent> {
    merge_with_clocks(events).events
}

/// [`merge`], with the corrections it made.
pub fn merge_with_clocks(events: Vec<TraceEvent>) -> Merged {
    let events = dedupe(events);
    let mut merger = Merger::with_capacity(events.len().max(1));
    merger.observe(&events);
    let mut clocks = merger.clocks();
    let events = merger.order(events, &mut clocks);
    Merged { events, clocks }
}

/// Removes exact duplicates, keeping the first of each.
pub fn dedupe(events: Vec<TraceEvent>) -> Vec<TraceEvent> {
    let mut seen = HashSet::with_capacity(events.len());
    events.into_iter().filter(|e| seen.insert(identity(e))).collect()
}

/// What makes an event the same event.
pub(crate) fn identity(e: &TraceEvent) -> (String, EventKind, MessageId, u64, String, String, String) {
    (e.node.clone(), e.event, e.id, e.time_us, e.from.clone(), e.to.clone(), e.kind.clone())
}

/// A map from message ids that forgets its oldest entries beyond a capacity.
#[derive(Debug)]
struct Recent<V> {
    map: HashMap<MessageId, V>,
    order: VecDeque<MessageId>,
    capacity: usize,
}

impl<V> Recent<V> {
    fn new(capacity: usize) -> Self {
        Recent { map: HashMap::new(), order: VecDeque::new(), capacity }
    }

    fn entry_or_insert_with(&mut self, id: MessageId, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&id) {
            if self.order.len() >= self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
            self.order.push_back(id);
        }
        self.map.entry(id).or_insert_with(make)
    }
}

/// What is known of one message for the clock estimates.
#[derive(Debug, Default)]
struct Seen {
    send: Option<(String, u64)>,
    arrivals: Vec<(String, u64)>,
}

/// Estimates clocks from events as they come and orders batches of them: [`merge`]
/// uses one on everything at once, `keel trace --live` feeds it what arrives.
/// Memory is bounded by the capacity (messages remembered for pairing).
#[derive(Debug)]
pub struct Merger {
    /// (sender's node, receiver's node) -> the smallest receipt - send, microseconds.
    pairs: BTreeMap<(String, String), i64>,
    events_per_node: BTreeMap<String, u64>,
    seen: Recent<Seen>,
    /// Corrected times of the sends already ordered (receipts are kept after them).
    emitted_sends: Recent<u64>,
    /// The last corrected time given out per node.
    last_per_node: HashMap<String, u64>,
    /// The reference once chosen (so a live session's times do not jump).
    reference: Option<String>,
}

impl Merger {
    /// A merger remembering up to `capacity` messages for pairing and ordering.
    pub fn with_capacity(capacity: usize) -> Merger {
        Merger {
            pairs: BTreeMap::new(),
            events_per_node: BTreeMap::new(),
            seen: Recent::new(capacity),
            emitted_sends: Recent::new(capacity),
            last_per_node: HashMap::new(),
            reference: None,
        }
    }

    /// Takes in the send/receipt pairs of `events` (raw clocks).
    pub fn observe(&mut self, events: &[TraceEvent]) {
        for event in events {
            *self.events_per_node.entry(event.node.clone()).or_default() += 1;
            if event.id.is_none() {
                continue;
            }
            let seen = self.seen.entry_or_insert_with(event.id, Seen::default);
            let mut samples = Vec::new();
            match event.event {
                EventKind::Send => {
                    if seen.send.is_none() {
                        seen.send = Some((event.node.clone(), event.time_us));
                        for (node, time) in seen.arrivals.drain(..) {
                            samples.push((event.node.clone(), node, delta(event.time_us, time)));
                        }
                    }
                }
                EventKind::Recv | EventKind::Drop | EventKind::Fault => match &seen.send {
                    Some((node, time)) => {
                        samples.push((node.clone(), event.node.clone(), delta(*time, event.time_us)))
                    }
                    None => seen.arrivals.push((event.node.clone(), event.time_us)),
                },
            }
            for (from, to, delta) in samples {
                if from != to {
                    let best = self.pairs.entry((from, to)).or_insert(delta);
                    *best = (*best).min(delta);
                }
            }
        }
    }

    /// The clock corrections from what was observed so far (see the module header).
    /// The first reference chosen after some pair was seen stays the reference.
    pub fn clocks(&mut self) -> ClockReport {
        let report = estimate(&self.pairs, &self.events_per_node, self.reference.as_deref());
        if self.reference.is_none() && !self.pairs.is_empty() {
            self.reference = report.reference.clone();
        }
        report
    }

    /// Corrects the clocks of `events` and orders them: time order, each node's events
    /// in their order, receipts after their sends (moving them when the clocks
    /// disagree, counted in `clocks.clamped`).
    pub fn order(&mut self, events: Vec<TraceEvent>, clocks: &mut ClockReport) -> Vec<TraceEvent> {
        let offsets: HashMap<&str, i64> =
            clocks.offsets.iter().map(|o| (o.node.as_str(), o.offset_us)).collect();
        let mut queues: BTreeMap<String, VecDeque<TraceEvent>> = BTreeMap::new();
        let mut pending_sends: HashMap<MessageId, String> = HashMap::new();
        for mut event in events {
            let offset = offsets.get(event.node.as_str()).copied().unwrap_or(0);
            event.time_us = signed(event.time_us).saturating_sub(offset).max(0) as u64;
            if event.event == EventKind::Send && !event.id.is_none() {
                pending_sends.entry(event.id).or_insert_with(|| event.node.clone());
            }
            queues.entry(event.node.clone()).or_default().push_back(event);
        }
        for queue in queues.values_mut() {
            queue.make_contiguous().sort_by_key(|e| e.time_us);
        }
        let total: usize = queues.values().map(VecDeque::len).sum();
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let blocked = |e: &TraceEvent| {
                e.event != EventKind::Send
                    && pending_sends.get(&e.id).is_some_and(|node| *node != e.node)
                    && !self.emitted_sends.map.contains_key(&e.id)
            };
            let heads = queues.iter().filter_map(|(node, q)| q.front().map(|e| (node, e)));
            let pick = heads
                .clone()
                .filter(|(_, e)| !blocked(e))
                .min_by_key(|(_, e)| e.time_us)
                .or_else(|| heads.min_by_key(|(_, e)| e.time_us))
                .map(|(node, _)| node.clone());
            let Some(node) = pick else { break };
            let Some(mut event) = queues.get_mut(&node).and_then(VecDeque::pop_front) else { break };
            let mut time = event.time_us;
            if event.event != EventKind::Send {
                if let Some(sent) = self.emitted_sends.map.get(&event.id) {
                    time = time.max(*sent);
                }
            }
            if let Some(last) = self.last_per_node.get(&event.node) {
                time = time.max(*last);
            }
            if time != event.time_us {
                clocks.clamped += 1;
                event.time_us = time;
            }
            self.last_per_node.insert(event.node.clone(), time);
            if event.event == EventKind::Send && !event.id.is_none() {
                self.emitted_sends.entry_or_insert_with(event.id, || time);
            }
            out.push(event);
        }
        out.sort_by_key(|e| e.time_us);
        out
    }
}

/// A time as a signed number (times past 2^63 us, only in damaged traces, saturate).
fn signed(time_us: u64) -> i64 {
    i64::try_from(time_us).unwrap_or(i64::MAX)
}

/// `later - earlier`, saturating.
fn delta(earlier: u64, later: u64) -> i64 {
    signed(later).saturating_sub(signed(earlier))
}

/// A pair's estimate: `theta` = clock_b - clock_a, and its uncertainty.
#[derive(Debug, Clone, Copy)]
struct Edge {
    theta: i64,
    bound: Option<u64>,
}

fn edge(d_ab: Option<i64>, d_ba: Option<i64>) -> Option<Edge> {
    match (d_ab, d_ba) {
        (Some(ab), Some(ba)) => {
            // In i128: both halves fit an i64 whatever the (damaged) inputs.
            let (ab, ba) = (i128::from(ab), i128::from(ba));
            Some(Edge { theta: ((ab - ba) / 2) as i64, bound: Some(((ab + ba) / 2).max(0) as u64) })
        }
        (Some(ab), None) => Some(Edge { theta: ab.min(0), bound: None }),
        (None, Some(ba)) => Some(Edge { theta: ba.saturating_neg().max(0), bound: None }),
        (None, None) => None,
    }
}

fn estimate(
    pairs: &BTreeMap<(String, String), i64>,
    events_per_node: &BTreeMap<String, u64>,
    pinned: Option<&str>,
) -> ClockReport {
    let mut nodes: BTreeSet<&str> = events_per_node.keys().map(String::as_str).collect();
    nodes.extend(pairs.keys().flat_map(|(a, b)| [a.as_str(), b.as_str()]));
    // Both directions of every pair, with theta seen from the first node.
    let mut neighbours: BTreeMap<&str, Vec<(&str, Edge)>> = BTreeMap::new();
    for (a, b) in pairs.keys() {
        if a > b && pairs.contains_key(&(b.clone(), a.clone())) {
            continue; // counted from the other side
        }
        let forward = pairs.get(&(a.clone(), b.clone())).copied();
        let backward = pairs.get(&(b.clone(), a.clone())).copied();
        if let Some(e) = edge(forward, backward) {
            neighbours.entry(a).or_default().push((b, e));
            neighbours.entry(b).or_default().push((a, Edge { theta: -e.theta, bound: e.bound }));
        }
    }
    let mut placed: BTreeMap<&str, ClockOffset> = BTreeMap::new();
    let mut first_reference = None;
    let mut components: Vec<(String, Vec<String>)> = Vec::new();
    while placed.len() < nodes.len() {
        let reference = *nodes
            .iter()
            .filter(|n| !placed.contains_key(*n))
            .max_by_key(|n| {
                let degree = neighbours.get(*n).map_or(0, Vec::len);
                let events = events_per_node.get(**n).copied().unwrap_or(0);
                (pinned == Some(**n), degree, events, Reverse(**n))
            })
            .expect("a node left to place");
        first_reference.get_or_insert(reference.to_string());
        // Dijkstra on the uncertainty, from the reference.
        let mut cost: HashMap<&str, u64> = HashMap::from([(reference, 0)]);
        let mut heap = BinaryHeap::from([Reverse((0u64, reference))]);
        let mut members = Vec::new();
        placed.insert(
            reference,
            ClockOffset {
                node: reference.into(),
                offset_us: 0,
                bound_us: Some(0),
                reference: reference.into(),
                pairs: 0,
            },
        );
        while let Some(Reverse((c, node))) = heap.pop() {
            if cost.get(node).is_some_and(|best| *best < c) {
                continue;
            }
            members.push(node.to_string());
            let here = placed[node].clone();
            for (next, e) in neighbours.get(node).into_iter().flatten() {
                let step = e.bound.unwrap_or(ONE_WAY_COST);
                let next_cost = c.saturating_add(step);
                if cost.get(next).is_some_and(|best| *best <= next_cost) {
                    continue;
                }
                if placed.get(next).is_some_and(|p| p.reference != reference) {
                    continue;
                }
                cost.insert(next, next_cost);
                heap.push(Reverse((next_cost, next)));
                placed.insert(
                    next,
                    ClockOffset {
                        node: next.to_string(),
                        offset_us: here.offset_us.saturating_add(e.theta),
                        bound_us: here.bound_us.zip(e.bound).map(|(a, b)| a.saturating_add(b)),
                        reference: reference.into(),
                        pairs: here.pairs + 1,
                    },
                );
            }
        }
        components.push((reference.to_string(), members));
    }
    let mut offsets: BTreeMap<String, ClockOffset> =
        placed.into_values().map(|o| (o.node.clone(), o)).collect();
    let inconsistent = !enforce_bounds(pairs, &mut offsets);
    for (reference, members) in &components {
        let anchor = offsets.get(reference).map_or(0, |o| o.offset_us);
        for member in members {
            if let Some(o) = offsets.get_mut(member) {
                o.offset_us = o.offset_us.saturating_sub(anchor);
            }
        }
    }
    ClockReport {
        reference: first_reference,
        offsets: offsets.into_values().collect(),
        inconsistent,
        clamped: 0,
    }
}

/// Makes `offset_b - offset_a <= d_ab` hold for every pair; false if it cannot (a
/// negative cycle: the bounds contradict each other).
fn enforce_bounds(
    pairs: &BTreeMap<(String, String), i64>,
    offsets: &mut BTreeMap<String, ClockOffset>,
) -> bool {
    for _ in 0..=offsets.len() {
        let mut changed = false;
        for ((a, b), d) in pairs {
            let (Some(oa), Some(ob)) = (offsets.get(a), offsets.get(b)) else { continue };
            if oa.reference != ob.reference {
                continue;
            }
            let limit = oa.offset_us.saturating_add(*d);
            if ob.offset_us > limit {
                if let Some(ob) = offsets.get_mut(b) {
                    ob.offset_us = limit;
                }
                changed = true;
            }
        }
        if !changed {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::trace::testing::{event, Cluster};

    const A: &str = "a@10.0.0.1:1";
    const B: &str = "b@10.0.0.2:2";
    const C: &str = "c@10.0.0.3:3";

    fn assert_receipts_follow_sends(events: &[TraceEvent]) {
        let sends: HashMap<MessageId, u64> =
            events.iter().filter(|e| e.event == EventKind::Send).map(|e| (e.id, e.time_us)).collect();
        let position: HashMap<MessageId, usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.event == EventKind::Send)
            .map(|(i, e)| (e.id, i))
            .collect();
        for (i, e) in events.iter().enumerate().filter(|(_, e)| e.event != EventKind::Send) {
            if let Some(sent) = sends.get(&e.id) {
                assert!(e.time_us >= *sent, "{e:?} precedes its send at {sent}");
                assert!(i > position[&e.id], "{e:?} is listed before its send");
            }
        }
    }

    fn assert_sorted(events: &[TraceEvent]) {
        assert!(events.windows(2).all(|w| w[0].time_us <= w[1].time_us), "not in time order");
    }

    #[test]
    fn two_nodes_with_a_known_skew() {
        // B's clock is 5 ms ahead of A's; delays of 100-300 us each way.
        let mut c = Cluster::with_skews(&[("10.0.0.2:2", 5_000)]);
        for i in 0..10u64 {
            c.send(A, B, 1_000_000 + i * 10_000, 100 + i * 20);
            c.send(B, A, 1_005_000 + i * 10_000, 100 + (9 - i) * 20);
        }
        let merged = merge_with_clocks(c.per_node());
        assert_eq!(merged.clocks.offset_of("10.0.0.2:2") - merged.clocks.offset_of("10.0.0.1:1"), 5_000);
        let b = merged.clocks.offsets.iter().find(|o| o.node == "10.0.0.2:2").unwrap();
        assert_eq!(b.bound_us, Some(100), "half the shortest round trip");
        assert_receipts_follow_sends(&merged.events);
        assert_sorted(&merged.events);
        // Corrected times are the true ones (the reference is A, unskewed).
        let first =
            merged.events.iter().find(|e| e.event == EventKind::Recv && e.node == "10.0.0.2:2").unwrap();
        assert_eq!(first.time_us, 1_000_100);
    }

    #[test]
    fn three_nodes_in_a_chain_are_placed_through_the_middle_one() {
        // A talks to B, B to C; A and C never talk. B is the reference (most pairs).
        let mut c = Cluster::with_skews(&[("10.0.0.1:1", -3_000), ("10.0.0.3:3", 40_000)]);
        for i in 0..5u64 {
            c.send(A, B, 1_000_000 + i * 1_000, 200);
            c.send(B, A, 1_000_500 + i * 1_000, 200);
            c.send(B, C, 1_000_100 + i * 1_000, 300);
            c.send(C, B, 1_000_700 + i * 1_000, 300);
        }
        let merged = merge_with_clocks(c.per_node());
        let clocks = &merged.clocks;
        assert_eq!(clocks.reference.as_deref(), Some("10.0.0.2:2"));
        assert_eq!(clocks.offset_of("10.0.0.1:1"), -3_000);
        assert_eq!(clocks.offset_of("10.0.0.3:3"), 40_000);
        let c_offset = clocks.offsets.iter().find(|o| o.node == "10.0.0.3:3").unwrap();
        assert_eq!((c_offset.pairs, c_offset.reference.as_str()), (1, "10.0.0.2:2"));
        assert_receipts_follow_sends(&merged.events);
        assert_sorted(&merged.events);
    }

    #[test]
    fn a_node_reached_only_through_another_gets_the_summed_offset_and_bound() {
        // A-B and B-C pairs; A has the most events so ties go... B still has two pairs.
        let mut c = Cluster::with_skews(&[("10.0.0.2:2", 1_000), ("10.0.0.3:3", 3_000)]);
        for i in 0..3u64 {
            c.send(A, B, 1_000_000 + i * 1_000, 100);
            c.send(B, A, 1_000_200 + i * 1_000, 100);
            c.send(B, C, 1_000_400 + i * 1_000, 100);
            c.send(C, B, 1_000_600 + i * 1_000, 100);
        }
        let clocks = merge_with_clocks(c.per_node()).clocks;
        assert_eq!(clocks.offset_of("10.0.0.3:3") - clocks.offset_of("10.0.0.1:1"), 3_000);
    }

    #[test]
    fn one_way_messages_keep_clocks_that_agree_and_fix_those_that_cannot() {
        // Only A -> B. B 2 ms behind: receipts would precede sends, so B is moved.
        let mut c = Cluster::with_skews(&[("10.0.0.2:2", -2_000)]);
        for i in 0..3u64 {
            c.send(A, B, 1_000_000 + i * 1_000, 150);
        }
        let merged = merge_with_clocks(c.per_node());
        // Moved just enough: the fastest message is taken as instantaneous.
        assert_eq!(merged.clocks.offset_of("10.0.0.2:2") - merged.clocks.offset_of("10.0.0.1:1"), -1_850);
        assert_receipts_follow_sends(&merged.events);
        // B 2 ms ahead: nothing contradicts it, so the clocks are left alone.
        let mut c = Cluster::with_skews(&[("10.0.0.2:2", 2_000)]);
        c.send(A, B, 1_000_000, 150);
        let clocks = merge_with_clocks(c.per_node()).clocks;
        assert_eq!(clocks.offset_of("10.0.0.2:2") - clocks.offset_of("10.0.0.1:1"), 0);
    }

    #[test]
    fn a_triangle_whose_chain_estimate_breaks_a_direct_bound_is_repaired() {
        // A<->B and B<->C both ways (asymmetric delays fool the midpoints); A -> C
        // directly, one way, fast. The chain estimate for C would put that receipt
        // before its send; enforcing the bound fixes it.
        let mut c = Cluster::with_skews(&[]);
        for i in 0..3u64 {
            c.send(A, B, 1_000_000 + i * 10_000, 2_000);
            c.send(B, A, 1_002_100 + i * 10_000, 100);
            c.send(B, C, 1_002_300 + i * 10_000, 2_000);
            c.send(C, B, 1_004_400 + i * 10_000, 100);
            c.send(A, C, 1_006_000 + i * 10_000, 10);
        }
        let merged = merge_with_clocks(c.per_node());
        assert!(!merged.clocks.inconsistent);
        assert_eq!(merged.clocks.clamped, 0);
        assert_receipts_follow_sends(&merged.events);
        assert_sorted(&merged.events);
    }

    #[test]
    fn contradicting_bounds_clamp_receipts_after_their_sends() {
        // B's clock drifts by 10 ms between the first and the second exchange.
        let mut events = vec![
            event(EventKind::Send, 1_000, A, B, "k", 1),
            event(EventKind::Recv, 1_100, A, B, "k", 1),
            event(EventKind::Send, 1_200, B, A, "k", 2),
            event(EventKind::Recv, 1_300, B, A, "k", 2),
            event(EventKind::Send, 50_000, A, B, "k", 3),
            event(EventKind::Recv, 40_100, A, B, "k", 3),
            event(EventKind::Send, 40_200, B, A, "k", 4),
            event(EventKind::Recv, 50_300, B, A, "k", 4),
        ];
        events.reverse();
        let merged = merge_with_clocks(events);
        assert!(merged.clocks.clamped > 0);
        assert_receipts_follow_sends(&merged.events);
        assert_sorted(&merged.events);
        for node in ["10.0.0.1:1", "10.0.0.2:2"] {
            let ids: Vec<u64> = merged.events.iter().filter(|e| e.node == node).map(|e| e.id.0).collect();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(ids, sorted, "{node}'s events keep their order");
        }
    }

    #[test]
    fn events_of_one_node_keep_their_order_and_duplicates_go() {
        let mut c = Cluster::with_skews(&[("10.0.0.2:2", 700)]);
        for i in 0..20u64 {
            c.send(A, B, 1_000_000 + i * 50, 30 + i % 7);
            c.send(B, A, 1_000_010 + i * 50, 30 + i % 5);
        }
        let mut input = c.per_node();
        input.extend(c.per_node()); // the same node read twice (a dump and a file)
        let merged = merge(input);
        assert_eq!(merged.len(), c.events.len());
        for node in ["10.0.0.1:1", "10.0.0.2:2"] {
            let original: Vec<_> =
                c.per_node().into_iter().filter(|e| e.node == node).map(|e| e.id).collect();
            let after: Vec<_> = merged.iter().filter(|e| e.node == node).map(|e| e.id).collect();
            assert_eq!(original, after);
        }
        assert_receipts_follow_sends(&merged);
    }

    #[test]
    fn damaged_times_neither_panic_nor_break_the_order() {
        let mut events = Vec::new();
        for (i, time) in [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 5].into_iter().enumerate() {
            let id = i as u64 / 2 + 1;
            let kind = if i % 2 == 0 { EventKind::Send } else { EventKind::Recv };
            events.push(event(kind, time, A, B, "k", id));
            events.push(event(kind, time, B, A, "k", id + 10));
        }
        // These times also make a causal cycle (each node receives, before its own
        // send, a message the other sends after its receipt): no order satisfies
        // both, so only the time order is asserted.
        let merged = merge_with_clocks(events);
        assert_eq!(merged.events.len(), 12);
        assert_sorted(&merged.events);
        let mut out = Vec::new();
        crate::cli::trace::render_terminal::render_diagram(&merged.events, 80, &mut out).unwrap();
        crate::cli::trace::render_perfetto::render_perfetto(&merged.events, &mut out).unwrap();
        crate::cli::trace::render_mermaid::render_mermaid(&merged.events, &HashMap::new(), &mut out).unwrap();
        crate::cli::trace::timeline::timeline(&merged.events, "t");
    }

    #[test]
    fn a_live_merger_keeps_its_first_reference() {
        let mut merger = Merger::with_capacity(100);
        let mut c = Cluster::with_skews(&[("10.0.0.2:2", 1_000)]);
        c.send(A, B, 1_000_000, 100);
        c.send(B, A, 1_000_500, 100);
        merger.observe(&c.per_node());
        assert_eq!(merger.clocks().reference.as_deref(), Some("10.0.0.1:1"));
        // C then talks to B only: B has the most pairs, but A stays the reference.
        let mut later = Cluster::with_skews(&[("10.0.0.2:2", 1_000)]);
        later.send(B, C, 2_000_000, 100);
        later.send(C, B, 2_000_500, 100);
        merger.observe(&later.per_node());
        let clocks = merger.clocks();
        assert_eq!(clocks.reference.as_deref(), Some("10.0.0.1:1"));
        assert_eq!((clocks.offset_of("10.0.0.2:2"), clocks.offset_of("10.0.0.3:3")), (1_000, 0));
    }

    #[test]
    fn unconnected_nodes_keep_their_clocks() {
        let events = vec![event(EventKind::Send, 5, A, B, "k", 1), event(EventKind::Recv, 7, C, C, "k", 2)];
        let merged = merge_with_clocks(events);
        assert_eq!(merged.clocks.offsets.len(), 2);
        assert!(merged.clocks.offsets.iter().all(|o| o.offset_us == 0 && o.node == o.reference));
        assert_eq!(merged.events.iter().map(|e| e.time_us).collect::<Vec<_>>(), vec![5, 7]);
        assert_eq!(
            merged.clocks.describe(),
            vec![
                "clock 10.0.0.1:1: reference",
                "clock 10.0.0.3:3: as recorded (no messages with the other nodes)"
            ]
        );
    }
}
