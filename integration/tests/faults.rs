//! Protocol faults with real processes: an agent restarted at the same address, a
//! connection from the master to an agent that breaks while the other direction
//! stays up, a RunTask lost on its way, a master restarted under `keel-batch`.
//! Faults come from the agent's own fault injection (`--fault-injection`, a rule
//! posted to `/faults`), a TCP proxy in front of the agent (which advertises the
//! proxy's port) for a connection cut one way, or SIGKILL, by PID.

use std::time::Duration;

use keel_actors::cli::master_upid;
use keel_actors::task::{FrameworkInfo, TaskReason, TaskState};
use keel_integration::cluster::Op;
use keel_integration::cluster::{
    command_task, metric, start_agent, start_agent_on, start_master, start_master_with, TempDir,
    TestFramework,
};
use keel_integration::proxy::{free_port, Proxy};
use keel_integration::{http_get, run, wait_until};

/// The agents the master has, with whether each is active.
fn agents(master: &str) -> Vec<(String, bool)> {
    let (_, body) = http_get(master, "/state").expect("state");
    let state: serde_json::Value = serde_json::from_str(&body).expect("json");
    state["slaves"]
        .as_array()
        .map(|slaves| {
            slaves
                .iter()
                .map(|s| {
                    (s["id"].as_str().unwrap_or_default().to_string(), s["active"].as_bool().unwrap_or(false))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_agent_restarted_at_the_same_address_is_a_new_agent_and_its_old_tasks_end() {
    // Bug 1: it used to come back under its old id, its tasks destroyed, and the
    // master showed them TASK_RUNNING for ever. Restarted without its work dir it
    // has no id to recover: it is a new agent (recovery is in tests/recovery.rs).
    let dir = TempDir::new("same-port");
    let fresh = TempDir::new("same-port-fresh");
    let master = start_master(&[]);
    let mut agent = start_agent(&master.addr, &dir.0, &[]);
    let port: u16 = agent.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("agent port");
    assert!(wait_until(Duration::from_secs(10), || agents(&master.addr).len() == 1));
    let old_id = agents(&master.addr)[0].0.clone();
    let master_upid = master_upid(&master.addr).unwrap();
    let mut _restarted = None;
    run(async {
        let node = keel_integration::cluster::test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("restart")).await;
        let offer = fw.offer().await;
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("long", &offer, "sleep 600")]));
        fw.status("long", TaskState::Running).await;
        agent.kill();
        _restarted = Some(start_agent_on(&master.addr, &fresh.0, port, &[]));
        let ended = fw.terminal("long").await;
        assert_eq!(ended.state, TaskState::Lost, "{ended:?}");
        assert_eq!(ended.reason, Some(TaskReason::AgentRestarted), "{ended:?}");
    });
    assert!(wait_until(Duration::from_secs(10), || {
        let now = agents(&master.addr);
        now.len() == 1 && now[0].0 != old_id && now[0].1
    }));
    assert_eq!(metric(&master.addr, "master/tasks_running"), 0.0);
    assert_eq!(metric(&master.addr, "master/slaves_gone"), 1.0);
}

#[test]
fn an_agent_whose_connection_from_the_master_breaks_is_reactivated() {
    // Bug 2: the master's link to the agent broke while the agent's to the master
    // stayed up; pings said "connected" and the agent stayed out of the pool for ever.
    let dir = TempDir::new("one-way");
    let master = start_master(&["--agent-ping-timeout", "0.3", "--max-agent-ping-timeouts", "20"]);
    let port = free_port();
    let proxy = Proxy::start(([127, 0, 0, 1], port).into());
    let proxy_port = proxy.port().to_string();
    let _agent = start_agent_on(&master.addr, &dir.0, port, &["--advertise-port", &proxy_port]);
    assert!(wait_until(Duration::from_secs(10), || agents(&master.addr).first().is_some_and(|a| a.1)));
    proxy.cut();
    assert!(
        wait_until(Duration::from_secs(10), || metric(&master.addr, "master/slaves_active") == 0.0),
        "the master noticed the broken connection"
    );
    assert_eq!(metric(&master.addr, "master/slaves_unreachable"), 0.0, "the agent answers pings all along");
    proxy.restore();
    assert!(
        wait_until(Duration::from_secs(15), || metric(&master.addr, "master/slaves_active") == 1.0),
        "the agent was told to reregister and is back in the pool"
    );
    // Its resources are offered again.
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = keel_integration::cluster::test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("one-way")).await;
        let offer = fw.offer().await;
        assert!(offer.resources.cpus() > 0.0);
    });
}

