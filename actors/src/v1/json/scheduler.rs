//! The scheduler API's calls (`mesos.v1.scheduler.Call`) as Keel messages, and
//! Keel's scheduler-bound messages as its events (`mesos.v1.scheduler.Event`).
//!
//! A call is `{"type": T, "framework_id": {...}, "<t>": {...}}`; an event is
//! `{"type": T, "<t>": {...}}`. Where the Mesos docs and the protos disagree, the
//! proto's shape is used (`offers.offers`, `error.message`, `revive.roles`,
//! `request.requests`).

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use keel_proto::messages::agent::ShutdownExecutor;
use keel_proto::messages::common::{FrameworkToExecutorMessage, KillTask, StatusUpdateAcknowledgement};
use keel_proto::messages::scheduler::*;
use keel_proto::messages::Msg;
use keel_proto::task::{Filters, FrameworkInfo};
use serde_json::{json, Value};

use super::resources::{self, ReservationFormat};
use super::task::{framework_from_v1, offer_to_v1, status_to_v1, task_from_v1};
use super::{
    array, base64, bytes, get, id, id_field, number, required, required_id, string, strings, uuid_from_bytes,
    Parsed,
};
use crate::v1::error::V1Error;

/// Most offers, tasks or operations one call names.
const MAX_ITEMS: usize = 100_000;

/// A task of an ACCEPT that Keel refuses before it reaches the master: the adapter
/// answers it with TASK_ERROR (REASON_TASK_INVALID), as Mesos answers invalid tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedTask {
    /// The task.
    pub task_id: TaskId,
    /// Its agent, if the task named one.
    pub agent_id: Option<AgentId>,
    /// Why.
    pub message: String,
}

/// One scheduler call, read.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // read once per request
pub enum SchedulerCall {
    /// SUBSCRIBE.
    Subscribe {
        /// The framework (with its id when resubscribing).
        info: FrameworkInfo,
        /// Whether it wants reservations in the refinement format.
        refinement: bool,
        /// Roles to start suppressed.
        suppressed_roles: Vec<String>,
    },
    /// A call that becomes one Keel message.
    Message(Msg),
    /// ACCEPT: the message, and tasks refused up front.
    Accept(AcceptOffers, Vec<RefusedTask>),
    /// UPDATE_FRAMEWORK.
    UpdateFramework {
        /// The new description.
        info: FrameworkInfo,
        /// Roles to suppress (the others are revived).
        suppressed_roles: Vec<String>,
    },
    /// A call Keel accepts and does nothing for (REQUEST, inverse offers, operation
    /// status acknowledgements and reconciliation): named for the log.
    Ignored(String),
}

