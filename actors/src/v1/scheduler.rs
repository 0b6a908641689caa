//! The scheduler API on the master (`POST /api/v1/scheduler`): each SUBSCRIBE is a
//! stream whose pseudo-UPID `scheduler-http-<stream id>@<master>` is the
//! framework's scheduler as far as the core knows. Calls become messages from that
//! UPID into the master's mailbox; what the core sends to it becomes events in the
//! stream's bounded queue ([`SchedulerHub::intercept`], run by the master process
//! for every send); a stream that ends is fed as the UPID's exit, so framework
//! failover works as for actor schedulers. A subscriber whose queue fills up is
//! disconnected, never waited for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use keel_core::master::Master as Core;
use keel_kernel::{Message, Node, Upid};
use keel_proto::ids::FrameworkId;
use keel_proto::messages::scheduler::{SubscribeFramework, SuppressOffers};
use keel_proto::messages::{Msg, Visit};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::error::V1Error;
use super::json::resources::ReservationFormat;
use super::json::scheduler::{
    call_from_v1, event_from_msg, master_info, refused_task_event, EventContext, SchedulerCall,
};
use super::request::{self, Call};
use super::{stream, StreamClosed, SCHEDULER_PREFIX};
use crate::master::http::MasterSlot;
use crate::master::MasterHandle;

/// Events a subscriber may fall behind by before it is disconnected.
pub const STREAM_QUEUE_EVENTS: usize = 10_000;

/// Mesos's heartbeat interval.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(super::json::scheduler::HEARTBEAT_SECS as u64);

/// How long UPDATE_FRAMEWORK waits for the master to apply it.
const UPDATE_FRAMEWORK_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `Mesos-Stream-Id` taken.
const MAX_STREAM_ID: usize = 128;

/// One subscription's stream.
struct Stream {
    records: mpsc::Sender<Bytes>,
    kill: Option<oneshot::Sender<()>>,
    framework_id: Option<FrameworkId>,
    context: EventContext,
    /// Roles to suppress once subscribed (SUBSCRIBE's `suppressed_roles`).
    suppress: Vec<String>,
    /// An UPDATE_FRAMEWORK waiting for the master's answer (a resubscription whose
    /// SUBSCRIBED is not an event).
    pending_update: Option<oneshot::Sender<Result<(), String>>>,
}

/// The master's HTTP scheduler subscriptions.
pub struct SchedulerHub {
    node: Node,
    master: Upid,
    master_info: Value,
    heartbeat: Duration,
    queue_events: usize,
    streams: Mutex<HashMap<String, Stream>>,
    events_dropped: AtomicU64,
    slow_disconnected: AtomicU64,
}

impl std::fmt::Debug for SchedulerHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHub").field("master", &self.master).finish()
    }
}

/// Sends a `Msg` through the kernel from one UPID to another.
struct SendFrom<'a> {
    node: &'a Node,
    from: &'a Upid,
    to: &'a Upid,
}

impl Visit for SendFrom<'_> {
    type Output = ();
    fn visit<M: Message + Clone + std::fmt::Debug>(self, message: M) {
        self.node.send(self.from, self.to, message);
    }
}

/// Sends `message` from `from` to `to` through `node`.
pub fn send_from(node: &Node, from: &Upid, to: &Upid, message: Msg) {
    message.visit(SendFrom { node, from, to });
}

