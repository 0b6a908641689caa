//! The simulated network: which node each process is on, partitions between nodes
//! (one-way or two-way; connections broken, so links exit, or silent, so only
//! pings can tell), and links with the kernel's semantics (an `Exited` once per
//! link when its target stops or becomes unreachable).

use std::collections::BTreeSet;

use keel_message::Upid;

/// A simulated node (one per process, as with the real binaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    /// Master `k` (and its allocator), leading or standing by.
    Master(usize),
    /// Agent `i`.
    Agent(usize),
    /// Framework `j`'s scheduler.
    Scheduler(usize),
}

impl Node {
    /// The node's address in the simulation.
    pub fn host(self) -> String {
        match self {
            Node::Master(k) => format!("10.0.0.{}:5050", k + 1),
            Node::Agent(i) => format!("10.0.1.{}:5051", i + 1),
            Node::Scheduler(j) => format!("10.0.2.{}:6000", j + 1),
        }
    }
}

/// A cut from one node to another until a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Messages from here...
    pub from: Node,
    /// ...to here are lost.
    pub to: Node,
    /// Whether connections stay up (nothing tells the sender but missing answers).
    pub silent: bool,
    /// When it heals (microseconds).
    pub until: u64,
}

/// Partitions and links.
#[derive(Debug, Default)]
pub struct Network {
    cuts: Vec<Cut>,
    links: BTreeSet<(Upid, Upid)>,
}

impl Network {
    /// Whether a message from `from` to `to` is lost at `now`.
    pub fn cut(&self, from: Node, to: Node, now: u64) -> bool {
        from != to && self.cuts.iter().any(|c| c.from == from && c.to == to && c.until > now)
    }

    /// Adds a cut; returns the links it breaks (watcher, target) when it is not
    /// silent (their `Exited` is the caller's to deliver).
    pub fn add_cut(&mut self, cut: Cut, node_of: impl Fn(&Upid) -> Option<Node>) -> Vec<(Upid, Upid)> {
        self.cuts.push(cut);
        if cut.silent {
            return Vec::new();
        }
        let broken: Vec<(Upid, Upid)> = self
            .links
            .iter()
            .filter(|(watcher, target)| node_of(watcher) == Some(cut.from) && node_of(target) == Some(cut.to))
            .cloned()
            .collect();
        for link in &broken {
            self.links.remove(link);
        }
        broken
    }

    /// Forgets healed cuts.
    pub fn heal(&mut self, now: u64) {
        self.cuts.retain(|c| c.until > now);
    }

    /// Heals every cut.
    pub fn heal_all(&mut self) {
        self.cuts.clear();
    }

    /// Records a link.
    pub fn link(&mut self, watcher: Upid, target: Upid) {
        self.links.insert((watcher, target));
    }

    /// Removes a link.
    pub fn unlink(&mut self, watcher: &Upid, target: &Upid) {
        self.links.remove(&(watcher.clone(), target.clone()));
    }

    /// A node went down: links to it break (returned, for their `Exited`); links
    /// from it are forgotten.
    pub fn node_down(&mut self, node: Node, node_of: impl Fn(&Upid) -> Option<Node>) -> Vec<(Upid, Upid)> {
        let mut broken = Vec::new();
        self.links.retain(|(watcher, target)| {
            if node_of(watcher) == Some(node) {
                return false;
            }
            if node_of(target) == Some(node) {
                broken.push((watcher.clone(), target.clone()));
                return false;
            }
            true
        });
        broken
    }
}
