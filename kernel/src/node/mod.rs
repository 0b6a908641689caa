//! The node: one TCP port for actor traffic and HTTP, one outgoing connection per
//! peer node, routing of envelopes to local processes by name, links and counters.
//!
//! Same-node sends skip serialisation but take the same `deliver` path as remote
//! ones, so they are routed, counted and traced alike.

mod faults;
mod inbound;

pub use faults::{Action as FaultAction, RuleSpec as FaultRule};
mod links;
mod peer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::error::{DropReason, NodeError};
use crate::message::{self, Message};
use crate::process::{Body, Handlers, Mailbox, Process, ProcessActor, ProcessRef, ProcessStats};
use crate::stats::NodeStats;
use crate::trace::binary::{RawEvent, SubjectBuf, SubjectList};
use crate::trace::{self, EventKind, MessageId, MsgFields, Recorder};
use crate::transport::{TcpTransport, Transport};
use crate::upid::{NodeAddr, Upid};
use crate::wire;

use self::links::Links;
use self::peer::Peer;

/// The reserved name of the node's own control endpoint (links).
pub const NODE_PROCESS_NAME: &str = "__node__";

/// How a node binds, limits and retries.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The host other nodes reach this one at; defaults to the bound IP (127.0.0.1
    /// when bound to an unspecified address).
    pub advertise_host: Option<String>,
    /// The port other nodes reach this one at (behind a proxy or NAT); defaults to
    /// the bound port.
    pub advertise_port: Option<u16>,
    /// Largest frame accepted or sent.
    pub max_frame_bytes: usize,
    /// Largest amount of encoded messages waiting for one peer; past it, sends drop.
    pub max_peer_buffer_bytes: usize,
    /// Largest number of messages waiting in one process's mailbox.
    pub max_mailbox_depth: u64,
    /// First reconnect delay after a connection fails.
    pub backoff_initial: Duration,
    /// Cap of the exponential reconnect delay.
    pub backoff_max: Duration,
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// How long a new connection may take to say what it is.
    pub handshake_timeout: Duration,
    /// Bad frames after which an inbound connection is closed.
    pub garbage_limit: u32,
    /// How long an inbound connection keeps polling without parking after data
    /// arrived: trades a bounded amount of CPU for round trips several times faster
    /// than a wake-up from the kernel allows. Zero turns it off.
    pub busy_poll: Duration,
    /// Seed for the node's randomness (message id base); random when `None`.
    pub seed: Option<u64>,
    /// How many message events the flight recorder keeps (0: none).
    pub flight_recorder_events: usize,
    /// Accept fault-injection rules on `/faults` (tests only; see `faults.rs`).
    pub fault_injection: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_host: None,
            advertise_port: None,
            max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
            max_peer_buffer_bytes: 64 * 1024 * 1024,
            max_mailbox_depth: 1_000_000,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            garbage_limit: 8,
            busy_poll: Duration::from_micros(200),
            seed: None,
            flight_recorder_events: trace::DEFAULT_EVENTS,
            fault_injection: false,
        }
    }
}

/// A link request: "tell me when your process `target` exits".
#[derive(Debug, Serialize, Deserialize)]
struct LinkRequest {
    target: String,
}
crate::message!(LinkRequest, "keel.kernel.Link");

/// A process on the sending node exited (or was never there).
#[derive(Debug, Serialize, Deserialize)]
struct ExitedNotice {
    target: String,
}
crate::message!(ExitedNotice, "keel.kernel.Exited");

/// A handle to the running node; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Node(Arc<NodeInner>);

struct NodeInner {
    config: NodeConfig,
    addr: NodeAddr,
    local_addr: SocketAddr,
    self_upid: Upid,
    processes: RwLock<HashMap<Arc<str>, Arc<dyn Mailbox>>>,
    peers: Mutex<HashMap<NodeAddr, Arc<Peer>>>,
    links: Mutex<Links>,
    stats: NodeStats,
    clock: Arc<dyn Clock>,
    transport: Arc<dyn Transport>,
    runtime: tokio::runtime::Handle,
    next_id: AtomicU64,
    http: RwLock<axum::Router>,
    /// `host:port`, for trace records.
    addr_text: String,
    recorder: Arc<Recorder>,
    faults: Option<faults::Faults>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.0.addr).finish()
    }
}

