//! The simulated world: one event queue ordered by (time, sequence), the cores as
//! the processes, and the simulated network, election, registry, disk and
//! containers around them. Faults are drawn from the seed during the fault phase;
//! then every cut heals, every node is up again, and the cluster has to settle.
//!
//! Files: `masters.rs` (the masters, their election on a lease, the fenced
//! registry, the allocators), `agents.rs` (agents, their disks, containers and
//! recovery), `schedulers.rs` (the framework drivers), `checks.rs` (quiescence).

mod agents;
mod checks;
mod masters;
mod schedulers;

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Duration;

use keel_core::agent::container::{ContainerId, ExitStatus};
use keel_core::agent::{self, Agent, Checkpoint};
use keel_core::allocator::messages::{AllocatorCall, AllocatorEvent};
use keel_core::allocator::{AllocatorInput, AllocatorMachine};
use keel_core::detector::DetectedMaster;
use keel_core::master::{self, Master, WriteId};
use keel_core::scheduler::{self, SchedulerDriverCore};
use keel_core::timers::TimerId;
use keel_message::{NodeAddr, Upid};
use keel_proto::ids::{FrameworkId, TaskId};
use keel_proto::messages::Msg;
use keel_proto::registry::{Operation, RegistryState, Term};

use crate::frameworks::{Framework, Kind};
use crate::invariants::{names, Ledger, Violation};
use crate::network::{Cut, Network, Node};
use crate::{Report, SimConfig};

/// Simulated seconds start here on the cores' clock (a plausible Unix time).
const EPOCH_SECS: f64 = 1_700_000_000.0;
const SECOND: u64 = 1_000_000;

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// A simulated process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pid {
    Master(usize),
    Allocator(usize),
    Agent(usize),
    Scheduler(usize),
}

