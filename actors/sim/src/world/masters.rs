//! The masters: standbys campaign on an election bound to a lease; the winner's
//! key revision is its epoch, and it starts its core and allocator, recovering the
//! registry. The registry fences every read and write by the leader key (etcd's
//! `Compare::create_revision(leader_key) == epoch`): a master whose lease ran out
//! writes nothing. A crashed or stopped leader's lease runs out after the TTL; a
//! stopped master that runs again past two thirds of the TTL sees its keep-alive
//! lapsed and exits; an aborting master resigns first.

use std::time::Duration;

use keel_core::allocator::{AllocatorConfig, AllocatorEffect, AllocatorInput, AllocatorMachine};
use keel_core::detector::DetectedMaster;
use keel_core::master::{self, Master, RegistryFailure};
use keel_proto::registry::Term;

use super::{micros, Event, Node, Pid, World, SECOND};

/// The lease TTL (Keel's default).
const LEASE_TTL: u64 = 2 * SECOND;

impl World {
    /// A master process starts as a standby and campaigns.
    pub(super) fn start_master(&mut self, k: usize) {
        let node = &mut self.masters[k];
        node.up = true;
        node.incarnation += 1;
        node.core = None;
        node.allocator = None;
        node.term = Term(0);
        node.writes.clear();
        node.writing = false;
        node.paused_since = None;
        node.deferred.clear();
        // (`lease_deadline` stays: an earlier process's lease may still be running out.)
        self.log(|| format!("master {k} starts (standby)"));
        self.schedule_elect();
    }

    /// A master process is gone (crashed, exited): a leader's lease outlives it.
    pub(super) fn master_down(&mut self, k: usize) {
        let incarnation = self.masters[k].incarnation;
        // Writes in flight: a prefix of them reached the registry (if still fenced in).
        let pending: Vec<_> = self.masters[k].writes.drain(..).collect();
        let applied = self.rng.usize(0..=pending.len());
        for (_, term, operations) in pending.into_iter().take(applied) {
            if self.fenced_in(k, incarnation, term) {
                let mut next = self.election.state.clone();
                if operations.iter().all(|op| next.apply(op).is_ok()) {
                    self.election.state = next;
                }
            }
        }
        let node = &mut self.masters[k];
        node.up = false;
        node.core = None;
        node.allocator = None;
        node.writing = false;
        node.paused_since = None;
        node.deferred.clear();
        if self.election.leader == Some((k, incarnation)) {
            self.arm_lease_expiry(k);
        }
    }

    /// The lease of master `k` runs out if nothing keeps it alive: after the TTL
    /// from its last keep-alive (sent every TTL/3), checked by etcd every 500 ms.
    fn arm_lease_expiry(&mut self, k: usize) {
        if self.masters[k].lease_deadline.is_some_and(|deadline| deadline > self.now) {
            return;
        }
        let since_keep_alive = self.rng.u64(0..LEASE_TTL / 3);
        let lessor = self.rng.u64(0..SECOND / 2);
        let delay = LEASE_TTL - since_keep_alive + lessor;
        self.masters[k].lease_deadline = Some(self.now + delay);
        let incarnation = self.election.leader.map_or(0, |(_, inc)| inc);
        self.at(delay, Event::LeaseExpired { master: k, incarnation });
    }

    pub(super) fn lease_expired(&mut self, k: usize, incarnation: u64) {
        if self.masters[k].lease_deadline != Some(self.now) {
            return;
        }
        self.masters[k].lease_deadline = None;
        if self.election.leader != Some((k, incarnation)) {
            return;
        }
        self.observe("lease_expired");
        self.log(|| format!("master {k}'s lease expires: its leader key is deleted"));
        self.election.leader = None;
        self.schedule_elect();
    }

    fn schedule_elect(&mut self) {
        if self.election.leader.is_some() || self.election.electing {
            return;
        }
        self.election.electing = true;
        let delay = self.rng.u64(1_000..50_000);
        self.at(delay, Event::Elect);
    }

