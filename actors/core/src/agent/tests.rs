//! Effect tests of the agent core: inputs in, effects checked; no containers, no
//! sockets, no sleeps. Each handler has at least one test here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, TaskId, UpdateId};
use keel_proto::messages::agent::*;
use keel_proto::messages::common::*;
use keel_proto::messages::executor::*;
use keel_proto::messages::Msg;
use keel_proto::task::*;

use super::container::{ExitStatus, Termination};
use super::*;

const MASTER: &str = "master@127.0.0.1:5050";
const AGENT: &str = "agent@127.0.0.1:5051";
const SCHEDULER: &str = "scheduler@127.0.0.1:6000";
const EXECUTOR: &str = "executor@127.0.0.1:7000";

fn upid(text: &str) -> Upid {
    text.parse().unwrap()
}

struct Fixture {
    agent: Agent,
    now: f64,
}

impl Fixture {
    fn new() -> Fixture {
        let info = AgentInfo {
            hostname: "h".into(),
            id: None,
            resources: "cpus:4;mem:1024".parse().unwrap(),
            attributes: BTreeMap::new(),
        };
        let mut config = AgentConfig::new(upid(AGENT), upid(MASTER), PathBuf::from("/work"), info);
        config.incarnation = 42;
        let mut fixture = Fixture { agent: Agent::new(config), now: 100.0 };
        fixture.feed(Input::Start);
        fixture
    }

    /// An agent registered as S1 with the master at `epoch`.
    fn registered(epoch: u64) -> Fixture {
        let mut f = Fixture::new();
        let effects = f.master(AgentRegistered {
            agent_id: AgentId("S1".into()),
            ping_interval_secs: 1.0,
            epoch,
            max_ping_timeouts: 3,
            session: 1,
        });
        assert!(effects
            .iter()
            .any(|e| matches!(e, Effect::Checkpoint(Checkpoint::Agent(info)) if info.id.is_some())));
        f
    }

    fn feed(&mut self, input: Input) -> Vec<Effect> {
        self.agent.handle(self.now, input)
    }

    fn master(&mut self, message: impl Into<Msg>) -> Vec<Effect> {
        self.feed(Input::Message { from: upid(MASTER), message: message.into() })
    }

    fn from(&mut self, from: &str, message: impl Into<Msg>) -> Vec<Effect> {
        self.feed(Input::Message { from: upid(from), message: message.into() })
    }

    fn run(&mut self, task: TaskInfo, checkpoint: bool, epoch: u64) -> Vec<Effect> {
        let mut framework = FrameworkInfo::new("fw");
        framework.id = Some(FrameworkId("F1".into()));
        framework.checkpoint = checkpoint;
        self.master(RunTask {
            framework,
            scheduler: upid(SCHEDULER),
            task,
            epoch,
            launch_id: None,
            session: 0,
            ping_round: 0,
            pings_missed: 0,
        })
    }
}

fn command_task(id: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId(id.into()),
        agent_id: AgentId("S1".into()),
        resources: "cpus:1;mem:64".parse().unwrap(),
        command: Some(CommandInfo::shell("true")),
        executor: None,
        data: None,
        labels: BTreeMap::new(),
    }
}

