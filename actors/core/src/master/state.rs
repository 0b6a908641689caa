//! The master's picture of the cluster: frameworks, agents, tasks and offers, and
//! the pure rules over them (launch validation, reconciliation answers). Maps are
//! ordered so that every iteration, and so every run, is deterministic.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use keel_proto::resources::Resources;
use keel_proto::task::{
    AgentInfo, ExecutorInfo, FrameworkCapability, FrameworkInfo, Offer, StatusSource, Task, TaskInfo,
    TaskReason, TaskState, TaskStatus,
};

use crate::timers::TimerId;

/// A framework the master knows.
#[derive(Debug, Clone)]
pub struct FrameworkState {
    /// Its description, with its id.
    pub info: FrameworkInfo,
    /// Its scheduler's UPID (the last one that subscribed); `None` for a framework
    /// recovered from the registry or an agent before its scheduler came back.
    pub pid: Option<Upid>,
    /// Whether the scheduler's connection is up.
    pub connected: bool,
    /// Whether it gets offers: connected and not deactivated.
    pub active: bool,
    /// When it first subscribed (seconds since the epoch).
    pub registered_secs: f64,
    /// Live tasks (not yet acknowledged terminal).
    pub tasks: BTreeMap<TaskId, Task>,
    /// When each task that is still STAGING was launched (seconds).
    pub staging_since: BTreeMap<TaskId, f64>,
    /// Tasks the master asked their agent about ([`keel_proto::messages::agent::CheckLaunches`]).
    pub checking: BTreeSet<TaskId>,
    /// Tasks on unreachable agents (partition-aware frameworks).
    pub unreachable_tasks: BTreeMap<TaskId, Task>,
    /// Recent terminal tasks, oldest first, bounded.
    pub completed_tasks: VecDeque<Task>,
    /// Outstanding offers.
    pub offers: BTreeSet<OfferId>,
    /// Custom executors per agent.
    pub executors: BTreeMap<AgentId, BTreeMap<ExecutorId, ExecutorInfo>>,
    /// The failover timer while disconnected or deactivated.
    pub failover_timer: Option<TimerId>,
    /// Its removal is being persisted: it takes no calls and gets no offers.
    pub removing: bool,
    /// Live tasks whose final state the master itself told the framework (a
    /// reconciliation answer from the agent's latest state): their older updates
    /// still queued at the agent are acknowledged by the master, not delivered.
    pub told_final: BTreeMap<TaskId, TaskState>,
    /// Ids of accepts already handled (bounded): a copy is ignored.
    pub handled_calls: Bounded<String>,
    /// Tasks the master answered for as unknown, with the state it said (bounded):
    /// a launch of one arriving later is refused with that same state, so the
    /// framework is never told two ends of one task.
    pub declared: BoundedMap<TaskId, TaskState>,
}

/// How many call ids and declared task states a framework's record keeps.
pub const REMEMBERED_PER_FRAMEWORK: usize = 10_000;

/// A set that forgets its oldest entries past a capacity.
#[derive(Debug, Clone, Default)]
pub struct Bounded<T: Ord + Clone> {
    set: BTreeSet<T>,
    order: VecDeque<T>,
}