/// Reads a call: its type, its framework id (absent only for a first SUBSCRIBE)
/// and what it asks.
pub fn call_from_v1(body: &Value) -> Parsed<(String, Option<FrameworkId>, SchedulerCall)> {
    if !body.is_object() {
        return Err(V1Error::bad("a call is a JSON object"));
    }
    let kind = string(body, "type")?.ok_or_else(|| V1Error::bad("expecting 'type' to be present"))?;
    let framework_id = id_field(body, "framework_id")?.map(FrameworkId);
    let need_framework =
        || framework_id.clone().ok_or_else(|| V1Error::bad("expecting 'framework_id' to be present"));
    let sub = |key: &str| get(body, key).cloned().unwrap_or_else(|| json!({}));
    let call = match kind.as_str() {
        "SUBSCRIBE" => {
            let subscribe = required(body, "subscribe")?;
            let info_json = required(subscribe, "framework_info")?;
            let (info, refinement) = framework_from_v1(info_json)?;
            match (&framework_id, &info.id) {
                (Some(a), Some(b)) if a != b => {
                    return Err(V1Error::bad("'framework_id' differs from 'subscribe.framework_info.id'"))
                }
                (Some(_), None) => {
                    return Err(V1Error::bad(
                        "'subscribe.framework_info.id' must be set when 'framework_id' is (resubscription)",
                    ))
                }
                _ => {}
            }
            SchedulerCall::Subscribe {
                info,
                refinement,
                suppressed_roles: strings(subscribe, "suppressed_roles")?,
            }
        }
        "TEARDOWN" => SchedulerCall::Message(TeardownFramework { framework_id: need_framework()? }.into()),
        "ACCEPT" => {
            let (accept, refused) = accept_from_v1(need_framework()?, &sub("accept"))?;
            SchedulerCall::Accept(accept, refused)
        }
        "DECLINE" => {
            let decline = sub("decline");
            let offer_ids = offer_ids(&decline)?;
            let filters = filters(&decline)?;
            SchedulerCall::Message(
                DeclineOffers { framework_id: need_framework()?, offer_ids, filters }.into(),
            )
        }
        "REVIVE" => {
            let roles = strings(&sub("revive"), "roles")?;
            SchedulerCall::Message(ReviveOffers { framework_id: need_framework()?, roles }.into())
        }
        "SUPPRESS" => {
            let roles = strings(&sub("suppress"), "roles")?;
            SchedulerCall::Message(SuppressOffers { framework_id: need_framework()?, roles }.into())
        }
        "KILL" => {
            let kill = required(body, "kill")?;
            let message = KillTask {
                framework_id: need_framework()?,
                task_id: TaskId(required_id(kill, "task_id")?),
                agent_id: id_field(kill, "agent_id")?.map(AgentId),
            };
            SchedulerCall::Message(message.into())
        }
        "SHUTDOWN" => {
            let shutdown = required(body, "shutdown")?;
            let message = ShutdownExecutor {
                framework_id: need_framework()?,
                executor_id: ExecutorId(required_id(shutdown, "executor_id")?),
            };
            SchedulerCall::Message(message.into())
        }
        "ACKNOWLEDGE" => {
            let ack = required(body, "acknowledge")?;
            let uuid = bytes(ack, "uuid")?
                .ok_or_else(|| V1Error::bad("missing required field 'acknowledge.uuid'"))?;
            let message = StatusUpdateAcknowledgement {
                agent_id: AgentId(required_id(ack, "agent_id")?),
                framework_id: need_framework()?,
                task_id: TaskId(required_id(ack, "task_id")?),
                uuid: uuid_from_bytes(&uuid),
            };
            SchedulerCall::Message(message.into())
        }
        "RECONCILE" => {
            let reconcile = sub("reconcile");
            let tasks = array(&reconcile, "tasks")?
                .iter()
                .take(MAX_ITEMS)
                .map(|task| {
                    Ok(ReconcileTask {
                        task_id: TaskId(required_id(task, "task_id")?),
                        agent_id: id_field(task, "agent_id")?.map(AgentId),
                    })
                })
                .collect::<Parsed<Vec<_>>>()?;
            SchedulerCall::Message(ReconcileTasks { framework_id: need_framework()?, tasks }.into())
        }
        "MESSAGE" => {
            let message = required(body, "message")?;
            let data = bytes(message, "data")?
                .ok_or_else(|| V1Error::bad("missing required field 'message.data'"))?;
            let message = FrameworkToExecutorMessage {
                agent_id: AgentId(required_id(message, "agent_id")?),
                framework_id: need_framework()?,
                executor_id: ExecutorId(required_id(message, "executor_id")?),
                data,
            };
            SchedulerCall::Message(message.into())
        }
        "UPDATE_FRAMEWORK" => {
            need_framework()?;
            let update = required(body, "update_framework")?;
            let (info, _) = framework_from_v1(required(update, "framework_info")?)?;
            if info.id.as_ref() != framework_id.as_ref() {
                return Err(V1Error::bad("'update_framework.framework_info.id' must equal 'framework_id'"));
            }
            SchedulerCall::UpdateFramework { info, suppressed_roles: strings(update, "suppressed_roles")? }
        }
        "REQUEST"
        | "ACCEPT_INVERSE_OFFERS"
        | "DECLINE_INVERSE_OFFERS"
        | "ACKNOWLEDGE_OPERATION_STATUS"
        | "RECONCILE_OPERATIONS" => {
            need_framework()?;
            SchedulerCall::Ignored(kind.clone())
        }
        other => return Err(V1Error::bad(format!("unknown or unsupported call type {other:?}"))),
    };
    Ok((kind, framework_id, call))
}

