//! `keel execute`: a small framework that runs a shell command as one or more tasks,
//! prints each state it is told of (with a progress bar for several instances), and
//! exits with the task's exit status.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use keel_kernel::{Node, NodeConfig, Upid};

use crate::ids::TaskId;
use crate::resources::Resources;
use crate::scheduler::{start_scheduler_with, DriverStatus, Scheduler, SchedulerConfig, SchedulerDriver};
use crate::task::{CommandInfo, FrameworkInfo, Offer, TaskInfo, TaskState, TaskStatus};

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecuteOptions {
    /// The master (fixed, or the leader of an etcd election).
    pub master: crate::detector::MasterAddress,
    /// Task name (instances are `NAME-0`, `NAME-1`, ...).
    pub name: String,
    /// The shell command.
    pub command: String,
    /// Cpus per task.
    pub cpus: f64,
    /// Memory per task, MB.
    pub mem_mb: f64,
    /// How many tasks.
    pub instances: usize,
    /// The address this process's node binds (the agents reach the framework through the master).
    pub bind_ip: std::net::IpAddr,
}

struct Execute {
    exit_code: std::rc::Rc<std::cell::Cell<Option<i32>>>,
    resources: Resources,
    command: String,
    pending: Vec<String>,
    results: BTreeMap<TaskId, (TaskState, Option<i32>)>,
    total: usize,
    progress: Option<ProgressBar>,
}

impl Execute {
    fn say(&self, line: String) {
        match &self.progress {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    fn exit_code(&self) -> i32 {
        if self.total == 1 {
            return match self.results.values().next() {
                Some((TaskState::Finished, _)) => 0,
                Some((_, Some(code))) if *code != 0 => *code,
                _ => 1,
            };
        }
        if self.results.values().all(|(state, _)| *state == TaskState::Finished) {
            0
        } else {
            1
        }
    }
}

impl Scheduler for Execute {
    fn subscribed(&mut self, _driver: &mut SchedulerDriver, framework_id: &crate::ids::FrameworkId) {
        self.say(format!("framework {framework_id} subscribed; waiting for offers"));
    }

    fn reregistered(&mut self, driver: &mut SchedulerDriver, framework_id: &crate::ids::FrameworkId) {
        self.say(format!("framework {framework_id} subscribed again (the master changed)"));
        // Whatever ended while the master was away is learned again.
        driver.reconcile(Vec::new());
    }

    fn offers(&mut self, driver: &mut SchedulerDriver, offers: Vec<Offer>) {
        for offer in offers {
            let mut remaining = offer.resources.clone();
            let mut tasks = Vec::new();
            while !self.pending.is_empty() && remaining.contains(&self.resources) {
                let task_id = self.pending.remove(0);
                remaining -= self.resources.clone();
                // Not a state: no update has said anything about the task yet.
                self.say(format!("task {task_id}: launching on {}", offer.hostname));
                tasks.push(TaskInfo::command(
                    &task_id,
                    &offer,
                    self.resources.clone(),
                    CommandInfo::shell(self.command.clone()),
                ));
            }
            if tasks.is_empty() {
                driver.decline(offer.id, Some(if self.pending.is_empty() { 3600.0 } else { 1.0 }));
            } else {
                driver.launch(offer.id, tasks);
            }
        }
        if self.pending.is_empty() {
            driver.suppress();
        }
    }

    fn status_update(&mut self, driver: &mut SchedulerDriver, status: &TaskStatus) {
        let mut line = format!("task {}: {}", status.task_id, status.state);
        if let Some(message) = &status.message {
            match message.strip_prefix("sandbox: ") {
                Some(sandbox) => line.push_str(&format!(" (stdout: {sandbox}/stdout)")),
                None => line.push_str(&format!(" ({message})")),
            }
        }
        self.say(line);
        if status.state.is_terminal() && !self.results.contains_key(&status.task_id) {
            self.results.insert(status.task_id.clone(), (status.state, status.exit_code));
            if let Some(bar) = &self.progress {
                bar.inc(1);
                let failed = self.results.values().filter(|(s, _)| *s != TaskState::Finished).count();
                bar.set_message(format!("{failed} failed"));
            }
            if self.results.len() == self.total {
                if let Some(bar) = &self.progress {
                    bar.finish();
                }
                self.exit_code.set(Some(self.exit_code()));
                driver.stop(false);
            }
        }
    }

    fn error(&mut self, _driver: &mut SchedulerDriver, message: &str) {
        self.say(format!("error: {message}"));
    }
}

/// Runs the tasks; returns the process exit code.
pub fn run(options: ExecuteOptions) -> anyhow::Result<i32> {
    if !(options.cpus.is_finite() && options.cpus > 0.0) {
        anyhow::bail!("--cpus must be a positive number, not {}", options.cpus);
    }
    if !(options.mem_mb.is_finite() && options.mem_mb > 0.0) {
        anyhow::bail!("--mem must be a positive number of MB, not {}", options.mem_mb);
    }
    if options.instances == 0 {
        anyhow::bail!("--instances must be at least 1");
    }
    if options.command.trim().is_empty() {
        anyhow::bail!("--command must not be empty");
    }
    let resources: Resources = format!("cpus:{};mem:{}", options.cpus, options.mem_mb).parse()?;
    let pending: Vec<String> = if options.instances == 1 {
        vec![options.name.clone()]
    } else {
        (0..options.instances).map(|i| format!("{}-{i}", options.name)).collect()
    };
    let progress = (options.instances > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(options.instances as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} done, {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let exit_code = std::rc::Rc::new(std::cell::Cell::new(None));
    let execute = Execute {
        exit_code: exit_code.clone(),
        resources,
        command: options.command.clone(),
        pending,
        results: BTreeMap::new(),
        total: options.instances,
        progress,
    };
    let mut framework = FrameworkInfo::new(format!("keel-execute {}", options.name));
    framework.user = std::env::var("USER").unwrap_or_default();
    // Its tasks survive agent restarts (the agent checkpoints them and recovers).
    framework.checkpoint = true;
    actix_rt::System::new().block_on(async move {
        let node =
            Node::start(NodeConfig { bind: (options.bind_ip, 0).into(), ..NodeConfig::default() }).await?;
        let placeholder: Upid = format!("master@{}", node.addr()).parse()?;
        let config = SchedulerConfig::new(placeholder, framework);
        let wait = Some(std::time::Duration::from_secs(30));
        let handle = start_scheduler_with(&node, "execute", config, execute, &options.master, wait).await?;
        let status = handle.wait().await;
        Ok(match (status, exit_code.get()) {
            (DriverStatus::Aborted(_), _) => 1,
            (_, Some(code)) => code,
            (_, None) => 1,
        })
    })
}
