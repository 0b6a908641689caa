//! Tasks: status updates from agents (forwarded to schedulers; resources recovered
//! at the first terminal state, which the update's `latest_state` may tell before
//! the update itself says so), acknowledgements back to agents, kills,
//! reconciliation, launch checks, and scheduler-to-executor messages.

use keel_message::Upid;
use keel_proto::ids::{AgentId, FrameworkId, TaskId};
use keel_proto::messages::agent::{CheckLaunches, LaunchRef, LaunchesChecked, ShutdownFramework};
use keel_proto::messages::common::*;
use keel_proto::messages::scheduler::ReconcileTasks;
use keel_proto::task::{StatusSource, TaskReason, TaskState, TaskStatus};

use super::state::{reconciled, reconciled_final, unknown_task_state, AgentKnowledge};
use super::{Master, Out};

/// The most tasks one reconciliation or launch check names.
const MAX_TASKS_PER_CALL: usize = 10_000;

impl Master {
    /// Sends a master-generated status (no acknowledgement expected) to a
    /// framework's scheduler, if it is connected.
    pub(super) fn tell_framework(&mut self, out: &mut Out, framework_id: &FrameworkId, status: TaskStatus) {
        let Some(pid) = self.frameworks.get(framework_id).and_then(|f| f.reachable_pid()).cloned() else {
            return;
        };
        self.send_status(out, &pid, framework_id, status);
    }

    pub(super) fn send_status(
        &mut self,
        out: &mut Out,
        pid: &Upid,
        framework_id: &FrameworkId,
        status: TaskStatus,
    ) {
        if status.state.is_terminal() {
            if let Some(framework) = self.frameworks.get_mut(framework_id) {
                if framework.tasks.contains_key(&status.task_id) {
                    framework.told_final.insert(status.task_id.clone(), status.state);
                }
                framework.declared.remember(status.task_id.clone(), status.state);
            }
        }
        let update = StatusUpdate {
            framework_id: framework_id.clone(),
            executor_id: status.executor_id.clone(),
            agent_id: status.agent_id.clone(),
            latest_state: Some(status.state),
            status,
            uuid: self.update_id(),
            agent_pid: None,
        };
        out.send(pid, update);
    }

