//! A whole cluster in one process: a master (in-memory registry) and N agents, each
//! on its own node and port. What `keel local` and the tests start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_isolation::{CgroupsConfig, Containerizer};
use keel_kernel::{Node, NodeConfig, ProcessRef, Upid};

use crate::agent::{self, Agent, AgentConfig};
use crate::master::{self, MasterConfig, MasterHandle};
use crate::registry::MemoryRegistry;
use crate::task::AgentInfo;

/// What to start.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Number of agents.
    pub agents: usize,
    /// The master's port (0: any free port); agents take any free ports.
    pub port: u16,
    /// The address to bind.
    pub ip: std::net::IpAddr,
    /// Each agent's resources (Mesos text syntax); detected when `None`.
    pub agent_resources: Option<String>,
    /// Where the agents' work directories go; a fresh temporary directory when `None`.
    pub work_dir: Option<PathBuf>,
    /// The master's settings.
    pub master: MasterConfig,
    /// Applied to each agent's configuration after the defaults.
    pub agent_tuning: Option<fn(&mut AgentConfig)>,
    /// Give every container a waiter that records its exit status under
    /// `<work dir>/exits`, as `keel agent` does (so a restarted agent learns how its
    /// tasks ended). It costs a fork per container; `keel bench launch
    /// --compare-waiter` turns it off to show that cost. On by default.
    pub record_exit_statuses: bool,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            agents: 1,
            port: 0,
            ip: std::net::IpAddr::from([127, 0, 0, 1]),
            agent_resources: None,
            work_dir: None,
            master: MasterConfig::default(),
            agent_tuning: None,
            record_exit_statuses: true,
        }
    }
}

/// A running local cluster.
pub struct LocalCluster {
    node: Node,
    master: MasterHandle,
    agents: Vec<(Node, ProcessRef<Agent>)>,
    work_dir: PathBuf,
    owns_work_dir: bool,
    containerizer: Arc<dyn Containerizer>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("master", self.master.master.upid())
            .field("agents", &self.agents.len())
            .finish()
    }
}

impl LocalCluster {
    /// Starts the master and the agents; returns once every agent has registered.
    pub async fn start(config: LocalConfig) -> anyhow::Result<LocalCluster> {
        let node = Node::start(NodeConfig { bind: (config.ip, config.port).into(), ..NodeConfig::default() })
            .await?;
        let master = master::start(&node, config.master.clone(), Arc::new(MemoryRegistry::new()))?;
        let (work_dir, owns_work_dir) = match &config.work_dir {
            Some(dir) => (dir.clone(), false),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "keel-local-{}-{:08x}",
                    std::process::id(),
                    fastrand::u32(..)
                ));
                (dir, true)
            }
        };
        // cgroups when this machine allows them, one root per local cluster.
        // Its waiters record exit statuses, as a real agent's do (they cost a fork each).
        let cgroups = CgroupsConfig {
            // One root per cluster: several clusters in one process (tests) must not
            // remove each other's root when they shut down.
            root: format!("keel/local-{}-{:08x}", std::process::id(), fastrand::u32(..)),
            state_dir: config.record_exit_statuses.then(|| work_dir.join("exits")),
            ..CgroupsConfig::default()
        };
        let (containerizer, why) = keel_isolation::best_available(cgroups);
        tracing::info!(isolation = %containerizer.isolation(), reason = %why, "local cluster isolation");
        let hostname = config.ip.to_string();
        let mut agents = Vec::new();
        for index in 0..config.agents {
            let agent_node =
                Node::start(NodeConfig { bind: (config.ip, 0).into(), ..NodeConfig::default() }).await?;
            let agent_dir = work_dir.join(format!("agent-{index}"));
            std::fs::create_dir_all(&agent_dir)?;
            let resources = agent::detect::agent_resources(&agent_dir, config.agent_resources.as_deref())?;
            let info =
                AgentInfo { hostname: hostname.clone(), id: None, resources, attributes: Default::default() };
            let mut agent_config =
                AgentConfig::new(master.master.upid().clone(), agent_dir, info, containerizer.clone());
            if let Some(tune) = config.agent_tuning {
                tune(&mut agent_config);
            }
            let agent = agent::start(&agent_node, agent_config)?;
            agents.push((agent_node, agent));
        }
        let cluster = LocalCluster { node, master, agents, work_dir, owns_work_dir, containerizer };
        cluster.wait_for_agents(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    async fn wait_for_agents(&self, deadline: Duration) -> anyhow::Result<()> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let mut registered = 0;
            for (_, agent) in &self.agents {
                if agent.query(|a, _| a.agent_id().is_some()).await.unwrap_or(false) {
                    registered += 1;
                }
            }
            if registered == self.agents.len() {
                return Ok(());
            }
            if tokio::time::Instant::now() > end {
                anyhow::bail!("only {registered} of {} agents registered", self.agents.len());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The master's node (schedulers started in-process can use it too).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The master's UPID.
    pub fn master_upid(&self) -> &Upid {
        self.master.master.upid()
    }

    /// The master's processes.
    pub fn master(&self) -> &MasterHandle {
        &self.master
    }

    /// The agents' nodes and processes.
    pub fn agents(&self) -> &[(Node, ProcessRef<Agent>)] {
        &self.agents
    }

    /// The directory holding the agents' work directories.
    pub fn work_dir(&self) -> &std::path::Path {
        &self.work_dir
    }

    /// Destroys every container and removes a temporary work directory.
    pub async fn shutdown(self) {
        for container in self.containerizer.containers() {
            let _ = self.containerizer.destroy(&container).await;
        }
        self.containerizer.cleanup();
        if self.owns_work_dir {
            let _ = std::fs::remove_dir_all(&self.work_dir);
        }
    }
}
