//! The agent <-> master protocol.

use keel_message::{message, Upid};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::task::{AgentInfo, ExecutorInfo, FrameworkInfo, Task, TaskInfo};

/// A new agent asks to join. Agent -> master, retried with backoff until answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterAgent {
    /// The agent (without an id).
    pub agent: AgentInfo,
    /// The agent's software version.
    #[serde(default)]
    pub version: String,
    /// Drawn at random when the agent process starts: a registration from the
    /// address of a registered agent with another incarnation is a new agent (the
    /// old one restarted without recovering), not a retry.
    #[serde(default)]
    pub incarnation: u64,
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
    /// The agent process's incarnation (see [`RegisterAgent::incarnation`]).
    #[serde(default)]
    pub incarnation: u64,
}
message!(ReregisterAgent, "keel.agent.Reregister", |m, add| if let Some(id) = &m.agent.id {
    add("agent", id.as_str())
});

/// Registration accepted. Master -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRegistered {
    /// The id the agent keeps from now on.
    pub agent_id: AgentId,
    /// How often the master will ping, in seconds.
    pub ping_interval_secs: f64,
    /// The master's epoch (its registry term): the agent ignores launches from an
    /// older master.
    #[serde(default)]
    pub epoch: u64,
    /// Pings the master may miss before it marks the agent unreachable: the agent
    /// stops taking launches when it has heard no ping for nearly that long.
    #[serde(default)]
    pub max_ping_timeouts: u32,
    /// This admission's number at this master: launches sent before it are refused.
    #[serde(default)]
    pub session: u64,
}
message!(AgentRegistered, "keel.agent.Registered", |m, add| add("agent", m.agent_id.as_str()));

/// Reregistration accepted. Master -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReregistered {
    /// The agent's id.
    pub agent_id: AgentId,
    /// How often the master will ping, in seconds.
    pub ping_interval_secs: f64,
    /// The master's epoch (see [`AgentRegistered::epoch`]).
    #[serde(default)]
    pub epoch: u64,
    /// See [`AgentRegistered::max_ping_timeouts`].
    #[serde(default)]
    pub max_ping_timeouts: u32,
    /// See [`AgentRegistered::session`].
    #[serde(default)]
    pub session: u64,
}
message!(AgentReregistered, "keel.agent.Reregistered", |m, add| add("agent", m.agent_id.as_str()));

/// Health check. Master -> agent; `connected` tells the agent whether the master
/// considers it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Whether the master has the agent as registered.
    pub connected: bool,
    /// The master's ping round (it counts up).
    #[serde(default)]
    pub round: u64,
    /// The master's epoch.
    #[serde(default)]
    pub epoch: u64,
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
message!(UnregisterAgent, "keel.agent.Unregister", |m, add| add("agent", m.agent_id.as_str()));

/// Runs a task. Master -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTask {
    /// The task's framework.
    pub framework: FrameworkInfo,
    /// The framework's scheduler (for executor->framework messages).
    pub scheduler: Upid,
    /// The task.
    pub task: TaskInfo,
    /// The epoch of the master that sent it: an agent registered with a newer
    /// master drops it (it may have been delayed across a master failover).
    #[serde(default)]
    pub epoch: u64,
    /// This launch's unique id: a copy of it (the network may duplicate, and a copy
    /// may arrive after the task ended) is recognised and dropped.
    #[serde(default)]
    pub launch_id: Option<String>,
    /// The agent's admission it was sent in ([`AgentRegistered::session`]).
    #[serde(default)]
    pub session: u64,
    /// The master's ping round when it was sent: a launch that took longer than the
    /// master's patience with silent agents to arrive is refused (the master may
    /// have told its framework it is LOST meanwhile).
    #[serde(default)]
    pub ping_round: u64,
    /// Pings to this agent the master had not had an answer to when it sent the
    /// launch: it gives up on the agent that many rounds sooner, and so does the
    /// agent's patience with a late launch.
    #[serde(default)]
    pub pings_missed: u32,
}
message!(RunTask, "keel.agent.RunTask", |m, add| {
    if let Some(id) = &m.framework.id {
        add("framework", id.as_str())
    }
    add("agent", m.task.agent_id.as_str());
    add("task", m.task.task_id.as_str())
});

/// One task of a framework, as [`CheckLaunches`] names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LaunchRef {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task_id: TaskId,
}

/// Asks whether the agent has these tasks: launches that are still STAGING at the
/// master long after their RunTask, or that the agent did not report when it
/// reregistered. The agent answers with [`LaunchesChecked`] and from then on
/// refuses a RunTask for any task it did not have, so the master can tell the
/// framework the launch is lost without the task starting later. Master -> agent,
/// resent until answered while the agent is registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckLaunches {
    /// The tasks.
    pub tasks: Vec<LaunchRef>,
}
message!(CheckLaunches, "keel.agent.CheckLaunches");

/// The answer to [`CheckLaunches`]. Agent -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchesChecked {
    /// Tasks the agent has (their status updates are on their way).
    #[serde(default)]
    pub known: Vec<LaunchRef>,
    /// Tasks the agent never got: it will refuse them from now on.
    #[serde(default)]
    pub dropped: Vec<LaunchRef>,
}
message!(LaunchesChecked, "keel.agent.LaunchesChecked");

/// Shuts down all of a framework's executors. Master -> agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownFramework {
    /// The framework.
    pub framework_id: FrameworkId,
}
message!(ShutdownFramework, "keel.agent.ShutdownFramework", |m, add| add(
    "framework",
    m.framework_id.as_str()
));

/// Shuts down one executor. Master -> agent, agent -> executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownExecutor {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The executor.
    pub executor_id: ExecutorId,
}
message!(ShutdownExecutor, "keel.agent.ShutdownExecutor", |m, add| {
    add("framework", m.framework_id.as_str());
    add("executor", m.executor_id.as_str())
});

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
message!(ExitedExecutor, "keel.agent.ExitedExecutor", |m, add| {
    add("agent", m.agent_id.as_str());
    add("framework", m.framework_id.as_str());
    add("executor", m.executor_id.as_str())
});

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
message!(UpdateFramework, "keel.agent.UpdateFramework", |m, add| add("framework", m.framework_id.as_str()));
