//! Task, executor, command and framework descriptions, task statuses and offers in
//! v1 JSON, both ways. What Keel does not implement is refused with a 400 naming it
//! (URIs to fetch, container images, DEFAULT executors, secrets); what it merely
//! does not use (health checks, kill policies, discovery, labels of executors) is
//! ignored, as unknown fields are.

use std::collections::BTreeMap;

use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use keel_proto::task::{
    CommandInfo, ExecutorInfo, FrameworkCapability, FrameworkInfo, Offer, StatusSource, TaskInfo, TaskReason,
    TaskState, TaskStatus,
};
use serde_json::{json, Map, Value};

use super::resources::{self, ReservationFormat};
use super::{
    array, base64, boolean, bytes, compact, float, get, id, id_field, number, required, required_id, string,
    strings, uuid_base64, uuid_from_bytes, Parsed,
};
use crate::v1::error::V1Error;

/// Reads an enum by its Mesos name (Keel's types carry the same names).
fn enum_value<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(json!(name)).ok()
}

/// A task state from its name (`TASK_RUNNING`).
pub fn task_state(name: &str) -> Parsed<TaskState> {
    enum_value(name).ok_or_else(|| V1Error::bad(format!("unknown task state {name:?}")))
}

// ---- CommandInfo ------------------------------------------------------------

/// Reads a CommandInfo (`shell` defaults to true, as in Mesos).
pub fn command_from_v1(value: &Value) -> Parsed<CommandInfo> {
    if !array(value, "uris")?.is_empty() {
        return Err(V1Error::bad("CommandInfo.uris: Keel does not fetch URIs into sandboxes"));
    }
    let shell = boolean(value, "shell")?.unwrap_or(true);
    let command_value = string(value, "value")?.unwrap_or_default();
    if command_value.is_empty() {
        return Err(V1Error::bad("CommandInfo.value: a command needs a value"));
    }
    let mut environment = BTreeMap::new();
    if let Some(env) = get(value, "environment") {
        for variable in array(env, "variables")? {
            let name = string(variable, "name")?
                .ok_or_else(|| V1Error::bad("an environment variable needs a name"))?;
            if string(variable, "type")?.as_deref() == Some("SECRET") {
                return Err(V1Error::bad(format!(
                    "environment variable {name:?}: Keel does not support secrets"
                )));
            }
            environment.insert(name, string(variable, "value")?.unwrap_or_default());
        }
    }
    Ok(CommandInfo {
        shell,
        value: command_value,
        arguments: strings(value, "arguments")?,
        environment,
        user: string(value, "user")?,
    })
}

/// A CommandInfo in v1 JSON.
pub fn command_to_v1(command: &CommandInfo) -> Value {
    let mut out = json!({ "shell": command.shell, "value": command.value });
    if !command.arguments.is_empty() {
        out["arguments"] = json!(command.arguments);
    }
    if !command.environment.is_empty() {
        let variables: Vec<Value> = command
            .environment
            .iter()
            .map(|(name, value)| json!({ "name": name, "type": "VALUE", "value": value }))
            .collect();
        out["environment"] = json!({ "variables": variables });
    }
    if let Some(user) = &command.user {
        out["user"] = json!(user);
    }
    out
}

// ---- ExecutorInfo -----------------------------------------------------------

/// Reads an ExecutorInfo (custom executors only).
pub fn executor_from_v1(value: &Value) -> Parsed<ExecutorInfo> {
    if string(value, "type")?.as_deref() == Some("DEFAULT") {
        return Err(V1Error::bad("ExecutorInfo.type DEFAULT: Keel has no default executor (task groups)"));
    }
    reject_container(value, "ExecutorInfo")?;
    let command = required(value, "command")?;
    Ok(ExecutorInfo {
        executor_id: ExecutorId(required_id(value, "executor_id")?),
        framework_id: id_field(value, "framework_id")?.map(FrameworkId),
        command: command_from_v1(command)?,
        resources: resources::field(value, "resources")?,
        name: string(value, "name")?,
    })
}

/// An ExecutorInfo in v1 JSON.
pub fn executor_to_v1(executor: &ExecutorInfo, format: ReservationFormat) -> Value {
    let mut out = json!({
        "type": "CUSTOM",
        "executor_id": id(&executor.executor_id),
        "command": command_to_v1(&executor.command),
        "resources": resources::to_v1(&executor.resources, format, None),
    });
    if let Some(framework_id) = &executor.framework_id {
        out["framework_id"] = id(framework_id);
    }
    if let Some(name) = &executor.name {
        out["name"] = json!(name);
    }
    out
}

