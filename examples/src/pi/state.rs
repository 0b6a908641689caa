//! The pi scheduler's decisions, made purely: which executors to launch, which unit
//! goes to which executor, what a status, an answer or a tick means. Each call
//! returns [`Effect`]s that the scheduler (`scheduler.rs`) executes with its driver.
//! Time is counted in ticks, so tests need no clock.
//!
//! Phases: Computing (launch executors, keep [`UNITS_IN_FLIGHT_PER_EXECUTOR`] units
//! in flight on each RUNNING one, resend unanswered units, replace failed executors
//! up to a bound) -> Finishing (every unit is in: tell each executor "done", wait for
//! TASK_FINISHED, kill stragglers after a bound) -> Stopped.

use std::collections::{BTreeMap, VecDeque};

use keel_actors::ids::{AgentId, ExecutorId, TaskId};
use keel_actors::task::{TaskState, TaskStatus};

use super::messages::{FromExecutor, ToExecutor, WorkUnit};

/// Units sent to one executor before it answers.
pub const UNITS_IN_FLIGHT_PER_EXECUTOR: usize = 2;
/// Ticks after which an unanswered unit is sent again.
pub const UNIT_TIMEOUT_TICKS: u64 = 20;
/// Ticks between two "done" messages to an executor that has not finished.
pub const DONE_RESEND_TICKS: u64 = 4;
/// Ticks the executors have to finish once told; then they are killed.
pub const FINISH_TIMEOUT_TICKS: u64 = 60;
/// Ticks a kill has before the scheduler stops anyway.
pub const KILL_TIMEOUT_TICKS: u64 = 20;

/// What to compute and with how many executors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Work units.
    pub units: u64,
    /// Samples per unit.
    pub samples: u64,
    /// Base seed; unit `u` uses `seed + u`.
    pub seed: u64,
    /// Executors to run at once.
    pub executors: usize,
    /// Executors that may be launched to replace failed ones.
    pub replacements_max: usize,
}

/// Something the scheduler must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a framework message to an executor.
    Send {
        /// The executor.
        executor_id: ExecutorId,
        /// Its agent.
        agent_id: AgentId,
        /// What to send.
        message: ToExecutor,
    },
    /// Kill an executor's task.
    Kill {
        /// The task.
        task_id: TaskId,
        /// Its agent.
        agent_id: AgentId,
    },
    /// Ask for offers again (an executor must be launched).
    Revive,
    /// Print a line.
    Say(String),
    /// Stop the framework (tearing it down); the report is final.
    Stop,
}

/// Where the computation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Units are being computed.
    Computing,
    /// Every unit is in; waiting for the executors to finish.
    Finishing {
        /// The tick the phase began.
        since: u64,
        /// Whether the stragglers were killed.
        killed: bool,
    },
    /// Done (or given up).
    Stopped,
}

/// One executor and its task.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The executor's id.
    pub executor_id: ExecutorId,
    /// Where its task was launched.
    pub agent_id: AgentId,
    /// Its task's latest state.
    pub state: TaskState,
    /// Units it answered first.
    pub units_answered: u64,
    done_sent_at: Option<u64>,
}

#[derive(Debug, Clone)]
struct InFlight {
    task_id: TaskId,
    sent_at: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct PiReport {
    /// Units asked for.
    pub units: u64,
    /// Samples per unit.
    pub samples_per_unit: u64,
    /// Units answered.
    pub units_done: u64,
    /// Hits over the answered units.
    pub hits: u64,
    /// For each unit, how many answers arrived (1 each in a healthy run).
    pub answers: BTreeMap<u64, u32>,
    /// Each executor task's latest state, by task id.
    pub executors: BTreeMap<String, TaskState>,
    /// Why the run ended early, if it did.
    pub failure: Option<String>,
}

impl PiReport {
    /// Samples behind the estimate.
    pub fn samples(&self) -> u64 {
        self.units_done.saturating_mul(self.samples_per_unit)
    }

    /// 4 * hits / samples, once any unit is in.
    pub fn estimate(&self) -> Option<f64> {
        (self.samples() > 0).then(|| 4.0 * self.hits as f64 / self.samples() as f64)
    }

    /// |estimate - pi|.
    pub fn error(&self) -> Option<f64> {
        self.estimate().map(|e| (e - std::f64::consts::PI).abs())
    }

