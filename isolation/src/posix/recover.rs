//! POSIX recovery: reattach known containers by main pid (which must still run and
//! lead its own process group) and watch them end by polling `/proc`, or, when the main
//! process has ended but its waiter left a status file, register them as exited with
//! the recorded status.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Container, Inner};
use crate::config::{validate_id, ContainerId, Limits};
use crate::error::IsolationError;
use crate::recovered::{
    publish, recorded_termination, unknown_termination, Outcome, ProcessIdentity, Recovered,
};
use crate::slots::Slot;
use crate::status::Termination;
use crate::waiter::{StatusDir, StatusFile};

/// Limits recorded for a reattached container until `update` says otherwise: the POSIX
/// containerizer enforces none, and the previous agent's are not known here.
const UNKNOWN_LIMITS: Limits = Limits { cpus: 1.0, mem_bytes: None, pids: None };

/// What recovery found of one known container.
enum Found {
    /// The main process runs.
    Running(ProcessIdentity),
    /// The main process ended; this is how.
    Exited(Termination),
    /// Nothing: no main process, no status file.
    Gone,
}

/// Reattaches the known containers that still run or left a status file; the others
/// are `gone`. Removes the status files of containers not in `known`.
pub(super) fn recover(inner: &Inner, known: Vec<(ContainerId, u32)>) -> Result<Recovered, IsolationError> {
    let mut recovered = Recovered::default();
    let mut known_ids = HashSet::new();
    for (id, pid) in known {
        validate_id(&id).map_err(|reason| IsolationError::invalid(&id, reason))?;
        known_ids.insert(id.clone());
        if inner.containers.lock().contains_key(&id) {
            recovered.reattached.push(id);
            continue;
        }
        // The main process's own identity, even as a zombie its new parent has not reaped.
        let leader =
            ProcessIdentity::of_any(pid).filter(|(_, pgrp, _)| *pgrp == i32::try_from(pid).unwrap_or(0));
        let status_file = inner.statuses.as_ref().map_or(StatusFile::Missing, |statuses| statuses.read(&id));
        let found = match (&status_file, leader) {
            (StatusFile::Recorded(record), _) => Found::Exited(record.termination()),
            (_, Some((identity, _, false))) => Found::Running(identity),
            (StatusFile::Missing, _) => Found::Gone,
            (other, _) => {
                let path = inner.statuses.as_ref().map(|statuses| statuses.path(&id)).unwrap_or_default();
                let reason = other.unknown_reason(&path).unwrap_or_default();
                warn!(container_id = %id, pid, %reason, "recovered container ended with no recorded exit status");
                Found::Exited(unknown_termination(&reason))
            }
        };
        if matches!(found, Found::Gone) {
            info!(container_id = %id, pid, "recovered container is gone");
            recovered.gone.push(id);
            continue;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(IsolationError::NoRuntime(id));
        }
        let mut containers = inner.containers.lock();
        let entry = match containers.entry(id.clone()) {
            Entry::Occupied(_) => {
                recovered.reattached.push(id);
                continue;
            }
            Entry::Vacant(entry) => entry,
        };
        let (sender, receiver) = watch::channel(None);
        let container = Container {
            id: id.clone(),
            pid,
            waiter: !matches!(status_file, StatusFile::Missing),
            // The group stays the container's while its main process exists: running, or
            // (ended) as a zombie its new parent has not reaped. A live leader of an
            // ended container's group is some other process that reused the pid.
            main_start_ticks: match (&found, leader) {
                (Found::Running(identity), _) => Some(identity.start_ticks),
                (_, Some((identity, _, true))) => Some(identity.start_ticks),
                _ => None,
            },
            limits: Mutex::new(UNKNOWN_LIMITS),
            termination: receiver.clone(),
            remembered: Mutex::new(HashMap::new()),
        };
        entry.insert(Slot::Running(Arc::new(container)));
        drop(containers);
        match found {
            Found::Running(identity) => {
                tokio::spawn(watch_main(id.clone(), identity, inner.statuses.clone(), sender, receiver));
                info!(container_id = %id, pid, "container reattached");
            }
            Found::Exited(termination) => {
                info!(container_id = %id, pid, status = %termination.message, "container reattached; it ended while no containerizer watched");
                publish(&sender, Ok(termination));
                recovered.exited.push(id.clone());
            }
            Found::Gone => {}
        }
        recovered.reattached.push(id);
    }
    if let Some(statuses) = &inner.statuses {
        statuses.remove_all_but(|id| known_ids.contains(id) || inner.containers.contains(id));
    }
    recovered.reattached.sort();
    recovered.exited.sort();
    recovered.gone.sort();
    Ok(recovered)
}

/// Publishes the recorded termination once the reattached main process has ended.
async fn watch_main(
    id: ContainerId,
    identity: ProcessIdentity,
    statuses: Option<StatusDir>,
    sender: watch::Sender<Option<Outcome>>,
    mut receiver: watch::Receiver<Option<Outcome>>,
) {
    identity.ended(&mut receiver).await;
    let termination = recorded_termination(statuses.as_ref(), &id);
    let message = termination.message.clone();
    if publish(&sender, Ok(termination)) {
        info!(container_id = %id, pid = identity.pid, status = %message, "recovered container main process ended");
    }
}
