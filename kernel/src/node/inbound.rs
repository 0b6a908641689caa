//! Inbound connections: sniff the first bytes (Keel handshake or HTTP), then read
//! frames and route them, counting and dropping bad input without ever panicking.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use super::Node;
use crate::error::{DropReason, WireError};
use crate::process::Body;
use crate::stats::NodeStats;
use crate::trace::MessageId;
use crate::transport::{BoxStream, Listener, Rewind};
use crate::upid::{NodeAddr, Upid};
use crate::wire::{self, Envelope, FrameDecoder};

const READ_CHUNK: usize = 64 * 1024;

pub(super) async fn accept_loop(node: Node, mut listener: Box<dyn Listener>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                NodeStats::bump(&node.stats().connections_accepted);
                tokio::spawn(handle_connection(node.clone(), stream, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn looks_like_http(prefix: &[u8]) -> bool {
    const METHODS: [&[u8; 4]; 9] =
        [b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC"];
    METHODS.iter().any(|m| prefix == &m[..])
}

async fn handle_connection(node: Node, mut stream: BoxStream, peer: SocketAddr) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let sniff = async {
        while buf.len() < 4 {
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(false);
            }
        }
        Ok::<bool, std::io::Error>(true)
    };
    match tokio::time::timeout(node.config().handshake_timeout, sniff).await {
        Ok(Ok(true)) => {}
        _ => return,
    }
    if buf[..4] == wire::MAGIC {
        kernel_connection(node, stream, buf, peer).await;
    } else if looks_like_http(&buf[..4]) {
        crate::http::serve(node, Rewind::new(buf.freeze(), stream), peer).await;
    } else {
        let error = WireError::BadMagic([buf[0], buf[1], buf[2], buf[3]]);
        node.stats().count_wire_error(&error);
        NodeStats::bump(&node.stats().connections_closed_for_garbage);
        tracing::warn!(peer.addr = %peer, %error, "closing connection: not Keel and not HTTP");
    }
}

/// One inbound Keel connection's bookkeeping.
struct Inbound {
    node: Node,
    socket: SocketAddr,
    sender: Option<NodeAddr>,
    /// Bit per error label already logged on this connection (logged once each).
    logged: u32,
    strikes: u32,
    /// The last sender UPID parsed, to skip re-parsing the same `from`.
    last_from: Option<(wire::Text, Upid)>,
}

impl Inbound {
    /// Logs an error the first time it happens on this connection.
    fn log_once(&mut self, label: &'static str, bit: u32, detail: &dyn std::fmt::Display) {
        if self.logged & (1 << bit) == 0 {
            self.logged |= 1 << bit;
            tracing::warn!(peer.addr = %self.socket, peer.node = ?self.sender, error = label, %detail, "dropping bad input from peer (logged once per connection)");
        }
    }

    fn wire_error(&mut self, error: &WireError) {
        self.node.stats().count_wire_error(error);
        let bit = match error {
            WireError::BadMagic(_) => 0,
            WireError::UnsupportedVersion(_) => 1,
            WireError::Oversized { .. } => 2,
            WireError::Truncated(_) => 3,
            WireError::Malformed(_) => 4,
            WireError::ClosedMidFrame(_) => 5,
        };
        self.log_once("bad frame", bit, error);
    }

    fn drop_reason(&mut self, reason: &DropReason) {
        let bit = match reason {
            DropReason::UnknownTarget => 10,
            DropReason::UnknownKind => 11,
            DropReason::Decode(_) => 12,
            DropReason::MailboxFull => 13,
            DropReason::ForeignSender => 15,
            _ => 14,
        };
        self.log_once(reason.label(), bit, reason);
    }

    fn sender_upid(&mut self, text: &wire::Text) -> Result<Upid, WireError> {
        if let Some((last, upid)) = &self.last_from {
            if last == text {
                return Ok(upid.clone());
            }
        }
        let upid: Upid =
            text.as_str().parse().map_err(|e: crate::UpidError| WireError::Malformed(e.to_string()))?;
        self.last_from = Some((text.clone(), upid.clone()));
        Ok(upid)
    }

    fn route(&mut self, envelope: Envelope) -> Result<(), WireError> {
        let from = self.sender_upid(&envelope.from)?;
        // A message's sender lives on the node that opened this connection; any
        // other `from` is dropped and counted (authentication proper comes with TLS).
        if self.sender.as_ref().is_some_and(|sender| from.node() != sender) {
            let reason = DropReason::ForeignSender;
            self.node.stats().count_drop(&reason);
            self.drop_reason(&reason);
            return Ok(());
        }
        let to = ToUpid { name: envelope.to.as_str(), node: self.node.addr() };
        if self.node.faults().is_some() && !self.inject_on_receive(&from, &envelope) {
            return Ok(());
        }
        let result = self.node.deliver(
            from,
            envelope.to.as_str(),
            envelope.kind.as_str(),
            MessageId(envelope.id),
            MessageId(envelope.parent),
            Body::Encoded(&envelope.body),
            envelope.body.len(),
            &to,
        );
        if let Err(reason) = result {
            self.drop_reason(&reason);
        }
        Ok(())
    }
}

impl Inbound {
    /// Applies an injected fault to a message from another node; true if it must
    /// still be delivered normally (once).
    fn inject_on_receive(&self, from: &Upid, envelope: &Envelope) -> bool {
        let (name, kind) = (envelope.to.as_str(), envelope.kind.as_str());
        let to = format!("{name}@{}", self.node.addr());
        let verdict = self.node.judge(kind, from.as_str(), &to);
        if verdict == super::faults::Verdict::Pass {
            return true;
        }
        let ids = (MessageId(envelope.id), MessageId(envelope.parent));
        self.node.record_fault(verdict, (from.as_str(), &to, kind), ids, &[]);
        match verdict {
            super::faults::Verdict::Pass => true,
            super::faults::Verdict::Drop => false,
            super::faults::Verdict::Duplicate => {
                deliver_copy(&self.node, from.clone(), name, kind, ids, &envelope.body);
                true
            }
            super::faults::Verdict::Delay(delay) => {
                let (node, from, name, kind) =
                    (self.node.clone(), from.clone(), name.to_string(), kind.to_string());
                let body = envelope.body.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    deliver_copy(&node, from, &name, &kind, ids, &body);
                });
                false
            }
        }
    }
}