impl Pid {
    fn node(self) -> Node {
        match self {
            Pid::Master(k) | Pid::Allocator(k) => Node::Master(k),
            Pid::Agent(i) => Node::Agent(i),
            Pid::Scheduler(j) => Node::Scheduler(j),
        }
    }
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // events are moved, not stored in bulk beyond the queue
enum Event {
    Deliver {
        from: Upid,
        to: Upid,
        message: Msg,
    },
    Exited {
        watcher: Upid,
        target: Upid,
        incarnation: u64,
    },
    Timer {
        pid: Pid,
        id: TimerId,
        incarnation: u64,
    },
    /// A container's main process ends (whether or not an agent watches it).
    ContainerExit {
        agent: usize,
        container: ContainerId,
        status: ExitStatus,
    },
    LaunchFailed {
        agent: usize,
        incarnation: u64,
        container: ContainerId,
    },
    Recovered {
        master: usize,
        incarnation: u64,
    },
    RegistryWrite {
        master: usize,
        incarnation: u64,
    },
    ToAllocator {
        master: usize,
        incarnation: u64,
        call: AllocatorCall,
    },
    ToMaster {
        master: usize,
        incarnation: u64,
        event: AllocatorEvent,
    },
    Restart(Node),
    /// Up masters campaign; one wins if nobody leads.
    Elect,
    /// A master's lease runs out if it has not kept it alive (down or paused).
    LeaseExpired {
        master: usize,
        incarnation: u64,
    },
    /// A paused (SIGSTOPped) master runs again.
    Resume {
        master: usize,
        incarnation: u64,
    },
    /// A resumed master's watchdog sees its lease lapsed: it exits.
    StepDown {
        master: usize,
        incarnation: u64,
    },
    /// An agent's or scheduler's detector sees a new leader.
    Detected {
        node: Node,
        incarnation: u64,
        leader: DetectedMaster,
    },
    Fault,
    FrameworkTick(usize),
    Heal,
    EndOfFaults,
}

struct Scheduled {
    time: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // A max-heap: the earliest (then the first scheduled) comes out first.
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// A master process: a standby (no core) until it wins the election.
struct MasterNode {
    upid: Upid,
    up: bool,
    incarnation: u64,
    core: Option<Master>,
    allocator: Option<AllocatorMachine>,
    /// The epoch it leads with (its leader key's revision), once elected.
    term: Term,
    writes: VecDeque<(WriteId, Term, Vec<Operation>)>,
    writing: bool,
    /// Stopped (SIGSTOP) since this time: its events wait in `deferred`.
    paused_since: Option<u64>,
    deferred: Vec<Event>,
    /// When its lease runs out unless it keeps it alive again (it is down or paused).
    lease_deadline: Option<u64>,
}

/// The election on a lease and the registry it fences, as etcd keeps them.
struct Election {
    /// Who holds the leader key: a master and the process (incarnation) whose
    /// lease carries it.
    leader: Option<(usize, u64)>,
    /// The store's revision: a new leader key gets the next one (its epoch).
    revision: u64,
    /// The newest leader the detectors have reported (kept when it goes).
    last_leader: Option<DetectedMaster>,
    /// An `Elect` is scheduled.
    electing: bool,
    /// The registry's state.
    state: RegistryState,
}

struct Container {
    framework_id: FrameworkId,
    task_id: TaskId,
    running: bool,
    /// How it ended while no agent process watched it.
    exited: Option<ExitStatus>,
    /// SIGTERM ignored: only a destroy ends it.
    stubborn: bool,
}

struct AgentNode {
    up: bool,
    incarnation: u64,
    upid: Upid,
    core: Option<Agent>,
    containers: BTreeMap<ContainerId, Container>,
    /// The simulated disk: what the agent checkpointed (kept across restarts).
    disk: BTreeMap<String, Checkpoint>,
}

struct SchedulerNode {
    up: bool,
    incarnation: u64,
    upid: Upid,
    driver: Option<SchedulerDriverCore>,
    framework: Framework,
}

/// A log line kept for violation reports.
struct LogLine {
    time: u64,
    what: String,
}

pub struct World {
    config: SimConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    rng: fastrand::Rng,
    network: Network,
    faulty: bool,
    masters: Vec<MasterNode>,
    election: Election,
    agents: Vec<AgentNode>,
    schedulers: Vec<SchedulerNode>,
    routes: BTreeMap<Upid, Pid>,
    ledger: Ledger,
    violations: Vec<Violation>,
    recent: VecDeque<LogLine>,
    hash: u64,
    events: u64,
    tasks_launched: u64,
    faults_injected: BTreeMap<&'static str, u64>,
    observed: BTreeMap<&'static str, u64>,
    fault_end: u64,
}

fn upid(name: &str, node: Node) -> Upid {
    let addr: NodeAddr = node.host().parse().expect("simulated addresses parse");
    Upid::new(name, addr).expect("simulated names are valid")
}

impl World {
    pub fn new(config: &SimConfig) -> World {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let mut routes = BTreeMap::new();
        let masters = (0..config.masters.max(1))
            .map(|k| {
                let upid = upid("master", Node::Master(k));
                routes.insert(upid.clone(), Pid::Master(k));
                routes.insert(self::upid("allocator", Node::Master(k)), Pid::Allocator(k));
                MasterNode {
                    upid,
                    up: false,
                    incarnation: 0,
                    core: None,
                    allocator: None,
                    term: Term(0),
                    writes: VecDeque::new(),
                    writing: false,
                    paused_since: None,
                    deferred: Vec::new(),
                    lease_deadline: None,
                }
            })
            .collect();
        let agents = (0..config.agents)
            .map(|i| {
                let upid = upid("agent", Node::Agent(i));
                routes.insert(upid.clone(), Pid::Agent(i));
                AgentNode {
                    up: false,
                    incarnation: 0,
                    upid,
                    core: None,
                    containers: BTreeMap::new(),
                    disk: BTreeMap::new(),
                }
            })
            .collect();
        let schedulers = (0..config.frameworks)
            .map(|j| {
                let upid = upid("scheduler", Node::Scheduler(j));
                routes.insert(upid.clone(), Pid::Scheduler(j));
                let durations = (0..config.jobs_per_framework).map(|_| rng.u64(500..30_000)).collect();
                // Work arrives over the first nine tenths of the fault phase.
                let span = (micros(config.duration) / 10 * 9).max(1);
                let arrivals = (0..config.jobs_per_framework).map(|_| rng.u64(0..span)).collect();
                let framework = Framework::new(Kind::of(j), j, durations, arrivals);
                SchedulerNode { up: false, incarnation: 0, upid, driver: None, framework }
            })
            .collect();
        let fault_end = micros(config.duration);
        World {
            config: config.clone(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            rng,
            network: Network::default(),
            faulty: true,
            masters,
            election: Election {
                leader: None,
                revision: 0,
                last_leader: None,
                electing: false,
                state: RegistryState::default(),
            },
            agents,
            schedulers,
            routes,
            ledger: Ledger::default(),
            violations: Vec::new(),
            recent: VecDeque::new(),
            hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            tasks_launched: 0,
            faults_injected: BTreeMap::new(),
            observed: BTreeMap::new(),
            fault_end,
        }
    }

    fn secs(&self) -> f64 {
        EPOCH_SECS + self.now as f64 / SECOND as f64
    }

    fn at(&mut self, delay: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled { time: self.now.saturating_add(delay), seq: self.seq, event });
    }

