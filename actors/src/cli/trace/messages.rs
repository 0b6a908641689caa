//! Events grouped by message: a message's send, its receipt(s), and any drop or
//! fault, with the corrected times of each. The renderers draw one arrow per
//! message, the timeline one hop per message.

use std::collections::{BTreeMap, HashMap};

use keel_kernel::trace::{EventKind, MessageId, TraceEvent};

/// Something that happened to a message besides its send and receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mishap {
    /// When (corrected microseconds since the epoch).
    pub time_us: u64,
    /// The node that recorded it.
    pub node: String,
    /// A drop or an injected fault.
    pub event: EventKind,
    /// Why, as recorded.
    pub reason: Option<String>,
}

/// One message and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its id (`MessageId::NONE` for the odd event recorded without one).
    pub id: MessageId,
    /// The message being handled when it was sent.
    pub parent: MessageId,
    /// The full kind name.
    pub kind: String,
    /// The sender's UPID.
    pub from: String,
    /// The receiver's UPID.
    pub to: String,
    /// The body's size.
    pub size: u64,
    /// What the message is about.
    pub subjects: BTreeMap<String, String>,
    /// When it was sent, if the sender's node was traced.
    pub sent_us: Option<u64>,
    /// When it was first received, if the receiver's node was traced and it arrived.
    pub received_us: Option<u64>,
    /// How many receipts were recorded (more than one: duplicated on the way).
    pub receipts: usize,
    /// Drops and faults, in order.
    pub mishaps: Vec<Mishap>,
}

/// How a message ended, as far as the traces tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Received.
    Delivered,
    /// Dropped (unknown target, full mailbox, unreachable node...).
    Dropped,
    /// Lost to an injected fault.
    Faulted,
    /// Sent, and no receipt, drop or fault recorded (the receiver's node may not be traced).
    Unknown,
}

impl Message {
    /// When it is drawn: its send, or the first thing recorded about it.
    pub fn at_us(&self) -> u64 {
        let first_mishap = self.mishaps.iter().map(|m| m.time_us).min();
        self.sent_us.or(self.received_us).or(first_mishap).unwrap_or(0)
    }

    /// Send to first receipt, on the corrected clocks.
    pub fn latency_us(&self) -> Option<u64> {
        Some(self.received_us?.saturating_sub(self.sent_us?))
    }

    /// How it ended.
    pub fn outcome(&self) -> Outcome {
        if self.received_us.is_some() {
            Outcome::Delivered
        } else if self.mishaps.iter().any(|m| m.event == EventKind::Drop) {
            Outcome::Dropped
        } else if self.mishaps.iter().any(|m| m.event == EventKind::Fault) {
            Outcome::Faulted
        } else {
            Outcome::Unknown
        }
    }

    /// The subject `name`, if the message has it.
    pub fn subject(&self, name: &str) -> Option<&str> {
        self.subjects.get(name).map(String::as_str)
    }

    fn new(event: &TraceEvent) -> Message {
        Message {
            id: event.id,
            parent: event.parent,
            kind: event.kind.clone(),
            from: event.from.clone(),
            to: event.to.clone(),
            size: event.size,
            subjects: event.subjects.clone(),
            sent_us: None,
            received_us: None,
            receipts: 0,
            mishaps: Vec::new(),
        }
    }

    fn add(&mut self, event: &TraceEvent) {
        if self.parent.is_none() {
            self.parent = event.parent;
        }
        for (key, value) in &event.subjects {
            self.subjects.entry(key.clone()).or_insert_with(|| value.clone());
        }
        match event.event {
            EventKind::Send => {
                self.sent_us = Some(self.sent_us.map_or(event.time_us, |t| t.min(event.time_us)));
            }
            EventKind::Recv => {
                self.receipts += 1;
                self.received_us = Some(self.received_us.map_or(event.time_us, |t| t.min(event.time_us)));
            }
            EventKind::Drop | EventKind::Fault => self.mishaps.push(Mishap {
                time_us: event.time_us,
                node: event.node.clone(),
                event: event.event,
                reason: event.reason.clone(),
            }),
        }
    }
}

/// Groups events (already merged) by message id, in the order of [`Message::at_us`]
/// (ties in the order the messages first appear). Events without an id stay alone.
pub fn group(events: &[TraceEvent]) -> Vec<Message> {
    let mut messages: Vec<Message> = Vec::new();
    let mut index: HashMap<MessageId, usize> = HashMap::new();
    for event in events {
        let slot = if event.id.is_none() { None } else { index.get(&event.id).copied() };
        let at = match slot {
            Some(at) => at,
            None => {
                messages.push(Message::new(event));
                if !event.id.is_none() {
                    index.insert(event.id, messages.len() - 1);
                }
                messages.len() - 1
            }
        };
        messages[at].add(event);
    }
    messages.sort_by_key(Message::at_us);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::trace::testing::event;

    #[test]
    fn a_message_gathers_its_send_receipts_and_mishaps() {
        let mut events = vec![
            event(EventKind::Send, 10, "a@h:1", "b@h:2", "k", 7),
            event(EventKind::Recv, 15, "a@h:1", "b@h:2", "k", 7),
            event(EventKind::Recv, 18, "a@h:1", "b@h:2", "k", 7),
            event(EventKind::Send, 12, "b@h:2", "c@h:3", "k", 8),
            event(EventKind::Drop, 13, "b@h:2", "c@h:3", "k", 8),
        ];
        events[4].reason = Some("unreachable".into());
        let messages = group(&events);
        assert_eq!(messages.len(), 2);
        assert_eq!((messages[0].latency_us(), messages[0].receipts), (Some(5), 2));
        assert_eq!(messages[0].outcome(), Outcome::Delivered);
        assert_eq!(messages[1].outcome(), Outcome::Dropped);
        assert_eq!(messages[1].mishaps[0].reason.as_deref(), Some("unreachable"));
    }
}
