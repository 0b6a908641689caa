//! The agent's operator API (`POST /api/v1` and `/api/v1/operator` on an agent):
//! GET_HEALTH, GET_VERSION, GET_FLAGS, GET_METRICS, GET_STATE, GET_FRAMEWORKS,
//! GET_EXECUTORS, GET_TASKS, GET_CONTAINERS, GET_AGENT, LIST_FILES and READ_FILE
//! (the files limited to sandboxes, as `/files/*`). Other call types are a 400
//! naming the type.

use std::path::PathBuf;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use keel_core::agent::ExecutorKind;
use keel_kernel::ProcessRef;
use serde_json::{json, Value};

use super::error::V1Error;
use super::json::resources::to_v1_plain;
use super::json::resources::ReservationFormat;
use super::json::state::time_info;
use super::json::task::{executor_to_v1, framework_to_v1};
use super::json::{base64, id, number, required, required_string, string};
use super::operator::{answer, metrics_list, version_info};
use super::request::{self, Call};
use crate::agent::files::{FilesError, SandboxTree};
use crate::agent::Agent;

fn state(agent: &Agent) -> Value {
    let core = agent.core();
    let agent_id = core.agent_id().map(|a| a.to_string()).unwrap_or_default();
    let mut frameworks = Vec::new();
    let mut executors = Vec::new();
    let mut tasks = Vec::new();
    let mut containers = Vec::new();
    for (framework_id, framework) in core.frameworks() {
        let mut info = framework.info.clone();
        info.id = Some(framework_id.clone());
        frameworks.push(json!({ "framework_info": framework_to_v1(&info) }));
        for (executor_id, executor) in &framework.executors {
            if let ExecutorKind::Custom { info, .. } = &executor.kind {
                executors
                    .push(json!({ "executor_info": executor_to_v1(info, ReservationFormat::PreRefinement) }));
            }
            containers.push(json!({
                "framework_id": id(framework_id),
                "executor_id": id(executor_id),
                "executor_name": executor_id.to_string(),
                "container_id": id(&executor.container),
            }));
            for (task_id, task) in &executor.tasks {
                let mut entry = json!({
                    "name": task.info.name,
                    "task_id": id(task_id),
                    "framework_id": id(framework_id),
                    "agent_id": id(&agent_id),
                    "state": task.state.name(),
                    "resources": to_v1_plain(&task.info.resources),
                    "statuses": [],
                });
                if task.info.executor.is_some() {
                    entry["executor_id"] = id(executor_id);
                }
                tasks.push(entry);
            }
        }
    }
    json!({
        "get_frameworks": { "frameworks": frameworks },
        "get_executors": { "executors": executors },
        "get_tasks": { "launched_tasks": tasks },
        "containers": containers,
    })
}

fn agent_info(agent: &Agent) -> Value {
    let core = agent.core();
    let info = &core.config().info;
    json!({
        "agent_info": {
            "hostname": info.hostname,
            "port": core.config().upid.node().port(),
            "resources": to_v1_plain(&info.resources),
            "id": id(core.agent_id().map(|a| a.to_string()).unwrap_or_default()),
        },
        "start_time": time_info(core.started_secs()),
    })
}

/// Mesos's `mode` (a `st_mode`) from `ls -l`'s text.
fn mode_bits(text: &str, is_dir: bool) -> u32 {
    let kind = if is_dir { 0o040_000 } else { 0o100_000 };
    let bits =
        text.chars().skip(1).take(9).enumerate().fold(
            0,
            |bits, (i, c)| {
                if c == '-' {
                    bits
                } else {
                    bits | (1 << (8 - i))
                }
            },
        );
    kind | bits
}

fn files_error(error: FilesError) -> V1Error {
    match error {
        FilesError::BadRequest(e) => V1Error::BadRequest(e),
        FilesError::Forbidden(e) => V1Error::Forbidden(e),
        FilesError::NotFound(e) => V1Error::NotFound(e),
        FilesError::Internal(e) => V1Error::Unavailable(e),
    }
}

async fn files<R: Send + 'static>(
    agent: &ProcessRef<Agent>,
    operation: impl FnOnce(&SandboxTree) -> Result<R, FilesError> + Send + 'static,
) -> Result<R, V1Error> {
    let work_dir = agent
        .query(|a, _| a.work_dir().to_path_buf())
        .await
        .map_err(|_| V1Error::Unavailable("the agent is not running".into()))?;
    tokio::task::spawn_blocking(move || SandboxTree::new(&work_dir).and_then(|tree| operation(&tree)))
        .await
        .map_err(|e| V1Error::Unavailable(format!("files request failed: {e}")))?
        .map_err(files_error)
}

