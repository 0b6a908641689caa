//! When the batch asks the master about its attempts in flight, decided purely.
//!
//! At once on every subscription, first or after a master failover: a new master
//! knows nothing of a launch the old one accepted and never delivered, and only a
//! reconciliation makes it say so (TASK_LOST, which the batch retries). Then again
//! with exponential backoff while attempts are in flight, because an answer is not
//! guaranteed: a master says nothing about tasks on an agent that has not
//! reregistered with it yet, and the reconciliation itself can be lost.

use std::time::Duration;

/// The first delay after a subscription.
pub const FIRST_DELAY: Duration = Duration::from_secs(2);
/// The longest delay between two reconciliations.
pub const MAX_DELAY: Duration = Duration::from_secs(120);

/// The reconciliation schedule of one scheduler.
#[derive(Debug, Default)]
pub struct Reconciler {
    /// Counts subscriptions; a tick of an older one is stale.
    round: u64,
    delay: Duration,
}

impl Reconciler {
    /// A subscription: reconcile now, and tick `round` after the delay returned.
    pub fn subscribed(&mut self) -> (u64, Duration) {
        self.round += 1;
        self.delay = FIRST_DELAY;
        (self.round, self.delay)
    }

    /// A tick of `round`: `None` if a later subscription replaced it (its own
    /// ticks run); otherwise reconcile now and tick again after the delay returned.
    pub fn tick(&mut self, round: u64) -> Option<Duration> {
        if round != self.round {
            return None;
        }
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Some(self.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_back_off_to_a_cap_and_a_resubscription_starts_over() {
        let mut reconciler = Reconciler::default();
        let (round, first) = reconciler.subscribed();
        assert_eq!(first, FIRST_DELAY);
        let delays: Vec<Duration> = (0..10).map(|_| reconciler.tick(round).expect("current")).collect();
        assert_eq!(delays[0], FIRST_DELAY * 2);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), MAX_DELAY);
        let (next, again) = reconciler.subscribed();
        assert_eq!(again, FIRST_DELAY);
        assert_eq!(reconciler.tick(round), None, "the old subscription's ticks stop");
        assert_eq!(reconciler.tick(next), Some(FIRST_DELAY * 2));
    }
}
