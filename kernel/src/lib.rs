//! Keel's kernel: libprocess on actix. UPIDs, typed messages over TCP, handlers
//! installed per kind, link/exited, timers, message tracing with causal parents,
//! and HTTP on the same port. It knows nothing about clusters.
//!
//! ```no_run
//! # use keel_kernel::{Node, NodeConfig};
//! actix_rt::System::new().block_on(async {
//!     let node = Node::start(NodeConfig::default()).await.unwrap();
//!     println!("listening on {}", node.addr());
//! });
//! ```

pub mod clock;
pub mod error;
pub mod http;
mod node;
pub mod process;
pub mod stats;
pub mod trace;

pub mod transport;
pub mod wire;

pub use clock::{Clock, SystemClock};
pub use error::{DropReason, NodeError, UpidError, WireError};
pub use keel_message::{message, upid, Message};
pub use keel_message::{NodeAddr, Upid};
pub use node::{FaultAction, FaultRule, Node, NodeConfig, ProcessInfo, NODE_PROCESS_NAME};
pub use process::{Handle, Handlers, Process, ProcessActor, ProcessContext, ProcessRef, TimerId};
pub use trace::MessageId;
pub use transport::{TcpTransport, Transport};

#[doc(hidden)]
pub use serde as __serde;
