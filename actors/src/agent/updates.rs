//! Status update streams: one per task, in order, each update resent with capped
//! exponential backoff until the scheduler's acknowledgement for its uuid comes
//! back through the master. Only the head of a stream is in flight.

use keel_kernel::{Handle, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

use super::{Agent, AgentState, TaskEntry};
use crate::ids::{ExecutorId, FrameworkId, TaskId, UpdateId};
use crate::messages::common::{StatusUpdate, StatusUpdateAcknowledgement};
use crate::task::TaskStatus;

/// Resend the head of a stream if it is still `uuid`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RetryUpdate {
    framework_id: FrameworkId,
    executor_id: ExecutorId,
    task_id: TaskId,
    uuid: UpdateId,
}
keel_kernel::message!(RetryUpdate, "keel.agent.RetryUpdate");

impl Agent {
    pub(super) fn task_mut(
        &mut self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        task_id: &TaskId,
    ) -> Option<&mut TaskEntry> {
        self.frameworks.get_mut(framework_id)?.executors.get_mut(executor_id)?.tasks.get_mut(task_id)
    }

    /// Records a task's new status and queues it for delivery.
    pub(super) fn status_update(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        mut status: TaskStatus,
    ) {
        let agent_id = self.agent_id.clone();
        let agent_pid = ctx.upid().clone();
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let shutting_down = framework.shutting_down;
        let checkpoint = framework.info.checkpoint;
        let Some(executor) = framework.executors.get_mut(executor_id) else { return };
        let sandbox = executor.sandbox.display().to_string();
        let Some(task) = executor.tasks.get_mut(&status.task_id) else { return };
        if task.state.is_terminal() {
            tracing::debug!(task_id = %status.task_id, "ignoring an update after a terminal one");
            return;
        }
        task.state = status.state;
        if status.state.is_terminal() {
            *self.metrics.terminal.entry(status.state.name()).or_default() += 1;
        }
        let task_id = status.task_id.clone();
        if shutting_down {
            // The framework is gone: nobody will acknowledge; just finish the task.
            if status.state.is_terminal() {
                executor.tasks.remove(&task_id);
                self.maybe_remove_executor(framework_id, executor_id);
            }
            return;
        }
        let uuid = status.uuid.clone().unwrap_or_else(UpdateId::random);
        status.uuid = Some(uuid.clone());
        status.agent_id = agent_id.clone();
        status.executor_id = Some(executor_id.clone());
        if status.message.is_none() && status.state == crate::task::TaskState::Running {
            status.message = Some(format!("sandbox: {sandbox}"));
        }
        let update = StatusUpdate {
            latest_state: Some(task.state),
            framework_id: framework_id.clone(),
            executor_id: Some(executor_id.clone()),
            agent_id,
            status,
            uuid,
            agent_pid: Some(agent_pid),
        };
        task.stream.pending.push_back(update);
        let first = task.stream.pending.len() == 1;
        if checkpoint {
            self.checkpoint_task(framework_id, executor_id, &task_id);
        }
        self.metrics.status_updates += 1;
        if first {
            self.send_head(ctx, framework_id, executor_id, &task_id);
        }
    }

    /// Sends the head of a task's stream (when registered) and arms its retry.
    fn send_head(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        task_id: &TaskId,
    ) {
        let registered = self.state == AgentState::Registered;
        let master = self.master.clone();
        let initial = self.config.status_update_retry;
        let Some(task) = self.task_mut(framework_id, executor_id, task_id) else { return };
        let Some(head) = task.stream.pending.front().cloned() else { return };
        if task.stream.backoff.is_zero() {
            task.stream.backoff = initial;
        }
        if let Some(timer) = task.stream.timer.take() {
            ctx.cancel(timer);
        }
        if !registered {
            // Sent when the agent (re)registers.
            return;
        }
        let backoff = task.stream.backoff;
        let retry = RetryUpdate {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            task_id: task_id.clone(),
            uuid: head.uuid.clone(),
        };
        ctx.send(&master, head);
        let timer = ctx.delay(backoff, retry);
        if let Some(task) = self.task_mut(framework_id, executor_id, task_id) {
            task.stream.timer = Some(timer);
        }
    }

