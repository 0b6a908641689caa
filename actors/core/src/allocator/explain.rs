//! "Why pending?": per framework role, why it got nothing in the last allocation runs.
//!
//! During a run the allocator notes, cheaply, what stopped each framework role at the
//! agents it was considered for (filters, quota limits, headroom held for guarantees)
//! and who was served; at the end of the run each framework role that got nothing
//! keeps its reasons. [`AllocatorCore::explain`] adds what the agents show now (free
//! resources reserved for other roles, too little free, nothing free) and renders it
//! in plain words with the numbers.

use std::collections::HashMap;
use std::fmt;

use keel_proto::ids::FrameworkId;
use keel_proto::resources::Resources;

use super::quota::Headroom;
use super::roles::ROOT;
use super::{AllocatorCore, Client, ClientRef, RunSummary};

/// What happened to one client during a run.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ClientNote {
    /// Agents at which its own filters skipped it.
    pub(super) filtered: u32,
    /// Whether it got an allocation.
    pub(super) got: bool,
}

/// What happened to one role during a run.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RoleNote {
    /// Agents whose offer its quota limit cut below the minimum size.
    pub(super) limited: u32,
    /// Agents whose offer the headroom for guarantees cut below the minimum size.
    pub(super) held: u32,
    /// Whether its limit left no room at all.
    pub(super) at_limit: bool,
    /// Allocations to its own clients.
    pub(super) served_clients: u32,
}

/// The notes of one run.
#[derive(Debug, Default)]
pub(super) struct Notes {
    clients: HashMap<ClientRef, ClientNote>,
    roles: Vec<RoleNote>,
}

impl Notes {
    pub(super) fn new(roles: usize) -> Notes {
        Notes { clients: HashMap::new(), roles: vec![RoleNote::default(); roles] }
    }

    pub(super) fn client(&mut self, c: ClientRef) -> &mut ClientNote {
        self.clients.entry(c).or_default()
    }

    pub(super) fn get_client(&self, c: ClientRef) -> Option<ClientNote> {
        self.clients.get(&c).copied()
    }

    pub(super) fn role(&mut self, r: u32) -> &mut RoleNote {
        let r = r as usize;
        if self.roles.len() <= r {
            self.roles.resize(r + 1, RoleNote::default());
        }
        &mut self.roles[r]
    }

    fn get_role(&self, r: u32) -> RoleNote {
        self.roles.get(r as usize).copied().unwrap_or_default()
    }
}

/// Why a framework got nothing in a role.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingReason {
    /// The framework is inactive: its scheduler is disconnected.
    Inactive,
    /// The framework suppressed offers in this role.
    Suppressed,
    /// Its own filters (offers it declined with `refuse_seconds`) skipped it at `agents`
    /// agents.
    Filtered {
        /// Agents filtered in the last run.
        agents: u32,
    },
    /// The role, or its ancestor `role`, is at its quota limit.
    AboveLimit {
        /// The role whose limit binds.
        role: String,
        /// What that role (with descendants) is allocated.
        allocated: Resources,
        /// Its limit.
        limit: Resources,
    },
    /// Free unreserved resources are held back for other roles' quota guarantees.
    HeldForGuarantees {
        /// Agents whose free resources were held back in the last run.
        agents: usize,
        /// What outstanding guarantees still need.
        required: Resources,
    },
    /// Roles ahead in the weighted DRF order (lower weighted share), or frameworks of the
    /// same role with a lower share, took the free resources before its turn.
    Outweighed {
        /// Other roles served in the last run.
        roles: usize,
        /// Other frameworks of this role served in the last run.
        frameworks: usize,
        /// Agents allocated in the last run.
        agents: usize,
        /// The role's weighted share.
        share: f64,
        /// The role's weight.
        weight: f64,
    },
    /// Free resources of `agents` agents are reserved for other roles.
    ReservedForOtherRoles {
        /// How many agents.
        agents: usize,
    },
    /// No agent has the minimum allocatable free (cpus or memory).
    TooLittleFree {
        /// Agents with some, but too little, free.
        agents: usize,
        /// The minimum cpus.
        min_cpus: f64,
        /// The minimum memory in MB.
        min_mem_mb: f64,
    },
    /// Every active agent's resources are allocated.
    NoFreeResources {
        /// Active agents.
        agents: usize,
    },
    /// No agent is active.
    NoActiveAgents {
        /// Known (inactive) agents.
        agents: usize,
    },
}

