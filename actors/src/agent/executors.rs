//! Running work: command tasks (the built-in command executor runs the task's
//! command as the container itself, one fork per task), custom executors (separate
//! processes that register back and get tasks), kills with a grace period, and
//! what happens when a container ends.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_isolation::{
    ContainerConfig, ContainerId, ExitStatusKind, LaunchCommand, Limitation, Limits, Termination,
};
use keel_kernel::{Handle, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

use super::{checkpoint, Agent, ExecutorEntry, ExecutorKind, FrameworkEntry, TaskEntry};
use crate::ids::{ExecutorId, FrameworkId, TaskId};
use crate::messages::agent::*;
use crate::messages::common::*;
use crate::messages::executor::*;
use crate::resources::Resources;
use crate::task::{CommandInfo, StatusSource, TaskInfo, TaskReason, TaskState, TaskStatus};

/// SIGTERM's number.
const SIGTERM: i32 = 15;

/// The grace period after SIGTERM (or a shutdown request) is over: destroy.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct KillEscalation {
    container: ContainerId,
}
keel_kernel::message!(KillEscalation, "keel.agent.KillEscalation");

/// A custom executor did not register in time.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RegistrationTimeout {
    container: ContainerId,
}
keel_kernel::message!(RegistrationTimeout, "keel.agent.RegistrationTimeout");

/// What a custom executor that names no resources of its own is given on top of its
/// tasks' (Mesos's default executor overhead: 0.1 cpus, 32 MB).
const EXECUTOR_OVERHEAD: &str = "cpus:0.1;mem:32";

/// The container limits of a custom executor: its own resources (or the default
/// overhead) plus its live tasks'.
fn executor_limits(info: &crate::task::ExecutorInfo, tasks: impl Iterator<Item = Resources>) -> Limits {
    let own = if info.resources.is_empty() {
        EXECUTOR_OVERHEAD.parse().unwrap_or_default()
    } else {
        info.resources.clone()
    };
    limits(&tasks.fold(own, |total, task| total + task))
}

fn limits(resources: &Resources) -> Limits {
    let mem_mb = resources.mem_mb();
    Limits {
        cpus: resources.cpus().max(0.01),
        mem_bytes: (mem_mb > 0.0).then_some((mem_mb * 1024.0 * 1024.0) as u64),
        pids: None,
    }
}

fn launch_command(command: &CommandInfo) -> LaunchCommand {
    if command.shell {
        LaunchCommand::Shell(command.value.clone())
    } else {
        LaunchCommand::Exec { program: command.value.clone(), args: command.arguments.clone() }
    }
}

impl Agent {
    fn sandbox(
        &self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        container: &ContainerId,
    ) -> PathBuf {
        self.config
            .work_dir
            .join("frameworks")
            .join(framework_id.as_str())
            .join("executors")
            .join(executor_id.as_str())
            .join("runs")
            .join(&container.0)
    }

    fn base_env(
        &self,
        ctx: &ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        sandbox: &std::path::Path,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("KEEL_AGENT_PID".into(), ctx.upid().to_string());
        env.insert("KEEL_AGENT_ID".into(), self.agent_id.as_ref().map(|a| a.to_string()).unwrap_or_default());
        env.insert("KEEL_FRAMEWORK_ID".into(), framework_id.to_string());
        env.insert("KEEL_EXECUTOR_ID".into(), executor_id.to_string());
        env.insert("KEEL_SANDBOX".into(), sandbox.display().to_string());
        env.insert("MESOS_SANDBOX".into(), sandbox.display().to_string());
        env
    }

    /// Launches a container and watches for its end.
    fn launch(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        config: ContainerConfig,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) -> Result<(), String> {
        let container = config.id.clone();
        self.config.containerizer.launch(config).map_err(|e| {
            self.metrics.container_launch_errors += 1;
            e.to_string()
        })?;
        self.containers.insert(container.clone(), (framework_id.clone(), executor_id.clone()));
        let wait = self.config.containerizer.wait(&container);
        ctx.spawn(wait, move |agent, ctx, result| agent.container_terminated(ctx, &container, result));
        Ok(())
    }

