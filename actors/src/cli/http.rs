//! A minimal HTTP/1.1 client for the CLI (and the tests) talking to Keel nodes: the
//! nodes answer with a Content-Length; chunked bodies are decoded too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Fetches `path` from `addr` (`host:port`) and parses the body as JSON.
pub fn get_json(addr: &str, path: &str) -> anyhow::Result<serde_json::Value> {
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
    let mut stream =
        TcpStream::connect(addr).map_err(|e| anyhow::anyhow!("cannot connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let payload = body.unwrap_or("");
    let content = if body.is_some() {
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n", payload.len())
    } else {
        String::new()
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n{content}\r\n{payload}"
    )?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut content_length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            content_length = value.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16)?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = content_length {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok((status, body))
}
