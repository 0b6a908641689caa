//! `keel bench`: end-to-end figures for the cluster, printed, not asserted.
//!
//! - `launch`: N `/bin/true` tasks on a local cluster with real process launches;
//!   wall time from the first launch to the last terminal update acknowledged. With
//!   `--compare-waiter` the same launch also runs without the per-container waiter
//!   (the process that records exit statuses for agent recovery), alternating, and
//!   the ratio of the two rates is printed.
//! - `control-plane`: a `keel master` child process, many simulated agents (agent
//!   processes whose containerizer ends every task at once) sharing one node, and
//!   several frameworks; tasks through the master per second and the master's RSS.
//! - `failover` ([`failover`]): a 3-member etcd, 3 `keel master --etcd` children,
//!   simulated agents and a framework following the leader; the leader is SIGKILLed
//!   several times and the time to a new leader and to everyone back is printed.

mod children;
pub mod failover;

pub use failover::{failover, FailoverOptions};

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_isolation::{
    BoxFuture, ContainerConfig, ContainerId, Containerizer, ExitStatusKind, IsolationError, Termination,
    Usage,
};
use keel_kernel::{Node, NodeConfig, Upid};

use crate::agent::{self, AgentConfig};
use crate::local::{LocalCluster, LocalConfig};
use crate::resources::Resources;
use crate::scheduler::{start_scheduler, Scheduler, SchedulerConfig, SchedulerDriver};
use crate::task::{CommandInfo, FrameworkInfo, Offer, TaskInfo, TaskState, TaskStatus};

/// Shared progress of a benchmark framework.
#[derive(Debug, Default)]
struct Progress {
    first_launch: Option<Instant>,
    last_terminal: Option<Instant>,
    terminal: usize,
    failed: usize,
}

/// Launches `total` tasks of `command` as offers allow; stops when all ended.
struct Flood {
    prefix: String,
    total: usize,
    launched: usize,
    resources: Resources,
    command: CommandInfo,
    progress: Rc<RefCell<Progress>>,
}

impl Scheduler for Flood {
    fn offers(&mut self, driver: &mut SchedulerDriver, offers: Vec<Offer>) {
        for offer in offers {
            let mut remaining = offer.resources.clone();
            let mut tasks = Vec::new();
            while self.launched < self.total && remaining.contains(&self.resources) {
                remaining -= self.resources.clone();
                let id = format!("{}-{}", self.prefix, self.launched);
                tasks.push(TaskInfo::command(&id, &offer, self.resources.clone(), self.command.clone()));
                self.launched += 1;
            }
            if tasks.is_empty() {
                driver.decline(offer.id, Some(1.0));
            } else {
                let mut progress = self.progress.borrow_mut();
                progress.first_launch.get_or_insert_with(Instant::now);
                drop(progress);
                driver.launch(offer.id, tasks);
            }
        }
    }

    fn status_update(&mut self, driver: &mut SchedulerDriver, status: &TaskStatus) {
        if !status.state.is_terminal() {
            return;
        }
        let mut progress = self.progress.borrow_mut();
        progress.terminal += 1;
        if status.state != TaskState::Finished {
            progress.failed += 1;
        }
        progress.last_terminal = Some(Instant::now());
        if progress.terminal == self.total {
            driver.stop(false);
        }
    }
}

/// What `keel bench launch` runs.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// `/bin/true` tasks per launch.
    pub tasks: usize,
    /// Agents of the local cluster.
    pub agents: usize,
    /// Parent of the agents' work directories; the system temporary directory when `None`.
    pub work_dir: Option<std::path::PathBuf>,
    /// Launches per configuration (the figures printed are medians).
    pub rounds: usize,
    /// Also run every launch without the waiter, alternating with the default.
    pub compare_waiter: bool,
}

/// One launch's figures.
#[derive(Debug, Clone, Copy)]
struct LaunchRun {
    seconds: f64,
    failed: usize,
}

