//! Support for the Mesos v1 API tests: the Python environment with the real Mesos
//! clients (pymesos, avmesos-cli) that `scripts/setup.sh` makes, `keel local` as a
//! child process, and a minimal v1 client written against the API (event streams
//! read on a thread, calls with the stream's id).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader, Write};

use keel_actors::cli::http::request_with;
use keel_actors::v1::recordio::Decoder;
use serde_json::{json, Value};

use crate::ChildNode;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("integration/ is in the repository").to_path_buf()
}

/// The virtual environment with pymesos and avmesos-cli. Panics (never skips) when
/// it is missing: `scripts/setup.sh` (run by `make test`) makes it.
pub fn venv() -> PathBuf {
    let venv = repo_root().join(".venv-test");
    let python = venv.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import pymesos, http_parser.pyparser, avmesos"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Mesos client test environment {} is missing or incomplete: run scripts/setup.sh (make test does)",
        venv.display()
    );
    venv
}

/// A script of `integration/py/`.
pub fn script(name: &str) -> PathBuf {
    repo_root().join("integration/py").join(name)
}

/// A command running in the test environment (its `bin/` first on `PATH`).
pub fn venv_command(program: &str) -> Command {
    let venv = venv();
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(venv.join("bin").join(program));
    command.env("PATH", path).env_remove("PYTHONPATH").stdin(Stdio::null());
    command
}

/// Runs the pymesos scheduler of `v1_scheduler.py` against `master` with `tasks`
/// command tasks and one custom-executor task; returns its output.
pub fn run_pymesos_scheduler(master: &str, tasks: usize, timeout: Duration) -> Output {
    let venv = venv();
    let executor = format!("{} {}", venv.join("bin/python").display(), script("v1_executor.py").display());
    venv_command("python")
        .arg(script("v1_scheduler.py"))
        .args([master, &tasks.to_string(), &executor, &timeout.as_secs().to_string()])
        .output()
        .expect("python runs")
}

/// The `SEEN` lines of the scheduler's output, as JSON.
pub fn seen(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("SEEN "))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

/// Runs the Mesos CLI (`mesos-cli ARGS`) against `master`; returns its stdout.
pub fn mesos_cli(master: &str, args: &[&str]) -> String {
    let dir = crate::cluster::TempDir::new("mesos-cli");
    let config = dir.0.join("config.toml");
    std::fs::write(&config, format!("[master]\naddress = \"{master}\"\n")).expect("config written");
    let output = venv_command("mesos-cli")
        .args(args)
        .env("MESOS_CLI_CONFIG", &config)
        .env("HOME", &dir.0)
        .output()
        .expect("mesos-cli runs");
    assert!(
        output.status.success(),
        "mesos-cli {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `keel local` with `agents` agents as a child process; its master's address is
/// the child's `addr`.
pub fn start_local(agents: usize, work_dir: &Path) -> ChildNode {
    let binary = crate::cluster::keel_binary();
    let agents = agents.to_string();
    let work_dir = work_dir.to_str().expect("utf-8 path");
    let args = [
        "local",
        "--agents",
        &agents,
        "--port",
        "0",
        "--resources",
        "cpus:4;mem:4096;disk:4096",
        "--work-dir",
        work_dir,
    ];
    ChildNode::start_with(binary.to_str().expect("utf-8 path"), &args, "master: ").expect("keel local starts")
}

/// Events of one stream, read on a thread from a socket of its own (shut down when
/// this is dropped, so the server sees the stream end at once, as when a scheduler
/// process dies).
#[derive(Debug)]
pub struct Events {
    events: mpsc::Receiver<Value>,
    socket: std::net::TcpStream,
    /// The stream's `Mesos-Stream-Id`, if it had one.
    pub stream_id: Option<String>,
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads a chunked body's chunks into a RecordIO decoder, sending each event.
fn read_events(mut reader: impl BufRead, tx: mpsc::Sender<Value>) {
    let mut decoder = Decoder::new(64 * 1024 * 1024);
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return;
        }
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { return };
        if size == 0 {
            return;
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            return;
        }
        let Ok(records) = decoder.feed(&chunk[..size]) else { return };
        for record in records {
            let Ok(event) = serde_json::from_slice(&record) else { return };
            if tx.send(event).is_err() {
                return;
            }
        }
    }
}

impl Events {
    /// Opens the stream of `call` on `path` (panics unless it is a 200 stream).
    pub fn open(addr: &str, path: &str, call: &Value) -> Events {
        let mut socket = std::net::TcpStream::connect(addr).expect("the node accepts");
        let body = call.to_string();
        write!(
            socket,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("the request is sent");
        let mut reader = BufReader::new(socket.try_clone().expect("the socket clones"));
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("an answer");
        assert!(status_line.contains(" 200 "), "{path}: {status_line}");
        let mut stream_id = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("headers");
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("mesos-stream-id:") {
                stream_id = Some(value.trim().to_string());
            }
            chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        assert!(chunked, "{path}: the stream is not chunked");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || read_events(reader, tx));
        Events { events, socket, stream_id }
    }

    /// The next event that `pick` takes within `timeout`, skipping the others.
    pub fn wait_for<T>(&self, timeout: Duration, mut pick: impl FnMut(&Value) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => match pick(&event) {
                    Some(found) => return found,
                    None => skipped.push(event["type"].clone()),
                },
                Err(_) => panic!("no matching event within {timeout:?}; skipped {skipped:?}"),
            }
        }
    }

    /// Whether the stream ends (its thread is gone) within `timeout`.
    pub fn ends_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }
}

