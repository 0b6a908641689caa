//! Framework lifecycle: subscribe and resubscribe (failover), disconnection with a
//! failover timeout, teardown and removal.

use std::collections::HashSet;
use std::time::Duration;

use keel_kernel::{Handle, Message, ProcessContext, Upid};
use serde::{Deserialize, Serialize};

use super::state::FrameworkState;
use super::Master;
use crate::allocator::messages as alloc;
use crate::ids::FrameworkId;
use crate::messages::agent::{ShutdownFramework, UpdateFramework};
use crate::messages::scheduler::*;
use crate::registry::{FrameworkRecord, Operation};
use crate::resources::validate_role;
use crate::task::{FrameworkInfo, Task, TaskState};

/// The failover timeout of a disconnected framework expired.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct FailoverTimeout {
    pub framework_id: FrameworkId,
}
keel_kernel::message!(FailoverTimeout, "keel.master.FailoverTimeout");

fn validate_framework(info: &FrameworkInfo) -> Result<(), String> {
    if info.name.trim().is_empty() {
        return Err("the framework needs a name".into());
    }
    if !info.failover_timeout_secs.is_finite() || info.failover_timeout_secs < 0.0 {
        return Err(format!(
            "failover_timeout_secs must be finite and >= 0, not {}",
            info.failover_timeout_secs
        ));
    }
    for role in info.effective_roles() {
        if role != "*" {
            validate_role(&role).map_err(|e| format!("invalid role {role:?}: {e}"))?;
        }
    }
    Ok(())
}

impl Handle<SubscribeFramework> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: SubscribeFramework) {
        if !self.serving(SubscribeFramework::KIND) {
            return;
        }
        if let Err(message) = validate_framework(&m.framework) {
            ctx.send(&from, FrameworkError { message });
            return;
        }
        match m.framework.id.clone() {
            None => self.subscribe_new(ctx, from, m.framework),
            Some(id) => self.resubscribe(ctx, from, id, m.framework),
        }
    }
}

impl Master {
    fn subscribe_new(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, mut info: FrameworkInfo) {
        // A retried subscription from the same scheduler gets the same answer.
        if let Some((id, framework)) = self.frameworks.iter().find(|(_, f)| f.pid.as_ref() == Some(&from)) {
            if framework.connected {
                ctx.send(&from, FrameworkSubscribed { framework_id: id.clone(), master: ctx.upid().clone() });
            }
            return;
        }
        let id = FrameworkId(self.ids.next("F"));
        info.id = Some(id.clone());
        self.add_framework(ctx, from, info);
    }

    fn resubscribe(
        &mut self,
        ctx: &mut ProcessContext<'_, Self>,
        from: Upid,
        id: FrameworkId,
        mut info: FrameworkInfo,
    ) {
        if self.removed_framework_ids.contains(&id) {
            ctx.send(&from, FrameworkError { message: format!("framework {id} has been removed") });
            return;
        }
        info.id = Some(id.clone());
        let Some(framework) = self.frameworks.get_mut(&id) else {
            // Unknown to this master (e.g. it restarted): take the framework back.
            self.add_framework(ctx, from, info);
            return;
        };
        if let Some(old) = framework.pid.clone().filter(|old| old != &from) {
            if framework.connected {
                ctx.send(&old, FrameworkError { message: "framework failed over to a new scheduler".into() });
            }
            ctx.unlink(&old);
        }
        if let Some(timer) = framework.failover_timer.take() {
            ctx.cancel(timer);
        }
        framework.pid = Some(from.clone());
        framework.connected = true;
        framework.info.failover_timeout_secs = info.failover_timeout_secs;
        framework.info.name = info.name.clone();
        framework.info.capabilities = info.capabilities.clone();
        let agents: HashSet<_> = framework.tasks.values().map(|t| t.info.agent_id.clone()).collect();
        let record =
            FrameworkRecord { info: framework.info.clone(), registered_secs: framework.registered_secs };
        ctx.link(&from);
        for agent_id in agents {
            if let Some(agent) = self.agents.get(&agent_id) {
                ctx.send(&agent.pid, UpdateFramework { framework_id: id.clone(), scheduler: from.clone() });
            }
        }
        self.allocator(ctx, alloc::SetFrameworkActive { framework_id: id.clone(), active: true });
        self.persist(ctx, vec![Operation::PutFramework(record)], |_, _, _| {});
        tracing::info!(framework_id = %id, scheduler = %from, "framework resubscribed");
        ctx.send(&from, FrameworkSubscribed { framework_id: id, master: ctx.upid().clone() });
    }

    /// Records a new (or recovered) framework, persists it, then answers.
    fn add_framework(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, info: FrameworkInfo) {
        let id = info.id.clone().expect("caller sets the id");
        let registered_secs = crate::task::now_secs();
        let record = FrameworkRecord { info: info.clone(), registered_secs };
        self.frameworks
            .insert(id.clone(), FrameworkState::new(info.clone(), Some(from.clone()), true, registered_secs));
        ctx.link(&from);
        self.persist(ctx, vec![Operation::PutFramework(record)], move |master, ctx, result| {
            if let Err(e) = result {
                master.frameworks.remove(&id);
                ctx.send(&from, FrameworkError { message: format!("cannot record the framework: {e}") });
                return;
            }
            if !master.frameworks.contains_key(&id) {
                return;
            }
            tracing::info!(framework_id = %id, name = %info.name, scheduler = %from, "framework subscribed");
            master.allocator(
                ctx,
                alloc::AddFramework {
                    framework_id: id.clone(),
                    roles: info.effective_roles(),
                    used: Vec::new(),
                    active: true,
                },
            );
            ctx.send(&from, FrameworkSubscribed { framework_id: id, master: ctx.upid().clone() });
        });
    }

