//! Processes: actix actors whose handlers are installed per message kind, like
//! libprocess's `install<M>()`. A handler sees the sender's UPID; sends made while
//! it runs carry the handled message's id as their causal parent.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::fut::{wrap_future, ActorFutureExt};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, MailboxError, SpawnHandle};

use crate::message::{self, Message};
use crate::node::Node;
use crate::trace::binary::SubjectBuf;
use crate::trace::{self, MessageId};
use crate::upid::Upid;

/// An actor on a node. Declare the kinds it handles in [`Process::install`].
///
/// ```
/// use keel_kernel::{message, Handle, Handlers, Node, NodeConfig, Process, ProcessContext, Upid};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Ping { seq: u64 }
/// message!(Ping, "keel.doc.Ping");
/// #[derive(Serialize, Deserialize)]
/// struct Pong { seq: u64 }
/// message!(Pong, "keel.doc.Pong");
///
/// struct Echo;
/// impl Process for Echo {
///     fn install(handlers: &mut Handlers<Self>) {
///         handlers.install::<Ping>();
///     }
/// }
/// impl Handle<Ping> for Echo {
///     fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, ping: Ping) {
///         ctx.send(&from, Pong { seq: ping.seq });
///     }
/// }
///
/// actix_rt::System::new().block_on(async {
///     let node = Node::start(NodeConfig::default()).await.unwrap();
///     let echo = node.spawn("echo", Echo).unwrap();
///     assert_eq!(echo.upid().name(), "echo");
/// });
/// ```
pub trait Process: Sized + Unpin + 'static {
    /// Installs the handlers: `handlers.install::<RegisterAgent>()` for each kind.
    fn install(handlers: &mut Handlers<Self>) {
        let _ = handlers;
    }

    /// Called once when the process starts, before any message.
    fn started(&mut self, ctx: &mut ProcessContext<'_, Self>) {
        let _ = ctx;
    }

    /// Called once per link when the linked process exits or its node becomes unreachable.
    fn exited(&mut self, ctx: &mut ProcessContext<'_, Self>, upid: Upid) {
        let _ = (ctx, upid);
    }

    /// Called once when the process has stopped.
    fn stopped(&mut self) {}
}

/// Handling of one message kind.
pub trait Handle<M: Message>: Process {
    /// Handles `message` from `from`.
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, message: M);
}