    pub(super) fn status_update(&mut self, out: &mut Out, from: Upid, mut update: StatusUpdate) {
        let Some(agent_id) = self.agent_of(&from) else {
            self.metrics.invalid_status_updates += 1;
            tracing::debug!(%from, "status update from an unregistered agent");
            return;
        };
        if update.agent_id.as_ref().is_some_and(|a| a != &agent_id) {
            self.metrics.invalid_status_updates += 1;
            return;
        }
        update.agent_id = Some(agent_id.clone());
        update.agent_pid = Some(from.clone());
        update.status.agent_id = Some(agent_id.clone());
        let framework_id = update.framework_id.clone();
        let task_id = update.status.task_id.clone();
        let latest = update.latest_state.unwrap_or(update.status.state);
        let key = (framework_id.clone(), task_id.clone());
        if let Some(held) = self.agents.get_mut(&agent_id).and_then(|a| a.zombies.get_mut(&key)) {
            // A task the framework was told is LOST, being killed: the master
            // acknowledges for the framework, which must hear nothing more of it.
            let freed = (latest.is_terminal() && !held.is_empty()).then(|| std::mem::take(held));
            if update.status.state.is_terminal() {
                if let Some(agent) = self.agents.get_mut(&agent_id) {
                    agent.zombies.remove(&key);
                }
            }
            if let Some(resources) = freed {
                self.release(out, &framework_id, &agent_id, &resources, None);
            }
            let ack = StatusUpdateAcknowledgement { agent_id, framework_id, task_id, uuid: update.uuid };
            out.send(&from, ack);
            return;
        }
        if self.removed_frameworks.contains(&framework_id) {
            // The framework is gone: the agent should not keep its tasks.
            out.send(&from, ShutdownFramework { framework_id });
            self.metrics.invalid_status_updates += 1;
            return;
        }
        let Some(framework) = self.frameworks.get_mut(&framework_id) else {
            self.metrics.invalid_status_updates += 1;
            return;
        };
        if let Some(task) = framework.unreachable_tasks.remove(&task_id) {
            framework.tasks.insert(task_id.clone(), task);
        }
        if let Some(told) = framework.told_final.get(&task_id).copied() {
            if update.status.state != told {
                // The framework already has the task's final state (the master told
                // it from the agent's latest state); this older update is not news.
                // The master acknowledges it so the agent's stream moves on.
                self.metrics.stale_updates_acknowledged += 1;
                let ack = StatusUpdateAcknowledgement { agent_id, framework_id, task_id, uuid: update.uuid };
                out.send(&from, ack);
                return;
            }
        }
        let mut released = None;
        match framework.tasks.get_mut(&task_id) {
            Some(task) => {
                let first_terminal = !task.state.is_terminal() && latest.is_terminal();
                if !task.state.is_terminal() {
                    task.state = latest;
                }
                task.status = Some(update.status.clone());
                if task.state != TaskState::Staging {
                    framework.staging_since.remove(&task_id);
                    framework.checking.remove(&task_id);
                }
                if first_terminal {
                    released = Some(task.clone());
                }
            }
            None => {
                // Not live here. If the framework already has this task's final
                // state (the master told it, or its terminal update was delivered),
                // a different state is stale: acknowledged here, not delivered.
                let told = framework.declared.get(&task_id).copied().or_else(|| {
                    framework
                        .completed_tasks
                        .iter()
                        .rev()
                        .find(|t| t.info.task_id == task_id)
                        .map(|t| t.state)
                        .filter(|s| s.is_terminal())
                });
                if told.is_some_and(|told| told != update.status.state) {
                    self.metrics.stale_updates_acknowledged += 1;
                    let ack =
                        StatusUpdateAcknowledgement { agent_id, framework_id, task_id, uuid: update.uuid };
                    out.send(&from, ack);
                    return;
                }
                // Otherwise forwarded all the same so the scheduler can acknowledge it.
                self.metrics.invalid_status_updates += 1;
            }
        }
        if let Some(task) = released {
            *self.metrics.terminal.entry(task.state.name()).or_default() += 1;
            self.release_task(out, &framework_id, &task);
        }
        if let Some(pid) = self.frameworks.get(&framework_id).and_then(|f| f.reachable_pid()).cloned() {
            self.metrics.status_updates_forwarded += 1;
            out.send(&pid, update);
        }
    }

    pub(super) fn acknowledge(&mut self, out: &mut Out, from: Upid, ack: StatusUpdateAcknowledgement) {
        if !self.caller(out, &from, &ack.framework_id) {
            return;
        }
        let Some(agent) = self.agents.get(&ack.agent_id).filter(|a| a.leaving.is_none()) else {
            self.metrics.invalid_acknowledgements += 1;
            return;
        };
        let agent_pid = agent.pid.clone();
        let max = self.config.max_completed_tasks_per_framework;
        let framework = self.frameworks.get_mut(&ack.framework_id).expect("caller checked");
        // The task goes when the update acknowledged is its terminal one (an earlier
        // update may be acknowledged after the master learned the task ended).
        let acknowledged_terminal = framework.tasks.get(&ack.task_id).is_some_and(|task| {
            task.status.as_ref().is_some_and(|s| s.state.is_terminal() && s.uuid.as_ref() == Some(&ack.uuid))
        });
        if !framework.tasks.contains_key(&ack.task_id) {
            self.metrics.invalid_acknowledgements += 1;
        }
        if acknowledged_terminal {
            if let Some(task) = framework.tasks.remove(&ack.task_id) {
                framework.complete(task, max);
            }
            if let Some(tasks) =
                self.agents.get_mut(&ack.agent_id).and_then(|a| a.tasks.get_mut(&ack.framework_id))
            {
                tasks.remove(&ack.task_id);
            }
        }
        // The agent owns the update stream; it ignores acknowledgements it does not expect.
        out.send(&agent_pid, ack);
    }

    fn agent_knowledge(&self, agent_id: Option<&AgentId>) -> AgentKnowledge {
        match agent_id {
            Some(id) if self.agents.contains_key(id) => AgentKnowledge::Registered,
            Some(id) if self.recovered_agents.contains_key(id) => AgentKnowledge::Recovered,
            Some(id) if self.unreachable_agents.contains_key(id) => AgentKnowledge::Unreachable,
            Some(id) if self.gone_agents.contains_key(id) => AgentKnowledge::Gone,
            // The task may be on an agent that has not come back yet.
            None if !self.recovered_agents.is_empty() => AgentKnowledge::Recovered,
            _ => AgentKnowledge::Unknown,
        }
    }

