//! `keel-batch`: runs shell commands across a Keel cluster with bounded retries
//! (the logic is `keel_examples::batch`); exits 0 when every command succeeded.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use keel_examples::batch::{self, BatchOptions, RunOptions};

/// Run a list of shell commands across the cluster, retrying failures.
#[derive(Debug, Parser)]
#[command(name = "keel-batch", version)]
#[command(group = clap::ArgGroup::new("jobs").required(true).args(["file", "command"]))]
struct Cli {
    /// The master: HOST:PORT, or `etcd://HOST:PORT[,...]/CLUSTER` to follow the elected leader.
    #[arg(long, env = "KEEL_MASTER")]
    master: String,
    /// A file with one command per line (blank lines and `#` comments skipped).
    #[arg(long, conflicts_with = "command")]
    file: Option<PathBuf>,
    /// A command to run (repeat for several).
    #[arg(long)]
    command: Vec<String>,
    /// Cpus per command.
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    /// Memory per command, MB.
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// Retries of a failed command after its first attempt.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// The framework's name.
    #[arg(long, default_value = "batch")]
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
    keel_examples::support::cli_main("keel-batch", || run(cli))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let master: keel_actors::detector::MasterAddress = cli.master.parse()?;
    let subscribe_timeout = keel_examples::support::seconds(cli.subscribe_timeout, "--subscribe-timeout")?;
    let jobs = match &cli.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            batch::parse_job_file(&text)
        }
        None => cli.command.clone(),
    };
    let options = RunOptions {
        master,
        jobs,
        batch: BatchOptions {
            name: cli.name,
            cpus: cli.cpus,
            mem_mb: cli.mem,
            retries: cli.retries,
            subscribe_timeout,
        },
        bind_ip: cli.ip,
    };
    let summary = batch::run(options)?;
    Ok(if summary.succeeded() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
