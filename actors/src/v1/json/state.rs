//! The master's state as the operator API shows it (`mesos.v1.master.Response`'s
//! GetAgents, GetFrameworks, GetTasks, GetExecutors, GetState), built from the
//! core's read views.

use keel_core::master::{AgentState, FrameworkState, Master as Core};
use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::resources::Resources;
use keel_proto::task::{ExecutorInfo, FrameworkInfo, Task};
use serde_json::{json, Value};

use super::resources::{to_v1_plain, ReservationFormat};
use super::task::{attributes_to_v1, executor_to_v1, framework_to_v1, offer_to_v1, status_to_v1};
use super::{id, uuid_base64};

/// Seconds as a `TimeInfo` (`{"nanoseconds"}`).
pub fn time_info(secs: f64) -> Value {
    json!({ "nanoseconds": (secs * 1e9) as i64 })
}

/// A task (`mesos.v1.Task`).
pub fn task_v1(task: &Task) -> Value {
    let mut out = json!({
        "name": task.info.name,
        "task_id": id(&task.info.task_id),
        "framework_id": id(&task.framework_id),
        "agent_id": id(&task.info.agent_id),
        "state": task.state.name(),
        "resources": to_v1_plain(&task.info.resources),
        "statuses": task.status.iter().map(status_to_v1).collect::<Vec<_>>(),
    });
    if task.info.executor.is_some() {
        out["executor_id"] = id(&task.executor_id);
    }
    if let Some(status) = &task.status {
        out["status_update_state"] = json!(status.state.name());
        if let Some(uuid) = &status.uuid {
            out["status_update_uuid"] = json!(uuid_base64(uuid));
        }
    }
    if !task.info.labels.is_empty() {
        let labels: Vec<Value> =
            task.info.labels.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect();
        out["labels"] = json!({ "labels": labels });
    }
    out
}

/// An agent (`GetAgents.Agent`).
pub fn agent_v1(core: &Core, agent_id: &AgentId, agent: &AgentState) -> Value {
    let node = agent.pid.node();
    json!({
        "agent_info": {
            "hostname": agent.info.hostname,
            "port": node.port(),
            "resources": to_v1_plain(&agent.info.resources),
            "attributes": attributes_to_v1(&agent.info.attributes),
            "id": id(agent_id),
        },
        "active": agent.active,
        "deactivated": !agent.active,
        "version": agent.version,
        "pid": agent.pid.to_string(),
        "registered_time": time_info(agent.registered_secs),
        "total_resources": to_v1_plain(&agent.info.resources),
        "allocated_resources": to_v1_plain(&core.used_on(agent_id)),
        "offered_resources": to_v1_plain(&core.offered_on(agent_id)),
        "capabilities": [],
    })
}

/// A framework (`GetFrameworks.Framework`).
pub fn framework_v1(core: &Core, framework_id: &FrameworkId, framework: &FrameworkState) -> Value {
    let mut info = framework.info.clone();
    info.id = Some(framework_id.clone());
    let allocated: Resources =
        framework.tasks.values().filter(|t| !t.state.is_terminal()).map(|t| t.info.resources.clone()).sum();
    let offers: Vec<_> = framework.offers.iter().filter_map(|o| core.offers().get(o)).collect();
    let offered: Resources = offers.iter().map(|o| o.offer.resources.clone()).sum();
    let multi_role = info.has(keel_proto::task::FrameworkCapability::MultiRole);
    json!({
        "framework_info": framework_to_v1(&info),
        "active": framework.active,
        "connected": framework.connected,
        "recovered": framework.pid.is_none(),
        "registered_time": time_info(framework.registered_secs),
        "offers": offers
            .iter()
            .map(|o| offer_to_v1(&o.offer, ReservationFormat::PreRefinement, multi_role))
            .collect::<Vec<_>>(),
        "allocated_resources": to_v1_plain(&allocated),
        "offered_resources": to_v1_plain(&offered),
    })
}

/// A removed framework (`GetFrameworks.Framework`, inactive).
pub fn completed_framework_v1(info: &FrameworkInfo) -> Value {
    json!({ "framework_info": framework_to_v1(info), "active": false, "connected": false, "recovered": false })
}

/// An executor (`GetExecutors.Executor`).
pub fn executor_v1(agent_id: &AgentId, executor: &ExecutorInfo) -> Value {
    json!({ "executor_info": executor_to_v1(executor, ReservationFormat::PreRefinement), "agent_id": id(agent_id) })
}

/// `get_agents`.
pub fn get_agents(core: &Core) -> Value {
    let agents: Vec<Value> = core.agents().iter().map(|(id, a)| agent_v1(core, id, a)).collect();
    json!({ "agents": agents, "recovered_agents": [] })
}

/// `get_frameworks`.
pub fn get_frameworks(core: &Core) -> Value {
    let frameworks: Vec<Value> = core.frameworks().iter().map(|(id, f)| framework_v1(core, id, f)).collect();
    let completed: Vec<Value> =
        core.completed_frameworks().iter().map(|(info, _)| completed_framework_v1(info)).collect();
    json!({ "frameworks": frameworks, "completed_frameworks": completed })
}

/// `get_tasks`.
pub fn get_tasks(core: &Core) -> Value {
    let mut tasks = Vec::new();
    let mut unreachable = Vec::new();
    let mut completed = Vec::new();
    for framework in core.frameworks().values() {
        tasks.extend(framework.tasks.values().map(task_v1));
        unreachable.extend(framework.unreachable_tasks.values().map(task_v1));
        completed.extend(framework.completed_tasks.iter().map(task_v1));
    }
    for (_, ended) in core.completed_frameworks() {
        completed.extend(ended.iter().map(task_v1));
    }
    json!({ "tasks": tasks, "unreachable_tasks": unreachable, "completed_tasks": completed })
}

/// `get_executors`.
pub fn get_executors(core: &Core) -> Value {
    let executors: Vec<Value> = core
        .frameworks()
        .values()
        .flat_map(|f| f.executors.iter())
        .flat_map(|(agent_id, executors)| executors.values().map(move |e| executor_v1(agent_id, e)))
        .collect();
    json!({ "executors": executors })
}

/// `get_state`.
pub fn get_state(core: &Core) -> Value {
    json!({
        "get_tasks": get_tasks(core),
        "get_executors": get_executors(core),
        "get_frameworks": get_frameworks(core),
        "get_agents": get_agents(core),
    })
}
