//! The master's events: frameworks and agents come and go, resources come back
//! (optionally filtered), frameworks suppress and revive offers per role.

use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::resources::{validate_role, Resources, UNRESERVED_ROLE};

use super::filters::Filters;
use super::quantities::Quantities;
use super::{intersect, take_slot, Agent, AllocatorCore, Client, ClientRef, Framework, History};

impl AllocatorCore {
    /// Adds a framework subscribed to `roles` (`*` when empty; invalid names are
    /// dropped), with what its tasks already use per agent (`used`, plus whatever agents
    /// reported for it in [`AllocatorCore::add_agent`] before it was known). Adding a
    /// known framework replaces it (its allocations are released first).
    pub fn add_framework(
        &mut self,
        id: FrameworkId,
        roles: Vec<String>,
        used: &[(AgentId, Resources)],
        active: bool,
    ) {
        self.remove_framework(&id);
        let mut names: Vec<String> = Vec::new();
        for role in roles {
            if validate_role(&role).is_ok() && !names.contains(&role) {
                names.push(role);
            }
        }
        if names.is_empty() {
            names.push(UNRESERVED_ROLE.to_string());
        }
        let framework = Framework { id: id.clone(), active, clients: Vec::new() };
        let f = take_slot(&mut self.frameworks, &mut self.free_frameworks, framework);
        self.framework_index.insert(id.clone(), f);
        let mut clients = Vec::with_capacity(names.len());
        for (slot, role) in names.into_iter().enumerate() {
            let node = self.roles.ensure(&role, &mut self.names);
            self.roles.add_client(node, ClientRef { framework: f, slot: slot as u32 });
            clients.push(Client {
                role,
                node,
                suppressed: false,
                allocated: Resources::new(),
                allocated_q: Quantities::default(),
                filters: Filters::default(),
                history: History::default(),
            });
        }
        if let Some(framework) = self.frameworks[f as usize].as_mut() {
            framework.clients = clients;
        }
        for (agent_id, resources) in used {
            let Some(a) = self.agent_ix(agent_id) else { continue };
            // What the agent reported for this framework before it was known is already
            // counted on the agent.
            let mut counted = Resources::new();
            if let Some(agent) = self.agents[a as usize].as_mut() {
                for (_, untracked) in agent.untracked.iter_mut().filter(|(owner, _)| *owner == id) {
                    let part = intersect(untracked, resources);
                    *untracked -= &part;
                    counted += &part;
                }
                agent.untracked.retain(|(_, untracked)| !untracked.is_empty());
            }
            for (slot, part) in self.split_by_role(f, &counted) {
                self.hold(a, ClientRef { framework: f, slot }, &part, false);
            }
            for (slot, part) in self.split_by_role(f, &(resources - &counted)) {
                self.hold(a, ClientRef { framework: f, slot }, &part, true);
            }
        }
        // What agents reported for this framework before it was known is its own.
        for a in 0..self.agents.len() as u32 {
            let adopted: Vec<Resources> = match self.agents[a as usize].as_mut() {
                Some(agent) if agent.untracked.iter().any(|(owner, _)| *owner == id) => {
                    let (mine, others) =
                        std::mem::take(&mut agent.untracked).into_iter().partition(|(owner, _)| *owner == id);
                    agent.untracked = others;
                    mine.into_iter().map(|(_, resources)| resources).collect::<Vec<_>>()
                }
                _ => continue,
            };
            for resources in adopted {
                for (slot, part) in self.split_by_role(f, &resources) {
                    self.hold(a, ClientRef { framework: f, slot }, &part, false);
                }
            }
        }
    }

    /// Removes a framework; what it still holds is released.
    pub fn remove_framework(&mut self, id: &FrameworkId) {
        let Some(f) = self.framework_ix(id) else { return };
        for a in 0..self.agents.len() as u32 {
            let held: Vec<(ClientRef, Resources)> = match &self.agents[a as usize] {
                Some(agent) => agent
                    .holdings
                    .iter()
                    .filter(|h| h.client.framework == f)
                    .map(|h| (h.client, h.resources.clone()))
                    .collect(),
                None => continue,
            };
            for (c, resources) in held {
                self.release(a, c, &resources);
            }
        }
        self.framework_index.remove(id);
        let Some(framework) = self.frameworks[f as usize].take() else { return };
        self.free_frameworks.push(f);
        for (slot, client) in framework.clients.iter().enumerate() {
            self.roles.remove_client(client.node, ClientRef { framework: f, slot: slot as u32 });
            self.roles.prune(client.node);
        }
    }

    /// (De)activates a framework. Deactivation drops its filters (as in Mesos).
    pub fn set_framework_active(&mut self, id: &FrameworkId, active: bool) {
        let Some(f) = self.framework_ix(id) else { return };
        if let Some(framework) = self.frameworks[f as usize].as_mut() {
            framework.active = active;
            if !active {
                for client in &mut framework.clients {
                    client.filters.clear();
                }
            }
        }
    }

    /// Adds an agent with what frameworks' tasks already use on it. Adding a known agent
    /// replaces it (as a removal then an addition).
    pub fn add_agent(&mut self, id: AgentId, total: Resources, used: &[(FrameworkId, Resources)]) {
        self.remove_agent(&id);
        let total_q = self.names.quantities(&total);
        self.total += &total;
        self.total_q.add(&total_q);
        let agent = Agent {
            id: id.clone(),
            available: total.clone(),
            available_reserved: false,
            total,
            total_q,
            allocated: Resources::new(),
            active: true,
            holdings: Vec::new(),
            untracked: Vec::new(),
        };
        let a = take_slot(&mut self.agents, &mut self.free_agents, agent);
        self.agent_index.insert(id, a);
        for (framework_id, resources) in used {
            match self.framework_ix(framework_id) {
                Some(f) => {
                    for (slot, part) in self.split_by_role(f, resources) {
                        self.hold(a, ClientRef { framework: f, slot }, &part, true);
                    }
                }
                None => {
                    if let Some(agent) = self.agents[a as usize].as_mut() {
                        agent.untracked.push((framework_id.clone(), resources.clone()));
                        agent.allocated += resources;
                    }
                }
            }
        }
        if let Some(agent) = self.agents[a as usize].as_mut() {
            agent.refresh_available();
        }
    }

