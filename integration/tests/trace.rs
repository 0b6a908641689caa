//! Message-trace debugging with real processes: a task runs on a two-agent cluster
//! (`keel master`, two `keel agent`s, a framework in the test's own node), then
//! `keel trace task` reads the nodes' flight recorders (and the framework's dump)
//! and tells the task's life, every hop from the framework's accept to the
//! acknowledged TASK_FINISHED, across the three nodes; the Mermaid and Perfetto
//! outputs show the same hops.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use keel_actors::task::{FrameworkInfo, TaskState};
use keel_integration::cluster::{
    command_task, keel_binary, start_agent, start_master, Op, TempDir, TestFramework,
};
use keel_integration::{http_get, run, wait_until};

/// What a node's flight recorder holds about `task`, as JSON objects.
fn recorded(node: &str, query: &str) -> Vec<serde_json::Value> {
    let Ok((200, body)) = http_get(node, &format!("/trace/recent?{query}")) else { return Vec::new() };
    body.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Runs `keel trace` with `args`; returns its stdout (it must succeed).
fn keel_trace(args: &[&str]) -> String {
    let output = Command::new(keel_binary()).arg("trace").args(args).output().expect("keel trace runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "keel trace {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn keel_trace_task_tells_a_task_s_life_across_three_nodes() {
    let dirs = [TempDir::new("trace-a"), TempDir::new("trace-b")];
    let master = start_master(&[]);
    let agents: Vec<_> = dirs.iter().map(|d| start_agent(&master.addr, &d.0, &[])).collect();
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(&master.addr, "/metrics/snapshot")
            .is_ok_and(|(_, b)| b.contains("\"master/slaves_active\":2"))
    }));
    let master_upid = keel_actors::cli::master_upid(&master.addr).unwrap();
    let out = TempDir::new("trace-out");
    let framework_dump = out.0.join("framework.trace");
    run(async {
        let node = keel_integration::cluster::test_node().await;
        let mut fw = TestFramework::start(&node, "traced", &master_upid, FrameworkInfo::new("traced")).await;
        let offer = fw.offer().await;
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("traced", &offer, "true")]));
        fw.status("traced", TaskState::Finished).await;
        // The acknowledgement of the terminal update reaches the agent.
        let agent_addrs: Vec<String> = agents.iter().map(|a| a.addr.clone()).collect();
        let acked = tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(10), || {
                agent_addrs.iter().any(|agent| {
                    recorded(agent, "task=traced&kind=StatusUpdateAcknowledgement")
                        .iter()
                        .filter(|e| e["message"] == "recv")
                        .count()
                        >= 2
                })
            })
        })
        .await
        .unwrap();
        assert!(acked, "the agent never received both acknowledgements");
        std::fs::write(&framework_dump, node.recorder().dump()).unwrap();
    });

    // The master's recorder names the task on its hops (subjects).
    let at_master = recorded(&master.addr, "task=traced");
    let kinds: BTreeSet<&str> = at_master.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["keel.agent.RunTask", "keel.common.StatusUpdate", "keel.common.StatusUpdateAcknowledgement"]
    {
        assert!(kinds.contains(kind), "the master's recorder has no {kind} for the task: {kinds:?}");
    }

    let dump = framework_dump.to_str().unwrap();
    let mut inputs = vec![dump.to_string()];
    for node in std::iter::once(&master.addr).chain(agents.iter().map(|a| &a.addr)) {
        inputs.push("--node".into());
        inputs.push(node.clone());
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let timeline = keel_trace(&[&["task", "traced"], &inputs[..]].concat());
    println!("{timeline}");
    for hop in ["accept", "launch", "update 1", "update 1 fwd", "ack 1", "ack 1 fwd", "update 2", "ack 2 fwd"]
    {
        assert!(timeline.lines().any(|line| line.contains(hop)), "no {hop:?} hop in:\n{timeline}");
    }
    assert!(timeline.lines().any(|l| l.contains("update 2") && l.contains("FINISHED")), "{timeline}");
    assert!(timeline.contains("from the accept to the acknowledged terminal update"), "{timeline}");
    // Three nodes: the framework's, the master's and the agent's.
    for node in ["traced@", &format!("master@{}", master.addr)] {
        assert!(timeline.contains(node), "{node} is not in:\n{timeline}");
    }
    assert!(agents.iter().any(|a| timeline.contains(&format!("agent@{}", a.addr))), "{timeline}");

    // The same hops in Mermaid...
    let mermaid = keel_trace(&[&["task", "traced", "--format", "mermaid"], &inputs[..]].concat());
    assert!(mermaid.starts_with("sequenceDiagram"), "{mermaid}");
    let arrows = mermaid.lines().filter(|l| l.contains("->>") || l.contains("-x")).count();
    let hops = timeline
        .lines()
        .filter(|l| l.contains(" fwd") || l.contains("ack ") || l.contains("update "))
        .count();
    assert!(arrows >= 8 && hops >= 6, "{arrows} arrows for {hops} hop lines:\n{mermaid}");

    // ...and in Perfetto: every flow start has its end, times never go back on a track.
    let perfetto = keel_trace(&[&["task", "traced", "--format", "perfetto"], &inputs[..]].concat());
    let json: serde_json::Value = serde_json::from_str(&perfetto).expect("Perfetto output is JSON");
    let events = json.as_array().or_else(|| json["traceEvents"].as_array()).expect("trace events").clone();
    let mut starts = BTreeSet::new();
    let mut ends = BTreeSet::new();
    let mut last: BTreeMap<(String, String), f64> = BTreeMap::new();
    for event in &events {
        let id = event["id"].to_string();
        match event["ph"].as_str() {
            Some("s") => {
                starts.insert(id);
            }
            Some("f") => {
                ends.insert(id);
            }
            _ => {}
        }
        if let Some(ts) = event["ts"].as_f64() {
            let track = (event["pid"].to_string(), event["tid"].to_string());
            let previous = last.insert(track.clone(), ts).unwrap_or(f64::MIN);
            assert!(ts >= previous, "time went back on track {track:?}: {previous} then {ts}");
        }
    }
    assert!(starts.len() >= 8, "{} flows", starts.len());
    assert_eq!(starts, ends, "every flow start has its end");

    // A node's recorder can be dumped to a file that keel trace reads back.
    let dumped = out.0.join("master.jsonl");
    keel_trace(&["dump", &master.addr, "--out", dumped.to_str().unwrap()]);
    let read = keel_kernel::trace::read_trace_file(&dumped).unwrap();
    assert!(read.warnings.is_empty() && read.events.iter().any(|e| e.subject("task") == Some("traced")));
}

