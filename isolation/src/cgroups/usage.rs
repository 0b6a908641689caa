//! Usage from a container's cgroup accounting: cpu user/system time (v1 `cpuacct`,
//! v2 `cpu.stat`), anonymous memory (`memory.stat`), the peak, and the process count.

use std::sync::atomic::AtomicU64;

use super::cgroup::ContainerCgroup;
use super::hierarchy::{Controller, Version};
use super::oom::peak_bytes;
use crate::config::Limits;
use crate::error::IsolationError;
use crate::status::Usage;

/// Reads the container's usage; `sampled_peak` keeps the highest memory use seen. The
/// `waiter`'s pid, if any, is not counted as a process (its memory and cpu use, a few
/// pages and next to nothing, stay in the cgroup's accounting).
pub(crate) fn read(
    cgroup: &ContainerCgroup,
    limits: &Limits,
    sampled_peak: &AtomicU64,
    waiter: Option<i32>,
) -> Result<Usage, IsolationError> {
    let (cpu_user_secs, cpu_system_secs) = cpu_secs(cgroup)?;
    let stat = cgroup.read_keyed(Controller::Memory, "memory.stat")?;
    let rss_bytes = match cgroup.version() {
        Version::V1 => stat.get("total_rss").or_else(|| stat.get("rss")),
        Version::V2 => stat.get("anon"),
    }
    .copied()
    .unwrap_or(0);
    let procs = cgroup.procs()?;
    let processes = procs.iter().filter(|pid| Some(**pid) != waiter).count();
    let processes = u32::try_from(processes).unwrap_or(u32::MAX);
    Ok(Usage {
        cpu_user_secs,
        cpu_system_secs,
        rss_bytes,
        processes,
        mem_limit_bytes: limits.mem_bytes,
        mem_peak_bytes: Some(peak_bytes(cgroup, sampled_peak)),
    })
}

/// User and system cpu seconds of every process that ran in the container.
fn cpu_secs(cgroup: &ContainerCgroup) -> Result<(f64, f64), IsolationError> {
    match cgroup.version() {
        Version::V1 => {
            let user = cgroup.read_u64(Controller::CpuAcct, "cpuacct.usage_user");
            let system = cgroup.read_u64(Controller::CpuAcct, "cpuacct.usage_sys");
            if let (Ok(user_ns), Ok(system_ns)) = (user, system) {
                return Ok((user_ns as f64 / 1e9, system_ns as f64 / 1e9));
            }
            // Older kernels: cpuacct.stat, in USER_HZ ticks.
            let stat = cgroup.read_keyed(Controller::CpuAcct, "cpuacct.stat")?;
            let ticks_per_second = procfs::ticks_per_second().max(1) as f64;
            let seconds = |key: &str| stat.get(key).copied().unwrap_or(0) as f64 / ticks_per_second;
            Ok((seconds("user"), seconds("system")))
        }
        Version::V2 => {
            let stat = cgroup.read_keyed(Controller::Cpu, "cpu.stat")?;
            let seconds = |key: &str| stat.get(key).copied().unwrap_or(0) as f64 / 1e6;
            Ok((seconds("user_usec"), seconds("system_usec")))
        }
    }
}
