//! Support for Keel's multi-process tests: child nodes started and killed by PID,
//! a probe process that hands what it receives to the test, raw HTTP and socket
//! helpers, and waiting on predicates with deadlines instead of sleeps.

pub mod cluster;
pub mod etcd;
pub mod ha;
pub mod proto;
pub mod proxy;
pub mod v1;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use keel_kernel::{Handle, Handlers, Process, ProcessContext, Upid};
use tokio::sync::mpsc;

use crate::proto::{GreetReplyV1, Hop, Pong};

/// A child `keel-testnode` process, killed (by PID) when dropped.
#[derive(Debug)]
pub struct ChildNode {
    child: Child,
    /// The node's address, `host:port`.
    pub addr: String,
    /// Empty directories to remove after the child is gone (an agent's cgroup roots).
    pub remove_after: Vec<std::path::PathBuf>,
}

impl ChildNode {
    /// Starts `binary` with `args` and waits for its `READY host:port` line.
    pub fn start(binary: &str, args: &[&str]) -> anyhow::Result<ChildNode> {
        ChildNode::start_with(binary, args, "READY ")
    }

    /// Starts `binary` with `args` and waits for a line `<ready>host:port...`.
    pub fn start_with(binary: &str, args: &[&str], ready: &str) -> anyhow::Result<ChildNode> {
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {binary}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix(ready) {
                        break rest.split_whitespace().next().unwrap_or_default().to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("{binary} exited before it was ready");
                }
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(ChildNode { child, addr, remove_after: Vec::new() })
    }

    /// The UPID of process `name` on this node.
    pub fn upid(&self, name: &str) -> Upid {
        format!("{name}@{}", self.addr).parse().expect("child address is valid")
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the child (SIGSTOP, by PID): it keeps its sockets and answers nothing.
    pub fn stop(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a stopped child run again (SIGCONT, by PID).
    pub fn cont(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Sends SIGTERM (by PID): the child shuts down on its own terms.
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// Sends SIGKILL to the child (by PID) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        self.kill();
        for dir in &self.remove_after {
            // An agent killed in the middle of destroying a container can leave it frozen
            // (cgroup v1): thaw it so its processes take their pending SIGKILL.
            for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let state = child.path().join("freezer.state");
                if std::fs::read_to_string(&state).is_ok_and(|s| s.trim() == "FROZEN") {
                    let _ = std::fs::write(&state, "THAWED");
                }
            }
            // Only empty directories go (a cgroup still holding a task stays).
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `GET path` on `addr`; returns (status, body) whatever the status.
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let (status, body) = keel_actors::cli::http::request("GET", addr, path, None)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends `method path` with a JSON `body` to `addr`; returns (status, body).
pub fn http_send(method: &str, addr: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let (status, body) = keel_actors::cli::http::request(method, addr, path, Some(body))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Reads one counter of `/__processes__` on `addr`.
pub fn counter(addr: &str, name: &str) -> anyhow::Result<u64> {
    let (_, body) = http_get(addr, "/__processes__")?;
    let json: serde_json::Value = serde_json::from_str(&body)?;
    json["counters"][name].as_u64().with_context(|| format!("no counter {name} in {body}"))
}

/// Polls `check` until it returns true or `deadline` passes.
pub fn wait_until(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Reads a JSON-lines trace file into values (skipping a torn last line).
pub fn read_trace(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// What the probe saw.
#[derive(Debug)]
pub enum Seen {
    /// A pong and its sender.
    Pong(Upid, Pong),
    /// A greeting reply decoded with the old (v1) type.
    GreetReply(Upid, GreetReplyV1),
    /// A hop that came back.
    Hop(Upid, Hop),
    /// A link's target exited.
    Exited(Upid),
}

/// A process in the test's own node that forwards what it receives to the test.
#[derive(Debug)]
pub struct Probe {
    seen: mpsc::UnboundedSender<Seen>,
}

impl Probe {
    /// A probe and the receiving end the test reads.
    pub fn new() -> (Probe, mpsc::UnboundedReceiver<Seen>) {
        let (seen, rx) = mpsc::unbounded_channel();
        (Probe { seen }, rx)
    }
}

impl Process for Probe {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<Pong>().install::<GreetReplyV1>().install::<Hop>();
    }

    fn exited(&mut self, _ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        let _ = self.seen.send(Seen::Exited(upid));
    }
}

impl Handle<Pong> for Probe {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, from: Upid, message: Pong) {
        let _ = self.seen.send(Seen::Pong(from, message));
    }
}

impl Handle<GreetReplyV1> for Probe {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, from: Upid, message: GreetReplyV1) {
        let _ = self.seen.send(Seen::GreetReply(from, message));
    }
}

impl Handle<Hop> for Probe {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, from: Upid, message: Hop) {
        let _ = self.seen.send(Seen::Hop(from, message));
    }
}

/// Runs `future` to completion on a fresh actix system (the test's own node lives there).
pub fn run<F: std::future::Future<Output = ()>>(future: F) {
    actix_rt::System::new().block_on(future);
}
