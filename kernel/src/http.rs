//! HTTP on the node's port: connections the node sniffed as HTTP are served by
//! hyper with an axum router; the kernel adds `/health` and `/__processes__`, and
//! the master and agent add their endpoints with [`Node::add_routes`].

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;

use crate::node::Node;
use crate::stats::NodeStats;
use crate::transport::Rewind;

/// Serves one HTTP/1 connection.
pub(crate) async fn serve(node: Node, stream: Rewind, peer: SocketAddr) {
    NodeStats::bump(&node.stats().http_requests);
    let router = node.router().fallback(not_found);
    let service = TowerToHyperService::new(router);
    let connection = hyper::server::conn::http1::Builder::new()
        .max_buf_size(1024 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = connection.await {
        tracing::debug!(peer.addr = %peer, error = %e, "http connection ended with an error");
    }
}

async fn not_found(request: Request) -> Response {
    error_response(StatusCode::NOT_FOUND, format!("no endpoint at {}", request.uri().path()))
}

/// A JSON error body `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

pub(crate) fn node_routes(node: &Node) -> Router {
    let health_node = node.clone();
    let processes_node = node.clone();
    crate::trace::http::routes(node.recorder().clone())
        .route(
            "/health",
            get(move || {
                let node = health_node.clone();
                async move { Json(json!({ "healthy": true, "node": node.addr().to_string() })) }
            }),
        )
        .route(
            "/__processes__",
            get(move || {
                let node = processes_node.clone();
                async move {
                    Json(json!({
                        "node": node.addr().to_string(),
                        "processes": node.processes(),
                        "counters": node.stats().snapshot(),
                    }))
                }
            }),
        )
}