#[test]
fn keel_trace_live_merges_the_nodes_streams_as_events_happen() {
    let dir = TempDir::new("trace-live");
    let master = start_master(&[]);
    let agent = start_agent(&master.addr, &dir.0, &[]);
    assert!(wait_until(Duration::from_secs(10), || {
        http_get(&master.addr, "/metrics/snapshot")
            .is_ok_and(|(_, b)| b.contains("\"master/slaves_active\":1"))
    }));
    // The live view starts first, then a task runs while it streams.
    let live = Command::new(keel_binary())
        .args(["trace", "--live", "--live-for", "6s", "--format", "json", "--kind", "RunTask,StatusUpdate"])
        .args(["--node", &master.addr, "--node", &agent.addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("keel trace --live runs");
    let master_upid = keel_actors::cli::master_upid(&master.addr).unwrap();
    run(async {
        let node = keel_integration::cluster::test_node().await;
        let mut fw = TestFramework::start(&node, "live", &master_upid, FrameworkInfo::new("live")).await;
        let offer = fw.offer().await;
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("streamed", &offer, "true")]));
        fw.status("streamed", TaskState::Finished).await;
    });
    let output = live.wait_with_output().expect("keel trace --live ends after --live-for");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let seen = |kind: &str, node: &str| {
        events.iter().any(|e| e["kind"] == kind && e["node"] == node && e["task"] == "streamed")
    };
    assert!(seen("keel.agent.RunTask", &master.addr), "the master's send of the RunTask: {events:?}");
    assert!(seen("keel.agent.RunTask", &agent.addr), "the agent's receipt of the RunTask");
    assert!(seen("keel.common.StatusUpdate", &agent.addr), "the agent's updates");
}

#[test]
fn the_live_tap_is_bounded_bad_filters_are_refused_and_sigusr1_dumps_the_recorder() {
    use std::io::{Read, Write};
    let dumps = TempDir::new("trace-dumps");
    let master = start_master(&["--trace-dump-dir", dumps.0.to_str().unwrap()]);
    // Malformed filters: a 400 naming the parameter.
    let (status, body) = http_get(&master.addr, "/trace/recent?since=yesterday").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("since"), "{body}");
    assert_eq!(http_get(&master.addr, "/trace/stream?colour=red").unwrap().0, 400);
    // At most 8 live subscribers: the 9th is turned away, the others keep streaming.
    let open = |_: usize| {
        let mut stream = std::net::TcpStream::connect(&master.addr).unwrap();
        write!(stream, "GET /trace/stream HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 64];
        let n = stream.read(&mut head).unwrap();
        (stream, String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let streams: Vec<_> = (0..8).map(open).collect();
    assert!(streams.iter().all(|(_, head)| head.starts_with("HTTP/1.1 200")), "{:?}", streams[0].1);
    let (_, ninth) = open(8);
    assert!(ninth.starts_with("HTTP/1.1 503"), "{ninth}");
    drop(streams);
    // SIGUSR1 writes the flight recorder to the dump directory.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master.pid() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let mut dumped = None;
    assert!(wait_until(Duration::from_secs(10), || {
        dumped = std::fs::read_dir(&dumps.0)
            .ok()
            .and_then(|mut entries| entries.find_map(|e| e.ok().map(|e| e.path())))
            .filter(|p| p.to_string_lossy().ends_with(".trace"));
        dumped.is_some()
    }));
    let read = keel_kernel::trace::read_trace_file(&dumped.unwrap()).unwrap();
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
}
