//! Cluster fixtures: `keel master` and `keel agent` as child processes (killed by
//! PID), and a test framework whose callbacks become events the test awaits and
//! whose driver the test commands through typed messages (a framework as an actor).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use keel_actors::detector::MasterAddress;
use keel_actors::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use keel_actors::messages::scheduler::ReconcileTask;
use keel_actors::scheduler::{
    start_scheduler_with, Scheduler, SchedulerConfig, SchedulerDriver, SchedulerHandle, SchedulerProcess,
};
use keel_actors::task::{FrameworkInfo, Offer, TaskInfo, TaskState, TaskStatus};
use keel_kernel::{Handle, Handlers, Node, ProcessContext, Upid};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::ChildNode;

/// The `keel` binary, built once per test run (`cargo build -p keel-actors --bin keel`).
pub fn keel_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_binary("keel-actors", "keel")).clone()
}

/// The `keel-batch` example binary, built once per test run.
pub fn keel_batch_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| build_binary("keel-examples", "keel-batch")).clone()
}

/// Builds binary `name` of `package` in the test's own profile; returns its path.
fn build_binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe.parent().and_then(|p| p.parent()).expect("target dir").to_path_buf();
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-q", "-p", package, "--bin", name]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(status.success(), "building the {name} binary failed");
    profile_dir.join(name)
}

/// A master process on any free port, with an in-memory registry.
pub fn start_master(extra: &[&str]) -> ChildNode {
    let mut args = vec!["--port", "0", "--registry", "memory"];
    args.extend_from_slice(extra);
    start_master_with(&args)
}

/// A master process with exactly these flags (after `keel master`).
pub fn start_master_with(flags: &[&str]) -> ChildNode {
    let binary = keel_binary();
    let mut args = vec!["master"];
    args.extend_from_slice(flags);
    ChildNode::start_with(binary.to_str().expect("utf-8 path"), &args, "master listening on ")
        .expect("master starts")
}

/// An agent process registered with `master` (`host:port`), with its own work dir.
pub fn start_agent(master: &str, work_dir: &std::path::Path, extra: &[&str]) -> ChildNode {
    start_agent_on(master, work_dir, 0, extra)
}

/// An agent process listening on `port` (0: any free port).
pub fn start_agent_on(master: &str, work_dir: &std::path::Path, port: u16, extra: &[&str]) -> ChildNode {
    let binary = keel_binary();
    let work_dir = work_dir.to_str().expect("utf-8 path");
    let port = port.to_string();
    let mut args = vec!["agent", "--master", master, "--port", &port, "--work-dir", work_dir];
    if !extra.contains(&"--resources") {
        args.extend_from_slice(&["--resources", "cpus:4;mem:4096;disk:4096"]);
    }
    args.extend_from_slice(extra);
    ChildNode::start_with(binary.to_str().expect("utf-8 path"), &args, "agent listening on ")
        .expect("agent starts")
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `keel-<name>-<pid>-<random>` under the system temp dir.
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("keel-{name}-{}-{:08x}", std::process::id(), rand_u32()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish() as u32
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the test framework saw.
#[derive(Debug, Clone)]
pub enum Event {
    /// Subscribed with this id.
    Subscribed(FrameworkId),
    /// Subscribed again (the master's connection broke, or another master leads).
    Resubscribed(FrameworkId),
    /// The master's connection broke.
    Disconnected,
    /// Offers arrived.
    Offers(Vec<Offer>),
    /// An offer was rescinded.
    Rescinded(OfferId),
    /// A status update.
    Status(TaskStatus),
    /// The master sent an error.
    Error(String),
    /// An agent was lost.
    AgentLost(AgentId),
    /// An executor exited.
    ExecutorLost(ExecutorId, i32),
    /// Data from an executor.
    Message(Vec<u8>),
}

/// A command for the test framework's driver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    /// Launch on an offer.
    Launch(OfferId, Vec<TaskInfo>),
    /// Decline an offer.
    Decline(OfferId, f64),
    /// Accept an offer with operations, filtering the rest for that many seconds.
    Accept(OfferId, Vec<keel_actors::messages::scheduler::Operation>, f64),
    /// Kill a task.
    Kill(TaskId),
    /// Reconcile (explicit when non-empty).
    Reconcile(Vec<ReconcileTask>),
    /// Acknowledge with a made-up uuid.
    BogusAck(TaskId, AgentId),
    /// Suppress offers.
    Suppress,
    /// Revive offers.
    Revive,
    /// Stop the driver (with failover or teardown).
    Stop(bool),
}

/// Carries an [`Op`] to the test framework.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command {
    /// The operation.
    pub op: Op,
}
keel_kernel::message!(Command, "keel.test.FrameworkCommand");

