//! The agent against a scripted master: an agent that stops hearing pings (a silent
//! partition closes no connection) reregisters; one that hears them stays put; a
//! `keel agent` process its master shuts down exits.

use std::sync::Arc;
use std::time::Duration;

use keel_actors::agent::{self, AgentConfig};
use keel_actors::ids::AgentId;
use keel_actors::messages::agent::*;
use keel_actors::task::AgentInfo;
use keel_integration::cluster::{start_agent, TempDir};
use keel_isolation::PosixContainerizer;
use keel_kernel::{Handle, Handlers, Node, NodeConfig, Process, ProcessContext, Upid};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// A master that registers agents with a short ping interval and pings only if told.
struct FakeMaster {
    pings: bool,
    seen: mpsc::UnboundedSender<&'static str>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PingAgain {
    agent: Upid,
}
keel_kernel::message!(PingAgain, "keel.test.PingAgain");

impl Process for FakeMaster {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            .install::<RegisterAgent>()
            .install::<ReregisterAgent>()
            .install::<Pong>()
            .install::<PingAgain>();
    }
}

impl Handle<RegisterAgent> for FakeMaster {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: RegisterAgent) {
        let _ = self.seen.send("register");
        ctx.send(
            &from,
            AgentRegistered {
                agent_id: AgentId("S0".into()),
                ping_interval_secs: 0.1,
                epoch: 1,
                max_ping_timeouts: 5,
                session: 1,
            },
        );
        if self.pings {
            ctx.delay(Duration::from_millis(100), PingAgain { agent: from });
        }
    }
}

impl Handle<ReregisterAgent> for FakeMaster {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ReregisterAgent) {
        assert_eq!(m.agent.id, Some(AgentId("S0".into())));
        let _ = self.seen.send("reregister");
        ctx.send(
            &from,
            AgentReregistered {
                agent_id: AgentId("S0".into()),
                ping_interval_secs: 0.1,
                epoch: 1,
                max_ping_timeouts: 5,
                session: 1,
            },
        );
    }
}

impl Handle<Pong> for FakeMaster {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, _from: Upid, _m: Pong) {}
}

impl Handle<PingAgain> for FakeMaster {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, _from: Upid, m: PingAgain) {
        ctx.send(&m.agent, Ping { connected: true, round: 1, epoch: 1 });
        ctx.delay(Duration::from_millis(100), m);
    }
}

async fn run_agent_against(pings: bool, watch: Duration) -> Vec<&'static str> {
    let dir = TempDir::new("agent-pings");
    let master_node = Node::start(NodeConfig::default()).await.unwrap();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let master = master_node.spawn("master", FakeMaster { pings, seen: tx }).unwrap();
    let agent_node = Node::start(NodeConfig::default()).await.unwrap();
    let info = AgentInfo {
        hostname: "a".into(),
        id: None,
        resources: "cpus:1;mem:128".parse().unwrap(),
        attributes: Default::default(),
    };
    let config =
        AgentConfig::new(master.upid().clone(), dir.0.clone(), info, Arc::new(PosixContainerizer::new()));
    let _agent = agent::start(&agent_node, config).unwrap();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + watch;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, seen.recv()).await {
        events.push(event);
    }
    events
}

#[test]
fn an_agent_that_hears_no_pings_reregisters() {
    actix_rt::System::new().block_on(async {
        let events = run_agent_against(false, Duration::from_millis(2500)).await;
        assert_eq!(events.first(), Some(&"register"));
        assert!(events.contains(&"reregister"), "{events:?}");
    });
}

#[test]
fn an_agent_that_is_pinged_stays_registered() {
    actix_rt::System::new().block_on(async {
        let events = run_agent_against(true, Duration::from_millis(1000)).await;
        assert_eq!(events, ["register"]);
    });
}

/// A master that shuts down every agent that registers.
struct ShuttingMaster;

impl Process for ShuttingMaster {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<RegisterAgent>();
    }
}

impl Handle<RegisterAgent> for ShuttingMaster {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: RegisterAgent) {
        ctx.send(&from, ShutdownAgent { message: "not wanted here".into() });
    }
}

#[test]
fn a_keel_agent_its_master_shuts_down_exits() {
    // Bug 15: a shut-down agent used to stop its process and keep the binary running.
    actix_rt::System::new().block_on(async {
        let dir = TempDir::new("agent-shutdown");
        let master_node = Node::start(NodeConfig::default()).await.unwrap();
        let _master = master_node.spawn("master", ShuttingMaster).unwrap();
        let mut agent = start_agent(&master_node.addr().to_string(), &dir.0, &[]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = agent.try_wait() {
                break status;
            }
            assert!(tokio::time::Instant::now() < deadline, "the agent kept running after its shutdown");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(0), "asked to shut down is not a failure");
    });
}
