//! The registry's state and its operations: pure data and the precondition
//! checks every registry implementation shares (the `Registry` trait and its
//! memory and file implementations live with the master's shell).
//!
//! An agent is in at most one of `agents` (admitted), `unreachable` and `gone`:
//!
//! ```text
//! (unknown) --AdmitAgent--> admitted --MarkUnreachable--> unreachable
//! admitted, unreachable --ReadmitAgent--> admitted (record replaced)
//! admitted, unreachable --MarkGone--> gone (forever)
//! admitted, unreachable --RemoveAgent--> (unknown)
//! unreachable --PruneUnreachable (older than the cut-off)--> (unknown)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use keel_message::Upid;
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, FrameworkId};
use crate::task::{AgentInfo, FrameworkInfo};

/// A leadership term: higher terms fence out lower ones. Terms start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A higher term has claimed the registry: the caller is no longer the leader
    /// and must step down. Nothing was changed.
    #[error("term {term} is fenced out by term {current}")]
    Fenced {
        /// The caller's term.
        term: Term,
        /// The highest term claimed so far.
        current: Term,
    },
    /// An operation's precondition does not hold (e.g. the agent is already
    /// admitted). Nothing was changed.
    #[error("precondition failed: {0}")]
    Precondition(String),
    /// Reading or writing the registry's storage failed. The stored state is the old
    /// one or the new one, never a torn mix.
    #[error("registry I/O on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The stored state cannot be read (bad JSON, unknown format). The storage is
    /// left as it is for an operator to inspect; it is never reset silently.
    #[error("registry is corrupt: {0}")]
    Corrupt(String),
    /// The registry's store (etcd) could not be reached or refused the request, or
    /// the request timed out. A write that fails this way may or may not have been
    /// committed: the caller must recover (re-read the state) before writing again.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The call itself is invalid: term 0, a term that was never claimed, a record
    /// without an id, a weight that is not finite and positive, a non-finite time.
    #[error("invalid registry request: {0}")]
    InvalidArgument(String),
}

/// How many removed framework ids the registry remembers.
pub const MAX_REMOVED_FRAMEWORKS: usize = 100_000;

/// The durable cluster state: what a new leader needs after failover.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryState {
    /// Admitted (registered) agents.
    pub agents: BTreeMap<AgentId, AgentRecord>,
    /// Agents that stopped answering; they may come back with `ReadmitAgent`.
    pub unreachable: BTreeMap<AgentId, UnreachableRecord>,
    /// Agents gone for good; they may never come back under this id.
    pub gone: BTreeMap<AgentId, GoneRecord>,
    /// Registered frameworks.
    pub frameworks: BTreeMap<FrameworkId, FrameworkRecord>,
    /// Removed frameworks and when (the newest [`MAX_REMOVED_FRAMEWORKS`]): they
    /// may never resubscribe.
    pub removed_frameworks: BTreeMap<FrameworkId, f64>,
    /// Role weights (role -> weight, finite and > 0).
    pub weights: BTreeMap<String, f64>,
    /// Role quotas.
    pub quotas: BTreeMap<String, QuotaRecord>,
}

/// A role's quota: resources guaranteed to it, and a cap it never goes above.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QuotaRecord {
    /// Held back for the role until it has this much.
    pub guarantee: crate::resources::Resources,
    /// Never allocated above this; unlimited when `None`.
    pub limit: Option<crate::resources::Resources>,
}

/// An admitted agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// How the agent described itself, with `id` set.
    pub info: AgentInfo,
    /// The agent process's UPID.
    pub pid: Upid,
    /// Tasks it came back with that their frameworks were told are LOST (it had
    /// been unreachable): they are killed, and must never be reported again, by
    /// this master or its successor.
    #[serde(default)]
    pub lost_tasks: Vec<(FrameworkId, crate::ids::TaskId)>,
}

impl AgentRecord {
    /// The agent's id (`info.id`), or `InvalidArgument` if it is not set.
    pub fn agent_id(&self) -> Result<&AgentId, RegistryError> {
        self.info.id.as_ref().ok_or_else(|| {
            RegistryError::InvalidArgument(format!("agent record for {} has no id", self.info.hostname))
        })
    }
}

/// An agent marked unreachable, with what it was when admitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnreachableRecord {
    /// The agent as it was admitted.
    pub record: AgentRecord,
    /// When it was marked unreachable, in seconds since the Unix epoch.
    pub since_secs: f64,
}

/// An agent marked gone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoneRecord {
    /// When it was marked gone, in seconds since the Unix epoch.
    pub since_secs: f64,
}

/// A registered framework.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    /// How the framework described itself, with `id` set.
    pub info: FrameworkInfo,
    /// When it first registered, in seconds since the Unix epoch.
    pub registered_secs: f64,
}

