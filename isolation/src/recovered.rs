//! Recovery helpers shared by both containerizers: what `recover` returns, and how a
//! reattached main process (not our child, so it cannot be waited for) is watched.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::ContainerId;
use crate::status::{ExitStatusKind, Termination};

/// The exit code reported for a recovered container's main process: it was started by a
/// previous agent process, so its real exit status is lost (real codes are 0..=255).
pub const UNKNOWN_EXIT_CODE: i32 = -1;

/// The [`Termination::message`] of a recovered container's main process.
pub const UNKNOWN_EXIT_MESSAGE: &str = "exit status unknown (recovered container)";

/// How often a reattached main process is checked for its end.
const RECOVERED_POLL: Duration = Duration::from_millis(100);

/// What [`Containerizer::recover`](crate::Containerizer::recover) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Known containers whose main process still runs: managed again, sorted.
    pub reattached: Vec<ContainerId>,
    /// Known containers whose main process no longer runs: whatever was left of them
    /// was killed and their cgroups removed; sorted. Their tasks' fate is unknown.
    pub gone: Vec<ContainerId>,
    /// Containers found under the cgroup root that were not known: killed and removed,
    /// sorted. Always empty for the POSIX containerizer (it has no tree to search).
    pub orphans_destroyed: Vec<ContainerId>,
}

/// The outcome a reaper or watcher publishes: the termination, or why it is unknown.
pub(crate) type Outcome = Result<Termination, String>;

/// What [`crate::Containerizer::wait`] returns for a container whose reaper publishes
/// its outcome on `termination`: the same answer for every waiter, before or after.
pub(crate) fn wait_for_outcome(
    id: ContainerId,
    mut termination: watch::Receiver<Option<Outcome>>,
) -> crate::BoxFuture<'static, Result<Termination, crate::IsolationError>> {
    Box::pin(async move {
        let outcome = match termination.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(termination)) => Ok(termination),
            Some(Err(reason)) => Err(crate::IsolationError::Reap { id, reason }),
            None => Err(crate::IsolationError::Reap {
                id,
                reason: "the reaper task was dropped (its tokio runtime shut down)".into(),
            }),
        }
    })
}

/// The termination reported for a recovered container (see [`UNKNOWN_EXIT_CODE`]).
pub(crate) fn unknown_termination() -> Termination {
    Termination {
        status: ExitStatusKind::Exited(UNKNOWN_EXIT_CODE),
        message: UNKNOWN_EXIT_MESSAGE.to_owned(),
        limitation: None,
    }
}

/// A process identified by pid and start time, so a reused pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

impl ProcessIdentity {
    /// The identity of the live (not exited) process `pid`, or `None` if there is none.
    pub fn of(pid: u32) -> Option<Self> {
        let pid = i32::try_from(pid).ok().filter(|pid| *pid > 1)?;
        let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
        if matches!(stat.state, 'Z' | 'X' | 'x') {
            return None;
        }
        Some(ProcessIdentity { pid, start_ticks: stat.starttime })
    }

    /// True while the process runs (exited-but-unreaped counts as ended).
    pub fn is_running(&self) -> bool {
        u32::try_from(self.pid).ok().and_then(ProcessIdentity::of) == Some(*self)
    }

    /// Resolves once the process has ended, or once something else published an outcome
    /// on `published` (e.g. `destroy`, which saw the whole container die).
    pub async fn ended(&self, published: &mut watch::Receiver<Option<Outcome>>) {
        loop {
            if !self.is_running() || published.borrow().is_some() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(RECOVERED_POLL) => {}
                changed = published.changed() => {
                    if changed.is_err() {
                        // No publisher is left: keep polling the process alone.
                        tokio::time::sleep(RECOVERED_POLL).await;
                    }
                }
            }
        }
    }
}

/// Publishes `outcome` unless one was published already; true if this one was.
pub(crate) fn publish(sender: &watch::Sender<Option<Outcome>>, outcome: Outcome) -> bool {
    sender.send_if_modified(|slot| {
        if slot.is_some() {
            return false;
        }
        *slot = Some(outcome);
        true
    })
}
