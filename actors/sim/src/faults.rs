//! Which faults a schedule injects and how often. Every rate is per simulated
//! minute (for events) or a probability (per message, per registry write).

use std::fmt;

/// The faults of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a message is held back up to `max_delay_ms` (reordering it).
    pub delay: f64,
    /// The longest extra delay, in milliseconds.
    pub max_delay_ms: u64,
    /// Partitions (one-way or two-way, connections broken or silent) per minute.
    pub partitions_per_minute: f64,
    /// Agent crashes (and restarts) per minute.
    pub agent_crashes_per_minute: f64,
    /// Master crashes (and restarts; its registry survives) per minute.
    pub master_crashes_per_minute: f64,
    /// Scheduler crashes (and failovers to a new instance) per minute.
    pub scheduler_crashes_per_minute: f64,
    /// Masters stopped (SIGSTOP) for up to 8 s, then continued, per minute: a
    /// leader stopped past its lease is deposed and must stop serving when it runs.
    pub master_pauses_per_minute: f64,
    /// Probability that a registry write fails (the master aborts and restarts).
    pub registry_failure: f64,
    /// Probability that a container cannot be launched.
    pub launch_failure: f64,
}

/// The fault names `--faults` takes.
pub const NAMES: &[&str] = &["drop", "dup", "delay", "partition", "crash", "pause", "registry", "launch"];

impl Faults {
    /// No faults at all.
    pub fn none() -> Faults {
        Faults {
            drop: 0.0,
            duplicate: 0.0,
            delay: 0.0,
            max_delay_ms: 0,
            partitions_per_minute: 0.0,
            agent_crashes_per_minute: 0.0,
            master_crashes_per_minute: 0.0,
            scheduler_crashes_per_minute: 0.0,
            master_pauses_per_minute: 0.0,
            registry_failure: 0.0,
            launch_failure: 0.0,
        }
    }

    /// Every fault at its default rate.
    pub fn all() -> Faults {
        Faults::parse("all").unwrap_or_else(|_| Faults::none())
    }

    /// Parses a comma-separated list of [`NAMES`] (or `all`, or `none`).
    pub fn parse(list: &str) -> Result<Faults, String> {
        let mut faults = Faults::none();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let names: Vec<&str> = if name == "all" { NAMES.to_vec() } else { vec![name] };
            for name in names {
                match name {
                    "none" => {}
                    "drop" => faults.drop = 0.02,
                    "dup" => faults.duplicate = 0.02,
                    "delay" => {
                        faults.delay = 0.05;
                        faults.max_delay_ms = 3_000;
                    }
                    "partition" => faults.partitions_per_minute = 1.0,
                    "crash" => {
                        faults.agent_crashes_per_minute = 0.5;
                        faults.master_crashes_per_minute = 0.2;
                        faults.scheduler_crashes_per_minute = 0.3;
                    }
                    "pause" => faults.master_pauses_per_minute = 0.3,
                    "registry" => faults.registry_failure = 0.005,
                    "launch" => faults.launch_failure = 0.02,
                    other => {
                        return Err(format!(
                            "unknown fault {other:?} (known: all, none, {})",
                            NAMES.join(", ")
                        ))
                    }
                }
            }
        }
        Ok(faults)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut on = Vec::new();
        if self.drop > 0.0 {
            on.push("drop");
        }
        if self.duplicate > 0.0 {
            on.push("dup");
        }
        if self.delay > 0.0 {
            on.push("delay");
        }
        if self.partitions_per_minute > 0.0 {
            on.push("partition");
        }
        if self.agent_crashes_per_minute + self.master_crashes_per_minute + self.scheduler_crashes_per_minute
            > 0.0
        {
            on.push("crash");
        }
        if self.master_pauses_per_minute > 0.0 {
            on.push("pause");
        }
        if self.registry_failure > 0.0 {
            on.push("registry");
        }
        if self.launch_failure > 0.0 {
            on.push("launch");
        }
        if on.is_empty() {
            on.push("none");
        }
        f.write_str(&on.join(","))
    }
}
