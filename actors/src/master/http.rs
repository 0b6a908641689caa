//! The master's HTTP endpoints on the node's port: `/state` (and `/master/state`)
//! shaped like Mesos's, `/tasks`, `/metrics/snapshot` (Mesos-style keys) and
//! `/metrics` (Prometheus text). Bad query parameters get a 400 with a JSON error.
//!
//! Endpoints serve a [`MasterSlot`]: the leading master, or (a standby master in a
//! high-availability cluster) the standby's view: `/state` and the metrics say who
//! leads with `master/elected` 0, and every other endpoint answers 307 to the same
//! path on the leader, or 503 while no leader is known.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Query, RawQuery};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_core::master::{Master as Core, OperatorCall, OperatorError};
use keel_kernel::http::error_response;
use keel_kernel::Upid;
use serde_json::{json, Value};

use super::MasterHandle;
use crate::allocator::lock;
use crate::registry::QuotaRecord;
use crate::resources::Resources;
use crate::shell::LeaderWatch;
use crate::task::Task;

/// What the master's endpoints serve: the leading master, or a standby's view of
/// who leads. A standby becomes the leader in place ([`MasterSlot::lead`]).
#[derive(Clone)]
pub struct MasterSlot(Arc<RwLock<Slot>>);

#[derive(Clone)]
enum Slot {
    Leading(MasterHandle),
    Standby { me: Upid, leader: LeaderWatch },
}

impl std::fmt::Debug for MasterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.read() {
            Slot::Leading(handle) => f.debug_tuple("Leading").field(handle).finish(),
            Slot::Standby { me, .. } => f.debug_struct("Standby").field("me", me).finish(),
        }
    }
}

impl MasterSlot {
    /// Endpoints of a master that leads from the start (no election).
    pub fn leading(handle: MasterHandle) -> MasterSlot {
        MasterSlot(Arc::new(RwLock::new(Slot::Leading(handle))))
    }

    /// Endpoints of a standby master `me` that follows `leader`.
    pub fn standby(me: Upid, leader: LeaderWatch) -> MasterSlot {
        MasterSlot(Arc::new(RwLock::new(Slot::Standby { me, leader })))
    }

    /// The standby was elected: its endpoints serve `handle` from now on.
    pub fn lead(&self, handle: MasterHandle) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Slot::Leading(handle);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slot> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The leading master, or the answer a standby gives instead: 307 to the same
    /// path and query on the leader, 503 when no leader is known (or it is us,
    /// not serving yet).
    #[allow(clippy::result_large_err)] // the error is the HTTP response itself
    pub(crate) fn get(&self, uri: &Uri) -> Result<MasterHandle, Response> {
        match &*self.read() {
            Slot::Leading(handle) => Ok(handle.clone()),
            Slot::Standby { me, leader } => Err(redirect_to_leader(me, leader, uri)),
        }
    }
}

fn redirect_to_leader(me: &Upid, leader: &LeaderWatch, uri: &Uri) -> Response {
    let leader = leader.borrow().clone();
    match leader {
        Some(leader) if &leader.upid != me => {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = format!("http://{}{path}", leader.upid.node());
            let body =
                Json(json!({ "error": "this master is a standby", "leader": leader.upid.to_string() }));
            (StatusCode::TEMPORARY_REDIRECT, [(axum::http::header::LOCATION, location)], body).into_response()
        }
        _ => error_response(StatusCode::SERVICE_UNAVAILABLE, "no leading master is known yet"),
    }
}

/// A standby's `/state`: who it is, who leads, and nothing of the cluster.
fn standby_state(me: &Upid, leader: &LeaderWatch) -> Value {
    let leader = leader.borrow().clone();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": me.to_string(),
        "elected": false,
        "phase": "Standby",
        "leader": leader.as_ref().map(|l| l.upid.to_string()),
        "leader_info": leader.as_ref().map(|l| json!({
            "pid": l.upid.to_string(),
            "hostname": l.upid.node().host(),
            "port": l.upid.node().port(),
            "epoch": l.epoch,
        })),
        "slaves": [],
        "frameworks": [],
        "completed_frameworks": [],
    })
}