/// A scheduler that reports everything and does what it is told.
#[derive(Debug)]
pub struct Recorder {
    events: mpsc::UnboundedSender<Event>,
}

impl Scheduler for Recorder {
    fn subscribed(&mut self, _d: &mut SchedulerDriver, framework_id: &FrameworkId) {
        let _ = self.events.send(Event::Subscribed(framework_id.clone()));
    }
    fn reregistered(&mut self, _d: &mut SchedulerDriver, framework_id: &FrameworkId) {
        let _ = self.events.send(Event::Resubscribed(framework_id.clone()));
    }
    fn disconnected(&mut self, _d: &mut SchedulerDriver) {
        let _ = self.events.send(Event::Disconnected);
    }
    fn offers(&mut self, _d: &mut SchedulerDriver, offers: Vec<Offer>) {
        let _ = self.events.send(Event::Offers(offers));
    }
    fn rescinded(&mut self, _d: &mut SchedulerDriver, offer_id: &OfferId) {
        let _ = self.events.send(Event::Rescinded(offer_id.clone()));
    }
    fn status_update(&mut self, _d: &mut SchedulerDriver, status: &TaskStatus) {
        let _ = self.events.send(Event::Status(status.clone()));
    }
    fn framework_message(&mut self, _d: &mut SchedulerDriver, _e: &ExecutorId, _a: &AgentId, data: Vec<u8>) {
        let _ = self.events.send(Event::Message(data));
    }
    fn agent_lost(&mut self, _d: &mut SchedulerDriver, agent_id: &AgentId) {
        let _ = self.events.send(Event::AgentLost(agent_id.clone()));
    }
    fn executor_lost(
        &mut self,
        _d: &mut SchedulerDriver,
        executor_id: &ExecutorId,
        _a: &AgentId,
        status: i32,
    ) {
        let _ = self.events.send(Event::ExecutorLost(executor_id.clone(), status));
    }
    fn error(&mut self, _d: &mut SchedulerDriver, message: &str) {
        let _ = self.events.send(Event::Error(message.to_string()));
    }
    fn install(handlers: &mut Handlers<SchedulerProcess<Self>>) {
        handlers.install::<Command>();
    }
}

impl Handle<Command> for SchedulerProcess<Recorder> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, _from: Upid, command: Command) {
        let (_, driver) = self.split();
        match command.op {
            Op::Launch(offer, tasks) => driver.launch(offer, tasks),
            Op::Decline(offer, seconds) => driver.decline(offer, Some(seconds)),
            Op::Accept(offer, operations, seconds) => {
                driver.accept(vec![offer], operations, keel_actors::task::Filters { refuse_seconds: seconds })
            }
            Op::Kill(task) => driver.kill(task, None),
            Op::Reconcile(tasks) => driver.reconcile(tasks),
            Op::BogusAck(task_id, agent_id) => {
                let mut status =
                    TaskStatus::new(task_id, TaskState::Running, keel_actors::task::StatusSource::Executor);
                status.uuid = Some(keel_actors::ids::UpdateId::random());
                status.agent_id = Some(agent_id);
                driver.acknowledge(&status);
            }
            Op::Suppress => driver.suppress(),
            Op::Revive => driver.revive(),
            Op::Stop(failover) => driver.stop(failover),
        }
        self.flush(ctx);
    }
}

