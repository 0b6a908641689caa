//! `CgroupsContainerizer`: the POSIX launcher plus cgroup isolators. Each container gets
//! its own cgroups (`<mount>/<root>/<container id>`, v1 or v2, see `hierarchy`) that its
//! main process joins before `exec`; cpu, memory and pids limits (`isolators`); OOM
//! detection at the end (`oom`); usage from cgroup accounting (`usage`); exact tree
//! killing (`kill`); and recovery of a previous agent's containers (`recover`).

mod cgroup;
mod hierarchy;
mod isolators;
mod kill;
mod oom;
mod recover;
#[cfg(test)]
mod tests;
mod usage;

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use self::cgroup::ContainerCgroup;
use self::hierarchy::Layout;
use crate::config::{ContainerConfig, ContainerId, Limits};
use crate::error::IsolationError;
use crate::posix::launch::{self, Mode};
use crate::recovered::{publish, recorded_termination, Outcome, ProcessIdentity, Recovered};
use crate::slots::Slots;
use crate::status::{Termination, Usage};
use crate::waiter::{reaped_termination, StatusDir};
use crate::{BoxFuture, Containerizer};

/// The default cgroup root: Keel's cgroups are `<mount>/keel/<container id>`.
pub const DEFAULT_CGROUP_ROOT: &str = "keel";

/// Settings of a [`CgroupsContainerizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupsConfig {
    /// Keel's cgroup, relative to each hierarchy's mount point (default
    /// [`DEFAULT_CGROUP_ROOT`]); one or more plain path components, no `.` or `..`.
    /// Every subdirectory is taken to be a Keel container (orphans are destroyed by
    /// `recover`), so give each agent on a machine its own root.
    pub root: String,
    /// Enforce cpus as a hard CFS quota (quota = cpus x 100 ms per 100 ms), not only as
    /// a relative share. Default true.
    pub cfs_quota: bool,
    /// Where each container's waiter records its exit status (one file per container,
    /// named by its id; created when first needed), so that a containerizer made with
    /// the same directory in a new process (after the agent restarted) still learns
    /// it in `recover`; the agent passes e.g. `<work_dir>/meta/containers`. The
    /// directory belongs to the containerizer: one per agent, nothing else in it
    /// (`recover` removes the files of containers it was not told about). `None`
    /// (default): no waiter; a container's exit status is known only to the process
    /// that launched it. [`crate::best_available`] gives it to the POSIX containerizer
    /// too.
    pub state_dir: Option<PathBuf>,
}

impl Default for CgroupsConfig {
    fn default() -> Self {
        CgroupsConfig { root: DEFAULT_CGROUP_ROOT.to_owned(), cfs_quota: true, state_dir: None }
    }
}

impl CgroupsConfig {
    /// The root as a relative path; the error is the reason it is invalid.
    fn root_path(&self) -> Result<PathBuf, String> {
        let path = Path::new(&self.root);
        let plain = path.components().all(|component| matches!(component, Component::Normal(_)));
        if self.root.is_empty() || !plain || self.root.contains('\0') {
            return Err(format!(
                "invalid cgroup root '{}': must be a relative path of plain components",
                self.root
            ));
        }
        Ok(path.to_owned())
    }
}

