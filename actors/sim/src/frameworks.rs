//! The simulated frameworks: what a user's scheduler decides, as pure state
//! machines over the driver's events. Three kinds: a batch that retries failed
//! attempts, a partition-aware one that waits out UNREACHABLE, and one whose
//! scheduler crashes and fails over to new instances (its jobs and task ids are
//! its durable state, as a real framework keeps them in its own store).
//! Each reconciles the tasks it has no final state for, on every subscription and
//! periodically, as Mesos's framework guide asks.

use std::collections::BTreeMap;

use keel_core::scheduler::{Call, Event};
use keel_proto::ids::{AgentId, FrameworkId, TaskId};
use keel_proto::messages::scheduler::{Operation, ReconcileTask};
use keel_proto::resources::Resources;
use keel_proto::task::{CommandInfo, FrameworkCapability, FrameworkInfo, TaskInfo, TaskState, TaskStatus};

/// How a framework behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Retries failed, lost, dropped attempts.
    Batch,
    /// Partition-aware: UNREACHABLE is not final.
    PartitionAware,
    /// Its scheduler crashes and a new instance takes over with the framework's id.
    Failover,
}

impl Kind {
    /// The kind of framework `index`.
    pub fn of(index: usize) -> Kind {
        match index % 3 {
            0 => Kind::Batch,
            1 => Kind::PartitionAware,
            _ => Kind::Failover,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    Pending,
    Launched(TaskId),
    Finished,
    GaveUp,
}

/// What the framework knows of one of its tasks.
#[derive(Debug, Clone)]
pub struct Tracked {
    job: usize,
    /// The agent it was launched on.
    pub agent_id: AgentId,
    /// The last state it was told.
    pub last: Option<TaskState>,
    /// The final state it was told.
    pub final_state: Option<TaskState>,
}

/// What a framework's update means for the invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// Nothing to check.
    Nothing,
    /// The first final state of a task.
    Final(TaskId, TaskState),
    /// A state after a different final one.
    Contradiction {
        /// The task.
        task_id: TaskId,
        /// What it was told first.
        first: TaskState,
        /// What it is told now.
        now: TaskState,
        /// Whether it was a reconciliation answer.
        reconciliation: bool,
    },
}

/// A simulated framework's own state.
#[derive(Debug)]
pub struct Framework {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// Its id, once subscribed.
    pub framework_id: Option<FrameworkId>,
    jobs: Vec<Job>,
    attempts: Vec<u32>,
    durations_ms: Vec<u64>,
    /// When each job is submitted (simulated microseconds): work keeps arriving
    /// while the faults go on.
    arrivals: Vec<u64>,
    now: u64,
    /// Its tasks.
    pub tasks: BTreeMap<TaskId, Tracked>,
    /// All its jobs are over and it stopped.
    pub done: bool,
    /// The master removed it.
    pub removed: bool,
    task_resources: Resources,
    max_attempts: u32,
}

impl Framework {
    /// A framework with jobs of the given durations, submitted at the given times.
    pub fn new(kind: Kind, index: usize, durations_ms: Vec<u64>, arrivals: Vec<u64>) -> Framework {
        Framework {
            kind,
            name: format!("{kind:?}-{index}").to_lowercase(),
            framework_id: None,
            jobs: vec![Job::Pending; durations_ms.len()],
            attempts: vec![0; durations_ms.len()],
            durations_ms,
            arrivals,
            now: 0,
            tasks: BTreeMap::new(),
            done: false,
            removed: false,
            task_resources: "cpus:0.5;mem:32".parse().unwrap_or_default(),
            max_attempts: 50,
        }
    }

    /// How it subscribes.
    pub fn info(&self) -> FrameworkInfo {
        let mut info = FrameworkInfo::new(self.name.clone());
        info.id = self.framework_id.clone();
        info.failover_timeout_secs = 300.0;
        info.checkpoint = self.kind != Kind::Batch;
        if self.kind == Kind::PartitionAware {
            info.capabilities.push(FrameworkCapability::PartitionAware);
        }
        info
    }

    /// Whether it still waits for jobs.
    pub fn busy(&self) -> bool {
        !self.done && !self.removed
    }

    fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        self.jobs
            .iter()
            .enumerate()
            .filter(|(i, j)| **j == Job::Pending && self.arrivals[*i] <= self.now)
            .map(|(i, _)| i)
    }

    fn unfinished(&self) -> Vec<ReconcileTask> {
        self.tasks
            .iter()
            .filter(|(_, t)| t.final_state.is_none())
            .map(|(id, t)| ReconcileTask { task_id: id.clone(), agent_id: Some(t.agent_id.clone()) })
            .collect()
    }

