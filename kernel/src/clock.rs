//! Injected time: the kernel asks a [`Clock`] for the time and for sleeps, so a
//! simulated clock can replace the system one.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// A boxed future the clock returns for a sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The source of time for a node: timers, backoff and timeouts go through it.
pub trait Clock: Send + Sync + 'static {
    /// The current monotonic time.
    fn now(&self) -> Instant;
    /// A future that completes after `duration` of this clock's time.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The real clock: `Instant::now` and tokio's timer (which honours tokio's paused time).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}
