//! What a starting agent process does with a previous one's work (I/O, so the
//! shell's): read the checkpoint tree, check that it belongs to this agent, ask the
//! containerizer which of the previous process's containers still run, destroy the
//! ones it will not recover (frameworks that do not checkpoint, orphans), and hand
//! the rest to the core. Each step that cannot be completed is logged clearly; a tree
//! that cannot be taken back whole is set aside and the agent starts afresh.

use std::collections::BTreeSet;
use std::sync::Arc;

use keel_core::agent::container::{ContainerId, ExitStatus, Termination};
use keel_core::agent::{recovery::incompatible, Checkpoint, RecoveredAgent};
use keel_isolation::Containerizer;
use keel_proto::task::AgentInfo;

use super::checkpoint::Checkpoints;
use super::{isolation_id, RecoverMode};

/// What recovery found.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Nothing (or nothing usable) to recover: register as a new agent.
    Fresh,
    /// A previous agent's state to take back.
    Recovered {
        /// What it checkpointed.
        agent: RecoveredAgent,
        /// Its containers that still run (wait for them).
        reattached: Vec<ContainerId>,
        /// Its containers that ended while no agent watched them, and how.
        ended: Vec<(ContainerId, Termination)>,
    },
    /// `--recover cleanup` is done: the agent exits.
    CleanedUp,
    /// Recovery cannot go on (the containerizer failed): the agent stops.
    Failed(String),
}

/// Reads, checks and reattaches what a previous agent process left.
pub(super) async fn recover(
    checkpoints: Checkpoints,
    containerizer: Arc<dyn Containerizer>,
    configured: AgentInfo,
    mode: RecoverMode,
    destroy_orphans: bool,
) -> Outcome {
    let mut state = match checkpoints.read() {
        Ok(state) => state,
        Err(e) => {
            set_aside(&checkpoints, &format!("its checkpoints cannot be recovered: {e}"));
            None
        }
    };
    if let Some(agent) = &state {
        if let Some(why) = incompatible(&agent.info, &configured) {
            set_aside(&checkpoints, &format!("its checkpoints are another agent's: {why}"));
            state = None;
        }
    }
    if mode == RecoverMode::Cleanup {
        state = None;
    }
    let known: Vec<(keel_isolation::ContainerId, u32)> =
        checkpoints.container_pids().into_iter().map(|(id, pid)| (isolation_id(&id), pid)).collect();
    let found = if known.is_empty() && !destroy_orphans {
        keel_isolation::Recovered::default()
    } else {
        match containerizer.recover(&known).await {
            Ok(found) => found,
            Err(e) => return Outcome::Failed(format!("cannot recover the previous agent's containers: {e}")),
        }
    };
    if !found.orphans_destroyed.is_empty() {
        tracing::warn!(orphans = found.orphans_destroyed.len(), "destroyed containers nobody checkpointed");
    }
    let keep: BTreeSet<ContainerId> = state
        .iter()
        .flat_map(|agent| agent.frameworks.iter())
        .flat_map(|framework| framework.executors.iter().map(|e| e.container.clone()))
        .collect();
    let mut reattached = Vec::new();
    for container in found.reattached.iter().map(|id| ContainerId(id.0.clone())) {
        if keep.contains(&container) {
            reattached.push(container);
            continue;
        }
        tracing::info!(%container, "destroying a container the previous agent left (not recovered)");
        if let Err(e) = containerizer.destroy(&isolation_id(&container)).await {
            tracing::warn!(%container, error = %e, "cannot destroy a previous agent's container");
            continue;
        }
        checkpoints.remove_container_pid(&container);
    }
    for container in found.gone.iter().map(|id| ContainerId(id.0.clone())) {
        if !keep.contains(&container) {
            checkpoints.remove_container_pid(&container);
        }
    }
    if mode == RecoverMode::Cleanup {
        return match checkpoints.write(&Checkpoint::Clear) {
            Ok(()) => Outcome::CleanedUp,
            Err(e) => Outcome::Failed(format!("cannot remove the checkpoints: {e}")),
        };
    }
    let Some(agent) = state else { return Outcome::Fresh };
    // A recovered executor whose container is not running ended while no agent
    // watched it (or never started: the agent stopped between checkpoint and launch).
    let running: BTreeSet<&ContainerId> = reattached.iter().collect();
    let ended = keep
        .iter()
        .filter(|c| !running.contains(c))
        .map(|c| {
            let termination = Termination {
                status: ExitStatus::Unknown,
                message: "its container ended while the agent was down, and how is not known".into(),
                memory_limit: None,
            };
            (c.clone(), termination)
        })
        .collect();
    Outcome::Recovered { agent, reattached, ended }
}

/// Logs why the tree cannot be taken back and sets it aside for an operator.
fn set_aside(checkpoints: &Checkpoints, why: &str) {
    match checkpoints.set_aside() {
        Ok(aside) => tracing::error!(
            reason = %why,
            kept_at = %aside.display(),
            "the agent starts afresh under a new id: {why}"
        ),
        Err(e) => tracing::error!(
            reason = %why,
            error = %e,
            "the agent starts afresh under a new id, and cannot even set the old checkpoints aside"
        ),
    }
}
