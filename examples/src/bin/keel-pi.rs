//! `keel-pi`: estimates pi on a Keel cluster with `keel-pi-executor` executors fed
//! over framework messages (the logic is `keel_examples::pi`); exits 0 when every
//! unit is in and every executor task FINISHED.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use keel_examples::pi::{self, PiOptions};

/// Estimate pi by Monte Carlo across the cluster.
#[derive(Debug, Parser)]
#[command(name = "keel-pi", version)]
struct Cli {
    /// The master: HOST:PORT, or `etcd://HOST:PORT[,...]/CLUSTER` to follow the elected leader.
    #[arg(long, env = "KEEL_MASTER")]
    master: String,
    /// Executors to run.
    #[arg(long, default_value_t = 2)]
    executors: usize,
    /// Work units.
    #[arg(long, default_value_t = 20)]
    units: u64,
    /// Samples per unit.
    #[arg(long, default_value_t = 100_000)]
    samples: u64,
    /// Base seed (the same seed gives the same estimate).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The executor program [default: keel-pi-executor next to this program].
    #[arg(long)]
    executor_path: Option<PathBuf>,
    /// Cpus of each executor task.
    #[arg(long, default_value_t = 0.5)]
    cpus: f64,
    /// Memory of each executor task, MB.
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// The framework's name.
    #[arg(long, default_value = "pi")]
    name: String,
    /// Seconds to wait for the master to accept the framework.
    #[arg(long, default_value_t = 30.0)]
    subscribe_timeout: f64,
    /// IP address this framework listens on (the master must reach it).
    #[arg(long, env = "KEEL_IP", default_value = "127.0.0.1")]
    ip: IpAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    keel_examples::support::cli_main("keel-pi", || run(cli))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let master: keel_actors::detector::MasterAddress = cli.master.parse()?;
    let subscribe_timeout = keel_examples::support::seconds(cli.subscribe_timeout, "--subscribe-timeout")?;
    let executor_path = match cli.executor_path {
        Some(path) => path,
        None => pi::default_executor_path()?,
    };
    let options = PiOptions {
        executors: cli.executors,
        units: cli.units,
        samples: cli.samples,
        seed: cli.seed,
        executor_path,
        cpus: cli.cpus,
        mem_mb: cli.mem,
        name: cli.name,
        subscribe_timeout,
    };
    let report = pi::run(master, cli.ip, options)?;
    Ok(if report.succeeded() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
