//! Tasks, executors and frameworks as data: states, reasons, statuses and the
//! descriptions schedulers send. Plain data with no behaviour beyond predicates.

use std::collections::BTreeMap;
use std::fmt;

use keel_message::Upid;
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId, UpdateId};
use crate::resources::Resources;

/// A task's state, as in Mesos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    /// Accepted by the master, on its way to the agent.
    #[serde(rename = "TASK_STAGING")]
    Staging,
    /// The executor is starting it.
    #[serde(rename = "TASK_STARTING")]
    Starting,
    /// Running.
    #[serde(rename = "TASK_RUNNING")]
    Running,
    /// Being killed (only sent to frameworks that asked for it).
    #[serde(rename = "TASK_KILLING")]
    Killing,
    /// Ended successfully (terminal).
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    /// Ended with an error (terminal).
    #[serde(rename = "TASK_FAILED")]
    Failed,
    /// Killed on request (terminal).
    #[serde(rename = "TASK_KILLED")]
    Killed,
    /// Lost, for frameworks that are not partition-aware (terminal).
    #[serde(rename = "TASK_LOST")]
    Lost,
    /// The task description was invalid (terminal).
    #[serde(rename = "TASK_ERROR")]
    Error,
    /// Never launched, for a transient reason (terminal).
    #[serde(rename = "TASK_DROPPED")]
    Dropped,
    /// Its agent is unreachable; it may come back.
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
    /// Its agent is gone for good (terminal).
    #[serde(rename = "TASK_GONE")]
    Gone,
    /// Its agent was marked gone by an operator (terminal).
    #[serde(rename = "TASK_GONE_BY_OPERATOR")]
    GoneByOperator,
    /// The master knows nothing of it.
    #[serde(rename = "TASK_UNKNOWN")]
    Unknown,
}

impl TaskState {
    /// Whether no further state can follow.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Lost
                | TaskState::Error
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }

    /// The Mesos name, e.g. `TASK_RUNNING`.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Lost => "TASK_LOST",
            TaskState::Error => "TASK_ERROR",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a status update happened (Mesos's `REASON_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskReason {
    /// The command exited non-zero or was signalled.
    #[serde(rename = "REASON_COMMAND_EXECUTOR_FAILED")]
    CommandExecutorFailed,
    /// The container hit a memory limit.
    #[serde(rename = "REASON_CONTAINER_LIMITATION_MEMORY")]
    ContainerLimitationMemory,
    /// The container could not be launched.
    #[serde(rename = "REASON_CONTAINER_LAUNCH_FAILED")]
    ContainerLaunchFailed,
    /// The executor exited while the task was live.
    #[serde(rename = "REASON_EXECUTOR_TERMINATED")]
    ExecutorTerminated,
    /// The executor never registered or went away.
    #[serde(rename = "REASON_EXECUTOR_UNREGISTERED")]
    ExecutorUnregistered,
    /// The framework was removed.
    #[serde(rename = "REASON_FRAMEWORK_REMOVED")]
    FrameworkRemoved,
    /// The launch named offers that are not valid.
    #[serde(rename = "REASON_INVALID_OFFERS")]
    InvalidOffers,
    /// The agent was removed.
    #[serde(rename = "REASON_AGENT_REMOVED")]
    AgentRemoved,
    /// The agent is not known.
    #[serde(rename = "REASON_AGENT_UNKNOWN")]
    AgentUnknown,
    /// The agent stopped answering pings.
    #[serde(rename = "REASON_AGENT_DISCONNECTED")]
    AgentDisconnected,
    /// The agent restarted.
    #[serde(rename = "REASON_AGENT_RESTARTED")]
    AgentRestarted,
    /// The update answers a reconciliation request.
    #[serde(rename = "REASON_RECONCILIATION")]
    Reconciliation,
    /// The task description is invalid.
    #[serde(rename = "REASON_TASK_INVALID")]
    TaskInvalid,
    /// The task is not known.
    #[serde(rename = "REASON_TASK_UNKNOWN")]
    TaskUnknown,
    /// The task was killed before it launched.
    #[serde(rename = "REASON_TASK_KILLED_DURING_LAUNCH")]
    TaskKilledDuringLaunch,
    /// The agent's resources could not take the task.
    #[serde(rename = "REASON_RESOURCES_UNKNOWN")]
    ResourcesUnknown,
    /// The scheduler driver was not connected to a master when the task was
    /// launched: the launch never left it.
    #[serde(rename = "REASON_MASTER_DISCONNECTED")]
    MasterDisconnected,
}

