//! One allocation run, after Mesos's `__allocate`: stage 1 visits every agent for the
//! roles still below their quota guarantee, stage 2 visits every agent for everyone,
//! holding back the unreserved resources outstanding guarantees still need. At each
//! agent the DRF order is walked until a framework role that may take its resources
//! (not filtered, within its limit, above the minimum size) is found; it gets the
//! agent's whole remaining resources usable by its role (cut by quota), and the walk
//! starts again while something is left.

use std::borrow::Cow;
use std::collections::HashSet;

use keel_proto::ids::AgentId;
use keel_proto::resources::{is_self_or_ancestor, Resources};

use super::explain::Notes;
use super::messages::Allocation;
use super::quantities::Quantities;
use super::quota::{chop, limit_room, Headroom};
use super::sorter::{Flow, Order, Step};
use super::{Agent, AllocatorCore, ClientRef, RunSummary};

/// The most allocations made on one agent in one stage (a bound; a few in practice).
const MAX_ALLOCATIONS_PER_AGENT: usize = 1024;

/// The two stages of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Roles below their quota guarantee.
    Guarantees,
    /// Everyone, within the headroom.
    Fair,
}

/// An order change the walk asks for (applied after it).
#[derive(Debug, Clone, Copy)]
enum Removal {
    Own(u32),
    Block(u32),
}

/// The visitor of one walk over the order at one agent.
struct Picker<'a> {
    core: &'a AllocatorCore,
    headroom: &'a Headroom,
    agent: &'a Agent,
    a: u32,
    stage: Stage,
    now: f64,
    /// Whether the agent's free unreserved resources reach the minimum size.
    unreserved_ok: bool,
    /// Roles with free reservations on the agent (only when `!unreserved_ok`).
    reserved_roles: Vec<&'a str>,
    offer: Option<Cow<'a, Resources>>,
    notes: &'a mut Notes,
    removals: Vec<Removal>,
    chosen: Option<ClientRef>,
}

impl<'a> Picker<'a> {
    fn step(&mut self, step: Step) -> Flow {
        match step {
            Step::Subtree(r) => self.subtree(r),
            Step::Role(r) => self.role(r),
            Step::Client(c) => self.client(c),
        }
    }

    fn subtree(&mut self, r: u32) -> Flow {
        let node = self.core.roles.node(r);
        if self.core.limit_exhausted(node) {
            self.notes.role(r).at_limit = true;
            self.removals.push(Removal::Block(r));
            return Flow::Skip;
        }
        if !self.unreserved_ok
            && !self
                .reserved_roles
                .iter()
                .any(|&rr| is_self_or_ancestor(rr, &node.name) || is_self_or_ancestor(&node.name, rr))
        {
            return Flow::Skip;
        }
        Flow::Go
    }

    fn role(&mut self, r: u32) -> Flow {
        self.offer = None;
        let core = self.core;
        let node = core.roles.node(r);
        if !self.unreserved_ok && !self.reserved_roles.iter().any(|&rr| is_self_or_ancestor(rr, &node.name)) {
            return Flow::Skip;
        }
        let room = if self.headroom.guarantees {
            self.headroom.guarantee_room(&core.roles, r)
        } else {
            Quantities::default()
        };
        if self.stage == Stage::Guarantees && room.is_zero() {
            self.removals.push(Removal::Own(r));
            return Flow::Skip;
        }
        let base: Cow<'a, Resources> = if self.agent.available_reserved {
            Cow::Owned(self.agent.available.allocatable_to(&node.name))
        } else {
            Cow::Borrowed(&self.agent.available)
        };
        let limit = if self.headroom.limits { limit_room(&core.roles, &core.names, r) } else { None };
        let unreserved = self.headroom.unreserved_cap(&room);
        let offer = match chop(&base, &core.names, limit.as_deref(), unreserved.as_deref()) {
            Some(chopped) => Cow::Owned(chopped),
            None => base.clone(),
        };
        if self.stage == Stage::Guarantees {
            let towards_guarantee = offer.iter().any(|entry| {
                !entry.reservation().is_unreserved()
                    || (entry.value().as_scalar().is_some_and(|s| !s.is_zero())
                        && core.names.get(entry.name()).is_some_and(|n| room.get(n) > 0))
            });
            if !towards_guarantee {
                return Flow::Skip;
            }
        }
        if !core.allocatable(&offer) {
            if core.allocatable(&base) {
                let by_limit =
                    chop(&base, &core.names, limit.as_deref(), None).is_some_and(|c| !core.allocatable(&c));
                let note = self.notes.role(r);
                if by_limit {
                    note.limited += 1;
                } else {
                    note.held += 1;
                }
            }
            return Flow::Skip;
        }
        self.offer = Some(offer);
        Flow::Go
    }

    fn client(&mut self, c: ClientRef) -> Flow {
        let (Some(offer), Some(client)) = (&self.offer, self.core.client(c)) else { return Flow::Skip };
        if client.filters.filters(self.a, offer, self.now) {
            self.notes.client(c).filtered += 1;
            return Flow::Go;
        }
        self.chosen = Some(c);
        Flow::Stop
    }
}