#[test]
fn a_launch_lost_on_its_way_to_the_agent_ends_lost_instead_of_staging_for_ever() {
    // Bug 7: the master asks the agent about a launch STAGING too long; the agent
    // never got it, refuses it from now on, and the framework hears TASK_LOST.
    let dir = TempDir::new("lost-launch");
    let master = start_master(&["--agent-ping-timeout", "0.3", "--launch-check-timeout", "1"]);
    let agent = start_agent_on(&master.addr, &dir.0, free_port(), &["--fault-injection"]);
    drop_next_run_task(&agent.addr);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = keel_integration::cluster::test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("lost-launch")).await;
        let offer = fw.offer().await;
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("lost", &offer, "true")]));
        let ended = fw.terminal("lost").await;
        assert_eq!(ended.state, TaskState::Lost, "{ended:?}");
        assert_eq!(ended.reason, Some(TaskReason::TaskUnknown), "{ended:?}");
        assert!(ended.message.as_deref().unwrap_or_default().contains("never received"), "{ended:?}");
        // The next launch goes through.
        let offer = fw.offer().await;
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("next", &offer, "true")]));
        assert_eq!(fw.terminal("next").await.state, TaskState::Finished);
    });
    assert_eq!(injected_drops(&agent.addr), 1, "the trace shows the injected fault");
    assert_eq!(metric(&master.addr, "master/launches_lost"), 1.0);
}

/// Tells a `--fault-injection` agent to lose the next RunTask it receives.
fn drop_next_run_task(agent: &str) {
    let rule = r#"{"action": "drop", "kind": "RunTask", "count": 1}"#;
    let (status, body) = keel_integration::http_send("POST", agent, "/faults", rule).expect("POST /faults");
    assert_eq!(status, 200, "{body}");
}

/// How many RunTasks the agent's trace shows lost to an injected fault.
fn injected_drops(agent: &str) -> usize {
    let (_, body) = http_get(agent, "/trace/recent?kind=RunTask").expect("trace");
    body.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["message"] == "fault" && event["reason"] == "injected drop")
        .count()
}

#[test]
fn keel_batch_finishes_when_its_master_restarts_after_losing_a_launch() {
    // The issue's symptom: a master restarted under a running keel-batch left it
    // waiting for ever on a launch the old master accepted and never delivered.
    // Here the RunTask is dropped, the master is killed before its own launch
    // check would notice, and the new master knows nothing of the launch: only
    // the batch's reconciliation brings out TASK_LOST, and the retry finishes.
    let dir = TempDir::new("batch-failover");
    let master_dir = dir.0.join("master");
    let master_dir = master_dir.to_str().expect("utf-8 path").to_string();
    let master_port = free_port().to_string();
    let flags: Vec<String> = [
        "--port",
        &master_port,
        "--registry",
        "file",
        "--work-dir",
        &master_dir,
        "--launch-check-timeout",
        "600",
        "--agent-ping-timeout",
        "0.3",
    ]
    .iter()
    .map(|flag| flag.to_string())
    .collect();
    let start = move || start_master_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let master = start();
    let addr = master.addr.clone();
    let agent = start_agent_on(&addr, &dir.0.join("agent"), free_port(), &["--fault-injection"]);
    drop_next_run_task(&agent.addr);
    let agent_addr = agent.addr.clone();
    let master_upid = master_upid(&addr).unwrap();
    let summary = std::cell::RefCell::new(None);
    run(async {
        let node = keel_integration::cluster::test_node().await;
        let options = keel_examples::batch::BatchOptions::default();
        let batch = keel_examples::batch::run_on(&node, master_upid, vec!["true".into()], &options);
        let restart = tokio::task::spawn_blocking(move || {
            let sent = wait_until(Duration::from_secs(30), || injected_drops(&agent_addr) == 1);
            assert!(sent, "no launch was sent");
            let mut master = master;
            master.kill();
            start()
        });
        let outcome = tokio::time::timeout(Duration::from_secs(90), batch).await;
        let restarted = restart.await.expect("the master restarted");
        *summary.borrow_mut() = Some((outcome, restarted));
    });
    let (outcome, master) = summary.into_inner().expect("ran");
    let summary = outcome.expect("the batch finished in time").expect("the batch ran");
    assert!(summary.aborted.is_none(), "{summary:?}");
    let job = &summary.jobs[0];
    assert_eq!((job.attempts, job.final_state), (2, Some(TaskState::Finished)), "{summary:?}");
    assert_eq!(injected_drops(&agent.addr), 1);
    // The teardown is persisted before the master acts on it: wait for it.
    assert!(
        wait_until(Duration::from_secs(10), || metric(&master.addr, "master/frameworks_active") == 0.0),
        "the batch tore itself down"
    );
}
