//! Fault injection for tests with real processes, like Mesos's `DROP_MESSAGE` and
//! `FUTURE_MESSAGE` filters: a node started with `NodeConfig::fault_injection`
//! takes rules that drop, delay or duplicate the messages it sends, and those it
//! receives from other nodes, by kind, sender and receiver. Never on by default;
//! the `keel` binary refuses it on a non-loopback address (there is no
//! authentication to keep strangers from using it).
//!
//! `POST /faults` adds a rule (`{"action": "drop" | "delay" | "duplicate", "kind",
//! "from", "to", "delay_ms", "count"}`; absent matchers match anything; `kind` may be
//! the last dotted part, `from`/`to` a UPID or a process name; `count` bounds how
//! many messages it hits) and answers its id; `GET /faults` lists the rules with
//! their hits; `DELETE /faults` removes them all. Every injected fault is recorded
//! in the trace as a `fault` event whose reason names it.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::Node;
use crate::http::error_response;

/// The most rules a node holds.
const MAX_RULES: usize = 1_000;

/// The longest delay a rule may ask for.
const MAX_DELAY: Duration = Duration::from_secs(3600);

/// What a rule does to a message it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The message is lost.
    Drop,
    /// The message goes `delay_ms` later.
    Delay,
    /// The message goes twice.
    Duplicate,
}

/// One rule as given to `POST /faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// What to do.
    pub action: Action,
    /// The kind (whole, or its last dotted part); any when absent.
    #[serde(default)]
    pub kind: Option<String>,
    /// The sender (a UPID or a name); any when absent.
    #[serde(default)]
    pub from: Option<String>,
    /// The receiver (a UPID or a name); any when absent.
    #[serde(default)]
    pub to: Option<String>,
    /// For `delay`: how long, in milliseconds.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// How many messages it hits at most; for ever when absent.
    #[serde(default)]
    pub count: Option<u64>,
}

/// A rule with its id and how often it hit.
#[derive(Debug, Clone, Serialize)]
struct Rule {
    id: u64,
    #[serde(flatten)]
    spec: RuleSpec,
    hits: u64,
}

/// What the node must do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing: deliver it.
    Pass,
    /// Lose it.
    Drop,
    /// Deliver it after this long.
    Delay(Duration),
    /// Deliver it twice.
    Duplicate,
}

impl Verdict {
    /// The trace reason of an injected fault.
    pub(crate) fn reason(self) -> String {
        match self {
            Verdict::Pass => String::new(),
            Verdict::Drop => "injected drop".into(),
            Verdict::Delay(delay) => format!("injected delay {} ms", delay.as_millis()),
            Verdict::Duplicate => "injected duplicate".into(),
        }
    }
}

/// A node's rules.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Mutex<Vec<Rule>>,
    next_id: Mutex<u64>,
}

fn matches(pattern: &Option<String>, upid: &str) -> bool {
    pattern.as_ref().is_none_or(|p| p == upid || upid.split('@').next() == Some(p.as_str()))
}

impl Faults {
    /// What to do with a message of `kind` from `from` to `to` (UPID texts); the first
    /// matching rule with hits left decides, and counts the hit.
    pub(crate) fn judge(&self, kind: &str, from: &str, to: &str) -> Verdict {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        for rule in rules.iter_mut() {
            let spec = &rule.spec;
            let kind_matches =
                spec.kind.as_ref().is_none_or(|k| k == kind || kind.rsplit('.').next() == Some(k.as_str()));
            let left = spec.count.is_none_or(|count| rule.hits < count);
            if kind_matches && left && matches(&spec.from, from) && matches(&spec.to, to) {
                rule.hits += 1;
                return match spec.action {
                    Action::Drop => Verdict::Drop,
                    Action::Delay => Verdict::Delay(Duration::from_millis(spec.delay_ms.unwrap_or(0))),
                    Action::Duplicate => Verdict::Duplicate,
                };
            }
        }
        Verdict::Pass
    }

