//! Bad input to Mesos's v1 APIs, through real `keel master` and `keel agent`
//! processes: malformed JSON, a missing or wrong `Mesos-Stream-Id`, a call before
//! SUBSCRIBE, an unknown framework, 413/405/415/406, unknown call types. Each gets a
//! clear error with the reason and changes nothing: the framework that is subscribed
//! meanwhile keeps its stream and its task. Calls naming stale offers, unknown tasks
//! or unknown uuids are accepted (202) and answered as Mesos does. A standby master
//! redirects the scheduler API to the leader (307) or answers 503.

use std::time::Duration;

use keel_actors::cli::http::request_with;
use keel_integration::cluster::{start_agent, start_master, TempDir};
use keel_integration::v1::{raw_call, Events, V1Framework};
use keel_integration::{http_get, wait_until};
use serde_json::{json, Value};

/// What must not change: frameworks with their connection, tasks with their state.
fn snapshot(master: &str) -> Value {
    let (_, body) =
        request_with("POST", master, "/api/v1", Some(("application/json", r#"{"type":"GET_STATE"}"#)), &[])
            .unwrap();
    let state: Value = serde_json::from_slice(&body).unwrap();
    let frameworks: Vec<Value> = state["get_state"]["get_frameworks"]["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!([f["framework_info"]["id"], f["active"], f["connected"]]))
        .collect();
    let tasks: Vec<Value> = state["get_state"]["get_tasks"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json!([t["task_id"], t["state"]]))
        .collect();
    json!({ "frameworks": frameworks, "tasks": tasks })
}

fn post(
    addr: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let body = content_type.map(|c| (c, body));
    let (status, body) = request_with("POST", addr, path, body, headers).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Announces a body of `length` bytes and reads the answer without sending it (the
/// server answers at once; a client still writing would see the connection close).
fn announce_oversized(addr: &str, path: &str, length: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        socket,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = socket.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if answer.windows(7).any(|w| w == b"larger ") && answer.ends_with(b"bytes") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn bad_calls_get_clear_errors_and_change_nothing() {
    let master = start_master(&[]);
    let work = TempDir::new("v1-bad");
    let agent = start_agent(&master.addr, &work.0, &[]);
    let framework = V1Framework::subscribe(&master.addr, "bystander");
    framework.launch("bystander-task", "sleep 120");
    framework.events.wait_for(Duration::from_secs(20), |e| {
        (e["type"] == "UPDATE" && e["update"]["status"]["state"] == "TASK_RUNNING").then_some(())
    });
    // A framework whose stream closed: its calls come "before SUBSCRIBE" again.
    let gone = V1Framework::subscribe(&master.addr, "gone");
    let gone_id = gone.framework_id.clone();
    let gone_stream = gone.events.stream_id.clone().unwrap();
    drop(gone);
    assert!(wait_until(Duration::from_secs(30), || {
        snapshot(&master.addr)["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f[0]["value"] == gone_id.as_str() && f[2] == false)
    }));
    let before = snapshot(&master.addr);
    let m = master.addr.as_str();
    let id = framework.framework_id.as_str();
    let stream = framework.events.stream_id.clone().unwrap();
    let accept =
        json!({"type": "DECLINE", "framework_id": {"value": id}, "decline": {"offer_ids": []}}).to_string();
    let json_type = Some("application/json");
    let cases: Vec<(&str, (u16, String), u16, &str)> = vec![
        ("malformed JSON", raw_call(m, "{\"type\": ", &[("Mesos-Stream-Id", &stream)]), 400, "JSON"),
        ("not an object", raw_call(m, "[1, 2]", &[]), 400, "object"),
        ("unknown call type", raw_call(m, &json!({"type": "FLY", "framework_id": {"value": id}}).to_string(), &[("Mesos-Stream-Id", &stream)]), 400, "FLY"),
        ("missing framework id", raw_call(m, r#"{"type": "REVIVE"}"#, &[("Mesos-Stream-Id", &stream)]), 400, "framework_id"),
        ("missing stream id", raw_call(m, &accept, &[]), 400, "Mesos-Stream-Id"),
        ("wrong stream id", raw_call(m, &accept, &[("Mesos-Stream-Id", "not-the-stream")]), 400, "stream id"),
        ("another framework's stream id", raw_call(m, &accept, &[("Mesos-Stream-Id", &gone_stream)]), 400, "stream id"),
        ("stream id on SUBSCRIBE", raw_call(m, &json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "", "name": "x"}}}).to_string(), &[("Mesos-Stream-Id", &stream)]), 400, "Mesos-Stream-Id"),
        ("call before SUBSCRIBE", raw_call(m, &json!({"type": "REVIVE", "framework_id": {"value": gone_id}}).to_string(), &[("Mesos-Stream-Id", &gone_stream)]), 403, "not subscribed"),
        ("unknown framework", raw_call(m, &json!({"type": "REVIVE", "framework_id": {"value": "nope"}}).to_string(), &[("Mesos-Stream-Id", &stream)]), 400, "cannot be found"),
        ("bad task in KILL", raw_call(m, &json!({"type": "KILL", "framework_id": {"value": id}, "kill": {"task_id": "t"}}).to_string(), &[("Mesos-Stream-Id", &stream)]), 400, "task_id"),
        ("oversized body", announce_oversized(m, "/api/v1/scheduler", 17 * 1024 * 1024), 413, "larger"),
        ("oversized operator call", announce_oversized(m, "/api/v1", 5 * 1024 * 1024), 413, "larger"),
        ("wrong method", request_with("GET", m, "/api/v1/scheduler", None, &[]).map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())).unwrap(), 405, "POST"),
        ("no content type", post(m, "/api/v1/scheduler", None, "", &[]), 400, "Content-Type"),
        ("text content type", post(m, "/api/v1/scheduler", Some("text/plain"), "{}", &[]), 415, "application/json"),
        ("protobuf", post(m, "/api/v1/scheduler", Some("application/x-protobuf"), "", &[]), 415, "protobuf"),
        ("protobuf answers", post(m, "/api/v1/scheduler", json_type, &json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "", "name": "x"}}}).to_string(), &[("Accept", "application/x-protobuf")]), 406, "application/json"),
        ("operator: unknown call", post(m, "/api/v1", json_type, r#"{"type": "GET_NOTHING"}"#, &[]), 400, "GET_NOTHING"),
        ("operator: wrong method", request_with("GET", m, "/api/v1", None, &[]).map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())).unwrap(), 405, "POST"),
        ("operator: malformed", post(m, "/api/v1/operator", json_type, "{", &[]), 400, "JSON"),
        ("operator: teardown of nothing", post(m, "/api/v1", json_type, r#"{"type": "TEARDOWN", "teardown": {"framework_id": {"value": "nope"}}}"#, &[]), 404, "nope"),
        ("executor: unknown framework", post(&agent.addr, "/api/v1/executor", json_type, r#"{"type": "SUBSCRIBE", "framework_id": {"value": "nope"}, "executor_id": {"value": "e"}}"#, &[]), 400, "not known"),
        ("executor: a command task is no executor", post(&agent.addr, "/api/v1/executor", json_type, &json!({"type": "SUBSCRIBE", "framework_id": {"value": id}, "executor_id": {"value": "bystander-task"}}).to_string(), &[]), 400, "command task"),
        ("executor: update before SUBSCRIBE", post(&agent.addr, "/api/v1/executor", json_type, &json!({"type": "MESSAGE", "framework_id": {"value": id}, "executor_id": {"value": "e"}, "message": {"data": "aGk="}}).to_string(), &[]), 400, "not known"),
        ("executor: malformed", post(&agent.addr, "/api/v1/executor", json_type, "{", &[]), 400, "JSON"),
        ("executor: bad status", post(&agent.addr, "/api/v1/executor", json_type, &json!({"type": "UPDATE", "framework_id": {"value": id}, "executor_id": {"value": "e"}, "update": {"status": {"task_id": {"value": "t"}, "state": "TASK_STAGING", "uuid": "AAAA"}}}).to_string(), &[]), 400, "STAGING"),
        ("agent operator: unknown call", post(&agent.addr, "/api/v1", json_type, r#"{"type": "GET_NOTHING"}"#, &[]), 400, "GET_NOTHING"),
    ];
    for (what, (status, body), expected, reason) in cases {
        assert_eq!(status, expected, "{what}: {body}");
        assert!(body.contains(reason), "{what}: the reason {body:?} does not mention {reason:?}");
    }
    assert_eq!(snapshot(&master.addr), before, "bad input changed the state");
    // Calls naming what does not exist are accepted and answered as Mesos does.
    let (status, body) = framework.call(json!({"type": "ACCEPT", "accept": {"offer_ids": [{"value": "stale"}],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{"name": "x", "task_id": {"value": "on-stale"},
        "agent_id": {"value": "nope"}, "command": {"value": "true"}}]}}]}}));
    assert_eq!(status, 202, "{body}");
    let lost = framework.events.wait_for(Duration::from_secs(10), |e| {
        (e["update"]["status"]["task_id"]["value"] == "on-stale").then(|| e["update"]["status"].clone())
    });
    assert_eq!(lost["state"], "TASK_LOST");
    assert_eq!(lost["reason"], "REASON_INVALID_OFFERS");
    let (status, body) = framework
        .call(json!({"type": "ACKNOWLEDGE", "acknowledge": {"agent_id": {"value": "nope"},
        "task_id": {"value": "nope"}, "uuid": "AAAAAAAAAAAAAAAAAAAAAA=="}}));
    assert_eq!(status, 202, "{body}");
    let (status, body) = framework.call(json!({"type": "KILL", "kill": {"task_id": {"value": "never-was"}}}));
    assert_eq!(status, 202, "{body}");
    let killed = framework.events.wait_for(Duration::from_secs(10), |e| {
        (e["update"]["status"]["task_id"]["value"] == "never-was")
            .then(|| e["update"]["status"]["state"].clone())
    });
    assert_eq!(killed, "TASK_LOST");
    // An unsupported task is refused alone, with TASK_ERROR.
    let (status, body) = framework.call(json!({"type": "ACCEPT", "accept": {"offer_ids": [],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{"name": "x", "task_id": {"value": "docker"},
        "agent_id": {"value": "a"}, "command": {"value": "true"}, "container": {"type": "DOCKER", "docker": {"image": "x"}}}]}}]}}));
    assert_eq!(status, 202, "{body}");
    let refused = framework.events.wait_for(Duration::from_secs(10), |e| {
        (e["update"]["status"]["task_id"]["value"] == "docker").then(|| e["update"]["status"].clone())
    });
    assert_eq!(refused["state"], "TASK_ERROR");
    assert!(refused["message"].as_str().unwrap().contains("container images"), "{refused}");
    // The bystander's stream and task went on through all of it.
    let after = snapshot(&master.addr);
    assert_eq!(after["tasks"], before["tasks"]);
    assert_eq!(after["frameworks"], before["frameworks"]);
    let (status, body) = framework.call(json!({"type": "REVIVE"}));
    assert_eq!(status, 202, "{body}");
    let (status, body) = http_get(&master.addr, "/health").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_standby_redirects_the_scheduler_api_to_the_leader() {
    use keel_actors::master::http::{routes_for, MasterSlot};
    use tower::ServiceExt;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let me: keel_kernel::Upid = "master@127.0.0.1:5051".parse().unwrap();
        let (leader, watch) = tokio::sync::watch::channel(None);
        let router = routes_for(MasterSlot::standby(me, watch));
        let subscribe = || {
            axum::extract::Request::post("/api/v1/scheduler")
                .header("Content-Type", "application/json")
                .body(axum::body::Body::from(r#"{"type":"SUBSCRIBE"}"#))
                .unwrap()
        };
        let response = router.clone().oneshot(subscribe()).await.unwrap();
        assert_eq!(response.status(), 503, "no leader known yet");
        leader.send_replace(Some(keel_actors::detector::DetectedMaster {
            upid: "master@127.0.0.1:5052".parse().unwrap(),
            epoch: 2,
        }));
        for path in ["/api/v1/scheduler", "/api/v1", "/master/api/v1/scheduler"] {
            let request = axum::extract::Request::post(path).body(axum::body::Body::empty()).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 307, "{path}");
            let location = response.headers()["location"].to_str().unwrap().to_string();
            assert!(location.contains("127.0.0.1:5052") && location.ends_with(path), "{location}");
        }
        // Mesos's endpoints too.
        let request =
            axum::extract::Request::get("/master/frameworks/").body(axum::body::Body::empty()).unwrap();
        assert_eq!(router.clone().oneshot(request).await.unwrap().status(), 307);
    });
}

