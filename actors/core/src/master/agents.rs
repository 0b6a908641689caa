//! Agents: registration and reregistration (with what they run), health by pings
//! and links, and leaving: unreachable (pings unanswered) or gone (unregistered,
//! or replaced by a new agent at its address). Leaving is persisted first; tasks
//! change state and frameworks are told only once it is durable.

use std::collections::{BTreeMap, BTreeSet};

use keel_message::Upid;
use keel_proto::ids::{AgentId, FrameworkId, TaskId};
use keel_proto::messages::agent::*;
use keel_proto::messages::common::{ExecutorToFrameworkMessage, KillTask};
use keel_proto::messages::scheduler::{AgentLost, ExecutorLost};
use keel_proto::registry::{AgentRecord, Operation};
use keel_proto::task::{AgentInfo, FrameworkInfo, StatusSource, TaskReason, TaskState, TaskStatus};

use super::state::{AgentState, FrameworkState, Leaving};
use super::{Master, Out, Pending, Timer};
use crate::allocator::messages as alloc;

impl Master {
    fn ping_interval_secs(&self) -> f64 {
        self.config.agent_ping_timeout.as_secs_f64()
    }

    /// The agent id of a sender, if it is a registered agent that is not leaving.
    pub(super) fn agent_of(&self, from: &Upid) -> Option<AgentId> {
        let id = self.agents_by_pid.get(from)?;
        self.agents.get(id).filter(|a| a.leaving.is_none()).map(|_| id.clone())
    }

    pub(super) fn register_agent(&mut self, out: &mut Out, from: Upid, m: RegisterAgent) {
        if m.agent.hostname.trim().is_empty() {
            out.send(&from, ShutdownAgent { message: "an agent needs a hostname".into() });
            return;
        }
        if self.admitting.contains_key(&from) {
            return;
        }
        if let Some(agent_id) = self.agents_by_pid.get(&from).cloned() {
            let agent = &self.agents[&agent_id];
            if agent.leaving.is_some() {
                // Its address is freed once the leaving is durable; the agent retries.
                return;
            }
            if agent.incarnation == m.incarnation {
                // A retry: the answer was lost.
                let registered = AgentRegistered {
                    agent_id,
                    ping_interval_secs: self.ping_interval_secs(),
                    epoch: self.term.0,
                    max_ping_timeouts: self.config.max_agent_ping_timeouts,
                    session: agent.session,
                };
                out.send(&from, registered);
                return;
            }
            // Another agent process at the same address: the old one restarted without
            // recovering. It is gone for good; then the new one is admitted.
            tracing::info!(agent_id = %agent_id, agent = %from, "a new agent registered at the address of a registered one");
            self.agent_leaves(
                out,
                &agent_id,
                Leaving::Gone,
                TaskReason::AgentRestarted,
                Some((from, Box::new(m))),
            );
            return;
        }
        if let Some(former) = self.former_pids.get(&from).cloned() {
            // An agent that may have come back had this address: a new agent there
            // means it never will. It is gone first, then the new one is admitted.
            if self.forgetting.insert(former.clone()) {
                tracing::info!(agent_id = %former, agent = %from, "a new agent registered at the address of an unreachable one");
                let operation = Operation::MarkGone { agent_id: former.clone(), since_secs: self.now };
                self.persist(
                    out,
                    vec![operation],
                    Pending::Forget { agent_id: former, then: (from, Box::new(m)) },
                );
            }
            return;
        }
        let mut info = m.agent;
        let agent_id = AgentId(self.ids.next("S"));
        info.id = Some(agent_id);
        let record = AgentRecord { info: info.clone(), pid: from.clone(), lost_tasks: Vec::new() };
        self.admitting.insert(from.clone(), m.incarnation);
        let pending = Pending::Admit {
            pid: from,
            info,
            version: m.version,
            incarnation: m.incarnation,
            reregister: None,
        };
        self.persist(out, vec![Operation::AdmitAgent(record)], pending);
    }

