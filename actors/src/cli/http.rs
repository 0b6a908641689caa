//! The CLI's HTTP client for Keel nodes (the tests use it too), on ureq: plain
//! HTTP/1.1, bounded bodies, redirects returned rather than followed (a standby's
//! 307 is an answer worth seeing), and RecordIO event streams read as JSON events.

use std::collections::VecDeque;
use std::io::Read;
use std::time::Duration;

use serde_json::Value;

use crate::v1::recordio::Decoder;

/// The largest body read.
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// The largest event read from a stream.
const MAX_EVENT: usize = 64 * 1024 * 1024;

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

/// A RecordIO event stream being read.
pub struct EventStream {
    reader: Box<dyn Read + Send>,
    decoder: Decoder,
    ready: VecDeque<Value>,
    /// The response's headers.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("headers", &self.headers).finish()
    }
}

impl EventStream {
    /// Posts `call` to `path` on `addr` and opens its event stream (a 200 answer);
    /// any other answer is an [`HttpStatus`] error.
    pub fn open(addr: &str, path: &str, call: &Value) -> anyhow::Result<EventStream> {
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"))
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .body(call.to_string().into_bytes())?;
        let response = agent(None).run(request).map_err(|e| anyhow::anyhow!("POST {path} on {addr}: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        if status != 200 {
            let body =
                response.into_body().into_with_config().limit(MAX_BODY).read_to_vec().unwrap_or_default();
            return Err(
                anyhow::Error::new(HttpStatus { status, body }).context(format!("POST {path} on {addr}"))
            );
        }
        let reader = Box::new(response.into_body().into_reader());
        Ok(EventStream { reader, decoder: Decoder::new(MAX_EVENT), ready: VecDeque::new(), headers })
    }

    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The next event; `None` when the stream ended.
    pub fn next_event(&mut self) -> anyhow::Result<Option<Value>> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let read = self.reader.read(&mut buffer)?;
            if read == 0 {
                return Ok(None);
            }
            for record in self.decoder.feed(&buffer[..read])? {
                self.ready.push_back(serde_json::from_slice(&record)?);
            }
        }
    }
}
