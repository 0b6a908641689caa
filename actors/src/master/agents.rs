//! Agents: registration and reregistration (with their running tasks), health by
//! pings and links, and what happens to tasks when an agent becomes unreachable.

use std::collections::{HashMap, HashSet};

use keel_kernel::{Handle, Message, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

use super::state::{AgentState, FrameworkState};
use super::Master;
use crate::allocator::messages as alloc;
use crate::ids::{AgentId, FrameworkId};
use crate::messages::agent::*;
use crate::messages::common::{ExecutorToFrameworkMessage, KillTask};
use crate::messages::scheduler::{AgentLost, ExecutorLost};
use crate::registry::{AgentRecord, Operation};
use crate::resources::Resources;
use crate::task::{AgentInfo, StatusSource, TaskReason, TaskState, TaskStatus};

/// The master's periodic ping round.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PingTick {}
keel_kernel::message!(PingTick, "keel.master.PingTick");

impl Master {
    fn ping_interval_secs(&self) -> f64 {
        self.config.agent_ping_timeout.as_secs_f64()
    }

    /// The agent id of a sender, if it is a registered agent.
    pub(super) fn agent_of(&self, from: &Upid) -> Option<AgentId> {
        self.agents_by_pid.get(from).cloned()
    }

    fn insert_agent(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        info: AgentInfo,
        pid: Upid,
        version: String,
    ) -> AgentId {
        let id = info.id.clone().expect("admitted agents have ids");
        ctx.link(&pid);
        self.agents_by_pid.insert(pid.clone(), id.clone());
        self.agents.insert(
            id.clone(),
            AgentState {
                info,
                pid,
                connected: true,
                registered_secs: crate::task::now_secs(),
                pings_missed: 0,
                tasks: HashMap::new(),
                used: Resources::default(),
                offered: Resources::default(),
                version,
            },
        );
        id
    }

    /// The agent's link broke: no offers on it until it comes back; pings decide
    /// whether it is unreachable.
    pub(super) fn agent_disconnected(&mut self, ctx: &mut ProcessContext<'_, Self>, agent_id: &AgentId) {
        let Some(agent) = self.agents.get_mut(agent_id) else { return };
        if !agent.connected {
            return;
        }
        agent.connected = false;
        tracing::info!(agent_id = %agent_id, "agent disconnected");
        self.allocator(ctx, alloc::SetAgentActive { agent_id: agent_id.clone(), active: false });
        self.rescind_offers_on(ctx, agent_id);
    }

    fn rescind_offers_on(&mut self, ctx: &mut ProcessContext<'_, Self>, agent_id: &AgentId) {
        let offers: Vec<_> = self
            .offers
            .iter()
            .filter(|(_, o)| &o.offer.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for offer_id in offers {
            self.remove_offer(ctx, &offer_id, true, None);
        }
    }

    /// Removes an agent from service: its tasks become UNREACHABLE (partition-aware
    /// frameworks) or LOST, frameworks hear `AgentLost`.
    fn remove_agent(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        agent_id: &AgentId,
        unreachable: bool,
        reason: TaskReason,
    ) {
        self.rescind_offers_on(ctx, agent_id);
        let Some(agent) = self.agents.remove(agent_id) else { return };
        self.agents_by_pid.remove(&agent.pid);
        ctx.unlink(&agent.pid);
        for (framework_id, task_ids) in &agent.tasks {
            for task_id in task_ids {
                let Some(framework) = self.frameworks.get_mut(framework_id) else { continue };
                let Some(mut task) = framework.tasks.remove(task_id) else { continue };
                let was_terminal = task.state.is_terminal();
                let partition_aware = framework.partition_aware();
                let state = match (unreachable, partition_aware) {
                    (true, true) => TaskState::Unreachable,
                    (false, true) => TaskState::Gone,
                    (_, false) => TaskState::Lost,
                };
                if !was_terminal {
                    task.state = state;
                }
                let mut status = TaskStatus::new(task_id.clone(), task.state, StatusSource::Master)
                    .with_reason(reason)
                    .with_message(format!(
                        "agent {agent_id} {}",
                        if unreachable { "is unreachable" } else { "was removed" }
                    ));
                status.agent_id = Some(agent_id.clone());
                status.executor_id = Some(task.executor_id.clone());
                task.status = Some(status.clone());
                if state == TaskState::Unreachable && !was_terminal {
                    framework.unreachable_tasks.insert(task_id.clone(), task.clone());
                } else {
                    framework.completed_tasks.push_back(task.clone());
                    if framework.completed_tasks.len() > self.config.max_completed_tasks_per_framework {
                        framework.completed_tasks.pop_front();
                    }
                    if !was_terminal {
                        *self.metrics.terminal.entry(state.name()).or_default() += 1;
                    }
                }
                if !was_terminal {
                    self.allocator(
                        ctx,
                        alloc::RecoverResources {
                            framework_id: framework_id.clone(),
                            agent_id: agent_id.clone(),
                            resources: task.info.resources.clone(),
                            refuse_seconds: None,
                            role: task.role.clone(),
                        },
                    );
                    self.tell_framework(ctx, framework_id, status);
                }
            }
        }
        for framework in self.frameworks.values_mut() {
            framework.executors.remove(agent_id);
        }
        self.allocator(ctx, alloc::RemoveAgent { agent_id: agent_id.clone() });
        let pids: Vec<Upid> =
            self.frameworks.values().filter(|f| f.connected).filter_map(|f| f.pid.clone()).collect();
        for pid in pids {
            ctx.send(&pid, AgentLost { agent_id: agent_id.clone() });
        }
    }

    fn mark_unreachable(&mut self, ctx: &mut ProcessContext<'_, Self>, agent_id: AgentId) {
        let since_secs = crate::task::now_secs();
        tracing::warn!(agent_id = %agent_id, "agent unreachable: no pong for too long");
        // Stop pinging it while the registry write is in flight.
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            agent.pings_missed = 0;
            agent.connected = false;
        }
        self.remove_agent(ctx, &agent_id, true, TaskReason::AgentDisconnected);
        self.unreachable_agents.insert(agent_id.clone(), since_secs);
        self.metrics.agents_unreachable += 1;
        self.persist(ctx, vec![Operation::MarkUnreachable { agent_id, since_secs }], |_, _, _| {});
    }

    /// Tasks an agent reports when it comes back, checked against what the master
    /// knows: tasks of removed frameworks are shut down, tasks already reported
    /// LOST to frameworks that are not partition-aware are killed, the rest kept.
    fn adopt_tasks(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        agent_id: &AgentId,
        pid: &Upid,
        m: &ReregisterAgent,
    ) {
        let mut shutdown: HashSet<FrameworkId> = HashSet::new();
        let reported: HashSet<_> =
            m.tasks.iter().map(|t| (t.framework_id.clone(), t.info.task_id.clone())).collect();
        // Tasks the master placed on this agent that the agent does not have.
        let missing: Vec<(FrameworkId, crate::ids::TaskId)> = self
            .agents
            .get(agent_id)
            .map(|a| {
                a.tasks
                    .iter()
                    .flat_map(|(f, ts)| ts.iter().map(move |t| (f.clone(), t.clone())))
                    .filter(|key| !reported.contains(key))
                    .collect()
            })
            .unwrap_or_default();
        for (framework_id, task_id) in missing {
            let Some(framework) = self.frameworks.get_mut(&framework_id) else { continue };
            let Some(mut task) = framework.tasks.remove(&task_id) else { continue };
            if let Some(agent) = self.agents.get_mut(agent_id) {
                if let Some(ts) = agent.tasks.get_mut(&framework_id) {
                    ts.remove(&task_id);
                }
            }
            if task.state.is_terminal() {
                continue;
            }
            let state = if framework.partition_aware() { TaskState::Dropped } else { TaskState::Lost };
            task.state = state;
            framework.completed_tasks.push_back(task.clone());
            *self.metrics.terminal.entry(state.name()).or_default() += 1;
            self.release_task_resources(ctx, &framework_id, &task);
            let mut status = TaskStatus::new(task_id, state, StatusSource::Master)
                .with_reason(TaskReason::AgentRestarted)
                .with_message("the agent came back without this task");
            status.agent_id = Some(agent_id.clone());
            self.tell_framework(ctx, &framework_id, status);
        }
        for reported_task in &m.tasks {
            let framework_id = &reported_task.framework_id;
            if self.removed_framework_ids.contains(framework_id) {
                shutdown.insert(framework_id.clone());
                continue;
            }
            if !self.frameworks.contains_key(framework_id) {
                let Some(info) = m.frameworks.iter().find(|f| f.id.as_ref() == Some(framework_id)) else {
                    shutdown.insert(framework_id.clone());
                    continue;
                };
                self.recover_framework(ctx, info.clone());
            }
            let framework = self.frameworks.get_mut(framework_id).expect("inserted above");
            let task_id = &reported_task.info.task_id;
            if framework.tasks.contains_key(task_id) {
                continue;
            }
            // Back from an unreachable agent: the task is live again.
            framework.unreachable_tasks.remove(task_id);
            let reported_lost = !framework.partition_aware()
                && framework
                    .completed_tasks
                    .iter()
                    .any(|t| &t.info.task_id == task_id && t.state == TaskState::Lost);
            if reported_lost {
                // The framework was told this task is LOST: it must not come back.
                ctx.send(
                    pid,
                    KillTask {
                        framework_id: framework_id.clone(),
                        task_id: task_id.clone(),
                        agent_id: Some(agent_id.clone()),
                    },
                );
                continue;
            }
            let mut task = reported_task.clone();
            task.info.agent_id = agent_id.clone();
            framework.tasks.insert(task_id.clone(), task.clone());
            if let Some(agent) = self.agents.get_mut(agent_id) {
                agent.tasks.entry(framework_id.clone()).or_default().insert(task_id.clone());
                if !task.state.is_terminal() {
                    agent.used += task.info.resources.clone();
                }
            }
        }
        for executor in &m.executors {
            if let Some(framework_id) = &executor.framework_id {
                if let Some(framework) = self.frameworks.get_mut(framework_id) {
                    framework
                        .executors
                        .entry(agent_id.clone())
                        .or_default()
                        .insert(executor.executor_id.clone(), executor.clone());
                }
            }
        }
        for framework_id in shutdown {
            ctx.send(pid, ShutdownFramework { framework_id });
        }
    }

    /// A framework known only from an agent's report: kept, disconnected, until its
    /// scheduler resubscribes or its failover timeout passes.
    fn recover_framework(&mut self, ctx: &mut ProcessContext<'_, Self>, info: crate::task::FrameworkInfo) {
        let Some(id) = info.id.clone() else { return };
        let timeout = std::time::Duration::from_secs_f64(info.failover_timeout_secs.max(0.0));
        let timer = ctx.delay(timeout, super::frameworks::FailoverTimeout { framework_id: id.clone() });
        self.allocator(
            ctx,
            alloc::AddFramework {
                framework_id: id.clone(),
                roles: info.effective_roles(),
                used: Vec::new(),
                active: false,
            },
        );
        let mut framework = FrameworkState::new(info, None, false, crate::task::now_secs());
        framework.failover_timer = Some(timer);
        self.frameworks.insert(id, framework);
    }

    fn used_by_framework(&self, agent_id: &AgentId) -> Vec<(FrameworkId, Resources)> {
        let mut used: HashMap<FrameworkId, Resources> = HashMap::new();
        for (framework_id, framework) in &self.frameworks {
            for task in framework.tasks.values() {
                if &task.info.agent_id == agent_id && !task.state.is_terminal() {
                    *used.entry(framework_id.clone()).or_default() += task.info.resources.clone();
                }
            }
            if let Some(executors) = framework.executors.get(agent_id) {
                for executor in executors.values() {
                    *used.entry(framework_id.clone()).or_default() += executor.resources.clone();
                }
            }
        }
        used.into_iter().collect()
    }
}

impl Handle<RegisterAgent> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: RegisterAgent) {
        if !self.serving(RegisterAgent::KIND) {
            return;
        }
        if let Some(agent_id) = self.agent_of(&from) {
            // A retry: the answer was lost.
            ctx.send(&from, AgentRegistered { agent_id, ping_interval_secs: self.ping_interval_secs() });
            return;
        }
        if self.admitting.contains(&from) {
            return;
        }
        if m.agent.hostname.trim().is_empty() {
            ctx.send(&from, ShutdownAgent { message: "an agent needs a hostname".into() });
            return;
        }
        let mut info = m.agent;
        let agent_id = AgentId(self.ids.next("S"));
        info.id = Some(agent_id.clone());
        let record = AgentRecord { info: info.clone(), pid: from.clone() };
        self.admitting.insert(from.clone());
        let version = m.version;
        self.persist(ctx, vec![Operation::AdmitAgent(record)], move |master, ctx, result| {
            master.admitting.remove(&from);
            if let Err(e) = result {
                tracing::warn!(error = %e, agent = %from, "agent not admitted");
                return;
            }
            let total = info.resources.clone();
            let id = master.insert_agent(ctx, info, from.clone(), version);
            master.registry_agents.insert(id.clone());
            tracing::info!(agent_id = %id, agent = %from, resources = %total, "agent registered");
            ctx.send(
                &from,
                AgentRegistered { agent_id: id.clone(), ping_interval_secs: master.ping_interval_secs() },
            );
            master.allocator(ctx, alloc::AddAgent { agent_id: id, total, used: Vec::new() });
        });
    }
}

