//! Tasks: status updates from agents (forwarded to schedulers, resources recovered
//! at the first terminal state), acknowledgements back to agents, kills,
//! reconciliation, and scheduler-to-executor messages.

use keel_kernel::{Handle, Message, ProcessContext, Upid};

use super::state::{reconciled, unknown_task_state, AgentKnowledge};
use super::Master;
use crate::messages::agent::ShutdownFramework;
use crate::messages::common::*;
use crate::messages::scheduler::ReconcileTasks;
use crate::task::{StatusSource, TaskReason, TaskStatus};

impl Handle<StatusUpdate> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, mut update: StatusUpdate) {
        if !self.serving(StatusUpdate::KIND) {
            return;
        }
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
        if self.removed_framework_ids.contains(&framework_id) {
            // The framework is gone: the agent should not keep its tasks.
            ctx.send(&from, ShutdownFramework { framework_id });
            self.metrics.invalid_status_updates += 1;
            return;
        }
        let Some(framework) = self.frameworks.get_mut(&framework_id) else {
            self.metrics.invalid_status_updates += 1;
            return;
        };
        let task_id = update.status.task_id.clone();
        if let Some(task) = framework.unreachable_tasks.remove(&task_id) {
            framework.tasks.insert(task_id.clone(), task);
        }
        let mut released = None;
        match framework.tasks.get_mut(&task_id) {
            Some(task) => {
                let first_terminal = !task.state.is_terminal() && update.status.state.is_terminal();
                if !task.state.is_terminal() {
                    task.state = update.status.state;
                }
                task.status = Some(update.status.clone());
                if first_terminal {
                    released = Some(task.clone());
                }
            }
            None => {
                // Forwarded all the same so the scheduler can acknowledge it.
                self.metrics.invalid_status_updates += 1;
            }
        }
        if let Some(task) = released {
            *self.metrics.terminal.entry(task.state.name()).or_default() += 1;
            self.release_task_resources(ctx, &framework_id, &task);
        }
        let Some(framework) = self.frameworks.get(&framework_id) else { return };
        if framework.connected {
            if let Some(pid) = &framework.pid {
                self.metrics.status_updates_forwarded += 1;
                ctx.send(pid, update);
            }
        }
    }
}

impl Handle<StatusUpdateAcknowledgement> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, ack: StatusUpdateAcknowledgement) {
        if !self.serving(StatusUpdateAcknowledgement::KIND) || !self.caller(ctx, &from, &ack.framework_id) {
            return;
        }
        let Some(agent) = self.agents.get(&ack.agent_id) else {
            self.metrics.invalid_acknowledgements += 1;
            return;
        };
        let agent_pid = agent.pid.clone();
        let framework = self.frameworks.get_mut(&ack.framework_id).expect("caller checked");
        let acknowledged_terminal = framework.tasks.get(&ack.task_id).is_some_and(|task| {
            task.state.is_terminal() && task.status.as_ref().and_then(|s| s.uuid.as_ref()) == Some(&ack.uuid)
        });
        if !framework.tasks.contains_key(&ack.task_id) {
            self.metrics.invalid_acknowledgements += 1;
        }
        if acknowledged_terminal {
            if let Some(task) = framework.tasks.remove(&ack.task_id) {
                framework.completed_tasks.push_back(task);
                if framework.completed_tasks.len() > self.config.max_completed_tasks_per_framework {
                    framework.completed_tasks.pop_front();
                }
            }
            if let Some(agent) = self.agents.get_mut(&ack.agent_id) {
                if let Some(tasks) = agent.tasks.get_mut(&ack.framework_id) {
                    tasks.remove(&ack.task_id);
                }
            }
        }
        // The agent owns the update stream; it ignores acknowledgements it does not expect.
        ctx.send(&agent_pid, ack);
    }
}

impl Master {
    fn agent_knowledge(&self, agent_id: Option<&crate::ids::AgentId>) -> AgentKnowledge {
        match agent_id {
            Some(id) if self.agents.contains_key(id) => AgentKnowledge::Registered,
            Some(id) if self.unreachable_agents.contains_key(id) => AgentKnowledge::Unreachable,
            Some(id) if self.gone_agents.contains_key(id) => AgentKnowledge::Gone,
            _ => AgentKnowledge::Unknown,
        }
    }

    fn unknown_task_status(
        &self,
        framework_id: &crate::ids::FrameworkId,
        task_id: crate::ids::TaskId,
        agent_id: Option<crate::ids::AgentId>,
        reason: TaskReason,
    ) -> TaskStatus {
        let partition_aware = self.frameworks.get(framework_id).is_some_and(|f| f.partition_aware());
        let state = unknown_task_state(self.agent_knowledge(agent_id.as_ref()), partition_aware);
        let mut status = TaskStatus::new(task_id, state, StatusSource::Master)
            .with_reason(reason)
            .with_message("the task is unknown to the master");
        status.agent_id = agent_id;
        status
    }
}

impl Handle<KillTask> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, kill: KillTask) {
        if !self.serving(KillTask::KIND) || !self.caller(ctx, &from, &kill.framework_id) {
            return;
        }
        let framework = self.frameworks.get(&kill.framework_id).expect("caller checked");
        let task =
            framework.tasks.get(&kill.task_id).or_else(|| framework.unreachable_tasks.get(&kill.task_id));
        match task {
            Some(task) if !task.state.is_terminal() => {
                if let Some(agent) = self.agents.get(&task.info.agent_id) {
                    let mut kill = kill.clone();
                    kill.agent_id = Some(task.info.agent_id.clone());
                    ctx.send(&agent.pid, kill);
                }
            }
            Some(task) => {
                // Already terminal: repeat what we know.
                let status = reconciled(task);
                self.tell_framework(ctx, &kill.framework_id, status);
            }
            None => {
                self.metrics.unknown_task_kills += 1;
                let status = self.unknown_task_status(
                    &kill.framework_id,
                    kill.task_id,
                    kill.agent_id,
                    TaskReason::TaskUnknown,
                );
                self.tell_framework(ctx, &kill.framework_id, status);
            }
        }
    }
}

impl Handle<ReconcileTasks> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ReconcileTasks) {
        if !self.serving(ReconcileTasks::KIND) || !self.caller(ctx, &from, &m.framework_id) {
            return;
        }
        let framework = self.frameworks.get(&m.framework_id).expect("caller checked");
        let statuses: Vec<TaskStatus> = if m.tasks.is_empty() {
            // Implicit: everything the master knows of the framework's tasks.
            framework.tasks.values().chain(framework.unreachable_tasks.values()).map(reconciled).collect()
        } else {
            m.tasks
                .into_iter()
                .map(|wanted| {
                    match framework
                        .tasks
                        .get(&wanted.task_id)
                        .or_else(|| framework.unreachable_tasks.get(&wanted.task_id))
                    {
                        Some(task) => reconciled(task),
                        None => self.unknown_task_status(
                            &m.framework_id,
                            wanted.task_id,
                            wanted.agent_id,
                            TaskReason::Reconciliation,
                        ),
                    }
                })
                .collect()
        };
        for status in statuses {
            self.tell_framework(ctx, &m.framework_id, status);
        }
    }
}

impl Handle<FrameworkToExecutorMessage> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: FrameworkToExecutorMessage) {
        if !self.serving(FrameworkToExecutorMessage::KIND) || !self.caller(ctx, &from, &m.framework_id) {
            return;
        }
        if let Some(agent) = self.agents.get(&m.agent_id) {
            ctx.send(&agent.pid, m);
        }
    }
}
