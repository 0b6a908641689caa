//! Mesos's v1 HTTP APIs as adapters in front of Keel's cores: existing Mesos
//! frameworks, executors and tools run on Keel unmodified.
//!
//! The cores stay protocol-agnostic. An HTTP scheduler subscription is, to the
//! master's core, a framework whose scheduler is a *pseudo-UPID* on the master's
//! own node, `scheduler-http-<stream id>@<master>`: calls on `/api/v1/scheduler`
//! become the usual messages, sent through the kernel from that UPID to the
//! master's mailbox; what the core sends to it goes into the stream's bounded queue
//! as v1 events instead of over TCP; the stream's end is fed as the UPID's exit.
//! The agent does the same for executors (`executor-http-...`) on
//! `/api/v1/executor`. The operator API and Mesos's JSON endpoints read the cores'
//! views.
//!
//! Files: `error.rs` (the refusals and their statuses), `recordio.rs`, `json/`
//! (v1 JSON to and from keel-proto), `request.rs` (method, content type, size and
//! JSON checks every call goes through), `stream.rs` (a RecordIO response fed from
//! a bounded queue), `scheduler.rs` (the master's scheduler API and its streams),
//! `executor.rs` (the agent's executor API), `operator.rs` (the master's operator
//! API), `events.rs` (the operator API's event stream), `agent_operator.rs` (the
//! agent's operator API), `endpoints.rs` (`/version`, `/slaves`,
//! `/master/frameworks`, ... in Mesos's shapes).

pub mod agent_operator;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod executor;
pub mod json;
pub mod operator;
pub mod recordio;
pub mod request;
pub mod scheduler;
pub mod stream;

use keel_kernel::Upid;
use serde::{Deserialize, Serialize};

pub use error::V1Error;

/// Name prefix of the pseudo-UPIDs that stand for HTTP scheduler subscriptions.
pub const SCHEDULER_PREFIX: &str = "scheduler-http-";
/// Name prefix of the pseudo-UPIDs that stand for HTTP executors.
pub const EXECUTOR_PREFIX: &str = "executor-http-";

/// Whether `upid` is one of this node's pseudo-UPIDs with `prefix`.
pub fn is_pseudo(upid: &Upid, me: &Upid, prefix: &str) -> bool {
    upid.node() == me.node() && upid.name().starts_with(prefix)
}

/// An HTTP stream ended: sent by the adapter from the stream's pseudo-UPID to the
/// process it talks to, which feeds its core `Input::Exited(pseudo-UPID)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClosed {}
keel_kernel::message!(StreamClosed, "keel.v1.StreamClosed");
