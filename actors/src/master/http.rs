//! The master's HTTP endpoints on the node's port: `/state` (and `/master/state`)
//! shaped like Mesos's, `/tasks`, `/metrics/snapshot` (Mesos-style keys) and
//! `/metrics` (Prometheus text). Bad query parameters get a 400 with a JSON error.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, RawQuery};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_kernel::http::error_response;
use keel_kernel::ProcessRef;
use serde_json::{json, Value};

use super::Master;
use crate::allocator::Allocator;
use crate::registry::QuotaRecord;
use crate::resources::Resources;
use crate::task::Task;

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

impl Master {
    /// The `/state` document.
    pub fn state_json(&self, self_pid: &str) -> Value {
        let slaves: Vec<Value> = self
            .agents
            .values()
            .map(|a| {
                json!({
                    "id": a.id(),
                    "pid": a.pid.to_string(),
                    "hostname": a.info.hostname,
                    "registered_time": a.registered_secs,
                    "resources": resources_json(&a.info.resources),
                    "used_resources": resources_json(&a.used),
                    "offered_resources": resources_json(&a.offered),
                    "attributes": a.info.attributes,
                    "active": a.connected,
                    "version": a.version,
                })
            })
            .collect();
        let frameworks: Vec<Value> = self
            .frameworks
            .iter()
            .map(|(id, f)| {
                let used: Resources = f
                    .tasks
                    .values()
                    .filter(|t| !t.state.is_terminal())
                    .map(|t| t.info.resources.clone())
                    .sum();
                let offers: Vec<Value> = f
                    .offers
                    .iter()
                    .filter_map(|o| self.offers.get(o))
                    .map(|o| {
                        json!({
                            "id": o.offer.id, "slave_id": o.offer.agent_id, "framework_id": id,
                            "resources": resources_json(&o.offer.resources),
                        })
                    })
                    .collect();
                let offered: Resources = f
                    .offers
                    .iter()
                    .filter_map(|o| self.offers.get(o))
                    .map(|o| o.offer.resources.clone())
                    .sum();
                json!({
                    "id": id,
                    "name": f.info.name,
                    "pid": f.pid.as_ref().map(|p| p.to_string()),
                    "user": f.info.user,
                    "roles": f.info.effective_roles(),
                    "active": f.connected,
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
        let completed: Vec<Value> = self
            .completed_frameworks
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
            "pid": self_pid,
            "start_time": self.started_secs,
            "elected": self.recovered,
            "registry": self.registry.describe(),
            "activated_slaves": self.agents.values().filter(|a| a.connected).count(),
            "deactivated_slaves": self.agents.values().filter(|a| !a.connected).count(),
            "unreachable_slaves": self.unreachable_agents.keys().collect::<Vec<_>>(),
            "slaves": slaves,
            "frameworks": frameworks,
            "completed_frameworks": completed,
        })
    }
}

#[allow(clippy::result_large_err)]
async fn query<R: Send + 'static>(
    master: &ProcessRef<Master>,
    f: impl FnOnce(&mut Master, String) -> R + Send + 'static,
) -> Result<R, Response> {
    let pid = master.upid().to_string();
    master
        .query(move |m, _| f(m, pid))
        .await
        .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the master is not running"))
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

/// Parses Mesos-style durations such as `5secs`, `100ms`, `1mins`.
fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok().filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    let secs = match unit {
        "ns" => value / 1e9,
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "secs" | "s" => value,
        "mins" => value * 60.0,
        "hrs" => value * 3600.0,
        _ => return None,
    };
    Some(std::time::Duration::from_secs_f64(secs))
}

/// Paging of `/tasks`.
#[derive(Debug, serde::Deserialize)]
struct TasksParams {
    limit: Option<usize>,
    offset: Option<usize>,
    order: Option<String>,
}

/// The master's and the allocator's metrics together.
async fn all_metrics(
    master: &ProcessRef<Master>,
    allocator: &ProcessRef<Allocator>,
) -> Result<BTreeMap<String, f64>, Response> {
    let mut metrics = query(master, |m, _| m.metrics_snapshot()).await?;
    let allocator_metrics = allocator
        .query(|a, _| a.metrics_snapshot())
        .await
        .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the allocator is not running"))?;
    metrics.extend(allocator_metrics);
    Ok(metrics)
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

/// Reserves (`reserve`) or unreserves unallocated resources of an agent.
async fn operator_reservation(
    master: &ProcessRef<Master>,
    allocator: &ProcessRef<Allocator>,
    body: Result<Json<ReservationRequest>, axum::extract::rejection::JsonRejection>,
    reserve: bool,
) -> Result<Response, Response> {
    let Json(request) = body
        .map_err(|e| bad_request(format!("expected {{\"agent_id\", \"resources\"}}: {}", e.body_text())))?;
    let resources: Resources = request
        .resources
        .parse()
        .map_err(|e| bad_request(format!("resources {:?}: {e}", request.resources)))?;
    let dynamic = |r: &crate::resources::Resource| {
        matches!(r.reservation(), crate::resources::Reservation::Dynamic { .. })
    };
    if resources.is_empty() || !resources.iter().all(dynamic) {
        return Err(bad_request(format!(
            "{:?} must be dynamic reservations such as cpus(ads,dynamic):1",
            request.resources
        )));
    }
    let agent_id = crate::ids::AgentId(request.agent_id.clone());
    let known = {
        let agent_id = agent_id.clone();
        query(master, move |m, _| m.has_agent(&agent_id)).await?
    };
    if !known {
        return Err(error_response(
            StatusCode::NOT_FOUND,
            format!("agent {} is not registered", request.agent_id),
        ));
    }
    let unreserved = resources.without_reservations();
    let (from, to) = if reserve { (unreserved, resources) } else { (resources, unreserved) };
    let switched = {
        let (agent_id, from, to) = (agent_id.clone(), from.clone(), to.clone());
        allocator
            .query(move |a, _| a.update_available(&agent_id, &from, &to))
            .await
            .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the allocator is not running"))?
    };
    if !switched {
        return Err(error_response(
            StatusCode::CONFLICT,
            format!("{from} is not free on agent {} (it is offered, in use, or not there)", request.agent_id),
        ));
    }
    master
        .query(move |m, ctx| m.apply_reservation(ctx, &agent_id, &from, &to))
        .await
        .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the master is not running"))?
        .map_err(|e| error_response(StatusCode::CONFLICT, e))?;
    Ok(Json(json!({ "ok": true })).into_response())
}

fn bad_request(message: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

/// Runs an operator update on the master and waits until it is durable.
async fn operator_update(
    master: &ProcessRef<Master>,
    f: impl FnOnce(&mut Master, &mut keel_kernel::ProcessContext<'_, Master>, super::roles::Done) + Send + 'static,
) -> Result<Response, Response> {
    let (done, result) = tokio::sync::oneshot::channel();
    master
        .query(move |m, ctx| f(m, ctx, done))
        .await
        .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the master is not running"))?;
    match result.await {
        Ok(Ok(())) => Ok(Json(json!({ "ok": true })).into_response()),
        Ok(Err(e)) => Err(bad_request(e)),
        Err(_) => Err(error_response(StatusCode::SERVICE_UNAVAILABLE, "the master stopped")),
    }
}

/// Routes for weights, quotas and allocator explanations.
fn role_routes(master: ProcessRef<Master>, allocator: ProcessRef<Allocator>) -> Router {
    let get_master = master.clone();
    let get_weights = move || {
        let master = get_master.clone();
        async move {
            let weights = query(&master, |m, _| {
                m.weights()
                    .iter()
                    .map(|(role, weight)| WeightEntry { role: role.clone(), weight: *weight })
                    .collect::<Vec<_>>()
            })
            .await?;
            Ok::<_, Response>(Json(weights))
        }
    };
    let put_master = master.clone();
    let put_weights = move |body: Result<Json<Vec<WeightEntry>>, axum::extract::rejection::JsonRejection>| {
        let master = put_master.clone();
        async move {
            let Json(entries) = body.map_err(|e| {
                bad_request(format!("expected [{{\"role\": ..., \"weight\": ...}}]: {}", e.body_text()))
            })?;
            for entry in &entries {
                crate::resources::validate_role(&entry.role)
                    .map_err(|e| bad_request(format!("role {:?}: {e}", entry.role)))?;
                if !(entry.weight.is_finite() && entry.weight > 0.0) {
                    return Err(bad_request(format!("weight of {} must be a positive number", entry.role)));
                }
            }
            let weights: Vec<(String, f64)> = entries.into_iter().map(|e| (e.role, e.weight)).collect();
            operator_update(&master, move |m, ctx, done| m.update_weights(ctx, weights, done)).await
        }
    };
    let get_quota_master = master.clone();
    let get_quota = move || {
        let master = get_quota_master.clone();
        async move {
            let quotas = query(&master, |m, _| {
                m.quotas()
                    .iter()
                    .map(|(role, q)| {
                        json!({
                            "role": role,
                            "guarantee": q.guarantee.to_string(),
                            "limit": q.limit.as_ref().map(|l| l.to_string()),
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
            Ok::<_, Response>(Json(json!({ "quotas": quotas })))
        }
    };
    let post_quota_master = master.clone();
    let post_quota = move |body: Result<Json<QuotaRequest>, axum::extract::rejection::JsonRejection>| {
        let master = post_quota_master.clone();
        async move {
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
            let role = request.role;
            operator_update(&master, move |m, ctx, done| m.update_quota(ctx, role, Some(quota), done)).await
        }
    };
    let delete_quota_master = master.clone();
    let delete_quota = move |raw: RawQuery| {
        let master = delete_quota_master.clone();
        async move {
            let params = only_params(&raw.0, &["role"])?;
            let role = params.get("role").cloned().ok_or_else(|| bad_request("missing ?role="))?;
            operator_update(&master, move |m, ctx, done| m.update_quota(ctx, role, None, done)).await
        }
    };
    let (reserve_master, reserve_allocator) = (master.clone(), allocator.clone());
    let reserve = move |body: Result<Json<ReservationRequest>, axum::extract::rejection::JsonRejection>| {
        let (master, allocator) = (reserve_master.clone(), reserve_allocator.clone());
        async move { operator_reservation(&master, &allocator, body, true).await }
    };
    let (unreserve_master, unreserve_allocator) = (master.clone(), allocator.clone());
    let unreserve = move |body: Result<Json<ReservationRequest>, axum::extract::rejection::JsonRejection>| {
        let (master, allocator) = (unreserve_master.clone(), unreserve_allocator.clone());
        async move { operator_reservation(&master, &allocator, body, false).await }
    };
    let explain = move |raw: RawQuery| {
        let allocator = allocator.clone();
        async move {
            let params = only_params(&raw.0, &["framework"])?;
            let framework =
                params.get("framework").cloned().ok_or_else(|| bad_request("missing ?framework=ID"))?;
            let id = crate::ids::FrameworkId(framework.clone());
            let text =
                allocator.query(move |a, _| a.core().explain(&id).map(|e| e.to_string())).await.map_err(
                    |_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the allocator is not running"),
                )?;
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

/// The master's routes.
pub fn routes(master: ProcessRef<Master>, allocator: ProcessRef<Allocator>) -> Router {
    let roles = role_routes(master.clone(), allocator.clone());
    let metrics_allocator = allocator.clone();
    let state_master = master.clone();
    let state = move |raw: RawQuery| {
        let master = state_master.clone();
        async move {
            only_params(&raw.0, &[])?;
            let state = query(&master, |m, pid| m.state_json(&pid)).await?;
            Ok::<_, Response>(Json(state))
        }
    };
    let snapshot_master = master.clone();
    let snapshot_allocator = metrics_allocator.clone();
    let snapshot = move |raw: RawQuery| {
        let master = snapshot_master.clone();
        let allocator = snapshot_allocator.clone();
        async move {
            let params = only_params(&raw.0, &["timeout"])?;
            if let Some(timeout) = params.get("timeout") {
                if parse_duration(timeout).is_none() {
                    return Err(error_response(
                        StatusCode::BAD_REQUEST,
                        format!("invalid timeout {timeout:?}: expected a duration such as 5secs or 100ms"),
                    ));
                }
            }
            let metrics = all_metrics(&master, &allocator).await?;
            Ok::<_, Response>(Json(metrics))
        }
    };
    let prometheus_master = master.clone();
    let prometheus = move |raw: RawQuery| {
        let master = prometheus_master.clone();
        let allocator = metrics_allocator.clone();
        async move {
            only_params(&raw.0, &[])?;
            let metrics = all_metrics(&master, &allocator).await?;
            Ok::<_, Response>(prometheus_text(&metrics).into_response())
        }
    };
    let tasks_master = master.clone();
    let tasks = move |params: Result<Query<TasksParams>, axum::extract::rejection::QueryRejection>| {
        let master = tasks_master.clone();
        async move {
            let Query(params) = params.map_err(|e| error_response(StatusCode::BAD_REQUEST, e.body_text()))?;
            let descending = match params.order.as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(error_response(
                        StatusCode::BAD_REQUEST,
                        format!("order must be asc or desc, not {other:?}"),
                    ))
                }
            };
            let limit = params.limit.unwrap_or(100);
            let offset = params.offset.unwrap_or(0);
            let mut all = query(&master, |m, _| {
                let mut tasks: Vec<(f64, Value)> = Vec::new();
                let live = m.frameworks.values().flat_map(|f| {
                    f.tasks.values().chain(f.unreachable_tasks.values()).chain(f.completed_tasks.iter())
                });
                let removed = m.completed_frameworks.iter().flat_map(|(_, tasks)| tasks.iter());
                for t in live.chain(removed) {
                    tasks.push((t.status.as_ref().map(|s| s.timestamp).unwrap_or(0.0), task_json(t)));
                }
                tasks
            })
            .await?;
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
        .route("/master/state", get(state))
        .route("/tasks", get(tasks))
        .route("/metrics/snapshot", get(snapshot))
        .route("/metrics", get(prometheus))
        .merge(roles)
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
