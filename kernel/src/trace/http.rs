//! The flight recorder over HTTP, on every node:
//!
//! - `GET /trace/recent?task=&framework=&agent=&executor=&kind=&actor=&since=&limit=`:
//!   the kept events that match, oldest first, as JSON lines.
//! - `GET /trace/stream?` (same filters): a chunked stream of JSON lines as events
//!   happen. Each subscriber gets at most [`STREAM_EVENTS_PER_SEC`] events a second
//!   through a queue of [`STREAM_QUEUE`]; what does not fit is dropped and reported
//!   in the stream as `{"dropped": N}` lines. At most [`MAX_SUBSCRIBERS`] at once
//!   (503 beyond). A slow or stuck subscriber never slows the node: the recorder only
//!   ever tries to queue.
//!
//! Filters: subjects match exactly; `kind` matches the full kind or its last part
//! (`RunTask`); `actor` matches either end's UPID or its name; `since` is
//! microseconds since the Unix epoch; `limit` (default 10,000) keeps the newest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::RawQuery;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::event::TraceEvent;
use super::recorder::Recorder;
use crate::http::error_response;

/// The most live subscribers a node serves at once.
pub const MAX_SUBSCRIBERS: usize = 8;

/// The most events a second one subscriber is sent.
pub const STREAM_EVENTS_PER_SEC: u64 = 5_000;

/// Events queued for one subscriber.
pub const STREAM_QUEUE: usize = 4_096;

/// What a trace query asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Subjects that must match (`task`, `framework`, `agent`, `executor`).
    pub subjects: Vec<(String, String)>,
    /// The kind, whole or its last dotted part.
    pub kind: Option<String>,
    /// A UPID or process name at either end.
    pub actor: Option<String>,
    /// Events at or after this time (microseconds since the epoch).
    pub since_us: Option<u64>,
    /// The most events (the newest).
    pub limit: usize,
}

impl Filter {
    /// Parses a query string; `Err` names the bad parameter.
    pub fn parse(query: Option<&str>) -> Result<Filter, String> {
        let mut filter = Filter { limit: 10_000, ..Filter::default() };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| format!("{key}: bad percent-encoding"))?;
            match key {
                "task" | "framework" | "agent" | "executor" => filter.subjects.push((key.to_string(), value)),
                "kind" => filter.kind = Some(value),
                "actor" => filter.actor = Some(value),
                "since" => {
                    let since = value.parse().map_err(|_| format!("since must be microseconds since the epoch, not {value:?}"))?;
                    filter.since_us = Some(since);
                }
                "limit" => {
                    let limit: usize =
                        value.parse().map_err(|_| format!("limit must be a count, not {value:?}"))?;
                    filter.limit = limit.min(10_000_000);
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (known: task, framework, agent, executor, kind, actor, since, limit)"
                    ))
                }
            }
        }
        Ok(filter)
    }

    /// Whether `event` matches.
    pub fn accepts(&self, event: &TraceEvent) -> bool {
        self.subjects.iter().all(|(key, value)| event.subject(key) == Some(value.as_str()))
            && self.kind.as_ref().is_none_or(|kind| {
                event.kind == *kind || event.kind.rsplit('.').next() == Some(kind.as_str())
            })
            && self.actor.as_ref().is_none_or(|actor| {
                [&event.from, &event.to]
                    .iter()
                    .any(|upid| *upid == actor || upid.split('@').next() == Some(actor.as_str()))
            })
            && self.since_us.is_none_or(|since| event.time_us >= since)
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `/trace/*` routes of a node with `recorder`.
pub(crate) fn routes(recorder: Arc<Recorder>) -> Router {
    let recent_recorder = recorder.clone();
    let recent = move |RawQuery(query): RawQuery| {
        let recorder = recent_recorder.clone();
        async move {
            let filter = match Filter::parse(query.as_deref()) {
                Ok(filter) => filter,
                Err(reason) => return error_response(StatusCode::BAD_REQUEST, reason),
            };
            let events = recorder.recent(|e| filter.accepts(e), filter.limit);
            let body: String = events.iter().map(TraceEvent::to_json_line).collect();
            ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
        }
    };
    let stream = move |RawQuery(query): RawQuery| {
        let recorder = recorder.clone();
        async move {
            match Filter::parse(query.as_deref()) {
                Ok(filter) => live(recorder, filter),
                Err(reason) => error_response(StatusCode::BAD_REQUEST, reason),
            }
        }
    };
    Router::new().route("/trace/recent", get(recent)).route("/trace/stream", get(stream))
}

/// A live subscription: events queue here until the response takes them.
struct Tap {
    filter: Filter,
    queue: tokio::sync::mpsc::Sender<String>,
    budget: Mutex<(Instant, u64)>,
    dropped: AtomicU64,
}

/// Ends the subscription when the response body is dropped.
struct Unsubscribe {
    recorder: Arc<Recorder>,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.recorder.unsubscribe(self.id);
    }
}

