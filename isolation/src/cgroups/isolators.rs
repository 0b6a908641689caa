//! The cpu, memory and pids isolators: a container's [`Limits`] written to its cgroups
//! through cgroups-rs.
//!
//! - cpu: shares = 1024 x cpus (v1 `cpu.shares`; v2 `cpu.weight` mapped from the shares
//!   as runc does); with the CFS quota on, quota = cpus x 100 ms per 100 ms period
//!   (v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, v2 `cpu.max`).
//! - memory: hard limit (v1 `memory.limit_in_bytes`, v2 `memory.max`); no swapping
//!   where the kernel allows it (v1 `memory.swappiness` 0, v2 `memory.swap.max` 0).
//! - pids: `pids.max`, plus one for the container's waiter if it has one (the waiter
//!   is in the container's cgroups but is not the task's).

use cgroups_rs::MaxValue;
use tracing::debug;

use super::cgroup::ContainerCgroup;
use super::hierarchy::Version;
use crate::config::Limits;
use crate::error::IsolationError;

/// The CFS period, in microseconds.
pub(crate) const CFS_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kernel accepts, in microseconds.
const MIN_CFS_QUOTA_US: i64 = 1_000;
/// v1 `cpu.shares` bounds.
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;

/// `cpu.shares` for `cpus`: 1024 per cpu, within the kernel's bounds.
pub(crate) fn cpu_shares(cpus: f64) -> u64 {
    // Float-to-int casts saturate; NaN is rejected by validation before this.
    ((cpus * 1024.0).round() as u64).clamp(MIN_SHARES, MAX_SHARES)
}

/// v2 `cpu.weight` (1..=10000) for v1 `shares` (2..=262144), linearly, as runc maps them.
pub(crate) fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((shares - MIN_SHARES) * 9_999) / (MAX_SHARES - MIN_SHARES)
}

/// The CFS quota for `cpus` per [`CFS_PERIOD_US`], in microseconds.
pub(crate) fn cfs_quota_us(cpus: f64) -> i64 {
    ((cpus * CFS_PERIOD_US as f64).round() as i64).max(MIN_CFS_QUOTA_US)
}

/// Writes `limits` to the container's cgroups. `created` says the cgroups were just
/// made (everything is at its default: unlimited), so unset limits need no write and
/// the one-time settings (swap) are applied. `waiter` adds the waiter's pid to the pids
/// limit.
pub(crate) fn apply(
    cgroup: &ContainerCgroup,
    limits: &Limits,
    cfs_quota: bool,
    created: bool,
    waiter: bool,
) -> Result<(), IsolationError> {
    let v2 = cgroup.version() == Version::V2;

    let cpu = cgroup.cpu();
    let shares = cpu_shares(limits.cpus);
    let weight = if v2 { cpu_weight(shares) } else { shares };
    cpu.set_shares(weight).map_err(|error| cgroup.error("setting cpu shares", error))?;
    if cfs_quota {
        cpu.set_cfs_quota_and_period(Some(cfs_quota_us(limits.cpus)), Some(CFS_PERIOD_US))
            .map_err(|error| cgroup.error("setting the cpu quota", error))?;
    }

    let memory = cgroup.memory();
    if limits.mem_bytes.is_some() || !created {
        // -1 is "no limit" (cgroups-rs writes "max" on v2).
        let limit = limits.mem_bytes.map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX));
        memory.set_limit(limit).map_err(|error| cgroup.error("setting the memory limit", error))?;
    }
    if created {
        // Best effort: memory.swap.max exists only with swap accounting.
        let swap_off = if v2 { memory.set_memswap_limit(0) } else { memory.set_swappiness(0) };
        if let Err(error) = swap_off {
            debug!(%error, "could not turn swapping off for a container");
        }
    }

    if limits.pids.is_some() || !created {
        let max = limits.pids.map_or(MaxValue::Max, |pids| {
            MaxValue::Value(i64::try_from(pids.saturating_add(u64::from(waiter))).unwrap_or(i64::MAX))
        });
        cgroup.pids().set_pid_max(max).map_err(|error| cgroup.error("setting the pids limit", error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_weights_and_quotas_follow_cpus() {
        assert_eq!(cpu_shares(1.0), 1024);
        assert_eq!(cpu_shares(0.5), 512);
        assert_eq!(cpu_shares(0.0001), MIN_SHARES);
        assert_eq!(cpu_shares(1e12), MAX_SHARES);
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cfs_quota_us(0.5), 50_000);
        assert_eq!(cfs_quota_us(2.0), 200_000);
        assert_eq!(cfs_quota_us(0.001), MIN_CFS_QUOTA_US);
    }
}
