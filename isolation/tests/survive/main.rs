//! Exit statuses survive the process that launched the containers: a separate holder
//! process (this binary run again, see `holder`) launches containers with a state
//! directory and is SIGKILLed; a new containerizer in this process recovers them and
//! `wait` reports the tasks' real ends, whether they came while nobody watched or after
//! the recovery: exit codes, signals, OOM kills (cgroups); `destroy` still kills whole
//! trees; a missing or garbled status file gives `UNKNOWN_EXIT_CODE` with the reason.
//! Each scenario runs for the POSIX and the cgroups containerizer (the latter skipped
//! loudly where cgroups are not writable, unless `KEEL_REQUIRE_CGROUPS=1`).

#[path = "../common/mod.rs"]
mod common;
mod holder;

use common::{is_gone, within};
use holder::{wait_until, Fixture, Kind, Task, HOLDER_ENV};
use keel_isolation::{ContainerId, ExitStatusKind, Limitation, UNKNOWN_EXIT_CODE, UNKNOWN_EXIT_MESSAGE};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

const MIB: u64 = 1024 * 1024;

/// Not a test: the body of the holder process when [`HOLDER_ENV`] is set.
#[test]
fn holder_process() {
    if let Ok(dir) = std::env::var(HOLDER_ENV) {
        holder::run_holder(std::path::Path::new(&dir));
    }
}

fn ids(names: &[&str]) -> Vec<ContainerId> {
    let mut ids: Vec<ContainerId> = names.iter().map(|name| ContainerId((*name).to_owned())).collect();
    ids.sort();
    ids
}

/// Exits 3 once released.
const EXIT_3_WHEN_RELEASED: &str = "read x < go; exit 3";
/// Runs until signalled (`task.pid` holds its pid).
const SLEEPER: &str = "echo $$ > task.pid; exec sleep 300";
/// Fills memory without bound once released (`tail` buffers a line that never ends).
const HOG_WHEN_RELEASED: &str = "read x < go; exec tail /dev/zero";

/// (a), (c), (d): the tasks end while no containerizer runs; `recover` reattaches them
/// as exited and `wait` gives the recorded status at once.
async fn ended_while_nobody_watched(kind: Kind, test: &str) {
    let Some(mut fixture) = Fixture::new(kind, test) else { return };
    let mut tasks = vec![
        Task { id: "exit3", mem_mb: 64, script: EXIT_3_WHEN_RELEASED },
        Task { id: "term", mem_mb: 64, script: SLEEPER },
    ];
    if kind == Kind::Cgroups {
        tasks.push(Task { id: "oom", mem_mb: 64, script: HOG_WHEN_RELEASED });
    }
    fixture.start_holder(&tasks).await;
    let sleeper = fixture.pid_in("term", "task.pid").await;
    fixture.kill_holder();

    fixture.release("exit3").await;
    // SIGTERM to the whole process group: the task dies of it, its waiter ignores it.
    killpg(Pid::from_raw(fixture.main_pid("term")), Signal::SIGTERM).unwrap();
    if kind == Kind::Cgroups {
        fixture.release("oom").await;
    }
    for task in &tasks {
        fixture.wait_main_ended(task.id).await;
    }
    assert!(is_gone(sleeper));

    let containerizer = fixture.containerizer();
    let recovered = within(containerizer.recover(&fixture.launched)).await.unwrap();
    let all: Vec<&str> = tasks.iter().map(|task| task.id).collect();
    assert_eq!(recovered.reattached, ids(&all), "{recovered:?}");
    assert_eq!(recovered.exited, ids(&all), "{recovered:?}");
    assert!(recovered.gone.is_empty(), "{recovered:?}");

    let exit3 = within(containerizer.wait(&"exit3".into())).await.unwrap();
    assert_eq!(exit3.status, ExitStatusKind::Exited(3), "{exit3:?}");
    assert_eq!(exit3.message, "exited with status 3");
    assert_eq!(exit3.limitation, None);
    let term = within(containerizer.wait(&"term".into())).await.unwrap();
    assert_eq!(term.status, ExitStatusKind::Signaled(15), "{term:?}");
    if kind == Kind::Cgroups {
        let oom = within(containerizer.wait(&"oom".into())).await.unwrap();
        assert_eq!(oom.status, ExitStatusKind::Signaled(9), "{oom:?}");
        assert!(
            matches!(oom.limitation, Some(Limitation::Memory { limit_bytes, .. }) if limit_bytes == 64 * MIB),
            "{oom:?}"
        );
    }
    destroy_all(&fixture, containerizer.as_ref(), &all).await;
    fixture.finish();
}

