//! Which master leads, as a detector sees it: the input agents and scheduler drivers
//! get when the election they observe names a leader. With a fixed master address
//! there is no detector and no such input.
//!
//! A detected master carries its *epoch* (the leader key's creation revision in
//! etcd, the registry term otherwise): epochs only grow, so a detection or a message
//! from a master with an older epoch than one already seen is stale and ignored.

use std::time::Duration;

use keel_message::Upid;

/// The most a follower waits before it moves to a newly detected master, so that
/// thousands of agents do not all reregister in the same millisecond.
pub const MAX_FOLLOW_DELAY: Duration = Duration::from_millis(250);

/// A leading master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedMaster {
    /// The master process.
    pub upid: Upid,
    /// Its epoch (greater for every later leader).
    pub epoch: u64,
}

/// A follow delay in `[0, MAX_FOLLOW_DELAY]`, drawn from the core's seeded RNG.
pub fn follow_delay(rng: &mut fastrand::Rng) -> Duration {
    let max_micros = MAX_FOLLOW_DELAY.as_micros() as u64;
    Duration::from_micros(rng.u64(0..=max_micros))
}
