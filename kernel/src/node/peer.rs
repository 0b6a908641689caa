//! The outgoing connection to one peer node.
//!
//! States: `Idle -> Connecting -> Connected -> Backoff(until) -> Connecting ...`.
//! Senders append encoded frames to one buffer under a lock; a writer task swaps it
//! out and writes it with one syscall per batch. While connecting, frames wait in the
//! buffer (bounded); while backing off, sends are dropped as unreachable. The delay
//! doubles per failure up to `backoff_max` and resets on a successful connect, or
//! when the peer itself connects to this node (it is evidently up again).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use super::{Node, NodeConfig};
use crate::error::DropReason;
use crate::stats::NodeStats;
use crate::transport::BoxStream;
use crate::upid::NodeAddr;
use crate::wire::{self, Header, WriteError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Idle,
    Connecting,
    Connected,
    Backoff(Instant),
}

struct PeerState {
    status: Status,
    buf: BytesMut,
    queued: u64,
    backoff: Duration,
}

pub(super) struct Peer {
    addr: NodeAddr,
    state: Mutex<PeerState>,
    wake: Notify,
    max_buffer: usize,
    max_frame: usize,
}

impl Peer {
    pub(super) fn new(addr: NodeAddr, config: &NodeConfig) -> Peer {
        Peer {
            addr,
            state: Mutex::new(PeerState {
                status: Status::Idle,
                buf: BytesMut::new(),
                queued: 0,
                backoff: config.backoff_initial,
            }),
            wake: Notify::new(),
            max_buffer: config.max_peer_buffer_bytes,
            max_frame: config.max_frame_bytes,
        }
    }

    fn state(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encodes one frame into the outgoing buffer, connecting first if needed.
    pub(super) fn enqueue<F, E>(
        self: &Arc<Self>,
        node: &Node,
        header: Header<'_>,
        body: F,
    ) -> Result<usize, DropReason>
    where
        F: FnOnce(&mut bytes::buf::Writer<&mut BytesMut>) -> Result<(), E>,
        E: std::fmt::Display,
    {
        let mut state = self.state();
        match state.status {
            Status::Backoff(until) if node.clock().now() < until => return Err(DropReason::Unreachable),
            Status::Idle | Status::Backoff(_) => {
                state.status = Status::Connecting;
                node.spawn_task(run(self.clone(), node.clone()));
            }
            Status::Connecting | Status::Connected => {}
        }
        if state.buf.len() >= self.max_buffer {
            return Err(DropReason::BufferFull);
        }
        let was_empty = state.buf.is_empty();
        let size = wire::write_frame(&mut state.buf, self.max_frame, header, body).map_err(|e| match e {
            WriteError::TooLarge => DropReason::TooLarge,
            WriteError::Encode(e) => DropReason::Encode(e),
        })?;
        state.queued += 1;
        if was_empty && state.status == Status::Connected {
            self.wake.notify_one();
        }
        Ok(size)
    }

    /// The peer just connected to us, so it is up: a backoff from an earlier failure
    /// (it was down, or restarting) ends now, and the next send connects at once.
    pub(super) fn alive(&self, initial: Duration) {
        let mut state = self.state();
        if let Status::Backoff(_) = state.status {
            state.status = Status::Idle;
            state.backoff = initial;
        }
    }

    /// Marks the connection failed: drops what waits, backs off, exits links.
    fn fail(&self, node: &Node, error: &str) {
        let dropped = {
            let mut state = self.state();
            let dropped = state.queued;
            state.buf = BytesMut::new();
            state.queued = 0;
            state.status = Status::Backoff(node.clock().now() + state.backoff);
            state.backoff = (state.backoff * 2).min(node.config().backoff_max);
            dropped
        };
        node.stats().dropped_unreachable.fetch_add(dropped, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(peer.addr = %self.addr, error, dropped, "connection to peer lost");
        node.peer_lost(&self.addr);
    }
}

/// Connects, then writes batches until the connection breaks.
async fn run(peer: Arc<Peer>, node: Node) {
    let connect = node.transport().connect(&peer.addr);
    let stream = match tokio::time::timeout(node.config().connect_timeout, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            NodeStats::bump(&node.stats().peer_connect_failures);
            return peer.fail(&node, &e.to_string());
        }
        Err(_) => {
            NodeStats::bump(&node.stats().peer_connect_failures);
            return peer.fail(&node, "connect timed out");
        }
    };
    let error = match connected(&peer, &node, stream).await {
        Ok(()) => "peer closed the connection".to_string(),
        Err(e) => e.to_string(),
    };
    NodeStats::bump(&node.stats().peer_disconnects);
    peer.fail(&node, &error);
}

async fn connected(peer: &Arc<Peer>, node: &Node, mut stream: BoxStream) -> std::io::Result<()> {
    let mut handshake = BytesMut::new();
    wire::write_handshake(&mut handshake, node.addr());
    stream.write_all(&handshake).await?;
    {
        let mut state = peer.state();
        state.status = Status::Connected;
        state.backoff = node.config().backoff_initial;
    }
    NodeStats::bump(&node.stats().peer_connects);
    tracing::debug!(peer.addr = %peer.addr, "connected to peer");
    let (mut reader, writer) = tokio::io::split(stream);
    // The peer never writes on this connection: a read returns only at EOF or error,
    // which is how a dead peer (even one killed with SIGKILL) is noticed at once.
    let eof = async {
        let mut bytes = [0u8; 64];
        loop {
            if reader.read(&mut bytes).await? == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    tokio::select! {
        result = write_batches(peer, writer) => result,
        result = eof => result,
    }
}

/// Swaps the outgoing buffer out and writes it, one syscall per batch.
async fn write_batches(peer: &Peer, mut writer: impl tokio::io::AsyncWrite + Unpin) -> std::io::Result<()> {
    let mut batch = BytesMut::with_capacity(64 * 1024);
    loop {
        {
            let mut state = peer.state();
            if !state.buf.is_empty() {
                std::mem::swap(&mut state.buf, &mut batch);
                state.queued = 0;
            }
        }
        if batch.is_empty() {
            peer.wake.notified().await;
            continue;
        }
        writer.write_all(&batch).await?;
        batch.clear();
    }
}
