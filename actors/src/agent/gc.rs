//! Sandbox garbage collection: a periodic scan of
//! `<work_dir>/frameworks/*/executors/*/runs/*` removes the sandboxes of containers
//! the agent no longer knows, once they have been left alone for `sandbox_gc_delay`.
//!
//! A sandbox is removed when its container is neither an executor of the agent (live
//! or terminated but still delivering updates), nor a container the agent watches, nor
//! one the containerizer has not destroyed, and both its last modification (of the
//! directory or a file directly in it) and the first scan of this agent process that
//! found it unknown are older than the delay. So a restarted agent waits a full delay
//! before removing anything, and a sandbox is never removed while its container runs.
//!
//! The scan and the removals run on blocking threads; the agent decides in between
//! (`SandboxGc::due`, pure: time is an argument). Emptied executor and framework
//! directories are removed on the agent's own thread, where no launch (which creates
//! sandboxes synchronously) can run at the same time. The next tick is armed when a
//! round is over, every `min(delay, 60 s)` (at least 100 ms).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use keel_kernel::{Handle, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

use super::Agent;

/// The longest time between two scans.
const MAX_SCAN_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest time between two scans.
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// The most sandboxes one scan looks at (the rest wait for later rounds).
const MAX_SCANNED_SANDBOXES: usize = 100_000;

/// Time for a garbage collection round.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct GcTick {}
keel_kernel::message!(GcTick, "keel.agent.GcTick");

/// A sandbox directory found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    /// `<work_dir>/frameworks/<fid>/executors/<eid>/runs/<container>`.
    pub path: PathBuf,
    /// The container id (the directory's name).
    pub container: String,
    /// The newest modification time of the directory and of its direct entries.
    pub modified: SystemTime,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Sandbox directories.
    pub runs: Vec<RunDir>,
    /// Framework, `executors`, executor and `runs` directories with nothing in them.
    pub empty: Vec<PathBuf>,
}

/// The collector's memory between rounds, and its counters.
#[derive(Debug, Default)]
pub struct SandboxGc {
    /// When this agent process first found each unknown sandbox.
    unknown_since: HashMap<PathBuf, SystemTime>,
    /// Sandboxes removed.
    pub removals_succeeded: u64,
    /// Removals that failed (retried at the next round).
    pub removals_failed: u64,
}

impl SandboxGc {
    /// Decides which scanned sandboxes to remove at `now`: those whose container is
    /// not in `known` and that have been left alone for `delay`. Remembers when each
    /// unknown sandbox was first seen and forgets those that are gone or known.
    pub fn due(
        &mut self,
        runs: &[RunDir],
        known: &HashSet<String>,
        now: SystemTime,
        delay: Duration,
    ) -> Vec<PathBuf> {
        let unknown: Vec<&RunDir> = runs.iter().filter(|r| !known.contains(&r.container)).collect();
        let present: HashSet<&Path> = unknown.iter().map(|r| r.path.as_path()).collect();
        self.unknown_since.retain(|path, _| present.contains(path.as_path()));
        let mut due = Vec::new();
        for run in unknown {
            let since = *self.unknown_since.entry(run.path.clone()).or_insert(now);
            let quiet_since = since.max(run.modified);
            if now.duration_since(quiet_since).is_ok_and(|age| age >= delay) {
                due.push(run.path.clone());
            }
        }
        due
    }

    /// Pending removals: unknown sandboxes waiting for their delay.
    pub fn pending(&self) -> usize {
        self.unknown_since.len()
    }

    fn removed(&mut self, path: &Path, ok: bool) {
        self.unknown_since.remove(path);
        if ok {
            self.removals_succeeded += 1;
        } else {
            self.removals_failed += 1;
        }
    }
}

/// How often to scan for a given delay.
pub fn scan_interval(delay: Duration) -> Duration {
    delay.clamp(MIN_SCAN_INTERVAL, MAX_SCAN_INTERVAL)
}

/// Real directories (not symlinks) in `dir`, by path.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = std::fs::read_dir(dir) else { return Vec::new() };
    listing
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut listing| listing.next().is_none())
}