    fn log(&mut self, what: impl FnOnce() -> String) {
        if self.recent.len() >= self.config.recent_events.max(1) {
            self.recent.pop_front();
        }
        let what = what();
        self.recent.push_back(LogLine { time: self.now, what });
    }

    fn mix(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn violation(&mut self, invariant: &'static str, detail: String) {
        if self.violations.iter().any(|v| v.invariant == invariant) {
            return;
        }
        let recent = self
            .recent
            .iter()
            .map(|l| format!("{:>10.3}s {}", l.time as f64 / SECOND as f64, l.what))
            .collect();
        self.violations.push(Violation {
            seed: self.config.seed,
            invariant,
            detail,
            at: self.now as f64 / SECOND as f64,
            recent,
        });
    }

    fn node_of(&self, upid: &Upid) -> Option<Node> {
        self.routes.get(upid).map(|pid| pid.node())
    }

    fn node_up(&self, node: Node) -> bool {
        match node {
            Node::Master(k) => self.masters[k].up,
            Node::Agent(i) => self.agents[i].up,
            Node::Scheduler(j) => self.schedulers[j].up,
        }
    }

    fn incarnation(&self, node: Node) -> u64 {
        match node {
            Node::Master(k) => self.masters[k].incarnation,
            Node::Agent(i) => self.agents[i].incarnation,
            Node::Scheduler(j) => self.schedulers[j].incarnation,
        }
    }

    fn count_fault(&mut self, kind: &'static str) {
        *self.faults_injected.entry(kind).or_default() += 1;
    }

    fn observe(&mut self, what: &'static str) {
        *self.observed.entry(what).or_default() += 1;
    }

    /// Runs the schedule to its end and checks the quiescent invariants.
    pub fn run(mut self) -> Report {
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.boot();
            self.main_loop();
            self.settled_checks();
        }));
        if let Err(panic) = started {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.violation(names::NO_PANIC, format!("panic: {message}"));
        }
        Report {
            seed: self.config.seed,
            violations: self.violations,
            hash: self.hash,
            sim_seconds: self.now as f64 / SECOND as f64,
            events: self.events,
            tasks_launched: self.tasks_launched,
            faults_injected: self.faults_injected,
            observed: self.observed,
        }
    }

    fn boot(&mut self) {
        for k in 0..self.masters.len() {
            self.start_master(k);
        }
        // The first leader is elected before anyone looks for it.
        self.elect();
        for i in 0..self.agents.len() {
            let delay = self.rng.u64(0..SECOND);
            self.at(delay, Event::Restart(Node::Agent(i)));
        }
        for j in 0..self.schedulers.len() {
            let delay = self.rng.u64(0..2 * SECOND);
            self.at(delay, Event::Restart(Node::Scheduler(j)));
            self.at(5 * SECOND, Event::FrameworkTick(j));
        }
        self.schedule_fault();
        self.at(self.fault_end, Event::EndOfFaults);
    }

