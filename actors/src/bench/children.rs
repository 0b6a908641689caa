//! The child processes of `keel bench failover`: a real etcd of a few members and
//! `keel master --etcd` processes, all on loopback ports chosen at start, each
//! started, killed (SIGKILL) and reaped by PID, never by name. [`Children`] is the
//! guard: dropping it, on success or on any error path, kills every child still
//! running and removes the directory holding the etcd data and the logs (on
//! `/dev/shm` when it exists, so etcd's fsyncs do not wait for a disk).

use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long etcd has to become healthy, and a master to print its address.
const START_WITHIN: Duration = Duration::from_secs(30);

/// The etcd binary: `etcd` on the PATH, else `/usr/bin/etcd`.
fn etcd_binary() -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|path| path.is_file());
    let default = PathBuf::from("/usr/bin/etcd");
    on_path.or_else(|| default.is_file().then_some(default)).ok_or_else(|| {
        anyhow::anyhow!("etcd is not installed (none on PATH, no /usr/bin/etcd): run scripts/setup.sh")
    })
}

/// `count` distinct free loopback ports (all held open until every one is chosen).
pub(super) fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("choosing free loopback ports")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// An etcd member's ports.
#[derive(Debug, Clone, Copy)]
struct Member {
    client_port: u16,
    peer_port: u16,
}

/// A `keel master` child: its fixed port and, while it runs, its process.
#[derive(Debug)]
struct Master {
    port: u16,
    child: Option<Child>,
}

/// Every child process of the benchmark and the directory they write to.
#[derive(Debug)]
pub(super) struct Children {
    root: PathBuf,
    etcd: Vec<(Member, Option<Child>)>,
    masters: Vec<Master>,
}

