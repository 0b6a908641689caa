//! The frameworks' scheduler processes: a driver core each, around the simulated
//! framework's own decisions; what they are told goes into the ledger.

use std::time::Duration;

use keel_core::scheduler::{self, DriverConfig, SchedulerDriverCore};

use super::{micros, names, Event, Node, Pid, World, SECOND};
use crate::frameworks::Told;

impl World {
    pub(super) fn start_scheduler(&mut self, j: usize) {
        let seed = self.rng.u64(..);
        let master = self.known_master();
        let node = &mut self.schedulers[j];
        if !node.framework.busy() {
            return;
        }
        node.up = true;
        node.incarnation += 1;
        let mut config = DriverConfig::new(master, node.framework.info());
        config.seed = seed;
        config.subscribe_backoff = Duration::from_millis(200);
        config.subscribe_backoff_max = Duration::from_secs(5);
        node.driver = Some(SchedulerDriverCore::new(config));
        self.log(|| format!("scheduler {j} starts"));
        self.driver_input(j, scheduler::Input::Start);
        if let Some(leader) = self.election.last_leader.clone() {
            self.driver_input(j, scheduler::Input::MasterDetected(Some(leader)));
        }
    }
    pub(super) fn driver_input(&mut self, j: usize, input: scheduler::Input) {
        let now = self.secs();
        let Some(driver) = self.schedulers[j].driver.as_mut() else { return };
        let effects = driver.handle(now, input);
        let incarnation = self.schedulers[j].incarnation;
        let me = self.schedulers[j].upid.clone();
        for effect in effects {
            match effect {
                scheduler::Effect::Send { to, message } => self.send(me.clone(), to, message),
                scheduler::Effect::Link(to) => self.link(me.clone(), to),
                scheduler::Effect::Unlink(to) => self.network.unlink(&me, &to),
                scheduler::Effect::SetTimer(t) => {
                    self.at(micros(t.after), Event::Timer { pid: Pid::Scheduler(j), id: t.id, incarnation })
                }
                scheduler::Effect::Event(event) => {
                    let now = self.now;
                    let (calls, told) = self.schedulers[j].framework.on_event(event, now);
                    self.told(j, told);
                    for call in calls {
                        self.driver_input(j, scheduler::Input::Call(call));
                    }
                }
                scheduler::Effect::Finished(status) => {
                    self.log(|| format!("scheduler {j} finished: {status:?}"));
                    let framework = &mut self.schedulers[j].framework;
                    if !framework.done {
                        if let scheduler::DriverStatus::Aborted(reason) = &status {
                            if reason.contains("removed") {
                                framework.removed = true;
                            }
                        }
                    }
                    // The scheduler process exits: its connections close.
                    self.crash(Node::Scheduler(j));
                    if self.schedulers[j].framework.busy() {
                        // Not done and not removed: a new instance takes over.
                        let delay = self.rng.u64(SECOND..5 * SECOND);
                        self.at(delay, Event::Restart(Node::Scheduler(j)));
                    }
                    return;
                }
            }
        }
    }

    fn told(&mut self, j: usize, told: Told) {
        let Some(framework_id) = self.schedulers[j].framework.framework_id.clone() else { return };
        match told {
            Told::Nothing => {}
            Told::Final(task_id, state) => {
                let record = self.ledger.tasks.entry((framework_id, task_id)).or_default();
                if record.told_final.is_none() {
                    record.told_final = Some((state, self.now));
                }
            }
            Told::Contradiction { task_id, first, now, reconciliation } => {
                let invariant = if reconciliation {
                    names::RECONCILIATION_AGREES
                } else {
                    names::FINAL_STATE_CONTRADICTED
                };
                self.violation(
                    invariant,
                    format!(
                        "framework {framework_id} was told {} for task {task_id}, then {}{}",
                        first.name(),
                        now.name(),
                        if reconciliation { " (a reconciliation answer)" } else { "" }
                    ),
                );
            }
        }
    }
}
