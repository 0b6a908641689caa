//! `RegistryState::apply`: every operation's effect and preconditions, and that a
//! failing operation leaves the state untouched.

use super::*;

/// Applies `operation` and asserts it failed without changing `state`.
#[track_caller]
fn apply_fails(state: &RegistryState, operation: Operation) -> Result<(), RegistryError> {
    let mut copy = state.clone();
    let result = copy.apply(&operation);
    assert!(result.is_err(), "{operation:?} should fail");
    assert_eq!(&copy, state, "a failing {operation:?} changed the state");
    result
}

fn s(id: &str) -> AgentId {
    AgentId::from(id)
}

#[test]
fn admit_agent_adds_a_new_agent() {
    let state = state_after(&[admit("S1")]);
    assert_eq!(state.agents.get(&s("S1")), Some(&agent("S1")));
    assert_eq!(state.agent_place(&s("S1")), Some("admitted"));
}

#[test]
fn admit_agent_requires_an_unknown_id() {
    let state =
        state_after(&[admit("S1"), admit("S2"), unreachable("S2", 5.0), admit("S3"), gone("S3", 6.0)]);
    assert_precondition(apply_fails(&state, admit("S1")), "agent S1 is already admitted");
    assert_precondition(apply_fails(&state, admit("S2")), "agent S2 is already unreachable");
    assert_precondition(apply_fails(&state, admit("S3")), "agent S3 is already gone");
}

#[test]
fn agent_records_need_an_id() {
    let mut record = agent("S1");
    record.info.id = None;
    let state = state_after(&[admit("S1")]);
    assert_invalid(apply_fails(&state, Operation::AdmitAgent(record.clone())));
    assert_invalid(apply_fails(&state, Operation::ReadmitAgent(record)));
}

#[test]
fn readmit_agent_replaces_an_admitted_record() {
    let mut record = agent("S1");
    record.info.hostname = "new-host".to_string();
    let state = state_after(&[admit("S1"), Operation::ReadmitAgent(record.clone())]);
    assert_eq!(state.agents.get(&s("S1")), Some(&record));
}

#[test]
fn readmit_agent_brings_back_an_unreachable_agent() {
    let state = state_after(&[admit("S1"), unreachable("S1", 5.0), Operation::ReadmitAgent(agent("S1"))]);
    assert_eq!(state.agent_place(&s("S1")), Some("admitted"));
    assert!(state.unreachable.is_empty());
}

#[test]
fn readmit_agent_refuses_gone_and_unknown_agents() {
    let state = state_after(&[admit("S1"), gone("S1", 5.0)]);
    assert_precondition(apply_fails(&state, Operation::ReadmitAgent(agent("S1"))), "agent S1 is gone");
    assert_precondition(apply_fails(&state, Operation::ReadmitAgent(agent("S9"))), "agent S9 is not known");
}

#[test]
fn mark_unreachable_moves_an_admitted_agent() {
    let state = state_after(&[admit("S1"), unreachable("S1", 5.0)]);
    assert!(state.agents.is_empty());
    let record = state.unreachable.get(&s("S1")).expect("unreachable");
    assert_eq!(record.record, agent("S1"));
    assert_eq!(record.since_secs, 5.0);
}

#[test]
fn mark_unreachable_requires_an_admitted_agent() {
    let state = state_after(&[admit("S1"), unreachable("S1", 5.0), admit("S2"), gone("S2", 6.0)]);
    assert_precondition(
        apply_fails(&state, unreachable("S1", 7.0)),
        "agent S1 is not admitted (it is unreachable)",
    );
    assert_precondition(apply_fails(&state, unreachable("S2", 7.0)), "agent S2 is not admitted (it is gone)");
    assert_precondition(apply_fails(&state, unreachable("S9", 7.0)), "agent S9 is not known");
}