    fn faults_per_minute(&self) -> f64 {
        let f = &self.config.faults;
        f.partitions_per_minute
            + f.agent_crashes_per_minute
            + f.master_crashes_per_minute
            + f.scheduler_crashes_per_minute
            + f.master_pauses_per_minute
    }

    fn schedule_fault(&mut self) {
        let rate = self.faults_per_minute();
        if rate <= 0.0 {
            return;
        }
        // Exponential gaps: a Poisson process of faults.
        let mean = 60.0 / rate;
        let gap = -mean * (1.0 - self.rng.f64()).ln();
        self.at((gap * SECOND as f64) as u64, Event::Fault);
    }

    fn main_loop(&mut self) {
        let limit = self.fault_end + micros(self.config.settle_limit);
        while let Some(Scheduled { time, event, .. }) = self.queue.pop() {
            if time > limit {
                break;
            }
            self.now = time;
            self.events += 1;
            self.event(event);
            if !self.faulty && self.settled() {
                break;
            }
        }
    }

    /// The master an event is for, if any (a paused master's events wait).
    fn master_of(&self, event: &Event) -> Option<usize> {
        let pid_of = |upid: &Upid| self.routes.get(upid).copied();
        match event {
            Event::Deliver { to, .. } => match pid_of(to) {
                Some(Pid::Master(k) | Pid::Allocator(k)) => Some(k),
                _ => None,
            },
            Event::Exited { watcher, .. } => match pid_of(watcher) {
                Some(Pid::Master(k) | Pid::Allocator(k)) => Some(k),
                _ => None,
            },
            Event::Timer { pid: Pid::Master(k) | Pid::Allocator(k), .. } => Some(*k),
            Event::Recovered { master, .. }
            | Event::RegistryWrite { master, .. }
            | Event::ToAllocator { master, .. }
            | Event::ToMaster { master, .. } => Some(*master),
            _ => None,
        }
    }

