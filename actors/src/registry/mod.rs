//! The master's registry: the durable cluster state a new leader needs after
//! failover, behind the [`Registry`] trait (memory, file, and etcd in
//! [`crate::etcd::registry`], whose terms are election epochs).
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

mod file;
mod memory;
#[cfg(test)]
mod tests;

pub use file::FileRegistry;
pub use keel_kernel::transport::BoxFuture;
pub use keel_proto::registry::{
    AgentRecord, FrameworkRecord, GoneRecord, Operation, QuotaRecord, RegistryError, RegistryState, Term,
    UnreachableRecord,
};
pub use memory::MemoryRegistry;

/// The master's durable cluster state store. Implementations are interchangeable.
pub trait Registry: Send + Sync + 'static {
    /// Claims leadership at `term` and returns the current state. Fails with
    /// [`RegistryError::Fenced`] if a higher term has already claimed it. Claiming
    /// the current term again is allowed (a retried recovery).
    fn recover(&self, term: Term) -> BoxFuture<'static, Result<RegistryState, RegistryError>>;

    /// Claims the term after the highest claimed so far and returns it with the
    /// current state: how a master without an election gets a term that fences out
    /// every earlier one, without reading a clock.
    fn claim_next(&self) -> BoxFuture<'static, Result<(Term, RegistryState), RegistryError>>;

    /// Applies `operations` in order and atomically (all or nothing) if `term` is
    /// still the highest claimed; returns the new state version, a counter bumped by
    /// every non-empty transaction. An empty transaction only checks the fence.
    fn apply(&self, term: Term, operations: Vec<Operation>)
        -> BoxFuture<'static, Result<u64, RegistryError>>;

    /// A short name for logs and /state (`memory`, `file:/path`, `etcd://h:p/NAME`).
    fn describe(&self) -> String;
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
