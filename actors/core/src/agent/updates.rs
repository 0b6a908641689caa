//! Status update streams: one per task, in order, each update resent with capped
//! exponential backoff until the scheduler's acknowledgement for its uuid comes
//! back through the master. Only the head of a stream is in flight; every update
//! carries the task's latest state, so the master learns a task ended while an
//! earlier update still waits.

use keel_message::Upid;
use keel_proto::ids::{ExecutorId, FrameworkId, TaskId, UpdateId};
use keel_proto::messages::common::{StatusUpdate, StatusUpdateAcknowledgement};
use keel_proto::task::{StatusSource, TaskState, TaskStatus};

use super::state::{ExecutorKind, TaskEntry};
use super::{Agent, Connection, Out, Timer};

/// How many executor update ids a task remembers to recognise resends.
const SEEN_UPDATES: usize = 16;

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
        out: &mut Out,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        mut status: TaskStatus,
    ) {
        let agent_id = self.agent_id.clone();
        let agent_pid = self.config.upid.clone();
        let uuid = status.uuid.clone().unwrap_or_else(|| UpdateId::from_rng(&mut self.rng));
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let shutting_down = framework.shutting_down;
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
                self.maybe_remove_executor(out, framework_id, executor_id);
            }
            return;
        }
        status.uuid = Some(uuid.clone());
        status.agent_id = agent_id.clone();
        status.executor_id = Some(executor_id.clone());
        if status.message.is_none() && status.state == TaskState::Running {
            status.message = Some(format!("sandbox: {sandbox}"));
        }
        let update = StatusUpdate {
            framework_id: framework_id.clone(),
            executor_id: Some(executor_id.clone()),
            agent_id,
            latest_state: Some(task.state),
            status,
            uuid,
            agent_pid: Some(agent_pid),
        };
        task.stream.pending.push_back(update);
        let first = task.stream.pending.len() == 1;
        self.metrics.status_updates += 1;
        // Durable before anyone is told.
        self.checkpoint_task(out, framework_id, executor_id, &task_id);
        if first {
            self.send_head(out, framework_id, executor_id, &task_id);
        }
    }

    /// Sends the head of a task's stream (when registered) and arms its retry.
    fn send_head(
        &mut self,
        out: &mut Out,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        task_id: &TaskId,
    ) {
        let registered = self.connection == Connection::Registered;
        let master = self.config.master.clone();
        let initial = self.config.status_update_retry;
        let Some(task) = self.task_mut(framework_id, executor_id, task_id) else { return };
        let latest = task.state;
        let Some(mut head) = task.stream.pending.front().cloned() else { return };
        if task.stream.backoff.is_zero() {
            task.stream.backoff = initial;
        }
        let old_timer = task.stream.timer.take();
        let backoff = task.stream.backoff;
        if let Some(timer) = old_timer {
            self.cancel_timer(out, timer);
        }
        if !registered {
            // Sent when the agent (re)registers.
            return;
        }
        head.latest_state = Some(latest);
        let retry = Timer::RetryUpdate {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            task_id: task_id.clone(),
            uuid: head.uuid.clone(),
        };
        out.send(&master, head);
        let timer = self.set_timer(out, backoff, retry);
        if let Some(task) = self.task_mut(framework_id, executor_id, task_id) {
            task.stream.timer = Some(timer);
        }
    }

    /// Resends every stream's head (after registration).
    pub(super) fn flush_streams(&mut self, out: &mut Out) {
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
            self.send_head(out, &framework_id, &executor_id, &task_id);
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

    pub(super) fn retry_update(
        &mut self,
        out: &mut Out,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        task_id: &TaskId,
        uuid: &UpdateId,
    ) {
        let max = self.config.status_update_retry_max;
        let Some(task) = self.task_mut(framework_id, executor_id, task_id) else { return };
        task.stream.timer = None;
        if task.stream.pending.front().map(|u| &u.uuid) != Some(uuid) {
            return;
        }
        task.stream.backoff = (task.stream.backoff * 2).min(max);
        self.metrics.status_update_retries += 1;
        self.send_head(out, framework_id, executor_id, task_id);
    }

    pub(super) fn acknowledged(&mut self, out: &mut Out, ack: StatusUpdateAcknowledgement) {
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
        let timer = task.stream.timer.take();
        let done = task.stream.pending.is_empty() && task.state.is_terminal();
        let more = !task.stream.pending.is_empty();
        if let Some(timer) = timer {
            self.cancel_timer(out, timer);
        }
        if more {
            self.checkpoint_task(out, &ack.framework_id, &executor_id, &ack.task_id);
            self.send_head(out, &ack.framework_id, &executor_id, &ack.task_id);
        } else if done {
            if let Some(executor) =
                self.frameworks.get_mut(&ack.framework_id).and_then(|f| f.executors.get_mut(&executor_id))
            {
                executor.tasks.remove(&ack.task_id);
            }
            self.maybe_remove_executor(out, &ack.framework_id, &executor_id);
        } else {
            self.checkpoint_task(out, &ack.framework_id, &executor_id, &ack.task_id);
        }
    }

    /// An update from a custom executor: acknowledged to it at once (the agent now
    /// owns its delivery), queued once however often the executor resends it.
    pub(super) fn executor_update(&mut self, out: &mut Out, from: Upid, update: StatusUpdate) {
        let Some(executor_id) = update.executor_id.clone() else {
            self.metrics.invalid_senders += 1;
            return;
        };
        let is_executor = self
            .frameworks
            .get(&update.framework_id)
            .and_then(|f| f.executors.get(&executor_id))
            .is_some_and(|e| matches!(&e.kind, ExecutorKind::Custom { pid: Some(pid), .. } if pid == &from));
        if !is_executor {
            self.metrics.invalid_senders += 1;
            tracing::warn!(%from, "status update from a process that is not the task's executor");
            return;
        }
        let ack = StatusUpdateAcknowledgement {
            agent_id: self.agent_id.clone().unwrap_or_default(),
            framework_id: update.framework_id.clone(),
            task_id: update.status.task_id.clone(),
            uuid: update.uuid.clone(),
        };
        // The acknowledgement follows the update's checkpoint (the effects run in
        // order): the executor forgets an update only once the agent has stored it.
        self.take_executor_update(out, &executor_id, update);
        out.send(&from, ack);
    }

    fn take_executor_update(&mut self, out: &mut Out, executor_id: &ExecutorId, update: StatusUpdate) {
        let Some(task) = self.task_mut(&update.framework_id, executor_id, &update.status.task_id) else {
            self.metrics.unknown_targets += 1;
            return;
        };
        if task.seen.contains(&update.uuid) {
            return;
        }
        task.seen.push_back(update.uuid.clone());
        if task.seen.len() > SEEN_UPDATES {
            task.seen.pop_front();
        }
        let mut status = update.status;
        status.uuid = Some(update.uuid);
        status.source = StatusSource::Executor;
        self.status_update(out, &update.framework_id, executor_id, status);
    }
}
