//! `keel ps`: the cluster's tasks with state, agent and resources, from `/state`.

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

/// The rows of a master's `/state`, live tasks first, then completed ones.
pub fn rows(state: &Value) -> Vec<Row> {
    let empty = Vec::new();
    let agents: std::collections::HashMap<&str, &str> = state["slaves"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|a| Some((a["id"].as_str()?, a["hostname"].as_str()?)))
        .collect();
    let mut out = Vec::new();
    let frameworks: Vec<&Value> = state["frameworks"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .chain(state["completed_frameworks"].as_array().unwrap_or(&empty))
        .collect();
    for key in ["tasks", "unreachable_tasks", "completed_tasks"] {
        for framework in &frameworks {
            for task in framework[key].as_array().unwrap_or(&empty) {
                let agent_id = task["slave_id"].as_str().unwrap_or("");
                out.push(Row {
                    task: task["id"].as_str().unwrap_or("").to_string(),
                    framework: framework["name"].as_str().unwrap_or("").to_string(),
                    state: task["state"].as_str().unwrap_or("").to_string(),
                    agent: match agents.get(agent_id) {
                        Some(host) => format!("{host} ({agent_id})"),
                        None => agent_id.to_string(),
                    },
                    cpus: task["resources"]["cpus"].as_f64().unwrap_or(0.0),
                    mem: task["resources"]["mem"].as_f64().unwrap_or(0.0),
                });
            }
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

/// Fetches `/state` from `master` (`host:port`) and renders the table.
pub fn run(master: &str) -> anyhow::Result<String> {
    let state = super::http::get_json(master, "/state")?;
    Ok(render(&rows(&state)))
}
