//! keel-isolation: containers. The [`Containerizer`] interface the agent drives, and
//! [`PosixContainerizer`], which runs each container as a plain process group.
//!
//! Invariant: depends on no other Keel crate. cgroups isolators (cpu, memory, pids,
//! OOM detection) come later behind the same trait: [`Limits`] are already part of the
//! config and [`Limitation`] of the termination.

#![warn(missing_docs)]

mod config;
mod error;
mod posix;
mod procs;
mod status;

use std::future::Future;
use std::pin::Pin;

pub use config::{ContainerConfig, ContainerId, LaunchCommand, Limits, MAX_CONTAINER_ID_BYTES};
pub use error::IsolationError;
pub use posix::{PosixContainerizer, DEFAULT_PATH, INHERITED_ENV};
pub use status::{ExitStatusKind, Limitation, Termination, Usage};

/// A boxed, sendable future, as returned by the [`Containerizer`] methods that wait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Launches, watches and destroys containers. Implementations: [`PosixContainerizer`]
/// (name "posix"); a cgroups one later.
///
/// Lifecycle of a container: `launch` -> (`signal`, `usage`)* -> main process exits,
/// `wait` resolves -> `destroy` (kills what is left, forgets the id). `destroy` may be
/// called at any time; until it is, the id stays taken even after the main exit.
pub trait Containerizer: Send + Sync + 'static {
    /// Validates `config`, starts the container's main process and returns its pid.
    /// Synchronous and fast (called at 1,000+ launches/s); must be called within a
    /// tokio runtime, on which the main process is reaped.
    fn launch(&self, config: ContainerConfig) -> Result<u32, IsolationError>;

    /// Resolves when the container's main process has exited (at once if it already
    /// has). May be called any number of times; every call gets the same `Termination`.
    fn wait(&self, id: &ContainerId) -> BoxFuture<'static, Result<Termination, IsolationError>>;

    /// Sends signal number `signal` to the container's whole process group.
    /// Succeeds without effect if no process of the group is left.
    fn signal(&self, id: &ContainerId, signal: i32) -> Result<(), IsolationError>;

    /// SIGKILLs the container's whole process tree, waits until the main process is
    /// reaped, and forgets the container (its id can then be reused; `wait` futures
    /// obtained before still resolve).
    fn destroy(&self, id: &ContainerId) -> BoxFuture<'static, Result<(), IsolationError>>;

    /// Current resource usage, summed over the container's live processes. The POSIX
    /// implementation walks all of `/proc` per call: poll it every few seconds, not
    /// in a tight loop.
    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolationError>;

    /// Ids of the launched, not yet destroyed containers, sorted.
    fn containers(&self) -> Vec<ContainerId>;

    /// The implementation's name, e.g. "posix".
    fn name(&self) -> &'static str;
}