fn offer_ids(value: &Value) -> Parsed<Vec<OfferId>> {
    array(value, "offer_ids")?
        .iter()
        .take(MAX_ITEMS)
        .map(|o| match get(o, "value") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(OfferId(s.clone())),
            _ => Err(V1Error::bad("'offer_ids' holds id objects {\"value\": \"...\"}")),
        })
        .collect()
}

fn filters(value: &Value) -> Parsed<Filters> {
    let mut filters = Filters::default();
    if let Some(f) = get(value, "filters") {
        if let Some(seconds) = number(f, "refuse_seconds")? {
            // Mesos caps refusals at a year; negative or NaN means the default.
            filters.refuse_seconds = if seconds.is_nan() || seconds < 0.0 {
                Filters::default().refuse_seconds
            } else {
                seconds.min(365.0 * 86_400.0)
            };
        }
    }
    Ok(filters)
}

fn accept_from_v1(framework_id: FrameworkId, accept: &Value) -> Parsed<(AcceptOffers, Vec<RefusedTask>)> {
    let mut operations = Vec::new();
    let mut refused = Vec::new();
    let mut refuse = |task: &Value, message: String| -> Parsed<()> {
        let task_id = TaskId(required_id(task, "task_id")?);
        let agent_id = id_field(task, "agent_id")?.map(AgentId);
        refused.push(RefusedTask { task_id, agent_id, message });
        Ok(())
    };
    for operation in array(accept, "operations")?.iter().take(MAX_ITEMS) {
        let kind = string(operation, "type")?.unwrap_or_default();
        match kind.as_str() {
            "LAUNCH" => {
                let launch = required(operation, "launch")?;
                let mut tasks = Vec::new();
                for task in array(launch, "task_infos")?.iter().take(MAX_ITEMS) {
                    match task_from_v1(task) {
                        Ok(task) => tasks.push(task),
                        Err(e) => refuse(task, e.to_string())?,
                    }
                }
                operations.push(Operation::Launch { tasks });
            }
            "LAUNCH_GROUP" => {
                let group = required(operation, "launch_group")?;
                let task_group = get(group, "task_group").cloned().unwrap_or_else(|| json!({}));
                for task in array(&task_group, "tasks")?.iter().take(MAX_ITEMS) {
                    refuse(task, "LAUNCH_GROUP: Keel does not support task groups".into())?;
                }
            }
            "RESERVE" => {
                let reserve = required(operation, "reserve")?;
                operations.push(Operation::Reserve { resources: resources::field(reserve, "resources")? });
            }
            "UNRESERVE" => {
                let unreserve = required(operation, "unreserve")?;
                operations
                    .push(Operation::Unreserve { resources: resources::field(unreserve, "resources")? });
            }
            other => {
                // Volumes and disks: Keel has none; the rest of the accept goes on.
                tracing::warn!(operation = other, %framework_id, "dropping an offer operation Keel does not support");
            }
        }
    }
    let accept = AcceptOffers {
        framework_id,
        offer_ids: offer_ids(accept)?,
        operations,
        filters: filters(accept)?,
        call_id: None,
    };
    Ok((accept, refused))
}

/// What the events of one subscription need beyond the message itself.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// `heartbeat_interval_seconds` of SUBSCRIBED.
    pub heartbeat_secs: f64,
    /// `master_info` of SUBSCRIBED.
    pub master_info: Value,
    /// How the framework wants reservations written.
    pub format: ReservationFormat,
    /// Whether the framework is MULTI_ROLE (offers carry `allocation_info`).
    pub multi_role: bool,
}

