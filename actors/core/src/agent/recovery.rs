//! Agent recovery: a restarted agent process (same work dir) takes back what the
//! previous one checkpointed: its id, frameworks, executors, tasks and their
//! unacknowledged status updates. The shell reads the checkpoints and asks the
//! containerizer which containers still run; the core rebuilds its state from that
//! ([`Input::Recover`](super::Input::Recover)) and reregisters with the master,
//! reporting the recovered tasks. Every recovered container then ends through
//! `Input::ContainerExited` as usual: at once for one that ended while the agent
//! was down (with its recorded exit status, or an unknown one), later for one that
//! still runs. Custom executors reregister within `executor_reregistration_timeout`
//! or are destroyed.
//!
//! Only frameworks with `checkpoint: true` are checkpointed, so only their work is
//! recovered (as in Mesos); the shell destroys every other container it finds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_message::Upid;
use keel_proto::ids::ExecutorId;
use keel_proto::messages::common::StatusUpdate;
use keel_proto::resources::Resources;
use keel_proto::task::{AgentInfo, ExecutorInfo, FrameworkInfo, TaskInfo, TaskState};

use super::container::ContainerId;
use super::state::{ExecutorEntry, ExecutorKind, FrameworkEntry, Stream, TaskEntry};
use super::{Agent, Connection, Out, Timer};

/// What a previous agent process left, as the shell read it from its checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredAgent {
    /// The agent as it registered, with its id.
    pub info: AgentInfo,
    /// Its total with dynamic reservations, if it was ever changed.
    pub resources: Option<Resources>,
    /// Frameworks with work here.
    pub frameworks: Vec<RecoveredFramework>,
}

/// A checkpointed framework.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredFramework {
    /// Its description, with its id.
    pub info: FrameworkInfo,
    /// Its scheduler.
    pub scheduler: Upid,
    /// Its executors here.
    pub executors: Vec<RecoveredExecutor>,
}

/// A checkpointed executor.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredExecutor {
    /// Its id.
    pub executor_id: ExecutorId,
    /// Its description (custom executors; `None` for a command task's).
    pub info: Option<ExecutorInfo>,
    /// A custom executor's process, if it had registered.
    pub pid: Option<Upid>,
    /// Its container.
    pub container: ContainerId,
    /// Its sandbox.
    pub sandbox: PathBuf,
    /// Its tasks.
    pub tasks: Vec<RecoveredTask>,
}

/// A checkpointed task.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredTask {
    /// Its description.
    pub info: TaskInfo,
    /// Its latest state.
    pub state: TaskState,
    /// Its updates not yet acknowledged, oldest first.
    pub pending: Vec<StatusUpdate>,
}

/// Why a checkpointed agent cannot be taken back as it is.
pub fn incompatible(recovered: &AgentInfo, configured: &AgentInfo) -> Option<String> {
    if recovered.id.is_none() {
        return Some("the checkpointed agent has no id".into());
    }
    if recovered.hostname != configured.hostname {
        return Some(format!(
            "the hostname changed from {:?} to {:?}",
            recovered.hostname, configured.hostname
        ));
    }
    let (was, is) = (recovered.resources.without_reservations(), configured.resources.without_reservations());
    if !(was.contains(&is) && is.contains(&was)) {
        return Some(format!("the resources changed from {was} to {is}"));
    }
    if recovered.attributes != configured.attributes {
        return Some("the attributes changed".into());
    }
    None
}

impl Agent {
    /// Takes back a previous agent process's state and reregisters.
    pub(super) fn recover(&mut self, out: &mut Out, recovered: RecoveredAgent) {
        let RecoveredAgent { info, resources, frameworks } = recovered;
        self.agent_id = info.id.clone();
        if let Some(total) = resources {
            self.config.info.resources = total;
        }
        let mut tasks_recovered = 0usize;
        for framework in frameworks {
            let Some(framework_id) = framework.info.id.clone() else { continue };
            let mut executors = BTreeMap::new();
            for executor in framework.executors {
                let (entry, tasks) = self.recovered_executor(out, executor.clone());
                tasks_recovered += tasks;
                self.containers
                    .insert(entry.container.clone(), (framework_id.clone(), executor.executor_id.clone()));
                executors.insert(executor.executor_id, entry);
            }
            if executors.is_empty() {
                continue;
            }
            let entry = FrameworkEntry {
                info: framework.info,
                scheduler: framework.scheduler,
                executors,
                shutting_down: false,
            };
            self.frameworks.insert(framework_id, entry);
        }
        tracing::info!(
            agent_id = ?self.agent_id,
            frameworks = self.frameworks.len(),
            executors = self.containers.len(),
            tasks = tasks_recovered,
            "agent recovered its checkpoints; reregistering"
        );
        if self.agent_id.is_some() {
            self.connection = Connection::Reregistering;
        }
        self.register(out);
    }

    fn recovered_executor(&mut self, out: &mut Out, executor: RecoveredExecutor) -> (ExecutorEntry, usize) {
        let mut tasks = BTreeMap::new();
        for task in executor.tasks {
            // A terminal task whose last update was acknowledged is done with.
            if task.state.is_terminal() && task.pending.is_empty() {
                continue;
            }
            let mut entry = TaskEntry::new(task.info);
            entry.state = task.state;
            entry.seen = task.pending.iter().map(|u| u.uuid.clone()).collect();
            entry.stream = Stream { pending: task.pending.into_iter().collect(), ..Stream::default() };
            tasks.insert(entry.info.task_id.clone(), entry);
        }
        let count = tasks.len();
        let kind = match executor.info {
            None => ExecutorKind::Command,
            Some(info) => {
                // It reregisters (or, if it never registered, registers) in time or goes.
                let timeout = self.config.executor_reregistration_timeout;
                let timer = self.set_timer(
                    out,
                    timeout,
                    Timer::ExecutorRegistration { container: executor.container.clone() },
                );
                ExecutorKind::Custom {
                    info,
                    pid: executor.pid,
                    queued: Vec::new(),
                    registration_timer: Some(timer),
                }
            }
        };
        let entry = ExecutorEntry {
            kind,
            container: executor.container,
            sandbox: executor.sandbox,
            tasks,
            terminated: false,
            shutting_down: false,
        };
        (entry, count)
    }
}