fn reject_container(value: &Value, what: &str) -> Parsed<()> {
    if let Some(container) = get(value, "container") {
        let image = get(container, "docker").is_some()
            || get(container, "mesos").and_then(|m| get(m, "image")).is_some()
            || string(container, "type")?.as_deref() == Some("DOCKER");
        if image {
            return Err(V1Error::bad(format!("{what}.container: Keel does not run container images")));
        }
    }
    Ok(())
}

// ---- TaskInfo ---------------------------------------------------------------

/// Reads a TaskInfo.
pub fn task_from_v1(value: &Value) -> Parsed<TaskInfo> {
    let task_id = required_id(value, "task_id")?;
    reject_container(value, "TaskInfo")?;
    let command = get(value, "command").map(command_from_v1).transpose()?;
    let executor = get(value, "executor").map(executor_from_v1).transpose()?;
    let mut labels = BTreeMap::new();
    if let Some(object) = get(value, "labels") {
        for label in array(object, "labels")? {
            if let Some(key) = string(label, "key")? {
                labels.insert(key, string(label, "value")?.unwrap_or_default());
            }
        }
    }
    Ok(TaskInfo {
        name: string(value, "name")?.unwrap_or_else(|| task_id.clone()),
        task_id: TaskId(task_id),
        agent_id: AgentId(required_id(value, "agent_id")?),
        resources: resources::field(value, "resources")?,
        command,
        executor,
        data: bytes(value, "data")?,
        labels,
    })
}

/// A TaskInfo in v1 JSON.
pub fn task_to_v1(task: &TaskInfo, format: ReservationFormat) -> Value {
    let mut out = json!({
        "name": task.name,
        "task_id": id(&task.task_id),
        "agent_id": id(&task.agent_id),
        "resources": resources::to_v1(&task.resources, format, None),
    });
    if let Some(command) = &task.command {
        out["command"] = command_to_v1(command);
    }
    if let Some(executor) = &task.executor {
        out["executor"] = executor_to_v1(executor, format);
    }
    if let Some(data) = &task.data {
        out["data"] = json!(base64(data));
    }
    if !task.labels.is_empty() {
        let labels: Vec<Value> = task.labels.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        out["labels"] = json!({ "labels": labels });
    }
    out
}

// ---- TaskStatus -------------------------------------------------------------

/// A TaskStatus in v1 JSON: `uuid` only when the update needs an acknowledgement
/// (and then `agent_id` too, which clients copy into their ACKNOWLEDGE).
pub fn status_to_v1(status: &TaskStatus) -> Value {
    let mut out = Map::new();
    out.insert("task_id".into(), id(&status.task_id));
    out.insert("state".into(), json!(status.state.name()));
    out.insert("source".into(), json!(status.source));
    out.insert("timestamp".into(), float(status.timestamp));
    if let Some(message) = &status.message {
        out.insert("message".into(), json!(message));
    }
    if let Some(reason) = &status.reason {
        out.insert("reason".into(), json!(reason));
    }
    if let Some(agent_id) = &status.agent_id {
        out.insert("agent_id".into(), id(agent_id));
    }
    if let Some(executor_id) = &status.executor_id {
        out.insert("executor_id".into(), id(executor_id));
    }
    if let Some(data) = &status.data {
        out.insert("data".into(), json!(base64(data)));
    }
    if let (Some(uuid), Some(_)) = (&status.uuid, &status.agent_id) {
        out.insert("uuid".into(), json!(uuid_base64(uuid)));
    }
    Value::Object(out)
}