    /// Removes an agent: what frameworks hold on it is released, filters on it dropped.
    pub fn remove_agent(&mut self, id: &AgentId) {
        let Some(a) = self.agent_ix(id) else { return };
        let held: Vec<(ClientRef, Resources)> = self.agents[a as usize]
            .as_ref()
            .map(|agent| agent.holdings.iter().map(|h| (h.client, h.resources.clone())).collect())
            .unwrap_or_default();
        for (c, resources) in held {
            self.release(a, c, &resources);
        }
        self.agent_index.remove(id);
        if let Some(agent) = self.agents[a as usize].take() {
            self.total -= &agent.total;
            self.total_q.sub(&agent.total_q);
            self.free_agents.push(a);
        }
        for framework in self.frameworks.iter_mut().flatten() {
            for client in &mut framework.clients {
                client.filters.remove_agent(a);
            }
        }
    }

    /// (De)activates an agent: inactive agents are not offered.
    pub fn set_agent_active(&mut self, id: &AgentId, active: bool) {
        if let Some(agent) = self.agent_ix(id).and_then(|a| self.agents[a as usize].as_mut()) {
            agent.active = active;
        }
    }

    /// Resources of `agent_id` come back from a framework (a declined or rescinded offer,
    /// the unused part of an accepted one, a finished task). Without a role they are
    /// taken from the role whose holding contains them all, else from the framework's
    /// roles in subscription order; prefer [`AllocatorCore::recover_in_role`]. With
    /// `filter_until` (seconds on the caller's clock, at least one allocation interval
    /// away) the framework is not offered them again in that role until then, unless
    /// the offer is larger.
    pub fn recover(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        resources: &Resources,
        filter_until: Option<f64>,
    ) {
        self.recover_impl(framework_id, agent_id, None, resources, filter_until);
    }

    /// Like [`AllocatorCore::recover`], for resources allocated to the framework in
    /// `role` (an offer's or task's role): exact accounting for multi-role frameworks.
    pub fn recover_in_role(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: &str,
        resources: &Resources,
        filter_until: Option<f64>,
    ) {
        self.recover_impl(framework_id, agent_id, Some(role), resources, filter_until);
    }

    fn recover_impl(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        role: Option<&str>,
        resources: &Resources,
        filter_until: Option<f64>,
    ) {
        let Some(a) = self.agent_ix(agent_id) else { return };
        let mut rest = resources.clone();
        if let Some(f) = self.framework_ix(framework_id) {
            let mut held: Vec<(ClientRef, bool)> = self.agents[a as usize]
                .as_ref()
                .map(|agent| {
                    agent
                        .holdings
                        .iter()
                        .filter(|h| h.client.framework == f)
                        .map(|h| (h.client, h.resources.contains(resources)))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(role) = role {
                held.retain(|&(c, _)| self.client(c).is_some_and(|client| client.role == role));
            }
            // Holdings that contain everything first, then subscription order.
            held.sort_by_key(|&(c, contains_all)| (!contains_all, c));
            for (c, _) in held {
                if rest.is_empty() {
                    break;
                }
                let part = self.release(a, c, &rest);
                rest -= &part;
                if let (Some(until), Some(client)) = (filter_until, self.client_mut(c)) {
                    client.filters.add(a, until, part);
                }
            }
        }
        if let Some(agent) = self.agents[a as usize].as_mut() {
            for (_, untracked) in agent.untracked.iter_mut().filter(|(owner, _)| owner == framework_id) {
                let part = intersect(untracked, &rest);
                *untracked -= &part;
                agent.allocated -= &part;
                rest -= &part;
            }
            agent.untracked.retain(|(_, untracked)| !untracked.is_empty());
            agent.refresh_available();
        }
    }

    /// The clients of framework `f` in `roles` (all when empty).
    fn clients_in<'a>(
        &'a mut self,
        framework_id: &FrameworkId,
        roles: &'a [String],
    ) -> impl Iterator<Item = &'a mut Client> + 'a {
        let framework = self.framework_ix(framework_id).and_then(|f| self.frameworks[f as usize].as_mut());
        framework
            .into_iter()
            .flat_map(|framework| framework.clients.iter_mut())
            .filter(move |client| roles.is_empty() || roles.contains(&client.role))
    }

    /// Clears the framework's filters and suppression in `roles` (all when empty).
    pub fn revive_roles(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        for client in self.clients_in(framework_id, roles) {
            client.suppressed = false;
            client.filters.clear();
        }
    }

    /// Stops offers to the framework in `roles` (all when empty) until revived.
    pub fn suppress_roles(&mut self, framework_id: &FrameworkId, roles: &[String]) {
        for client in self.clients_in(framework_id, roles) {
            client.suppressed = true;
        }
    }

    /// Clears filters and suppression in all the framework's roles.
    pub fn revive(&mut self, framework_id: &FrameworkId) {
        self.revive_roles(framework_id, &[]);
    }

    /// Suppresses offers in all the framework's roles.
    pub fn suppress(&mut self, framework_id: &FrameworkId) {
        self.suppress_roles(framework_id, &[]);
    }
}
