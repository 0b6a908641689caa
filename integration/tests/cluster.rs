//! The cluster end to end with real processes: `keel master` and `keel agent`
//! children, frameworks in the test process.

use std::time::Duration;

use keel_actors::cli::master_upid;
use keel_actors::ids::{ExecutorId, TaskId};
use keel_actors::messages::scheduler::ReconcileTask;
use keel_actors::task::{
    CommandInfo, ExecutorInfo, FrameworkCapability, FrameworkInfo, Offer, TaskInfo, TaskReason, TaskState,
};
use keel_integration::cluster::{
    command_task, metric, start_agent, start_master, test_node, Event, Op, TempDir, TestFramework,
};
use keel_integration::{http_get, run, wait_until};

#[test]
fn tasks_finish_and_fail_with_their_exit_codes() {
    let dir = TempDir::new("finish");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &[]);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("finish")).await;
        let offer = fw.offer().await;
        let tasks =
            vec![command_task("ok", &offer, "echo hello from keel"), command_task("bad", &offer, "exit 3")];
        fw.op(Op::Launch(offer.id.clone(), tasks));
        let running = fw.status("ok", TaskState::Running).await;
        let sandbox = running.message.clone().unwrap().trim_start_matches("sandbox: ").to_string();
        let finished = fw.terminal("ok").await;
        assert_eq!(finished.state, TaskState::Finished);
        assert_eq!(finished.exit_code, Some(0));
        let stdout = std::fs::read_to_string(format!("{sandbox}/stdout")).unwrap();
        assert_eq!(stdout, "hello from keel\n");
        let failed = fw.terminal("bad").await;
        assert_eq!(failed.state, TaskState::Failed);
        assert_eq!(failed.exit_code, Some(3));
        assert_eq!(failed.reason, Some(TaskReason::CommandExecutorFailed));
    });
    // The master counts them, and keel ps shows them.
    assert!(wait_until(Duration::from_secs(5), || metric(&master.addr, "master/tasks_finished") == 1.0));
    assert_eq!(metric(&master.addr, "master/tasks_failed"), 1.0);
    let table = keel_actors::cli::ps::run(&master.addr).unwrap();
    assert!(table.contains("ok") && table.contains("TASK_FINISHED"), "{table}");
    // The HTTP surface: Prometheus text, 400s with a JSON error, 404s.
    let (status, body) = http_get(&master.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("keel_master_tasks_running 0"), "{body}");
    for bad in
        ["/state?bogus=1", "/metrics/snapshot?timeout=soon", "/tasks?limit=many", "/tasks?order=sideways"]
    {
        let (status, body) = http_get(&master.addr, bad).unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        let error: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{bad}: not JSON: {body}"));
        assert!(error["error"].is_string(), "{bad}: {body}");
    }
    let (status, _) = http_get(&master.addr, "/no/such/endpoint").unwrap();
    assert_eq!(status, 404);
    let (status, body) = http_get(&master.addr, "/tasks?limit=1&order=desc").unwrap();
    assert_eq!(status, 200);
    let tasks: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1);
    // As in Mesos, a negative limit (what Mesos's CLI sends) means all of them.
    let (status, body) = http_get(&master.addr, "/tasks?limit=-1").unwrap();
    assert_eq!(status, 200, "{body}");
    let tasks: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 2);
}

#[test]
fn a_killed_task_ends_killed_and_its_process_group_is_gone() {
    let dir = TempDir::new("kill");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &["--kill-grace-period", "1"]);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("kill")).await;
        let offer = fw.offer().await;
        // The shell ignores SIGTERM, so the kill needs the grace period's SIGKILL.
        let command = "trap '' TERM; echo $$ > pid; sleep 300 & sleep 300";
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("sleeper", &offer, command)]));
        let running = fw.status("sleeper", TaskState::Running).await;
        let sandbox = running.message.clone().unwrap().trim_start_matches("sandbox: ").to_string();
        let pid_file = format!("{sandbox}/pid");
        assert!(wait_until(Duration::from_secs(5), || std::fs::read_to_string(&pid_file)
            .is_ok_and(|p| !p.trim().is_empty())));
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        fw.op(Op::Kill(TaskId("sleeper".into())));
        let killed = fw.terminal("sleeper").await;
        assert_eq!(killed.state, TaskState::Killed);
        let gone =
            wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(gone, "the task's shell {pid} survived the kill");
        // Killing a task the master does not know answers with its state.
        fw.op(Op::Kill(TaskId("no-such-task".into())));
        let unknown = fw.terminal("no-such-task").await;
        assert_eq!(unknown.state, TaskState::Lost);
        assert_eq!(unknown.reason, Some(TaskReason::TaskUnknown));
    });
}

