//! What a container reports back: `Termination` (with `ExitStatusKind` and `Limitation`)
//! and `Usage`.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// How the container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatusKind {
    /// It called `exit` with this status code.
    Exited(i32),
    /// It was killed by this signal number.
    Signaled(i32),
}

impl ExitStatusKind {
    /// True for `Exited(0)`.
    pub fn success(&self) -> bool {
        *self == ExitStatusKind::Exited(0)
    }
}

impl fmt::Display for ExitStatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatusKind::Exited(code) => write!(f, "exited with status {code}"),
            ExitStatusKind::Signaled(signal) => match Signal::try_from(signal) {
                Ok(name) => write!(f, "killed by signal {signal} ({name})"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
        }
    }
}

/// A resource limit the container hit, which caused (or contributed to) its end.
/// Reported by [`crate::CgroupsContainerizer`]; the POSIX launcher never sets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Limitation {
    /// The container was OOM-killed at its memory limit.
    Memory {
        /// The limit that was hit.
        limit_bytes: u64,
        /// Peak memory use observed.
        peak_bytes: u64,
    },
}

/// The end of a container's main process, as reported by
/// [`Containerizer::wait`](crate::Containerizer::wait).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    /// Exit code or signal.
    pub status: ExitStatusKind,
    /// Human-readable summary, e.g. "exited with status 3" or
    /// "killed by signal 9 (SIGKILL)".
    pub message: String,
    /// The limit that was hit, if the end was caused by one. `Memory` when the kernel
    /// OOM-killed any process of the container at its memory limit before the main
    /// process's end was seen (the main process itself, or a child whose death made it
    /// exit).
    pub limitation: Option<Limitation>,
}

impl Termination {
    /// The termination for a reaped main process's wait status.
    pub(crate) fn from_exit_status(status: ExitStatus) -> Self {
        let kind = match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatusKind::Exited(code),
            (None, Some(signal)) => ExitStatusKind::Signaled(signal),
            // Neither exited nor signaled: only possible for stop/continue statuses,
            // which `wait` does not report; keep the raw status rather than guess.
            (None, None) => ExitStatusKind::Exited(status.into_raw()),
        };
        let mut message = kind.to_string();
        if status.core_dumped() {
            message.push_str(" (core dumped)");
        }
        Termination { status: kind, message, limitation: None }
    }
}

/// Resource usage of a container.
///
/// With cgroups the figures are the cgroup's own accounting (every process that ever ran
/// in the container counts); without, they are summed over the live processes found in
/// `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// User-mode CPU time, in seconds (POSIX: including descendants already reaped by a
    /// process of the container).
    pub cpu_user_secs: f64,
    /// Kernel-mode CPU time, in seconds (same accounting as `cpu_user_secs`).
    pub cpu_system_secs: f64,
    /// Resident memory, in bytes: anonymous memory charged to the cgroup (v1
    /// `memory.stat` `total_rss`, v2 `anon`); POSIX: the sum of the processes' RSS
    /// (shared pages counted once per process).
    pub rss_bytes: u64,
    /// Number of live (non-zombie) processes.
    pub processes: u32,
    /// The container's memory limit, from its [`Limits`](crate::Limits).
    pub mem_limit_bytes: Option<u64>,
    /// Highest memory use of the container so far, in bytes (v1
    /// `memory.max_usage_in_bytes`, v2 `memory.peak` or the highest value sampled);
    /// `None` without cgroups.
    pub mem_peak_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_signal() {
        assert_eq!(ExitStatusKind::Exited(3).to_string(), "exited with status 3");
        assert_eq!(ExitStatusKind::Signaled(15).to_string(), "killed by signal 15 (SIGTERM)");
        assert_eq!(ExitStatusKind::Signaled(200).to_string(), "killed by signal 200");
    }

    #[test]
    fn wait_statuses_map_to_kinds() {
        let exited = Termination::from_exit_status(ExitStatus::from_raw(3 << 8));
        assert_eq!(exited.status, ExitStatusKind::Exited(3));
        let killed = Termination::from_exit_status(ExitStatus::from_raw(9));
        assert_eq!(killed.status, ExitStatusKind::Signaled(9));
        assert_eq!(killed.message, "killed by signal 9 (SIGKILL)");
    }
}
