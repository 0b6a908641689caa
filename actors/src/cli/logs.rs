//! `keel logs TASK_ID`: prints a task's stdout (or stderr) through its agent's files
//! API. The task is looked up in the master's `/state` (live, unreachable or completed
//! tasks), its agent's address in the master's `slaves`, its sandbox in the agent's
//! `/state` (the executor's `directory`) or, once the executor is gone, as the newest
//! run in `<work_dir>/frameworks/<fid>/executors/<eid>/runs` (through
//! `/files/browse`). The file is read in chunks with `/files/read`; with `--follow`,
//! polling goes on every 500 ms until the master reports the task terminal and no more
//! data comes.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use super::http::{get, get_json};
use crate::task::TaskState;

/// Bytes asked for per read (the agent's cap).
const CHUNK_BYTES: u64 = 1024 * 1024;
/// Time between polls with `--follow`.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What to print.
#[derive(Debug, Clone)]
pub struct LogsOptions {
    /// The master, `HOST:PORT` (a `master@` or `http://` prefix is accepted).
    pub master: String,
    /// The task's id.
    pub task_id: String,
    /// Print stderr instead of stdout.
    pub stderr: bool,
    /// Keep printing new output until the task is terminal.
    pub follow: bool,
    /// Only look for the task in this framework.
    pub framework: Option<String>,
}

/// Where a task runs, from the master's `/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLocation {
    /// The task's framework.
    pub framework_id: String,
    /// Its executor (the task id for a command task).
    pub executor_id: String,
    /// Its agent's id.
    pub agent_id: String,
    /// Its agent's `host:port`, if the master still knows the agent.
    pub agent_addr: Option<String>,
    /// Its state, e.g. `TASK_RUNNING`.
    pub state: String,
}

impl TaskLocation {
    /// True once the task is in a terminal state (an unknown state counts as terminal).
    pub fn is_terminal(&self) -> bool {
        serde_json::from_value::<TaskState>(Value::String(self.state.clone()))
            .map_or(true, |s| s.is_terminal())
    }
}