    fn new_container_id() -> ContainerId {
        ContainerId(format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)))
    }

    fn run_command_task(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        task: TaskInfo,
        command: CommandInfo,
    ) {
        let executor_id = ExecutorId(task.task_id.0.clone());
        let task_id = task.task_id.clone();
        let framework = self.frameworks.get_mut(framework_id).expect("caller inserted it");
        if framework.executors.contains_key(&executor_id) {
            // A duplicate RunTask (the master retried): the task is already here.
            return;
        }
        let container = Self::new_container_id();
        let sandbox = self.sandbox(framework_id, &executor_id, &container);
        let mut env = self.base_env(ctx, framework_id, &executor_id, &sandbox);
        env.insert("KEEL_TASK_ID".into(), task_id.to_string());
        env.extend(command.environment.clone());
        let config = ContainerConfig {
            id: container.clone(),
            command: launch_command(&command),
            env,
            sandbox: sandbox.clone(),
            user: command.user.clone(),
            limits: limits(&task.resources),
        };
        let framework = self.frameworks.get_mut(framework_id).expect("caller inserted it");
        let mut tasks = BTreeMap::new();
        tasks.insert(
            task_id.clone(),
            TaskEntry {
                info: task,
                state: TaskState::Staging,
                stream: Default::default(),
                kill_requested: false,
            },
        );
        framework.executors.insert(
            executor_id.clone(),
            ExecutorEntry {
                kind: ExecutorKind::Command,
                container: container.clone(),
                sandbox,
                tasks,
                terminated: false,
                shutting_down: false,
            },
        );
        self.metrics.tasks_launched += 1;
        match self.launch(ctx, config, framework_id, &executor_id) {
            Ok(()) => {
                let status = TaskStatus::new(task_id, TaskState::Running, StatusSource::Executor);
                self.status_update(ctx, framework_id, &executor_id, status);
                self.checkpoint_executor(framework_id, &executor_id);
            }
            Err(message) => {
                if let Some(executor) =
                    self.frameworks.get_mut(framework_id).and_then(|f| f.executors.get_mut(&executor_id))
                {
                    executor.terminated = true;
                }
                let status = TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                    .with_reason(TaskReason::ContainerLaunchFailed)
                    .with_message(format!("cannot launch the task's container: {message}"));
                self.status_update(ctx, framework_id, &executor_id, status);
            }
        }
    }

    fn run_custom_task(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        task: TaskInfo,
        info: crate::task::ExecutorInfo,
    ) {
        let executor_id = info.executor_id.clone();
        let task_id = task.task_id.clone();
        let entry = TaskEntry {
            info: task.clone(),
            state: TaskState::Staging,
            stream: Default::default(),
            kill_requested: false,
        };
        let framework = self.frameworks.get_mut(framework_id).expect("caller inserted it");
        self.metrics.tasks_launched += 1;
        if let Some(executor) = framework.executors.get_mut(&executor_id) {
            if executor.terminated || executor.shutting_down {
                executor.tasks.insert(task_id.clone(), entry);
                let status = TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                    .with_reason(TaskReason::ExecutorTerminated)
                    .with_message("the executor is terminating");
                self.status_update(ctx, framework_id, &executor_id, status);
                return;
            }
            if executor.tasks.contains_key(&task_id) {
                return;
            }
            executor.tasks.insert(task_id.clone(), entry);
            // The container grows with the executor's tasks.
            if let ExecutorKind::Custom { info, .. } = &executor.kind {
                let live = executor
                    .tasks
                    .values()
                    .filter(|t| !t.state.is_terminal())
                    .map(|t| t.info.resources.clone());
                let new_limits = executor_limits(info, live);
                if let Err(e) = self.config.containerizer.update(&executor.container, new_limits) {
                    tracing::warn!(executor_id = %executor_id, error = %e, "cannot update the executor's limits");
                }
            }
            match &mut executor.kind {
                ExecutorKind::Custom { pid: Some(pid), .. } => {
                    let pid = pid.clone();
                    ctx.send(&pid, LaunchTask { framework_id: framework_id.clone(), task });
                }
                ExecutorKind::Custom { queued, .. } => queued.push(task),
                ExecutorKind::Command => {}
            }
            return;
        }
        let container = Self::new_container_id();
        let sandbox = self.sandbox(framework_id, &executor_id, &container);
        let mut env = self.base_env(ctx, framework_id, &executor_id, &sandbox);
        env.extend(info.command.environment.clone());
        let config = ContainerConfig {
            id: container.clone(),
            command: launch_command(&info.command),
            env,
            sandbox: sandbox.clone(),
            user: info.command.user.clone(),
            limits: executor_limits(&info, std::iter::once(task.resources.clone())),
        };
        let timer = ctx.delay(
            self.config.executor_registration_timeout,
            RegistrationTimeout { container: container.clone() },
        );
        let mut tasks = BTreeMap::new();
        tasks.insert(task_id.clone(), entry);
        let framework = self.frameworks.get_mut(framework_id).expect("caller inserted it");
        framework.executors.insert(
            executor_id.clone(),
            ExecutorEntry {
                kind: ExecutorKind::Custom {
                    info,
                    pid: None,
                    queued: vec![task],
                    registration_timer: Some(timer),
                },
                container,
                sandbox,
                tasks,
                terminated: false,
                shutting_down: false,
            },
        );
        if let Err(message) = self.launch(ctx, config, framework_id, &executor_id) {
            if let Some(executor) =
                self.frameworks.get_mut(framework_id).and_then(|f| f.executors.get_mut(&executor_id))
            {
                executor.terminated = true;
            }
            let status = TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                .with_reason(TaskReason::ContainerLaunchFailed)
                .with_message(format!("cannot launch the executor: {message}"));
            self.status_update(ctx, framework_id, &executor_id, status);
            return;
        }
        self.checkpoint_executor(framework_id, &executor_id);
    }

    /// A container's main process ended: finish its tasks accordingly.
    fn container_terminated(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        container: &ContainerId,
        result: Result<Termination, keel_isolation::IsolationError>,
    ) {
        let Some((framework_id, executor_id)) = self.containers.remove(container) else { return };
        let destroy = self.config.containerizer.destroy(container);
        ctx.spawn(destroy, |_, _, result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "container destroy after exit");
            }
        });
        let Some(executor) =
            self.frameworks.get_mut(&framework_id).and_then(|f| f.executors.get_mut(&executor_id))
        else {
            return;
        };
        executor.terminated = true;
        let termination = match result {
            Ok(termination) => termination,
            Err(e) => Termination {
                status: ExitStatusKind::Signaled(9),
                message: format!("lost track of the container: {e}"),
                limitation: None,
            },
        };
        let live: Vec<(TaskId, bool)> = executor
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_terminal())
            .map(|(id, t)| (id.clone(), t.kill_requested))
            .collect();
        let is_command = matches!(executor.kind, ExecutorKind::Command);
        if let ExecutorKind::Custom { registration_timer: Some(timer), .. } = &mut executor.kind {
            let timer = *timer;
            ctx.cancel(timer);
        }
        for (task_id, killed) in live {
            let status = if killed {
                TaskStatus::new(task_id, TaskState::Killed, StatusSource::Executor)
                    .with_message("killed on request")
            } else if let Some(Limitation::Memory { limit_bytes, peak_bytes }) = termination.limitation {
                TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                    .with_reason(TaskReason::ContainerLimitationMemory)
                    .with_message(format!(
                        "container limitation: memory (limit {} MB, peak {} MB)",
                        limit_bytes / (1024 * 1024),
                        peak_bytes / (1024 * 1024)
                    ))
            } else if is_command {
                match termination.status {
                    ExitStatusKind::Exited(0) => {
                        let mut status =
                            TaskStatus::new(task_id, TaskState::Finished, StatusSource::Executor)
                                .with_message("Command exited with status 0");
                        status.exit_code = Some(0);
                        status
                    }
                    ExitStatusKind::Exited(code) => {
                        let mut status = TaskStatus::new(task_id, TaskState::Failed, StatusSource::Executor)
                            .with_reason(TaskReason::CommandExecutorFailed)
                            .with_message(format!("Command exited with status {code}"));
                        status.exit_code = Some(code);
                        status
                    }
                    ExitStatusKind::Signaled(signal) => {
                        let mut status = TaskStatus::new(task_id, TaskState::Failed, StatusSource::Executor)
                            .with_reason(TaskReason::CommandExecutorFailed)
                            .with_message(format!("Command {}", termination.message));
                        status.exit_code = Some(128 + signal);
                        status
                    }
                }
            } else {
                TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                    .with_reason(TaskReason::ExecutorTerminated)
                    .with_message(format!("the executor {}", termination.message))
            };
            self.status_update(ctx, &framework_id, &executor_id, status);
        }
        if !is_command {
            self.metrics.executors_terminated += 1;
            let code = match termination.status {
                ExitStatusKind::Exited(code) => code,
                ExitStatusKind::Signaled(signal) => 128 + signal,
            };
            if let Some(agent_id) = self.agent_id.clone() {
                let master = self.master.clone();
                ctx.send(
                    &master,
                    ExitedExecutor {
                        agent_id,
                        framework_id: framework_id.clone(),
                        executor_id: executor_id.clone(),
                        status: code,
                    },
                );
            }
        }
        self.maybe_remove_executor(&framework_id, &executor_id);
    }

    /// Forgets an executor once it has ended and its tasks' updates are acknowledged;
    /// forgets the framework once it has no executors.
    pub(super) fn maybe_remove_executor(&mut self, framework_id: &FrameworkId, executor_id: &ExecutorId) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let done = framework.executors.get(executor_id).is_some_and(|e| e.terminated && e.tasks.is_empty());
        if done {
            framework.executors.remove(executor_id);
            if framework.info.checkpoint {
                checkpoint::remove(&self.checkpoints.executor_dir(framework_id, executor_id));
            }
        }
        if framework.executors.is_empty() {
            let checkpointed = framework.info.checkpoint;
            self.frameworks.remove(framework_id);
            if checkpointed {
                checkpoint::remove(&self.checkpoints.framework_dir(framework_id));
            }
        }
    }

    /// Kills one task: SIGTERM to a command task's container (SIGKILL after the grace
    /// period), or the kill forwarded to its custom executor.
    fn kill_task(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) {
        let Some(executor_id) = self.frameworks.get(framework_id).and_then(|f| {
            f.executors.iter().find(|(_, e)| e.tasks.contains_key(task_id)).map(|(id, _)| id.clone())
        }) else {
            self.metrics.unknown_targets += 1;
            tracing::debug!(task_id = %task_id, "kill for a task this agent does not have");
            return;
        };
        let grace = self.config.kill_grace_period;
        let containerizer = self.config.containerizer.clone();
        let executor = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.executors.get_mut(&executor_id))
            .expect("found above");
        let Some(task) = executor.tasks.get_mut(task_id) else { return };
        if task.state.is_terminal() {
            return;
        }
        task.kill_requested = true;
        let container = executor.container.clone();
        match &mut executor.kind {
            ExecutorKind::Command => {
                if executor.terminated {
                    return;
                }
                if let Err(e) = containerizer.signal(&container, SIGTERM) {
                    tracing::debug!(error = %e, "SIGTERM to a task's container");
                }
                ctx.delay(grace, KillEscalation { container });
            }
            ExecutorKind::Custom { pid: Some(pid), .. } => {
                let pid = pid.clone();
                ctx.send(
                    &pid,
                    KillTask {
                        framework_id: framework_id.clone(),
                        task_id: task_id.clone(),
                        agent_id: self.agent_id.clone(),
                    },
                );
            }
            ExecutorKind::Custom { queued, .. } => {
                queued.retain(|t| &t.task_id != task_id);
                let status = TaskStatus::new(task_id.clone(), TaskState::Killed, StatusSource::Agent)
                    .with_reason(TaskReason::TaskKilledDuringLaunch)
                    .with_message("killed before the executor registered");
                self.status_update(ctx, framework_id, &executor_id, status);
            }
        }
    }

    /// Asks an executor to shut down, destroying it after the grace period.
    fn shutdown_executor(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) {
        let grace = self.config.executor_shutdown_grace_period;
        let Some(executor) =
            self.frameworks.get_mut(framework_id).and_then(|f| f.executors.get_mut(executor_id))
        else {
            return;
        };
        if executor.terminated || executor.shutting_down {
            return;
        }
        executor.shutting_down = true;
        for task in executor.tasks.values_mut() {
            task.kill_requested = true;
        }
        let container = executor.container.clone();
        match &executor.kind {
            ExecutorKind::Custom { pid: Some(pid), .. } => {
                let pid = pid.clone();
                ctx.send(
                    &pid,
                    ShutdownExecutor { framework_id: framework_id.clone(), executor_id: executor_id.clone() },
                );
                ctx.delay(grace, KillEscalation { container });
            }
            ExecutorKind::Command => {
                let _ = self.config.containerizer.signal(&container, SIGTERM);
                ctx.delay(self.config.kill_grace_period, KillEscalation { container });
            }
            ExecutorKind::Custom { pid: None, .. } => {
                let destroy = self.config.containerizer.destroy(&container);
                ctx.spawn(destroy, |_, _, _| {});
            }
        }
    }

    /// Shuts down everything a framework runs here; its updates are dropped.
    pub(super) fn shutdown_framework(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        framework_id: &FrameworkId,
    ) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        framework.shutting_down = true;
        for executor in framework.executors.values_mut() {
            for task in executor.tasks.values_mut() {
                if let Some(timer) = task.stream.timer.take() {
                    ctx.cancel(timer);
                }
                task.stream.pending.clear();
            }
            // Tasks already terminal have nothing left to deliver.
            executor.tasks.retain(|_, t| !t.state.is_terminal());
        }
        let executors: Vec<ExecutorId> = framework.executors.keys().cloned().collect();
        for executor_id in executors {
            self.shutdown_executor(ctx, framework_id, &executor_id);
            self.maybe_remove_executor(framework_id, &executor_id);
        }
        tracing::info!(framework_id = %framework_id, "shutting down the framework's executors");
    }

    fn executor_of(&self, from: &Upid, framework_id: &FrameworkId, executor_id: &ExecutorId) -> bool {
        self.frameworks
            .get(framework_id)
            .and_then(|f| f.executors.get(executor_id))
            .is_some_and(|e| matches!(&e.kind, ExecutorKind::Custom { pid: Some(pid), .. } if pid == from))
    }

    pub(super) fn checkpoint_executor(&self, framework_id: &FrameworkId, executor_id: &ExecutorId) {
        let Some(framework) = self.frameworks.get(framework_id).filter(|f| f.info.checkpoint) else { return };
        let framework_record =
            serde_json::json!({ "info": framework.info, "scheduler": framework.scheduler });
        let _ = checkpoint::write_json(&self.checkpoints.framework(framework_id), &framework_record);
        let Some(executor) = framework.executors.get(executor_id) else { return };
        let info = match &executor.kind {
            ExecutorKind::Custom { info, .. } => Some(info.clone()),
            ExecutorKind::Command => None,
        };
        let record = serde_json::json!({
            "executor_id": executor_id,
            "info": info,
            "container_id": executor.container,
            "sandbox": executor.sandbox,
        });
        if let Err(e) = checkpoint::write_json(&self.checkpoints.executor(framework_id, executor_id), &record)
        {
            tracing::warn!(error = %e, "cannot checkpoint an executor");
        }
    }

    pub(super) fn checkpoint_task(
        &self,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        task_id: &TaskId,
    ) {
        let Some(task) = self
            .frameworks
            .get(framework_id)
            .and_then(|f| f.executors.get(executor_id))
            .and_then(|e| e.tasks.get(task_id))
        else {
            return;
        };
        let record = serde_json::json!({ "info": task.info, "state": task.state, "pending_updates": task.stream.pending });
        if let Err(e) =
            checkpoint::write_json(&self.checkpoints.task(framework_id, executor_id, task_id), &record)
        {
            tracing::warn!(error = %e, "cannot checkpoint a task");
        }
    }
}

