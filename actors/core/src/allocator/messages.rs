//! The master <-> allocator protocol: local messages only (the allocator runs next
//! to the master on its node). This is the narrow interface the allocator issue fills.

use keel_message::message;
use serde::{Deserialize, Serialize};

use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::resources::Resources;

/// A framework joins (or rejoins after a master failover) with its roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddFramework {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Its roles.
    pub roles: Vec<String>,
    /// Resources its running tasks already use, per agent.
    #[serde(default)]
    pub used: Vec<(AgentId, Resources)>,
    /// Whether it may receive offers now.
    pub active: bool,
}
message!(AddFramework, "keel.allocator.AddFramework");

/// A framework leaves; its allocations are forgotten (the master recovers its
/// tasks' resources separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveFramework {
    /// The framework.
    pub framework_id: FrameworkId,
}
message!(RemoveFramework, "keel.allocator.RemoveFramework");

/// A framework's scheduler connected (active) or disconnected (no offers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetFrameworkActive {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Whether it may receive offers.
    pub active: bool,
}
message!(SetFrameworkActive, "keel.allocator.SetFrameworkActive");

/// An agent joins with its total resources and what is already in use on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddAgent {
    /// The agent.
    pub agent_id: AgentId,
    /// Its total resources.
    pub total: Resources,
    /// Resources in use by frameworks' tasks and executors already on it.
    #[serde(default)]
    pub used: Vec<(FrameworkId, Resources)>,
}
message!(AddAgent, "keel.allocator.AddAgent");

/// An agent leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveAgent {
    /// The agent.
    pub agent_id: AgentId,
}
message!(RemoveAgent, "keel.allocator.RemoveAgent");

/// An agent is (dis)connected: inactive agents are not offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAgentActive {
    /// The agent.
    pub agent_id: AgentId,
    /// Whether its resources may be offered.
    pub active: bool,
}
message!(SetAgentActive, "keel.allocator.SetAgentActive");

/// Resources allocated to a framework come back: a declined or rescinded offer, the
/// unused part of an accepted one, or a finished task. With `refuse_seconds`, the
/// framework is not offered that agent's resources again until it passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoverResources {
    /// The framework they were allocated to.
    pub framework_id: FrameworkId,
    /// The agent they are on.
    pub agent_id: AgentId,
    /// What comes back.
    pub resources: Resources,
    /// How long to filter them from this framework.
    #[serde(default)]
    pub refuse_seconds: Option<f64>,
    /// The role they were allocated to (the offer's or the task's), when known.
    #[serde(default)]
    pub role: Option<String>,
}
message!(RecoverResources, "keel.allocator.RecoverResources");

/// Resources allocated to a framework changed form (reserved or unreserved inside an
/// accepted offer); the quantities are the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateAllocation {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The agent.
    pub agent_id: AgentId,
    /// The resources before.
    pub from: Resources,
    /// The resources after.
    pub to: Resources,
}
message!(UpdateAllocation, "keel.allocator.UpdateAllocation");

/// Sets role weights (from the registry at recovery, or an operator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetWeights {
    /// Role and weight pairs.
    pub weights: Vec<(String, f64)>,
}
message!(SetWeights, "keel.allocator.SetWeights");

/// Sets a role's quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetQuota {
    /// The role.
    pub role: String,
    /// Resources held back until the role has them.
    pub guarantee: Resources,
    /// The most the role may be allocated.
    #[serde(default)]
    pub limit: Option<Resources>,
}
message!(SetQuota, "keel.allocator.SetQuota");

/// Removes a role's quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveQuota {
    /// The role.
    pub role: String,
}
message!(RemoveQuota, "keel.allocator.RemoveQuota");

/// Frameworks holding more than a (lowered) quota limit allows in a role: the master
/// rescinds their outstanding offers in that role. Allocator -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverLimit {
    /// Framework and role pairs.
    pub allocations: Vec<(FrameworkId, String)>,
}
message!(OverLimit, "keel.allocator.OverLimit");

/// Clears the framework's filters and resumes offers for `roles` (all when empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revive {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The roles; all when empty.
    #[serde(default)]
    pub roles: Vec<String>,
}
message!(Revive, "keel.allocator.Revive");

/// Stops offers to the framework for `roles` (all when empty) until revived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppress {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The roles; all when empty.
    #[serde(default)]
    pub roles: Vec<String>,
}
message!(Suppress, "keel.allocator.Suppress");

/// Resources of one agent allocated to one framework in one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The role the resources are allocated to.
    pub role: String,
    /// The agent.
    pub agent_id: AgentId,
    /// The resources.
    pub resources: Resources,
}

/// The result of an allocation run. Allocator -> master, which turns it into offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocated {
    /// The allocations.
    pub allocations: Vec<Allocation>,
}
message!(Allocated, "keel.allocator.Allocated");

/// An operator reserves or unreserves unallocated resources of an agent: the
/// allocator switches their form if they are free. Master -> allocator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateAvailable {
    /// The master's request id, named in the answer.
    pub request: u64,
    /// The agent.
    pub agent_id: AgentId,
    /// The resources before.
    pub from: Resources,
    /// The resources after.
    pub to: Resources,
}
message!(UpdateAvailable, "keel.allocator.UpdateAvailable");

/// Whether an [`UpdateAvailable`] was applied. Allocator -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailableUpdated {
    /// The request.
    pub request: u64,
    /// False when `from` was not free on the agent.
    pub updated: bool,
}
message!(AvailableUpdated, "keel.allocator.AvailableUpdated");

/// Something that takes a typed allocator message: how a shell sends one.
pub trait VisitAllocator {
    /// What the visit returns.
    type Output;
    /// Takes the message.
    fn visit<M: keel_message::Message>(self, message: M) -> Self::Output;
}

macro_rules! one_of {
    ($(#[$doc:meta])* $enum:ident { $($name:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum {
            $(
                #[doc = concat!("[`", stringify!($name), "`]")]
                $name($name),
            )*
        }

        $(
            impl From<$name> for $enum {
                fn from(message: $name) -> $enum {
                    $enum::$name(message)
                }
            }
        )*

        impl $enum {
            /// Hands the typed message to `visitor`.
            pub fn visit<V: VisitAllocator>(self, visitor: V) -> V::Output {
                match self {
                    $($enum::$name(message) => visitor.visit(message),)*
                }
            }
        }
    };
}

one_of!(
    /// A call from the master to the allocator.
    AllocatorCall {
        AddFramework, RemoveFramework, SetFrameworkActive, AddAgent, RemoveAgent, SetAgentActive,
        RecoverResources, UpdateAllocation, UpdateAvailable, SetWeights, SetQuota, RemoveQuota, Revive,
        Suppress,
    }
);

one_of!(
    /// What the allocator tells the master.
    AllocatorEvent { Allocated, OverLimit, AvailableUpdated }
);
