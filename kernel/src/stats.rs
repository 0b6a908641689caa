//! Node counters: messages in and out, drops by reason, bad input by kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{DropReason, WireError};

macro_rules! counters {
    ($($field:ident),* $(,)?) => {
        /// Monotonic counters of one node, shown in `/__processes__`.
        #[derive(Debug, Default)]
        pub struct NodeStats {
            $(
                #[doc = concat!("`", stringify!($field), "`")]
                pub $field: AtomicU64,
            )*
        }

        impl NodeStats {
            /// Every counter by name.
            pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
                let mut out = BTreeMap::new();
                $( out.insert(stringify!($field), self.$field.load(Ordering::Relaxed)); )*
                out
            }
        }
    };
}

counters!(
    messages_sent,
    messages_received,
    dropped_unknown_target,
    dropped_unknown_kind,
    dropped_decode_error,
    dropped_mailbox_full,
    dropped_unreachable,
    dropped_buffer_full,
    dropped_encode_error,
    dropped_too_large,
    dropped_foreign_sender,
    bad_magic,
    bad_version,
    oversized_frames,
    truncated_frames,
    malformed_frames,
    connections_accepted,
    connections_closed_for_garbage,
    peer_connects,
    peer_connect_failures,
    peer_disconnects,
    http_requests,
);

impl NodeStats {
    /// Counts a dropped message.
    pub fn count_drop(&self, reason: &DropReason) {
        let counter = match reason {
            DropReason::UnknownTarget => &self.dropped_unknown_target,
            DropReason::UnknownKind => &self.dropped_unknown_kind,
            DropReason::Decode(_) => &self.dropped_decode_error,
            DropReason::MailboxFull => &self.dropped_mailbox_full,
            DropReason::Unreachable => &self.dropped_unreachable,
            DropReason::BufferFull => &self.dropped_buffer_full,
            DropReason::Encode(_) => &self.dropped_encode_error,
            DropReason::TooLarge => &self.dropped_too_large,
            DropReason::ForeignSender => &self.dropped_foreign_sender,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a wire error.
    pub fn count_wire_error(&self, error: &WireError) {
        let counter = match error {
            WireError::BadMagic(_) => &self.bad_magic,
            WireError::UnsupportedVersion(_) => &self.bad_version,
            WireError::Oversized { .. } => &self.oversized_frames,
            WireError::Truncated(_) | WireError::ClosedMidFrame(_) => &self.truncated_frames,
            WireError::Malformed(_) => &self.malformed_frames,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
