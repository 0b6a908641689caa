//! Agent recovery and healed partitions with real processes: a `keel agent`
//! SIGKILLed and restarted on its work dir takes its running tasks back (the same
//! processes) and reports how those that ended meanwhile ended; an agent stopped
//! past its ping timeout comes back, its tasks RUNNING again for a partition-aware
//! framework and killed for one that was told they were LOST.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_actors::ids::TaskId;
use keel_actors::task::{FrameworkCapability, FrameworkInfo, TaskReason, TaskState};
use keel_integration::cluster::{
    command_task, metric, start_agent_on, start_master, test_node, Event, Op, TempDir, TestFramework,
};
use keel_integration::proxy::free_port;
use keel_integration::{http_get, run, wait_until};

/// A task that records its pid, waits for a `go` file in its sandbox, then exits
/// with `code`.
fn waiting_task(code: i32) -> String {
    format!("echo $$ > pid; while [ ! -e go ]; do sleep 0.05; done; exit {code}")
}

/// The sandbox a RUNNING status names.
fn sandbox(status: &keel_actors::task::TaskStatus) -> PathBuf {
    PathBuf::from(status.message.clone().expect("a sandbox").trim_start_matches("sandbox: "))
}

/// The pid a task wrote into its sandbox.
fn pid_in(sandbox: &Path) -> i32 {
    let mut pid = None;
    assert!(wait_until(Duration::from_secs(10), || {
        pid = std::fs::read_to_string(sandbox.join("pid")).ok().and_then(|t| t.trim().parse().ok());
        pid.is_some()
    }));
    pid.expect("checked")
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or_default().trim_start().starts_with('Z'))
}

/// The tasks an agent's `/state` has, with their states.
fn agent_tasks(agent: &str) -> Vec<(String, String)> {
    let Ok((200, body)) = http_get(agent, "/state") else { return Vec::new() };
    let state: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut tasks = Vec::new();
    for framework in state["frameworks"].as_array().into_iter().flatten() {
        for executor in framework["executors"].as_array().into_iter().flatten() {
            for task in executor["tasks"].as_array().into_iter().flatten() {
                let id = task["id"].as_str().unwrap_or_default().to_string();
                tasks.push((id, task["state"].as_str().unwrap_or_default().to_string()));
            }
        }
    }
    tasks.sort();
    tasks
}

fn checkpointing(name: &str) -> FrameworkInfo {
    let mut info = FrameworkInfo::new(name);
    info.checkpoint = true;
    info
}

#[test]
fn a_restarted_agent_takes_its_tasks_back_and_reports_how_they_end() {
    let dir = TempDir::new("recovery");
    let master = start_master(&[]);
    let port = free_port();
    let mut agent = start_agent_on(&master.addr, &dir.0, port, &[]);
    let agent_addr = agent.addr.clone();
    let master_upid = keel_actors::cli::master_upid(&master.addr).unwrap();
    let mut restarted = None;
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "recover", &master_upid, checkpointing("recover")).await;
        let offer = fw.offer().await;
        let tasks = vec![
            command_task("exits-3", &offer, &waiting_task(3)),
            command_task("ends-while-down", &offer, &waiting_task(4)),
            command_task("killed", &offer, &waiting_task(5)),
        ];
        fw.op(Op::Launch(offer.id.clone(), tasks));
        let mut sandboxes = std::collections::BTreeMap::new();
        for id in ["exits-3", "ends-while-down", "killed"] {
            let running = fw.status(id, TaskState::Running).await;
            sandboxes.insert(id, sandbox(&running));
        }
        let pids: std::collections::BTreeMap<&str, i32> =
            sandboxes.iter().map(|(id, dir)| (*id, pid_in(dir))).collect();

        agent.kill();
        // One task ends while no agent runs.
        std::fs::write(sandboxes["ends-while-down"].join("go"), "").unwrap();
        assert!(wait_until(Duration::from_secs(10), || !alive(pids["ends-while-down"])));
        restarted = Some(start_agent_on(&master.addr, &dir.0, port, &[]));

        // Its end is reported with its real exit code; the others run on, the same processes.
        let ended = fw.terminal("ends-while-down").await;
        assert_eq!((ended.state, ended.exit_code), (TaskState::Failed, Some(4)), "{ended:?}");
        assert!(wait_until(Duration::from_secs(10), || {
            agent_tasks(&agent_addr)
                == vec![("exits-3".into(), "TASK_RUNNING".into()), ("killed".into(), "TASK_RUNNING".into())]
        }));
        assert_eq!(metric(&master.addr, "master/tasks_running"), 2.0);
        assert_eq!(metric(&master.addr, "master/slaves_active"), 1.0);
        assert!(alive(pids["exits-3"]) && alive(pids["killed"]), "the recovered tasks still run");

        // A recovered task's own end is reported, with its exit code.
        std::fs::write(sandboxes["exits-3"].join("go"), "").unwrap();
        let failed = fw.terminal("exits-3").await;
        assert_eq!((failed.state, failed.exit_code), (TaskState::Failed, Some(3)), "{failed:?}");
        // A kill through the framework reaches a recovered task.
        fw.op(Op::Kill(TaskId("killed".into())));
        fw.status("killed", TaskState::Killed).await;
        assert!(wait_until(Duration::from_secs(10), || !alive(pids["killed"])));
        // Nothing was ever told LOST.
        while let Ok(event) = fw.events.try_recv() {
            if let Event::Status(status) = event {
                assert_ne!(status.state, TaskState::Lost, "{status:?}");
            }
        }
    });
    drop(restarted);
}