/// Launches containers in their own cgroups, with enforced limits.
///
/// Everything [`crate::PosixContainerizer`] does for the main process (sandbox, log
/// files, environment, working directory, user), plus: it leads its own session and
/// process group; it joins the container's cgroups between fork and exec, so neither it
/// nor anything it forks ever runs outside them; cpu shares and CFS quota, memory limit
/// (no swap) and pids limit are enforced (see [`Limits`]); an OOM kill is reported as
/// [`crate::Limitation::Memory`]; `signal` reaches every process in the cgroup and
/// `destroy` kills them all (v2 `cgroup.kill`, else freeze, SIGKILL, thaw), daemons and
/// `setsid` grandchildren included, then removes the cgroups.
///
/// **Runtime.** As for the POSIX containerizer, `launch` and `recover` must be called
/// within a tokio runtime, on which main processes are reaped (or, when recovered,
/// watched).
///
/// **Waiter.** With [`CgroupsConfig::state_dir`], each container's main process (the
/// pid `launch` returns, leader of the container's session) is a waiter as described
/// for [`crate::PosixContainerizer`]: it joins the cgroups, forks the task (which then
/// switches user and execs), and records the task's exit status in the state
/// directory. It is in the container's cgroups, so the pids limit is raised by one for
/// it and `usage` does not count it (its few pages of memory stay in the cgroup's
/// accounting). Having given back its copy of this process's memory (and lowered its
/// `oom_score_adj` to -1000 where allowed), it is never the process the OOM killer
/// picks: an OOM kill still hits the task and is reported as
/// [`crate::Limitation::Memory`].
///
/// Dropping the containerizer leaves containers and their cgroups in place for a later
/// `recover`.
pub struct CgroupsContainerizer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CgroupsContainerizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgroupsContainerizer")
            .field("isolation", &self.inner.layout.describe())
            .field("containers", &self.containers().len())
            .finish()
    }
}

/// State shared with `destroy` and `recover` futures.
struct Inner {
    layout: Arc<Layout>,
    cfs_quota: bool,
    /// Where waiters record exit statuses; `None`: no waiters.
    statuses: Option<StatusDir>,
    containers: Slots<Container>,
    /// The environment every container starts from, read once at construction.
    base_env: Vec<(String, String)>,
}

/// One launched or reattached container.
struct Container {
    id: ContainerId,
    /// The main process: the waiter if `waiter`, else the task.
    pid: u32,
    /// Whether the main process is a waiter (counted in the pids limit, not in `usage`).
    waiter: bool,
    cgroup: ContainerCgroup,
    /// The limits in force (locked while they are being changed).
    limits: Mutex<Limits>,
    /// `None` until the main process's end is published.
    termination: watch::Receiver<Option<Outcome>>,
    /// Publishes the end: the reaper (launched), the watcher or `destroy` (reattached);
    /// the first one wins.
    publisher: watch::Sender<Option<Outcome>>,
    /// Highest memory use seen by `usage` (for v2 kernels without `memory.peak`).
    sampled_peak: AtomicU64,
    /// For a reattached container, its main process (not our child: it is watched).
    recovered: Option<ProcessIdentity>,
}

impl CgroupsContainerizer {
    /// Finds the cgroup hierarchy to use (v2 on v2-only machines, v1 where the v1
    /// controllers are mounted), creates the root cgroup in it and checks it is
    /// writable; [`IsolationError::CgroupsUnavailable`] says why not.
    pub fn new(config: CgroupsConfig) -> Result<Self, IsolationError> {
        let unavailable = |reason: String| IsolationError::CgroupsUnavailable { reason };
        let root = config.root_path().map_err(unavailable)?;
        let layout = Layout::detect(&root).map_err(unavailable)?;
        layout.prepare().map_err(|error| unavailable(error.to_string()))?;
        info!(isolation = %layout.describe(), "cgroups ready");
        Ok(CgroupsContainerizer {
            inner: Arc::new(Inner {
                layout: Arc::new(layout),
                cfs_quota: config.cfs_quota,
                statuses: config.state_dir.map(StatusDir::new),
                containers: Slots::default(),
                base_env: launch::base_env(),
            }),
        })
    }

    /// Keel's root cgroup directory in each hierarchy used (one on v2).
    pub fn root_dirs(&self) -> Vec<PathBuf> {
        self.inner.layout.root_dirs()
    }

    /// The cgroup directories of container `id` (launched or reattached).
    pub fn cgroup_dirs(&self, id: &ContainerId) -> Result<Vec<PathBuf>, IsolationError> {
        Ok(self.inner.containers.get(id)?.cgroup.dirs())
    }
}

