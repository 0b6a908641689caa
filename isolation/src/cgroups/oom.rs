//! OOM detection: when a container's main process ends, its memory cgroup's OOM-kill
//! counter (v1 `memory.oom_control` `oom_kill`, v2 `memory.events` `oom_kill`) says
//! whether the kernel killed a process at the limit; the peak comes with it. Read
//! before the cgroup is removed.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::warn;

use super::cgroup::ContainerCgroup;
use super::hierarchy::{Controller, Version};
use crate::status::Limitation;

/// The memory limitation the container hit, if it had a limit (`limit_bytes`) and the
/// kernel OOM-killed one of its processes. `sampled_peak` is the highest use seen by
/// earlier samples (for v2 kernels without `memory.peak`).
pub(crate) fn limitation(
    cgroup: &ContainerCgroup,
    limit_bytes: Option<u64>,
    sampled_peak: &AtomicU64,
) -> Option<Limitation> {
    let limit_bytes = limit_bytes?;
    let counters = match cgroup.version() {
        Version::V1 => cgroup.read_keyed(Controller::Memory, "memory.oom_control"),
        Version::V2 => cgroup.read_keyed(Controller::Memory, "memory.events"),
    };
    let counters = match counters {
        Ok(counters) => counters,
        Err(error) => {
            warn!(%error, "could not read the OOM counters; no memory limitation reported");
            return None;
        }
    };
    let oom_killed = match counters.get("oom_kill") {
        Some(kills) => *kills > 0,
        // v1 kernels before 4.13 have no counter: a cgroup still under OOM is the sign.
        None => counters.get("under_oom") == Some(&1),
    };
    oom_killed.then(|| Limitation::Memory { limit_bytes, peak_bytes: peak_bytes(cgroup, sampled_peak) })
}

/// The container's highest memory use so far (0 if unreadable): v1
/// `memory.max_usage_in_bytes`; v2 `memory.peak`, else the highest of `memory.current`
/// and the earlier samples. Records the value in `sampled_peak`.
pub(crate) fn peak_bytes(cgroup: &ContainerCgroup, sampled_peak: &AtomicU64) -> u64 {
    let read = match cgroup.version() {
        Version::V1 => cgroup.read_u64(Controller::Memory, "memory.max_usage_in_bytes"),
        Version::V2 => cgroup
            .read_u64(Controller::Memory, "memory.peak")
            .or_else(|_| cgroup.read_u64(Controller::Memory, "memory.current")),
    };
    let peak = read.unwrap_or(0).max(sampled_peak.load(Ordering::Relaxed));
    sampled_peak.fetch_max(peak, Ordering::Relaxed);
    peak
}
