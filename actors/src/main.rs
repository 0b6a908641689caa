//! The `keel` command line: parses flags and calls into the crates.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use keel_actors::agent::{self, AgentConfig};
use keel_actors::cli;
use keel_actors::detector::MasterAddress;
use keel_actors::local::{LocalCluster, LocalConfig};
use keel_actors::master::{self, MasterConfig};
use keel_actors::registry::{FileRegistry, MemoryRegistry, Registry};
use keel_actors::task::AgentInfo;
use keel_isolation::CgroupsConfig;
use keel_kernel::{Node, NodeConfig};

/// Keel: a distributed systems kernel. Run a master and agents, then frameworks.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, long_about = None)]
struct Cli {
    /// Write every message event of this process as JSON lines to FILE.
    #[arg(long, global = true, env = "KEEL_TRACE", value_name = "FILE")]
    trace: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// How this process's node is reached and what it keeps: where other nodes reach it
/// when that is not where it listens (a proxy, NAT; Mesos's `--advertise_ip` and
/// `--advertise_port`), its flight recorder, and test-only fault injection.
#[derive(Debug, clap::Args)]
struct Advertise {
    /// The address other nodes use to reach this node.
    #[arg(long, env = "KEEL_ADVERTISE_IP")]
    advertise_ip: Option<IpAddr>,
    /// The port other nodes use to reach this node.
    #[arg(long, env = "KEEL_ADVERTISE_PORT")]
    advertise_port: Option<u16>,
    /// How many message events the flight recorder keeps (GET /trace/recent; 0: none).
    #[arg(long, env = "KEEL_FLIGHT_RECORDER_EVENTS", default_value_t = keel_kernel::trace::DEFAULT_EVENTS)]
    flight_recorder_events: usize,
    /// Accept fault-injection rules on POST /faults (tests only; loopback only).
    #[arg(long, env = "KEEL_FAULT_INJECTION")]
    fault_injection: bool,
    /// Where the flight recorder is written on a panic or SIGUSR1 (default: the
    /// current directory).
    #[arg(long, env = "KEEL_TRACE_DUMP_DIR")]
    trace_dump_dir: Option<PathBuf>,
}

impl Advertise {
    fn node_config(&self, ip: IpAddr, port: u16) -> anyhow::Result<NodeConfig> {
        if self.fault_injection && !ip.is_loopback() {
            // Nothing authenticates who posts rules: never off loopback.
            anyhow::bail!("--fault-injection is refused on a non-loopback address ({ip})");
        }
        if self.flight_recorder_events > 10_000_000 {
            anyhow::bail!(
                "--flight-recorder-events is at most 10000000, not {}",
                self.flight_recorder_events
            );
        }
        Ok(NodeConfig {
            bind: (ip, port).into(),
            advertise_host: self.advertise_ip.map(|ip| ip.to_string()),
            advertise_port: self.advertise_port,
            flight_recorder_events: self.flight_recorder_events,
            fault_injection: self.fault_injection,
            ..NodeConfig::default()
        })
    }