/// `master_info` for a master at `upid` (Mesos's `ip` is the IPv4 address as a
/// network-order u32).
pub fn master_info(upid: &Upid, id: &str) -> Value {
    let node = upid.node();
    let ip = node.host().parse::<std::net::Ipv4Addr>().map(|a| u32::from_le_bytes(a.octets())).unwrap_or(0);
    json!({
        "id": id,
        "ip": ip,
        "port": node.port(),
        "pid": upid.to_string(),
        "hostname": node.host(),
        "version": super::MESOS_VERSION,
        "address": { "hostname": node.host(), "ip": node.host(), "port": node.port() },
    })
}

/// The event a scheduler-bound Keel message becomes; `None` for a message the
/// scheduler API has no event for.
pub fn event_from_msg(message: &Msg, context: &EventContext) -> Option<Value> {
    Some(match message {
        Msg::FrameworkSubscribed(m) => json!({
            "type": "SUBSCRIBED",
            "subscribed": {
                "framework_id": id(&m.framework_id),
                "heartbeat_interval_seconds": context.heartbeat_secs,
                "master_info": context.master_info,
            },
        }),
        Msg::FrameworkError(m) => json!({ "type": "ERROR", "error": { "message": m.message } }),
        Msg::ResourceOffers(m) => {
            let offers: Vec<Value> =
                m.offers.iter().map(|o| offer_to_v1(o, context.format, context.multi_role)).collect();
            json!({ "type": "OFFERS", "offers": { "offers": offers } })
        }
        Msg::RescindOffer(m) => json!({ "type": "RESCIND", "rescind": { "offer_id": id(&m.offer_id) } }),
        Msg::StatusUpdate(m) => json!({ "type": "UPDATE", "update": { "status": status_to_v1(&m.status) } }),
        Msg::ExecutorToFrameworkMessage(m) => json!({
            "type": "MESSAGE",
            "message": { "agent_id": id(&m.agent_id), "executor_id": id(&m.executor_id), "data": base64(&m.data) },
        }),
        Msg::AgentLost(m) => json!({ "type": "FAILURE", "failure": { "agent_id": id(&m.agent_id) } }),
        Msg::ExecutorLost(m) => json!({
            "type": "FAILURE",
            "failure": { "agent_id": id(&m.agent_id), "executor_id": id(&m.executor_id), "status": m.status },
        }),
        _ => return None,
    })
}

/// Mesos's heartbeat interval, in seconds.
pub const HEARTBEAT_SECS: f64 = 15.0;

/// A HEARTBEAT event.
pub fn heartbeat() -> Value {
    json!({ "type": "HEARTBEAT" })
}

