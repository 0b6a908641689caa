//! PosixContainerizer against real processes: exit statuses, signals, tree killing,
//! environment, validation, usage and launch throughput, with a waiter per container
//! (a state directory) unless a test says otherwise.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{is_gone, pid_i32, read_pid_file, within, TempDir, DEADLINE};
use keel_isolation::{
    ContainerConfig, ContainerId, Containerizer, ExitStatusKind, IsolationError, LaunchCommand, Limits,
    PosixContainerizer,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// SIGKILLs the given pids (and the process groups of `groups`) on drop unless
/// disarmed: cleanup for tests that fail half-way. Kills by pid only.
struct KillOnDrop {
    pids: Vec<i32>,
    groups: Vec<i32>,
}

impl KillOnDrop {
    fn disarm(&mut self) {
        self.pids.clear();
        self.groups.clear();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.groups {
            let _ = nix::sys::signal::killpg(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        for pid in &self.pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// A containerizer whose containers have waiters recording into `state`.
fn with_waiters(state: &TempDir) -> PosixContainerizer {
    PosixContainerizer::with_state_dir(state.path())
}

fn limits() -> Limits {
    Limits { cpus: 0.5, mem_bytes: Some(64 << 20), pids: None }
}

fn shell(id: &str, script: &str, sandbox: &Path) -> ContainerConfig {
    ContainerConfig::new(id, LaunchCommand::Shell(script.into()), sandbox, limits())
}

fn id(id: &str) -> ContainerId {
    ContainerId(id.into())
}

#[tokio::test(flavor = "current_thread")]
async fn exit_zero_and_output_lands_in_the_sandbox() {
    let dir = TempDir::new("isolation", "exit0");
    let sandbox = dir.path().join("sandbox"); // does not exist yet
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    assert_eq!(containerizer.name(), "posix");
    containerizer.launch(shell("c1", "echo hello; echo oops >&2", &sandbox)).unwrap();
    assert_eq!(containerizer.containers(), vec![id("c1")]);

    let termination = within(containerizer.wait(&id("c1"))).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Exited(0));
    assert!(termination.status.success());
    assert_eq!(termination.limitation, None);
    assert_eq!(std::fs::read_to_string(sandbox.join("stdout")).unwrap(), "hello\n");
    assert_eq!(std::fs::read_to_string(sandbox.join("stderr")).unwrap(), "oops\n");

    within(containerizer.destroy(&id("c1"))).await.unwrap();
    assert!(containerizer.containers().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn exit_code_is_reported_to_every_waiter() {
    let dir = TempDir::new("isolation", "exit3");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    containerizer.launch(shell("c3", "exit 3", dir.path())).unwrap();
    let early = containerizer.wait(&id("c3"));
    let first = within(early).await.unwrap();
    let second = within(containerizer.wait(&id("c3"))).await.unwrap();
    assert_eq!(first.status, ExitStatusKind::Exited(3));
    assert_eq!(first.message, "exited with status 3");
    assert_eq!(first, second);
    // The waiter recorded it (pid = the task, the waiter's child); destroy forgets it.
    let record = std::fs::read_to_string(state.path().join("c3")).unwrap();
    assert!(record.starts_with("v1 status=768 pid="), "{record:?}");
    within(containerizer.destroy(&id("c3"))).await.unwrap();
    assert!(!state.path().join("c3").exists(), "status file left after destroy");
}

#[tokio::test(flavor = "current_thread")]
async fn sigterm_is_reported_as_signaled() {
    let dir = TempDir::new("isolation", "sigterm");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    let config = ContainerConfig::new(
        "sleeper",
        LaunchCommand::Exec { program: "sleep".into(), args: vec!["30".into()] },
        dir.path(),
        limits(),
    );
    let pid = containerizer.launch(config).unwrap();
    let mut cleanup = KillOnDrop { groups: vec![pid_i32(pid)], pids: Vec::new() };
    let waiter = containerizer.wait(&id("sleeper"));
    containerizer.signal(&id("sleeper"), Signal::SIGTERM as i32).unwrap();
    let termination = within(waiter).await.unwrap();
    cleanup.disarm();
    assert_eq!(termination.status, ExitStatusKind::Signaled(15));
    assert_eq!(termination.message, "killed by signal 15 (SIGTERM)");
    // Signalling a container whose processes are all gone is a no-op.
    containerizer.signal(&id("sleeper"), Signal::SIGTERM as i32).unwrap();
    within(containerizer.destroy(&id("sleeper"))).await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn destroy_kills_grandchildren_including_ones_that_left_the_group() {
    let dir = TempDir::new("isolation", "tree");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    let script = "sleep 300 & echo $! > grandchild.pid; \
                  setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' & \
                  sleep 300";
    let pid = containerizer.launch(shell("tree", script, dir.path())).unwrap();
    let mut cleanup = KillOnDrop { groups: vec![pid_i32(pid)], pids: Vec::new() };
    let grandchild = read_pid_file(&dir.path().join("grandchild.pid")).await;
    let escaped = read_pid_file(&dir.path().join("escaped.pid")).await;
    cleanup.pids = vec![grandchild, escaped];
    assert!(!is_gone(grandchild) && !is_gone(escaped));

    let usage = containerizer.usage(&id("tree")).unwrap();
    assert!(usage.processes >= 3, "{usage:?}");

    let waiter = containerizer.wait(&id("tree"));
    within(containerizer.destroy(&id("tree"))).await.unwrap();
    assert!(is_gone(pid_i32(pid)), "main process {pid} survived");
    assert!(is_gone(grandchild), "grandchild {grandchild} survived");
    assert!(is_gone(escaped), "setsid descendant {escaped} survived");
    cleanup.disarm();
    assert_eq!(within(waiter).await.unwrap().status, ExitStatusKind::Signaled(9));
    assert!(containerizer.containers().is_empty());
    assert!(matches!(containerizer.usage(&id("tree")), Err(IsolationError::UnknownContainer(_))));
}

#[tokio::test(flavor = "current_thread")]
async fn destroy_kills_a_daemon_whose_parent_already_exited() {
    let dir = TempDir::new("isolation", "daemon");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    containerizer.launch(shell("daemon", "sleep 300 & echo $! > daemon.pid", dir.path())).unwrap();
    let daemon = read_pid_file(&dir.path().join("daemon.pid")).await;
    let mut cleanup = KillOnDrop { pids: vec![daemon], groups: Vec::new() };
    let termination = within(containerizer.wait(&id("daemon"))).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Exited(0));
    assert!(!is_gone(daemon));

    within(containerizer.destroy(&id("daemon"))).await.unwrap();
    assert!(is_gone(daemon), "daemon {daemon} survived");
    cleanup.disarm();
}

#[tokio::test(flavor = "current_thread")]
async fn destroy_kills_an_escaped_orphan_seen_by_an_earlier_usage_call() {
    let dir = TempDir::new("isolation", "remembered");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    let script = "setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' & sleep 300";
    let pid = containerizer.launch(shell("remembered", script, dir.path())).unwrap();
    let escaped = read_pid_file(&dir.path().join("escaped.pid")).await;
    let mut cleanup = KillOnDrop { groups: vec![pid_i32(pid)], pids: vec![escaped] };
    // Seen while its parent (the main process) is alive, so it is remembered...
    let usage = containerizer.usage(&id("remembered")).unwrap();
    assert!(usage.processes >= 3, "{usage:?}");
    // ...then the main process group exits and the escaped process is orphaned.
    containerizer.signal(&id("remembered"), Signal::SIGTERM as i32).unwrap();
    let termination = within(containerizer.wait(&id("remembered"))).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Signaled(15));
    assert!(!is_gone(escaped));

    within(containerizer.destroy(&id("remembered"))).await.unwrap();
    assert!(is_gone(escaped), "orphaned setsid process {escaped} survived");
    cleanup.disarm();
}

#[tokio::test(flavor = "current_thread")]
async fn environment_working_directory_and_user_are_set() {
    let dir = TempDir::new("isolation", "env");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    let mut config = shell("env", "pwd; echo \"FOO=$FOO\"; id -u; env", dir.path());
    config.env.insert("FOO".into(), "bar baz".into());
    let me = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().expect("current user");
    config.user = Some(me.name.clone());
    containerizer.launch(config).unwrap();
    let termination = within(containerizer.wait(&id("env"))).await.unwrap();
    assert!(termination.status.success(), "{termination:?}");

    let stdout = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(Path::new(lines[0]), dir.path().canonicalize().unwrap());
    assert_eq!(lines[1], "FOO=bar baz");
    assert_eq!(lines[2], me.uid.to_string());
    assert!(lines.iter().any(|l| l.starts_with("PATH=")), "{stdout}");
    assert!(lines.contains(&format!("HOME={}", me.dir.display()).as_str()), "{stdout}");
    // Only the documented variables are inherited.
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    assert!(!stdout.contains("CARGO_MANIFEST_DIR="), "{stdout}");
    within(containerizer.destroy(&id("env"))).await.unwrap();
}

fn reason(result: Result<u32, IsolationError>) -> String {
    match result {
        Err(IsolationError::InvalidConfig { reason, .. }) => reason,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_configs_and_unknown_ids_are_rejected_with_reasons() {
    let dir = TempDir::new("isolation", "invalid");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);

    let empty = shell("bad", "", dir.path());
    assert!(reason(containerizer.launch(empty)).contains("shell command is empty"));

    let mut nan = shell("bad", "true", dir.path());
    nan.limits.cpus = f64::NAN;
    assert!(reason(containerizer.launch(nan)).contains("cpus must be a finite number"));

    let mut negative = shell("bad", "true", dir.path());
    negative.limits.cpus = -2.0;
    assert!(reason(containerizer.launch(negative)).contains("cpus must be greater than 0"));

    let mut zero_memory = shell("bad", "true", dir.path());
    zero_memory.limits.mem_bytes = Some(0);
    assert!(reason(containerizer.launch(zero_memory)).contains("mem_bytes must be greater than 0"));

    let mut unknown_user = shell("bad", "true", dir.path());
    unknown_user.user = Some("keel-no-such-user-xyz".into());
    let error = containerizer.launch(unknown_user).unwrap_err();
    assert!(matches!(&error, IsolationError::UnknownUser { user, .. } if user == "keel-no-such-user-xyz"));

    let missing = ContainerConfig::new(
        "bad",
        LaunchCommand::Exec { program: "keel-no-such-program-xyz".into(), args: vec![] },
        dir.path(),
        limits(),
    );
    match containerizer.launch(missing) {
        Err(IsolationError::Io { source, context }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(context.contains("keel-no-such-program-xyz"), "{context}");
        }
        other => panic!("expected Io NotFound, got {other:?}"),
    }
    assert!(containerizer.containers().is_empty(), "failed launches leave nothing behind");

    containerizer.launch(shell("dup", "true", dir.path())).unwrap();
    let duplicate = containerizer.launch(shell("dup", "true", dir.path()));
    assert!(matches!(duplicate, Err(IsolationError::DuplicateContainer(ref d)) if *d == id("dup")));
    assert!(matches!(containerizer.signal(&id("dup"), 12345), Err(IsolationError::InvalidSignal(12345))));
    within(containerizer.wait(&id("dup"))).await.unwrap();
    within(containerizer.destroy(&id("dup"))).await.unwrap();

    let nobody = id("nobody");
    assert!(matches!(within(containerizer.wait(&nobody)).await, Err(IsolationError::UnknownContainer(_))));
    assert!(matches!(within(containerizer.destroy(&nobody)).await, Err(IsolationError::UnknownContainer(_))));
    assert!(matches!(containerizer.signal(&nobody, 15), Err(IsolationError::UnknownContainer(_))));
    assert!(matches!(containerizer.usage(&nobody), Err(IsolationError::UnknownContainer(_))));
}

#[test]
fn launch_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = TempDir::new("isolation", "noruntime");
    let containerizer = PosixContainerizer::new();
    let result = containerizer.launch(shell("c", "true", dir.path()));
    assert!(matches!(result, Err(IsolationError::NoRuntime(_))), "{result:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn usage_of_a_busy_loop_shows_cpu_and_memory() {
    let dir = TempDir::new("isolation", "usage");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    let pid = containerizer.launch(shell("busy", "while :; do :; done", dir.path())).unwrap();
    let mut cleanup = KillOnDrop { groups: vec![pid_i32(pid)], pids: Vec::new() };
    let started = Instant::now();
    let usage = loop {
        let usage = containerizer.usage(&id("busy")).unwrap();
        if usage.cpu_user_secs + usage.cpu_system_secs > 0.0 {
            break usage;
        }
        assert!(started.elapsed() < DEADLINE, "no cpu time: {usage:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(usage.rss_bytes > 0, "{usage:?}");
    assert_eq!(usage.processes, 1, "{usage:?}");
    assert_eq!(usage.mem_limit_bytes, Some(64 << 20));
    within(containerizer.destroy(&id("busy"))).await.unwrap();
    cleanup.disarm();
    assert!(is_gone(pid_i32(pid)));
}

#[tokio::test(flavor = "current_thread")]
async fn two_hundred_launches_of_true_complete() {
    const COUNT: usize = 200;
    let dir = TempDir::new("isolation", "throughput");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    let ids: Vec<ContainerId> = (0..COUNT).map(|i| id(&format!("true-{i}"))).collect();
    let started = Instant::now();
    for container_id in &ids {
        let config = ContainerConfig::new(
            container_id.clone(),
            LaunchCommand::Exec { program: "/bin/true".into(), args: vec![] },
            dir.path().join(&container_id.0),
            limits(),
        );
        containerizer.launch(config).unwrap();
    }
    let launched = started.elapsed();
    for container_id in &ids {
        let termination = within(containerizer.wait(container_id)).await.unwrap();
        assert_eq!(termination.status, ExitStatusKind::Exited(0));
    }
    let finished = started.elapsed();
    for container_id in &ids {
        within(containerizer.destroy(container_id)).await.unwrap();
    }
    assert!(containerizer.containers().is_empty());
    eprintln!(
        "{COUNT} launches of /bin/true: launch calls {:.0} launches/s ({:?}), all exited and reaped {:.0}/s ({:?})",
        COUNT as f64 / launched.as_secs_f64(),
        launched,
        COUNT as f64 / finished.as_secs_f64(),
        finished,
    );
}

#[tokio::test(flavor = "current_thread")]
async fn recover_without_waiters_reattaches_by_pid_and_update_records_limits() {
    let dir = TempDir::new("isolation", "recover");
    let first = PosixContainerizer::new();
    let pid = first.launch(shell("kept", "exec sleep 300", &dir.path().join("kept"))).unwrap();
    let mut cleanup = KillOnDrop { groups: vec![pid_i32(pid)], pids: Vec::new() };
    let ended_pid = first.launch(shell("ended", "true", &dir.path().join("ended"))).unwrap();
    within(first.wait(&id("ended"))).await.unwrap();
    drop(first);

    let second = PosixContainerizer::new();
    assert_eq!(second.isolation(), "posix (process groups, /proc walks; limits recorded, not enforced)");
    let known = [(id("kept"), pid), (id("ended"), ended_pid), (id("never"), u32::MAX)];
    let recovered = within(second.recover(&known)).await.unwrap();
    assert_eq!(recovered.reattached, vec![id("kept")]);
    assert_eq!(recovered.gone, vec![id("ended"), id("never")]);
    assert!(recovered.orphans_destroyed.is_empty());

    second.update(&id("kept"), Limits { cpus: 2.0, mem_bytes: Some(128 << 20), pids: Some(10) }).unwrap();
    assert_eq!(second.usage(&id("kept")).unwrap().mem_limit_bytes, Some(128 << 20));
    let bad = second.update(&id("kept"), Limits { cpus: 1.0, mem_bytes: None, pids: Some(0) });
    assert!(matches!(bad, Err(IsolationError::InvalidConfig { .. })), "{bad:?}");

    second.signal(&id("kept"), Signal::SIGTERM as i32).unwrap();
    let termination = within(second.wait(&id("kept"))).await.unwrap();
    // No state directory, so no waiter recorded it.
    assert_eq!(termination.status, ExitStatusKind::Exited(keel_isolation::UNKNOWN_EXIT_CODE));
    assert!(termination.message.starts_with(keel_isolation::UNKNOWN_EXIT_MESSAGE), "{}", termination.message);
    within(second.destroy(&id("kept"))).await.unwrap();
    cleanup.disarm();
    assert!(is_gone(pid_i32(pid)));
}

#[tokio::test(flavor = "current_thread")]
async fn the_memory_limit_is_an_rlimit_without_cgroups() {
    let dir = TempDir::new("isolation", "rlimit");
    let sandbox = dir.path().join("sandbox");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    // `tail /dev/zero` keeps one ever-growing line in memory: with a 32 MiB data limit
    // its allocations fail and it exits with an error instead of growing.
    let config = ContainerConfig::new(
        "hog",
        LaunchCommand::Shell("tail /dev/zero".into()),
        &sandbox,
        Limits { cpus: 0.5, mem_bytes: Some(32 << 20), pids: None },
    );
    let pid = containerizer.launch(config).unwrap();
    let mut guard = KillOnDrop { pids: vec![], groups: vec![pid_i32(pid)] };
    let termination = within(containerizer.wait(&id("hog"))).await.unwrap();
    assert!(matches!(termination.status, ExitStatusKind::Exited(code) if code != 0), "{termination:?}");
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).unwrap();
    assert!(stderr.to_lowercase().contains("memory"), "{stderr}");
    // The limit is inherited: the shell's own children get it too.
    containerizer
        .launch(ContainerConfig::new(
            "limits",
            LaunchCommand::Shell("ulimit -d".into()),
            sandbox.join("limits"),
            Limits { cpus: 0.5, mem_bytes: Some(32 << 20), pids: None },
        ))
        .unwrap();
    within(containerizer.wait(&id("limits"))).await.unwrap();
    let reported = std::fs::read_to_string(sandbox.join("limits/stdout")).unwrap();
    assert_eq!(reported.trim(), (32 * 1024).to_string(), "ulimit -d is in KiB");
    within(containerizer.destroy(&id("hog"))).await.unwrap();
    within(containerizer.destroy(&id("limits"))).await.unwrap();
    guard.disarm();
}

/// A field of `/proc/<pid>/status`, in kB.
fn status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn the_waiter_is_small_immune_to_signals_and_the_tasks_parent() {
    // A big containerizer: 64 MiB of heap, every page touched.
    let ballast = vec![1u8; 64 << 20];
    let dir = TempDir::new("isolation", "waiter");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    let script = "echo $$ > task.pid; exec sleep 300";
    let waiter = pid_i32(containerizer.launch(shell("waited", script, dir.path())).unwrap());
    let mut cleanup = KillOnDrop { groups: vec![waiter], pids: Vec::new() };
    let task = read_pid_file(&dir.path().join("task.pid")).await;

    let stat = std::fs::read_to_string(format!("/proc/{task}/stat")).unwrap();
    let ppid: i32 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(ppid, waiter, "the task is the waiter's child");
    // It names itself after the fork, racing the task's exec: wait for it.
    let comm =
        || std::fs::read_to_string(format!("/proc/{waiter}/comm")).unwrap_or_default().trim().to_string();
    let started = Instant::now();
    while comm() != "keel-waiter" {
        assert!(started.elapsed() < DEADLINE, "the waiter is named {:?}", comm());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // It gave back its copy-on-write share of our memory (give it a moment to do so).
    let started = Instant::now();
    while status_kb(waiter, "RssAnon:") > 8 * 1024 {
        assert!(started.elapsed() < DEADLINE, "the waiter keeps {} kB", status_kb(waiter, "RssAnon:"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let usage = containerizer.usage(&id("waited")).unwrap();
    assert_eq!(usage.processes, 1, "the waiter is not counted: {usage:?}");

    // SIGHUP, SIGINT and SIGUSR1 to the whole group: the task dies of the first, the
    // waiter of none, and reports it.
    for signal in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGUSR1] {
        nix::sys::signal::killpg(Pid::from_raw(waiter), signal).unwrap();
    }
    let termination = within(containerizer.wait(&id("waited"))).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Signaled(Signal::SIGHUP as i32), "{termination:?}");
    within(containerizer.destroy(&id("waited"))).await.unwrap();
    cleanup.disarm();
    assert!(is_gone(task) && is_gone(waiter));
    drop(ballast);
}

#[tokio::test(flavor = "current_thread")]
async fn the_waiter_exits_like_its_task_when_nothing_is_recorded() {
    // This process handles SIGUSR2: its waiters, its copies, must not.
    let _handler = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2()).unwrap();
    let dir = TempDir::new("isolation", "mirror");
    let state = TempDir::new("isolation", "state");
    let containerizer = with_waiters(&state);
    let sleeper = ContainerConfig::new(
        "usr2",
        LaunchCommand::Exec { program: "sleep".into(), args: vec!["300".into()] },
        dir.path().join("usr2"),
        limits(),
    );
    let waiter = pid_i32(containerizer.launch(sleeper).unwrap());
    let mut cleanup = KillOnDrop { groups: vec![waiter], pids: Vec::new() };
    let fifo_dir = dir.path().join("exit3");
    std::fs::create_dir_all(&fifo_dir).unwrap();
    nix::unistd::mkfifo(&fifo_dir.join("go"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let exit3 = containerizer.launch(shell("exit3", "read x < go; exit 3", &fifo_dir)).unwrap();
    cleanup.groups.push(pid_i32(exit3));
    // With its status file gone, only the waiter's own exit status is left to report.
    std::fs::remove_file(state.path().join("usr2")).unwrap();
    std::fs::remove_file(state.path().join("exit3")).unwrap();
    nix::sys::signal::killpg(Pid::from_raw(waiter), Signal::SIGUSR2).unwrap();
    let termination = within(containerizer.wait(&id("usr2"))).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Signaled(Signal::SIGUSR2 as i32), "{termination:?}");

    release(&dir.path().join("exit3/go")).await;
    let termination = within(containerizer.wait(&id("exit3"))).await.unwrap();
    assert_eq!(termination.status, ExitStatusKind::Exited(3), "{termination:?}");
    cleanup.disarm();
    within(containerizer.destroy(&id("usr2"))).await.unwrap();
    within(containerizer.destroy(&id("exit3"))).await.unwrap();
}

/// Writes a line to the fifo at `path` once its reader has it open.
async fn release(path: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let started = Instant::now();
    loop {
        match std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(path) {
            Ok(mut writer) => return writer.write_all(b"go\n").unwrap(),
            Err(error) if error.raw_os_error() == Some(nix::libc::ENXIO) => {}
            Err(error) => panic!("opening {}: {error}", path.display()),
        }
        assert!(started.elapsed() < DEADLINE, "nobody reads {}", path.display());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