/// Delivers a copy of a message from another node (delayed or duplicated).
fn deliver_copy(node: &Node, from: Upid, name: &str, kind: &str, ids: (MessageId, MessageId), body: &[u8]) {
    let target = ToUpid { name, node: node.addr() };
    let _ = node.deliver(from, name, kind, ids.0, ids.1, Body::Encoded(body), body.len(), &target);
}

/// Displays `name@node` without allocating unless traced.
struct ToUpid<'a> {
    name: &'a str,
    node: &'a NodeAddr,
}

impl std::fmt::Display for ToUpid<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.node)
    }
}

async fn kernel_connection(node: Node, mut stream: BoxStream, mut buf: BytesMut, socket: SocketAddr) {
    let mut conn =
        Inbound { node: node.clone(), socket, sender: None, logged: 0, strikes: 0, last_from: None };
    let handshake = async {
        loop {
            match wire::read_handshake(&mut buf) {
                Ok(Some(sender)) => return Ok(sender),
                Ok(None) => {}
                Err(e) => return Err(Some(e)),
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(None),
                Ok(_) => {}
            }
        }
    };
    let sender = match tokio::time::timeout(node.config().handshake_timeout, handshake).await {
        Ok(Ok(sender)) => sender,
        Ok(Err(Some(error))) => {
            conn.wire_error(&error);
            NodeStats::bump(&node.stats().connections_closed_for_garbage);
            return;
        }
        Ok(Err(None)) | Err(_) => return,
    };
    conn.sender = Some(sender.clone());
    node.peer_alive(&sender);
    let decoder = FrameDecoder::new(node.config().max_frame_bytes);
    let limit = node.config().garbage_limit;
    let busy_poll = node.config().busy_poll;
    let mut last_data = Instant::now();
    loop {
        loop {
            match decoder.next_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(error) = wire::decode_envelope(frame).and_then(|env| conn.route(env)) {
                        conn.wire_error(&error);
                        conn.strikes += 1;
                        if conn.strikes >= limit {
                            NodeStats::bump(&node.stats().connections_closed_for_garbage);
                            tracing::warn!(peer.addr = %socket, strikes = conn.strikes, "closing connection after repeated garbage");
                            node.inbound_closed(&sender);
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    conn.wire_error(&error);
                    NodeStats::bump(&node.stats().connections_closed_for_garbage);
                    node.inbound_closed(&sender);
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = if last_data.elapsed() < busy_poll {
            // Busy-poll: let every other task run, then look again, without parking
            // the thread. Waking a parked thread costs tens of microseconds, more than
            // a whole round trip when spinning; after `busy_poll` of silence we park.
            tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => read,
                () = tokio::task::yield_now() => continue,
            }
        } else {
            stream.read_buf(&mut buf).await
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    conn.wire_error(&WireError::ClosedMidFrame(buf.len()));
                }
                break;
            }
            Ok(_) => last_data = Instant::now(),
            Err(_) => break,
        }
    }
    node.inbound_closed(&sender);
}
