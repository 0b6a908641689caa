//! What the agent writes under `--work-dir` so that a restarted agent recovers, from
//! the core's [`Checkpoint`] effects, and how a restarted agent reads it back:
//!
//! ```text
//! meta/agent.json                                         format, the agent's info and id
//! meta/resources.json                                     its resources with dynamic reservations
//! meta/containers/<container>.pid                         each container's main pid (every framework)
//! meta/exits/<container>                                  how it ended (the containerizer's waiter writes it)
//! meta/frameworks/<fid>/framework.json                    framework info and scheduler
//! meta/frameworks/<fid>/executors/<eid>/executor.json     executor, its process, container, sandbox
//! meta/frameworks/<fid>/executors/<eid>/tasks/<tid>.json  the task and its unacknowledged updates
//! ```
//! Only frameworks with `checkpoint: true` are checkpointed (as in Mesos). Each file
//! is written to a temporary name, fsynced, renamed and its directory fsynced, so a
//! crash leaves the old or the new version, never a torn one, and a write that
//! returned is durable. A directory is removed by renaming it out of the tree first
//! (`.gone-*`), so a crash halfway through a removal never leaves half an executor.
//!
//! [`read`] takes the tree back. Anything it cannot make whole (a file that does not
//! parse, another format, a framework without its `framework.json`) is a
//! [`CheckpointError`]: the agent then logs it, sets the tree aside
//! (`meta.broken-*`, for an operator to look at) and starts afresh under a new id.
//! It never adopts half a state.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use keel_core::agent::container::ContainerId;
use keel_core::agent::{Checkpoint, RecoveredAgent, RecoveredExecutor, RecoveredFramework, RecoveredTask};
use keel_kernel::Upid;
use keel_proto::messages::common::StatusUpdate;
use keel_proto::resources::Resources;
use keel_proto::task::{AgentInfo, ExecutorInfo, FrameworkInfo, TaskInfo, TaskState};

use crate::ids::{ExecutorId, FrameworkId, TaskId};

/// The checkpoint format this agent writes and reads.
pub const FORMAT: u32 = 1;

/// Why a checkpoint tree cannot be taken back.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file does not parse (torn, edited, or not ours).
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The tree was written by an agent of another format.
    #[error("{path} has checkpoint format {found}, this agent reads format {FORMAT}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u32,
    },
    /// Something the tree needs is not there.
    #[error("{0}")]
    Missing(String),
}

/// `meta/agent.json`.
#[derive(Debug, Serialize, Deserialize)]
struct AgentFile {
    format: u32,
    info: AgentInfo,
}

/// Only the format, to tell an old tree from a torn one.
#[derive(Debug, Deserialize)]
struct FormatOnly {
    #[serde(default)]
    format: u32,
}

/// `framework.json`.
#[derive(Debug, Serialize, Deserialize)]
struct FrameworkFile {
    info: FrameworkInfo,
    scheduler: Upid,
}

/// `executor.json`.
#[derive(Debug, Serialize, Deserialize)]
struct ExecutorFile {
    executor_id: ExecutorId,
    info: Option<ExecutorInfo>,
    #[serde(default)]
    pid: Option<Upid>,
    container_id: ContainerId,
    sandbox: PathBuf,
}

/// `tasks/<tid>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct TaskFile {
    info: TaskInfo,
    state: TaskState,
    pending_updates: Vec<StatusUpdate>,
}

/// Paths of the checkpoint tree.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    meta: PathBuf,
}

impl Checkpoints {
    /// The checkpoint tree under `work_dir`.
    pub fn new(work_dir: &Path) -> Checkpoints {
        Checkpoints { meta: work_dir.join("meta") }
    }

    /// `meta/`.
    pub fn meta(&self) -> &Path {
        &self.meta
    }

    /// `meta/agent.json`.
    pub fn agent(&self) -> PathBuf {
        self.meta.join("agent.json")
    }

    /// `meta/resources.json`: the total with dynamic reservations.
    pub fn resources(&self) -> PathBuf {
        self.meta.join("resources.json")
    }

    /// `meta/exits/`: the containerizer's own record of how containers ended (their
    /// waiters write it), which outlives the agent process.
    pub fn exits_dir(&self) -> PathBuf {
        self.meta.join("exits")
    }

    /// `meta/containers/`.
    pub fn containers_dir(&self) -> PathBuf {
        self.meta.join("containers")
    }

    /// `meta/containers/<container>.pid`.
    pub fn container_pid(&self, container: &ContainerId) -> PathBuf {
        self.containers_dir().join(format!("{}.pid", container.0))
    }

