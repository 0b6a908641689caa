//! `keel bench failover`: how long a leading master's death costs with high
//! availability on etcd, with etcd's own election hand-over measured alongside.
//!
//! The bench starts a 3-member etcd and 3 `keel master --etcd` children on fixed
//! loopback ports (see [`super::children`]), then, in this process on one node,
//! simulated agents (agent processes whose containers run until destroyed) and a
//! framework holding a few long-running tasks, all following the leader through
//! one etcd observer. Each round it finds the leader (`master/elected` on each
//! master's `/metrics/snapshot`), SIGKILLs it and measures from the kill:
//!
//! - `etcd_handover_ms`: until an etcd observer of the election (this process's own,
//!   not the agents') reports another leader: the dead leader's lease running out
//!   plus the next candidate's key becoming the lowest. Keel adds nothing here.
//! - `elected_ms`: until another master reports `master/elected` 1 (it won the
//!   campaign, recovered the registry from etcd and serves).
//! - `reregistered_ms`: until that master reports every agent active
//!   (`master/slaves_active`) *and* the framework's `reregistered` callback ran.
//!
//! The per-round lines on stderr split the last into `first_agent_ms`, `agents_ms`
//! (the last agent) and `framework_ms`. Everything in this process (agents,
//! framework, observers) runs on one actix thread, silent with
//! [`FailoverOptions::quiet`]; the masters' stderr goes to files in the bench's
//! directory, removed at the end with the etcd data.
//!
//! Then the killed master is restarted on its port (a standby again) and the bench
//! waits until everything settled before the next round. Masters are polled every
//! [`POLL`] with blocking HTTP on tokio's blocking pool, never on the actix thread.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use keel_isolation::{
    BoxFuture, ContainerConfig, ContainerId, Containerizer, ExitStatusKind, IsolationError, Termination,
    Usage,
};
use keel_kernel::{Node, NodeConfig};
use tokio::sync::{watch, Notify};

use super::children::Children;
use super::median;
use crate::agent::{self, AgentConfig};
use crate::detector::MasterAddress;
use crate::etcd::{EtcdConfig, Leader};
use crate::ids::FrameworkId;
use crate::resources::Resources;
use crate::scheduler::{start_scheduler_with, Scheduler, SchedulerConfig, SchedulerDriver};
use crate::task::{AgentInfo, CommandInfo, FrameworkInfo, Offer, TaskInfo, TaskState, TaskStatus};

/// How often the masters are polled while a failover is measured.
const POLL: Duration = Duration::from_millis(10);

/// How long the cluster has to settle (a leader with every agent and the
/// framework) at the start and between rounds.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

/// How many masters and etcd members.
const MASTERS: usize = 3;
const ETCD_MEMBERS: usize = 3;

/// What `keel bench failover` runs.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    /// Leaders killed, one per round.
    pub kills: usize,
    /// Simulated agents.
    pub agents: usize,
    /// Long-running tasks the framework keeps on the agents.
    pub tasks: usize,
    /// The leader's etcd lease TTL, in seconds (`keel master --etcd-lease-ttl`).
    pub lease_ttl_secs: u64,
    /// Silence this process's logs and traces while it runs (a hundred agents each
    /// warn that they lost their master at every kill); `keel bench failover` sets it
    /// unless `RUST_LOG` or `--trace` is given.
    pub quiet: bool,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions { kills: 5, agents: 100, tasks: 2, lease_ttl_secs: 2, quiet: true }
    }
}

/// One round's figures, in milliseconds from the kill.
#[derive(Debug, Clone)]
struct Round {
    killed_at: Instant,
    killed: usize,
    leader: usize,
    etcd_handover_ms: f64,
    elected_ms: f64,
    first_agent_ms: f64,
    agents_ms: f64,
    framework_ms: f64,
    reregistered_ms: f64,
}