/// Who produced a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusSource {
    /// The master (validation, lost agents, reconciliation).
    #[serde(rename = "SOURCE_MASTER")]
    Master,
    /// The agent (executor exits, launch failures).
    #[serde(rename = "SOURCE_AGENT")]
    Agent,
    /// The executor.
    #[serde(rename = "SOURCE_EXECUTOR")]
    Executor,
}

/// A task's status at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub task_id: TaskId,
    /// Its state.
    pub state: TaskState,
    /// Why, when there is a reason.
    #[serde(default)]
    pub reason: Option<TaskReason>,
    /// A human-readable explanation.
    #[serde(default)]
    pub message: Option<String>,
    /// Who says so.
    pub source: StatusSource,
    /// Where the task is, if known.
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    /// Its executor, if known.
    #[serde(default)]
    pub executor_id: Option<ExecutorId>,
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    /// The update's id; `None` for updates that need no acknowledgement
    /// (reconciliation answers and master-generated updates).
    #[serde(default)]
    pub uuid: Option<UpdateId>,
    /// The exit status of the task's command, when it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Executor-defined data.
    #[serde(default)]
    pub data: Option<Vec<u8>>,
}

impl TaskStatus {
    /// A status with no reason, message, ids or uuid, stamped at time 0: whoever
    /// creates it sets the time with [`TaskStatus::at`] (the cores have no clock).
    pub fn new(task_id: TaskId, state: TaskState, source: StatusSource) -> TaskStatus {
        TaskStatus {
            task_id,
            state,
            reason: None,
            message: None,
            source,
            agent_id: None,
            executor_id: None,
            timestamp: 0.0,
            uuid: None,
            exit_code: None,
            data: None,
        }
    }

    /// Sets the timestamp (seconds since the Unix epoch).
    pub fn at(mut self, timestamp: f64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: TaskReason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// A command to run: a shell string (`shell: true`, run with `/bin/sh -c`) or a
/// program with arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CommandInfo {
    /// Run `value` through `/bin/sh -c`; otherwise `value` is the program.
    #[serde(default = "yes")]
    pub shell: bool,
    /// The shell command, or the program path.
    pub value: String,
    /// Arguments when `shell` is false (argv[1..]).
    #[serde(default)]
    pub arguments: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The user to run as, if not the agent's.
    #[serde(default)]
    pub user: Option<String>,
}

fn yes() -> bool {
    true
}

impl CommandInfo {
    /// A shell command.
    pub fn shell(command: impl Into<String>) -> CommandInfo {
        CommandInfo { shell: true, value: command.into(), ..CommandInfo::default() }
    }
}

/// A custom executor: what to run and with which resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// The executor's id, unique within its framework.
    pub executor_id: ExecutorId,
    /// The framework it belongs to (filled by the master).
    #[serde(default)]
    pub framework_id: Option<FrameworkId>,
    /// How to start it.
    pub command: CommandInfo,
    /// Resources for the executor itself.
    #[serde(default)]
    pub resources: Resources,
    /// A name for humans.
    #[serde(default)]
    pub name: Option<String>,
}

/// A task as a scheduler describes it in a launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// A name for humans.
    pub name: String,
    /// Unique within the framework.
    pub task_id: TaskId,
    /// The agent of the offer it is launched on.
    pub agent_id: AgentId,
    /// What it may use.
    pub resources: Resources,
    /// A command for the built-in command executor; exactly one of `command` and
    /// `executor` is set.
    #[serde(default)]
    pub command: Option<CommandInfo>,
    /// A custom executor to run it.
    #[serde(default)]
    pub executor: Option<ExecutorInfo>,
    /// Opaque data for the executor.
    #[serde(default)]
    pub data: Option<Vec<u8>>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What a framework can do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FrameworkCapability {
    /// Understands TASK_UNREACHABLE / TASK_GONE instead of TASK_LOST.
    #[serde(rename = "PARTITION_AWARE")]
    PartitionAware,
    /// Subscribes with several roles.
    #[serde(rename = "MULTI_ROLE")]
    MultiRole,
    /// Wants TASK_KILLING before TASK_KILLED.
    #[serde(rename = "TASK_KILLING_STATE")]
    TaskKillingState,
}