    /// Resends every stream's head (after registration).
    pub(super) fn flush_streams(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let mut heads = Vec::new();
        for (framework_id, framework) in &self.frameworks {
            for (executor_id, executor) in &framework.executors {
                for (task_id, task) in &executor.tasks {
                    if !task.stream.pending.is_empty() {
                        heads.push((framework_id.clone(), executor_id.clone(), task_id.clone()));
                    }
                }
            }
        }
        for (framework_id, executor_id, task_id) in heads {
            self.send_head(ctx, &framework_id, &executor_id, &task_id);
        }
    }

    /// The executor running `task_id`: the command executor's id is the task's id, so
    /// that is looked up first; custom executors are searched.
    pub(super) fn find_task_executor(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) -> Option<ExecutorId> {
        let framework = self.frameworks.get(framework_id)?;
        let command_executor = ExecutorId(task_id.0.clone());
        if framework.executors.get(&command_executor).is_some_and(|e| e.tasks.contains_key(task_id)) {
            return Some(command_executor);
        }
        framework.executors.iter().find(|(_, e)| e.tasks.contains_key(task_id)).map(|(id, _)| id.clone())
    }
}

impl Handle<RetryUpdate> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: RetryUpdate) {
        if &from != ctx.upid() {
            return;
        }
        let max = self.config.status_update_retry_max;
        let Some(task) = self.task_mut(&m.framework_id, &m.executor_id, &m.task_id) else { return };
        task.stream.timer = None;
        if task.stream.pending.front().map(|u| &u.uuid) != Some(&m.uuid) {
            return;
        }
        task.stream.backoff = (task.stream.backoff * 2).min(max);
        self.metrics.status_update_retries += 1;
        self.send_head(ctx, &m.framework_id, &m.executor_id, &m.task_id);
    }
}

impl Handle<StatusUpdateAcknowledgement> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, ack: StatusUpdateAcknowledgement) {
        if !self.is_master(ctx, &from) {
            return;
        }
        let Some(executor_id) = self.find_task_executor(&ack.framework_id, &ack.task_id) else {
            self.metrics.invalid_acknowledgements += 1;
            return;
        };
        let initial = self.config.status_update_retry;
        let Some(task) = self.task_mut(&ack.framework_id, &executor_id, &ack.task_id) else { return };
        if task.stream.pending.front().map(|u| &u.uuid) != Some(&ack.uuid) {
            // A duplicate, or an acknowledgement for an update we never sent.
            self.metrics.invalid_acknowledgements += 1;
            tracing::debug!(task_id = %ack.task_id, uuid = %ack.uuid, "ignoring an unexpected acknowledgement");
            return;
        }
        task.stream.pending.pop_front();
        task.stream.backoff = initial;
        if let Some(timer) = task.stream.timer.take() {
            ctx.cancel(timer);
        }
        let done = task.stream.pending.is_empty() && task.state.is_terminal();
        let more = !task.stream.pending.is_empty();
        if more {
            self.send_head(ctx, &ack.framework_id, &executor_id, &ack.task_id);
        } else if done {
            if let Some(executor) =
                self.frameworks.get_mut(&ack.framework_id).and_then(|f| f.executors.get_mut(&executor_id))
            {
                executor.tasks.remove(&ack.task_id);
            }
            self.maybe_remove_executor(&ack.framework_id, &executor_id);
        }
        let checkpoint = self.frameworks.get(&ack.framework_id).is_some_and(|f| f.info.checkpoint);
        if checkpoint {
            self.checkpoint_task(&ack.framework_id, &executor_id, &ack.task_id);
        }
    }
}
