//! Killing every process of a container through its cgroup, which knows them all (also
//! the ones that called setsid or daemonized): v2 `cgroup.kill` where the kernel has
//! it; otherwise freeze (a frozen process cannot fork), SIGKILL every pid in
//! `cgroup.procs`, thaw. Then wait until the cgroup is empty and the main process ended.

use std::time::Duration;

use cgroups_rs::freezer::FreezerState;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::{sleep, Instant};
use tracing::debug;

use super::cgroup::ContainerCgroup;
use super::hierarchy::{Controller, Version};
use crate::config::ContainerId;
use crate::error::IsolationError;

/// How long a kill waits for the cgroup to empty.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a freeze may take before the kill goes ahead anyway (a process in
/// uninterruptible sleep can delay it). The wait blocks the thread on purpose: there
/// is no await point between freeze and thaw, so a future dropped mid-destroy (or a
/// runtime shutting down) can never leave a container frozen for good.
const FREEZE_TIMEOUT: Duration = Duration::from_millis(200);
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// SIGKILLs every process in `cgroup` and returns once it is empty and `main_ended`
/// says the main process is gone (reaped, for our own child), or fails with
/// [`IsolationError::KillTimedOut`] (the cgroup is then kept).
pub(crate) async fn kill_all(
    id: &ContainerId,
    cgroup: &ContainerCgroup,
    main_pid: u32,
    main_ended: &(dyn Fn() -> bool + Send + Sync),
) -> Result<(), IsolationError> {
    let started = Instant::now();
    if cgroup.procs()?.is_empty() && main_ended() {
        return Ok(());
    }
    if !(cgroup.version() == Version::V2 && kill_v2(cgroup)?) {
        freeze_kill_thaw(cgroup).await?;
    }
    let mut pause = FIRST_PAUSE;
    loop {
        let live = cgroup.procs()?;
        if live.is_empty() && main_ended() {
            debug!(container_id = %id, elapsed_ms = started.elapsed().as_millis() as u64, "container cgroup emptied");
            return Ok(());
        }
        if started.elapsed() >= KILL_TIMEOUT {
            let mut pids: Vec<u32> = live.iter().filter_map(|pid| u32::try_from(*pid).ok()).collect();
            if !main_ended() && !pids.contains(&main_pid) {
                pids.push(main_pid);
            }
            return Err(IsolationError::KillTimedOut {
                id: id.clone(),
                timeout_ms: KILL_TIMEOUT.as_millis() as u64,
                pids,
            });
        }
        // Stragglers (e.g. a process that was mid-exec during the freeze) get another one.
        signal_all(&live, Signal::SIGKILL);
        sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Writes `cgroup.kill`; false if this kernel has none (before 5.14).
fn kill_v2(cgroup: &ContainerCgroup) -> Result<bool, IsolationError> {
    let path = cgroup.dir(Controller::Freezer).join("cgroup.kill");
    match std::fs::write(&path, "1") {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(IsolationError::io(format!("writing {}", path.display()), error)),
    }
}

/// Freezes the cgroup (waiting up to [`FREEZE_TIMEOUT`]), SIGKILLs its processes and
/// thaws it, so the kills take effect with no fork in between.
pub(crate) async fn freeze_kill_thaw(cgroup: &ContainerCgroup) -> Result<(), IsolationError> {
    let freezer = cgroup.freezer();
    let frozen = match freezer.freeze() {
        Ok(()) => wait_frozen(cgroup),
        Err(error) => {
            debug!(error = %cgroup.error("freezing", error), "killing without freezing");
            false
        }
    };
    signal_all(&cgroup.procs()?, Signal::SIGKILL);
    if let Err(error) = freezer.thaw() {
        // Without a thaw a v1 frozen process would never die: report it.
        return Err(cgroup.error("thawing", error));
    }
    debug!(frozen, "container processes killed");
    Ok(())
}

/// Waits (blocking) until the freeze completed; false if it did not within
/// [`FREEZE_TIMEOUT`].
fn wait_frozen(cgroup: &ContainerCgroup) -> bool {
    let started = Instant::now();
    let pause = Duration::from_micros(200);
    loop {
        let frozen = match cgroup.version() {
            Version::V1 => matches!(cgroup.freezer().state(), Ok(FreezerState::Frozen)),
            Version::V2 => cgroup
                .read_keyed(Controller::Freezer, "cgroup.events")
                .is_ok_and(|events| events.get("frozen") == Some(&1)),
        };
        if frozen {
            return true;
        }
        if started.elapsed() >= FREEZE_TIMEOUT {
            return false;
        }
        std::thread::sleep(pause);
    }
}

/// Sends `signal` to each pid; vanished processes are fine, other failures are logged.
pub(crate) fn signal_all(pids: &[i32], signal: Signal) {
    let own = i32::try_from(std::process::id()).unwrap_or(0);
    for pid in pids.iter().copied().filter(|pid| *pid > 1 && *pid != own) {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => debug!(pid, %signal, %errno, "kill failed"),
        }
    }
}
