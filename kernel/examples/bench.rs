//! Kernel benchmark: two OS processes on loopback exchanging 100-byte typed messages.
//!
//! `cargo run --release -p keel-kernel --example bench [-- --trace-dir DIR]` prints
//! `oneway_msgs_per_s=... rtt_p50_us=... rtt_p99_us=...`: one-way throughput of
//! 1,000,000 messages (with a credit window so nothing is dropped), and round-trip
//! latency percentiles of 20,000 sequential request/replies between two processes.
//! `--trace-dir` turns the JSON-lines file sink on in both processes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_kernel::{message, Handle, Handlers, Node, NodeConfig, Process, ProcessContext, Upid};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

const ONEWAY_MESSAGES: u64 = 1_000_000;
const ROUND_TRIPS: usize = 20_000;
const ACK_EVERY: u64 = 10_000;
const WINDOW: u64 = 200_000;

#[derive(Serialize, Deserialize)]
struct Data {
    seq: u64,
    payload: String,
}
message!(Data, "keel.bench.Data");

#[derive(Serialize, Deserialize)]
struct Ack {
    received: u64,
}
message!(Ack, "keel.bench.Ack");

#[derive(Serialize, Deserialize)]
struct Request {
    seq: u64,
    payload: String,
}
message!(Request, "keel.bench.Request");

#[derive(Serialize, Deserialize)]
struct Reply {
    seq: u64,
    payload: String,
}
message!(Reply, "keel.bench.Reply");

/// In the child: counts data and acknowledges every `ACK_EVERY`; answers requests.
struct Sink {
    received: u64,
}

impl Process for Sink {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<Data>().install::<Request>();
    }
}

impl Handle<Data> for Sink {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _data: Data) {
        self.received += 1;
        if self.received % ACK_EVERY == 0 {
            ctx.send(&from, Ack { received: self.received });
        }
    }
}

impl Handle<Request> for Sink {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, request: Request) {
        ctx.send(&from, Reply { seq: request.seq, payload: request.payload });
    }
}

/// In the parent: hears acks, and runs the sequential round trips.
struct Driver {
    acks: mpsc::UnboundedSender<u64>,
    sink: Upid,
    sent_at: Instant,
    rtts_ns: Vec<u64>,
    done: Option<tokio::sync::oneshot::Sender<Vec<u64>>>,
}

#[derive(Serialize, Deserialize)]
struct StartRoundTrips {}
message!(StartRoundTrips, "keel.bench.StartRoundTrips");

impl Process for Driver {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<Ack>().install::<Reply>().install::<StartRoundTrips>();
    }
}

impl Driver {
    fn request(&mut self, ctx: &ProcessContext<'_, Self>, seq: u64) {
        self.sent_at = Instant::now();
        ctx.send(&self.sink, Request { seq, payload: payload() });
    }
}

impl Handle<Ack> for Driver {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, _from: Upid, ack: Ack) {
        let _ = self.acks.send(ack.received);
    }
}

impl Handle<StartRoundTrips> for Driver {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, _from: Upid, _start: StartRoundTrips) {
        self.request(ctx, 0);
    }
}

impl Handle<Reply> for Driver {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, _from: Upid, reply: Reply) {
        self.rtts_ns.push(self.sent_at.elapsed().as_nanos() as u64);
        if self.rtts_ns.len() < ROUND_TRIPS {
            self.request(ctx, reply.seq + 1);
        } else if let Some(done) = self.done.take() {
            let _ = done.send(std::mem::take(&mut self.rtts_ns));
        }
    }
}

fn payload() -> String {
    "k".repeat(100)
}

fn trace_file(dir: &Option<PathBuf>, name: &str) -> Option<PathBuf> {
    dir.as_ref().map(|d| d.join(format!("{name}.trace.jsonl")))
}

fn child(trace_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let _guard = keel_kernel::trace::init(trace_file(&trace_dir, "child").as_deref())?;
    actix_rt::System::new().block_on(async {
        let node = Node::start(NodeConfig::default()).await?;
        node.spawn("sink", Sink { received: 0 })?;
        println!("READY {}", node.addr());
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

fn parent(trace_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let _guard = keel_kernel::trace::init(trace_file(&trace_dir, "parent").as_deref())?;
    let mut args = vec!["--child".to_string()];
    if let Some(dir) = &trace_dir {
        args.extend(["--trace-dir".to_string(), dir.display().to_string()]);
    }
    let mut child = Command::new(std::env::current_exe()?).args(&args).stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let addr = loop {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("child exited early"))??;
        if let Some(addr) = line.strip_prefix("READY ") {
            break addr.to_string();
        }
    };
    let result = actix_rt::System::new().block_on(async move {
        let node = Node::start(NodeConfig::default()).await?;
        let sink: Upid = format!("sink@{addr}").parse()?;
        let (acks_tx, mut acks) = mpsc::unbounded_channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let driver = node.spawn(
            "driver",
            Driver {
                acks: acks_tx,
                sink: sink.clone(),
                sent_at: Instant::now(),
                rtts_ns: Vec::new(),
                done: Some(done_tx),
            },
        )?;
        let me = driver.upid().clone();

        // Warm up the connection.
        node.send(&me, &sink, Data { seq: 0, payload: payload() });
        tokio::time::sleep(Duration::from_millis(100)).await;

        // One-way: ONEWAY_MESSAGES - 1 more so the sink's count lands on a multiple of ACK_EVERY.
        let total = ONEWAY_MESSAGES - 1;
        let started = Instant::now();
        let mut sent = 0u64;
        let mut acked = 0u64;
        while acked < ONEWAY_MESSAGES {
            while sent < total && sent + 1 - acked < WINDOW {
                node.send(&me, &sink, Data { seq: sent, payload: payload() });
                sent += 1;
                if sent % 4096 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            match tokio::time::timeout(Duration::from_secs(30), acks.recv()).await {
                Ok(Some(received)) => acked = received,
                _ => anyhow::bail!("no ack from the sink (acked {acked} of {ONEWAY_MESSAGES})"),
            }
        }
        let oneway_secs = started.elapsed().as_secs_f64();

        node.send(&me, &me, StartRoundTrips {});
        let mut rtts = tokio::time::timeout(Duration::from_secs(60), done).await??;
        rtts.sort_unstable();
        Ok::<_, anyhow::Error>((ONEWAY_MESSAGES as f64 / oneway_secs, rtts))
    });
    let _ = child.kill();
    let _ = child.wait();
    let (oneway, rtts) = result?;
    println!(
        "oneway_msgs_per_s={:.0} rtt_p50_us={:.1} rtt_p99_us={:.1}{}",
        oneway,
        percentile(&rtts, 0.50),
        percentile(&rtts, 0.99),
        if trace_dir.is_some() { " trace_sink=on" } else { " trace_sink=off" }
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut is_child = false;
    let mut trace_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--child" => is_child = true,
            "--trace-dir" => trace_dir = args.next().map(PathBuf::from),
            other => anyhow::bail!("unknown argument {other} (usage: bench [--trace-dir DIR])"),
        }
    }
    if is_child {
        child(trace_dir)
    } else {
        parent(trace_dir)
    }
}
