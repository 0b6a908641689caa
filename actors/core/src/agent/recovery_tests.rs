//! Effect tests of agent recovery and of following a detected master.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, TaskId, UpdateId};
use keel_proto::messages::agent::*;
use keel_proto::messages::common::*;
use keel_proto::messages::executor::*;
use keel_proto::messages::Msg;
use keel_proto::task::*;

use super::container::{ContainerId, ExitStatus, Termination};
use super::*;
use crate::detector::DetectedMaster;

const MASTER: &str = "master@127.0.0.1:5050";
const MASTER_2: &str = "master@127.0.0.1:5052";
const AGENT: &str = "agent@127.0.0.1:5051";
const SCHEDULER: &str = "scheduler@127.0.0.1:6000";
const EXECUTOR: &str = "executor@127.0.0.1:7000";

fn upid(text: &str) -> Upid {
    text.parse().unwrap()
}

fn info(id: Option<&str>) -> AgentInfo {
    AgentInfo {
        hostname: "h".into(),
        id: id.map(|id| AgentId(id.into())),
        resources: "cpus:4;mem:1024".parse().unwrap(),
        attributes: BTreeMap::new(),
    }
}

fn agent() -> Agent {
    let mut config = AgentConfig::new(upid(AGENT), upid(MASTER), PathBuf::from("/work"), info(None));
    config.incarnation = 7;
    Agent::new(config)
}

fn framework() -> FrameworkInfo {
    let mut framework = FrameworkInfo::new("fw");
    framework.id = Some(FrameworkId("F1".into()));
    framework.checkpoint = true;
    framework
}

fn task(id: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId(id.into()),
        agent_id: AgentId("S1".into()),
        resources: "cpus:1;mem:64".parse().unwrap(),
        command: Some(CommandInfo::shell("sleep 100")),
        executor: None,
        data: None,
        labels: BTreeMap::new(),
    }
}

fn pending_update(task_id: &str, state: TaskState, uuid: &str) -> StatusUpdate {
    let mut status = TaskStatus::new(TaskId(task_id.into()), state, StatusSource::Executor);
    status.uuid = Some(UpdateId(uuid.into()));
    StatusUpdate {
        framework_id: FrameworkId("F1".into()),
        executor_id: Some(ExecutorId(task_id.into())),
        agent_id: Some(AgentId("S1".into())),
        status,
        latest_state: Some(state),
        uuid: UpdateId(uuid.into()),
        agent_pid: Some(upid(AGENT)),
    }
}

/// What a previous agent left: command tasks `running` (acknowledged RUNNING) and
/// `unacked` (its RUNNING update not yet acknowledged), and a custom executor `E`
/// with task `custom`.
fn recovered() -> RecoveredAgent {
    let command = |id: &str, container: &str, pending: Vec<StatusUpdate>| RecoveredExecutor {
        executor_id: ExecutorId(id.into()),
        info: None,
        pid: None,
        container: ContainerId(container.into()),
        sandbox: PathBuf::from(format!("/work/sandbox/{id}")),
        tasks: vec![RecoveredTask { info: task(id), state: TaskState::Running, pending }],
    };
    let mut custom_task = task("custom");
    custom_task.command = None;
    let executor_info = ExecutorInfo {
        executor_id: ExecutorId("E".into()),
        framework_id: Some(FrameworkId("F1".into())),
        command: CommandInfo::shell("executor"),
        resources: Default::default(),
        name: None,
    };
    custom_task.executor = Some(executor_info.clone());
    let custom = RecoveredExecutor {
        executor_id: ExecutorId("E".into()),
        info: Some(executor_info),
        pid: Some(upid(EXECUTOR)),
        container: ContainerId("c-custom".into()),
        sandbox: PathBuf::from("/work/sandbox/E"),
        tasks: vec![RecoveredTask { info: custom_task, state: TaskState::Running, pending: Vec::new() }],
    };
    RecoveredAgent {
        info: info(Some("S1")),
        resources: None,
        frameworks: vec![RecoveredFramework {
            info: framework(),
            scheduler: upid(SCHEDULER),
            executors: vec![
                command("running", "c-running", Vec::new()),
                command("unacked", "c-unacked", vec![pending_update("unacked", TaskState::Running, "u1")]),
                custom,
            ],
        }],
    }
}

fn sent<M: TryFrom<Msg>>(effects: &[Effect], to: &str) -> Vec<M> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to: t, message } if t.to_string() == to => M::try_from(message.clone()).ok(),
            _ => None,
        })
        .collect()
}

fn timers(effects: &[Effect]) -> Vec<crate::timers::SetTimer> {
    effects.iter().filter_map(|e| if let Effect::SetTimer(t) = e { Some(*t) } else { None }).collect()
}

fn reregistered(session: u64) -> AgentReregistered {
    AgentReregistered {
        agent_id: AgentId("S1".into()),
        ping_interval_secs: 1.0,
        epoch: 2,
        max_ping_timeouts: 3,
        session,
    }
}