/// One role of a framework in an [`Explanation`].
#[derive(Debug, Clone, PartialEq)]
pub struct RoleExplanation {
    /// The role.
    pub role: String,
    /// Its weight.
    pub weight: f64,
    /// Its weighted share (descendants included).
    pub role_share: f64,
    /// The framework's dominant share in the role.
    pub framework_share: f64,
    /// What the framework holds in the role (offered or in use).
    pub allocated: Resources,
    /// When (caller's clock) it last got an allocation in the role.
    pub last_allocation: Option<f64>,
    /// Consecutive runs in which it got nothing in the role.
    pub runs_without_allocation: u64,
    /// Why, when `runs_without_allocation > 0`.
    pub reasons: Vec<PendingReason>,
}

/// Why a framework is (or is not) getting offers; `Display` renders one screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Whether it is active.
    pub active: bool,
    /// When (caller's clock) the last allocation run happened.
    pub last_run: Option<f64>,
    /// Per role.
    pub roles: Vec<RoleExplanation>,
}

impl AllocatorCore {
    /// The reasons a client that got nothing in a run keeps.
    pub(super) fn run_reasons(
        &self,
        active: bool,
        client: &Client,
        note: &ClientNote,
        notes: &Notes,
        summary: &RunSummary,
        headroom: &Headroom,
    ) -> Vec<PendingReason> {
        if !active {
            return vec![PendingReason::Inactive];
        }
        if client.suppressed {
            return vec![PendingReason::Suppressed];
        }
        let mut reasons = Vec::new();
        if note.filtered > 0 {
            reasons.push(PendingReason::Filtered { agents: note.filtered });
        }
        let limited = notes.get_role(client.node).limited > 0
            || self
                .roles
                .path(client.node)
                .any(|r| notes.get_role(r).at_limit || self.limit_exhausted(self.roles.node(r)));
        if limited {
            let binding = self.roles.path(client.node).filter(|&r| r != ROOT).find(|&r| {
                let node = self.roles.node(r);
                node.limit_q.iter().any(|&(n, limit)| node.allocated_q.get(n) >= limit)
            });
            if let Some(r) = binding {
                let node = self.roles.node(r);
                reasons.push(PendingReason::AboveLimit {
                    role: node.name.clone(),
                    allocated: node.allocated.clone(),
                    limit: node.quota.as_ref().and_then(|q| q.limit.clone()).unwrap_or_default(),
                });
            }
        }
        let held = notes.get_role(client.node).held as usize + summary.agents_held;
        if held > 0 && headroom.guarantee_room(&self.roles, client.node).is_zero() {
            let required = self.names.to_resources(&headroom.required());
            reasons.push(PendingReason::HeldForGuarantees { agents: held, required });
        }
        let roles = summary.roles_served.iter().filter(|&&r| r != client.node).count();
        let frameworks = notes.get_role(client.node).served_clients as usize;
        if roles + frameworks > 0 {
            let node = self.roles.node(client.node);
            reasons.push(PendingReason::Outweighed {
                roles,
                frameworks,
                agents: summary.agents_allocated,
                share: node.weighted_share(&self.total_q),
                weight: node.weight,
            });
        }
        reasons
    }

    /// Reasons visible in the agents now, for a client of `role` that gets nothing.
    fn agent_reasons(&self, role: &str) -> Vec<PendingReason> {
        let (mut known, mut active, mut full, mut too_small, mut reserved, mut usable) = (0, 0, 0, 0, 0, 0);
        for agent in self.agents.iter().flatten() {
            known += 1;
            if !agent.active {
                continue;
            }
            active += 1;
            if agent.available.is_empty() {
                full += 1;
            } else if !self.allocatable(&agent.available) {
                too_small += 1;
            } else if agent.available_reserved && !self.allocatable(&agent.available.allocatable_to(role)) {
                reserved += 1;
            } else {
                usable += 1;
            }
        }
        let mut reasons = Vec::new();
        if active == 0 {
            reasons.push(PendingReason::NoActiveAgents { agents: known });
            return reasons;
        }
        if reserved > 0 {
            reasons.push(PendingReason::ReservedForOtherRoles { agents: reserved });
        }
        if usable == 0 && too_small > 0 {
            reasons.push(PendingReason::TooLittleFree {
                agents: too_small,
                min_cpus: self.min.cpus,
                min_mem_mb: self.min.mem_mb,
            });
        }
        if full == active {
            reasons.push(PendingReason::NoFreeResources { agents: active });
        }
        reasons
    }