impl Inner {
    /// Sets up the cgroups and spawns the main process of `config` (validated, its id
    /// reserved); on failure nothing is left behind.
    fn start(&self, config: &ContainerConfig) -> Result<(Arc<Container>, Child), IsolationError> {
        let id = &config.id;
        let cgroup = ContainerCgroup::new(self.layout.clone(), id.clone());
        if cgroup.exists() {
            if !cgroup.procs()?.is_empty() {
                return Err(IsolationError::DuplicateContainer(id.clone()));
            }
            // An empty leftover (e.g. a crash between launch and destroy): start afresh
            // so its counters (OOM kills, peak) do not carry over.
            cgroup.remove_now().map_err(|(dir, error)| {
                IsolationError::io(
                    format!("removing stale cgroup {} of container '{id}'", dir.display()),
                    error,
                )
            })?;
        }
        cgroup.create()?;
        let statuses = self.statuses.as_ref();
        let waiter = statuses.is_some();
        let spawned = isolators::apply(&cgroup, &config.limits, self.cfs_quota, true, waiter)
            .and_then(|()| cgroup.open_procs_for_join())
            .and_then(|cgroup_procs| {
                let status_file = statuses.map(|statuses| statuses.create(id)).transpose()?;
                launch::spawn(config, &self.base_env, Mode::Session { cgroup_procs }, status_file)
            })
            .and_then(|child| match child.id() {
                Some(pid) => Ok((pid, child)),
                None => {
                    Err(IsolationError::Reap { id: id.clone(), reason: "spawned child has no pid".into() })
                }
            });
        let (pid, child) = match spawned {
            Ok(spawned) => spawned,
            Err(error) => {
                if let Err((dir, remove_error)) =
                    cgroup.remove_blocking(std::time::Duration::from_millis(200))
                {
                    warn!(container_id = %id, dir = %dir.display(), error = %remove_error, "could not remove the cgroup of a failed launch");
                }
                if let Some(Err(remove_error)) = statuses.map(|statuses| statuses.remove(id)) {
                    warn!(container_id = %id, error = %remove_error, "could not remove the status file of a failed launch");
                }
                return Err(error);
            }
        };
        let (publisher, termination) = watch::channel(None);
        let container = Container {
            id: id.clone(),
            pid,
            waiter,
            cgroup,
            limits: Mutex::new(config.limits),
            termination,
            publisher,
            sampled_peak: AtomicU64::new(0),
            recovered: None,
        };
        Ok((Arc::new(container), child))
    }
}

impl Container {
    fn limits(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True once the main process's end is known: reaped (our child), or no longer
    /// running (reattached).
    fn main_ended(&self) -> bool {
        self.termination.borrow().is_some() || self.recovered.is_some_and(|identity| !identity.is_running())
    }

    /// The memory limitation hit, if any (see [`oom::limitation`]).
    fn limitation(&self) -> Option<crate::Limitation> {
        oom::limitation(&self.cgroup, self.limits().mem_bytes, &self.sampled_peak)
    }

    /// Publishes the end of a reattached main process: the recorded status, with the
    /// OOM verdict.
    fn publish_recorded_end(&self, statuses: Option<&StatusDir>) {
        let termination =
            Termination { limitation: self.limitation(), ..recorded_termination(statuses, &self.id) };
        let message = termination.message.clone();
        if publish(&self.publisher, Ok(termination)) {
            info!(container_id = %self.id, pid = self.pid, status = %message, "recovered container main process ended");
        }
    }
}

/// Reaps the main process, then publishes its termination (the waiter's record if any)
/// with the OOM verdict (read before anyone may remove the cgroup: `destroy` waits for
/// this).
async fn reap(container: Arc<Container>, mut child: Child, statuses: Option<StatusDir>) {
    let outcome = match child.wait().await {
        Ok(status) => {
            let termination = Termination {
                limitation: container.limitation(),
                ..reaped_termination(status, statuses.as_ref(), &container.id)
            };
            debug!(container_id = %container.id, pid = container.pid, status = %termination.message, limitation = ?termination.limitation, "container main process exited");
            Ok(termination)
        }
        Err(error) => {
            warn!(container_id = %container.id, pid = container.pid, %error, "could not reap container main process");
            Err(format!("waiting for pid {}: {error}", container.pid))
        }
    };
    publish(&container.publisher, outcome);
}

/// Watches a reattached main process and publishes its end.
async fn watch_recovered(container: Arc<Container>, identity: ProcessIdentity, statuses: Option<StatusDir>) {
    let mut published = container.termination.clone();
    identity.ended(&mut published).await;
    container.publish_recorded_end(statuses.as_ref());
}

impl Containerizer for CgroupsContainerizer {
    fn launch(&self, config: ContainerConfig) -> Result<u32, IsolationError> {
        config.validate()?;
        let id = config.id.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(IsolationError::NoRuntime(id));
        }
        self.inner.containers.reserve(&id)?;
        let (container, child) = match self.inner.start(&config) {
            Ok(started) => started,
            Err(error) => {
                self.inner.containers.release(&id);
                return Err(error);
            }
        };
        let pid = container.pid;
        tokio::spawn(reap(container.clone(), child, self.inner.statuses.clone()));
        debug!(container_id = %id, pid, "container launched in cgroups");
        self.inner.containers.fill(id, container);
        Ok(pid)
    }