#[test]
fn a_torn_checkpoint_is_set_aside_and_the_agent_starts_afresh() {
    let dir = TempDir::new("torn");
    let master = start_master(&[]);
    let port = free_port();
    let mut agent = start_agent_on(&master.addr, &dir.0, port, &[]);
    // Active at the master, and its id checkpointed (the agent writes it on hearing back).
    let checkpoint = dir.0.join("meta").join("agent.json");
    assert!(wait_until(Duration::from_secs(10), || metric(&master.addr, "master/slaves_active") == 1.0));
    assert!(wait_until(Duration::from_secs(10), || checkpoint.exists()));
    agent.kill();
    std::fs::write(&checkpoint, "{\"format\": 1, \"info\": {\"hostn").unwrap();
    let _again = start_agent_on(&master.addr, &dir.0, port, &[]);
    // A new agent: the old one is gone, the torn tree kept aside for an operator.
    assert!(wait_until(Duration::from_secs(10), || metric(&master.addr, "master/slaves_gone") == 1.0));
    assert!(wait_until(Duration::from_secs(10), || metric(&master.addr, "master/slaves_active") == 1.0));
    assert!(dir.0.join("meta.broken-1").join("agent.json").exists());
}

#[test]
fn an_agent_stopped_past_its_ping_timeout_comes_back_for_partition_aware_frameworks_only() {
    let dir = TempDir::new("stopped-agent");
    let master = start_master(&["--agent-ping-timeout", "0.3", "--max-agent-ping-timeouts", "3"]);
    let agent = start_agent_on(&master.addr, &dir.0, free_port(), &[]);
    let master_upid = keel_actors::cli::master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut aware_info = checkpointing("aware");
        aware_info.capabilities.push(FrameworkCapability::PartitionAware);
        let mut aware = TestFramework::start(&node, "aware", &master_upid, aware_info).await;
        let mut plain = TestFramework::start(&node, "plain", &master_upid, checkpointing("plain")).await;
        let offer = aware.offer().await;
        aware.op(Op::Launch(offer.id.clone(), vec![command_task("a", &offer, "sleep 300")]));
        aware.status("a", TaskState::Running).await;
        plain.op(Op::Revive);
        let offer = plain.offer().await;
        plain.op(Op::Launch(offer.id.clone(), vec![command_task("p", &offer, &waiting_task(0))]));
        let running = plain.status("p", TaskState::Running).await;
        let plain_pid = pid_in(&sandbox(&running));

        agent.stop();
        aware.status("a", TaskState::Unreachable).await;
        let lost = plain.terminal("p").await;
        assert_eq!(lost.state, TaskState::Lost, "{lost:?}");
        assert_eq!(lost.reason, Some(TaskReason::AgentDisconnected), "{lost:?}");
        agent.cont();

        // Healed: the partition-aware task is RUNNING again...
        assert!(wait_until(Duration::from_secs(15), || metric(&master.addr, "master/slaves_active") == 1.0));
        aware.op(Op::Reconcile(Vec::new()));
        aware.status("a", TaskState::Running).await;
        // ...the one its framework was told is LOST is killed, and never reported again.
        assert!(wait_until(Duration::from_secs(15), || !alive(plain_pid)), "the LOST task still runs");
        plain.op(Op::Reconcile(Vec::new()));
        aware.op(Op::Kill(TaskId("a".into())));
        aware.status("a", TaskState::Killed).await;
        while let Ok(event) = plain.events.try_recv() {
            if let Event::Status(status) = event {
                assert!(status.state == TaskState::Lost, "told {status:?} after LOST");
            }
        }
    });
    drop(agent);
}

#[test]
fn recover_cleanup_kills_what_the_previous_agent_left_and_exits() {
    let dir = TempDir::new("cleanup");
    let master = start_master(&[]);
    let port = free_port();
    let mut agent = start_agent_on(&master.addr, &dir.0, port, &[]);
    let master_upid = keel_actors::cli::master_upid(&master.addr).unwrap();
    let mut pid = 0;
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "cleanup", &master_upid, checkpointing("cleanup")).await;
        let offer = fw.offer().await;
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("left", &offer, &waiting_task(0))]));
        let running = fw.status("left", TaskState::Running).await;
        pid = pid_in(&sandbox(&running));
    });
    agent.kill();
    assert!(alive(pid), "the task outlives its agent");
    let binary = keel_integration::cluster::keel_binary();
    let port = port.to_string();
    let status = std::process::Command::new(binary)
        .args(["agent", "--master", &master.addr, "--port", &port, "--recover", "cleanup"])
        .args(["--work-dir", dir.0.to_str().unwrap(), "--resources", "cpus:4;mem:4096;disk:4096"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("keel agent runs");
    assert!(status.success(), "cleanup exits 0: {status:?}");
    assert!(!alive(pid), "the previous agent's task is killed");
    assert!(!dir.0.join("meta").join("agent.json").exists(), "its state is forgotten");
}