/// A standby's metrics: it is not elected.
fn standby_metrics() -> BTreeMap<String, f64> {
    BTreeMap::from([("master/elected".to_string(), 0.0)])
}

/// Resources as Mesos's JSON shows them: scalars by name, ranges as text.
pub fn resources_json(resources: &Resources) -> Value {
    let mut out = serde_json::Map::new();
    for name in ["cpus", "mem", "disk", "gpus"] {
        out.insert(name.to_string(), json!(resources.scalar(name)));
    }
    for name in resources.names() {
        let ranges = resources.ranges(name);
        if !ranges.is_empty() {
            let text: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            out.insert(name.to_string(), json!(format!("[{}]", text.join(", "))));
        } else if !out.contains_key(name) {
            out.insert(name.to_string(), json!(resources.scalar(name)));
        }
    }
    Value::Object(out)
}

/// A task as Mesos's JSON shows it.
pub fn task_json(task: &Task) -> Value {
    json!({
        "id": task.info.task_id,
        "name": task.info.name,
        "framework_id": task.framework_id,
        "executor_id": task.executor_id,
        "slave_id": task.info.agent_id,
        "agent_id": task.info.agent_id,
        "state": task.state,
        "resources": resources_json(&task.info.resources),
        "statuses": task.status.iter().map(|s| json!({
            "state": s.state, "timestamp": s.timestamp, "reason": s.reason, "message": s.message,
        })).collect::<Vec<_>>(),
        "exit_code": task.status.as_ref().and_then(|s| s.exit_code),
    })
}

