//! POSIX recovery: reattach known containers by main pid (which must still run and lead
//! its own process group) and watch them end by polling `/proc`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Container, Inner};
use crate::config::{validate_id, ContainerId, Limits};
use crate::error::IsolationError;
use crate::recovered::{publish, unknown_termination, Outcome, ProcessIdentity, Recovered};
use crate::slots::Slot;

/// Limits recorded for a reattached container until `update` says otherwise: the POSIX
/// containerizer enforces none, and the previous agent's are not known here.
const UNKNOWN_LIMITS: Limits = Limits { cpus: 1.0, mem_bytes: None, pids: None };

/// Reattaches the known containers that still run; the others are `gone`.
pub(super) fn recover(inner: &Inner, known: Vec<(ContainerId, u32)>) -> Result<Recovered, IsolationError> {
    let mut recovered = Recovered::default();
    for (id, pid) in known {
        validate_id(&id).map_err(|reason| IsolationError::invalid(&id, reason))?;
        if inner.containers.lock().contains_key(&id) {
            recovered.reattached.push(id);
            continue;
        }
        let Some(identity) = ProcessIdentity::of(pid).filter(|identity| leads_its_group(identity.pid)) else {
            info!(container_id = %id, pid, "recovered container is gone");
            recovered.gone.push(id);
            continue;
        };
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
            limits: Mutex::new(UNKNOWN_LIMITS),
            termination: receiver.clone(),
            remembered: Mutex::new(HashMap::new()),
        };
        entry.insert(Slot::Running(Arc::new(container)));
        drop(containers);
        tokio::spawn(watch_main(id.clone(), identity, sender, receiver));
        info!(container_id = %id, pid, "container reattached");
        recovered.reattached.push(id);
    }
    recovered.reattached.sort();
    recovered.gone.sort();
    Ok(recovered)
}

/// True if `pid` leads its own process group, as every container main process does.
fn leads_its_group(pid: i32) -> bool {
    match procfs::process::Process::new(pid).and_then(|process| process.stat()) {
        Ok(stat) => stat.pgrp == pid,
        Err(error) => {
            warn!(pid, %error, "could not read a recovered container's process");
            false
        }
    }
}

/// Publishes the unknown termination once the reattached main process has ended.
async fn watch_main(
    id: ContainerId,
    identity: ProcessIdentity,
    sender: watch::Sender<Option<Outcome>>,
    mut receiver: watch::Receiver<Option<Outcome>>,
) {
    identity.ended(&mut receiver).await;
    if publish(&sender, Ok(unknown_termination())) {
        info!(container_id = %id, pid = identity.pid, "recovered container main process ended");
    }
}