/// (b), (c), (d): the tasks still run when `recover` reattaches them and end later.
/// `signal(SIGKILL)` spares a cgroups waiter, which records the task's end; a POSIX
/// waiter dies with its process group, leaving nothing recorded.
async fn ended_after_recovery(kind: Kind, test: &str) {
    let Some(mut fixture) = Fixture::new(kind, test) else { return };
    let mut tasks = vec![
        Task { id: "exit3", mem_mb: 64, script: EXIT_3_WHEN_RELEASED },
        Task { id: "term", mem_mb: 64, script: SLEEPER },
        Task { id: "kill", mem_mb: 64, script: SLEEPER },
    ];
    if kind == Kind::Cgroups {
        tasks.push(Task { id: "oom", mem_mb: 64, script: HOG_WHEN_RELEASED });
    }
    fixture.start_holder(&tasks).await;
    fixture.pid_in("term", "task.pid").await;
    fixture.pid_in("kill", "task.pid").await;
    fixture.kill_holder();

    let containerizer = fixture.containerizer();
    let recovered = within(containerizer.recover(&fixture.launched)).await.unwrap();
    let all: Vec<&str> = tasks.iter().map(|task| task.id).collect();
    assert_eq!(recovered.reattached, ids(&all), "{recovered:?}");
    assert!(recovered.exited.is_empty(), "{recovered:?}");

    let exit3 = containerizer.wait(&"exit3".into());
    fixture.release("exit3").await;
    let exit3 = within(exit3).await.unwrap();
    assert_eq!(exit3.status, ExitStatusKind::Exited(3), "{exit3:?}");
    containerizer.signal(&"term".into(), Signal::SIGTERM as i32).unwrap();
    let term = within(containerizer.wait(&"term".into())).await.unwrap();
    assert_eq!(term.status, ExitStatusKind::Signaled(15), "{term:?}");
    containerizer.signal(&"kill".into(), Signal::SIGKILL as i32).unwrap();
    let killed = within(containerizer.wait(&"kill".into())).await.unwrap();
    match kind {
        Kind::Cgroups => assert_eq!(killed.status, ExitStatusKind::Signaled(9), "{killed:?}"),
        Kind::Posix => assert_eq!(killed.status, ExitStatusKind::Exited(UNKNOWN_EXIT_CODE), "{killed:?}"),
    }
    if kind == Kind::Cgroups {
        fixture.release("oom").await;
        let oom = within(containerizer.wait(&"oom".into())).await.unwrap();
        assert_eq!(oom.status, ExitStatusKind::Signaled(9), "{oom:?}");
        assert!(matches!(oom.limitation, Some(Limitation::Memory { .. })), "{oom:?}");
    }
    destroy_all(&fixture, containerizer.as_ref(), &all).await;
    fixture.finish();
}

