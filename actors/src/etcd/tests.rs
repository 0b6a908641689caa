//! Tests of what needs no etcd: addresses, the key layout, encoding and decoding
//! the registry, and planning transactions into chunks. (The election, the
//! observer and the registry against a real etcd are in keel-integration.)

use std::collections::BTreeMap;
use std::time::Duration;

use keel_proto::ids::{AgentId, FrameworkId};
use keel_proto::registry::{
    AgentRecord, FrameworkRecord, Operation, QuotaRecord, RegistryError, RegistryState,
    MAX_REMOVED_FRAMEWORKS,
};
use keel_proto::resources::Resources;
use keel_proto::task::{AgentInfo, FrameworkInfo};

use super::diff::{composes, decode, encode_state, plan, Chunk};
use super::{parse_master_address, prefix_end, EtcdConfig, EtcdError};

const PREFIX: &str = "/keel/test/registry/";

fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        info: AgentInfo {
            hostname: format!("host-{id}"),
            id: Some(AgentId::from(id)),
            resources: Resources::parse("cpus:4;mem:1024").expect("resources parse"),
            attributes: BTreeMap::new(),
        },
        pid: "slave@127.0.0.1:5051".parse().expect("upid parses"),
        lost_tasks: Vec::new(),
    }
}

fn framework(id: &str) -> FrameworkRecord {
    let mut info = FrameworkInfo::new(format!("framework {id}"));
    info.id = Some(FrameworkId::from(id));
    FrameworkRecord { info, registered_secs: 1_000.0 }
}

fn admit(id: &str) -> Operation {
    Operation::AdmitAgent(agent(id))
}

fn unreachable(id: &str, since_secs: f64) -> Operation {
    Operation::MarkUnreachable { agent_id: AgentId::from(id), since_secs }
}

fn state_after(operations: &[Operation]) -> RegistryState {
    let mut state = RegistryState::default();
    for operation in operations {
        state.apply(operation).unwrap_or_else(|e| panic!("{operation:?} failed: {e}"));
    }
    state
}

/// A state with something in every category.
fn full_state() -> RegistryState {
    state_after(&[
        admit("S1"),
        admit("S2"),
        unreachable("S2", 20.5),
        admit("S3"),
        Operation::MarkGone { agent_id: AgentId::from("S3"), since_secs: 30.0 },
        Operation::PutFramework(framework("F1")),
        Operation::RemoveFramework { framework_id: FrameworkId::from("F0"), removed_secs: 10.0 },
        Operation::SetWeight { role: "eng/backend".to_string(), weight: 2.5 },
        Operation::SetQuota {
            role: "eng".to_string(),
            quota: QuotaRecord { guarantee: Resources::parse("cpus:1").expect("parse"), limit: None },
        },
    ])
}

/// The registry's keys as etcd would hold them (full keys), with format and version.
fn stored(state: &RegistryState) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut keys: Vec<(Vec<u8>, Vec<u8>)> = encode_state(state)
        .expect("encodes")
        .into_iter()
        .map(|(key, value)| (format!("{PREFIX}{key}").into_bytes(), value))
        .collect();
    keys.push((format!("{PREFIX}format").into_bytes(), b"1".to_vec()));
    keys.push((format!("{PREFIX}version").into_bytes(), b"7".to_vec()));
    keys
}

#[track_caller]
fn assert_corrupt(entries: Vec<(Vec<u8>, Vec<u8>)>, text: &str) {
    match decode(entries, PREFIX) {
        Err(RegistryError::Corrupt(message)) => assert!(message.contains(text), "{message:?} lacks {text:?}"),
        other => panic!("expected Corrupt containing {text:?}, got {other:?}"),
    }
}

#[test]
fn master_addresses_parse() {
    let (endpoints, cluster) = parse_master_address("etcd://h1:2379,10.0.0.2:2380/prod-1").expect("parses");
    assert_eq!(endpoints, ["h1:2379", "10.0.0.2:2380"]);
    assert_eq!(cluster, "prod-1");
    let config = EtcdConfig::from_master_address("etcd://[::1]:2379/a.b_c").expect("parses");
    assert_eq!(config.endpoints, ["[::1]:2379"]);
    assert_eq!(config.lease_ttl, Duration::from_secs(2));
    assert_eq!(config.address(), "etcd://[::1]:2379/a.b_c");
    assert!(super::is_etcd_address(" etcd://h:1/x"));
    assert!(!super::is_etcd_address("127.0.0.1:5050"));
}