    /// `meta/frameworks/`.
    fn frameworks_dir(&self) -> PathBuf {
        self.meta.join("frameworks")
    }

    /// A framework's directory.
    pub fn framework_dir(&self, framework_id: &FrameworkId) -> PathBuf {
        self.frameworks_dir().join(framework_id.as_str())
    }

    /// `framework.json`.
    pub fn framework(&self, framework_id: &FrameworkId) -> PathBuf {
        self.framework_dir(framework_id).join("framework.json")
    }

    /// An executor's directory.
    pub fn executor_dir(&self, framework_id: &FrameworkId, executor_id: &ExecutorId) -> PathBuf {
        self.framework_dir(framework_id).join("executors").join(executor_id.as_str())
    }

    /// `executor.json`.
    pub fn executor(&self, framework_id: &FrameworkId, executor_id: &ExecutorId) -> PathBuf {
        self.executor_dir(framework_id, executor_id).join("executor.json")
    }

    /// `tasks/<tid>.json`.
    pub fn task(&self, framework_id: &FrameworkId, executor_id: &ExecutorId, task_id: &TaskId) -> PathBuf {
        self.executor_dir(framework_id, executor_id).join("tasks").join(format!("{}.json", task_id.as_str()))
    }
}

impl Checkpoints {
    /// Makes one of the agent core's checkpoints durable.
    pub fn write(&self, checkpoint: &Checkpoint) -> std::io::Result<()> {
        match checkpoint {
            Checkpoint::Agent(info) => {
                write_json(&self.agent(), &AgentFile { format: FORMAT, info: info.clone() })
            }
            Checkpoint::Resources(total) => write_json(&self.resources(), total),
            Checkpoint::Framework { framework_id, info, scheduler } => write_json(
                &self.framework(framework_id),
                &FrameworkFile { info: info.clone(), scheduler: scheduler.clone() },
            ),
            Checkpoint::Executor { framework_id, executor_id, info, pid, container, sandbox } => write_json(
                &self.executor(framework_id, executor_id),
                &ExecutorFile {
                    executor_id: executor_id.clone(),
                    info: info.clone(),
                    pid: pid.clone(),
                    container_id: container.clone(),
                    sandbox: sandbox.clone(),
                },
            ),
            Checkpoint::Task { framework_id, executor_id, info, state, pending } => write_json(
                &self.task(framework_id, executor_id, &info.task_id),
                &TaskFile { info: info.clone(), state: *state, pending_updates: pending.clone() },
            ),
            Checkpoint::RemoveExecutor { framework_id, executor_id } => {
                remove(&self.executor_dir(framework_id, executor_id))
            }
            Checkpoint::RemoveFramework { framework_id } => remove(&self.framework_dir(framework_id)),
            Checkpoint::Clear => remove(&self.meta),
        }
    }

    /// Remembers a container's main pid, so a restarted agent can find (and recover
    /// or destroy) it. Not fsynced: it only matters while the machine stays up.
    pub fn write_container_pid(&self, container: &ContainerId, pid: u32) -> std::io::Result<()> {
        let directory = self.containers_dir();
        std::fs::create_dir_all(&directory)?;
        std::fs::write(self.container_pid(container), pid.to_string())
    }

