//! Resource detection for the agent: cpus, memory and the work directory's disk.

use std::path::Path;

/// What this machine has, before any reservation for the system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectedResources {
    /// Cpus this process may use: the available parallelism, which honours the cpu
    /// affinity mask and a cgroup cpu quota on this process.
    pub cpus: f64,
    /// Total memory, in MiB (`MemTotal` of `/proc/meminfo`); 0 if unreadable.
    pub mem_mb: u64,
    /// Space available to unprivileged users on the work directory's filesystem, in MiB
    /// (statvfs); 0 if unreadable.
    pub disk_mb: u64,
}

const MIB: u64 = 1024 * 1024;

/// Measures the machine. `work_dir` need not exist yet: its nearest existing ancestor's
/// filesystem is measured. Never fails: what cannot be read is reported as 0 (cpus: 1).
pub fn detect_resources(work_dir: &Path) -> DetectedResources {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let mem_mb = {
        use procfs::Current;
        procfs::Meminfo::current().map(|meminfo| meminfo.mem_total / MIB).unwrap_or(0)
    };
    let existing = work_dir.ancestors().find(|dir| dir.exists()).unwrap_or(Path::new("/"));
    let disk_mb = nix::sys::statvfs::statvfs(existing)
        .map(|stat| {
            // Both are u64 on Linux (fsblkcnt_t, c_ulong).
            let available: u64 = stat.blocks_available();
            let fragment: u64 = stat.fragment_size();
            available.saturating_mul(fragment) / MIB
        })
        .unwrap_or(0);
    DetectedResources { cpus, mem_mb, disk_mb }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_has_cpus_memory_and_disk() {
        let detected = detect_resources(&std::env::temp_dir().join("keel-no-such-dir/below"));
        assert!(detected.cpus >= 1.0, "{detected:?}");
        assert!(detected.mem_mb > 0, "{detected:?}");
        assert!(detected.disk_mb > 0, "{detected:?}");
    }
}
