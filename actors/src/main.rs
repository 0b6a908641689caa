//! The `keel` command line: parses flags and calls into the crates.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use keel_kernel::NodeConfig;

/// Keel: a distributed systems kernel.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, long_about = None)]
struct Cli {
    /// Write every message event of this process as JSON lines to FILE.
    #[arg(long, global = true, env = "KEEL_TRACE", value_name = "FILE")]
    trace: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Two kernel nodes in two processes pinging each other, until Ctrl-C.
    Demo {
        /// Address to bind this process's node to.
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: std::net::SocketAddr,
        /// Run the serving side only (started by `keel demo` itself).
        #[arg(long, hide = true)]
        serve: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _trace = keel_kernel::trace::init(cli.trace.as_deref())?;
    match cli.command {
        Command::Demo { bind, serve } => {
            let config = NodeConfig { bind, ..NodeConfig::default() };
            if serve {
                keel_actors::demo::serve(config)
            } else {
                let trace_args: Vec<String> = match &cli.trace {
                    Some(path) => vec!["--trace".into(), format!("{}.serve", path.display())],
                    None => Vec::new(),
                };
                keel_actors::demo::run(config, &trace_args)
            }
        }
    }
}
