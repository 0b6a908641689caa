//! Recovery helpers shared by both containerizers: what `recover` returns, how a
//! reattached main process (not our child, so it cannot be waited for) is watched, and
//! the termination reported when no exit status was recorded.

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::config::ContainerId;
use crate::status::{ExitStatusKind, Termination};
use crate::waiter::{StatusDir, StatusFile};

/// The exit code reported for a recovered container whose exit status was not recorded
/// (real codes are 0..=255): it was launched without a waiter (no state directory, or
/// an older version), or its status file is missing, empty or garbled. With a waiter,
/// the real status is reported instead (see [`crate::Containerizer::recover`]).
pub const UNKNOWN_EXIT_CODE: i32 = -1;

/// How the [`Termination::message`] of a container reported with
/// [`UNKNOWN_EXIT_CODE`] starts; the reason follows, e.g. "exit status unknown
/// (recovered container): no status file /var/lib/keel/meta/containers/c1 (launched
/// without a waiter?)".
pub const UNKNOWN_EXIT_MESSAGE: &str = "exit status unknown (recovered container)";

/// How often a reattached main process is checked for its end.
const RECOVERED_POLL: Duration = Duration::from_millis(100);

/// What [`Containerizer::recover`](crate::Containerizer::recover) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Known containers managed again, sorted: those whose main process still runs, and
    /// those whose main process ended while no containerizer watched but whose waiter
    /// left a status file (listed in `exited` too). `wait`, `signal`, `usage`,
    /// `update` and `destroy` work on all of them; call `destroy` once `wait` resolved.
    pub reattached: Vec<ContainerId>,
    /// The containers of `reattached` whose main process had already ended: their
    /// `wait` resolves at once, with the recorded status (or [`UNKNOWN_EXIT_CODE`] and
    /// the reason if the status file is empty or garbled); sorted.
    pub exited: Vec<ContainerId>,
    /// Known containers whose main process no longer runs and that have no status file
    /// (launched without a waiter): whatever was left of them was killed and their
    /// cgroups removed; sorted. Their tasks' fate is unknown.
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

/// The termination reported for a recovered container whose exit status was not
/// recorded, and why (see [`UNKNOWN_EXIT_CODE`]).
pub(crate) fn unknown_termination(reason: &str) -> Termination {
    Termination {
        status: ExitStatusKind::Exited(UNKNOWN_EXIT_CODE),
        message: format!("{UNKNOWN_EXIT_MESSAGE}: {reason}"),
        limitation: None,
    }
}

/// The termination of a recovered container whose main process has ended: what its
/// status file says (`None`: no state directory, so no file was ever written).
pub(crate) fn recorded_termination(statuses: Option<&StatusDir>, id: &ContainerId) -> Termination {
    let Some(statuses) = statuses else {
        return unknown_termination("no state directory, so no waiter recorded it");
    };
    let file = statuses.read(id);
    match file {
        StatusFile::Recorded(record) => record.termination(),
        other => {
            let reason = other.unknown_reason(&statuses.path(id)).unwrap_or_default();
            warn!(container_id = %id, %reason, "exit status of a recovered container is unknown");
            unknown_termination(&reason)
        }
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

    /// The identity of process `pid` whether or not it has exited (a zombie not yet
    /// reaped by its parent), with its process group and whether it has exited; `None`
    /// if there is no such process.
    pub fn of_any(pid: u32) -> Option<(Self, i32, bool)> {
        let pid = i32::try_from(pid).ok().filter(|pid| *pid > 1)?;
        let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
        let exited = matches!(stat.state, 'Z' | 'X' | 'x');
        Some((ProcessIdentity { pid, start_ticks: stat.starttime }, stat.pgrp, exited))
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
