//! The operator API's event stream (SUBSCRIBE on the master's `/api/v1`): SUBSCRIBED
//! with the whole state, then TASK_ADDED, TASK_UPDATED, AGENT_ADDED, AGENT_REMOVED,
//! FRAMEWORK_ADDED, FRAMEWORK_UPDATED, FRAMEWORK_REMOVED and HEARTBEAT.
//!
//! The core knows nothing of subscribers: while there are any, the master process
//! calls [`OperatorEvents::observe`] after every input, under the core's lock, and
//! the differences from the previous view become events (a task's state changing is
//! a TASK_UPDATED, as Mesos sends one when the state it tracks changes). That costs
//! a walk over the live tasks per input, only while someone subscribes.
//! Subscribers have bounded queues; one that falls behind is disconnected.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use keel_core::master::Master as Core;
use keel_proto::ids::{AgentId, FrameworkId, TaskId};
use keel_proto::task::{FrameworkInfo, TaskState};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::json::state::{agent_v1, framework_v1, get_state, task_v1};
use super::json::task::{framework_to_v1, status_to_v1};
use super::json::{id, scheduler::HEARTBEAT_SECS};
use super::stream;

/// Events an operator subscriber may fall behind by before it is disconnected.
pub const SUBSCRIBER_QUEUE_EVENTS: usize = 10_000;

/// Most operator subscribers at once.
pub const MAX_SUBSCRIBERS: usize = 64;

/// What the master's core looked like after the previous input.
#[derive(Debug, Default)]
struct View {
    tasks: BTreeMap<(FrameworkId, TaskId), TaskState>,
    agents: BTreeSet<AgentId>,
    frameworks: BTreeMap<FrameworkId, (bool, bool, FrameworkInfo)>,
}

struct Subscriber {
    id: u64,
    records: mpsc::Sender<Bytes>,
    kill: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct Inner {
    subscribers: Vec<Subscriber>,
    view: View,
    next_id: u64,
}

/// The master's operator event subscribers.
#[derive(Default)]
pub struct OperatorEvents {
    inner: Mutex<Inner>,
    count: AtomicUsize,
}

impl std::fmt::Debug for OperatorEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorEvents").field("subscribers", &self.count.load(Ordering::Relaxed)).finish()
    }
}

impl OperatorEvents {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anyone subscribes (cheap: checked after every input).
    pub fn has_subscribers(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// A new subscriber: SUBSCRIBED with the state now, then the changes. Call with
    /// the core locked, so no change falls between the state and the first event.
    pub fn subscribe(self: &Arc<Self>, core: &Core) -> Result<Response, super::V1Error> {
        let mut inner = self.inner();
        if inner.subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(super::V1Error::Unavailable(format!(
                "at most {MAX_SUBSCRIBERS} operator subscribers"
            )));
        }
        if inner.subscribers.is_empty() {
            inner.view = view_of(core);
        }
        let (records, receiver) = mpsc::channel(SUBSCRIBER_QUEUE_EVENTS);
        let (kill, killed) = oneshot::channel();
        let subscribed = json!({
            "type": "SUBSCRIBED",
            "subscribed": { "get_state": get_state(core), "heartbeat_interval_seconds": HEARTBEAT_SECS },
        });
        let _ = records.try_send(stream::record(&subscribed));
        stream::spawn_heartbeats(records.downgrade(), Duration::from_secs_f64(HEARTBEAT_SECS), || true);
        let id = inner.next_id;
        inner.next_id += 1;
        inner.subscribers.push(Subscriber { id, records, kill: Some(kill) });
        self.count.store(inner.subscribers.len(), Ordering::Relaxed);
        let events: Weak<OperatorEvents> = Arc::downgrade(self);
        let on_close = move || {
            if let Some(events) = events.upgrade() {
                let mut inner = events.inner();
                inner.subscribers.retain(|s| s.id != id);
                events.count.store(inner.subscribers.len(), Ordering::Relaxed);
            }
        };
        Ok(stream::response(receiver, killed, &[], on_close))
    }