impl FrameworkRecord {
    /// The framework's id (`info.id`), or `InvalidArgument` if it is not set.
    pub fn framework_id(&self) -> Result<&FrameworkId, RegistryError> {
        self.info.id.as_ref().ok_or_else(|| {
            RegistryError::InvalidArgument(format!("framework record for {} has no id", self.info.name))
        })
    }
}

/// One change to the registry; a transaction is a `Vec` of these, applied in order,
/// all or nothing. Each operation sees the effects of the ones before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Operation {
    /// Admits a new agent. The id must be neither admitted, unreachable nor gone.
    AdmitAgent(AgentRecord),
    /// Admits an admitted or unreachable agent again, replacing its record. Fails
    /// for gone agents and for agents the registry does not know (use `AdmitAgent`
    /// for an agent whose unreachable entry was pruned).
    ReadmitAgent(AgentRecord),
    /// Moves an admitted agent to unreachable.
    MarkUnreachable {
        /// The agent.
        agent_id: AgentId,
        /// When, in seconds since the Unix epoch.
        since_secs: f64,
    },
    /// Moves an admitted or unreachable agent to gone.
    MarkGone {
        /// The agent.
        agent_id: AgentId,
        /// When, in seconds since the Unix epoch.
        since_secs: f64,
    },
    /// Forgets an admitted or unreachable agent (not a gone one).
    RemoveAgent {
        /// The agent.
        agent_id: AgentId,
    },
    /// Inserts or replaces a framework.
    PutFramework(FrameworkRecord),
    /// Removes a framework (recorded or not: a framework recovered from an agent's
    /// report was never recorded) and remembers its id, so it never comes back.
    RemoveFramework {
        /// The framework.
        framework_id: FrameworkId,
        /// When, in seconds since the Unix epoch.
        #[serde(default)]
        removed_secs: f64,
    },
    /// Sets a role's weight, which must be finite and > 0.
    SetWeight {
        /// The role (a valid role name).
        role: String,
        /// Its weight.
        weight: f64,
    },
    /// Sets a role's quota; the limit, when set, must cover the guarantee.
    SetQuota {
        /// The role (a valid role name, not `*`).
        role: String,
        /// The quota.
        quota: QuotaRecord,
    },
    /// Removes a role's quota, which must exist.
    RemoveQuota {
        /// The role.
        role: String,
    },
    /// Drops unreachable agents marked before `before_secs` (garbage collection).
    PruneUnreachable {
        /// The cut-off, in seconds since the Unix epoch.
        before_secs: f64,
    },
}