    /// The answer for a task the master does not have live: its terminal state if
    /// it is among the completed, else Mesos's rules; `None` when it cannot know yet.
    fn answer_for(
        &mut self,
        framework_id: &FrameworkId,
        task_id: TaskId,
        agent_id: Option<AgentId>,
        reason: TaskReason,
    ) -> Option<TaskStatus> {
        let knowledge = self.agent_knowledge(agent_id.as_ref());
        let now = self.now;
        let framework = self.frameworks.get_mut(framework_id)?;
        if let Some(task) = framework.completed_tasks.iter().rev().find(|t| t.info.task_id == task_id) {
            return Some(reconciled_final(task, now));
        }
        let state = match framework.declared.get(&task_id) {
            Some(state) => *state,
            None => unknown_task_state(knowledge, framework.partition_aware())?,
        };
        if state.is_terminal() {
            // Said once, it holds: a launch of it that arrives later is refused.
            framework.declared.remember(task_id.clone(), state);
        }
        let mut status = TaskStatus::new(task_id, state, StatusSource::Master)
            .at(now)
            .with_reason(reason)
            .with_message("the task is unknown to the master");
        status.agent_id = agent_id;
        Some(status)
    }

    pub(super) fn kill(&mut self, out: &mut Out, from: Upid, kill: KillTask) {
        if !self.caller(out, &from, &kill.framework_id) {
            return;
        }
        let framework = &self.frameworks[&kill.framework_id];
        if let Some(task) = framework.tasks.get(&kill.task_id) {
            if task.state.is_terminal() {
                // Already terminal: repeat what we know.
                let status = reconciled(task, self.now);
                self.tell_framework(out, &kill.framework_id, status);
            } else if let Some(agent) = self.agents.get(&task.info.agent_id) {
                let kill = KillTask { agent_id: Some(task.info.agent_id.clone()), ..kill };
                out.send(&agent.pid, kill);
            }
            return;
        }
        if framework.unreachable_tasks.contains_key(&kill.task_id) {
            // Its agent is unreachable: nothing reaches it until it comes back.
            return;
        }
        self.metrics.unknown_task_kills += 1;
        if let Some(status) =
            self.answer_for(&kill.framework_id, kill.task_id, kill.agent_id, TaskReason::TaskUnknown)
        {
            self.tell_framework(out, &kill.framework_id, status);
        }
    }

    pub(super) fn reconcile(&mut self, out: &mut Out, from: Upid, m: ReconcileTasks) {
        if !self.caller(out, &from, &m.framework_id) {
            return;
        }
        let now = self.now;
        let statuses: Vec<TaskStatus> = if m.tasks.is_empty() {
            // Implicit: everything the master knows of the framework's tasks.
            let framework = &self.frameworks[&m.framework_id];
            framework
                .tasks
                .values()
                .chain(framework.unreachable_tasks.values())
                .map(|t| reconciled(t, now))
                .collect()
        } else {
            let mut statuses = Vec::new();
            for wanted in m.tasks.into_iter().take(MAX_TASKS_PER_CALL) {
                let framework = &self.frameworks[&m.framework_id];
                let live = framework
                    .tasks
                    .get(&wanted.task_id)
                    .or_else(|| framework.unreachable_tasks.get(&wanted.task_id));
                let status = match live {
                    Some(task) => Some(reconciled(task, now)),
                    None => self.answer_for(
                        &m.framework_id,
                        wanted.task_id,
                        wanted.agent_id,
                        TaskReason::Reconciliation,
                    ),
                };
                statuses.extend(status);
            }
            statuses
        };
        for status in statuses {
            self.tell_framework(out, &m.framework_id, status);
        }
    }

    pub(super) fn framework_to_executor(&mut self, out: &mut Out, from: Upid, m: FrameworkToExecutorMessage) {
        if !self.caller(out, &from, &m.framework_id) {
            return;
        }
        if let Some(agent) = self.agents.get(&m.agent_id).filter(|a| a.leaving.is_none()) {
            out.send(&agent.pid, m);
        }
    }