/// A test framework in the test's own node.
pub struct TestFramework {
    /// The driver.
    pub handle: SchedulerHandle<Recorder>,
    /// Its events.
    pub events: mpsc::UnboundedReceiver<Event>,
    node: Node,
    /// The framework id once subscribed.
    pub id: Option<FrameworkId>,
}

impl std::fmt::Debug for TestFramework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestFramework").field("id", &self.id).finish()
    }
}

/// How long a test waits for one event.
pub const EVENT_WAIT: Duration = Duration::from_secs(20);

impl TestFramework {
    /// Starts the framework and waits for its subscription.
    pub async fn start(node: &Node, name: &str, master: &Upid, info: FrameworkInfo) -> TestFramework {
        TestFramework::start_at(node, name, &MasterAddress::Fixed(master.clone()), info).await
    }

    /// Starts the framework against a master address (fixed, or an etcd election it
    /// follows) and waits for its subscription.
    pub async fn start_at(
        node: &Node,
        name: &str,
        master: &MasterAddress,
        info: FrameworkInfo,
    ) -> TestFramework {
        let (events, rx) = mpsc::unbounded_channel();
        let config = SchedulerConfig::new(node.upid("master").expect("a valid name"), info);
        let wait = Some(EVENT_WAIT);
        let handle = start_scheduler_with(node, name, config, Recorder { events }, master, wait)
            .await
            .expect("scheduler starts");
        let mut framework = TestFramework { handle, events: rx, node: node.clone(), id: None };
        let id =
            framework.wait_for(|e| if let Event::Subscribed(id) = e { Some(id.clone()) } else { None }).await;
        framework.id = Some(id);
        framework
    }

    /// Sends an operation to the driver.
    pub fn op(&self, op: Op) {
        let me = self.handle.process.upid().clone();
        self.node.send(&me, &me, Command { op });
    }

    /// Waits for the first event `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("the awaited event arrived in time")
                .expect("framework alive");
            if let Some(value) = pick(&event) {
                return value;
            }
        }
    }

    /// Waits for an offer.
    pub async fn offer(&mut self) -> Offer {
        self.wait_for(|e| if let Event::Offers(offers) = e { offers.first().cloned() } else { None }).await
    }

    /// Waits for a status of `task` in `state`.
    pub async fn status(&mut self, task: &str, state: TaskState) -> TaskStatus {
        self.wait_for(|e| match e {
            Event::Status(s) if s.task_id.as_str() == task && s.state == state => Some(s.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for any terminal status of `task`.
    pub async fn terminal(&mut self, task: &str) -> TaskStatus {
        self.wait_for(|e| match e {
            Event::Status(s) if s.task_id.as_str() == task && s.state.is_terminal() => Some(s.clone()),
            _ => None,
        })
        .await
    }
}

/// A command task using half a cpu and 64 MB of `offer`.
pub fn command_task(id: &str, offer: &Offer, command: &str) -> TaskInfo {
    TaskInfo::command(
        id,
        offer,
        "cpus:0.5;mem:64".parse().expect("valid resources"),
        keel_actors::task::CommandInfo::shell(command),
    )
}

/// A node for the test's own processes (frameworks, probes), on loopback.
pub async fn test_node() -> Node {
    Node::start(keel_kernel::NodeConfig::default()).await.expect("node starts")
}

/// One `/metrics/snapshot` value of the node at `addr` (blocking HTTP: call it
/// outside the test's actix thread or when its actors need not answer).
pub fn metric(addr: &str, key: &str) -> f64 {
    let (_, body) = crate::http_get(addr, "/metrics/snapshot").expect("metrics");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    json[key].as_f64().unwrap_or_else(|| panic!("no {key} in {body}"))
}
