//! Runs seeds from the command line: `cargo run -p keel-sim --example one -- SEED [COUNT] [FAULTS]`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let count: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let faults = args.get(3).cloned().unwrap_or_else(|| "all".into());
    let started = std::time::Instant::now();
    let mut sim = 0.0;
    let mut bad = 0;
    for s in seed..seed + count {
        let mut config = keel_sim::SimConfig::new(s);
        config.faults = keel_sim::Faults::parse(&faults).unwrap();
        let report = keel_sim::run(&config);
        sim += report.sim_seconds;
        if !report.violations.is_empty() || count == 1 {
            println!("{}", report.summary());
        }
        if !report.violations.is_empty() {
            bad += 1;
        }
    }
    println!(
        "seeds={count} violations={bad} sim_seconds_per_wall_second={:.0}",
        sim / started.elapsed().as_secs_f64()
    );
}