impl Handle<RunTask> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: RunTask) {
        if !self.is_master(ctx, &from) {
            return;
        }
        let Some(framework_id) = m.framework.id.clone() else {
            self.metrics.unknown_targets += 1;
            return;
        };
        let framework = self.frameworks.entry(framework_id.clone()).or_insert_with(|| FrameworkEntry {
            info: m.framework.clone(),
            scheduler: m.scheduler.clone(),
            executors: BTreeMap::new(),
            shutting_down: false,
        });
        if framework.shutting_down {
            tracing::warn!(framework_id = %framework_id, "dropping a task of a framework being shut down");
            return;
        }
        framework.scheduler = m.scheduler;
        match (m.task.command.clone(), m.task.executor.clone()) {
            (Some(command), _) => self.run_command_task(ctx, &framework_id, m.task, command),
            (None, Some(executor)) => self.run_custom_task(ctx, &framework_id, m.task, executor),
            (None, None) => self.metrics.unknown_targets += 1,
        }
    }
}

impl Handle<KillTask> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: KillTask) {
        if self.is_master(ctx, &from) {
            self.kill_task(ctx, &m.framework_id, &m.task_id);
        }
    }
}

impl Handle<KillEscalation> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: KillEscalation) {
        if &from != ctx.upid() || !self.containers.contains_key(&m.container) {
            return;
        }
        tracing::debug!(container = %m.container, "grace period over: destroying the container");
        let destroy = self.config.containerizer.destroy(&m.container);
        ctx.spawn(destroy, |_, _, _| {});
    }
}

