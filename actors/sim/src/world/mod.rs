//! The simulated world: one event queue ordered by (time, sequence), the cores as
//! the processes, and the simulated network, registry, disk and containers around
//! them. Faults are drawn from the seed during the fault phase; then every cut heals,
//! every node is up again, and the cluster has to settle.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Duration;

use keel_core::agent::container::{ContainerId, ExitStatus, Termination};
use keel_core::agent::{self, Agent, Checkpoint};
use keel_core::allocator::messages::{AllocatorCall, AllocatorEvent};
use keel_core::allocator::{AllocatorConfig, AllocatorEffect, AllocatorInput, AllocatorMachine};
use keel_core::master::{self, Master, Phase, RegistryFailure, WriteId};
use keel_core::scheduler::{self, DriverConfig, SchedulerDriverCore};
use keel_core::timers::TimerId;
use keel_message::{NodeAddr, Upid};
use keel_proto::ids::{FrameworkId, TaskId};
use keel_proto::messages::Msg;
use keel_proto::registry::{Operation, RegistryState, Term};
use keel_proto::resources::Resources;
use keel_proto::task::{AgentInfo, TaskState};

use crate::frameworks::{Framework, Kind, Told};
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
    Master,
    Allocator,
    Agent(usize),
    Scheduler(usize),
}

impl Pid {
    fn node(self) -> Node {
        match self {
            Pid::Master | Pid::Allocator => Node::Master,
            Pid::Agent(i) => Node::Agent(i),
            Pid::Scheduler(j) => Node::Scheduler(j),
        }
    }
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // events are moved, not stored in bulk beyond the queue
enum Event {
    Deliver { from: Upid, to: Upid, message: Msg },
    Exited { watcher: Upid, target: Upid, incarnation: u64 },
    Timer { pid: Pid, id: TimerId, incarnation: u64 },
    ContainerExit { agent: usize, incarnation: u64, container: ContainerId, status: ExitStatus },
    LaunchFailed { agent: usize, incarnation: u64, container: ContainerId },
    Recovered { incarnation: u64 },
    RegistryWrite { incarnation: u64 },
    ToAllocator { incarnation: u64, call: AllocatorCall },
    ToMaster { incarnation: u64, event: AllocatorEvent },
    Restart(Node),
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

struct MasterNode {
    up: bool,
    incarnation: u64,
    core: Option<Master>,
    allocator: Option<AllocatorMachine>,
    writes: VecDeque<(WriteId, Term, Vec<Operation>)>,
    writing: bool,
}

struct Registry {
    term: Term,
    state: RegistryState,
}

struct Container {
    framework_id: FrameworkId,
    task_id: TaskId,
    running: bool,
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
    master_upid: Upid,
    master: MasterNode,
    registry: Registry,
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
    fault_end: u64,
}

fn upid(name: &str, node: Node) -> Upid {
    let addr: NodeAddr = node.host().parse().expect("simulated addresses parse");
    Upid::new(name, addr).expect("simulated names are valid")
}

impl World {
    pub fn new(config: &SimConfig) -> World {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let master_upid = upid("master", Node::Master);
        let allocator_upid = upid("allocator", Node::Master);
        let mut routes = BTreeMap::new();
        routes.insert(master_upid.clone(), Pid::Master);
        routes.insert(allocator_upid.clone(), Pid::Allocator);
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
            master_upid,
            master: MasterNode {
                up: false,
                incarnation: 0,
                core: None,
                allocator: None,
                writes: VecDeque::new(),
                writing: false,
            },
            registry: Registry { term: Term(0), state: RegistryState::default() },
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
            Node::Master => self.master.up,
            Node::Agent(i) => self.agents[i].up,
            Node::Scheduler(j) => self.schedulers[j].up,
        }
    }

    fn incarnation(&self, node: Node) -> u64 {
        match node {
            Node::Master => self.master.incarnation,
            Node::Agent(i) => self.agents[i].incarnation,
            Node::Scheduler(j) => self.schedulers[j].incarnation,
        }
    }

    fn count_fault(&mut self, kind: &'static str) {
        *self.faults_injected.entry(kind).or_default() += 1;
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
        }
    }

