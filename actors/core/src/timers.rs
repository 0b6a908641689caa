//! Timers a core sets: the core hands out ids and remembers what each means; its
//! shell (or the simulator) fires the id back when it is due. A cancelled or stale
//! id fires into nothing, so a shell need not cancel reliably.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A timer a core asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerId(pub u64);

/// A core's live timers, by id, with what each one is for.
#[derive(Debug, Clone)]
pub struct Timers<T> {
    next: u64,
    live: BTreeMap<u64, T>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers { next: 1, live: BTreeMap::new() }
    }
}

impl<T> Timers<T> {
    /// Records a new timer; the caller emits it with its delay.
    pub fn set(&mut self, kind: T) -> TimerId {
        let id = self.next;
        self.next += 1;
        self.live.insert(id, kind);
        TimerId(id)
    }

    /// The timer fired: what it was for, once (`None` if cancelled or unknown).
    pub fn fire(&mut self, id: TimerId) -> Option<T> {
        self.live.remove(&id.0)
    }

    /// Forgets a timer; true if it was live.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.live.remove(&id.0).is_some()
    }

    /// How many timers are live.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no timer is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// A timer request as a shell executes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetTimer {
    /// The id to fire back.
    pub id: TimerId,
    /// When, from now.
    pub after: Duration,
}