impl Handle<ReregisterAgent> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ReregisterAgent) {
        if !self.serving(ReregisterAgent::KIND) {
            return;
        }
        let Some(agent_id) = m.agent.id.clone() else {
            self.metrics.invalid_senders += 1;
            ctx.send(&from, ShutdownAgent { message: "reregistration without an agent id".into() });
            return;
        };
        if self.gone_agents.contains_key(&agent_id) {
            ctx.send(&from, ShutdownAgent { message: format!("agent {agent_id} was marked gone") });
            return;
        }
        if self.admitting.contains(&from) {
            return;
        }
        let ping_interval_secs = self.ping_interval_secs();
        if let Some(agent) = self.agents.get_mut(&agent_id) {
            // Known and admitted: a reconnection or an agent restart.
            let old_pid = agent.pid.clone();
            agent.connected = true;
            agent.pings_missed = 0;
            agent.info.attributes = m.agent.attributes.clone();
            agent.version = m.version.clone();
            if old_pid != from {
                agent.pid = from.clone();
                self.agents_by_pid.remove(&old_pid);
                self.agents_by_pid.insert(from.clone(), agent_id.clone());
                ctx.unlink(&old_pid);
            }
            ctx.link(&from);
            self.adopt_tasks(ctx, &agent_id, &from, &m);
            self.allocator(ctx, alloc::SetAgentActive { agent_id: agent_id.clone(), active: true });
            tracing::info!(agent_id = %agent_id, agent = %from, "agent reregistered");
            ctx.send(&from, AgentReregistered { agent_id, ping_interval_secs });
            return;
        }
        // Unreachable, or unknown to this master (it failed over): admit it again.
        let mut info = m.agent.clone();
        info.id = Some(agent_id.clone());
        let record = AgentRecord { info: info.clone(), pid: from.clone() };
        let operation =
            if self.unreachable_agents.contains_key(&agent_id) || self.registry_agents.contains(&agent_id) {
                Operation::ReadmitAgent(record)
            } else {
                Operation::AdmitAgent(record)
            };
        self.admitting.insert(from.clone());
        self.persist(ctx, vec![operation], move |master, ctx, result| {
            master.admitting.remove(&from);
            if let Err(e) = result {
                tracing::warn!(error = %e, agent = %from, "agent not readmitted");
                return;
            }
            master.unreachable_agents.remove(&agent_id);
            master.registry_agents.insert(agent_id.clone());
            let total = info.resources.clone();
            master.insert_agent(ctx, info, from.clone(), m.version.clone());
            master.adopt_tasks(ctx, &agent_id, &from, &m);
            let used = master.used_by_framework(&agent_id);
            tracing::info!(agent_id = %agent_id, agent = %from, tasks = m.tasks.len(), "agent readmitted");
            ctx.send(&from, AgentReregistered { agent_id: agent_id.clone(), ping_interval_secs });
            master.allocator(ctx, alloc::AddAgent { agent_id, total, used });
        });
    }
}