impl<T: Ord + Clone> Bounded<T> {
    /// Adds `value`; false if it was there already.
    pub fn insert(&mut self, value: T) -> bool {
        if !self.set.insert(value.clone()) {
            return false;
        }
        self.order.push_back(value);
        while self.order.len() > REMEMBERED_PER_FRAMEWORK {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Whether `value` is remembered.
    pub fn contains(&self, value: &T) -> bool {
        self.set.contains(value)
    }
}

/// A map that forgets its oldest entries past a capacity.
#[derive(Debug, Clone)]
pub struct BoundedMap<K: Ord + Clone, V> {
    map: BTreeMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Ord + Clone, V> Default for BoundedMap<K, V> {
    fn default() -> Self {
        BoundedMap { map: BTreeMap::new(), order: VecDeque::new() }
    }
}

impl<K: Ord + Clone, V> BoundedMap<K, V> {
    /// Sets `key`'s value (the first one stays).
    pub fn remember(&mut self, key: K, value: V) {
        if self.map.contains_key(&key) {
            return;
        }
        self.map.insert(key.clone(), value);
        self.order.push_back(key);
        while self.order.len() > REMEMBERED_PER_FRAMEWORK {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }
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
            active: connected,
            registered_secs,
            tasks: BTreeMap::new(),
            staging_since: BTreeMap::new(),
            checking: BTreeSet::new(),
            unreachable_tasks: BTreeMap::new(),
            completed_tasks: VecDeque::new(),
            offers: BTreeSet::new(),
            executors: BTreeMap::new(),
            failover_timer: None,
            removing: false,
            told_final: BTreeMap::new(),
            handled_calls: Bounded::default(),
            declared: BoundedMap::default(),
        }
    }

    /// Whether it understands TASK_UNREACHABLE and friends.
    pub fn partition_aware(&self) -> bool {
        self.info.has(FrameworkCapability::PartitionAware)
    }

    /// The scheduler to tell things, when it is connected.
    pub fn reachable_pid(&self) -> Option<&Upid> {
        self.pid.as_ref().filter(|_| self.connected)
    }

    /// Records a terminal task, keeping at most `max` of them.
    pub fn complete(&mut self, task: Task, max: usize) {
        self.staging_since.remove(&task.info.task_id);
        self.checking.remove(&task.info.task_id);
        self.told_final.remove(&task.info.task_id);
        self.completed_tasks.push_back(task);
        while self.completed_tasks.len() > max {
            self.completed_tasks.pop_front();
        }
    }
}

/// Why an agent leaves the master for good or for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaving {
    /// Marked unreachable (pings unanswered): it may come back.
    Unreachable,
    /// Marked gone: it never comes back (it unregistered, or a new agent took its
    /// address).
    Gone,
}

/// An agent the master has admitted.
#[derive(Debug, Clone)]
pub struct AgentState {
    /// Its description, with its id.
    pub info: AgentInfo,
    /// Its UPID.
    pub pid: Upid,
    /// The agent process's incarnation (random per process start).
    pub incarnation: u64,
    /// Its admission's number at this master (launches carry it).
    pub session: u64,
    /// Whether its connection is up (the link has not exited since it registered).
    pub connected: bool,
    /// Whether its resources are offered (connected and not leaving).
    pub active: bool,
    /// When it registered (seconds since the epoch).
    pub registered_secs: f64,
    /// Pings sent without a pong since the last pong.
    pub pings_missed: u32,
    /// Live task ids per framework.
    pub tasks: BTreeMap<FrameworkId, BTreeSet<TaskId>>,
    /// Tasks the frameworks were already told are LOST that came back with the
    /// agent: being killed; the master acknowledges their updates itself and holds
    /// their resources (empty once they ended) until their last update.
    pub zombies: BTreeMap<(FrameworkId, TaskId), Resources>,
    /// The agent's software version.
    pub version: String,
    /// Its leaving is being persisted: no offers, no pings, no calls.
    pub leaving: Option<Leaving>,
}

impl AgentState {
    /// The agent's id.
    pub fn id(&self) -> AgentId {
        self.info.id.clone().unwrap_or_default()
    }
}

/// An outstanding offer.
#[derive(Debug, Clone)]
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
    pub reason: TaskReason,
    /// Explanation.
    pub message: String,
}