    fn add(&self, spec: RuleSpec) -> Result<u64, String> {
        if spec.action == Action::Delay {
            match spec.delay_ms {
                Some(ms) if Duration::from_millis(ms) <= MAX_DELAY => {}
                Some(ms) => return Err(format!("delay_ms {ms} is above an hour")),
                None => return Err("a delay needs delay_ms".into()),
            }
        } else if spec.delay_ms.is_some() {
            return Err("delay_ms is only for a delay".into());
        }
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        if rules.len() >= MAX_RULES {
            return Err(format!("a node holds at most {MAX_RULES} rules"));
        }
        let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        rules.push(Rule { id: *next, spec, hits: 0 });
        Ok(*next)
    }
}

/// The `/faults` routes of a node with fault injection on.
pub(crate) fn routes(node: Node) -> Router {
    let (list, add, clear) = (node.clone(), node.clone(), node);
    Router::new().route(
        "/faults",
        get(move || {
            let node = list.clone();
            async move {
                let rules = node.faults().map(|f| f.rules.lock().unwrap_or_else(|p| p.into_inner()).clone());
                Json(serde_json::json!({ "rules": rules.unwrap_or_default() }))
            }
        })
        .post(move |body: Result<Json<RuleSpec>, axum::extract::rejection::JsonRejection>| {
            let node = add.clone();
            async move {
                let Some(faults) = node.faults() else {
                    return error_response(StatusCode::NOT_FOUND, "fault injection is off");
                };
                let spec = match body {
                    Ok(Json(spec)) => spec,
                    Err(e) => return error_response(StatusCode::BAD_REQUEST, e.body_text()),
                };
                match faults.add(spec) {
                    Ok(id) => Json(serde_json::json!({ "id": id })).into_response(),
                    Err(reason) => error_response(StatusCode::BAD_REQUEST, reason),
                }
            }
        })
        .delete(move || {
            let node = clear.clone();
            async move {
                if let Some(faults) = node.faults() {
                    faults.rules.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Json(serde_json::json!({ "ok": true }))
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(action: Action) -> RuleSpec {
        RuleSpec { action, kind: None, from: None, to: None, delay_ms: None, count: None }
    }

    #[test]
    fn rules_match_by_kind_and_ends_and_count_their_hits() {
        let faults = Faults::default();
        let drop_one = RuleSpec {
            kind: Some("RunTask".into()),
            to: Some("agent".into()),
            count: Some(1),
            ..spec(Action::Drop)
        };
        faults.add(drop_one).unwrap();
        let run = ("keel.agent.RunTask", "master@127.0.0.1:1", "agent@127.0.0.1:2");
        assert_eq!(faults.judge("keel.agent.Ping", run.1, run.2), Verdict::Pass);
        assert_eq!(faults.judge(run.0, run.1, run.2), Verdict::Drop);
        assert_eq!(faults.judge(run.0, run.1, run.2), Verdict::Pass, "count 1 is used up");
        let delay =
            RuleSpec { delay_ms: Some(50), from: Some("master@127.0.0.1:1".into()), ..spec(Action::Delay) };
        faults.add(delay).unwrap();
        assert_eq!(faults.judge(run.0, run.1, run.2), Verdict::Delay(Duration::from_millis(50)));
    }

    #[test]
    fn bad_rules_are_refused() {
        let faults = Faults::default();
        assert!(faults.add(spec(Action::Delay)).unwrap_err().contains("delay_ms"));
        let absurd = RuleSpec { delay_ms: Some(u64::MAX), ..spec(Action::Delay) };
        assert!(faults.add(absurd).unwrap_err().contains("hour"));
        let stray = RuleSpec { delay_ms: Some(5), ..spec(Action::Drop) };
        assert!(faults.add(stray).is_err());
        assert!(serde_json::from_str::<RuleSpec>(r#"{"action":"explode"}"#).is_err());
        assert!(serde_json::from_str::<RuleSpec>(r#"{"action":"drop","colour":"red"}"#).is_err());
    }
}