#[test]
fn events_stream_keeps_up_with_many_subscribers_closing() {
    // Streams that open and close do not disturb the master: ten operator
    // subscribers come and go while a framework subscribes.
    let master = start_master(&[]);
    for _ in 0..10 {
        let events = Events::open(&master.addr, "/api/v1", &json!({"type": "SUBSCRIBE"}));
        events.wait_for(Duration::from_secs(10), |e| (e["type"] == "SUBSCRIBED").then_some(()));
    }
    let framework = V1Framework::subscribe(&master.addr, "after-subscribers");
    let (status, body) = framework.call(json!({"type": "SUPPRESS"}));
    assert_eq!(status, 202, "{body}");
}

#[test]
fn a_slow_subscriber_is_disconnected_not_waited_for() {
    use std::io::{BufRead, BufReader, Write};
    let master = start_master(&[]);
    let bystander = V1Framework::subscribe(&master.addr, "bystander");
    // A scheduler that subscribes and then never reads its stream again.
    let mut socket = std::net::TcpStream::connect(&master.addr).unwrap();
    let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "", "name": "slow",
        "failover_timeout": 600}}})
    .to_string();
    write!(
        socket,
        "POST /api/v1/scheduler HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        master.addr,
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut stream_id = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("mesos-stream-id:") {
            stream_id = value.trim().to_string();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut framework_id = String::new();
    assert!(wait_until(Duration::from_secs(10), || {
        let state = snapshot(&master.addr);
        let found = state["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f[0]["value"] != bystander.framework_id.as_str())
            .cloned();
        if let Some(f) = found {
            framework_id = f[0]["value"].as_str().unwrap().to_string();
        }
        !framework_id.is_empty()
    }));
    // Each explicit reconciliation of 10,000 unknown tasks is 10,000 UPDATE events.
    let tasks: Vec<Value> = (0..10_000).map(|i| json!({"task_id": {"value": format!("t{i}")}})).collect();
    let reconcile =
        json!({"type": "RECONCILE", "framework_id": {"value": framework_id}, "reconcile": {"tasks": tasks}})
            .to_string();
    let disconnected = || {
        snapshot(&master.addr)["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f[0]["value"] == framework_id.as_str() && f[2] == false)
    };
    let mut calls = 0;
    while !disconnected() && calls < 20 {
        let (status, body) = raw_call(&master.addr, &reconcile, &[("Mesos-Stream-Id", &stream_id)]);
        assert!(status == 202 || status == 403, "{status} {body}");
        calls += 1;
    }
    assert!(
        wait_until(Duration::from_secs(20), disconnected),
        "the slow subscriber is still connected after {calls} calls"
    );
    assert!(
        keel_integration::cluster::metric(&master.addr, "master/v1/slow_subscribers_disconnected") >= 1.0
    );
    // Nobody else noticed: the master answers and the other framework's calls go on.
    let (status, body) = bystander.call(json!({"type": "REVIVE"}));
    assert_eq!(status, 202, "{body}");
    assert!(snapshot(&master.addr)["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f[0]["value"] == bystander.framework_id.as_str() && f[2] == true));
    drop(socket);
}

#[test]
fn update_framework_applies_or_refuses_with_a_reason() {
    let master = start_master(&[]);
    let framework = V1Framework::subscribe(&master.addr, "before");
    let info = |name: &str, role: &str| {
        json!({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": {
            "id": {"value": framework.framework_id}, "user": "", "name": name, "role": role,
            "failover_timeout": 30}}})
    };
    let (status, body) = framework.call(info("after", "*"));
    assert_eq!(status, 200, "{body}");
    let (_, frameworks) =
        post(&master.addr, "/api/v1", Some("application/json"), r#"{"type":"GET_FRAMEWORKS"}"#, &[]);
    let frameworks: Value = serde_json::from_str(&frameworks).unwrap();
    assert_eq!(frameworks["get_frameworks"]["frameworks"][0]["framework_info"]["name"], "after");
    assert_eq!(frameworks["get_frameworks"]["frameworks"][0]["framework_info"]["failover_timeout"], 30.0);
    for (bad, reason) in [(info("x", "eng"), "roles"), (info("", "*"), "name")] {
        let (status, body) = framework.call(bad);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains(reason), "{body}");
    }
    // The subscription went on: calls still work.
    let (status, body) = framework.call(json!({"type": "SHUTDOWN", "shutdown": {
        "executor_id": {"value": "none"}, "agent_id": {"value": "none"}}}));
    assert_eq!(status, 202, "{body}");
    let (status, body) = framework.call(json!({"type": "REQUEST", "request": {"requests": []}}));
    assert_eq!(status, 202, "{body}");
}
