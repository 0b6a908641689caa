//! Helpers shared by the isolation tests: temporary directories, deadlines, and
//! reading processes from /proc.
#![allow(dead_code)] // each test file uses part of it

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long any one step of a test may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A unique temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `keel-<prefix>-<pid>-<n>-<name>` under the system temporary directory.
    pub fn new(prefix: &str, name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique =
            format!("keel-{prefix}-{}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), name);
        TempDir(std::env::temp_dir().join(unique))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Awaits `future`, failing the test after [`DEADLINE`].
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("not done within {DEADLINE:?}"),
    }
}

/// Waits (observing, with a deadline) for `path` to hold a pid.
pub async fn read_pid_file(path: &Path) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(started.elapsed() < DEADLINE, "no pid in {}", path.display());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True if `pid` no longer runs: gone from /proc, or a zombie awaiting its reaper.
pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            matches!(state, Some('Z') | Some('X'))
        }
    }
}

/// A pid as the signed type nix wants.
pub fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).expect("pid fits in i32")
}
