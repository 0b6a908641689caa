//! Mesos's v1 HTTP APIs with real Mesos clients: an unmodified pymesos scheduler and
//! pymesos executor against `keel local` and against `keel master` with separate
//! `keel agent`s, avmesos-cli listing Keel's agents, frameworks and tasks, and the
//! operator API's event stream. The clients come from `scripts/setup.sh`; without
//! them these tests fail (they never skip).

use std::time::Duration;

use keel_integration::cluster::{start_agent, start_master, TempDir};
use keel_integration::v1::{mesos_cli, run_pymesos_scheduler, seen, start_local, Events, V1Framework};
use keel_integration::{http_get, wait_until};
use serde_json::{json, Value};

/// A child process killed (by PID) if the test ends before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn has(seen: &[Value], kind: &str, check: impl Fn(&Value) -> bool) -> bool {
    seen.iter().any(|s| s["kind"] == kind && check(s))
}

/// What the pymesos scheduler must have seen of one run.
fn check_pymesos_run(master: &str, command_tasks: usize) {
    let output = run_pymesos_scheduler(master, command_tasks, Duration::from_secs(90));
    let seen = seen(&output);
    let report = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the pymesos scheduler failed\n{report}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("DONE"), "{report}");
    assert!(has(&seen, "registered", |s| s["version"] == "1.11.0"), "{report}");
    for i in 0..command_tasks {
        let task = format!("cmd-{i}");
        for state in ["TASK_RUNNING", "TASK_FINISHED"] {
            assert!(
                has(&seen, "update", |s| s["task_id"] == task.as_str()
                    && s["state"] == state
                    && s["has_uuid"] == true),
                "{task} {state}\n{report}"
            );
        }
    }
    // The custom executor's updates, with its own uuids, acknowledged by pymesos.
    for state in ["TASK_RUNNING", "TASK_FINISHED"] {
        assert!(has(&seen, "update", |s| s["task_id"] == "exec-task" && s["state"] == state), "{report}");
    }
    // Framework messages both ways.
    assert!(has(&seen, "message", |s| s["data"] == "hello from the executor"), "{report}");
    assert!(has(&seen, "message", |s| s["data"] == "pong"), "{report}");
    // Explicit reconciliation: a task Keel never saw is LOST, a finished one FINISHED.
    assert!(
        has(&seen, "update", |s| s["task_id"] == "never-launched"
            && s["state"] == "TASK_LOST"
            && s["reason"] == "REASON_RECONCILIATION"
            && s["has_uuid"] == false),
        "{report}"
    );
    assert!(
        has(&seen, "update", |s| s["task_id"] == "cmd-0"
            && s["state"] == "TASK_FINISHED"
            && s["reason"] == "REASON_RECONCILIATION"),
        "{report}"
    );
    // The teardown removed the framework.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (_, body) = http_get(master, "/master/frameworks").unwrap();
            let frameworks: Value = serde_json::from_str(&body).unwrap();
            frameworks["frameworks"].as_array().is_some_and(|f| f.is_empty())
                && frameworks["completed_frameworks"][0]["name"] == "pymesos-on-keel"
        }),
        "the framework was not torn down"
    );
}

#[test]
fn a_pymesos_framework_runs_on_keel_local() {
    let work = TempDir::new("v1-local");
    let local = start_local(2, &work.0);
    check_pymesos_run(&local.addr, 3);
}

