//! What to launch: `ContainerId`, `ContainerConfig`, `LaunchCommand`, `Limits`, and
//! their validation (pure, no I/O).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::IsolationError;

/// Longest container id accepted, in bytes (ids become cgroup directory names).
pub const MAX_CONTAINER_ID_BYTES: usize = 255;

/// Names a container; unique among the containers of one containerizer.
///
/// Non-empty, at most [`MAX_CONTAINER_ID_BYTES`] bytes, no `/` or NUL, not `.` or `..`
/// (checked by [`ContainerConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ContainerId {
    fn from(id: &str) -> Self {
        ContainerId(id.to_owned())
    }
}

impl From<String> for ContainerId {
    fn from(id: String) -> Self {
        ContainerId(id)
    }
}

/// The container's main process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LaunchCommand {
    /// Run as `/bin/sh -c <command>`.
    Shell(String),
    /// Execute `program` (looked up in the container's `PATH` if it has no `/`) with `args`
    /// (not including argv\[0\]).
    Exec {
        /// Program name or path.
        program: String,
        /// Arguments after the program name.
        args: Vec<String>,
    },
}

/// Resource limits of a container. Enforced by [`crate::CgroupsContainerizer`] (cpu
/// shares and CFS quota, memory limit, pids limit); the POSIX launcher only records them
/// and reports the memory limit back in [`crate::Usage`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU share, in cpus (1.0 = one core). Finite and greater than 0.
    pub cpus: f64,
    /// Memory limit in bytes; `None` means unlimited. Greater than 0 when set.
    pub mem_bytes: Option<u64>,
    /// Maximum number of processes; `None` means unlimited. Greater than 0 when set.
    /// A container's waiter (see [`crate::CgroupsConfig::state_dir`]) does not count:
    /// the cgroup's `pids.max` is one more.
    pub pids: Option<u64>,
}

/// Everything needed to launch one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The container's id; must not be in use.
    pub id: ContainerId,
    /// The main process.
    pub command: LaunchCommand,
    /// Environment added on top of the minimal inherited environment (see
    /// [`crate::PosixContainerizer`] for which variables that is); these win on conflict.
    pub env: BTreeMap<String, String>,
    /// Absolute path of the sandbox directory: created if missing, the working
    /// directory of the main process, and where its `stdout` and `stderr` files go.
    pub sandbox: PathBuf,
    /// Run as this user (uid and primary gid from the password database); `None` runs
    /// as the containerizer's own user.
    pub user: Option<String>,
    /// Resource limits.
    pub limits: Limits,
}

impl ContainerConfig {
    /// A config with an empty `env`, no `user`, and the given limits.
    pub fn new(
        id: impl Into<ContainerId>,
        command: LaunchCommand,
        sandbox: impl Into<PathBuf>,
        limits: Limits,
    ) -> Self {
        ContainerConfig {
            id: id.into(),
            command,
            env: BTreeMap::new(),
            sandbox: sandbox.into(),
            user: None,
            limits,
        }
    }

    /// Checks the config without touching the system: returns
    /// [`IsolationError::InvalidConfig`] with the first problem found.
    pub fn validate(&self) -> Result<(), IsolationError> {
        let id = &self.id;
        let invalid = |reason: String| Err(IsolationError::invalid(id, reason));
        validate_id(id).or_else(invalid)?;
        match &self.command {
            LaunchCommand::Shell(command) => {
                if command.trim().is_empty() {
                    return invalid("shell command is empty".into());
                }
                no_nul("shell command", command).or_else(invalid)?;
            }
            LaunchCommand::Exec { program, args } => {
                if program.is_empty() {
                    return invalid("program is empty".into());
                }
                no_nul("program", program).or_else(invalid)?;
                for (index, arg) in args.iter().enumerate() {
                    no_nul(&format!("argument {index}"), arg).or_else(invalid)?;
                }
            }
        }
        for (key, value) in &self.env {
            if key.is_empty() {
                return invalid("environment variable name is empty".into());
            }
            if key.contains('=') {
                return invalid(format!("environment variable name '{key}' contains '='"));
            }
            no_nul("environment variable name", key).or_else(invalid)?;
            no_nul(&format!("value of environment variable '{key}'"), value).or_else(invalid)?;
        }
        if !self.sandbox.is_absolute() {
            return invalid(format!("sandbox must be an absolute path, got '{}'", self.sandbox.display()));
        }
        if let Some(user) = &self.user {
            if user.is_empty() {
                return invalid("user name is empty".into());
            }
            no_nul("user name", user).or_else(invalid)?;
        }
        self.limits.validate().or_else(invalid)
    }
}

