//! The containers a containerizer tracks, by id. An id is reserved while its
//! container is being set up, so a concurrent launch with the same id is refused
//! without holding the lock across a fork.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::ContainerId;
use crate::error::IsolationError;

/// A container id's entry.
pub(crate) enum Slot<C> {
    /// Reserved: being launched.
    Launching,
    /// Launched (or reattached).
    Running(Arc<C>),
}

/// The id -> container table of one containerizer.
pub(crate) struct Slots<C> {
    map: Mutex<HashMap<ContainerId, Slot<C>>>,
}

impl<C> Default for Slots<C> {
    fn default() -> Self {
        Slots { map: Mutex::new(HashMap::new()) }
    }
}

impl<C> Slots<C> {
    /// The table, for the few callers that need several steps under one lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<ContainerId, Slot<C>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `id` for a launch; a taken id is a duplicate.
    pub(crate) fn reserve(&self, id: &ContainerId) -> Result<(), IsolationError> {
        match self.lock().entry(id.clone()) {
            Entry::Occupied(_) => Err(IsolationError::DuplicateContainer(id.clone())),
            Entry::Vacant(entry) => {
                entry.insert(Slot::Launching);
                Ok(())
            }
        }
    }

    /// Frees a reservation whose launch failed.
    pub(crate) fn release(&self, id: &ContainerId) {
        self.lock().remove(id);
    }

    /// Records a launched (or reattached) container under `id`.
    pub(crate) fn fill(&self, id: ContainerId, container: Arc<C>) {
        self.lock().insert(id, Slot::Running(container));
    }

    /// The running container `id`.
    pub(crate) fn get(&self, id: &ContainerId) -> Result<Arc<C>, IsolationError> {
        match self.lock().get(id) {
            Some(Slot::Running(container)) => Ok(container.clone()),
            Some(Slot::Launching) | None => Err(IsolationError::UnknownContainer(id.clone())),
        }
    }

    /// Whether `id` is reserved or running.
    pub(crate) fn contains(&self, id: &ContainerId) -> bool {
        self.lock().contains_key(id)
    }

    /// Forgets `container` if it is still the one registered under `id`.
    pub(crate) fn remove(&self, id: &ContainerId, container: &Arc<C>) {
        let mut map = self.lock();
        if matches!(map.get(id), Some(Slot::Running(c)) if Arc::ptr_eq(c, container)) {
            map.remove(id);
        }
    }

    /// The ids of the running containers, sorted.
    pub(crate) fn running_ids(&self) -> Vec<ContainerId> {
        let mut ids: Vec<ContainerId> = self
            .lock()
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Running(_)))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}
