//! Test fixtures: events built by hand, and a small cluster whose nodes' clocks are
//! skewed by known amounts, so merges can be checked against the true times.

use std::collections::{BTreeMap, HashMap};

use keel_kernel::trace::{EventKind, MessageId, TraceEvent};

/// The `host:port` of a UPID.
fn address(upid: &str) -> &str {
    upid.split_once('@').map_or(upid, |(_, address)| address)
}

/// An event recorded where it happens: a send on the sender's node, anything else on
/// the receiver's (drops on the sender's).
pub(crate) fn event(event: EventKind, time_us: u64, from: &str, to: &str, kind: &str, id: u64) -> TraceEvent {
    let node = match event {
        EventKind::Recv => address(to),
        _ => address(from),
    };
    TraceEvent {
        time_us,
        node: node.to_string(),
        event,
        from: from.to_string(),
        to: to.to_string(),
        kind: kind.to_string(),
        size: 100,
        id: MessageId(id),
        parent: MessageId::NONE,
        reason: None,
        subjects: BTreeMap::new(),
    }
}

/// One message to record in a [`Cluster`].
pub(crate) struct Hop<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub kind: &'a str,
    /// True send time (before skew).
    pub at_us: u64,
    /// True one-way delay; `None`: it never arrives (no receipt recorded).
    pub delay_us: Option<u64>,
    pub parent: u64,
    pub subjects: &'a [(&'a str, &'a str)],
}

/// Events of a cluster whose nodes' clocks read `true time + skew`.
#[derive(Default)]
pub(crate) struct Cluster {
    pub events: Vec<TraceEvent>,
    pub skew_us: HashMap<String, i64>,
    next_id: u64,
}

impl Cluster {
    /// A cluster where node `host:port` has the given skews.
    pub fn with_skews(skews: &[(&str, i64)]) -> Cluster {
        Cluster {
            events: Vec::new(),
            skew_us: skews.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
            next_id: 0x100,
        }
    }

    fn clock(&self, node: &str, true_us: u64) -> u64 {
        let skew = self.skew_us.get(node).copied().unwrap_or(0);
        (true_us as i64 + skew) as u64
    }

    /// Records the send and (unless lost) the receipt of one message; returns its id.
    pub fn hop(&mut self, hop: Hop<'_>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let subjects: BTreeMap<String, String> =
            hop.subjects.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut send = event(EventKind::Send, 0, hop.from, hop.to, hop.kind, id);
        send.time_us = self.clock(&send.node.clone(), hop.at_us);
        send.parent = MessageId(hop.parent);
        send.subjects = subjects.clone();
        self.events.push(send);
        if let Some(delay) = hop.delay_us {
            let mut recv = event(EventKind::Recv, 0, hop.from, hop.to, hop.kind, id);
            recv.time_us = self.clock(&recv.node.clone(), hop.at_us + delay);
            recv.parent = MessageId(hop.parent);
            recv.subjects = subjects;
            self.events.push(recv);
        }
        id
    }

    /// A plain message `from -> to` at `at_us` taking `delay_us`.
    pub fn send(&mut self, from: &str, to: &str, at_us: u64, delay_us: u64) -> u64 {
        self.hop(Hop {
            from,
            to,
            kind: "keel.test.Ping",
            at_us,
            delay_us: Some(delay_us),
            parent: 0,
            subjects: &[],
        })
    }

    /// Adds a drop or fault recorded on `node` at true time `at_us`.
    pub fn mishap(&mut self, id: u64, kind: EventKind, node: &str, at_us: u64, reason: &str) {
        let send = self.events.iter().find(|e| e.id == MessageId(id)).expect("a recorded message").clone();
        self.events.push(TraceEvent {
            time_us: self.clock(node, at_us),
            node: node.to_string(),
            event: kind,
            reason: Some(reason.to_string()),
            ..send
        });
    }

    /// The events as each node would have them: grouped by node, in time order.
    pub fn per_node(&self) -> Vec<TraceEvent> {
        let mut events = self.events.clone();
        events.sort_by(|a, b| a.node.cmp(&b.node).then(a.time_us.cmp(&b.time_us)));
        events
    }
}

/// A task's life on a scheduler (node :7000), a master (:5050) and an agent (:5051):
/// the accept, the launch, RUNNING and FINISHED updates with their acknowledgements.
/// Returns the cluster and the id of the RunTask.
pub(crate) fn task_story(skews: &[(&str, i64)]) -> (Cluster, u64) {
    const SCHED: &str = "sched@10.0.0.9:7000";
    const MASTER: &str = "master@10.0.0.1:5050";
    const AGENT: &str = "agent@10.0.0.2:5051";
    let mut c = Cluster::with_skews(skews);
    let task: &[(&str, &str)] = &[("framework", "F1"), ("agent", "A1"), ("task", "t1")];
    let framework: &[(&str, &str)] = &[("framework", "F1")];
    let t0 = 1_800_000_000_000_000;
    let offers = c.hop(Hop {
        from: MASTER,
        to: SCHED,
        kind: "keel.scheduler.Offers",
        at_us: t0,
        delay_us: Some(300),
        parent: 0,
        subjects: framework,
    });
    let accept = c.hop(Hop {
        from: SCHED,
        to: MASTER,
        kind: "keel.scheduler.Accept",
        at_us: t0 + 1_000,
        delay_us: Some(300),
        parent: offers,
        subjects: framework,
    });
    let run = c.hop(Hop {
        from: MASTER,
        to: AGENT,
        kind: "keel.agent.RunTask",
        at_us: t0 + 1_500,
        delay_us: Some(200),
        parent: accept,
        subjects: task,
    });
    let update_and_ack = |c: &mut Cluster, at: u64, parent: u64, state: &str| {
        let subjects: Vec<(&str, &str)> = task.iter().copied().chain([("state", state)]).collect();
        let update = c.hop(Hop {
            from: AGENT,
            to: MASTER,
            kind: "keel.common.StatusUpdate",
            at_us: at,
            delay_us: Some(200),
            parent,
            subjects: &subjects,
        });
        let forward = c.hop(Hop {
            from: MASTER,
            to: SCHED,
            kind: "keel.common.StatusUpdate",
            at_us: at + 300,
            delay_us: Some(300),
            parent: update,
            subjects: &subjects,
        });
        let ack = c.hop(Hop {
            from: SCHED,
            to: MASTER,
            kind: "keel.common.StatusUpdateAcknowledgement",
            at_us: at + 700,
            delay_us: Some(300),
            parent: forward,
            subjects: task,
        });
        c.hop(Hop {
            from: MASTER,
            to: AGENT,
            kind: "keel.common.StatusUpdateAcknowledgement",
            at_us: at + 1_100,
            delay_us: Some(200),
            parent: ack,
            subjects: task,
        });
    };
    update_and_ack(&mut c, t0 + 3_000, run, "TASK_RUNNING");
    update_and_ack(&mut c, t0 + 10_000, 0, "TASK_FINISHED");
    (c, run)
}
