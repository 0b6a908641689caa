//! Tests for the registry: the operations' preconditions, then the memory and file
//! implementations (fencing, atomicity, durability, corruption).

use std::collections::BTreeMap;

use super::{AgentRecord, FrameworkRecord, Operation, QuotaRecord, RegistryError, RegistryState};
use crate::ids::{AgentId, FrameworkId};
use crate::resources::Resources;
use crate::task::{AgentInfo, FrameworkInfo};

mod operations;
mod registries;

/// An agent record with id `id`, host `host-{id}`.
fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        info: AgentInfo {
            hostname: format!("host-{id}"),
            id: Some(AgentId::from(id)),
            resources: Resources::parse("cpus:4;mem:1024;ports:[31000-32000]").expect("resources parse"),
            attributes: BTreeMap::from([("rack".to_string(), "a".to_string())]),
        },
        pid: "slave@127.0.0.1:5051".parse().expect("upid parses"),
        lost_tasks: Vec::new(),
    }
}

/// A framework record with id `id`.
fn framework(id: &str) -> FrameworkRecord {
    let mut info = FrameworkInfo::new(format!("framework {id}"));
    info.id = Some(FrameworkId::from(id));
    info.roles = vec!["eng".to_string()];
    info.failover_timeout_secs = 60.0;
    FrameworkRecord { info, registered_secs: 1_000.0 }
}

fn admit(id: &str) -> Operation {
    Operation::AdmitAgent(agent(id))
}

fn unreachable(id: &str, since_secs: f64) -> Operation {
    Operation::MarkUnreachable { agent_id: AgentId::from(id), since_secs }
}

fn gone(id: &str, since_secs: f64) -> Operation {
    Operation::MarkGone { agent_id: AgentId::from(id), since_secs }
}

/// The state after applying `operations` to the empty state; panics on failure.
fn state_after(operations: &[Operation]) -> RegistryState {
    let mut state = RegistryState::default();
    for operation in operations {
        state.apply(operation).unwrap_or_else(|e| panic!("{operation:?} failed: {e}"));
    }
    state
}

/// Asserts `result` is a precondition failure whose message contains `text`.
#[track_caller]
fn assert_precondition<T: std::fmt::Debug>(result: Result<T, RegistryError>, text: &str) {
    match result {
        Err(RegistryError::Precondition(message)) => {
            assert!(message.contains(text), "{message:?} does not contain {text:?}")
        }
        other => panic!("expected a precondition failure containing {text:?}, got {other:?}"),
    }
}

/// Asserts `result` is an invalid-argument failure.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, RegistryError>) {
    assert!(
        matches!(result, Err(RegistryError::InvalidArgument(_))),
        "expected InvalidArgument, got {result:?}"
    );
}
