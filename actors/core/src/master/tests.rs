//! Effect tests of the master core: inputs in, effects checked; no sockets, no
//! clock, no sleeps. Each handler has at least one test here.

use std::collections::BTreeMap;

use keel_message::Upid;
use keel_proto::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId, UpdateId};
use keel_proto::messages::agent::*;
use keel_proto::messages::common::*;
use keel_proto::messages::scheduler::*;
use keel_proto::messages::Msg;
use keel_proto::registry::{
    AgentRecord, FrameworkRecord, Operation, QuotaRecord, RegistryState, Term, UnreachableRecord,
};
use keel_proto::resources::Resources;
use keel_proto::task::*;

use super::*;
use crate::allocator::messages::{Allocated, Allocation, AllocatorCall, AllocatorEvent, AvailableUpdated};

fn upid(text: &str) -> Upid {
    text.parse().unwrap()
}

fn resources(text: &str) -> Resources {
    text.parse().unwrap()
}

/// A master under test, with the time and a scratch of what it did.
struct Fixture {
    master: Master,
    now: f64,
    /// Registry writes not answered yet, in order.
    writes: Vec<(WriteId, Vec<Operation>)>,
}

const MASTER: &str = "master@127.0.0.1:5050";
const AGENT: &str = "agent@127.0.0.1:5051";
const SCHEDULER: &str = "scheduler@127.0.0.1:6000";

impl Fixture {
    /// A master serving with the given registry state.
    fn with(state: RegistryState) -> Fixture {
        let mut config = MasterConfig::new(upid(MASTER), "M");
        config.agent_ping_timeout = std::time::Duration::from_secs(1);
        config.max_agent_ping_timeouts = 3;
        config.launch_check_timeout = std::time::Duration::from_secs(10);
        let mut fixture = Fixture { master: Master::new(config), now: 1000.0, writes: Vec::new() };
        let started = fixture.feed(Input::Start);
        assert!(matches!(started.as_slice(), [Effect::Recover]));
        fixture.feed(Input::Recovered(Ok((Term(7), state))));
        assert_eq!(fixture.master.phase(), Phase::Serving);
        fixture
    }

    fn new() -> Fixture {
        Fixture::with(RegistryState::default())
    }

    fn feed(&mut self, input: Input) -> Vec<Effect> {
        let effects = self.master.handle(self.now, input);
        for effect in &effects {
            if let Effect::Persist { write, term, operations } = effect {
                assert_eq!(*term, Term(7), "writes carry the recovered term");
                self.writes.push((*write, operations.clone()));
            }
        }
        effects
    }

    fn message(&mut self, from: &str, message: impl Into<Msg>) -> Vec<Effect> {
        self.feed(Input::Message { from: upid(from), message: message.into() })
    }

    /// Answers the oldest pending registry write with success.
    fn persisted(&mut self) -> Vec<Effect> {
        assert!(!self.writes.is_empty(), "no registry write is pending");
        let (write, _) = self.writes.remove(0);
        self.feed(Input::Persisted { write, result: Ok(()) })
    }

    /// Registers an agent (admission persisted) and returns its id.
    fn agent(&mut self, pid: &str, incarnation: u64, total: &str) -> AgentId {
        let info = AgentInfo {
            hostname: "h".into(),
            id: None,
            resources: resources(total),
            attributes: BTreeMap::new(),
        };
        let effects = self.message(pid, RegisterAgent { agent: info, version: "t".into(), incarnation });
        assert!(sends(&effects).is_empty(), "nothing is told before the admission is durable");
        let effects = self.persisted();
        let registered = sent::<AgentRegistered>(&effects, pid).pop().expect("AgentRegistered");
        assert_eq!(registered.epoch, 7);
        registered.agent_id
    }

    /// Subscribes a framework (persisted) and returns its id.
    fn framework(&mut self, pid: &str, info: FrameworkInfo) -> FrameworkId {
        let effects = self.message(pid, SubscribeFramework { framework: info, subscription: 1 });
        assert!(sent::<FrameworkSubscribed>(&effects, pid).is_empty(), "answered only once durable");
        let effects = self.persisted();
        sent::<FrameworkSubscribed>(&effects, pid).pop().expect("FrameworkSubscribed").framework_id
    }

    /// Offers `what` of an agent to a framework and returns the offer id.
    fn offer(&mut self, framework_id: &FrameworkId, agent_id: &AgentId, what: &str, role: &str) -> OfferId {
        let allocation = Allocation {
            framework_id: framework_id.clone(),
            role: role.into(),
            agent_id: agent_id.clone(),
            resources: resources(what),
        };
        let effects = self
            .feed(Input::Allocator(AllocatorEvent::Allocated(Allocated { allocations: vec![allocation] })));
        let offers = sent::<ResourceOffers>(&effects, SCHEDULER).pop().expect("offers");
        offers.offers[0].id.clone()
    }

    /// Launches a command task on an offer and returns the RunTask sent.
    fn launch(&mut self, framework_id: &FrameworkId, agent_id: &AgentId, task_id: &str) -> RunTask {
        let offer_id = self.offer(framework_id, agent_id, "cpus:2;mem:256", "*");
        let task = task(task_id, agent_id, "cpus:1;mem:64");
        let accept = AcceptOffers {
            framework_id: framework_id.clone(),
            offer_ids: vec![offer_id],
            operations: vec![keel_proto::messages::scheduler::Operation::Launch { tasks: vec![task] }],
            filters: Filters::default(),
            call_id: None,
        };
        let effects = self.message(SCHEDULER, accept);
        sent::<RunTask>(&effects, AGENT).pop().expect("RunTask")
    }

    /// An update from the agent for a task.
    fn update(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        task_id: &str,
        state: TaskState,
        uuid: &str,
    ) -> Vec<Effect> {
        let mut status = TaskStatus::new(TaskId(task_id.into()), state, StatusSource::Executor);
        status.uuid = Some(UpdateId(uuid.into()));
        let update = StatusUpdate {
            framework_id: framework_id.clone(),
            executor_id: Some(ExecutorId(task_id.into())),
            agent_id: Some(agent_id.clone()),
            status,
            latest_state: None,
            uuid: UpdateId(uuid.into()),
            agent_pid: None,
        };
        self.message(AGENT, update)
    }

    fn metric(&self, key: &str) -> f64 {
        self.master.metrics_snapshot(self.now)[key]
    }
}

fn task(id: &str, agent_id: &AgentId, what: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId(id.into()),
        agent_id: agent_id.clone(),
        resources: resources(what),
        command: Some(CommandInfo::shell("true")),
        executor: None,
        data: None,
        labels: BTreeMap::new(),
    }
}

fn partition_aware(name: &str) -> FrameworkInfo {
    FrameworkInfo { capabilities: vec![FrameworkCapability::PartitionAware], ..FrameworkInfo::new(name) }
}