type Payload = Box<dyn Any + Send>;
type DecodeFn = fn(&[u8]) -> Result<Payload, String>;
type CallFn<P> = fn(&mut P, &mut ProcessContext<'_, P>, Upid, Payload);
type SubjectsFn = fn(&Payload, &mut SubjectBuf);

struct Entry<P: Process> {
    type_id: TypeId,
    decode: DecodeFn,
    call: CallFn<P>,
    subjects: SubjectsFn,
}

impl<P: Process> Clone for Entry<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P: Process> Copy for Entry<P> {}

/// The handler table of one process, by kind.
pub struct Handlers<P: Process> {
    entries: HashMap<&'static str, Entry<P>>,
}

impl<P: Process> Handlers<P> {
    pub(crate) fn collect() -> Handlers<P> {
        let mut handlers = Handlers { entries: HashMap::new() };
        P::install(&mut handlers);
        handlers
    }

    /// Routes messages of kind `M::KIND` to `<P as Handle<M>>::handle`.
    pub fn install<M: Message>(&mut self) -> &mut Self
    where
        P: Handle<M>,
    {
        self.entries.insert(
            M::KIND,
            Entry {
                type_id: TypeId::of::<M>(),
                decode: decode_boxed::<M>,
                call: call_typed::<P, M>,
                subjects: subjects_typed::<M>,
            },
        );
        self
    }

    /// The installed kinds, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.entries.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }
}

fn decode_boxed<M: Message>(body: &[u8]) -> Result<Payload, String> {
    message::decode::<M>(body).map(|m| Box::new(m) as Payload).map_err(|e| e.to_string())
}

fn subjects_typed<M: Message>(payload: &Payload, out: &mut SubjectBuf) {
    if let Some(message) = payload.downcast_ref::<M>() {
        message.subjects(&mut |key, value| out.push(key, value));
    }
}

fn call_typed<P: Handle<M>, M: Message>(
    process: &mut P,
    ctx: &mut ProcessContext<'_, P>,
    from: Upid,
    payload: Payload,
) {
    // `deliver` checked the type id, so the downcast holds.
    if let Ok(message) = payload.downcast::<M>() {
        process.handle(ctx, from, *message);
    }
}

/// Per-process counters shown in `/__processes__`.
#[derive(Debug, Default)]
pub(crate) struct ProcessStats {
    pub depth: AtomicU64,
    pub handled: AtomicU64,
}

/// The actix actor that runs a [`Process`].
pub struct ProcessActor<P: Process> {
    process: P,
    upid: Upid,
    node: Node,
    stats: Arc<ProcessStats>,
    timers: Timers,
}

/// The live timers of one process.
#[derive(Default)]
struct Timers {
    next: u64,
    live: HashMap<u64, SpawnHandle>,
}

impl<P: Process> ProcessActor<P> {
    pub(crate) fn new(process: P, upid: Upid, node: Node, stats: Arc<ProcessStats>) -> Self {
        ProcessActor { process, upid, node, stats, timers: Timers::default() }
    }

    /// The wrapped process.
    pub fn process(&mut self) -> &mut P {
        &mut self.process
    }

    fn with_context<R>(
        &mut self,
        actix: &mut Context<Self>,
        f: impl FnOnce(&mut P, &mut ProcessContext<'_, P>) -> R,
    ) -> R {
        let ProcessActor { process, upid, node, timers, .. } = self;
        let mut ctx = ProcessContext { actix, upid, node, timers };
        f(process, &mut ctx)
    }
}

impl<P: Process> Actor for ProcessActor<P> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.with_context(ctx, |p, ctx| p.started(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.process.stopped();
        self.node.process_stopped(&self.upid);
    }
}

/// A message delivered to a process: decoded, with its handler already chosen.
pub(crate) struct Incoming<P: Process> {
    from: Upid,
    id: MessageId,
    payload: Payload,
    call: CallFn<P>,
}

impl<P: Process> actix::Message for Incoming<P> {
    type Result = ();
}

impl<P: Process> Handler<Incoming<P>> for ProcessActor<P> {
    type Result = ();

    fn handle(&mut self, incoming: Incoming<P>, ctx: &mut Context<Self>) {
        self.stats.depth.fetch_sub(1, Ordering::Relaxed);
        let Incoming { from, id, payload, call } = incoming;
        trace::with_current(id, || self.with_context(ctx, |p, ctx| call(p, ctx, from, payload)));
        self.stats.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// A link's target exited.
pub(crate) struct LinkExited(pub Upid);

impl actix::Message for LinkExited {
    type Result = ();
}

impl<P: Process> Handler<LinkExited> for ProcessActor<P> {
    type Result = ();

    fn handle(&mut self, exited: LinkExited, ctx: &mut Context<Self>) {
        self.with_context(ctx, |p, ctx| p.exited(ctx, exited.0));
    }
}

/// Runs a closure on the process inside its actor (see [`ProcessRef::query`]).
type QueryFn<P> = Box<dyn FnOnce(&mut P, &mut ProcessContext<'_, P>) + Send>;

struct Query<P: Process>(QueryFn<P>);

impl<P: Process> actix::Message for Query<P> {
    type Result = ();
}

impl<P: Process> Handler<Query<P>> for ProcessActor<P> {
    type Result = ();

    fn handle(&mut self, query: Query<P>, ctx: &mut Context<Self>) {
        self.with_context(ctx, |p, ctx| (query.0)(p, ctx));
    }
}

/// What a [`ProcessRef`] delivery needs from the registry, without knowing `P`.
pub(crate) trait Mailbox: Send + Sync {
    /// Checks the kind, decodes if needed, copies the message's trace subjects into
    /// `subjects`, and enqueues.
    fn deliver(
        &self,
        from: Upid,
        kind: &str,
        id: MessageId,
        body: Body<'_>,
        subjects: &mut SubjectBuf,
    ) -> Result<(), crate::DropReason>;
    /// Enqueues a link exit.
    fn link_exited(&self, upid: Upid);
    /// Mailbox depth and messages handled.
    fn counters(&self) -> (u64, u64);
    /// Installed kinds.
    fn kinds(&self) -> Vec<&'static str>;
    /// The typed handle, for [`Node::lookup`].
    fn as_any(&self) -> &dyn Any;
}

/// A message body on its way to a mailbox.
pub(crate) enum Body<'a> {
    /// A same-node message: the value itself.
    Local(Payload),
    /// A remote message: its encoding.
    Encoded(&'a [u8]),
}

/// A typed handle to a running process.
pub struct ProcessRef<P: Process> {
    upid: Upid,
    addr: Addr<ProcessActor<P>>,
    handlers: Arc<Handlers<P>>,
    stats: Arc<ProcessStats>,
    max_depth: u64,
}

impl<P: Process> Clone for ProcessRef<P> {
    fn clone(&self) -> Self {
        ProcessRef {
            upid: self.upid.clone(),
            addr: self.addr.clone(),
            handlers: self.handlers.clone(),
            stats: self.stats.clone(),
            max_depth: self.max_depth,
        }
    }
}

impl<P: Process> ProcessRef<P> {
    pub(crate) fn new(
        upid: Upid,
        addr: Addr<ProcessActor<P>>,
        handlers: Arc<Handlers<P>>,
        stats: Arc<ProcessStats>,
        max_depth: u64,
    ) -> Self {
        ProcessRef { upid, addr, handlers, stats, max_depth }
    }

    /// The process's UPID.
    pub fn upid(&self) -> &Upid {
        &self.upid
    }

    /// The actix address of the actor.
    pub fn addr(&self) -> &Addr<ProcessActor<P>> {
        &self.addr
    }

    /// Runs `f` on the process inside its actor and returns its result: how HTTP
    /// endpoints and tests read a process's state.
    pub async fn query<R, F>(&self, f: F) -> Result<R, MailboxError>
    where
        R: Send + 'static,
        F: FnOnce(&mut P, &mut ProcessContext<'_, P>) -> R + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.addr
            .try_send(Query(Box::new(move |p, ctx| {
                let _ = tx.send(f(p, ctx));
            })))
            .map_err(|_| MailboxError::Closed)?;
        rx.await.map_err(|_| MailboxError::Closed)
    }

    /// Asks the process to stop.
    pub async fn stop(&self) {
        let _ = self.query(|_, ctx| ctx.stop()).await;
    }
}

impl<P: Process> Mailbox for ProcessRef<P> {
    fn deliver(
        &self,
        from: Upid,
        kind: &str,
        id: MessageId,
        body: Body<'_>,
        subjects: &mut SubjectBuf,
    ) -> Result<(), crate::DropReason> {
        let entry = *self.handlers.entries.get(kind).ok_or(crate::DropReason::UnknownKind)?;
        let payload = match body {
            Body::Local(payload) if (*payload).type_id() == entry.type_id => payload,
            Body::Local(_) => {
                return Err(crate::DropReason::Decode("a different type uses this kind".into()))
            }
            Body::Encoded(bytes) => (entry.decode)(bytes).map_err(crate::DropReason::Decode)?,
        };
        (entry.subjects)(&payload, subjects);
        if self.stats.depth.load(Ordering::Relaxed) >= self.max_depth {
            return Err(crate::DropReason::MailboxFull);
        }
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        self.addr.do_send(Incoming { from, id, payload, call: entry.call });
        Ok(())
    }

    fn link_exited(&self, upid: Upid) {
        self.addr.do_send(LinkExited(upid));
    }

    fn counters(&self) -> (u64, u64) {
        (self.stats.depth.load(Ordering::Relaxed), self.stats.handled.load(Ordering::Relaxed))
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.handlers.kinds()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A cancellable timer started by [`ProcessContext::delay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

/// What a handler can do: send, link, set timers, spawn futures, stop.
pub struct ProcessContext<'a, P: Process> {
    actix: &'a mut Context<ProcessActor<P>>,
    upid: &'a Upid,
    node: &'a Node,
    timers: &'a mut Timers,
}

impl<P: Process> ProcessContext<'_, P> {
    /// This process's UPID.
    pub fn upid(&self) -> &Upid {
        self.upid
    }

    /// The node this process runs on.
    pub fn node(&self) -> &Node {
        self.node
    }

    /// Sends `message` to `to` from this process.
    pub fn send<M: Message>(&self, to: &Upid, message: M) {
        self.node.send(self.upid, to, message);
    }

    /// Links to `to`: [`Process::exited`] is called once when it exits or its node
    /// becomes unreachable.
    pub fn link(&self, to: &Upid) {
        self.node.link(self.upid, to);
    }

    /// Removes a link; no `exited` will follow for it.
    pub fn unlink(&self, to: &Upid) {
        self.node.unlink(self.upid, to);
    }

    /// Sends `message` to this process after `after` (of the node's clock). The
    /// delayed message keeps the current message as its causal parent.
    pub fn delay<M: Message>(&mut self, after: Duration, message: M) -> TimerId
    where
        P: Handle<M>,
    {
        let parent = trace::current_message();
        let node = self.node.clone();
        let upid = self.upid.clone();
        let sleep = self.node.clock().sleep(after);
        let id = self.timers.next;
        self.timers.next += 1;
        let fut = wrap_future::<_, ProcessActor<P>>(sleep).map(move |(), act, _| {
            if act.timers.live.remove(&id).is_some() {
                trace::with_current(parent, || node.send(&upid, &upid, message));
            }
        });
        let handle = self.actix.spawn(fut);
        self.timers.live.insert(id, handle);
        TimerId(id)
    }

    /// Cancels a timer; returns false if it already fired or was cancelled.
    pub fn cancel(&mut self, timer: TimerId) -> bool {
        match self.timers.live.remove(&timer.0) {
            Some(handle) => self.actix.cancel_future(handle),
            None => false,
        }
    }

    /// Runs `future` and then `then` with its output on this process.
    pub fn spawn<F, O>(
        &mut self,
        future: F,
        then: impl FnOnce(&mut P, &mut ProcessContext<'_, P>, O) + 'static,
    ) where
        F: Future<Output = O> + 'static,
        O: 'static,
    {
        let parent = trace::current_message();
        let fut = wrap_future::<_, ProcessActor<P>>(future).map(move |out, act, actix| {
            trace::with_current(parent, || act.with_context(actix, |p, ctx| then(p, ctx, out)));
        });
        self.actix.spawn(fut);
    }

    /// Stops this process after the current message.
    pub fn stop(&mut self) {
        self.actix.stop();
    }

    /// The underlying actix context, for anything else actix offers.
    pub fn actix(&mut self) -> &mut Context<ProcessActor<P>> {
        self.actix
    }
}
