//! The agent's sandbox surface end to end, with a `keel master` and `keel agent` as
//! child processes and a framework in the test process: the files API
//! (`/files/read`, `/files/browse`) and its refusals, `/monitor/statistics`, sandbox
//! garbage collection, and `keel logs` (the real binary).
//!
//! Blocking HTTP from the test's actix thread would stall the framework living on it,
//! so it happens outside `block_on` or through `spawn_blocking`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use keel_actors::cli::master_upid;
use keel_actors::ids::TaskId;
use keel_actors::task::{FrameworkInfo, TaskState};
use keel_integration::cluster::{
    command_task, keel_binary, start_agent, start_master, test_node, Op, TempDir, TestFramework,
};
use keel_integration::{http_get, run, wait_until};
use serde_json::Value;

/// Percent-encodes a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn read(agent: &str, path: &str, query: &str) -> (u16, String) {
    http_get(agent, &format!("/files/read?path={}{query}", encode(path))).expect("agent answers")
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Runs the built `keel` binary; returns (exit success, stdout, stderr).
fn keel(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(keel_binary()).args(args).output().expect("keel runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Launches `command` as task `id` on the next offer; returns its sandbox (from the
/// RUNNING update) once it reached a terminal state, or at RUNNING if `wait_end` is false.
async fn launch(fw: &mut TestFramework, id: &str, command: &str, wait_end: bool) -> String {
    let offer = fw.offer().await;
    fw.op(Op::Launch(offer.id.clone(), vec![command_task(id, &offer, command)]));
    let running = fw.status(id, TaskState::Running).await;
    let sandbox = running.message.expect("RUNNING names the sandbox");
    let sandbox = sandbox.trim_start_matches("sandbox: ").to_string();
    if wait_end {
        assert_eq!(fw.terminal(id).await.state, TaskState::Finished);
    }
    sandbox
}

#[test]
fn files_api_serves_sandboxes_and_refuses_everything_else() {
    let dir = TempDir::new("files-api");
    let master = start_master(&[]);
    let agent = start_agent(&master.addr, &dir.0, &[]);
    let master_upid = master_upid(&master.addr).unwrap();
    let mut sandbox = String::new();
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("files")).await;
        let command = "echo hello from the sandbox; echo oops >&2; ln -s /etc/passwd link; ln -s /etc etc";
        sandbox = launch(&mut fw, "echo", command, true).await;
    });

    // Reads: the data, the size, a window.
    let stdout = format!("{sandbox}/stdout");
    let (status, body) = read(&agent.addr, &stdout, "&offset=0");
    assert_eq!(status, 200, "{body}");
    let reply = json(&body);
    assert_eq!(reply["data"], "hello from the sandbox\n");
    assert_eq!(reply["offset"], 0);
    assert_eq!(reply["length"], 23);
    let (status, body) = read(&agent.addr, &stdout, "&offset=-1");
    assert_eq!((status, json(&body)["offset"].as_u64()), (200, Some(23)), "{body}");
    let (_, body) = read(&agent.addr, &stdout, "");
    assert_eq!(json(&body)["offset"], 23, "no offset asks for the size: {body}");
    let (_, body) = read(&agent.addr, &stdout, "&offset=6&length=4");
    assert_eq!(json(&body)["data"], "from");
    let (_, body) = read(&agent.addr, &stdout, "&offset=500&length=4");
    assert_eq!((json(&body)["data"].as_str(), json(&body)["offset"].as_u64()), (Some(""), Some(500)));

    // Browse: the sandbox lists its files; the link shows as a link.
    let (status, body) = http_get(&agent.addr, &format!("/files/browse?path={}", encode(&sandbox))).unwrap();
    assert_eq!(status, 200, "{body}");
    let entries = json(&body);
    let names: Vec<&str> = entries.as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    for name in ["stdout", "stderr", "link"] {
        assert!(names.contains(&name), "{name} missing from {body}");
    }
    let stdout_entry = entries.as_array().unwrap().iter().find(|e| e["name"] == "stdout").unwrap();
    assert_eq!(stdout_entry["size"], 23);
    assert_eq!(stdout_entry["is_dir"], false);
    assert!(stdout_entry["mode"].as_str().unwrap().starts_with("-rw"), "{stdout_entry}");
    assert!(stdout_entry["mtime"].as_i64().unwrap() > 0);

    // Outside the sandboxes: 403 with a JSON error, and nothing read.
    let work_dir = dir.0.display().to_string();
    for path in [
        format!("{sandbox}/../../../../../../meta/agent.json"),
        format!("{sandbox}/../../../../meta/agent.json"),
        format!("{work_dir}/meta/agent.json"),
        "/etc/passwd".to_string(),
        format!("{sandbox}/link"),
        format!("{sandbox}/etc/passwd"),
        format!("{sandbox}/etc/no-such-file"),
        "/no/such/file".to_string(),
    ] {
        let (status, body) = read(&agent.addr, &path, "&offset=0");
        assert_eq!(status, 403, "{path}: {body}");
        assert!(json(&body)["error"].is_string(), "{path}: {body}");
        assert!(!body.contains("root:") && !body.contains("agent_id"), "{path} was read: {body}");
    }
    for path in [format!("{sandbox}/etc"), work_dir.clone(), format!("{work_dir}/meta"), "/".to_string()] {
        let (status, body) = http_get(&agent.addr, &format!("/files/browse?path={}", encode(&path))).unwrap();
        assert_eq!(status, 403, "browse {path}: {body}");
    }

    // Bad requests: 400 with a JSON error; a missing file: 404.
    let bad = [
        "/files/read".to_string(),
        "/files/read?path=".to_string(),
        format!("/files/read?path={}&offset=abc", encode(&stdout)),
        format!("/files/read?path={}&offset=0&length=-5", encode(&stdout)),
        format!("/files/read?path={}&offset=-2", encode(&stdout)),
        format!("/files/read?path={}&offset=0&length=1e3", encode(&stdout)),
        format!("/files/read?path={}&bogus=1", encode(&stdout)),
        format!("/files/read?path={}&path=/etc/passwd", encode(&stdout)),
        format!("/files/read?path={}&offset=0", encode(&sandbox)),
        "/files/read?path=relative/stdout&offset=0".to_string(),
        "/files/read?path=%zz".to_string(),
        "/files/browse".to_string(),
        format!("/files/browse?path={}", encode(&stdout)),
        "/monitor/statistics?x=1".to_string(),
    ];
    for request in bad {
        let (status, body) = http_get(&agent.addr, &request).unwrap();
        assert_eq!(status, 400, "{request}: {body}");
        assert!(json(&body)["error"].is_string(), "{request}: {body}");
    }
    let (status, body) = read(&agent.addr, &format!("{sandbox}/no-such-file"), "&offset=0");
    assert_eq!(status, 404, "{body}");
    assert!(json(&body)["error"].is_string());

    // keel logs: the real binary, stdout and stderr.
    let (ok, out, err) = keel(&["logs", "echo", "--master", &master.addr]);
    assert!(ok, "keel logs failed: {err}");
    assert_eq!(out, "hello from the sandbox\n");
    let (ok, out, err) = keel(&["logs", "echo", "--stderr", "--master", &master.addr]);
    assert!(ok, "keel logs --stderr failed: {err}");
    assert_eq!(out, "oops\n");
    let (ok, _, err) = keel(&["logs", "no-such-task", "--master", &master.addr]);
    assert!(!ok && err.contains("unknown task"), "{err}");
    // And the library function the binary calls.
    let options = keel_actors::cli::logs::LogsOptions {
        master: master.addr.clone(),
        task_id: "echo".into(),
        stderr: false,
        follow: false,
        framework: None,
    };
    let mut printed = Vec::new();
    keel_actors::cli::logs::run(&options, &mut printed).unwrap();
    assert_eq!(String::from_utf8(printed).unwrap(), "hello from the sandbox\n");
}