fn sends(effects: &[Effect]) -> Vec<(Upid, Msg)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, message } => Some((to.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

/// The messages of type `M` sent to `to`.
fn sent<M>(effects: &[Effect], to: &str) -> Vec<M>
where
    M: TryFrom<Msg>,
{
    sends(effects)
        .into_iter()
        .filter(|(t, _)| t.to_string() == to)
        .filter_map(|(_, m)| M::try_from(m).ok())
        .collect()
}

fn statuses(effects: &[Effect], to: &str) -> Vec<TaskStatus> {
    sent::<StatusUpdate>(effects, to).into_iter().map(|u| u.status).collect()
}

fn allocator_calls(effects: &[Effect]) -> Vec<AllocatorCall> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Allocator(call) => Some(call.clone()),
            _ => None,
        })
        .collect()
}

fn timers(effects: &[Effect]) -> Vec<crate::timers::SetTimer> {
    effects.iter().filter_map(|e| if let Effect::SetTimer(t) = e { Some(*t) } else { None }).collect()
}

/// Fires every timer set by `effects` (the ping round among them).
fn fire_all(fixture: &mut Fixture, effects: &[Effect]) -> Vec<Effect> {
    let mut out = Vec::new();
    for timer in timers(effects) {
        out.extend(fixture.feed(Input::Timer(timer.id)));
    }
    out
}

/// The ping timer a fixture's master armed when it recovered (its first timer).
fn first_ping() -> Vec<Effect> {
    let timer =
        crate::timers::SetTimer { id: crate::timers::TimerId(1), after: std::time::Duration::from_secs(1) };
    vec![Effect::SetTimer(timer)]
}

/// Fires the ping round: the newest ping timer.
fn ping_round(fixture: &mut Fixture, last: &mut Vec<Effect>) -> Vec<Effect> {
    let timer = timers(last).into_iter().last().expect("a ping timer");
    let effects = fixture.feed(Input::Timer(timer.id));
    *last = effects.clone();
    effects
}

#[test]
fn inputs_before_recovery_are_dropped_and_counted() {
    let mut master = Master::new(MasterConfig::new(upid(MASTER), "M"));
    assert!(master.handle(0.0, Input::Exited(upid(AGENT))).is_empty());
    master.handle(0.0, Input::Start);
    let effects = master.handle(0.0, Input::Message { from: upid(AGENT), message: Pong {}.into() });
    assert!(effects.is_empty());
    assert_eq!(master.metrics().dropped_while_not_serving, 2);
    assert_eq!(master.metrics_snapshot(0.0)["master/elected"], 0.0);
    assert_eq!(master.metrics_snapshot(0.0)["master/recovering"], 1.0);
}

#[test]
fn a_registry_that_cannot_be_recovered_or_written_aborts_the_master() {
    let mut master = Master::new(MasterConfig::new(upid(MASTER), "M"));
    master.handle(0.0, Input::Start);
    let effects = master.handle(0.0, Input::Recovered(Err(RegistryFailure("disk".into()))));
    assert!(matches!(effects.as_slice(), [Effect::Abort { .. }]));
    assert_eq!(master.phase(), Phase::Aborted);

    let mut f = Fixture::new();
    let info = AgentInfo {
        hostname: "h".into(),
        id: None,
        resources: resources("cpus:1;mem:64"),
        attributes: BTreeMap::new(),
    };
    f.message(AGENT, RegisterAgent { agent: info, version: "t".into(), incarnation: 1 });
    let (write, _) = f.writes.remove(0);
    let effects = f.feed(Input::Persisted { write, result: Err(RegistryFailure("fenced".into())) });
    assert!(effects.iter().any(|e| matches!(e, Effect::Abort { .. })), "{effects:?}");
    assert!(sent::<AgentRegistered>(&effects, AGENT).is_empty(), "nothing told after a failed write");
    assert_eq!(f.master.phase(), Phase::Aborted);
    assert_eq!(f.metric("master/elected"), 0.0);
    assert!(f.message(AGENT, Pong {}).is_empty(), "an aborted master decides nothing");
}

#[test]
fn an_agent_is_admitted_once_durable_and_a_retry_gets_the_same_answer() {
    let mut f = Fixture::new();
    let id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    assert!(matches!(f.writes.as_slice(), []));
    let info = AgentInfo {
        hostname: "h".into(),
        id: None,
        resources: resources("cpus:4;mem:1024"),
        attributes: BTreeMap::new(),
    };
    let retry = f.message(AGENT, RegisterAgent { agent: info, version: "t".into(), incarnation: 1 });
    assert_eq!(sent::<AgentRegistered>(&retry, AGENT)[0].agent_id, id);
    assert!(f.writes.is_empty(), "a retry writes nothing");
    let empty = AgentInfo {
        hostname: " ".into(),
        id: None,
        resources: Resources::default(),
        attributes: BTreeMap::new(),
    };
    let refused = f
        .message("agent@127.0.0.1:5099", RegisterAgent { agent: empty, version: "t".into(), incarnation: 1 });
    assert_eq!(sent::<ShutdownAgent>(&refused, "agent@127.0.0.1:5099").len(), 1);
}

#[test]
fn an_agent_restarted_at_the_same_address_is_new_and_its_old_tasks_end() {
    // Bug 1: a registration from a registered agent's address with another
    // incarnation is a new agent; the old one's tasks get terminal updates.
    let mut f = Fixture::new();
    let old = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    f.launch(&framework_id, &old, "t1");
    f.update(&framework_id, &old, "t1", TaskState::Running, "u1");
    let info = AgentInfo {
        hostname: "h".into(),
        id: None,
        resources: resources("cpus:4;mem:1024"),
        attributes: BTreeMap::new(),
    };
    let effects = f.message(AGENT, RegisterAgent { agent: info, version: "t".into(), incarnation: 2 });
    assert!(statuses(&effects, SCHEDULER).is_empty(), "persisted first");
    assert!(matches!(&f.writes[0].1[..], [Operation::MarkGone { agent_id, .. }] if agent_id == &old));
    let effects = f.persisted();
    let lost = statuses(&effects, SCHEDULER);
    assert_eq!(lost.len(), 1);
    assert_eq!((lost[0].task_id.as_str(), lost[0].state), ("t1", TaskState::Lost));
    assert_eq!(sent::<AgentLost>(&effects, SCHEDULER).len(), 1);
    // Then the new agent is admitted under a new id.
    assert!(matches!(&f.writes[0].1[..], [Operation::AdmitAgent(_)]));
    let effects = f.persisted();
    let new = sent::<AgentRegistered>(&effects, AGENT).pop().unwrap().agent_id;
    assert_ne!(new, old);
    assert!(f.master.gone_agents().contains_key(&old));
    assert_eq!(f.metric("master/tasks_running"), 0.0, "nothing stays RUNNING for a task no agent runs");
    // The old id can never come back.
    let info = AgentInfo {
        id: Some(old.clone()),
        hostname: "h".into(),
        resources: resources("cpus:4"),
        attributes: BTreeMap::new(),
    };
    let reregister = ReregisterAgent {
        agent: info,
        tasks: vec![],
        executors: vec![],
        frameworks: vec![],
        version: "t".into(),
        incarnation: 1,
    };
    let effects = f.message("agent@127.0.0.1:5052", reregister);
    assert_eq!(sent::<ShutdownAgent>(&effects, "agent@127.0.0.1:5052").len(), 1);
}

