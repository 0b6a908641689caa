//! keel-isolation: containers. The [`Containerizer`] interface the agent drives;
//! [`CgroupsContainerizer`], which puts each container in its own cgroups (cgroup v1 or
//! v2) with cpu, memory and pids limits, OOM detection and exact tree killing; and
//! [`PosixContainerizer`], the fallback that runs each container as a plain process
//! group. Given a state directory, both give each container a waiter that records its
//! exit status so that it survives the agent's process. [`best_available`] picks one;
//! [`detect_resources`] measures the machine.
//!
//! Invariant: depends on no other Keel crate.

#![warn(missing_docs)]

mod cgroups;
mod config;
mod detect;
mod error;
mod posix;
mod procs;
mod recovered;
mod select;
mod slots;
mod status;
mod waiter;

use std::future::Future;
use std::pin::Pin;

pub use cgroups::{CgroupsConfig, CgroupsContainerizer, DEFAULT_CGROUP_ROOT};
pub use config::{ContainerConfig, ContainerId, LaunchCommand, Limits, MAX_CONTAINER_ID_BYTES};
pub use detect::{detect_resources, DetectedResources};
pub use error::IsolationError;
pub use posix::{PosixContainerizer, DEFAULT_PATH, INHERITED_ENV};
pub use recovered::{Recovered, UNKNOWN_EXIT_CODE, UNKNOWN_EXIT_MESSAGE};
pub use select::{best_available, ISOLATION_ENV};
pub use status::{ExitStatusKind, Limitation, Termination, Usage};

/// A boxed, sendable future, as returned by the [`Containerizer`] methods that wait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Launches, watches and destroys containers. Implementations: [`CgroupsContainerizer`]
/// (names "cgroups-v1", "cgroups-v2") and [`PosixContainerizer`] (name "posix").
///
/// Lifecycle of a container: `launch` (or `recover`) -> (`signal`, `usage`, `update`)*
/// -> main process exits, `wait` resolves -> `destroy` (kills what is left, forgets the
/// id). `destroy` may be called at any time; until it is, the id stays taken even after
/// the main exit.
pub trait Containerizer: Send + Sync + 'static {
    /// Validates `config`, starts the container's main process and returns its pid.
    /// Synchronous and fast (called at 1,000+ launches/s); must be called within a
    /// tokio runtime, on which the main process is reaped.
    ///
    /// The pid is the container's main process, this process's child, which leads the
    /// container's process group (and, with cgroups, its session): with a state
    /// directory that is the container's *waiter*, whose only child is the task (see
    /// [`CgroupsConfig::state_dir`]); without one, the task itself. It is what the agent
    /// checkpoints and gives back to [`Containerizer::recover`].
    fn launch(&self, config: ContainerConfig) -> Result<u32, IsolationError>;

    /// Resolves when the container's task has exited (at once if it already has), with
    /// its exit code or signal, and with cgroups the memory [`Limitation`] if it was
    /// OOM-killed. May be called any number of times; every call gets the same
    /// `Termination`.
    ///
    /// For a container reattached by `recover` the status is the one its waiter
    /// recorded, whether the task ended before or after the recovery; it is
    /// [`UNKNOWN_EXIT_CODE`] (with the reason in the message) only when nothing was
    /// recorded: no state directory or launched by an older version, or a status file
    /// that is missing, empty or garbled.
    fn wait(&self, id: &ContainerId) -> BoxFuture<'static, Result<Termination, IsolationError>>;

    /// Sends signal number `signal` to the container's processes: its whole process
    /// group (POSIX), or every process in its cgroup (cgroups). Succeeds without effect
    /// if no process is left. A waiter ignores every signal it can; with cgroups it is
    /// spared SIGKILL and SIGSTOP too, so it still records the task's end, while with
    /// POSIX a SIGKILL kills it with the group (the status reported is then its own,
    /// SIGKILL, or after a recovery [`UNKNOWN_EXIT_CODE`]).
    fn signal(&self, id: &ContainerId, signal: i32) -> Result<(), IsolationError>;

    /// SIGKILLs the container's whole process tree, waits until the main process is
    /// reaped, removes its cgroups if any, and forgets the container (its id can then be
    /// reused; `wait` futures obtained before still resolve).
    fn destroy(&self, id: &ContainerId) -> BoxFuture<'static, Result<(), IsolationError>>;

    /// Current resource usage of the container. The POSIX implementation walks all of
    /// `/proc` per call: poll it every few seconds, not in a tight loop.
    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolationError>;

    /// Ids of the launched or recovered, not yet destroyed containers, sorted.
    fn containers(&self) -> Vec<ContainerId>;

    /// The implementation's name, e.g. "posix" or "cgroups-v1".
    fn name(&self) -> &'static str;

    /// Changes a running container's limits (e.g. when a task is added to an executor).
    /// `limits` are validated like [`ContainerConfig::validate`] does. The cgroups
    /// implementation applies them at once (lowering memory below current use fails with
    /// [`IsolationError::Io`] on cgroup v1); the POSIX one records them only.
    ///
    /// The default implementation validates and accepts, enforcing nothing.
    fn update(&self, id: &ContainerId, limits: Limits) -> Result<(), IsolationError> {
        limits.check(id)
    }

    /// Finds the containers a previous agent process left, from `known` (container id,
    /// the pid `launch` returned: what the agent checkpointed), the status files in the
    /// state directory and, with cgroups, the cgroup tree under the root:
    /// - known containers whose main process still runs are `reattached`: `wait`,
    ///   `signal`, `usage`, `update`, `destroy` work on them again, and `wait` reports
    ///   the task's real status once it ends;
    /// - known containers whose main process ended while no containerizer watched but
    ///   whose waiter left a status file are `reattached` too, and listed in `exited`:
    ///   `wait` resolves at once with the recorded status (and the OOM verdict); the
    ///   agent reports it, then calls `destroy` (which also kills what the task left
    ///   behind, e.g. daemons);
    /// - known containers with neither (launched without a waiter) are cleaned up and
    ///   listed as `gone`;
    /// - containers found in the cgroup tree that are not in `known` are orphans and are
    ///   destroyed; status files of containers not in `known` are removed.
    ///
    /// Must be called within a tokio runtime, before launching new containers.
    ///
    /// The default implementation reattaches nothing and reports every known container
    /// as gone.
    fn recover(&self, known: &[(ContainerId, u32)]) -> BoxFuture<'static, Result<Recovered, IsolationError>> {
        let gone = known.iter().map(|(id, _)| id.clone()).collect();
        Box::pin(std::future::ready(Ok(Recovered { gone, ..Recovered::default() })))
    }

    /// Removes what the containerizer set up for itself (the cgroup roots) when no
    /// container is left in it; a no-op otherwise. Call once, when done with it.
    fn cleanup(&self) {}

    /// A one-line description of the isolation in use, for the agent's start-up log,
    /// e.g. "cgroups-v1 (cpu, cpuacct, memory, pids, freezer) under /sys/fs/cgroup/*/keel".
    /// Defaults to [`Containerizer::name`].
    fn isolation(&self) -> String {
        self.name().to_owned()
    }
}