/// A framework as its scheduler describes it when subscribing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// The Unix user tasks run as by default.
    #[serde(default)]
    pub user: String,
    /// A name for humans.
    pub name: String,
    /// Set when resubscribing (failover); assigned by the master otherwise.
    #[serde(default)]
    pub id: Option<FrameworkId>,
    /// How long the master keeps the framework's tasks after its scheduler
    /// disconnects, in seconds (0: tear down at once).
    #[serde(default)]
    pub failover_timeout_secs: f64,
    /// Whether agents checkpoint this framework's tasks.
    #[serde(default)]
    pub checkpoint: bool,
    /// The roles it subscribes with (default `*`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// The scheduler's host, for humans.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Who the framework says it is.
    #[serde(default)]
    pub principal: Option<String>,
    /// Its capabilities.
    #[serde(default)]
    pub capabilities: Vec<FrameworkCapability>,
}

impl FrameworkInfo {
    /// A framework with a name and defaults everywhere else.
    pub fn new(name: impl Into<String>) -> FrameworkInfo {
        FrameworkInfo {
            user: String::new(),
            name: name.into(),
            id: None,
            failover_timeout_secs: 0.0,
            checkpoint: false,
            roles: Vec::new(),
            hostname: None,
            principal: None,
            capabilities: Vec::new(),
        }
    }

    /// Whether the framework has a capability.
    pub fn has(&self, capability: FrameworkCapability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// Its roles, `*` when it named none.
    pub fn effective_roles(&self) -> Vec<String> {
        if self.roles.is_empty() {
            vec!["*".to_string()]
        } else {
            self.roles.clone()
        }
    }
}

/// An agent as it describes itself when registering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Its host name.
    pub hostname: String,
    /// Assigned by the master; set when reregistering.
    #[serde(default)]
    pub id: Option<AgentId>,
    /// Its total resources.
    pub resources: Resources,
    /// Operator-given attributes (`rack:a;zone:1`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Resources of one agent offered to one framework.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// The offer's id.
    pub id: OfferId,
    /// Who it is for.
    pub framework_id: FrameworkId,
    /// Which agent.
    pub agent_id: AgentId,
    /// The agent's host.
    pub hostname: String,
    /// The agent's UPID (for humans and tools).
    pub agent_pid: Upid,
    /// What is offered.
    pub resources: Resources,
    /// The agent's attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The role the offer is allocated to.
    #[serde(default)]
    pub role: String,
    /// Executors of this framework already running on the agent.
    #[serde(default)]
    pub executor_ids: Vec<ExecutorId>,
}

/// How long declined resources stay away from the framework.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Seconds (Mesos's default is 5).
    #[serde(default = "default_refuse_seconds")]
    pub refuse_seconds: f64,
}

fn default_refuse_seconds() -> f64 {
    5.0
}

impl Default for Filters {
    fn default() -> Self {
        Filters { refuse_seconds: default_refuse_seconds() }
    }
}

/// A task as the master and agents track it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Its description.
    pub info: TaskInfo,
    /// Its framework.
    pub framework_id: FrameworkId,
    /// Its executor (the task id for command tasks).
    pub executor_id: ExecutorId,
    /// Its latest state.
    pub state: TaskState,
    /// The latest status.
    pub status: Option<TaskStatus>,
    /// The role its resources were allocated to (the offer's role).
    #[serde(default)]
    pub role: Option<String>,
}

impl TaskInfo {
    /// A command task using `resources` of `offer`.
    pub fn command(
        task_id: &str,
        offer: &Offer,
        resources: crate::resources::Resources,
        command: CommandInfo,
    ) -> TaskInfo {
        TaskInfo {
            name: task_id.to_string(),
            task_id: TaskId(task_id.to_string()),
            agent_id: offer.agent_id.clone(),
            resources,
            command: Some(command),
            executor: None,
            data: None,
            labels: Default::default(),
        }
    }
}