#[test]
fn pings_tell_a_disconnected_agent_to_reregister_and_it_is_reactivated() {
    // Bug 2: the master's link to the agent broke but the agent's to the master did
    // not: `Ping { connected: false }` makes it reregister, and it is back in the pool.
    let mut f = Fixture::new();
    let mut last = first_ping();
    let id = {
        let info = AgentInfo {
            hostname: "h".into(),
            id: None,
            resources: resources("cpus:1;mem:64"),
            attributes: BTreeMap::new(),
        };
        f.message(AGENT, RegisterAgent { agent: info, version: "t".into(), incarnation: 1 });
        f.persisted();
        f.master.agents().keys().next().unwrap().clone()
    };
    // The ping timer was armed at recovery; find it by firing a round.
    let effects = f.feed(Input::Exited(upid(AGENT)));
    assert!(allocator_calls(&effects)
        .iter()
        .any(|c| matches!(c, AllocatorCall::SetAgentActive(m) if !m.active)));
    assert_eq!(f.metric("master/slaves_active"), 0.0);
    assert_eq!(f.metric("master/slaves_disconnected"), 1.0);
    // A ping round: the ping says "not connected".
    let effects = ping_round(&mut f, &mut last);
    let pings = sent::<Ping>(&effects, AGENT);
    assert_eq!(pings.len(), 1, "{effects:?}");
    assert!(!pings[0].connected);
    let info = AgentInfo {
        id: Some(id.clone()),
        hostname: "h".into(),
        resources: resources("cpus:1;mem:64"),
        attributes: BTreeMap::new(),
    };
    let reregister = ReregisterAgent {
        agent: info,
        tasks: vec![],
        executors: vec![],
        frameworks: vec![],
        version: "t".into(),
        incarnation: 1,
    };
    let effects = f.message(AGENT, reregister);
    assert_eq!(sent::<AgentReregistered>(&effects, AGENT).len(), 1);
    assert!(effects.iter().any(|e| matches!(e, Effect::Link(to) if to.to_string() == AGENT)));
    assert!(allocator_calls(&effects)
        .iter()
        .any(|c| matches!(c, AllocatorCall::SetAgentActive(m) if m.active)));
    assert_eq!(f.metric("master/slaves_active"), 1.0);
    let effects = ping_round(&mut f, &mut last);
    let pings = sent::<Ping>(&effects, AGENT);
    assert!(pings[0].connected);
    assert_eq!((pings[0].epoch, pings[0].round), (7, 2), "pings carry the epoch and count rounds");
}

#[test]
fn an_agent_that_stops_answering_is_unreachable_once_that_is_durable() {
    let mut f = Fixture::new();
    let id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let plain = f.framework(SCHEDULER, FrameworkInfo::new("plain"));
    f.launch(&plain, &id, "t1");
    let mut last = first_ping();
    for _ in 0..3 {
        let effects = ping_round(&mut f, &mut last);
        assert_eq!(sent::<Ping>(&effects, AGENT).len(), 1);
    }
    // A pong resets the count.
    f.message(AGENT, Pong {});
    for _ in 0..3 {
        ping_round(&mut f, &mut last);
    }
    let effects = ping_round(&mut f, &mut last);
    assert!(sent::<Ping>(&effects, AGENT).is_empty());
    assert!(statuses(&effects, SCHEDULER).is_empty(), "nothing told before it is durable");
    assert!(matches!(&f.writes[0].1[..], [Operation::MarkUnreachable { .. }]));
    let effects = f.persisted();
    let lost = statuses(&effects, SCHEDULER);
    assert_eq!((lost.len(), lost[0].state), (1, TaskState::Lost));
    assert!(f.master.unreachable_agents().contains_key(&id));
    assert!(allocator_calls(&effects).iter().any(|c| matches!(c, AllocatorCall::RemoveAgent(_))));
}

#[test]
fn lost_tasks_that_come_back_with_their_agent_are_killed_and_silenced() {
    // Bug 3: the framework was told LOST; the task must not come back, however many
    // tasks completed meanwhile (no completed-tasks ring involved).
    let mut state = RegistryState::default();
    let agent_id = AgentId("S9".into());
    let info = AgentInfo {
        id: Some(agent_id.clone()),
        hostname: "h".into(),
        resources: resources("cpus:4;mem:1024"),
        attributes: BTreeMap::new(),
    };
    state.unreachable.insert(
        agent_id.clone(),
        UnreachableRecord {
            record: AgentRecord { info: info.clone(), pid: upid(AGENT), lost_tasks: vec![] },
            since_secs: 1.0,
        },
    );
    let mut framework_info = FrameworkInfo::new("plain");
    framework_info.id = Some(FrameworkId("F1".into()));
    state.frameworks.insert(
        FrameworkId("F1".into()),
        FrameworkRecord { info: framework_info.clone(), registered_secs: 1.0 },
    );
    let mut f = Fixture::with(state);
    let effects =
        f.message(SCHEDULER, SubscribeFramework { framework: framework_info.clone(), subscription: 1 });
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist { .. })));
    f.persisted();
    let running = Task {
        info: task("t1", &agent_id, "cpus:1;mem:64"),
        framework_id: FrameworkId("F1".into()),
        executor_id: ExecutorId("t1".into()),
        state: TaskState::Running,
        status: None,
        role: None,
    };
    let reregister = ReregisterAgent {
        agent: info,
        tasks: vec![running],
        executors: vec![],
        frameworks: vec![framework_info],
        version: "t".into(),
        incarnation: 1,
    };
    f.message(AGENT, reregister);
    assert!(matches!(&f.writes[0].1[..], [Operation::ReadmitAgent(_)]));
    let effects = f.persisted();
    let kills = sent::<KillTask>(&effects, AGENT);
    assert_eq!(kills.len(), 1);
    assert_eq!(kills[0].task_id.as_str(), "t1");
    assert!(f.master.frameworks()[&FrameworkId("F1".into())].tasks.is_empty(), "not adopted");
    // Its resources stay used until it ends; its updates go nowhere but an ack.
    assert_eq!(f.master.used_on(&agent_id).cpus(), 1.0);
    let effects = f.update(&FrameworkId("F1".into()), &agent_id, "t1", TaskState::Killed, "k1");
    assert!(statuses(&effects, SCHEDULER).is_empty(), "the framework hears nothing after LOST");
    assert_eq!(sent::<StatusUpdateAcknowledgement>(&effects, AGENT).len(), 1);
    assert_eq!(f.master.used_on(&agent_id).cpus(), 0.0);
    assert!(allocator_calls(&effects).iter().any(|c| matches!(c, AllocatorCall::RecoverResources(_))));
}

