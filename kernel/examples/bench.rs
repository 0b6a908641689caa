//! Kernel benchmark: two OS processes on loopback exchanging 100-byte typed messages.
//!
//! `cargo run --release -p keel-kernel --example bench [-- --rounds N]` measures, in
//! one run, three set-ups side by side, `N` rounds each (default 3), interleaved so
//! the machine's noise falls on all of them: the flight recorder off, on (the
//! default), and on with the binary file sink (`keel --trace FILE`). Each round is a
//! fresh pair of processes; each prints `oneway_msgs_per_s=... rtt_p50_us=...
//! rtt_p99_us=...`: one-way throughput of 1,000,000 messages (with a credit window so
//! nothing is dropped), and round-trip latency percentiles of 20,000 sequential
//! request/replies. The last lines give each set-up's medians and their ratios to
//! the recorder-off figure.

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

/// One set-up of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// No flight recorder, no file sink.
    Off,
    /// The flight recorder (the default).
    Recorder,
    /// The flight recorder and the binary file sink.
    Sink,
}

impl Setup {
    const ALL: [Setup; 3] = [Setup::Off, Setup::Recorder, Setup::Sink];

    fn name(self) -> &'static str {
        match self {
            Setup::Off => "recorder_off",
            Setup::Recorder => "recorder_on",
            Setup::Sink => "file_sink",
        }
    }

    fn parse(text: &str) -> anyhow::Result<Setup> {
        Setup::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| anyhow::anyhow!("unknown set-up {text}"))
    }

    fn node_config(self) -> NodeConfig {
        let events = if self == Setup::Off { 0 } else { keel_kernel::trace::DEFAULT_EVENTS };
        NodeConfig { flight_recorder_events: events, ..NodeConfig::default() }
    }
}

fn trace_file(setup: Setup, dir: &std::path::Path, name: &str) -> Option<PathBuf> {
    (setup == Setup::Sink).then(|| dir.join(format!("{name}.trace")))
}

fn child(setup: Setup, dir: PathBuf) -> anyhow::Result<()> {
    let _guard = keel_kernel::trace::init(trace_file(setup, &dir, "child").as_deref())?;
    actix_rt::System::new().block_on(async {
        let node = Node::start(setup.node_config()).await?;
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

/// One round of one set-up: a parent (this process) and a child process.
fn parent(setup: Setup, dir: PathBuf) -> anyhow::Result<()> {
    let _guard = keel_kernel::trace::init(trace_file(setup, &dir, "parent").as_deref())?;
    let args = ["--child", setup.name(), "--dir", &dir.display().to_string()].map(String::from);
    let mut child = Command::new(std::env::current_exe()?).args(&args).stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let addr = loop {
        let line = lines.next().ok_or_else(|| anyhow::anyhow!("child exited early"))??;
        if let Some(addr) = line.strip_prefix("READY ") {
            break addr.to_string();
        }
    };
    let result = actix_rt::System::new().block_on(async move {
        let node = Node::start(setup.node_config()).await?;
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
        "setup={} oneway_msgs_per_s={:.0} rtt_p50_us={:.1} rtt_p99_us={:.1}",
        setup.name(),
        oneway,
        percentile(&rtts, 0.50),
        percentile(&rtts, 0.99),
    );
    Ok(())
}

/// The value of `key=` in a result line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs every set-up `rounds` times, interleaved, and prints each line and the medians.
fn orchestrate(rounds: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("keel-kernel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut results: Vec<(Setup, f64, f64)> = Vec::new();
    for _ in 0..rounds {
        for setup in Setup::ALL {
            let output = Command::new(std::env::current_exe()?)
                .args(["--run", setup.name(), "--dir", &dir.display().to_string()])
                .stderr(Stdio::inherit())
                .output()?;
            let line = String::from_utf8_lossy(&output.stdout).trim().to_string();
            println!("{line}");
            let (Some(oneway), Some(rtt)) = (field(&line, "oneway_msgs_per_s"), field(&line, "rtt_p50_us"))
            else {
                anyhow::bail!("the {} round printed no figures: {line:?}", setup.name());
            };
            results.push((setup, oneway, rtt));
            let _ = std::fs::remove_file(dir.join("parent.trace"));
            let _ = std::fs::remove_file(dir.join("child.trace"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let medians = |setup: Setup| {
        let mut oneway: Vec<f64> = results.iter().filter(|r| r.0 == setup).map(|r| r.1).collect();
        let mut rtt: Vec<f64> = results.iter().filter(|r| r.0 == setup).map(|r| r.2).collect();
        (median(&mut oneway), median(&mut rtt))
    };
    let (off, off_rtt) = medians(Setup::Off);
    for setup in Setup::ALL {
        let (oneway, rtt) = medians(setup);
        println!(
            "median setup={} rounds={rounds} oneway_msgs_per_s={oneway:.0} rtt_p50_us={rtt:.1} oneway_vs_off={:.3} rtt_vs_off={:.3}",
            setup.name(),
            oneway / off,
            rtt / off_rtt,
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut child_setup = None;
    let mut run_setup = None;
    let mut dir = std::env::temp_dir();
    let mut rounds = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--child" => child_setup = Some(Setup::parse(&args.next().unwrap_or_default())?),
            "--run" => run_setup = Some(Setup::parse(&args.next().unwrap_or_default())?),
            "--dir" => dir = args.next().map(PathBuf::from).unwrap_or(dir),
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| anyhow::anyhow!("--rounds takes a number from 1 to 100"))?
            }
            other => anyhow::bail!("unknown argument {other} (usage: bench [--rounds N])"),
        }
    }
    match (child_setup, run_setup) {
        (Some(setup), _) => child(setup, dir),
        (None, Some(setup)) => parent(setup, dir),
        (None, None) => orchestrate(rounds),
    }
}
