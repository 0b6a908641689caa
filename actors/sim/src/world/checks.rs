//! Quiescence: once the faults stop, the cluster must settle (a leader serves,
//! every agent is registered, every framework is done), and then the books must
//! balance: every launched task has a final state, nothing told final runs, the
//! master's and the allocator's accounts agree, the master's view is the agents'.

use keel_core::agent;
use keel_core::master::Phase;
use keel_proto::ids::{FrameworkId, TaskId};
use keel_proto::resources::Resources;
use keel_proto::task::TaskState;

use super::{names, World};

impl World {
    pub(super) fn settled(&self) -> bool {
        self.schedulers.iter().all(|s| !s.framework.busy())
            && self.agents.iter().all(|a| a.containers.values().all(|c| !c.running))
            && self.masters.iter().all(|m| m.paused_since.is_none())
            && self.leader().is_some_and(|(m, _)| {
                m.phase() == Phase::Serving
                    && m.agents().len() == self.agents.len()
                    && m.agents().values().all(|a| a.active)
                    && m.frameworks().values().all(|f| f.tasks.is_empty())
            })
            && self.agents.iter().all(|a| {
                a.core.as_ref().is_some_and(|c| {
                    c.connection() == agent::Connection::Registered
                        && c.master() == &self.masters[self.election.leader.map_or(0, |(k, _)| k)].upid
                        && c.frameworks().values().all(|f| f.executors.values().all(|e| e.tasks.is_empty()))
                })
            })
    }

    pub(super) fn settled_checks(&mut self) {
        if self.violations.iter().any(|v| v.invariant == names::NO_PANIC) {
            return;
        }
        if !self.settled() {
            let detail = self.why_unsettled();
            self.violation(names::SETTLES, detail);
        }
        // Every launched task of a framework that was not removed has a final state.
        let mut without = Vec::new();
        for node in &self.schedulers {
            let framework = &node.framework;
            if framework.removed {
                continue;
            }
            if let Some((task_id, _)) = framework.tasks.iter().find(|(_, t)| t.final_state.is_none()) {
                without.push(format!("{} never learned the final state of {task_id}", framework.name));
            }
        }
        if let Some(detail) = without.into_iter().next() {
            self.violation(names::TASK_WITHOUT_FINAL_STATE, detail);
        }
        // Nothing told final (or of a removed framework) still runs.
        let mut running = Vec::new();
        for (i, node) in self.agents.iter().enumerate() {
            for c in node.containers.values().filter(|c| c.running) {
                running.push((i, c.framework_id.clone(), c.task_id.clone()));
            }
        }
        for (i, framework_id, task_id) in running {
            let told =
                self.ledger.tasks.get(&(framework_id.clone(), task_id.clone())).and_then(|r| r.told_final);
            if let Some((state, _)) = told {
                let detail = format!(
                    "task {task_id} of {framework_id} runs on agent {i} though {} was told",
                    state.name()
                );
                self.violation(names::TASK_RAN_AFTER_FINAL, detail);
            }
        }
        self.check_books();
    }

    fn why_unsettled(&self) -> String {
        let mut why = Vec::new();
        for node in &self.schedulers {
            if node.framework.busy() {
                let unfinished = node.framework.tasks.values().filter(|t| t.final_state.is_none()).count();
                let (pending, launched, finished, gave_up) = node.framework.jobs_summary();
                why.push(format!(
                    "{} is not done ({unfinished} tasks without a final state; jobs: {pending} pending, {launched} launched, {finished} finished, {gave_up} given up; scheduler {})",
                    node.framework.name,
                    match &node.driver {
                        Some(d) => format!("up, driver connected={} id={:?}", d.connected(), d.framework_id()),
                        None => "down".to_string(),
                    }
                ));
                if let Some((m, _)) = self.leader() {
                    for (id, f) in m.frameworks() {
                        why.push(format!(
                            "master has {id} pid={:?} connected={} active={} removing={}",
                            f.pid.as_ref().map(|p| p.to_string()),
                            f.connected,
                            f.active,
                            f.removing
                        ));
                    }
                }
            }
        }
        match self.leader().map(|(m, _)| m) {
            None => why.push(format!("no master leads (election: {:?})", self.election.leader)),
            Some(m) if m.phase() != Phase::Serving => why.push(format!("the master is {:?}", m.phase())),
            Some(m) => {
                if m.agents().len() != self.agents.len() {
                    why.push(format!("{} of {} agents registered", m.agents().len(), self.agents.len()));
                }
                for (id, a) in m.agents() {
                    if !a.active {
                        why.push(format!("agent {id} is inactive"));
                    }
                }
                for (id, f) in m.frameworks() {
                    if !f.tasks.is_empty() {
                        why.push(format!("framework {id} still has {} tasks at the master", f.tasks.len()));
                    }
                }
            }
        }
        for (i, a) in self.agents.iter().enumerate() {
            let running = a.containers.values().filter(|c| c.running).count();
            if running > 0 {
                why.push(format!("agent {i} still runs {running} containers"));
            }
            match &a.core {
                None => why.push(format!("agent {i} is down")),
                Some(c) if c.connection() != agent::Connection::Registered => {
                    why.push(format!("agent {i} is {:?}", c.connection()))
                }
                Some(_) => {}
            }
        }
        why.join("; ")
    }

