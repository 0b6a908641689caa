//! The executor API's calls (`mesos.v1.executor.Call`) and events
//! (`mesos.v1.executor.Event`). Every call carries the executor's `framework_id`
//! and `executor_id`; statuses from executors carry their own uuid, which travels
//! unchanged to the scheduler and back.

use keel_proto::ids::{ExecutorId, FrameworkId};
use keel_proto::messages::Msg;
use keel_proto::task::{ExecutorInfo, FrameworkInfo, TaskInfo, TaskStatus};
use serde_json::{json, Value};

use super::resources::ReservationFormat;
use super::task::{executor_to_v1, framework_to_v1, status_from_executor, task_from_v1, task_to_v1};
use super::{array, base64, bytes, get, id, required, required_id, string, uuid_base64, Parsed};
use crate::v1::error::V1Error;

/// Most unacknowledged tasks or updates one SUBSCRIBE names.
const MAX_ITEMS: usize = 10_000;

/// One executor call, read.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorCall {
    /// SUBSCRIBE, with what the executor runs and has not seen acknowledged.
    Subscribe {
        /// Tasks it runs.
        unacknowledged_tasks: Vec<TaskInfo>,
        /// Updates not acknowledged yet.
        unacknowledged_updates: Vec<TaskStatus>,
    },
    /// UPDATE: a task status (with the executor's uuid).
    Update(TaskStatus),
    /// MESSAGE: data for the scheduler.
    Message(Vec<u8>),
    /// HEARTBEAT: nothing to do.
    Heartbeat,
}

/// Reads a call: its type, framework, executor and what it asks.
pub fn call_from_v1(body: &Value) -> Parsed<(String, FrameworkId, ExecutorId, ExecutorCall)> {
    if !body.is_object() {
        return Err(V1Error::bad("a call is a JSON object"));
    }
    let kind = string(body, "type")?.ok_or_else(|| V1Error::bad("expecting 'type' to be present"))?;
    let framework_id = FrameworkId(required_id(body, "framework_id")?);
    let executor_id = ExecutorId(required_id(body, "executor_id")?);
    let call = match kind.as_str() {
        "SUBSCRIBE" => {
            let subscribe = get(body, "subscribe").cloned().unwrap_or_else(|| json!({}));
            let unacknowledged_tasks = array(&subscribe, "unacknowledged_tasks")?
                .iter()
                .take(MAX_ITEMS)
                .map(task_from_v1)
                .collect::<Parsed<Vec<_>>>()?;
            let unacknowledged_updates = array(&subscribe, "unacknowledged_updates")?
                .iter()
                .take(MAX_ITEMS)
                .map(|update| status_from_executor(required(update, "status")?))
                .collect::<Parsed<Vec<_>>>()?;
            ExecutorCall::Subscribe { unacknowledged_tasks, unacknowledged_updates }
        }
        "UPDATE" => {
            let update = required(body, "update")?;
            let status = status_from_executor(required(update, "status")?)?;
            ExecutorCall::Update(status)
        }
        "MESSAGE" => {
            let message = required(body, "message")?;
            let data = bytes(message, "data")?
                .ok_or_else(|| V1Error::bad("missing required field 'message.data'"))?;
            ExecutorCall::Message(data)
        }
        "HEARTBEAT" => ExecutorCall::Heartbeat,
        other => return Err(V1Error::bad(format!("unknown or unsupported call type {other:?}"))),
    };
    Ok((kind, framework_id, executor_id, call))
}

/// What SUBSCRIBED tells an executor.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The executor.
    pub executor: ExecutorInfo,
    /// Its framework (with its id).
    pub framework: FrameworkInfo,
    /// The agent's id, hostname and port.
    pub agent_id: String,
    /// The agent's host.
    pub hostname: String,
    /// The agent's port.
    pub port: u16,
    /// The executor's container.
    pub container_id: String,
}

/// The SUBSCRIBED event. pymesos asserts that the ids equal its environment's
/// exactly, so ids are bare `{"value"}` objects.
pub fn subscribed(subscription: &Subscription) -> Value {
    let mut framework = framework_to_v1(&subscription.framework);
    if let Some(framework_id) = &subscription.framework.id {
        framework["id"] = id(framework_id);
    }
    json!({
        "type": "SUBSCRIBED",
        "subscribed": {
            "executor_info": executor_to_v1(&subscription.executor, ReservationFormat::PreRefinement),
            "framework_info": framework,
            "agent_info": {
                "id": id(&subscription.agent_id),
                "hostname": subscription.hostname,
                "port": subscription.port,
                "resources": [],
            },
            "container_id": id(&subscription.container_id),
        },
    })
}

