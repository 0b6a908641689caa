//! Framework lifecycle: subscribe and resubscribe (failover to a new scheduler),
//! disconnection and deactivation with a failover timeout, teardown and removal.
//! A framework is recorded before its scheduler is told it is subscribed, and its
//! removal is recorded before anything of it is torn down: a removed framework
//! never comes back, across master restarts too.

use std::collections::BTreeSet;

use keel_message::Upid;
use keel_proto::ids::FrameworkId;
use keel_proto::messages::agent::{ShutdownExecutor, ShutdownFramework, UpdateFramework};
use keel_proto::messages::scheduler::*;
use keel_proto::registry::{FrameworkRecord, Operation};
use keel_proto::resources::validate_role;
use keel_proto::task::{FrameworkInfo, Task, TaskState};

use super::state::FrameworkState;
use super::{Master, Out, Pending, Timer};
use crate::allocator::messages as alloc;

/// Why a framework description is refused.
fn validate_framework(info: &FrameworkInfo) -> Result<(), String> {
    if info.name.trim().is_empty() {
        return Err("the framework needs a name".into());
    }
    if info.name.len() > 1024 {
        return Err("the framework's name is longer than 1024 bytes".into());
    }
    if keel_proto::time::duration_from_secs(info.failover_timeout_secs).is_none() {
        return Err(format!(
            "failover_timeout_secs must be between 0 and a year, not {}",
            info.failover_timeout_secs
        ));
    }
    if info.roles.len() > 64 {
        return Err(format!("a framework has at most 64 roles, not {}", info.roles.len()));
    }
    for role in info.effective_roles() {
        if role != "*" {
            validate_role(&role).map_err(|e| format!("invalid role {role:?}: {e}"))?;
        }
    }
    if let Some(id) = &info.id {
        if id.as_str().is_empty() || id.as_str().len() > 255 {
            return Err("a framework id is 1 to 255 characters".into());
        }
    }
    Ok(())
}

impl Master {
    pub(super) fn subscribe(&mut self, out: &mut Out, from: Upid, m: SubscribeFramework) {
        if let Err(message) = validate_framework(&m.framework) {
            out.send(&from, FrameworkError { message });
            return;
        }
        match m.framework.id.clone() {
            None => self.subscribe_new(out, from, m.framework, m.subscription),
            Some(id) => self.resubscribe(out, from, id, m.framework, m.subscription),
        }
    }

    fn subscribe_new(&mut self, out: &mut Out, from: Upid, mut info: FrameworkInfo, subscription: u64) {
        if self.adding_frameworks.contains_key(&from) {
            return;
        }
        // A retry from the same scheduler (its answer was lost) gets the same
        // framework, reconnected if its connection broke meanwhile.
        let existing = self
            .frameworks
            .iter()
            .find(|(_, f)| f.pid.as_ref() == Some(&from) && !f.removing)
            .map(|(id, _)| id.clone());
        if let Some(id) = existing {
            if self.reconnect_framework(out, &id, &from) {
                out.allocator(alloc::SetFrameworkActive { framework_id: id.clone(), active: true });
            }
            let master = self.config.upid.clone();
            out.send(
                &from,
                FrameworkSubscribed { framework_id: id, master, subscription, epoch: self.term.0 },
            );
            return;
        }
        let id = FrameworkId(self.ids.next("F"));
        info.id = Some(id.clone());
        self.add_framework(out, from, info, subscription);
    }

    /// Persists a new framework (or one this master does not know), then adds it.
    fn add_framework(&mut self, out: &mut Out, from: Upid, info: FrameworkInfo, subscription: u64) {
        let Some(id) = info.id.clone() else { return };
        self.adding_frameworks.insert(from.clone(), id);
        let record = FrameworkRecord { info: info.clone(), registered_secs: self.now };
        let pending = Pending::AddFramework { pid: from, info, subscription };
        self.persist(out, vec![Operation::PutFramework(record)], pending);
    }

    pub(super) fn framework_added(
        &mut self,
        out: &mut Out,
        pid: Upid,
        info: FrameworkInfo,
        subscription: u64,
    ) {
        self.adding_frameworks.remove(&pid);
        let Some(id) = info.id.clone() else { return };
        if self.frameworks.contains_key(&id) || self.removed_frameworks.contains(&id) {
            return;
        }
        tracing::info!(framework_id = %id, name = %info.name, scheduler = %pid, "framework subscribed");
        self.frameworks
            .insert(id.clone(), FrameworkState::new(info.clone(), Some(pid.clone()), true, self.now));
        out.link(&pid);
        out.allocator(alloc::AddFramework {
            framework_id: id.clone(),
            roles: info.effective_roles(),
            used: Vec::new(),
            active: true,
        });
        let master = self.config.upid.clone();
        out.send(&pid, FrameworkSubscribed { framework_id: id, master, subscription, epoch: self.term.0 });
    }