    /// Reacts to the driver at `now` (simulated microseconds); returns its calls and
    /// what the update means.
    pub fn on_event(&mut self, event: Event, now: u64) -> (Vec<Call>, Told) {
        self.now = now;
        let mut calls = Vec::new();
        let mut told = Told::Nothing;
        match event {
            Event::Subscribed(id) | Event::Resubscribed(id) => {
                self.framework_id = Some(id);
                let unfinished = self.unfinished();
                if !unfinished.is_empty() {
                    calls.push(Call::Reconcile(unfinished));
                }
                calls.push(Call::Revive);
            }
            Event::Offers(offers) => {
                for offer in offers {
                    let mut left = offer.resources.clone();
                    let mut tasks = Vec::new();
                    let pending: Vec<usize> = self.pending().collect();
                    for job in pending {
                        if !left.contains(&self.task_resources) || self.done {
                            break;
                        }
                        left -= self.task_resources.clone();
                        self.attempts[job] += 1;
                        let task_id = TaskId(format!("job-{job}-try-{}", self.attempts[job]));
                        let mut labels = BTreeMap::new();
                        labels.insert("sim.duration_ms".to_string(), self.durations_ms[job].to_string());
                        tasks.push(TaskInfo {
                            name: task_id.to_string(),
                            task_id: task_id.clone(),
                            agent_id: offer.agent_id.clone(),
                            resources: self.task_resources.clone(),
                            command: Some(CommandInfo::shell("sim")),
                            executor: None,
                            data: None,
                            labels,
                        });
                        self.jobs[job] = Job::Launched(task_id.clone());
                        self.tasks.insert(
                            task_id,
                            Tracked { job, agent_id: offer.agent_id.clone(), last: None, final_state: None },
                        );
                    }
                    if tasks.is_empty() {
                        calls.push(Call::Decline {
                            offer_ids: vec![offer.id],
                            filters: keel_proto::task::Filters { refuse_seconds: 1.0 },
                        });
                    } else {
                        calls.push(Call::Accept {
                            offer_ids: vec![offer.id],
                            operations: vec![Operation::Launch { tasks }],
                            filters: keel_proto::task::Filters { refuse_seconds: 1.0 },
                        });
                    }
                }
            }
            Event::Update(status) => told = self.update(status, &mut calls),
            Event::Error(message) => {
                if message.contains("removed") {
                    self.removed = true;
                }
            }
            Event::Rescinded(_)
            | Event::FrameworkMessage { .. }
            | Event::AgentLost(_)
            | Event::ExecutorLost { .. }
            | Event::Disconnected => {}
        }
        (calls, told)
    }

    fn update(&mut self, status: TaskStatus, calls: &mut Vec<Call>) -> Told {
        let reconciliation = status.reason == Some(keel_proto::task::TaskReason::Reconciliation);
        let Some(task) = self.tasks.get_mut(&status.task_id) else { return Told::Nothing };
        task.last = Some(status.state);
        if let Some(first) = task.final_state {
            if first != status.state {
                return Told::Contradiction {
                    task_id: status.task_id,
                    first,
                    now: status.state,
                    reconciliation,
                };
            }
            return Told::Nothing;
        }
        if !status.state.is_terminal() {
            return Told::Nothing;
        }
        task.final_state = Some(status.state);
        let job = task.job;
        if self.jobs[job] == Job::Launched(status.task_id.clone()) {
            self.jobs[job] = if status.state == TaskState::Finished {
                Job::Finished
            } else if self.attempts[job] >= self.max_attempts {
                Job::GaveUp
            } else {
                calls.push(Call::Revive);
                Job::Pending
            };
        }
        if !self.done && self.jobs.iter().all(|j| matches!(j, Job::Finished | Job::GaveUp)) {
            self.done = true;
            calls.push(Call::Stop { failover: false });
        }
        Told::Final(status.task_id, status.state)
    }

    /// Its jobs' states, for reports: (pending, launched, finished, gave up).
    pub fn jobs_summary(&self) -> (usize, usize, usize, usize) {
        let count = |f: fn(&Job) -> bool| self.jobs.iter().filter(|j| f(j)).count();
        (
            count(|j| *j == Job::Pending),
            count(|j| matches!(j, Job::Launched(_))),
            count(|j| *j == Job::Finished),
            count(|j| *j == Job::GaveUp),
        )
    }

    /// The periodic reconciliation of what it has no final state for, and a
    /// revive while jobs wait for offers.
    pub fn tick(&mut self, now: u64) -> Vec<Call> {
        self.now = now;
        if !self.busy() {
            return Vec::new();
        }
        let mut calls = Vec::new();
        let unfinished = self.unfinished();
        let waiting = !unfinished.is_empty() || self.pending().next().is_some();
        if !unfinished.is_empty() {
            calls.push(Call::Reconcile(unfinished));
        }
        if waiting {
            calls.push(Call::Revive);
        }
        calls
    }
}
