//! The executor API on the agent (`POST /api/v1/executor`): an executor's
//! SUBSCRIBE is a stream whose pseudo-UPID `executor-http-<framework>~<executor>`
//! (the same for every subscription of that executor, so one that reconnects is the
//! same executor to the core) registers with the agent's core as an executor
//! process would. What the core sends it (tasks, kills, acknowledgements, messages,
//! shutdown) becomes events in the stream's bounded queue; UPDATE and MESSAGE calls
//! become the usual messages from the pseudo-UPID. The core acknowledges an update
//! to its executor only after checkpointing it, so ACKNOWLEDGED means stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use keel_core::agent::ExecutorKind;
use keel_kernel::{Node, ProcessRef, Upid};
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId};
use keel_proto::messages::common::{ExecutorToFrameworkMessage, StatusUpdate};
use keel_proto::messages::executor::RegisterExecutor;
use keel_proto::messages::Msg;
use keel_proto::task::FrameworkInfo;
use tokio::sync::{mpsc, oneshot};

use super::error::V1Error;
use super::json::executor::{call_from_v1, event_from_msg, subscribed, ExecutorCall, Subscription};
use super::request::{self, Call};
use super::{stream, StreamClosed, EXECUTOR_PREFIX};
use crate::agent::Agent;

/// Events an executor may fall behind by before it is disconnected.
pub const STREAM_QUEUE_EVENTS: usize = 10_000;

struct Stream {
    records: mpsc::Sender<Bytes>,
    kill: Option<oneshot::Sender<()>>,
    /// Tells this stream from a later one of the same executor.
    number: u64,
    /// What SUBSCRIBED says, known when the executor subscribed.
    subscription: Subscription,
    subscribed: bool,
}

/// The agent's HTTP executors.
pub struct ExecutorHub {
    node: Node,
    agent: Upid,
    streams: Mutex<HashMap<String, Stream>>,
    next_number: Mutex<u64>,
}

impl std::fmt::Debug for ExecutorHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorHub").field("agent", &self.agent).finish()
    }
}

