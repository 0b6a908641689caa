//! What a Keel message is and whom it goes to, with no runtime: [`Upid`] and
//! [`NodeAddr`], the [`Message`] trait and its [`message!`] macro, and the rmp-serde
//! body encoding. The kernel re-exports all of it; the protocol types and the pure
//! cores depend on this crate alone, so they cannot reach sockets, actix or tokio.

pub mod message;
pub mod upid;

pub use message::Message;
pub use upid::{NodeAddr, Upid, UpidError};