    /// Why the framework is or is not getting offers, per role; `None` if unknown.
    pub fn explain(&self, framework_id: &FrameworkId) -> Option<Explanation> {
        let framework = self.frameworks.get(self.framework_ix(framework_id)? as usize)?.as_ref()?;
        let roles = framework
            .clients
            .iter()
            .map(|client| {
                let node = self.roles.node(client.node);
                let mut reasons = client.history.reasons.clone();
                let blocked =
                    reasons.iter().any(|r| matches!(r, PendingReason::Inactive | PendingReason::Suppressed));
                let pending = client.history.runs_without > 0 || self.last_run.is_none();
                if pending && !blocked {
                    if !framework.active {
                        reasons = vec![PendingReason::Inactive];
                    } else if client.suppressed {
                        reasons = vec![PendingReason::Suppressed];
                    } else {
                        reasons.extend(self.agent_reasons(&client.role));
                    }
                }
                RoleExplanation {
                    role: client.role.clone(),
                    weight: node.weight,
                    role_share: node.weighted_share(&self.total_q),
                    framework_share: client.allocated_q.dominant_share(&self.total_q),
                    allocated: client.allocated.clone(),
                    last_allocation: client.history.last_allocation,
                    runs_without_allocation: client.history.runs_without,
                    reasons,
                }
            })
            .collect();
        Some(Explanation {
            framework_id: framework.id.clone(),
            active: framework.active,
            last_run: self.last_run.as_ref().map(|run| run.at),
            roles,
        })
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn resources_text(resources: &Resources) -> String {
    if resources.is_empty() {
        "nothing".to_string()
    } else {
        resources.to_string()
    }
}

impl PendingReason {
    fn describe(&self, role: &str) -> String {
        match self {
            PendingReason::Inactive => {
                "the framework is inactive (its scheduler is disconnected)".to_string()
            }
            PendingReason::Suppressed => format!("the framework suppressed offers for role {role}"),
            PendingReason::Filtered { agents } => format!(
                "it declined earlier offers of {} with a filter that has not expired",
                plural(*agents as usize, "agent", "agents")
            ),
            PendingReason::AboveLimit { role: limited, allocated, limit } => format!(
                "role {limited} is at its quota limit (allocated {}, limit {})",
                resources_text(allocated),
                resources_text(limit)
            ),
            PendingReason::HeldForGuarantees { agents, required } => format!(
                "the free resources of {} are held back for other roles' quota guarantees (still needed: {})",
                plural(*agents, "agent", "agents"),
                resources_text(required)
            ),
            PendingReason::Outweighed { roles, frameworks, agents, share, weight } => {
                let mut who = Vec::new();
                if *roles > 0 {
                    who.push(format!("{} with lower weighted share", plural(*roles, "role", "roles")));
                }
                if *frameworks > 0 {
                    who.push(format!(
                        "{} of {role} with a lower share",
                        plural(*frameworks, "framework", "frameworks")
                    ));
                }
                format!(
                    "{} took the {} with free resources ({role}'s share {share:.2}, weight {weight})",
                    who.join(" and "),
                    plural(*agents, "agent", "agents")
                )
            }
            PendingReason::ReservedForOtherRoles { agents } => format!(
                "the free resources of {} are reserved for other roles",
                plural(*agents, "agent", "agents")
            ),
            PendingReason::TooLittleFree { agents, min_cpus, min_mem_mb } => format!(
                "no agent has at least {min_cpus} cpus or {min_mem_mb} MB of memory free ({} less)",
                plural(*agents, "agent has", "agents have")
            ),
            PendingReason::NoFreeResources { agents } => {
                format!(
                    "all resources of the {} are allocated",
                    plural(*agents, "active agent", "active agents")
                )
            }
            PendingReason::NoActiveAgents { agents } => {
                format!("no agent is active ({} known)", plural(*agents, "agent", "agents"))
            }
        }
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe("its role"))
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "framework {}", self.framework_id)?;
        if !self.active {
            write!(f, " (inactive: its scheduler is disconnected)")?;
        }
        match self.last_run {
            Some(at) => writeln!(f, ", last allocation run at {at:.1} s")?,
            None => writeln!(f, ", no allocation run yet")?,
        }
        for role in &self.roles {
            write!(
                f,
                "role {} (weight {}, share {:.2}; this framework holds {}): ",
                role.role,
                role.weight,
                role.role_share,
                resources_text(&role.allocated)
            )?;
            if self.last_run.is_none() {
                writeln!(f, "waiting for the first allocation run")?;
                continue;
            }
            if role.runs_without_allocation == 0 {
                writeln!(f, "offered in the last run")?;
                continue;
            }
            write!(
                f,
                "nothing offered in the last {}",
                plural(role.runs_without_allocation as usize, "run", "runs")
            )?;
            match (role.last_allocation, self.last_run) {
                (Some(last), Some(run)) => {
                    write!(f, " (last offered {:.1} s before the last run)", run - last)?
                }
                _ => write!(f, " (never offered)")?,
            }
            if role.reasons.is_empty() {
                writeln!(f)?;
                continue;
            }
            writeln!(f, ":")?;
            for reason in &role.reasons {
                writeln!(f, "  - {}", reason.describe(&role.role))?;
            }
        }
        Ok(())
    }
}
