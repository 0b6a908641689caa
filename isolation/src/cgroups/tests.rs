//! cgroup v2 mechanics (joining before exec, with and without a waiter, `cgroup.kill`,
//! freeze-kill-thaw, removal) on any writable cgroup2 mount, even one without
//! controllers such as the hybrid layout's `/sys/fs/cgroup/unified`. The isolators need controllers: they are covered
//! by `tests/cgroups.rs` on whichever version the machine offers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cgroup::ContainerCgroup;
use super::hierarchy::Layout;
use super::kill::{freeze_kill_thaw, kill_all};
use crate::config::{ContainerConfig, ContainerId, LaunchCommand, Limits};
use crate::posix::launch::{self, Mode};
use crate::waiter::StatusDir;

/// A cgroup2 mount point of this process, if any.
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    mounts.into_iter().find(|mount| mount.fs_type == "cgroup2").map(|mount| mount.mount_point)
}

fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

async fn read_pid(path: &Path) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|text| text.trim().parse().ok()) {
            return pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no pid in {}", path.display());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Launches a shell with a setsid grandchild in `cgroup` (behind a waiter recording into
/// `status_file` if given); returns the main pid, the grandchild's pid and a flag set
/// once the main process is reaped.
async fn launch_tree(
    cgroup: &ContainerCgroup,
    sandbox: &Path,
    status_file: Option<std::fs::File>,
) -> (i32, i32, Arc<AtomicBool>) {
    let script = "setsid sh -c 'echo $$ > grandchild.pid; exec sleep 300' & exec sleep 300";
    let config = ContainerConfig::new(
        "v2",
        LaunchCommand::Shell(script.into()),
        sandbox,
        Limits { cpus: 1.0, mem_bytes: None, pids: None },
    );
    let cgroup_procs = cgroup.open_procs_for_join().unwrap();
    let mut child =
        launch::spawn(&config, &launch::base_env(), Mode::Session { cgroup_procs }, status_file).unwrap();
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    let reaped = Arc::new(AtomicBool::new(false));
    let flag = reaped.clone();
    tokio::spawn(async move {
        let _ = child.wait().await;
        flag.store(true, Ordering::SeqCst);
    });
    let grandchild = read_pid(&sandbox.join("grandchild.pid")).await;
    (pid, grandchild, reaped)
}

#[tokio::test(flavor = "current_thread")]
async fn v2_children_join_before_exec_and_die_with_their_cgroup() {
    let Some(mount) = cgroup2_mount() else {
        let _ = writeln!(std::io::stderr(), "SKIPPING v2 mechanics: no cgroup2 mount");
        return;
    };
    let root = PathBuf::from(format!("keel-unit-{}", std::process::id()));
    let root_dir = mount.join(&root);
    if let Err(error) = std::fs::create_dir_all(&root_dir) {
        assert_ne!(
            std::env::var("KEEL_REQUIRE_CGROUPS").as_deref(),
            Ok("1"),
            "cgroup2 not writable: {error}"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPING v2 mechanics: {} not writable: {error}",
            root_dir.display()
        );
        return;
    }
    let layout = Arc::new(Layout::v2_at(mount, &root));
    let sandbox = std::env::temp_dir().join(format!("keel-unit-v2-{}", std::process::id()));

    let statuses = StatusDir::new(sandbox.join("state"));
    for use_kill_file in [true, false] {
        let id = ContainerId(format!("c-{use_kill_file}"));
        let cgroup = ContainerCgroup::new(layout.clone(), id.clone());
        cgroup.create().unwrap();
        // The first tree behind a waiter: it joined the cgroup before forking the task.
        let status_file = use_kill_file.then(|| statuses.create(&id).unwrap());
        let (pid, grandchild, reaped) = launch_tree(&cgroup, &sandbox, status_file).await;
        let procs = cgroup.procs().unwrap();
        assert!(procs.contains(&pid) && procs.contains(&grandchild), "{procs:?} lacks {pid} or {grandchild}");
        assert_eq!(procs.len(), if use_kill_file { 3 } else { 2 }, "{procs:?}: (waiter,) task, grandchild");

        if !use_kill_file {
            // The path for kernels without cgroup.kill: freeze, SIGKILL, thaw.
            freeze_kill_thaw(&cgroup).await.unwrap();
        }
        let main_ended = || reaped.load(Ordering::SeqCst);
        kill_all(&ContainerId("v2".into()), &cgroup, pid as u32, &main_ended).await.unwrap();
        assert!(is_gone(pid) && is_gone(grandchild), "survivors among {pid}, {grandchild}");
        cgroup.remove().await.unwrap();
        assert!(!cgroup.exists());
        let _ = std::fs::remove_file(sandbox.join("grandchild.pid"));
    }
    let _ = std::fs::remove_dir_all(&sandbox);
    std::fs::remove_dir(&root_dir).unwrap();
}
