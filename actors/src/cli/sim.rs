//! `keel sim`: runs simulated schedules (see `keel-sim`) and prints what they found.
//! One seed prints its report (the event sequence's hash, to compare replays); many
//! print each violation and a closing `seeds=... violations=...` line.

use std::time::{Duration, Instant};

use keel_sim::{Faults, SimConfig};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The first seed.
    pub seed_base: u64,
    /// How many seeds, from `seed_base`.
    pub seeds: u64,
    /// The faults (`all`, `none`, or a list).
    pub faults: Faults,
    /// Masters (one leads at a time).
    pub masters: usize,
    /// Agents.
    pub agents: usize,
    /// Frameworks.
    pub frameworks: usize,
    /// Jobs per framework.
    pub jobs: usize,
    /// How long faults are injected.
    pub duration: Duration,
    /// How many of the last events a violation shows.
    pub events: usize,
}

/// Parses `90s`, `10m`, `2h` (or plain seconds): at most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 90s or 10m"))?;
    let secs = match unit {
        "s" | "secs" => value,
        "m" | "mins" => value * 60.0,
        "h" | "hrs" => value * 3600.0,
        _ => return Err(format!("unknown unit in {text:?} (use s, m or h)")),
    };
    keel_proto::time::duration_from_secs(secs)
        .filter(|d| *d <= Duration::from_secs(24 * 3600) && !d.is_zero())
        .ok_or_else(|| format!("{text:?} must be more than zero and at most a day"))
}

/// Runs the schedules, prints to `out`, and returns how many seeds had violations.
pub fn run(options: &SimOptions, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
    let started = Instant::now();
    let mut simulated = 0.0;
    let mut violating = 0;
    for seed in options.seed_base..options.seed_base.saturating_add(options.seeds) {
        let config = SimConfig {
            seed,
            masters: options.masters,
            agents: options.agents,
            frameworks: options.frameworks,
            jobs_per_framework: options.jobs,
            duration: options.duration,
            settle_limit: Duration::from_secs(1200),
            faults: options.faults.clone(),
            recent_events: options.events,
        };
        let report = keel_sim::run(&config);
        simulated += report.sim_seconds;
        if options.seeds == 1 {
            writeln!(out, "{}", report.summary())?;
            let faults: Vec<String> =
                report.faults_injected.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                out,
                "faults injected: {}",
                if faults.is_empty() { "none".into() } else { faults.join(" ") }
            )?;
            let observed: Vec<String> = report.observed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                out,
                "observed: {}",
                if observed.is_empty() { "nothing".into() } else { observed.join(" ") }
            )?;
        } else {
            for violation in &report.violations {
                write!(out, "{violation}")?;
            }
        }
        if !report.violations.is_empty() {
            violating += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64().max(1e-9);
    writeln!(
        out,
        "seeds={} violations={violating} sim_seconds_per_wall_second={:.0} faults={} agents={} frameworks={} duration={}s",
        options.seeds,
        simulated / wall,
        options.faults,
        options.agents,
        options.frameworks,
        options.duration.as_secs()
    )?;
    Ok(violating)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_absurd_values() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["0s", "-1m", "x", "1e30h", "25h", "3d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_seed_prints_its_hash_and_the_same_seed_the_same_hash() {
        let options = SimOptions {
            seed_base: 3,
            seeds: 1,
            faults: Faults::all(),
            masters: 3,
            agents: 2,
            frameworks: 2,
            jobs: 5,
            duration: Duration::from_secs(30),
            events: 40,
        };
        let (mut first, mut second) = (Vec::new(), Vec::new());
        assert_eq!(run(&options, &mut first).unwrap(), 0);
        run(&options, &mut second).unwrap();
        let hash = |out: &[u8]| {
            let text = String::from_utf8_lossy(out).to_string();
            text.split_whitespace().find(|w| w.starts_with("hash=")).map(str::to_string).unwrap()
        };
        assert_eq!(hash(&first), hash(&second));
        assert!(String::from_utf8_lossy(&first).contains("seeds=1 violations=0"));
    }
}
