//! The agent's HTTP endpoints on its node's port: `/state` (and `/slave(1)/state`'s
//! modern name `/agent/state`), `/metrics/snapshot` with Mesos-style keys,
//! `/monitor/statistics` (per-executor resource usage) and the files API limited to
//! sandboxes, `/files/browse?path=DIR` and `/files/read?path=FILE&offset=N&length=M`
//! (see `files.rs`). Bad query parameters get a 400 with a JSON error.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use keel_kernel::http::error_response;
use keel_kernel::ProcessRef;
use serde_json::{json, Value};

use super::files::{FilesError, SandboxTree};
use super::{Agent, ExecutorKind};
use crate::master::http::resources_json;
use crate::resources::Resources;

impl Agent {
    /// The `/state` document.
    pub fn state_json(&self, pid: &str) -> Value {
        let mut used = Resources::default();
        let core = &self.core;
        let frameworks: Vec<Value> = core
            .frameworks()
            .iter()
            .map(|(framework_id, framework)| {
                let executors: Vec<Value> = framework
                    .executors
                    .iter()
                    .map(|(executor_id, executor)| {
                        let tasks: Vec<Value> = executor
                            .tasks
                            .iter()
                            .map(|(task_id, task)| {
                                if !task.state.is_terminal() {
                                    used += task.info.resources.clone();
                                }
                                json!({
                                    "id": task_id, "name": task.info.name, "state": task.state,
                                    "framework_id": framework_id, "executor_id": executor_id,
                                    "resources": resources_json(&task.info.resources),
                                    "pending_status_updates": task.stream.pending.len(),
                                })
                            })
                            .collect();
                        let (kind, pid) = match &executor.kind {
                            ExecutorKind::Command => ("command", None),
                            ExecutorKind::Custom { pid, .. } => {
                                ("custom", pid.as_ref().map(|p| p.to_string()))
                            }
                        };
                        json!({
                            "id": executor_id, "type": kind, "pid": pid,
                            "container": executor.container, "directory": executor.sandbox,
                            "terminated": executor.terminated, "tasks": tasks,
                        })
                    })
                    .collect();
                json!({
                    "id": framework_id, "name": framework.info.name,
                    "scheduler": framework.scheduler.to_string(), "checkpoint": framework.info.checkpoint,
                    "shutting_down": framework.shutting_down, "executors": executors,
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": pid,
            "id": core.agent_id(),
            "hostname": core.config().info.hostname,
            "master": core.config().master.to_string(),
            "state": core.connection(),
            "epoch": core.epoch(),
            "start_time": core.started_secs(),
            "resources": resources_json(&core.config().info.resources),
            "used_resources": resources_json(&used),
            "attributes": core.config().info.attributes,
            "work_dir": self.config.work_dir,
            "containerizer": self.config.containerizer.name(),
            "frameworks": frameworks,
        })
    }

    /// The metrics snapshot.
    pub fn metrics_snapshot(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: f64| {
            out.insert(k.to_string(), v);
        };
        let core = &self.core;
        let metrics = core.metrics();
        let tasks =
            core.frameworks().values().flat_map(|f| f.executors.values()).flat_map(|e| e.tasks.values());
        let running = tasks.clone().filter(|t| t.state == crate::task::TaskState::Running).count();
        let staging = tasks.clone().filter(|t| t.state == crate::task::TaskState::Staging).count();
        let pending: usize = tasks.map(|t| t.stream.pending.len()).sum();
        put("slave/registered", if core.connection() == super::AgentState::Registered { 1.0 } else { 0.0 });
        put("slave/uptime_secs", crate::shell::now_secs() - core.started_secs());
        put("slave/tasks_running", running as f64);
        put("slave/tasks_staging", staging as f64);
        for state in ["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST"] {
            let key = format!("slave/tasks_{}", state.trim_start_matches("TASK_").to_lowercase());
            put(&key, *metrics.terminal.get(state).unwrap_or(&0) as f64);
        }
        put("slave/tasks_launched", metrics.tasks_launched as f64);
        put("slave/frameworks_active", core.frameworks().len() as f64);
        put("slave/executors_running", core.containers().len() as f64);
        put("slave/executors_terminated", metrics.executors_terminated as f64);
        put("slave/container_launch_errors", metrics.container_launch_errors as f64);
        put("slave/status_updates_pending", pending as f64);
        put("slave/valid_status_updates", metrics.status_updates as f64);
        put("slave/status_update_retries", metrics.status_update_retries as f64);
        put("slave/invalid_status_update_acknowledgements", metrics.invalid_acknowledgements as f64);
        put("slave/invalid_senders", metrics.invalid_senders as f64);
        put("slave/unknown_targets", metrics.unknown_targets as f64);
        put("slave/stale_launches", metrics.stale_launches as f64);
        put("slave/cpus_total", core.config().info.resources.cpus());
        put("slave/mem_total", core.config().info.resources.mem_mb());
        put("slave/disk_total", core.config().info.resources.disk_mb());
        put("gc/path_removals_succeeded", self.sandbox_gc.removals_succeeded as f64);
        put("gc/path_removals_failed", self.sandbox_gc.removals_failed as f64);
        put("gc/path_removals_pending", self.sandbox_gc.pending() as f64);
        out
    }

    /// The running containers, for `/monitor/statistics`: container, framework,
    /// executor, source (the task id for a command task, the executor id otherwise)
    /// and the executor's name.
    fn monitored_containers(&self) -> Vec<Monitored> {
        let mut out: Vec<Monitored> = self
            .core
            .containers()
            .iter()
            .map(|(container, (framework_id, executor_id))| {
                let executor =
                    self.core.frameworks().get(framework_id).and_then(|f| f.executors.get(executor_id));
                let name = match executor.map(|e| &e.kind) {
                    Some(ExecutorKind::Custom { info, .. }) => info.name.clone(),
                    Some(ExecutorKind::Command) => {
                        executor.and_then(|e| e.tasks.values().next()).map(|t| t.info.name.clone())
                    }
                    None => None,
                };
                Monitored {
                    container: keel_isolation::ContainerId(container.0.clone()),
                    framework_id: framework_id.to_string(),
                    executor_id: executor_id.to_string(),
                    source: executor_id.to_string(),
                    name: name.unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.framework_id, &a.executor_id).cmp(&(&b.framework_id, &b.executor_id)));
        out
    }
}

/// A running container, as `/monitor/statistics` names it.
struct Monitored {
    container: keel_isolation::ContainerId,
    framework_id: String,
    executor_id: String,
    source: String,
    name: String,
}

/// Decodes a percent-encoded query component (`+` is a space) into bytes.
fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
                out.push(hex);
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    Ok(out)
}

/// Decodes the query string, rejecting unknown, repeated or badly encoded parameters.
#[allow(clippy::result_large_err)] // the error is the HTTP response itself
fn params(raw: &Option<String>, allowed: &[&str]) -> Result<HashMap<String, Vec<u8>>, Response> {
    let bad = |message: String| error_response(StatusCode::BAD_REQUEST, message);
    let mut out = HashMap::new();
    let Some(raw) = raw else { return Ok(out) };
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = String::from_utf8(percent_decode(key).map_err(bad)?)
            .map_err(|_| bad("query parameter names must be UTF-8".into()))?;
        if !allowed.contains(&key.as_str()) {
            let allowed = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
            return Err(bad(format!("unknown query parameter {key:?} (allowed: {allowed})")));
        }
        let value = percent_decode(value).map_err(bad)?;
        if out.insert(key.clone(), value).is_some() {
            return Err(bad(format!("query parameter {key:?} given twice")));
        }
    }
    Ok(out)
}

/// The `path` parameter: required, no NUL byte.
#[allow(clippy::result_large_err)]
fn path_param(params: &mut HashMap<String, Vec<u8>>) -> Result<PathBuf, Response> {
    let path = params
        .remove("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| error_response(StatusCode::BAD_REQUEST, "missing query parameter \"path\""))?;
    if path.contains(&0) {
        return Err(error_response(StatusCode::BAD_REQUEST, "path contains a NUL byte"));
    }
    Ok(PathBuf::from(OsString::from_vec(path)))
}