/// `keel bench launch`: prints `tasks=N agents=A failed=F seconds=S tasks_per_s=R`
/// (medians over `rounds`), and with `compare_waiter` also `seconds_without_waiter`,
/// `tasks_per_s_without_waiter` and `waiter_cost_ratio` (the rate without the
/// waiter over the rate with it: above 1 is what the waiter costs).
pub fn launch(options: LaunchOptions) -> anyhow::Result<String> {
    let LaunchOptions { tasks, agents, work_dir, rounds, compare_waiter } = options;
    anyhow::ensure!(tasks > 0 && agents > 0, "--tasks and --agents must be at least 1");
    anyhow::ensure!((1..=100).contains(&rounds), "--rounds must be 1 to 100, not {rounds}");
    let mut with_waiter = Vec::new();
    let mut without_waiter = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        let order: &[bool] = match (compare_waiter, round % 2) {
            (false, _) => &[true],
            (true, 0) => &[true, false],
            (true, _) => &[false, true],
        };
        for &waiter in order {
            let dir = work_dir.as_ref().map(|d| {
                d.join(format!(
                    "keel-bench-{}-{round}-{}",
                    std::process::id(),
                    if waiter { "w" } else { "n" }
                ))
            });
            let run = launch_once(tasks, agents, dir, waiter)?;
            if waiter {
                with_waiter.push(run);
            } else {
                without_waiter.push(run);
            }
        }
    }
    let summary = |runs: &[LaunchRun]| {
        let seconds = median(runs.iter().map(|r| r.seconds).collect());
        let failed: usize = runs.iter().map(|r| r.failed).sum();
        (seconds, tasks as f64 / seconds, failed)
    };
    let (seconds, rate, failed) = summary(&with_waiter);
    let mut line =
        format!("tasks={tasks} agents={agents} failed={failed} seconds={seconds:.3} tasks_per_s={rate:.0}");
    if rounds > 1 {
        line = format!("rounds={rounds} {line}");
    }
    if compare_waiter {
        let (seconds_without, rate_without, failed_without) = summary(&without_waiter);
        line.push_str(&format!(
            " failed_without_waiter={failed_without} seconds_without_waiter={seconds_without:.3} \
             tasks_per_s_without_waiter={rate_without:.0} waiter_cost_ratio={:.2}",
            rate_without / rate
        ));
    }
    Ok(line)
}

/// One launch of `tasks` `/bin/true` tasks on a fresh local cluster, with or without
/// the waiter, in its own actix system.
fn launch_once(
    tasks: usize,
    agents: usize,
    work_dir: Option<std::path::PathBuf>,
    waiter: bool,
) -> anyhow::Result<LaunchRun> {
    actix_rt::System::new().block_on(async move {
        let config = LocalConfig {
            work_dir: work_dir.clone(),
            agents,
            agent_resources: Some("cpus:16;mem:65536;disk:1024".into()),
            record_exit_statuses: waiter,
            ..LocalConfig::default()
        };
        let cluster = LocalCluster::start(config).await?;
        let progress = Rc::new(RefCell::new(Progress::default()));
        let flood = Flood {
            prefix: "true".into(),
            total: tasks,
            launched: 0,
            resources: "cpus:0.01;mem:8".parse()?,
            command: CommandInfo { shell: false, value: "/bin/true".into(), ..CommandInfo::default() },
            progress: progress.clone(),
        };
        let config = SchedulerConfig::new(cluster.master_upid().clone(), FrameworkInfo::new("bench-launch"));
        let handle = start_scheduler(cluster.node(), "bench", config, flood)?;
        let finished = tokio::time::timeout(Duration::from_secs(600), handle.wait()).await;
        cluster.shutdown().await;
        if let Some(dir) = &work_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        finished.map_err(|_| anyhow::anyhow!("the launch did not finish within 600 s"))?;
        let progress = progress.borrow();
        let seconds = match (progress.first_launch, progress.last_terminal) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => anyhow::bail!("no task ran"),
        };
        Ok(LaunchRun { seconds, failed: progress.failed })
    })
}

/// The median (the mean of the two middle values for an even count); 0 when empty.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// A containerizer whose containers end the moment they start (for simulated agents).
#[derive(Default)]
pub struct InstantContainerizer {
    live: Mutex<BTreeMap<ContainerId, ()>>,
}

