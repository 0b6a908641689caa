//! `--follow MSGID`: the causal tree of one message. Its ancestors are found by
//! following `parent` (the message being handled when each was sent) up to a message
//! with no parent or one not in the traces; its descendants are every message sent
//! while handling it, and so on down, across nodes. Siblings of the ancestors are
//! left out. An id that is in no trace gives an empty tree.

use std::collections::{HashMap, HashSet};

use keel_kernel::trace::{MessageId, TraceEvent};

/// One message of a tree, as it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRow {
    /// The message.
    pub id: MessageId,
    /// Its depth below the oldest ancestor shown.
    pub depth: usize,
    /// Whether it is the message followed.
    pub followed: bool,
}

/// The causal tree of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CausalTree {
    /// The message followed.
    pub target: MessageId,
    /// Its ancestors, the oldest first (ending with its parent).
    pub ancestors: Vec<MessageId>,
    /// Its descendants, parents before children (depth first, in time order).
    pub descendants: Vec<MessageId>,
    /// The ancestors, the target and the descendants in drawing order.
    pub rows: Vec<TreeRow>,
}

impl CausalTree {
    /// Every message of the tree.
    pub fn ids(&self) -> HashSet<MessageId> {
        self.rows.iter().map(|r| r.id).collect()
    }

    /// The events of the tree's messages, in their order.
    pub fn events(&self, events: &[TraceEvent]) -> Vec<TraceEvent> {
        let ids = self.ids();
        events.iter().filter(|e| ids.contains(&e.id)).cloned().collect()
    }
}

/// The causal tree of `target` in `events` (merged: time order gives child order).
pub fn follow(events: &[TraceEvent], target: MessageId) -> CausalTree {
    let mut parent_of: HashMap<MessageId, MessageId> = HashMap::new();
    let mut children: HashMap<MessageId, Vec<MessageId>> = HashMap::new();
    let mut known: HashSet<MessageId> = HashSet::new();
    for event in events {
        if event.id.is_none() {
            continue;
        }
        known.insert(event.id);
        if !event.parent.is_none() && !parent_of.contains_key(&event.id) {
            parent_of.insert(event.id, event.parent);
            children.entry(event.parent).or_default().push(event.id);
        }
    }
    if target.is_none() || !(known.contains(&target) || children.contains_key(&target)) {
        return CausalTree { target, ..CausalTree::default() };
    }
    let mut ancestors = Vec::new();
    let mut at = target;
    while let Some(parent) = parent_of.get(&at).copied() {
        if parent == target || ancestors.contains(&parent) {
            break; // damaged ids that loop
        }
        // A parent not in the traces is kept: it still names where the chain goes.
        ancestors.push(parent);
        at = parent;
    }
    ancestors.reverse();
    let mut rows: Vec<TreeRow> =
        ancestors.iter().enumerate().map(|(depth, id)| TreeRow { id: *id, depth, followed: false }).collect();
    let base = ancestors.len();
    rows.push(TreeRow { id: target, depth: base, followed: true });
    let mut descendants = Vec::new();
    let mut visited: HashSet<MessageId> = ancestors.iter().copied().chain([target]).collect();
    let mut stack: Vec<(MessageId, usize)> =
        children.get(&target).into_iter().flatten().rev().map(|c| (*c, base + 1)).collect();
    while let Some((id, depth)) = stack.pop() {
        if !visited.insert(id) {
            continue;
        }
        descendants.push(id);
        rows.push(TreeRow { id, depth, followed: false });
        stack.extend(children.get(&id).into_iter().flatten().rev().map(|c| (*c, depth + 1)));
    }
    CausalTree { target, ancestors, descendants, rows }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::trace::merge::merge;
    use crate::cli::trace::testing::task_story;

    #[test]
    fn a_message_has_its_ancestors_and_all_its_descendants() {
        let (cluster, run) = task_story(&[("10.0.0.2:5051", 2_500)]);
        let events = merge(cluster.events.clone());
        let tree = follow(&events, MessageId(run));
        let kinds = |ids: &[MessageId]| -> Vec<String> {
            ids.iter()
                .map(|id| events.iter().find(|e| e.id == *id).map(|e| e.kind.clone()).unwrap_or_default())
                .collect()
        };
        assert_eq!(kinds(&tree.ancestors), vec!["keel.scheduler.Offers", "keel.scheduler.Accept"]);
        // RUNNING's update, its forward, the scheduler's ack, the master's ack: the
        // FINISHED update has no parent in the story, so it is not a descendant.
        assert_eq!(
            kinds(&tree.descendants),
            vec![
                "keel.common.StatusUpdate",
                "keel.common.StatusUpdate",
                "keel.common.StatusUpdateAcknowledgement",
                "keel.common.StatusUpdateAcknowledgement"
            ]
        );
        let depths: Vec<usize> = tree.rows.iter().map(|r| r.depth).collect();
        assert_eq!(depths, vec![0, 1, 2, 3, 4, 5, 6]);
        assert!(tree.rows[2].followed);
        assert_eq!(tree.events(&events).len(), 14, "a send and a receipt of each of 7 messages");
        // From the top: the whole chain is a descendant.
        let top = follow(&events, tree.ancestors[0]);
        assert!(top.ancestors.is_empty());
        assert_eq!(top.descendants.len(), 6);
    }

    #[test]
    fn an_unknown_id_gives_an_empty_tree() {
        let (cluster, _) = task_story(&[]);
        let tree = follow(&cluster.events, MessageId(0xdead_beef));
        assert!(tree.rows.is_empty() && tree.events(&cluster.events).is_empty());
        assert!(follow(&cluster.events, MessageId::NONE).rows.is_empty());
    }

    #[test]
    fn a_parent_missing_from_the_traces_is_still_named_and_cycles_end() {
        use keel_kernel::trace::EventKind;

        use crate::cli::trace::testing::event;
        let mut a = event(EventKind::Send, 1, "x@h:1", "y@h:2", "k", 1);
        a.parent = MessageId(99); // not traced
        let mut b = event(EventKind::Send, 2, "y@h:2", "x@h:1", "k", 2);
        b.parent = MessageId(1);
        let tree = follow(&[a.clone(), b.clone()], MessageId(2));
        assert_eq!(tree.ancestors, vec![MessageId(99), MessageId(1)]);
        // Damaged ids that loop: 1 -> 2 -> 1.
        a.parent = MessageId(2);
        let tree = follow(&[a, b], MessageId(2));
        assert_eq!(tree.ancestors, vec![MessageId(1)]);
        assert!(tree.descendants.is_empty());
    }
}
