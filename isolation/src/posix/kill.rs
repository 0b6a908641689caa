//! Killing a container's whole process tree without cgroups: stop every member so
//! none can fork, SIGKILL them all, and wait until they are gone and the main process
//! is reaped.

use std::collections::HashSet;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::time::{sleep, Instant};
use tracing::debug;

use super::Container;
use crate::error::IsolationError;

/// How long `destroy` waits for the tree to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most `/proc` walks spent stopping members that escaped the process group.
const FREEZE_ROUNDS: usize = 16;
/// First and longest pause between kill rounds.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// SIGKILLs every process of `container` and returns once none is alive and the
/// main process has been reaped, or fails with [`IsolationError::KillTimedOut`].
pub(super) async fn kill_tree(container: &Container) -> Result<(), IsolationError> {
    if container.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let pgid = Pid::from_raw(container.pgid());

    // Freeze: a stopped process cannot fork, so repeat until a walk finds nothing new.
    // Members that stayed in the group are stopped atomically by killpg.
    let mut stopped: HashSet<i32> = HashSet::new();
    for _ in 0..FREEZE_ROUNDS {
        let (owns_group, live) = container.scan()?;
        if owns_group {
            send_group(pgid, Signal::SIGSTOP);
        }
        let fresh: Vec<i32> = live.iter().map(|p| p.pid).filter(|pid| !stopped.contains(pid)).collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            send(pid, Signal::SIGSTOP);
            stopped.insert(pid);
        }
    }

    // Kill, then watch until the tree is gone and the reaper has seen the main exit.
    let mut pause = FIRST_PAUSE;
    loop {
        let (owns_group, live) = container.scan()?;
        if owns_group {
            send_group(pgid, Signal::SIGKILL);
        }
        for process in &live {
            send(process.pid, Signal::SIGKILL);
        }
        if live.is_empty() && container.main_reaped() {
            debug!(container_id = %container.id, elapsed_ms = started.elapsed().as_millis() as u64, "container tree killed");
            return Ok(());
        }
        if started.elapsed() >= KILL_TIMEOUT {
            let mut pids: Vec<u32> = live.iter().filter_map(|p| u32::try_from(p.pid).ok()).collect();
            if !container.main_reaped() && !pids.contains(&container.pid) {
                pids.push(container.pid);
            }
            return Err(IsolationError::KillTimedOut {
                id: container.id.clone(),
                timeout_ms: KILL_TIMEOUT.as_millis() as u64,
                pids,
            });
        }
        sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Signals a process group; a vanished group is fine, other failures are logged
/// (the kill loop reports what stays alive).
fn send_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => debug!(pgid = pgid.as_raw(), %signal, %errno, "killpg failed"),
    }
}

/// Signals one process, like [`send_group`].
fn send(pid: i32, signal: Signal) {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => debug!(pid, %signal, %errno, "kill failed"),
    }
}
