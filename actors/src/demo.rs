//! `keel demo`: two kernel nodes in two OS processes exchanging traced messages.
//!
//! The first process starts a `pinger`, spawns a second `keel demo --serve` process
//! with a `ponger`, and pings it once a second, printing each round trip, until
//! interrupted; the child is killed by its PID on the way out.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_kernel::{message, Handle, Handlers, Node, NodeConfig, Process, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

/// A ping with its sequence number.
#[derive(Debug, Serialize, Deserialize)]
pub struct DemoPing {
    /// Sequence number.
    pub seq: u64,
}
message!(DemoPing, "keel.demo.Ping");

/// The answer to a [`DemoPing`].
#[derive(Debug, Serialize, Deserialize)]
pub struct DemoPong {
    /// The ping's sequence number.
    pub seq: u64,
}
message!(DemoPong, "keel.demo.Pong");

#[derive(Debug, Serialize, Deserialize)]
struct Tick {}
message!(Tick, "keel.demo.Tick");

struct Ponger;

impl Process for Ponger {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<DemoPing>();
    }
}

impl Handle<DemoPing> for Ponger {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, ping: DemoPing) {
        ctx.send(&from, DemoPong { seq: ping.seq });
    }
}

struct Pinger {
    ponger: Upid,
    seq: u64,
    sent_at: Instant,
}

impl Process for Pinger {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<DemoPong>().install::<Tick>();
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        ctx.link(&self.ponger.clone());
        ctx.delay(Duration::from_millis(100), Tick {});
    }

    fn exited(&mut self, ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        println!("link to {upid} exited: the other node is gone");
        ctx.stop();
        actix_rt::System::current().stop();
    }
}

impl Handle<Tick> for Pinger {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, _from: Upid, _tick: Tick) {
        self.seq += 1;
        self.sent_at = Instant::now();
        ctx.send(&self.ponger.clone(), DemoPing { seq: self.seq });
        ctx.delay(Duration::from_secs(1), Tick {});
    }
}

impl Handle<DemoPong> for Pinger {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, from: Upid, pong: DemoPong) {
        println!("pong {} from {from} in {:?}", pong.seq, self.sent_at.elapsed());
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the serving side: a node with a `ponger`, printing `READY host:port`.
pub fn serve(config: NodeConfig) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        let node = Node::start(config).await?;
        node.spawn("ponger", Ponger)?;
        println!("READY {}", node.addr());
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// Runs the demo: starts the serving process, then pings it until interrupted.
pub fn run(config: NodeConfig, trace_args: &[String]) -> anyhow::Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(trace_args)
        .args(["demo", "--serve"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no child stdout"))?;
    let child = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("the serving process exited"))??;
        if let Some(addr) = line.strip_prefix("READY ") {
            break addr.to_string();
        }
    };
    let result = actix_rt::System::new().block_on(async move {
        let node = Node::start(config).await?;
        let ponger: Upid = format!("ponger@{addr}").parse()?;
        node.spawn("pinger", Pinger { ponger: ponger.clone(), seq: 0, sent_at: Instant::now() })?;
        println!("two kernel nodes: pinger@{} and {ponger} (child pid {})", node.addr(), child.0.id());
        println!("  processes: curl http://{}/__processes__", node.addr());
        println!("  trace the messages with: keel --trace FILE demo   (Ctrl-C stops both)");
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        drop(child);
        Ok::<(), anyhow::Error>(())
    });
    result
}