impl Handle<Pong> for Master {
    fn handle(&mut self, _ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: Pong) {
        match self.agent_of(&from).and_then(|id| self.agents.get_mut(&id)) {
            Some(agent) => agent.pings_missed = 0,
            None => self.metrics.invalid_senders += 1,
        }
    }
}

impl Handle<PingTick> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, _m: PingTick) {
        if &from != ctx.upid() {
            return;
        }
        ctx.delay(self.config.agent_ping_timeout, PingTick {});
        let max = self.config.max_agent_ping_timeouts.max(1);
        let mut unreachable = Vec::new();
        for (agent_id, agent) in self.agents.iter_mut() {
            if agent.pings_missed >= max {
                unreachable.push(agent_id.clone());
                continue;
            }
            agent.pings_missed += 1;
            ctx.send(&agent.pid, Ping { connected: true });
        }
        for agent_id in unreachable {
            self.mark_unreachable(ctx, agent_id);
        }
    }
}

impl Handle<UnregisterAgent> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: UnregisterAgent) {
        if self.agent_of(&from).as_ref() != Some(&m.agent_id) {
            self.metrics.invalid_senders += 1;
            return;
        }
        tracing::info!(agent_id = %m.agent_id, "agent unregistered");
        self.remove_agent(ctx, &m.agent_id, false, TaskReason::AgentRemoved);
        self.registry_agents.remove(&m.agent_id);
        self.persist(ctx, vec![Operation::RemoveAgent { agent_id: m.agent_id }], |_, _, _| {});
    }
}

impl Handle<ExitedExecutor> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ExitedExecutor) {
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
            self.release_resources(ctx, &m.framework_id, &m.agent_id, &executor.resources, None);
        }
        if let Some(pid) =
            self.frameworks.get(&m.framework_id).filter(|f| f.connected).and_then(|f| f.pid.clone())
        {
            let lost = ExecutorLost {
                framework_id: m.framework_id,
                agent_id: m.agent_id,
                executor_id: m.executor_id,
                status: m.status,
            };
            ctx.send(&pid, lost);
        }
    }
}

impl Handle<ExecutorToFrameworkMessage> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: ExecutorToFrameworkMessage) {
        if self.agent_of(&from).as_ref() != Some(&m.agent_id) {
            self.metrics.invalid_senders += 1;
            return;
        }
        if let Some(pid) =
            self.frameworks.get(&m.framework_id).filter(|f| f.connected).and_then(|f| f.pid.clone())
        {
            ctx.send(&pid, m);
        }
    }
}