#[test]
fn bad_master_addresses_are_refused() {
    for address in [
        "h1:2379/prod",
        "etcd://h1:2379",
        "etcd://h1:2379/",
        "etcd:///prod",
        "etcd://h1/prod",
        "etcd://h1:0/prod",
        "etcd://h1:99999/prod",
        "etcd://h1:2379,/prod",
        "etcd://:2379/prod",
        "etcd://h1:2379/a/b",
        "etcd://h1:2379/.hidden",
        "etcd://h1:2379/-x",
        "etcd://h1:2379/sp ace",
        &format!("etcd://h1:2379/{}", "x".repeat(65)),
    ] {
        assert!(
            matches!(parse_master_address(address), Err(EtcdError::InvalidConfig(_))),
            "{address:?} was accepted"
        );
    }
}

#[test]
fn configurations_are_validated() {
    let good = EtcdConfig::new(vec!["127.0.0.1:2379".to_string()], "c");
    good.validate().expect("valid");
    let cases: Vec<(&str, EtcdConfig)> = vec![
        ("no endpoints", EtcdConfig { endpoints: vec![], ..good.clone() }),
        ("fractional ttl", EtcdConfig { lease_ttl: Duration::from_millis(1500), ..good.clone() }),
        ("zero ttl", EtcdConfig { lease_ttl: Duration::ZERO, ..good.clone() }),
        ("zero timeout", EtcdConfig { request_timeout: Duration::ZERO, ..good.clone() }),
        ("one txn op", EtcdConfig { max_txn_ops: 1, ..good.clone() }),
        ("bad cluster", EtcdConfig { cluster: "a/b".to_string(), ..good.clone() }),
    ];
    for (name, config) in cases {
        assert!(matches!(config.validate(), Err(EtcdError::InvalidConfig(_))), "{name} was accepted");
    }
}

#[test]
fn keys_live_under_the_cluster() {
    let config = EtcdConfig::new(vec!["h:1".to_string()], "prod");
    assert_eq!(config.cluster_prefix(), "/keel/prod/");
    assert_eq!(config.election_name(), "/keel/prod/leader");
    assert_eq!(config.election_prefix(), "/keel/prod/leader/");
    assert_eq!(config.registry_prefix(), "/keel/prod/registry/");
    assert_eq!(prefix_end(b"/keel/prod/registry/"), b"/keel/prod/registry0");
    assert_eq!(prefix_end(b"a\xff\xff"), b"b");
    assert_eq!(prefix_end(b"\xff"), b"\0");
}

#[test]
fn a_state_round_trips_through_its_keys() {
    let state = full_state();
    let decoded = decode(stored(&state), PREFIX).expect("decodes");
    assert_eq!(decoded.state, state);
    assert_eq!(decoded.format, Some(1));
    assert_eq!(decoded.version, 7);
    assert_eq!(decoded.keys, stored(&state).len());
    let empty = decode(Vec::new(), PREFIX).expect("decodes");
    assert_eq!((empty.state, empty.format, empty.keys), (RegistryState::default(), None, 0));
}