    pub(super) fn reregister_agent(&mut self, out: &mut Out, from: Upid, m: ReregisterAgent) {
        let Some(agent_id) = m.agent.id.clone() else {
            self.metrics.invalid_senders += 1;
            out.send(&from, ShutdownAgent { message: "reregistration without an agent id".into() });
            return;
        };
        if self.gone_agents.contains_key(&agent_id) {
            out.send(&from, ShutdownAgent { message: format!("agent {agent_id} was marked gone") });
            return;
        }
        if self.admitting.contains_key(&from) {
            return;
        }
        if let Some(agent) = self.agents.get(&agent_id) {
            if agent.leaving.is_some() {
                return;
            }
            if let Some(other) = self.agents_by_pid.get(&from).filter(|other| **other != agent_id) {
                tracing::warn!(agent_id = %agent_id, other = %other, agent = %from, "reregistration from the address of another agent");
                self.metrics.invalid_senders += 1;
                return;
            }
            self.reconnect(out, &agent_id, from, m);
            return;
        }
        // Unreachable, recovered from the registry, or unknown to this master: admit
        // it again, then take over what it runs.
        let in_registry =
            self.unreachable_agents.contains_key(&agent_id) || self.recovered_agents.contains_key(&agent_id);
        if self.agents_by_pid.contains_key(&from) {
            // Another agent holds this address; it must leave first.
            self.metrics.invalid_senders += 1;
            return;
        }
        // What its frameworks were told is LOST while it was away: all it runs for
        // frameworks that are not partition-aware if it was unreachable, or what the
        // registry remembers if an earlier master readmitted it. Durable with the
        // readmission, so no successor ever reports those tasks again.
        let lost_tasks: Vec<(FrameworkId, TaskId)> = if self.unreachable_agents.contains_key(&agent_id) {
            m.tasks
                .iter()
                .filter(|t| !self.partition_aware_framework(&t.framework_id, &m.frameworks))
                .map(|t| (t.framework_id.clone(), t.info.task_id.clone()))
                .collect()
        } else {
            let remembered: BTreeSet<(FrameworkId, TaskId)> = self
                .recovered_agents
                .get(&agent_id)
                .map(|r| r.lost_tasks.iter().cloned().collect())
                .unwrap_or_default();
            m.tasks
                .iter()
                .map(|t| (t.framework_id.clone(), t.info.task_id.clone()))
                .filter(|key| remembered.contains(key))
                .collect()
        };
        let mut info = m.agent.clone();
        info.id = Some(agent_id);
        let record = AgentRecord { info: info.clone(), pid: from.clone(), lost_tasks: lost_tasks.clone() };
        let operation =
            if in_registry { Operation::ReadmitAgent(record) } else { Operation::AdmitAgent(record) };
        self.admitting.insert(from.clone(), m.incarnation);
        let pending = Pending::Admit {
            pid: from,
            info,
            version: m.version.clone(),
            incarnation: m.incarnation,
            reregister: Some((Box::new(m), lost_tasks.into_iter().collect())),
        };
        self.persist(out, vec![operation], pending);
    }

