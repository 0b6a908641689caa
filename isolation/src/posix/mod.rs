//! `PosixContainerizer`: containers as plain process groups, reaped by tokio, with
//! usage from procfs and tree killing by `/proc` walks. No cgroups. The spawning code
//! (`launch`, `session`) is shared with the cgroups containerizer.

mod kill;
pub(crate) mod launch;
mod maps;
mod recover;
pub(crate) mod session;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::{ContainerConfig, ContainerId, Limits};
use crate::error::IsolationError;
use crate::procs::{ProcInfo, ProcTable, Scope};
use crate::recovered::{Outcome, Recovered};
use crate::slots::Slots;
use crate::status::{Termination, Usage};
use crate::waiter::{reaped_termination, StatusDir};
use crate::{BoxFuture, Containerizer};

pub use launch::{DEFAULT_PATH, INHERITED_ENV};

/// Most processes remembered per container between scans (see [`crate::procs`]).
const MAX_REMEMBERED_PIDS: usize = 4096;

/// Launches containers as plain POSIX process trees.
///
/// Each container's main process is spawned in a new process group (pgid = its pid),
/// with stdin from `/dev/null`, stdout and stderr appended to `<sandbox>/stdout` and
/// `<sandbox>/stderr`, and the sandbox as working directory. Its environment is
/// cleared, then holds:
/// 1. `PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR` copied from
///    this process when set (see [`INHERITED_ENV`]); `PATH` defaults to [`DEFAULT_PATH`];
/// 2. with `user` set: `HOME`, `USER` and `LOGNAME` of that user;
/// 3. the config's `env`, which wins over both.
///
/// With `user` set, the process runs with that user's uid and primary gid (switching
/// user needs root; supplementary groups are dropped) and the sandbox and log files
/// are given to the user.
///
/// **Runtime.** `launch` must be called within a tokio runtime (the agent's is a
/// `current_thread` one): a task on it reaps the main process with
/// [`tokio::process::Child::wait`] and publishes the [`Termination`] to every `wait`.
/// Grandchildren are never waited on here: when orphaned they are reparented to init,
/// which reaps them (so the agent must not run as pid 1 without an init).
///
/// **Waiter.** Made with [`PosixContainerizer::with_state_dir`], each container's main
/// process (the pid `launch` returns and the group leader) is a waiter, a fork of this
/// process's child that ignores signals, waits for the task (its only child, in the
/// same process group, running as the container's user) and records its exit status in
/// `<state_dir>/<container id>` (see the `waiter` module), so a containerizer in a new
/// process still learns it after `recover`. The waiter is excluded from `usage`. It
/// costs one more fork per launch and, while the task runs, one small process per
/// container: right after the fork it gives back its copy-on-write share of this
/// process's private memory (see the `maps` module), keeping a few hundred KiB.
/// [`PosixContainerizer::new`] makes the task itself the main process: no status
/// survives this process then.
///
/// **Limitations (use [`crate::CgroupsContainerizer`] where cgroups are writable).**
/// Limits are recorded, not enforced. The main process gets its own process group but
/// not its own session (without a waiter or a memory limit, this keeps the fast
/// `posix_spawn` path). Membership is inferred
/// from process groups and ancestry, so a process that left the group and whose parent
/// exited can escape `destroy` and `usage` (see the `procs` module).
///
/// **Recovery** reattaches known containers by pid: the pid must still run and lead its
/// own process group, or have left a status file. There is no tree to search, so no
/// orphan is ever found.
///
/// Dropping the containerizer leaves containers running.
pub struct PosixContainerizer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PosixContainerizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PosixContainerizer").field("containers", &self.containers().len()).finish()
    }
}

/// State shared with `destroy` futures.
struct Inner {
    containers: Slots<Container>,
    /// The environment every container starts from, read once at construction.
    base_env: Vec<(String, String)>,
    ticks_per_second: f64,
    page_size_bytes: u64,
    /// Where waiters record exit statuses; `None`: no waiters.
    statuses: Option<StatusDir>,
}