#[test]
fn an_executor_that_crashes_fails_its_task() {
    let dir = TempDir::new("crash");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &[]);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("crash")).await;
        let offer = fw.offer().await;
        let executor = ExecutorInfo {
            executor_id: ExecutorId("crasher".into()),
            framework_id: None,
            command: CommandInfo::shell("exit 42"),
            resources: "cpus:0.1;mem:32".parse().unwrap(),
            name: None,
        };
        let task = TaskInfo {
            name: "t".into(),
            task_id: TaskId("t".into()),
            agent_id: offer.agent_id.clone(),
            resources: "cpus:0.5;mem:64".parse().unwrap(),
            command: None,
            executor: Some(executor),
            data: None,
            labels: Default::default(),
        };
        fw.op(Op::Launch(offer.id.clone(), vec![task]));
        let failed = fw.terminal("t").await;
        assert_eq!(failed.state, TaskState::Failed);
        assert_eq!(failed.reason, Some(TaskReason::ExecutorTerminated));
        let (executor_id, status) = fw
            .wait_for(|e| {
                if let Event::ExecutorLost(id, status) = e {
                    Some((id.clone(), *status))
                } else {
                    None
                }
            })
            .await;
        assert_eq!(executor_id.as_str(), "crasher");
        assert_eq!(status, 42);
    });
}

#[test]
fn tasks_of_a_killed_agent_become_lost_or_unreachable_after_the_ping_timeout() {
    let dir = TempDir::new("partition");
    let master = start_master(&["--agent-ping-timeout", "0.2", "--max-agent-ping-timeouts", "3"]);
    let mut agent = start_agent(&master.addr, &dir.0, &["--resources", "cpus:2;mem:1024"]);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut plain = TestFramework::start(&node, "plain", &master_upid, FrameworkInfo::new("plain")).await;
        let mut aware_info = FrameworkInfo::new("aware");
        aware_info.capabilities.push(FrameworkCapability::PartitionAware);
        let offer = plain.offer().await;
        let half: keel_actors::resources::Resources = "cpus:1;mem:512".parse().unwrap();
        let task = TaskInfo::command("p", &offer, half.clone(), CommandInfo::shell("sleep 8"));
        plain.op(Op::Launch(offer.id.clone(), vec![task]));
        plain.status("p", TaskState::Running).await;
        let mut aware = TestFramework::start(&node, "aware", &master_upid, aware_info).await;
        let offer = aware.offer().await;
        let task = TaskInfo::command("a", &offer, half, CommandInfo::shell("sleep 8"));
        aware.op(Op::Launch(offer.id.clone(), vec![task]));
        aware.status("a", TaskState::Running).await;
        agent.kill();
        let lost = plain.terminal("p").await;
        assert_eq!(lost.state, TaskState::Lost);
        let unreachable = aware.status("a", TaskState::Unreachable).await;
        assert_eq!(unreachable.reason, Some(TaskReason::AgentDisconnected));
        plain.wait_for(|e| matches!(e, Event::AgentLost(_)).then_some(())).await;
    });
    assert_eq!(metric(&master.addr, "master/slaves_unreachable"), 1.0);
}

