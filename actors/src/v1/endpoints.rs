//! The JSON endpoints Mesos tools read, in Mesos's shapes: `GET /version`,
//! `/slaves` (and `/master/slaves`), `/frameworks` and `/master/frameworks`,
//! `/master/state`, `/master/tasks`, `/master/redirect`, and `POST
//! /master/teardown`; a trailing `/` is accepted as libprocess does. Each also
//! answers on the master's own v1 API paths (`/master/api/v1...`).

use axum::extract::{RawQuery, Request};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::V1Error;
use crate::master::http::{state_json, MasterSlot};

/// The routes of a master.
pub fn master_routes(slot: MasterSlot) -> Router {
    let sl = slot.clone();
    let slaves = move |uri: Uri| {
        let slot = sl.clone();
        async move {
            let handle = slot.get(&uri)?;
            let state = handle.read(|core| state_json(core, &handle.registry));
            Ok::<_, Response>(Json(json!({ "slaves": state["slaves"], "recovered_slaves": [] })))
        }
    };
    let sl = slot.clone();
    let frameworks = move |uri: Uri| {
        let slot = sl.clone();
        async move {
            let handle = slot.get(&uri)?;
            let state = handle.read(|core| state_json(core, &handle.registry));
            let mut frameworks = state["frameworks"].clone();
            for framework in frameworks.as_array_mut().into_iter().flatten() {
                // Mesos's fields avmesos-cli reads.
                framework["hostname"] = framework.get("hostname").cloned().unwrap_or(json!(""));
                framework["webui_url"] = json!("");
            }
            Ok::<_, Response>(Json(json!({
                "frameworks": frameworks,
                "completed_frameworks": state["completed_frameworks"],
                "unregistered_frameworks": [],
            })))
        }
    };
    let sl = slot.clone();
    let redirect = move |uri: Uri| {
        let slot = sl.clone();
        async move {
            let handle = slot.get(&uri)?;
            let leader = handle.read(|core| core.upid().node().to_string());
            Ok::<_, Response>(V1Error::Redirect(format!("//{leader}")).into_response())
        }
    };
    let sl = slot.clone();
    let teardown = move |uri: Uri, raw: RawQuery, body: String| {
        let slot = sl.clone();
        async move {
            let handle = slot.get(&uri)?;
            let form = if body.is_empty() { raw.0.unwrap_or_default() } else { body };
            let framework_id = form
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == "frameworkId")
                .map(|(_, value)| value.to_string())
                .ok_or_else(|| V1Error::bad("missing 'frameworkId'").into_response())?;
            let call = keel_core::master::OperatorCall::Teardown { framework_id: framework_id.into() };
            let answer = handle
                .master
                .query(move |m, ctx| m.operator(ctx, call))
                .await
                .map_err(|_| V1Error::Unavailable("the master is not running".into()).into_response())?;
            match answer.await {
                Ok(Ok(())) => Ok(StatusCode::OK.into_response()),
                Ok(Err(e)) => Err(V1Error::bad(e.to_string()).into_response()),
                Err(_) => Err(V1Error::Unavailable("the master stopped".into()).into_response()),
            }
        }
    };
    let scheduler = {
        let slot = slot.clone();
        move |request: Request| super::scheduler::handle(slot.clone(), request)
    };
    let operator = {
        let slot = slot.clone();
        move |request: Request| super::operator::handle(slot.clone(), request)
    };
    let mut router = Router::new().route("/version", get(version)).route("/version/", get(version));
    for path in ["/slaves", "/master/slaves"] {
        router = router.route(path, get(slaves.clone())).route(&format!("{path}/"), get(slaves.clone()));
    }
    for path in ["/frameworks", "/master/frameworks"] {
        router =
            router.route(path, get(frameworks.clone())).route(&format!("{path}/"), get(frameworks.clone()));
    }
    for path in ["/redirect", "/master/redirect"] {
        router = router.route(path, get(redirect.clone())).route(&format!("{path}/"), get(redirect.clone()));
    }
    for path in ["/teardown", "/master/teardown"] {
        router =
            router.route(path, post(teardown.clone())).route(&format!("{path}/"), post(teardown.clone()));
    }
    for path in ["/api/v1/scheduler", "/master/api/v1/scheduler"] {
        router =
            router.route(path, any(scheduler.clone())).route(&format!("{path}/"), any(scheduler.clone()));
    }
    for path in ["/api/v1", "/api/v1/operator", "/master/api/v1", "/master/api/v1/operator"] {
        router = router.route(path, any(operator.clone())).route(&format!("{path}/"), any(operator.clone()));
    }
    router
}

/// `GET /version`: a Mesos version clients parse as digits and dots.
pub async fn version() -> Response {
    let info: Value = super::operator::version_info();
    ([(header::CACHE_CONTROL, "no-cache")], Json(info)).into_response()
}
