//! The kernel's error types: one enum per concern, every variant documented.

use std::io;

pub use keel_message::UpidError;

/// Errors from decoding bytes received on a connection.
///
/// `is_fatal` tells whether the connection can go on after this error: a frame
/// whose length is known can be skipped, an oversized length prefix cannot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The handshake did not start with Keel's magic bytes.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    /// The peer speaks a protocol version this node does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// A length prefix larger than the configured maximum frame size.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    Oversized {
        /// The length the peer announced.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A frame whose content is shorter than its own fields say.
    #[error("truncated frame: {0}")]
    Truncated(&'static str),
    /// A frame whose fields are not what the format allows (bad UTF-8, bad UPID).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection closed in the middle of a frame.
    #[error("connection closed with {0} bytes of a partial frame")]
    ClosedMidFrame(usize),
}

impl WireError {
    /// Whether the connection must be closed: the stream cannot be resynchronised.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            WireError::BadMagic(_)
                | WireError::UnsupportedVersion(_)
                | WireError::Oversized { .. }
                | WireError::ClosedMidFrame(_)
        )
    }
}

/// Why a message was dropped instead of delivered. Every drop is counted and traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// No actor with that name lives on the target node.
    #[error("unknown target actor")]
    UnknownTarget,
    /// The target actor has no handler installed for this kind.
    #[error("no handler for this kind")]
    UnknownKind,
    /// The body did not decode as the installed message type.
    #[error("body failed to decode: {0}")]
    Decode(String),
    /// The target actor's mailbox is at its limit.
    #[error("mailbox full")]
    MailboxFull,
    /// The peer node cannot be reached (connection refused, broken, or backing off).
    #[error("peer unreachable")]
    Unreachable,
    /// The outgoing buffer to the peer is at its limit.
    #[error("outgoing buffer full")]
    BufferFull,
    /// The message failed to encode (a serde error in the sender's type).
    #[error("body failed to encode: {0}")]
    Encode(String),
    /// The message is larger than the maximum frame size.
    #[error("message exceeds the maximum frame size")]
    TooLarge,
    /// The envelope names a sender on another node than the one that opened the
    /// connection (its handshake address): it could be forged.
    #[error("sender is not on the node that opened the connection")]
    ForeignSender,
}

impl DropReason {
    /// A short stable label for counters and traces.
    pub fn label(&self) -> &'static str {
        match self {
            DropReason::UnknownTarget => "unknown_target",
            DropReason::UnknownKind => "unknown_kind",
            DropReason::Decode(_) => "decode_error",
            DropReason::MailboxFull => "mailbox_full",
            DropReason::Unreachable => "unreachable",
            DropReason::BufferFull => "buffer_full",
            DropReason::Encode(_) => "encode_error",
            DropReason::TooLarge => "too_large",
            DropReason::ForeignSender => "foreign_sender",
        }
    }
}

/// Errors from node operations.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Binding the listener failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// An actor with this name already runs on the node.
    #[error("an actor named {0:?} already exists on this node")]
    NameTaken(String),
    /// The actor name is not valid in a UPID.
    #[error(transparent)]
    InvalidName(#[from] UpidError),
    /// The node was used outside a running actix system.
    #[error("no actix system is running on this thread")]
    NoSystem,
}