#[test]
fn a_partition_aware_task_back_from_an_unreachable_agent_is_running_again() {
    let mut f = Fixture::new();
    let id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let aware = f.framework(SCHEDULER, partition_aware("aware"));
    let run = f.launch(&aware, &id, "t1");
    f.update(&aware, &id, "t1", TaskState::Running, "u1");
    f.master.agents.get_mut(&id).unwrap().pings_missed = 10;
    let mut last = first_ping();
    ping_round(&mut f, &mut last);
    let effects = f.persisted();
    assert_eq!(statuses(&effects, SCHEDULER)[0].state, TaskState::Unreachable);
    assert_eq!(f.metric("master/tasks_unreachable"), 1.0);
    let info = AgentInfo {
        id: Some(id.clone()),
        hostname: "h".into(),
        resources: resources("cpus:4;mem:1024"),
        attributes: BTreeMap::new(),
    };
    let back = Task {
        info: run.task.clone(),
        framework_id: aware.clone(),
        executor_id: ExecutorId("t1".into()),
        state: TaskState::Running,
        status: None,
        role: None,
    };
    let reregister = ReregisterAgent {
        agent: info,
        tasks: vec![back],
        executors: vec![],
        frameworks: vec![run.framework.clone()],
        version: "t".into(),
        incarnation: 1,
    };
    f.message(AGENT, reregister);
    let effects = f.persisted();
    assert!(sent::<KillTask>(&effects, AGENT).is_empty());
    assert_eq!(statuses(&effects, SCHEDULER)[0].state, TaskState::Running);
    assert_eq!(f.metric("master/tasks_running"), 1.0);
    assert!(allocator_calls(&effects)
        .iter()
        .any(|c| matches!(c, AllocatorCall::AddAgent(m) if !m.used.is_empty())));
}

#[test]
fn a_restarted_master_restores_frameworks_and_never_takes_back_a_removed_one() {
    // Bug 5.
    let mut state = RegistryState::default();
    let mut info = FrameworkInfo::new("kept");
    info.id = Some(FrameworkId("F1".into()));
    state
        .frameworks
        .insert(FrameworkId("F1".into()), FrameworkRecord { info: info.clone(), registered_secs: 1.0 });
    state.removed_frameworks.insert(FrameworkId("F0".into()), 1.0);
    let mut f = Fixture::with(state);
    assert!(f.master.frameworks().contains_key(&FrameworkId("F1".into())));
    assert_eq!(f.metric("master/frameworks_disconnected"), 1.0);
    let effects = f.message(SCHEDULER, SubscribeFramework { framework: info, subscription: 1 });
    assert!(effects.iter().any(|e| matches!(e, Effect::Persist { .. })));
    let effects = f.persisted();
    assert_eq!(sent::<FrameworkSubscribed>(&effects, SCHEDULER)[0].framework_id.as_str(), "F1");
    let mut removed = FrameworkInfo::new("gone");
    removed.id = Some(FrameworkId("F0".into()));
    let effects =
        f.message("other@127.0.0.1:6001", SubscribeFramework { framework: removed, subscription: 1 });
    let errors = sent::<FrameworkError>(&effects, "other@127.0.0.1:6001");
    assert!(errors[0].message.contains("has been removed"), "{errors:?}");
}

#[test]
fn teardown_is_persisted_before_the_framework_is_shut_down() {
    let mut f = Fixture::new();
    let id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    f.launch(&framework_id, &id, "t1");
    let effects = f.message(SCHEDULER, TeardownFramework { framework_id: framework_id.clone() });
    assert!(sent::<ShutdownFramework>(&effects, AGENT).is_empty());
    assert!(matches!(&f.writes[0].1[..], [Operation::RemoveFramework { .. }]));
    // Calls while the removal is in flight are not served.
    let effects = f.message(SCHEDULER, ReviveOffers { framework_id: framework_id.clone(), roles: vec![] });
    assert!(allocator_calls(&effects).is_empty());
    let effects = f.persisted();
    assert_eq!(sent::<ShutdownFramework>(&effects, AGENT).len(), 1);
    assert!(f.master.removed_frameworks().contains(&framework_id));
    assert_eq!(f.master.used_on(&id), Resources::default());
}

#[test]
fn a_subscription_retry_from_a_disconnected_scheduler_is_answered() {
    // Bug 10.
    let mut f = Fixture::new();
    let id =
        f.framework(SCHEDULER, FrameworkInfo { failover_timeout_secs: 60.0, ..FrameworkInfo::new("fw") });
    f.feed(Input::Exited(upid(SCHEDULER)));
    assert_eq!(f.metric("master/frameworks_connected"), 0.0);
    let effects = f.message(
        SCHEDULER,
        SubscribeFramework {
            framework: FrameworkInfo { failover_timeout_secs: 60.0, ..FrameworkInfo::new("fw") },
            subscription: 2,
        },
    );
    let answer = &sent::<FrameworkSubscribed>(&effects, SCHEDULER)[0];
    assert_eq!((&answer.framework_id, answer.subscription), (&id, 2), "the answer names the subscription");
    assert_eq!(f.metric("master/frameworks_connected"), 1.0);
    assert_eq!(f.metric("master/frameworks_active"), 1.0);
}

#[test]
fn a_new_scheduler_takes_over_and_the_old_one_is_told() {
    let mut f = Fixture::new();
    let id =
        f.framework(SCHEDULER, FrameworkInfo { failover_timeout_secs: 60.0, ..FrameworkInfo::new("fw") });
    let info =
        FrameworkInfo { id: Some(id.clone()), failover_timeout_secs: 60.0, ..FrameworkInfo::new("fw") };
    let effects = f.message("new@127.0.0.1:6002", SubscribeFramework { framework: info, subscription: 1 });
    assert_eq!(sent::<FrameworkError>(&effects, SCHEDULER).len(), 1);
    let effects = f.persisted();
    assert_eq!(sent::<FrameworkSubscribed>(&effects, "new@127.0.0.1:6002").len(), 1);
    // Calls from the old scheduler are refused.
    f.message(SCHEDULER, ReviveOffers { framework_id: id, roles: vec![] });
    assert_eq!(f.master.metrics().invalid_senders, 1);
}

#[test]
fn a_disconnected_framework_is_removed_after_its_failover_timeout() {
    let mut f = Fixture::new();
    let id =
        f.framework(SCHEDULER, FrameworkInfo { failover_timeout_secs: 30.0, ..FrameworkInfo::new("fw") });
    let effects = f.feed(Input::Exited(upid(SCHEDULER)));
    let failover = timers(&effects).pop().expect("failover timer");
    assert_eq!(failover.after, std::time::Duration::from_secs(30));
    f.feed(Input::Timer(failover.id));
    assert!(matches!(&f.writes[0].1[..], [Operation::RemoveFramework { .. }]));
    f.persisted();
    assert!(!f.master.frameworks().contains_key(&id));
    // A deactivated framework (its scheduler stopped with failover) likewise.
    let id = f.framework(
        "s2@127.0.0.1:6003",
        FrameworkInfo { failover_timeout_secs: 5.0, ..FrameworkInfo::new("fw2") },
    );
    let effects = f.message("s2@127.0.0.1:6003", DeactivateFramework { framework_id: id.clone() });
    assert_eq!(f.metric("master/frameworks_inactive"), 1.0);
    assert_eq!(f.metric("master/frameworks_connected"), 1.0, "deactivated is not disconnected");
    fire_all(&mut f, &effects);
    f.persisted();
    assert!(!f.master.frameworks().contains_key(&id));
}

