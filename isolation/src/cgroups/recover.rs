//! Recovery after an agent restart: known containers whose main process still runs in
//! their cgroup are reattached (watched by polling, their limits read back from the
//! cgroup); known ones whose main process ended but whose waiter left a status file are
//! reattached as exited (`wait` resolves at once with the recorded status and the OOM
//! verdict); known ones with neither, and unknown cgroups under the root (orphans), are
//! killed and removed.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use cgroups_rs::MaxValue;
use tokio::sync::watch;
use tracing::{info, warn};

use super::cgroup::ContainerCgroup;
use super::hierarchy::{Controller, Version};
use super::kill::kill_all;
use super::{watch_recovered, Container, Inner};
use crate::config::{validate_id, ContainerId, Limits};
use crate::error::IsolationError;
use crate::recovered::{publish, unknown_termination, ProcessIdentity, Recovered};
use crate::status::Termination;
use crate::waiter::StatusFile;

/// v1 reports "no memory limit" as a huge number (the page counter's maximum).
const V1_UNLIMITED_FROM: u64 = 1 << 62;

/// See [`crate::Containerizer::recover`].
pub(super) async fn recover(
    inner: Arc<Inner>,
    known: Vec<(ContainerId, u32)>,
) -> Result<Recovered, IsolationError> {
    let mut recovered = Recovered::default();
    let mut known_ids = HashSet::new();
    for (id, pid) in known {
        validate_id(&id).map_err(|reason| IsolationError::invalid(&id, reason))?;
        known_ids.insert(id.clone());
        if inner.containers.contains(&id) {
            recovered.reattached.push(id);
            continue;
        }
        let cgroup = ContainerCgroup::new(inner.layout.clone(), id.clone());
        let in_cgroup =
            i32::try_from(pid).is_ok_and(|pid| cgroup.procs().is_ok_and(|procs| procs.contains(&pid)));
        let running = ProcessIdentity::of(pid).filter(|_| in_cgroup);
        let status_file = inner.statuses.as_ref().map_or(StatusFile::Missing, |statuses| statuses.read(&id));
        let waiter = !matches!(status_file, StatusFile::Missing);
        let found = match (&status_file, running) {
            // A record is final, even if the pid still runs (the waiter between its
            // write and its exit, or the pid reused inside the cgroup).
            (StatusFile::Recorded(record), _) => Found::Exited(record.termination()),
            (_, Some(identity)) => Found::Running(identity),
            (StatusFile::Missing, None) => Found::Gone,
            (other, None) => {
                let path = inner.statuses.as_ref().map(|statuses| statuses.path(&id)).unwrap_or_default();
                let reason = other.unknown_reason(&path).unwrap_or_default();
                warn!(container_id = %id, pid, %reason, "recovered container ended with no recorded exit status");
                Found::Exited(unknown_termination(&reason))
            }
        };
        match found {
            Found::Running(identity) => {
                reattach(&inner, &id, pid, cgroup, waiter, Ok(identity))?;
                info!(container_id = %id, pid, "container reattached");
            }
            Found::Exited(termination) => {
                let message = termination.message.clone();
                reattach(&inner, &id, pid, cgroup, waiter, Err(termination))?;
                info!(container_id = %id, pid, status = %message, "container reattached; it ended while no containerizer watched");
                recovered.exited.push(id.clone());
            }
            Found::Gone => {
                clean_up(&id, &cgroup).await?;
                info!(container_id = %id, pid, "recovered container is gone; its cgroup is cleaned up");
                recovered.gone.push(id);
                continue;
            }
        }
        recovered.reattached.push(id);
    }
    if let Some(statuses) = &inner.statuses {
        statuses.remove_all_but(|id| known_ids.contains(id) || inner.containers.contains(id));
    }
    for id in inner.layout.list_containers()? {
        if known_ids.contains(&id) || inner.containers.contains(&id) {
            continue;
        }
        let cgroup = ContainerCgroup::new(inner.layout.clone(), id.clone());
        clean_up(&id, &cgroup).await?;
        info!(container_id = %id, "orphan container destroyed");
        recovered.orphans_destroyed.push(id);
    }
    recovered.reattached.sort();
    recovered.exited.sort();
    recovered.gone.sort();
    recovered.orphans_destroyed.sort();
    Ok(recovered)
}