    fn event(&mut self, event: Event) {
        if let Some(k) = self.master_of(&event) {
            if self.masters[k].paused_since.is_some() {
                self.masters[k].deferred.push(event);
                return;
            }
        }
        match event {
            Event::Deliver { from, to, message } => self.deliver(from, to, message),
            Event::Exited { watcher, target, incarnation } => {
                let Some(pid) = self.routes.get(&watcher).copied() else { return };
                if !self.node_up(pid.node()) || self.incarnation(pid.node()) != incarnation {
                    return;
                }
                self.log(|| format!("exited {target} (seen by {watcher})"));
                match pid {
                    Pid::Master(k) => self.master_input(k, master::Input::Exited(target)),
                    Pid::Agent(i) => self.agent_input(i, agent::Input::Exited(target)),
                    Pid::Scheduler(j) => self.driver_input(j, scheduler::Input::Exited(target)),
                    Pid::Allocator(_) => {}
                }
            }
            Event::Timer { pid, id, incarnation } => {
                if !self.node_up(pid.node()) || self.incarnation(pid.node()) != incarnation {
                    return;
                }
                match pid {
                    Pid::Master(k) => self.master_input(k, master::Input::Timer(id)),
                    Pid::Allocator(k) => self.allocator_input(k, AllocatorInput::Timer(id)),
                    Pid::Agent(i) => self.agent_input(i, agent::Input::Timer(id)),
                    Pid::Scheduler(j) => self.driver_input(j, scheduler::Input::Timer(id)),
                }
            }
            Event::ContainerExit { agent, container, status } => {
                self.container_exit(agent, container, status)
            }
            Event::LaunchFailed { agent, incarnation, container } => {
                let node = &self.agents[agent];
                if node.up && node.incarnation == incarnation {
                    let input =
                        agent::Input::LaunchFailed { container, message: "simulated launch failure".into() };
                    self.agent_input(agent, input);
                }
            }
            Event::Recovered { master, incarnation } => self.registry_read(master, incarnation),
            Event::RegistryWrite { master, incarnation } => self.registry_write(master, incarnation),
            Event::ToAllocator { master, incarnation, call } => {
                if self.masters[master].up && self.masters[master].incarnation == incarnation {
                    self.allocator_input(master, AllocatorInput::Call(call));
                }
            }
            Event::ToMaster { master, incarnation, event } => {
                if self.masters[master].up && self.masters[master].incarnation == incarnation {
                    self.master_input(master, master::Input::Allocator(event));
                }
            }
            Event::Restart(node) => self.restart(node),
            Event::Elect => {
                self.election.electing = false;
                self.elect();
            }
            Event::LeaseExpired { master, incarnation } => self.lease_expired(master, incarnation),
            Event::Resume { master, incarnation } => self.resume(master, incarnation),
            Event::StepDown { master, incarnation } => {
                if self.masters[master].up && self.masters[master].incarnation == incarnation {
                    self.observe("step_down");
                    self.log(|| format!("master {master} saw its lease lapse while stopped: it exits"));
                    self.crash(Node::Master(master));
                    let down = self.rng.u64(SECOND..5 * SECOND);
                    self.at(down, Event::Restart(Node::Master(master)));
                }
            }
            Event::Detected { node, incarnation, leader } => {
                if !self.node_up(node) || self.incarnation(node) != incarnation {
                    return;
                }
                match node {
                    Node::Agent(i) => self.agent_input(i, agent::Input::MasterDetected(Some(leader))),
                    Node::Scheduler(j) => {
                        self.driver_input(j, scheduler::Input::MasterDetected(Some(leader)))
                    }
                    Node::Master(_) => {}
                }
            }
            Event::Fault => {
                if self.faulty {
                    self.inject_fault();
                    self.schedule_fault();
                }
            }
            Event::FrameworkTick(j) => {
                self.at(5 * SECOND, Event::FrameworkTick(j));
                if self.schedulers[j].up {
                    let now = self.now;
                    let calls = self.schedulers[j].framework.tick(now);
                    for call in calls {
                        self.driver_input(j, scheduler::Input::Call(call));
                    }
                }
            }
            Event::Heal => self.network.heal(self.now),
            Event::EndOfFaults => {
                self.faulty = false;
                self.network.heal_all();
                self.log(|| "faults stop; every cut heals, every node comes back".to_string());
                for k in 0..self.masters.len() {
                    if self.masters[k].paused_since.is_some() {
                        let incarnation = self.masters[k].incarnation;
                        self.at(SECOND, Event::Resume { master: k, incarnation });
                    }
                }
                for node in self.down_nodes() {
                    self.at(SECOND, Event::Restart(node));
                }
            }
        }
    }

    fn down_nodes(&self) -> Vec<Node> {
        let mut down = Vec::new();
        down.extend(self.masters.iter().enumerate().filter(|(_, m)| !m.up).map(|(k, _)| Node::Master(k)));
        down.extend(self.agents.iter().enumerate().filter(|(_, a)| !a.up).map(|(i, _)| Node::Agent(i)));
        down.extend(
            self.schedulers.iter().enumerate().filter(|(_, s)| !s.up).map(|(j, _)| Node::Scheduler(j)),
        );
        down
    }

    // ---- faults ----

    fn pick_node(&mut self) -> Node {
        let masters = self.masters.len();
        let choices = masters + self.agents.len() + self.schedulers.len();
        match self.rng.usize(0..choices) {
            k if k < masters => Node::Master(k),
            i if i < masters + self.agents.len() => Node::Agent(i - masters),
            j => Node::Scheduler(j - masters - self.agents.len()),
        }
    }

    /// The master a master fault hits: the leader more often than not.
    fn pick_master(&mut self) -> usize {
        match self.election.leader {
            Some((leader, _)) if self.rng.f64() < 0.7 => leader,
            _ => self.rng.usize(0..self.masters.len()),
        }
    }