fn custom_task(id: &str) -> TaskInfo {
    let mut task = command_task(id);
    task.command = None;
    task.executor = Some(ExecutorInfo {
        executor_id: ExecutorId("E".into()),
        framework_id: None,
        command: CommandInfo::shell("executor"),
        resources: Default::default(),
        name: None,
    });
    task
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

fn launched(effects: &[Effect]) -> Vec<ContainerSpec> {
    effects
        .iter()
        .filter_map(|e| if let Effect::Launch(spec) = e { Some(spec.clone()) } else { None })
        .collect()
}

fn timers(effects: &[Effect]) -> Vec<crate::timers::SetTimer> {
    effects.iter().filter_map(|e| if let Effect::SetTimer(t) = e { Some(*t) } else { None }).collect()
}

fn ack(task: &str, uuid: &UpdateId) -> StatusUpdateAcknowledgement {
    StatusUpdateAcknowledgement {
        agent_id: AgentId("S1".into()),
        framework_id: FrameworkId("F1".into()),
        task_id: TaskId(task.into()),
        uuid: uuid.clone(),
    }
}

#[test]
fn registration_is_retried_with_backoff_and_carries_the_incarnation() {
    let mut f = Fixture::new();
    // The first attempt was sent by Start; its retry timer fires.
    let effects = f.feed(Input::Timer(crate::timers::TimerId(1)));
    let register = sent::<RegisterAgent>(&effects, MASTER).pop().expect("a retry");
    assert_eq!(register.incarnation, 42);
    assert!(register.agent.id.is_none());
    let retry = timers(&effects).pop().unwrap();
    assert!(retry.after >= Duration::from_millis(400), "backed off: {:?}", retry.after);
    let effects = f.master(AgentRegistered {
        agent_id: AgentId("S1".into()),
        ping_interval_secs: 1.0,
        epoch: 3,
        max_ping_timeouts: 3,
        session: 1,
    });
    assert_eq!(f.agent.connection(), Connection::Registered);
    assert_eq!(f.agent.epoch(), 3);
    assert!(effects.iter().any(|e| matches!(e, Effect::Checkpoint(Checkpoint::Agent(_)))));
    // The retry timer fires into nothing once registered.
    assert!(sent::<RegisterAgent>(&f.feed(Input::Timer(retry.id)), MASTER).is_empty());
    // Messages claiming to be the master from elsewhere are refused.
    f.from("evil@127.0.0.1:1", ShutdownAgent { message: "no".into() });
    assert_eq!(f.agent.metrics().invalid_senders, 1);
    assert_eq!(f.agent.connection(), Connection::Registered);
}

#[test]
fn a_command_task_launches_its_container_and_reports_running_then_its_exit() {
    let mut f = Fixture::registered(1);
    let effects = f.run(command_task("t1"), false, 1);
    let spec = launched(&effects).pop().expect("a container");
    assert_eq!(spec.env["KEEL_TASK_ID"], "t1");
    assert!(spec.sandbox.starts_with("/work/frameworks/F1/executors/t1/runs"));
    let running = sent::<StatusUpdate>(&effects, MASTER).pop().expect("RUNNING");
    assert_eq!((running.status.state, running.latest_state), (TaskState::Running, Some(TaskState::Running)));
    assert_eq!(running.status.timestamp, 100.0);
    // A duplicate RunTask changes nothing.
    assert!(launched(&f.run(command_task("t1"), false, 1)).is_empty());
    let termination = Termination {
        status: ExitStatus::Exited(3),
        message: "exited with status 3".into(),
        memory_limit: None,
    };
    let effects = f.feed(Input::ContainerExited { container: spec.id.clone(), termination });
    assert!(effects.iter().any(|e| matches!(e, Effect::Destroy(id) if id == &spec.id)));
    // The FAILED update waits behind the unacknowledged RUNNING one.
    assert!(sent::<StatusUpdate>(&effects, MASTER).is_empty());
    let effects = f.master(ack("t1", &running.uuid));
    let failed = sent::<StatusUpdate>(&effects, MASTER).pop().expect("FAILED");
    assert_eq!((failed.status.state, failed.status.exit_code), (TaskState::Failed, Some(3)));
    let effects = f.master(ack("t1", &failed.uuid));
    assert!(effects.is_empty() || sent::<StatusUpdate>(&effects, MASTER).is_empty());
    assert!(f.agent.frameworks().is_empty(), "forgotten once acknowledged");
}

#[test]
fn updates_carry_the_latest_state_while_an_earlier_one_waits() {
    // Bug 6 at the agent: the retry of RUNNING says the task is FINISHED.
    let mut f = Fixture::registered(1);
    let effects = f.run(command_task("t1"), false, 1);
    let spec = launched(&effects).pop().unwrap();
    let retry = timers(&effects).into_iter().last().expect("the update's retry");
    let termination =
        Termination { status: ExitStatus::Exited(0), message: "exited".into(), memory_limit: None };
    f.feed(Input::ContainerExited { container: spec.id, termination });
    let effects = f.feed(Input::Timer(retry.id));
    let resent = sent::<StatusUpdate>(&effects, MASTER).pop().expect("resent");
    assert_eq!((resent.status.state, resent.latest_state), (TaskState::Running, Some(TaskState::Finished)));
    let next = timers(&effects).pop().unwrap();
    assert_eq!(next.after, Duration::from_secs(4), "the retry delay doubles");
    assert_eq!(f.agent.metrics().status_update_retries, 1);
    // A reregistration reports the task's latest state with the update in flight
    // (what a new master may answer reconciliations with), not the latest update.
    let effects = f.feed(Input::Exited(upid(MASTER)));
    let reregister = sent::<ReregisterAgent>(&effects, MASTER).pop().expect("reregisters");
    let task = &reregister.tasks[0];
    assert_eq!(task.state, TaskState::Finished);
    assert_eq!(task.status.as_ref().map(|s| s.state), Some(TaskState::Running));
}

#[test]
fn launches_from_an_older_master_or_given_up_on_are_refused() {
    // Bug 7 at the agent: a RunTask delayed past a master failover, or past the
    // master's launch check, never starts.
    let mut f = Fixture::registered(5);
    let effects = f.run(command_task("old"), false, 4);
    assert!(launched(&effects).is_empty());
    assert_eq!(f.agent.metrics().stale_launches, 1);
    let check = CheckLaunches {
        tasks: vec![LaunchRef { framework_id: FrameworkId("F1".into()), task_id: TaskId("late".into()) }],
    };
    let effects = f.master(check);
    let answer = sent::<LaunchesChecked>(&effects, MASTER).pop().unwrap();
    assert_eq!((answer.known.len(), answer.dropped.len()), (0, 1));
    assert!(launched(&f.run(command_task("late"), false, 5)).is_empty(), "refused once given up");
    // A task it has is known.
    f.run(command_task("here"), false, 5);
    let check = CheckLaunches {
        tasks: vec![LaunchRef { framework_id: FrameworkId("F1".into()), task_id: TaskId("here".into()) }],
    };
    let answer = sent::<LaunchesChecked>(&f.master(check), MASTER).pop().unwrap();
    assert_eq!(answer.known.len(), 1);
}

#[test]
fn a_kill_sends_sigterm_then_destroys_after_the_grace_period() {
    let mut f = Fixture::registered(1);
    let spec = launched(&f.run(command_task("t1"), false, 1)).pop().unwrap();
    let effects = f.master(KillTask {
        framework_id: FrameworkId("F1".into()),
        task_id: TaskId("t1".into()),
        agent_id: None,
    });
    assert!(effects.iter().any(|e| matches!(e, Effect::Signal { signal: 15, .. })));
    let escalation = timers(&effects).pop().unwrap();
    assert_eq!(escalation.after, Duration::from_secs(3));
    let effects = f.feed(Input::Timer(escalation.id));
    assert!(matches!(effects.as_slice(), [Effect::Destroy(id)] if id == &spec.id));
    let termination =
        Termination { status: ExitStatus::Signaled(9), message: "killed".into(), memory_limit: None };
    f.feed(Input::ContainerExited { container: spec.id, termination });
    let task = &f.agent.frameworks()[&FrameworkId("F1".into())].executors[&ExecutorId("t1".into())].tasks
        [&TaskId("t1".into())];
    assert_eq!(task.state, TaskState::Killed);
    // A kill for a task it does not have is counted.
    f.master(KillTask {
        framework_id: FrameworkId("F1".into()),
        task_id: TaskId("none".into()),
        agent_id: None,
    });
    assert_eq!(f.agent.metrics().unknown_targets, 1);
}

#[test]
fn a_container_that_cannot_launch_fails_its_task() {
    let mut f = Fixture::registered(1);
    let effects = f.run(command_task("t1"), false, 1);
    let spec = launched(&effects).pop().unwrap();
    let running = sent::<StatusUpdate>(&effects, MASTER).pop().unwrap();
    f.feed(Input::LaunchFailed { container: spec.id, message: "no such program".into() });
    let effects = f.master(ack("t1", &running.uuid));
    let failed = sent::<StatusUpdate>(&effects, MASTER).pop().unwrap();
    assert_eq!(
        (failed.status.state, failed.status.reason),
        (TaskState::Failed, Some(TaskReason::ContainerLaunchFailed))
    );
    assert_eq!(f.agent.metrics().container_launch_errors, 1);
}

#[test]
fn pings_are_answered_and_silence_or_disconnection_makes_it_reregister() {
    let mut f = Fixture::registered(1);
    f.run(command_task("t1"), false, 1);
    let effects = f.master(Ping { connected: true, round: 1, epoch: 1 });
    assert_eq!(sent::<Pong>(&effects, MASTER).len(), 1);
    assert_eq!(f.agent.connection(), Connection::Registered);
    // The master says it does not have this agent as connected.
    let effects = f.master(Ping { connected: false, round: 2, epoch: 1 });
    assert_eq!(f.agent.connection(), Connection::Reregistering);
    let reregister = sent::<ReregisterAgent>(&effects, MASTER).pop().expect("reregisters");
    assert_eq!(reregister.agent.id, Some(AgentId("S1".into())));
    assert_eq!(reregister.tasks.len(), 1);
    let effects = f.master(AgentReregistered {
        agent_id: AgentId("S1".into()),
        ping_interval_secs: 1.0,
        epoch: 2,
        max_ping_timeouts: 3,
        session: 2,
    });
    assert_eq!(f.agent.connection(), Connection::Registered);
    // The unacknowledged RUNNING is resent after reregistration.
    assert_eq!(sent::<StatusUpdate>(&effects, MASTER).len(), 1);
    let check = timers(&effects).into_iter().next().expect("a ping check");
    f.now += 10.0;
    let effects = f.feed(Input::Timer(check.id));
    assert_eq!(f.agent.connection(), Connection::Reregistering, "no ping for max_ping_timeouts intervals");
    assert_eq!(sent::<ReregisterAgent>(&effects, MASTER).len(), 1);
    // So does the master's link exiting.
    f.master(AgentReregistered {
        agent_id: AgentId("S1".into()),
        ping_interval_secs: 1.0,
        epoch: 2,
        max_ping_timeouts: 3,
        session: 2,
    });
    let effects = f.feed(Input::Exited(upid(MASTER)));
    assert_eq!(sent::<ReregisterAgent>(&effects, MASTER).len(), 1);
}

#[test]
fn a_custom_executor_gets_queued_tasks_when_it_registers_and_its_updates_once() {
    let mut f = Fixture::registered(1);
    let effects = f.run(custom_task("c1"), false, 1);
    let spec = launched(&effects).pop().expect("the executor's container");
    assert_eq!(spec.env["KEEL_EXECUTOR_ID"], "E");
    assert!(sent::<StatusUpdate>(&effects, MASTER).is_empty(), "STAGING until the executor says otherwise");
    f.run(custom_task("c2"), false, 1);
    let effects = f.from(
        EXECUTOR,
        RegisterExecutor { framework_id: FrameworkId("F1".into()), executor_id: ExecutorId("E".into()) },
    );
    assert_eq!(sent::<ExecutorRegistered>(&effects, EXECUTOR).len(), 1);
    assert_eq!(sent::<LaunchTask>(&effects, EXECUTOR).len(), 2);
    let mut status = TaskStatus::new(TaskId("c1".into()), TaskState::Running, StatusSource::Executor);
    status.uuid = Some(UpdateId("x1".into()));
    let update = StatusUpdate {
        framework_id: FrameworkId("F1".into()),
        executor_id: Some(ExecutorId("E".into())),
        agent_id: None,
        status,
        latest_state: None,
        uuid: UpdateId("x1".into()),
        agent_pid: None,
    };
    let effects = f.from(EXECUTOR, update.clone());
    assert_eq!(sent::<StatusUpdateAcknowledgement>(&effects, EXECUTOR).len(), 1);
    assert_eq!(sent::<StatusUpdate>(&effects, MASTER).len(), 1);
    // Resent (our ack was lost): acknowledged again, queued once.
    let effects = f.from(EXECUTOR, update.clone());
    assert_eq!(sent::<StatusUpdateAcknowledgement>(&effects, EXECUTOR).len(), 1);
    let pending = f.agent.frameworks()[&FrameworkId("F1".into())].executors[&ExecutorId("E".into())].tasks
        [&TaskId("c1".into())]
        .stream
        .pending
        .len();
    assert_eq!(pending, 1);
    // From a process that is not the executor: refused.
    f.from("evil@127.0.0.1:1", update.clone());
    assert_eq!(f.agent.metrics().invalid_senders, 1);
    // After its connection broke, it reregisters with what is unacknowledged.
    let mut status = TaskStatus::new(TaskId("c2".into()), TaskState::Finished, StatusSource::Executor);
    status.uuid = Some(UpdateId("x2".into()));
    let late = StatusUpdate { status, uuid: UpdateId("x2".into()), ..update };
    let reregister = ReregisterExecutor {
        framework_id: FrameworkId("F1".into()),
        executor_id: ExecutorId("E".into()),
        tasks: vec![],
        updates: vec![late],
    };
    let effects = f.from(EXECUTOR, reregister);
    assert_eq!(sent::<ExecutorReregistered>(&effects, EXECUTOR).len(), 1);
    let c2 = &f.agent.frameworks()[&FrameworkId("F1".into())].executors[&ExecutorId("E".into())].tasks
        [&TaskId("c2".into())];
    assert_eq!(c2.state, TaskState::Finished);
    // An unknown executor is told to shut down.
    let stranger =
        RegisterExecutor { framework_id: FrameworkId("F9".into()), executor_id: ExecutorId("E".into()) };
    assert_eq!(sent::<ShutdownExecutor>(&f.from("x@127.0.0.1:2", stranger), "x@127.0.0.1:2").len(), 1);
}

#[test]
fn an_executor_that_does_not_register_in_time_is_destroyed() {
    let mut f = Fixture::registered(1);
    let effects = f.run(custom_task("c1"), false, 1);
    let spec = launched(&effects).pop().unwrap();
    let deadline = timers(&effects).into_iter().find(|t| t.after == Duration::from_secs(60)).unwrap();
    let effects = f.feed(Input::Timer(deadline.id));
    assert!(matches!(effects.as_slice(), [Effect::Destroy(id)] if id == &spec.id));
    let termination = Termination {
        status: ExitStatus::Signaled(9),
        message: "killed by signal 9".into(),
        memory_limit: None,
    };
    let effects = f.feed(Input::ContainerExited { container: spec.id, termination });
    assert_eq!(sent::<ExitedExecutor>(&effects, MASTER)[0].status, 137);
}

#[test]
fn checkpointing_frameworks_are_durable_before_their_updates_are_sent() {
    let mut f = Fixture::registered(1);
    let effects = f.run(command_task("t1"), true, 1);
    let checkpoint = effects
        .iter()
        .position(|e| matches!(e, Effect::Checkpoint(Checkpoint::Task { .. })))
        .expect("task checkpoint");
    let send =
        effects.iter().position(|e| matches!(e, Effect::Send { message: Msg::StatusUpdate(_), .. })).unwrap();
    assert!(checkpoint < send, "persist first, then tell: {effects:?}");
    assert!(effects.iter().any(|e| matches!(e, Effect::Checkpoint(Checkpoint::Executor { .. }))));
    let effects =
        f.master(CheckpointResources { total: "cpus(ads,dynamic):1;cpus:3;mem:1024".parse().unwrap() });
    assert!(matches!(effects.as_slice(), [Effect::Checkpoint(Checkpoint::Resources(_))]));
}

#[test]
fn a_framework_shut_down_loses_its_executors_and_updates() {
    let mut f = Fixture::registered(1);
    let spec = launched(&f.run(command_task("t1"), false, 1)).pop().unwrap();
    let effects = f.master(ShutdownFramework { framework_id: FrameworkId("F1".into()) });
    assert!(effects.iter().any(|e| matches!(e, Effect::Signal { .. })));
    let termination =
        Termination { status: ExitStatus::Signaled(15), message: "killed".into(), memory_limit: None };
    let effects = f.feed(Input::ContainerExited { container: spec.id, termination });
    assert!(sent::<StatusUpdate>(&effects, MASTER).is_empty(), "nobody acknowledges a removed framework");
    assert!(f.agent.frameworks().is_empty());
}

#[test]
fn the_master_shutting_the_agent_down_destroys_everything_and_exits() {
    let mut f = Fixture::registered(1);
    f.run(command_task("t1"), false, 1);
    let effects = f.master(ShutdownAgent { message: "gone".into() });
    assert!(matches!(
        effects.as_slice(),
        [Effect::Destroy(_), Effect::Checkpoint(Checkpoint::Clear), Effect::Exit { .. }]
    ));
    assert_eq!(f.agent.connection(), Connection::Terminating);
    assert!(
        f.master(Ping { connected: true, round: 1, epoch: 1 }).is_empty(),
        "a terminating agent does nothing more"
    );
}

#[test]
fn framework_messages_are_relayed_both_ways() {
    let mut f = Fixture::registered(1);
    f.run(custom_task("c1"), false, 1);
    f.from(
        EXECUTOR,
        RegisterExecutor { framework_id: FrameworkId("F1".into()), executor_id: ExecutorId("E".into()) },
    );
    let down = FrameworkToExecutorMessage {
        agent_id: AgentId("S1".into()),
        framework_id: FrameworkId("F1".into()),
        executor_id: ExecutorId("E".into()),
        data: vec![1],
    };
    assert_eq!(sent::<FrameworkToExecutorMessage>(&f.master(down), EXECUTOR).len(), 1);
    let up = ExecutorToFrameworkMessage {
        agent_id: AgentId("?".into()),
        framework_id: FrameworkId("F1".into()),
        executor_id: ExecutorId("E".into()),
        data: vec![2],
    };
    let relayed = sent::<ExecutorToFrameworkMessage>(&f.from(EXECUTOR, up), MASTER).pop().unwrap();
    assert_eq!(relayed.agent_id.as_str(), "S1");
    let update =
        UpdateFramework { framework_id: FrameworkId("F1".into()), scheduler: upid("new@127.0.0.1:6001") };
    f.master(update);
    assert_eq!(f.agent.frameworks()[&FrameworkId("F1".into())].scheduler.to_string(), "new@127.0.0.1:6001");
}

#[test]
fn a_copy_of_a_launch_arriving_after_its_task_ended_is_dropped() {
    // Found by the simulator (a duplicated, delayed RunTask ran a task twice).
    let mut f = Fixture::registered(1);
    let mut framework = FrameworkInfo::new("fw");
    framework.id = Some(FrameworkId("F1".into()));
    let run = RunTask {
        framework,
        scheduler: upid(SCHEDULER),
        task: command_task("t1"),
        epoch: 1,
        launch_id: Some("L1".into()),
        session: 1,
        ping_round: 0,
        pings_missed: 0,
    };
    let effects = f.master(run.clone());
    let spec = launched(&effects).pop().unwrap();
    let running = sent::<StatusUpdate>(&effects, MASTER).pop().unwrap();
    let termination =
        Termination { status: ExitStatus::Exited(0), message: "exited".into(), memory_limit: None };
    f.feed(Input::ContainerExited { container: spec.id, termination });
    let finished = sent::<StatusUpdate>(&f.master(ack("t1", &running.uuid)), MASTER).pop().unwrap();
    f.master(ack("t1", &finished.uuid));
    assert!(f.agent.frameworks().is_empty());
    assert!(launched(&f.master(run)).is_empty(), "the copy does not run the task again");
    assert_eq!(f.agent.metrics().stale_launches, 1);
}

#[test]
fn a_launch_that_may_have_been_declared_lost_is_refused() {
    // Found by the simulator: a RunTask delayed while the master marked the agent
    // unreachable (its pongs were lost, its pings arrived) ran after TASK_LOST.
    let mut f = Fixture::registered(1); // max_ping_timeouts 3, ping interval 1 s
    let late_with = |f: &mut Fixture, id: &str, session: u64, ping_round: u64, pings_missed: u32| {
        let mut framework = FrameworkInfo::new("fw");
        framework.id = Some(FrameworkId("F1".into()));
        let run = RunTask {
            framework,
            scheduler: upid(SCHEDULER),
            task: command_task(id),
            epoch: 1,
            launch_id: None,
            session,
            ping_round,
            pings_missed,
        };
        launched(&f.master(run)).len()
    };
    let late =
        |f: &mut Fixture, id: &str, session: u64, ping_round: u64| late_with(f, id, session, ping_round, 0);
    f.master(Ping { connected: true, round: 10, epoch: 1 });
    assert_eq!(late(&mut f, "fresh", 1, 9), 1, "one round old: fine");
    assert_eq!(late(&mut f, "old", 1, 8), 0, "two rounds old: the master may have given up");
    // Seed 6749: sent when the master already missed pongs, which it gives up sooner on.
    assert_eq!(late_with(&mut f, "current-round", 1, 10, 1), 1, "a pong outstanding: fine");
    assert_eq!(late_with(&mut f, "doomed", 1, 10, 2), 0, "no more pings before the master gives up");
    f.now += 0.6;
    assert_eq!(late_with(&mut f, "one-missed", 1, 10, 1), 1, "silent for less than the interval left");
    f.now += 0.5;
    assert_eq!(late_with(&mut f, "one-missed-later", 1, 10, 1), 0, "its last ping is due");
    f.now -= 1.1;
    assert_eq!(late(&mut f, "earlier-admission", 0, 10), 1, "0: a master that names no session");
    f.master(Ping { connected: false, round: 11, epoch: 1 });
    f.master(AgentReregistered {
        agent_id: AgentId("S1".into()),
        ping_interval_secs: 1.0,
        epoch: 1,
        max_ping_timeouts: 3,
        session: 5,
    });
    f.master(Ping { connected: true, round: 11, epoch: 1 });
    assert_eq!(late(&mut f, "before-readmission", 4, 11), 0, "sent in an earlier admission");
    // Silent for two intervals: the master may have marked this agent unreachable.
    f.now += 2.0;
    assert_eq!(late(&mut f, "in-silence", 5, 11), 0);
    assert_eq!(f.agent.metrics().stale_launches, 5);
    // A ping from an older master changes nothing.
    f.master(Ping { connected: true, round: 99, epoch: 0 });
    assert_eq!(late(&mut f, "still-silent", 5, 11), 0);
}