/// The UPDATE (TASK_ERROR) that answers a task refused by the adapter.
pub fn refused_task_event(task: &RefusedTask, now: f64) -> Value {
    let mut status = json!({
        "task_id": id(&task.task_id),
        "state": "TASK_ERROR",
        "source": "SOURCE_MASTER",
        "reason": "REASON_TASK_INVALID",
        "message": task.message,
        "timestamp": now,
    });
    if let Some(agent_id) = &task.agent_id {
        status["agent_id"] = id(agent_id);
    }
    json!({ "type": "UPDATE", "update": { "status": status } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: Value) -> Parsed<SchedulerCall> {
        call_from_v1(&body).map(|(_, _, call)| call)
    }

    #[test]
    fn pymesos_calls_are_read() {
        // As captured from pymesos 0.3.15.
        let subscribe = read(json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": "root", "name": "test", "hostname": "h", "failover_timeout": 100,
            "capabilities": [{"type": "GPU_RESOURCES"}]}}}))
        .unwrap();
        assert!(matches!(subscribe, SchedulerCall::Subscribe { ref info, .. } if info.id.is_none()));
        let accept = read(json!({"type": "ACCEPT", "framework_id": {"value": "F"}, "accept": {
            "offer_ids": [{"value": "O1"}],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                "name": "t", "task_id": {"value": "1"}, "agent_id": {"value": "A"},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
                "command": {"value": "true"}}]}},
                {"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": [
                    {"name": "g", "task_id": {"value": "2"}, "agent_id": {"value": "A"}}]}}},
                {"type": "CREATE", "create": {"volumes": []}}],
            "filters": {"refuse_seconds": 5.0}}}))
        .unwrap();
        let SchedulerCall::Accept(accept, refused) = accept else { panic!() };
        assert_eq!(accept.offer_ids, vec![OfferId("O1".into())]);
        assert_eq!(accept.operations.len(), 1);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].task_id.as_str(), "2");
        // REVIVE and SUPPRESS come without their objects: all roles.
        let revive = read(json!({"type": "REVIVE", "framework_id": {"value": "F"}})).unwrap();
        assert_eq!(
            revive,
            SchedulerCall::Message(ReviveOffers { framework_id: "F".into(), roles: vec![] }.into())
        );
        let ack = read(json!({"type": "ACKNOWLEDGE", "framework_id": {"value": "F"}, "acknowledge": {
            "agent_id": {"value": "A"}, "task_id": {"value": "1"}, "uuid": "DdBSTYvIS2ShHmQIfaj5Rw=="}}))
        .unwrap();
        let SchedulerCall::Message(Msg::StatusUpdateAcknowledgement(ack)) = ack else { panic!() };
        assert_eq!(ack.uuid.as_str(), "0dd0524d8bc84b64a11e64087da8f947");
        let reconcile = read(json!({"type": "RECONCILE", "framework_id": {"value": "F"},
            "reconcile": {"tasks": [{"task_id": {"value": "1"}}]}}))
        .unwrap();
        assert!(
            matches!(reconcile, SchedulerCall::Message(Msg::ReconcileTasks(ref r)) if r.tasks.len() == 1)
        );
    }

    #[test]
    fn bad_calls_are_refused_with_a_reason() {
        let cases = [
            json!([]),
            json!({"framework_id": {"value": "F"}}),
            json!({"type": "NOPE", "framework_id": {"value": "F"}}),
            json!({"type": "TEARDOWN"}),
            json!({"type": "SUBSCRIBE"}),
            json!({"type": "SUBSCRIBE", "framework_id": {"value": "F"}, "subscribe": {"framework_info": {"name": "x"}}}),
            json!({"type": "KILL", "framework_id": {"value": "F"}}),
            json!({"type": "ACKNOWLEDGE", "framework_id": {"value": "F"}, "acknowledge": {
                "agent_id": {"value": "A"}, "task_id": {"value": "1"}, "uuid": "%%%"}}),
            json!({"type": "DECLINE", "framework_id": {"value": "F"}, "decline": {"offer_ids": ["O1"]}}),
        ];
        for case in cases {
            let error = read(case.clone()).expect_err(&case.to_string());
            assert!(matches!(error, V1Error::BadRequest(_)), "{case}: {error:?}");
        }
    }

    #[test]
    fn events_have_the_proto_shapes() {
        let context = EventContext {
            heartbeat_secs: 15.0,
            master_info: master_info(&"master@127.0.0.1:5050".parse().unwrap(), "m"),
            format: ReservationFormat::PreRefinement,
            multi_role: false,
        };
        let offers = Msg::from(ResourceOffers { offers: vec![] });
        assert_eq!(
            event_from_msg(&offers, &context).unwrap(),
            json!({"type": "OFFERS", "offers": {"offers": []}})
        );
        let error = Msg::from(FrameworkError { message: "no".into() });
        assert_eq!(event_from_msg(&error, &context).unwrap()["error"]["message"], "no");
        let subscribed = Msg::from(FrameworkSubscribed {
            framework_id: "F".into(),
            master: "master@127.0.0.1:5050".parse().unwrap(),
            subscription: 0,
            epoch: 1,
        });
        let event = event_from_msg(&subscribed, &context).unwrap();
        assert_eq!(event["subscribed"]["framework_id"]["value"], "F");
        assert_eq!(event["subscribed"]["master_info"]["ip"], 16_777_343);
        let lost = Msg::from(ExecutorLost {
            framework_id: "F".into(),
            agent_id: "A".into(),
            executor_id: "E".into(),
            status: 9,
        });
        assert_eq!(event_from_msg(&lost, &context).unwrap()["failure"]["status"], 9);
    }
}