impl AllocatorCore {
    /// One allocation run at time `now` (seconds on the caller's clock), visiting agents
    /// in `agent_order` (the caller shuffles it; unknown and inactive agents are skipped).
    /// Returns the allocations in the order they were made.
    pub fn allocate(&mut self, now: f64, agent_order: &[AgentId]) -> Vec<Allocation> {
        for framework in self.frameworks.iter_mut().flatten() {
            for client in &mut framework.clients {
                client.filters.prune(now);
            }
        }
        let agents: Vec<u32> = agent_order
            .iter()
            .filter_map(|id| self.agent_ix(id))
            .filter(|&a| self.agents[a as usize].as_ref().is_some_and(|agent| agent.active))
            .collect();
        let available =
            if self.roles.has_guarantees() { self.free_unreserved() } else { Quantities::default() };
        let mut headroom = Headroom::new(&self.roles, &self.names, available);
        let mut notes = Notes::new(self.roles.slots());
        let mut summary = RunSummary { at: now, ..RunSummary::default() };
        let mut allocated_on: HashSet<u32> = HashSet::new();
        let mut out = Vec::new();
        for stage in [Stage::Guarantees, Stage::Fair] {
            if stage == Stage::Guarantees && !headroom.guarantees {
                continue;
            }
            let mut order = self.build_order(stage, &headroom);
            for &a in &agents {
                if order.is_empty() {
                    break;
                }
                for _ in 0..MAX_ALLOCATIONS_PER_AGENT {
                    let Some((c, offer)) =
                        self.pick(a, stage, now, &mut order, &headroom, &mut notes, &mut summary)
                    else {
                        break;
                    };
                    self.apply(a, c, &offer, &mut order, &mut headroom);
                    let Some(client) = self.client(c) else { break };
                    let role_node = client.node;
                    notes.client(c).got = true;
                    notes.role(role_node).served_clients += 1;
                    summary.roles_served.insert(role_node);
                    allocated_on.insert(a);
                    let framework_id = self.frameworks[c.framework as usize].as_ref().map(|f| f.id.clone());
                    let agent_id = self.agents[a as usize].as_ref().map(|agent| agent.id.clone());
                    if let (Some(framework_id), Some(agent_id)) = (framework_id, agent_id) {
                        out.push(Allocation {
                            framework_id,
                            role: client.role.clone(),
                            agent_id,
                            resources: offer,
                        });
                    }
                }
            }
        }
        summary.agents_allocated = allocated_on.len();
        self.finish_run(now, &notes, summary, &headroom);
        out
    }

    /// Unreserved free quantities on active agents.
    fn free_unreserved(&self) -> Quantities {
        let mut free = Quantities::default();
        for agent in self.agents.iter().flatten().filter(|agent| agent.active) {
            for entry in agent.available.iter().filter(|entry| entry.reservation().is_unreserved()) {
                if let (Some(scalar), Some(n)) = (entry.value().as_scalar(), self.names.get(entry.name())) {
                    free.add_at(n, scalar.milli());
                }
            }
        }
        free
    }

    /// The order of a stage: active, unsuppressed clients (in stage 1, only those whose
    /// allocation would count toward a guarantee).
    fn build_order(&self, stage: Stage, headroom: &Headroom) -> Order {
        let mut order = Order::new(&self.roles);
        for (f, framework) in self.frameworks.iter().enumerate() {
            let Some(framework) = framework.as_ref().filter(|framework| framework.active) else { continue };
            for (slot, client) in framework.clients.iter().enumerate() {
                if client.suppressed {
                    continue;
                }
                if stage == Stage::Guarantees && headroom.guarantee_room(&self.roles, client.node).is_zero() {
                    continue;
                }
                let c = ClientRef { framework: f as u32, slot: slot as u32 };
                let share = client.allocated_q.dominant_share(&self.total_q);
                order.insert(&self.roles, &self.total_q, client.node, c, share);
            }
        }
        order
    }