/// One launched container.
pub(crate) struct Container {
    id: ContainerId,
    /// The main process: the waiter if `waiter`, else the task.
    pid: u32,
    /// Whether the main process is a waiter (and so not counted in `usage`).
    waiter: bool,
    /// For a recovered container, the main process's start time (see
    /// [`Scope::main_start_ticks`]).
    main_start_ticks: Option<u64>,
    limits: Mutex<Limits>,
    /// `None` until the reaper task has reaped the main process (or, for a recovered
    /// container, until the watcher saw it end).
    termination: watch::Receiver<Option<Outcome>>,
    /// Members seen by earlier scans (pid -> start ticks), to find them again after
    /// their ancestry is lost.
    remembered: Mutex<HashMap<i32, u64>>,
}

impl Default for PosixContainerizer {
    fn default() -> Self {
        Self::new()
    }
}

impl PosixContainerizer {
    /// A containerizer with no containers and no waiters: a container's exit status is
    /// known only to this process (a later `recover` reports [`crate::UNKNOWN_EXIT_CODE`]).
    /// Snapshots the inherited environment.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A containerizer whose containers each get a waiter recording their exit status
    /// in `state_dir` (created when first needed), so that a containerizer made with the
    /// same directory in another process learns it in `recover`. The directory belongs
    /// to this containerizer: one per agent, nothing else in it (`recover` removes the
    /// files of containers it was not told about).
    pub fn with_state_dir(state_dir: impl Into<PathBuf>) -> Self {
        Self::build(Some(StatusDir::new(state_dir.into())))
    }

    fn build(statuses: Option<StatusDir>) -> Self {
        PosixContainerizer {
            inner: Arc::new(Inner {
                containers: Slots::default(),
                base_env: launch::base_env(),
                ticks_per_second: procfs::ticks_per_second().max(1) as f64,
                page_size_bytes: procfs::page_size(),
                statuses,
            }),
        }
    }
}

impl Container {
    /// The main process's pid, which is also the process group id.
    fn pgid(&self) -> i32 {
        i32::try_from(self.pid).unwrap_or(i32::MAX)
    }

    fn main_reaped(&self) -> bool {
        self.termination.borrow().is_some()
    }

    /// True when a `/proc` walk would find no member: the main process is reaped,
    /// no process is in its group and no escaped process was remembered. Costs one
    /// `kill(2)`, so the common destroy-after-exit skips the walks.
    fn is_empty(&self) -> bool {
        self.main_reaped()
            && self.remembered.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
            && killpg(Pid::from_raw(self.pgid()), None) == Err(Errno::ESRCH)
    }

    /// Walks `/proc` and returns whether the process group is still ours and the
    /// container's live (not exited) processes; remembers them for later scans.
    pub(crate) fn scan(&self) -> Result<(bool, Vec<ProcInfo>), IsolationError> {
        let main_reaped = self.main_reaped();
        let table = ProcTable::read().map_err(|error| IsolationError::io("reading /proc", error))?;
        let mut remembered = self.remembered.lock().unwrap_or_else(PoisonError::into_inner);
        let scope = Scope {
            pgid: self.pgid(),
            main_reaped,
            main_start_ticks: self.main_start_ticks,
            known: &remembered,
        };
        let owns_group = table.owns_group(&scope);
        let live: Vec<ProcInfo> =
            table.members(&scope).into_iter().filter(|p| !p.is_exited()).cloned().collect();
        *remembered = live.iter().take(MAX_REMEMBERED_PIDS).map(|p| (p.pid, p.start_ticks)).collect();
        Ok((owns_group, live))
    }
}

/// Reaps the main process and publishes its termination (the waiter's record if any).
async fn reap(
    id: ContainerId,
    pid: u32,
    mut child: Child,
    statuses: Option<StatusDir>,
    termination: watch::Sender<Option<Outcome>>,
) {
    let outcome = match child.wait().await {
        Ok(status) => {
            let outcome = reaped_termination(status, statuses.as_ref(), &id);
            debug!(container_id = %id, pid, status = %outcome.message, "container main process exited");
            Ok(outcome)
        }
        Err(error) => {
            warn!(container_id = %id, pid, %error, "could not reap container main process");
            Err(format!("waiting for pid {pid}: {error}"))
        }
    };
    termination.send_replace(Some(outcome));
}

