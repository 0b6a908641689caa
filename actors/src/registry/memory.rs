//! An in-memory registry: for `keel local`, tests, and a master without storage.
//! Nothing survives the process; clones share one state.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    apply_all, check_claim_term, check_write_term, BoxFuture, Operation, Registry, RegistryError,
    RegistryState, Term,
};

/// A registry kept in memory. `Clone` shares the state, so a test can hand one to a
/// master and inspect it, or hand it to the next master to simulate failover.
#[derive(Debug, Clone, Default)]
pub struct MemoryRegistry {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// The highest claimed term; `Term(0)` until the first `recover`.
    term: Term,
    version: u64,
    state: RegistryState,
}

impl Default for Inner {
    fn default() -> Self {
        Inner { term: Term(0), version: 0, state: RegistryState::default() }
    }
}

impl MemoryRegistry {
    /// An empty registry with no term claimed.
    pub fn new() -> MemoryRegistry {
        MemoryRegistry::default()
    }

    /// A registry holding `state` (version 0, no term claimed), e.g. to start a
    /// master as if after failover.
    pub fn with_state(state: RegistryState) -> MemoryRegistry {
        let inner = Inner { term: Term(0), version: 0, state };
        MemoryRegistry { inner: Arc::new(Mutex::new(inner)) }
    }

    /// The current state, without claiming anything.
    pub fn state(&self) -> RegistryState {
        self.lock().state.clone()
    }

    /// The highest claimed term (`Term(0)` if none) and the state version.
    pub fn term_and_version(&self) -> (Term, u64) {
        let inner = self.lock();
        (inner.term, inner.version)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is replaced whole only after a transaction succeeded, so a panic
        // elsewhere cannot leave it half-applied: poisoning can be ignored.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn recover_now(&self, term: Term) -> Result<RegistryState, RegistryError> {
        let mut inner = self.lock();
        check_claim_term(term, inner.term)?;
        inner.term = term;
        tracing::info!(registry = "memory", term = term.0, version = inner.version, "registry recovered");
        Ok(inner.state.clone())
    }

    fn claim_next_now(&self) -> (Term, RegistryState) {
        let mut inner = self.lock();
        inner.term = Term(inner.term.0 + 1);
        tracing::info!(
            registry = "memory",
            term = inner.term.0,
            version = inner.version,
            "registry recovered"
        );
        (inner.term, inner.state.clone())
    }

    fn apply_now(&self, term: Term, operations: &[Operation]) -> Result<u64, RegistryError> {
        let mut inner = self.lock();
        check_write_term(term, inner.term)?;
        if operations.is_empty() {
            return Ok(inner.version);
        }
        inner.state = apply_all(&inner.state, operations)?;
        inner.version += 1;
        tracing::debug!(
            registry = "memory",
            term = term.0,
            version = inner.version,
            operations = operations.len(),
            "registry applied"
        );
        Ok(inner.version)
    }
}

impl Registry for MemoryRegistry {
    fn recover(&self, term: Term) -> BoxFuture<'static, Result<RegistryState, RegistryError>> {
        let result = self.recover_now(term);
        Box::pin(async move { result })
    }

    fn claim_next(&self) -> BoxFuture<'static, Result<(Term, RegistryState), RegistryError>> {
        let claimed = self.claim_next_now();
        Box::pin(async move { Ok(claimed) })
    }

    fn apply(
        &self,
        term: Term,
        operations: Vec<Operation>,
    ) -> BoxFuture<'static, Result<u64, RegistryError>> {
        let result = self.apply_now(term, &operations);
        Box::pin(async move { result })
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}