    /// Asks a connected agent about launches that are STAGING for too long or
    /// that it did not report when it reregistered (resent every ping round until
    /// answered).
    pub(super) fn check_launches(&mut self, out: &mut Out, agent_id: &AgentId, pid: &Upid) {
        let timeout = self.config.launch_check_timeout.as_secs_f64();
        let now = self.now;
        let mut check = Vec::new();
        let Some(agent) = self.agents.get(agent_id) else { return };
        for (framework_id, task_ids) in &agent.tasks {
            let Some(framework) = self.frameworks.get_mut(framework_id) else { continue };
            for task_id in task_ids {
                let overdue =
                    framework.staging_since.get(task_id).is_some_and(|since| now - since >= timeout);
                if framework.checking.contains(task_id) || overdue {
                    framework.checking.insert(task_id.clone());
                    check.push(LaunchRef { framework_id: framework_id.clone(), task_id: task_id.clone() });
                }
                if check.len() >= MAX_TASKS_PER_CALL {
                    break;
                }
            }
        }
        if !check.is_empty() {
            out.send(pid, CheckLaunches { tasks: check });
        }
    }

    pub(super) fn launches_checked(&mut self, out: &mut Out, from: Upid, m: LaunchesChecked) {
        let Some(agent_id) = self.agent_of(&from) else {
            self.metrics.invalid_senders += 1;
            return;
        };
        let now = self.now;
        for known in m.known.iter().take(MAX_TASKS_PER_CALL) {
            if let Some(framework) = self.frameworks.get_mut(&known.framework_id) {
                if framework.checking.remove(&known.task_id) {
                    // The agent has it; look again only if it stays STAGING that long.
                    if let Some(since) = framework.staging_since.get_mut(&known.task_id) {
                        *since = now;
                    }
                }
            }
        }
        let max = self.config.max_completed_tasks_per_framework;
        for dropped in m.dropped.into_iter().take(MAX_TASKS_PER_CALL) {
            let on_agent = self
                .agents
                .get(&agent_id)
                .and_then(|a| a.tasks.get(&dropped.framework_id))
                .is_some_and(|ts| ts.contains(&dropped.task_id));
            let Some(framework) = self.frameworks.get_mut(&dropped.framework_id) else { continue };
            if !on_agent || !framework.checking.contains(&dropped.task_id) {
                continue;
            }
            let Some(mut task) = framework.tasks.remove(&dropped.task_id) else { continue };
            if let Some(tasks) =
                self.agents.get_mut(&agent_id).and_then(|a| a.tasks.get_mut(&dropped.framework_id))
            {
                tasks.remove(&dropped.task_id);
            }
            if task.state.is_terminal() {
                framework.complete(task, max);
                continue;
            }
            // The agent never got it and will refuse it from now on.
            let state = if framework.partition_aware() { TaskState::Dropped } else { TaskState::Lost };
            task.state = state;
            let mut status = TaskStatus::new(dropped.task_id.clone(), state, StatusSource::Master)
                .at(now)
                .with_reason(TaskReason::TaskUnknown)
                .with_message("the agent never received the task");
            status.agent_id = Some(agent_id.clone());
            status.executor_id = Some(task.executor_id.clone());
            task.status = Some(status.clone());
            let released = task.clone();
            framework.complete(task, max);
            *self.metrics.terminal.entry(state.name()).or_default() += 1;
            self.metrics.launches_lost += 1;
            tracing::warn!(framework_id = %dropped.framework_id, task_id = %dropped.task_id, agent_id = %agent_id, "a launch never reached its agent");
            self.release_task(out, &dropped.framework_id, &released);
            // Its executor, if the task brought one, is not running either.
            if let Some(executor) = &released.info.executor {
                let still_used = self.frameworks[&dropped.framework_id]
                    .tasks
                    .values()
                    .any(|t| t.info.agent_id == agent_id && t.executor_id == executor.executor_id);
                if !still_used {
                    let removed = self
                        .frameworks
                        .get_mut(&dropped.framework_id)
                        .and_then(|f| f.executors.get_mut(&agent_id))
                        .and_then(|e| e.remove(&executor.executor_id));
                    if let Some(executor) = removed {
                        self.release(out, &dropped.framework_id, &agent_id, &executor.resources, None);
                    }
                }
            }
            self.tell_framework(out, &dropped.framework_id, status);
        }
    }
}
