//! A process that campaigns in a Keel cluster's etcd election, for the HA tests
//! that kill or stop a leader by PID. Prints `ELECTED <epoch>` once elected and
//! `LOST <reason>` when the leadership is lost, then exits 0; exits 1 on error.
//!
//! Usage: `keel-etcd-candidate ENDPOINT[,ENDPOINT...] CLUSTER VALUE [TTL_SECS]`

use std::io::Write;
use std::time::Duration;

use keel_actors::etcd::{campaign, EtcdConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: keel-etcd-candidate ENDPOINT[,ENDPOINT...] CLUSTER VALUE [TTL_SECS]");
        std::process::exit(2);
    }
    let endpoints = args[0].split(',').map(str::to_string).collect();
    let mut config = EtcdConfig::new(endpoints, args[1].clone());
    if let Some(ttl) = args.get(3).and_then(|ttl| ttl.parse().ok()) {
        config.lease_ttl = Duration::from_secs(ttl);
    }
    let value = args[2].clone();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keel-etcd-candidate: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        let leadership = match campaign(&config, value).await {
            Ok(leadership) => leadership,
            Err(e) => {
                eprintln!("keel-etcd-candidate: {e}");
                return 1;
            }
        };
        say(&format!("ELECTED {}", leadership.epoch()));
        let reason = leadership.lost().await;
        say(&format!("LOST {reason}"));
        0
    });
    std::process::exit(code);
}

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}