    /// Every unit in, every executor task FINISHED, no failure.
    pub fn succeeded(&self) -> bool {
        self.failure.is_none()
            && self.units_done == self.units
            && !self.executors.is_empty()
            && self.executors.values().all(|s| *s == TaskState::Finished)
    }
}

/// The scheduler's state.
#[derive(Debug)]
pub struct Coordinator {
    settings: Settings,
    tick: u64,
    phase: Phase,
    pending: VecDeque<u64>,
    in_flight: BTreeMap<u64, InFlight>,
    hits: BTreeMap<u64, u64>,
    answers: BTreeMap<u64, u32>,
    workers: BTreeMap<TaskId, Worker>,
    to_launch: usize,
    replacements_left: usize,
    launched: usize,
    failure: Option<String>,
}

impl Coordinator {
    /// Every unit pending, `settings.executors` executors to launch.
    pub fn new(settings: Settings) -> Coordinator {
        Coordinator {
            settings,
            tick: 0,
            phase: Phase::Computing,
            pending: (0..settings.units).collect(),
            in_flight: BTreeMap::new(),
            hits: BTreeMap::new(),
            answers: BTreeMap::new(),
            workers: BTreeMap::new(),
            to_launch: settings.executors,
            replacements_left: settings.replacements_max,
            launched: 0,
            failure: None,
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The executors so far, by task id.
    pub fn workers(&self) -> &BTreeMap<TaskId, Worker> {
        &self.workers
    }

    /// Whether an executor should be launched on the next offer that fits.
    pub fn wants_executor(&self) -> bool {
        self.phase == Phase::Computing && self.to_launch > 0
    }

    /// Records the launch of an executor on `agent_id`: its task and executor ids
    /// (`pi-N`, `pi-executor-N`).
    pub fn launch(&mut self, agent_id: AgentId) -> (TaskId, ExecutorId) {
        self.to_launch = self.to_launch.saturating_sub(1);
        self.launched += 1;
        let task_id = TaskId(format!("pi-{}", self.launched));
        let executor_id = ExecutorId(format!("pi-executor-{}", self.launched));
        let worker = Worker {
            executor_id: executor_id.clone(),
            agent_id,
            state: TaskState::Staging,
            units_answered: 0,
            done_sent_at: None,
        };
        self.workers.insert(task_id.clone(), worker);
        (task_id, executor_id)
    }

    /// A status update of an executor's task.
    pub fn on_status(&mut self, status: &TaskStatus) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(worker) = self.workers.get_mut(&status.task_id) else { return effects };
        if worker.state.is_terminal() || worker.state == status.state {
            return effects;
        }
        worker.state = status.state;
        if status.state == TaskState::Running {
            match self.phase {
                Phase::Computing => self.dispatch(&mut effects),
                Phase::Finishing { .. } => self.tell_done(&status.task_id, &mut effects),
                Phase::Stopped => {}
            }
            return effects;
        }
        if !status.state.is_terminal() {
            return effects;
        }
        let requeued: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.task_id == status.task_id)
            .map(|(unit, _)| *unit)
            .collect();
        for unit in requeued.into_iter().rev() {
            self.in_flight.remove(&unit);
            self.pending.push_front(unit);
        }
        match self.phase {
            Phase::Computing => {
                // Any end before "done" (even FINISHED) loses an executor.
                if self.replacements_left > 0 {
                    self.replacements_left -= 1;
                    self.to_launch += 1;
                    effects.push(Effect::Say(format!(
                        "executor task {} ended {}; launching a replacement",
                        status.task_id, status.state
                    )));
                    effects.push(Effect::Revive);
                } else if self.live_workers() == 0 && self.to_launch == 0 {
                    let failure = format!(
                        "every executor ended before the work was done (last: {} {})",
                        status.task_id, status.state
                    );
                    return self.give_up(failure, effects);
                }
                self.dispatch(&mut effects);
            }
            Phase::Finishing { .. } => {
                if self.live_workers() == 0 {
                    self.phase = Phase::Stopped;
                    effects.push(Effect::Stop);
                }
            }
            Phase::Stopped => {}
        }
        effects
    }

    /// A framework message from `executor_id`.
    pub fn on_message(&mut self, executor_id: &ExecutorId, data: &[u8]) -> Vec<Effect> {
        let mut effects = Vec::new();
        let result = match FromExecutor::decode(data) {
            Ok(FromExecutor::Result(result)) => result,
            Err(e) => {
                effects.push(Effect::Say(format!("ignoring a malformed message from {executor_id}: {e}")));
                return effects;
            }
        };
        if result.unit >= self.settings.units
            || result.samples != self.settings.samples
            || result.hits > result.samples
        {
            effects.push(Effect::Say(format!("ignoring an invalid result from {executor_id}: {result:?}")));
            return effects;
        }
        *self.answers.entry(result.unit).or_default() += 1;
        if self.hits.contains_key(&result.unit) {
            return effects; // A resent unit answered twice: the first answer counts.
        }
        self.hits.insert(result.unit, result.hits);
        self.in_flight.remove(&result.unit);
        self.pending.retain(|unit| *unit != result.unit);
        if let Some(worker) = self.workers.values_mut().find(|w| &w.executor_id == executor_id) {
            worker.units_answered += 1;
        }
        let report = self.report();
        effects.push(Effect::Say(format!(
            "[{}/{}] unit {} from {executor_id}: {}/{} hits; estimate {:.6} (error {:.6})",
            report.units_done,
            report.units,
            result.unit,
            result.hits,
            result.samples,
            report.estimate().unwrap_or(0.0),
            report.error().unwrap_or(0.0),
        )));
        if self.phase != Phase::Computing {
            return effects;
        }
        if self.hits.len() as u64 == self.settings.units {
            self.phase = Phase::Finishing { since: self.tick, killed: false };
            self.to_launch = 0;
            effects.push(Effect::Say("every unit is in; telling the executors to finish".into()));
            let running: Vec<TaskId> = self
                .workers
                .iter()
                .filter(|(_, w)| w.state == TaskState::Running)
                .map(|(id, _)| id.clone())
                .collect();
            for task_id in running {
                self.tell_done(&task_id, &mut effects);
            }
            if self.live_workers() == 0 {
                self.phase = Phase::Stopped;
                effects.push(Effect::Stop);
            }
        } else {
            self.dispatch(&mut effects);
        }
        effects
    }