impl Handle<RegistrationTimeout> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: RegistrationTimeout) {
        if &from != ctx.upid() {
            return;
        }
        let Some((framework_id, executor_id)) = self.containers.get(&m.container).cloned() else { return };
        let registered = self
            .frameworks
            .get(&framework_id)
            .and_then(|f| f.executors.get(&executor_id))
            .is_some_and(|e| matches!(e.kind, ExecutorKind::Custom { pid: Some(_), .. }));
        if !registered {
            tracing::warn!(executor_id = %executor_id, "executor did not register in time; destroying it");
            let destroy = self.config.containerizer.destroy(&m.container);
            ctx.spawn(destroy, |_, _, _| {});
        }
    }
}

impl Handle<ShutdownFramework> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ShutdownFramework) {
        if self.is_master(ctx, &from) {
            self.shutdown_framework(ctx, &m.framework_id);
        }
    }
}

impl Handle<ShutdownExecutor> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ShutdownExecutor) {
        if self.is_master(ctx, &from) {
            self.shutdown_executor(ctx, &m.framework_id, &m.executor_id);
        }
    }
}

impl Handle<FrameworkToExecutorMessage> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: FrameworkToExecutorMessage) {
        if !self.is_master(ctx, &from) {
            return;
        }
        let pid =
            self.frameworks.get(&m.framework_id).and_then(|f| f.executors.get(&m.executor_id)).and_then(
                |e| match &e.kind {
                    ExecutorKind::Custom { pid, .. } => pid.clone(),
                    ExecutorKind::Command => None,
                },
            );
        match pid {
            Some(pid) => ctx.send(&pid, m),
            None => self.metrics.unknown_targets += 1,
        }
    }
}

