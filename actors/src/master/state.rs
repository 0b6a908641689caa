//! The master's in-memory picture of the cluster: frameworks, agents, tasks and
//! offers, with the bookkeeping rules that keep them consistent. No I/O here.

use std::collections::{HashMap, HashSet, VecDeque};

use keel_kernel::{TimerId, Upid};

use crate::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use crate::resources::Resources;
use crate::task::{
    AgentInfo, ExecutorInfo, FrameworkCapability, FrameworkInfo, Offer, Task, TaskState, TaskStatus,
};

/// A framework the master knows.
#[derive(Debug)]
pub struct FrameworkState {
    /// Its description, with its id.
    pub info: FrameworkInfo,
    /// Its scheduler's UPID (the last one that subscribed); `None` for a framework
    /// recovered from an agent's reregistration before its scheduler came back.
    pub pid: Option<Upid>,
    /// Whether the scheduler is connected.
    pub connected: bool,
    /// When it first subscribed (seconds since the epoch).
    pub registered_secs: f64,
    /// Live tasks (not yet acknowledged terminal).
    pub tasks: HashMap<TaskId, Task>,
    /// Tasks on unreachable agents (partition-aware frameworks).
    pub unreachable_tasks: HashMap<TaskId, Task>,
    /// Recent terminal tasks, oldest first, bounded.
    pub completed_tasks: VecDeque<Task>,
    /// Outstanding offers.
    pub offers: HashSet<OfferId>,
    /// Custom executors per agent.
    pub executors: HashMap<AgentId, HashMap<ExecutorId, ExecutorInfo>>,
    /// The failover timer while disconnected.
    pub failover_timer: Option<TimerId>,
}

impl FrameworkState {
    /// A framework with no tasks, offers or executors yet.
    pub fn new(
        info: FrameworkInfo,
        pid: Option<Upid>,
        connected: bool,
        registered_secs: f64,
    ) -> FrameworkState {
        FrameworkState {
            info,
            pid,
            connected,
            registered_secs,
            tasks: HashMap::new(),
            unreachable_tasks: HashMap::new(),
            completed_tasks: VecDeque::new(),
            offers: HashSet::new(),
            executors: HashMap::new(),
            failover_timer: None,
        }
    }

    /// Whether it understands TASK_UNREACHABLE and friends.
    pub fn partition_aware(&self) -> bool {
        self.info.has(FrameworkCapability::PartitionAware)
    }
}

/// An agent the master has admitted.
#[derive(Debug)]
pub struct AgentState {
    /// Its description, with its id.
    pub info: AgentInfo,
    /// Its UPID.
    pub pid: Upid,
    /// Whether its connection is up (link not exited).
    pub connected: bool,
    /// When it registered (seconds since the epoch).
    pub registered_secs: f64,
    /// Pings sent without a pong since the last pong.
    pub pings_missed: u32,
    /// Live task ids per framework.
    pub tasks: HashMap<FrameworkId, HashSet<TaskId>>,
    /// Resources of live tasks and executors.
    pub used: Resources,
    /// Resources in outstanding offers.
    pub offered: Resources,
    /// The agent's software version.
    pub version: String,
}

impl AgentState {
    /// The agent's id.
    pub fn id(&self) -> &AgentId {
        self.info.id.as_ref().expect("admitted agents have ids")
    }
}

/// An outstanding offer.
#[derive(Debug)]
pub struct OfferState {
    /// The offer as sent.
    pub offer: Offer,
    /// Its rescind timer, when offers time out.
    pub timer: Option<TimerId>,
}

/// Why a launch is refused, and what the task gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// TASK_ERROR or TASK_DROPPED (or TASK_LOST for old frameworks).
    pub state: TaskState,
    /// The reason.
    pub reason: crate::task::TaskReason,
    /// Explanation.
    pub message: String,
}

