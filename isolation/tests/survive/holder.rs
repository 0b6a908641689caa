//! The process that launches the containers and is then SIGKILLed, like an agent: this
//! same test binary run again with [`HOLDER_ENV`] set, executing only the
//! `holder_process` test, which launches what `<dir>/spec` lists, writes the ids and
//! pids to `<dir>/launched` and waits forever. Plus the fixture that drives it from a
//! test and cleans up after a failure (by pid).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_isolation::{
    CgroupsConfig, CgroupsContainerizer, ContainerConfig, ContainerId, Containerizer, LaunchCommand, Limits,
    PosixContainerizer,
};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::common::{is_gone, TempDir, DEADLINE};

/// Set (to the fixture's directory) in the holder process.
pub const HOLDER_ENV: &str = "KEEL_TEST_HOLDER_DIR";

const MIB: u64 = 1024 * 1024;

/// Which containerizer a fixture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Posix,
    Cgroups,
}

/// One container for the holder to launch: id, memory limit in MiB, shell script (run
/// in the sandbox `<dir>/<id>`, where a fifo `go` blocks `read x < go` until
/// [`Fixture::release`]).
pub struct Task<'a> {
    pub id: &'a str,
    pub mem_mb: u64,
    pub script: &'a str,
}

/// A test's directory, state directory, cgroup root, and the holder's containers.
pub struct Fixture {
    pub kind: Kind,
    dir: TempDir,
    root: String,
    /// The cgroup root directories (cgroups only), found by a probe containerizer.
    root_dirs: Vec<PathBuf>,
    /// What the holder launched: container id and the pid `launch` returned.
    pub launched: Vec<(ContainerId, u32)>,
    holder: Option<Child>,
}

impl Fixture {
    /// A fixture for `test`, or `None` (after a loud notice) if `kind` is cgroups and
    /// they are not writable, unless `KEEL_REQUIRE_CGROUPS=1`, which makes that a failure.
    pub fn new(kind: Kind, test: &str) -> Option<Fixture> {
        let dir = TempDir::new("survive", test);
        let root = format!("keel-survive-{}-{test}", std::process::id());
        let mut fixture =
            Fixture { kind, dir, root, root_dirs: Vec::new(), launched: Vec::new(), holder: None };
        if kind == Kind::Cgroups {
            match CgroupsContainerizer::new(fixture.cgroups_config()) {
                Ok(probe) => fixture.root_dirs = probe.root_dirs(),
                Err(error) => {
                    if std::env::var("KEEL_REQUIRE_CGROUPS").as_deref() == Ok("1") {
                        panic!("KEEL_REQUIRE_CGROUPS=1 but cgroups are not writable: {error}");
                    }
                    use std::io::Write;
                    let _ = writeln!(std::io::stderr(), "SKIPPING {test}: cgroups not writable: {error}");
                    return None;
                }
            }
        }
        Some(fixture)
    }

    fn cgroups_config(&self) -> CgroupsConfig {
        CgroupsConfig { root: self.root.clone(), cfs_quota: true, state_dir: Some(self.state_dir()) }
    }

    /// The waiters' status files' directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The status file of `id`.
    pub fn status_file(&self, id: &str) -> PathBuf {
        self.state_dir().join(id)
    }

    /// The sandbox of `id`.
    pub fn sandbox(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    /// A new containerizer of the fixture's kind, as a restarted agent makes it.
    pub fn containerizer(&self) -> Arc<dyn Containerizer> {
        match self.kind {
            Kind::Posix => Arc::new(PosixContainerizer::with_state_dir(self.state_dir())),
            Kind::Cgroups => Arc::new(CgroupsContainerizer::new(self.cgroups_config()).expect("cgroups")),
        }
    }

    /// The cgroup directories of `id` (empty for POSIX).
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        self.root_dirs.iter().map(|root| root.join(id)).collect()
    }

    /// The pid `launch` returned for `id` (its waiter).
    pub fn main_pid(&self, id: &str) -> i32 {
        let (_, pid) = self.launched.iter().find(|(launched, _)| launched.0 == id).expect("launched");
        i32::try_from(*pid).expect("pid fits")
    }