    /// The scheduler went away: no offers, and a failover timer starts.
    pub(super) fn framework_disconnected(&mut self, ctx: &mut ProcessContext<'_, Self>, id: &FrameworkId) {
        let Some(framework) = self.frameworks.get_mut(id) else { return };
        if !framework.connected {
            return;
        }
        framework.connected = false;
        let timeout = Duration::from_secs_f64(framework.info.failover_timeout_secs);
        let offers: Vec<_> = framework.offers.iter().cloned().collect();
        tracing::info!(framework_id = %id, failover_timeout = ?timeout, "framework disconnected");
        self.allocator(ctx, alloc::SetFrameworkActive { framework_id: id.clone(), active: false });
        for offer_id in offers {
            self.remove_offer(ctx, &offer_id, true, None);
        }
        if timeout.is_zero() {
            self.remove_framework(ctx, id);
            return;
        }
        let timer = ctx.delay(timeout, FailoverTimeout { framework_id: id.clone() });
        if let Some(framework) = self.frameworks.get_mut(id) {
            framework.failover_timer = Some(timer);
        }
    }

    /// Ends a framework: its executors are shut down, its resources recovered.
    pub(super) fn remove_framework(&mut self, ctx: &mut ProcessContext<'_, Self>, id: &FrameworkId) {
        let offers: Vec<_> =
            self.frameworks.get(id).map(|f| f.offers.iter().cloned().collect()).unwrap_or_default();
        for offer_id in offers {
            self.remove_offer(ctx, &offer_id, false, None);
        }
        let Some(mut framework) = self.frameworks.remove(id) else { return };
        if let Some(timer) = framework.failover_timer.take() {
            ctx.cancel(timer);
        }
        if let Some(pid) = &framework.pid {
            ctx.unlink(pid);
        }
        let mut agents: HashSet<_> = framework.executors.keys().cloned().collect();
        let mut ended: Vec<Task> = Vec::new();
        for (_, mut task) in framework.tasks.drain() {
            agents.insert(task.info.agent_id.clone());
            if !task.state.is_terminal() {
                self.release_task_resources(ctx, id, &task);
                task.state = TaskState::Killed;
            }
            if let Some(agent) = self.agents.get_mut(&task.info.agent_id) {
                if let Some(tasks) = agent.tasks.get_mut(id) {
                    tasks.remove(&task.info.task_id);
                }
            }
            ended.push(task);
        }
        for (agent_id, executors) in framework.executors.drain() {
            for executor in executors.into_values() {
                self.release_resources(ctx, id, &agent_id, &executor.resources, None);
            }
        }
        for agent_id in agents {
            if let Some(agent) = self.agents.get_mut(&agent_id) {
                agent.tasks.remove(id);
                ctx.send(&agent.pid, ShutdownFramework { framework_id: id.clone() });
            }
        }
        self.allocator(ctx, alloc::RemoveFramework { framework_id: id.clone() });
        self.metrics.frameworks_removed += 1;
        ended.extend(framework.completed_tasks.drain(..));
        ended.extend(framework.unreachable_tasks.drain().map(|(_, t)| t));
        self.removed_framework_ids.insert(id.clone());
        self.completed_frameworks.push_back((framework.info, ended));
        while self.completed_frameworks.len() > self.config.max_completed_frameworks {
            self.completed_frameworks.pop_front();
        }
        self.persist(ctx, vec![Operation::RemoveFramework { framework_id: id.clone() }], |_, _, _| {});
        tracing::info!(framework_id = %id, "framework removed");
    }

    /// Looks up the framework a scheduler call names and checks the sender is its
    /// scheduler; answers unknown frameworks with an error and counts the rest.
    pub(super) fn caller(&mut self, ctx: &ProcessContext<'_, Self>, from: &Upid, id: &FrameworkId) -> bool {
        match self.frameworks.get(id) {
            Some(framework) if framework.pid.as_ref() == Some(from) => true,
            Some(_) => {
                self.metrics.invalid_senders += 1;
                tracing::warn!(framework_id = %id, %from, "ignoring a call from a scheduler that is not the framework's");
                false
            }
            None => {
                self.metrics.unknown_framework_calls += 1;
                ctx.send(from, FrameworkError { message: format!("framework {id} is not subscribed") });
                false
            }
        }
    }
}

impl Handle<FailoverTimeout> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: FailoverTimeout) {
        if &from != ctx.upid() {
            return;
        }
        let expired = self.frameworks.get(&m.framework_id).is_some_and(|f| !f.connected);
        if expired {
            tracing::info!(framework_id = %m.framework_id, "failover timeout expired");
            self.remove_framework(ctx, &m.framework_id);
        }
    }
}

impl Handle<TeardownFramework> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: TeardownFramework) {
        if self.serving(TeardownFramework::KIND) && self.caller(ctx, &from, &m.framework_id) {
            self.remove_framework(ctx, &m.framework_id);
        }
    }
}

impl Handle<DeactivateFramework> for Master {
    fn handle(&mut self, ctx: &mut ProcessContext<'_, Self>, from: Upid, m: DeactivateFramework) {
        if self.serving(DeactivateFramework::KIND) && self.caller(ctx, &from, &m.framework_id) {
            self.framework_disconnected(ctx, &m.framework_id);
        }
    }
}