impl Handle<RegisterExecutor> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: RegisterExecutor) {
        let agent_id = self.agent_id.clone().unwrap_or_default();
        let hostname = self.config.info.hostname.clone();
        let Some(framework) = self.frameworks.get_mut(&m.framework_id) else {
            self.metrics.unknown_targets += 1;
            ctx.send(&from, ShutdownExecutor { framework_id: m.framework_id, executor_id: m.executor_id });
            return;
        };
        let framework_info = framework.info.clone();
        let Some(executor) =
            framework.executors.get_mut(&m.executor_id).filter(|e| !e.terminated && !e.shutting_down)
        else {
            self.metrics.unknown_targets += 1;
            ctx.send(&from, ShutdownExecutor { framework_id: m.framework_id, executor_id: m.executor_id });
            return;
        };
        let ExecutorKind::Custom { info, pid, queued, registration_timer } = &mut executor.kind else {
            self.metrics.invalid_senders += 1;
            return;
        };
        if let Some(existing) = pid {
            if existing != &from {
                self.metrics.invalid_senders += 1;
                return;
            }
        }
        *pid = Some(from.clone());
        if let Some(timer) = registration_timer.take() {
            ctx.cancel(timer);
        }
        let registered =
            ExecutorRegistered { executor: info.clone(), framework: framework_info, agent_id, hostname };
        let tasks: Vec<TaskInfo> = std::mem::take(queued);
        ctx.link(&from);
        ctx.send(&from, registered);
        for task in tasks {
            ctx.send(&from, LaunchTask { framework_id: m.framework_id.clone(), task });
        }
        tracing::debug!(executor_id = %m.executor_id, executor = %from, "executor registered");
    }
}