#[test]
fn launches_go_to_the_agent_with_the_epoch_and_invalid_accepts_are_refused_whole() {
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    let run = f.launch(&framework_id, &agent_id, "t1");
    assert_eq!(run.epoch, 7);
    assert_eq!((run.ping_round, run.pings_missed), (0, 0));
    assert_eq!(f.metric("master/tasks_staging"), 1.0);
    // Two ping rounds without a pong: the next launch says so (the agent is then
    // less patient with it, seed 6749).
    let mut last = first_ping();
    ping_round(&mut f, &mut last);
    ping_round(&mut f, &mut last);
    let run = f.launch(&framework_id, &agent_id, "t0");
    assert_eq!((run.ping_round, run.pings_missed), (2, 2));
    let accept = AcceptOffers {
        framework_id: framework_id.clone(),
        offer_ids: vec![OfferId("nope".into())],
        operations: vec![keel_proto::messages::scheduler::Operation::Launch {
            tasks: vec![task("t2", &agent_id, "cpus:1;mem:64")],
        }],
        filters: Filters::default(),
        call_id: None,
    };
    let effects = f.message(SCHEDULER, accept);
    let refused = statuses(&effects, SCHEDULER);
    assert_eq!((refused[0].state, refused[0].reason), (TaskState::Lost, Some(TaskReason::InvalidOffers)));
    assert!(sent::<RunTask>(&effects, AGENT).is_empty());
}

#[test]
fn aggregated_offers_of_different_roles_are_refused() {
    // Bug 11: one accept, one role, so what returns goes back to the right role.
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let info = FrameworkInfo {
        roles: vec!["a".into(), "b".into()],
        capabilities: vec![FrameworkCapability::MultiRole],
        ..FrameworkInfo::new("fw")
    };
    let framework_id = f.framework(SCHEDULER, info);
    let first = f.offer(&framework_id, &agent_id, "cpus:1;mem:128", "a");
    let second = f.offer(&framework_id, &agent_id, "cpus:1;mem:128", "b");
    let accept = AcceptOffers {
        framework_id: framework_id.clone(),
        offer_ids: vec![first, second],
        operations: vec![keel_proto::messages::scheduler::Operation::Launch {
            tasks: vec![task("t1", &agent_id, "cpus:1;mem:64")],
        }],
        filters: Filters::default(),
        call_id: None,
    };
    let effects = f.message(SCHEDULER, accept);
    let refused = statuses(&effects, SCHEDULER);
    assert!(refused[0].message.as_deref().unwrap_or("").contains("same role"), "{refused:?}");
    let recovered: Vec<_> = allocator_calls(&effects)
        .into_iter()
        .filter_map(|c| if let AllocatorCall::RecoverResources(m) = c { m.role } else { None })
        .collect();
    assert_eq!(recovered, vec!["a".to_string(), "b".to_string()], "each back in its own role");
}

#[test]
fn a_reservation_must_be_for_the_offers_role() {
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let info = FrameworkInfo { roles: vec!["a".into(), "b".into()], ..FrameworkInfo::new("fw") };
    let framework_id = f.framework(SCHEDULER, info);
    let offer = f.offer(&framework_id, &agent_id, "cpus:2;mem:128", "a");
    let accept = AcceptOffers {
        framework_id: framework_id.clone(),
        offer_ids: vec![offer],
        operations: vec![keel_proto::messages::scheduler::Operation::Reserve {
            resources: resources("cpus(b,dynamic):1"),
        }],
        filters: Filters::default(),
        call_id: None,
    };
    let effects = f.message(SCHEDULER, accept);
    assert_eq!(f.master.metrics().invalid_operations, 1);
    assert!(!allocator_calls(&effects).iter().any(|c| matches!(c, AllocatorCall::UpdateAllocation(_))));
    let offer = f.offer(&framework_id, &agent_id, "cpus:2;mem:128", "a");
    let accept = AcceptOffers {
        framework_id,
        offer_ids: vec![offer],
        operations: vec![keel_proto::messages::scheduler::Operation::Reserve {
            resources: resources("cpus(a,dynamic):1"),
        }],
        filters: Filters::default(),
        call_id: None,
    };
    let effects = f.message(SCHEDULER, accept);
    assert!(allocator_calls(&effects).iter().any(|c| matches!(c, AllocatorCall::UpdateAllocation(_))));
    assert_eq!(sent::<CheckpointResources>(&effects, AGENT).len(), 1);
}

#[test]
fn declines_return_resources_with_a_filter_and_revive_suppress_reach_the_allocator() {
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    let offer = f.offer(&framework_id, &agent_id, "cpus:4;mem:1024", "*");
    let effects = f.message(
        SCHEDULER,
        DeclineOffers {
            framework_id: framework_id.clone(),
            offer_ids: vec![offer],
            filters: Filters { refuse_seconds: 30.0 },
        },
    );
    assert!(allocator_calls(&effects)
        .iter()
        .any(|c| matches!(c, AllocatorCall::RecoverResources(m) if m.refuse_seconds == Some(30.0))));
    assert_eq!(f.metric("master/outstanding_offers"), 0.0);
    let effects = f.message(SCHEDULER, SuppressOffers { framework_id: framework_id.clone(), roles: vec![] });
    assert!(matches!(allocator_calls(&effects).as_slice(), [AllocatorCall::Suppress(_)]));
    let effects = f.message(SCHEDULER, ReviveOffers { framework_id, roles: vec![] });
    assert!(matches!(allocator_calls(&effects).as_slice(), [AllocatorCall::Revive(_)]));
}

#[test]
fn offers_time_out_and_are_rescinded_when_their_agent_disconnects() {
    let mut config = MasterConfig::new(upid(MASTER), "M");
    config.offer_timeout = Some(std::time::Duration::from_secs(5));
    let mut f = Fixture { master: Master::new(config), now: 0.0, writes: Vec::new() };
    f.feed(Input::Start);
    f.feed(Input::Recovered(Ok((Term(7), RegistryState::default()))));
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    let allocation = Allocation {
        framework_id: framework_id.clone(),
        role: "*".into(),
        agent_id: agent_id.clone(),
        resources: resources("cpus:1"),
    };
    let effects =
        f.feed(Input::Allocator(AllocatorEvent::Allocated(Allocated { allocations: vec![allocation] })));
    let timeout = timers(&effects).pop().expect("offer timer");
    let effects = f.feed(Input::Timer(timeout.id));
    assert_eq!(sent::<RescindOffer>(&effects, SCHEDULER).len(), 1);
    f.offer(&framework_id, &agent_id, "cpus:1", "*");
    let effects = f.feed(Input::Exited(upid(AGENT)));
    assert_eq!(sent::<RescindOffer>(&effects, SCHEDULER).len(), 1);
    // Allocations for an inactive agent go straight back.
    let allocation = Allocation { framework_id, role: "*".into(), agent_id, resources: resources("cpus:1") };
    let effects =
        f.feed(Input::Allocator(AllocatorEvent::Allocated(Allocated { allocations: vec![allocation] })));
    assert!(sent::<ResourceOffers>(&effects, SCHEDULER).is_empty());
    assert!(matches!(allocator_calls(&effects).as_slice(), [AllocatorCall::RecoverResources(_)]));
}