impl Children {
    /// A fresh directory for the children (nothing is started).
    pub(super) fn new() -> anyhow::Result<Children> {
        let base =
            if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let root = base.join(format!("keel-bench-failover-{}-{:08x}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Children { root, etcd: Vec::new(), masters: Vec::new() })
    }

    /// The directory the children (and the bench's simulated agents) write to.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Starts an etcd of `size` members on free loopback ports and waits until every
    /// member is healthy. Returns the client endpoints, `127.0.0.1:PORT`. Members use
    /// a 50 ms heartbeat and a 500 ms election timeout, as the integration tests do.
    pub(super) fn start_etcd(&mut self, size: usize) -> anyhow::Result<Vec<String>> {
        let binary = etcd_binary()?;
        let ports = free_ports(2 * size)?;
        let members: Vec<Member> =
            ports.chunks(2).map(|p| Member { client_port: p[0], peer_port: p[1] }).collect();
        let initial_cluster = members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("m{i}=http://127.0.0.1:{}", m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("keel-bench-{}-{:08x}", std::process::id(), fastrand::u32(..));
        for (i, member) in members.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{}", member.client_port);
            let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
            let log = self.log_file(&format!("etcd-m{i}.log"))?;
            let child = Command::new(&binary)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(self.root.join(format!("etcd-m{i}")))
                .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial_cluster, "--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {} (see scripts/setup.sh)", binary.display()))?;
            self.etcd.push((*member, Some(child)));
        }
        let endpoints: Vec<String> = members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect();
        let deadline = Instant::now() + START_WITHIN;
        while !endpoints.iter().all(|e| etcd_healthy(e)) {
            for (i, (_, child)) in self.etcd.iter_mut().enumerate() {
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    anyhow::bail!("etcd member m{i} exited ({status}):\n{}", self.logs("etcd-"));
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("etcd did not become healthy within {START_WITHIN:?}:\n{}", self.logs("etcd-"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(endpoints)
    }

    /// Reserves `count` free loopback ports for masters (started with [`Children::start_master`]).
    pub(super) fn reserve_masters(&mut self, count: usize) -> anyhow::Result<()> {
        self.masters = free_ports(count)?.into_iter().map(|port| Master { port, child: None }).collect();
        Ok(())
    }

    /// How many masters there are (running or not).
    pub(super) fn masters(&self) -> usize {
        self.masters.len()
    }

    /// Master `i`'s `127.0.0.1:PORT`.
    pub(super) fn master_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.masters[i].port)
    }

    /// Whether master `i` runs (as far as this process started and did not kill it).
    pub(super) fn master_running(&self, i: usize) -> bool {
        self.masters[i].child.is_some()
    }

    /// Starts master `i` on its port as `keel master --etcd ENDPOINTS --cluster NAME`
    /// (this executable, `RUST_LOG=warn`, its stderr appended to `master-<i>.log`) and
    /// waits, without blocking the runtime, for its `master listening on` line.
    pub(super) async fn start_master(
        &mut self,
        i: usize,
        endpoints: &[String],
        cluster: &str,
        lease_ttl_secs: u64,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(self.masters[i].child.is_none(), "master {i} runs already");
        let exe = std::env::current_exe().context("finding the keel executable")?;
        let port = self.masters[i].port.to_string();
        let log = self.log_file(&format!("master-{i}.log"))?;
        let mut child = Command::new(exe)
            .args(["master", "--ip", "127.0.0.1", "--port", &port])
            .args(["--etcd", &endpoints.join(","), "--cluster", cluster])
            .args(["--etcd-lease-ttl", &lease_ttl_secs.to_string()])
            .env("RUST_LOG", "warn")
            // What this process was given is not for its masters.
            .env_remove("KEEL_TRACE")
            .env_remove("KEEL_ADVERTISE_IP")
            .env_remove("KEEL_ADVERTISE_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting keel master")?;
        let stdout = child.stdout.take();
        self.masters[i].child = Some(child);
        let stdout = stdout.ok_or_else(|| anyhow::anyhow!("no stdout from master {i}"))?;
        // A thread reads the master's stdout to its end, so the master never writes
        // into a closed pipe; the first line comes back here.
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name(format!("bench-master-{i}")).spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = first_tx.send(first);
            for line in lines {
                if line.is_err() {
                    break;
                }
            }
        })?;
        let line = tokio::time::timeout(START_WITHIN, first_rx).await.ok().and_then(Result::ok).flatten();
        let expected = format!("master listening on {}", self.master_addr(i));
        match line {
            Some(line) if line.starts_with(&expected) => Ok(()),
            other => anyhow::bail!(
                "master {i} did not print {expected:?} within {START_WITHIN:?} (got {other:?}):\n{}",
                self.logs(&format!("master-{i}"))
            ),
        }
    }

    /// SIGKILLs master `i` by PID and reaps it.
    pub(super) fn kill_master(&mut self, i: usize) -> anyhow::Result<()> {
        let mut child =
            self.masters[i].child.take().ok_or_else(|| anyhow::anyhow!("master {i} is not running"))?;
        child.kill().with_context(|| format!("SIGKILL to master {i} (pid {})", child.id()))?;
        child.wait().with_context(|| format!("reaping master {i}"))?;
        Ok(())
    }

    /// The exit status of master `i` if it exited on its own.
    pub(super) fn master_exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.masters[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last lines of the logs whose names start with `prefix`, for error messages.
    pub(super) fn logs(&self, prefix: &str) -> String {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.root)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.extension().is_some_and(|x| x == "log")
                            && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix))
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let mut text = String::new();
        for path in names {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            text.push_str(&format!("--- {}:\n{tail}\n", path.display()));
        }
        text
    }

    fn log_file(&self, name: &str) -> anyhow::Result<std::fs::File> {
        let path = self.root.join(name);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        let masters = self.masters.iter_mut().filter_map(|m| m.child.take());
        let members = self.etcd.iter_mut().filter_map(|(_, c)| c.take());
        for mut child in masters.chain(members) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Whether the etcd member at `endpoint` answers `/health` with `"health":"true"`.
fn etcd_healthy(endpoint: &str) -> bool {
    crate::cli::http::get(endpoint, "/health")
        .is_ok_and(|body| String::from_utf8_lossy(&body).contains("\"health\":\"true\""))
}