#[test]
fn times_must_be_finite() {
    let state = state_after(&[admit("S1")]);
    assert_invalid(apply_fails(&state, unreachable("S1", f64::NAN)));
    assert_invalid(apply_fails(&state, gone("S1", f64::INFINITY)));
    let mut record = framework("F1");
    record.registered_secs = f64::NAN;
    assert_invalid(apply_fails(&state, Operation::PutFramework(record)));
    let mut record = framework("F1");
    record.info.failover_timeout_secs = f64::INFINITY;
    assert_invalid(apply_fails(&state, Operation::PutFramework(record)));
    assert_invalid(apply_fails(&state, Operation::PruneUnreachable { before_secs: f64::NAN }));
}

#[test]
fn mark_gone_moves_admitted_and_unreachable_agents() {
    let state =
        state_after(&[admit("S1"), admit("S2"), unreachable("S2", 5.0), gone("S1", 6.0), gone("S2", 7.0)]);
    assert!(state.agents.is_empty());
    assert!(state.unreachable.is_empty());
    assert_eq!(state.gone.get(&s("S1")).map(|g| g.since_secs), Some(6.0));
    assert_eq!(state.gone.get(&s("S2")).map(|g| g.since_secs), Some(7.0));
}

#[test]
fn mark_gone_requires_an_admitted_or_unreachable_agent() {
    let state = state_after(&[admit("S1"), gone("S1", 5.0)]);
    assert_precondition(
        apply_fails(&state, gone("S1", 6.0)),
        "agent S1 is not admitted or unreachable (it is gone)",
    );
    assert_precondition(apply_fails(&state, gone("S9", 6.0)), "agent S9 is not known");
}

#[test]
fn remove_agent_forgets_admitted_and_unreachable_agents() {
    let state = state_after(&[
        admit("S1"),
        admit("S2"),
        unreachable("S2", 5.0),
        Operation::RemoveAgent { agent_id: s("S1") },
        Operation::RemoveAgent { agent_id: s("S2") },
    ]);
    assert_eq!(state, RegistryState::default());
}

#[test]
fn remove_agent_refuses_gone_and_unknown_agents() {
    let state = state_after(&[admit("S1"), gone("S1", 5.0)]);
    assert_precondition(apply_fails(&state, Operation::RemoveAgent { agent_id: s("S1") }), "it is gone");
    assert_precondition(
        apply_fails(&state, Operation::RemoveAgent { agent_id: s("S9") }),
        "agent S9 is not known",
    );
}

#[test]
fn put_framework_inserts_and_replaces() {
    let mut replacement = framework("F1");
    replacement.info.name = "renamed".to_string();
    let state = state_after(&[Operation::PutFramework(framework("F1"))]);
    assert_eq!(state.frameworks.get(&FrameworkId::from("F1")), Some(&framework("F1")));
    let state = state_after(&[
        Operation::PutFramework(framework("F1")),
        Operation::PutFramework(replacement.clone()),
    ]);
    assert_eq!(state.frameworks.len(), 1);
    assert_eq!(state.frameworks.get(&FrameworkId::from("F1")), Some(&replacement));
}

#[test]
fn put_framework_needs_an_id() {
    let mut record = framework("F1");
    record.info.id = None;
    assert_invalid(apply_fails(&RegistryState::default(), Operation::PutFramework(record)));
}

#[test]
fn removed_frameworks_are_remembered_recorded_or_not_and_bounded() {
    let remove = |id: &str, at: f64| Operation::RemoveFramework {
        framework_id: FrameworkId::from(id),
        removed_secs: at,
    };
    let state =
        state_after(&[Operation::PutFramework(framework("F1")), remove("F1", 10.0), remove("F2", 11.0)]);
    assert!(state.frameworks.is_empty());
    // F2 was never recorded (it came from an agent's report): remembered all the same.
    assert_eq!(state.removed_frameworks.keys().map(|id| id.as_str()).collect::<Vec<_>>(), ["F1", "F2"]);
    assert_invalid(apply_fails(&state, remove("F3", f64::NAN)));
    let mut big = RegistryState::default();
    for i in 0..keel_proto::registry::MAX_REMOVED_FRAMEWORKS + 2 {
        big.apply(&remove(&format!("F{i}"), i as f64)).unwrap();
    }
    assert_eq!(big.removed_frameworks.len(), keel_proto::registry::MAX_REMOVED_FRAMEWORKS);
    assert!(!big.removed_frameworks.contains_key(&FrameworkId::from("F0")), "the oldest goes first");
}