    /// Dumps the flight recorder on a panic or SIGUSR1 (call inside the runtime).
    fn dump_on_signal(&self) {
        let dir = self.trace_dump_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        keel_kernel::trace::dump_on_panic_and_sigusr1(dir);
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a master: pools the agents' resources and offers them to frameworks.
    Master {
        /// IP address to listen on.
        #[arg(long, env = "KEEL_IP", default_value = "127.0.0.1")]
        ip: IpAddr,
        /// Port for actor traffic and HTTP (/state, /metrics).
        #[arg(long, env = "KEEL_PORT", default_value_t = 5050)]
        port: u16,
        /// Directory for the file registry.
        #[arg(long, env = "KEEL_WORK_DIR", default_value = "/tmp/keel/master")]
        work_dir: PathBuf,
        /// Where the registry lives without etcd: `file` (under --work-dir) or `memory`.
        #[arg(long, env = "KEEL_REGISTRY", default_value = "file", value_parser = ["file", "memory"])]
        registry: String,
        /// etcd endpoints, `http://HOST:PORT[,...]`: masters elect a leader there and
        /// keep the registry there (high availability). Needs --cluster.
        #[arg(long, env = "KEEL_ETCD", requires = "cluster")]
        etcd: Option<String>,
        /// The cluster's name in etcd (masters, agents and frameworks then use
        /// `--master etcd://HOST:PORT[,...]/NAME`).
        #[arg(long, env = "KEEL_CLUSTER", requires = "etcd")]
        cluster: Option<String>,
        /// Seconds of the leader's etcd lease: a leader that cannot renew it for two
        /// thirds of that stops serving, and the next is elected when it runs out.
        #[arg(long, env = "KEEL_ETCD_LEASE_TTL", default_value_t = 2)]
        etcd_lease_ttl: u64,
        /// Seconds before an unused offer is rescinded (never when absent).
        #[arg(long, env = "KEEL_OFFER_TIMEOUT")]
        offer_timeout: Option<f64>,
        /// Seconds between pings to each agent.
        #[arg(long, env = "KEEL_AGENT_PING_TIMEOUT", default_value_t = 15.0)]
        agent_ping_timeout: f64,
        /// Unanswered pings after which an agent is unreachable.
        #[arg(long, env = "KEEL_MAX_AGENT_PING_TIMEOUTS", default_value_t = 5)]
        max_agent_ping_timeouts: u32,
        /// Seconds agents in the registry have to reregister after this master
        /// recovered before they are marked unreachable.
        #[arg(long, env = "KEEL_AGENT_REREGISTER_TIMEOUT", default_value_t = 600.0)]
        agent_reregister_timeout: f64,
        /// Seconds a task may stay STAGING before the master asks its agent whether
        /// it got the task (a lost launch then ends TASK_LOST or TASK_DROPPED).
        #[arg(long, env = "KEEL_LAUNCH_CHECK_TIMEOUT", default_value_t = 60.0)]
        launch_check_timeout: f64,
        #[command(flatten)]
        advertise: Advertise,
    },
    /// Run an agent: offers this machine's resources and runs tasks.
    Agent {
        /// The master: HOST:PORT, or `etcd://HOST:PORT[,...]/CLUSTER` to follow the
        /// elected leader.
        #[arg(long, env = "KEEL_MASTER")]
        master: String,
        /// IP address to listen on.
        #[arg(long, env = "KEEL_IP", default_value = "127.0.0.1")]
        ip: IpAddr,
        /// Port for actor traffic and HTTP (/state, /metrics/snapshot).
        #[arg(long, env = "KEEL_PORT", default_value_t = 5051)]
        port: u16,
        /// Where sandboxes and checkpoints go.
        #[arg(long, env = "KEEL_WORK_DIR", default_value = "/tmp/keel/agent")]
        work_dir: PathBuf,
        /// Resources to offer instead of the detected ones, e.g. `cpus:4;mem:8192;ports:[31000-32000]`.
        #[arg(long, env = "KEEL_RESOURCES")]
        resources: Option<String>,
        /// Attributes, e.g. `rack:a;zone:1`.
        #[arg(long, env = "KEEL_ATTRIBUTES", default_value = "")]
        attributes: String,
        /// The host name the master shows (defaults to the listening IP).
        #[arg(long, env = "KEEL_HOSTNAME")]
        hostname: Option<String>,
        /// Seconds between SIGTERM and SIGKILL when a task is killed.
        #[arg(long, env = "KEEL_KILL_GRACE_PERIOD", default_value_t = 3.0)]
        kill_grace_period: f64,
        /// Seconds a finished executor's sandbox is kept before it is garbage collected.
        #[arg(long, env = "KEEL_SANDBOX_GC_DELAY", default_value_t = 3600.0)]
        sandbox_gc_delay: f64,
        /// What to do with a previous agent's work on this work dir: `reconnect`
        /// (recover its tasks and reregister with them) or `cleanup` (kill them,
        /// forget them, and exit).
        #[arg(long, env = "KEEL_RECOVER", default_value = "reconnect")]
        recover: agent::RecoverMode,
        #[command(flatten)]
        advertise: Advertise,
    },
    /// Run a master and N agents in this process (in-memory registry), printing their ports.
    Local {
        /// Number of agents.
        #[arg(long, default_value_t = 2)]
        agents: usize,
        /// The master's port.
        #[arg(long, env = "KEEL_PORT", default_value_t = 5050)]
        port: u16,
        /// Each agent's resources (detected when absent).
        #[arg(long, env = "KEEL_RESOURCES")]
        resources: Option<String>,
        /// Where the agents' work directories go (a temporary directory when absent).
        #[arg(long, env = "KEEL_WORK_DIR")]
        work_dir: Option<PathBuf>,
    },
    /// Run a shell command as a task (or N tasks) and exit with its exit status.
    Execute {
        /// The master: HOST:PORT, or `etcd://HOST:PORT[,...]/CLUSTER` for the elected leader.
        #[arg(long, env = "KEEL_MASTER")]
        master: String,
        /// The task's name.
        #[arg(long)]
        name: String,
        /// The shell command.
        #[arg(long)]
        command: String,
        /// Cpus per task.
        #[arg(long, default_value_t = 0.1)]
        cpus: f64,
        /// Memory per task, MB.
        #[arg(long, default_value_t = 32.0)]
        mem: f64,
        /// Number of tasks (a progress bar is shown when more than one).
        #[arg(long, default_value_t = 1)]
        instances: usize,
        /// IP address this framework listens on.
        #[arg(long, env = "KEEL_IP", default_value = "127.0.0.1")]
        ip: IpAddr,
    },
    /// List the cluster's tasks with state, agent and resources.
    Ps {
        /// The master: HOST:PORT, or `etcd://HOST:PORT[,...]/CLUSTER` for the elected leader.
        #[arg(long, env = "KEEL_MASTER")]
        master: String,
    },
    /// Print a task's stdout (or stderr) through its agent's files API.
    Logs {
        /// The task's id.
        task_id: String,
        /// The master: HOST:PORT, or `etcd://HOST:PORT[,...]/CLUSTER` for the elected leader.
        #[arg(long, env = "KEEL_MASTER")]
        master: String,
        /// Print stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Keep printing new output until the task ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Look for the task only in this framework (needed when several have it).
        #[arg(long)]
        framework: Option<String>,
    },
    /// Explain why a framework is (or is not) getting offers.
    Why {
        /// The framework's id.
        framework: String,
        /// The master: HOST:PORT, or `etcd://HOST:PORT[,...]/CLUSTER` for the elected leader.
        #[arg(long, env = "KEEL_MASTER")]
        master: String,
    },
    /// Follow messages across nodes: merge traces (files, flight-recorder dumps,
    /// running nodes) onto one clock and draw them; `keel trace task TASK_ID` tells
    /// one task's life.
    Trace(Box<cli::trace::TraceArgs>),
    /// Print benchmark figures of the cluster (see `keel bench --help`).
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Run whole clusters in simulation (one thread, simulated clock and network,
    /// seeded faults) and check their invariants.
    Sim {
        /// The seed of the one schedule to run (replays it exactly).
        #[arg(long, conflicts_with_all = ["seeds", "seed_base"])]
        seed: Option<u64>,
        /// Run this many seeds, from --seed-base.
        #[arg(long)]
        seeds: Option<u64>,
        /// The first seed with --seeds.
        #[arg(long, default_value_t = 0)]
        seed_base: u64,
        /// Faults to inject: all, none, or a list of drop, dup, delay, partition,
        /// crash, pause, registry, launch.
        #[arg(long, default_value = "all")]
        faults: String,
        /// Masters (one leads at a time, elected on a lease; the others stand by).
        #[arg(long, default_value_t = 3)]
        masters: usize,
        /// Agents in the cluster.
        #[arg(long, default_value_t = 10)]
        agents: usize,
        /// Frameworks (in turn: a batch that retries, a partition-aware one, one
        /// whose scheduler fails over).
        #[arg(long, default_value_t = 3)]
        frameworks: usize,
        /// Jobs per framework.
        #[arg(long, default_value_t = 40)]
        jobs: usize,
        /// How long faults are injected (then the cluster must settle), e.g. 10m.
        #[arg(long, default_value = "10m")]
        duration: String,
        /// How many of the last events a violation shows.
        #[arg(long, default_value_t = 40)]
        events: usize,
    },
    /// Two kernel nodes in two processes pinging each other, until Ctrl-C.
    Demo {
        /// Address to bind this process's node to.
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: std::net::SocketAddr,
        /// Run the serving side only (started by `keel demo` itself).
        #[arg(long, hide = true)]
        serve: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// N /bin/true tasks through a local cluster; prints tasks_per_s.
    Launch {
        /// Number of tasks.
        #[arg(long, default_value_t = 500)]
        tasks: usize,
        /// Number of agents.
        #[arg(long, default_value_t = 2)]
        agents: usize,
        /// Parent directory of the agents' work directories (sandboxes); the system
        /// temporary directory when absent.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Launches per configuration; the figures printed are medians.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Also run each launch without the per-container waiter (the process that
        /// records exit statuses for agent recovery), alternating with the default,
        /// and print tasks_per_s_without_waiter and waiter_cost_ratio.
        #[arg(long)]
        compare_waiter: bool,
    },
    /// A 3-member etcd, 3 `keel master --etcd` children, simulated agents and a
    /// framework; SIGKILLs the leader --kills times and prints how long etcd's
    /// election hand-over, the new leader's election and everyone's reregistration
    /// took (medians and maxima, ms; one line per round on stderr). Needs etcd
    /// (scripts/setup.sh).
    Failover {
        /// Leaders killed, one per round.
        #[arg(long, default_value_t = 5)]
        kills: usize,
        /// Number of simulated agents.
        #[arg(long, default_value_t = 100)]
        agents: usize,
        /// Long-running tasks the framework keeps on the agents.
        #[arg(long, default_value_t = 2)]
        tasks: usize,
        /// Seconds of the leader's etcd lease (as `keel master --etcd-lease-ttl`).
        #[arg(long, default_value_t = 2)]
        etcd_lease_ttl: u64,
    },
    /// Simulated agents and frameworks against a `keel master` child; prints
    /// tasks_per_s and the master's RSS.
    ControlPlane {
        /// Number of simulated agents.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Number of frameworks.
        #[arg(long, default_value_t = 10)]
        frameworks: usize,
        /// Number of tasks in all.
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
    },
}

fn secs(value: f64, flag: &str) -> anyhow::Result<Duration> {
    match keel_proto::time::duration_from_secs(value) {
        Some(duration) if value > 0.0 => Ok(duration),
        _ => anyhow::bail!("--{flag} must be a positive number of seconds up to a year, not {value:?}"),
    }
}

async fn until_signalled() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// The log level when RUST_LOG says nothing: the simulator's nodes stay silent
/// (their faults are the point), the CLI tools say only what goes wrong.
fn default_level(command: &Command, quiet: bool) -> &'static str {
    match command {
        Command::Sim { .. } => "off",
        _ if quiet => "warn",
        _ => "info",
    }
}

/// Exits the process with `code`, writing the trace file's tail first.
fn exit(code: i32) -> ! {
    keel_kernel::trace::flush();
    std::process::exit(code)
}

/// The `host:port` of the master's HTTP API for a `--master` (asking etcd who leads).
fn master_http(text: &str) -> anyhow::Result<String> {
    let address: MasterAddress = text.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(address.http_address())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let quiet = matches!(
        cli.command,
        Command::Execute { .. }
            | Command::Ps { .. }
            | Command::Why { .. }
            | Command::Bench { .. }
            | Command::Logs { .. }
            | Command::Sim { .. }
    );
    let _trace =
        keel_kernel::trace::init_with_default(cli.trace.as_deref(), default_level(&cli.command, quiet))?;
    match cli.command {
        Command::Master {
            ip,
            port,
            work_dir,
            registry,
            etcd,
            cluster,
            etcd_lease_ttl,
            offer_timeout,
            agent_ping_timeout,
            max_agent_ping_timeouts,
            agent_reregister_timeout,
            launch_check_timeout,
            advertise,
        } => {
            let config = MasterConfig {
                offer_timeout: offer_timeout.map(|t| secs(t, "offer-timeout")).transpose()?,
                agent_ping_timeout: secs(agent_ping_timeout, "agent-ping-timeout")?,
                max_agent_ping_timeouts,
                agent_reregister_timeout: secs(agent_reregister_timeout, "agent-reregister-timeout")?,
                launch_check_timeout: secs(launch_check_timeout, "launch-check-timeout")?,
                // Like Mesos's registrar: a master that cannot write its registry exits,
                // and a restarted one recovers from what is durable.
                on_abort: Some(Arc::new(|reason: &str| {
                    eprintln!("keel master: {reason}");
                    exit(1);
                })),
                ..MasterConfig::default()
            };
            if let (Some(endpoints), Some(cluster)) = (etcd, cluster) {
                let endpoints: Vec<String> = endpoints.split(',').map(|e| e.trim().to_string()).collect();
                let mut etcd = keel_actors::etcd::EtcdConfig::new(endpoints, cluster);
                if !(1..=3600).contains(&etcd_lease_ttl) {
                    anyhow::bail!("--etcd-lease-ttl must be 1 to 3600 seconds, not {etcd_lease_ttl}");
                }
                etcd.lease_ttl = Duration::from_secs(etcd_lease_ttl);
                etcd.validate()?;
                return actix_rt::System::new().block_on(async move {
                    let node = Node::start(advertise.node_config(ip, port)?).await?;
                    advertise.dump_on_signal();
                    advertise.dump_on_signal();
                    println!(
                        "master listening on {} (http://{}/state), campaigning in {}",
                        node.addr(),
                        node.addr(),
                        etcd.address()
                    );
                    let stop = async {
                        let _ = until_signalled().await;
                    };
                    match master::ha::run(&node, config, etcd, stop).await? {
                        master::ha::Ended::Lost(reason) => {
                            // Like Mesos's master: a master that may no longer lead exits.
                            eprintln!("keel master: lost the leadership: {reason}");
                            exit(1);
                        }
                        master::ha::Ended::Resigned => Ok(()),
                    }
                });
            }
            let registry: Arc<dyn Registry> = match registry.as_str() {
                "memory" => Arc::new(MemoryRegistry::new()),
                _ => {
                    std::fs::create_dir_all(&work_dir)?;
                    Arc::new(FileRegistry::open(work_dir.join("registry.json"))?)
                }
            };
            actix_rt::System::new().block_on(async move {
                let node = Node::start(advertise.node_config(ip, port)?).await?;
                advertise.dump_on_signal();
                master::start(&node, config, registry)?;
                println!("master listening on {} (http://{}/state)", node.addr(), node.addr());
                until_signalled().await
            })
        }
        Command::Agent {
            master,
            ip,
            port,
            work_dir,
            resources,
            attributes,
            hostname,
            kill_grace_period,
            sandbox_gc_delay,
            recover,
            advertise,
        } => {
            let master: MasterAddress = master.parse()?;
            std::fs::create_dir_all(&work_dir)?;
            let resources = agent::detect::agent_resources(&work_dir, resources.as_deref())?;
            let attributes = agent::detect::parse_attributes(&attributes).map_err(anyhow::Error::msg)?;
            let info = AgentInfo {
                hostname: hostname.unwrap_or_else(|| ip.to_string()),
                id: None,
                resources,
                attributes,
            };
            let kill_grace_period = secs(kill_grace_period, "kill-grace-period")?;
            let sandbox_gc_delay = secs(sandbox_gc_delay, "sandbox-gc-delay")?;
            actix_rt::System::new().block_on(async move {
                let (master, leader) = master.resolve(None).await?;
                let node = Node::start(advertise.node_config(ip, port)?).await?;
                advertise.dump_on_signal();
                // cgroups where writable (one root per agent, by its port), else POSIX.
                // Each container's waiter records its exit status here, so a restarted
                // agent learns how its tasks ended while it was down.
                let cgroups = CgroupsConfig {
                    root: format!("keel/agent-{}", node.addr().port()),
                    state_dir: Some(agent::checkpoint::Checkpoints::new(&work_dir).exits_dir()),
                    ..CgroupsConfig::default()
                };
                let (containerizer, why) = keel_isolation::best_available(cgroups);
                tracing::info!(isolation = %containerizer.isolation(), reason = %why, "agent isolation");
                let mut config = AgentConfig::new(master, work_dir, info, containerizer);
                config.kill_grace_period = kill_grace_period;
                config.sandbox_gc_delay = sandbox_gc_delay;
                config.recover = recover;
                config.leader = leader;
                // The cgroup root is this agent's: what nobody checkpointed there is an orphan.
                config.destroy_orphans = true;
                // Shut down by the master (or unable to checkpoint): the agent exits.
                config.on_exit = Some(Arc::new(|code: i32, reason: &str| {
                    eprintln!("keel agent: {reason}");
                    exit(code);
                }));
                let containerizer = config.containerizer.clone();
                agent::start(&node, config)?;
                println!("agent listening on {} (http://{}/state)", node.addr(), node.addr());
                until_signalled().await?;
                // Tasks keep running (for agent recovery); an empty cgroup root goes.
                containerizer.cleanup();
                Ok(())
            })
        }
        Command::Local { agents, port, resources, work_dir } => {
            actix_rt::System::new().block_on(async move {
                let config = LocalConfig {
                    agents,
                    port,
                    agent_resources: resources,
                    work_dir,
                    ..LocalConfig::default()
                };
                let cluster = LocalCluster::start(config).await?;
                let master = cluster.node().addr().clone();
                println!("master: {master}   (http://{master}/state)");
                for (index, (node, _)) in cluster.agents().iter().enumerate() {
                    println!("agent {index}: {}   (http://{}/state)", node.addr(), node.addr());
                }
                println!("work dir: {}", cluster.work_dir().display());
                println!("try: keel execute --master {master} --name hi --command 'echo hello'");
                until_signalled().await?;
                cluster.shutdown().await;
                Ok(())
            })
        }
        Command::Execute { master, name, command, cpus, mem, instances, ip } => {
            let options = cli::execute::ExecuteOptions {
                master: master.parse()?,
                name,
                command,
                cpus,
                mem_mb: mem,
                instances,
                bind_ip: ip,
            };
            let code = cli::execute::run(options)?;
            exit(code);
        }
        Command::Ps { master } => {
            print!("{}", cli::ps::run(&master_http(&master)?)?);
            Ok(())
        }
        Command::Logs { task_id, master, stderr, follow, framework } => {
            let master = master_http(&master)?;
            let options = cli::logs::LogsOptions { master, task_id, stderr, follow, framework };
            cli::logs::run(&options, &mut std::io::stdout().lock())
        }
        Command::Why { framework, master } => {
            println!("{}", cli::why::run(&master_http(&master)?, &framework)?);
            Ok(())
        }
        Command::Trace(args) => exit(cli::trace::main(*args)),
        Command::Bench { which } => {
            let line = match which {
                BenchCommand::Launch { tasks, agents, work_dir, rounds, compare_waiter } => {
                    let options =
                        keel_actors::bench::LaunchOptions { tasks, agents, work_dir, rounds, compare_waiter };
                    keel_actors::bench::launch(options)?
                }
                BenchCommand::Failover { kills, agents, tasks, etcd_lease_ttl } => {
                    let options = keel_actors::bench::FailoverOptions {
                        kills,
                        agents,
                        tasks,
                        lease_ttl_secs: etcd_lease_ttl,
                        quiet: cli.trace.is_none() && std::env::var_os("RUST_LOG").is_none(),
                    };
                    keel_actors::bench::failover(options)?
                }
                BenchCommand::ControlPlane { agents, frameworks, tasks } => {
                    keel_actors::bench::control_plane(agents, frameworks, tasks)?
                }
            };
            println!("{line}");
            Ok(())
        }
        Command::Sim {
            seed,
            seeds,
            seed_base,
            faults,
            masters,
            agents,
            frameworks,
            jobs,
            duration,
            events,
        } => {
            let faults = keel_sim::Faults::parse(&faults).map_err(anyhow::Error::msg)?;
            let duration = cli::sim::parse_duration(&duration).map_err(anyhow::Error::msg)?;
            if masters == 0
                || masters > 9
                || agents == 0
                || agents > 1000
                || frameworks > 100
                || jobs > 10_000
            {
                anyhow::bail!(
                    "--masters must be 1 to 9, --agents 1 to 1000, --frameworks at most 100, --jobs at most 10000"
                );
            }
            let (seed_base, seeds) = match (seed, seeds) {
                (Some(seed), _) => (seed, 1),
                (None, Some(seeds)) => (seed_base, seeds),
                (None, None) => (seed_base, 1),
            };
            let events = events.clamp(1, 1_000_000);
            let options = cli::sim::SimOptions {
                seed_base,
                seeds,
                faults,
                masters,
                agents,
                frameworks,
                jobs,
                duration,
                events,
            };
            let violating = cli::sim::run(&options, &mut std::io::stdout().lock())?;
            if violating > 0 {
                exit(1);
            }
            Ok(())
        }
        Command::Demo { bind, serve } => {
            let config = NodeConfig { bind, ..NodeConfig::default() };
            if serve {
                keel_actors::demo::serve(config)
            } else {
                let trace_args: Vec<String> = match &cli.trace {
                    Some(path) => vec!["--trace".into(), format!("{}.serve", path.display())],
                    None => Vec::new(),
                };
                keel_actors::demo::run(config, &trace_args)
            }
        }
    }
}