impl Node {
    /// Starts a node on TCP with the system clock. Must run inside an actix system.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        Node::start_with(config, Arc::new(SystemClock), Arc::new(TcpTransport)).await
    }

    /// Starts a node with the given clock and transport.
    pub async fn start_with(
        config: NodeConfig,
        clock: Arc<dyn Clock>,
        transport: Arc<dyn Transport>,
    ) -> Result<Node, NodeError> {
        if actix_rt::Arbiter::try_current().is_none() {
            return Err(NodeError::NoSystem);
        }
        let bind_error = |source| NodeError::Bind { addr: config.bind.to_string(), source };
        let listener = transport.bind(config.bind).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let host = match &config.advertise_host {
            Some(host) => host.clone(),
            None if local_addr.ip().is_unspecified() => "127.0.0.1".to_string(),
            None => match local_addr {
                SocketAddr::V4(v4) => v4.ip().to_string(),
                SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
            },
        };
        let addr = NodeAddr::new(&host, config.advertise_port.unwrap_or(local_addr.port()))?;
        let self_upid = Upid::new(NODE_PROCESS_NAME, addr.clone())?;
        let mut rng = match config.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        // Ids are a random 64-bit base plus a counter; the top bit is kept clear so
        // the counter cannot wrap to 0 ("no parent") in a node's lifetime.
        let id_base = (rng.u64(..) >> 1) | 1;
        let addr_text = addr.to_string();
        let recorder = Arc::new(Recorder::new(addr_text.clone(), config.flight_recorder_events));
        trace::attach_file_sink(&recorder);
        trace::register_recorder(&recorder);
        let faults = config.fault_injection.then(faults::Faults::default);
        let node = Node(Arc::new(NodeInner {
            config,
            addr,
            local_addr,
            self_upid,
            processes: RwLock::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            links: Mutex::new(Links::default()),
            stats: NodeStats::default(),
            clock,
            transport,
            runtime: tokio::runtime::Handle::current(),
            next_id: AtomicU64::new(id_base),
            http: RwLock::new(axum::Router::new()),
            addr_text,
            recorder,
            faults,
        }));
        node.add_routes(crate::http::node_routes(&node));
        if node.0.faults.is_some() {
            tracing::warn!(node = %node.addr(), "fault injection is on (POST /faults): for tests only");
            node.add_routes(faults::routes(node.clone()));
        }
        tokio::spawn(inbound::accept_loop(node.clone(), listener));
        tracing::info!(node = %node.addr(), "node started");
        Ok(node)
    }

    /// This node's address as other nodes reach it.
    pub fn addr(&self) -> &NodeAddr {
        &self.0.addr
    }

    /// The socket address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.0.config
    }

    /// The node's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.0.clock
    }

    /// The node's counters.
    pub fn stats(&self) -> &NodeStats {
        &self.0.stats
    }

    /// The node's flight recorder (its last message events).
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.0.recorder
    }

    /// The fault-injection rules, when on.
    pub(crate) fn faults(&self) -> Option<&faults::Faults> {
        self.0.faults.as_ref()
    }

    /// What an injected fault does to a message (`Pass` when injection is off).
    pub(crate) fn judge(&self, kind: &str, from: &str, to: &str) -> faults::Verdict {
        match &self.0.faults {
            Some(faults) => faults.judge(kind, from, to),
            None => faults::Verdict::Pass,
        }
    }

    /// Records an injected fault.
    pub(crate) fn record_fault(
        &self,
        verdict: faults::Verdict,
        (from, to, kind): (&str, &str, &str),
        (id, parent): (MessageId, MessageId),
        subjects: &[(&str, &str)],
    ) {
        let reason = verdict.reason();
        self.record(EventKind::Fault, from, to, kind, 0, id, parent, Some(&reason), subjects);
    }

    /// Sends an already encoded message (a delayed or duplicated copy).
    fn send_encoded(
        &self,
        from: Upid,
        to: Upid,
        kind: &'static str,
        (id, parent): (MessageId, MessageId),
        body: Vec<u8>,
    ) {
        if to.node() == &self.0.addr {
            let _ = self.deliver(
                from.clone(),
                to.name(),
                kind,
                id,
                parent,
                Body::Encoded(&body),
                body.len(),
                &to,
            );
            return;
        }
        let peer = self.peer(to.node());
        let from_text = from.to_string();
        let header = wire::Header { id: id.0, parent: parent.0, from: &from_text, to: to.name(), kind };
        let overhead = wire::frame_overhead(&header);
        let sent = peer.enqueue(self, header, |w| std::io::Write::write_all(w, &body));
        match sent {
            Ok(frame) => {
                NodeStats::bump(&self.0.stats.messages_sent);
                let size = frame.saturating_sub(overhead);
                self.record(EventKind::Send, &from_text, to.as_str(), kind, size, id, parent, None, &[]);
            }
            Err(reason) => {
                self.0.stats.count_drop(&reason);
                let label = reason.label();
                self.record(EventKind::Drop, &from_text, to.as_str(), kind, 0, id, parent, Some(label), &[]);
            }
        }
    }

    /// Applies an injected fault to a message this node sends; true if the caller
    /// must still send it normally (once).
    fn inject_on_send<M: Message>(
        &self,
        from: &Upid,
        to: &Upid,
        message: &M,
        (id, parent): (MessageId, MessageId),
        subjects: &[(&str, &str)],
    ) -> bool {
        let verdict = self.judge(M::KIND, from.as_str(), to.as_str());
        if verdict == faults::Verdict::Pass {
            return true;
        }
        self.record_fault(verdict, (from.as_str(), to.as_str(), M::KIND), (id, parent), subjects);
        let copy = match message::encode(message) {
            Ok(bytes) => bytes,
            Err(_) => return verdict != faults::Verdict::Drop,
        };
        match verdict {
            faults::Verdict::Pass => true,
            faults::Verdict::Drop => false,
            faults::Verdict::Delay(delay) => {
                let (node, from, to) = (self.clone(), from.clone(), to.clone());
                self.spawn_task(async move {
                    tokio::time::sleep(delay).await;
                    node.send_encoded(from, to, M::KIND, (id, parent), copy);
                });
                false
            }
            faults::Verdict::Duplicate => {
                self.send_encoded(from.clone(), to.clone(), M::KIND, (id, parent), copy);
                true
            }
        }
    }

    /// Records one message event in the flight recorder (and the file sink, and
    /// the live tap, when on).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        event: EventKind,
        from: &str,
        to: &str,
        kind: &str,
        size: usize,
        id: MessageId,
        parent: MessageId,
        reason: Option<&str>,
        subjects: &[(&str, &str)],
    ) {
        let raw = RawEvent {
            time_us: trace::now_micros(),
            event,
            from,
            to,
            kind,
            size: size as u64,
            id,
            parent,
            reason,
        };
        self.0.recorder.record(&raw, subjects);
    }

    /// The UPID `name@this-node`.
    pub fn upid(&self, name: &str) -> Result<Upid, NodeError> {
        Ok(Upid::new(name, self.0.addr.clone())?)
    }

    /// Spawns a process named `name` on this node. Must be called on the node's
    /// actix system thread.
    pub fn spawn<P: Process>(&self, name: &str, process: P) -> Result<ProcessRef<P>, NodeError> {
        if actix_rt::Arbiter::try_current().is_none() {
            return Err(NodeError::NoSystem);
        }
        let upid = self.upid(name)?;
        if name == NODE_PROCESS_NAME {
            return Err(NodeError::NameTaken(name.to_string()));
        }
        let mut processes = self.0.processes.write().unwrap_or_else(|p| p.into_inner());
        if processes.contains_key(name) {
            return Err(NodeError::NameTaken(name.to_string()));
        }
        let handlers = Arc::new(Handlers::<P>::collect());
        let stats = Arc::new(ProcessStats::default());
        let actor = ProcessActor::new(process, upid.clone(), self.clone(), stats.clone());
        let addr = actix::Actor::start(actor);
        let process_ref = ProcessRef::new(upid, addr, handlers, stats, self.0.config.max_mailbox_depth);
        processes.insert(name.into(), Arc::new(process_ref.clone()));
        tracing::debug!(process = name, "process spawned");
        Ok(process_ref)
    }

    /// The typed handle of a local process, if it runs and is a `P`.
    pub fn lookup<P: Process>(&self, name: &str) -> Option<ProcessRef<P>> {
        let processes = self.0.processes.read().unwrap_or_else(|p| p.into_inner());
        processes.get(name)?.as_any().downcast_ref::<ProcessRef<P>>().cloned()
    }

    /// Sends `message` from `from` to `to`. Delivery is best effort: a drop is
    /// counted and traced, never an error for the caller to handle.
    pub fn send<M: Message>(&self, from: &Upid, to: &Upid, message: M) {
        let _ = self.try_send(from, to, message);
    }

    /// Sends and says whether the message left (remote) or was delivered (local).
    pub fn try_send<M: Message>(&self, from: &Upid, to: &Upid, message: M) -> Result<(), DropReason> {
        let id = MessageId(self.0.next_id.fetch_add(1, Ordering::Relaxed));
        let parent = trace::current_message();
        let mut subjects = SubjectList::default();
        message.subjects(&mut |key, value| subjects.push(key, value));
        if self.0.faults.is_some()
            && !self.inject_on_send(from, to, &message, (id, parent), subjects.as_slice())
        {
            return Ok(());
        }
        if to.node() == &self.0.addr {
            let fields = MsgFields { from, to, kind: M::KIND, size: 0, id, parent };
            NodeStats::bump(&self.0.stats.messages_sent);
            trace::sent(fields);
            let (from_text, to_text) = (from.as_str(), to.as_str());
            self.record(
                EventKind::Send,
                from_text,
                to_text,
                M::KIND,
                0,
                id,
                parent,
                None,
                subjects.as_slice(),
            );
            return self.deliver(
                from.clone(),
                to.name(),
                M::KIND,
                id,
                parent,
                Body::Local(Box::new(message)),
                0,
                to,
            );
        }
        let peer = self.peer(to.node());
        let from_text = from.to_string();
        let header =
            wire::Header { id: id.0, parent: parent.0, from: &from_text, to: to.name(), kind: M::KIND };
        let overhead = wire::frame_overhead(&header);
        match peer.enqueue(self, header, |w| message::encode_into(&message, w)) {
            Ok(frame) => {
                // The body's size, as the receiver sees it.
                let size = frame.saturating_sub(overhead);
                NodeStats::bump(&self.0.stats.messages_sent);
                trace::sent(MsgFields { from, to, kind: M::KIND, size, id, parent });
                let subjects = subjects.as_slice();
                self.record(
                    EventKind::Send,
                    &from_text,
                    to.as_str(),
                    M::KIND,
                    size,
                    id,
                    parent,
                    None,
                    subjects,
                );
                Ok(())
            }
            Err(reason) => {
                self.0.stats.count_drop(&reason);
                trace::dropped(MsgFields { from, to, kind: M::KIND, size: 0, id, parent }, reason.label());
                let (to_text, label) = (to.as_str(), reason.label());
                let subjects = subjects.as_slice();
                self.record(
                    EventKind::Drop,
                    &from_text,
                    to_text,
                    M::KIND,
                    0,
                    id,
                    parent,
                    Some(label),
                    subjects,
                );
                Err(reason)
            }
        }
    }

    /// Routes one message to a local process (or the node's control endpoint).
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        from: Upid,
        to_name: &str,
        kind: &str,
        id: MessageId,
        parent: MessageId,
        body: Body<'_>,
        size: usize,
        to: &dyn std::fmt::Display,
    ) -> Result<(), DropReason> {
        let mailbox = {
            let processes = self.0.processes.read().unwrap_or_else(|p| p.into_inner());
            processes.get(to_name).cloned()
        };
        let mut subjects = SubjectBuf::default();
        let result = match mailbox {
            Some(mailbox) => mailbox.deliver(from.clone(), kind, id, body, &mut subjects),
            None if to_name == NODE_PROCESS_NAME => self.control(&from, kind, body),
            None => Err(DropReason::UnknownTarget),
        };
        let fields = MsgFields { from: &from, to, kind, size, id, parent };
        let mut to_buf = [0u8; 320];
        let to_text = upid_text(&mut to_buf, to_name, &self.0.addr_text);
        let (pairs, count) = subjects.pairs();
        match &result {
            Ok(()) => {
                NodeStats::bump(&self.0.stats.messages_received);
                trace::received(fields);
                let subjects = &pairs[..count];
                self.record(EventKind::Recv, from.as_str(), to_text, kind, size, id, parent, None, subjects);
            }
            Err(reason) => {
                self.0.stats.count_drop(reason);
                trace::dropped(fields, reason.label());
                let (label, subjects) = (reason.label(), &pairs[..count]);
                self.record(
                    EventKind::Drop,
                    from.as_str(),
                    to_text,
                    kind,
                    size,
                    id,
                    parent,
                    Some(label),
                    subjects,
                );
            }
        }
        result
    }

    /// Handles a message to the node's control endpoint.
    fn control(&self, from: &Upid, kind: &str, body: Body<'_>) -> Result<(), DropReason> {
        fn decode<M: Message>(body: Body<'_>) -> Result<M, DropReason> {
            match body {
                Body::Encoded(bytes) => message::decode(bytes).map_err(|e| DropReason::Decode(e.to_string())),
                Body::Local(payload) => payload
                    .downcast::<M>()
                    .map(|m| *m)
                    .map_err(|_| DropReason::Decode("wrong local type".into())),
            }
        }
        match kind {
            LinkRequest::KIND => {
                let request: LinkRequest = decode(body)?;
                self.remote_link(from, &request.target);
                Ok(())
            }
            ExitedNotice::KIND => {
                let notice: ExitedNotice = decode(body)?;
                if let Ok(target) = Upid::new(&notice.target, from.node().clone()) {
                    self.fire_exited(&target);
                }
                Ok(())
            }
            _ => Err(DropReason::UnknownKind),
        }
    }

    /// A node at `addr` connected to this one: if sends to it were backing off
    /// after a failure, they connect again at once.
    pub(crate) fn peer_alive(&self, addr: &NodeAddr) {
        let peer = self.0.peers.lock().unwrap_or_else(|p| p.into_inner()).get(addr).cloned();
        if let Some(peer) = peer {
            peer.alive(self.0.config.backoff_initial);
        }
    }

    fn peer(&self, addr: &NodeAddr) -> Arc<Peer> {
        let mut peers = self.0.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.entry(addr.clone()).or_insert_with(|| Arc::new(Peer::new(addr.clone(), &self.0.config))).clone()
    }

    /// Spawns a background task on the node's runtime.
    pub(crate) fn spawn_task<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.runtime.spawn(future);
    }

    pub(crate) fn transport(&self) -> &Arc<dyn Transport> {
        &self.0.transport
    }

    /// Every process with its mailbox depth, messages handled and installed kinds.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        let processes = self.0.processes.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<ProcessInfo> = processes
            .iter()
            .map(|(name, mailbox)| {
                let (mailbox_depth, messages_handled) = mailbox.counters();
                ProcessInfo {
                    id: format!("{name}@{}", self.0.addr),
                    mailbox_depth,
                    messages_handled,
                    kinds: mailbox.kinds().into_iter().map(String::from).collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Adds HTTP routes served on the node's port (master and agent endpoints).
    pub fn add_routes(&self, routes: axum::Router) {
        let mut http = self.0.http.write().unwrap_or_else(|p| p.into_inner());
        let current = std::mem::take(&mut *http);
        *http = current.merge(routes);
    }

    pub(crate) fn router(&self) -> axum::Router {
        self.0.http.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One process as `/__processes__` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The process's UPID.
    pub id: String,
    /// Messages enqueued and not yet handled.
    pub mailbox_depth: u64,
    /// Messages handled so far.
    pub messages_handled: u64,
    /// Installed message kinds.
    pub kinds: Vec<String>,
}

/// `name@node` written into `buffer` without allocating (cut if it does not fit).
fn upid_text<'b>(buffer: &'b mut [u8; 320], name: &str, node: &str) -> &'b str {
    let mut at = 0;
    for part in [name, "@", node] {
        let take = part.len().min(buffer.len() - at);
        buffer[at..at + take].copy_from_slice(&part.as_bytes()[..take]);
        at += take;
    }
    std::str::from_utf8(&buffer[..at]).unwrap_or_default()
}