/// Checks one task of a launch against what is left of the offers.
pub fn validate_task(
    framework: &FrameworkState,
    task: &TaskInfo,
    agent_id: &AgentId,
    remaining: &Resources,
    launched_ids: &BTreeSet<TaskId>,
) -> Result<(), Refusal> {
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
    let id_in_use = framework.tasks.contains_key(&task.task_id)
        || framework.unreachable_tasks.contains_key(&task.task_id)
        || launched_ids.contains(&task.task_id);
    if id_in_use {
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

/// What the master knows of the agent a reconciliation or kill names, for a task
/// it does not know (Mesos's reconciliation rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKnowledge {
    /// The agent is registered.
    Registered,
    /// In the registry but not reregistered since this master recovered: the
    /// master does not know its tasks yet and does not answer for them.
    Recovered,
    /// The agent is unreachable.
    Unreachable,
    /// The agent was marked gone.
    Gone,
    /// The agent is not known, or no agent was named.
    Unknown,
}

/// The state to report for an unknown task; `None` when the master cannot know yet.
pub fn unknown_task_state(agent: AgentKnowledge, partition_aware: bool) -> Option<TaskState> {
    if agent == AgentKnowledge::Recovered {
        return None;
    }
    if !partition_aware {
        return Some(TaskState::Lost);
    }
    Some(match agent {
        AgentKnowledge::Registered => TaskState::Gone,
        AgentKnowledge::Unreachable => TaskState::Unreachable,
        AgentKnowledge::Gone => TaskState::GoneByOperator,
        AgentKnowledge::Recovered | AgentKnowledge::Unknown => TaskState::Unknown,
    })
}

/// A live task's status, as reconciliation reports it: the state of the latest
/// update forwarded from its agent (Mesos's `status_update_state`) when there is
/// one, not the task's latest state. An answer never runs ahead of the task's
/// update stream, so a framework is never told a final state through
/// reconciliation before older updates reach it (which a scheduler failover would
/// then take for news).
pub fn reconciled(task: &Task, now: f64) -> TaskStatus {
    let forwarded = task.status.as_ref().filter(|s| s.uuid.is_some()).map(|s| s.state);
    reconciled_as(task, forwarded.unwrap_or(task.state), now)
}

/// A completed task's status, as reconciliation reports it: its final state (its
/// agent may never send the updates still unacknowledged).
pub fn reconciled_final(task: &Task, now: f64) -> TaskStatus {
    reconciled_as(task, task.state, now)
}

fn reconciled_as(task: &Task, state: TaskState, now: f64) -> TaskStatus {
    let mut status = task
        .status
        .clone()
        .unwrap_or_else(|| TaskStatus::new(task.info.task_id.clone(), task.state, StatusSource::Master));
    status.state = state;
    status.agent_id = Some(task.info.agent_id.clone());
    status.executor_id = Some(task.executor_id.clone());
    status.reason = Some(TaskReason::Reconciliation);
    status.source = StatusSource::Master;
    status.uuid = None;
    // The state as of its latest status (a delayed answer is then recognisably
    // older than what followed it); a task with no status yet: as of now.
    if task.status.is_none() {
        status.timestamp = now;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framework() -> FrameworkState {
        FrameworkState::new(FrameworkInfo::new("t"), None, true, 0.0)
    }

    fn task(resources: &str) -> TaskInfo {
        TaskInfo {
            name: "t".into(),
            task_id: "t".into(),
            agent_id: "a".into(),
            resources: resources.parse().unwrap(),
            command: Some(keel_proto::task::CommandInfo::shell("true")),
            executor: None,
            data: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn launches_that_cannot_be_isolated_or_do_not_fit_are_refused_with_a_reason() {
        let offered: Resources = "cpus:2;mem:1024".parse().unwrap();
        let ok =
            validate_task(&framework(), &task("cpus:1;mem:128"), &"a".into(), &offered, &BTreeSet::new());
        assert!(ok.is_ok());
        for (resources, words) in [
            ("mem:128", "cpus > 0"),
            ("cpus:1", "mem > 0"),
            ("cpus:4;mem:128", "only"),
            ("cpus:1;mem:4096", "only"),
        ] {
            let refusal =
                validate_task(&framework(), &task(resources), &"a".into(), &offered, &BTreeSet::new())
                    .unwrap_err();
            assert_eq!(refusal.state, TaskState::Error);
            assert!(refusal.message.contains(words), "{resources}: {}", refusal.message);
        }
    }

    #[test]
    fn unknown_tasks_follow_mesos_reconciliation_rules() {
        use AgentKnowledge::*;
        assert_eq!(unknown_task_state(Registered, true), Some(TaskState::Gone));
        assert_eq!(unknown_task_state(Unreachable, true), Some(TaskState::Unreachable));
        assert_eq!(unknown_task_state(Gone, true), Some(TaskState::GoneByOperator));
        assert_eq!(unknown_task_state(Unknown, true), Some(TaskState::Unknown));
        for agent in [Registered, Unreachable, Gone, Unknown] {
            assert_eq!(unknown_task_state(agent, false), Some(TaskState::Lost));
        }
        // A recovered agent has not said what it runs: no answer yet.
        assert_eq!(unknown_task_state(Recovered, true), None);
        assert_eq!(unknown_task_state(Recovered, false), None);
    }
}
