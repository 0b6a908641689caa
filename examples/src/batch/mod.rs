//! `keel-batch`: runs a list of shell commands across the cluster, as many per offer
//! as fit, retrying a failed command (FAILED, LOST, ERROR, DROPPED, GONE) up to
//! `retries` times with a new task id per attempt. It prints each state change and
//! a progress line, then a summary table.
//!
//! Offers: suppressed while nothing is pending, revived when a retry is queued.
//! Attempts in flight are reconciled on every subscription and then with backoff
//! ([`reconcile`]), so a master failover that lost a launch does not leave the
//! batch waiting for ever. The bookkeeping is in [`jobs`] and [`reconcile`]
//! (pure); [`Batch`] only turns their answers into driver calls.

pub mod jobs;
pub mod reconcile;
pub mod summary;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use keel_actors::detector::MasterAddress;
use keel_actors::ids::FrameworkId;
use keel_actors::messages::scheduler::ReconcileTask;
use keel_actors::resources::Resources;
use keel_actors::scheduler::{
    start_scheduler_with, DriverStatus, Scheduler, SchedulerConfig, SchedulerDriver, SchedulerProcess,
};
use keel_actors::task::{CommandInfo, FrameworkInfo, Offer, TaskInfo, TaskReason, TaskStatus};
use keel_kernel::{Handle, Handlers, Node, NodeConfig, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

use crate::support::{wait_for_driver, SUBSCRIBE_TIMEOUT};

pub use jobs::{Jobs, Outcome, Progress};
pub use reconcile::Reconciler;
pub use summary::{JobSummary, Summary};

/// Most commands one run accepts.
pub const JOBS_MAX: usize = 100_000;
/// Most retries per command.
pub const RETRIES_MAX: u32 = 100;
/// Width of a command in progress lines.
const COMMAND_WIDTH_IN_LINES: usize = 40;

/// How to run the commands.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The framework's name (`keel-batch NAME`).
    pub name: String,
    /// Cpus per command.
    pub cpus: f64,
    /// Memory per command, MB.
    pub mem_mb: f64,
    /// Retries after a command's first failed attempt.
    pub retries: u32,
    /// How long to wait for the master to accept the framework.
    pub subscribe_timeout: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            name: "batch".into(),
            cpus: 0.1,
            mem_mb: 32.0,
            retries: 2,
            subscribe_timeout: SUBSCRIBE_TIMEOUT,
        }
    }
}

/// Everything `keel-batch` needs to run on its own.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The master (fixed, or the leader of an etcd election).
    pub master: MasterAddress,
    /// The commands.
    pub jobs: Vec<String>,
    /// How to run them.
    pub batch: BatchOptions,
    /// The address this framework's node binds (the master must reach it).
    pub bind_ip: std::net::IpAddr,
}

/// The commands of a job file: one per line; blank lines and `#` comments skipped.
pub fn parse_job_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The batch's timer: time to reconcile, for the subscription `round`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReconcileTick {
    round: u64,
}
keel_kernel::message!(ReconcileTick, "keel.examples.batch.ReconcileTick");

/// The scheduler.
pub struct Batch {
    jobs: Jobs,
    reconciler: Reconciler,
    resources: Resources,
    suppressed: bool,
    summary: Rc<RefCell<Option<Summary>>>,
}

impl Batch {
    fn label(&self, status: &TaskStatus) -> String {
        match self.jobs.job_of(&status.task_id) {
            Some(job) => {
                format!("{} ({})", status.task_id, summary::shorten(&job.command, COMMAND_WIDTH_IN_LINES))
            }
            None => status.task_id.to_string(),
        }
    }

    /// Asks the master for the state of every attempt in flight.
    fn reconcile(&self, driver: &mut SchedulerDriver) {
        let tasks: Vec<ReconcileTask> = self
            .jobs
            .in_flight()
            .into_iter()
            .map(|(task_id, agent_id)| ReconcileTask { task_id, agent_id: Some(agent_id) })
            .collect();
        if !tasks.is_empty() {
            driver.reconcile(tasks);
        }
    }

    fn finish(&mut self, driver: &mut SchedulerDriver, aborted: Option<String>) {
        *self.summary.borrow_mut() = Some(self.jobs.summary(aborted));
        driver.stop(false);
    }
}

impl Scheduler for Batch {
    fn subscribed(&mut self, driver: &mut SchedulerDriver, framework_id: &FrameworkId) {
        println!("framework {framework_id} subscribed; {} commands to run", self.jobs.jobs().len());
        self.reconcile(driver);
        let (round, delay) = self.reconciler.subscribed();
        driver.delay(delay, ReconcileTick { round });
    }

    fn offers(&mut self, driver: &mut SchedulerDriver, offers: Vec<Offer>) {
        for offer in offers {
            let mut remaining = offer.resources.clone();
            let mut tasks = Vec::new();
            while self.jobs.has_pending() && remaining.contains(&self.resources) {
                let Some((task_id, command)) = self.jobs.next_launch(&offer.agent_id) else { break };
                remaining -= self.resources.clone();
                println!(
                    "{task_id} ({}): launching on {}",
                    summary::shorten(&command, COMMAND_WIDTH_IN_LINES),
                    offer.hostname
                );
                tasks.push(TaskInfo::command(
                    task_id.as_str(),
                    &offer,
                    self.resources.clone(),
                    CommandInfo::shell(command),
                ));
            }
            if tasks.is_empty() {
                // Nothing pending: keep these resources away until a revive clears it.
                let refuse_seconds = if self.jobs.has_pending() { 1.0 } else { 3600.0 };
                driver.decline(offer.id, Some(refuse_seconds));
            } else {
                driver.launch(offer.id, tasks);
            }
        }
        if !self.jobs.has_pending() && !self.suppressed {
            self.suppressed = true;
            driver.suppress();
        }
    }

