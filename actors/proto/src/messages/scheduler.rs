//! The scheduler <-> master protocol.

use keel_message::{message, Upid};
use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use crate::task::{Filters, FrameworkInfo, Offer, TaskInfo};

/// Subscribes a framework; with `framework.id` set, resubscribes it (failover).
/// Scheduler -> master, retried with backoff until answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeFramework {
    /// The framework. A scheduler resubscribing with the id of a framework whose
    /// scheduler is still connected takes over from it (the old one gets an error).
    pub framework: FrameworkInfo,
    /// Names this round of attempts (new after each disconnection): the answer
    /// echoes it, so a late answer to an earlier round is not taken for this one.
    #[serde(default)]
    pub subscription: u64,
}
message!(SubscribeFramework, "keel.scheduler.Subscribe", |m, add| if let Some(id) = &m.framework.id {
    add("framework", id.as_str())
});

/// The framework is subscribed. Master -> scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkSubscribed {
    /// The framework's id (new or confirmed).
    pub framework_id: FrameworkId,
    /// The master's UPID.
    pub master: Upid,
    /// The subscription answered ([`SubscribeFramework::subscription`]).
    #[serde(default)]
    pub subscription: u64,
    /// The master's epoch: a driver ignores an answer from a master older than
    /// one it has seen (0: an older master that names none).
    #[serde(default)]
    pub epoch: u64,
}
message!(FrameworkSubscribed, "keel.scheduler.Subscribed", |m, add| add(
    "framework",
    m.framework_id.as_str()
));

/// The master refuses or ends the framework. Master -> scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkError {
    /// What went wrong.
    pub message: String,
}
message!(FrameworkError, "keel.scheduler.Error");

/// New offers. Master -> scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceOffers {
    /// The offers.
    pub offers: Vec<Offer>,
}
message!(ResourceOffers, "keel.scheduler.Offers", |m, add| if let Some(offer) = m.offers.first() {
    add("framework", offer.framework_id.as_str())
});

/// An offer is no longer valid. Master -> scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescindOffer {
    /// The offer.
    pub offer_id: OfferId,
}
message!(RescindOffer, "keel.scheduler.Rescind");

/// An operation on accepted offers, applied in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Operation {
    /// Launch tasks.
    Launch {
        /// The tasks.
        tasks: Vec<TaskInfo>,
    },
    /// Dynamically reserve offered unreserved resources for one of the framework's
    /// roles: `resources` is the reserved form, e.g. `cpus(ads,dynamic):1`.
    Reserve {
        /// The resources as they will be once reserved.
        resources: crate::resources::Resources,
    },
    /// Give dynamically reserved resources back to the unreserved pool.
    Unreserve {
        /// The reserved resources, as offered.
        resources: crate::resources::Resources,
    },
}

/// Accepts offers (all on one agent) with operations; unused resources return to
/// the allocator with `filters`. Scheduler -> master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptOffers {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The offers, all on one agent.
    pub offer_ids: Vec<OfferId>,
    /// What to do with them.
    pub operations: Vec<Operation>,
    /// Filters for what is left unused.
    #[serde(default)]
    pub filters: Filters,
    /// A unique id of this call: a copy of it (the network may duplicate) is
    /// recognised and ignored.
    #[serde(default)]
    pub call_id: Option<String>,
}
message!(AcceptOffers, "keel.scheduler.Accept", |m, add| {
    add("framework", m.framework_id.as_str());
    let mut tasks = m.operations.iter().flat_map(|op| match op {
        Operation::Launch { tasks } => tasks.as_slice(),
        _ => &[],
    });
    if let (Some(task), None) = (tasks.next(), tasks.next()) {
        add("agent", task.agent_id.as_str());
        add("task", task.task_id.as_str())
    }
});

/// Declines offers. Scheduler -> master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclineOffers {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The offers.
    pub offer_ids: Vec<OfferId>,
    /// How long to keep these resources away.
    #[serde(default)]
    pub filters: Filters,
}
message!(DeclineOffers, "keel.scheduler.Decline", |m, add| add("framework", m.framework_id.as_str()));

/// Removes filters and resumes offers (for `roles`, or all when empty). Scheduler -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviveOffers {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Roles to revive; all of the framework's when empty.
    #[serde(default)]
    pub roles: Vec<String>,
}
message!(ReviveOffers, "keel.scheduler.Revive", |m, add| add("framework", m.framework_id.as_str()));

/// Stops offers (for `roles`, or all when empty) until revived. Scheduler -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressOffers {
    /// The framework.
    pub framework_id: FrameworkId,
    /// Roles to suppress; all of the framework's when empty.
    #[serde(default)]
    pub roles: Vec<String>,
}
message!(SuppressOffers, "keel.scheduler.Suppress", |m, add| add("framework", m.framework_id.as_str()));

/// Asks for the latest state of tasks: the listed ones (explicit) or, when empty,
/// all the framework's tasks the master knows (implicit). Scheduler -> master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileTasks {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The tasks, with the agent the scheduler believes each is on.
    #[serde(default)]
    pub tasks: Vec<ReconcileTask>,
}
message!(ReconcileTasks, "keel.scheduler.Reconcile", |m, add| add("framework", m.framework_id.as_str()));

/// One task in an explicit reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileTask {
    /// The task.
    pub task_id: TaskId,
    /// The agent the scheduler believes it is on.
    #[serde(default)]
    pub agent_id: Option<AgentId>,
}

/// Ends the framework: its tasks are killed and its executors shut down. Scheduler -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeardownFramework {
    /// The framework.
    pub framework_id: FrameworkId,
}
message!(TeardownFramework, "keel.scheduler.Teardown", |m, add| add("framework", m.framework_id.as_str()));

/// The scheduler goes away but its framework should fail over (keep its tasks for
/// `failover_timeout`). Scheduler -> master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeactivateFramework {
    /// The framework.
    pub framework_id: FrameworkId,
}
message!(DeactivateFramework, "keel.scheduler.Deactivate", |m, add| add(
    "framework",
    m.framework_id.as_str()
));

/// An agent was lost (unreachable or removed). Master -> scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentLost {
    /// The agent.
    pub agent_id: AgentId,
}
message!(AgentLost, "keel.scheduler.AgentLost", |m, add| add("agent", m.agent_id.as_str()));

/// An executor exited. Agent -> master -> scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorLost {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The agent.
    pub agent_id: AgentId,
    /// The executor.
    pub executor_id: ExecutorId,
    /// Its wait status (exit code, or 128 + signal).
    pub status: i32,
}
message!(ExecutorLost, "keel.scheduler.ExecutorLost", |m, add| {
    add("framework", m.framework_id.as_str());
    add("agent", m.agent_id.as_str());
    add("executor", m.executor_id.as_str())
});