fn live(recorder: Arc<Recorder>, filter: Filter) -> Response {
    if recorder.subscribers() >= MAX_SUBSCRIBERS {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this node already streams to {MAX_SUBSCRIBERS} subscribers"),
        );
    }
    let (queue, mut events) = tokio::sync::mpsc::channel::<String>(STREAM_QUEUE);
    let tap =
        Arc::new(Tap { filter, queue, budget: Mutex::new((Instant::now(), 0)), dropped: AtomicU64::new(0) });
    let delivering = tap.clone();
    let id = recorder.subscribe(Box::new(move |event| delivering.offer(event)));
    let guard = Unsubscribe { recorder, id };
    let body = async_stream(move |send| async move {
        let _guard = guard;
        let mut report = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                line = events.recv() => match line {
                    Some(line) => if !send(line).await { return },
                    None => return,
                },
                _ = report.tick() => {
                    let dropped = tap.dropped.swap(0, Ordering::Relaxed);
                    if dropped > 0 && !send(format!("{{\"dropped\":{dropped}}}\n")).await {
                        return;
                    }
                }
            }
        }
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

impl Tap {
    /// Queues `event` if it matches and the subscriber's budget allows; counts drops.
    fn offer(&self, event: &TraceEvent) {
        if !self.filter.accepts(event) {
            return;
        }
        let allowed = {
            let mut budget = self.budget.lock().unwrap_or_else(|p| p.into_inner());
            if budget.0.elapsed() >= Duration::from_secs(1) {
                *budget = (Instant::now(), 0);
            }
            budget.1 += 1;
            budget.1 <= STREAM_EVENTS_PER_SEC
        };
        if !allowed || self.queue.try_send(event.to_json_line()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A response body fed by `produce`, which gets a `send(line) -> still open` function.
fn async_stream<F, Fut>(produce: F) -> Body
where
    F: FnOnce(Box<dyn Fn(String) -> SendFuture + Send + Sync>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(16);
    let send = Box::new(move |line: String| -> SendFuture {
        let tx = tx.clone();
        Box::pin(async move { tx.send(Ok(line)).await.is_ok() })
    });
    tokio::spawn(produce(send));
    Body::from_stream(tokio_stream_from(rx))
}

type SendFuture = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;

/// The receiver as a `Stream` of chunks.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<String, std::io::Error>> {
    futures_util_stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `futures::stream::poll_fn` without the dependency.
mod futures_util_stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct PollFn<F>(F);

    pub fn poll_fn<T, F: FnMut(&mut Context<'_>) -> Poll<Option<T>>>(f: F) -> PollFn<F> {
        PollFn(f)
    }

    impl<T, F: FnMut(&mut Context<'_>) -> Poll<Option<T>> + Unpin> futures_core::Stream for PollFn<F> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            (self.0)(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::trace::{EventKind, MessageId};

    fn event() -> TraceEvent {
        TraceEvent {
            time_us: 5_000,
            node: "n".into(),
            event: EventKind::Recv,
            from: "master@127.0.0.1:5050".into(),
            to: "agent@127.0.0.1:5051".into(),
            kind: "keel.agent.RunTask".into(),
            size: 1,
            id: MessageId(1),
            parent: MessageId::NONE,
            reason: None,
            subjects: BTreeMap::from([("task".into(), "t 1".into()), ("framework".into(), "F".into())]),
        }
    }

    #[test]
    fn filters_parse_and_match() {
        let filter = Filter::parse(Some("task=t%201&kind=RunTask&actor=agent&since=4000")).unwrap();
        assert!(filter.accepts(&event()));
        assert!(!Filter::parse(Some("task=t2")).unwrap().accepts(&event()));
        assert!(!Filter::parse(Some("since=6000")).unwrap().accepts(&event()));
        assert!(Filter::parse(Some("actor=master@127.0.0.1:5050")).unwrap().accepts(&event()));
        assert!(!Filter::parse(Some("kind=Ping")).unwrap().accepts(&event()));
        assert_eq!(Filter::parse(None).unwrap().limit, 10_000);
    }

    #[test]
    fn bad_filters_say_which_parameter() {
        assert!(Filter::parse(Some("since=yesterday")).unwrap_err().contains("since"));
        assert!(Filter::parse(Some("limit=-1")).unwrap_err().contains("limit"));
        assert!(Filter::parse(Some("colour=red")).unwrap_err().contains("colour"));
        assert!(Filter::parse(Some("task=%zz")).unwrap_err().contains("percent"));
    }
}
