//! What the agent writes under `--work_dir` so a restarted agent can recover
//! (recovery itself belongs to the high-availability issue), from the core's
//! [`Checkpoint`] effects:
//!
//! ```text
//! meta/agent.json                                         the agent's info and id
//! meta/resources.json                                     its resources with dynamic reservations
//! meta/frameworks/<fid>/framework.json                    framework info and scheduler
//! meta/frameworks/<fid>/executors/<eid>/executor.json     executor, container, sandbox, pid
//! meta/frameworks/<fid>/executors/<eid>/tasks/<tid>.json  the task and its unacknowledged updates
//! ```
//! Only frameworks with `checkpoint: true` are checkpointed (as in Mesos). Each file
//! is written to a temporary name, fsynced, renamed and its directory fsynced, so a
//! crash leaves the old or the new version, never a torn one, and a write that
//! returned is durable.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use keel_core::agent::Checkpoint;

use crate::ids::{ExecutorId, FrameworkId, TaskId};

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

    /// `meta/agent.json`.
    pub fn agent(&self) -> PathBuf {
        self.meta.join("agent.json")
    }

    /// `meta/resources.json`: the total with dynamic reservations.
    pub fn resources(&self) -> PathBuf {
        self.meta.join("resources.json")
    }

    /// A framework's directory.
    pub fn framework_dir(&self, framework_id: &FrameworkId) -> PathBuf {
        self.meta.join("frameworks").join(framework_id.as_str())
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
            Checkpoint::Agent(info) => write_json(&self.agent(), info),
            Checkpoint::Resources(total) => write_json(&self.resources(), total),
            Checkpoint::Framework { framework_id, info, scheduler } => write_json(
                &self.framework(framework_id),
                &serde_json::json!({ "info": info, "scheduler": scheduler }),
            ),
            Checkpoint::Executor { framework_id, executor_id, info, container, sandbox } => write_json(
                &self.executor(framework_id, executor_id),
                &serde_json::json!({
                    "executor_id": executor_id, "info": info, "container_id": container, "sandbox": sandbox,
                }),
            ),
            Checkpoint::Task { framework_id, executor_id, info, state, pending } => write_json(
                &self.task(framework_id, executor_id, &info.task_id),
                &serde_json::json!({ "info": info, "state": state, "pending_updates": pending }),
            ),
            Checkpoint::RemoveExecutor { framework_id, executor_id } => {
                remove(&self.executor_dir(framework_id, executor_id));
                Ok(())
            }
            Checkpoint::RemoveFramework { framework_id } => {
                remove(&self.framework_dir(framework_id));
                Ok(())
            }
        }
    }
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

/// Removes a checkpoint file or directory, ignoring a missing one.
pub fn remove(path: &Path) {
    let result = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a checkpoint");
        }
    }
}