#[test]
fn bad_contents_are_corrupt_naming_the_key() {
    let key = |relative: &str| format!("{PREFIX}{relative}").into_bytes();
    let mut entries = stored(&full_state());
    entries.push((key("agents/S9"), b"{not json".to_vec()));
    assert_corrupt(entries, "/keel/test/registry/agents/S9");
    assert_corrupt(vec![(key("mystery/x"), b"1".to_vec())], "/keel/test/registry/mystery/x");
    assert_corrupt(vec![(key("version"), b"-1".to_vec())], "/keel/test/registry/version");
    assert_corrupt(vec![(key("format"), b"\"one\"".to_vec())], "format");
    assert_corrupt(vec![(key("weights/eng"), b"0".to_vec())], "weights/eng");
    assert_corrupt(vec![(key("removed_frameworks/F1"), b"null".to_vec())], "removed_frameworks/F1");
    assert_corrupt(vec![(b"/elsewhere/x".to_vec(), b"1".to_vec())], "/elsewhere/x");
    assert_corrupt(vec![([PREFIX.as_bytes(), b"agents/\xff"].concat(), b"1".to_vec())], "not UTF-8");
    // A record stored under another agent's key.
    let record = serde_json::to_vec(&agent("S1")).expect("json");
    assert_corrupt(vec![(key("agents/S2"), record.clone())], "agents/S2");
    // One agent in two places.
    let unreachable = serde_json::json!({"record": agent("S1"), "since_secs": 5.0}).to_string().into_bytes();
    assert_corrupt(vec![(key("agents/S1"), record), (key("unreachable/S1"), unreachable)], "agent S1");
}

/// Checks what `plan` promises: chunks within the limit whose writes turn the old
/// state's keys into the new state's, each chunk ending at an operation boundary
/// unless `split_ok` (one operation larger than a chunk).
#[track_caller]
fn check_plan(
    state: &RegistryState,
    operations: &[Operation],
    max_changes: usize,
    split_ok: bool,
) -> Vec<Chunk> {
    let planned = plan(state, operations, max_changes, usize::MAX).expect("plans");
    let mut expected = state.clone();
    for operation in operations {
        expected.apply(operation).expect("applies");
    }
    assert_eq!(planned.state, expected);
    assert_eq!(
        composes(state, &planned.chunks).expect("composes"),
        encode_state(&expected).expect("encodes")
    );
    // The states after each prefix of the operations, as keys.
    let mut boundaries = vec![encode_state(state).expect("encodes")];
    let mut running = state.clone();
    for operation in operations {
        running.apply(operation).expect("applies");
        boundaries.push(encode_state(&running).expect("encodes"));
    }
    for end in 1..=planned.chunks.len() {
        let chunk = &planned.chunks[end - 1];
        assert!(chunk.len() <= max_changes, "a chunk of {} keys", chunk.len());
        assert!(chunk.len() > 0, "an empty chunk");
        if !split_ok {
            let keys = composes(state, &planned.chunks[..end]).expect("composes");
            assert!(boundaries.contains(&keys), "chunk {end} does not end at an operation boundary");
        }
    }
    planned.chunks
}

#[test]
fn a_large_transaction_is_chunked_at_operation_boundaries() {
    let admits: Vec<Operation> = (0..200).map(|n| admit(&format!("S{n:03}"))).collect();
    let chunks = check_plan(&RegistryState::default(), &admits, 127, false);
    assert_eq!(chunks.iter().map(Chunk::len).collect::<Vec<_>>(), [127, 73]);

    // Each MarkUnreachable changes two keys: a chunk holds 63 of them.
    let admitted = state_after(&admits);
    let marks: Vec<Operation> = (0..200).map(|n| unreachable(&format!("S{n:03}"), 5.0)).collect();
    let chunks = check_plan(&admitted, &marks, 127, false);
    assert_eq!(chunks.len(), 4);
    assert!(chunks.iter().all(|chunk| chunk.len() % 2 == 0), "an operation was split");
}

#[test]
fn changes_to_one_key_within_a_chunk_merge() {
    // Admitted then removed in the same chunk: nothing to write.
    let state = RegistryState::default();
    let planned = plan(
        &state,
        &[admit("S1"), Operation::RemoveAgent { agent_id: AgentId::from("S1") }],
        127,
        usize::MAX,
    )
    .expect("plans");
    assert!(planned.chunks.is_empty(), "{:?}", planned.chunks);
    // Admitted, unreachable, readmitted: one put of the agent.
    let operations = [admit("S1"), unreachable("S1", 3.0), Operation::ReadmitAgent(agent("S1"))];
    let chunks = check_plan(&state, &operations, 127, false);
    let writes: Vec<(&str, bool)> = chunks[0].writes().map(|(key, value)| (key, value.is_some())).collect();
    assert_eq!(writes, [("agents/S1", true)]);
}

