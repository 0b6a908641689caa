//! The pi scheduler, an actor: the [`Scheduler`] callbacks and its own [`Tick`]
//! handler (installed with [`Scheduler::install`]) feed the [`Coordinator`] and
//! execute the effects it returns with the driver.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use keel_actors::ids::{AgentId, ExecutorId, FrameworkId};
use keel_actors::resources::Resources;
use keel_actors::scheduler::{Scheduler, SchedulerDriver, SchedulerProcess};
use keel_actors::task::{CommandInfo, ExecutorInfo, Offer, TaskInfo, TaskStatus};
use keel_kernel::{Handle, Handlers, ProcessContext, Upid};

use super::messages::Tick;
use super::state::{Coordinator, Effect, Phase, PiReport};

/// How often the scheduler ticks.
pub const TICK: Duration = Duration::from_millis(500);

/// The scheduler.
pub struct PiScheduler {
    pub(super) coordinator: Coordinator,
    /// Resources of each executor task.
    pub(super) task_resources: Resources,
    /// Resources of each executor itself.
    pub(super) executor_resources: Resources,
    /// The executor program.
    pub(super) executor_command: CommandInfo,
    pub(super) suppressed: bool,
    /// Where the final report goes.
    pub(super) report: Rc<RefCell<Option<PiReport>>>,
}

impl PiScheduler {
    /// The report as things stand (for queries from outside).
    pub fn report(&self) -> PiReport {
        self.coordinator.report()
    }

    fn apply(&mut self, driver: &mut SchedulerDriver, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { executor_id, agent_id, message } => {
                    driver.send_framework_message(executor_id, agent_id, message.encode())
                }
                Effect::Kill { task_id, agent_id } => driver.kill(task_id, Some(agent_id)),
                Effect::Revive => {
                    if self.suppressed {
                        self.suppressed = false;
                        driver.revive();
                    }
                }
                Effect::Say(line) => println!("{line}"),
                Effect::Stop => {
                    let report = self.coordinator.report();
                    match (report.estimate(), report.error()) {
                        (Some(estimate), Some(error)) => println!(
                            "pi is about {estimate:.6} (error {error:.6}, {} samples in {} units)",
                            report.samples(),
                            report.units_done
                        ),
                        _ => println!("no estimate: no unit was answered"),
                    }
                    *self.report.borrow_mut() = Some(report);
                    driver.stop(false);
                }
            }
        }
    }

    fn executor_task(&mut self, offer: &Offer) -> TaskInfo {
        let (task_id, executor_id) = self.coordinator.launch(offer.agent_id.clone());
        TaskInfo {
            name: format!("pi executor {}", task_id.as_str()),
            task_id,
            agent_id: offer.agent_id.clone(),
            resources: self.task_resources.clone(),
            command: None,
            executor: Some(ExecutorInfo {
                executor_id,
                framework_id: None,
                command: self.executor_command.clone(),
                resources: self.executor_resources.clone(),
                name: Some("keel-pi-executor".into()),
            }),
            data: None,
            labels: Default::default(),
        }
    }
}

impl Scheduler for PiScheduler {
    fn subscribed(&mut self, _driver: &mut SchedulerDriver, framework_id: &FrameworkId) {
        println!("framework {framework_id} subscribed; waiting for offers");
    }

    fn offers(&mut self, driver: &mut SchedulerDriver, offers: Vec<Offer>) {
        let needed = self.task_resources.clone() + self.executor_resources.clone();
        for offer in offers {
            let mut remaining = offer.resources.clone();
            let mut tasks = Vec::new();
            while self.coordinator.wants_executor() && remaining.contains(&needed) {
                remaining -= needed.clone();
                let task = self.executor_task(&offer);
                println!("{}: launching an executor on {}", task.task_id, offer.hostname);
                tasks.push(task);
            }
            if tasks.is_empty() {
                let refuse_seconds = if self.coordinator.wants_executor() { 1.0 } else { 3600.0 };
                driver.decline(offer.id, Some(refuse_seconds));
            } else {
                driver.launch(offer.id, tasks);
            }
        }
        if !self.coordinator.wants_executor() && !self.suppressed {
            self.suppressed = true;
            driver.suppress();
        }
    }

    fn status_update(&mut self, driver: &mut SchedulerDriver, status: &TaskStatus) {
        println!("{}", crate::support::status_line(status.task_id.as_str(), status));
        let effects = self.coordinator.on_status(status);
        self.apply(driver, effects);
    }

    fn framework_message(
        &mut self,
        driver: &mut SchedulerDriver,
        executor_id: &ExecutorId,
        _agent_id: &AgentId,
        data: Vec<u8>,
    ) {
        let effects = self.coordinator.on_message(executor_id, &data);
        self.apply(driver, effects);
    }

    fn error(&mut self, _driver: &mut SchedulerDriver, message: &str) {
        println!("error: {message}");
        // The driver stops on its own after this; keep the report.
        let _ = self.coordinator.give_up(format!("the master ended the framework: {message}"), Vec::new());
        *self.report.borrow_mut() = Some(self.coordinator.report());
    }

    fn install(handlers: &mut Handlers<SchedulerProcess<Self>>) {
        handlers.install::<Tick>();
    }
}

impl Handle<Tick> for SchedulerProcess<PiScheduler> {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _tick: Tick) {
        if &from != ctx.upid() {
            return;
        }
        let (scheduler, driver) = self.split();
        let effects = scheduler.coordinator.on_tick();
        scheduler.apply(driver, effects);
        let running = scheduler.coordinator.phase() != Phase::Stopped;
        self.flush(ctx);
        if running {
            ctx.delay(TICK, Tick {});
        }
    }
}
