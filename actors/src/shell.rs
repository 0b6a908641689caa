//! What every shell around a pure core shares: sending a [`Msg`] as its typed
//! message, the core's timers on the kernel's, the wall clock the cores are given.

use std::collections::HashMap;

use keel_core::detector::DetectedMaster;
use keel_core::timers::{SetTimer, TimerId};
use keel_kernel::{Handle, Message, Process, ProcessContext, Upid};
use keel_proto::messages::{Msg, Visit};
use serde::{Deserialize, Serialize};

/// Wall-clock seconds since the Unix epoch: the time shells give their cores, and
/// status timestamps carry.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A core's timer firing, as a message a process sends itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoreTimer {
    /// The core's timer id.
    pub id: u64,
}
keel_kernel::message!(CoreTimer, "keel.core.Timer");

/// The kernel timers behind a core's timer ids.
#[derive(Debug, Default)]
pub struct ShellTimers {
    live: HashMap<TimerId, keel_kernel::TimerId>,
}

impl ShellTimers {
    /// Arms a core timer.
    pub fn set<P: Process + Handle<CoreTimer>>(&mut self, ctx: &mut ProcessContext<'_, P>, timer: SetTimer) {
        let kernel = ctx.delay(timer.after, CoreTimer { id: timer.id.0 });
        self.live.insert(timer.id, kernel);
    }

    /// Cancels a core timer.
    pub fn cancel<P: Process>(&mut self, ctx: &mut ProcessContext<'_, P>, id: TimerId) {
        if let Some(kernel) = self.live.remove(&id) {
            ctx.cancel(kernel);
        }
    }

    /// A timer fired from `from`: its core id, if it is this process's own live one.
    pub fn fired<P: Process>(
        &mut self,
        ctx: &ProcessContext<'_, P>,
        from: &Upid,
        m: &CoreTimer,
    ) -> Option<TimerId> {
        if from != ctx.upid() {
            return None;
        }
        let id = TimerId(m.id);
        self.live.remove(&id).map(|_| id)
    }
}

/// Sends a [`Msg`] from a process.
pub struct SendVia<'c, 'a, P: Process> {
    /// The sending process's context.
    pub ctx: &'c ProcessContext<'a, P>,
    /// The receiver.
    pub to: &'c Upid,
}

impl<P: Process> Visit for SendVia<'_, '_, P> {
    type Output = ();
    fn visit<M: Message + Clone + std::fmt::Debug>(self, message: M) {
        self.ctx.send(self.to, message);
    }
}

/// Sends `message` from the process of `ctx` to `to`.
pub fn send<P: Process>(ctx: &ProcessContext<'_, P>, to: &Upid, message: Msg) {
    message.visit(SendVia { ctx, to });
}

/// Installs a handler for each message type that feeds it to the core as
/// `Msg::from(m)` through `$feed(self, ctx, from, msg)`, and an
/// `install_messages` function that registers them.
#[macro_export]
macro_rules! feed_messages {
    ($process:ty, $feed:ident, [$($m:ty),* $(,)?]) => {
        $(
            impl keel_kernel::Handle<$m> for $process {
                fn handle(&mut self, ctx: &mut keel_kernel::ProcessContext<'_, Self>, from: keel_kernel::Upid, m: $m) {
                    self.$feed(ctx, from, keel_proto::messages::Msg::from(m));
                }
            }
        )*

        impl $process {
            fn install_messages(handlers: &mut keel_kernel::Handlers<Self>) {
                $(handlers.install::<$m>();)*
            }
        }
    };
}

/// The leading master as a detector sees it; every change is fed to the core.
pub type LeaderWatch = tokio::sync::watch::Receiver<Option<DetectedMaster>>;

/// Calls `on_change` on the process with every new value of `leader`, for as long
/// as the process and the detector live.
pub fn follow_leader<P: Process>(
    ctx: &mut ProcessContext<'_, P>,
    mut leader: LeaderWatch,
    on_change: fn(&mut P, &mut ProcessContext<'_, P>, Option<DetectedMaster>),
) {
    let next = async move {
        let changed = leader.changed().await.is_ok();
        let value = leader.borrow_and_update().clone();
        (leader, changed, value)
    };
    ctx.spawn(next, move |process: &mut P, ctx, (leader, changed, value)| {
        if changed {
            on_change(process, ctx, value);
            follow_leader(ctx, leader, on_change);
        }
    });
}
