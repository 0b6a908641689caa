//! The master's operator API (`POST /api/v1`, also `/api/v1/operator` and
//! `/master/api/v1`): `{"type": T, "<t>": {...}}` answered with
//! `{"type": T, "<t>": {...}}`, or 200/202 with no body for changes, or the event
//! stream for SUBSCRIBE. Reads come from the core's views; changes go to the core as
//! operator requests, answered once durable. Call types Keel does not implement are
//! a 400 naming the type.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keel_core::master::{OperatorCall, OperatorError};
use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::registry::QuotaRecord;
use keel_proto::resources::{Reservation, Resource, Resources};
use serde_json::{json, Value};

use super::error::V1Error;
use super::json::resources::{field as resources_field, to_v1_plain};
use super::json::scheduler::master_info;
use super::json::state::{get_agents, get_executors, get_frameworks, get_state, get_tasks};
use super::json::{array, get, number, required, required_id, string, MESOS_VERSION};
use super::request::{self, Call};
use crate::master::http::MasterSlot;
use crate::master::MasterHandle;

/// The answer `{"type": kind, "<kind lower-case>": body}`.
pub fn answer(kind: &str, body: Value) -> Response {
    let mut out = serde_json::Map::new();
    out.insert("type".into(), json!(kind));
    out.insert(kind.to_ascii_lowercase(), body);
    Json(Value::Object(out)).into_response()
}

/// `version_info` (Mesos's GET_VERSION and `/version`).
pub fn version_info() -> Value {
    json!({
        "version": MESOS_VERSION,
        "build_date": "",
        "build_time": 0,
        "build_user": "keel",
        "git_sha": "",
        "git_branch": "",
        "git_tag": "",
        "keel_version": env!("CARGO_PKG_VERSION"),
    })
}

/// Metrics as `[{name, value}]`.
pub fn metrics_list(metrics: &BTreeMap<String, f64>) -> Value {
    Value::Array(metrics.iter().map(|(name, value)| json!({ "name": name, "value": value })).collect())
}

fn operator_error(error: OperatorError) -> V1Error {
    match error {
        OperatorError::Invalid(e) => V1Error::BadRequest(e),
        OperatorError::NotFound(e) => V1Error::NotFound(e),
        OperatorError::Conflict(e) => V1Error::Conflict(e),
        OperatorError::Unavailable(e) => V1Error::Unavailable(e),
    }
}

/// Hands a change to the master's core and waits until it is durable.
async fn change(handle: &MasterHandle, call: OperatorCall) -> Result<(), V1Error> {
    let answer = handle
        .master
        .query(move |m, ctx| m.operator(ctx, call))
        .await
        .map_err(|_| V1Error::Unavailable("the master is not running".into()))?;
    match answer.await {
        Ok(result) => result.map_err(operator_error),
        Err(_) => Err(V1Error::Unavailable("the master stopped".into())),
    }
}

/// `{"cpus": {"value": 1}, ...}` (quota guarantees and limits) as resources.
fn quantities(value: Option<&Value>) -> Result<Resources, V1Error> {
    let Some(Value::Object(map)) = value else { return Ok(Resources::new()) };
    let mut entries = Vec::new();
    for (name, quantity) in map.iter().take(1000) {
        let amount = number(quantity, "value")?
            .ok_or_else(|| V1Error::bad(format!("quota {name:?} needs a value")))?;
        entries.push(
            Resource::scalar(name, amount, Reservation::Unreserved)
                .map_err(|e| V1Error::bad(format!("quota {name:?}: {e}")))?,
        );
    }
    Resources::try_from(entries).map_err(|e| V1Error::bad(e.to_string()))
}

fn quantities_v1(resources: &Resources) -> Value {
    let mut out = serde_json::Map::new();
    for (name, milli) in resources.scalars_milli() {
        out.insert(name.to_string(), json!({ "value": milli as f64 / 1000.0 }));
    }
    Value::Object(out)
}