#[test]
fn a_finished_task_frees_its_resources_before_an_earlier_update_is_acknowledged() {
    // Bug 6: the RUNNING update is still unacknowledged when the task finishes; the
    // agent's next send of it carries latest_state FINISHED.
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    f.launch(&framework_id, &agent_id, "t1");
    let mut status = TaskStatus::new(TaskId("t1".into()), TaskState::Running, StatusSource::Executor);
    status.uuid = Some(UpdateId("u1".into()));
    let update = StatusUpdate {
        framework_id: framework_id.clone(),
        executor_id: Some(ExecutorId("t1".into())),
        agent_id: Some(agent_id.clone()),
        status,
        latest_state: Some(TaskState::Finished),
        uuid: UpdateId("u1".into()),
        agent_pid: None,
    };
    let effects = f.message(AGENT, update);
    assert_eq!(statuses(&effects, SCHEDULER)[0].state, TaskState::Running, "the update itself is forwarded");
    assert!(allocator_calls(&effects).iter().any(|c| matches!(c, AllocatorCall::RecoverResources(_))));
    assert_eq!(f.master.used_on(&agent_id), Resources::default());
    // The RUNNING acknowledgement does not retire the task; the FINISHED one does.
    let ack = |uuid: &str| StatusUpdateAcknowledgement {
        agent_id: agent_id.clone(),
        framework_id: framework_id.clone(),
        task_id: TaskId("t1".into()),
        uuid: UpdateId(uuid.into()),
    };
    let effects = f.message(SCHEDULER, ack("u1"));
    assert_eq!(sent::<StatusUpdateAcknowledgement>(&effects, AGENT).len(), 1);
    assert!(f.master.frameworks()[&framework_id].tasks.contains_key(&TaskId("t1".into())));
    f.update(&framework_id, &agent_id, "t1", TaskState::Finished, "u2");
    f.message(SCHEDULER, ack("u2"));
    assert!(f.master.frameworks()[&framework_id].tasks.is_empty());
    assert_eq!(f.metric("master/tasks_finished"), 1.0, "counted once");
}

#[test]
fn a_launch_that_never_reached_its_agent_is_checked_then_lost() {
    // Bug 7: STAGING past the launch check timeout: the master asks the agent, which
    // answers "dropped" (and will refuse the RunTask); only then is it LOST.
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    f.launch(&framework_id, &agent_id, "t1");
    let mut last = first_ping();
    let effects = ping_round(&mut f, &mut last);
    assert!(sent::<CheckLaunches>(&effects, AGENT).is_empty(), "not yet overdue");
    f.now += 11.0;
    f.message(AGENT, Pong {});
    let effects = ping_round(&mut f, &mut last);
    let check = sent::<CheckLaunches>(&effects, AGENT).pop().expect("a launch check");
    assert_eq!(check.tasks[0].task_id.as_str(), "t1");
    // Resent every round until answered.
    f.message(AGENT, Pong {});
    let effects = ping_round(&mut f, &mut last);
    assert_eq!(sent::<CheckLaunches>(&effects, AGENT).len(), 1);
    let effects = f.message(AGENT, LaunchesChecked { known: vec![], dropped: check.tasks.clone() });
    let lost = statuses(&effects, SCHEDULER);
    assert_eq!((lost[0].state, lost[0].reason), (TaskState::Lost, Some(TaskReason::TaskUnknown)));
    assert_eq!(f.master.used_on(&agent_id), Resources::default());
    assert_eq!(f.metric("master/launches_lost"), 1.0);
    // A task the agent has is left to its updates.
    f.launch(&framework_id, &agent_id, "t2");
    f.now += 11.0;
    f.message(AGENT, Pong {});
    let effects = ping_round(&mut f, &mut last);
    let check = sent::<CheckLaunches>(&effects, AGENT).pop().unwrap();
    let effects = f.message(AGENT, LaunchesChecked { known: check.tasks, dropped: vec![] });
    assert!(statuses(&effects, SCHEDULER).is_empty());
    assert_eq!(f.metric("master/tasks_staging"), 1.0);
}

#[test]
fn a_reregistering_agent_is_asked_about_launches_it_does_not_report_and_loses_executors_it_lost() {
    // Bugs 7 and 9 at reregistration.
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    let offer = f.offer(&framework_id, &agent_id, "cpus:4;mem:1024", "*");
    let mut custom = task("c1", &agent_id, "cpus:1;mem:64");
    custom.command = None;
    custom.executor = Some(ExecutorInfo {
        executor_id: ExecutorId("E".into()),
        framework_id: None,
        command: CommandInfo::shell("executor"),
        resources: resources("cpus:0.5;mem:32"),
        name: None,
    });
    let accept = AcceptOffers {
        framework_id: framework_id.clone(),
        offer_ids: vec![offer],
        operations: vec![keel_proto::messages::scheduler::Operation::Launch { tasks: vec![custom] }],
        filters: Filters::default(),
        call_id: None,
    };
    f.message(SCHEDULER, accept);
    assert_eq!(f.master.used_on(&agent_id).cpus(), 1.5);
    let info = AgentInfo {
        id: Some(agent_id.clone()),
        hostname: "h".into(),
        resources: resources("cpus:4;mem:1024"),
        attributes: BTreeMap::new(),
    };
    let reregister = ReregisterAgent {
        agent: info,
        tasks: vec![],
        executors: vec![],
        frameworks: vec![],
        version: "t".into(),
        incarnation: 1,
    };
    let effects = f.message(AGENT, reregister);
    let check = sent::<CheckLaunches>(&effects, AGENT).pop().expect("the missing launch is checked");
    assert_eq!(check.tasks[0].task_id.as_str(), "c1");
    assert!(statuses(&effects, SCHEDULER).is_empty(), "not LOST before the agent answers");
    // The executor the agent does not report gives its resources back.
    assert!(allocator_calls(&effects)
        .iter()
        .any(|c| matches!(c, AllocatorCall::RecoverResources(m) if m.resources.cpus() == 0.5)));
    assert_eq!(f.master.used_on(&agent_id).cpus(), 1.0);
}

#[test]
fn kills_go_to_the_agent_and_unknown_tasks_are_answered_by_the_rules() {
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    f.launch(&framework_id, &agent_id, "t1");
    let effects = f.message(
        SCHEDULER,
        KillTask { framework_id: framework_id.clone(), task_id: TaskId("t1".into()), agent_id: None },
    );
    assert_eq!(sent::<KillTask>(&effects, AGENT)[0].agent_id, Some(agent_id.clone()));
    let effects = f.message(
        SCHEDULER,
        KillTask {
            framework_id: framework_id.clone(),
            task_id: TaskId("nope".into()),
            agent_id: Some(agent_id),
        },
    );
    assert_eq!(statuses(&effects, SCHEDULER)[0].state, TaskState::Lost);
    assert_eq!(f.metric("master/invalid_kill_task"), 1.0);
    // Calls for unknown frameworks get an error.
    let effects = f.message(
        SCHEDULER,
        KillTask { framework_id: FrameworkId("X".into()), task_id: TaskId("t".into()), agent_id: None },
    );
    assert_eq!(sent::<FrameworkError>(&effects, SCHEDULER).len(), 1);
}

