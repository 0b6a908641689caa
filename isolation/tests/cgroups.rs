//! CgroupsContainerizer against real cgroups (run as root): memory limit and OOM
//! report, CFS quota, pids limit, tree killing (setsid grandchildren, daemons), usage,
//! update and recover, all with a waiter per container (a state directory). Each test
//! skips with a loud notice where cgroups are not writable, unless
//! `KEEL_REQUIRE_CGROUPS=1` (CI), which turns the skip into a failure.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{is_gone, pid_i32, read_pid_file, within, TempDir, DEADLINE};
use keel_isolation::{
    CgroupsConfig, CgroupsContainerizer, ContainerConfig, ContainerId, Containerizer, ExitStatusKind,
    IsolationError, LaunchCommand, Limitation, Limits,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const MIB: u64 = 1024 * 1024;

/// The cgroup root of one test in this test process: parallel runs and the tests of
/// one run never share a root, so one test's cleanup cannot remove another's.
fn test_root(test: &str, suffix: &str) -> String {
    format!("keel-test-{}-{test}{suffix}", std::process::id())
}

/// The state directory (waiters' status files) of one test's containerizer.
fn test_state_dir(test: &str, suffix: &str) -> PathBuf {
    std::env::temp_dir().join(test_root(test, suffix))
}

/// A containerizer under `keel-test-<pid>-<test><suffix>`, with its state directory in
/// the temporary directory, or `None` (after a loud notice) where cgroups are not
/// writable; panics instead under `KEEL_REQUIRE_CGROUPS=1`.
fn cgroups_available(test: &str, suffix: &str) -> Option<CgroupsContainerizer> {
    let config = CgroupsConfig {
        root: test_root(test, suffix),
        cfs_quota: true,
        state_dir: Some(test_state_dir(test, suffix)),
    };
    match CgroupsContainerizer::new(config) {
        Ok(containerizer) => Some(containerizer),
        Err(error) => {
            if std::env::var("KEEL_REQUIRE_CGROUPS").as_deref() == Ok("1") {
                panic!("KEEL_REQUIRE_CGROUPS=1 but cgroups are not writable: {error}");
            }
            // Written to the stderr handle, not with eprintln!, so the test harness
            // does not capture it: a skip must be seen.
            let _ = writeln!(std::io::stderr(), "SKIPPING {test}: cgroups not writable: {error}");
            None
        }
    }
}

/// Cleanup for tests that fail half-way: SIGKILLs (by pid) every process left in the
/// given cgroup directories and in `pids`, then removes the directories, the
/// containerizer's root (which fails harmlessly while other tests still use it) and
/// the state directory.
struct Cleanup {
    dirs: Vec<PathBuf>,
    roots: Vec<PathBuf>,
    pids: Vec<i32>,
    state_dir: Option<PathBuf>,
}

impl Cleanup {
    fn new(containerizer: &CgroupsContainerizer) -> Self {
        Cleanup { dirs: Vec::new(), roots: containerizer.root_dirs(), pids: Vec::new(), state_dir: None }
    }

    /// Also removes `test`'s state directory.
    fn with_state(mut self, test: &str, suffix: &str) -> Self {
        self.state_dir = Some(test_state_dir(test, suffix));
        self
    }

    fn watch(&mut self, containerizer: &CgroupsContainerizer, id: &ContainerId) {
        self.dirs.extend(containerizer.cgroup_dirs(id).unwrap());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        for dir in &self.dirs {
            for pid in procs_of(dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        for dir in self.dirs.iter().chain(&self.roots) {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(dir) = &self.state_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn procs_of(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// The first of `dirs` that has `file`, joined with it.
fn cgroup_file(dirs: &[PathBuf], file: &str) -> PathBuf {
    dirs.iter()
        .map(|dir| dir.join(file))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no {file} in {dirs:?}"))
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_owned()
}

fn limits(cpus: f64, mem_mb: u64, pids: Option<u64>) -> Limits {
    Limits { cpus, mem_bytes: Some(mem_mb * MIB), pids }
}

fn shell(id: &ContainerId, script: &str, sandbox: &Path, limits: Limits) -> ContainerConfig {
    ContainerConfig::new(id.clone(), LaunchCommand::Shell(script.into()), sandbox, limits)
}

/// A container id unique to this test process.
fn unique_id(name: &str) -> ContainerId {
    ContainerId(format!("{name}-{}", std::process::id()))
}

/// The session id of `pid` (field 6 of /proc/<pid>/stat).
fn session_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn memory_hog_is_oom_killed_and_reported_with_limit_and_peak() {
    let Some(containerizer) = cgroups_available("memory_hog", "") else { return };
    let mut cleanup = Cleanup::new(&containerizer).with_state("memory_hog", "");
    let dir = TempDir::new("cgroups", "oom");
    let id = unique_id("oom");
    // tail buffers /dev/zero looking for a newline: memory grows without bound.
    let config = ContainerConfig::new(
        id.clone(),
        LaunchCommand::Exec { program: "tail".into(), args: vec!["/dev/zero".into()] },
        dir.path(),
        limits(1.0, 64, None),
    );
    containerizer.launch(config).unwrap();
    cleanup.watch(&containerizer, &id);

    let termination = within(containerizer.wait(&id)).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Signaled(9), "{termination:?}");
    match termination.limitation {
        Some(Limitation::Memory { limit_bytes, peak_bytes }) => {
            assert_eq!(limit_bytes, 64 * MIB);
            assert!(peak_bytes >= 60 * MIB, "peak {peak_bytes} is far below the limit");
            assert!(peak_bytes <= 65 * MIB, "peak {peak_bytes} is above the limit");
        }
        other => panic!("expected a memory limitation, got {other:?}"),
    }
    within(containerizer.destroy(&id)).await.unwrap();
    assert!(containerizer.cgroup_dirs(&id).is_err());
    assert!(cleanup.dirs.iter().all(|dir| !dir.exists()), "cgroups left: {:?}", cleanup.dirs);
}

#[tokio::test(flavor = "current_thread")]
async fn busy_loop_with_half_a_cpu_uses_about_half_a_core() {
    let Some(containerizer) = cgroups_available("busy_loop", "") else { return };
    let mut cleanup = Cleanup::new(&containerizer).with_state("busy_loop", "");
    let dir = TempDir::new("cgroups", "quota");
    let id = unique_id("quota");
    containerizer.launch(shell(&id, "while :; do :; done", dir.path(), limits(0.5, 64, None))).unwrap();
    cleanup.watch(&containerizer, &id);
    let dirs = containerizer.cgroup_dirs(&id).unwrap();
    match containerizer.name() {
        "cgroups-v1" => {
            assert_eq!(read_trimmed(&cgroup_file(&dirs, "cpu.shares")), "512");
            assert_eq!(read_trimmed(&cgroup_file(&dirs, "cpu.cfs_quota_us")), "50000");
            assert_eq!(read_trimmed(&cgroup_file(&dirs, "cpu.cfs_period_us")), "100000");
        }
        _ => assert_eq!(read_trimmed(&cgroup_file(&dirs, "cpu.max")), "50000 100000"),
    }

    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = |usage: keel_isolation::Usage| usage.cpu_user_secs + usage.cpu_system_secs;
    let before = containerizer.usage(&id).unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = containerizer.usage(&id).unwrap();
    let cores = (cpu(after) - cpu(before)) / started.elapsed().as_secs_f64();
    eprintln!("busy loop with cpus=0.5 used {cores:.3} cores");
    assert!((0.3..=0.7).contains(&cores), "used {cores:.3} cores, expected about 0.5");
    within(containerizer.destroy(&id)).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn fork_bomb_is_contained_by_the_pids_limit() {
    let Some(containerizer) = cgroups_available("fork_bomb", "") else { return };
    let mut cleanup = Cleanup::new(&containerizer).with_state("fork_bomb", "");
    let dir = TempDir::new("cgroups", "pids");
    let id = unique_id("pids");
    let script = "for i in $(seq 200); do sleep 30 & done; wait";
    containerizer.launch(shell(&id, script, dir.path(), limits(1.0, 128, Some(20)))).unwrap();
    cleanup.watch(&containerizer, &id);
    let dirs = containerizer.cgroup_dirs(&id).unwrap();
    // The waiter has a pid of its own in the cgroup; the task gets its 20.
    assert_eq!(read_trimmed(&cgroup_file(&dirs, "pids.max")), "21");

    // The shell hits the limit: fork fails and it says so on stderr.
    let started = Instant::now();
    while std::fs::metadata(dir.path().join("stderr")).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(started.elapsed() < DEADLINE, "the fork bomb never hit the limit");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let current: u64 = read_trimmed(&cgroup_file(&dirs, "pids.current")).parse().unwrap();
    assert!(current <= 21, "pids.current = {current}");
    let usage = containerizer.usage(&id).unwrap();
    assert!(usage.processes >= 2 && usage.processes <= 20, "{usage:?}");
    let members: Vec<i32> = dirs.iter().flat_map(|dir| procs_of(dir)).collect();
    cleanup.pids = members.clone();

    within(containerizer.destroy(&id)).await.unwrap();
    let survivors: Vec<i32> = members.into_iter().filter(|pid| !is_gone(*pid)).collect();
    assert!(survivors.is_empty(), "survivors: {survivors:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn destroy_kills_a_grandchild_that_called_setsid() {
    let Some(containerizer) = cgroups_available("setsid_grandchild", "") else { return };
    let mut cleanup = Cleanup::new(&containerizer).with_state("setsid_grandchild", "");
    let dir = TempDir::new("cgroups", "setsid");
    let id = unique_id("setsid");
    let script = "setsid sh -c 'echo $$ > grandchild.pid; exec sleep 300' & sleep 300";
    let pid = pid_i32(containerizer.launch(shell(&id, script, dir.path(), limits(0.5, 64, None))).unwrap());
    cleanup.watch(&containerizer, &id);
    let grandchild = read_pid_file(&dir.path().join("grandchild.pid")).await;
    cleanup.pids = vec![grandchild];

    // The main process leads its own session; the grandchild left it, not the cgroup.
    assert_eq!(session_of(pid), pid);
    assert_eq!(session_of(grandchild), grandchild);
    let dirs = containerizer.cgroup_dirs(&id).unwrap();
    assert!(dirs.iter().all(|dir| procs_of(dir).contains(&grandchild)), "grandchild not in every cgroup");

    let waiter = containerizer.wait(&id);
    within(containerizer.destroy(&id)).await.unwrap();
    assert!(is_gone(pid), "main process {pid} survived");
    assert!(is_gone(grandchild), "setsid grandchild {grandchild} survived");
    assert_eq!(within(waiter).await.unwrap().status, ExitStatusKind::Signaled(9));
}

#[tokio::test(flavor = "current_thread")]
async fn destroy_kills_the_daemon_of_an_executor_that_exited() {
    let Some(containerizer) = cgroups_available("daemon", "") else { return };
    let mut cleanup = Cleanup::new(&containerizer).with_state("daemon", "");
    let dir = TempDir::new("cgroups", "daemon");
    let id = unique_id("daemon");
    let script = "setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' & exit 0";
    containerizer.launch(shell(&id, script, dir.path(), limits(0.5, 64, None))).unwrap();
    cleanup.watch(&containerizer, &id);
    let daemon = read_pid_file(&dir.path().join("daemon.pid")).await;
    cleanup.pids = vec![daemon];

    let termination = within(containerizer.wait(&id)).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Exited(0));
    assert_eq!(termination.limitation, None);
    assert!(!is_gone(daemon));
    // The signal reaches it too: the cgroup knows every process.
    assert_eq!(containerizer.usage(&id).unwrap().processes, 1);

    within(containerizer.destroy(&id)).await.unwrap();
    assert!(is_gone(daemon), "daemon {daemon} survived destroy");
}

#[tokio::test(flavor = "current_thread")]
async fn usage_of_a_short_busy_process_is_plausible() {
    let Some(containerizer) = cgroups_available("usage", "") else { return };
    let mut cleanup = Cleanup::new(&containerizer).with_state("usage", "");
    let dir = TempDir::new("cgroups", "usage");
    let id = unique_id("usage");
    let started = Instant::now();
    // About 4 MB in a shell variable, then a busy loop.
    let script = "x=$(head -c 4000000 /dev/zero | tr '\\0' x); while :; do :; done";
    containerizer.launch(shell(&id, script, dir.path(), limits(0.5, 64, Some(100)))).unwrap();
    cleanup.watch(&containerizer, &id);
    let usage = loop {
        let usage = containerizer.usage(&id).unwrap();
        if usage.cpu_user_secs + usage.cpu_system_secs >= 0.3 {
            break usage;
        }
        assert!(started.elapsed() < DEADLINE, "no cpu time: {usage:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    eprintln!("usage after {wall:.2}s: {usage:?}");
    assert!(usage.cpu_user_secs > 0.0, "{usage:?}");
    assert!(
        usage.cpu_user_secs + usage.cpu_system_secs <= wall * 0.5 + 0.2,
        "more cpu than the quota: {usage:?}"
    );
    assert!(usage.rss_bytes >= 4 * MIB && usage.rss_bytes < 64 * MIB, "{usage:?}");
    assert_eq!(usage.processes, 1, "{usage:?}");
    assert_eq!(usage.mem_limit_bytes, Some(64 * MIB));
    let peak = usage.mem_peak_bytes.expect("a peak with cgroups");
    assert!(peak >= usage.rss_bytes && peak < 64 * MIB, "{usage:?}");

    // A signal reaches the container; its termination reports it.
    containerizer.signal(&id, Signal::SIGTERM as i32).unwrap();
    let termination = within(containerizer.wait(&id)).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Signaled(15));
    within(containerizer.destroy(&id)).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn update_changes_the_limits_of_a_running_container() {
    let Some(containerizer) = cgroups_available("update", "") else { return };
    let mut cleanup = Cleanup::new(&containerizer).with_state("update", "");
    let dir = TempDir::new("cgroups", "update");
    let id = unique_id("update");
    containerizer.launch(shell(&id, "exec sleep 300", dir.path(), limits(0.5, 64, Some(10)))).unwrap();
    cleanup.watch(&containerizer, &id);
    let dirs = containerizer.cgroup_dirs(&id).unwrap();
    let memory_file =
        if containerizer.name() == "cgroups-v1" { "memory.limit_in_bytes" } else { "memory.max" };
    assert_eq!(read_trimmed(&cgroup_file(&dirs, memory_file)), (64 * MIB).to_string());

    containerizer.update(&id, limits(2.0, 128, Some(50))).unwrap();
    assert_eq!(read_trimmed(&cgroup_file(&dirs, memory_file)), (128 * MIB).to_string());
    assert_eq!(read_trimmed(&cgroup_file(&dirs, "pids.max")), "51", "50 and the waiter");
    assert_eq!(containerizer.usage(&id).unwrap().mem_limit_bytes, Some(128 * MIB));

    let bad = containerizer.update(&id, Limits { cpus: 1.0, mem_bytes: Some(0), pids: None });
    assert!(matches!(bad, Err(IsolationError::InvalidConfig { .. })), "{bad:?}");
    let bad = containerizer.update(&id, Limits { cpus: f64::NAN, mem_bytes: None, pids: None });
    assert!(matches!(bad, Err(IsolationError::InvalidConfig { .. })), "{bad:?}");
    let unknown = containerizer.update(&ContainerId("nobody".into()), limits(1.0, 64, None));
    assert!(matches!(unknown, Err(IsolationError::UnknownContainer(_))), "{unknown:?}");
    assert_eq!(read_trimmed(&cgroup_file(&dirs, memory_file)), (128 * MIB).to_string());

    // Unset limits become unlimited.
    containerizer.update(&id, Limits { cpus: 1.0, mem_bytes: None, pids: None }).unwrap();
    assert_eq!(read_trimmed(&cgroup_file(&dirs, "pids.max")), "max");
    within(containerizer.destroy(&id)).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn recover_reattaches_known_containers_and_destroys_orphans() {
    let Some(first) = cgroups_available("recover", "-recover") else { return };
    let mut cleanup = Cleanup::new(&first).with_state("recover", "-recover");
    let dir = TempDir::new("cgroups", "recover");
    let (keep, orphan, ended) = (unique_id("keep"), unique_id("orphan"), unique_id("ended"));
    let keep_pid = first
        .launch(shell(&keep, "exec sleep 300", &dir.path().join("keep"), limits(0.5, 64, Some(30))))
        .unwrap();
    let orphan_pid = first
        .launch(shell(&orphan, "exec sleep 300", &dir.path().join("orphan"), limits(0.5, 64, None)))
        .unwrap();
    let ended_pid =
        first.launch(shell(&ended, "true", &dir.path().join("ended"), limits(0.5, 64, None))).unwrap();
    for id in [&keep, &orphan, &ended] {
        cleanup.watch(&first, id);
    }
    cleanup.pids = vec![pid_i32(keep_pid), pid_i32(orphan_pid)];
    within(first.wait(&ended)).await.unwrap();
    drop(first); // the agent goes away without destroying anything

    let second = cgroups_available("recover", "-recover").expect("cgroups were available a moment ago");
    let never = unique_id("never");
    let known = [(keep.clone(), keep_pid), (ended.clone(), ended_pid), (never.clone(), u32::MAX)];
    let recovered = within(second.recover(&known)).await.unwrap();
    let mut reattached = vec![keep.clone(), ended.clone()];
    reattached.sort();
    assert_eq!(recovered.reattached, reattached);
    assert_eq!(recovered.exited, vec![ended.clone()], "its waiter recorded its end");
    assert_eq!(recovered.gone, vec![never.clone()]);
    assert_eq!(recovered.orphans_destroyed, vec![orphan.clone()]);
    assert!(is_gone(pid_i32(orphan_pid)), "orphan {orphan_pid} survived");
    assert_eq!(second.containers(), reattached);
    assert_eq!(within(second.wait(&ended)).await.unwrap().status, ExitStatusKind::Exited(0));
    within(second.destroy(&ended)).await.unwrap();

    // The reattached container works as before; its limits were read back.
    let usage = second.usage(&keep).unwrap();
    assert_eq!(usage.processes, 1, "the waiter is not counted: {usage:?}");
    assert_eq!(usage.mem_limit_bytes, Some(64 * MIB));
    // Still known to have a waiter: its pid stays on top of the task's limit.
    second.update(&keep, limits(0.5, 64, Some(40))).unwrap();
    let dirs = second.cgroup_dirs(&keep).unwrap();
    assert_eq!(read_trimmed(&cgroup_file(&dirs, "pids.max")), "41");
    second.signal(&keep, Signal::SIGTERM as i32).unwrap();
    let termination = within(second.wait(&keep)).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Signaled(15), "{termination:?}");
    within(second.destroy(&keep)).await.unwrap();
    assert!(second.containers().is_empty());
    assert!(cleanup.dirs.iter().all(|dir| !dir.exists()), "cgroups left: {:?}", cleanup.dirs);

    // Recovering again finds nothing.
    let again = within(second.recover(&[])).await.unwrap();
    assert_eq!(again, keel_isolation::Recovered::default());
}

#[tokio::test(flavor = "current_thread")]
async fn failed_launches_leave_no_cgroup_and_names_say_what_is_used() {
    let Some(containerizer) = cgroups_available("failed_launch", "") else { return };
    let _cleanup = Cleanup::new(&containerizer).with_state("failed_launch", "");
    assert!(containerizer.name().starts_with("cgroups-v"), "{}", containerizer.name());
    assert!(containerizer.isolation().contains("memory"), "{}", containerizer.isolation());
    let dir = TempDir::new("cgroups", "failed");
    let id = unique_id("missing-program");
    let missing = ContainerConfig::new(
        id.clone(),
        LaunchCommand::Exec { program: "keel-no-such-program-xyz".into(), args: vec![] },
        dir.path(),
        limits(1.0, 64, None),
    );
    match containerizer.launch(missing) {
        Err(IsolationError::Io { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected Io NotFound, got {other:?}"),
    }
    for root in containerizer.root_dirs() {
        assert!(!root.join(&id.0).exists(), "cgroup of a failed launch left under {}", root.display());
    }
    let mut zero_pids = shell(&id, "true", dir.path(), limits(1.0, 64, None));
    zero_pids.limits.pids = Some(0);
    assert!(matches!(containerizer.launch(zero_pids), Err(IsolationError::InvalidConfig { .. })));
    assert!(containerizer.containers().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn runs_as_another_user_after_joining_its_cgroups() {
    let Some(containerizer) = cgroups_available("user", "") else { return };
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("SKIPPING runs_as_another_user: no user 'nobody'");
        return;
    };
    let mut cleanup = Cleanup::new(&containerizer).with_state("user", "");
    let dir = TempDir::new("cgroups", "user");
    let id = unique_id("user");
    let mut config = shell(&id, "id -u; id -G; cat /proc/self/cgroup", dir.path(), limits(0.5, 64, None));
    config.user = Some("nobody".into());
    containerizer.launch(config).unwrap();
    cleanup.watch(&containerizer, &id);
    let termination = within(containerizer.wait(&id)).await.unwrap();
    let stdout = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(termination.status.success(), "{termination:?} {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string());
    assert_eq!(lines[1], nobody.gid.to_string(), "supplementary groups are dropped");
    assert!(stdout.contains(&format!("/{}/{}", test_root("user", ""), id.0)), "not in its cgroups: {stdout}");
    within(containerizer.destroy(&id)).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn best_available_picks_cgroups_when_writable() {
    let Some(probe) = cgroups_available("best_available", "") else { return };
    probe.cleanup();
    if std::env::var(keel_isolation::ISOLATION_ENV).is_ok() {
        eprintln!("SKIPPING best_available: {} is set", keel_isolation::ISOLATION_ENV);
        return;
    }
    let (containerizer, why) = keel_isolation::best_available(CgroupsConfig {
        root: test_root("best_available", ""),
        cfs_quota: true,
        state_dir: None,
    });
    containerizer.cleanup();
    assert!(containerizer.name().starts_with("cgroups-v"), "{} ({why})", containerizer.name());
    assert!(why.contains("cgroups"), "{why}");
}
