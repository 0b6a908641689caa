//! Keel's deterministic simulator: the real decision cores (master, allocator,
//! agents, scheduler drivers) run on one thread against a simulated clock, network,
//! registry, disk and containers, with faults drawn from a seed, while named
//! invariants are checked all the time and at quiescence. The same seed replays the
//! same event sequence exactly; [`Report::hash`] fingerprints it.
//!
//! Architecture invariant: no I/O, no clock, no threads, no global randomness;
//! everything random comes from the seed. It depends on `keel-core`, never on the
//! shells, so what it tests is what the binaries decide.
//!
//! ```
//! let report = keel_sim::run(&keel_sim::SimConfig::new(7));
//! assert!(report.violations.is_empty(), "{}", report.summary());
//! ```

mod faults;
mod frameworks;
mod invariants;
mod network;
mod world;

use std::time::Duration;

pub use faults::Faults;
pub use invariants::Violation;

/// One simulated schedule.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed: everything random in the run comes from it.
    pub seed: u64,
    /// Number of masters (one leads at a time, elected on a lease).
    pub masters: usize,
    /// Number of agents.
    pub agents: usize,
    /// Number of frameworks (kinds in turn: batch with retries, partition-aware,
    /// one whose scheduler fails over to new instances).
    pub frameworks: usize,
    /// Jobs each framework runs.
    pub jobs_per_framework: usize,
    /// How long faults are injected; then the cluster heals and must settle.
    pub duration: Duration,
    /// How long the cluster has to settle after the faults stop.
    pub settle_limit: Duration,
    /// Which faults, how often.
    pub faults: Faults,
    /// How many of the last events a violation shows.
    pub recent_events: usize,
}

impl SimConfig {
    /// A small default schedule (3 masters, 3 agents, 3 frameworks, 2 minutes of
    /// faults of every kind) for `seed`.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            masters: 3,
            agents: 3,
            frameworks: 3,
            jobs_per_framework: 20,
            duration: Duration::from_secs(120),
            settle_limit: Duration::from_secs(1200),
            faults: Faults::all(),
            recent_events: 40,
        }
    }
}

/// What one run did and found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Invariants that did not hold.
    pub violations: Vec<Violation>,
    /// A hash of the whole event sequence: equal for equal seeds and code.
    pub hash: u64,
    /// Simulated seconds the run covered.
    pub sim_seconds: f64,
    /// Events processed.
    pub events: u64,
    /// Tasks the frameworks launched.
    pub tasks_launched: u64,
    /// Faults injected, by kind.
    pub faults_injected: std::collections::BTreeMap<&'static str, u64>,
    /// What the faults led to, by kind: elections, lapsed leases, fenced writes,
    /// deposed masters stepping down, agents recovering their tasks.
    pub observed: std::collections::BTreeMap<&'static str, u64>,
}

impl Report {
    /// One line: the seed, the hash, the counts, and the first violation if any.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "seed={} hash={:016x} sim_seconds={:.0} events={} tasks={} violations={}",
            self.seed,
            self.hash,
            self.sim_seconds,
            self.events,
            self.tasks_launched,
            self.violations.len()
        );
        if let Some(v) = self.violations.first() {
            line.push_str(&format!("\n{v}"));
        }
        line
    }
}

/// Runs one schedule.
pub fn run(config: &SimConfig) -> Report {
    world::World::new(config).run()
}
