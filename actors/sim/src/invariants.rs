//! The invariants, by name, and what the simulator remembers to check them: which
//! task ran where and when, what each framework was told.

use std::collections::BTreeMap;
use std::fmt;

use keel_proto::ids::{FrameworkId, TaskId};
use keel_proto::task::TaskState;

/// Every invariant the simulator checks.
pub mod names {
    /// Every task a framework launched reaches a terminal state it is told.
    pub const TASK_WITHOUT_FINAL_STATE: &str =
        "every launched task reaches a final state the framework is told";
    /// Once told a terminal state, a framework is never told another state.
    pub const FINAL_STATE_CONTRADICTED: &str = "a framework is told a task's final state once";
    /// No task id is started twice.
    pub const TASK_RAN_TWICE: &str = "no task runs twice";
    /// A task whose final state the framework knows never starts, and does not run at quiescence.
    pub const TASK_RAN_AFTER_FINAL: &str = "a task told LOST or killed never runs afterwards";
    /// At quiescence the master's and the allocator's books of each agent agree.
    pub const RESOURCES_CONSERVED: &str = "offered + allocated + free equals each agent's total";
    /// At quiescence no terminal task holds resources.
    pub const TERMINAL_TASKS_HOLD_NOTHING: &str = "no terminal task holds resources";
    /// At quiescence the master's view of each agent's tasks is the agent's.
    pub const VIEWS_CONVERGE: &str = "the master's view of each task converges to the agent's";
    /// Reconciliation answers agree with what the framework was told and the master holds.
    pub const RECONCILIATION_AGREES: &str = "reconciliation answers agree with the master's state";
    /// Nothing panics.
    pub const NO_PANIC: &str = "nothing panics";
    /// Updates the agent sends for a checkpointing framework are on its disk first.
    pub const PERSIST_BEFORE_TELL: &str = "an agent checkpoints an update before it sends it";
    /// The cluster settles: the master serves, agents are registered, frameworks finish.
    pub const SETTLES: &str = "the cluster settles once the faults stop";
}

/// An invariant that did not hold.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The seed of the run.
    pub seed: u64,
    /// Which invariant.
    pub invariant: &'static str,
    /// What exactly.
    pub detail: String,
    /// When (simulated seconds).
    pub at: f64,
    /// The last events before it, oldest first.
    pub recent: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "violation seed={} at={:.3}s invariant=\"{}\"", self.seed, self.at, self.invariant)?;
        writeln!(f, "  {}", self.detail)?;
        writeln!(f, "  last events:")?;
        for line in &self.recent {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// What happened to one task, across the cluster.
#[derive(Debug, Clone, Default)]
pub struct TaskRecord {
    /// Containers started for it.
    pub starts: u32,
    /// The final state its framework was told, and when.
    pub told_final: Option<(TaskState, u64)>,
}

/// The simulator's memory for the invariants.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Per task.
    pub tasks: BTreeMap<(FrameworkId, TaskId), TaskRecord>,
}