/// Finds `task_id` in a master's `/state`, in any framework or only in `framework`.
pub fn find_task(state: &Value, task_id: &str, framework: Option<&str>) -> anyhow::Result<TaskLocation> {
    let empty = Vec::new();
    let list = |value: &Value| value.as_array().unwrap_or(&empty).clone();
    let mut found: Vec<TaskLocation> = Vec::new();
    for fw in list(&state["frameworks"]).iter().chain(list(&state["completed_frameworks"]).iter()) {
        let framework_id = fw["id"].as_str().unwrap_or_default();
        if framework.is_some_and(|wanted| wanted != framework_id) {
            continue;
        }
        for key in ["tasks", "unreachable_tasks", "completed_tasks"] {
            for task in list(&fw[key]).iter().filter(|t| t["id"].as_str() == Some(task_id)) {
                let agent_id = task["slave_id"].as_str().unwrap_or_default().to_string();
                let agent_addr = list(&state["slaves"])
                    .iter()
                    .find(|a| a["id"].as_str() == Some(agent_id.as_str()))
                    .and_then(|a| {
                        a["pid"].as_str().and_then(|pid| pid.split_once('@')).map(|(_, a)| a.to_string())
                    });
                found.push(TaskLocation {
                    framework_id: framework_id.to_string(),
                    executor_id: task["executor_id"].as_str().unwrap_or(task_id).to_string(),
                    agent_id,
                    agent_addr,
                    state: task["state"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    // A live task listed again as completed (or the reverse) is the same task.
    found.dedup_by(|a, b| a.framework_id == b.framework_id);
    match found.len() {
        0 => match framework {
            Some(framework) => anyhow::bail!("unknown task {task_id:?} in framework {framework:?}"),
            None => anyhow::bail!("unknown task {task_id:?}: the master has no such live or completed task"),
        },
        1 => Ok(found.remove(0)),
        _ => {
            let frameworks: Vec<&str> = found.iter().map(|t| t.framework_id.as_str()).collect();
            anyhow::bail!(
                "task {task_id:?} exists in several frameworks ({}): choose one with --framework",
                frameworks.join(", ")
            )
        }
    }
}

/// The sandbox of a live executor in an agent's `/state`: the executor `executor_id`,
/// or the one running `task_id`.
pub fn live_sandbox(agent_state: &Value, task: &TaskLocation, task_id: &str) -> Option<String> {
    let empty = Vec::new();
    let framework = agent_state["frameworks"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .find(|f| f["id"].as_str() == Some(task.framework_id.as_str()))?;
    let executors = framework["executors"].as_array()?;
    let runs_task = |e: &&Value| {
        e["tasks"].as_array().is_some_and(|tasks| tasks.iter().any(|t| t["id"].as_str() == Some(task_id)))
    };
    executors
        .iter()
        .find(|e| e["id"].as_str() == Some(task.executor_id.as_str()))
        .or_else(|| executors.iter().find(runs_task))
        .and_then(|e| e["directory"].as_str())
        .map(str::to_string)
}

/// Percent-encodes a query parameter value (a path keeps its slashes).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// True if `error` is an HTTP 404 from [`super::http::get`].
fn is_not_found(error: &anyhow::Error) -> bool {
    error.downcast_ref::<super::http::HttpStatus>().is_some_and(|e| e.status == 404)
}

/// The agent's address for a task, or why there is none.
fn agent_addr(task: &TaskLocation, task_id: &str) -> anyhow::Result<String> {
    task.agent_addr.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "the agent of task {task_id:?} ({}) is no longer registered with the master; its sandbox cannot be read",
            task.agent_id
        )
    })
}

/// Finds the task's sandbox on its agent: `Ok(None)` when there is none (yet, or any
/// more).
fn find_sandbox(agent: &str, task: &TaskLocation, task_id: &str) -> anyhow::Result<Option<String>> {
    let state = get_json(agent, "/state").map_err(|e| unreachable_agent(task, agent, e))?;
    if let Some(directory) = live_sandbox(&state, task, task_id) {
        return Ok(Some(directory));
    }
    // The executor is gone from the agent; its sandbox stays until garbage collected.
    let Some(work_dir) = state["work_dir"].as_str() else { return Ok(None) };
    let runs = format!("{work_dir}/frameworks/{}/executors/{}/runs", task.framework_id, task.executor_id);
    let listing = match get_json(agent, &format!("/files/browse?path={}", encode(&runs))) {
        Ok(listing) => listing,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e.context(format!("cannot list the sandboxes of task {task_id:?}"))),
    };
    let newest = listing
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["is_dir"].as_bool() == Some(true))
        .max_by_key(|entry| entry["mtime"].as_i64().unwrap_or(0))
        .and_then(|entry| entry["path"].as_str())
        .map(str::to_string);
    Ok(newest)
}

fn unreachable_agent(task: &TaskLocation, agent: &str, error: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot reach agent {} at {agent}: {error:#}", task.agent_id)
}

/// Reads everything from `offset` on, writing it to `out`; returns the bytes read, or
/// `None` if the file does not exist.
fn drain(agent: &str, file: &str, offset: &mut u64, out: &mut dyn Write) -> anyhow::Result<Option<u64>> {
    let mut total = 0;
    loop {
        let path = format!("/files/read?path={}&offset={offset}&length={CHUNK_BYTES}", encode(file));
        let reply = match get_json(agent, &path) {
            Ok(reply) => reply,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let data = reply["data"].as_str().unwrap_or_default();
        let length = reply["length"].as_u64().unwrap_or(data.len() as u64);
        if length == 0 {
            return Ok(Some(total));
        }
        out.write_all(data.as_bytes())?;
        out.flush()?;
        *offset += length;
        total += length;
    }
}

/// Prints the task's output to `out` (following it with `options.follow`).
pub fn run(options: &LogsOptions, out: &mut dyn Write) -> anyhow::Result<()> {
    let master = options.master.trim().trim_start_matches("http://").trim_start_matches("master@");
    let master = master.trim_end_matches('/');
    let task_id = options.task_id.as_str();
    let framework = options.framework.as_deref();
    let locate = || -> anyhow::Result<TaskLocation> {
        let state = get_json(master, "/state")
            .map_err(|e| anyhow::anyhow!("cannot reach the master at {master}: {e:#}"))?;
        find_task(&state, task_id, framework)
    };
    let mut task = locate()?;
    let agent = agent_addr(&task, task_id)?;
    let name = if options.stderr { "stderr" } else { "stdout" };
    // With --follow, wait for a task still being launched to get its sandbox.
    let sandbox = loop {
        if let Some(sandbox) = find_sandbox(&agent, &task, task_id)? {
            break sandbox;
        }
        if !options.follow || task.is_terminal() {
            anyhow::bail!(
                "the sandbox of task {task_id:?} is gone from agent {} ({}): it was garbage collected{}",
                task.agent_id,
                agent,
                if task.is_terminal() { "" } else { " or not created yet" }
            );
        }
        std::thread::sleep(POLL_INTERVAL);
        task = locate()?;
    };
    let file = format!("{sandbox}/{name}");
    let mut offset = 0;
    loop {
        let read = drain(&agent, &file, &mut offset, out).map_err(|e| match get(&agent, "/health") {
            Err(_) => unreachable_agent(&task, &agent, e),
            Ok(_) => e.context(format!("cannot read {file} on agent {}", task.agent_id)),
        })?;
        if read.is_none() && (!options.follow || task.is_terminal()) {
            anyhow::bail!(
                "{file} does not exist on agent {} ({agent}): the sandbox was garbage collected",
                task.agent_id
            );
        }
        if !options.follow {
            return Ok(());
        }
        if read.unwrap_or(0) == 0 {
            if task.is_terminal() {
                return Ok(());
            }
            // Terminal now: one more pass picks up what was written before the end.
            task = match locate() {
                Ok(task) => task,
                Err(e) => return Err(e.context("the task disappeared from the master")),
            };
            if task.is_terminal() {
                continue;
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn master_state() -> Value {
        json!({
            "slaves": [{"id": "S1", "pid": "agent@10.0.0.1:5051"}],
            "frameworks": [
                {"id": "F1", "tasks": [{"id": "web", "slave_id": "S1", "executor_id": "web", "state": "TASK_RUNNING"}],
                 "completed_tasks": [{"id": "job", "slave_id": "S1", "executor_id": "pi", "state": "TASK_FINISHED"}]},
                {"id": "F2", "tasks": [{"id": "job", "slave_id": "S9", "executor_id": "job", "state": "TASK_RUNNING"}]},
            ],
            "completed_frameworks": [],
        })
    }

    #[test]
    fn tasks_are_found_by_id_and_framework() {
        let state = master_state();
        let web = find_task(&state, "web", None).unwrap();
        assert_eq!(web.agent_addr.as_deref(), Some("10.0.0.1:5051"));
        assert!(!web.is_terminal());
        let error = find_task(&state, "job", None).unwrap_err().to_string();
        assert!(error.contains("--framework"), "{error}");
        let job = find_task(&state, "job", Some("F1")).unwrap();
        assert_eq!((job.executor_id.as_str(), job.is_terminal()), ("pi", true));
        let moved = find_task(&state, "job", Some("F2")).unwrap();
        assert_eq!(moved.agent_addr, None);
        assert!(agent_addr(&moved, "job").unwrap_err().to_string().contains("no longer registered"));
        assert!(find_task(&state, "nope", None).unwrap_err().to_string().contains("unknown task"));
        assert!(find_task(&json!({}), "web", None).is_err());
    }

    #[test]
    fn live_sandboxes_are_found_by_executor_or_task() {
        let agent = json!({"frameworks": [{"id": "F1", "executors": [
            {"id": "web", "directory": "/w/web", "tasks": [{"id": "web"}]},
            {"id": "pi", "directory": "/w/pi", "tasks": [{"id": "unit-1"}]},
        ]}]});
        let task = |executor: &str| TaskLocation {
            framework_id: "F1".into(),
            executor_id: executor.into(),
            agent_id: "S1".into(),
            agent_addr: None,
            state: "TASK_RUNNING".into(),
        };
        assert_eq!(live_sandbox(&agent, &task("web"), "web").as_deref(), Some("/w/web"));
        assert_eq!(live_sandbox(&agent, &task("other"), "unit-1").as_deref(), Some("/w/pi"));
        assert_eq!(live_sandbox(&agent, &task("gone"), "gone"), None);
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(encode("/w/a b/c&d=e%"), "/w/a%20b/c%26d%3De%25");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
