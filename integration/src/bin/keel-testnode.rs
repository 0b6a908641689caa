//! A kernel node for the multi-process tests: `echo` answers pings and greetings,
//! `relay` forwards hops, `stoppable` stops on request. Prints `READY host:port`.
//!
//! Usage: `keel-testnode [--port N] [--trace FILE]`

use std::path::PathBuf;

use keel_integration::proto::{GreetReplyV2, GreetV2, Hop, Ping, Pong, Stop};
use keel_kernel::{Handle, Handlers, Node, NodeConfig, Process, ProcessContext, Upid};

struct Echo;

impl Process for Echo {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<Ping>().install::<GreetV2>().install::<Stop>();
    }
}

impl Handle<Ping> for Echo {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, ping: Ping) {
        ctx.send(&from, Pong { seq: ping.seq, payload: ping.payload });
    }
}

impl Handle<GreetV2> for Echo {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, greet: GreetV2) {
        let reply = GreetReplyV2 {
            text: format!("hello {}", greet.name),
            language_seen: greet.language,
            server_version: 2,
        };
        ctx.send(&from, reply);
    }
}

impl Handle<Stop> for Echo {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, _from: Upid, _stop: Stop) {
        ctx.stop();
    }
}

struct Relay;

impl Process for Relay {
    fn install(handlers: &mut Handlers<Self>) {
        handlers.install::<Hop>();
    }
}

impl Handle<Hop> for Relay {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, _from: Upid, mut hop: Hop) {
        if hop.route.is_empty() {
            return;
        }
        let next = hop.route.remove(0);
        ctx.send(&next, hop);
    }
}

fn main() -> anyhow::Result<()> {
    let mut port = 0u16;
    let mut trace: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().unwrap_or_default().parse()?,
            "--trace" => trace = args.next().map(PathBuf::from),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let _guard = keel_kernel::trace::init(trace.as_deref())?;
    actix_rt::System::new().block_on(async move {
        let config = NodeConfig { bind: ([127, 0, 0, 1], port).into(), ..NodeConfig::default() };
        let node = Node::start(config).await?;
        node.spawn("echo", Echo)?;
        node.spawn("stoppable", Echo)?;
        node.spawn("relay", Relay)?;
        println!("READY {}", node.addr());
        std::future::pending::<()>().await;
        Ok(())
    })
}
