//! A snapshot of `/proc` and the rule deciding which processes belong to a container
//! (process group, ancestry, and pids remembered from earlier scans).
//!
//! Without cgroups, membership is inferred. A process belongs to a container if it is
//! - the main process, while it is not yet reaped;
//! - in the container's process group (pgid = main pid), unless the main process was
//!   reaped and its pid now belongs to some other live process (pid reuse: then the
//!   group is not ours);
//! - a process seen as a member by an earlier scan, with the same start time (so a
//!   reused pid is not mistaken for it);
//! - or a descendant of any of the above, by parent pid.
//!
//! Limitation: a process that left the process group (`setsid`, `setpgid`) and whose
//! parent then exited is reparented to init and no longer traceable, unless an earlier
//! scan (`usage` or `destroy`) remembered it. The cgroups isolators remove this gap.

use std::collections::{HashMap, HashSet};
use std::io;

/// One process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Start time in clock ticks after boot; with the pid, identifies a process.
    pub start_ticks: u64,
    /// User CPU time, own plus reaped children's, in clock ticks.
    pub user_ticks: u64,
    /// System CPU time, own plus reaped children's, in clock ticks.
    pub system_ticks: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

impl ProcInfo {
    /// True if the process has exited (zombie or dead) and only awaits reaping.
    pub fn is_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Which container to look for in a [`ProcTable`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// The main process's pid, which is also the container's process group id.
    pub pgid: i32,
    /// Whether the main process has been reaped (its pid may then be reused).
    pub main_reaped: bool,
    /// The main process's start time, when known for a main process this containerizer
    /// did not reap itself (a recovered container): while a process with this pid and
    /// start time exists (e.g. a zombie its new parent has not reaped), it is the main
    /// process and the group is still the container's.
    pub main_start_ticks: Option<u64>,
    /// Members remembered from earlier scans: pid -> start ticks.
    pub known: &'a HashMap<i32, u64>,
}

/// All processes at one moment, indexed by pid and by parent.
#[derive(Debug, Default)]
pub(crate) struct ProcTable {
    by_pid: HashMap<i32, ProcInfo>,
    children: HashMap<i32, Vec<i32>>,
}

impl ProcTable {
    /// Reads every `/proc/<pid>/stat`; processes that vanish during the walk are skipped.
    pub fn read() -> io::Result<Self> {
        let processes = procfs::process::all_processes().map_err(io::Error::other)?;
        let infos = processes.filter_map(|process| {
            let stat = process.ok()?.stat().ok()?;
            Some(ProcInfo {
                pid: stat.pid,
                ppid: stat.ppid,
                pgrp: stat.pgrp,
                state: stat.state,
                start_ticks: stat.starttime,
                user_ticks: stat.utime.saturating_add(u64::try_from(stat.cutime).unwrap_or(0)),
                system_ticks: stat.stime.saturating_add(u64::try_from(stat.cstime).unwrap_or(0)),
                rss_pages: stat.rss,
            })
        });
        Ok(Self::from_procs(infos))
    }

    /// A table of the given processes.
    pub fn from_procs(procs: impl IntoIterator<Item = ProcInfo>) -> Self {
        let mut table = ProcTable::default();
        for info in procs {
            table.children.entry(info.ppid).or_default().push(info.pid);
            table.by_pid.insert(info.pid, info);
        }
        table
    }

    /// Whether the process group `scope.pgid` is still the container's: true unless the
    /// main process was reaped and another process now has its pid.
    pub fn owns_group(&self, scope: &Scope<'_>) -> bool {
        if !scope.main_reaped {
            return true;
        }
        match self.by_pid.get(&scope.pgid) {
            None => true,
            Some(process) => scope.main_start_ticks == Some(process.start_ticks),
        }
    }

    /// The container's processes (including exited, unreaped ones), sorted by pid.
    /// Never includes pid 1 or the calling process.
    pub fn members(&self, scope: &Scope<'_>) -> Vec<&ProcInfo> {
        let mut roots: Vec<i32> = Vec::new();
        if !scope.main_reaped && self.by_pid.contains_key(&scope.pgid) {
            roots.push(scope.pgid);
        }
        if self.owns_group(scope) {
            roots.extend(self.by_pid.values().filter(|p| p.pgrp == scope.pgid).map(|p| p.pid));
        }
        roots.extend(
            scope
                .known
                .iter()
                .filter(|(pid, start)| self.by_pid.get(pid).is_some_and(|p| p.start_ticks == **start))
                .map(|(pid, _)| *pid),
        );

        let own_pid = i32::try_from(std::process::id()).unwrap_or(0);
        let mut seen: HashSet<i32> = HashSet::new();
        while let Some(pid) = roots.pop() {
            if pid <= 1 || pid == own_pid || !seen.insert(pid) {
                continue;
            }
            if let Some(children) = self.children.get(&pid) {
                roots.extend(children.iter().copied());
            }
        }
        let mut members: Vec<&ProcInfo> = seen.iter().filter_map(|pid| self.by_pid.get(pid)).collect();
        members.sort_by_key(|p| p.pid);
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, ppid: i32, pgrp: i32) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            pgrp,
            state: 'S',
            start_ticks: 100 + pid as u64,
            user_ticks: 0,
            system_ticks: 0,
            rss_pages: 0,
        }
    }

    fn pids(members: Vec<&ProcInfo>) -> Vec<i32> {
        members.iter().map(|p| p.pid).collect()
    }

    #[test]
    fn group_members_and_escaped_descendants_belong() {
        let known = HashMap::new();
        let table = ProcTable::from_procs([
            proc(1, 0, 1),
            proc(50, 1, 50),   // unrelated
            proc(100, 1, 100), // main
            proc(101, 100, 100),
            proc(102, 101, 102), // left the group, parent still in the tree
            proc(103, 102, 102), // its child
            proc(200, 1, 100),   // orphan still in the group
        ]);
        let scope = Scope { pgid: 100, main_reaped: false, main_start_ticks: None, known: &known };
        assert_eq!(pids(table.members(&scope)), vec![100, 101, 102, 103, 200]);
    }

    #[test]
    fn reused_main_pid_is_not_ours() {
        let known = HashMap::new();
        // The main process 100 was reaped and pid 100 now leads an unrelated group.
        let table = ProcTable::from_procs([proc(1, 0, 1), proc(100, 1, 100), proc(101, 100, 100)]);
        let scope = Scope { pgid: 100, main_reaped: true, main_start_ticks: None, known: &known };
        assert!(!table.owns_group(&scope));
        assert!(table.members(&scope).is_empty());
        // Unless it is the recovered main process itself, e.g. a zombie nobody reaped.
        let own = Scope { pgid: 100, main_reaped: true, main_start_ticks: Some(200), known: &known };
        assert!(table.owns_group(&own));
        assert_eq!(pids(table.members(&own)), vec![100, 101]);
        let other = Scope { main_start_ticks: Some(7), ..own };
        assert!(!table.owns_group(&other));
    }

    #[test]
    fn remembered_pids_count_only_with_the_same_start_time() {
        let mut known = HashMap::new();
        known.insert(300, 100 + 300); // same process
        known.insert(301, 7); // pid reused by another process
        let table = ProcTable::from_procs([proc(1, 0, 1), proc(300, 1, 300), proc(301, 1, 301)]);
        let scope = Scope { pgid: 100, main_reaped: true, main_start_ticks: None, known: &known };
        assert_eq!(pids(table.members(&scope)), vec![300]);
    }
}
