//! What every v1 call goes through before it is read: POST only (405), a JSON
//! `Content-Type` (400 when absent, 415 otherwise; protobuf is not supported yet),
//! an `Accept` Keel can answer (406), a bounded body (413) and well-formed JSON
//! (400). Nothing is changed before all of these pass.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method};
use serde_json::Value;

use super::error::V1Error;

/// The body limit of the scheduler API: an ACCEPT of 10,000 tasks is about 3 MB.
pub const SCHEDULER_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// The body limit of the executor and operator APIs.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A call that passed the checks: its headers and its JSON body.
#[derive(Debug)]
pub struct Call {
    /// The request's headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Value,
}

impl Call {
    /// A header's value as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Checks `request` and reads its JSON body (at most `limit` bytes).
pub async fn read(request: Request, limit: usize) -> Result<Call, V1Error> {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Err(V1Error::MethodNotAllowed(parts.method.to_string()));
    }
    check_content_type(&parts.headers)?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(V1Error::TooLarge { limit });
    }
    let bytes =
        axum::body::to_bytes(Body::new(body), limit).await.map_err(|_| V1Error::TooLarge { limit })?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| V1Error::bad(format!("failed to parse the body as JSON: {e}")))?;
    if !body.is_object() {
        return Err(V1Error::bad("a call is a JSON object"));
    }
    Ok(Call { headers: parts.headers, body })
}

fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn check_content_type(headers: &HeaderMap) -> Result<(), V1Error> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(V1Error::bad("expecting 'Content-Type' to be present"));
    };
    let media = media_type(value.to_str().unwrap_or(""));
    match media.as_str() {
        "application/json" => Ok(()),
        "application/x-protobuf" => Err(V1Error::UnsupportedMediaType(
            "Keel does not read protobuf calls yet: send 'Content-Type: application/json'".into(),
        )),
        other => Err(V1Error::UnsupportedMediaType(format!(
            "expecting 'Content-Type' of application/json, not {other:?}"
        ))),
    }
}

/// Checks that the answer may be JSON (`Accept` absent, JSON, or a wildcard).
pub fn check_accept(call: &Call) -> Result<(), V1Error> {
    let Some(accept) = call.header("accept") else { return Ok(()) };
    let acceptable = accept.split(',').map(media_type).any(|m| {
        matches!(m.as_str(), "application/json" | "*/*" | "application/*" | "application/recordio" | "")
    });
    if acceptable {
        Ok(())
    } else {
        Err(V1Error::NotAcceptable(format!("Keel answers application/json only, not {accept:?}")))
    }
}
