//! Running work: command tasks (the built-in command executor runs the task's
//! command as the container itself, one fork per task), custom executors (separate
//! processes that register back and get tasks), kills with a grace period, and
//! what happens when a container ends.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_message::Upid;
use keel_proto::ids::{ExecutorId, FrameworkId, TaskId};
use keel_proto::messages::agent::*;
use keel_proto::messages::common::*;
use keel_proto::messages::executor::*;
use keel_proto::resources::Resources;
use keel_proto::task::{
    CommandInfo, ExecutorInfo, StatusSource, TaskInfo, TaskReason, TaskState, TaskStatus,
};

use super::container::{Command, ContainerId, ContainerSpec, ExitStatus, Limits, Termination};
use super::state::{ExecutorEntry, ExecutorKind, FrameworkEntry, TaskEntry};
use super::{Agent, Checkpoint, Effect, Out, Timer};

/// SIGTERM's number.
const SIGTERM: i32 = 15;

/// What a custom executor that names no resources of its own is given on top of its
/// tasks' (Mesos's default executor overhead: 0.1 cpus, 32 MB).
const EXECUTOR_OVERHEAD: &str = "cpus:0.1;mem:32";

/// The container limits of a custom executor: its own resources (or the default
/// overhead) plus its live tasks'.
fn executor_limits(info: &ExecutorInfo, tasks: impl Iterator<Item = Resources>) -> Limits {
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

fn command_of(command: &CommandInfo) -> Command {
    if command.shell {
        Command::Shell(command.value.clone())
    } else {
        Command::Exec { program: command.value.clone(), args: command.arguments.clone() }
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
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        sandbox: &std::path::Path,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("KEEL_AGENT_PID".into(), self.config.upid.to_string());
        env.insert("KEEL_AGENT_ID".into(), self.agent_id.as_ref().map(|a| a.to_string()).unwrap_or_default());
        env.insert("KEEL_FRAMEWORK_ID".into(), framework_id.to_string());
        env.insert("KEEL_EXECUTOR_ID".into(), executor_id.to_string());
        env.insert("KEEL_SANDBOX".into(), sandbox.display().to_string());
        env.insert("MESOS_SANDBOX".into(), sandbox.display().to_string());
        // Mesos's executor environment, which Mesos executor libraries read (the
        // v1 executor API is served on the agent's own port).
        let checkpoint = self.frameworks.get(framework_id).is_some_and(|f| f.info.checkpoint);
        let agent_id = self.agent_id.as_ref().map(|a| a.to_string()).unwrap_or_default();
        env.insert("MESOS_FRAMEWORK_ID".into(), framework_id.to_string());
        env.insert("MESOS_EXECUTOR_ID".into(), executor_id.to_string());
        env.insert("MESOS_AGENT_ENDPOINT".into(), self.config.upid.node().to_string());
        env.insert("MESOS_DIRECTORY".into(), sandbox.display().to_string());
        env.insert("MESOS_SLAVE_ID".into(), agent_id);
        env.insert("MESOS_SLAVE_PID".into(), self.config.upid.to_string());
        env.insert("MESOS_CHECKPOINT".into(), if checkpoint { "1" } else { "0" }.into());
        env.insert("MESOS_HTTP_COMMAND_EXECUTOR".into(), "0".into());
        let grace = self.config.executor_shutdown_grace_period.as_secs_f64();
        env.insert("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(), format!("{grace}secs"));
        if checkpoint {
            env.insert("MESOS_RECOVERY_TIMEOUT".into(), "15mins".into());
            env.insert("MESOS_SUBSCRIPTION_BACKOFF_MAX".into(), "2secs".into());
        }
        env
    }

    fn new_container_id(&mut self) -> ContainerId {
        ContainerId(format!("{:016x}{:016x}", self.rng.u64(..), self.rng.u64(..)))
    }

    fn launch(
        &mut self,
        out: &mut Out,
        spec: ContainerSpec,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) {
        self.containers.insert(spec.id.clone(), (framework_id.clone(), executor_id.clone()));
        out.effects.push(Effect::Launch(spec));
    }

    pub(super) fn run_task(&mut self, out: &mut Out, m: RunTask) {
        let Some(framework_id) = m.framework.id.clone() else {
            self.metrics.unknown_targets += 1;
            return;
        };
        if self.agent_id.is_none() {
            self.metrics.unknown_targets += 1;
            return;
        }
        if self.session == 0 {
            // Not admitted by any master since this process started (a recovered
            // agent that has not reregistered yet): the launch was meant for the
            // previous process, or is too early to be trusted.
            self.metrics.stale_launches += 1;
            tracing::warn!(task_id = %m.task.task_id, "refusing a launch before this agent process was admitted");
            return;
        }
        if m.epoch < self.epoch {
            // Sent by a master before the one this agent registered with.
            self.metrics.stale_launches += 1;
            tracing::warn!(task_id = %m.task.task_id, epoch = m.epoch, current = self.epoch, "refusing a launch from an older master");
            return;
        }
        if let Some(why) = self.launch_too_late(&m) {
            self.metrics.stale_launches += 1;
            tracing::warn!(task_id = %m.task.task_id, why, "refusing a launch that may be too late");
            return;
        }
        if let Some(launch_id) = &m.launch_id {
            if !self.first_sight(launch_id) {
                // A copy of a launch already taken.
                self.metrics.stale_launches += 1;
                return;
            }
        }
        if self.dropped_launches.contains(&(framework_id.clone(), m.task.task_id.clone())) {
            // The master told the framework this launch is lost.
            self.metrics.stale_launches += 1;
            tracing::warn!(task_id = %m.task.task_id, "refusing a launch the master gave up on");
            return;
        }
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
        if self.find_task_executor(&framework_id, &m.task.task_id).is_some() {
            // A duplicate RunTask: the task is already here.
            return;
        }
        match (m.task.command.clone(), m.task.executor.clone()) {
            (Some(command), _) => self.run_command_task(out, &framework_id, m.task, command),
            (None, Some(executor)) => self.run_custom_task(out, &framework_id, m.task, executor),
            (None, None) => self.metrics.unknown_targets += 1,
        }
    }

    fn run_command_task(
        &mut self,
        out: &mut Out,
        framework_id: &FrameworkId,
        task: TaskInfo,
        command: CommandInfo,
    ) {
        let executor_id = ExecutorId(task.task_id.0.clone());
        let task_id = task.task_id.clone();
        let framework = self.frameworks.get(framework_id).expect("caller inserted it");
        if framework.executors.contains_key(&executor_id) {
            return;
        }
        let container = self.new_container_id();
        let sandbox = self.sandbox(framework_id, &executor_id, &container);
        let mut env = self.base_env(framework_id, &executor_id, &sandbox);
        env.insert("KEEL_TASK_ID".into(), task_id.to_string());
        env.extend(command.environment.clone());
        let spec = ContainerSpec {
            id: container.clone(),
            command: command_of(&command),
            env,
            sandbox: sandbox.clone(),
            user: command.user.clone(),
            limits: limits(&task.resources),
        };
        let mut tasks = BTreeMap::new();
        let entry = TaskEntry::new(task);
        tasks.insert(task_id.clone(), entry);
        let framework = self.frameworks.get_mut(framework_id).expect("caller inserted it");
        framework.executors.insert(
            executor_id.clone(),
            ExecutorEntry {
                kind: ExecutorKind::Command,
                container: container.clone(),
                sandbox: sandbox.clone(),
                tasks,
                terminated: false,
                shutting_down: false,
            },
        );
        self.metrics.tasks_launched += 1;
        self.checkpoint_executor(out, framework_id, &executor_id);
        self.launch(out, spec, framework_id, &executor_id);
        let status = TaskStatus::new(task_id, TaskState::Running, StatusSource::Executor).at(self.now);
        self.status_update(out, framework_id, &executor_id, status);
    }

    fn run_custom_task(
        &mut self,
        out: &mut Out,
        framework_id: &FrameworkId,
        task: TaskInfo,
        info: ExecutorInfo,
    ) {
        let executor_id = info.executor_id.clone();
        let task_id = task.task_id.clone();
        let entry = TaskEntry::new(task.clone());
        self.metrics.tasks_launched += 1;
        let now = self.now;
        let framework = self.frameworks.get_mut(framework_id).expect("caller inserted it");
        if let Some(executor) = framework.executors.get_mut(&executor_id) {
            if executor.terminated || executor.shutting_down {
                executor.tasks.insert(task_id.clone(), entry);
                let status = TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                    .at(now)
                    .with_reason(TaskReason::ExecutorTerminated)
                    .with_message("the executor is terminating");
                self.status_update(out, framework_id, &executor_id, status);
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
                let limits = executor_limits(info, live);
                out.effects.push(Effect::Update { container: executor.container.clone(), limits });
            }
            match &mut executor.kind {
                ExecutorKind::Custom { pid: Some(pid), .. } => {
                    let pid = pid.clone();
                    out.send(&pid, LaunchTask { framework_id: framework_id.clone(), task });
                }
                ExecutorKind::Custom { queued, .. } => queued.push(task),
                ExecutorKind::Command => {}
            }
            self.checkpoint_task(out, framework_id, &executor_id, &task_id);
            return;
        }
        let container = self.new_container_id();
        let sandbox = self.sandbox(framework_id, &executor_id, &container);
        let mut env = self.base_env(framework_id, &executor_id, &sandbox);
        env.extend(info.command.environment.clone());
        let spec = ContainerSpec {
            id: container.clone(),
            command: command_of(&info.command),
            env,
            sandbox: sandbox.clone(),
            user: info.command.user.clone(),
            limits: executor_limits(&info, std::iter::once(task.resources.clone())),
        };
        let timeout = self.config.executor_registration_timeout;
        let timer =
            self.set_timer(out, timeout, Timer::ExecutorRegistration { container: container.clone() });
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
        self.checkpoint_executor(out, framework_id, &executor_id);
        self.checkpoint_task(out, framework_id, &executor_id, &task_id);
        self.launch(out, spec, framework_id, &executor_id);
    }

    /// A container could not start: its tasks fail.
    pub(super) fn launch_failed(&mut self, out: &mut Out, container: &ContainerId, message: String) {
        let Some((framework_id, executor_id)) = self.containers.remove(container) else { return };
        self.metrics.container_launch_errors += 1;
        let now = self.now;
        let Some(executor) =
            self.frameworks.get_mut(&framework_id).and_then(|f| f.executors.get_mut(&executor_id))
        else {
            return;
        };
        executor.terminated = true;
        let what = match executor.kind {
            ExecutorKind::Command => "the task's container",
            ExecutorKind::Custom { .. } => "the executor",
        };
        if let ExecutorKind::Custom { registration_timer: Some(timer), .. } = &mut executor.kind {
            let timer = *timer;
            self.timers.cancel(timer);
        }
        let live: Vec<TaskId> =
            executor.tasks.iter().filter(|(_, t)| !t.state.is_terminal()).map(|(id, _)| id.clone()).collect();
        for task_id in live {
            let status = TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                .at(now)
                .with_reason(TaskReason::ContainerLaunchFailed)
                .with_message(format!("cannot launch {what}: {message}"));
            self.status_update(out, &framework_id, &executor_id, status);
        }
        self.maybe_remove_executor(out, &framework_id, &executor_id);
    }

    /// A container's main process ended: finish its tasks accordingly.
    pub(super) fn container_terminated(
        &mut self,
        out: &mut Out,
        container: &ContainerId,
        termination: Termination,
    ) {
        let Some((framework_id, executor_id)) = self.containers.remove(container) else { return };
        out.effects.push(Effect::Destroy(container.clone()));
        let now = self.now;
        let Some(executor) =
            self.frameworks.get_mut(&framework_id).and_then(|f| f.executors.get_mut(&executor_id))
        else {
            return;
        };
        executor.terminated = true;
        let live: Vec<(TaskId, bool)> = executor
            .tasks
            .iter()
            .filter(|(_, t)| !t.state.is_terminal())
            .map(|(id, t)| (id.clone(), t.kill_requested))
            .collect();
        let is_command = matches!(executor.kind, ExecutorKind::Command);
        let mut cancel = None;
        if let ExecutorKind::Custom { registration_timer, .. } = &mut executor.kind {
            cancel = registration_timer.take();
        }
        if let Some(timer) = cancel {
            self.cancel_timer(out, timer);
        }
        for (task_id, killed) in live {
            let status = if killed {
                TaskStatus::new(task_id, TaskState::Killed, StatusSource::Executor)
                    .with_message("killed on request")
            } else if let Some((limit_bytes, peak_bytes)) = termination.memory_limit {
                TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                    .with_reason(TaskReason::ContainerLimitationMemory)
                    .with_message(format!(
                        "container limitation: memory (limit {} MB, peak {} MB)",
                        limit_bytes / (1024 * 1024),
                        peak_bytes / (1024 * 1024)
                    ))
            } else if is_command {
                let mut status = match termination.status {
                    ExitStatus::Exited(0) => {
                        TaskStatus::new(task_id, TaskState::Finished, StatusSource::Executor)
                            .with_message("Command exited with status 0")
                    }
                    ExitStatus::Exited(code) => {
                        TaskStatus::new(task_id, TaskState::Failed, StatusSource::Executor)
                            .with_reason(TaskReason::CommandExecutorFailed)
                            .with_message(format!("Command exited with status {code}"))
                    }
                    ExitStatus::Signaled(_) => {
                        TaskStatus::new(task_id, TaskState::Failed, StatusSource::Executor)
                            .with_reason(TaskReason::CommandExecutorFailed)
                            .with_message(format!("Command {}", termination.message))
                    }
                    ExitStatus::Unknown => TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                        .with_reason(TaskReason::ExecutorTerminated)
                        .with_message(format!(
                            "the task ended while the agent was down: {}",
                            termination.message
                        )),
                };
                if termination.status != ExitStatus::Unknown {
                    status.exit_code = Some(termination.status.code());
                }
                status
            } else {
                TaskStatus::new(task_id, TaskState::Failed, StatusSource::Agent)
                    .with_reason(TaskReason::ExecutorTerminated)
                    .with_message(format!("the executor {}", termination.message))
            };
            self.status_update(out, &framework_id, &executor_id, status.at(now));
        }
        if !is_command {
            self.metrics.executors_terminated += 1;
            if let Some(agent_id) = self.agent_id.clone() {
                let master = self.config.master.clone();
                let exited = ExitedExecutor {
                    agent_id,
                    framework_id: framework_id.clone(),
                    executor_id: executor_id.clone(),
                    status: termination.status.code(),
                };
                out.send(&master, exited);
            }
        }
        self.maybe_remove_executor(out, &framework_id, &executor_id);
    }

    /// Forgets an executor once it has ended and its tasks' updates are acknowledged;
    /// forgets the framework once it has no executors.
    pub(super) fn maybe_remove_executor(
        &mut self,
        out: &mut Out,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        let done = framework.executors.get(executor_id).is_some_and(|e| e.terminated && e.tasks.is_empty());
        let checkpointed = framework.info.checkpoint;
        if done {
            framework.executors.remove(executor_id);
            if checkpointed {
                out.checkpoint(Checkpoint::RemoveExecutor {
                    framework_id: framework_id.clone(),
                    executor_id: executor_id.clone(),
                });
            }
        }
        if framework.executors.is_empty() {
            self.frameworks.remove(framework_id);
            if checkpointed {
                out.checkpoint(Checkpoint::RemoveFramework { framework_id: framework_id.clone() });
            }
        }
    }

    /// Kills one task: SIGTERM to a command task's container (destroyed after the
    /// grace period), or the kill forwarded to its custom executor.
    pub(super) fn kill_task(&mut self, out: &mut Out, framework_id: &FrameworkId, task_id: &TaskId) {
        let Some(executor_id) = self.find_task_executor(framework_id, task_id) else {
            self.metrics.unknown_targets += 1;
            tracing::debug!(task_id = %task_id, "kill for a task this agent does not have");
            return;
        };
        let grace = self.config.kill_grace_period;
        let agent_id = self.agent_id.clone();
        let now = self.now;
        let executor = self
            .frameworks
            .get_mut(framework_id)
            .and_then(|f| f.executors.get_mut(&executor_id))
            .expect("found");
        let Some(task) = executor.tasks.get_mut(task_id) else { return };
        if task.state.is_terminal() {
            return;
        }
        task.kill_requested = true;
        let container = executor.container.clone();
        let terminated = executor.terminated;
        match &mut executor.kind {
            ExecutorKind::Command => {
                if terminated {
                    return;
                }
                out.effects.push(Effect::Signal { container: container.clone(), signal: SIGTERM });
                self.set_timer(out, grace, Timer::KillEscalation { container });
            }
            ExecutorKind::Custom { pid: Some(pid), .. } => {
                let pid = pid.clone();
                out.send(
                    &pid,
                    KillTask { framework_id: framework_id.clone(), task_id: task_id.clone(), agent_id },
                );
            }
            ExecutorKind::Custom { queued, .. } => {
                queued.retain(|t| &t.task_id != task_id);
                let status = TaskStatus::new(task_id.clone(), TaskState::Killed, StatusSource::Agent)
                    .at(now)
                    .with_reason(TaskReason::TaskKilledDuringLaunch)
                    .with_message("killed before the executor registered");
                self.status_update(out, framework_id, &executor_id, status);
            }
        }
    }

    /// Asks an executor to shut down, destroying it after the grace period.
    pub(super) fn shutdown_executor(
        &mut self,
        out: &mut Out,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) {
        let executor_grace = self.config.executor_shutdown_grace_period;
        let kill_grace = self.config.kill_grace_period;
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
                let message =
                    ShutdownExecutor { framework_id: framework_id.clone(), executor_id: executor_id.clone() };
                out.send(&pid, message);
                self.set_timer(out, executor_grace, Timer::KillEscalation { container });
            }
            ExecutorKind::Command => {
                out.effects.push(Effect::Signal { container: container.clone(), signal: SIGTERM });
                self.set_timer(out, kill_grace, Timer::KillEscalation { container });
            }
            ExecutorKind::Custom { pid: None, .. } => out.effects.push(Effect::Destroy(container)),
        }
    }

    /// Shuts down everything a framework runs here; its updates are dropped.
    pub(super) fn shutdown_framework(&mut self, out: &mut Out, framework_id: &FrameworkId) {
        let Some(framework) = self.frameworks.get_mut(framework_id) else { return };
        framework.shutting_down = true;
        let mut timers = Vec::new();
        for executor in framework.executors.values_mut() {
            for task in executor.tasks.values_mut() {
                timers.extend(task.stream.timer.take());
                task.stream.pending.clear();
            }
            // Tasks already terminal have nothing left to deliver.
            executor.tasks.retain(|_, t| !t.state.is_terminal());
        }
        let executors: Vec<ExecutorId> = framework.executors.keys().cloned().collect();
        for timer in timers {
            self.cancel_timer(out, timer);
        }
        for executor_id in executors {
            self.shutdown_executor(out, framework_id, &executor_id);
            self.maybe_remove_executor(out, framework_id, &executor_id);
        }
        tracing::info!(framework_id = %framework_id, "shutting down the framework's executors");
    }

    /// A custom executor had to (re)register by now: its registration timer is
    /// taken when it does, so one still set means it did not.
    pub(super) fn executor_registration_timeout(&mut self, out: &mut Out, container: ContainerId) {
        let Some((framework_id, executor_id)) = self.containers.get(&container).cloned() else { return };
        let waiting = self
            .frameworks
            .get_mut(&framework_id)
            .and_then(|f| f.executors.get_mut(&executor_id))
            .and_then(|e| match &mut e.kind {
                ExecutorKind::Custom { registration_timer, .. } => registration_timer.take(),
                ExecutorKind::Command => None,
            })
            .is_some();
        if waiting {
            tracing::warn!(executor_id = %executor_id, "executor did not (re)register in time; destroying it");
            out.effects.push(Effect::Destroy(container));
        }
    }

    fn executor_of(&self, from: &Upid, framework_id: &FrameworkId, executor_id: &ExecutorId) -> bool {
        self.frameworks
            .get(framework_id)
            .and_then(|f| f.executors.get(executor_id))
            .is_some_and(|e| matches!(&e.kind, ExecutorKind::Custom { pid: Some(pid), .. } if pid == from))
    }

    pub(super) fn checkpoint_executor(
        &self,
        out: &mut Out,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
    ) {
        let Some(framework) = self.frameworks.get(framework_id).filter(|f| f.info.checkpoint) else { return };
        out.checkpoint(Checkpoint::Framework {
            framework_id: framework_id.clone(),
            info: framework.info.clone(),
            scheduler: framework.scheduler.clone(),
        });
        let Some(executor) = framework.executors.get(executor_id) else { return };
        let (info, pid) = match &executor.kind {
            ExecutorKind::Custom { info, pid, .. } => (Some(info.clone()), pid.clone()),
            ExecutorKind::Command => (None, None),
        };
        out.checkpoint(Checkpoint::Executor {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            info,
            pid,
            container: executor.container.clone(),
            sandbox: executor.sandbox.clone(),
        });
    }

    pub(super) fn checkpoint_task(
        &self,
        out: &mut Out,
        framework_id: &FrameworkId,
        executor_id: &ExecutorId,
        task_id: &TaskId,
    ) {
        let Some(framework) = self.frameworks.get(framework_id).filter(|f| f.info.checkpoint) else { return };
        let Some(task) = framework.executors.get(executor_id).and_then(|e| e.tasks.get(task_id)) else {
            return;
        };
        out.checkpoint(Checkpoint::Task {
            framework_id: framework_id.clone(),
            executor_id: executor_id.clone(),
            info: task.info.clone(),
            state: task.state,
            pending: task.stream.pending.iter().cloned().collect(),
        });
    }

    pub(super) fn framework_to_executor(&mut self, out: &mut Out, m: FrameworkToExecutorMessage) {
        let pid =
            self.frameworks.get(&m.framework_id).and_then(|f| f.executors.get(&m.executor_id)).and_then(
                |e| match &e.kind {
                    ExecutorKind::Custom { pid, .. } => pid.clone(),
                    ExecutorKind::Command => None,
                },
            );
        match pid {
            Some(pid) => out.send(&pid, m),
            None => self.metrics.unknown_targets += 1,
        }
    }

    pub(super) fn register_executor(&mut self, out: &mut Out, from: Upid, m: RegisterExecutor) {
        let agent_id = self.agent_id.clone().unwrap_or_default();
        let hostname = self.config.info.hostname.clone();
        let shutdown =
            ShutdownExecutor { framework_id: m.framework_id.clone(), executor_id: m.executor_id.clone() };
        let Some(framework) = self.frameworks.get_mut(&m.framework_id) else {
            self.metrics.unknown_targets += 1;
            out.send(&from, shutdown);
            return;
        };
        let framework_info = framework.info.clone();
        let Some(executor) =
            framework.executors.get_mut(&m.executor_id).filter(|e| !e.terminated && !e.shutting_down)
        else {
            self.metrics.unknown_targets += 1;
            out.send(&from, shutdown);
            return;
        };
        let ExecutorKind::Custom { info, pid, queued, registration_timer } = &mut executor.kind else {
            self.metrics.invalid_senders += 1;
            return;
        };
        if pid.as_ref().is_some_and(|existing| existing != &from) {
            self.metrics.invalid_senders += 1;
            return;
        }
        let retry = pid.is_some();
        *pid = Some(from.clone());
        let timer = registration_timer.take();
        let registered =
            ExecutorRegistered { executor: info.clone(), framework: framework_info, agent_id, hostname };
        let tasks: Vec<TaskInfo> = std::mem::take(queued);
        if let Some(timer) = timer {
            self.cancel_timer(out, timer);
        }
        if !retry {
            out.effects.push(Effect::Link(from.clone()));
            // A restarted agent must know the process it waits for to reregister.
            self.checkpoint_executor(out, &m.framework_id, &m.executor_id);
        }
        out.send(&from, registered);
        for task in tasks {
            out.send(&from, LaunchTask { framework_id: m.framework_id.clone(), task });
        }
        tracing::debug!(executor_id = %m.executor_id, executor = %from, "executor registered");
    }

    /// An executor whose connection broke comes back with the updates the agent
    /// has not acknowledged; one this agent does not know is told to shut down.
    pub(super) fn reregister_executor(&mut self, out: &mut Out, from: Upid, m: ReregisterExecutor) {
        let known = self
            .frameworks
            .get(&m.framework_id)
            .and_then(|f| f.executors.get(&m.executor_id))
            .filter(|e| !e.terminated && !e.shutting_down)
            .is_some_and(|e| matches!(&e.kind, ExecutorKind::Custom { pid: Some(pid), .. } if pid == &from));
        if !known {
            self.metrics.unknown_targets += 1;
            out.send(&from, ShutdownExecutor { framework_id: m.framework_id, executor_id: m.executor_id });
            return;
        }
        let timer = self
            .frameworks
            .get_mut(&m.framework_id)
            .and_then(|f| f.executors.get_mut(&m.executor_id))
            .and_then(|e| match &mut e.kind {
                ExecutorKind::Custom { registration_timer, .. } => registration_timer.take(),
                ExecutorKind::Command => None,
            });
        if let Some(timer) = timer {
            // A recovered executor is back.
            self.cancel_timer(out, timer);
            tracing::info!(executor_id = %m.executor_id, executor = %from, "executor reregistered");
        }
        out.effects.push(Effect::Link(from.clone()));
        let agent_id = self.agent_id.clone().unwrap_or_default();
        out.send(&from, ExecutorReregistered { agent_id });
        for update in m.updates.into_iter().take(10_000) {
            self.executor_update(out, from.clone(), update);
        }
    }

    pub(super) fn executor_to_framework(
        &mut self,
        out: &mut Out,
        from: Upid,
        mut m: ExecutorToFrameworkMessage,
    ) {
        if !self.executor_of(&from, &m.framework_id, &m.executor_id) {
            self.metrics.invalid_senders += 1;
            return;
        }
        if let Some(agent_id) = self.agent_id.clone() {
            m.agent_id = agent_id;
            let master = self.config.master.clone();
            out.send(&master, m);
        }
    }
}
