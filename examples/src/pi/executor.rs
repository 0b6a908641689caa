//! The pi executor (`keel-pi-executor`): runs one task, reports it RUNNING, answers
//! each work unit it gets over framework messages with its hit count, and on "done"
//! reports TASK_FINISHED and exits. A kill or a shutdown ends the task KILLED.

use keel_actors::executor::{Executor, ExecutorDriver};
use keel_actors::ids::TaskId;
use keel_actors::task::{TaskInfo, TaskState};

use super::messages::{FromExecutor, ToExecutor, UnitResult};
use super::xorshift::count_hits;

/// The executor's state: its task, and how many units it computed.
#[derive(Debug, Default)]
pub struct PiExecutor {
    task: Option<TaskId>,
    units_computed: u64,
}

impl PiExecutor {
    /// Ends the task (if any) with `state`, then the executor.
    fn end(&mut self, driver: &mut ExecutorDriver, state: TaskState, message: &str) {
        if let Some(task) = self.task.take() {
            driver.update(&task, state, Some(message));
        }
        driver.stop();
    }
}

impl Executor for PiExecutor {
    fn launch_task(&mut self, driver: &mut ExecutorDriver, task: TaskInfo) {
        if self.task.is_some() {
            driver.update(&task.task_id, TaskState::Error, Some("this executor runs one task at a time"));
            return;
        }
        tracing::info!(task_id = %task.task_id, "pi task running");
        driver.update(&task.task_id, TaskState::Running, None);
        self.task = Some(task.task_id);
    }

    fn kill_task(&mut self, driver: &mut ExecutorDriver, task_id: &TaskId) {
        if self.task.as_ref() == Some(task_id) {
            self.end(driver, TaskState::Killed, "killed on request");
        } else {
            driver.update(task_id, TaskState::Killed, Some("killed on request"));
        }
    }

    fn framework_message(&mut self, driver: &mut ExecutorDriver, data: Vec<u8>) {
        match ToExecutor::decode(&data) {
            Ok(ToExecutor::Work(unit)) => {
                let hits = count_hits(unit.seed, unit.samples);
                self.units_computed += 1;
                tracing::debug!(unit = unit.unit, hits, "unit computed");
                let result = UnitResult { unit: unit.unit, samples: unit.samples, hits };
                driver.send_framework_message(FromExecutor::Result(result).encode());
            }
            Ok(ToExecutor::Done) => {
                let message = format!("computed {} units", self.units_computed);
                self.end(driver, TaskState::Finished, &message);
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed framework message"),
        }
    }

    fn shutdown(&mut self, driver: &mut ExecutorDriver) {
        self.end(driver, TaskState::Killed, "the executor was shut down");
    }
}
