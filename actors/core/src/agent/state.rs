//! What the agent keeps per framework, executor and task, and its counters.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use keel_message::Upid;
use keel_proto::ids::{ExecutorId, TaskId};
use keel_proto::messages::common::StatusUpdate;
use keel_proto::task::{ExecutorInfo, FrameworkInfo, TaskInfo, TaskState};

use super::container::ContainerId;
use crate::timers::TimerId;

/// One task's status update stream: updates wait here, in order, until acknowledged.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Unacknowledged updates, oldest (the one in flight) first.
    pub pending: VecDeque<StatusUpdate>,
    /// The head's retry timer.
    pub timer: Option<TimerId>,
    /// The head's current retry delay.
    pub backoff: Duration,
}

/// A task on this agent.
#[derive(Debug, Clone)]
pub struct TaskEntry {
    /// Its description.
    pub info: TaskInfo,
    /// Its latest state.
    pub state: TaskState,
    /// Its updates.
    pub stream: Stream,
    /// A kill was asked for.
    pub kill_requested: bool,
    /// Ids of the executor's latest updates, so a resent one is not queued twice.
    pub seen: VecDeque<keel_proto::ids::UpdateId>,
}

impl TaskEntry {
    /// A task just received, STAGING.
    pub fn new(info: TaskInfo) -> TaskEntry {
        TaskEntry {
            info,
            state: TaskState::Staging,
            stream: Stream::default(),
            kill_requested: false,
            seen: VecDeque::new(),
        }
    }
}

/// How an executor runs.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // few executors per agent; boxing buys nothing
pub enum ExecutorKind {
    /// The built-in command executor: the task's command is the container.
    Command,
    /// A custom executor process; `pid` once it registered, tasks queued until then.
    Custom {
        /// Its description.
        info: ExecutorInfo,
        /// Its process, once registered.
        pid: Option<Upid>,
        /// Tasks waiting for it to register.
        queued: Vec<TaskInfo>,
        /// Its registration deadline.
        registration_timer: Option<TimerId>,
    },
}

/// An executor on this agent.
#[derive(Debug, Clone)]
pub struct ExecutorEntry {
    /// Command or custom.
    pub kind: ExecutorKind,
    /// Its container.
    pub container: ContainerId,
    /// Its sandbox.
    pub sandbox: PathBuf,
    /// Its tasks (until their terminal update is acknowledged).
    pub tasks: BTreeMap<TaskId, TaskEntry>,
    /// Its container ended.
    pub terminated: bool,
    /// It was told to shut down.
    pub shutting_down: bool,
}

/// A framework with work on this agent.
#[derive(Debug, Clone)]
pub struct FrameworkEntry {
    /// Its description.
    pub info: FrameworkInfo,
    /// Its scheduler.
    pub scheduler: Upid,
    /// Its executors.
    pub executors: BTreeMap<ExecutorId, ExecutorEntry>,
    /// It is being shut down: its updates are dropped.
    pub shutting_down: bool,
}

/// Agent counters under `slave/*`.
#[derive(Debug, Default, Clone)]
pub struct AgentMetrics {
    /// Tasks launched.
    pub tasks_launched: u64,
    /// Terminal states by name.
    pub terminal: BTreeMap<&'static str, u64>,
    /// Status updates made (first sends).
    pub status_updates: u64,
    /// Status update retries.
    pub status_update_retries: u64,
    /// Acknowledgements for updates not at the head of a stream (duplicates, unknown).
    pub invalid_acknowledgements: u64,
    /// Messages from senders that are not who they claim.
    pub invalid_senders: u64,
    /// Messages for unknown frameworks, executors or tasks.
    pub unknown_targets: u64,
    /// Container launches that failed.
    pub container_launch_errors: u64,
    /// Executors that exited.
    pub executors_terminated: u64,
    /// RunTasks refused: from an older master, or for a launch the master gave up.
    pub stale_launches: u64,
    /// Messages of kinds the agent does not handle.
    pub unexpected_messages: u64,
}

/// The agent's connection to the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Connection {
    /// Not registered yet; `RegisterAgent` is being retried.
    Registering,
    /// Registered (or reregistered).
    Registered,
    /// Lost the master; `ReregisterAgent` is being retried.
    Reregistering,
    /// Shut down by the master: everything is being destroyed.
    Terminating,
}