/// (e): `destroy` after `recover` kills a running tree (a child, a `setsid`
/// grandchild) and what an exited task left behind (a daemon), and removes the cgroups
/// and status files.
async fn destroy_after_recovery_kills_everything(kind: Kind, test: &str) {
    let Some(mut fixture) = Fixture::new(kind, test) else { return };
    let tree = "setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' & \
                sleep 300 & echo $! > child.pid; echo $$ > task.pid; exec sleep 300";
    // POSIX finds a daemon by its process group only: this one stays in it.
    let daemon = match kind {
        Kind::Posix => "sleep 300 & echo $! > daemon.pid; read x < go; exit 0",
        Kind::Cgroups => "setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' & read x < go; exit 0",
    };
    let tasks =
        [Task { id: "tree", mem_mb: 64, script: tree }, Task { id: "daemon", mem_mb: 64, script: daemon }];
    fixture.start_holder(&tasks).await;
    let mut pids = vec![
        fixture.pid_in("tree", "escaped.pid").await,
        fixture.pid_in("tree", "child.pid").await,
        fixture.pid_in("tree", "task.pid").await,
        fixture.pid_in("daemon", "daemon.pid").await,
    ];
    fixture.kill_holder();
    fixture.release("daemon").await;
    fixture.wait_main_ended("daemon").await;
    pids.extend([fixture.main_pid("tree"), fixture.main_pid("daemon")]);

    let containerizer = fixture.containerizer();
    let recovered = within(containerizer.recover(&fixture.launched)).await.unwrap();
    assert_eq!(recovered.reattached, ids(&["daemon", "tree"]), "{recovered:?}");
    assert_eq!(recovered.exited, ids(&["daemon"]), "{recovered:?}");
    let ended = within(containerizer.wait(&"daemon".into())).await.unwrap();
    assert_eq!(ended.status, ExitStatusKind::Exited(0), "{ended:?}");
    let alive: Vec<i32> = pids.iter().copied().filter(|pid| !is_gone(*pid)).collect();
    assert_eq!(alive.len(), pids.len() - 1, "all but the daemon's waiter run: {alive:?}");

    let tree_end = containerizer.wait(&"tree".into());
    destroy_all(&fixture, containerizer.as_ref(), &["daemon", "tree"]).await;
    let survivors: Vec<i32> = pids.iter().copied().filter(|pid| !is_gone(*pid)).collect();
    assert!(survivors.is_empty(), "survivors of destroy: {survivors:?}");
    // Killed with its waiter before the waiter could record anything.
    let tree_end = within(tree_end).await.unwrap();
    assert_eq!(tree_end.status, ExitStatusKind::Exited(UNKNOWN_EXIT_CODE), "{tree_end:?}");
    fixture.finish();
}

/// (f): status files that are missing or garbled, before or after the recovery, give
/// `UNKNOWN_EXIT_CODE` and a message saying why, or (no file, no process) `gone`;
/// a waiter killed before recording leaves an empty file: unknown, and its task is
/// still killed by `destroy`.
async fn bad_status_files_give_unknown_never_a_panic(kind: Kind, test: &str) {
    let Some(mut fixture) = Fixture::new(kind, test) else { return };
    let tasks = [
        Task { id: "garbled-away", mem_mb: 64, script: "read x < go; exit 4" },
        Task { id: "missing-away", mem_mb: 64, script: "read x < go; exit 5" },
        Task { id: "missing-later", mem_mb: 64, script: "read x < go; exit 6" },
        Task { id: "garbled-later", mem_mb: 64, script: "read x < go; exit 7" },
        Task { id: "empty-away", mem_mb: 64, script: SLEEPER },
    ];
    fixture.start_holder(&tasks).await;
    let orphaned_task = fixture.pid_in("empty-away", "task.pid").await;
    fixture.kill_holder();

    for id in ["garbled-away", "missing-away"] {
        fixture.release(id).await;
        fixture.wait_main_ended(id).await;
    }
    std::fs::write(fixture.status_file("garbled-away"), "v1 status=what\n").unwrap();
    std::fs::remove_file(fixture.status_file("missing-away")).unwrap();
    std::fs::remove_file(fixture.status_file("missing-later")).unwrap();
    // Longer than a record: what the waiter writes later leaves junk after it.
    std::fs::write(fixture.status_file("garbled-later"), "#".repeat(200)).unwrap();
    // The waiter dies before recording; its task goes on, orphaned.
    nix::sys::signal::kill(Pid::from_raw(fixture.main_pid("empty-away")), Signal::SIGKILL).unwrap();
    fixture.wait_main_ended("empty-away").await;
    assert!(!is_gone(orphaned_task));

    let containerizer = fixture.containerizer();
    let recovered = within(containerizer.recover(&fixture.launched)).await.unwrap();
    assert_eq!(
        recovered.reattached,
        ids(&["empty-away", "garbled-away", "garbled-later", "missing-later"]),
        "{recovered:?}"
    );
    assert_eq!(recovered.exited, ids(&["empty-away", "garbled-away"]), "{recovered:?}");
    assert_eq!(recovered.gone, ids(&["missing-away"]), "{recovered:?}");

    let unknown = |id: &'static str, says: &'static str| {
        let waited = containerizer.wait(&id.into());
        async move {
            let termination = within(waited).await.unwrap();
            assert_eq!(
                termination.status,
                ExitStatusKind::Exited(UNKNOWN_EXIT_CODE),
                "{id}: {termination:?}"
            );
            let message = &termination.message;
            assert!(message.starts_with(UNKNOWN_EXIT_MESSAGE), "{id}: {message}");
            assert!(message.contains(says), "{id}: {message} does not say {says:?}");
        }
    };
    unknown("garbled-away", "garbled").await;
    unknown("empty-away", "is empty").await;
    for id in ["missing-later", "garbled-later"] {
        fixture.release(id).await;
    }
    unknown("missing-later", "no status file").await;
    unknown("garbled-later", "garbled").await;

    destroy_all(
        &fixture,
        containerizer.as_ref(),
        &["empty-away", "garbled-away", "garbled-later", "missing-later"],
    )
    .await;
    assert!(is_gone(orphaned_task), "the task of a killed waiter survived destroy");
    for dir in fixture.cgroup_dirs("missing-away") {
        assert!(!dir.exists(), "the cgroup of a gone container is left: {}", dir.display());
    }
    fixture.finish();
}