    fn inject_fault(&mut self) {
        let f = self.config.faults.clone();
        let total = self.faults_per_minute();
        let mut roll = self.rng.f64() * total;
        roll -= f.partitions_per_minute;
        if roll < 0.0 {
            return self.partition();
        }
        roll -= f.agent_crashes_per_minute;
        if roll < 0.0 && !self.agents.is_empty() {
            let i = self.rng.usize(0..self.agents.len());
            if self.agents[i].up {
                self.count_fault("agent_crash");
                self.crash(Node::Agent(i));
                let down = self.rng.u64(SECOND..60 * SECOND);
                self.at(down, Event::Restart(Node::Agent(i)));
            }
            return;
        }
        roll -= f.master_crashes_per_minute;
        if roll < 0.0 {
            let k = self.pick_master();
            if self.masters[k].up {
                self.count_fault("master_crash");
                self.crash(Node::Master(k));
                let down = self.rng.u64(SECOND..20 * SECOND);
                self.at(down, Event::Restart(Node::Master(k)));
            }
            return;
        }
        roll -= f.master_pauses_per_minute;
        if roll < 0.0 {
            let k = self.pick_master();
            if self.masters[k].up && self.masters[k].paused_since.is_none() {
                self.count_fault("master_pause");
                self.pause(k);
            }
            return;
        }
        // A scheduler crash: only frameworks built to fail over.
        let failover: Vec<usize> = (0..self.schedulers.len())
            .filter(|j| self.schedulers[*j].framework.kind == Kind::Failover)
            .collect();
        if failover.is_empty() {
            return;
        }
        let j = failover[self.rng.usize(0..failover.len())];
        if self.schedulers[j].up && self.schedulers[j].framework.busy() {
            self.count_fault("scheduler_crash");
            self.crash(Node::Scheduler(j));
            let down = self.rng.u64(SECOND..30 * SECOND);
            self.at(down, Event::Restart(Node::Scheduler(j)));
        }
    }

    fn partition(&mut self) {
        let a = self.pick_node();
        let mut b = self.pick_node();
        if a == b {
            b = Node::Master(self.election.leader.map_or(0, |(k, _)| k));
        }
        if a == b {
            return;
        }
        let silent = self.rng.bool();
        let two_way = self.rng.bool();
        let until = self.now + self.rng.u64(SECOND..90 * SECOND);
        self.count_fault(if silent { "partition_silent" } else { "partition" });
        self.log(|| {
            format!("partition {a:?} -> {b:?}{} silent={silent}", if two_way { " (and back)" } else { "" })
        });
        let mut cuts = vec![Cut { from: a, to: b, silent, until }];
        if two_way {
            cuts.push(Cut { from: b, to: a, silent, until });
        }
        for cut in cuts {
            let routes = &self.routes;
            let broken = self.network.add_cut(cut, |u| routes.get(u).map(|p| p.node()));
            self.break_links(broken);
        }
        let heal = until - self.now;
        self.at(heal, Event::Heal);
    }

    fn break_links(&mut self, broken: Vec<(Upid, Upid)>) {
        for (watcher, target) in broken {
            let Some(node) = self.node_of(&watcher) else { continue };
            let incarnation = self.incarnation(node);
            let delay = self.rng.u64(1_000..50_000);
            self.at(delay, Event::Exited { watcher, target, incarnation });
        }
    }

    fn crash(&mut self, node: Node) {
        self.log(|| format!("crash {node:?}"));
        let routes = &self.routes;
        let broken = self.network.node_down(node, |u| routes.get(u).map(|p| p.node()));
        match node {
            Node::Master(k) => self.master_down(k),
            Node::Agent(i) => {
                // Its containers keep running: the next agent process recovers them.
                self.agents[i].up = false;
                self.agents[i].core = None;
            }
            Node::Scheduler(j) => {
                self.schedulers[j].up = false;
                self.schedulers[j].driver = None;
            }
        }
        self.break_links(broken);
    }

    fn restart(&mut self, node: Node) {
        if self.node_up(node) {
            return;
        }
        match node {
            Node::Master(k) => self.start_master(k),
            Node::Agent(i) => self.start_agent(i),
            Node::Scheduler(j) => self.start_scheduler(j),
        }
    }

