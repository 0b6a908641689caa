//! The master against a scripted fake agent: duplicated status updates, messages
//! from strangers, and a reregistration that reports stale tasks. The fake agent is
//! a process on its own node; the master runs on another, over real sockets.

use std::sync::Arc;
use std::time::Duration;

use keel_actors::ids::{AgentId, FrameworkId, TaskId, UpdateId};
use keel_actors::master::{self, MasterConfig};
use keel_actors::messages::agent::*;
use keel_actors::messages::common::StatusUpdate;
use keel_actors::registry::MemoryRegistry;
use keel_actors::task::{
    AgentInfo, CommandInfo, FrameworkInfo, StatusSource, Task, TaskInfo, TaskState, TaskStatus,
};
use keel_integration::cluster::{Op, TestFramework};
use keel_kernel::{Handle, Handlers, Node, NodeConfig, Process, ProcessContext, ProcessRef, Upid};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// What the fake agent received.
#[derive(Debug)]
enum Got {
    Registered(AgentId),
    Reregistered(AgentId),
    Run(Box<RunTask>),
    Shutdown(FrameworkId),
    Ack(UpdateId),
}

struct FakeAgent(mpsc::UnboundedSender<Got>);

impl Process for FakeAgent {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            .install::<AgentRegistered>()
            .install::<AgentReregistered>()
            .install::<RunTask>()
            .install::<ShutdownFramework>()
            .install::<Ping>()
            .install::<keel_actors::messages::common::StatusUpdateAcknowledgement>();
    }
}

impl Handle<AgentRegistered> for FakeAgent {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, _from: Upid, m: AgentRegistered) {
        let _ = self.0.send(Got::Registered(m.agent_id));
    }
}
impl Handle<AgentReregistered> for FakeAgent {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, _from: Upid, m: AgentReregistered) {
        let _ = self.0.send(Got::Reregistered(m.agent_id));
    }
}
impl Handle<RunTask> for FakeAgent {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, _from: Upid, m: RunTask) {
        let _ = self.0.send(Got::Run(Box::new(m)));
    }
}
impl Handle<ShutdownFramework> for FakeAgent {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, _from: Upid, m: ShutdownFramework) {
        let _ = self.0.send(Got::Shutdown(m.framework_id));
    }
}
impl Handle<Ping> for FakeAgent {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: Ping) {
        ctx.send(&from, Pong {});
    }
}
impl Handle<keel_actors::messages::common::StatusUpdateAcknowledgement> for FakeAgent {
    fn handle(
        &mut self,
        _ctx: &mut ProcessContext<'_, Self>,
        _from: Upid,
        m: keel_actors::messages::common::StatusUpdateAcknowledgement,
    ) {
        let _ = self.0.send(Got::Ack(m.uuid));
    }
}

struct Setup {
    handle: master::MasterHandle,
    master_node: Node,
    master: Upid,
    agent_node: Node,
    agent: ProcessRef<FakeAgent>,
    got: mpsc::UnboundedReceiver<Got>,
}

async fn setup() -> Setup {
    let master_node = Node::start(NodeConfig::default()).await.unwrap();
    let handle =
        master::start(&master_node, MasterConfig::default(), Arc::new(MemoryRegistry::new())).unwrap();
    let agent_node = Node::start(NodeConfig::default()).await.unwrap();
    let (tx, got) = mpsc::unbounded_channel();
    let agent = agent_node.spawn("agent", FakeAgent(tx)).unwrap();
    Setup { master_node, master: handle.master.upid().clone(), handle, agent_node, agent, got }
}

async fn next<T>(got: &mut mpsc::UnboundedReceiver<Got>, mut pick: impl FnMut(Got) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let item = tokio::time::timeout_at(deadline, got.recv()).await.expect("in time").expect("open");
        if let Some(value) = pick(item) {
            return value;
        }
    }
}

fn agent_info() -> AgentInfo {
    AgentInfo {
        hostname: "fake".into(),
        id: None,
        resources: "cpus:2;mem:1024".parse().unwrap(),
        attributes: Default::default(),
    }
}

fn update(
    framework_id: &FrameworkId,
    agent_id: &AgentId,
    task: &str,
    state: TaskState,
    uuid: &UpdateId,
) -> StatusUpdate {
    let mut status = TaskStatus::new(TaskId(task.into()), state, StatusSource::Executor);
    status.uuid = Some(uuid.clone());
    StatusUpdate {
        latest_state: None,
        framework_id: framework_id.clone(),
        executor_id: None,
        agent_id: Some(agent_id.clone()),
        status,
        uuid: uuid.clone(),
        agent_pid: None,
    }
}