#[test]
fn a_prune_larger_than_a_transaction_is_split() {
    let mut operations: Vec<Operation> = Vec::new();
    for n in 0..300 {
        operations.push(admit(&format!("S{n:03}")));
        operations.push(unreachable(&format!("S{n:03}"), f64::from(n)));
    }
    let state = state_after(&operations);
    let chunks = check_plan(&state, &[Operation::PruneUnreachable { before_secs: 250.0 }], 100, true);
    assert_eq!(chunks.iter().map(Chunk::len).collect::<Vec<_>>(), [100, 100, 50]);
    assert!(chunks.iter().flat_map(Chunk::writes).all(|(_, value)| value.is_none()), "a prune only deletes");
}

#[test]
fn a_failing_operation_plans_nothing() {
    let state = state_after(&[admit("S1")]);
    let result = plan(&state, &[admit("S2"), admit("S1")], 127, usize::MAX);
    assert!(matches!(result, Err(RegistryError::Precondition(_))), "{result:?}");
}

#[test]
fn removing_a_framework_at_the_limit_deletes_the_oldest_id() {
    let mut state = RegistryState::default();
    for n in 0..MAX_REMOVED_FRAMEWORKS {
        state.removed_frameworks.insert(FrameworkId::from(format!("F{n:06}").as_str()), 100.0 + n as f64);
    }
    let operation = Operation::RemoveFramework { framework_id: FrameworkId::from("G"), removed_secs: 1e9 };
    let chunks = check_plan(&state, &[operation], 127, false);
    let writes: Vec<(&str, bool)> = chunks[0].writes().map(|(key, value)| (key, value.is_some())).collect();
    assert_eq!(writes, [("removed_frameworks/F000000", false), ("removed_frameworks/G", true)]);
}

#[test]
fn random_transactions_plan_exactly() {
    let seed =
        std::env::var("KEEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..200 {
        let mut state = RegistryState::default();
        let mut operations = Vec::new();
        for _ in 0..rng.usize(1..60) {
            let id = format!("S{}", rng.u8(0..12));
            let framework_id = FrameworkId::from(format!("F{}", rng.u8(0..6)).as_str());
            let operation = match rng.u8(0..10) {
                0 => admit(&id),
                1 => Operation::ReadmitAgent(agent(&id)),
                2 => unreachable(&id, f64::from(rng.u8(..))),
                3 => Operation::MarkGone { agent_id: AgentId::from(id.as_str()), since_secs: 1.0 },
                4 => Operation::RemoveAgent { agent_id: AgentId::from(id.as_str()) },
                5 => Operation::PutFramework(framework(framework_id.as_str())),
                6 => Operation::RemoveFramework { framework_id, removed_secs: f64::from(rng.u8(..)) },
                7 => Operation::SetWeight { role: format!("r{}", rng.u8(0..3)), weight: 1.5 },
                8 => Operation::PruneUnreachable { before_secs: f64::from(rng.u8(..)) },
                _ => Operation::RemoveQuota { role: "r0".to_string() },
            };
            // Keep only operations that succeed, so the whole transaction does.
            if state.apply(&operation).is_ok() {
                operations.push(operation);
            }
        }
        let max_changes = rng.usize(3..20);
        let planned = plan(&RegistryState::default(), &operations, max_changes, usize::MAX)
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
        assert_eq!(planned.state, state, "seed {seed} round {round}");
        assert_eq!(
            composes(&RegistryState::default(), &planned.chunks).expect("composes"),
            encode_state(&state).expect("encodes"),
            "seed {seed} round {round}"
        );
        assert!(planned.chunks.iter().all(|c| c.len() <= max_changes), "seed {seed} round {round}");
    }
}

#[test]
fn what_a_master_holds_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<F: std::future::Future + Send>(_: F) {}
    send_sync::<super::Leadership>();
    send_sync::<super::EtcdRegistry>();
    send_sync::<super::EtcdConfig>();
    send_sync::<super::EtcdClient>();
    let config = EtcdConfig::new(vec!["127.0.0.1:1".to_string()], "c");
    send(super::campaign(&config, String::new()));
    send(super::current_leader(&config));
    send(super::connect(&config));
}