    /// The master the others start with: the last leader the detectors reported, or
    /// the first master before any was elected.
    fn known_master(&self) -> Upid {
        match &self.election.last_leader {
            Some(leader) => leader.upid.clone(),
            None => self.masters[0].upid.clone(),
        }
    }

    // ---- the network ----

    fn send(&mut self, from: Upid, to: Upid, message: Msg) {
        let (Some(from_node), Some(to_node)) = (self.node_of(&from), self.node_of(&to)) else { return };
        if self.faulty {
            let (drop, duplicate, delay, max_delay_ms) = {
                let f = &self.config.faults;
                (f.drop, f.duplicate, f.delay, f.max_delay_ms)
            };
            if self.network.cut(from_node, to_node, self.now) || self.rng.f64() < drop {
                self.log(|| format!("lost {} {from} -> {to}", message.kind()));
                return;
            }
            let copies = if self.rng.f64() < duplicate { 2 } else { 1 };
            for _ in 0..copies {
                let mut latency = self.rng.u64(100..2_000);
                if self.rng.f64() < delay {
                    latency += self.rng.u64(0..max_delay_ms.max(1) * 1_000);
                }
                self.at(
                    latency,
                    Event::Deliver { from: from.clone(), to: to.clone(), message: message.clone() },
                );
            }
        } else {
            let latency = self.rng.u64(100..2_000);
            self.at(latency, Event::Deliver { from, to, message });
        }
    }

    fn deliver(&mut self, from: Upid, to: Upid, message: Msg) {
        let Some(pid) = self.routes.get(&to).copied() else { return };
        let (Some(from_node), to_node) = (self.node_of(&from), pid.node()) else { return };
        if !self.node_up(to_node) || (self.faulty && self.network.cut(from_node, to_node, self.now)) {
            return;
        }
        self.mix(&self.now.to_le_bytes());
        self.mix(message.kind().as_bytes());
        self.mix(from.as_str().as_bytes());
        self.mix(to.as_str().as_bytes());
        self.log(|| format!("{} {from} -> {to}{}", message.kind(), describe(&message)));
        match pid {
            Pid::Master(k) => self.master_input(k, master::Input::Message { from, message }),
            Pid::Agent(i) => self.agent_input(i, agent::Input::Message { from, message }),
            Pid::Scheduler(j) => self.driver_input(j, scheduler::Input::Message { from, message }),
            Pid::Allocator(_) => {}
        }
    }

    fn link(&mut self, watcher: Upid, target: Upid) {
        let (Some(watcher_node), Some(target_node)) = (self.node_of(&watcher), self.node_of(&target)) else {
            return;
        };
        // A standby master has no master process: a link to it exits at once.
        let process_exists = match self.routes.get(&target) {
            Some(Pid::Master(k)) => self.masters[*k].core.is_some(),
            _ => true,
        };
        let reachable = self.node_up(target_node)
            && process_exists
            && !(self.faulty && self.network.cut(watcher_node, target_node, self.now));
        if reachable {
            self.network.link(watcher, target);
        } else {
            let incarnation = self.incarnation(watcher_node);
            let delay = self.rng.u64(1_000..100_000);
            self.at(delay, Event::Exited { watcher, target, incarnation });
        }
    }
}

/// A few words about a message for the log.
fn describe(message: &Msg) -> String {
    match message {
        Msg::StatusUpdate(u) => format!(" {} {}", u.status.task_id, u.status.state.name()),
        Msg::StatusUpdateAcknowledgement(a) => format!(" {}", a.task_id),
        Msg::RunTask(r) => format!(" {}", r.task.task_id),
        Msg::KillTask(k) => format!(" {}", k.task_id),
        Msg::AcceptOffers(a) => format!(" {} offers", a.offer_ids.len()),
        Msg::AgentRegistered(r) => format!(" {}", r.agent_id),
        Msg::Ping(p) => format!(" connected={}", p.connected),
        Msg::CheckLaunches(c) => format!(" {} tasks", c.tasks.len()),
        Msg::LaunchesChecked(c) => format!(" known={} dropped={}", c.known.len(), c.dropped.len()),
        _ => String::new(),
    }
}