/// The `/state` document.
pub fn state_json(core: &Core, registry: &str) -> Value {
    let slaves: Vec<Value> = core
        .agents()
        .iter()
        .map(|(id, a)| {
            json!({
                "id": id,
                "pid": a.pid.to_string(),
                "hostname": a.info.hostname,
                "registered_time": a.registered_secs,
                "resources": resources_json(&a.info.resources),
                "used_resources": resources_json(&core.used_on(id)),
                "offered_resources": resources_json(&core.offered_on(id)),
                "attributes": a.info.attributes,
                "active": a.active,
                "connected": a.connected,
                "version": a.version,
            })
        })
        .collect();
    let frameworks: Vec<Value> = core
        .frameworks()
        .iter()
        .map(|(id, f)| {
            let used: Resources =
                f.tasks.values().filter(|t| !t.state.is_terminal()).map(|t| t.info.resources.clone()).sum();
            let offers: Vec<Value> = f
                .offers
                .iter()
                .filter_map(|o| core.offers().get(o))
                .map(|o| {
                    json!({
                        "id": o.offer.id, "slave_id": o.offer.agent_id, "framework_id": id,
                        "resources": resources_json(&o.offer.resources),
                    })
                })
                .collect();
            let offered: Resources =
                f.offers.iter().filter_map(|o| core.offers().get(o)).map(|o| o.offer.resources.clone()).sum();
            json!({
                "id": id,
                "name": f.info.name,
                "pid": f.pid.as_ref().map(|p| p.to_string()),
                "user": f.info.user,
                "roles": f.info.effective_roles(),
                "active": f.active,
                "connected": f.connected,
                "failover_timeout": f.info.failover_timeout_secs,
                "checkpoint": f.info.checkpoint,
                "capabilities": f.info.capabilities,
                "registered_time": f.registered_secs,
                "resources": resources_json(&used),
                "used_resources": resources_json(&used),
                "offered_resources": resources_json(&offered),
                "tasks": f.tasks.values().map(task_json).collect::<Vec<_>>(),
                "unreachable_tasks": f.unreachable_tasks.values().map(task_json).collect::<Vec<_>>(),
                "completed_tasks": f.completed_tasks.iter().map(task_json).collect::<Vec<_>>(),
                "offers": offers,
                "executors": f.executors.iter().flat_map(|(agent, es)| es.values().map(move |e| json!({
                    "executor_id": e.executor_id, "slave_id": agent, "name": e.name,
                    "resources": resources_json(&e.resources),
                }))).collect::<Vec<_>>(),
            })
        })
        .collect();
    let completed: Vec<Value> = core
        .completed_frameworks()
        .iter()
        .map(|(info, tasks)| {
            json!({
                "id": info.id, "name": info.name, "active": false,
                "completed_tasks": tasks.iter().map(task_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": core.upid().to_string(),
        "start_time": core.started_secs(),
        "elected": core.phase() == super::Phase::Serving,
        "phase": format!("{:?}", core.phase()),
        "term": core.term().0,
        "leader": core.upid().to_string(),
        "registry": registry,
        "activated_slaves": core.agents().values().filter(|a| a.active).count(),
        "deactivated_slaves": core.agents().values().filter(|a| !a.active).count(),
        "unreachable_slaves": core.unreachable_agents().keys().collect::<Vec<_>>(),
        "recovered_slaves": core.recovered_agents().keys().collect::<Vec<_>>(),
        "slaves": slaves,
        "frameworks": frameworks,
        "completed_frameworks": completed,
    })
}

/// Rejects query parameters an endpoint does not take.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself
fn only_params(raw: &Option<String>, allowed: &[&str]) -> Result<HashMap<String, String>, Response> {
    let mut out = HashMap::new();
    let Some(raw) = raw else { return Ok(out) };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed.contains(&key) {
            let allowed = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                format!("unknown query parameter {key:?} (allowed: {allowed})"),
            ));
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

/// Parses Mesos-style durations such as `5secs`, `100ms`, `1mins`; `None` for
/// anything that is not a duration between zero and a year.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let secs = match unit {
        "ns" => value / 1e9,
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "secs" | "s" => value,
        "mins" => value * 60.0,
        "hrs" => value * 3600.0,
        _ => return None,
    };
    keel_proto::time::duration_from_secs(secs)
}

/// Paging of `/tasks`.
#[derive(Debug, serde::Deserialize)]
struct TasksParams {
    /// Negative (Mesos's tools send `-1`): all of them.
    limit: Option<i64>,
    offset: Option<usize>,
    order: Option<String>,
}

/// Locks `shared` within `timeout` (polling: the lock is held for microseconds at
/// a time), or gives up.
async fn lock_within<T>(
    shared: &std::sync::Mutex<T>,
    timeout: Duration,
) -> Option<std::sync::MutexGuard<'_, T>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match shared.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The master's and the allocator's metrics together; with a timeout, those that
/// could not be read in time are left out (as Mesos does).
pub(crate) async fn all_metrics(handle: &MasterHandle, timeout: Option<Duration>) -> BTreeMap<String, f64> {
    let timeout = timeout.unwrap_or(Duration::from_secs(5));
    let mut metrics = BTreeMap::new();
    if let Some(core) = lock_within(&handle.core, timeout).await {
        metrics.extend(core.metrics_snapshot(crate::shell::now_secs()));
    }
    if let Some(allocator) = lock_within(&handle.allocator_state, timeout).await {
        metrics.extend(allocator.metrics_snapshot());
    }
    // Mesos's v1 APIs: open scheduler streams, events for streams already gone, and
    // subscribers disconnected for falling behind.
    let (dropped, slow) = handle.v1.counters();
    metrics.insert("master/v1/scheduler_streams".into(), handle.v1.open_streams() as f64);
    metrics.insert("master/v1/events_dropped".into(), dropped as f64);
    metrics.insert("master/v1/slow_subscribers_disconnected".into(), slow as f64);
    metrics
}

/// One weight in `PUT /weights`.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct WeightEntry {
    role: String,
    weight: f64,
}

/// A quota in `POST /quota`: resources in the text syntax.
#[derive(Debug, serde::Deserialize)]
struct QuotaRequest {
    role: String,
    #[serde(default)]
    guarantee: String,
    #[serde(default)]
    limit: Option<String>,
}

/// An operator reservation: `POST /reserve` and `POST /unreserve`.
#[derive(Debug, serde::Deserialize)]
struct ReservationRequest {
    agent_id: String,
    resources: String,
}