/// Checks one task of a launch against what is left of the offers.
pub fn validate_task(
    framework: &FrameworkState,
    task: &crate::task::TaskInfo,
    agent_id: &AgentId,
    remaining: &Resources,
    launched_ids: &HashSet<TaskId>,
) -> Result<(), Refusal> {
    use crate::task::TaskReason;
    let invalid =
        |message: String| Refusal { state: TaskState::Error, reason: TaskReason::TaskInvalid, message };
    if task.task_id.as_str().is_empty() || task.task_id.as_str().len() > 255 {
        return Err(invalid("task id must be 1 to 255 characters".into()));
    }
    if task.task_id.as_str().chars().any(|c| c == '/' || c.is_control() || c.is_whitespace()) {
        return Err(invalid(format!(
            "task id {:?} contains '/', whitespace or control characters",
            task.task_id.as_str()
        )));
    }
    if framework.tasks.contains_key(&task.task_id)
        || framework.unreachable_tasks.contains_key(&task.task_id)
        || launched_ids.contains(&task.task_id)
    {
        return Err(invalid(format!("task id {} is already in use", task.task_id)));
    }
    if &task.agent_id != agent_id {
        return Err(invalid(format!("task names agent {} but the offers are on {agent_id}", task.agent_id)));
    }
    match (&task.command, &task.executor) {
        (Some(_), Some(_)) => {
            return Err(invalid("a task has either a command or an executor, not both".into()))
        }
        (None, None) => return Err(invalid("a task needs a command or an executor".into())),
        (Some(command), None) if command.value.trim().is_empty() => {
            return Err(invalid("the task's command is empty".into()))
        }
        (None, Some(executor)) if executor.command.value.trim().is_empty() => {
            return Err(invalid("the executor's command is empty".into()))
        }
        (None, Some(executor)) if executor.executor_id.as_str().is_empty() => {
            return Err(invalid("the executor id is empty".into()))
        }
        _ => {}
    }
    if task.resources.is_empty() {
        return Err(invalid("a task must use some resources".into()));
    }
    // What a container cannot enforce is refused before launch.
    if task.resources.cpus() <= 0.0 {
        return Err(invalid(format!("task uses {} but needs cpus > 0 to be isolated", task.resources)));
    }
    if task.resources.mem_mb() <= 0.0 {
        return Err(invalid(format!("task uses {} but needs mem > 0 to be isolated", task.resources)));
    }
    let mut needed = task.resources.clone();
    if let Some(executor) = &task.executor {
        let running =
            framework.executors.get(agent_id).is_some_and(|e| e.contains_key(&executor.executor_id));
        if !running {
            needed += executor.resources.clone();
        }
    }
    if !remaining.contains(&needed) {
        return Err(invalid(format!("task uses {needed} but only {remaining} is left in the offers")));
    }
    Ok(())
}

/// What the master answers in an explicit reconciliation for a task it does not
/// know (Mesos's reconciliation rules), by what it knows of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKnowledge {
    /// The agent is registered.
    Registered,
    /// The agent is unreachable.
    Unreachable,
    /// The agent was marked gone.
    Gone,
    /// The agent is not known, or no agent was named.
    Unknown,
}

/// The state to report for an unknown task.
pub fn unknown_task_state(agent: AgentKnowledge, partition_aware: bool) -> TaskState {
    if !partition_aware {
        return TaskState::Lost;
    }
    match agent {
        AgentKnowledge::Registered => TaskState::Gone,
        AgentKnowledge::Unreachable => TaskState::Unreachable,
        AgentKnowledge::Gone => TaskState::GoneByOperator,
        AgentKnowledge::Unknown => TaskState::Unknown,
    }
}

/// The latest status of a task, as reconciliation reports it.
pub fn reconciled(task: &Task) -> TaskStatus {
    let mut status = task.status.clone().unwrap_or_else(|| {
        TaskStatus::new(task.info.task_id.clone(), task.state, crate::task::StatusSource::Master)
    });
    status.state = task.state;
    status.agent_id = Some(task.info.agent_id.clone());
    status.reason = Some(crate::task::TaskReason::Reconciliation);
    status.source = crate::task::StatusSource::Master;
    status.uuid = None;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framework() -> FrameworkState {
        FrameworkState::new(crate::task::FrameworkInfo::new("t"), None, true, 0.0)
    }

    fn task(resources: &str) -> crate::task::TaskInfo {
        crate::task::TaskInfo {
            name: "t".into(),
            task_id: "t".into(),
            agent_id: "a".into(),
            resources: resources.parse().unwrap(),
            command: Some(crate::task::CommandInfo::shell("true")),
            executor: None,
            data: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn launches_that_cannot_be_isolated_or_do_not_fit_are_refused_with_a_reason() {
        let offered: Resources = "cpus:2;mem:1024".parse().unwrap();
        let ok = validate_task(&framework(), &task("cpus:1;mem:128"), &"a".into(), &offered, &HashSet::new());
        assert!(ok.is_ok());
        for (resources, words) in [
            ("mem:128", "cpus > 0"),
            ("cpus:1", "mem > 0"),
            ("cpus:4;mem:128", "only"),
            ("cpus:1;mem:4096", "only"),
        ] {
            let refusal =
                validate_task(&framework(), &task(resources), &"a".into(), &offered, &HashSet::new())
                    .unwrap_err();
            assert_eq!(refusal.state, TaskState::Error);
            assert!(refusal.message.contains(words), "{resources}: {}", refusal.message);
        }
    }

    #[test]
    fn unknown_tasks_follow_mesos_reconciliation_rules() {
        use AgentKnowledge::*;
        assert_eq!(unknown_task_state(Registered, true), TaskState::Gone);
        assert_eq!(unknown_task_state(Unreachable, true), TaskState::Unreachable);
        assert_eq!(unknown_task_state(Gone, true), TaskState::GoneByOperator);
        assert_eq!(unknown_task_state(Unknown, true), TaskState::Unknown);
        for agent in [Registered, Unreachable, Gone, Unknown] {
            assert_eq!(unknown_task_state(agent, false), TaskState::Lost);
        }
    }
}