/// `keel bench failover`: prints `kills=.. agents=.. ttl_ms=.. etcd_handover_ms_p50=..
/// etcd_handover_ms_max=.. elected_ms_p50=.. elected_ms_max=.. reregistered_ms_p50=..
/// reregistered_ms_max=.. agents_ms_p50=.. framework_ms_p50=.. tasks=.. tasks_ended=..`,
/// with one line per round on stderr.
pub fn failover(options: FailoverOptions) -> anyhow::Result<String> {
    anyhow::ensure!((1..=1000).contains(&options.kills), "--kills must be 1 to 1000");
    anyhow::ensure!((1..=10_000).contains(&options.agents), "--agents must be 1 to 10000");
    anyhow::ensure!(options.tasks <= options.agents, "--tasks must be at most --agents (one per agent)");
    anyhow::ensure!((1..=60).contains(&options.lease_ttl_secs), "--etcd-lease-ttl must be 1 to 60 seconds");
    // The guard kills every child by PID when it drops, on every path out of here.
    let mut children = Children::new()?;
    let endpoints = children.start_etcd(ETCD_MEMBERS)?;
    children.reserve_masters(MASTERS)?;
    let mut config =
        EtcdConfig::new(endpoints, format!("bench-{}-{:04x}", std::process::id(), fastrand::u16(..)));
    config.lease_ttl = Duration::from_secs(options.lease_ttl_secs);
    config.validate()?;
    // Everything in this process runs on this thread (the masters log to their own
    // files), so a thread-local default silences it.
    let _quiet =
        options.quiet.then(|| tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default()));
    actix_rt::System::new().block_on(async move {
        // Interrupted, the run (and with it the guard) is dropped: the children stop.
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = run(children, config, options) => result,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the etcd members and masters are stopped"),
            _ = terminate.recv() => anyhow::bail!("terminated; the etcd members and masters are stopped"),
        }
    })
}

/// What the framework saw, shared with the bench.
#[derive(Debug, Default)]
struct FrameworkEvents {
    subscribed: Option<Instant>,
    reregistered: Vec<Instant>,
    running: BTreeSet<String>,
    ended: usize,
}

/// A framework that launches `tasks` long-running tasks (one per offer) and declines
/// everything else for an hour.
struct Holder {
    tasks: usize,
    launched: usize,
    events: Rc<RefCell<FrameworkEvents>>,
}

impl Scheduler for Holder {
    fn subscribed(&mut self, _driver: &mut SchedulerDriver, _framework_id: &FrameworkId) {
        self.events.borrow_mut().subscribed = Some(Instant::now());
    }

    fn reregistered(&mut self, _driver: &mut SchedulerDriver, _framework_id: &FrameworkId) {
        self.events.borrow_mut().reregistered.push(Instant::now());
    }

    fn offers(&mut self, driver: &mut SchedulerDriver, offers: Vec<Offer>) {
        let resources: Resources = match "cpus:0.1;mem:16".parse() {
            Ok(resources) => resources,
            Err(_) => return,
        };
        for offer in offers {
            if self.launched < self.tasks && offer.resources.contains(&resources) {
                let id = format!("hold-{}", self.launched);
                self.launched += 1;
                let task =
                    TaskInfo::command(&id, &offer, resources.clone(), CommandInfo::shell("sleep 3600"));
                driver.launch(offer.id, vec![task]);
            } else {
                driver.decline(offer.id, Some(3600.0));
            }
        }
    }

    fn status_update(&mut self, _driver: &mut SchedulerDriver, status: &TaskStatus) {
        let mut events = self.events.borrow_mut();
        if status.state == TaskState::Running {
            events.running.insert(status.task_id.to_string());
        } else if status.state.is_terminal() {
            events.running.remove(&status.task_id.to_string());
            events.ended += 1;
        }
    }
}

