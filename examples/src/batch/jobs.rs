//! The batch's bookkeeping, decided purely: which command to launch next, what a
//! terminal status means for its job (done, failed, or retry), and the progress
//! counts. No driver, no I/O; the scheduler in `mod.rs` acts on the answers.
//!
//! A job moves Pending -> Running -> (Succeeded | Failed), or Running -> Pending
//! again while it has attempts left (a retry gets a new task id).

use std::collections::{BTreeMap, VecDeque};

use keel_actors::ids::{AgentId, TaskId};
use keel_actors::task::{TaskState, TaskStatus};

use super::summary::{JobSummary, Summary};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for an offer (first attempt or a retry).
    Pending,
    /// An attempt is launched and not yet terminal.
    Running,
    /// An attempt finished.
    Succeeded,
    /// The last allowed attempt did not finish (or a task was killed).
    Failed,
}

/// One command and its attempts so far.
#[derive(Debug, Clone)]
pub struct Job {
    /// The shell command.
    pub command: String,
    /// Attempts launched so far.
    pub attempts: u32,
    /// Where it is.
    pub state: JobState,
    /// The terminal state of the latest attempt.
    pub last_state: Option<TaskState>,
    /// The exit code of the latest attempt, when its command exited.
    pub exit_code: Option<i32>,
}

/// What a terminal status meant for its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job succeeded.
    Succeeded,
    /// The job is queued for another attempt.
    Retry,
    /// The job failed for good.
    Failed,
}

/// A status that changed a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The job's index in the list.
    pub job: usize,
    /// What happened to it.
    pub outcome: Outcome,
}

/// Counts for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Jobs with a final result.
    pub done: usize,
    /// All jobs.
    pub total: usize,
    /// Jobs that succeeded.
    pub ok: usize,
    /// Jobs that failed for good.
    pub failed: usize,
    /// Jobs on a retry (pending or running again after a failed attempt).
    pub retrying: usize,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}/{}] ok {}, failed {}, retrying {}",
            self.done, self.total, self.ok, self.failed, self.retrying
        )
    }
}

/// Whether a terminal state is worth another attempt (KILLED is not: somebody
/// meant it).
pub fn is_retryable(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Failed
            | TaskState::Lost
            | TaskState::Error
            | TaskState::Dropped
            | TaskState::Gone
            | TaskState::GoneByOperator
    )
}

/// The task id of `attempt` (1-based) of job `index` (0-based): `job-1-try-1` is
/// the first attempt of the first job.
pub fn task_id(index: usize, attempt: u32) -> TaskId {
    TaskId(format!("job-{}-try-{attempt}", index + 1))
}

/// Every job, the launch queue, and the attempts in flight (with the agent each
/// was launched on).
#[derive(Debug)]
pub struct Jobs {
    jobs: Vec<Job>,
    pending: VecDeque<usize>,
    running: BTreeMap<TaskId, (usize, AgentId)>,
    max_attempts: u32,
}

impl Jobs {
    /// All `commands` pending, each allowed `retries` retries after its first attempt.
    pub fn new(commands: Vec<String>, retries: u32) -> Jobs {
        let jobs: Vec<Job> = commands
            .into_iter()
            .map(|command| Job {
                command,
                attempts: 0,
                state: JobState::Pending,
                last_state: None,
                exit_code: None,
            })
            .collect();
        let pending = (0..jobs.len()).collect();
        Jobs { jobs, pending, running: BTreeMap::new(), max_attempts: retries.saturating_add(1) }
    }

    /// Whether a job waits for an offer.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the next pending job and starts its next attempt on `agent_id`: its
    /// task id and command.
    pub fn next_launch(&mut self, agent_id: &AgentId) -> Option<(TaskId, String)> {
        let index = self.pending.pop_front()?;
        let job = &mut self.jobs[index];
        job.attempts += 1;
        job.state = JobState::Running;
        let task_id = task_id(index, job.attempts);
        self.running.insert(task_id.clone(), (index, agent_id.clone()));
        Some((task_id, job.command.clone()))
    }

    /// The job an in-flight task belongs to.
    pub fn job_of(&self, task_id: &TaskId) -> Option<&Job> {
        self.running.get(task_id).map(|&(index, _)| &self.jobs[index])
    }

    /// The attempts launched and not yet terminal, with their agents: what to ask
    /// the master about when their statuses may have been lost.
    pub fn in_flight(&self) -> Vec<(TaskId, AgentId)> {
        self.running.iter().map(|(task_id, (_, agent_id))| (task_id.clone(), agent_id.clone())).collect()
    }

    /// Applies a status: a terminal status of an in-flight attempt decides its job;
    /// anything else (non-terminal, unknown or repeated) changes nothing.
    pub fn on_status(&mut self, status: &TaskStatus) -> Option<Transition> {
        if !status.state.is_terminal() {
            return None;
        }
        let (index, _) = self.running.remove(&status.task_id)?;
        let job = &mut self.jobs[index];
        job.last_state = Some(status.state);
        job.exit_code = status.exit_code;
        let outcome = if status.state == TaskState::Finished {
            job.state = JobState::Succeeded;
            Outcome::Succeeded
        } else if is_retryable(status.state) && job.attempts < self.max_attempts {
            job.state = JobState::Pending;
            self.pending.push_back(index);
            Outcome::Retry
        } else {
            job.state = JobState::Failed;
            Outcome::Failed
        };
        Some(Transition { job: index, outcome })
    }