impl Operation {
    /// The checks that need no state: valid roles, finite positive weights, a quota
    /// guarantee within its limit. The master runs them before it persists.
    pub fn validate(&self) -> Result<(), RegistryError> {
        match self {
            Operation::SetWeight { role, weight } => {
                crate::resources::validate_role(role)
                    .map_err(|e| RegistryError::InvalidArgument(format!("weight for role {role:?}: {e}")))?;
                if !weight.is_finite() || *weight <= 0.0 {
                    return Err(RegistryError::InvalidArgument(format!(
                        "weight {weight} for role {role} is not finite and positive"
                    )));
                }
            }
            Operation::SetQuota { role, quota } => {
                if role == "*" {
                    return Err(RegistryError::InvalidArgument(
                        "the unreserved role * cannot have a quota".into(),
                    ));
                }
                crate::resources::validate_role(role)
                    .map_err(|e| RegistryError::InvalidArgument(format!("quota for role {role:?}: {e}")))?;
                if let Some(limit) = &quota.limit {
                    let (limit, guarantee) =
                        (limit.without_reservations(), quota.guarantee.without_reservations());
                    if !limit.contains(&guarantee) {
                        return Err(RegistryError::InvalidArgument(format!(
                            "quota for role {role}: the guarantee {guarantee} exceeds the limit {limit}"
                        )));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl RegistryState {
    /// Applies one operation if its preconditions hold; on error `self` is unchanged.
    pub fn apply(&mut self, operation: &Operation) -> Result<(), RegistryError> {
        operation.validate()?;
        match operation {
            Operation::AdmitAgent(record) => {
                let agent_id = record.agent_id()?;
                if let Some(place) = self.agent_place(agent_id) {
                    return Err(precondition(format!("agent {agent_id} is already {place}")));
                }
                self.agents.insert(agent_id.clone(), record.clone());
            }
            Operation::ReadmitAgent(record) => {
                let agent_id = record.agent_id()?;
                match self.agent_place(agent_id) {
                    Some("admitted") | Some("unreachable") => {}
                    Some(place) => return Err(precondition(format!("agent {agent_id} is {place}"))),
                    None => return Err(precondition(format!("agent {agent_id} is not known"))),
                }
                self.unreachable.remove(agent_id);
                self.agents.insert(agent_id.clone(), record.clone());
            }
            Operation::MarkUnreachable { agent_id, since_secs } => {
                check_time("since_secs", *since_secs)?;
                let Some(record) = self.agents.get(agent_id) else {
                    return Err(self.not_in(agent_id, "admitted"));
                };
                let record = UnreachableRecord { record: record.clone(), since_secs: *since_secs };
                self.agents.remove(agent_id);
                self.unreachable.insert(agent_id.clone(), record);
            }
            Operation::MarkGone { agent_id, since_secs } => {
                check_time("since_secs", *since_secs)?;
                if !self.agents.contains_key(agent_id) && !self.unreachable.contains_key(agent_id) {
                    return Err(self.not_in(agent_id, "admitted or unreachable"));
                }
                self.agents.remove(agent_id);
                self.unreachable.remove(agent_id);
                self.gone.insert(agent_id.clone(), GoneRecord { since_secs: *since_secs });
            }
            Operation::RemoveAgent { agent_id } => {
                if self.agents.remove(agent_id).is_none() && self.unreachable.remove(agent_id).is_none() {
                    return Err(self.not_in(agent_id, "admitted or unreachable"));
                }
            }
            Operation::PutFramework(record) => {
                let framework_id = record.framework_id()?;
                check_time("registered_secs", record.registered_secs)?;
                if !record.info.failover_timeout_secs.is_finite() {
                    return Err(RegistryError::InvalidArgument(format!(
                        "framework {framework_id} has a non-finite failover timeout"
                    )));
                }
                self.frameworks.insert(framework_id.clone(), record.clone());
            }
            Operation::RemoveFramework { framework_id, removed_secs } => {
                check_time("removed_secs", *removed_secs)?;
                self.frameworks.remove(framework_id);
                self.removed_frameworks.insert(framework_id.clone(), *removed_secs);
                while self.removed_frameworks.len() > MAX_REMOVED_FRAMEWORKS {
                    // The oldest removal goes first.
                    let oldest = self
                        .removed_frameworks
                        .iter()
                        .min_by(|a, b| a.1.total_cmp(b.1))
                        .map(|(id, _)| id.clone());
                    match oldest {
                        Some(id) => self.removed_frameworks.remove(&id),
                        None => break,
                    };
                }
            }
            Operation::SetWeight { role, weight } => {
                self.weights.insert(role.clone(), *weight);
            }
            Operation::SetQuota { role, quota } => {
                self.quotas.insert(role.clone(), quota.clone());
            }
            Operation::RemoveQuota { role } => {
                if self.quotas.remove(role).is_none() {
                    return Err(precondition(format!("role {role} has no quota")));
                }
            }
            Operation::PruneUnreachable { before_secs } => {
                if before_secs.is_nan() {
                    return Err(RegistryError::InvalidArgument("before_secs is NaN".to_string()));
                }
                self.unreachable.retain(|_, record| record.since_secs >= *before_secs);
            }
        }
        debug_assert!(self.agents_are_in_one_place(), "an agent is in two places after {operation:?}");
        Ok(())
    }

    /// The invariant: no agent id is in more than one of the three maps.
    fn agents_are_in_one_place(&self) -> bool {
        let ids: BTreeSet<&AgentId> =
            self.agents.keys().chain(self.unreachable.keys()).chain(self.gone.keys()).collect();
        ids.len() == self.agents.len() + self.unreachable.len() + self.gone.len()
    }

    /// Where the registry has the agent: `admitted`, `unreachable`, `gone`, or `None`.
    pub fn agent_place(&self, agent_id: &AgentId) -> Option<&'static str> {
        if self.agents.contains_key(agent_id) {
            Some("admitted")
        } else if self.unreachable.contains_key(agent_id) {
            Some("unreachable")
        } else if self.gone.contains_key(agent_id) {
            Some("gone")
        } else {
            None
        }
    }

    /// A precondition error saying the agent is not `wanted`, and where it is instead.
    fn not_in(&self, agent_id: &AgentId, wanted: &str) -> RegistryError {
        match self.agent_place(agent_id) {
            Some(place) => precondition(format!("agent {agent_id} is not {wanted} (it is {place})")),
            None => precondition(format!("agent {agent_id} is not known")),
        }
    }
}

fn precondition(message: String) -> RegistryError {
    RegistryError::Precondition(message)
}

/// Times must be finite: JSON cannot store NaN or infinities.
fn check_time(name: &str, secs: f64) -> Result<(), RegistryError> {
    if secs.is_finite() {
        Ok(())
    } else {
        Err(RegistryError::InvalidArgument(format!("{name} {secs} is not finite")))
    }
}
