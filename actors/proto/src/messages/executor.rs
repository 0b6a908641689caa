//! The executor <-> agent protocol.

use keel_message::message;
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ExecutorId, FrameworkId};
use crate::messages::common::StatusUpdate;
use crate::task::{ExecutorInfo, FrameworkInfo, TaskInfo};

/// A started executor announces itself. Executor -> agent, retried until answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterExecutor {
    /// Its framework (from `KEEL_FRAMEWORK_ID`).
    pub framework_id: FrameworkId,
    /// Itself (from `KEEL_EXECUTOR_ID`).
    pub executor_id: ExecutorId,
}
message!(RegisterExecutor, "keel.executor.Register", |m, add| {
    add("framework", m.framework_id.as_str());
    add("executor", m.executor_id.as_str())
});

/// Registration accepted. Agent -> executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorRegistered {
    /// The executor's description.
    pub executor: ExecutorInfo,
    /// Its framework.
    pub framework: FrameworkInfo,
    /// The agent.
    pub agent_id: AgentId,
    /// The agent's host.
    pub hostname: String,
}
message!(ExecutorRegistered, "keel.executor.Registered", |m, add| {
    add("agent", m.agent_id.as_str());
    add("executor", m.executor.executor_id.as_str())
});

/// After the agent restarted, the executor registers again with what it runs and
/// the updates not yet acknowledged. Executor -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReregisterExecutor {
    /// Its framework.
    pub framework_id: FrameworkId,
    /// Itself.
    pub executor_id: ExecutorId,
    /// Tasks it runs.
    #[serde(default)]
    pub tasks: Vec<TaskInfo>,
    /// Updates not acknowledged yet.
    #[serde(default)]
    pub updates: Vec<StatusUpdate>,
}
message!(ReregisterExecutor, "keel.executor.Reregister", |m, add| {
    add("framework", m.framework_id.as_str());
    add("executor", m.executor_id.as_str())
});

/// Reregistration accepted. Agent -> executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorReregistered {
    /// The agent.
    pub agent_id: AgentId,
}
message!(ExecutorReregistered, "keel.executor.Reregistered", |m, add| add("agent", m.agent_id.as_str()));

/// Runs a task on the executor. Agent -> executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTask {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task: TaskInfo,
}
message!(LaunchTask, "keel.executor.LaunchTask", |m, add| {
    add("framework", m.framework_id.as_str());
    add("agent", m.task.agent_id.as_str());
    add("task", m.task.task_id.as_str())
});
