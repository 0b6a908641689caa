//! Container launch/destroy throughput: 500 `/bin/true` containers with the cgroups
//! containerizer (when cgroups are writable), then with the POSIX one, each with a
//! waiter per container (a state directory on the sandboxes' filesystem, as an agent
//! would configure it) and without. Prints one line per run; nothing is asserted.
//!
//! `cargo run --release -p keel-isolation --example bench [-- COUNT]`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use keel_isolation::{
    CgroupsConfig, CgroupsContainerizer, ContainerConfig, ContainerId, Containerizer, LaunchCommand, Limits,
    PosixContainerizer,
};

/// Where sandboxes go: /dev/shm (tmpfs, so disk speed does not count) when writable.
fn sandbox_base() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let base = if std::fs::create_dir_all(shm.join("keel-bench-probe")).is_ok() {
        let _ = std::fs::remove_dir(shm.join("keel-bench-probe"));
        shm
    } else {
        std::env::temp_dir()
    };
    base.join(format!("keel-bench-{}", std::process::id()))
}

async fn run(
    containerizer: Arc<dyn Containerizer>,
    waiter: bool,
    count: usize,
    base: &std::path::Path,
) -> anyhow::Result<()> {
    let limits = Limits { cpus: 0.1, mem_bytes: Some(32 << 20), pids: Some(16) };
    let ids: Vec<ContainerId> = (0..count).map(|i| ContainerId(format!("bench-{i}"))).collect();
    let started = Instant::now();
    for id in &ids {
        let config = ContainerConfig::new(
            id.clone(),
            LaunchCommand::Exec { program: "/bin/true".into(), args: vec![] },
            base.join(&id.0),
            limits,
        );
        containerizer.launch(config)?;
    }
    let launched = started.elapsed();
    for id in &ids {
        containerizer.wait(id).await?;
    }
    let exited = started.elapsed();
    let destroy_started = Instant::now();
    for id in &ids {
        containerizer.destroy(id).await?;
    }
    let destroyed = destroy_started.elapsed();
    let total = started.elapsed();
    println!(
        "containerizer={} waiter={} containers={count} launched_per_s={:.0} all_exited_s={:.3} destroyed_per_s={:.0} total_s={:.3}",
        containerizer.name(),
        if waiter { "yes" } else { "no" },
        count as f64 / launched.as_secs_f64(),
        exited.as_secs_f64(),
        count as f64 / destroyed.as_secs_f64(),
        total.as_secs_f64(),
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(500);
    let base = sandbox_base();
    println!("sandboxes under {}", base.display());
    let root = format!("keel-bench-{}", std::process::id());
    for waiter in [true, false] {
        let state_dir = waiter.then(|| base.join("meta/containers"));
        match CgroupsContainerizer::new(CgroupsConfig { root: root.clone(), cfs_quota: true, state_dir }) {
            Ok(cgroups) => {
                let roots = cgroups.root_dirs();
                println!("isolation: {}", cgroups.isolation());
                let sandboxes = base.join(if waiter { "cgroups-waiter" } else { "cgroups" });
                let result = run(Arc::new(cgroups), waiter, count, &sandboxes).await;
                for dir in roots {
                    let _ = std::fs::remove_dir(dir);
                }
                result?;
            }
            Err(error) => println!("containerizer=cgroups skipped: {error}"),
        }
    }
    for waiter in [true, false] {
        let posix = match waiter {
            true => PosixContainerizer::with_state_dir(base.join("meta/containers")),
            false => PosixContainerizer::new(),
        };
        let sandboxes = base.join(if waiter { "posix-waiter" } else { "posix" });
        run(Arc::new(posix), waiter, count, &sandboxes).await?;
    }
    let _ = std::fs::remove_dir_all(&base);
    println!("reference: Mesos 1.7 reported 1000 containers launched in about 30 s on one agent (~33 launched_per_s)");
    Ok(())
}
