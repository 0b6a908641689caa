//! The kernel across two real OS processes: request/reply, links after SIGKILL and
//! after a remote stop, reconnect after a restart, causal parents over three hops,
//! version skew, and every kind of bad input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use keel_integration::cluster::test_node;
use keel_integration::proto::{GreetV1, Hop, Ping, Stop};
use keel_integration::{counter, http_get, read_trace, run, wait_until, ChildNode, Probe, Seen};
use keel_kernel::wire::{self, Header};
use keel_kernel::Upid;
use tokio::sync::mpsc::UnboundedReceiver;

const TESTNODE: &str = env!("CARGO_BIN_EXE_keel-testnode");
const WAIT: Duration = Duration::from_secs(10);

fn child(args: &[&str]) -> ChildNode {
    ChildNode::start(TESTNODE, args).expect("test node starts")
}

async fn next(rx: &mut UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("probe heard something in time").expect("probe alive")
}

fn ping(seq: u64) -> Ping {
    Ping { seq, payload: "x".repeat(100) }
}

#[test]
fn request_reply_between_processes() {
    let remote = child(&[]);
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        for seq in 0..100 {
            node.send(probe.upid(), &remote.upid("echo"), ping(seq));
        }
        for seq in 0..100 {
            match next(&mut rx).await {
                Seen::Pong(from, pong) => {
                    assert_eq!(from, remote.upid("echo"));
                    assert_eq!(pong.seq, seq, "replies arrive in order");
                    assert_eq!(pong.payload.len(), 100);
                }
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    });
}

#[test]
fn link_exits_promptly_when_the_peer_is_killed() {
    let mut remote = child(&[]);
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        let echo = remote.upid("echo");
        // Make sure the connection is up and the link registered before the kill.
        node.link(probe.upid(), &echo);
        node.send(probe.upid(), &echo, ping(1));
        assert!(matches!(next(&mut rx).await, Seen::Pong(..)));
        let killed_at = Instant::now();
        remote.kill();
        match next(&mut rx).await {
            Seen::Exited(upid) => assert_eq!(upid, echo),
            other => panic!("expected exited, got {other:?}"),
        }
        let took = killed_at.elapsed();
        assert!(took < Duration::from_secs(2), "exited took {took:?}");
        // Exactly once: nothing else arrives.
        let more = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
        assert!(more.is_err(), "a second event arrived: {more:?}");
    });
}

#[test]
fn link_exits_when_the_remote_actor_stops_or_never_existed() {
    let remote = child(&[]);
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        let stoppable = remote.upid("stoppable");
        node.link(probe.upid(), &stoppable);
        node.send(probe.upid(), &stoppable, ping(1));
        assert!(matches!(next(&mut rx).await, Seen::Pong(..)));
        node.send(probe.upid(), &stoppable, Stop {});
        match next(&mut rx).await {
            Seen::Exited(upid) => assert_eq!(upid, stoppable),
            other => panic!("expected exited, got {other:?}"),
        }
        let ghost = remote.upid("ghost");
        node.link(probe.upid(), &ghost);
        match next(&mut rx).await {
            Seen::Exited(upid) => assert_eq!(upid, ghost),
            other => panic!("expected exited, got {other:?}"),
        }
        // The node and its other processes are unaffected.
        node.send(probe.upid(), &remote.upid("echo"), ping(2));
        assert!(matches!(next(&mut rx).await, Seen::Pong(_, p) if p.seq == 2));
    });
}

#[test]
fn link_to_an_unreachable_node_exits() {
    // A port nothing listens on: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        let nobody: Upid = format!("nobody@127.0.0.1:{port}").parse().unwrap();
        node.link(probe.upid(), &nobody);
        match next(&mut rx).await {
            Seen::Exited(upid) => assert_eq!(upid, nobody),
            other => panic!("expected exited, got {other:?}"),
        }
    });
}

#[test]
fn reconnects_after_the_peer_restarts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_arg = port.to_string();
    let mut remote = child(&["--port", &port_arg]);
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        let echo = remote.upid("echo");
        node.send(probe.upid(), &echo, ping(1));
        assert!(matches!(next(&mut rx).await, Seen::Pong(..)));
        remote.kill();
        remote = child(&["--port", &port_arg]);
        // Messages sent while the peer is down or backing off are dropped; keep
        // pinging until one gets through the new connection.
        let deadline = Instant::now() + WAIT;
        let mut seq = 100;
        loop {
            assert!(Instant::now() < deadline, "no pong after the restart");
            node.send(probe.upid(), &echo, ping(seq));
            seq += 1;
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Some(Seen::Pong(..))) => break,
                _ => continue,
            }
        }
        assert!(node.stats().peer_connects.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    });
    drop(remote);
}

