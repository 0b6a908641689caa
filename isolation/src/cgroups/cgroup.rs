//! One container's cgroups: its directories, creating and removing them, the processes
//! in them, cgroups-rs controller handles, and reading their stat files.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cgroups_rs::cpu::CpuController;
use cgroups_rs::freezer::FreezerController;
use cgroups_rs::memory::MemController;
use cgroups_rs::pid::PidController;

use super::hierarchy::{Controller, Layout, Version};
use crate::config::ContainerId;
use crate::error::IsolationError;

/// How long removing an emptied cgroup is retried (the kernel may still be tearing
/// down the last exited process: EBUSY).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The cgroups of one container: `<mount>/<root>/<id>` in each hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct ContainerCgroup {
    layout: Arc<Layout>,
    id: ContainerId,
}

impl ContainerCgroup {
    /// The cgroups of container `id` (which need not exist yet).
    pub fn new(layout: Arc<Layout>, id: ContainerId) -> Self {
        ContainerCgroup { layout, id }
    }

    /// v1 or v2.
    pub fn version(&self) -> Version {
        self.layout.version
    }

    /// The directory for `controller`.
    pub fn dir(&self, controller: Controller) -> PathBuf {
        self.layout.dir(controller, &self.id)
    }

    /// Every directory, without duplicates.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.layout.container_dirs(&self.id)
    }

    /// True if any of the directories exists.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|dir| dir.is_dir())
    }

    /// Creates the directories; fails if one exists already (a stale cgroup must be
    /// emptied and removed first, so its counters start from zero).
    pub fn create(&self) -> Result<(), IsolationError> {
        for dir in self.dirs() {
            fs::create_dir(&dir).map_err(|error| {
                IsolationError::io(
                    format!("creating cgroup {} of container '{}'", dir.display(), self.id),
                    error,
                )
            })?;
        }
        Ok(())
    }

    /// Opens every `cgroup.procs` file for writing (close-on-exec), for a child to join.
    pub fn open_procs_for_join(&self) -> Result<Vec<File>, IsolationError> {
        self.dirs()
            .into_iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                OpenOptions::new().write(true).open(&path).map_err(|error| {
                    IsolationError::io(
                        format!("opening {} of container '{}'", path.display(), self.id),
                        error,
                    )
                })
            })
            .collect()
    }

    /// The pids in the container's cgroups (the union over hierarchies), sorted. A
    /// cgroup that does not exist has no process.
    pub fn procs(&self) -> Result<Vec<i32>, IsolationError> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            let path = dir.join("cgroup.procs");
            match fs::read_to_string(&path) {
                Ok(text) => pids.extend(text.lines().filter_map(|line| line.trim().parse::<i32>().ok())),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(IsolationError::io(
                        format!("reading {} of container '{}'", path.display(), self.id),
                        error,
                    ))
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Removes the directories, retrying while the kernel reports them busy. Missing
    /// ones are fine.
    pub async fn remove(&self) -> Result<(), IsolationError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.remove_now() {
                Ok(()) => return Ok(()),
                Err((dir, error)) if started.elapsed() >= REMOVE_TIMEOUT || !is_busy(&error) => {
                    return Err(IsolationError::io(
                        format!("removing cgroup {} of container '{}'", dir.display(), self.id),
                        error,
                    ));
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// Removes the directories, retrying (blocking) while the kernel still counts a
    /// process that just exited, for at most `timeout`: for the synchronous failure
    /// path of a launch, whose child died on a failed `exec` a moment ago.
    pub fn remove_blocking(&self, timeout: Duration) -> Result<(), (PathBuf, io::Error)> {
        let started = std::time::Instant::now();
        loop {
            match self.remove_now() {
                Err((_, error)) if is_busy(&error) && started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_micros(500));
                }
                result => return result,
            }
        }
    }

    /// Removes the directories once, without waiting; the error names the directory.
    pub fn remove_now(&self) -> Result<(), (PathBuf, io::Error)> {
        for dir in self.dirs() {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err((dir, error)),
            }
        }
        Ok(())
    }

    /// The cgroups-rs cpu controller of this container.
    pub fn cpu(&self) -> CpuController {
        CpuController::new(self.dir(Controller::Cpu), self.is_v2())
    }

    /// The cgroups-rs memory controller of this container.
    pub fn memory(&self) -> MemController {
        MemController::new(self.dir(Controller::Memory), self.is_v2())
    }

    /// The cgroups-rs pids controller of this container.
    pub fn pids(&self) -> PidController {
        PidController::new(self.dir(Controller::Pids), self.is_v2())
    }

    /// The cgroups-rs freezer of this container (v2: `cgroup.freeze`).
    pub fn freezer(&self) -> FreezerController {
        FreezerController::new(self.dir(Controller::Freezer), self.is_v2())
    }

    fn is_v2(&self) -> bool {
        self.version() == Version::V2
    }

    /// Reads `file` of the `controller` directory, trimmed.
    pub fn read(&self, controller: Controller, file: &str) -> Result<String, IsolationError> {
        let path = self.dir(controller).join(file);
        fs::read_to_string(&path).map(|text| text.trim().to_owned()).map_err(|error| {
            IsolationError::io(format!("reading {} of container '{}'", path.display(), self.id), error)
        })
    }

    /// Reads a number file (`memory.max_usage_in_bytes`, `memory.peak`, ...).
    pub fn read_u64(&self, controller: Controller, file: &str) -> Result<u64, IsolationError> {
        let text = self.read(controller, file)?;
        text.parse().map_err(|_| {
            IsolationError::io(
                format!("parsing {file} of container '{}'", self.id),
                io::Error::new(io::ErrorKind::InvalidData, format!("not a number: {text:?}")),
            )
        })
    }

    /// Reads a flat keyed file (`memory.stat`, `cpu.stat`, `memory.events`,
    /// `memory.oom_control`): one `key value` per line; other lines are skipped.
    pub fn read_keyed(
        &self,
        controller: Controller,
        file: &str,
    ) -> Result<HashMap<String, u64>, IsolationError> {
        Ok(parse_keyed(&self.read(controller, file)?))
    }

    /// Builds the error for a failed cgroups-rs call.
    pub fn error(&self, what: &str, error: cgroups_rs::error::Error) -> IsolationError {
        let kind = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<io::Error>())
            .map(|io_error| (io_error.kind(), format!("{}: {io_error}", error.kind())));
        let (kind, message) = kind.unwrap_or_else(|| (io::ErrorKind::Other, error.kind().to_string()));
        IsolationError::io(format!("{what} of container '{}'", self.id), io::Error::new(kind, message))
    }
}

/// True for the error `rmdir` gives a cgroup that still has (dying) processes.
fn is_busy(error: &io::Error) -> bool {
    error.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32)
}

/// Parses `key value` lines; lines without a numeric second field are skipped.
pub(crate) fn parse_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let key = fields.next()?;
            let value = fields.next()?.parse().ok()?;
            Some((key.to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse_and_skip_junk() {
        let parsed = parse_keyed("oom_kill_disable 0\nunder_oom 1\noom_kill 3\nweird\nx y\n");
        assert_eq!(parsed.get("under_oom"), Some(&1));
        assert_eq!(parsed.get("oom_kill"), Some(&3));
        assert_eq!(parsed.len(), 3);
    }
}