    fn status_update(&mut self, driver: &mut SchedulerDriver, status: &TaskStatus) {
        let echo = status.reason == Some(TaskReason::Reconciliation) && !status.state.is_terminal();
        if !echo {
            // (A reconciliation answer that a task still runs is no news.)
            println!("{}", crate::support::status_line(&self.label(status), status));
        }
        let Some(transition) = self.jobs.on_status(status) else { return };
        if transition.outcome == Outcome::Retry {
            println!("job {} will be retried", transition.job + 1);
            if self.suppressed {
                self.suppressed = false;
                driver.revive();
            }
        }
        println!("{}", self.jobs.progress());
        if self.jobs.all_done() {
            self.finish(driver, None);
        }
    }

    fn error(&mut self, _driver: &mut SchedulerDriver, message: &str) {
        println!("error: {message}");
        *self.summary.borrow_mut() = Some(self.jobs.summary(Some(message.to_string())));
    }

    fn install(handlers: &mut Handlers<SchedulerProcess<Self>>) {
        handlers.install::<ReconcileTick>();
    }
}

impl Handle<ReconcileTick> for SchedulerProcess<Batch> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, tick: ReconcileTick) {
        if &from != ctx.upid() {
            return;
        }
        let (batch, driver) = self.split();
        if let Some(delay) = batch.reconciler.tick(tick.round) {
            batch.reconcile(driver);
            driver.delay(delay, ReconcileTick { round: tick.round });
        }
        self.flush(ctx);
    }
}

fn validate(jobs: &[String], options: &BatchOptions) -> anyhow::Result<Resources> {
    if !(options.cpus.is_finite() && options.cpus > 0.0) {
        anyhow::bail!("--cpus must be a positive number, not {}", options.cpus);
    }
    if !(options.mem_mb.is_finite() && options.mem_mb > 0.0) {
        anyhow::bail!("--mem must be a positive number of MB, not {}", options.mem_mb);
    }
    if options.retries > RETRIES_MAX {
        anyhow::bail!("--retries must be at most {RETRIES_MAX}, not {}", options.retries);
    }
    if jobs.is_empty() {
        anyhow::bail!("no commands to run (give --command CMD or --file FILE)");
    }
    if jobs.len() > JOBS_MAX {
        anyhow::bail!("at most {JOBS_MAX} commands per run, not {}", jobs.len());
    }
    if let Some(position) = jobs.iter().position(|command| command.trim().is_empty()) {
        anyhow::bail!("command {} is empty", position + 1);
    }
    Ok(format!("cpus:{};mem:{}", options.cpus, options.mem_mb).parse()?)
}

/// Runs `jobs` as a framework on `node` (inside its actix system) against `master`;
/// returns once every command has a final result (or the master ended the
/// framework). Prints progress and the summary table.
pub async fn run_on(
    node: &Node,
    master: impl Into<MasterAddress>,
    jobs: Vec<String>,
    options: &BatchOptions,
) -> anyhow::Result<Summary> {
    let resources = validate(&jobs, options)?;
    let shared = Rc::new(RefCell::new(None));
    let batch = Batch {
        jobs: Jobs::new(jobs, options.retries),
        reconciler: Reconciler::default(),
        resources,
        suppressed: false,
        summary: shared.clone(),
    };
    let mut framework = FrameworkInfo::new(format!("keel-batch {}", options.name));
    framework.user = std::env::var("USER").unwrap_or_default();
    // Its tasks survive agent restarts (the agent checkpoints them and recovers).
    framework.checkpoint = true;
    let master: MasterAddress = master.into();
    let placeholder = node.upid("master")?;
    let mut config = SchedulerConfig::new(placeholder, framework);
    config.subscribe_timeout = Some(options.subscribe_timeout);
    let wait = Some(options.subscribe_timeout);
    let handle = start_scheduler_with(node, "batch", config, batch, &master, wait).await?;
    let status = wait_for_driver(&handle, &master, options.subscribe_timeout).await?;
    let summary = shared.borrow_mut().take();
    let summary = match (summary, status) {
        (Some(summary), _) => summary,
        (None, DriverStatus::Aborted(reason)) => Summary { jobs: Vec::new(), aborted: Some(reason) },
        (None, _) => anyhow::bail!("the scheduler stopped without a summary"),
    };
    println!();
    print!("{}", summary.table());
    Ok(summary)
}

/// Starts an actix system and a node, runs the batch; what `keel-batch` calls.
pub fn run(options: RunOptions) -> anyhow::Result<Summary> {
    actix_rt::System::new().block_on(async move {
        let config = NodeConfig { bind: (options.bind_ip, 0).into(), ..NodeConfig::default() };
        let node = Node::start(config).await?;
        run_on(&node, options.master, options.jobs, &options.batch).await
    })
}