#[test]
fn logs_follow_a_running_task_to_its_end() {
    let dir = TempDir::new("files-follow");
    let master = start_master(&[]);
    let _agent = start_agent(&master.addr, &dir.0, &[]);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("follow")).await;
        let command = "for i in 1 2 3 4; do echo line $i; sleep 0.4; done";
        launch(&mut fw, "ticker", command, false).await;
        let master_addr = master.addr.clone();
        let follow = tokio::task::spawn_blocking(move || {
            keel(&["logs", "ticker", "--follow", "--master", &master_addr])
        });
        assert_eq!(fw.terminal("ticker").await.state, TaskState::Finished);
        let (ok, out, err) = follow.await.unwrap();
        assert!(ok, "keel logs --follow failed: {err}");
        assert_eq!(out, "line 1\nline 2\nline 3\nline 4\n");
    });
}

#[test]
fn monitor_statistics_show_running_containers() {
    let dir = TempDir::new("files-statistics");
    let master = start_master(&[]);
    let agent = start_agent(&master.addr, &dir.0, &[]);
    let master_upid = master_upid(&master.addr).unwrap();
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("stats")).await;
        launch(&mut fw, "sleeper", "sleep 30", false).await;
        let agent_addr = agent.addr.clone();
        let entry = tokio::task::spawn_blocking(move || {
            let mut found = Value::Null;
            wait_until(Duration::from_secs(10), || {
                let (_, body) = http_get(&agent_addr, "/monitor/statistics").unwrap();
                let list = json(&body);
                found = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["executor_id"] == "sleeper")
                    .cloned()
                    .unwrap_or(Value::Null);
                found["statistics"]["processes"].as_u64().is_some_and(|n| n >= 1)
            });
            found
        })
        .await
        .unwrap();
        let framework_id = fw.id.clone().unwrap().to_string();
        assert_eq!(entry["framework_id"], framework_id.as_str(), "{entry}");
        assert_eq!(entry["source"], "sleeper");
        assert!(entry["container_id"].is_string());
        let stats = &entry["statistics"];
        assert!(stats["processes"].as_u64().unwrap() >= 1, "{entry}");
        assert!(stats["mem_rss_bytes"].as_u64().unwrap() > 0, "{entry}");
        assert!(stats["mem_limit_bytes"].as_u64().unwrap() >= 64 * 1024 * 1024, "{entry}");
        assert!(stats["cpus_user_time_secs"].as_f64().unwrap() >= 0.0, "{entry}");
        assert!(stats["cpus_system_time_secs"].as_f64().unwrap() >= 0.0, "{entry}");
        assert!(stats["timestamp"].as_f64().unwrap() > 1e9, "{entry}");
        fw.op(Op::Kill(TaskId("sleeper".into())));
        assert_eq!(fw.terminal("sleeper").await.state, TaskState::Killed);
        // Once it is gone, it is no longer listed.
        let agent_addr = agent.addr.clone();
        let gone = tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(10), || {
                let (_, body) = http_get(&agent_addr, "/monitor/statistics").unwrap();
                json(&body).as_array().unwrap().is_empty()
            })
        });
        assert!(gone.await.unwrap(), "the killed container is still listed");
    });
}