fn bad_request(message: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

/// Hands an operator request to the master and waits for its answer (given once
/// what it changes is durable).
async fn operator(handle: &MasterHandle, call: OperatorCall) -> Result<Response, Response> {
    let unavailable = |m: &str| error_response(StatusCode::SERVICE_UNAVAILABLE, m.to_string());
    let answer = handle
        .master
        .query(move |m, ctx| m.operator(ctx, call))
        .await
        .map_err(|_| unavailable("the master is not running"))?;
    match answer.await {
        Ok(Ok(())) => Ok(Json(json!({ "ok": true })).into_response()),
        Ok(Err(OperatorError::Invalid(e))) => Err(bad_request(e)),
        Ok(Err(OperatorError::NotFound(e))) => Err(error_response(StatusCode::NOT_FOUND, e)),
        Ok(Err(OperatorError::Conflict(e))) => Err(error_response(StatusCode::CONFLICT, e)),
        Ok(Err(OperatorError::Unavailable(e))) => Err(unavailable(&e)),
        Err(_) => Err(unavailable("the master stopped")),
    }
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// Routes for weights, quotas, reservations and allocator explanations.
fn role_routes(slot: MasterSlot) -> Router {
    let sl = slot.clone();
    let get_weights = move |uri: Uri| {
        let slot = sl.clone();
        async move {
            let h = slot.get(&uri)?;
            let weights: Vec<WeightEntry> = h.read(|core| {
                core.weights()
                    .iter()
                    .map(|(role, weight)| WeightEntry { role: role.clone(), weight: *weight })
                    .collect()
            });
            Ok::<_, Response>(Json(weights))
        }
    };
    let sl = slot.clone();
    let put_weights = move |uri: Uri, body: JsonBody<Vec<WeightEntry>>| {
        let slot = sl.clone();
        async move {
            let h = slot.get(&uri)?;
            let Json(entries) = body.map_err(|e| {
                bad_request(format!("expected [{{\"role\": ..., \"weight\": ...}}]: {}", e.body_text()))
            })?;
            if entries.len() > 10_000 {
                return Err(bad_request("at most 10000 weights per request"));
            }
            let weights: Vec<(String, f64)> = entries.into_iter().map(|e| (e.role, e.weight)).collect();
            operator(&h, OperatorCall::SetWeights(weights)).await
        }
    };
    let sl = slot.clone();
    let get_quota = move |uri: Uri| {
        let slot = sl.clone();
        async move {
            let h = slot.get(&uri)?;
            let quotas: Vec<Value> = h.read(|core| {
                core.quotas()
                    .iter()
                    .map(|(role, q)| {
                        json!({
                            "role": role,
                            "guarantee": q.guarantee.to_string(),
                            "limit": q.limit.as_ref().map(|l| l.to_string()),
                        })
                    })
                    .collect()
            });
            Ok::<_, Response>(Json(json!({ "quotas": quotas })))
        }
    };
    let sl = slot.clone();
    let post_quota = move |uri: Uri, body: JsonBody<QuotaRequest>| {
        let slot = sl.clone();
        async move {
            let h = slot.get(&uri)?;
            let Json(request) = body.map_err(|e| {
                bad_request(format!("expected {{\"role\", \"guarantee\", \"limit\"}}: {}", e.body_text()))
            })?;
            let guarantee: Resources = request
                .guarantee
                .parse()
                .map_err(|e| bad_request(format!("guarantee {:?}: {e}", request.guarantee)))?;
            let limit = match &request.limit {
                Some(text) => {
                    Some(text.parse::<Resources>().map_err(|e| bad_request(format!("limit {text:?}: {e}")))?)
                }
                None => None,
            };
            let quota = QuotaRecord { guarantee, limit };
            operator(&h, OperatorCall::SetQuota { role: request.role, quota }).await
        }
    };
    let sl = slot.clone();
    let delete_quota = move |uri: Uri, raw: RawQuery| {
        let slot = sl.clone();
        async move {
            let h = slot.get(&uri)?;
            let params = only_params(&raw.0, &["role"])?;
            let role = params.get("role").cloned().ok_or_else(|| bad_request("missing ?role="))?;
            operator(&h, OperatorCall::RemoveQuota { role }).await
        }
    };
    let reservation = |slot: MasterSlot, reserve: bool| {
        move |uri: Uri, body: JsonBody<ReservationRequest>| {
            let slot = slot.clone();
            async move {
                let h = slot.get(&uri)?;
                let Json(request) = body.map_err(|e| {
                    bad_request(format!("expected {{\"agent_id\", \"resources\"}}: {}", e.body_text()))
                })?;
                let resources: Resources = request
                    .resources
                    .parse()
                    .map_err(|e| bad_request(format!("resources {:?}: {e}", request.resources)))?;
                let agent_id = crate::ids::AgentId(request.agent_id);
                operator(&h, OperatorCall::Reservation { agent_id, resources, reserve }).await
            }
        }
    };
    let reserve = reservation(slot.clone(), true);
    let unreserve = reservation(slot.clone(), false);
    let sl = slot.clone();
    let explain = move |uri: Uri, raw: RawQuery| {
        let slot = sl.clone();
        async move {
            let h = slot.get(&uri)?;
            let params = only_params(&raw.0, &["framework"])?;
            let framework =
                params.get("framework").cloned().ok_or_else(|| bad_request("missing ?framework=ID"))?;
            let id = crate::ids::FrameworkId(framework.clone());
            let text = lock(&h.allocator_state).machine.core().explain(&id).map(|e| e.to_string());
            match text {
                Some(text) => Ok(Json(json!({ "framework_id": framework, "explanation": text }))),
                None => Err(error_response(
                    StatusCode::NOT_FOUND,
                    format!("the allocator knows no framework {framework}"),
                )),
            }
        }
    };
    Router::new()
        .route("/weights", get(get_weights).put(put_weights))
        .route("/quota", get(get_quota).post(post_quota).delete(delete_quota))
        .route("/allocator/explain", get(explain))
        .route("/reserve", axum::routing::post(reserve))
        .route("/unreserve", axum::routing::post(unreserve))
}

/// The routes of a master that leads from the start.
pub fn routes(handle: MasterHandle) -> Router {
    routes_for(MasterSlot::leading(handle))
}

/// The master's routes, serving whatever `slot` holds.
pub fn routes_for(slot: MasterSlot) -> Router {
    let roles = role_routes(slot.clone());
    let sl = slot.clone();
    let state = move |raw: RawQuery| {
        let slot = sl.clone();
        async move {
            only_params(&raw.0, &[])?;
            let state = match &*slot.read() {
                Slot::Leading(h) => h.read(|core| state_json(core, &h.registry)),
                Slot::Standby { me, leader } => standby_state(me, leader),
            };
            Ok::<_, Response>(Json(state))
        }
    };
    let sl = slot.clone();
    let snapshot = move |raw: RawQuery| {
        let slot = sl.clone();
        async move {
            let params = only_params(&raw.0, &["timeout"])?;
            let timeout = match params.get("timeout") {
                Some(text) => Some(parse_duration(text).ok_or_else(|| {
                    bad_request(format!(
                        "invalid timeout {text:?}: expected a duration of at most a year, such as 5secs or 100ms"
                    ))
                })?),
                None => None,
            };
            let leading = slot.get(&Uri::from_static("/"));
            let metrics = match leading {
                Ok(h) => all_metrics(&h, timeout).await,
                Err(_) => standby_metrics(),
            };
            Ok::<_, Response>(Json(metrics))
        }
    };
    let sl = slot.clone();
    let prometheus = move |raw: RawQuery| {
        let slot = sl.clone();
        async move {
            only_params(&raw.0, &[])?;
            let metrics = match slot.get(&Uri::from_static("/")) {
                Ok(h) => all_metrics(&h, None).await,
                Err(_) => standby_metrics(),
            };
            Ok::<_, Response>(prometheus_text(&metrics).into_response())
        }
    };
    let sl = slot.clone();
    let tasks =
        move |uri: Uri, params: Result<Query<TasksParams>, axum::extract::rejection::QueryRejection>| {
            let slot = sl.clone();
            async move {
                let h = slot.get(&uri)?;
                let Query(params) =
                    params.map_err(|e| error_response(StatusCode::BAD_REQUEST, e.body_text()))?;
                let descending = match params.order.as_deref() {
                    None | Some("asc") => false,
                    Some("desc") => true,
                    Some(other) => {
                        return Err(bad_request(format!("order must be asc or desc, not {other:?}")))
                    }
                };
                let limit = match params.limit {
                    None => 100,
                    Some(limit) if limit < 0 => usize::MAX,
                    Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
                };
                let offset = params.offset.unwrap_or(0);
                let mut all: Vec<(f64, Value)> = h.read(|core| {
                    let live = core.frameworks().values().flat_map(|f| {
                        f.tasks.values().chain(f.unreachable_tasks.values()).chain(f.completed_tasks.iter())
                    });
                    let removed = core.completed_frameworks().iter().flat_map(|(_, tasks)| tasks.iter());
                    live.chain(removed)
                        .map(|t| (t.status.as_ref().map(|s| s.timestamp).unwrap_or(0.0), task_json(t)))
                        .collect()
                });
                all.sort_by(|a, b| a.0.total_cmp(&b.0));
                if descending {
                    all.reverse();
                }
                let page: Vec<Value> = all.into_iter().skip(offset).take(limit).map(|(_, v)| v).collect();
                Ok::<_, Response>(Json(json!({ "tasks": page })))
            }
        };
    Router::new()
        .route("/state", get(state.clone()))
        .route("/master/state", get(state.clone()))
        // Mesos's paths with a trailing `/` (libprocess strips it) and the master's
        // prefix, for Mesos tools.
        .route("/state/", get(state.clone()))
        .route("/master/state/", get(state))
        .route("/tasks/", get(tasks.clone()))
        .route("/master/tasks", get(tasks.clone()))
        .route("/master/tasks/", get(tasks.clone()))
        .route("/tasks", get(tasks))
        .route("/metrics/snapshot", get(snapshot))
        .route("/metrics", get(prometheus))
        .merge(roles)
        // Mesos's v1 APIs and the endpoints Mesos tools read.
        .merge(crate::v1::endpoints::master_routes(slot.clone()))
}

/// Renders a metrics snapshot as Prometheus text (`master/tasks_running` becomes
/// `keel_master_tasks_running`).
pub fn prometheus_text(metrics: &BTreeMap<String, f64>) -> String {
    let mut out = String::new();
    for (key, value) in metrics {
        let name: String = format!("keel_{key}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
            .collect();
        out.push_str(&format!("# TYPE {name} gauge\n{name} {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_mesos() {
        assert_eq!(parse_duration("5secs"), Some(std::time::Duration::from_secs(5)));
        assert_eq!(parse_duration("100ms"), Some(std::time::Duration::from_millis(100)));
        assert_eq!(parse_duration("1.5mins"), Some(std::time::Duration::from_secs(90)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("secs"), None);
        assert_eq!(parse_duration("-1secs"), None);
        // Absurd values are refused, never a panic.
        assert_eq!(parse_duration("100000000000000000000000secs"), None);
        assert_eq!(parse_duration("1e400secs"), None);
        assert_eq!(parse_duration("366000hrs"), None);
    }

    #[test]
    fn unknown_parameters_are_rejected() {
        assert!(only_params(&Some("timeout=5secs".into()), &["timeout"]).is_ok());
        assert!(only_params(&Some("jsonp=x".into()), &["timeout"]).is_err());
        assert!(only_params(&None, &[]).is_ok());
    }

    #[test]
    fn prometheus_names_are_sanitised() {
        let mut m = BTreeMap::new();
        m.insert("master/tasks_running".to_string(), 3.0);
        assert!(prometheus_text(&m).contains("keel_master_tasks_running 3\n"));
    }
}
