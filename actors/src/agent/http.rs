//! The agent's HTTP endpoints on its node's port: `/state` (and `/slave(1)/state`'s
//! modern name `/agent/state`) and `/metrics/snapshot` with Mesos-style keys.

use std::collections::BTreeMap;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use keel_kernel::http::error_response;
use keel_kernel::ProcessRef;
use serde_json::{json, Value};

use super::{Agent, ExecutorKind};
use crate::master::http::resources_json;
use crate::resources::Resources;

impl Agent {
    /// The `/state` document.
    pub fn state_json(&self, pid: &str) -> Value {
        let mut used = Resources::default();
        let frameworks: Vec<Value> = self
            .frameworks
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
            "id": self.agent_id,
            "hostname": self.config.info.hostname,
            "master": self.master.to_string(),
            "state": self.state,
            "start_time": self.started_secs,
            "resources": resources_json(&self.config.info.resources),
            "used_resources": resources_json(&used),
            "attributes": self.config.info.attributes,
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
        let tasks =
            self.frameworks.values().flat_map(|f| f.executors.values()).flat_map(|e| e.tasks.values());
        let running = tasks.clone().filter(|t| t.state == crate::task::TaskState::Running).count();
        let staging = tasks.clone().filter(|t| t.state == crate::task::TaskState::Staging).count();
        let pending: usize = tasks.map(|t| t.stream.pending.len()).sum();
        put("slave/registered", if self.state == super::AgentState::Registered { 1.0 } else { 0.0 });
        put("slave/uptime_secs", crate::task::now_secs() - self.started_secs);
        put("slave/tasks_running", running as f64);
        put("slave/tasks_staging", staging as f64);
        for state in ["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST"] {
            let key = format!("slave/tasks_{}", state.trim_start_matches("TASK_").to_lowercase());
            put(&key, *self.metrics.terminal.get(state).unwrap_or(&0) as f64);
        }
        put("slave/tasks_launched", self.metrics.tasks_launched as f64);
        put("slave/frameworks_active", self.frameworks.len() as f64);
        put("slave/executors_running", self.containers.len() as f64);
        put("slave/executors_terminated", self.metrics.executors_terminated as f64);
        put("slave/container_launch_errors", self.metrics.container_launch_errors as f64);
        put("slave/status_updates_pending", pending as f64);
        put("slave/valid_status_updates", self.metrics.status_updates as f64);
        put("slave/status_update_retries", self.metrics.status_update_retries as f64);
        put("slave/invalid_status_update_acknowledgements", self.metrics.invalid_acknowledgements as f64);
        put("slave/invalid_senders", self.metrics.invalid_senders as f64);
        put("slave/unknown_targets", self.metrics.unknown_targets as f64);
        put("slave/cpus_total", self.config.info.resources.cpus());
        put("slave/mem_total", self.config.info.resources.mem_mb());
        put("slave/disk_total", self.config.info.resources.disk_mb());
        out
    }
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
    Router::new()
        .route("/state", get(state.clone()))
        .route("/agent/state", get(state))
        .route("/metrics/snapshot", get(metrics))
}