/// Reads a TaskStatus an executor sends (it must carry a uuid and must not be
/// STAGING, as Mesos requires of executor updates).
pub fn status_from_executor(value: &Value) -> Parsed<TaskStatus> {
    let task_id = TaskId(required_id(value, "task_id")?);
    let state_name = string(value, "state")?.ok_or_else(|| V1Error::bad("missing required field 'state'"))?;
    let state = task_state(&state_name)?;
    if state == TaskState::Staging {
        return Err(V1Error::bad("an executor cannot send TASK_STAGING"));
    }
    let uuid =
        bytes(value, "uuid")?.ok_or_else(|| V1Error::bad("an executor's status update needs a 'uuid'"))?;
    if uuid.is_empty() || uuid.len() > 64 {
        return Err(V1Error::bad("a status uuid is 1 to 64 bytes"));
    }
    if let Some(source) = string(value, "source")? {
        if source != "SOURCE_EXECUTOR" {
            return Err(V1Error::bad(format!(
                "an executor's status update has source SOURCE_EXECUTOR, not {source}"
            )));
        }
    }
    let mut status = TaskStatus::new(task_id, state, StatusSource::Executor);
    status.timestamp = number(value, "timestamp")?.filter(|t| t.is_finite()).unwrap_or(0.0);
    status.message = string(value, "message")?;
    status.reason = string(value, "reason")?.and_then(|r| enum_value::<TaskReason>(&r));
    status.data = bytes(value, "data")?;
    status.uuid = Some(uuid_from_bytes(&uuid));
    Ok(status)
}

// ---- FrameworkInfo ----------------------------------------------------------

/// Reads a FrameworkInfo; capabilities Keel has no use for are dropped, and the
/// second value says whether the framework wants RESERVATION_REFINEMENT.
pub fn framework_from_v1(value: &Value) -> Parsed<(FrameworkInfo, bool)> {
    let name = string(value, "name")?.unwrap_or_default();
    let mut info = FrameworkInfo::new(name);
    info.user = string(value, "user")?.unwrap_or_default();
    info.id = id_field(value, "id")?.map(FrameworkId);
    info.failover_timeout_secs = number(value, "failover_timeout")?.unwrap_or(0.0);
    info.checkpoint = boolean(value, "checkpoint")?.unwrap_or(false);
    info.hostname = string(value, "hostname")?;
    info.principal = string(value, "principal")?;
    let mut refinement = false;
    for capability in array(value, "capabilities")? {
        match string(capability, "type")?.as_deref() {
            Some("PARTITION_AWARE") => info.capabilities.push(FrameworkCapability::PartitionAware),
            Some("MULTI_ROLE") => info.capabilities.push(FrameworkCapability::MultiRole),
            Some("TASK_KILLING_STATE") => info.capabilities.push(FrameworkCapability::TaskKillingState),
            Some("RESERVATION_REFINEMENT") => refinement = true,
            _ => {}
        }
    }
    info.roles = if info.has(FrameworkCapability::MultiRole) {
        strings(value, "roles")?
    } else {
        string(value, "role")?.filter(|r| r != "*").into_iter().collect()
    };
    Ok((info, refinement))
}

/// A FrameworkInfo in v1 JSON.
pub fn framework_to_v1(info: &FrameworkInfo) -> Value {
    let capabilities: Vec<Value> = info.capabilities.iter().map(|c| json!({ "type": c })).collect();
    let mut out = json!({
        "user": info.user,
        "name": info.name,
        "failover_timeout": float(info.failover_timeout_secs),
        "checkpoint": info.checkpoint,
    });
    if let Some(id) = &info.id {
        out["id"] = super::id(id);
    }
    if info.has(FrameworkCapability::MultiRole) {
        out["roles"] = json!(info.effective_roles());
    } else {
        out["role"] = json!(info.effective_roles().first().cloned().unwrap_or_else(|| "*".into()));
    }
    if !capabilities.is_empty() {
        out["capabilities"] = json!(capabilities);
    }
    if let Some(hostname) = &info.hostname {
        out["hostname"] = json!(hostname);
    }
    if let Some(principal) = &info.principal {
        out["principal"] = json!(principal);
    }
    out
}

// ---- Offer ------------------------------------------------------------------

/// Agent attributes in v1 JSON (Keel's are text).
pub fn attributes_to_v1(attributes: &BTreeMap<String, String>) -> Value {
    Value::Array(
        attributes
            .iter()
            .map(|(name, value)| json!({ "name": name, "type": "TEXT", "text": { "value": value } }))
            .collect(),
    )
}