/// Destroys `names` and checks that their cgroups and status files are gone.
async fn destroy_all(fixture: &Fixture, containerizer: &dyn keel_isolation::Containerizer, names: &[&str]) {
    for name in names {
        within(containerizer.destroy(&(*name).into())).await.unwrap();
        for dir in fixture.cgroup_dirs(name) {
            assert!(!dir.exists(), "cgroup left after destroy: {}", dir.display());
        }
        assert!(!fixture.status_file(name).exists(), "status file of {name} left after destroy");
    }
    wait_until("the containers to be forgotten", || containerizer.containers().is_empty()).await;
    containerizer.cleanup();
}

#[tokio::test(flavor = "current_thread")]
async fn posix_exits_while_nobody_watches_are_reported_after_recover() {
    ended_while_nobody_watched(Kind::Posix, "posix-away").await;
}

#[tokio::test(flavor = "current_thread")]
async fn cgroups_exits_while_nobody_watches_are_reported_after_recover() {
    ended_while_nobody_watched(Kind::Cgroups, "cgroups-away").await;
}

#[tokio::test(flavor = "current_thread")]
async fn posix_exits_after_recover_are_reported() {
    ended_after_recovery(Kind::Posix, "posix-later").await;
}

#[tokio::test(flavor = "current_thread")]
async fn cgroups_exits_after_recover_are_reported() {
    ended_after_recovery(Kind::Cgroups, "cgroups-later").await;
}

#[tokio::test(flavor = "current_thread")]
async fn posix_destroy_after_recover_kills_trees() {
    destroy_after_recovery_kills_everything(Kind::Posix, "posix-destroy").await;
}

#[tokio::test(flavor = "current_thread")]
async fn cgroups_destroy_after_recover_kills_trees_and_removes_cgroups() {
    destroy_after_recovery_kills_everything(Kind::Cgroups, "cgroups-destroy").await;
}

#[tokio::test(flavor = "current_thread")]
async fn posix_missing_or_garbled_status_files_give_unknown_exit_code() {
    bad_status_files_give_unknown_never_a_panic(Kind::Posix, "posix-bad").await;
}

#[tokio::test(flavor = "current_thread")]
async fn cgroups_missing_or_garbled_status_files_give_unknown_exit_code() {
    bad_status_files_give_unknown_never_a_panic(Kind::Cgroups, "cgroups-bad").await;
}