/// A framework subscribed through the scheduler API by the test itself.
#[derive(Debug)]
pub struct V1Framework {
    /// The master.
    pub addr: String,
    /// Its events.
    pub events: Events,
    /// Its framework id.
    pub framework_id: String,
}

impl V1Framework {
    /// Subscribes a framework named `name` and waits for SUBSCRIBED.
    pub fn subscribe(addr: &str, name: &str) -> V1Framework {
        V1Framework::subscribe_as(addr, name, None)
    }

    /// Subscribes (`framework_id`: resubscribes, failing over) and waits for SUBSCRIBED.
    pub fn subscribe_as(addr: &str, name: &str, framework_id: Option<&str>) -> V1Framework {
        let mut call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": "", "name": name, "failover_timeout": 60}}});
        if let Some(id) = framework_id {
            call["framework_id"] = json!({ "value": id });
            call["subscribe"]["framework_info"]["id"] = json!({ "value": id });
        }
        let events = Events::open(addr, "/api/v1/scheduler", &call);
        let framework_id = events.wait_for(Duration::from_secs(20), |e| {
            (e["type"] == "SUBSCRIBED")
                .then(|| e["subscribed"]["framework_id"]["value"].as_str().unwrap().to_string())
        });
        V1Framework { addr: addr.to_string(), events, framework_id }
    }

    /// Makes a call with this stream's id (the framework id is filled in); returns
    /// (status, body).
    pub fn call(&self, mut call: Value) -> (u16, String) {
        call["framework_id"] = json!({ "value": self.framework_id });
        let stream_id = self.events.stream_id.clone().unwrap_or_default();
        raw_call(&self.addr, &call.to_string(), &[("Mesos-Stream-Id", &stream_id)])
    }

    /// Waits for an offer and launches a command task `task_id` running `command` on
    /// it (0.1 cpus, 32 MB).
    pub fn launch(&self, task_id: &str, command: &str) {
        let offer = self.events.wait_for(Duration::from_secs(20), |e| {
            (e["type"] == "OFFERS").then(|| e["offers"]["offers"][0].clone()).filter(|o| !o.is_null())
        });
        let (status, body) = self.call(json!({"type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                "name": task_id, "task_id": {"value": task_id}, "agent_id": offer["agent_id"],
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
                "command": {"value": command}}]}}]}}));
        assert_eq!(status, 202, "ACCEPT: {body}");
    }
}

/// POSTs `body` (as JSON) to the scheduler API with `headers`; returns (status, body).
pub fn raw_call(addr: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, body) =
        request_with("POST", addr, "/api/v1/scheduler", Some(("application/json", body)), headers)
            .expect("the master answers");
    (status, String::from_utf8_lossy(&body).into_owned())
}