#[test]
fn a_framework_fails_over_within_its_timeout_and_is_torn_down_after_it() {
    let dir = TempDir::new("failover");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &[]);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut info = FrameworkInfo::new("failover");
        info.failover_timeout_secs = 1.5;
        let mut first = TestFramework::start(&node, "first", &master_upid, info.clone()).await;
        let framework_id = first.id.clone().unwrap();
        let offer = first.offer().await;
        first.op(Op::Launch(offer.id.clone(), vec![command_task("long", &offer, "sleep 60")]));
        let running = first.status("long", TaskState::Running).await;
        let agent_id = running.agent_id.clone().unwrap();
        // The scheduler goes away but asks for failover.
        first.op(Op::Stop(true));
        first.handle.wait().await;

        // A new scheduler instance resubscribes with the same id: the task is still there.
        info.id = Some(framework_id.clone());
        let mut second = TestFramework::start(&node, "second", &master_upid, info.clone()).await;
        assert_eq!(second.id.as_ref(), Some(&framework_id));
        second.op(Op::Reconcile(Vec::new()));
        let reconciled = second.status("long", TaskState::Running).await;
        assert_eq!(reconciled.reason, Some(TaskReason::Reconciliation));
        // Explicit reconciliation of a task the master never heard of.
        second.op(Op::Reconcile(vec![ReconcileTask {
            task_id: TaskId("ghost".into()),
            agent_id: Some(agent_id),
        }]));
        let ghost = second.terminal("ghost").await;
        assert_eq!(ghost.state, TaskState::Lost);

        // Gone for longer than the failover timeout: the framework is torn down.
        second.op(Op::Stop(true));
        second.handle.wait().await;
    });
    let torn_down = wait_until(Duration::from_secs(10), || {
        let (_, body) = http_get(&master.addr, "/state").unwrap();
        let state: serde_json::Value = serde_json::from_str(&body).unwrap();
        state["frameworks"].as_array().unwrap().is_empty()
            && state["completed_frameworks"].as_array().unwrap().len() == 1
    });
    assert!(torn_down, "the framework was not removed after its failover timeout");
    run(async {
        // Resubscribing a removed framework is refused.
        let node = test_node().await;
        let (_, body) = http_get(&master.addr, "/state").unwrap();
        let state: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = state["completed_frameworks"][0]["id"].as_str().unwrap().to_string();
        let mut info = FrameworkInfo::new("failover");
        info.id = Some(id.as_str().into());
        let config = keel_actors::scheduler::SchedulerConfig::new(master_upid.clone(), info);
        let handle = keel_actors::scheduler::start_scheduler(&node, "late", config, Silent).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), handle.wait()).await.unwrap();
        assert!(
            matches!(status, keel_actors::scheduler::DriverStatus::Aborted(ref m) if m.contains("removed")),
            "{status:?}"
        );
    });
}

/// A scheduler that does nothing (for refusal tests).
struct Silent;

impl keel_actors::scheduler::Scheduler for Silent {
    fn offers(&mut self, _driver: &mut keel_actors::scheduler::SchedulerDriver, _offers: Vec<Offer>) {}
}

#[test]
fn launches_on_rescinded_offers_are_dropped_and_bogus_acks_are_ignored() {
    let dir = TempDir::new("rescind");
    let master = start_master(&["--offer-timeout", "0.3"]);
    let agent = start_agent(&master.addr, &dir.0, &[]);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut info = FrameworkInfo::new("rescind");
        info.capabilities.push(FrameworkCapability::PartitionAware);
        let mut fw = TestFramework::start(&node, "fw", &master_upid, info).await;
        let offer = fw.offer().await;
        let rescinded =
            fw.wait_for(|e| if let Event::Rescinded(id) = e { Some(id.clone()) } else { None }).await;
        assert_eq!(rescinded, offer.id);
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("late", &offer, "true")]));
        let dropped = fw.terminal("late").await;
        assert_eq!(dropped.state, TaskState::Dropped);
        assert_eq!(dropped.reason, Some(TaskReason::InvalidOffers));
        // An acknowledgement for an update that never existed changes nothing.
        fw.op(Op::BogusAck(TaskId("late".into()), offer.agent_id.clone()));
        // A fresh offer still works afterwards.
        let offer = fw.offer().await;
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("fine", &offer, "true")]));
        assert_eq!(fw.terminal("fine").await.state, TaskState::Finished);
    });
    assert!(metric(&master.addr, "master/offers_rescinded") >= 1.0);
    assert!(metric(&agent.addr, "slave/invalid_status_update_acknowledgements") >= 1.0);
}

#[test]
fn keel_execute_prints_only_the_states_it_was_told_and_exits_with_the_tasks_code() {
    // Bug 15: `keel execute` printed TASK_STAGING, which no update ever carries.
    let dir = TempDir::new("execute");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &[]);
    let execute = |name: &str, command: &str| {
        let args = ["execute", "--master", &master.addr, "--name", name, "--command", command, "--mem", "32"];
        let mut child = std::process::Command::new(keel_integration::cluster::keel_binary())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut status = None;
        let exited = wait_until(Duration::from_secs(60), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if !exited {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(exited, "keel execute did not finish: {stdout}");
        (output.status.code(), stdout)
    };
    for (name, command, code, last) in
        [("fine", "echo hello", Some(0), "TASK_FINISHED"), ("three", "exit 3", Some(3), "TASK_FAILED")]
    {
        let (exit, stdout) = execute(name, command);
        assert_eq!(exit, code, "{stdout}");
        let states: Vec<&str> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix(&format!("task {name}: ")))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter(|word| word.starts_with("TASK_"))
            .collect();
        // What the agent sends for a command task, in order, and nothing made up.
        assert_eq!(states.last(), Some(&last), "{stdout}");
        assert!(states.iter().all(|s| ["TASK_STARTING", "TASK_RUNNING", last].contains(s)), "{stdout}");
        assert!(stdout.contains(&format!("task {name}: launching on ")), "{stdout}");
    }
}
