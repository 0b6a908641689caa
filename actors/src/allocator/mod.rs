//! The allocator actor: runs next to the master on its node, takes the master's
//! events as local messages, decides with [`core::AllocatorCore`], and answers with
//! [`messages::Allocated`]. Allocation runs on an interval and soon after events
//! that free resources or add demand (batched: one run per burst of events).

pub use keel_core::allocator as core;
pub use keel_core::allocator::messages;

use std::collections::{BTreeMap, VecDeque};
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
    /// Durations of the latest runs, in milliseconds (bounded).
    run_ms: VecDeque<f64>,
}

/// How many recent run durations the percentiles are computed over.
const RUN_SAMPLES: usize = 1000;

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
            run_ms: VecDeque::with_capacity(RUN_SAMPLES),
        }
    }

    /// Changes the form of an agent's unallocated resources (operator reservations);
    /// false when `from` is not available on the agent.
    pub fn update_available(
        &mut self,
        agent_id: &crate::ids::AgentId,
        from: &crate::resources::Resources,
        to: &crate::resources::Resources,
    ) -> bool {
        self.core.update_available(agent_id, from, to)
    }

    /// The decision core (for explanations and statistics).
    pub fn core(&self) -> &AllocatorCore {
        &self.core
    }

    /// `allocator/*` metrics: runs, run time percentiles, shares per role and framework.
    pub fn metrics_snapshot(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        out.insert("allocator/allocation_runs".to_string(), self.allocation_runs as f64);
        let mut sorted: Vec<f64> = self.run_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let percentile = |p: f64| -> f64 {
            if sorted.is_empty() {
                0.0
            } else {
                sorted[((sorted.len() - 1) as f64 * p).round() as usize]
            }
        };
        out.insert("allocator/allocation_run_ms".to_string(), self.run_ms.back().copied().unwrap_or(0.0));
        out.insert("allocator/allocation_run_ms/p50".to_string(), percentile(0.5));
        out.insert("allocator/allocation_run_ms/p99".to_string(), percentile(0.99));
        out.insert("allocator/allocation_run_ms/count".to_string(), sorted.len() as f64);
        for (role, stats) in self.core.role_shares() {
            out.insert(format!("allocator/roles/{role}/shares/dominant"), stats.dominant_share);
            out.insert(format!("allocator/roles/{role}/shares/weighted"), stats.weighted_share);
            out.insert(format!("allocator/roles/{role}/weight"), stats.weight);
            out.insert(format!("allocator/roles/{role}/allocated/cpus"), stats.allocated.cpus());
            out.insert(format!("allocator/roles/{role}/allocated/mem"), stats.allocated.mem_mb());
        }
        for (framework, roles) in self.core.framework_shares() {
            for (role, share) in roles {
                out.insert(format!("allocator/frameworks/{framework}/roles/{role}/shares/dominant"), share);
            }
        }
        out
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
            .install::<SetWeights>()
            .install::<UpdateAllocation>()
            .install::<SetQuota>()
            .install::<RemoveQuota>()
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
    // A filter lasts at least one allocation interval (Mesos).
    let interval = this.config.interval.as_secs_f64();
    let until = m.refuse_seconds.filter(|s| s.is_finite() && *s > 0.0).map(|s| this.now() + s.max(interval));
    match &m.role {
        Some(role) => this.core.recover_in_role(&m.framework_id, &m.agent_id, role, &m.resources, until),
        None => this.core.recover(&m.framework_id, &m.agent_id, &m.resources, until),
    }
    this.soon(ctx);
});

handler!(Revive, |this, ctx, m| {
    this.core.revive_roles(&m.framework_id, &m.roles);
    this.soon(ctx);
});

handler!(Suppress, |this, ctx, m| {
    let _ = ctx;
    this.core.suppress_roles(&m.framework_id, &m.roles);
});

handler!(UpdateAllocation, |this, ctx, m| {
    let _ = ctx;
    if !this.core.update_allocation(&m.framework_id, &m.agent_id, &m.from, &m.to) {
        tracing::warn!(framework_id = %m.framework_id, agent_id = %m.agent_id, "allocation update refused");
    }
});

handler!(SetWeights, |this, ctx, m| {
    for (role, weight) in m.weights {
        if let Err(e) = this.core.set_weight(&role, weight) {
            tracing::warn!(%role, weight, error = %e, "weight not applied");
        }
    }
    this.soon(ctx);
});

handler!(SetQuota, |this, ctx, m| {
    let quota = self::core::Quota { guarantee: m.guarantee, limit: m.limit };
    if let Err(e) = this.core.set_quota(&m.role, quota) {
        tracing::warn!(role = %m.role, error = %e, "quota not applied");
        return;
    }
    let over = this.core.over_limit();
    if !over.is_empty() {
        let master = this.master.clone();
        ctx.send(&master, OverLimit { allocations: over });
    }
    this.soon(ctx);
});

handler!(RemoveQuota, |this, ctx, m| {
    this.core.remove_quota(&m.role);
    this.soon(ctx);
});

impl Allocator {
    fn run(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let started = Instant::now();
        let mut order = self.core.agent_ids();
        self.rng.shuffle(&mut order);
        let now = self.now();
        let allocations = self.core.allocate(now, &order);
        self.allocation_runs += 1;
        if self.run_ms.len() == RUN_SAMPLES {
            self.run_ms.pop_front();
        }
        self.run_ms.push_back(started.elapsed().as_secs_f64() * 1000.0);
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