impl Containerizer for PosixContainerizer {
    fn launch(&self, config: ContainerConfig) -> Result<u32, IsolationError> {
        config.validate()?;
        let id = config.id.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(IsolationError::NoRuntime(id));
        }
        self.inner.containers.reserve(&id)?;
        let statuses = self.inner.statuses.as_ref();
        let spawned = statuses
            .map(|statuses| statuses.create(&id))
            .transpose()
            .and_then(|status_file| {
                launch::spawn(&config, &self.inner.base_env, launch::Mode::ProcessGroup, status_file)
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
                if let Some(Err(remove_error)) = statuses.map(|statuses| statuses.remove(&id)) {
                    warn!(container_id = %id, error = %remove_error, "could not remove the status file of a failed launch");
                }
                self.inner.containers.release(&id);
                return Err(error);
            }
        };
        let (sender, receiver) = watch::channel(None);
        tokio::spawn(reap(id.clone(), pid, child, statuses.cloned(), sender));
        let container = Container {
            id: id.clone(),
            pid,
            waiter: statuses.is_some(),
            main_start_ticks: None,
            limits: Mutex::new(config.limits),
            termination: receiver,
            remembered: Mutex::new(HashMap::new()),
        };
        debug!(container_id = %id, pid, "container launched");
        self.inner.containers.fill(id, Arc::new(container));
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
        // Once the main process is reaped its pid (= the pgid) can be reused, so check
        // that the group still holds only our processes before signalling it.
        if container.is_empty() {
            return Ok(());
        }
        if container.main_reaped() {
            let (owns_group, live) = container.scan()?;
            if !owns_group || live.is_empty() {
                return Ok(());
            }
        }
        match killpg(Pid::from_raw(container.pgid()), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(IsolationError::io(
                format!("sending {signal} to container '{id}' (process group {})", container.pid),
                errno.into(),
            )),
        }
    }

    fn destroy(&self, id: &ContainerId) -> BoxFuture<'static, Result<(), IsolationError>> {
        let container = match self.inner.containers.get(id) {
            Ok(container) => container,
            Err(error) => return Box::pin(std::future::ready(Err(error))),
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            kill::kill_tree(&container).await?;
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
        let (_, mut live) = container.scan()?;
        if container.waiter {
            // The waiter is a copy of this process: its RSS is ours, not the task's.
            live.retain(|process| u32::try_from(process.pid) != Ok(container.pid));
        }
        let ticks = live.iter().fold((0u64, 0u64), |(user, system), p| {
            (user.saturating_add(p.user_ticks), system.saturating_add(p.system_ticks))
        });
        let rss_pages = live.iter().fold(0u64, |sum, p| sum.saturating_add(p.rss_pages));
        let mem_limit_bytes = container.limits.lock().unwrap_or_else(PoisonError::into_inner).mem_bytes;
        Ok(Usage {
            cpu_user_secs: ticks.0 as f64 / self.inner.ticks_per_second,
            cpu_system_secs: ticks.1 as f64 / self.inner.ticks_per_second,
            rss_bytes: rss_pages.saturating_mul(self.inner.page_size_bytes),
            processes: u32::try_from(live.len()).unwrap_or(u32::MAX),
            mem_limit_bytes,
            mem_peak_bytes: None,
        })
    }

    fn containers(&self) -> Vec<ContainerId> {
        self.inner.containers.running_ids()
    }

    fn name(&self) -> &'static str {
        "posix"
    }

    fn update(&self, id: &ContainerId, limits: Limits) -> Result<(), IsolationError> {
        limits.check(id)?;
        let container = self.inner.containers.get(id)?;
        *container.limits.lock().unwrap_or_else(PoisonError::into_inner) = limits;
        debug!(container_id = %id, ?limits, "container limits recorded (not enforced)");
        Ok(())
    }

    fn recover(&self, known: &[(ContainerId, u32)]) -> BoxFuture<'static, Result<Recovered, IsolationError>> {
        let inner = self.inner.clone();
        let known = known.to_vec();
        Box::pin(async move { recover::recover(&inner, known) })
    }

    fn isolation(&self) -> String {
        "posix (process groups, /proc walks; limits recorded, not enforced)".to_owned()
    }
}