/// An integer parameter: `None` when absent or -1, an error when not a number or
/// negative (other than -1 where `minus_one_means_none`).
#[allow(clippy::result_large_err)]
fn number_param(
    params: &HashMap<String, Vec<u8>>,
    name: &str,
    minus_one_means_none: bool,
) -> Result<Option<u64>, Response> {
    let Some(value) = params.get(name) else { return Ok(None) };
    let text = String::from_utf8_lossy(value);
    let bad = |why: &str| error_response(StatusCode::BAD_REQUEST, format!("{name} {why}, got {text:?}"));
    let number: i64 = text.trim().parse().map_err(|_| bad("must be an integer"))?;
    match number {
        -1 if minus_one_means_none => Ok(None),
        n if n < 0 => {
            Err(bad(if minus_one_means_none { "must be -1 or at least 0" } else { "must not be negative" }))
        }
        n => Ok(Some(n as u64)),
    }
}

fn files_error(error: FilesError) -> Response {
    let status = match &error {
        FilesError::BadRequest(_) => StatusCode::BAD_REQUEST,
        FilesError::Forbidden(_) => StatusCode::FORBIDDEN,
        FilesError::NotFound(_) => StatusCode::NOT_FOUND,
        FilesError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, error.to_string())
}

/// Runs a files operation on a blocking thread against the agent's sandbox tree.
async fn with_sandboxes<R: Send + 'static>(
    agent: &ProcessRef<Agent>,
    operation: impl FnOnce(&SandboxTree) -> Result<R, FilesError> + Send + 'static,
) -> Result<R, Response> {
    let work_dir = agent
        .query(|a, _| a.config.work_dir.clone())
        .await
        .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the agent is not running"))?;
    tokio::task::spawn_blocking(move || SandboxTree::new(&work_dir).and_then(|tree| operation(&tree)))
        .await
        .map_err(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("files request failed: {e}")))?
        .map_err(files_error)
}