    /// An admission is durable: the agent joins.
    pub(super) fn admitted(
        &mut self,
        out: &mut Out,
        pid: Upid,
        info: AgentInfo,
        version: String,
        incarnation: u64,
        reregister: Option<super::Reregistration>,
    ) {
        self.admitting.remove(&pid);
        let Some(agent_id) = info.id.clone() else { return };
        self.former_pids.retain(|_, id| id != &agent_id);
        let was_unreachable = self.unreachable_agents.remove(&agent_id).is_some();
        self.recovered_agents.remove(&agent_id);
        let total = info.resources.clone();
        out.link(&pid);
        self.agents_by_pid.insert(pid.clone(), agent_id.clone());
        let session = self.next_session;
        self.next_session += 1;
        self.agents.insert(
            agent_id.clone(),
            AgentState {
                info,
                pid: pid.clone(),
                incarnation,
                session,
                connected: true,
                active: true,
                registered_secs: self.now,
                pings_missed: 0,
                tasks: BTreeMap::new(),
                zombies: BTreeMap::new(),
                version,
                leaving: None,
            },
        );
        let ping_interval_secs = self.ping_interval_secs();
        let epoch = self.term.0;
        let max_ping_timeouts = self.config.max_agent_ping_timeouts;
        match reregister {
            None => {
                tracing::info!(agent_id = %agent_id, agent = %pid, resources = %total, "agent registered");
                let registered = AgentRegistered {
                    agent_id: agent_id.clone(),
                    ping_interval_secs,
                    epoch,
                    max_ping_timeouts,
                    session,
                };
                out.send(&pid, registered);
                out.allocator(alloc::AddAgent { agent_id, total, used: Vec::new() });
            }
            Some((m, lost)) => {
                self.adopt(out, &agent_id, &pid, &m, was_unreachable, &lost);
                let mut used = self.used_by_framework(&agent_id);
                let zombies: Vec<_> = self.agents[&agent_id]
                    .zombies
                    .iter()
                    .map(|((framework_id, _), resources)| (framework_id.clone(), resources.clone()))
                    .collect();
                used.extend(zombies);
                tracing::info!(agent_id = %agent_id, agent = %pid, tasks = m.tasks.len(), "agent readmitted");
                let reregistered = AgentReregistered {
                    agent_id: agent_id.clone(),
                    ping_interval_secs,
                    epoch,
                    max_ping_timeouts,
                    session,
                };
                out.send(&pid, reregistered);
                out.allocator(alloc::AddAgent { agent_id, total, used });
            }
        }
    }

    /// A registered agent comes back on a (maybe new) connection.
    fn reconnect(&mut self, out: &mut Out, agent_id: &AgentId, from: Upid, m: ReregisterAgent) {
        let next_session = self.next_session;
        let agent = self.agents.get_mut(agent_id).expect("caller checked");
        let old_pid = agent.pid.clone();
        let reactivate = !agent.active;
        agent.connected = true;
        agent.active = true;
        agent.pings_missed = 0;
        if agent.incarnation != m.incarnation {
            // A new agent process that recovered this agent: a new admission, so
            // launches sent to the previous process are refused by this one.
            agent.session = next_session;
            self.next_session += 1;
        }
        let agent = self.agents.get_mut(agent_id).expect("caller checked");
        agent.incarnation = m.incarnation;
        agent.info.attributes = m.agent.attributes.clone();
        agent.version = m.version.clone();
        if old_pid != from {
            agent.pid = from.clone();
            self.agents_by_pid.remove(&old_pid);
            self.agents_by_pid.insert(from.clone(), agent_id.clone());
            out.unlink(&old_pid);
        }
        out.link(&from);
        self.reconcile_known_agent(out, agent_id, &from, &m);
        if reactivate {
            out.allocator(alloc::SetAgentActive { agent_id: agent_id.clone(), active: true });
        }
        tracing::info!(agent_id = %agent_id, agent = %from, "agent reregistered");
        let reregistered = AgentReregistered {
            agent_id: agent_id.clone(),
            ping_interval_secs: self.ping_interval_secs(),
            epoch: self.term.0,
            max_ping_timeouts: self.config.max_agent_ping_timeouts,
            session: self.agents[agent_id].session,
        };
        out.send(&from, reregistered);
    }

