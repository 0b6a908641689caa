//! A RecordIO event stream as an HTTP response: `200`, chunked (no
//! Content-Length), one record per chunk, fed from a bounded queue that the
//! adapter fills without ever waiting. When the response ends (the client went
//! away, or the adapter closed the queue or killed the stream) a hook runs once.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::recordio;

/// One event as a RecordIO record.
pub fn record(event: &Value) -> Bytes {
    recordio::encode(&serde_json::to_vec(event).unwrap_or_default())
}

/// Runs its hook when dropped.
struct OnClose(Option<Box<dyn FnOnce() + Send>>);

impl Drop for OnClose {
    fn drop(&mut self) {
        if let Some(hook) = self.0.take() {
            hook();
        }
    }
}

/// What the body reads: queued records, a kill switch (the queue's contents are
/// dropped), and the hook.
struct Feed {
    records: mpsc::Receiver<Bytes>,
    kill: Option<oneshot::Receiver<()>>,
    _on_close: OnClose,
}

impl Feed {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let Some(kill) = self.kill.as_mut() else { return self.records.recv().await };
            tokio::select! {
                biased;
                killed = kill => match killed {
                    Ok(()) => return None,
                    // The switch was dropped without being used: drain normally.
                    Err(_) => self.kill = None,
                },
                record = self.records.recv() => return record,
            }
        }
    }
}

/// A streaming response of the records sent on `records` (until every sender is
/// gone, or `kill` fires), with `headers`; `on_close` runs once when it ends.
pub fn response(
    records: mpsc::Receiver<Bytes>,
    kill: oneshot::Receiver<()>,
    headers: &[(&'static str, String)],
    on_close: impl FnOnce() + Send + 'static,
) -> Response {
    let feed = Feed { records, kill: Some(kill), _on_close: OnClose(Some(Box::new(on_close))) };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        feed.next().await.map(|record| (Ok::<Bytes, Infallible>(record), feed))
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let map = response.headers_mut();
    map.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    map.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(*name, value);
        }
    }
    response
}

/// Sends a HEARTBEAT record every `every` while `ready()` says the stream is
/// subscribed, until the stream's queue is closed. Holds no sender between ticks,
/// so it never keeps a closed stream open; a full queue skips a beat.
pub fn spawn_heartbeats(
    records: mpsc::WeakSender<Bytes>,
    every: Duration,
    ready: impl Fn() -> bool + Send + 'static,
) {
    let heartbeat = record(&serde_json::json!({ "type": "HEARTBEAT" }));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let Some(sender) = records.upgrade() else { return };
            if ready()
                && matches!(sender.try_send(heartbeat.clone()), Err(mpsc::error::TrySendError::Closed(_)))
            {
                return;
            }
        }
    });
}