    /// One tick of the scheduler's timer.
    pub fn on_tick(&mut self) -> Vec<Effect> {
        self.tick += 1;
        let mut effects = Vec::new();
        match self.phase {
            Phase::Computing => {
                let tick = self.tick;
                let expired: Vec<(u64, TaskId)> = self
                    .in_flight
                    .iter()
                    .filter(|(_, f)| tick - f.sent_at >= UNIT_TIMEOUT_TICKS)
                    .map(|(unit, f)| (*unit, f.task_id.clone()))
                    .collect();
                for (unit, task_id) in expired.into_iter().rev() {
                    self.in_flight.remove(&unit);
                    self.pending.push_front(unit);
                    effects
                        .push(Effect::Say(format!("unit {unit} unanswered by {task_id}; sending it again")));
                }
                self.dispatch(&mut effects);
            }
            Phase::Finishing { since, killed } => {
                let elapsed = self.tick - since;
                if elapsed >= FINISH_TIMEOUT_TICKS + KILL_TIMEOUT_TICKS {
                    return self.give_up("the executors did not end after being killed".into(), effects);
                }
                if elapsed >= FINISH_TIMEOUT_TICKS && !killed {
                    self.phase = Phase::Finishing { since, killed: true };
                    for (task_id, worker) in self.workers.iter().filter(|(_, w)| !w.state.is_terminal()) {
                        effects
                            .push(Effect::Say(format!("executor task {task_id} did not finish; killing it")));
                        effects.push(Effect::Kill {
                            task_id: task_id.clone(),
                            agent_id: worker.agent_id.clone(),
                        });
                    }
                } else if !killed {
                    let late: Vec<TaskId> = self
                        .workers
                        .iter()
                        .filter(|(_, w)| w.state == TaskState::Running)
                        .filter(|(_, w)| w.done_sent_at.is_none_or(|at| self.tick - at >= DONE_RESEND_TICKS))
                        .map(|(id, _)| id.clone())
                        .collect();
                    for task_id in late {
                        self.tell_done(&task_id, &mut effects);
                    }
                }
            }
            Phase::Stopped => {}
        }
        effects
    }

    /// The report as things stand.
    pub fn report(&self) -> PiReport {
        PiReport {
            units: self.settings.units,
            samples_per_unit: self.settings.samples,
            units_done: self.hits.len() as u64,
            hits: self.hits.values().sum(),
            answers: self.answers.clone(),
            executors: self.workers.iter().map(|(id, w)| (id.to_string(), w.state)).collect(),
            failure: self.failure.clone(),
        }
    }

    /// Ends the run early (the master's error, or no way forward).
    pub fn give_up(&mut self, failure: String, mut effects: Vec<Effect>) -> Vec<Effect> {
        if self.phase != Phase::Stopped {
            effects.push(Effect::Say(format!("giving up: {failure}")));
            self.failure = Some(failure);
            self.phase = Phase::Stopped;
            effects.push(Effect::Stop);
        }
        effects
    }

    fn live_workers(&self) -> usize {
        self.workers.values().filter(|w| !w.state.is_terminal()).count()
    }

    fn tell_done(&mut self, task_id: &TaskId, effects: &mut Vec<Effect>) {
        let tick = self.tick;
        if let Some(worker) = self.workers.get_mut(task_id) {
            worker.done_sent_at = Some(tick);
            effects.push(Effect::Send {
                executor_id: worker.executor_id.clone(),
                agent_id: worker.agent_id.clone(),
                message: ToExecutor::Done,
            });
        }
    }

    /// Fills every RUNNING executor's window from the pending units.
    fn dispatch(&mut self, effects: &mut Vec<Effect>) {
        for (task_id, worker) in &self.workers {
            if worker.state != TaskState::Running {
                continue;
            }
            let mut in_flight = self.in_flight.values().filter(|f| &f.task_id == task_id).count();
            while in_flight < UNITS_IN_FLIGHT_PER_EXECUTOR {
                let Some(unit) = self.pending.pop_front() else { return };
                in_flight += 1;
                self.in_flight.insert(unit, InFlight { task_id: task_id.clone(), sent_at: self.tick });
                let work = WorkUnit {
                    unit,
                    seed: self.settings.seed.wrapping_add(unit),
                    samples: self.settings.samples,
                };
                effects.push(Effect::Send {
                    executor_id: worker.executor_id.clone(),
                    agent_id: worker.agent_id.clone(),
                    message: ToExecutor::Work(work),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
