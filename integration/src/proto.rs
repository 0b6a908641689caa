//! The messages the test node and the tests exchange.

use keel_kernel::{message, Upid};
use serde::{Deserialize, Serialize};

/// Asks the echo process for a [`Pong`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    /// Echoed back.
    pub seq: u64,
    /// Echoed back.
    pub payload: String,
}
message!(Ping, "keel.test.Ping");

/// The echo process's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's sequence number.
    pub seq: u64,
    /// The ping's payload.
    pub payload: String,
}
message!(Pong, "keel.test.Pong");

/// Stops the receiving process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stop {}
message!(Stop, "keel.test.Stop");

/// A hop of a relay chain: the relay forwards it to the next UPID in `route`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hop {
    /// Where the remaining hops go, first next.
    pub route: Vec<Upid>,
}
message!(Hop, "keel.test.Hop");

/// A greeting as the newer node defines it (v2: one more optional field).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GreetV2 {
    /// Who greets.
    pub name: String,
    /// Added in v2; absent when a v1 node sends.
    pub language: Option<String>,
}
message!(GreetV2, "keel.test.Greet");

/// A greeting as the older node defines it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GreetV1 {
    /// Who greets.
    pub name: String,
}
message!(GreetV1, "keel.test.Greet");

/// The newer node's reply, with fields the old node does not know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GreetReplyV2 {
    /// The reply text.
    pub text: String,
    /// What the newer node understood of `language`.
    pub language_seen: Option<String>,
    /// A field only v2 knows.
    pub server_version: u32,
}
message!(GreetReplyV2, "keel.test.GreetReply");

/// The reply as the older node decodes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GreetReplyV1 {
    /// The reply text.
    pub text: String,
}
message!(GreetReplyV1, "keel.test.GreetReply");
