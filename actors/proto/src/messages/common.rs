//! Messages that travel more than one hop: status updates and their
//! acknowledgements, kills, and framework<->executor messages.

use keel_message::{message, Upid};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId, UpdateId};
use crate::task::TaskStatus;

/// A task status change, delivered at least once until acknowledged.
///
/// Executor -> agent -> master -> scheduler. The agent retries it with backoff until
/// the scheduler's [`StatusUpdateAcknowledgement`] for `uuid` comes back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The task's framework.
    pub framework_id: FrameworkId,
    /// The task's executor.
    #[serde(default)]
    pub executor_id: Option<ExecutorId>,
    /// The task's agent.
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    /// The status; `status.uuid` equals `uuid`.
    pub status: TaskStatus,
    /// The task's latest state at the sender, which may be ahead of `status` while
    /// earlier updates wait for their acknowledgement (so the master frees a
    /// finished task's resources at once).
    #[serde(default)]
    pub latest_state: Option<crate::task::TaskState>,
    /// The update's id, which the acknowledgement names.
    pub uuid: UpdateId,
    /// The agent that sends it (the master acknowledges to it). Set by the agent.
    #[serde(default)]
    pub agent_pid: Option<Upid>,
}
message!(StatusUpdate, "keel.common.StatusUpdate", |m, add| {
    add("state", m.status.state.name());
    add("uuid", m.uuid.as_str());
    add("framework", m.framework_id.as_str());
    if let Some(id) = &m.agent_id {
        add("agent", id.as_str())
    }
    if let Some(id) = &m.executor_id {
        add("executor", id.as_str())
    }
    add("task", m.status.task_id.as_str())
});

/// Acknowledges one status update by its uuid.
///
/// Scheduler -> master -> agent (and agent -> executor for the executor's own copy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdateAcknowledgement {
    /// The agent that sent the update.
    pub agent_id: AgentId,
    /// The framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task_id: TaskId,
    /// The update's uuid.
    pub uuid: UpdateId,
}
message!(StatusUpdateAcknowledgement, "keel.common.StatusUpdateAcknowledgement", |m, add| {
    add("uuid", m.uuid.as_str());
    add("framework", m.framework_id.as_str());
    add("agent", m.agent_id.as_str());
    add("task", m.task_id.as_str())
});

/// Kills a task. Scheduler -> master -> agent -> executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillTask {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task_id: TaskId,
    /// The agent, if the scheduler knows it (it need not).
    #[serde(default)]
    pub agent_id: Option<AgentId>,
}
message!(KillTask, "keel.common.KillTask", |m, add| {
    add("framework", m.framework_id.as_str());
    if let Some(id) = &m.agent_id {
        add("agent", id.as_str())
    }
    add("task", m.task_id.as_str())
});

/// Best-effort data from a scheduler to an executor. Scheduler -> master -> agent -> executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkToExecutorMessage {
    /// The agent the executor runs on.
    pub agent_id: AgentId,
    /// The framework.
    pub framework_id: FrameworkId,
    /// The executor.
    pub executor_id: ExecutorId,
    /// The payload.
    pub data: Vec<u8>,
}
message!(FrameworkToExecutorMessage, "keel.common.FrameworkToExecutorMessage", |m, add| {
    add("framework", m.framework_id.as_str());
    add("agent", m.agent_id.as_str());
    add("executor", m.executor_id.as_str())
});

/// Best-effort data from an executor to its scheduler. Executor -> agent -> master -> scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorToFrameworkMessage {
    /// The agent the executor runs on.
    pub agent_id: AgentId,
    /// The framework.
    pub framework_id: FrameworkId,
    /// The executor.
    pub executor_id: ExecutorId,
    /// The payload.
    pub data: Vec<u8>,
}
message!(ExecutorToFrameworkMessage, "keel.common.ExecutorToFrameworkMessage", |m, add| {
    add("framework", m.framework_id.as_str());
    add("agent", m.agent_id.as_str());
    add("executor", m.executor_id.as_str())
});
