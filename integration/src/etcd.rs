//! A real etcd for the HA tests: 1 or 3 members on free loopback ports, each with
//! its own data directory, started as child processes and killed by PID (never by
//! name), on drop too. Members can be killed and restarted (same ports, same data)
//! or stopped and continued (SIGSTOP/SIGCONT).
//!
//! The binary is `$KEEL_ETCD`, else `/usr/bin/etcd`, else `etcd` on the PATH; when
//! none exists the harness panics telling to run `scripts/setup.sh`: the tests
//! never skip silently. Data directories go to `/dev/shm` when it exists (fsync on
//! a loaded disk would make elections slow), else the system temp dir. Members use
//! a 50 ms heartbeat and a 500 ms election timeout, so an etcd leader failure is
//! repaired well within a Keel lease.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_actors::etcd::EtcdConfig;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::proxy::free_port;

/// How long a (re)started etcd has to become healthy.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// The etcd binary to run; panics with what to do when there is none.
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KEEL_ETCD") {
        return PathBuf::from(path);
    }
    let default = PathBuf::from("/usr/bin/etcd");
    if default.is_file() {
        return default;
    }
    if let Some(found) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|path| path.is_file())
    {
        return found;
    }
    panic!("etcd is not installed (no /usr/bin/etcd, none on PATH, KEEL_ETCD unset): run scripts/setup.sh");
}

/// One etcd member.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of child processes.
#[derive(Debug)]
pub struct EtcdCluster {
    root: PathBuf,
    token: String,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// `size` members with their ports and directories, none started yet (so a test
    /// can try to reach etcd before it runs).
    pub fn new(size: usize) -> EtcdCluster {
        assert!(size > 0, "an etcd cluster needs a member");
        let binary = etcd_binary();
        assert!(binary.is_file(), "{} does not exist: run scripts/setup.sh", binary.display());
        let base =
            if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let token = format!("keel-etcd-{}-{:08x}", std::process::id(), fastrand::u32(..));
        let root = base.join(&token);
        std::fs::create_dir_all(&root).expect("etcd test directory");
        let members = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: root.join(format!("m{i}")),
                log: root.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        EtcdCluster { root, token, members }
    }

    /// A started, healthy cluster of `size` members.
    pub fn start(size: usize) -> EtcdCluster {
        let mut cluster = EtcdCluster::new(size);
        cluster.start_all();
        cluster
    }

    /// Starts every member that is not running and waits until all are healthy.
    pub fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i);
            }
        }
        self.assert_healthy();
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The client endpoints, `127.0.0.1:PORT`.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client endpoint.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// A Keel configuration for cluster `name` on these endpoints.
    pub fn config(&self, name: &str) -> EtcdConfig {
        EtcdConfig::new(self.endpoints(), name)
    }

    /// Member `i`'s PID, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// SIGKILLs member `i` (by PID) and reaps it.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            // A stopped process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again, same ports and data (it rejoins the cluster).
    /// Does not wait: see [`EtcdCluster::wait_healthy`].
    pub fn restart_member(&mut self, i: usize) {
        self.kill_member(i);
        self.spawn(i);
    }

    /// SIGSTOPs member `i`.
    pub fn stop(&self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
    }

    /// SIGCONTs member `i`.
    pub fn cont(&self, i: usize) {
        self.signal(i, Signal::SIGCONT);
    }

    fn signal(&self, i: usize, signal: Signal) {
        let pid = self.pid(i).unwrap_or_else(|| panic!("etcd member {i} is not running"));
        let pid = i32::try_from(pid).expect("pid fits i32");
        kill(Pid::from_raw(pid), signal).unwrap_or_else(|e| panic!("{signal} to etcd member {i}: {e}"));
    }

    /// Whether member `i` answers `/health` with `true` (it sees a leader).
    pub fn is_healthy(&self, i: usize) -> bool {
        self.members[i].child.is_some()
            && crate::http_get(&self.endpoint(i), "/health")
                .is_ok_and(|(status, body)| status == 200 && body.contains("\"health\":\"true\""))
    }

    /// Waits until every running member is healthy; false if `deadline` passes.
    pub fn wait_healthy(&self, deadline: Duration) -> bool {
        let running: Vec<usize> =
            (0..self.members.len()).filter(|&i| self.members[i].child.is_some()).collect();
        crate::wait_until(deadline, || running.iter().all(|&i| self.is_healthy(i)))
    }

    /// [`EtcdCluster::wait_healthy`] within [`HEALTHY_WITHIN`], or a panic with the
    /// members' logs.
    pub fn assert_healthy(&self) {
        if !self.wait_healthy(HEALTHY_WITHIN) {
            panic!("etcd did not become healthy within {HEALTHY_WITHIN:?}\n{}", self.logs());
        }
    }

    /// The member that is the raft leader (from each member's `/metrics`).
    pub fn leader_member(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && crate::http_get(&self.endpoint(i), "/metrics")
                    .is_ok_and(|(_, body)| body.lines().any(|line| line.trim() == "etcd_server_is_leader 1"))
        })
    }

    /// The tail of every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for member in &self.members {
            let log = std::fs::read_to_string(&member.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            text.push_str(&format!("--- etcd {} ({}):\n{tail}\n", member.name, member.log.display()));
        }
        text
    }

    fn spawn(&mut self, i: usize) {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let member = &mut self.members[i];
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .unwrap_or_else(|e| panic!("etcd log {}: {e}", member.log.display()));
        let log_err = log.try_clone().expect("log handle");
        // Flags are ignored on restart when the data dir holds a member already.
        let child = Command::new(etcd_binary())
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&member.data_dir)
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} (run scripts/setup.sh)", etcd_binary().display()));
        member.child = Some(child);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Waits, without blocking the runtime, until `check` holds; false after `deadline`.
pub async fn eventually(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// A `keel-etcd-candidate` child process (see its header), killed by PID on drop.
#[derive(Debug)]
pub struct CandidateProcess {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl CandidateProcess {
    /// Starts `binary` (the test's `env!("CARGO_BIN_EXE_keel-etcd-candidate")`)
    /// campaigning in `cluster` on `endpoints` with `value` and a TTL of `ttl_secs`.
    pub fn start(
        binary: &str,
        endpoints: &[String],
        cluster: &str,
        value: &str,
        ttl_secs: u64,
    ) -> CandidateProcess {
        let mut child = Command::new(binary)
            .args([&endpoints.join(","), cluster, value, &ttl_secs.to_string()])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let stdout = child.stdout.take().expect("candidate stdout");
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        CandidateProcess { child, lines }
    }

    /// The next line it prints, or `None` if none comes within `deadline`.
    pub async fn next_line(&mut self, deadline: Duration) -> Option<String> {
        tokio::time::timeout(deadline, self.lines.recv()).await.ok().flatten()
    }

    /// Waits for `ELECTED <epoch>` and returns the epoch.
    pub async fn elected(&mut self, deadline: Duration) -> u64 {
        let line =
            self.next_line(deadline).await.unwrap_or_else(|| panic!("not elected within {deadline:?}"));
        line.strip_prefix("ELECTED ")
            .and_then(|epoch| epoch.parse().ok())
            .unwrap_or_else(|| panic!("expected ELECTED <epoch>, got {line:?}"))
    }

    /// SIGKILLs it (by PID) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOPs it.
    pub fn stop(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONTs it.
    pub fn cont(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        kill(Pid::from_raw(pid), signal).unwrap_or_else(|e| panic!("{signal} to the candidate: {e}"));
    }
}

impl Drop for CandidateProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
