//! `IsolationError`: everything a containerizer call can fail with.

use crate::config::ContainerId;

/// An error from a [`Containerizer`](crate::Containerizer) call.
///
/// No variant means "retry now": a launch that failed is not running and can be
/// retried with the same id; a config error will fail again until the config changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IsolationError {
    /// No container with this id: never launched, or already destroyed.
    #[error("unknown container '{0}'")]
    UnknownContainer(ContainerId),

    /// A container with this id is already launched (and not yet destroyed), or, with
    /// cgroups, a cgroup with this id still holds processes of a previous agent (call
    /// `recover` first).
    #[error("container '{0}' already exists")]
    DuplicateContainer(ContainerId),

    /// cgroups cannot be used here: `reason` says why (not mounted, a controller
    /// missing, not writable, an invalid root). [`crate::best_available`] falls back to
    /// the POSIX containerizer on this error.
    #[error("cgroups not usable: {reason}")]
    CgroupsUnavailable {
        /// Why, e.g. "cgroup v1 lacks pids; cgroup v2 at /sys/fs/cgroup/unified does
        /// not offer cpu, memory, pids (cgroup.controllers: none)".
        reason: String,
    },

    /// The container config was rejected before anything was started; `reason` says
    /// which field and why (empty command, cpus not a positive number, zero memory, ...).
    #[error("invalid config for container '{id}': {reason}")]
    InvalidConfig {
        /// The container whose config was rejected.
        id: ContainerId,
        /// Human-readable reason naming the offending field.
        reason: String,
    },

    /// The config names a user that does not exist on this machine.
    #[error("unknown user '{user}' for container '{id}'")]
    UnknownUser {
        /// The container that was to run as this user.
        id: ContainerId,
        /// The user name that was looked up.
        user: String,
    },

    /// A signal number that is not a valid signal on this platform.
    #[error("invalid signal number {0}")]
    InvalidSignal(i32),

    /// An operating-system call failed; `context` says what was being done
    /// (creating the sandbox, spawning the program, sending a signal, reading /proc).
    /// A spawn of a program that does not exist is reported here with
    /// [`std::io::ErrorKind::NotFound`].
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "spawning container 'c1' (program 'foo')".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// `launch` was called outside a tokio runtime: the container's main process is
    /// reaped by a task on the caller's runtime, so one is required.
    #[error("launch of container '{0}' must be called from within a tokio runtime")]
    NoRuntime(ContainerId),

    /// The container's main process could not be reaped, so its termination is
    /// unknown: the reaper task was dropped (its runtime shut down) or `waitpid` failed.
    #[error("termination of container '{id}' is unknown: {reason}")]
    Reap {
        /// The container whose termination is unknown.
        id: ContainerId,
        /// Why it is unknown.
        reason: String,
    },

    /// `destroy` killed the container's processes but they did not all disappear
    /// within the time limit (e.g. a process stuck in uninterruptible sleep). The
    /// container is kept, so `destroy` can be called again.
    #[error("destroy of container '{id}' timed out after {timeout_ms} ms; live pids {pids:?}")]
    KillTimedOut {
        /// The container being destroyed.
        id: ContainerId,
        /// How long destroy waited.
        timeout_ms: u64,
        /// Processes still alive (or the main pid still unreaped) when it gave up.
        pids: Vec<u32>,
    },
}

impl IsolationError {
    /// Builds an [`IsolationError::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        IsolationError::Io { context: context.into(), source }
    }

    /// Builds an [`IsolationError::InvalidConfig`].
    pub(crate) fn invalid(id: &ContainerId, reason: impl Into<String>) -> Self {
        IsolationError::InvalidConfig { id: id.clone(), reason: reason.into() }
    }
}
