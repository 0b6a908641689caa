//! Same-node behaviour of the kernel: routing without serialisation through the same
//! path as remote messages, timers and their cancellation, limits, typed queries.

use std::sync::atomic::Ordering;
use std::time::Duration;

use keel_kernel::{
    message, Handle, Handlers, Node, NodeConfig, NodeError, Process, ProcessContext, TimerId, Upid,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    text: String,
}
message!(Note, "keel.test.Note");

#[derive(Debug, Serialize, Deserialize)]
struct Arm {
    after_ms: u64,
    text: String,
    cancel: bool,
}
message!(Arm, "keel.test.Arm");

#[derive(Debug, Serialize, Deserialize)]
struct NotInstalled {}
message!(NotInstalled, "keel.test.NotInstalled");

struct Recorder {
    notes: mpsc::UnboundedSender<(Upid, String)>,
    timers: Vec<TimerId>,
}

impl Process for Recorder {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<Note>().install::<Arm>();
    }
}

impl Handle<Note> for Recorder {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, from: Upid, note: Note) {
        let _ = self.notes.send((from, note.text));
    }
}

impl Handle<Arm> for Recorder {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, _from: Upid, arm: Arm) {
        let timer = ctx.delay(Duration::from_millis(arm.after_ms), Note { text: arm.text });
        if arm.cancel {
            assert!(ctx.cancel(timer));
            assert!(!ctx.cancel(timer), "a timer cancels once");
        } else {
            self.timers.push(timer);
        }
    }
}

fn recorder() -> (Recorder, mpsc::UnboundedReceiver<(Upid, String)>) {
    let (notes, rx) = mpsc::unbounded_channel();
    (Recorder { notes, timers: Vec::new() }, rx)
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<(Upid, String)>) -> (Upid, String) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time").expect("open")
}

#[actix_rt::test]
async fn same_node_messages_are_routed_counted_and_delivered() {
    let node = Node::start(NodeConfig::default()).await.unwrap();
    let (rec, mut rx) = recorder();
    let rec = node.spawn("recorder", rec).unwrap();
    let outsider = node.upid("outsider").unwrap();
    node.send(&outsider, rec.upid(), Note { text: "hi".into() });
    assert_eq!(recv(&mut rx).await, (outsider.clone(), "hi".to_string()));
    let stats = node.stats();
    assert_eq!(stats.messages_sent.load(Ordering::Relaxed), 1);
    assert_eq!(stats.messages_received.load(Ordering::Relaxed), 1);

    // Unknown targets and kinds are dropped and counted, same node or not.
    let nobody = node.upid("nobody").unwrap();
    assert!(node.try_send(&outsider, &nobody, Note { text: "lost".into() }).is_err());
    assert!(node.try_send(&outsider, rec.upid(), NotInstalled {}).is_err());
    assert_eq!(stats.dropped_unknown_target.load(Ordering::Relaxed), 1);
    assert_eq!(stats.dropped_unknown_kind.load(Ordering::Relaxed), 1);
}

#[actix_rt::test]
async fn timers_fire_in_order_and_cancelled_ones_never_do() {
    let node = Node::start(NodeConfig::default()).await.unwrap();
    let (rec, mut rx) = recorder();
    let rec = node.spawn("timers", rec).unwrap();
    let me = rec.upid().clone();
    node.send(&me, &me, Arm { after_ms: 80, text: "late".into(), cancel: false });
    node.send(&me, &me, Arm { after_ms: 20, text: "cancelled".into(), cancel: true });
    node.send(&me, &me, Arm { after_ms: 10, text: "early".into(), cancel: false });
    assert_eq!(recv(&mut rx).await, (me.clone(), "early".to_string()));
    assert_eq!(recv(&mut rx).await, (me.clone(), "late".to_string()));
    let extra = tokio::time::timeout(Duration::from_millis(150), rx.recv()).await;
    assert!(extra.is_err(), "the cancelled timer fired: {extra:?}");
    let armed = rec.query(|r, _| r.timers.len()).await.unwrap();
    assert_eq!(armed, 2);
}