/// `GET /files/browse?path=DIR`: the directory's entries.
async fn browse(agent: ProcessRef<Agent>, raw: Option<String>) -> Result<Json<Value>, Response> {
    let mut params = params(&raw, &["path"])?;
    let path = path_param(&mut params)?;
    let entries = with_sandboxes(&agent, move |tree| tree.browse(&path)).await?;
    Ok(Json(json!(entries)))
}

/// `GET /files/read?path=FILE&offset=N&length=M`.
async fn read(agent: ProcessRef<Agent>, raw: Option<String>) -> Result<Json<Value>, Response> {
    let mut params = params(&raw, &["path", "offset", "length"])?;
    let path = path_param(&mut params)?;
    let offset = number_param(&params, "offset", true)?;
    let length = number_param(&params, "length", false)?;
    let reply = with_sandboxes(&agent, move |tree| tree.read(&path, offset, length)).await?;
    Ok(Json(json!(reply)))
}

/// `GET /monitor/statistics`: one entry per running container with its usage.
async fn statistics(agent: ProcessRef<Agent>, raw: Option<String>) -> Result<Json<Value>, Response> {
    params(&raw, &[])?;
    let (containerizer, containers) = agent
        .query(|a, _| (a.config.containerizer.clone(), a.monitored_containers()))
        .await
        .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the agent is not running"))?;
    // Usage walks /proc: off the async threads.
    let entries = tokio::task::spawn_blocking(move || {
        containers
            .into_iter()
            .filter_map(|c| {
                let usage = containerizer.usage(&c.container).ok()?;
                let mut statistics = json!({
                    "timestamp": crate::shell::now_secs(),
                    "cpus_user_time_secs": usage.cpu_user_secs,
                    "cpus_system_time_secs": usage.cpu_system_secs,
                    "mem_rss_bytes": usage.rss_bytes,
                    "mem_limit_bytes": usage.mem_limit_bytes,
                    "processes": usage.processes,
                });
                // The peak is known only to some containerizers (and only to newer
                // versions of `Usage`): shown when there is one.
                let peak = serde_json::to_value(usage).ok().map(|u| u["mem_peak_bytes"].clone());
                if let Some(peak) = peak.filter(|p| !p.is_null()) {
                    statistics["mem_peak_bytes"] = peak;
                }
                Some(json!({
                    "executor_id": c.executor_id,
                    "executor_name": c.name,
                    "framework_id": c.framework_id,
                    "source": c.source,
                    "container_id": c.container,
                    "statistics": statistics,
                }))
            })
            .collect::<Vec<Value>>()
    })
    .await
    .map_err(|e| error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("statistics failed: {e}")))?;
    Ok(Json(Value::Array(entries)))
}