    /// The framework's scheduler is `from` and connected again; true if the
    /// allocator must be told it is active again (the caller decides when: not
    /// before the scheduler is told it is subscribed, so no offer precedes that).
    fn reconnect_framework(&mut self, out: &mut Out, id: &FrameworkId, from: &Upid) -> bool {
        let Some(framework) = self.frameworks.get_mut(id) else { return false };
        let timer = framework.failover_timer.take();
        let reactivate = !framework.active;
        framework.pid = Some(from.clone());
        framework.connected = true;
        framework.active = true;
        out.link(from);
        if let Some(timer) = timer {
            self.cancel_timer(out, timer);
        }
        reactivate
    }

    fn resubscribe(
        &mut self,
        out: &mut Out,
        from: Upid,
        id: FrameworkId,
        info: FrameworkInfo,
        subscription: u64,
    ) {
        if self.removed_frameworks.contains(&id) {
            out.send(&from, FrameworkError { message: format!("framework {id} has been removed") });
            return;
        }
        let Some(framework) = self.frameworks.get_mut(&id) else {
            if !self.adding_frameworks.contains_key(&from) {
                // Unknown to this master (its registry did not survive): take it back.
                self.add_framework(out, from, info, subscription);
            }
            return;
        };
        if framework.removing {
            out.send(&from, FrameworkError { message: format!("framework {id} is being removed") });
            return;
        }
        if let Some(old) = framework.pid.clone().filter(|old| old != &from) {
            if framework.connected {
                out.send(&old, FrameworkError { message: "framework failed over to a new scheduler".into() });
            }
            out.unlink(&old);
        }
        framework.info.failover_timeout_secs = info.failover_timeout_secs;
        framework.info.name = info.name.clone();
        framework.info.capabilities = info.capabilities.clone();
        framework.info.checkpoint = info.checkpoint;
        let record =
            FrameworkRecord { info: framework.info.clone(), registered_secs: framework.registered_secs };
        let agents: BTreeSet<_> = framework.tasks.values().map(|t| t.info.agent_id.clone()).collect();
        let reactivate = self.reconnect_framework(out, &id, &from);
        for agent_id in agents {
            if let Some(agent) = self.agents.get(&agent_id) {
                out.send(&agent.pid, UpdateFramework { framework_id: id.clone(), scheduler: from.clone() });
            }
        }
        tracing::info!(framework_id = %id, scheduler = %from, "framework resubscribed");
        let pending = Pending::Resubscribe { pid: from, framework_id: id, subscription, reactivate };
        self.persist(out, vec![Operation::PutFramework(record)], pending);
    }

    /// The scheduler's connection broke: no offers, and the failover timer starts.
    pub(super) fn framework_disconnected(&mut self, out: &mut Out, id: &FrameworkId) {
        let Some(framework) = self.frameworks.get_mut(id) else { return };
        if !framework.connected {
            return;
        }
        framework.connected = false;
        tracing::info!(framework_id = %id, "framework disconnected");
        self.framework_inactive(out, id);
    }

    /// No more offers for the framework; it is removed unless a scheduler comes
    /// back within its failover timeout.
    fn framework_inactive(&mut self, out: &mut Out, id: &FrameworkId) {
        let Some(framework) = self.frameworks.get_mut(id) else { return };
        let was_active = std::mem::replace(&mut framework.active, false);
        let offers: Vec<_> = framework.offers.iter().cloned().collect();
        let timeout = keel_proto::time::clamp_secs(framework.info.failover_timeout_secs);
        let timer_running = framework.failover_timer.is_some();
        if was_active {
            out.allocator(alloc::SetFrameworkActive { framework_id: id.clone(), active: false });
        }
        for offer_id in offers {
            self.remove_offer(out, &offer_id, true, None);
        }
        if timer_running || framework_removing(self, id) {
            return;
        }
        if timeout.is_zero() {
            self.remove_framework(out, id);
            return;
        }
        let timer = self.set_timer(out, timeout, Timer::Failover(id.clone()));
        if let Some(framework) = self.frameworks.get_mut(id) {
            framework.failover_timer = Some(timer);
        }
    }

    pub(super) fn failover_expired(&mut self, out: &mut Out, id: &FrameworkId) {
        let Some(framework) = self.frameworks.get_mut(id) else { return };
        framework.failover_timer = None;
        if !framework.active {
            tracing::info!(framework_id = %id, "failover timeout expired");
            self.remove_framework(out, id);
        }
    }

    /// Starts removing a framework: no more offers or calls; persisted, then torn down.
    pub(super) fn remove_framework(&mut self, out: &mut Out, id: &FrameworkId) {
        let Some(framework) = self.frameworks.get_mut(id) else { return };
        if framework.removing {
            return;
        }
        framework.removing = true;
        let was_active = std::mem::replace(&mut framework.active, false);
        let offers: Vec<_> = framework.offers.iter().cloned().collect();
        if was_active {
            out.allocator(alloc::SetFrameworkActive { framework_id: id.clone(), active: false });
        }
        for offer_id in offers {
            self.remove_offer(out, &offer_id, false, None);
        }
        let operation = Operation::RemoveFramework { framework_id: id.clone(), removed_secs: self.now };
        self.persist(out, vec![operation], Pending::RemoveFramework { framework_id: id.clone() });
    }

