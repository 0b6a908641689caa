//! Links: `link(target)` delivers `exited(target)` to the linker exactly once, when
//! the target stops or the connection to its node breaks.
//!
//! A link to a remote process asks the target's node to watch it (`keel.kernel.Link`);
//! that node answers `keel.kernel.Exited` when the process stops (or at once if it
//! does not exist). A broken or refused connection exits every link to that node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{ExitedNotice, LinkRequest, Node};
use crate::trace::{self, MessageId, MsgFields};
use crate::upid::{NodeAddr, Upid};
use crate::Message;

/// The link tables of one node.
#[derive(Default)]
pub(super) struct Links {
    /// Target -> names of the local processes linked to it.
    targets: HashMap<Upid, HashSet<Arc<str>>>,
    /// Local process name -> remote processes linked to it.
    watchers: HashMap<Arc<str>, HashSet<Upid>>,
}

impl Node {
    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.0.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Links `linker` (a local process) to `target`.
    pub fn link(&self, linker: &Upid, target: &Upid) {
        let added = self.links().targets.entry(target.clone()).or_default().insert(linker.name().into());
        if !added {
            return;
        }
        if target.node() == self.addr() {
            let exists =
                self.0.processes.read().unwrap_or_else(|p| p.into_inner()).contains_key(target.name());
            if !exists {
                self.fire_exited(target);
            }
            return;
        }
        let to = Upid::new(super::NODE_PROCESS_NAME, target.node().clone()).expect("reserved name is valid");
        if self.try_send(linker, &to, LinkRequest { target: target.name().to_string() }).is_err() {
            self.fire_exited(target);
        }
    }

    /// Removes a link without an exit.
    pub fn unlink(&self, linker: &Upid, target: &Upid) {
        let mut links = self.links();
        if let Some(linkers) = links.targets.get_mut(target) {
            linkers.remove(linker.name());
            if linkers.is_empty() {
                links.targets.remove(target);
            }
        }
    }

    /// A remote process asked to be told when local process `name` exits.
    pub(super) fn remote_link(&self, linker: &Upid, name: &str) {
        let exists = self.0.processes.read().unwrap_or_else(|p| p.into_inner()).contains_key(name);
        if exists {
            self.links().watchers.entry(name.into()).or_default().insert(linker.clone());
        } else {
            self.notify_exited(linker.node(), name);
        }
    }

    fn notify_exited(&self, node: &NodeAddr, name: &str) {
        let to = Upid::new(super::NODE_PROCESS_NAME, node.clone()).expect("reserved name is valid");
        self.send(&self.0.self_upid, &to, ExitedNotice { target: name.to_string() });
    }

    /// Delivers `exited(target)` to every local linker, once.
    pub(super) fn fire_exited(&self, target: &Upid) {
        let Some(linkers) = self.links().targets.remove(target) else { return };
        let processes = self.0.processes.read().unwrap_or_else(|p| p.into_inner());
        for name in linkers {
            if let Some(mailbox) = processes.get(&name) {
                let to = format!("{name}@{}", self.addr());
                let fields = MsgFields {
                    from: target,
                    to: &to,
                    kind: ExitedNotice::KIND,
                    size: 0,
                    id: MessageId::NONE,
                    parent: trace::current_message(),
                };
                trace::received(fields);
                mailbox.link_exited(target.clone());
            }
        }
    }

    /// The outgoing connection to `node` broke or could not be made.
    pub(super) fn peer_lost(&self, node: &NodeAddr) {
        let targets: Vec<Upid> = self.links().targets.keys().filter(|t| t.node() == node).cloned().collect();
        for target in targets {
            self.fire_exited(&target);
        }
    }

    /// The inbound connection from `node` closed: its watches are void.
    pub(super) fn inbound_closed(&self, node: &NodeAddr) {
        let mut links = self.links();
        for watchers in links.watchers.values_mut() {
            watchers.retain(|w| w.node() != node);
        }
        links.watchers.retain(|_, w| !w.is_empty());
    }

    /// A local process stopped: deregister it and exit its links both ways.
    pub(crate) fn process_stopped(&self, upid: &Upid) {
        self.0.processes.write().unwrap_or_else(|p| p.into_inner()).remove(upid.name());
        let watchers = {
            let mut links = self.links();
            for linkers in links.targets.values_mut() {
                linkers.remove(upid.name());
            }
            links.targets.retain(|_, l| !l.is_empty());
            links.watchers.remove(upid.name()).unwrap_or_default()
        };
        let nodes: HashSet<NodeAddr> = watchers.iter().map(|w| w.node().clone()).collect();
        for node in nodes {
            self.notify_exited(&node, upid.name());
        }
        self.fire_exited(upid);
        tracing::debug!(process = %upid, "process stopped");
    }
}