/// The newest modification time of `dir` and its direct entries (not following links).
fn newest_modification(dir: &Path, own: SystemTime) -> SystemTime {
    let Ok(listing) = std::fs::read_dir(dir) else { return own };
    listing
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .fold(own, SystemTime::max)
}

/// Lists the sandboxes under `frameworks` (`<work_dir>/frameworks`). Blocking.
pub fn scan(frameworks: &Path) -> Scan {
    let mut out = Scan::default();
    for framework in subdirectories(frameworks) {
        let executors = framework.join("executors");
        for executor in subdirectories(&executors) {
            let runs = executor.join("runs");
            for run in subdirectories(&runs) {
                if out.runs.len() >= MAX_SCANNED_SANDBOXES {
                    return out;
                }
                let Some(container) = run.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                    continue;
                };
                let Ok(own) = std::fs::symlink_metadata(&run).and_then(|m| m.modified()) else { continue };
                let modified = newest_modification(&run, own);
                out.runs.push(RunDir { path: run, container, modified });
            }
            out.empty.extend([runs, executor].into_iter().filter(|d| is_empty_dir(d)));
        }
        out.empty.extend([executors, framework].into_iter().filter(|d| is_empty_dir(d)));
    }
    out
}

/// Removes sandboxes. Blocking.
pub fn remove(paths: Vec<PathBuf>) -> Vec<(PathBuf, Result<(), String>)> {
    paths
        .into_iter()
        .map(|path| {
            let result = match std::fs::remove_dir_all(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            (path, result)
        })
        .collect()
}

/// Removes `dir` and then its parents while they are empty, up to (not including)
/// `frameworks`. Each `remove_dir` only succeeds on an empty directory.
fn remove_empty_up_to(frameworks: &Path, dir: &Path) {
    let mut current = Some(dir);
    while let Some(dir) = current.filter(|d| d.starts_with(frameworks) && *d != frameworks) {
        if std::fs::remove_dir(dir).is_err() {
            return;
        }
        current = dir.parent();
    }
}

impl Agent {
    /// Arms the first garbage collection round.
    pub(super) fn start_sandbox_gc(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        ctx.delay(scan_interval(self.config.sandbox_gc_delay), GcTick {});
    }

    fn frameworks_dir(&self) -> PathBuf {
        self.config.work_dir.join("frameworks")
    }

    /// Containers whose sandboxes must stay: every executor the agent has (running or
    /// finishing), every container it watches, every one not yet destroyed.
    fn known_containers(&self) -> HashSet<String> {
        let known = self.core.known_containers().into_iter();
        let launched = self.config.containerizer.containers().into_iter().map(|c| c.0);
        known.chain(launched).collect()
    }

    fn gc_scanned(&mut self, ctx: &mut ProcessContext<'_, Self>, scan: Scan) {
        let known = self.known_containers();
        let due = self.sandbox_gc.due(&scan.runs, &known, SystemTime::now(), self.config.sandbox_gc_delay);
        let frameworks = self.frameworks_dir();
        for dir in &scan.empty {
            remove_empty_up_to(&frameworks, dir);
        }
        if due.is_empty() {
            self.start_sandbox_gc(ctx);
            return;
        }
        let removal = tokio::task::spawn_blocking(move || remove(due));
        ctx.spawn(removal, move |agent: &mut Agent, ctx, result| {
            for (path, outcome) in result.unwrap_or_default() {
                agent.sandbox_gc.removed(&path, outcome.is_ok());
                match outcome {
                    Ok(()) => {
                        tracing::info!(sandbox = %path.display(), "garbage collected a sandbox");
                        if let Some(runs) = path.parent() {
                            remove_empty_up_to(&frameworks, runs);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(sandbox = %path.display(), %error, "cannot garbage collect a sandbox")
                    }
                }
            }
            agent.start_sandbox_gc(ctx);
        });
    }
}

impl Handle<GcTick> for Agent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: GcTick) {
        if &from != ctx.upid() {
            return;
        }
        let frameworks = self.frameworks_dir();
        let scan = tokio::task::spawn_blocking(move || scan(&frameworks));
        ctx.spawn(scan, |agent: &mut Agent, ctx, result| match result {
            Ok(scan) => agent.gc_scanned(ctx, scan),
            Err(error) => {
                tracing::warn!(%error, "sandbox scan failed");
                agent.start_sandbox_gc(ctx);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, container: &str, modified: SystemTime) -> RunDir {
        RunDir { path: PathBuf::from(path), container: container.into(), modified }
    }

    #[test]
    fn unknown_sandboxes_go_after_the_delay_known_ones_never() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let delay = Duration::from_secs(10);
        let runs = vec![run("/w/a", "a", t0), run("/w/b", "b", t0)];
        let known: HashSet<String> = ["a".to_string()].into();
        let mut gc = SandboxGc::default();
        // First seen now: not yet, even though the directory is old.
        assert!(gc.due(&runs, &known, t0 + Duration::from_secs(100), delay).is_empty());
        assert_eq!(gc.pending(), 1);
        assert!(gc.due(&runs, &known, t0 + Duration::from_secs(105), delay).is_empty());
        assert_eq!(gc.due(&runs, &known, t0 + Duration::from_secs(110), delay), vec![PathBuf::from("/w/b")]);
        // A known container is never due, however old.
        let all: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        assert!(gc.due(&runs, &all, t0 + Duration::from_secs(10_000), delay).is_empty());
        assert_eq!(gc.pending(), 0);
    }

    #[test]
    fn recent_writes_postpone_collection() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let delay = Duration::from_secs(10);
        let mut gc = SandboxGc::default();
        let known = HashSet::new();
        assert!(gc.due(&[run("/w/c", "c", t0)], &known, t0, delay).is_empty());
        let written = t0 + Duration::from_secs(8);
        assert!(gc.due(&[run("/w/c", "c", written)], &known, t0 + Duration::from_secs(12), delay).is_empty());
        assert_eq!(
            gc.due(&[run("/w/c", "c", written)], &known, t0 + Duration::from_secs(18), delay).len(),
            1
        );
        // A clock that went backwards removes nothing.
        let mut fresh = SandboxGc::default();
        assert!(fresh.due(&[run("/w/d", "d", t0 + delay * 5)], &known, t0, Duration::ZERO).is_empty());
    }

    #[test]
    fn scan_finds_sandboxes_and_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let frameworks = dir.path().join("frameworks");
        std::fs::create_dir_all(frameworks.join("F/executors/E/runs/C1")).unwrap();
        std::fs::write(frameworks.join("F/executors/E/runs/C1/stdout"), "x").unwrap();
        std::fs::create_dir_all(frameworks.join("F/executors/EMPTY/runs")).unwrap();
        std::fs::create_dir_all(frameworks.join("G")).unwrap();
        // A symlink where a sandbox would be is not followed.
        std::os::unix::fs::symlink("/", frameworks.join("F/executors/E/runs/ROOT")).unwrap();
        let scan = scan(&frameworks);
        assert_eq!(scan.runs.len(), 1);
        assert_eq!(scan.runs[0].container, "C1");
        assert!(scan.empty.contains(&frameworks.join("F/executors/EMPTY/runs")));
        assert!(scan.empty.contains(&frameworks.join("G")));
        for empty in &scan.empty {
            remove_empty_up_to(&frameworks, empty);
        }
        assert!(!frameworks.join("F/executors/EMPTY").exists());
        assert!(!frameworks.join("G").exists());
        let removed = remove(vec![scan.runs[0].path.clone()]);
        assert!(removed[0].1.is_ok());
        remove_empty_up_to(&frameworks, &frameworks.join("F/executors/E/runs"));
        // The symlink keeps `runs` non-empty; nothing above it goes.
        assert!(frameworks.join("F/executors/E/runs").exists());
        std::fs::remove_file(frameworks.join("F/executors/E/runs/ROOT")).unwrap();
        remove_empty_up_to(&frameworks, &frameworks.join("F/executors/E/runs"));
        assert!(!frameworks.join("F").exists());
        assert!(frameworks.exists());
    }
}
