//! The simulator in `cargo test`: a few hundred seeds per fault profile must keep
//! every invariant, every seed of the regression list still must, and the same
//! seed must replay the same event sequence. A failing seed is printed with its
//! invariant and last events; `keel sim --seed S` replays it.

use std::time::Duration;

use keel_sim::{Faults, SimConfig};

/// Seeds per profile (`KEEL_SIM_SEEDS` overrides, e.g. for a long run).
fn seeds_per_profile() -> u64 {
    std::env::var("KEEL_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200)
}

fn small(seed: u64, faults: &str) -> SimConfig {
    SimConfig {
        seed,
        masters: 3,
        agents: 3,
        frameworks: 3,
        jobs_per_framework: 15,
        duration: Duration::from_secs(120),
        settle_limit: Duration::from_secs(1200),
        faults: Faults::parse(faults).expect("known faults"),
        recent_events: 40,
    }
}

fn profile(faults: &str, base: u64) {
    let mut failures = Vec::new();
    for seed in base..base + seeds_per_profile() {
        let report = keel_sim::run(&small(seed, faults));
        if !report.violations.is_empty() {
            failures.push(report.summary());
        }
    }
    assert!(
        failures.is_empty(),
        "faults={faults}: {} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn no_faults() {
    profile("none", 0);
}

#[test]
fn lost_duplicated_and_delayed_messages() {
    profile("drop,dup,delay", 10_000);
}

#[test]
fn partitions() {
    profile("partition", 20_000);
}

#[test]
fn crashes_of_agents_masters_and_schedulers() {
    profile("crash", 30_000);
}

#[test]
fn registry_and_launch_failures() {
    profile("registry,launch", 40_000);
}

#[test]
fn every_fault_at_once() {
    profile("all", 50_000);
}

#[test]
fn the_regression_list_holds() {
    let list = include_str!("../regressions.txt");
    let mut replayed = 0;
    for line in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> u64 { fields[i].parse().unwrap_or_else(|_| panic!("bad line {line:?}")) };
        let config = SimConfig {
            seed: number(0),
            masters: number(1) as usize,
            agents: number(2) as usize,
            frameworks: number(3) as usize,
            jobs_per_framework: number(4) as usize,
            duration: Duration::from_secs(number(5)),
            settle_limit: Duration::from_secs(1200),
            faults: Faults::all(),
            recent_events: 40,
        };
        let report = keel_sim::run(&config);
        assert!(
            report.violations.is_empty(),
            "regression seed {} is back:\n{}",
            config.seed,
            report.summary()
        );
        replayed += 1;
    }
    assert!(replayed >= 10, "the regression list is read");
}

#[test]
fn the_readme_shows_every_regression_seed() {
    let readme = include_str!("../../../README.md");
    for line in
        include_str!("../regressions.txt").lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let fields: Vec<&str> = line.split_whitespace().take(6).collect();
        let entry = format!("- `{}`", fields.join(" "));
        assert!(readme.contains(&entry), "README.md does not list regression seed {entry}");
    }
}

#[test]
fn the_same_seed_replays_the_same_events() {
    for seed in [1, 2, 3] {
        let first = keel_sim::run(&small(seed, "all"));
        let again = keel_sim::run(&small(seed, "all"));
        assert_eq!((first.hash, first.events), (again.hash, again.events), "seed {seed} did not replay");
        assert!(first.tasks_launched > 0);
    }
    assert_ne!(keel_sim::run(&small(1, "all")).hash, keel_sim::run(&small(2, "all")).hash);
}

#[test]
fn faults_are_injected_when_asked_and_only_then() {
    let quiet = keel_sim::run(&small(5, "none"));
    assert!(quiet.faults_injected.is_empty(), "{:?}", quiet.faults_injected);
    let mut config = small(5, "partition,crash");
    config.duration = Duration::from_secs(600);
    let noisy = keel_sim::run(&config);
    assert!(noisy.faults_injected.keys().any(|k| k.starts_with("partition")), "{:?}", noisy.faults_injected);
    assert!(noisy.faults_injected.keys().any(|k| k.ends_with("crash")), "{:?}", noisy.faults_injected);
}

#[test]
fn failovers_fencing_and_agent_recovery_are_exercised() {
    // The schedules must keep reaching the paths this simulator exists for.
    let mut observed = std::collections::BTreeMap::new();
    for seed in 60_000..60_040 {
        let mut config = small(seed, "all");
        // Stopped leaders are what deposed masters and fenced writes come from.
        config.faults.master_pauses_per_minute = 3.0;
        config.agents = 10;
        config.jobs_per_framework = 40;
        config.duration = Duration::from_secs(600);
        let report = keel_sim::run(&config);
        assert!(report.violations.is_empty(), "{}", report.summary());
        for (what, count) in report.observed {
            *observed.entry(what).or_insert(0u64) += count;
        }
    }
    eprintln!("observed in 40 schedules: {observed:?}");
    for what in ["election", "lease_expired", "step_down", "fenced_write", "agent_recovered_tasks"] {
        assert!(observed.get(what).copied().unwrap_or(0) > 0, "no {what} in 40 schedules: {observed:?}");
    }
}