/// An Offer in v1 JSON; `multi_role` adds the allocation role as MULTI_ROLE
/// frameworks expect.
pub fn offer_to_v1(offer: &Offer, format: ReservationFormat, multi_role: bool) -> Value {
    let role = (multi_role && !offer.role.is_empty()).then_some(offer.role.as_str());
    let node = offer.agent_pid.node();
    let mut out = json!({
        "id": id(&offer.id),
        "framework_id": id(&offer.framework_id),
        "agent_id": id(&offer.agent_id),
        "hostname": offer.hostname,
        "url": {
            "scheme": "http",
            "address": { "hostname": node.host(), "ip": node.host(), "port": node.port() },
            "path": format!("/{}", offer.agent_pid.name()),
        },
        "resources": resources::to_v1(&offer.resources, format, role),
        "attributes": attributes_to_v1(&offer.attributes),
    });
    if !offer.executor_ids.is_empty() {
        out["executor_ids"] = Value::Array(offer.executor_ids.iter().map(id).collect());
    }
    if let Some(role) = role {
        out["allocation_info"] = json!({ "role": role });
    }
    compact(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pymesos_task_is_read() {
        let v1 = json!({
            "name": "task 1", "task_id": {"value": "1"}, "agent_id": {"value": "A-S0"},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}],
            "command": {"value": "echo hi"}, "data": "aGk=",
            "labels": {"labels": [{"key": "k", "value": "v"}]}, "health_check": {"type": "COMMAND"},
        });
        let task = task_from_v1(&v1).unwrap();
        assert_eq!(task.task_id.as_str(), "1");
        assert!(task.command.as_ref().unwrap().shell, "shell defaults to true");
        assert_eq!(task.data.as_deref(), Some(&b"hi"[..]));
        assert_eq!(task.labels["k"], "v");
        let back = task_from_v1(&task_to_v1(&task, ReservationFormat::PreRefinement)).unwrap();
        assert_eq!(back, task);
    }

    #[test]
    fn unsupported_task_parts_are_refused() {
        let base = json!({"name": "t", "task_id": {"value": "1"}, "agent_id": {"value": "A"}});
        let mut with_uris = base.clone();
        with_uris["command"] = json!({"value": "x", "uris": [{"value": "http://x/y"}]});
        assert!(task_from_v1(&with_uris).is_err());
        let mut docker = base.clone();
        docker["command"] = json!({"value": "x"});
        docker["container"] = json!({"type": "DOCKER", "docker": {"image": "busybox"}});
        assert!(task_from_v1(&docker).is_err());
        let mut default_executor = base;
        default_executor["executor"] = json!({"type": "DEFAULT", "executor_id": {"value": "e"}});
        assert!(task_from_v1(&default_executor).is_err());
    }

    #[test]
    fn statuses_carry_uuid_only_with_agent_id() {
        let mut status =
            TaskStatus::new(TaskId("t".into()), TaskState::Running, StatusSource::Executor).at(12.5);
        status.uuid = Some(keel_proto::ids::UpdateId("00112233445566778899aabbccddeeff".into()));
        assert!(status_to_v1(&status).get("uuid").is_none(), "no agent id, no uuid");
        status.agent_id = Some(AgentId("A-S0".into()));
        let v1 = status_to_v1(&status);
        assert_eq!(v1["uuid"], "ABEiM0RVZneImaq7zN3u/w==");
        assert_eq!(v1["state"], "TASK_RUNNING");
        assert_eq!(v1["source"], "SOURCE_EXECUTOR");
        assert!(!v1.to_string().contains("null"));
    }

    #[test]
    fn executor_updates_are_validated() {
        let good = json!({"task_id": {"value": "t"}, "state": "TASK_RUNNING", "uuid": "DdBSTYvIS2ShHmQIfaj5Rw==",
                          "source": "SOURCE_EXECUTOR", "timestamp": 1796160746});
        let status = status_from_executor(&good).unwrap();
        assert_eq!(status.timestamp, 1796160746.0);
        for (key, value) in [
            ("state", json!("TASK_STAGING")),
            ("state", json!("TASK_NOPE")),
            ("uuid", json!(null)),
            ("source", json!("SOURCE_MASTER")),
        ] {
            let mut bad = good.clone();
            bad[key] = value;
            assert!(status_from_executor(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn framework_info_round_trips() {
        let v1 = json!({"user": "root", "name": "pymesos", "failover_timeout": 100, "role": "eng",
                        "capabilities": [{"type": "GPU_RESOURCES"}, {"type": "PARTITION_AWARE"}]});
        let (info, refinement) = framework_from_v1(&v1).unwrap();
        assert!(!refinement);
        assert_eq!(info.roles, vec!["eng".to_string()]);
        assert_eq!(info.failover_timeout_secs, 100.0);
        assert!(info.has(FrameworkCapability::PartitionAware));
        let out = framework_to_v1(&info);
        assert_eq!(out["role"], "eng");
        assert_eq!(out["capabilities"], json!([{"type": "PARTITION_AWARE"}]));
    }
}
