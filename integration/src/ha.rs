//! A high-availability cluster for the tests: a real etcd (1 or 3 members, see
//! [`crate::etcd`]) and several `keel master --etcd` processes on fixed loopback
//! ports, so that a killed master restarts where it was. Who leads is read from
//! each master's `/metrics/snapshot` (`master/elected`).

use std::time::Duration;

use crate::cluster::{keel_binary, start_agent};
use crate::etcd::EtcdCluster;
use crate::proxy::free_port;
use crate::{wait_until, ChildNode};

/// Masters campaigning in one etcd cluster.
#[derive(Debug)]
pub struct HaMasters {
    /// The etcd cluster.
    pub etcd: EtcdCluster,
    /// The Keel cluster's name in etcd.
    pub name: String,
    masters: Vec<Option<ChildNode>>,
    ports: Vec<u16>,
    extra: Vec<String>,
}

impl HaMasters {
    /// `etcd_members` etcd members and `masters` masters with `extra` flags each.
    pub fn start(etcd_members: usize, masters: usize, extra: &[&str]) -> HaMasters {
        let etcd = EtcdCluster::start(etcd_members);
        let name = format!("test-{}-{:04x}", std::process::id(), free_port());
        let ports = (0..masters).map(|_| free_port()).collect();
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut cluster =
            HaMasters { etcd, name, masters: (0..masters).map(|_| None).collect(), ports, extra };
        for i in 0..masters {
            cluster.restart(i);
        }
        cluster
    }

    /// `etcd://HOST:PORT[,...]/NAME`: what agents and frameworks are given.
    pub fn address(&self) -> String {
        let hosts: Vec<String> =
            self.etcd.endpoints().iter().map(|e| e.trim_start_matches("http://").to_string()).collect();
        format!("etcd://{}/{}", hosts.join(","), self.name)
    }

    /// Master `i`'s `host:port`.
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// How many masters there are (running or not).
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Master `i`'s process, if it runs.
    pub fn process(&mut self, i: usize) -> Option<&mut ChildNode> {
        self.masters[i].as_mut()
    }

    /// Whether master `i` runs and says it is elected.
    pub fn elected(&self, i: usize) -> bool {
        self.masters[i].is_some()
            && crate::http_get(&self.addr(i), "/metrics/snapshot")
                .ok()
                .filter(|(status, _)| *status == 200)
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|json| json["master/elected"].as_f64())
                == Some(1.0)
    }

    /// The master that says it is elected, if one does.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len()).find(|i| self.elected(*i))
    }

    /// Waits until a master serves as the elected leader.
    pub fn wait_leader(&self, deadline: Duration) -> Option<usize> {
        let mut leader = None;
        wait_until(deadline, || {
            leader = self.leader();
            leader.is_some()
        });
        leader
    }

    /// SIGKILLs master `i` (by PID).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut master) = self.masters[i].take() {
            master.kill();
        }
    }

    /// (Re)starts master `i` on its port; it campaigns.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let port = self.ports[i].to_string();
        let endpoints = self.etcd.endpoints().join(",");
        let mut args: Vec<&str> =
            vec!["master", "--port", &port, "--etcd", &endpoints, "--cluster", &self.name];
        args.extend(self.extra.iter().map(String::as_str));
        let binary = keel_binary();
        let child =
            ChildNode::start_with(binary.to_str().expect("utf-8 path"), &args, "master listening on ")
                .expect("master starts");
        self.masters[i] = Some(child);
    }

    /// Forgets master `i`'s process after it exited on its own (not killed).
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let status = self.masters[i].as_mut().and_then(|m| m.try_wait());
        if status.is_some() {
            self.masters[i] = None;
        }
        status
    }

    /// An agent following this cluster's leader.
    pub fn agent(&self, work_dir: &std::path::Path, extra: &[&str]) -> ChildNode {
        start_agent(&self.address(), work_dir, extra)
    }
}
