//! The coordinator's decisions, step by step, with no driver and no clock.

use keel_actors::task::StatusSource;

use super::*;
use crate::pi::messages::UnitResult;

fn settings(units: u64, executors: usize, replacements_max: usize) -> Settings {
    Settings { units, samples: 100, seed: 7, executors, replacements_max }
}

fn status(task: &TaskId, state: TaskState) -> TaskStatus {
    TaskStatus::new(task.clone(), state, StatusSource::Executor)
}

fn answer(unit: u64) -> Vec<u8> {
    FromExecutor::Result(UnitResult { unit, samples: 100, hits: 80 }).encode()
}

/// The units sent as work, in order, with their executors.
fn work(effects: &[Effect]) -> Vec<(String, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { executor_id, message: ToExecutor::Work(unit), .. } => {
                Some((executor_id.to_string(), unit.unit))
            }
            _ => None,
        })
        .collect()
}

fn dones(effects: &[Effect]) -> usize {
    effects.iter().filter(|e| matches!(e, Effect::Send { message: ToExecutor::Done, .. })).count()
}

/// Launches `n` executors on agent `a` and reports them RUNNING; returns the
/// task ids, executor ids and the work sent.
fn start(c: &mut Coordinator, n: usize) -> (Vec<TaskId>, Vec<ExecutorId>, Vec<(String, u64)>) {
    let mut tasks = Vec::new();
    let mut executors = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..n {
        assert!(c.wants_executor());
        let (task, executor) = c.launch(AgentId("a".into()));
        tasks.push(task);
        executors.push(executor);
    }
    assert!(!c.wants_executor());
    for task in &tasks {
        sent.extend(work(&c.on_status(&status(task, TaskState::Running))));
    }
    (tasks, executors, sent)
}

#[test]
fn units_flow_to_running_executors_then_done_then_stop() {
    let mut c = Coordinator::new(settings(5, 2, 0));
    let (tasks, executors, sent) = start(&mut c, 2);
    assert_eq!(tasks[0].as_str(), "pi-1");
    assert_eq!(executors[1].as_str(), "pi-executor-2");
    assert_eq!(
        sent,
        vec![
            ("pi-executor-1".into(), 0),
            ("pi-executor-1".into(), 1),
            ("pi-executor-2".into(), 2),
            ("pi-executor-2".into(), 3)
        ]
    );
    let next = c.on_message(&executors[0], &answer(0));
    assert_eq!(work(&next), vec![("pi-executor-1".into(), 4)]);
    for unit in [1, 2, 3] {
        let effects = c.on_message(&executors[0], &answer(unit));
        assert!(work(&effects).is_empty());
    }
    let last = c.on_message(&executors[1], &answer(4));
    assert_eq!(dones(&last), 2);
    assert!(matches!(c.phase(), Phase::Finishing { .. }));
    assert!(c.on_status(&status(&tasks[0], TaskState::Finished)).is_empty());
    assert_eq!(c.on_status(&status(&tasks[1], TaskState::Finished)), vec![Effect::Stop]);
    let report = c.report();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(report.estimate(), Some(3.2));
    assert!(report.answers.values().all(|n| *n == 1));
}

#[test]
fn an_unanswered_unit_is_sent_again_and_a_second_answer_does_not_count_twice() {
    let mut c = Coordinator::new(settings(2, 1, 0));
    let (_, executors, sent) = start(&mut c, 1);
    assert_eq!(sent.len(), 2);
    for _ in 1..UNIT_TIMEOUT_TICKS {
        assert!(work(&c.on_tick()).is_empty());
    }
    let resent = c.on_tick();
    assert_eq!(work(&resent), vec![("pi-executor-1".into(), 0), ("pi-executor-1".into(), 1)]);
    c.on_message(&executors[0], &answer(0));
    c.on_message(&executors[0], &answer(0));
    let report = c.report();
    assert_eq!(report.units_done, 1);
    assert_eq!(report.hits, 80);
    assert_eq!(report.answers.get(&0), Some(&2));
}

#[test]
fn a_failed_executor_hands_its_units_on_and_is_replaced_within_the_bound() {
    let mut c = Coordinator::new(settings(6, 2, 1));
    let (tasks, _, _) = start(&mut c, 2);
    let effects = c.on_status(&status(&tasks[0], TaskState::Failed));
    assert!(effects.contains(&Effect::Revive));
    assert!(c.wants_executor());
    let (replacement, _) = c.launch(AgentId("b".into()));
    assert_eq!(replacement.as_str(), "pi-3");
    let handed_on = work(&c.on_status(&status(&replacement, TaskState::Running)));
    assert_eq!(handed_on, vec![("pi-executor-3".into(), 0), ("pi-executor-3".into(), 1)]);
    // No replacements left: losing both live executors ends the run.
    assert!(!c.on_status(&status(&tasks[1], TaskState::Lost)).contains(&Effect::Stop));
    let last = c.on_status(&status(&replacement, TaskState::Failed));
    assert_eq!(last.last(), Some(&Effect::Stop));
    let report = c.report();
    assert!(report.failure.is_some());
    assert!(!report.succeeded());
}

#[test]
fn executors_that_do_not_finish_are_told_again_then_killed_then_given_up_on() {
    let mut c = Coordinator::new(settings(1, 1, 0));
    let (tasks, executors, _) = start(&mut c, 1);
    assert_eq!(dones(&c.on_message(&executors[0], &answer(0))), 1);
    let mut resends = 0;
    for _ in 1..FINISH_TIMEOUT_TICKS {
        resends += dones(&c.on_tick());
    }
    assert_eq!(resends as u64, (FINISH_TIMEOUT_TICKS - 1) / DONE_RESEND_TICKS);
    let kill = c.on_tick();
    assert!(kill.contains(&Effect::Kill { task_id: tasks[0].clone(), agent_id: AgentId("a".into()) }));
    for _ in 1..KILL_TIMEOUT_TICKS {
        assert!(!c.on_tick().contains(&Effect::Stop));
    }
    assert!(c.on_tick().contains(&Effect::Stop));
    assert_eq!(c.phase(), Phase::Stopped);
    assert!(c.on_tick().is_empty());
}

#[test]
fn malformed_and_invalid_answers_are_ignored() {
    let mut c = Coordinator::new(settings(1, 1, 0));
    let (_, executors, _) = start(&mut c, 1);
    let bad =
        [b"not json".to_vec(), FromExecutor::Result(UnitResult { unit: 9, samples: 100, hits: 1 }).encode()];
    for data in bad {
        let effects = c.on_message(&executors[0], &data);
        assert!(matches!(effects.as_slice(), [Effect::Say(_)]));
    }
    assert_eq!(c.report().units_done, 0);
}