/// An id in a UPID name: anything but `[A-Za-z0-9_.-]` percent-encoded.
fn escape(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl ExecutorHub {
    /// The hub of the agent `agent` on `node`.
    pub fn new(node: Node, agent: Upid) -> Arc<ExecutorHub> {
        Arc::new(ExecutorHub { node, agent, streams: Mutex::new(HashMap::new()), next_number: Mutex::new(0) })
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pseudo-UPID of an executor's subscriptions.
    pub fn pseudo(&self, framework_id: &FrameworkId, executor_id: &ExecutorId) -> Result<Upid, V1Error> {
        let name =
            format!("{EXECUTOR_PREFIX}{}~{}", escape(framework_id.as_str()), escape(executor_id.as_str()));
        Upid::new(&name, self.agent.node().clone()).map_err(|e| V1Error::bad(format!("invalid ids: {e}")))
    }

    /// Whether `upid` stands for an HTTP executor of this agent.
    pub fn is_pseudo(&self, upid: &Upid) -> bool {
        super::is_pseudo(upid, &self.agent, EXECUTOR_PREFIX)
    }

    /// For the agent process: a message to an HTTP executor becomes its event;
    /// any other message is given back to be sent.
    pub fn intercept(&self, to: &Upid, message: Msg) -> Option<Msg> {
        if !self.is_pseudo(to) {
            return Some(message);
        }
        let mut streams = self.streams();
        let Some(stream) = streams.get_mut(to.name()) else {
            tracing::debug!(kind = message.kind(), executor = %to, "dropping a message to an HTTP executor that is not connected");
            return None;
        };
        let event = match &message {
            Msg::ExecutorRegistered(m) => {
                stream.subscription.executor = m.executor.clone();
                stream.subscription.framework = m.framework.clone();
                stream.subscribed = true;
                subscribed(&stream.subscription)
            }
            Msg::ExecutorReregistered(_) => {
                stream.subscribed = true;
                subscribed(&stream.subscription)
            }
            // No event for it: dropped (the executor API has none).
            other => event_from_msg(other, &stream.subscription.framework)?,
        };
        let shutdown = matches!(message, Msg::ShutdownExecutor(_));
        if stream.records.try_send(stream::record(&event)).is_err() {
            tracing::warn!(executor = %to, "an executor fell too far behind its event stream: disconnecting it");
            if let Some(kill) = streams.remove(to.name()).and_then(|s| s.kill) {
                let _ = kill.send(());
            }
        } else if shutdown {
            // SHUTDOWN is the last event.
            streams.remove(to.name());
        }
        None
    }

    /// For the agent process: links to HTTP executors are kept here (true when `to`
    /// is one); a link to one not connected exits at once.
    pub fn link(&self, to: &Upid) -> bool {
        if !self.is_pseudo(to) {
            return false;
        }
        if !self.streams().contains_key(to.name()) {
            self.node.send(to, &self.agent, StreamClosed {});
        }
        true
    }

    fn subscribe(
        self: &Arc<Self>,
        from: Upid,
        subscription: Subscription,
        updates: Vec<StatusUpdate>,
    ) -> Response {
        let (records, receiver) = mpsc::channel(STREAM_QUEUE_EVENTS);
        let (kill, killed) = oneshot::channel();
        let number = {
            let mut next = self.next_number.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let framework_id = subscription.framework.id.clone().unwrap_or_default();
        let executor_id = subscription.executor.executor_id.clone();
        let old = self.streams().insert(
            from.name().to_string(),
            Stream { records, kill: Some(kill), number, subscription, subscribed: false },
        );
        if let Some(kill) = old.and_then(|old| old.kill) {
            // The executor reconnected: its old stream ends.
            let _ = kill.send(());
        }
        tracing::info!(executor = %from, "HTTP executor subscribes");
        self.node.send(&from, &self.agent, RegisterExecutor { framework_id, executor_id });
        for update in updates {
            self.node.send(&from, &self.agent, update);
        }
        let hub: Weak<ExecutorHub> = Arc::downgrade(self);
        let on_close = move || {
            if let Some(hub) = hub.upgrade() {
                let mut streams = hub.streams();
                if streams.get(from.name()).is_some_and(|s| s.number == number) {
                    streams.remove(from.name());
                    drop(streams);
                    hub.node.send(&from, &hub.agent, StreamClosed {});
                }
                tracing::info!(executor = %from, "HTTP executor stream closed");
            }
        };
        stream::response(receiver, killed, &[], on_close)
    }
}

/// What the agent's core says of an executor: known with its subscription data, or
/// why not.
fn lookup(
    agent: &Agent,
    framework_id: &FrameworkId,
    executor_id: &ExecutorId,
    from: &Upid,
) -> Result<Subscription, V1Error> {
    let core = agent.core();
    let framework = core
        .frameworks()
        .get(framework_id)
        .ok_or_else(|| V1Error::bad(format!("framework {framework_id} is not known to this agent")))?;
    let executor =
        framework.executors.get(executor_id).filter(|e| !e.terminated && !e.shutting_down).ok_or_else(
            || {
                V1Error::bad(format!(
                    "executor {executor_id} of framework {framework_id} is not known to this agent"
                ))
            },
        )?;
    let ExecutorKind::Custom { info, pid, .. } = &executor.kind else {
        return Err(V1Error::bad(format!("{executor_id} is a command task, not an executor")));
    };
    if pid.as_ref().is_some_and(|pid| pid != from) {
        return Err(V1Error::Forbidden(format!(
            "executor {executor_id} is registered through Keel's own protocol"
        )));
    }
    let mut framework_info: FrameworkInfo = framework.info.clone();
    framework_info.id = Some(framework_id.clone());
    let node = core.config().upid.node();
    Ok(Subscription {
        executor: info.clone(),
        framework: framework_info,
        agent_id: core.agent_id().map(|a| a.to_string()).unwrap_or_default(),
        hostname: core.config().info.hostname.clone(),
        port: node.port(),
        container_id: executor.container.0.clone(),
    })
}

async fn dispatch(
    hub: &Arc<ExecutorHub>,
    agent: &ProcessRef<Agent>,
    call: Call,
) -> Result<Response, V1Error> {
    let (_, framework_id, executor_id, parsed) = call_from_v1(&call.body)?;
    let from = hub.pseudo(&framework_id, &executor_id)?;
    let unavailable = |_| V1Error::Unavailable("the agent is not running".into());
    if let ExecutorCall::Subscribe { unacknowledged_updates, .. } = parsed {
        request::check_accept(&call)?;
        let (f, e, pid) = (framework_id.clone(), executor_id.clone(), from.clone());
        let subscription = agent.query(move |a, _| lookup(a, &f, &e, &pid)).await.map_err(unavailable)??;
        let updates = unacknowledged_updates
            .into_iter()
            .map(|status| StatusUpdate {
                framework_id: framework_id.clone(),
                executor_id: Some(executor_id.clone()),
                agent_id: None,
                uuid: status.uuid.clone().unwrap_or_default(),
                status,
                latest_state: None,
                agent_pid: None,
            })
            .collect();
        return Ok(hub.subscribe(from, subscription, updates));
    }
    let subscribed = hub.streams().get(from.name()).is_some_and(|s| s.subscribed);
    if !subscribed {
        let (f, e, pid) = (framework_id.clone(), executor_id.clone(), from.clone());
        agent.query(move |a, _| lookup(a, &f, &e, &pid)).await.map_err(unavailable)??;
        return Err(V1Error::Forbidden(format!("executor {executor_id} is not subscribed")));
    }
    match parsed {
        ExecutorCall::Update(status) => {
            let update = StatusUpdate {
                framework_id,
                executor_id: Some(executor_id),
                agent_id: None,
                uuid: status.uuid.clone().unwrap_or_default(),
                status,
                latest_state: None,
                agent_pid: None,
            };
            hub.node.send(&from, &hub.agent, update);
        }
        ExecutorCall::Message(data) => {
            let message =
                ExecutorToFrameworkMessage { agent_id: AgentId::default(), framework_id, executor_id, data };
            hub.node.send(&from, &hub.agent, message);
        }
        ExecutorCall::Heartbeat | ExecutorCall::Subscribe { .. } => {}
    }
    Ok((StatusCode::ACCEPTED, "").into_response())
}

/// `POST /api/v1/executor` on an agent.
pub async fn handle(hub: Arc<ExecutorHub>, agent: ProcessRef<Agent>, request: Request) -> Response {
    let result = async {
        let call = request::read(request, request::BODY_LIMIT).await?;
        dispatch(&hub, &agent, call).await
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "refused an executor call");
        e.into_response()
    })
}