/// The agent's routes.
pub fn routes(agent: ProcessRef<Agent>) -> Router {
    let state_agent = agent.clone();
    let state = move |raw: RawQuery| {
        let agent = state_agent.clone();
        async move {
            if let Some(query) = raw.0.filter(|q| !q.is_empty()) {
                return Err(error_response(
                    StatusCode::BAD_REQUEST,
                    format!("/state takes no query parameters, got {query:?}"),
                ));
            }
            let pid = agent.upid().to_string();
            let state = agent
                .query(move |a, _| a.state_json(&pid))
                .await
                .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the agent is not running"))?;
            Ok::<_, Response>(Json(state))
        }
    };
    let metrics_agent = agent.clone();
    let metrics = move || {
        let agent = metrics_agent.clone();
        async move {
            let metrics = agent
                .query(|a, _| a.metrics_snapshot())
                .await
                .map_err(|_| error_response(StatusCode::SERVICE_UNAVAILABLE, "the agent is not running"))?;
            Ok::<_, Response>(Json(metrics))
        }
    };
    let (browse_agent, read_agent, statistics_agent) = (agent.clone(), agent.clone(), agent.clone());
    let browse = move |raw: RawQuery| browse(browse_agent.clone(), raw.0);
    let read = move |raw: RawQuery| read(read_agent.clone(), raw.0);
    let statistics = move |raw: RawQuery| statistics(statistics_agent.clone(), raw.0);
    Router::new()
        .route("/state", get(state.clone()))
        .route("/agent/state", get(state))
        .route("/metrics/snapshot", get(metrics))
        .route("/monitor/statistics", get(statistics.clone()))
        .route("/monitor/statistics.json", get(statistics))
        .route("/files/browse", get(browse))
        .route("/files/read", get(read))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(percent_decode("%2Ftmp%2Fa+b").unwrap(), b"/tmp/a b");
        assert_eq!(percent_decode("%ff").unwrap(), vec![0xff]);
        assert!(percent_decode("%2").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%\u{e9}").is_err());
    }

    #[test]
    fn parameters_are_checked() {
        let raw = Some("path=%2Fx&offset=-1&length=10".to_string());
        let mut p = params(&raw, &["path", "offset", "length"]).unwrap();
        assert_eq!(number_param(&p, "offset", true).unwrap(), None);
        assert_eq!(number_param(&p, "length", false).unwrap(), Some(10));
        assert_eq!(path_param(&mut p).unwrap(), PathBuf::from("/x"));
        assert!(params(&Some("path=a&path=b".into()), &["path"]).is_err());
        assert!(params(&Some("bogus=1".into()), &["path"]).is_err());
        let p = params(&Some("offset=-2&length=-1&x=abc".into()), &["offset", "length", "x"]).unwrap();
        assert!(number_param(&p, "offset", true).is_err());
        assert!(number_param(&p, "length", false).is_err());
        assert!(number_param(&p, "x", false).is_err());
        assert!(path_param(&mut HashMap::new()).is_err());
        assert!(path_param(&mut params(&Some("path=%2Fa%00b".into()), &["path"]).unwrap()).is_err());
    }
}