    /// What a registered agent reports, against what the master placed on it: the
    /// master is authoritative. Launches it does not report are checked with it
    /// (they may still be in flight); tasks of removed frameworks are shut down;
    /// executors it does not report are gone and give their resources back.
    fn reconcile_known_agent(&mut self, out: &mut Out, agent_id: &AgentId, pid: &Upid, m: &ReregisterAgent) {
        let reported: BTreeSet<(FrameworkId, TaskId)> =
            m.tasks.iter().map(|t| (t.framework_id.clone(), t.info.task_id.clone())).collect();
        let placed: Vec<(FrameworkId, TaskId)> = self.agents[agent_id]
            .tasks
            .iter()
            .flat_map(|(f, ts)| ts.iter().map(move |t| (f.clone(), t.clone())))
            .collect();
        let mut check = Vec::new();
        for (framework_id, task_id) in placed {
            if reported.contains(&(framework_id.clone(), task_id.clone())) {
                continue;
            }
            let Some(framework) = self.frameworks.get_mut(&framework_id) else { continue };
            let terminal = framework.tasks.get(&task_id).is_some_and(|t| t.state.is_terminal());
            if terminal {
                // The agent delivered its last update and forgot it.
                if let Some(task) = framework.tasks.remove(&task_id) {
                    framework.complete(task, self.config.max_completed_tasks_per_framework);
                }
                if let Some(tasks) =
                    self.agents.get_mut(agent_id).and_then(|a| a.tasks.get_mut(&framework_id))
                {
                    tasks.remove(&task_id);
                }
                continue;
            }
            framework.checking.insert(task_id.clone());
            check.push(LaunchRef { framework_id, task_id });
        }
        if !check.is_empty() {
            out.send(pid, CheckLaunches { tasks: check });
        }
        let mut shutdown = BTreeSet::new();
        for task in &m.tasks {
            let framework_id = &task.framework_id;
            if self.removed_frameworks.contains(framework_id) || !self.frameworks.contains_key(framework_id) {
                shutdown.insert(framework_id.clone());
                continue;
            }
            let known = self.agents[agent_id]
                .tasks
                .get(framework_id)
                .is_some_and(|ts| ts.contains(&task.info.task_id));
            if !known {
                // Nothing this master launched: it must not run.
                self.metrics.unknown_tasks_killed += 1;
                tracing::warn!(agent_id = %agent_id, task_id = %task.info.task_id, "killing a task the master did not place on this agent");
                let kill = KillTask {
                    framework_id: framework_id.clone(),
                    task_id: task.info.task_id.clone(),
                    agent_id: Some(agent_id.clone()),
                };
                out.send(pid, kill);
            }
        }
        // Executors whose end the master missed.
        let reported_executors: BTreeSet<_> = m
            .executors
            .iter()
            .filter_map(|e| e.framework_id.clone().map(|f| (f, e.executor_id.clone())))
            .collect();
        let mut gone = Vec::new();
        for (framework_id, framework) in &self.frameworks {
            for (executor_id, executor) in framework.executors.get(agent_id).into_iter().flatten() {
                if !reported_executors.contains(&(framework_id.clone(), executor_id.clone())) {
                    gone.push((framework_id.clone(), executor_id.clone(), executor.resources.clone()));
                }
            }
        }
        for (framework_id, executor_id, resources) in gone {
            if let Some(executors) =
                self.frameworks.get_mut(&framework_id).and_then(|f| f.executors.get_mut(agent_id))
            {
                executors.remove(&executor_id);
            }
            tracing::info!(agent_id = %agent_id, executor_id = %executor_id, "the agent no longer has this executor");
            self.release(out, &framework_id, agent_id, &resources, None);
        }
        for framework_id in shutdown {
            out.send(pid, ShutdownFramework { framework_id });
        }
    }