/// What recovery found of one known container.
enum Found {
    /// The main process runs.
    Running(ProcessIdentity),
    /// The main process ended; this is how (without the OOM verdict).
    Exited(Termination),
    /// Nothing: no main process, no status file.
    Gone,
}

/// Registers a container left by a previous agent: one whose main process still runs
/// (`Ok`, then watched), or one that ended this way (`Err`, published at once with the
/// OOM verdict).
fn reattach(
    inner: &Arc<Inner>,
    id: &ContainerId,
    pid: u32,
    cgroup: ContainerCgroup,
    waiter: bool,
    state: Result<ProcessIdentity, Termination>,
) -> Result<(), IsolationError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(IsolationError::NoRuntime(id.clone()));
    }
    let (publisher, termination) = watch::channel(None);
    let container = Arc::new(Container {
        id: id.clone(),
        pid,
        waiter,
        limits: Mutex::new(read_limits(&cgroup, waiter)),
        cgroup,
        termination,
        publisher,
        sampled_peak: AtomicU64::new(0),
        recovered: state.as_ref().ok().copied(),
    });
    inner.containers.fill(id.clone(), container.clone());
    match state {
        Ok(identity) => {
            tokio::spawn(watch_recovered(container, identity, inner.statuses.clone()));
        }
        Err(ended) => {
            publish(&container.publisher, Ok(Termination { limitation: container.limitation(), ..ended }));
        }
    }
    Ok(())
}

/// Kills whatever runs in `cgroup` and removes it.
async fn clean_up(id: &ContainerId, cgroup: &ContainerCgroup) -> Result<(), IsolationError> {
    if !cgroup.exists() {
        return Ok(());
    }
    kill_all(id, cgroup, 0, &|| true).await?;
    cgroup.remove().await
}

/// The limits a reattached container runs with, read back from its cgroup (what
/// cannot be read is taken as unlimited; cpus from the quota, else from the shares;
/// the `waiter`'s pid taken off the pids limit).
fn read_limits(cgroup: &ContainerCgroup, waiter: bool) -> Limits {
    let cpu = cgroup.cpu();
    let quota_cpus = match (cpu.cfs_quota(), cpu.cfs_period()) {
        (Ok(quota), Ok(period)) if quota > 0 && period > 0 => Some(quota as f64 / period as f64),
        _ => None,
    };
    let share_cpus = cpu.shares().ok().map(|value| match cgroup.version() {
        Version::V1 => value as f64 / 1024.0,
        // Invert the weight mapping of `isolators::cpu_weight`.
        Version::V2 => (2.0 + value.saturating_sub(1) as f64 * 262_142.0 / 9_999.0) / 1024.0,
    });
    let cpus = quota_cpus.or(share_cpus).filter(|cpus| *cpus > 0.0).unwrap_or(1.0);
    let mem_file = match cgroup.version() {
        Version::V1 => "memory.limit_in_bytes",
        Version::V2 => "memory.max",
    };
    let mem_bytes = cgroup
        .read_u64(Controller::Memory, mem_file)
        .ok()
        .filter(|bytes| *bytes > 0 && *bytes < V1_UNLIMITED_FROM);
    let pids = match cgroup.pids().get_pid_max() {
        Ok(MaxValue::Value(max)) => u64::try_from(max)
            .ok()
            .map(|max| if waiter { max.saturating_sub(1) } else { max })
            .filter(|max| *max > 0),
        _ => None,
    };
    Limits { cpus, mem_bytes, pids }
}