    /// If nobody leads, one campaigning master wins: its key gets the next revision.
    pub(super) fn elect(&mut self) {
        if self.election.leader.is_some() {
            return;
        }
        let candidates: Vec<usize> = (0..self.masters.len())
            .filter(|k| {
                let m = &self.masters[*k];
                m.up && m.paused_since.is_none() && m.core.is_none()
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let k = candidates[self.rng.usize(0..candidates.len())];
        self.election.revision += 1;
        let epoch = self.election.revision;
        let incarnation = self.masters[k].incarnation;
        self.election.leader = Some((k, incarnation));
        self.masters[k].term = Term(epoch);
        self.mix(&epoch.to_le_bytes());
        self.observe("election");
        self.log(|| format!("master {k} is elected (epoch {epoch})"));
        self.become_leader(k);
        let leader = DetectedMaster { upid: self.masters[k].upid.clone(), epoch };
        self.election.last_leader = Some(leader.clone());
        // Every detector observing the election sees it, each a little later.
        let watchers: Vec<Node> = (0..self.agents.len())
            .map(Node::Agent)
            .chain((0..self.schedulers.len()).map(Node::Scheduler))
            .filter(|node| self.node_up(*node))
            .collect();
        for node in watchers {
            let incarnation = self.incarnation(node);
            let delay = self.rng.u64(1_000..30_000);
            self.at(delay, Event::Detected { node, incarnation, leader: leader.clone() });
        }
    }

    fn become_leader(&mut self, k: usize) {
        let mut config = master::MasterConfig::new(self.masters[k].upid.clone(), "M");
        config.agent_ping_timeout = Duration::from_secs(5);
        config.max_agent_ping_timeouts = 3;
        config.agent_reregister_timeout = Duration::from_secs(120);
        config.launch_check_timeout = Duration::from_secs(20);
        config.offer_timeout = Some(Duration::from_secs(10));
        config.seed = self.rng.u64(..);
        let allocator = AllocatorConfig { seed: self.rng.u64(..), ..AllocatorConfig::default() };
        self.masters[k].core = Some(Master::new(config));
        self.masters[k].allocator = Some(AllocatorMachine::new(allocator));
        self.allocator_input(k, AllocatorInput::Start);
        self.master_input(k, master::Input::Start);
    }

    /// Whether master `k`'s process `incarnation` may write with `term`: its leader
    /// key still exists with that revision.
    fn fenced_in(&self, k: usize, incarnation: u64, term: Term) -> bool {
        self.election.leader == Some((k, incarnation)) && self.masters[k].term == term
    }

    /// A master is stopped (SIGSTOP) for a while: it keeps nothing alive.
    pub(super) fn pause(&mut self, k: usize) {
        let incarnation = self.masters[k].incarnation;
        let duration = self.rng.u64(SECOND / 2..8 * SECOND);
        self.log(|| format!("master {k} is stopped for {:.1}s", duration as f64 / SECOND as f64));
        self.masters[k].paused_since = Some(self.now);
        if self.election.leader == Some((k, incarnation)) {
            self.arm_lease_expiry(k);
        }
        self.at(duration, Event::Resume { master: k, incarnation });
    }

    pub(super) fn resume(&mut self, k: usize, incarnation: u64) {
        let node = &mut self.masters[k];
        if !node.up || node.incarnation != incarnation {
            return;
        }
        let Some(since) = node.paused_since.take() else { return };
        if self.election.leader == Some((k, incarnation)) {
            // Its keep-alives go out again (if the lease has not run out yet).
            self.masters[k].lease_deadline = None;
        }
        let node = &mut self.masters[k];
        let deferred = std::mem::take(&mut node.deferred);
        let leading = node.core.is_some();
        let stopped_for = self.now - since;
        self.log(|| format!("master {k} runs again after {:.1}s", stopped_for as f64 / SECOND as f64));
        // What piled up while it was stopped is handled now, in order...
        for event in deferred {
            self.at(0, event);
        }
        // ...racing its watchdog, which looks every 100 ms, sees the keep-alive
        // lapsed, and exits: meanwhile it may act, and try to write, as a deposed leader.
        if leading && stopped_for > LEASE_TTL * 2 / 3 {
            let delay = self.rng.u64(0..100_000);
            self.at(delay, Event::StepDown { master: k, incarnation });
        }
        self.schedule_elect();
    }

    pub(super) fn master_input(&mut self, k: usize, input: master::Input) {
        let now = self.secs();
        let Some(core) = self.masters[k].core.as_mut() else { return };
        let effects = core.handle(now, input);
        let incarnation = self.masters[k].incarnation;
        let me = self.masters[k].upid.clone();
        for effect in effects {
            match effect {
                master::Effect::Send { to, message } => self.send(me.clone(), to, message),
                master::Effect::Link(to) => self.link(me.clone(), to),
                master::Effect::Unlink(to) => self.network.unlink(&me, &to),
                master::Effect::SetTimer(t) => {
                    self.at(micros(t.after), Event::Timer { pid: Pid::Master(k), id: t.id, incarnation })
                }
                master::Effect::CancelTimer(_) => {}
                master::Effect::Recover => {
                    let latency = self.rng.u64(1_000..20_000);
                    self.at(latency, Event::Recovered { master: k, incarnation });
                }
                master::Effect::Persist { write, term, operations } => {
                    self.masters[k].writes.push_back((write, term, operations));
                    if !self.masters[k].writing {
                        self.masters[k].writing = true;
                        let latency = self.rng.u64(500..20_000);
                        self.at(latency, Event::RegistryWrite { master: k, incarnation });
                    }
                }
                master::Effect::Allocator(call) => {
                    self.at(0, Event::ToAllocator { master: k, incarnation, call })
                }
                master::Effect::Answer { .. } => {}
                master::Effect::Abort { reason } => {
                    self.log(|| format!("master {k} aborts: {reason}"));
                    // It resigns on its way out: the others need not wait for its lease.
                    if self.election.leader == Some((k, incarnation)) {
                        self.election.leader = None;
                    }
                    self.crash(Node::Master(k));
                    let down = self.rng.u64(SECOND..10 * SECOND);
                    self.at(down, Event::Restart(Node::Master(k)));
                    self.schedule_elect();
                    return;
                }
            }
        }
    }

    /// The elected master reads the registry, fenced by its leader key.
    pub(super) fn registry_read(&mut self, k: usize, incarnation: u64) {
        if !self.masters[k].up || self.masters[k].incarnation != incarnation {
            return;
        }
        let term = self.masters[k].term;
        let result = if self.faulty && self.rng.f64() < self.config.faults.registry_failure {
            self.count_fault("registry");
            Err(RegistryFailure("simulated registry failure".into()))
        } else if !self.fenced_in(k, incarnation, term) {
            Err(RegistryFailure(format!("epoch {} is no longer the leader's", term.0)))
        } else {
            Ok((term, self.election.state.clone()))
        };
        self.master_input(k, master::Input::Recovered(result));
    }

    pub(super) fn registry_write(&mut self, k: usize, incarnation: u64) {
        if !self.masters[k].up || self.masters[k].incarnation != incarnation {
            return;
        }
        let Some((write, term, operations)) = self.masters[k].writes.pop_front() else {
            self.masters[k].writing = false;
            return;
        };
        let result = if self.faulty && self.rng.f64() < self.config.faults.registry_failure {
            self.count_fault("registry");
            Err(RegistryFailure("simulated registry failure".into()))
        } else if !self.fenced_in(k, incarnation, term) {
            self.observe("fenced_write");
            self.log(|| format!("master {k}'s write with epoch {} is fenced out", term.0));
            Err(RegistryFailure(format!("epoch {} is fenced out: the leader key is gone", term.0)))
        } else {
            let mut next = self.election.state.clone();
            match operations.iter().try_for_each(|op| next.apply(op)) {
                Ok(()) => {
                    self.election.state = next;
                    Ok(())
                }
                Err(e) => {
                    // The master asked for something the registry refuses: its view
                    // and the registry's diverged.
                    let reason = e.to_string();
                    self.log(|| format!("registry refuses a write: {reason}"));
                    Err(RegistryFailure(reason))
                }
            }
        };
        if self.masters[k].writes.is_empty() {
            self.masters[k].writing = false;
        } else {
            let latency = self.rng.u64(500..20_000);
            self.at(latency, Event::RegistryWrite { master: k, incarnation });
        }
        self.master_input(k, master::Input::Persisted { write, result });
    }

    pub(super) fn allocator_input(&mut self, k: usize, input: AllocatorInput) {
        let now = self.secs();
        let Some(allocator) = self.masters[k].allocator.as_mut() else { return };
        let effects = allocator.handle(now, input);
        let incarnation = self.masters[k].incarnation;
        for effect in effects {
            match effect {
                AllocatorEffect::ToMaster(event) => {
                    self.at(0, Event::ToMaster { master: k, incarnation, event })
                }
                AllocatorEffect::SetTimer(t) => {
                    self.at(micros(t.after), Event::Timer { pid: Pid::Allocator(k), id: t.id, incarnation })
                }
                AllocatorEffect::Ran => {}
            }
        }
    }

    /// The leading master's core and allocator, if it serves.
    pub(super) fn leader(&self) -> Option<(&Master, &AllocatorMachine)> {
        let (k, incarnation) = self.election.leader?;
        let node = &self.masters[k];
        if !node.up || node.incarnation != incarnation {
            return None;
        }
        Some((node.core.as_ref()?, node.allocator.as_ref()?))
    }
}