    /// What a readmitted agent runs: tasks back from an unreachable agent return
    /// (partition-aware frameworks) or are killed (the others were told LOST);
    /// tasks of an agent this master did not know yet are adopted; tasks of
    /// removed frameworks are shut down.
    fn adopt(
        &mut self,
        out: &mut Out,
        agent_id: &AgentId,
        pid: &Upid,
        m: &ReregisterAgent,
        was_unreachable: bool,
        lost: &BTreeSet<(FrameworkId, TaskId)>,
    ) {
        let mut shutdown = BTreeSet::new();
        for reported in &m.tasks {
            let framework_id = &reported.framework_id;
            if self.removed_frameworks.contains(framework_id) {
                shutdown.insert(framework_id.clone());
                continue;
            }
            if !self.frameworks.contains_key(framework_id) {
                match m.frameworks.iter().find(|f| f.id.as_ref() == Some(framework_id)) {
                    Some(info) => self.recover_framework(out, info.clone()),
                    None => {
                        shutdown.insert(framework_id.clone());
                        continue;
                    }
                }
            }
            let task_id = reported.info.task_id.clone();
            let framework = self.frameworks.get_mut(framework_id).expect("inserted above");
            if framework.tasks.contains_key(&task_id) {
                continue;
            }
            let came_back = framework.unreachable_tasks.remove(&task_id).is_some();
            if lost.contains(&(framework_id.clone(), task_id.clone())) {
                // The framework was told this task is LOST: it must not come back.
                let key = (framework_id.clone(), task_id.clone());
                let agent = self.agents.get_mut(agent_id).expect("admitted");
                let held = if reported.state.is_terminal() {
                    keel_proto::resources::Resources::default()
                } else {
                    reported.info.resources.clone()
                };
                agent.zombies.insert(key, held);
                if let Some(framework) = self.frameworks.get_mut(framework_id) {
                    framework.declared.remember(task_id.clone(), TaskState::Lost);
                }
                out.send(
                    pid,
                    KillTask {
                        framework_id: framework_id.clone(),
                        task_id,
                        agent_id: Some(agent_id.clone()),
                    },
                );
                continue;
            }
            let mut task = reported.clone();
            task.info.agent_id = agent_id.clone();
            let partition_aware = framework.partition_aware();
            framework.tasks.insert(task_id.clone(), task.clone());
            if task.state == TaskState::Staging {
                framework.staging_since.insert(task_id.clone(), self.now);
            }
            let agent = self.agents.get_mut(agent_id).expect("admitted");
            agent.tasks.entry(framework_id.clone()).or_default().insert(task_id.clone());
            if (came_back || was_unreachable) && partition_aware {
                // It was reported UNREACHABLE: say where it is now.
                let status = super::state::reconciled(&task, self.now);
                self.tell_framework(out, framework_id, status);
            }
        }
        // Tasks it was running when it became unreachable that it does not report:
        // it may never have received them. They are asked about like any launch
        // the agent does not report.
        let reported: BTreeSet<(FrameworkId, TaskId)> =
            m.tasks.iter().map(|t| (t.framework_id.clone(), t.info.task_id.clone())).collect();
        let mut check = Vec::new();
        for (framework_id, framework) in self.frameworks.iter_mut() {
            let missing: Vec<TaskId> = framework
                .unreachable_tasks
                .iter()
                .filter(|(id, t)| {
                    &t.info.agent_id == agent_id && !reported.contains(&(framework_id.clone(), (*id).clone()))
                })
                .map(|(id, _)| id.clone())
                .collect();
            for task_id in missing {
                let Some(task) = framework.unreachable_tasks.remove(&task_id) else { continue };
                framework.tasks.insert(task_id.clone(), task);
                framework.checking.insert(task_id.clone());
                if let Some(agent) = self.agents.get_mut(agent_id) {
                    agent.tasks.entry(framework_id.clone()).or_default().insert(task_id.clone());
                }
                check.push(LaunchRef { framework_id: framework_id.clone(), task_id });
            }
        }
        if !check.is_empty() {
            out.send(pid, CheckLaunches { tasks: check });
        }
        for executor in &m.executors {
            let Some(framework_id) = &executor.framework_id else { continue };
            if let Some(framework) = self.frameworks.get_mut(framework_id) {
                framework
                    .executors
                    .entry(agent_id.clone())
                    .or_default()
                    .insert(executor.executor_id.clone(), executor.clone());
            }
        }
        for framework_id in shutdown {
            out.send(pid, ShutdownFramework { framework_id });
        }
    }

    /// Whether a framework is partition-aware, by the master's record or, for one it
    /// does not know, by how the reporting agent describes it.
    fn partition_aware_framework(&self, framework_id: &FrameworkId, reported: &[FrameworkInfo]) -> bool {
        match self.frameworks.get(framework_id) {
            Some(framework) => framework.partition_aware(),
            None => reported
                .iter()
                .find(|f| f.id.as_ref() == Some(framework_id))
                .is_some_and(|f| f.has(keel_proto::task::FrameworkCapability::PartitionAware)),
        }
    }

    /// A framework known only from an agent's report: kept, inactive, until its
    /// scheduler resubscribes or its failover timeout passes.
    fn recover_framework(&mut self, out: &mut Out, info: FrameworkInfo) {
        let Some(id) = info.id.clone() else { return };
        let timeout = keel_proto::time::clamp_secs(info.failover_timeout_secs)
            .max(self.config.agent_reregister_timeout);
        let timer = self.set_timer(out, timeout, Timer::Failover(id.clone()));
        out.allocator(alloc::AddFramework {
            framework_id: id.clone(),
            roles: info.effective_roles(),
            used: Vec::new(),
            active: false,
        });
        let mut framework = FrameworkState::new(info, None, false, self.now);
        framework.failover_timer = Some(timer);
        self.frameworks.insert(id, framework);
    }