    /// The master's and the allocator's books, and the agents' own, agree.
    fn check_books(&mut self) {
        let Some((master, allocator)) = self.leader() else { return };
        let mut problems = Vec::new();
        let mut holding = Vec::new();
        for (agent_id, agent) in master.agents() {
            let Some(books) = allocator.core().agent_accounting(agent_id) else {
                problems.push(format!("the allocator does not know agent {agent_id}"));
                continue;
            };
            let used = master.used_on(agent_id);
            let offered = master.offered_on(agent_id);
            let master_allocated = used.clone() + offered.clone();
            if !same(&books.allocated, &master_allocated) {
                problems.push(format!(
                    "agent {agent_id}: the allocator has {} allocated, the master {} used + {} offered",
                    books.allocated, used, offered
                ));
            }
            if !same(&books.held, &books.allocated)
                || !same(&(books.available.clone() + books.allocated.clone()), &books.total)
            {
                problems.push(format!("agent {agent_id}: allocator books do not add up ({books:?})"));
            }
            if !same(&books.total, &agent.info.resources) {
                problems.push(format!(
                    "agent {agent_id}: totals differ ({} vs {})",
                    books.total, agent.info.resources
                ));
            }
            if !used.is_empty() {
                holding.push(format!("agent {agent_id} holds {used} for terminal or finished work"));
            }
        }
        if let Some(first) = problems.into_iter().next() {
            self.violation(names::RESOURCES_CONSERVED, first);
        }
        if self.schedulers.iter().all(|s| !s.framework.busy()) {
            if let Some(first) = holding.into_iter().next() {
                self.violation(names::TERMINAL_TASKS_HOLD_NOTHING, first);
            }
        }
        // The master's view of each agent's live tasks is the agent's.
        let Some((master, _)) = self.leader() else { return };
        let mut diverged = None;
        for node in &self.agents {
            let Some(core) = node.core.as_ref() else { continue };
            let Some(agent_id) = core.agent_id() else { continue };
            let at_agent: std::collections::BTreeSet<(FrameworkId, TaskId, TaskState)> = core
                .frameworks()
                .iter()
                .flat_map(|(f, fw)| {
                    fw.executors.values().flat_map(move |e| {
                        e.tasks.iter().map(move |(t, task)| (f.clone(), t.clone(), task.state))
                    })
                })
                .collect();
            let at_master: std::collections::BTreeSet<(FrameworkId, TaskId, TaskState)> = master
                .frameworks()
                .iter()
                .flat_map(|(f, fw)| {
                    fw.tasks
                        .values()
                        .filter(|t| &t.info.agent_id == agent_id)
                        .map(move |t| (f.clone(), t.info.task_id.clone(), t.state))
                })
                .collect();
            if at_agent != at_master && diverged.is_none() {
                diverged =
                    Some(format!("agent {agent_id}: the agent has {at_agent:?}, the master {at_master:?}"));
            }
        }
        if let Some(detail) = diverged {
            self.violation(names::VIEWS_CONVERGE, detail);
        }
    }
}

/// Equal resources, up to the fixed-point rounding of scalars.
fn same(a: &Resources, b: &Resources) -> bool {
    a.contains(b) && b.contains(a)
}
