//! Containers as the agent core sees them: what to launch and how one ended. The
//! shell maps these onto `keel-isolation` (or the simulator onto its model).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A container's id (random, hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/bin/sh -c` this.
    Shell(String),
    /// This program with these arguments.
    Exec {
        /// The program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// The container's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// CPUs (shares and quota).
    pub cpus: f64,
    /// Memory limit in bytes.
    pub mem_bytes: Option<u64>,
    /// Most processes.
    pub pids: Option<u64>,
}

/// A container to launch.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Its id.
    pub id: ContainerId,
    /// What it runs.
    pub command: Command,
    /// Its environment.
    pub env: BTreeMap<String, String>,
    /// Its sandbox directory.
    pub sandbox: PathBuf,
    /// The user it runs as.
    pub user: Option<String>,
    /// Its limits.
    pub limits: Limits,
}

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Not known: the container ended while no agent watched it and nothing
    /// recorded how (a container of an older agent version).
    Unknown,
}

impl ExitStatus {
    /// The wait status as Mesos reports it: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(signal) => 128i32.saturating_add(signal),
            ExitStatus::Unknown => -1,
        }
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The main process's status.
    pub status: ExitStatus,
    /// A description ("exited with status 3", "killed by signal 9").
    pub message: String,
    /// The memory limit it hit, with its peak, in bytes.
    pub memory_limit: Option<(u64, u64)>,
}