#[test]
fn reconciliation_reports_known_tasks_and_waits_for_recovered_agents() {
    let mut state = RegistryState::default();
    let info = AgentInfo {
        id: Some(AgentId("S5".into())),
        hostname: "h".into(),
        resources: resources("cpus:1"),
        attributes: BTreeMap::new(),
    };
    state.agents.insert(
        AgentId("S5".into()),
        AgentRecord { info, pid: upid("agent@127.0.0.1:5055"), lost_tasks: vec![] },
    );
    let mut f = Fixture::with(state);
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    f.launch(&framework_id, &agent_id, "t1");
    let effects = f.message(SCHEDULER, ReconcileTasks { framework_id: framework_id.clone(), tasks: vec![] });
    let answers = statuses(&effects, SCHEDULER);
    assert_eq!(
        (answers.len(), answers[0].state, answers[0].reason),
        (1, TaskState::Staging, Some(TaskReason::Reconciliation))
    );
    let wanted = |task: &str, agent: Option<&str>| ReconcileTask {
        task_id: TaskId(task.into()),
        agent_id: agent.map(|a| AgentId(a.into())),
    };
    let effects = f.message(
        SCHEDULER,
        ReconcileTasks {
            framework_id,
            tasks: vec![wanted("t1", None), wanted("x", Some("S5")), wanted("y", Some(agent_id.as_str()))],
        },
    );
    let answers = statuses(&effects, SCHEDULER);
    let states: Vec<_> = answers.iter().map(|s| (s.task_id.as_str().to_string(), s.state)).collect();
    // "x" is on an agent that has not reregistered since the restart: no answer yet.
    assert_eq!(states, vec![("t1".into(), TaskState::Staging), ("y".into(), TaskState::Lost)]);
    assert_eq!(f.metric("master/slaves_recovered"), 1.0);
}

#[test]
fn reconciliation_never_runs_ahead_of_the_update_stream() {
    // Seed 6350: an answer gave the task's latest state (FINISHED) while its agent's
    // RUNNING update was unacknowledged; after a scheduler failover that RUNNING
    // reached the new instance as news. The answer is the state of the update
    // forwarded (Mesos's status_update_state).
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    f.launch(&framework_id, &agent_id, "t1");
    let mut status = TaskStatus::new(TaskId("t1".into()), TaskState::Running, StatusSource::Executor);
    status.uuid = Some(UpdateId("u1".into()));
    let update = StatusUpdate {
        framework_id: framework_id.clone(),
        executor_id: Some(ExecutorId("t1".into())),
        agent_id: Some(agent_id.clone()),
        status,
        latest_state: Some(TaskState::Finished),
        uuid: UpdateId("u1".into()),
        agent_pid: None,
    };
    f.message(AGENT, update);
    let reconcile = |tasks: Vec<ReconcileTask>| ReconcileTasks { framework_id: framework_id.clone(), tasks };
    let explicit = vec![ReconcileTask { task_id: TaskId("t1".into()), agent_id: Some(agent_id.clone()) }];
    for tasks in [vec![], explicit.clone()] {
        let answers = statuses(&f.message(SCHEDULER, reconcile(tasks)), SCHEDULER);
        assert_eq!(answers.iter().map(|s| s.state).collect::<Vec<_>>(), vec![TaskState::Running]);
    }
    // Once the FINISHED update itself is forwarded, the answer is FINISHED.
    f.update(&framework_id, &agent_id, "t1", TaskState::Finished, "u2");
    let answers = statuses(&f.message(SCHEDULER, reconcile(explicit)), SCHEDULER);
    assert_eq!(answers[0].state, TaskState::Finished);
}

#[test]
fn after_a_master_failover_reconciliation_answers_with_the_update_the_agent_has_in_flight() {
    let framework_id = FrameworkId("F9".into());
    let agent_id = AgentId("S5".into());
    let old_agent = "agent@127.0.0.1:5055";
    let mut info = FrameworkInfo::new("fw");
    info.id = Some(framework_id.clone());
    let agent_info = AgentInfo {
        id: Some(agent_id.clone()),
        hostname: "h".into(),
        resources: resources("cpus:4;mem:1024"),
        attributes: BTreeMap::new(),
    };
    let mut state = RegistryState::default();
    state.agents.insert(
        agent_id.clone(),
        AgentRecord { info: agent_info.clone(), pid: upid(old_agent), lost_tasks: vec![] },
    );
    state
        .frameworks
        .insert(framework_id.clone(), FrameworkRecord { info: info.clone(), registered_secs: 1.0 });
    let mut f = Fixture::with(state);
    f.message(SCHEDULER, SubscribeFramework { framework: info.clone(), subscription: 1 });
    while !f.writes.is_empty() {
        f.persisted();
    }
    // The agent comes back: its task FINISHED, the RUNNING update still in flight.
    let mut running = TaskStatus::new(TaskId("t1".into()), TaskState::Running, StatusSource::Executor);
    running.uuid = Some(UpdateId("u1".into()));
    let reported = Task {
        info: task("t1", &agent_id, "cpus:1;mem:64"),
        framework_id: framework_id.clone(),
        executor_id: ExecutorId("t1".into()),
        state: TaskState::Finished,
        status: Some(running),
        role: None,
    };
    let reregister = ReregisterAgent {
        agent: agent_info,
        tasks: vec![reported],
        executors: vec![],
        frameworks: vec![info],
        version: "t".into(),
        incarnation: 1,
    };
    f.message(old_agent, reregister);
    while !f.writes.is_empty() {
        f.persisted();
    }
    let answers = statuses(
        &f.message(SCHEDULER, ReconcileTasks { framework_id: framework_id.clone(), tasks: vec![] }),
        SCHEDULER,
    );
    assert_eq!(answers.iter().map(|s| s.state).collect::<Vec<_>>(), vec![TaskState::Running]);
}

#[test]
fn agents_that_do_not_come_back_after_a_restart_become_unreachable() {
    let mut state = RegistryState::default();
    let info = AgentInfo {
        id: Some(AgentId("S5".into())),
        hostname: "h".into(),
        resources: resources("cpus:1"),
        attributes: BTreeMap::new(),
    };
    state.agents.insert(
        AgentId("S5".into()),
        AgentRecord { info, pid: upid("agent@127.0.0.1:5055"), lost_tasks: vec![] },
    );
    let mut config = MasterConfig::new(upid(MASTER), "M");
    config.agent_reregister_timeout = std::time::Duration::from_secs(60);
    let mut f = Fixture { master: Master::new(config), now: 0.0, writes: Vec::new() };
    f.feed(Input::Start);
    let effects = f.feed(Input::Recovered(Ok((Term(7), state))));
    let reregister =
        timers(&effects).into_iter().find(|t| t.after == std::time::Duration::from_secs(60)).unwrap();
    f.feed(Input::Timer(reregister.id));
    assert!(
        matches!(&f.writes[0].1[..], [Operation::MarkUnreachable { agent_id, .. }] if agent_id.as_str() == "S5")
    );
    assert!(f.master.unreachable_agents().contains_key(&AgentId("S5".into())));
}

