//! Keel's decisions as pure state machines. Each core takes one input (a message
//! with its sender, a timer, a registry write's result, a container's end) with the
//! current time and returns effects (send, persist, set or cancel a timer, link,
//! launch or destroy a container, checkpoint) for a shell to execute.
//!
//! Architecture invariant: no sockets, no clock, no filesystem, no global
//! randomness. This crate depends on neither actix, tokio nor the kernel's `Node`,
//! and `clippy.toml` bans `Instant::now`, `SystemTime::now`, `tokio::time::sleep`
//! and unseeded `fastrand` here; randomness is seeded state.

pub mod agent;
pub mod allocator;
#[cfg(test)]
mod arbitrary;
pub mod detector;
pub mod executor;
pub mod master;
#[cfg(test)]
mod props;
pub mod scheduler;
pub mod timers;