    /// Whether every job has a final result.
    pub fn all_done(&self) -> bool {
        self.jobs.iter().all(|j| matches!(j.state, JobState::Succeeded | JobState::Failed))
    }

    /// The progress counts.
    pub fn progress(&self) -> Progress {
        let mut progress = Progress { total: self.jobs.len(), ..Progress::default() };
        for job in &self.jobs {
            match job.state {
                JobState::Succeeded => progress.ok += 1,
                JobState::Failed => progress.failed += 1,
                JobState::Pending | JobState::Running if job.last_state.is_some() => progress.retrying += 1,
                JobState::Pending | JobState::Running => {}
            }
        }
        progress.done = progress.ok + progress.failed;
        progress
    }

    /// The jobs.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The summary as things stand (`aborted`: why the framework ended early).
    pub fn summary(&self, aborted: Option<String>) -> Summary {
        let jobs = self
            .jobs
            .iter()
            .map(|job| JobSummary {
                command: job.command.clone(),
                attempts: job.attempts,
                final_state: match job.state {
                    JobState::Succeeded | JobState::Failed => job.last_state,
                    JobState::Pending | JobState::Running => None,
                },
                exit_code: job.exit_code,
            })
            .collect();
        Summary { jobs, aborted }
    }
}

#[cfg(test)]
mod tests {
    use keel_actors::task::StatusSource;

    use super::*;

    fn agent() -> AgentId {
        AgentId("S1".into())
    }

    fn status(task: &TaskId, state: TaskState, exit_code: Option<i32>) -> TaskStatus {
        let mut status = TaskStatus::new(task.clone(), state, StatusSource::Executor);
        status.exit_code = exit_code;
        status
    }

    #[test]
    fn a_failing_job_is_retried_with_new_task_ids_until_its_attempts_run_out() {
        let mut jobs = Jobs::new(vec!["exit 3".into()], 2);
        for attempt in 1..=3 {
            let (task, _) = jobs.next_launch(&agent()).expect("pending");
            assert_eq!(task, task_id(0, attempt));
            assert_eq!(task.as_str(), format!("job-1-try-{attempt}"));
            let transition = jobs.on_status(&status(&task, TaskState::Failed, Some(3))).expect("terminal");
            let expected = if attempt < 3 { Outcome::Retry } else { Outcome::Failed };
            assert_eq!(transition.outcome, expected);
        }
        assert!(jobs.next_launch(&agent()).is_none());
        assert!(jobs.all_done());
        let summary = jobs.summary(None);
        assert_eq!(summary.jobs[0].attempts, 3);
        assert_eq!(summary.jobs[0].final_state, Some(TaskState::Failed));
        assert_eq!(summary.jobs[0].exit_code, Some(3));
        assert!(!summary.succeeded());
    }

    #[test]
    fn killed_is_final_and_non_terminal_or_repeated_statuses_change_nothing() {
        let mut jobs = Jobs::new(vec!["sleep 100".into(), "true".into()], 5);
        let (first, _) = jobs.next_launch(&agent()).expect("pending");
        let (second, _) = jobs.next_launch(&agent()).expect("pending");
        assert_eq!(jobs.on_status(&status(&first, TaskState::Running, None)), None);
        let killed = jobs.on_status(&status(&first, TaskState::Killed, None)).expect("terminal");
        assert_eq!(killed.outcome, Outcome::Failed);
        assert_eq!(jobs.on_status(&status(&first, TaskState::Killed, None)), None);
        assert_eq!(jobs.progress().to_string(), "[1/2] ok 0, failed 1, retrying 0");
        jobs.on_status(&status(&second, TaskState::Finished, Some(0)));
        assert_eq!(jobs.progress().to_string(), "[2/2] ok 1, failed 1, retrying 0");
    }

    #[test]
    fn progress_counts_jobs_on_a_retry() {
        let mut jobs = Jobs::new(vec!["flaky".into()], 1);
        let (task, _) = jobs.next_launch(&agent()).expect("pending");
        jobs.on_status(&status(&task, TaskState::Lost, None));
        assert_eq!(jobs.progress().retrying, 1);
        assert!(jobs.has_pending());
        let (retry, _) = jobs.next_launch(&agent()).expect("retry queued");
        assert_eq!(retry.as_str(), "job-1-try-2");
        assert_eq!(jobs.progress().retrying, 1);
        let done = jobs.on_status(&status(&retry, TaskState::Finished, Some(0))).expect("terminal");
        assert_eq!(done.outcome, Outcome::Succeeded);
        assert!(jobs.summary(None).succeeded());
    }

    #[test]
    fn in_flight_lists_launched_attempts_until_their_terminal_status() {
        let mut jobs = Jobs::new(vec!["a".into(), "b".into()], 0);
        assert!(jobs.in_flight().is_empty());
        let (first, _) = jobs.next_launch(&agent()).expect("pending");
        let (second, _) = jobs.next_launch(&AgentId("S2".into())).expect("pending");
        assert_eq!(jobs.in_flight(), vec![(first.clone(), agent()), (second.clone(), AgentId("S2".into()))]);
        jobs.on_status(&status(&first, TaskState::Running, None));
        assert_eq!(jobs.in_flight().len(), 2, "running is still in flight");
        jobs.on_status(&status(&first, TaskState::Finished, Some(0)));
        assert_eq!(jobs.in_flight(), vec![(second, AgentId("S2".into()))]);
    }
}