async fn run(mut children: Children, config: EtcdConfig, options: FailoverOptions) -> anyhow::Result<String> {
    let FailoverOptions { kills, agents, tasks, lease_ttl_secs, .. } = options;
    for i in 0..children.masters() {
        children.start_master(i, &config.endpoints, &config.cluster, lease_ttl_secs).await?;
    }
    // One detector for every agent, as agents sharing a node would have.
    let address = MasterAddress::Etcd(config.clone());
    let (first_leader, leader_watch) = address.resolve(Some(SETTLE_WITHIN)).await?;
    let leader_watch = leader_watch.ok_or_else(|| anyhow::anyhow!("no leader watch for an etcd address"))?;
    let node = Node::start(NodeConfig::default()).await?;
    let containerizer: Arc<dyn Containerizer> = Arc::new(ParkedContainerizer::default());
    let agents_dir = children.root().join("agents");
    for index in 0..agents {
        let info = AgentInfo {
            hostname: format!("sim-{index}"),
            id: None,
            resources: "cpus:4;mem:8192".parse()?,
            attributes: Default::default(),
        };
        let mut agent_config = AgentConfig::new(
            first_leader.clone(),
            agents_dir.join(format!("a{index}")),
            info,
            containerizer.clone(),
        );
        agent_config.leader = Some(leader_watch.clone());
        agent::start_named(&node, &format!("agent-{index}"), agent_config)?;
    }
    let events = Rc::new(RefCell::new(FrameworkEvents::default()));
    let mut framework = FrameworkInfo::new("bench-failover");
    framework.failover_timeout_secs = 3600.0;
    let holder = Holder { tasks, launched: 0, events: events.clone() };
    let mut scheduler_config = SchedulerConfig::new(first_leader, framework);
    // The driver draws its follow delay from this seed; `SchedulerConfig::new` leaves
    // it 0, which would make every run draw the same delays.
    scheduler_config.seed = fastrand::u64(..);
    let _framework =
        start_scheduler_with(&node, "framework", scheduler_config, holder, &address, Some(SETTLE_WITHIN))
            .await?;

    // The bench's own observer of the election: etcd's view, not the agents'.
    let mut observer = crate::etcd::observe_leader(&config)?;
    let etcd = crate::etcd::connect(&config).await?;

    let mut rounds = Vec::new();
    let mut since = None;
    for round in 1..=kills {
        let leader =
            settle(&mut children, &config, &etcd, &mut observer, (agents, tasks), &events, since).await?;
        let measured = kill_and_measure(&mut children, leader, &mut observer, agents, &events).await?;
        eprintln!(
            "round={round} killed={} new_leader={} etcd_handover_ms={:.0} elected_ms={:.0} first_agent_ms={:.0} \
             agents_ms={:.0} framework_ms={:.0} reregistered_ms={:.0}",
            children.master_addr(measured.killed),
            children.master_addr(measured.leader),
            measured.etcd_handover_ms,
            measured.elected_ms,
            measured.first_agent_ms,
            measured.agents_ms,
            measured.framework_ms,
            measured.reregistered_ms,
        );
        since = Some(measured.killed_at);
        children.start_master(measured.killed, &config.endpoints, &config.cluster, lease_ttl_secs).await?;
        rounds.push(measured);
    }
    // Everyone is back after the last kill too, and no task ended.
    settle(&mut children, &config, &etcd, &mut observer, (agents, tasks), &events, since).await?;
    let ended = events.borrow().ended;

    let stat = |f: fn(&Round) -> f64| {
        let values: Vec<f64> = rounds.iter().map(f).collect();
        let max = values.iter().copied().fold(0.0, f64::max);
        (median(values), max)
    };
    let (handover_p50, handover_max) = stat(|r| r.etcd_handover_ms);
    let (elected_p50, elected_max) = stat(|r| r.elected_ms);
    let (reregistered_p50, reregistered_max) = stat(|r| r.reregistered_ms);
    let (agents_p50, _) = stat(|r| r.agents_ms);
    let (framework_p50, _) = stat(|r| r.framework_ms);
    Ok(format!(
        "kills={kills} agents={agents} ttl_ms={} etcd_handover_ms_p50={handover_p50:.0} \
         etcd_handover_ms_max={handover_max:.0} elected_ms_p50={elected_p50:.0} elected_ms_max={elected_max:.0} \
         reregistered_ms_p50={reregistered_p50:.0} reregistered_ms_max={reregistered_max:.0} \
         agents_ms_p50={agents_p50:.0} framework_ms_p50={framework_p50:.0} tasks={tasks} tasks_ended={ended}",
        lease_ttl_secs * 1000,
    ))
}

