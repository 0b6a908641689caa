//! The allocator actor: runs next to the master on its node, takes the master's
//! events as local messages, decides with [`core::AllocatorCore`], and answers with
//! [`messages::Allocated`]. Allocation runs on an interval and soon after events
//! that free resources or add demand (batched: one run per burst of events).

pub mod core;
pub mod messages;

use std::time::{Duration, Instant};

use keel_kernel::{Handle, Handlers, Process, ProcessContext, Upid};

use self::core::{AllocatorCore, MinAllocatable};
use self::messages::*;

/// Name of the allocator process on the master's node.
pub const ALLOCATOR_NAME: &str = "allocator";

/// How the allocator runs.
#[derive(Debug, Clone)]
pub struct AllocatorConfig {
    /// Time between periodic allocation runs (Mesos default 1 s).
    pub interval: Duration,
    /// Resources too small to offer.
    pub min_allocatable: MinAllocatable,
    /// Seed for the agent visiting order.
    pub seed: u64,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            interval: Duration::from_secs(1),
            min_allocatable: MinAllocatable::default(),
            seed: 0,
        }
    }
}

/// The allocator process.
pub struct Allocator {
    core: AllocatorCore,
    master: Upid,
    config: AllocatorConfig,
    rng: fastrand::Rng,
    started: Instant,
    run_scheduled: bool,
    /// Completed allocation runs (a metric).
    pub allocation_runs: u64,
}

impl Allocator {
    /// An allocator answering to `master`.
    pub fn new(master: Upid, config: AllocatorConfig) -> Allocator {
        Allocator {
            core: AllocatorCore::new(config.min_allocatable.clone()),
            master,
            rng: fastrand::Rng::with_seed(config.seed),
            config,
            started: Instant::now(),
            run_scheduled: false,
            allocation_runs: 0,
        }
    }

    /// Asks for a run soon, once per burst of events.
    fn soon(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        if !self.run_scheduled {
            self.run_scheduled = true;
            ctx.delay(Duration::from_millis(1), AllocateNow {});
        }
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Process for Allocator {
    fn install(handlers: &mut Handlers<Self>) {
        handlers
            .install::<AddFramework>()
            .install::<RemoveFramework>()
            .install::<SetFrameworkActive>()
            .install::<AddAgent>()
            .install::<RemoveAgent>()
            .install::<SetAgentActive>()
            .install::<RecoverResources>()
            .install::<Revive>()
            .install::<Suppress>()
            .install::<AllocateNow>()
            .install::<IntervalTick>();
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        ctx.delay(self.config.interval, IntervalTick {});
    }
}

/// Only the master's node may talk to the allocator.
fn local(ctx: &ProcessContext<'_, Allocator>, from: &Upid) -> bool {
    if from.node() == ctx.upid().node() {
        true
    } else {
        tracing::warn!(%from, "allocator ignores a message from another node");
        false
    }
}

macro_rules! handler {
    ($msg:ty, |$this:ident, $ctx:ident, $m:ident| $body:block) => {
        impl Handle<$msg> for Allocator {
            fn handle(&mut self, $ctx: &mut ProcessContext<'_, Self>, from: Upid, $m: $msg) {
                if !local($ctx, &from) {
                    return;
                }
                let $this = self;
                $body
            }
        }
    };
}

handler!(AddFramework, |this, ctx, m| {
    this.core.add_framework(m.framework_id, m.roles, &m.used, m.active);
    this.soon(ctx);
});

handler!(RemoveFramework, |this, ctx, m| {
    let _ = ctx;
    this.core.remove_framework(&m.framework_id);
});

handler!(SetFrameworkActive, |this, ctx, m| {
    this.core.set_framework_active(&m.framework_id, m.active);
    if m.active {
        this.soon(ctx);
    }
});

handler!(AddAgent, |this, ctx, m| {
    this.core.add_agent(m.agent_id, m.total, &m.used);
    this.soon(ctx);
});

handler!(RemoveAgent, |this, ctx, m| {
    let _ = ctx;
    this.core.remove_agent(&m.agent_id);
});

handler!(SetAgentActive, |this, ctx, m| {
    this.core.set_agent_active(&m.agent_id, m.active);
    if m.active {
        this.soon(ctx);
    }
});

handler!(RecoverResources, |this, ctx, m| {
    let until = m.refuse_seconds.filter(|s| s.is_finite() && *s > 0.0).map(|s| this.now() + s);
    this.core.recover(&m.framework_id, &m.agent_id, &m.resources, until);
    this.soon(ctx);
});

handler!(Revive, |this, ctx, m| {
    this.core.revive(&m.framework_id);
    this.soon(ctx);
});

handler!(Suppress, |this, ctx, m| {
    let _ = ctx;
    this.core.suppress(&m.framework_id);
});

impl Allocator {
    fn run(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let mut order = self.core.agent_ids();
        self.rng.shuffle(&mut order);
        let now = self.now();
        let allocations = self.core.allocate(now, &order);
        self.allocation_runs += 1;
        if !allocations.is_empty() {
            let master = self.master.clone();
            ctx.send(&master, Allocated { allocations });
        }
    }
}

impl Handle<AllocateNow> for Allocator {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: AllocateNow) {
        if !local(ctx, &from) {
            return;
        }
        self.run_scheduled = false;
        self.run(ctx);
    }
}

impl Handle<IntervalTick> for Allocator {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: IntervalTick) {
        if from != *ctx.upid() {
            return;
        }
        ctx.delay(self.config.interval, IntervalTick {});
        self.run(ctx);
    }
}

/// The periodic allocation tick (the allocator's own timer).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct IntervalTick {}
keel_kernel::message!(IntervalTick, "keel.allocator.IntervalTick");