#[actix_rt::test]
async fn names_are_unique_and_valid() {
    let node = Node::start(NodeConfig::default()).await.unwrap();
    node.spawn("one", recorder().0).unwrap();
    assert!(matches!(node.spawn("one", recorder().0), Err(NodeError::NameTaken(_))));
    assert!(matches!(node.spawn("__node__", recorder().0), Err(NodeError::NameTaken(_))));
    assert!(matches!(node.spawn("bad name", recorder().0), Err(NodeError::InvalidName(_))));
    assert!(node.lookup::<Recorder>("one").is_some());
}

#[actix_rt::test]
async fn a_full_mailbox_drops_instead_of_growing() {
    let config = NodeConfig { max_mailbox_depth: 3, ..NodeConfig::default() };
    let node = Node::start(config).await.unwrap();
    let (rec, _rx) = recorder();
    let rec = node.spawn("small", rec).unwrap();
    let from = node.upid("sender").unwrap();
    // Nothing is handled until this task yields, so the mailbox fills up.
    let results: Vec<bool> =
        (0..5).map(|i| node.try_send(&from, rec.upid(), Note { text: i.to_string() }).is_ok()).collect();
    assert_eq!(results, [true, true, true, false, false]);
    assert_eq!(node.stats().dropped_mailbox_full.load(Ordering::Relaxed), 2);
}

#[actix_rt::test]
async fn a_stopped_process_is_removed_and_its_linkers_told() {
    struct Watcher(mpsc::UnboundedSender<Upid>);
    impl Process for Watcher {
        fn exited(&mut self, _ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
            let _ = self.0.send(upid);
        }
    }
    let node = Node::start(NodeConfig::default()).await.unwrap();
    let (tx, mut exits) = mpsc::unbounded_channel();
    let watcher = node.spawn("watcher", Watcher(tx)).unwrap();
    let target = node.spawn("target", recorder().0).unwrap();
    node.link(watcher.upid(), target.upid());
    target.stop().await;
    let exited = tokio::time::timeout(Duration::from_secs(5), exits.recv()).await.unwrap().unwrap();
    assert_eq!(&exited, target.upid());
    assert!(node.lookup::<Recorder>("target").is_none());
    // Linking to a process that is gone exits at once.
    node.link(watcher.upid(), target.upid());
    let again = tokio::time::timeout(Duration::from_secs(5), exits.recv()).await.unwrap().unwrap();
    assert_eq!(&again, target.upid());
}

#[actix_rt::test]
async fn a_peer_that_connects_again_ends_the_backoff_towards_it() {
    // Node A fails to reach B (nothing listens yet) and backs off for a long time.
    let config = NodeConfig {
        backoff_initial: Duration::from_secs(60),
        backoff_max: Duration::from_secs(60),
        ..NodeConfig::default()
    };
    let a = Node::start(config).await.unwrap();
    let (rec_a, mut rx_a) = recorder();
    let rec_a = a.spawn("rec", rec_a).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let b_rec: Upid = format!("rec@127.0.0.1:{port}").parse().unwrap();
    a.send(rec_a.upid(), &b_rec, Note { text: "too early".into() });
    let failed = || a.stats().peer_connect_failures.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while failed() == 0 {
        assert!(std::time::Instant::now() < deadline, "the first connect never failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(a.try_send(rec_a.upid(), &b_rec, Note { text: "backing off".into() }).is_err());
    // B comes up on that port (a restarted node) and talks to A first.
    let b = Node::start(NodeConfig { bind: ([127, 0, 0, 1], port).into(), ..NodeConfig::default() })
        .await
        .unwrap();
    let (rec_b, mut rx_b) = recorder();
    let rec_b = b.spawn("rec", rec_b).unwrap();
    b.send(rec_b.upid(), rec_a.upid(), Note { text: "I am back".into() });
    assert_eq!(recv(&mut rx_a).await.1, "I am back");
    // A's answer goes out at once instead of being dropped for the rest of the minute.
    a.send(rec_a.upid(), &b_rec, Note { text: "welcome back".into() });
    assert_eq!(recv(&mut rx_b).await.1, "welcome back");
}