    /// Forgets a destroyed container's pid.
    pub fn remove_container_pid(&self, container: &ContainerId) {
        let path = self.container_pid(container);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a container's pid file");
            }
        }
    }

    /// Every container a previous agent process launched and did not destroy, with
    /// its main pid (unreadable pid files are skipped with a warning).
    pub fn container_pids(&self) -> Vec<(ContainerId, u32)> {
        let Ok(entries) = std::fs::read_dir(self.containers_dir()) else { return Vec::new() };
        let mut pids = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".pid"))
            else {
                continue;
            };
            match std::fs::read_to_string(&path).ok().and_then(|text| text.trim().parse::<u32>().ok()) {
                Some(pid) => pids.push((ContainerId(id.to_string()), pid)),
                None => tracing::warn!(path = %path.display(), "ignoring an unreadable container pid file"),
            }
        }
        pids.sort();
        pids
    }

    /// Reads back what a previous agent process checkpointed: `Ok(None)` when it
    /// never registered (no `agent.json`, nothing else either).
    pub fn read(&self) -> Result<Option<RecoveredAgent>, CheckpointError> {
        let agent_path = self.agent();
        if !agent_path.exists() {
            if self.frameworks_dir().exists() {
                return Err(CheckpointError::Missing(format!(
                    "{} is missing but {} is not",
                    agent_path.display(),
                    self.frameworks_dir().display()
                )));
            }
            return Ok(None);
        }
        let format: FormatOnly = read_json(&agent_path)?;
        if format.format != FORMAT {
            return Err(CheckpointError::Format { path: agent_path, found: format.format });
        }
        let agent: AgentFile = read_json(&agent_path)?;
        let resources =
            if self.resources().exists() { Some(read_json::<Resources>(&self.resources())?) } else { None };
        let mut frameworks = Vec::new();
        for framework_dir in subdirectories(&self.frameworks_dir())? {
            let path = framework_dir.join("framework.json");
            if !path.exists() {
                return Err(CheckpointError::Missing(format!("{} is missing", path.display())));
            }
            let framework: FrameworkFile = read_json(&path)?;
            let mut info = framework.info;
            let dir_id = name_of(&framework_dir);
            match &info.id {
                Some(id) if id.as_str() == dir_id => {}
                None => info.id = Some(FrameworkId(dir_id.to_string())),
                Some(id) => {
                    return Err(CheckpointError::Corrupt {
                        path,
                        reason: format!("framework {id} in the directory of {dir_id}"),
                    })
                }
            }
            let mut executors = Vec::new();
            for executor_dir in subdirectories(&framework_dir.join("executors"))? {
                executors.push(read_executor(&executor_dir)?);
            }
            frameworks.push(RecoveredFramework { info, scheduler: framework.scheduler, executors });
        }
        Ok(Some(RecoveredAgent { info: agent.info, resources, frameworks }))
    }

    /// Sets a tree that cannot be taken back aside (`meta.broken-<n>`), so the agent
    /// can start afresh without destroying what an operator may want to look at.
    pub fn set_aside(&self) -> std::io::Result<PathBuf> {
        let parent = self.meta.parent().unwrap_or(Path::new("."));
        for n in 1..10_000 {
            let aside = parent.join(format!("meta.broken-{n}"));
            if !aside.exists() {
                std::fs::rename(&self.meta, &aside)?;
                return Ok(aside);
            }
        }
        Err(std::io::Error::other("too many meta.broken-* directories"))
    }
}

fn read_executor(directory: &Path) -> Result<RecoveredExecutor, CheckpointError> {
    let path = directory.join("executor.json");
    if !path.exists() {
        return Err(CheckpointError::Missing(format!("{} is missing", path.display())));
    }
    let executor: ExecutorFile = read_json(&path)?;
    if executor.executor_id.as_str() != name_of(directory) {
        return Err(CheckpointError::Corrupt {
            path,
            reason: format!("executor {} in the directory of {}", executor.executor_id, name_of(directory)),
        });
    }
    let mut tasks = Vec::new();
    let tasks_dir = directory.join("tasks");
    if tasks_dir.exists() {
        let entries = std::fs::read_dir(&tasks_dir).map_err(|source| io(&tasks_dir, source))?;
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let task: TaskFile = read_json(&path)?;
            tasks.push(RecoveredTask { info: task.info, state: task.state, pending: task.pending_updates });
        }
    }
    Ok(RecoveredExecutor {
        executor_id: executor.executor_id,
        info: executor.info,
        pid: executor.pid,
        container: executor.container_id,
        sandbox: executor.sandbox,
        tasks,
    })
}

/// The subdirectories of `directory` (none if it does not exist), sorted, without
/// the `.gone-*` leftovers of interrupted removals (which are finished off).
fn subdirectories(directory: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(directory, source)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if name_of(&path).starts_with(".gone-") {
            let _ = std::fs::remove_dir_all(&path);
            continue;
        }
        found.push(path);
    }
    found.sort();
    Ok(found)
}

fn name_of(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io { path: path.to_path_buf(), source }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| io(path, source))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CheckpointError::Corrupt { path: path.to_path_buf(), reason: e.to_string() })
}

/// Writes `value` as JSON to `path` atomically and durably: a temporary file,
/// fsynced, renamed over `path`, and the directory fsynced.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let directory = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory)?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(directory)?.sync_all()
}

/// Removes a checkpoint directory: renamed out of the tree first (durably), then
/// deleted, so a crash never leaves half of it looking like a whole one. A missing
/// one is already removed.
pub fn remove(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let gone = parent.join(format!(".gone-{}-{:016x}", name_of(path), fastrand::u64(..)));
    match std::fs::rename(path, &gone) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    std::fs::File::open(parent)?.sync_all()?;
    if let Err(e) = std::fs::remove_dir_all(&gone) {
        // What is left is ignored (and finished off) by the next recovery.
        tracing::warn!(path = %gone.display(), error = %e, "cannot delete a removed checkpoint");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
