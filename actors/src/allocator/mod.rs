//! The allocator actor: a shell around [`AllocatorMachine`] on the master's node.
//! It takes the master's calls as local messages, fires the machine's timers, sends
//! its allocations and answers back, and times each allocation run.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use keel_core::allocator::messages::VisitAllocator;
use keel_kernel::{Handle, Handlers, Message, Process, ProcessContext, Upid};

pub use keel_core::allocator as core;
pub use keel_core::allocator::messages;
pub use keel_core::allocator::{AllocatorConfig, AllocatorEffect, AllocatorInput, AllocatorMachine};

use self::messages::*;
use crate::shell::{CoreTimer, ShellTimers};

/// Name of the allocator process on the master's node.
pub const ALLOCATOR_NAME: &str = "allocator";

/// How many recent run durations the percentiles are computed over.
const RUN_SAMPLES: usize = 1000;

/// The allocator's state, shared with the HTTP endpoints (read under the lock,
/// never through the mailbox).
#[derive(Debug)]
pub struct AllocatorShared {
    /// The machine.
    pub machine: AllocatorMachine,
    /// Durations of the latest runs, in milliseconds (bounded).
    run_ms: VecDeque<f64>,
}

impl AllocatorShared {
    /// `allocator/*` metrics: runs, run time percentiles, shares per role and framework.
    pub fn metrics_snapshot(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        out.insert("allocator/allocation_runs".to_string(), self.machine.allocation_runs as f64);
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
        let core = self.machine.core();
        for (role, stats) in core.role_shares() {
            out.insert(format!("allocator/roles/{role}/shares/dominant"), stats.dominant_share);
            out.insert(format!("allocator/roles/{role}/shares/weighted"), stats.weighted_share);
            out.insert(format!("allocator/roles/{role}/weight"), stats.weight);
            out.insert(format!("allocator/roles/{role}/allocated/cpus"), stats.allocated.cpus());
            out.insert(format!("allocator/roles/{role}/allocated/mem"), stats.allocated.mem_mb());
        }
        for (framework, roles) in core.framework_shares() {
            for (role, share) in roles {
                out.insert(format!("allocator/frameworks/{framework}/roles/{role}/shares/dominant"), share);
            }
        }
        out
    }
}

/// A handle on the allocator's shared state.
pub type SharedAllocator = Arc<Mutex<AllocatorShared>>;

/// Locks shared state; a panic elsewhere cannot leave a core half-updated (each
/// input is applied whole or the process is gone), so poisoning is ignored.
pub fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The allocator process.
pub struct Allocator {
    shared: SharedAllocator,
    master: Upid,
    timers: ShellTimers,
}

impl Allocator {
    /// An allocator answering to `master`.
    pub fn new(master: Upid, config: AllocatorConfig) -> Allocator {
        let shared = AllocatorShared { machine: AllocatorMachine::new(config), run_ms: VecDeque::new() };
        Allocator { shared: Arc::new(Mutex::new(shared)), master, timers: ShellTimers::default() }
    }

    /// The shared state (for HTTP and tests).
    pub fn shared(&self) -> SharedAllocator {
        self.shared.clone()
    }

    fn feed(&mut self, ctx: &mut ProcessContext<'_, Self>, input: AllocatorInput) {
        let started = Instant::now();
        let effects = {
            let mut shared = lock(&self.shared);
            let effects = shared.machine.handle(crate::shell::now_secs(), input);
            if effects.iter().any(|e| matches!(e, AllocatorEffect::Ran)) {
                if shared.run_ms.len() == RUN_SAMPLES {
                    shared.run_ms.pop_front();
                }
                shared.run_ms.push_back(started.elapsed().as_secs_f64() * 1000.0);
            }
            effects
        };
        for effect in effects {
            match effect {
                AllocatorEffect::ToMaster(event) => {
                    let master = self.master.clone();
                    event.visit(SendAllocator { ctx, to: &master });
                }
                AllocatorEffect::SetTimer(timer) => self.timers.set(ctx, timer),
                AllocatorEffect::Ran => {}
            }
        }
    }
}

/// Sends an allocator message from a process.
pub struct SendAllocator<'c, 'a, P: Process> {
    /// The sender's context.
    pub ctx: &'c ProcessContext<'a, P>,
    /// The receiver.
    pub to: &'c Upid,
}

impl<P: Process> VisitAllocator for SendAllocator<'_, '_, P> {
    type Output = ();
    fn visit<M: Message>(self, message: M) {
        self.ctx.send(self.to, message);
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

macro_rules! calls {
    ($($m:ident),* $(,)?) => {
        $(
            impl Handle<$m> for Allocator {
                fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: $m) {
                    if local(ctx, &from) {
                        self.feed(ctx, AllocatorInput::Call(AllocatorCall::from(m)));
                    }
                }
            }
        )*

        fn install_calls(handlers: &mut Handlers<Allocator>) {
            $(handlers.install::<$m>();)*
        }
    };
}

calls!(
    AddFramework,
    RemoveFramework,
    SetFrameworkActive,
    AddAgent,
    RemoveAgent,
    SetAgentActive,
    RecoverResources,
    UpdateAllocation,
    UpdateAvailable,
    SetWeights,
    SetQuota,
    RemoveQuota,
    Revive,
    Suppress,
);

impl Process for Allocator {
    fn install(handlers: &mut Handlers<Self>) {
        install_calls(handlers);
        handlers.install::<CoreTimer>();
    }

    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        self.feed(ctx, AllocatorInput::Start);
    }
}

impl Handle<CoreTimer> for Allocator {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: CoreTimer) {
        if let Some(id) = self.timers.fired(ctx, &from, &m) {
            self.feed(ctx, AllocatorInput::Timer(id));
        }
    }
}
