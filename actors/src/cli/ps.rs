//! `keel ps`: the cluster's tasks with state, agent and resources, from the
//! operator API's GET_STATE (Mesos's v1 operator API).

use serde_json::Value;

/// One row of `keel ps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Task id.
    pub task: String,
    /// Framework name.
    pub framework: String,
    /// State name.
    pub state: String,
    /// Agent hostname and id.
    pub agent: String,
    /// Cpus.
    pub cpus: f64,
    /// Memory in MB.
    pub mem: f64,
}

/// The sum of scalar `name` in a v1 resource array.
fn scalar(resources: &Value, name: &str) -> f64 {
    resources
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .filter_map(|r| r["scalar"]["value"].as_f64())
        .sum()
}

/// The rows of the operator API's GET_STATE answer (`get_state`), live tasks first,
/// then unreachable and completed ones.
pub fn rows(state: &Value) -> Vec<Row> {
    let empty = Vec::new();
    let list = |value: &Value| value.as_array().unwrap_or(&empty).clone();
    let agents: std::collections::HashMap<String, String> = list(&state["get_agents"]["agents"])
        .iter()
        .filter_map(|a| {
            let info = &a["agent_info"];
            Some((info["id"]["value"].as_str()?.to_string(), info["hostname"].as_str()?.to_string()))
        })
        .collect();
    let frameworks = &state["get_frameworks"];
    let names: std::collections::HashMap<String, String> = list(&frameworks["frameworks"])
        .iter()
        .chain(list(&frameworks["completed_frameworks"]).iter())
        .filter_map(|f| {
            let info = &f["framework_info"];
            Some((info["id"]["value"].as_str()?.to_string(), info["name"].as_str()?.to_string()))
        })
        .collect();
    let mut out = Vec::new();
    for key in ["tasks", "unreachable_tasks", "completed_tasks"] {
        for task in list(&state["get_tasks"][key]) {
            let agent_id = task["agent_id"]["value"].as_str().unwrap_or("").to_string();
            let framework_id = task["framework_id"]["value"].as_str().unwrap_or("");
            out.push(Row {
                task: task["task_id"]["value"].as_str().unwrap_or("").to_string(),
                framework: names.get(framework_id).cloned().unwrap_or_else(|| framework_id.to_string()),
                state: task["state"].as_str().unwrap_or("").to_string(),
                agent: match agents.get(&agent_id) {
                    Some(host) => format!("{host} ({agent_id})"),
                    None => agent_id,
                },
                cpus: scalar(&task["resources"], "cpus"),
                mem: scalar(&task["resources"], "mem"),
            });
        }
    }
    out
}

/// Renders rows as an aligned table.
pub fn render(rows: &[Row]) -> String {
    let mut table = vec![[
        "TASK".to_string(),
        "FRAMEWORK".into(),
        "STATE".into(),
        "AGENT".into(),
        "CPUS".into(),
        "MEM".into(),
    ]];
    for row in rows {
        table.push([
            row.task.clone(),
            row.framework.clone(),
            row.state.clone(),
            row.agent.clone(),
            format!("{}", row.cpus),
            format!("{}", row.mem),
        ]);
    }
    let widths: Vec<usize> =
        (0..6).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &table {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Asks `master` (`host:port`) for its state through the operator API
/// (GET_STATE) and renders the table.
pub fn run(master: &str) -> anyhow::Result<String> {
    let answer = super::http::call(master, &serde_json::json!({ "type": "GET_STATE" }))?;
    Ok(render(&rows(&answer["get_state"])))
}