impl Containerizer for InstantContainerizer {
    fn launch(&self, config: ContainerConfig) -> Result<u32, IsolationError> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(config.id, ());
        Ok(0)
    }

    fn wait(&self, _id: &ContainerId) -> BoxFuture<'static, Result<Termination, IsolationError>> {
        Box::pin(async {
            Ok(Termination {
                status: ExitStatusKind::Exited(0),
                message: "exited with status 0".into(),
                limitation: None,
            })
        })
    }

    fn signal(&self, _id: &ContainerId, _signal: i32) -> Result<(), IsolationError> {
        Ok(())
    }

    fn destroy(&self, id: &ContainerId) -> BoxFuture<'static, Result<(), IsolationError>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        Box::pin(async { Ok(()) })
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolationError> {
        Err(IsolationError::UnknownContainer(id.clone()))
    }

    fn containers(&self) -> Vec<ContainerId> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    fn name(&self) -> &'static str {
        "instant"
    }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `keel bench control-plane`: prints `agents=.. frameworks=.. tasks=.. seconds=..
/// tasks_per_s=.. master_rss_mb=..`.
pub fn control_plane(agents: usize, frameworks: usize, tasks: usize) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let mut master = std::process::Command::new(exe)
        .args(["master", "--port", "0", "--registry", "memory", "--agent-ping-timeout", "60"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = master.stdout.take().ok_or_else(|| anyhow::anyhow!("no master stdout"))?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    let addr = line
        .split_whitespace()
        .nth(3)
        .ok_or_else(|| anyhow::anyhow!("unexpected master output {line:?}"))?
        .to_string();
    let master_pid = master.id();
    let result = actix_rt::System::new().block_on(async move {
        let master_upid: Upid = format!("master@{addr}").parse()?;
        let node = Node::start(NodeConfig::default()).await?;
        let containerizer: Arc<dyn Containerizer> = Arc::new(InstantContainerizer::default());
        let work_dir = std::env::temp_dir().join(format!("keel-bench-{}", std::process::id()));
        let mut refs = Vec::new();
        for index in 0..agents {
            let info = crate::task::AgentInfo {
                hostname: format!("sim-{index}"),
                id: None,
                resources: "cpus:16;mem:65536".parse()?,
                attributes: Default::default(),
            };
            let config = AgentConfig::new(master_upid.clone(), work_dir.join(format!("a{index}")), info, containerizer.clone());
            refs.push(agent::start_named(&node, &format!("agent-{index}"), config)?);
        }
        // Wait until every simulated agent is registered.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut registered = 0;
            for agent in &refs {
                if agent.query(|a, _| a.agent_id().is_some()).await.unwrap_or(false) {
                    registered += 1;
                }
            }
            if registered == agents {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "only {registered} of {agents} agents registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let per_framework = tasks / frameworks;
        let mut handles = Vec::new();
        let mut progresses = Vec::new();
        for index in 0..frameworks {
            let progress = Rc::new(RefCell::new(Progress::default()));
            let flood = Flood {
                prefix: format!("f{index}"),
                total: per_framework,
                launched: 0,
                resources: "cpus:0.01;mem:1".parse()?,
                command: CommandInfo::shell("true"),
                progress: progress.clone(),
            };
            let config = SchedulerConfig::new(master_upid.clone(), FrameworkInfo::new(format!("bench-{index}")));
            handles.push(start_scheduler(&node, &format!("framework-{index}"), config, flood)?);
            progresses.push(progress);
        }
        for handle in &handles {
            tokio::time::timeout(Duration::from_secs(900), handle.wait()).await?;
        }
        let first = progresses.iter().filter_map(|p| p.borrow().first_launch).min().ok_or_else(|| anyhow::anyhow!("nothing launched"))?;
        let last = progresses.iter().filter_map(|p| p.borrow().last_terminal).max().ok_or_else(|| anyhow::anyhow!("nothing ended"))?;
        let failed: usize = progresses.iter().map(|p| p.borrow().failed).sum();
        let seconds = (last - first).as_secs_f64();
        let rss_mb = rss_kb(master_pid) as f64 / 1024.0;
        let _ = std::fs::remove_dir_all(&work_dir);
        // How the master got there: offers and allocation runs explain most of the spread.
        let metrics_addr = master_upid.node().to_string();
        let metrics = tokio::task::spawn_blocking(move || crate::cli::http::get_json(&metrics_addr, "/metrics/snapshot"))
            .await?
            .unwrap_or_default();
        let metric = |key: &str| metrics[key].as_f64().unwrap_or(0.0);
        Ok::<_, anyhow::Error>(format!(
            "agents={agents} frameworks={frameworks} tasks={} failed={failed} seconds={seconds:.3} tasks_per_s={:.0} master_rss_mb={rss_mb:.1} offers={} declined={} allocation_runs={} allocation_run_ms_p99={:.1}",
            per_framework * frameworks,
            (per_framework * frameworks) as f64 / seconds,
            metric("master/offers_sent"),
            metric("master/offers_declined"),
            metric("allocator/allocation_runs"),
            metric("allocator/allocation_run_ms/p99"),
        ))
    });
    let _ = master.kill();
    let _ = master.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