/// Reads a master metric from inside the master (the test shares its thread, so a
/// blocking HTTP call would stall it).
async fn metric(s: &Setup, key: &'static str) -> f64 {
    s.handle.read(|core| core.metrics_snapshot(0.0)[key])
}

async fn eventually(s: &Setup, key: &'static str, check: impl Fn(f64) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if check(metric(s, key).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Registers the fake agent, subscribes a framework and launches one task on it.
async fn launched(s: &mut Setup) -> (AgentId, TestFramework, Box<RunTask>) {
    s.agent_node.send(
        s.agent.upid(),
        &s.master,
        RegisterAgent { agent: agent_info(), version: "test".into(), incarnation: 1 },
    );
    let agent_id = next(&mut s.got, |g| if let Got::Registered(id) = g { Some(id) } else { None }).await;
    let mut fw = TestFramework::start(&s.master_node, "fw", &s.master, FrameworkInfo::new("protocol")).await;
    let offer = fw.offer().await;
    let task = TaskInfo::command("t1", &offer, "cpus:1;mem:128".parse().unwrap(), CommandInfo::shell("true"));
    fw.op(Op::Launch(offer.id.clone(), vec![task]));
    let run = next(&mut s.got, |g| if let Got::Run(r) = g { Some(r) } else { None }).await;
    (agent_id, fw, run)
}

#[test]
fn a_duplicated_terminal_update_is_forwarded_but_counted_once() {
    actix_rt::System::new().block_on(async {
        let mut s = setup().await;
        let (agent_id, mut fw, run) = launched(&mut s).await;
        let framework_id = run.framework.id.clone().unwrap();
        assert_eq!(metric(&s, "master/cpus_used").await, 1.0);
        let running = UpdateId::random();
        let finished = UpdateId::random();
        s.agent_node.send(
            s.agent.upid(),
            &s.master,
            update(&framework_id, &agent_id, "t1", TaskState::Running, &running),
        );
        s.agent_node.send(
            s.agent.upid(),
            &s.master,
            update(&framework_id, &agent_id, "t1", TaskState::Finished, &finished),
        );
        s.agent_node.send(
            s.agent.upid(),
            &s.master,
            update(&framework_id, &agent_id, "t1", TaskState::Finished, &finished),
        );
        fw.status("t1", TaskState::Running).await;
        fw.status("t1", TaskState::Finished).await;
        // The acknowledgements travel back to the agent.
        next(&mut s.got, |g| matches!(g, Got::Ack(ref u) if *u == finished).then_some(())).await;
        assert_eq!(metric(&s, "master/tasks_finished").await, 1.0);
        assert_eq!(metric(&s, "master/cpus_used").await, 0.0);
        // A stranger's status update changes nothing.
        let stranger = s.agent_node.upid("stranger").unwrap();
        s.agent_node.send(
            &stranger,
            &s.master,
            update(&framework_id, &agent_id, "t1", TaskState::Failed, &UpdateId::random()),
        );
        assert!(eventually(&s, "master/invalid_status_updates", |v| v >= 1.0).await);
        assert_eq!(metric(&s, "master/tasks_failed").await, 0.0);
    });
}

#[test]
fn a_reregistration_with_stale_tasks_shuts_down_their_frameworks() {
    actix_rt::System::new().block_on(async {
        let mut s = setup().await;
        let (agent_id, fw, run) = launched(&mut s).await;
        let framework_id = run.framework.id.clone().unwrap();
        s.agent_node.send(
            s.agent.upid(),
            &s.master,
            update(&framework_id, &agent_id, "t1", TaskState::Running, &UpdateId::random()),
        );
        // The framework leaves: the agent is told to shut it down.
        fw.op(Op::Stop(false));
        fw.handle.wait().await;
        let shut = next(&mut s.got, |g| if let Got::Shutdown(id) = g { Some(id) } else { None }).await;
        assert_eq!(shut, framework_id);
        // The agent comes back still reporting the task, plus one of a framework
        // nobody knows (and it sends no FrameworkInfo for it).
        let stale = |framework: &FrameworkId, task: &str| Task {
            info: TaskInfo {
                agent_id: agent_id.clone(),
                ..TaskInfo::command(
                    task,
                    &fake_offer(&agent_id),
                    "cpus:0.5;mem:64".parse().unwrap(),
                    CommandInfo::shell("true"),
                )
            },
            framework_id: framework.clone(),
            executor_id: task.into(),
            state: TaskState::Running,
            status: None,
            role: None,
        };
        let ghost = FrameworkId("ghost-framework".into());
        let reregister = ReregisterAgent {
            incarnation: 1,
            agent: AgentInfo { id: Some(agent_id.clone()), ..agent_info() },
            tasks: vec![stale(&framework_id, "t1"), stale(&ghost, "g1")],
            executors: Vec::new(),
            frameworks: vec![run.framework.clone()],
            version: "test".into(),
        };
        s.agent_node.send(s.agent.upid(), &s.master, reregister);
        // (The RUNNING update may reach the master after the teardown and earn
        // another shutdown of the same framework; that is fine.)
        let mut shut_down = std::collections::BTreeSet::new();
        let mut reregistered = false;
        while !(shut_down.contains(&ghost) && reregistered) {
            match next(&mut s.got, |g| match g {
                Got::Shutdown(_) | Got::Reregistered(_) => Some(g),
                _ => None,
            })
            .await
            {
                Got::Shutdown(id) => {
                    shut_down.insert(id);
                }
                Got::Reregistered(id) => {
                    assert_eq!(id, agent_id);
                    reregistered = true;
                }
                _ => {}
            }
        }
        assert!(shut_down.contains(&framework_id));
        // Nothing stale came back to life in the master.
        let state = s.handle.read(|core| keel_actors::master::http::state_json(core, "memory"));
        assert!(state["frameworks"].as_array().unwrap().is_empty(), "{state}");
        assert_eq!(metric(&s, "master/cpus_used").await, 0.0);
    });
}

fn fake_offer(agent_id: &AgentId) -> keel_actors::task::Offer {
    keel_actors::task::Offer {
        id: "o".into(),
        framework_id: FrameworkId::default(),
        agent_id: agent_id.clone(),
        hostname: "fake".into(),
        agent_pid: "agent@127.0.0.1:1".parse().unwrap(),
        resources: Default::default(),
        attributes: Default::default(),
        role: "*".into(),
        executor_ids: Vec::new(),
    }
}

#[test]
fn state_metrics_and_tasks_answer_with_a_backlog_of_a_hundred_thousand_messages() {
    // Bug 13: HTTP used to reach the master through its actix mailbox, which
    // refused (503) while it was full. Now the endpoints read the master's core
    // directly, so they answer while the mailbox holds a hundred thousand messages.
    actix_rt::System::new().block_on(async {
        let s = setup().await;
        let stranger = Upid::new("stranger", s.master_node.addr().clone()).unwrap();
        let depth = |s: &Setup| {
            let id = s.master.to_string();
            s.master_node.processes().into_iter().find(|p| p.id == id).map_or(0, |p| p.mailbox_depth)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while metric(&s, "master/elected").await < 1.0 {
            assert!(tokio::time::Instant::now() < deadline, "the master did not recover");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let before = depth(&s);
        // Queued without yielding: the master cannot run until this task awaits.
        for _ in 0..100_000 {
            s.master_node.send(&stranger, &s.master, Pong {});
        }
        assert!(depth(&s) >= before + 100_000, "the backlog was not queued");
        let router = master::http::routes(s.handle.clone());
        for path in ["/state", "/metrics", "/metrics/snapshot?timeout=5secs", "/tasks"] {
            let request = axum::extract::Request::get(path).body(axum::body::Body::empty()).unwrap();
            let response = ready(router.clone().oneshot(request))
                .unwrap_or_else(|| panic!("{path} waited for the master"))
                .unwrap();
            let status = response.status();
            let body = ready(axum::body::to_bytes(response.into_body(), usize::MAX)).unwrap().unwrap();
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
            assert!(depth(&s) >= before + 100_000, "{path} was answered only after the master ran");
        }
        // And the backlog is handled: every one counted as from a stranger.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while metric(&s, "master/invalid_senders").await < 100_000.0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the backlog was not handled: {} {}",
                metric(&s, "master/invalid_senders").await,
                depth(&s)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Over the socket too, once it drained.
        let addr = s.master_node.addr().to_string();
        let (status, body) =
            tokio::task::spawn_blocking(move || keel_integration::http_get(&addr, "/state").unwrap())
                .await
                .unwrap();
        assert_eq!(status, 200, "{body}");
    });
}

/// Polls `future` once, on this thread, without letting any other task run: the
/// value if it was ready.
fn ready<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(value) => Some(value),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn an_absurd_metrics_timeout_is_refused_not_a_panic() {
    // Bug 14 on the HTTP side: `?timeout=100000000000000000000000secs` used to panic.
    actix_rt::System::new().block_on(async {
        let s = setup().await;
        let addr = s.master_node.addr().to_string();
        let (status, body) = tokio::task::spawn_blocking(move || {
            keel_integration::http_get(&addr, "/metrics/snapshot?timeout=100000000000000000000000secs")
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("at most a year"), "{body}");
    });
}