fn metric(metrics: &serde_json::Value, key: &str) -> f64 {
    metrics[key].as_f64().unwrap_or(0.0)
}

/// Every running master's `/metrics/snapshot` (`None` for one that does not
/// answer), read in parallel with blocking HTTP on tokio's blocking pool.
async fn poll_masters(children: &Children) -> Vec<(usize, Option<serde_json::Value>)> {
    let reads: Vec<_> = (0..children.masters())
        .filter(|&i| children.master_running(i))
        .map(|i| {
            let addr = children.master_addr(i);
            let read =
                tokio::task::spawn_blocking(move || crate::cli::http::get_json(&addr, "/metrics/snapshot"));
            (i, read)
        })
        .collect();
    let mut out = Vec::with_capacity(reads.len());
    for (i, read) in reads {
        out.push((i, read.await.ok().and_then(Result::ok)));
    }
    out
}

/// Waits until the cluster is settled: one master serves with every agent active,
/// etcd's view names it, every master runs with its candidate key in etcd, and the
/// framework is subscribed (again, after `since`) with its `tasks` running. Returns
/// the leader's index.
async fn settle(
    children: &mut Children,
    config: &EtcdConfig,
    etcd: &crate::etcd::EtcdClient,
    observer: &mut watch::Receiver<Option<Leader>>,
    (agents, tasks): (usize, usize),
    events: &Rc<RefCell<FrameworkEvents>>,
    since: Option<Instant>,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + SETTLE_WITHIN;
    let mut last = String::from("no master answered");
    loop {
        for i in 0..children.masters() {
            if let Some(status) = children.master_exited(i) {
                anyhow::bail!("master {i} exited ({status}):\n{}", children.logs(&format!("master-{i}")));
            }
        }
        let polled = poll_masters(children).await;
        let elected: Vec<(usize, f64)> = polled
            .iter()
            .filter_map(|(i, m)| {
                m.as_ref()
                    .filter(|m| metric(m, "master/elected") == 1.0)
                    .map(|m| (*i, metric(m, "master/slaves_active")))
            })
            .collect();
        let (framework_back, running) = {
            let events = events.borrow();
            let back = match since {
                None => events.subscribed.is_some(),
                Some(since) => events.reregistered.iter().any(|t| *t > since),
            };
            (back, events.running.len())
        };
        let candidates = candidates(etcd, config).await.unwrap_or(0);
        let observed = observer.borrow().as_ref().map(|l| l.value.clone());
        if let [(leader, active)] = elected[..] {
            let named =
                observed.as_deref() == Some(format!("master@{}", children.master_addr(leader)).as_str());
            if active as usize == agents
                && named
                && framework_back
                && running == tasks
                && candidates == children.masters()
            {
                return Ok(leader);
            }
            last = format!(
                "leader {} with {active} of {agents} agents active, etcd names {observed:?}, framework back: \
                 {framework_back} with {running} of {tasks} tasks running, {candidates} candidates",
                children.master_addr(leader)
            );
        } else if elected.len() > 1 {
            last = format!("{} masters say they are elected", elected.len());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the cluster did not settle within {SETTLE_WITHIN:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many candidates' keys the election holds.
async fn candidates(etcd: &crate::etcd::EtcdClient, config: &EtcdConfig) -> anyhow::Result<usize> {
    let mut client = etcd.client();
    let options = GetOptions::new().with_prefix().with_count_only();
    let response =
        tokio::time::timeout(config.request_timeout, client.get(config.election_prefix(), Some(options)))
            .await??;
    Ok(usize::try_from(response.count()).unwrap_or(0))
}

/// Kills master `leader` and measures the failover (see the module's header).
async fn kill_and_measure(
    children: &mut Children,
    leader: usize,
    observer: &mut watch::Receiver<Option<Leader>>,
    agents: usize,
    events: &Rc<RefCell<FrameworkEvents>>,
) -> anyhow::Result<Round> {
    let old = observer.borrow_and_update().as_ref().map(|l| l.value.clone());
    // Generous bounds: a lease of up to a minute, a slow recovery.
    let bound = Duration::from_secs(120);
    let t0 = Instant::now();
    children.kill_master(leader)?;

    let handover = async {
        loop {
            if observer.changed().await.is_err() {
                anyhow::bail!("the etcd observer stopped");
            }
            let now = Instant::now();
            if let Some(leader) = observer.borrow_and_update().as_ref() {
                if Some(&leader.value) != old.as_ref() {
                    return Ok(now);
                }
            }
        }
    };
    let children_ref = &*children;
    let polling = async {
        let mut elected: Option<(usize, Instant)> = None;
        let mut first_agent = None;
        let mut all_agents = None;
        loop {
            for (i, m) in poll_masters(children_ref).await {
                let now = Instant::now();
                let Some(m) = m else { continue };
                if metric(&m, "master/elected") != 1.0 {
                    continue;
                }
                let (new_leader, _) = *elected.get_or_insert((i, now));
                if new_leader != i {
                    anyhow::bail!("two masters say they are elected after the kill");
                }
                let active = metric(&m, "master/slaves_active") as usize;
                if active > 0 {
                    first_agent.get_or_insert(now);
                }
                if active >= agents {
                    all_agents.get_or_insert(now);
                }
            }
            let framework = events.borrow().reregistered.iter().copied().find(|t| *t > t0);
            if let (Some((leader, elected_at)), Some(first), Some(all), Some(framework)) =
                (elected, first_agent, all_agents, framework)
            {
                return Ok((leader, elected_at, first, all, framework));
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let (handover, polled) =
        tokio::join!(tokio::time::timeout(bound, handover), tokio::time::timeout(bound, polling));
    let handover = handover
        .map_err(|_| anyhow::anyhow!("etcd reported no new leader within {bound:?} of the kill"))??;
    let (new_leader, elected_at, first_agent, all_agents, framework) = polled.map_err(|_| {
        anyhow::anyhow!("the agents and the framework were not back within {bound:?} of the kill")
    })??;
    let ms = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1000.0;
    Ok(Round {
        killed_at: t0,
        killed: leader,
        leader: new_leader,
        etcd_handover_ms: ms(handover),
        elected_ms: ms(elected_at),
        first_agent_ms: ms(first_agent),
        agents_ms: ms(all_agents),
        framework_ms: ms(framework),
        reregistered_ms: ms(all_agents.max(framework)),
    })
}

/// A containerizer whose containers run until they are signalled or destroyed (for
/// simulated agents holding long-running tasks).
#[derive(Default)]
struct ParkedContainerizer {
    live: Mutex<BTreeMap<ContainerId, Arc<Notify>>>,
}

impl ParkedContainerizer {
    fn end(&self, id: &ContainerId, remove: bool) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let ended = if remove { live.remove(id) } else { live.get(id).cloned() };
        if let Some(ended) = ended {
            ended.notify_one();
        }
    }
}

impl Containerizer for ParkedContainerizer {
    fn launch(&self, config: ContainerConfig) -> Result<u32, IsolationError> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(config.id, Arc::new(Notify::new()));
        Ok(0)
    }

    fn wait(&self, id: &ContainerId) -> BoxFuture<'static, Result<Termination, IsolationError>> {
        let ended = self.live.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        let id = id.clone();
        Box::pin(async move {
            let ended = ended.ok_or(IsolationError::UnknownContainer(id))?;
            ended.notified().await;
            Ok(Termination {
                status: ExitStatusKind::Signaled(9),
                message: "killed".into(),
                limitation: None,
            })
        })
    }

    fn signal(&self, id: &ContainerId, _signal: i32) -> Result<(), IsolationError> {
        self.end(id, false);
        Ok(())
    }

    fn destroy(&self, id: &ContainerId) -> BoxFuture<'static, Result<(), IsolationError>> {
        self.end(id, true);
        Box::pin(async { Ok(()) })
    }

    fn usage(&self, id: &ContainerId) -> Result<Usage, IsolationError> {
        Err(IsolationError::UnknownContainer(id.clone()))
    }

    fn containers(&self) -> Vec<ContainerId> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    fn name(&self) -> &'static str {
        "parked"
    }
}