#[test]
fn a_pymesos_framework_runs_on_a_master_with_separate_agents() {
    let master = start_master(&[]);
    let work = TempDir::new("v1-agents");
    let _agents: Vec<_> =
        (0..2).map(|i| start_agent(&master.addr, &work.0.join(format!("agent-{i}")), &[])).collect();
    assert!(wait_until(Duration::from_secs(20), || {
        let (_, body) = http_get(&master.addr, "/slaves").unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["slaves"].as_array().is_some_and(|s| s.len() == 2)
    }));
    // A framework on Keel's own actor protocol shares the cluster meanwhile.
    let mut actor_framework = KillOnDrop(
        std::process::Command::new(keel_integration::cluster::keel_binary())
            .args(["execute", "--master", &master.addr, "--name", "actor-framework", "--command", "sleep 2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("keel execute starts"),
    );
    check_pymesos_run(&master.addr, 4);
    let mut status = None;
    assert!(wait_until(Duration::from_secs(60), || {
        status = actor_framework.0.try_wait().unwrap();
        status.is_some()
    }));
    assert!(status.unwrap().success(), "keel execute beside pymesos: {status:?}");
}

#[test]
fn the_mesos_cli_lists_agents_frameworks_and_tasks() {
    let master = start_master(&[]);
    let work = TempDir::new("v1-cli");
    let _agent = start_agent(&master.addr, &work.0, &[]);
    let framework = V1Framework::subscribe(&master.addr, "cli-listed");
    framework.launch("long-task", "sleep 60");
    framework.events.wait_for(Duration::from_secs(20), |e| {
        (e["type"] == "UPDATE" && e["update"]["status"]["state"] == "TASK_RUNNING").then_some(())
    });
    let agents = mesos_cli(&master.addr, &["agent", "list"]);
    let (_, slaves) = http_get(&master.addr, "/slaves").unwrap();
    let agent_id =
        serde_json::from_str::<Value>(&slaves).unwrap()["slaves"][0]["id"].as_str().unwrap().to_string();
    assert!(agents.contains(&agent_id) && agents.contains("True"), "{agents}");
    let frameworks = mesos_cli(&master.addr, &["framework", "list"]);
    assert!(
        frameworks.contains(&framework.framework_id) && frameworks.contains("cli-listed"),
        "{frameworks}"
    );
    let tasks = mesos_cli(&master.addr, &["task", "list"]);
    assert!(tasks.contains("long-task") && tasks.contains("TASK_RUNNING"), "{tasks}");
    let (status, body) = framework.call(json!({"type": "TEARDOWN"}));
    assert_eq!(status, 202, "{body}");
    assert!(framework.events.ends_within(Duration::from_secs(20)), "teardown closes the stream");
}

#[test]
fn the_operator_event_stream_shows_a_task_added_and_each_update() {
    let master = start_master(&[]);
    let work = TempDir::new("v1-events");
    let _agent = start_agent(&master.addr, &work.0, &[]);
    assert!(wait_until(Duration::from_secs(20), || {
        let (_, body) = http_get(&master.addr, "/slaves").unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["slaves"].as_array().is_some_and(|s| s.len() == 1)
    }));
    let operator = Events::open(&master.addr, "/api/v1", &json!({"type": "SUBSCRIBE"}));
    let agents = operator.wait_for(Duration::from_secs(10), |e| {
        (e["type"] == "SUBSCRIBED").then(|| e["subscribed"]["get_state"]["get_agents"]["agents"].clone())
    });
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
    let framework = V1Framework::subscribe(&master.addr, "watched");
    operator.wait_for(Duration::from_secs(10), |e| {
        (e["type"] == "FRAMEWORK_ADDED"
            && e["framework_added"]["framework"]["framework_info"]["id"]["value"]
                == framework.framework_id.as_str())
        .then_some(())
    });
    framework.launch("watched-task", "sleep 1");
    let added =
        operator.wait_for(Duration::from_secs(20), |e| (e["type"] == "TASK_ADDED").then(|| e.clone()));
    assert_eq!(added["task_added"]["task"]["task_id"]["value"], "watched-task", "{added}");
    assert_eq!(added["task_added"]["task"]["state"], "TASK_STAGING", "{added}");
    for state in ["TASK_RUNNING", "TASK_FINISHED"] {
        let updated =
            operator.wait_for(Duration::from_secs(20), |e| (e["type"] == "TASK_UPDATED").then(|| e.clone()));
        assert_eq!(updated["task_updated"]["state"], state, "{updated}");
        assert_eq!(updated["task_updated"]["status"]["task_id"]["value"], "watched-task", "{updated}");
        assert_eq!(updated["task_updated"]["framework_id"]["value"], framework.framework_id.as_str());
        // The scheduler acknowledges each update, as pymesos would.
        let update = framework.events.wait_for(Duration::from_secs(20), |e| {
            (e["type"] == "UPDATE" && e["update"]["status"]["state"] == state)
                .then(|| e["update"]["status"].clone())
        });
        let (status, body) = framework.call(json!({"type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": update["agent_id"], "task_id": update["task_id"], "uuid": update["uuid"]}}));
        assert_eq!(status, 202, "{body}");
    }
    let (status, _) = framework.call(json!({"type": "TEARDOWN"}));
    assert_eq!(status, 202);
    operator.wait_for(Duration::from_secs(20), |e| (e["type"] == "FRAMEWORK_REMOVED").then_some(()));
}

#[test]
fn resubscribing_fails_the_framework_over_to_the_new_stream() {
    let master = start_master(&[]);
    let first = V1Framework::subscribe(&master.addr, "failing-over");
    let second = V1Framework::subscribe_as(&master.addr, "failing-over", Some(&first.framework_id));
    assert_eq!(second.framework_id, first.framework_id);
    // The old stream is told and ends; its stream id is no longer the framework's.
    let error = first.events.wait_for(Duration::from_secs(10), |e| (e["type"] == "ERROR").then(|| e.clone()));
    assert!(error["error"]["message"].as_str().unwrap().contains("failed over"), "{error}");
    assert!(first.events.ends_within(Duration::from_secs(10)));
    let (status, body) = first.call(json!({"type": "REVIVE"}));
    assert_eq!(status, 400, "{body}");
    let (status, body) = second.call(json!({"type": "REVIVE"}));
    assert_eq!(status, 202, "{body}");
    // A scheduler whose stream breaks comes back on a new one within its failover timeout.
    let id = second.framework_id.clone();
    drop(second);
    let third = V1Framework::subscribe_as(&master.addr, "failing-over", Some(&id));
    let (status, body) = third.call(json!({"type": "SUPPRESS"}));
    assert_eq!(status, 202, "{body}");
}

fn operator(addr: &str, call: Value) -> Value {
    keel_actors::cli::http::call(addr, &call).unwrap_or_else(|e| panic!("{call}: {e:#}"))
}

#[test]
fn agent_operator_calls_and_mesos_endpoints_answer_in_mesos_shapes() {
    let master = start_master(&[]);
    let work = TempDir::new("v1-agent-operator");
    let agent = start_agent(&master.addr, &work.0, &[]);
    let framework = V1Framework::subscribe(&master.addr, "sandboxed");
    framework.launch("chatty", "echo hello-sandbox; sleep 60");
    framework.events.wait_for(Duration::from_secs(20), |e| {
        (e["type"] == "UPDATE" && e["update"]["status"]["state"] == "TASK_RUNNING").then_some(())
    });
    let containers = operator(&agent.addr, json!({"type": "GET_CONTAINERS"}));
    let container = &containers["get_containers"]["containers"][0];
    assert_eq!(container["executor_id"]["value"], "chatty", "{containers}");
    let tasks = operator(&agent.addr, json!({"type": "GET_TASKS"}));
    assert_eq!(tasks["get_tasks"]["launched_tasks"][0]["state"], "TASK_RUNNING", "{tasks}");
    let (_, state) = http_get(&agent.addr, "/state").unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    let sandbox = state["frameworks"][0]["executors"][0]["directory"].as_str().unwrap().to_string();
    let files = operator(&agent.addr, json!({"type": "LIST_FILES", "list_files": {"path": sandbox}}));
    let names: Vec<String> = files["list_files"]["file_infos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("/stdout")), "{files}");
    let stdout = format!("{sandbox}/stdout");
    assert!(wait_until(Duration::from_secs(10), || {
        let read =
            operator(&agent.addr, json!({"type": "READ_FILE", "read_file": {"path": stdout, "offset": 0}}));
        let bytes = keel_actors::v1::json::bytes(&read["read_file"], "data").unwrap().unwrap_or_default();
        String::from_utf8_lossy(&bytes).contains("hello-sandbox")
    }));
    let version = operator(&agent.addr, json!({"type": "GET_VERSION"}));
    assert_eq!(version["get_version"]["version_info"]["version"], "1.11.0");
    // Mesos's master endpoints: /master/redirect names the leader; /master/teardown ends a framework.
    let (status, body) =
        keel_actors::cli::http::request("GET", &master.addr, "/master/redirect", None).unwrap();
    assert_eq!(status, 307, "{}", String::from_utf8_lossy(&body));
    let (status, body) = keel_actors::cli::http::request_with(
        "POST",
        &master.addr,
        "/master/teardown",
        Some(("application/x-www-form-urlencoded", &format!("frameworkId={}", framework.framework_id))),
        &[],
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        framework.events.ends_within(Duration::from_secs(20)),
        "the teardown ends the framework's stream"
    );
    let frameworks = operator(&master.addr, json!({"type": "GET_FRAMEWORKS"}));
    assert_eq!(frameworks["get_frameworks"]["frameworks"], json!([]), "{frameworks}");
}