#[test]
fn causal_parents_over_three_hops_on_two_nodes() {
    let dir = std::env::temp_dir().join(format!("keel-causal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace_b = dir.join("b.jsonl");
    let trace_c = dir.join("c.jsonl");
    let b = child(&["--trace", trace_b.to_str().unwrap()]);
    let c = child(&["--trace", trace_c.to_str().unwrap()]);
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        // probe -> relay@B -> relay@C -> relay@B -> relay@C -> probe.
        let route = vec![c.upid("relay"), b.upid("relay"), c.upid("relay"), probe.upid().clone()];
        node.send(probe.upid(), &b.upid("relay"), Hop { route });
        assert!(matches!(next(&mut rx).await, Seen::Hop(..)));
    });
    let hops = |path: &std::path::Path| -> Vec<serde_json::Value> {
        read_trace(path)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["message"] == "recv" && e["kind"] == "keel.test.Hop")
            .collect()
    };
    assert!(
        wait_until(WAIT, || hops(&trace_b).len() == 2 && hops(&trace_c).len() == 2),
        "both trace files hold two hop receipts"
    );
    let mut received: Vec<serde_json::Value> = hops(&trace_b);
    received.extend(hops(&trace_c));
    received.sort_by_key(|e| e["timestamp"].as_str().unwrap_or_default().to_string());
    // Hop 1 (probe -> B) has no parent: it was sent outside any handler.
    assert_eq!(received[0]["parent"], "0000000000000000");
    assert_eq!(received[0]["to"].as_str().unwrap(), b.upid("relay").to_string());
    // Each later hop's parent is the id of the hop its sender was handling.
    for pair in received.windows(2) {
        assert_eq!(pair[1]["parent"], pair[0]["id"], "{pair:?}");
        assert_eq!(pair[1]["from"], pair[0]["to"]);
    }
    // The send events agree with the receipts.
    let sends: Vec<serde_json::Value> = read_trace(&trace_b)
        .unwrap()
        .into_iter()
        .filter(|e| e["message"] == "send" && e["kind"] == "keel.test.Hop")
        .collect();
    assert_eq!(sends.len(), 2);
    assert!(sends.iter().all(|s| s["size"].as_u64().unwrap() > 0));
    drop((b, c));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn old_and_new_message_versions_interoperate() {
    let remote = child(&[]);
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        // We are the old node: GreetV1 lacks `language`; the reply has fields we lack.
        node.send(probe.upid(), &remote.upid("echo"), GreetV1 { name: "keel".into() });
        match next(&mut rx).await {
            Seen::GreetReply(_, reply) => assert_eq!(reply.text, "hello keel"),
            other => panic!("expected a greet reply, got {other:?}"),
        }
    });
}

/// A raw connection that has done the Keel handshake.
fn raw_connection(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hello = bytes::BytesMut::new();
    wire::write_handshake(&mut hello, &"127.0.0.1:1".parse().unwrap());
    stream.write_all(&hello).unwrap();
    stream
}

fn frame(to: &str, kind: &str, body: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    let header = Header { id: 42, parent: 0, from: "raw@127.0.0.1:1", to, kind };
    wire::write_frame(&mut out, wire::DEFAULT_MAX_FRAME_BYTES, header, |w| w.write_all(body)).unwrap();
    out.to_vec()
}

fn wait_counter(addr: &str, name: &str, at_least: u64) {
    let ok = wait_until(WAIT, || counter(addr, name).unwrap_or(0) >= at_least);
    assert!(ok, "counter {name} did not reach {at_least}: {:?}", counter(addr, name));
}

/// True when the peer closed the connection (read returns 0 or a reset).
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