#[test]
fn exited_executors_give_back_their_resources_and_messages_are_relayed() {
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, FrameworkInfo::new("fw"));
    f.master
        .frameworks
        .get_mut(&framework_id)
        .unwrap()
        .executors
        .entry(agent_id.clone())
        .or_default()
        .insert(
            ExecutorId("E".into()),
            ExecutorInfo {
                executor_id: ExecutorId("E".into()),
                framework_id: Some(framework_id.clone()),
                command: CommandInfo::shell("x"),
                resources: resources("cpus:1"),
                name: None,
            },
        );
    let effects = f.message(
        AGENT,
        ExitedExecutor {
            agent_id: agent_id.clone(),
            framework_id: framework_id.clone(),
            executor_id: ExecutorId("E".into()),
            status: 3,
        },
    );
    assert_eq!(sent::<ExecutorLost>(&effects, SCHEDULER)[0].status, 3);
    assert!(allocator_calls(&effects).iter().any(|c| matches!(c, AllocatorCall::RecoverResources(_))));
    let message = ExecutorToFrameworkMessage {
        agent_id: agent_id.clone(),
        framework_id: framework_id.clone(),
        executor_id: ExecutorId("E".into()),
        data: vec![1],
    };
    assert_eq!(sent::<ExecutorToFrameworkMessage>(&f.message(AGENT, message.clone()), SCHEDULER).len(), 1);
    // From someone else it is dropped and counted.
    assert!(f.message("evil@127.0.0.1:1", message).is_empty());
    let to_executor = FrameworkToExecutorMessage {
        agent_id,
        framework_id,
        executor_id: ExecutorId("E".into()),
        data: vec![2],
    };
    assert_eq!(sent::<FrameworkToExecutorMessage>(&f.message(SCHEDULER, to_executor), AGENT).len(), 1);
}

#[test]
fn an_agent_that_unregisters_is_gone_and_its_tasks_are_gone_for_partition_aware_frameworks() {
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id = f.framework(SCHEDULER, partition_aware("aware"));
    f.launch(&framework_id, &agent_id, "t1");
    f.message(AGENT, UnregisterAgent { agent_id: agent_id.clone() });
    assert!(matches!(&f.writes[0].1[..], [Operation::MarkGone { .. }]));
    let effects = f.persisted();
    assert_eq!(statuses(&effects, SCHEDULER)[0].state, TaskState::Gone);
}

#[test]
fn operator_weights_and_quotas_are_validated_persisted_then_applied() {
    let mut f = Fixture::new();
    let effects = f
        .feed(Input::Operator { request: 1, call: OperatorCall::SetWeights(vec![("eng".into(), f64::NAN)]) });
    assert!(matches!(
        effects.as_slice(),
        [Effect::Answer { request: 1, result: Err(OperatorError::Invalid(_)) }]
    ));
    f.feed(Input::Operator { request: 2, call: OperatorCall::SetWeights(vec![("eng".into(), 2.0)]) });
    let effects = f.persisted();
    assert!(matches!(allocator_calls(&effects).as_slice(), [AllocatorCall::SetWeights(_)]));
    assert!(effects.iter().any(|e| matches!(e, Effect::Answer { request: 2, result: Ok(()) })));
    let quota = QuotaRecord { guarantee: resources("cpus:2"), limit: Some(resources("cpus:1")) };
    let effects =
        f.feed(Input::Operator { request: 3, call: OperatorCall::SetQuota { role: "eng".into(), quota } });
    assert!(matches!(
        effects.as_slice(),
        [Effect::Answer { request: 3, result: Err(OperatorError::Invalid(_)) }]
    ));
    let effects =
        f.feed(Input::Operator { request: 4, call: OperatorCall::RemoveQuota { role: "eng".into() } });
    assert!(matches!(
        effects.as_slice(),
        [Effect::Answer { request: 4, result: Err(OperatorError::NotFound(_)) }]
    ));
    assert!(f.writes.is_empty());
}

#[test]
fn operator_reservations_go_through_the_allocator_then_the_agent() {
    // Bug 11: the allocator switches free resources first; only then does the
    // master change the agent's total, so both keep the same accounting.
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let call = OperatorCall::Reservation {
        agent_id: agent_id.clone(),
        resources: resources("cpus(ads,dynamic):1"),
        reserve: true,
    };
    let effects = f.feed(Input::Operator { request: 9, call });
    assert!(matches!(allocator_calls(&effects).as_slice(), [AllocatorCall::UpdateAvailable(_)]));
    assert_eq!(f.master.agents()[&agent_id].info.resources.cpus(), 4.0);
    let effects = f.feed(Input::Allocator(AllocatorEvent::AvailableUpdated(AvailableUpdated {
        request: 9,
        updated: true,
    })));
    assert_eq!(sent::<CheckpointResources>(&effects, AGENT).len(), 1);
    assert!(effects.iter().any(|e| matches!(e, Effect::Answer { request: 9, result: Ok(()) })));
    let call = OperatorCall::Reservation {
        agent_id: AgentId("nope".into()),
        resources: resources("cpus(ads,dynamic):1"),
        reserve: true,
    };
    let effects = f.feed(Input::Operator { request: 10, call });
    assert!(matches!(
        effects.as_slice(),
        [Effect::Answer { request: 10, result: Err(OperatorError::NotFound(_)) }]
    ));
    let call = OperatorCall::Reservation {
        agent_id: agent_id.clone(),
        resources: resources("cpus(ads,dynamic):1"),
        reserve: true,
    };
    f.feed(Input::Operator { request: 11, call });
    let effects = f.feed(Input::Allocator(AllocatorEvent::AvailableUpdated(AvailableUpdated {
        request: 11,
        updated: false,
    })));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Answer { request: 11, result: Err(OperatorError::Conflict(_)) }]
    ));
}

#[test]
fn over_limit_rescinds_the_roles_offers_and_bad_senders_are_counted() {
    let mut f = Fixture::new();
    let agent_id = f.agent(AGENT, 1, "cpus:4;mem:1024");
    let framework_id =
        f.framework(SCHEDULER, FrameworkInfo { roles: vec!["eng".into()], ..FrameworkInfo::new("fw") });
    f.offer(&framework_id, &agent_id, "cpus:1", "eng");
    let over = crate::allocator::messages::OverLimit { allocations: vec![(framework_id, "eng".into())] };
    let effects = f.feed(Input::Allocator(AllocatorEvent::OverLimit(over)));
    assert_eq!(sent::<RescindOffer>(&effects, SCHEDULER).len(), 1);
    f.message("stranger@127.0.0.1:1", Pong {});
    f.message(
        AGENT,
        FrameworkSubscribed {
            framework_id: FrameworkId("x".into()),
            master: upid(MASTER),
            subscription: 1,
            epoch: 0,
        },
    );
    assert_eq!(f.metric("master/invalid_senders"), 1.0);
    assert_eq!(f.metric("master/unexpected_messages"), 1.0);
}