async fn dispatch(agent: &ProcessRef<Agent>, call: Call) -> Result<Response, V1Error> {
    let kind = string(&call.body, "type")?.ok_or_else(|| V1Error::bad("expecting 'type' to be present"))?;
    request::check_accept(&call)?;
    let unavailable = |_| V1Error::Unavailable("the agent is not running".into());
    let body = &call.body;
    Ok(match kind.as_str() {
        "GET_HEALTH" => answer(&kind, json!({ "healthy": true })),
        "GET_VERSION" => answer(&kind, json!({ "version_info": version_info() })),
        "GET_FLAGS" => {
            let flags = agent
                .query(|a, _| {
                    let c = a.core().config();
                    json!([
                        { "name": "work_dir", "value": c.work_dir.display().to_string() },
                        { "name": "master", "value": a.core().master().to_string() },
                        { "name": "resources", "value": c.info.resources.to_string() },
                        { "name": "hostname", "value": c.info.hostname },
                    ])
                })
                .await
                .map_err(unavailable)?;
            answer(&kind, json!({ "flags": flags }))
        }
        "GET_METRICS" => {
            let metrics = agent.query(|a, _| a.metrics_snapshot()).await.map_err(unavailable)?;
            answer(&kind, json!({ "metrics": metrics_list(&metrics) }))
        }
        "GET_STATE" | "GET_FRAMEWORKS" | "GET_EXECUTORS" | "GET_TASKS" | "GET_CONTAINERS" => {
            let mut state = agent.query(|a, _| state(a)).await.map_err(unavailable)?;
            match kind.as_str() {
                "GET_STATE" => {
                    if let Some(map) = state.as_object_mut() {
                        map.remove("containers");
                    }
                    answer(&kind, state)
                }
                "GET_FRAMEWORKS" => answer(&kind, state["get_frameworks"].take()),
                "GET_EXECUTORS" => answer(&kind, state["get_executors"].take()),
                "GET_TASKS" => answer(&kind, state["get_tasks"].take()),
                _ => answer(&kind, json!({ "containers": state["containers"].take() })),
            }
        }
        "GET_AGENT" => answer(&kind, agent.query(|a, _| agent_info(a)).await.map_err(unavailable)?),
        "LIST_FILES" => {
            let path = PathBuf::from(required_string(required(body, "list_files")?, "path")?);
            let entries = files(agent, move |tree| tree.browse(&path)).await?;
            let infos: Vec<Value> = entries
                .iter()
                .map(|e| {
                    json!({
                        "path": e.path, "nlink": e.nlink, "size": e.size, "mode": mode_bits(&e.mode, e.is_dir),
                        "uid": e.uid, "gid": e.gid, "mtime": { "nanoseconds": e.mtime.saturating_mul(1_000_000_000) },
                    })
                })
                .collect();
            answer(&kind, json!({ "file_infos": infos }))
        }
        "READ_FILE" => {
            let read = required(body, "read_file")?;
            let path = PathBuf::from(required_string(read, "path")?);
            let offset = number(read, "offset")?.unwrap_or(0.0).max(0.0) as u64;
            let length = number(read, "length")?.map(|l| l.max(0.0) as u64);
            let (size, data) = files(agent, move |tree| {
                let size = tree.read(&path, None, None)?.offset;
                let data = tree.read(&path, Some(offset), length)?.data;
                Ok((size, data))
            })
            .await?;
            answer(&kind, json!({ "size": size, "data": base64(data.as_bytes()) }))
        }
        other => return Err(V1Error::bad(format!("unsupported call type {other:?}"))),
    })
}

/// `POST /api/v1` on an agent.
pub async fn handle(agent: ProcessRef<Agent>, request: Request) -> Response {
    let result = async {
        let call = request::read(request, request::BODY_LIMIT).await?;
        dispatch(&agent, call).await
    }
    .await;
    result.unwrap_or_else(|e| e.into_response())
}

/// The agent's v1 routes: the executor API, the operator API and `/version`.
pub fn agent_routes(
    agent: ProcessRef<Agent>,
    hub: std::sync::Arc<super::executor::ExecutorHub>,
) -> axum::Router {
    use axum::routing::{any, get};
    let executor_agent = agent.clone();
    let executor =
        move |request: Request| super::executor::handle(hub.clone(), executor_agent.clone(), request);
    let operator = move |request: Request| handle(agent.clone(), request);
    let mut router = axum::Router::new()
        .route("/version", get(super::endpoints::version))
        .route("/version/", get(super::endpoints::version));
    for path in ["/api/v1/executor", "/slave(1)/api/v1/executor"] {
        router = router.route(path, any(executor.clone())).route(&format!("{path}/"), any(executor.clone()));
    }
    for path in ["/api/v1", "/api/v1/operator", "/slave(1)/api/v1"] {
        router = router.route(path, any(operator.clone())).route(&format!("{path}/"), any(operator.clone()));
    }
    router
}