    fn boot(&mut self) {
        self.start_master();
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

    fn settled(&self) -> bool {
        self.schedulers.iter().all(|s| !s.framework.busy())
            && self.agents.iter().all(|a| a.containers.values().all(|c| !c.running))
            && self.master.core.as_ref().is_some_and(|m| {
                m.phase() == Phase::Serving
                    && m.agents().len() == self.agents.len()
                    && m.agents().values().all(|a| a.active)
                    && m.frameworks().values().all(|f| f.tasks.is_empty())
            })
            && self.agents.iter().all(|a| {
                a.core.as_ref().is_some_and(|c| {
                    c.connection() == agent::Connection::Registered
                        && c.frameworks().values().all(|f| f.executors.values().all(|e| e.tasks.is_empty()))
                })
            })
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, message } => self.deliver(from, to, message),
            Event::Exited { watcher, target, incarnation } => {
                let Some(pid) = self.routes.get(&watcher).copied() else { return };
                if !self.node_up(pid.node()) || self.incarnation(pid.node()) != incarnation {
                    return;
                }
                self.log(|| format!("exited {target} (seen by {watcher})"));
                match pid {
                    Pid::Master => self.master_input(master::Input::Exited(target)),
                    Pid::Agent(i) => self.agent_input(i, agent::Input::Exited(target)),
                    Pid::Scheduler(j) => self.driver_input(j, scheduler::Input::Exited(target)),
                    Pid::Allocator => {}
                }
            }
            Event::Timer { pid, id, incarnation } => {
                if !self.node_up(pid.node()) || self.incarnation(pid.node()) != incarnation {
                    return;
                }
                match pid {
                    Pid::Master => self.master_input(master::Input::Timer(id)),
                    Pid::Allocator => self.allocator_input(AllocatorInput::Timer(id)),
                    Pid::Agent(i) => self.agent_input(i, agent::Input::Timer(id)),
                    Pid::Scheduler(j) => self.driver_input(j, scheduler::Input::Timer(id)),
                }
            }
            Event::ContainerExit { agent, incarnation, container, status } => {
                let node = &mut self.agents[agent];
                if !node.up || node.incarnation != incarnation {
                    return;
                }
                let Some(c) = node.containers.get_mut(&container) else { return };
                if !c.running {
                    return;
                }
                c.running = false;
                let message = match status {
                    ExitStatus::Exited(code) => format!("exited with status {code}"),
                    ExitStatus::Signaled(signal) => format!("killed by signal {signal}"),
                };
                let task = c.task_id.clone();
                self.log(|| format!("container of {task} on agent {agent}: {message}"));
                let termination = Termination { status, message, memory_limit: None };
                self.agent_input(agent, agent::Input::ContainerExited { container, termination });
            }
            Event::LaunchFailed { agent, incarnation, container } => {
                let node = &self.agents[agent];
                if node.up && node.incarnation == incarnation {
                    let input =
                        agent::Input::LaunchFailed { container, message: "simulated launch failure".into() };
                    self.agent_input(agent, input);
                }
            }
            Event::Recovered { incarnation } => {
                if !self.master.up || self.master.incarnation != incarnation {
                    return;
                }
                let result = if self.faulty && self.rng.f64() < self.config.faults.registry_failure {
                    self.count_fault("registry");
                    Err(RegistryFailure("simulated registry failure".into()))
                } else {
                    self.registry.term = Term(self.registry.term.0 + 1);
                    Ok((self.registry.term, self.registry.state.clone()))
                };
                self.master_input(master::Input::Recovered(result));
            }
            Event::RegistryWrite { incarnation } => self.registry_write(incarnation),
            Event::ToAllocator { incarnation, call } => {
                if self.master.up && self.master.incarnation == incarnation {
                    self.allocator_input(AllocatorInput::Call(call));
                }
            }
            Event::ToMaster { incarnation, event } => {
                if self.master.up && self.master.incarnation == incarnation {
                    self.master_input(master::Input::Allocator(event));
                }
            }
            Event::Restart(node) => self.restart(node),
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
                for node in self.down_nodes() {
                    self.at(SECOND, Event::Restart(node));
                }
            }
        }
    }

    fn down_nodes(&self) -> Vec<Node> {
        let mut down = Vec::new();
        if !self.master.up {
            down.push(Node::Master);
        }
        down.extend(self.agents.iter().enumerate().filter(|(_, a)| !a.up).map(|(i, _)| Node::Agent(i)));
        down.extend(
            self.schedulers.iter().enumerate().filter(|(_, s)| !s.up).map(|(j, _)| Node::Scheduler(j)),
        );
        down
    }

    // ---- faults ----

    fn pick_node(&mut self) -> Node {
        let choices = 1 + self.agents.len() + self.schedulers.len();
        match self.rng.usize(0..choices) {
            0 => Node::Master,
            i if i <= self.agents.len() => Node::Agent(i - 1),
            i => Node::Scheduler(i - 1 - self.agents.len()),
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
            if self.master.up {
                self.count_fault("master_crash");
                self.crash(Node::Master);
                let down = self.rng.u64(SECOND..20 * SECOND);
                self.at(down, Event::Restart(Node::Master));
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
            b = Node::Master;
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
            Node::Master => {
                self.master.up = false;
                self.master.core = None;
                self.master.allocator = None;
                // Writes in flight: a prefix of them reached the registry.
                let pending: Vec<_> = self.master.writes.drain(..).collect();
                let applied = self.rng.usize(0..=pending.len());
                for (_, term, operations) in pending.into_iter().take(applied) {
                    if term == self.registry.term {
                        let mut next = self.registry.state.clone();
                        if operations.iter().all(|op| next.apply(op).is_ok()) {
                            self.registry.state = next;
                        }
                    }
                }
                self.master.writing = false;
            }
            Node::Agent(i) => {
                // Its containers keep running until the next agent process destroys them.
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
            Node::Master => self.start_master(),
            Node::Agent(i) => self.start_agent(i),
            Node::Scheduler(j) => self.start_scheduler(j),
        }
    }

    fn start_master(&mut self) {
        let mut config = master::MasterConfig::new(self.master_upid.clone(), "M");
        config.agent_ping_timeout = Duration::from_secs(5);
        config.max_agent_ping_timeouts = 3;
        config.agent_reregister_timeout = Duration::from_secs(120);
        config.launch_check_timeout = Duration::from_secs(20);
        config.offer_timeout = Some(Duration::from_secs(10));
        config.seed = self.rng.u64(..);
        let allocator = AllocatorConfig { seed: self.rng.u64(..), ..AllocatorConfig::default() };
        self.master.up = true;
        self.master.incarnation += 1;
        self.master.core = Some(Master::new(config));
        self.master.allocator = Some(AllocatorMachine::new(allocator));
        self.master.writes.clear();
        self.master.writing = false;
        self.log(|| "master starts".to_string());
        self.allocator_input(AllocatorInput::Start);
        self.master_input(master::Input::Start);
    }

    fn start_agent(&mut self, i: usize) {
        let node = &mut self.agents[i];
        // A new agent process destroys what the last one left (no recovery yet).
        for container in node.containers.values_mut() {
            container.running = false;
        }
        node.containers.clear();
        node.up = true;
        node.incarnation += 1;
        let info = AgentInfo {
            hostname: format!("agent-{i}"),
            id: None,
            resources: "cpus:4;mem:1024;disk:1024".parse().unwrap_or_default(),
            attributes: BTreeMap::new(),
        };
        let mut config = agent::AgentConfig::new(
            node.upid.clone(),
            self.master_upid.clone(),
            format!("/sim/agent-{i}").into(),
            info,
        );
        config.incarnation = self.rng.u64(..);
        config.seed = self.rng.u64(..);
        config.kill_grace_period = Duration::from_secs(2);
        node.core = Some(Agent::new(config));
        self.log(|| format!("agent {i} starts"));
        self.agent_input(i, agent::Input::Start);
    }

    fn start_scheduler(&mut self, j: usize) {
        let seed = self.rng.u64(..);
        let node = &mut self.schedulers[j];
        if !node.framework.busy() {
            return;
        }
        node.up = true;
        node.incarnation += 1;
        let mut config = DriverConfig::new(self.master_upid.clone(), node.framework.info());
        config.seed = seed;
        config.subscribe_backoff = Duration::from_millis(200);
        config.subscribe_backoff_max = Duration::from_secs(5);
        node.driver = Some(SchedulerDriverCore::new(config));
        self.log(|| format!("scheduler {j} starts"));
        self.driver_input(j, scheduler::Input::Start);
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
            Pid::Master => self.master_input(master::Input::Message { from, message }),
            Pid::Agent(i) => self.agent_input(i, agent::Input::Message { from, message }),
            Pid::Scheduler(j) => self.driver_input(j, scheduler::Input::Message { from, message }),
            Pid::Allocator => {}
        }
    }

    fn link(&mut self, watcher: Upid, target: Upid) {
        let (Some(watcher_node), Some(target_node)) = (self.node_of(&watcher), self.node_of(&target)) else {
            return;
        };
        let reachable = self.node_up(target_node)
            && !(self.faulty && self.network.cut(watcher_node, target_node, self.now));
        if reachable {
            self.network.link(watcher, target);
        } else {
            let incarnation = self.incarnation(watcher_node);
            let delay = self.rng.u64(1_000..100_000);
            self.at(delay, Event::Exited { watcher, target, incarnation });
        }
    }

    // ---- the master, its allocator and its registry ----

    fn master_input(&mut self, input: master::Input) {
        let now = self.secs();
        let Some(core) = self.master.core.as_mut() else { return };
        let effects = core.handle(now, input);
        let incarnation = self.master.incarnation;
        for effect in effects {
            match effect {
                master::Effect::Send { to, message } => {
                    let from = self.master_upid.clone();
                    self.send(from, to, message);
                }
                master::Effect::Link(to) => {
                    let watcher = self.master_upid.clone();
                    self.link(watcher, to);
                }
                master::Effect::Unlink(to) => self.network.unlink(&self.master_upid, &to),
                master::Effect::SetTimer(t) => {
                    self.at(micros(t.after), Event::Timer { pid: Pid::Master, id: t.id, incarnation })
                }
                master::Effect::CancelTimer(_) => {}
                master::Effect::Recover => {
                    let latency = self.rng.u64(1_000..20_000);
                    self.at(latency, Event::Recovered { incarnation });
                }
                master::Effect::Persist { write, term, operations } => {
                    self.master.writes.push_back((write, term, operations));
                    if !self.master.writing {
                        self.master.writing = true;
                        let latency = self.rng.u64(500..20_000);
                        self.at(latency, Event::RegistryWrite { incarnation });
                    }
                }
                master::Effect::Allocator(call) => self.at(0, Event::ToAllocator { incarnation, call }),
                master::Effect::Answer { .. } => {}
                master::Effect::Abort { reason } => {
                    self.log(|| format!("master aborts: {reason}"));
                    self.crash(Node::Master);
                    let down = self.rng.u64(SECOND..10 * SECOND);
                    self.at(down, Event::Restart(Node::Master));
                    return;
                }
            }
        }
    }

    fn registry_write(&mut self, incarnation: u64) {
        if !self.master.up || self.master.incarnation != incarnation {
            return;
        }
        let Some((write, term, operations)) = self.master.writes.pop_front() else {
            self.master.writing = false;
            return;
        };
        let result = if self.faulty && self.rng.f64() < self.config.faults.registry_failure {
            self.count_fault("registry");
            Err(RegistryFailure("simulated registry failure".into()))
        } else if term != self.registry.term {
            Err(RegistryFailure(format!("term {} is fenced out by term {}", term.0, self.registry.term.0)))
        } else {
            let mut next = self.registry.state.clone();
            match operations.iter().try_for_each(|op| next.apply(op)) {
                Ok(()) => {
                    self.registry.state = next;
                    Ok(())
                }
                Err(e) => Err(RegistryFailure(e.to_string())),
            }
        };
        if let Err(RegistryFailure(reason)) = &result {
            if !reason.starts_with("simulated") {
                // The master asked for something the registry refuses: its view and
                // the registry's diverged.
                let reason = reason.clone();
                self.log(|| format!("registry refuses a write: {reason}"));
            }
        }
        if self.master.writes.is_empty() {
            self.master.writing = false;
        } else {
            let latency = self.rng.u64(500..20_000);
            self.at(latency, Event::RegistryWrite { incarnation });
        }
        self.master_input(master::Input::Persisted { write, result });
    }

    fn allocator_input(&mut self, input: AllocatorInput) {
        let now = self.secs();
        let Some(allocator) = self.master.allocator.as_mut() else { return };
        let effects = allocator.handle(now, input);
        let incarnation = self.master.incarnation;
        for effect in effects {
            match effect {
                AllocatorEffect::ToMaster(event) => self.at(0, Event::ToMaster { incarnation, event }),
                AllocatorEffect::SetTimer(t) => {
                    self.at(micros(t.after), Event::Timer { pid: Pid::Allocator, id: t.id, incarnation })
                }
                AllocatorEffect::Ran => {}
            }
        }
    }

    // ---- agents and their containers ----

    fn agent_input(&mut self, i: usize, input: agent::Input) {
        let now = self.secs();
        let Some(core) = self.agents[i].core.as_mut() else { return };
        let effects = core.handle(now, input);
        let incarnation = self.agents[i].incarnation;
        let me = self.agents[i].upid.clone();
        for effect in effects {
            match effect {
                agent::Effect::Send { to, message } => {
                    self.check_persisted(i, &message);
                    self.send(me.clone(), to, message);
                }
                agent::Effect::Link(to) => self.link(me.clone(), to),
                agent::Effect::Unlink(to) => self.network.unlink(&me, &to),
                agent::Effect::SetTimer(t) => {
                    self.at(micros(t.after), Event::Timer { pid: Pid::Agent(i), id: t.id, incarnation })
                }
                agent::Effect::CancelTimer(_) => {}
                agent::Effect::Launch(spec) => self.launch(i, spec),
                agent::Effect::Signal { container, .. } => {
                    let stubborn = self.agents[i].containers.get(&container).is_some_and(|c| c.stubborn);
                    if !stubborn {
                        let delay = self.rng.u64(10_000..2 * SECOND);
                        self.at(
                            delay,
                            Event::ContainerExit {
                                agent: i,
                                incarnation,
                                container,
                                status: ExitStatus::Signaled(15),
                            },
                        );
                    }
                }
                agent::Effect::Update { .. } => {}
                agent::Effect::Destroy(container) => {
                    if self.agents[i].containers.get(&container).is_some_and(|c| c.running) {
                        self.at(
                            1_000,
                            Event::ContainerExit {
                                agent: i,
                                incarnation,
                                container,
                                status: ExitStatus::Signaled(9),
                            },
                        );
                    }
                }
                agent::Effect::Checkpoint(checkpoint) => self.checkpoint(i, checkpoint),
                agent::Effect::Exit { reason } => {
                    self.log(|| format!("agent {i} exits: {reason}"));
                    self.crash(Node::Agent(i));
                    let down = self.rng.u64(SECOND..5 * SECOND);
                    self.at(down, Event::Restart(Node::Agent(i)));
                    return;
                }
            }
        }
    }

    fn launch(&mut self, i: usize, spec: keel_core::agent::container::ContainerSpec) {
        let framework_id = FrameworkId(spec.env.get("KEEL_FRAMEWORK_ID").cloned().unwrap_or_default());
        let task_id = TaskId(spec.env.get("KEEL_TASK_ID").cloned().unwrap_or_default());
        let incarnation = self.agents[i].incarnation;
        if self.faulty && self.rng.f64() < self.config.faults.launch_failure {
            self.count_fault("launch");
            self.at(0, Event::LaunchFailed { agent: i, incarnation, container: spec.id });
            return;
        }
        let key = (framework_id.clone(), task_id.clone());
        let record = self.ledger.tasks.entry(key).or_default();
        record.starts += 1;
        let starts = record.starts;
        let told = record.told_final;
        if starts > 1 {
            self.violation(
                names::TASK_RAN_TWICE,
                format!("task {task_id} of {framework_id} started {starts} times (now on agent {i})"),
            );
        }
        if let Some((state, when)) = told {
            self.violation(
                names::TASK_RAN_AFTER_FINAL,
                format!(
                    "task {task_id} of {framework_id} started on agent {i} after its framework was told {} at {:.3}s",
                    state.name(),
                    when as f64 / SECOND as f64
                ),
            );
        }
        self.tasks_launched += 1;
        let duration_ms = self.task_duration_ms(i, &framework_id, &task_id);
        let code = if self.rng.f64() < 0.85 { 0 } else { 1 };
        let stubborn = self.rng.f64() < 0.1;
        self.log(|| format!("container of {task_id} starts on agent {i} for {duration_ms} ms"));
        self.agents[i]
            .containers
            .insert(spec.id.clone(), Container { framework_id, task_id, running: true, stubborn });
        self.at(
            duration_ms * 1_000,
            Event::ContainerExit {
                agent: i,
                incarnation,
                container: spec.id,
                status: ExitStatus::Exited(code),
            },
        );
    }

    fn task_duration_ms(&self, i: usize, framework_id: &FrameworkId, task_id: &TaskId) -> u64 {
        self.agents[i]
            .core
            .as_ref()
            .and_then(|c| c.frameworks().get(framework_id))
            .and_then(|f| f.executors.values().find_map(|e| e.tasks.get(task_id)))
            .and_then(|t| t.info.labels.get("sim.duration_ms"))
            .and_then(|d| d.parse().ok())
            .unwrap_or(1_000)
    }

    fn checkpoint(&mut self, i: usize, checkpoint: Checkpoint) {
        let disk = &mut self.agents[i].disk;
        match &checkpoint {
            Checkpoint::Task { framework_id, executor_id, info, .. } => {
                disk.insert(format!("task/{framework_id}/{executor_id}/{}", info.task_id), checkpoint);
            }
            Checkpoint::RemoveExecutor { framework_id, executor_id } => {
                let prefix = format!("task/{framework_id}/{executor_id}/");
                disk.retain(|k, _| !k.starts_with(&prefix));
            }
            Checkpoint::RemoveFramework { framework_id } => {
                let prefix = format!("task/{framework_id}/");
                disk.retain(|k, _| !k.starts_with(&prefix));
            }
            Checkpoint::Agent(_) => {
                disk.insert("agent".into(), checkpoint);
            }
            Checkpoint::Resources(_) => {
                disk.insert("resources".into(), checkpoint);
            }
            Checkpoint::Framework { framework_id, .. } => {
                disk.insert(format!("framework/{framework_id}"), checkpoint);
            }
            Checkpoint::Executor { framework_id, executor_id, .. } => {
                disk.insert(format!("executor/{framework_id}/{executor_id}"), checkpoint);
            }
        }
    }

    /// Persist first, then tell: an update of a checkpointing framework is on the
    /// agent's disk before it is sent.
    fn check_persisted(&mut self, i: usize, message: &Msg) {
        let Msg::StatusUpdate(update) = message else { return };
        let checkpointing = self.agents[i]
            .core
            .as_ref()
            .and_then(|c| c.frameworks().get(&update.framework_id))
            .is_some_and(|f| f.info.checkpoint);
        if !checkpointing {
            return;
        }
        let executor_id = update.executor_id.clone().unwrap_or_default();
        let key = format!("task/{}/{executor_id}/{}", update.framework_id, update.status.task_id);
        let on_disk = matches!(
            self.agents[i].disk.get(&key),
            Some(Checkpoint::Task { pending, .. }) if pending.iter().any(|p| p.uuid == update.uuid)
        );
        if !on_disk {
            self.violation(
                names::PERSIST_BEFORE_TELL,
                format!(
                    "agent {i} sent update {} of task {} before checkpointing it",
                    update.uuid, update.status.task_id
                ),
            );
        }
    }

    // ---- schedulers ----

    fn driver_input(&mut self, j: usize, input: scheduler::Input) {
        let now = self.secs();
        let Some(driver) = self.schedulers[j].driver.as_mut() else { return };
        let effects = driver.handle(now, input);
        let incarnation = self.schedulers[j].incarnation;
        let me = self.schedulers[j].upid.clone();
        for effect in effects {
            match effect {
                scheduler::Effect::Send { to, message } => self.send(me.clone(), to, message),
                scheduler::Effect::Link(to) => self.link(me.clone(), to),
                scheduler::Effect::Unlink(to) => self.network.unlink(&me, &to),
                scheduler::Effect::SetTimer(t) => {
                    self.at(micros(t.after), Event::Timer { pid: Pid::Scheduler(j), id: t.id, incarnation })
                }
                scheduler::Effect::Event(event) => {
                    let now = self.now;
                    let (calls, told) = self.schedulers[j].framework.on_event(event, now);
                    self.told(j, told);
                    for call in calls {
                        self.driver_input(j, scheduler::Input::Call(call));
                    }
                }
                scheduler::Effect::Finished(status) => {
                    self.log(|| format!("scheduler {j} finished: {status:?}"));
                    let framework = &mut self.schedulers[j].framework;
                    if !framework.done {
                        if let scheduler::DriverStatus::Aborted(reason) = &status {
                            if reason.contains("removed") {
                                framework.removed = true;
                            }
                        }
                    }
                    // The scheduler process exits: its connections close.
                    self.crash(Node::Scheduler(j));
                    if self.schedulers[j].framework.busy() {
                        // Not done and not removed: a new instance takes over.
                        let delay = self.rng.u64(SECOND..5 * SECOND);
                        self.at(delay, Event::Restart(Node::Scheduler(j)));
                    }
                    return;
                }
            }
        }
    }

    fn told(&mut self, j: usize, told: Told) {
        let Some(framework_id) = self.schedulers[j].framework.framework_id.clone() else { return };
        match told {
            Told::Nothing => {}
            Told::Final(task_id, state) => {
                let record = self.ledger.tasks.entry((framework_id, task_id)).or_default();
                if record.told_final.is_none() {
                    record.told_final = Some((state, self.now));
                }
            }
            Told::Contradiction { task_id, first, now, reconciliation } => {
                let invariant = if reconciliation {
                    names::RECONCILIATION_AGREES
                } else {
                    names::FINAL_STATE_CONTRADICTED
                };
                self.violation(
                    invariant,
                    format!(
                        "framework {framework_id} was told {} for task {task_id}, then {}{}",
                        first.name(),
                        now.name(),
                        if reconciliation { " (a reconciliation answer)" } else { "" }
                    ),
                );
            }
        }
    }

    // ---- quiescence ----

    fn settled_checks(&mut self) {
        if self.violations.iter().any(|v| v.invariant == names::NO_PANIC) {
            return;
        }
        if !self.settled() {
            let detail = self.why_unsettled();
            self.violation(names::SETTLES, detail);
        }
        // Every launched task of a framework that was not removed has a final state.
        let mut without = Vec::new();
        for node in &self.schedulers {
            let framework = &node.framework;
            if framework.removed {
                continue;
            }
            if let Some((task_id, _)) = framework.tasks.iter().find(|(_, t)| t.final_state.is_none()) {
                without.push(format!("{} never learned the final state of {task_id}", framework.name));
            }
        }
        if let Some(detail) = without.into_iter().next() {
            self.violation(names::TASK_WITHOUT_FINAL_STATE, detail);
        }
        // Nothing told final (or of a removed framework) still runs.
        let mut running = Vec::new();
        for (i, node) in self.agents.iter().enumerate() {
            for c in node.containers.values().filter(|c| c.running) {
                running.push((i, c.framework_id.clone(), c.task_id.clone()));
            }
        }
        for (i, framework_id, task_id) in running {
            let told =
                self.ledger.tasks.get(&(framework_id.clone(), task_id.clone())).and_then(|r| r.told_final);
            if let Some((state, _)) = told {
                let detail = format!(
                    "task {task_id} of {framework_id} runs on agent {i} though {} was told",
                    state.name()
                );
                self.violation(names::TASK_RAN_AFTER_FINAL, detail);
            }
        }
        self.check_books();
    }

    fn why_unsettled(&self) -> String {
        let mut why = Vec::new();
        for node in &self.schedulers {
            if node.framework.busy() {
                let unfinished = node.framework.tasks.values().filter(|t| t.final_state.is_none()).count();
                let (pending, launched, finished, gave_up) = node.framework.jobs_summary();
                why.push(format!(
                    "{} is not done ({unfinished} tasks without a final state; jobs: {pending} pending, {launched} launched, {finished} finished, {gave_up} given up; scheduler {})",
                    node.framework.name,
                    match &node.driver {
                        Some(d) => format!("up, driver connected={} id={:?}", d.connected(), d.framework_id()),
                        None => "down".to_string(),
                    }
                ));
                if let Some(m) = &self.master.core {
                    for (id, f) in m.frameworks() {
                        why.push(format!(
                            "master has {id} pid={:?} connected={} active={} removing={}",
                            f.pid.as_ref().map(|p| p.to_string()),
                            f.connected,
                            f.active,
                            f.removing
                        ));
                    }
                }
            }
        }
        match &self.master.core {
            None => why.push("the master is down".into()),
            Some(m) if m.phase() != Phase::Serving => why.push(format!("the master is {:?}", m.phase())),
            Some(m) => {
                if m.agents().len() != self.agents.len() {
                    why.push(format!("{} of {} agents registered", m.agents().len(), self.agents.len()));
                }
                for (id, a) in m.agents() {
                    if !a.active {
                        why.push(format!("agent {id} is inactive"));
                    }
                }
                for (id, f) in m.frameworks() {
                    if !f.tasks.is_empty() {
                        why.push(format!("framework {id} still has {} tasks at the master", f.tasks.len()));
                    }
                }
            }
        }
        for (i, a) in self.agents.iter().enumerate() {
            let running = a.containers.values().filter(|c| c.running).count();
            if running > 0 {
                why.push(format!("agent {i} still runs {running} containers"));
            }
            match &a.core {
                None => why.push(format!("agent {i} is down")),
                Some(c) if c.connection() != agent::Connection::Registered => {
                    why.push(format!("agent {i} is {:?}", c.connection()))
                }
                Some(_) => {}
            }
        }
        why.join("; ")
    }

    /// The master's and the allocator's books, and the agents' own, agree.
    fn check_books(&mut self) {
        let (Some(master), Some(allocator)) = (self.master.core.as_ref(), self.master.allocator.as_ref())
        else {
            return;
        };
        let mut problems = Vec::new();
        let mut holding = Vec::new();
        for (agent_id, agent) in master.agents() {
            let Some(books) = allocator.core().agent_accounting(agent_id) else {
                problems.push(format!("the allocator does not know agent {agent_id}"));
                continue;
            };
            let used = master.used_on(agent_id);
            let offered = master.offered_on(agent_id);
            let master_allocated = used.clone() + offered.clone();
            if !same(&books.allocated, &master_allocated) {
                problems.push(format!(
                    "agent {agent_id}: the allocator has {} allocated, the master {} used + {} offered",
                    books.allocated, used, offered
                ));
            }
            if !same(&books.held, &books.allocated)
                || !same(&(books.available.clone() + books.allocated.clone()), &books.total)
            {
                problems.push(format!("agent {agent_id}: allocator books do not add up ({books:?})"));
            }
            if !same(&books.total, &agent.info.resources) {
                problems.push(format!(
                    "agent {agent_id}: totals differ ({} vs {})",
                    books.total, agent.info.resources
                ));
            }
            if !used.is_empty() {
                holding.push(format!("agent {agent_id} holds {used} for terminal or finished work"));
            }
        }
        if let Some(first) = problems.into_iter().next() {
            self.violation(names::RESOURCES_CONSERVED, first);
        }
        if self.schedulers.iter().all(|s| !s.framework.busy()) {
            if let Some(first) = holding.into_iter().next() {
                self.violation(names::TERMINAL_TASKS_HOLD_NOTHING, first);
            }
        }
        // The master's view of each agent's live tasks is the agent's.
        let Some(master) = self.master.core.as_ref() else { return };
        let mut diverged = None;
        for node in &self.agents {
            let Some(core) = node.core.as_ref() else { continue };
            let Some(agent_id) = core.agent_id() else { continue };
            let at_agent: std::collections::BTreeSet<(FrameworkId, TaskId, TaskState)> = core
                .frameworks()
                .iter()
                .flat_map(|(f, fw)| {
                    fw.executors.values().flat_map(move |e| {
                        e.tasks.iter().map(move |(t, task)| (f.clone(), t.clone(), task.state))
                    })
                })
                .collect();
            let at_master: std::collections::BTreeSet<(FrameworkId, TaskId, TaskState)> = master
                .frameworks()
                .iter()
                .flat_map(|(f, fw)| {
                    fw.tasks
                        .values()
                        .filter(|t| &t.info.agent_id == agent_id)
                        .map(move |t| (f.clone(), t.info.task_id.clone(), t.state))
                })
                .collect();
            if at_agent != at_master && diverged.is_none() {
                diverged =
                    Some(format!("agent {agent_id}: the agent has {at_agent:?}, the master {at_master:?}"));
            }
        }
        if let Some(detail) = diverged {
            self.violation(names::VIEWS_CONVERGE, detail);
        }
    }
}

/// Equal resources, up to the fixed-point rounding of scalars.
fn same(a: &Resources, b: &Resources) -> bool {
    a.contains(b) && b.contains(a)
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