impl SchedulerHub {
    /// The hub of the master `master` (whose ids start with `master_id`) on `node`.
    pub fn new(node: Node, master: Upid, master_id: &str) -> Arc<SchedulerHub> {
        Arc::new(SchedulerHub {
            master_info: master_info(&master, master_id),
            node,
            master,
            heartbeat: HEARTBEAT_INTERVAL,
            queue_events: STREAM_QUEUE_EVENTS,
            streams: Mutex::new(HashMap::new()),
            events_dropped: AtomicU64::new(0),
            slow_disconnected: AtomicU64::new(0),
        })
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `upid` stands for an HTTP subscription of this master.
    pub fn is_pseudo(&self, upid: &Upid) -> bool {
        super::is_pseudo(upid, &self.master, SCHEDULER_PREFIX)
    }

    /// Subscriptions open now.
    pub fn open_streams(&self) -> usize {
        self.streams().len()
    }

    /// Counters for the metrics: events dropped (their stream was gone) and
    /// subscribers disconnected for falling behind.
    pub fn counters(&self) -> (u64, u64) {
        (self.events_dropped.load(Ordering::Relaxed), self.slow_disconnected.load(Ordering::Relaxed))
    }

    /// For the master process: a message to an HTTP subscription becomes its event
    /// (and `None` comes back); any other message is given back to be sent.
    pub fn intercept(&self, to: &Upid, message: Msg) -> Option<Msg> {
        if !self.is_pseudo(to) {
            return Some(message);
        }
        self.deliver(to, message);
        None
    }

    /// For the master process: a link to a subscription is kept here, not in the
    /// kernel (true when `to` is one). A link to one already closed exits at once.
    pub fn link(&self, to: &Upid) -> bool {
        if !self.is_pseudo(to) {
            return false;
        }
        if !self.streams().contains_key(to.name()) {
            self.node.send(to, &self.master, StreamClosed {});
        }
        true
    }

    /// For the master process: the core unlinks a scheduler it is done with (its
    /// framework was removed, or failed over to another scheduler): that stream
    /// ends once its queued events are written. True when `to` is a subscription.
    pub fn unlink(&self, to: &Upid) -> bool {
        if !self.is_pseudo(to) {
            return false;
        }
        if self.streams().remove(to.name()).is_some() {
            tracing::info!(stream = %to, "the master is done with this scheduler stream: closing it");
        }
        true
    }

    fn deliver(&self, to: &Upid, message: Msg) {
        let mut streams = self.streams();
        let Some(stream) = streams.get_mut(to.name()) else {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut follow_up = None;
        if let Msg::FrameworkSubscribed(m) = &message {
            stream.framework_id = Some(m.framework_id.clone());
            if let Some(done) = stream.pending_update.take() {
                let _ = done.send(Ok(()));
                return;
            }
            if !stream.suppress.is_empty() {
                let roles = std::mem::take(&mut stream.suppress);
                follow_up = Some(SuppressOffers { framework_id: m.framework_id.clone(), roles });
            }
        }
        if let (Msg::FrameworkError(m), Some(done)) = (&message, stream.pending_update.take()) {
            // The master refused an UPDATE_FRAMEWORK: its answer says so; the
            // subscription goes on.
            let _ = done.send(Err(m.message.clone()));
            return;
        }
        let close = matches!(message, Msg::FrameworkError(_));
        let Some(event) = event_from_msg(&message, &stream.context) else {
            tracing::debug!(kind = message.kind(), to = %to, "no scheduler event for this message");
            return;
        };
        let mut full = stream.records.try_send(stream::record(&event)).is_err();
        if !full && matches!(message, Msg::FrameworkSubscribed(_)) {
            // As Mesos does, the first HEARTBEAT follows SUBSCRIBED at once.
            full = stream.records.try_send(stream::record(&super::json::scheduler::heartbeat())).is_err();
        }
        if full {
            self.slow_disconnected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(stream = %to, "a scheduler fell too far behind its event stream: disconnecting it");
            if let Some(removed) = streams.remove(to.name()) {
                if let Some(kill) = removed.kill {
                    let _ = kill.send(());
                }
            }
            drop(streams);
            self.node.send(to, &self.master, StreamClosed {});
            return;
        }
        if close {
            // The ERROR is the last event: the stream ends once it is written.
            streams.remove(to.name());
        }
        drop(streams);
        if let Some(suppress) = follow_up {
            self.node.send(to, &self.master, suppress);
        }
    }

    /// Queues an event the adapter makes itself (answers to refused tasks).
    fn push(&self, name: &str, event: &Value) {
        if let Some(stream) = self.streams().get(name) {
            if stream.records.try_send(stream::record(event)).is_err() {
                self.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn subscribe(
        self: &Arc<Self>,
        call: &Call,
        info: keel_proto::task::FrameworkInfo,
        refinement: bool,
        suppress: Vec<String>,
    ) -> Result<Response, V1Error> {
        if call.header("mesos-stream-id").is_some() {
            return Err(V1Error::bad("expecting 'Mesos-Stream-Id' to be absent on SUBSCRIBE"));
        }
        request::check_accept(call)?;
        let stream_id = super::json::random_uuid();
        let name = format!("{SCHEDULER_PREFIX}{stream_id}");
        let upid = Upid::new(&name, self.master.node().clone())
            .map_err(|e| V1Error::Unavailable(format!("cannot name the stream: {e}")))?;
        let (records, receiver) = mpsc::channel(self.queue_events);
        let (kill, killed) = oneshot::channel();
        let context = EventContext {
            heartbeat_secs: self.heartbeat.as_secs_f64(),
            master_info: self.master_info.clone(),
            format: if refinement { ReservationFormat::Refinement } else { ReservationFormat::PreRefinement },
            multi_role: info.has(keel_proto::task::FrameworkCapability::MultiRole),
        };
        let weak = records.downgrade();
        self.streams().insert(
            name.clone(),
            Stream { records, kill: Some(kill), framework_id: None, context, suppress, pending_update: None },
        );
        let hub: Weak<SchedulerHub> = Arc::downgrade(self);
        let ready_name = name.clone();
        stream::spawn_heartbeats(weak, self.heartbeat, move || {
            hub.upgrade()
                .is_some_and(|hub| hub.streams().get(&ready_name).is_some_and(|s| s.framework_id.is_some()))
        });
        tracing::info!(stream = %upid, framework_id = ?info.id, name = %info.name, "HTTP scheduler subscribes");
        self.node.send(&upid, &self.master, SubscribeFramework { framework: info, subscription: 0 });
        let hub = Arc::downgrade(self);
        let on_close = move || {
            if let Some(hub) = hub.upgrade() {
                hub.streams().remove(upid.name());
                hub.node.send(&upid, &hub.master, StreamClosed {});
                tracing::info!(stream = %upid, "HTTP scheduler stream closed");
            }
        };
        Ok(stream::response(receiver, killed, &[("mesos-stream-id", stream_id)], on_close))
    }

    async fn call(self: &Arc<Self>, core: &MasterHandle, call: Call) -> Result<Response, V1Error> {
        let (kind, framework_id, parsed) = call_from_v1(&call.body)?;
        let (info, refinement, suppress) = match parsed {
            SchedulerCall::Subscribe { info, refinement, suppressed_roles } => {
                (info, refinement, suppressed_roles)
            }
            other => {
                let framework_id =
                    framework_id.ok_or_else(|| V1Error::bad("expecting 'framework_id' to be present"))?;
                return self.framework_call(core, &call, &kind, framework_id, other).await;
            }
        };
        self.subscribe(&call, info, refinement, suppress)
    }

    /// The subscription a call must come from: the framework's current stream.
    fn caller(&self, core: &Core, call: &Call, framework_id: &FrameworkId) -> Result<Upid, V1Error> {
        let Some(framework) = core.frameworks().get(framework_id).filter(|f| !f.removing) else {
            return Err(V1Error::bad(format!("framework {framework_id} cannot be found")));
        };
        let current = framework
            .pid
            .clone()
            .filter(|pid| framework.connected && self.is_pseudo(pid))
            .ok_or_else(|| V1Error::Forbidden(format!("framework {framework_id} is not subscribed")))?;
        let Some(stream_id) = call.header("mesos-stream-id") else {
            return Err(V1Error::bad("all non-SUBSCRIBE calls must include the 'Mesos-Stream-Id' header"));
        };
        if stream_id.len() > MAX_STREAM_ID || current.name() != format!("{SCHEDULER_PREFIX}{stream_id}") {
            return Err(V1Error::bad(format!(
                "the stream id {stream_id:?} in this request is not the stream currently associated with framework {framework_id}"
            )));
        }
        Ok(current)
    }

    async fn framework_call(
        self: &Arc<Self>,
        core: &MasterHandle,
        call: &Call,
        kind: &str,
        framework_id: FrameworkId,
        parsed: SchedulerCall,
    ) -> Result<Response, V1Error> {
        let from = core.read(|core| self.caller(core, call, &framework_id))?;
        let accepted = || Ok((StatusCode::ACCEPTED, "").into_response());
        match parsed {
            SchedulerCall::Message(message) => {
                send_from(&self.node, &from, &self.master, message);
                accepted()
            }
            SchedulerCall::Accept(accept, refused) => {
                let now = crate::shell::now_secs();
                for task in &refused {
                    self.push(from.name(), &refused_task_event(task, now));
                }
                self.node.send(&from, &self.master, accept);
                accepted()
            }
            SchedulerCall::UpdateFramework { info, suppressed_roles } => {
                if info.name.trim().is_empty() {
                    return Err(V1Error::bad("UPDATE_FRAMEWORK: 'framework_info.name' must not be empty"));
                }
                if keel_proto::time::duration_from_secs(info.failover_timeout_secs).is_none() {
                    return Err(V1Error::bad(
                        "UPDATE_FRAMEWORK: 'failover_timeout' must be between 0 and a year",
                    ));
                }
                let current_roles =
                    core.read(|c| c.frameworks().get(&framework_id).map(|f| f.info.effective_roles()));
                if current_roles.is_some_and(|roles| roles != info.effective_roles()) {
                    return Err(V1Error::bad("UPDATE_FRAMEWORK: Keel cannot change a framework's roles"));
                }
                let (done, applied) = oneshot::channel();
                if let Some(stream) = self.streams().get_mut(from.name()) {
                    stream.pending_update = Some(done);
                }
                self.node.send(&from, &self.master, SubscribeFramework { framework: info, subscription: 0 });
                let roles = core
                    .read(|c| c.frameworks().get(&framework_id).map(|f| f.info.effective_roles()))
                    .unwrap_or_default();
                let (suppress, revive): (Vec<String>, Vec<String>) =
                    roles.into_iter().partition(|role| suppressed_roles.contains(role));
                if !suppress.is_empty() {
                    self.node.send(
                        &from,
                        &self.master,
                        SuppressOffers { framework_id: framework_id.clone(), roles: suppress },
                    );
                }
                if !revive.is_empty() && !suppressed_roles.is_empty() {
                    let revive =
                        keel_proto::messages::scheduler::ReviveOffers { framework_id, roles: revive };
                    self.node.send(&from, &self.master, revive);
                }
                match tokio::time::timeout(UPDATE_FRAMEWORK_TIMEOUT, applied).await {
                    Ok(Ok(Ok(()))) => Ok((StatusCode::OK, "").into_response()),
                    Ok(Ok(Err(refused))) => Err(V1Error::bad(format!("UPDATE_FRAMEWORK refused: {refused}"))),
                    _ => {
                        Err(V1Error::Unavailable("the master did not apply UPDATE_FRAMEWORK in time".into()))
                    }
                }
            }
            SchedulerCall::Ignored(what) => {
                tracing::debug!(call = %what, %framework_id, "accepted a call Keel does nothing for");
                accepted()
            }
            SchedulerCall::Subscribe { .. } => Err(V1Error::bad(format!("unexpected {kind}"))),
        }
    }
}

/// `POST /api/v1/scheduler` on a master: a standby redirects (307) to the leader or
/// answers 503.
pub async fn handle(slot: MasterSlot, request: Request) -> Response {
    let handle = match slot.get(request.uri()) {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    let result = async {
        let call = request::read(request, request::SCHEDULER_BODY_LIMIT).await?;
        handle.v1.clone().call(&handle, call).await
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "refused a scheduler call");
        e.into_response()
    })
}