impl Handle<ReregisterExecutor> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ReregisterExecutor) {
        // Reattaching to executors after an agent restart belongs to agent recovery;
        // an executor this agent does not know is told to shut down.
        if self.executor_of(&from, &m.framework_id, &m.executor_id) {
            let agent_id = self.agent_id.clone().unwrap_or_default();
            ctx.send(&from, ExecutorReregistered { agent_id });
        } else {
            self.metrics.unknown_targets += 1;
            ctx.send(&from, ShutdownExecutor { framework_id: m.framework_id, executor_id: m.executor_id });
        }
    }
}

impl Handle<StatusUpdate> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, update: StatusUpdate) {
        let Some(executor_id) = update.executor_id.clone() else {
            self.metrics.invalid_senders += 1;
            return;
        };
        if !self.executor_of(&from, &update.framework_id, &executor_id) {
            self.metrics.invalid_senders += 1;
            tracing::warn!(%from, "status update from a process that is not the task's executor");
            return;
        }
        // The executor keeps its copy until the agent has it.
        let ack = StatusUpdateAcknowledgement {
            agent_id: self.agent_id.clone().unwrap_or_default(),
            framework_id: update.framework_id.clone(),
            task_id: update.status.task_id.clone(),
            uuid: update.uuid.clone(),
        };
        ctx.send(&from, ack);
        let mut status = update.status;
        status.uuid = Some(update.uuid);
        status.source = StatusSource::Executor;
        let known = self.task_mut(&update.framework_id, &executor_id, &status.task_id).is_some();
        if !known {
            self.metrics.unknown_targets += 1;
            return;
        }
        self.status_update(ctx, &update.framework_id, &executor_id, status);
    }
}

impl Handle<ExecutorToFrameworkMessage> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, mut m: ExecutorToFrameworkMessage) {
        if !self.executor_of(&from, &m.framework_id, &m.executor_id) {
            self.metrics.invalid_senders += 1;
            return;
        }
        if let Some(agent_id) = self.agent_id.clone() {
            m.agent_id = agent_id;
            let master = self.master.clone();
            ctx.send(&master, m);
        }
    }
}