#[test]
fn bad_input_is_counted_dropped_and_survived() {
    let remote = child(&[]);
    let addr = remote.addr.clone();

    // Garbage bytes / wrong magic: closed at once.
    let mut garbage = TcpStream::connect(&addr).unwrap();
    garbage.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    garbage.write_all(b"\x00\x01\x02\x03garbage").unwrap();
    assert!(closed_by_peer(&mut garbage));
    wait_counter(&addr, "bad_magic", 1);

    // Unsupported protocol version.
    let mut old = TcpStream::connect(&addr).unwrap();
    old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    old.write_all(b"KEEL\x00\x63\x00\x00").unwrap();
    assert!(closed_by_peer(&mut old));
    wait_counter(&addr, "bad_version", 1);

    // Oversized length prefix: the stream cannot resync, so it is closed.
    let mut big = raw_connection(&addr);
    big.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(closed_by_peer(&mut big));
    wait_counter(&addr, "oversized_frames", 1);

    // Unknown kind, undecodable body, unknown target: dropped, connection kept.
    let mut conn = raw_connection(&addr);
    conn.write_all(&frame("echo", "keel.test.NoSuchKind", &[0x80])).unwrap();
    conn.write_all(&frame("echo", "keel.test.Ping", &[0xc1, 0xc1, 0xc1])).unwrap();
    conn.write_all(&frame("nobody", "keel.test.Ping", &[0x80])).unwrap();
    wait_counter(&addr, "dropped_unknown_kind", 1);
    wait_counter(&addr, "dropped_decode_error", 1);
    wait_counter(&addr, "dropped_unknown_target", 1);

    // A truncated envelope (frame shorter than its own header) is counted...
    let mut truncated = Vec::new();
    truncated.extend_from_slice(&6u32.to_be_bytes());
    truncated.extend_from_slice(&[0; 6]);
    conn.write_all(&truncated).unwrap();
    wait_counter(&addr, "truncated_frames", 1);
    // ...and repeated garbage closes the connection.
    for _ in 0..10 {
        if conn.write_all(&truncated).is_err() {
            break;
        }
    }
    assert!(closed_by_peer(&mut conn));
    wait_counter(&addr, "connections_closed_for_garbage", 4);

    // A connection closed in the middle of a frame.
    let mut partial = raw_connection(&addr);
    let whole = frame("echo", "keel.test.Ping", &[0x80]);
    partial.write_all(&whole[..whole.len() - 3]).unwrap();
    drop(partial);
    wait_counter(&addr, "truncated_frames", 2);

    // A frame whose strings are not UTF-8 is malformed.
    let mut bad_utf8 = raw_connection(&addr);
    let mut malformed = frame("echo", "keel.test.Ping", &[0x80]);
    let to_at = 4 + 8 + 8 + 2 + "raw@127.0.0.1:1".len() + 2;
    malformed[to_at] = 0xff;
    bad_utf8.write_all(&malformed).unwrap();
    wait_counter(&addr, "malformed_frames", 1);

    // The node still serves everyone else.
    let (status, body) = http_get(&addr, "/health").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(&addr, "/no/such/path").unwrap();
    assert_eq!(status, 404);
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        node.send(probe.upid(), &remote.upid("echo"), ping(7));
        assert!(matches!(next(&mut rx).await, Seen::Pong(_, p) if p.seq == 7));
    });
}

#[test]
fn processes_endpoint_lists_actors_with_counters() {
    let remote = child(&[]);
    run(async {
        let node = test_node().await;
        let (probe, mut rx) = Probe::new();
        let probe = node.spawn("probe", probe).unwrap();
        for seq in 0..5 {
            node.send(probe.upid(), &remote.upid("echo"), ping(seq));
        }
        for _ in 0..5 {
            next(&mut rx).await;
        }
    });
    let (status, body) = http_get(&remote.addr, "/__processes__").unwrap();
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let echo = json["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == remote.upid("echo").to_string())
        .expect("echo listed")
        .clone();
    assert_eq!(echo["messages_handled"], 5);
    assert_eq!(echo["mailbox_depth"], 0);
    assert!(echo["kinds"].as_array().unwrap().iter().any(|k| k == "keel.test.Ping"));
    assert!(json["counters"]["messages_received"].as_u64().unwrap() >= 5);
}

#[test]
fn a_sender_that_is_not_on_the_connecting_node_is_dropped_and_counted() {
    // Bug 12: the envelope's `from` must belong to the node that opened the
    // connection (its handshake address, 127.0.0.1:1 here).
    let remote = child(&[]);
    let addr = remote.addr.clone();
    let body = keel_kernel::message::encode(&ping(3)).unwrap();
    let mut forged = bytes::BytesMut::new();
    let header =
        Header { id: 43, parent: 0, from: "master@10.9.9.9:5050", to: "echo", kind: "keel.test.Ping" };
    wire::write_frame(&mut forged, wire::DEFAULT_MAX_FRAME_BYTES, header, |w| w.write_all(&body)).unwrap();
    let mut conn = raw_connection(&addr);
    let received = counter(&addr, "messages_received").unwrap_or(0);
    conn.write_all(&forged).unwrap();
    wait_counter(&addr, "dropped_foreign_sender", 1);
    // The connection stays, and a sender of its own node is delivered.
    conn.write_all(&frame("echo", "keel.test.Ping", &body)).unwrap();
    wait_counter(&addr, "messages_received", received + 1);
    assert_eq!(counter(&addr, "dropped_foreign_sender").unwrap(), 1);
}