    /// A framework's removal is durable: its executors are shut down, its resources
    /// recovered.
    pub(super) fn framework_removed(&mut self, out: &mut Out, id: &FrameworkId) {
        let Some(mut framework) = self.frameworks.remove(id) else { return };
        if let Some(timer) = framework.failover_timer.take() {
            self.cancel_timer(out, timer);
        }
        if let Some(pid) = &framework.pid {
            out.unlink(pid);
        }
        let mut agents: BTreeSet<_> = framework.executors.keys().cloned().collect();
        let mut ended: Vec<Task> = Vec::new();
        for (_, mut task) in std::mem::take(&mut framework.tasks) {
            agents.insert(task.info.agent_id.clone());
            if !task.state.is_terminal() {
                self.release_task(out, id, &task);
                task.state = TaskState::Killed;
            }
            if let Some(tasks) = self.agents.get_mut(&task.info.agent_id).and_then(|a| a.tasks.get_mut(id)) {
                tasks.remove(&task.info.task_id);
            }
            ended.push(task);
        }
        for (agent_id, executors) in std::mem::take(&mut framework.executors) {
            for executor in executors.into_values() {
                self.release(out, id, &agent_id, &executor.resources, None);
            }
        }
        // Tasks being killed after a LOST hold resources of this framework too.
        let mut zombie_releases = Vec::new();
        for (agent_id, agent) in self.agents.iter_mut() {
            let keys: Vec<_> = agent.zombies.keys().filter(|(f, _)| f == id).cloned().collect();
            for key in keys {
                if let Some(resources) = agent.zombies.remove(&key) {
                    agents.insert(agent_id.clone());
                    zombie_releases.push((agent_id.clone(), resources));
                }
            }
        }
        for (agent_id, resources) in zombie_releases {
            self.release(out, id, &agent_id, &resources, None);
        }
        for agent_id in agents {
            if let Some(agent) = self.agents.get_mut(&agent_id) {
                agent.tasks.remove(id);
                out.send(&agent.pid, ShutdownFramework { framework_id: id.clone() });
            }
        }
        out.allocator(alloc::RemoveFramework { framework_id: id.clone() });
        self.metrics.frameworks_removed += 1;
        ended.extend(framework.completed_tasks.drain(..));
        ended.extend(std::mem::take(&mut framework.unreachable_tasks).into_values());
        self.removed_frameworks.insert(id.clone());
        self.completed_frameworks.push_back((framework.info, ended));
        while self.completed_frameworks.len() > self.config.max_completed_frameworks {
            self.completed_frameworks.pop_front();
        }
        tracing::info!(framework_id = %id, "framework removed");
    }

    /// Whether `from` is the scheduler of framework `id`; answers an unknown
    /// framework with an error and counts the rest.
    pub(super) fn caller(&mut self, out: &mut Out, from: &Upid, id: &FrameworkId) -> bool {
        match self.frameworks.get(id) {
            Some(framework) if framework.pid.as_ref() == Some(from) && !framework.removing => true,
            Some(_) => {
                self.metrics.invalid_senders += 1;
                tracing::debug!(framework_id = %id, %from, "ignoring a call from a scheduler that is not the framework's");
                false
            }
            None => {
                self.metrics.unknown_framework_calls += 1;
                let message = if self.removed_frameworks.contains(id) {
                    format!("framework {id} has been removed")
                } else {
                    format!("framework {id} is not subscribed")
                };
                out.send(from, FrameworkError { message });
                false
            }
        }
    }

    pub(super) fn teardown(&mut self, out: &mut Out, from: Upid, m: TeardownFramework) {
        if self.caller(out, &from, &m.framework_id) {
            tracing::info!(framework_id = %m.framework_id, "framework tears down");
            self.remove_framework(out, &m.framework_id);
        }
    }

    /// A scheduler asks for one of its executors to be shut down (Mesos's SHUTDOWN
    /// call): the agents running it are told; its tasks end as the agent decides.
    pub(super) fn shutdown_executor(&mut self, out: &mut Out, from: Upid, m: ShutdownExecutor) {
        if !self.caller(out, &from, &m.framework_id) {
            return;
        }
        let Some(framework) = self.frameworks.get(&m.framework_id) else { return };
        let agents: Vec<Upid> = framework
            .executors
            .iter()
            .filter(|(_, executors)| executors.contains_key(&m.executor_id))
            .filter_map(|(agent_id, _)| self.agents.get(agent_id).map(|a| a.pid.clone()))
            .collect();
        for pid in agents {
            out.send(&pid, m.clone());
        }
    }

    pub(super) fn deactivate(&mut self, out: &mut Out, from: Upid, m: DeactivateFramework) {
        if self.caller(out, &from, &m.framework_id) {
            tracing::info!(framework_id = %m.framework_id, "framework deactivated");
            self.framework_inactive(out, &m.framework_id);
        }
    }
}

fn framework_removing(master: &Master, id: &FrameworkId) -> bool {
    master.frameworks.get(id).is_some_and(|f| f.removing)
}