#[test]
fn a_recovered_agent_reregisters_with_its_tasks_then_resends_what_was_unacknowledged() {
    let mut a = agent();
    let effects = a.handle(10.0, Input::Recover(Box::new(recovered())));
    assert_eq!(a.agent_id(), Some(&AgentId("S1".into())));
    assert_eq!(a.connection(), Connection::Reregistering);
    let reregister = sent::<ReregisterAgent>(&effects, MASTER).pop().expect("a reregistration");
    assert_eq!(reregister.agent.id, Some(AgentId("S1".into())));
    assert_eq!(reregister.incarnation, 7);
    let mut tasks: Vec<String> = reregister.tasks.iter().map(|t| t.info.task_id.0.clone()).collect();
    tasks.sort();
    assert_eq!(tasks, ["custom", "running", "unacked"]);
    assert_eq!(reregister.executors.len(), 1, "the custom executor is reported");
    // Nothing is sent before the master takes the agent back.
    assert!(sent::<StatusUpdate>(&effects, MASTER).is_empty());
    // A launch meant for the previous process (or too early) is refused.
    let run = RunTask {
        framework: framework(),
        scheduler: upid(SCHEDULER),
        task: task("late"),
        epoch: 2,
        launch_id: Some("l1".into()),
        session: 1,
        ping_round: 0,
        pings_missed: 0,
    };
    let effects = a.handle(10.1, Input::Message { from: upid(MASTER), message: run.into() });
    assert!(!effects.iter().any(|e| matches!(e, Effect::Launch(_))));
    assert_eq!(a.metrics().stale_launches, 1);
    // Once reregistered, the unacknowledged RUNNING goes out again.
    let effects = a.handle(10.2, Input::Message { from: upid(MASTER), message: reregistered(2).into() });
    let resent = sent::<StatusUpdate>(&effects, MASTER);
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].uuid, UpdateId("u1".into()));
}

#[test]
fn recovered_containers_end_with_their_recorded_exit_status_or_an_unknown_one() {
    let mut a = agent();
    a.handle(10.0, Input::Recover(Box::new(recovered())));
    a.handle(10.1, Input::Message { from: upid(MASTER), message: reregistered(2).into() });
    let exited = Termination {
        status: ExitStatus::Exited(3),
        message: "exited with status 3".into(),
        memory_limit: None,
    };
    let effects = a.handle(
        11.0,
        Input::ContainerExited { container: ContainerId("c-running".into()), termination: exited },
    );
    assert!(effects.iter().any(|e| matches!(e, Effect::Destroy(c) if c.0 == "c-running")));
    let failed = sent::<StatusUpdate>(&effects, MASTER).pop().expect("FAILED");
    assert_eq!((failed.status.state, failed.status.exit_code), (TaskState::Failed, Some(3)));
    // Its checkpoint is written before it is sent.
    let checkpoint = effects.iter().position(|e| matches!(e, Effect::Checkpoint(Checkpoint::Task { .. })));
    let send = effects.iter().position(|e| matches!(e, Effect::Send { .. }));
    assert!(checkpoint < send);
    let unknown = Termination {
        status: ExitStatus::Unknown,
        message: "exit status unknown (recovered container)".into(),
        memory_limit: None,
    };
    let effects = a.handle(
        11.1,
        Input::ContainerExited { container: ContainerId("c-unacked".into()), termination: unknown },
    );
    // Behind the unacknowledged RUNNING: acknowledged first, then the FAILED goes.
    assert!(sent::<StatusUpdate>(&effects, MASTER).is_empty());
    let ack = StatusUpdateAcknowledgement {
        agent_id: AgentId("S1".into()),
        framework_id: FrameworkId("F1".into()),
        task_id: TaskId("unacked".into()),
        uuid: UpdateId("u1".into()),
    };
    let effects = a.handle(11.2, Input::Message { from: upid(MASTER), message: ack.into() });
    let failed = sent::<StatusUpdate>(&effects, MASTER).pop().expect("FAILED");
    assert_eq!(failed.status.state, TaskState::Failed);
    assert_eq!(failed.status.reason, Some(TaskReason::ExecutorTerminated));
    assert_eq!(failed.status.exit_code, None, "an unknown status is not made up");
}