impl Limits {
    /// Checks the limits of container `id`: [`IsolationError::InvalidConfig`] with the
    /// reason if they cannot be enforced.
    pub(crate) fn check(&self, id: &ContainerId) -> Result<(), IsolationError> {
        self.validate().map_err(|reason| IsolationError::invalid(id, reason))
    }

    /// Checks the limits; the error is the reason.
    fn validate(&self) -> Result<(), String> {
        if !self.cpus.is_finite() {
            return Err(format!("cpus must be a finite number, got {}", self.cpus));
        }
        if self.cpus <= 0.0 {
            return Err(format!("cpus must be greater than 0, got {}", self.cpus));
        }
        if self.mem_bytes == Some(0) {
            return Err("mem_bytes must be greater than 0 when set".into());
        }
        if self.pids == Some(0) {
            return Err("pids must be greater than 0 when set".into());
        }
        Ok(())
    }
}

/// Checks a container id; the error is the reason.
pub(crate) fn validate_id(id: &ContainerId) -> Result<(), String> {
    let id = id.0.as_str();
    if id.is_empty() {
        return Err("container id is empty".into());
    }
    if id.len() > MAX_CONTAINER_ID_BYTES {
        return Err(format!(
            "container id is {} bytes long, the limit is {MAX_CONTAINER_ID_BYTES}",
            id.len()
        ));
    }
    if id == "." || id == ".." || id.contains('/') {
        return Err("container id must not contain '/' or be '.' or '..'".into());
    }
    no_nul("container id", id)
}

/// Fails if `value` contains a NUL byte, which cannot be passed to `exec`.
fn no_nul(what: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig::new(
            "c1",
            LaunchCommand::Shell("true".into()),
            "/tmp/sandbox",
            Limits { cpus: 1.0, mem_bytes: None, pids: None },
        )
    }

    fn reason(config: &ContainerConfig) -> String {
        match config.validate() {
            Err(IsolationError::InvalidConfig { reason, .. }) => reason,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_plain_config() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn rejects_bad_fields_with_reasons() {
        let mut c = config();
        c.command = LaunchCommand::Shell("  ".into());
        assert!(reason(&c).contains("shell command is empty"));

        let mut c = config();
        c.command = LaunchCommand::Exec { program: String::new(), args: vec![] };
        assert!(reason(&c).contains("program is empty"));

        let mut c = config();
        c.command = LaunchCommand::Exec { program: "echo".into(), args: vec!["a\0b".into()] };
        assert!(reason(&c).contains("argument 0 contains a NUL byte"));

        let mut c = config();
        c.limits.cpus = f64::NAN;
        assert!(reason(&c).contains("cpus must be a finite number"));

        let mut c = config();
        c.limits.cpus = -1.0;
        assert!(reason(&c).contains("cpus must be greater than 0"));

        let mut c = config();
        c.limits.mem_bytes = Some(0);
        assert!(reason(&c).contains("mem_bytes"));

        let mut c = config();
        c.limits.pids = Some(0);
        assert!(reason(&c).contains("pids"));

        let mut c = config();
        c.sandbox = "relative/dir".into();
        assert!(reason(&c).contains("absolute"));

        let mut c = config();
        c.env.insert("A=B".into(), "x".into());
        assert!(reason(&c).contains("contains '='"));

        let mut c = config();
        c.id = ContainerId("a/b".into());
        assert!(reason(&c).contains("'/'"));

        let mut c = config();
        c.id = ContainerId(String::new());
        assert!(reason(&c).contains("container id is empty"));

        let mut c = config();
        c.user = Some(String::new());
        assert!(reason(&c).contains("user name is empty"));
    }
}