    /// Finds who gets what is left on agent `a`, if anyone.
    #[allow(clippy::too_many_arguments)]
    fn pick(
        &self,
        a: u32,
        stage: Stage,
        now: f64,
        order: &mut Order,
        headroom: &Headroom,
        notes: &mut Notes,
        summary: &mut RunSummary,
    ) -> Option<(ClientRef, Resources)> {
        let agent = self.agents.get(a as usize)?.as_ref()?;
        if !self.allocatable(&agent.available) {
            return None;
        }
        let unreserved_ok =
            if agent.available_reserved { self.allocatable(&agent.available.unreserved()) } else { true };
        if stage == Stage::Fair && headroom.guarantees && !agent.available_reserved {
            // Only the surplus of unreserved resources may go to roles at their guarantee;
            // roles below it had their turn in stage 1.
            if let Some(surplus) = headroom.unreserved_cap(&Quantities::default()) {
                if chop(&agent.available, &self.names, None, Some(&surplus))
                    .is_some_and(|c| !self.allocatable(&c))
                {
                    summary.agents_held += 1;
                    return None;
                }
            }
        }
        let mut reserved_roles: Vec<&str> = Vec::new();
        if !unreserved_ok {
            for entry in agent.available.iter().filter(|entry| !entry.reservation().is_unreserved()) {
                let role = entry.reservation().role();
                if !reserved_roles.contains(&role) {
                    reserved_roles.push(role);
                }
            }
        }
        let mut picker = Picker {
            core: self,
            headroom,
            agent,
            a,
            stage,
            now,
            unreserved_ok,
            reserved_roles,
            offer: None,
            notes,
            removals: Vec::new(),
            chosen: None,
        };
        order.walk(&mut |step| picker.step(step));
        let chosen = picker.chosen.zip(picker.offer.take()).map(|(c, offer)| (c, offer.into_owned()));
        for removal in std::mem::take(&mut picker.removals) {
            match removal {
                Removal::Own(r) => order.remove_own(&self.roles, r),
                Removal::Block(r) => order.block(&self.roles, r),
            }
        }
        chosen
    }

    /// Records the allocation of `offer` on agent `a` to client `c`.
    fn apply(&mut self, a: u32, c: ClientRef, offer: &Resources, order: &mut Order, headroom: &mut Headroom) {
        let mut unreserved = Quantities::default();
        if headroom.guarantees {
            for entry in offer.iter().filter(|entry| entry.reservation().is_unreserved()) {
                if let Some(scalar) = entry.value().as_scalar() {
                    unreserved.add_at(self.names.intern(entry.name()), scalar.milli());
                }
            }
        }
        self.hold(a, c, offer, false);
        if let Some(agent) = self.agents[a as usize].as_mut() {
            agent.allocated += offer;
            if agent.available == *offer {
                agent.available = Resources::new();
            } else {
                agent.available -= offer;
            }
            agent.available_reserved =
                agent.available.iter().any(|entry| !entry.reservation().is_unreserved());
        }
        let Some(client) = self.client(c) else { return };
        let node = client.node;
        let share = client.allocated_q.dominant_share(&self.total_q);
        headroom.allocated(&self.roles, node, &unreserved);
        order.update(&self.roles, &self.total_q, node, c, share);
    }

    /// Updates each client's history after a run.
    fn finish_run(&mut self, now: f64, notes: &Notes, summary: RunSummary, headroom: &Headroom) {
        let mut updates: Vec<(ClientRef, Vec<super::PendingReason>)> = Vec::new();
        for (f, framework) in self.frameworks.iter().enumerate() {
            let Some(framework) = framework else { continue };
            for (slot, client) in framework.clients.iter().enumerate() {
                let c = ClientRef { framework: f as u32, slot: slot as u32 };
                let note = notes.get_client(c).unwrap_or_default();
                if note.got {
                    continue;
                }
                let reasons = self.run_reasons(framework.active, client, &note, notes, &summary, headroom);
                updates.push((c, reasons));
            }
        }
        for (f, framework) in self.frameworks.iter_mut().enumerate() {
            let Some(framework) = framework else { continue };
            for (slot, client) in framework.clients.iter_mut().enumerate() {
                let c = ClientRef { framework: f as u32, slot: slot as u32 };
                if notes.get_client(c).is_some_and(|note| note.got) {
                    client.history.last_allocation = Some(now);
                    client.history.runs_without = 0;
                    client.history.reasons.clear();
                }
            }
        }
        for (c, reasons) in updates {
            if let Some(client) = self.client_mut(c) {
                client.history.runs_without += 1;
                client.history.reasons = reasons;
            }
        }
        self.last_run = Some(summary);
    }
}