async fn dispatch(handle: &MasterHandle, call: Call) -> Result<Response, V1Error> {
    let kind = string(&call.body, "type")?.ok_or_else(|| V1Error::bad("expecting 'type' to be present"))?;
    request::check_accept(&call)?;
    let body = &call.body;
    let sub = |key: &str| get(body, key).cloned().unwrap_or_else(|| json!({}));
    Ok(match kind.as_str() {
        "GET_HEALTH" => answer(&kind, json!({ "healthy": true })),
        "GET_VERSION" => answer(&kind, json!({ "version_info": version_info() })),
        "GET_FLAGS" => {
            let flags = handle.read(|core| {
                let c = core.config();
                json!([
                    { "name": "agent_ping_timeout", "value": format!("{}secs", c.agent_ping_timeout.as_secs_f64()) },
                    { "name": "max_agent_ping_timeouts", "value": c.max_agent_ping_timeouts.to_string() },
                    { "name": "agent_reregister_timeout", "value": format!("{}secs", c.agent_reregister_timeout.as_secs_f64()) },
                    { "name": "max_completed_frameworks", "value": c.max_completed_frameworks.to_string() },
                    { "name": "max_completed_tasks_per_framework", "value": c.max_completed_tasks_per_framework.to_string() },
                    { "name": "registry", "value": handle.registry },
                ])
            });
            answer(&kind, json!({ "flags": flags }))
        }
        "GET_METRICS" => {
            let metrics = crate::master::http::all_metrics(handle, None).await;
            answer(&kind, json!({ "metrics": metrics_list(&metrics) }))
        }
        "GET_STATE" => answer(&kind, handle.read(get_state)),
        "GET_AGENTS" => answer(&kind, handle.read(get_agents)),
        "GET_FRAMEWORKS" => answer(&kind, handle.read(get_frameworks)),
        "GET_EXECUTORS" => answer(&kind, handle.read(get_executors)),
        "GET_TASKS" => answer(&kind, handle.read(get_tasks)),
        "GET_MASTER" => {
            let (upid, started) = handle.read(|core| (core.upid().clone(), core.started_secs()));
            let info = master_info(&upid, &upid.to_string());
            let nanos = json!({ "nanoseconds": (started * 1e9) as i64 });
            answer(
                &kind,
                json!({ "master_info": info, "start_time": started, "elected_time": started, "start_time_ns": nanos }),
            )
        }
        "GET_WEIGHTS" => {
            let infos: Vec<Value> = handle
                .read(|core| core.weights().iter().map(|(r, w)| json!({ "role": r, "weight": w })).collect());
            answer(&kind, json!({ "weight_infos": infos }))
        }
        "GET_ROLES" => {
            let roles = handle.read(|core| {
                let mut roles: BTreeMap<String, (f64, BTreeSet<FrameworkId>)> = BTreeMap::new();
                for (role, weight) in core.weights() {
                    roles.entry(role.clone()).or_insert((1.0, BTreeSet::new())).0 = *weight;
                }
                for role in core.quotas().keys() {
                    roles.entry(role.clone()).or_insert((1.0, BTreeSet::new()));
                }
                for (id, framework) in core.frameworks() {
                    for role in framework.info.effective_roles() {
                        let weight = core.weights().get(&role).copied().unwrap_or(1.0);
                        roles.entry(role).or_insert((weight, BTreeSet::new())).1.insert(id.clone());
                    }
                }
                roles
                    .into_iter()
                    .map(|(name, (weight, frameworks))| {
                        let frameworks: Vec<Value> = frameworks.iter().map(super::json::id).collect();
                        json!({ "name": name, "weight": weight, "frameworks": frameworks, "resources": [] })
                    })
                    .collect::<Vec<_>>()
            });
            answer(&kind, json!({ "roles": roles }))
        }
        "UPDATE_WEIGHTS" => {
            let update = sub("update_weights");
            let mut weights = Vec::new();
            for info in array(&update, "weight_infos")?.iter().take(10_000) {
                let role = string(info, "role")?.ok_or_else(|| V1Error::bad("a weight info needs a role"))?;
                let weight =
                    number(info, "weight")?.ok_or_else(|| V1Error::bad("a weight info needs a weight"))?;
                weights.push((role, weight));
            }
            change(handle, OperatorCall::SetWeights(weights)).await?;
            StatusCode::OK.into_response()
        }
        "GET_QUOTA" => {
            let (infos, configs): (Vec<Value>, Vec<Value>) = handle.read(|core| {
                core.quotas()
                    .iter()
                    .map(|(role, quota)| {
                        let info = json!({ "role": role, "guarantee": to_v1_plain(&quota.guarantee) });
                        let mut config =
                            json!({ "role": role, "guarantees": quantities_v1(&quota.guarantee) });
                        if let Some(limit) = &quota.limit {
                            config["limits"] = quantities_v1(limit);
                        }
                        (info, config)
                    })
                    .unzip()
            });
            answer(&kind, json!({ "status": { "infos": infos, "configs": configs } }))
        }
        "UPDATE_QUOTA" => {
            let update = required(body, "update_quota")?;
            let mut calls = Vec::new();
            for config in array(update, "quota_configs")?.iter().take(1000) {
                let role =
                    string(config, "role")?.ok_or_else(|| V1Error::bad("a quota config needs a role"))?;
                let guarantee = quantities(get(config, "guarantees"))?;
                let limit = get(config, "limits").map(|l| quantities(Some(l))).transpose()?;
                let known = handle.read(|core| core.quotas().contains_key(&role));
                if guarantee.is_empty() && limit.as_ref().is_none_or(Resources::is_empty) {
                    if known {
                        calls.push(OperatorCall::RemoveQuota { role });
                    }
                } else {
                    calls.push(OperatorCall::SetQuota { role, quota: QuotaRecord { guarantee, limit } });
                }
            }
            for call in calls {
                change(handle, call).await?;
            }
            StatusCode::OK.into_response()
        }
        "RESERVE_RESOURCES" | "UNRESERVE_RESOURCES" => {
            let reserve = kind == "RESERVE_RESOURCES";
            let call = required(body, &kind.to_ascii_lowercase())?.clone();
            let agent_id = AgentId(required_id(&call, "agent_id")?);
            let resources = resources_field(&call, "resources")?;
            change(handle, OperatorCall::Reservation { agent_id, resources, reserve }).await?;
            StatusCode::ACCEPTED.into_response()
        }
        "TEARDOWN" => {
            let teardown = required(body, "teardown")?;
            let framework_id = FrameworkId(required_id(teardown, "framework_id")?);
            change(handle, OperatorCall::Teardown { framework_id }).await?;
            StatusCode::OK.into_response()
        }
        "SUBSCRIBE" => {
            let events = handle.events.clone();
            handle.read(|core| events.subscribe(core))?
        }
        other => return Err(V1Error::bad(format!("unsupported call type {other:?}"))),
    })
}

/// `POST /api/v1` on a master: a standby redirects (307) to the leader or answers 503.
pub async fn handle(slot: MasterSlot, request: Request) -> Response {
    let handle = match slot.get(request.uri()) {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    let result = async {
        let call = request::read(request, request::BODY_LIMIT).await?;
        dispatch(&handle, call).await
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "refused an operator call");
        e.into_response()
    })
}