/// The event an executor-bound Keel message becomes (`None`: no event; the
/// registration answers become SUBSCRIBED elsewhere, with more than they carry).
pub fn event_from_msg(message: &Msg, framework: &FrameworkInfo) -> Option<Value> {
    Some(match message {
        Msg::LaunchTask(m) => json!({
            "type": "LAUNCH",
            "launch": {
                "task": task_to_v1(&m.task, ReservationFormat::PreRefinement),
                "framework_info": framework_to_v1(framework),
            },
        }),
        Msg::KillTask(m) => json!({ "type": "KILL", "kill": { "task_id": id(&m.task_id) } }),
        Msg::StatusUpdateAcknowledgement(m) => json!({
            "type": "ACKNOWLEDGED",
            "acknowledged": { "task_id": id(&m.task_id), "uuid": uuid_base64(&m.uuid) },
        }),
        Msg::FrameworkToExecutorMessage(m) => {
            json!({ "type": "MESSAGE", "message": { "data": base64(&m.data) } })
        }
        Msg::ShutdownExecutor(_) => json!({ "type": "SHUTDOWN" }),
        _ => return None,
    })
}

/// An ERROR event.
pub fn error(message: &str) -> Value {
    json!({ "type": "ERROR", "error": { "message": message } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::messages::common::StatusUpdateAcknowledgement;

    #[test]
    fn pymesos_executor_calls_are_read() {
        let subscribe = json!({"type": "SUBSCRIBE", "framework_id": {"value": "F"}, "executor_id": {"value": "E"},
            "subscribe": {"unacknowledged_tasks": [], "unacknowledged_updates": []}});
        let (kind, framework_id, executor_id, call) = call_from_v1(&subscribe).unwrap();
        assert_eq!((kind.as_str(), framework_id.as_str(), executor_id.as_str()), ("SUBSCRIBE", "F", "E"));
        assert!(matches!(call, ExecutorCall::Subscribe { .. }));
        let update = json!({"type": "UPDATE", "framework_id": {"value": "F"}, "executor_id": {"value": "E"},
            "update": {"status": {"task_id": {"value": "t"}, "state": "TASK_RUNNING", "timestamp": 1796160746,
            "uuid": "DdBSTYvIS2ShHmQIfaj5Rw==", "source": "SOURCE_EXECUTOR"}}});
        let ExecutorCall::Update(status) = call_from_v1(&update).unwrap().3 else { panic!() };
        // The uuid comes back unchanged in ACKNOWLEDGED.
        let ack = Msg::from(StatusUpdateAcknowledgement {
            agent_id: "A".into(),
            framework_id: "F".into(),
            task_id: status.task_id.clone(),
            uuid: status.uuid.clone().unwrap(),
        });
        let event = event_from_msg(&ack, &FrameworkInfo::new("f")).unwrap();
        assert_eq!(event["acknowledged"]["uuid"], "DdBSTYvIS2ShHmQIfaj5Rw==");
        let message = json!({"type": "MESSAGE", "framework_id": {"value": "F"}, "executor_id": {"value": "E"},
            "message": {"data": "aGk="}});
        assert_eq!(call_from_v1(&message).unwrap().3, ExecutorCall::Message(b"hi".to_vec()));
    }

    #[test]
    fn bad_executor_calls_are_refused() {
        for bad in [
            json!({"type": "SUBSCRIBE", "executor_id": {"value": "E"}}),
            json!({"type": "SUBSCRIBE", "framework_id": {"value": "F"}}),
            json!({"type": "LAUNCH", "framework_id": {"value": "F"}, "executor_id": {"value": "E"}}),
            json!({"type": "UPDATE", "framework_id": {"value": "F"}, "executor_id": {"value": "E"}}),
            json!({"type": "MESSAGE", "framework_id": {"value": "F"}, "executor_id": {"value": "E"}, "message": {}}),
        ] {
            assert!(call_from_v1(&bad).is_err(), "{bad}");
        }
    }
}