#[test]
fn finished_sandboxes_are_garbage_collected_running_ones_kept() {
    let dir = TempDir::new("files-gc");
    let master = start_master(&[]);
    let agent = start_agent(&master.addr, &dir.0, &["--sandbox-gc-delay", "1"]);
    let master_upid = master_upid(&master.addr).unwrap();
    let mut finished = String::new();
    let mut running = String::new();
    run(async {
        let node = test_node().await;
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("gc")).await;
        running = launch(&mut fw, "sleeper", "sleep 30", false).await;
        finished = launch(&mut fw, "done", "echo bye", true).await;
        // The framework acknowledges the terminal update; within a few seconds of that
        // the agent forgets the executor and its sandbox goes, then (a step later, on
        // the agent's thread) the executor directory it leaves empty.
        let executor_dir = Path::new(&finished).parent().and_then(|runs| runs.parent()).unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while (Path::new(&finished).exists() || executor_dir.exists())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!Path::new(&finished).exists(), "{finished} was not garbage collected");
        assert!(!executor_dir.exists(), "{} is left", executor_dir.display());
        // The running task's sandbox stays.
        assert!(Path::new(&running).join("stdout").exists(), "a running sandbox was collected");
        fw.op(Op::Kill(TaskId("sleeper".into())));
        assert_eq!(fw.terminal("sleeper").await.state, TaskState::Killed);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while Path::new(&running).exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!Path::new(&running).exists(), "{running} was not garbage collected");
    });
    // Nothing is left of the framework; the agent's own files are untouched.
    let frameworks = dir.0.join("frameworks");
    assert!(wait_until(Duration::from_secs(5), || std::fs::read_dir(&frameworks)
        .is_ok_and(|mut d| d.next().is_none())));
    assert!(dir.0.join("meta/agent.json").exists());
    // The collected sandbox's files are 404 now, and keel logs says what happened.
    let (status, body) = read(&agent.addr, &format!("{finished}/stdout"), "&offset=0");
    assert_eq!(status, 404, "{body}");
    let (ok, _, err) = keel(&["logs", "done", "--master", &master.addr]);
    assert!(!ok && err.contains("garbage collected"), "{err}");
    let (_, body) = http_get(&agent.addr, "/metrics/snapshot").unwrap();
    assert!(json(&body)["gc/path_removals_succeeded"].as_f64().unwrap() >= 2.0, "{body}");
}