    /// Starts the holder process, which launches `tasks`, and waits until it says so.
    pub async fn start_holder(&mut self, tasks: &[Task<'_>]) {
        let kind = match self.kind {
            Kind::Posix => "posix",
            Kind::Cgroups => "cgroups",
        };
        let mut spec = format!("{kind}\t{}\t{}\n", self.root, self.state_dir().display());
        for task in tasks {
            let sandbox = self.sandbox(task.id);
            std::fs::create_dir_all(&sandbox).unwrap();
            nix::unistd::mkfifo(&sandbox.join("go"), nix::sys::stat::Mode::from_bits_truncate(0o600))
                .unwrap();
            writeln!(spec, "{}\t{}\t{}", task.id, task.mem_mb, task.script).unwrap();
        }
        std::fs::write(self.dir.path().join("spec"), spec).unwrap();
        let log = std::fs::File::create(self.dir.path().join("holder.log")).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["holder_process", "--exact", "--nocapture", "--test-threads=1"])
            .env(HOLDER_ENV, self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.holder = Some(child);
        let launched = self.dir.path().join("launched");
        let started = Instant::now();
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&launched) {
                break text;
            }
            if let Some(status) = self.holder.as_mut().and_then(|child| child.try_wait().unwrap()) {
                panic!("the holder exited ({status}) before launching: {}", self.holder_log());
            }
            assert!(started.elapsed() < DEADLINE, "the holder launched nothing: {}", self.holder_log());
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        self.launched = text
            .lines()
            .map(|line| {
                let (id, pid) = line.split_once(' ').expect("id pid");
                (ContainerId(id.to_owned()), pid.parse().expect("pid"))
            })
            .collect();
        assert_eq!(self.launched.len(), tasks.len(), "{text}");
    }

    fn holder_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("holder.log")).unwrap_or_default()
    }

    /// SIGKILLs the holder (by pid) and reaps it: the containers are now nobody's.
    pub fn kill_holder(&mut self) {
        if let Some(mut child) = self.holder.take() {
            let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
            kill(pid, Signal::SIGKILL).unwrap();
            child.wait().unwrap();
        }
    }

    /// Lets `id`'s `read x < go` return.
    pub async fn release(&self, id: &str) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let fifo = self.sandbox(id).join("go");
        let started = Instant::now();
        loop {
            // Non-blocking: fails with ENXIO until the task has opened it for reading.
            match std::fs::OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(&fifo) {
                Ok(mut writer) => {
                    writer.write_all(b"go\n").unwrap();
                    return;
                }
                Err(error) if error.raw_os_error() == Some(nix::libc::ENXIO) => {}
                Err(error) => panic!("opening {}: {error}", fifo.display()),
            }
            assert!(started.elapsed() < DEADLINE, "{id} never waited on its fifo");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the main process (waiter) of `id` has ended: gone, or a zombie.
    pub async fn wait_main_ended(&self, id: &str) {
        let pid = self.main_pid(id);
        wait_until(&format!("main process {pid} of {id} to end"), || is_gone(pid)).await;
    }

    /// Ends a test that passed: every container was destroyed, so the cleanup must not
    /// signal their (possibly reused) pids.
    pub fn finish(mut self) {
        self.launched.clear();
    }

    /// Waits until `<sandbox of id>/<file>` holds a pid.
    pub async fn pid_in(&self, id: &str, file: &str) -> i32 {
        crate::common::read_pid_file(&self.sandbox(id).join(file)).await
    }
}

impl Drop for Fixture {
    /// Cleanup after a failure (a no-op after a clean test): the holder, every process
    /// group of a launched container and every process in its cgroups, by pid; then the
    /// cgroups and the root.
    fn drop(&mut self) {
        self.kill_holder();
        for (id, pid) in &self.launched {
            let pid = i32::try_from(*pid).unwrap_or(0);
            if pid > 1 && !is_gone(pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            for dir in self.cgroup_dirs(&id.0) {
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|line| line.trim().parse::<i32>().ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        for (id, _) in &self.launched {
            for dir in self.cgroup_dirs(&id.0) {
                for _ in 0..50 {
                    if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        for root in &self.root_dirs {
            let _ = std::fs::remove_dir(root);
        }
    }
}

/// Waits (observing, with a deadline) until `done` holds.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "waited {DEADLINE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The holder: launches what `<dir>/spec` lists, reports the pids, waits to be killed.
pub fn run_holder(dir: &Path) {
    let spec = std::fs::read_to_string(dir.join("spec")).expect("spec");
    let mut lines = spec.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    let (kind, root, state_dir) = (header[0], header[1], PathBuf::from(header[2]));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let containerizer: Arc<dyn Containerizer> = match kind {
            "posix" => Arc::new(PosixContainerizer::with_state_dir(&state_dir)),
            _ => Arc::new(
                CgroupsContainerizer::new(CgroupsConfig {
                    root: root.to_owned(),
                    cfs_quota: true,
                    state_dir: Some(state_dir.clone()),
                })
                .expect("cgroups"),
            ),
        };
        let mut launched = String::new();
        for line in lines {
            let mut fields = line.splitn(3, '\t');
            let (id, mem_mb, script) =
                (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
            let limits =
                Limits { cpus: 0.5, mem_bytes: Some(mem_mb.parse::<u64>().unwrap() * MIB), pids: Some(32) };
            let config =
                ContainerConfig::new(id, LaunchCommand::Shell(script.to_owned()), dir.join(id), limits);
            let pid = containerizer.launch(config).expect("launch");
            writeln!(launched, "{id} {pid}").unwrap();
        }
        std::fs::write(dir.join("launched.tmp"), launched).unwrap();
        std::fs::rename(dir.join("launched.tmp"), dir.join("launched")).unwrap();
        eprintln!("holder {} launched everything; waiting to be killed", std::process::id());
        std::future::pending::<()>().await;
    });
}