#[test]
fn a_recovered_custom_executor_reregisters_in_time_or_is_destroyed() {
    let mut a = agent();
    let effects = a.handle(10.0, Input::Recover(Box::new(recovered())));
    let deadline = timers(&effects)
        .into_iter()
        .find(|t| t.after == a.config().executor_reregistration_timeout)
        .expect("a reregistration deadline");
    let reregister = ReregisterExecutor {
        framework_id: FrameworkId("F1".into()),
        executor_id: ExecutorId("E".into()),
        tasks: Vec::new(),
        updates: Vec::new(),
    };
    let effects = a.handle(10.5, Input::Message { from: upid(EXECUTOR), message: reregister.into() });
    assert_eq!(sent::<ExecutorReregistered>(&effects, EXECUTOR).len(), 1);
    assert!(effects.iter().any(|e| matches!(e, Effect::CancelTimer(id) if *id == deadline.id)));
    // Its deadline then fires into nothing.
    let effects = a.handle(20.0, Input::Timer(deadline.id));
    assert!(!effects.iter().any(|e| matches!(e, Effect::Destroy(_))));

    // Another recovery, where the executor does not come back.
    let mut a = agent();
    let effects = a.handle(10.0, Input::Recover(Box::new(recovered())));
    let deadline = timers(&effects)
        .into_iter()
        .find(|t| t.after == a.config().executor_reregistration_timeout)
        .expect("a reregistration deadline");
    let effects = a.handle(20.0, Input::Timer(deadline.id));
    assert!(effects.iter().any(|e| matches!(e, Effect::Destroy(c) if c.0 == "c-custom")));
    // A stranger claiming to be it is told to shut down.
    let reregister = ReregisterExecutor {
        framework_id: FrameworkId("F1".into()),
        executor_id: ExecutorId("E".into()),
        tasks: Vec::new(),
        updates: Vec::new(),
    };
    let effects = a.handle(20.1, Input::Message { from: upid("x@127.0.0.1:9"), message: reregister.into() });
    assert_eq!(sent::<ShutdownExecutor>(&effects, "x@127.0.0.1:9").len(), 1);
}

#[test]
fn a_checkpoint_from_another_agent_configuration_is_not_taken() {
    let configured = info(None);
    assert!(recovery::incompatible(&info(Some("S1")), &configured).is_none());
    assert!(recovery::incompatible(&info(None), &configured).unwrap().contains("no id"));
    let mut other = info(Some("S1"));
    other.hostname = "elsewhere".into();
    assert!(recovery::incompatible(&other, &configured).unwrap().contains("hostname"));
    let mut other = info(Some("S1"));
    other.resources = "cpus:8;mem:1024".parse().unwrap();
    assert!(recovery::incompatible(&other, &configured).unwrap().contains("resources"));
    // Dynamic reservations made through the master do not count as a change.
    let mut reserved = info(Some("S1"));
    reserved.resources = "cpus(ads,dynamic):1;cpus:3;mem:1024".parse().unwrap();
    assert!(recovery::incompatible(&reserved, &configured).is_none());
}

#[test]
fn the_agent_follows_a_newly_detected_master_after_a_short_random_delay() {
    let mut a = agent();
    a.handle(0.0, Input::Start);
    let registered = AgentRegistered {
        agent_id: AgentId("S1".into()),
        ping_interval_secs: 1.0,
        epoch: 5,
        max_ping_timeouts: 3,
        session: 1,
    };
    a.handle(0.1, Input::Message { from: upid(MASTER), message: registered.into() });
    assert_eq!(a.connection(), Connection::Registered);
    // A stale detection (older epoch) is ignored.
    let stale = DetectedMaster { upid: upid(MASTER_2), epoch: 4 };
    assert!(a.handle(1.0, Input::MasterDetected(Some(stale))).is_empty());
    // The same master again is nothing new.
    let same = DetectedMaster { upid: upid(MASTER), epoch: 5 };
    assert!(a.handle(1.0, Input::MasterDetected(Some(same))).is_empty());
    let next = DetectedMaster { upid: upid(MASTER_2), epoch: 9 };
    let effects = a.handle(1.0, Input::MasterDetected(Some(next)));
    let delay = timers(&effects).pop().expect("a follow timer");
    assert!(delay.after <= crate::detector::MAX_FOLLOW_DELAY);
    assert_eq!(a.connection(), Connection::Registered, "nothing moves before the delay");
    let effects = a.handle(1.2, Input::Timer(delay.id));
    assert!(effects.iter().any(|e| matches!(e, Effect::Unlink(u) if u.to_string() == MASTER)));
    let reregister = sent::<ReregisterAgent>(&effects, MASTER_2).pop().expect("reregisters with the new one");
    assert_eq!(reregister.agent.id, Some(AgentId("S1".into())));
    assert_eq!(a.connection(), Connection::Reregistering);
    // The old master is no longer obeyed.
    let effects = a.handle(
        1.3,
        Input::Message { from: upid(MASTER), message: ShutdownAgent { message: "old".into() }.into() },
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::Exit { .. })));
    // An answer from a master older than the detected epoch is not taken.
    let old = AgentReregistered { epoch: 5, ..reregistered(3) };
    a.handle(1.4, Input::Message { from: upid(MASTER_2), message: old.into() });
    assert_eq!(a.connection(), Connection::Reregistering);
    let new = AgentReregistered { epoch: 9, ..reregistered(3) };
    a.handle(1.5, Input::Message { from: upid(MASTER_2), message: new.into() });
    assert_eq!(a.connection(), Connection::Registered);
    assert_eq!(a.epoch(), 9);
}
