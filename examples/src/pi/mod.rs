//! `keel-pi`: estimates pi by Monte Carlo with a custom executor. The scheduler
//! launches N executor tasks (`keel-pi-executor`), fans work units `(seed,
//! samples)` out to them over framework messages, aggregates the hit counts they
//! send back, then tells each executor "done" and stops once every executor task is
//! FINISHED.
//!
//! Frameworks as actors: the scheduler process also handles its own [`Tick`]
//! message (a timer), which resends unanswered units and bounds the shutdown.
//! Decisions are in [`state`] (pure); [`scheduler`] executes them.

pub mod executor;
pub mod messages;
pub mod scheduler;
pub mod state;
pub mod xorshift;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use keel_actors::detector::MasterAddress;
use keel_actors::resources::Resources;
use keel_actors::scheduler::{start_scheduler_with, DriverStatus, SchedulerConfig};
use keel_actors::task::{CommandInfo, FrameworkInfo};
use keel_kernel::{Node, NodeConfig};

use crate::support::{wait_for_driver, SUBSCRIBE_TIMEOUT};

pub use executor::PiExecutor;
pub use messages::Tick;
pub use scheduler::PiScheduler;
pub use state::{PiReport, Settings};

/// Most executors at once.
pub const EXECUTORS_MAX: usize = 64;
/// Most work units.
pub const UNITS_MAX: u64 = 1_000_000;
/// Most samples per unit (an executor computes a unit in one go).
pub const SAMPLES_MAX: u64 = 1_000_000_000;
/// Resources of each executor process itself (its task adds `cpus`/`mem_mb`).
pub const EXECUTOR_RESOURCES: &str = "cpus:0.1;mem:32";

/// What to compute, and where the executor is.
#[derive(Debug, Clone)]
pub struct PiOptions {
    /// Executors to run.
    pub executors: usize,
    /// Work units.
    pub units: u64,
    /// Samples per unit.
    pub samples: u64,
    /// Base seed (unit `u` uses `seed + u`), so a run can be replayed.
    pub seed: u64,
    /// The `keel-pi-executor` program (absolute, or relative to the current directory).
    pub executor_path: PathBuf,
    /// Cpus of each executor task.
    pub cpus: f64,
    /// Memory of each executor task, MB.
    pub mem_mb: f64,
    /// The framework's name.
    pub name: String,
    /// How long to wait for the master to accept the framework.
    pub subscribe_timeout: Duration,
}

impl PiOptions {
    /// The defaults of `keel-pi`, with the executor at `executor_path`.
    pub fn new(executor_path: PathBuf) -> PiOptions {
        PiOptions {
            executors: 2,
            units: 20,
            samples: 100_000,
            seed: 1,
            executor_path,
            cpus: 0.5,
            mem_mb: 32.0,
            name: "pi".into(),
            subscribe_timeout: SUBSCRIBE_TIMEOUT,
        }
    }
}

/// The `keel-pi-executor` next to the running program.
pub fn default_executor_path() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name("keel-pi-executor"))
}

fn validate(options: &PiOptions) -> anyhow::Result<(Resources, PathBuf)> {
    if options.executors == 0 || options.executors > EXECUTORS_MAX {
        anyhow::bail!("--executors must be 1 to {EXECUTORS_MAX}, not {}", options.executors);
    }
    if options.units == 0 || options.units > UNITS_MAX {
        anyhow::bail!("--units must be 1 to {UNITS_MAX}, not {}", options.units);
    }
    if options.samples == 0 || options.samples > SAMPLES_MAX {
        anyhow::bail!("--samples must be 1 to {SAMPLES_MAX}, not {}", options.samples);
    }
    if !(options.cpus.is_finite() && options.cpus > 0.0) {
        anyhow::bail!("--cpus must be a positive number, not {}", options.cpus);
    }
    if !(options.mem_mb.is_finite() && options.mem_mb > 0.0) {
        anyhow::bail!("--mem must be a positive number of MB, not {}", options.mem_mb);
    }
    let path = &options.executor_path;
    if !path.is_file() {
        anyhow::bail!(
            "the executor {} does not exist or is not a file; build it with \
             `cargo build -p keel-examples`, or pass --executor-path",
            path.display()
        );
    }
    let path = path
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("cannot resolve the executor path {}: {e}", path.display()))?;
    if path.to_str().is_none() {
        anyhow::bail!("the executor path {} is not UTF-8", path.display());
    }
    let resources = format!("cpus:{};mem:{}", options.cpus, options.mem_mb).parse()?;
    Ok((resources, path))
}

/// Runs the estimate as a framework on `node` (inside its actix system) against
/// `master`; returns when the scheduler stops. Prints progress and the estimate.
pub async fn run_on(
    node: &Node,
    master: impl Into<MasterAddress>,
    options: &PiOptions,
) -> anyhow::Result<PiReport> {
    let master: MasterAddress = master.into();
    let (task_resources, executor_path) = validate(options)?;
    let settings = Settings {
        units: options.units,
        samples: options.samples,
        seed: options.seed,
        executors: options.executors,
        replacements_max: options.executors,
    };
    let executor_command = CommandInfo {
        shell: false,
        value: executor_path.to_string_lossy().into_owned(),
        ..CommandInfo::default()
    };
    let shared = Rc::new(RefCell::new(None));
    let scheduler = PiScheduler {
        coordinator: state::Coordinator::new(settings),
        task_resources,
        executor_resources: EXECUTOR_RESOURCES.parse()?,
        executor_command,
        suppressed: false,
        report: shared.clone(),
    };
    println!(
        "estimating pi: {} units of {} samples on {} executors (seed {})",
        options.units, options.samples, options.executors, options.seed
    );
    let mut framework = FrameworkInfo::new(format!("keel-pi {}", options.name));
    framework.user = std::env::var("USER").unwrap_or_default();
    // Its tasks survive agent restarts (the agent checkpoints them and recovers).
    framework.checkpoint = true;
    let placeholder = node.upid("master")?;
    let mut config = SchedulerConfig::new(placeholder, framework);
    config.subscribe_timeout = Some(options.subscribe_timeout);
    let wait = Some(options.subscribe_timeout);
    let handle = start_scheduler_with(node, "pi", config, scheduler, &master, wait).await?;
    // The first tick; the handler re-arms it.
    let me = handle.process.upid().clone();
    node.send(&me, &me, Tick {});
    let status = wait_for_driver(&handle, &master, options.subscribe_timeout).await?;
    let report = shared.borrow_mut().take();
    match (report, status) {
        (Some(report), _) => Ok(report),
        (None, DriverStatus::Aborted(reason)) => anyhow::bail!("the master ended the framework: {reason}"),
        (None, _) => anyhow::bail!("the scheduler stopped without a report"),
    }
}

/// Starts an actix system and a node bound to `bind_ip`, runs the estimate; what
/// `keel-pi` calls.
pub fn run(master: MasterAddress, bind_ip: std::net::IpAddr, options: PiOptions) -> anyhow::Result<PiReport> {
    actix_rt::System::new().block_on(async move {
        let node = Node::start(NodeConfig { bind: (bind_ip, 0).into(), ..NodeConfig::default() }).await?;
        run_on(&node, master, &options).await
    })
}
