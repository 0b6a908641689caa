//! The master's registry: the durable cluster state a new leader needs after
//! failover, behind the [`Registry`] trait (memory, file, later etcd).
//!
//! Every write is a transaction fenced by the writer's leadership [`Term`]: a
//! leader first claims its term with [`Registry::recover`], which returns the state;
//! [`Registry::apply`] then succeeds only while no higher term has been claimed, so
//! a deposed leader can never overwrite its successor. Term 0 means "never claimed"
//! and is not a valid term.
//!
//! The precondition logic lives in [`RegistryState::apply`] (pure, no I/O) and is
//! shared by every implementation; implementations clone the state, apply the whole
//! transaction, and commit only if every operation succeeded.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod file;
mod memory;
mod state;
#[cfg(test)]
mod tests;

pub use file::FileRegistry;
pub use keel_kernel::transport::BoxFuture;
pub use memory::MemoryRegistry;
pub use state::{
    AgentRecord, FrameworkRecord, GoneRecord, Operation, QuotaRecord, RegistryState, UnreachableRecord,
};

/// A leadership term: higher terms fence out lower ones. Terms start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The master's durable cluster state store. Implementations are interchangeable.
pub trait Registry: Send + Sync + 'static {
    /// Claims leadership at `term` and returns the current state. Fails with
    /// [`RegistryError::Fenced`] if a higher term has already claimed it. Claiming
    /// the current term again is allowed (a retried recovery).
    fn recover(&self, term: Term) -> BoxFuture<'static, Result<RegistryState, RegistryError>>;

    /// Applies `operations` in order and atomically (all or nothing) if `term` is
    /// still the highest claimed; returns the new state version, a counter bumped by
    /// every non-empty transaction. An empty transaction only checks the fence.
    fn apply(&self, term: Term, operations: Vec<Operation>)
        -> BoxFuture<'static, Result<u64, RegistryError>>;

    /// A short name for logs and /state (`memory`, `file:/path`).
    fn describe(&self) -> String;
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A higher term has claimed the registry: the caller is no longer the leader
    /// and must step down. Nothing was changed.
    #[error("term {term} is fenced out by term {current}")]
    Fenced {
        /// The caller's term.
        term: Term,
        /// The highest term claimed so far.
        current: Term,
    },
    /// An operation's precondition does not hold (e.g. the agent is already
    /// admitted). Nothing was changed.
    #[error("precondition failed: {0}")]
    Precondition(String),
    /// Reading or writing the registry's storage failed. The stored state is the old
    /// one or the new one, never a torn mix.
    #[error("registry I/O on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The stored state cannot be read (bad JSON, unknown format). The storage is
    /// left as it is for an operator to inspect; it is never reset silently.
    #[error("registry is corrupt: {0}")]
    Corrupt(String),
    /// The call itself is invalid: term 0, a term that was never claimed, a record
    /// without an id, a weight that is not finite and positive, a non-finite time.
    #[error("invalid registry request: {0}")]
    InvalidArgument(String),
}

/// Checks `term` against the highest claimed term `current` for a write.
fn check_write_term(term: Term, current: Term) -> Result<(), RegistryError> {
    check_term_valid(term)?;
    if term < current {
        return Err(RegistryError::Fenced { term, current });
    }
    if term > current {
        return Err(RegistryError::InvalidArgument(format!(
            "term {term} has not been claimed (current term {current}); call recover first"
        )));
    }
    Ok(())
}

/// Checks `term` against the highest claimed term `current` for a claim.
fn check_claim_term(term: Term, current: Term) -> Result<(), RegistryError> {
    check_term_valid(term)?;
    if term < current {
        return Err(RegistryError::Fenced { term, current });
    }
    Ok(())
}

fn check_term_valid(term: Term) -> Result<(), RegistryError> {
    if term.0 == 0 {
        return Err(RegistryError::InvalidArgument("term 0 is not a valid term".to_string()));
    }
    Ok(())
}

/// Applies `operations` to a copy of `state`; returns the copy only if all succeeded.
fn apply_all(state: &RegistryState, operations: &[Operation]) -> Result<RegistryState, RegistryError> {
    let mut next = state.clone();
    for operation in operations {
        next.apply(operation)?;
    }
    Ok(next)
}