#[test]
fn set_weight_sets_and_replaces() {
    let set = |weight| Operation::SetWeight { role: "eng".to_string(), weight };
    let state = state_after(&[set(2.0), set(0.5)]);
    assert_eq!(state.weights, BTreeMap::from([("eng".to_string(), 0.5)]));
}

#[test]
fn set_weight_rejects_bad_weights_and_roles() {
    let state = RegistryState::default();
    for weight in [f64::NAN, 0.0, -0.0, -1.0, f64::INFINITY, f64::NEG_INFINITY] {
        assert_invalid(apply_fails(&state, Operation::SetWeight { role: "eng".to_string(), weight }));
    }
    for role in ["", "a//b", ".."] {
        assert_invalid(apply_fails(&state, Operation::SetWeight { role: role.to_string(), weight: 1.0 }));
    }
}

#[test]
fn prune_unreachable_drops_only_older_entries() {
    let state = state_after(&[
        admit("S1"),
        admit("S2"),
        admit("S3"),
        admit("S4"),
        unreachable("S1", 10.0),
        unreachable("S2", 20.0),
        unreachable("S3", 30.0),
        gone("S4", 1.0),
        admit("S5"),
        Operation::PruneUnreachable { before_secs: 20.0 },
    ]);
    let kept: Vec<_> = state.unreachable.keys().map(AgentId::as_str).collect();
    assert_eq!(kept, ["S2", "S3"]);
    assert_eq!(state.agent_place(&s("S4")), Some("gone"));
    assert_eq!(state.agent_place(&s("S5")), Some("admitted"));
    // A pruned agent is unknown again: it can only come back through AdmitAgent.
    assert_precondition(apply_fails(&state, Operation::ReadmitAgent(agent("S1"))), "not known");
    let mut state = state;
    state.apply(&admit("S1")).expect("admit a pruned agent");
}

#[test]
fn registry_state_round_trips_through_json() {
    let state = state_after(&[
        admit("S1"),
        admit("S2"),
        unreachable("S2", 20.5),
        admit("S3"),
        gone("S3", 30.25),
        Operation::PutFramework(framework("F1")),
        Operation::SetWeight { role: "eng".to_string(), weight: 2.5 },
    ]);
    let json = serde_json::to_string(&state).expect("serialise");
    let back: RegistryState = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, state);
    // Missing fields default, so later additions can read older files.
    assert_eq!(serde_json::from_str::<RegistryState>("{}").expect("empty object"), RegistryState::default());
}

#[test]
fn quotas_are_set_checked_and_removed() {
    let mut state = RegistryState::default();
    let quota = |guarantee: &str, limit: Option<&str>| QuotaRecord {
        guarantee: guarantee.parse().unwrap(),
        limit: limit.map(|l| l.parse().unwrap()),
    };
    state.apply(&Operation::SetQuota { role: "eng".into(), quota: quota("cpus:2", Some("cpus:4")) }).unwrap();
    assert_eq!(state.quotas["eng"].limit, Some("cpus:4".parse().unwrap()));
    // A guarantee above the limit, the unreserved role and bad names are refused, changing nothing.
    let before = state.clone();
    for (role, q) in [
        ("eng", quota("cpus:8", Some("cpus:4"))),
        ("*", quota("cpus:1", None)),
        ("bad role", quota("cpus:1", None)),
    ] {
        let error = state.apply(&Operation::SetQuota { role: role.into(), quota: q }).unwrap_err();
        assert!(matches!(error, RegistryError::InvalidArgument(_)), "{error}");
    }
    assert_eq!(state, before);
    state.apply(&Operation::RemoveQuota { role: "eng".into() }).unwrap();
    assert!(state.quotas.is_empty());
    assert!(matches!(
        state.apply(&Operation::RemoveQuota { role: "eng".into() }),
        Err(RegistryError::Precondition(_))
    ));
}
