//! The agent <-> master protocol.

use keel_message::{message, Upid};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ExecutorId, FrameworkId};
use crate::task::{AgentInfo, ExecutorInfo, FrameworkInfo, Task, TaskInfo};

/// A new agent asks to join. Agent -> master, retried with backoff until answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterAgent {
    /// The agent (without an id).
    pub agent: AgentInfo,
    /// The agent's software version.
    #[serde(default)]
    pub version: String,
}
message!(RegisterAgent, "keel.agent.Register");

/// A known agent comes back (after a disconnection, its restart, or a master
/// failover) with what it runs. Agent -> master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReregisterAgent {
    /// The agent (with its id).
    pub agent: AgentInfo,
    /// Its tasks that are not terminal and acknowledged.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Its custom executors.
    #[serde(default)]
    pub executors: Vec<ExecutorInfo>,
    /// The frameworks of those tasks.
    #[serde(default)]
    pub frameworks: Vec<FrameworkInfo>,
    /// The agent's software version.
    #[serde(default)]
    pub version: String,
}
message!(ReregisterAgent, "keel.agent.Reregister");

/// Registration accepted. Master -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRegistered {
    /// The id the agent keeps from now on.
    pub agent_id: AgentId,
    /// How often the master will ping, in seconds.
    pub ping_interval_secs: f64,
}
message!(AgentRegistered, "keel.agent.Registered");

/// Reregistration accepted. Master -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReregistered {
    /// The agent's id.
    pub agent_id: AgentId,
    /// How often the master will ping, in seconds.
    pub ping_interval_secs: f64,
}
message!(AgentReregistered, "keel.agent.Reregistered");

/// Health check. Master -> agent; `connected` tells the agent whether the master
/// considers it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Whether the master has the agent as registered.
    pub connected: bool,
}
message!(Ping, "keel.agent.Ping");

/// Answer to [`Ping`]. Agent -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {}
message!(Pong, "keel.agent.Pong");

/// Shuts the agent down (it was removed, or refused). Master -> agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownAgent {
    /// Why.
    pub message: String,
}
message!(ShutdownAgent, "keel.agent.Shutdown");

/// The agent leaves the cluster for good (operator-initiated). Agent -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterAgent {
    /// The agent.
    pub agent_id: AgentId,
}
message!(UnregisterAgent, "keel.agent.Unregister");

/// Runs a task. Master -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTask {
    /// The task's framework.
    pub framework: FrameworkInfo,
    /// The framework's scheduler (for executor->framework messages).
    pub scheduler: Upid,
    /// The task.
    pub task: TaskInfo,
}
message!(RunTask, "keel.agent.RunTask");

/// Shuts down all of a framework's executors. Master -> agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownFramework {
    /// The framework.
    pub framework_id: FrameworkId,
}
message!(ShutdownFramework, "keel.agent.ShutdownFramework");

/// Shuts down one executor. Master -> agent, agent -> executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownExecutor {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The executor.
    pub executor_id: ExecutorId,
}
message!(ShutdownExecutor, "keel.agent.ShutdownExecutor");

/// An executor exited. Agent -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitedExecutor {
    /// The agent.
    pub agent_id: AgentId,
    /// The framework.
    pub framework_id: FrameworkId,
    /// The executor.
    pub executor_id: ExecutorId,
    /// Its wait status (exit code, or 128 + signal).
    pub status: i32,
}
message!(ExitedExecutor, "keel.agent.ExitedExecutor");

/// The agent's total resources changed (dynamic reservations): it checkpoints them
/// and reports them from now on. Master -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointResources {
    /// The agent's total resources, reservations included.
    pub total: crate::resources::Resources,
}
message!(CheckpointResources, "keel.agent.CheckpointResources");

/// The framework's scheduler moved (failover). Master -> agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateFramework {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Its new scheduler.
    pub scheduler: Upid,
}
message!(UpdateFramework, "keel.agent.UpdateFramework");
