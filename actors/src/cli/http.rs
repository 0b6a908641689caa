//! The CLI's HTTP client for Keel nodes (the tests use it too), on ureq: plain
//! HTTP/1.1, bounded bodies, redirects returned rather than followed (a standby's
//! 307 is an answer worth seeing), and Mesos v1 operator calls.

use std::time::Duration;

use serde_json::Value;

/// The largest body read.
const MAX_BODY: u64 = 256 * 1024 * 1024;

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(timeout)
        .timeout_connect(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// Fetches `path` from `addr` (`host:port`) and parses the body as JSON.
pub fn get_json(addr: &str, path: &str) -> anyhow::Result<Value> {
    let body = get(addr, path)?;
    Ok(serde_json::from_slice(&body)?)
}

/// An answer other than 200.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {}", String::from_utf8_lossy(body))]
pub struct HttpStatus {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Fetches `path` from `addr`; a non-200 answer is an [`HttpStatus`] error (with the
/// path and address as context).
pub fn get(addr: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let (status, body) = request("GET", addr, path, None)?;
    if status != 200 {
        return Err(anyhow::Error::new(HttpStatus { status, body }).context(format!("GET {path} on {addr}")));
    }
    Ok(body)
}

/// Sends `method path` (with a JSON `body`, if any) to `addr`; returns the status and
/// the body, whatever the status.
pub fn request(method: &str, addr: &str, path: &str, body: Option<&str>) -> anyhow::Result<(u16, Vec<u8>)> {
    request_with(method, addr, path, body.map(|b| ("application/json", b)), &[])
}

/// Sends `method path` with a body of `content_type` and extra `headers`; returns the
/// status and the body, whatever the status.
pub fn request_with(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut builder = ureq::http::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("accept")) {
        builder = builder.header("Accept", "application/json");
    }
    if let Some((content_type, _)) = body {
        builder = builder.header("Content-Type", content_type);
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let payload = body.map(|(_, b)| b.as_bytes().to_vec()).unwrap_or_default();
    let request = builder.body(payload)?;
    let response = agent(Some(Duration::from_secs(10)))
        .run(request)
        .map_err(|e| anyhow::anyhow!("{method} {path} on {addr}: {e}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().into_with_config().limit(MAX_BODY).read_to_vec()?;
    Ok((status, body))
}

/// Makes a v1 operator call (`POST /api/v1`) and returns the answer's JSON (`null`
/// for an empty answer); a non-2xx answer is an [`HttpStatus`] error.
pub fn call(addr: &str, call: &Value) -> anyhow::Result<Value> {
    let (status, body) = request("POST", addr, "/api/v1", Some(&call.to_string()))?;
    if !(200..300).contains(&status) {
        let kind = call["type"].as_str().unwrap_or("?").to_string();
        return Err(anyhow::Error::new(HttpStatus { status, body }).context(format!("{kind} on {addr}")));
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&body)?)
}