    /// Turns what changed since the last call into events for every subscriber.
    pub fn observe(&self, core: &Core) {
        if !self.has_subscribers() {
            return;
        }
        let mut inner = self.inner();
        let mut events = Vec::new();
        let mut view = View::default();
        for (framework_id, framework) in core.frameworks() {
            for task in framework.tasks.values().chain(framework.unreachable_tasks.values()) {
                let key = (framework_id.clone(), task.info.task_id.clone());
                match inner.view.tasks.get(&key) {
                    None => {
                        events.push(json!({ "type": "TASK_ADDED", "task_added": { "task": task_v1(task) } }))
                    }
                    Some(old) if *old != task.state => {
                        let mut updated =
                            json!({ "framework_id": id(framework_id), "state": task.state.name() });
                        if let Some(status) = &task.status {
                            updated["status"] = status_to_v1(status);
                        }
                        events.push(json!({ "type": "TASK_UPDATED", "task_updated": updated }));
                    }
                    Some(_) => {}
                }
                view.tasks.insert(key, task.state);
            }
            let summary = (framework.active, framework.connected);
            match inner.view.frameworks.get(framework_id) {
                None => events.push(json!({
                    "type": "FRAMEWORK_ADDED",
                    "framework_added": { "framework": framework_v1(core, framework_id, framework) },
                })),
                Some((active, connected, _)) if (*active, *connected) != summary => events.push(json!({
                    "type": "FRAMEWORK_UPDATED",
                    "framework_updated": { "framework": framework_v1(core, framework_id, framework) },
                })),
                Some(_) => {}
            }
            let mut info = framework.info.clone();
            info.id = Some(framework_id.clone());
            view.frameworks.insert(framework_id.clone(), (summary.0, summary.1, info));
        }
        for (framework_id, (_, _, info)) in &inner.view.frameworks {
            if !view.frameworks.contains_key(framework_id) {
                events.push(json!({
                    "type": "FRAMEWORK_REMOVED",
                    "framework_removed": { "framework_info": framework_to_v1(info) },
                }));
            }
        }
        for (agent_id, agent) in core.agents() {
            if !inner.view.agents.contains(agent_id) {
                events.push(json!({ "type": "AGENT_ADDED", "agent_added": { "agent": agent_v1(core, agent_id, agent) } }));
            }
            view.agents.insert(agent_id.clone());
        }
        for agent_id in &inner.view.agents {
            if !view.agents.contains(agent_id) {
                events
                    .push(json!({ "type": "AGENT_REMOVED", "agent_removed": { "agent_id": id(agent_id) } }));
            }
        }
        inner.view = view;
        if events.is_empty() {
            return;
        }
        let records: Vec<Bytes> = events.iter().map(stream::record).collect();
        inner.subscribers.retain_mut(|subscriber| {
            let ok = records.iter().all(|r| subscriber.records.try_send(r.clone()).is_ok());
            if !ok {
                tracing::warn!(
                    "an operator subscriber fell too far behind its event stream: disconnecting it"
                );
                if let Some(kill) = subscriber.kill.take() {
                    let _ = kill.send(());
                }
            }
            ok
        });
        self.count.store(inner.subscribers.len(), Ordering::Relaxed);
    }
}

fn view_of(core: &Core) -> View {
    let mut view = View::default();
    for (framework_id, framework) in core.frameworks() {
        for task in framework.tasks.values().chain(framework.unreachable_tasks.values()) {
            view.tasks.insert((framework_id.clone(), task.info.task_id.clone()), task.state);
        }
        let mut info = framework.info.clone();
        info.id = Some(framework_id.clone());
        view.frameworks.insert(framework_id.clone(), (framework.active, framework.connected, info));
    }
    view.agents = core.agents().keys().cloned().collect();
    view
}