    /// The agent's link broke: no offers on it until it reregisters (pings tell
    /// it to); pings decide whether it is unreachable.
    pub(super) fn agent_disconnected(&mut self, out: &mut Out, agent_id: &AgentId) {
        let Some(agent) = self.agents.get_mut(agent_id) else { return };
        if !agent.connected {
            return;
        }
        agent.connected = false;
        let was_active = std::mem::replace(&mut agent.active, false);
        tracing::info!(agent_id = %agent_id, "agent disconnected");
        if was_active {
            out.allocator(alloc::SetAgentActive { agent_id: agent_id.clone(), active: false });
        }
        self.rescind_offers_on(out, agent_id);
    }

    fn rescind_offers_on(&mut self, out: &mut Out, agent_id: &AgentId) {
        let offers: Vec<_> = self
            .offers
            .iter()
            .filter(|(_, o)| &o.offer.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for offer_id in offers {
            self.remove_offer(out, &offer_id, true, None);
        }
    }

    /// Starts an agent's leaving: out of the pool now, persisted, then removed.
    pub(super) fn agent_leaves(
        &mut self,
        out: &mut Out,
        agent_id: &AgentId,
        leaving: Leaving,
        reason: TaskReason,
        then: Option<(Upid, Box<RegisterAgent>)>,
    ) {
        let Some(agent) = self.agents.get_mut(agent_id) else { return };
        if agent.leaving.is_some() {
            return;
        }
        agent.leaving = Some(leaving);
        if std::mem::replace(&mut agent.active, false) {
            out.allocator(alloc::SetAgentActive { agent_id: agent_id.clone(), active: false });
        }
        self.rescind_offers_on(out, agent_id);
        let since_secs = self.now;
        let operation = match leaving {
            Leaving::Unreachable => Operation::MarkUnreachable { agent_id: agent_id.clone(), since_secs },
            Leaving::Gone => Operation::MarkGone { agent_id: agent_id.clone(), since_secs },
        };
        let pending = Pending::Leave { agent_id: agent_id.clone(), leaving, reason, then };
        self.persist(out, vec![operation], pending);
    }

    /// An agent's leaving is durable: its tasks become UNREACHABLE (partition-aware
    /// frameworks, unreachable agent), GONE (partition-aware, gone agent) or LOST,
    /// frameworks hear `AgentLost`.
    pub(super) fn left(
        &mut self,
        out: &mut Out,
        agent_id: &AgentId,
        leaving: Leaving,
        reason: TaskReason,
        then: Option<(Upid, Box<RegisterAgent>)>,
    ) {
        let Some(agent) = self.agents.remove(agent_id) else { return };
        self.agents_by_pid.remove(&agent.pid);
        out.unlink(&agent.pid);
        match leaving {
            Leaving::Unreachable => {
                self.unreachable_agents.insert(agent_id.clone(), self.now);
                self.former_pids.insert(agent.pid.clone(), agent_id.clone());
                self.metrics.agents_unreachable += 1;
                tracing::warn!(agent_id = %agent_id, "agent unreachable");
            }
            Leaving::Gone => {
                self.gone_agents.insert(agent_id.clone(), self.now);
                self.metrics.agents_gone += 1;
                tracing::info!(agent_id = %agent_id, "agent gone");
            }
        }
        let message = match leaving {
            Leaving::Unreachable => format!("agent {agent_id} is unreachable"),
            Leaving::Gone if reason == TaskReason::AgentRestarted => {
                format!(
                    "agent {agent_id} restarted without its tasks (a new agent registered at its address)"
                )
            }
            Leaving::Gone => format!("agent {agent_id} was removed"),
        };
        let mut notices = Vec::new();
        for (framework_id, task_ids) in &agent.tasks {
            let Some(framework) = self.frameworks.get_mut(framework_id) else { continue };
            let partition_aware = framework.partition_aware();
            for task_id in task_ids {
                let Some(mut task) = framework.tasks.remove(task_id) else { continue };
                if task.state.is_terminal() {
                    // Its last update is not acknowledged yet; the state stands.
                    framework.complete(task, self.config.max_completed_tasks_per_framework);
                    continue;
                }
                let state = match (leaving, partition_aware) {
                    (Leaving::Unreachable, true) => TaskState::Unreachable,
                    (Leaving::Gone, true) => TaskState::Gone,
                    (_, false) => TaskState::Lost,
                };
                task.state = state;
                let mut status = TaskStatus::new(task_id.clone(), state, StatusSource::Master)
                    .at(self.now)
                    .with_reason(reason)
                    .with_message(message.clone());
                status.agent_id = Some(agent_id.clone());
                status.executor_id = Some(task.executor_id.clone());
                task.status = Some(status.clone());
                if state == TaskState::Unreachable {
                    framework.staging_since.remove(task_id);
                    framework.checking.remove(task_id);
                    framework.unreachable_tasks.insert(task_id.clone(), task);
                } else {
                    *self.metrics.terminal.entry(state.name()).or_default() += 1;
                    framework.complete(task, self.config.max_completed_tasks_per_framework);
                }
                if let Some(pid) = framework.reachable_pid() {
                    notices.push((pid.clone(), framework_id.clone(), status));
                }
            }
        }
        for (pid, framework_id, status) in notices {
            self.send_status(out, &pid, &framework_id, status);
        }
        for framework in self.frameworks.values_mut() {
            framework.executors.remove(agent_id);
        }
        // The allocator releases everything held on the agent.
        out.allocator(alloc::RemoveAgent { agent_id: agent_id.clone() });
        let pids: Vec<Upid> = self.frameworks.values().filter_map(|f| f.reachable_pid().cloned()).collect();
        for pid in pids {
            out.send(&pid, AgentLost { agent_id: agent_id.clone() });
        }
        if let Some((pid, registration)) = then {
            self.register_agent(out, pid, *registration);
        }
    }

    /// An agent that was not registered is gone for good (durably): what it ran
    /// for partition-aware frameworks is GONE; then the registration that waited
    /// for its address goes on.
    pub(super) fn forgotten(&mut self, out: &mut Out, agent_id: &AgentId, then: (Upid, Box<RegisterAgent>)) {
        self.forgetting.remove(agent_id);
        self.unreachable_agents.remove(agent_id);
        self.recovered_agents.remove(agent_id);
        self.former_pids.retain(|_, id| id != agent_id);
        self.gone_agents.insert(agent_id.clone(), self.now);
        self.metrics.agents_gone += 1;
        let max = self.config.max_completed_tasks_per_framework;
        let mut notices = Vec::new();
        for (framework_id, framework) in self.frameworks.iter_mut() {
            let ids: Vec<TaskId> = framework
                .unreachable_tasks
                .iter()
                .filter(|(_, t)| &t.info.agent_id == agent_id)
                .map(|(id, _)| id.clone())
                .collect();
            for task_id in ids {
                let Some(mut task) = framework.unreachable_tasks.remove(&task_id) else { continue };
                task.state = TaskState::Gone;
                let mut status = TaskStatus::new(task_id, TaskState::Gone, StatusSource::Master)
                    .at(self.now)
                    .with_reason(TaskReason::AgentRestarted)
                    .with_message(format!("agent {agent_id} restarted without its tasks"));
                status.agent_id = Some(agent_id.clone());
                status.executor_id = Some(task.executor_id.clone());
                task.status = Some(status.clone());
                *self.metrics.terminal.entry(TaskState::Gone.name()).or_default() += 1;
                framework.complete(task, max);
                if let Some(pid) = framework.reachable_pid() {
                    notices.push((pid.clone(), framework_id.clone(), status));
                }
            }
        }
        for (pid, framework_id, status) in notices {
            self.send_status(out, &pid, &framework_id, status);
        }
        let (pid, registration) = then;
        self.register_agent(out, pid, *registration);
    }

    pub(super) fn ping_round(&mut self, out: &mut Out) {
        self.set_timer(out, self.config.agent_ping_timeout, Timer::Ping);
        self.ping_round += 1;
        let (round, epoch) = (self.ping_round, self.term.0);
        let max = self.config.max_agent_ping_timeouts.max(1);
        let mut unreachable = Vec::new();
        let mut pings = Vec::new();
        for (agent_id, agent) in self.agents.iter_mut() {
            if agent.leaving.is_some() {
                continue;
            }
            if agent.pings_missed >= max {
                unreachable.push(agent_id.clone());
                continue;
            }
            agent.pings_missed += 1;
            pings.push((agent.pid.clone(), agent.connected, agent_id.clone()));
        }
        for (pid, connected, agent_id) in pings {
            // `connected: false` tells an agent whose connection broke to reregister.
            out.send(&pid, Ping { connected, round, epoch });
            if connected {
                self.check_launches(out, &agent_id, &pid);
            }
        }
        for agent_id in unreachable {
            tracing::warn!(agent_id = %agent_id, "no pong for too long: marking the agent unreachable");
            self.agent_leaves(out, &agent_id, Leaving::Unreachable, TaskReason::AgentDisconnected, None);
        }
    }

    pub(super) fn pong(&mut self, from: Upid) {
        match self.agent_of(&from).and_then(|id| self.agents.get_mut(&id)) {
            Some(agent) => agent.pings_missed = 0,
            None => self.metrics.invalid_senders += 1,
        }
    }

    /// Agents in the registry that did not come back after this master recovered
    /// are unreachable.
    pub(super) fn reregister_timeout(&mut self, out: &mut Out) {
        let missing: Vec<AgentId> = self.recovered_agents.keys().cloned().collect();
        if missing.is_empty() {
            return;
        }
        tracing::warn!(agents = missing.len(), "agents did not reregister in time: marking them unreachable");
        let since_secs = self.now;
        let operations: Vec<Operation> = missing
            .iter()
            .map(|agent_id| Operation::MarkUnreachable { agent_id: agent_id.clone(), since_secs })
            .collect();
        for agent_id in &missing {
            self.recovered_agents.remove(agent_id);
            self.unreachable_agents.insert(agent_id.clone(), since_secs);
        }
        self.metrics.agents_unreachable += missing.len() as u64;
        self.persist(out, operations, Pending::Unreachable);
    }

    pub(super) fn unregister_agent(&mut self, out: &mut Out, from: Upid, m: UnregisterAgent) {
        if self.agent_of(&from).as_ref() != Some(&m.agent_id) {
            self.metrics.invalid_senders += 1;
            return;
        }
        tracing::info!(agent_id = %m.agent_id, "agent unregisters");
        self.agent_leaves(out, &m.agent_id, Leaving::Gone, TaskReason::AgentRemoved, None);
    }

    pub(super) fn exited_executor(&mut self, out: &mut Out, from: Upid, m: ExitedExecutor) {
        if self.agent_of(&from).as_ref() != Some(&m.agent_id) {
            self.metrics.invalid_senders += 1;
            return;
        }
        let executor = self
            .frameworks
            .get_mut(&m.framework_id)
            .and_then(|f| f.executors.get_mut(&m.agent_id))
            .and_then(|executors| executors.remove(&m.executor_id));
        if let Some(executor) = executor {
            self.release(out, &m.framework_id, &m.agent_id, &executor.resources, None);
        }
        if let Some(pid) = self.frameworks.get(&m.framework_id).and_then(|f| f.reachable_pid()).cloned() {
            let lost = ExecutorLost {
                framework_id: m.framework_id,
                agent_id: m.agent_id,
                executor_id: m.executor_id,
                status: m.status,
            };
            out.send(&pid, lost);
        }
    }

    pub(super) fn executor_to_framework(&mut self, out: &mut Out, from: Upid, m: ExecutorToFrameworkMessage) {
        if self.agent_of(&from).as_ref() != Some(&m.agent_id) {
            self.metrics.invalid_senders += 1;
            return;
        }
        if let Some(pid) = self.frameworks.get(&m.framework_id).and_then(|f| f.reachable_pid()).cloned() {
            out.send(&pid, m);
        }
    }
}