    fn wait(&self, id: &ContainerId) -> BoxFuture<'static, Result<Termination, IsolationError>> {
        match self.inner.containers.get(id) {
            Ok(container) => crate::recovered::wait_for_outcome(id.clone(), container.termination.clone()),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    fn signal(&self, id: &ContainerId, signal: i32) -> Result<(), IsolationError> {
        let signal = Signal::try_from(signal).map_err(|_| IsolationError::InvalidSignal(signal))?;
        let container = self.inner.containers.get(id)?;
        let mut procs = container.cgroup.procs()?;
        if container.waiter {
            // It ignores every other signal anyway; spared SIGKILL and SIGSTOP, it still
            // records the task's end.
            procs.retain(|pid| u32::try_from(*pid) != Ok(container.pid));
        }
        kill::signal_all(&procs, signal);
        Ok(())
    }

    fn destroy(&self, id: &ContainerId) -> BoxFuture<'static, Result<(), IsolationError>> {
        let container = match self.inner.containers.get(id) {
            Ok(container) => container,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let main_ended = || container.main_ended();
            kill::kill_all(&container.id, &container.cgroup, container.pid, &main_ended).await?;
            if container.recovered.is_some() {
                container.publish_recorded_end(inner.statuses.as_ref());
            }
            container.cgroup.remove().await?;
            if let Some(Err(error)) = inner.statuses.as_ref().map(|statuses| statuses.remove(&container.id)) {
                warn!(container_id = %container.id, %error, "could not remove a destroyed container's status file");
            }
            inner.containers.remove(&container.id, &container);
            debug!(container_id = %container.id, pid = container.pid, "container destroyed");
            Ok(())
        })
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolationError> {
        let container = self.inner.containers.get(id)?;
        let waiter = container.waiter.then(|| i32::try_from(container.pid).unwrap_or(0));
        usage::read(&container.cgroup, &container.limits(), &container.sampled_peak, waiter)
    }

    fn containers(&self) -> Vec<ContainerId> {
        self.inner.containers.running_ids()
    }

    fn name(&self) -> &'static str {
        self.inner.layout.name()
    }

    fn update(&self, id: &ContainerId, limits: Limits) -> Result<(), IsolationError> {
        limits.check(id)?;
        let container = self.inner.containers.get(id)?;
        let mut current = container.limits.lock().unwrap_or_else(PoisonError::into_inner);
        let (quota, waiter) = (self.inner.cfs_quota, container.waiter);
        if let Err(error) = isolators::apply(&container.cgroup, &limits, quota, false, waiter) {
            // Put back what may have been changed before the failure.
            if let Err(restore) = isolators::apply(&container.cgroup, &current, quota, false, waiter) {
                warn!(container_id = %id, error = %restore, "could not restore limits after a failed update");
            }
            return Err(error);
        }
        *current = limits;
        debug!(container_id = %id, ?limits, "container limits updated");
        Ok(())
    }

    fn recover(&self, known: &[(ContainerId, u32)]) -> BoxFuture<'static, Result<Recovered, IsolationError>> {
        Box::pin(recover::recover(self.inner.clone(), known.to_vec()))
    }

    fn cleanup(&self) {
        // Only empty roots go: a root still holding containers stays for `recover`.
        for dir in self.inner.layout.root_dirs() {
            let _ = std::fs::remove_dir(&dir);
        }
    }

    fn isolation(&self) -> String {
        self.inner.layout.describe()
    }
}
