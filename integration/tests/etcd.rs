//! High availability against a real etcd (1 or 3 members, started by the harness):
//! the election (one winner, successors with higher epochs, a lost lease seen at
//! once), leader observation, the fenced registry (chunked transactions, every
//! operation, 100,000 removed frameworks, corrupt values), and etcd failures
//! (unreachable at start, killed under a leader, its raft leader killed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{DeleteOptions, GetOptions};
use keel_actors::etcd::{
    self, campaign, connect, current_leader, observe_leader, EtcdConfig, EtcdRegistry, Leader, Leadership,
    LostReason,
};
use keel_actors::ids::{AgentId, FrameworkId, TaskId};
use keel_actors::registry::{
    AgentRecord, FrameworkRecord, MemoryRegistry, Operation, QuotaRecord, Registry, RegistryError,
    RegistryState, Term,
};
use keel_actors::resources::Resources;
use keel_actors::task::{AgentInfo, FrameworkInfo};
use keel_integration::etcd::{eventually, CandidateProcess, EtcdCluster};

const CANDIDATE: &str = env!("CARGO_BIN_EXE_keel-etcd-candidate");

/// Slack on top of a lease TTL for etcd to expire it (it checks every 500 ms) and
/// for a waiting candidate to hear about it, on a loaded machine.
const SLACK: Duration = Duration::from_secs(4);

/// A configuration for cluster `name` with lease `ttl_secs`.
fn config(etcd: &EtcdCluster, name: &str, ttl_secs: u64) -> EtcdConfig {
    let mut config = etcd.config(name);
    config.lease_ttl = Duration::from_secs(ttl_secs);
    config
}

/// Campaigns, with a deadline.
async fn elect(config: &EtcdConfig, value: &str) -> Leadership {
    tokio::time::timeout(Duration::from_secs(20), campaign(config, value.to_string()))
        .await
        .unwrap_or_else(|_| panic!("{value} was not elected within 20 s"))
        .unwrap_or_else(|e| panic!("{value}'s campaign failed: {e}"))
}

/// A leader and its recovered registry.
async fn leader_with_registry(config: &EtcdConfig, value: &str) -> (Leadership, EtcdRegistry, RegistryState) {
    let leadership = elect(config, value).await;
    let registry = EtcdRegistry::new(&leadership.client(), config, leadership.fence()).expect("registry");
    let state = registry.recover(leadership.term()).await.expect("recover");
    (leadership, registry, state)
}

/// What a fresh registry on `leadership` recovers (a second instance: no cache).
async fn stored_state(config: &EtcdConfig, leadership: &Leadership) -> RegistryState {
    let registry = EtcdRegistry::new(&leadership.client(), config, leadership.fence()).expect("registry");
    registry.recover(leadership.term()).await.expect("recover")
}

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

#[track_caller]
fn assert_fenced<T: std::fmt::Debug>(result: Result<T, RegistryError>, term: u64, current: u64) {
    match result {
        Err(RegistryError::Fenced { term: t, current: c }) => assert_eq!((t, c), (Term(term), Term(current))),
        other => panic!("expected Fenced {{ term: {term}, current: {current} }}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_candidates_one_wins_and_the_other_waits() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "two", 2);
    let first = elect(&config, "master@10.0.0.1:5050").await;
    assert!(first.is_held());
    assert_eq!(first.value(), "master@10.0.0.1:5050");
    let second = {
        let config = config.clone();
        tokio::spawn(async move { campaign(&config, "master@10.0.0.2:5050".to_string()).await })
    };
    // The second candidate is registered in the election and waits behind the first.
    let client = connect(&config).await.expect("connect").client();
    let candidates = || {
        let mut client = client.clone();
        let prefix = config.election_prefix();
        async move {
            let response = client.get(prefix, Some(GetOptions::new().with_prefix().with_count_only())).await;
            response.map(|r| r.count()).unwrap_or(0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while candidates().await < 2 {
        assert!(Instant::now() < deadline, "the second candidate never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!second.is_finished(), "two leaders at once");
    let leader = current_leader(&config).await.expect("current leader").expect("a leader");
    assert_eq!(leader, Leader { value: "master@10.0.0.1:5050".to_string(), epoch: first.epoch() });
    assert!(first.is_held());

    // The first resigns: the second is elected at once, with a higher epoch.
    let first_epoch = first.epoch();
    first.resign().await.expect("resign");
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second was not elected after the first resigned")
        .expect("join")
        .expect("campaign");
    assert!(second.epoch() > first_epoch, "{} <= {first_epoch}", second.epoch());
    assert_eq!(current_leader(&config).await.expect("current leader").map(|l| l.epoch), Some(second.epoch()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leaders_successor_wins_with_a_higher_epoch() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "killed", 2);
    let mut first =
        CandidateProcess::start(CANDIDATE, &etcd.endpoints(), "killed", "master@10.0.0.1:5050", 2);
    let first_epoch = first.elected(Duration::from_secs(20)).await;
    let second = {
        let config = config.clone();
        tokio::spawn(async move { campaign(&config, "master@10.0.0.2:5050".to_string()).await })
    };
    let killed_at = Instant::now();
    first.kill();
    let second = tokio::time::timeout(config.lease_ttl + SLACK, second)
        .await
        .expect("no successor within the TTL and slack")
        .expect("join")
        .expect("campaign");
    let elapsed = killed_at.elapsed();
    assert!(second.epoch() > first_epoch, "{} <= {first_epoch}", second.epoch());
    eprintln!("successor elected {} ms after the leader was killed (TTL 2 s)", elapsed.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_past_its_lease_sees_the_loss_at_once_when_resumed() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "stopped", 2);
    let mut first =
        CandidateProcess::start(CANDIDATE, &etcd.endpoints(), "stopped", "master@10.0.0.1:5050", 2);
    let first_epoch = first.elected(Duration::from_secs(20)).await;
    let second = {
        let config = config.clone();
        tokio::spawn(async move { campaign(&config, "master@10.0.0.2:5050".to_string()).await })
    };
    first.stop();
    // Its lease expires while it is stopped: the other candidate is elected.
    let second = tokio::time::timeout(config.lease_ttl + SLACK, second)
        .await
        .expect("no successor while the leader was stopped")
        .expect("join")
        .expect("campaign");
    assert!(second.epoch() > first_epoch);
    let resumed_at = Instant::now();
    first.cont();
    let line = first.next_line(Duration::from_secs(5)).await.expect("the resumed leader said nothing");
    let noticed = resumed_at.elapsed();
    assert!(line.starts_with("LOST "), "{line:?}");
    assert!(noticed < Duration::from_secs(1), "the resumed leader noticed after {noticed:?}: {line}");
    eprintln!("the resumed leader noticed in {} ms: {line}", noticed.as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_is_fenced_and_changes_nothing() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "fenced", 2);
    let (old, old_registry, state) = leader_with_registry(&config, "old").await;
    assert_eq!(state, RegistryState::default());
    assert_eq!(old_registry.apply(old.term(), vec![admit("S1"), admit("S2")]).await.expect("apply"), 1);

    // Depose it: its lease is revoked behind its back (as if it had expired).
    let mut client = connect(&config).await.expect("connect").client();
    client.lease_revoke(old.lease()).await.expect("revoke");
    let lost =
        tokio::time::timeout(config.lease_ttl, old.lost()).await.expect("the old leader never noticed");
    assert!(matches!(lost, LostReason::KeyDeleted | LostReason::Expired), "{lost:?}");
    assert!(!old.is_held());

    let (new, new_registry, recovered) = leader_with_registry(&config, "new").await;
    assert!(new.epoch() > old.epoch());
    let memory = MemoryRegistry::new();
    memory.recover(Term(1)).await.expect("recover");
    memory.apply(Term(1), vec![admit("S1"), admit("S2")]).await.expect("apply");
    assert_eq!(recovered, memory.state(), "the new leader sees what the old one wrote");

    // The old leader's writes, large or empty, are fenced and change nothing.
    let many: Vec<Operation> = (0..300).map(|n| admit(&format!("X{n}"))).collect();
    assert_fenced(old_registry.apply(old.term(), vec![admit("S3")]).await, old.epoch(), new.epoch());
    assert_fenced(old_registry.apply(old.term(), many).await, old.epoch(), new.epoch());
    assert_fenced(old_registry.apply(old.term(), vec![]).await, old.epoch(), new.epoch());
    assert_fenced(old_registry.recover(old.term()).await, old.epoch(), new.epoch());
    assert_eq!(stored_state(&config, &new).await, memory.state());
    assert_eq!(
        new_registry.apply(new.term(), vec![admit("S4")]).await.expect("apply"),
        2,
        "the version continues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_above_the_txn_op_limit_commits() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "large", 2);
    let (leader, registry, _) = leader_with_registry(&config, "leader").await;
    let memory = MemoryRegistry::new();
    memory.recover(Term(1)).await.expect("recover");
    let admits: Vec<Operation> = (0..200).map(|n| admit(&format!("S{n:03}"))).collect();
    let marks: Vec<Operation> = (0..200)
        .map(|n| Operation::MarkUnreachable { agent_id: AgentId::from(format!("S{n:03}")), since_secs: 50.0 })
        .collect();
    for (version, transaction) in [admits, marks].into_iter().enumerate() {
        let expected = memory.apply(Term(1), transaction.clone()).await.expect("memory");
        assert_eq!(registry.apply(leader.term(), transaction).await.expect("etcd"), expected);
        assert_eq!(expected, version as u64 + 1);
        assert_eq!(stored_state(&config, &leader).await, memory.state());
    }
    assert_eq!(memory.state().unreachable.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_round_trips_like_the_memory_registry() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "roundtrip", 2);
    let (leader, registry, _) = leader_with_registry(&config, "leader").await;
    let memory = MemoryRegistry::new();
    memory.recover(Term(1)).await.expect("recover");
    let mut lost = agent("S5");
    lost.lost_tasks = vec![(FrameworkId::from("F1"), TaskId::from("t1"))];
    let mut renamed = agent("S1");
    renamed.info.hostname = "renamed".to_string();
    let quota = QuotaRecord {
        guarantee: Resources::parse("cpus:2;mem:512").expect("parse"),
        limit: Some(Resources::parse("cpus:8;mem:4096").expect("parse")),
    };
    let transactions: Vec<Vec<Operation>> = vec![
        vec![admit("S1"), admit("S2"), admit("S3"), admit("S4"), Operation::PutFramework(framework("F1"))],
        vec![Operation::ReadmitAgent(renamed)],
        vec![
            Operation::MarkUnreachable { agent_id: AgentId::from("S2"), since_secs: 10.0 },
            Operation::MarkUnreachable { agent_id: AgentId::from("S3"), since_secs: 30.0 },
        ],
        vec![Operation::MarkGone { agent_id: AgentId::from("S4"), since_secs: 40.0 }],
        vec![Operation::ReadmitAgent(agent("S3")), Operation::RemoveAgent { agent_id: AgentId::from("S1") }],
        vec![Operation::PruneUnreachable { before_secs: 20.0 }],
        vec![Operation::AdmitAgent(lost)],
        vec![
            Operation::PutFramework(framework("F2")),
            Operation::RemoveFramework { framework_id: FrameworkId::from("F1"), removed_secs: 50.0 },
        ],
        vec![Operation::RemoveFramework {
            framework_id: FrameworkId::from("never-recorded"),
            removed_secs: 51.0,
        }],
        vec![
            Operation::SetWeight { role: "eng".to_string(), weight: 2.5 },
            Operation::SetWeight { role: "eng/backend".to_string(), weight: 0.5 },
        ],
        vec![Operation::SetQuota { role: "eng".to_string(), quota: quota.clone() }],
        vec![
            Operation::SetQuota { role: "ops".to_string(), quota },
            Operation::RemoveQuota { role: "eng".to_string() },
        ],
        vec![Operation::SetWeight { role: "eng".to_string(), weight: 3.0 }],
    ];
    for transaction in transactions {
        let expected = memory.apply(Term(1), transaction.clone()).await.expect("memory applies");
        let version = registry.apply(leader.term(), transaction.clone()).await.expect("etcd applies");
        assert_eq!(version, expected, "{transaction:?}");
        assert_eq!(stored_state(&config, &leader).await, memory.state(), "after {transaction:?}");
    }
    // A failing transaction fails the same way and writes nothing.
    let failing = vec![admit("S9"), Operation::RemoveQuota { role: "eng".to_string() }];
    assert!(matches!(memory.apply(Term(1), failing.clone()).await, Err(RegistryError::Precondition(_))));
    let result = registry.apply(leader.term(), failing).await;
    assert!(matches!(result, Err(RegistryError::Precondition(_))), "{result:?}");
    assert_eq!(stored_state(&config, &leader).await, memory.state());
    assert_eq!(registry.apply(leader.term(), vec![]).await.expect("empty transaction"), 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_removed_frameworks_recover() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "removed", 5);
    let (leader, registry, _) = leader_with_registry(&config, "leader").await;
    let memory = MemoryRegistry::new();
    memory.recover(Term(1)).await.expect("recover");
    let removals: Vec<Operation> = (0..100_000)
        .map(|n| Operation::RemoveFramework {
            framework_id: FrameworkId::from(format!("framework-{n:06}")),
            removed_secs: 1_000.0 + n as f64,
        })
        .collect();
    memory.apply(Term(1), removals.clone()).await.expect("memory");
    let started = Instant::now();
    registry.apply(leader.term(), removals).await.expect("etcd");
    eprintln!("100,000 removals written in {} ms", started.elapsed().as_millis());
    let started = Instant::now();
    let recovered = stored_state(&config, &leader).await;
    eprintln!("100,000 removals recovered in {} ms", started.elapsed().as_millis());
    assert_eq!(recovered.removed_frameworks.len(), 100_000);
    assert_eq!(recovered, memory.state());

    // One more evicts the oldest, in etcd too.
    let one_more =
        vec![Operation::RemoveFramework { framework_id: FrameworkId::from("latest"), removed_secs: 1e9 }];
    memory.apply(Term(1), one_more.clone()).await.expect("memory");
    registry.apply(leader.term(), one_more).await.expect("etcd");
    let recovered = stored_state(&config, &leader).await;
    assert!(!recovered.removed_frameworks.contains_key(&FrameworkId::from("framework-000000")));
    assert_eq!(recovered, memory.state());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_leader_sees_each_leader_in_order() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "observed", 2);
    let mut observed = observe_leader(&config).expect("observer");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let mut observed = observed.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            while observed.changed().await.is_ok() {
                let value = observed.borrow_and_update().clone();
                seen.lock().expect("lock").push(value);
            }
        })
    };
    let wait_for = |observed: &mut tokio::sync::watch::Receiver<Option<Leader>>, want: Option<u64>| {
        let mut observed = observed.clone();
        async move {
            let result = tokio::time::timeout(
                Duration::from_secs(10),
                observed.wait_for(|leader| leader.as_ref().map(|l| l.epoch) == want),
            )
            .await;
            assert!(matches!(result, Ok(Ok(_))), "the observer never showed epoch {want:?}");
        }
    };
    assert_eq!(current_leader(&config).await.expect("current leader"), None);

    let a = elect(&config, "master@10.0.0.1:5050").await;
    wait_for(&mut observed, Some(a.epoch())).await;
    let b = {
        let config = config.clone();
        tokio::spawn(async move { campaign(&config, "master@10.0.0.2:5050".to_string()).await })
    };
    let (a_epoch, a_value) = (a.epoch(), a.value().to_string());
    a.resign().await.expect("resign");
    let b =
        tokio::time::timeout(Duration::from_secs(10), b).await.expect("b elected").expect("join").expect("b");
    wait_for(&mut observed, Some(b.epoch())).await;
    let b_epoch = b.epoch();
    b.resign().await.expect("resign");
    wait_for(&mut observed, None).await;
    assert_eq!(current_leader(&config).await.expect("current leader"), None);
    let c = elect(&config, "master@10.0.0.3:5050").await;
    wait_for(&mut observed, Some(c.epoch())).await;
    assert_eq!(
        current_leader(&config).await.expect("current leader"),
        Some(Leader { value: "master@10.0.0.3:5050".to_string(), epoch: c.epoch() })
    );

    let seen = seen.lock().expect("lock").clone();
    recorder.abort();
    let leaders: Vec<(u64, String)> = seen.iter().flatten().map(|l| (l.epoch, l.value.clone())).collect();
    assert_eq!(
        leaders,
        [
            (a_epoch, a_value),
            (b_epoch, "master@10.0.0.2:5050".to_string()),
            (c.epoch(), "master@10.0.0.3:5050".to_string())
        ],
        "{seen:?}"
    );
    assert!(a_epoch < b_epoch && b_epoch < c.epoch());
    assert!(seen.contains(&None), "the gap between b and c was not observed: {seen:?}");
}

/// Log lines written by the tracing subscriber this test binary installs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retries_and_logs_until_etcd_starts() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("keel_actors::etcd=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");

    let mut etcd = EtcdCluster::new(1);
    let mut config = config(&etcd, "late", 2);
    config.connect_timeout = Duration::from_millis(500);
    config.max_backoff = Duration::from_millis(400);
    let connecting = {
        let config = config.clone();
        tokio::spawn(async move { connect(&config).await })
    };
    let endpoint = etcd.endpoint(0);
    let retries =
        || logs.text().lines().filter(|l| l.contains("cannot reach etcd") && l.contains(&endpoint)).count();
    assert!(
        eventually(Duration::from_secs(20), || retries() >= 3).await,
        "no retries logged:\n{}",
        logs.text()
    );
    assert!(!connecting.is_finished());
    let mut etcd = tokio::task::spawn_blocking(move || {
        etcd.start_all();
        etcd
    })
    .await
    .expect("etcd starts");
    let client = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("connect did not succeed once etcd ran")
        .expect("join")
        .expect("connect");
    drop(client);
    assert!(logs.text().contains("connected to etcd"), "{}", logs.text());

    // A bounded connect gives up with a clear error.
    etcd.kill_member(0);
    config.connect_give_up_after = Some(Duration::from_secs(1));
    match connect(&config).await {
        Err(etcd::EtcdError::Unreachable { endpoints, attempts, .. }) => {
            assert_eq!(endpoints, etcd.endpoints().join(","));
            assert!(attempts >= 2, "{attempts} attempts");
        }
        Err(other) => panic!("expected Unreachable, got {other:?}"),
        Ok(_) => panic!("connected to a killed etcd"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_etcd_under_a_leader_fires_lost_within_the_ttl() {
    let mut etcd = EtcdCluster::start(1);
    let config = config(&etcd, "etcd-killed", 2);
    let leader = elect(&config, "leader").await;
    let lost = leader.lost();
    let killed_at = Instant::now();
    etcd.kill_member(0);
    let reason =
        tokio::time::timeout(config.lease_ttl, lost).await.expect("lost did not fire within the TTL");
    let after = killed_at.elapsed();
    assert!(matches!(reason, LostReason::NotRenewed { .. }), "{reason:?}");
    assert!(!leader.is_held());
    eprintln!("lost {} ms after etcd was killed: {reason}", after.as_millis());

    // Once etcd is back, a new campaign wins with a higher epoch.
    let old_epoch = leader.epoch();
    drop(leader);
    let etcd = tokio::task::spawn_blocking(move || {
        etcd.restart_member(0);
        etcd.assert_healthy();
        etcd
    })
    .await
    .expect("etcd restarts");
    let next = elect(&config, "next").await;
    assert!(next.epoch() > old_epoch);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_etcd_leader_member_keeps_or_replaces_the_keel_leader() {
    let mut etcd = EtcdCluster::start(3);
    let config = config(&etcd, "three", 4);
    let (leader, registry, _) = leader_with_registry(&config, "leader").await;
    registry.apply(leader.term(), vec![admit("S1")]).await.expect("apply");
    let raft_leader = etcd.leader_member().expect("an etcd leader");
    let (mut etcd, healed) = tokio::task::spawn_blocking(move || {
        etcd.kill_member(raft_leader);
        // The two others elect a new etcd leader.
        let healed = etcd.wait_healthy(Duration::from_secs(20));
        (etcd, healed)
    })
    .await
    .expect("join");
    assert!(healed, "etcd did not recover from losing its leader\n{}", etcd.logs());
    let kept = leader.is_held();
    let writer = if kept {
        // Still leading: its fenced writes go through the surviving members.
        let write = registry.apply(leader.term(), vec![admit("S2")]).await;
        assert!(write.is_ok() || !leader.is_held(), "a held leadership could not write: {write:?}");
        if write.is_ok() {
            eprintln!("the Keel leader kept its leadership (epoch {})", leader.epoch());
            leader
        } else {
            elect(&config, "replacement").await
        }
    } else {
        eprintln!("the Keel leader lost its leadership: {:?}", leader.lost_reason());
        let next = elect(&config, "replacement").await;
        assert!(next.epoch() > leader.epoch());
        next
    };
    let stored = stored_state(&config, &writer).await;
    assert!(stored.agents.contains_key(&AgentId::from("S1")), "{stored:?}");

    // The killed member rejoins.
    etcd = tokio::task::spawn_blocking(move || {
        etcd.restart_member(raft_leader);
        etcd.assert_healthy();
        etcd
    })
    .await
    .expect("join");
    assert!(writer.is_held());
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_leader_key_ends_the_leadership() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "deleted", 10);
    let leader = elect(&config, "leader").await;
    let mut client = connect(&config).await.expect("connect").client();
    client.delete(leader.key().to_vec(), None::<DeleteOptions>).await.expect("delete");
    let reason = tokio::time::timeout(Duration::from_secs(3), leader.lost()).await.expect("never noticed");
    assert_eq!(reason, LostReason::KeyDeleted);
    assert!(!leader.is_held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_registry_values_are_reported_naming_the_key() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "corrupt", 5);
    let (leader, registry, _) = leader_with_registry(&config, "leader").await;
    registry.apply(leader.term(), vec![admit("S1")]).await.expect("apply");
    let mut client = connect(&config).await.expect("connect").client();
    let key = format!("{}agents/S1", config.registry_prefix());
    client.put(key.clone(), "{\"info\": 3", None).await.expect("put");
    let fresh = EtcdRegistry::new(&leader.client(), &config, leader.fence()).expect("registry");
    match fresh.recover(leader.term()).await {
        Err(RegistryError::Corrupt(message)) => assert!(message.contains(&key), "{message}"),
        other => panic!("expected Corrupt naming {key}, got {other:?}"),
    }
    // The value is kept for an operator to look at.
    let stored = client.get(key.clone(), None).await.expect("get");
    assert_eq!(stored.kvs().first().map(|kv| kv.value().to_vec()), Some(b"{\"info\": 3".to_vec()));

    client.delete(key, None).await.expect("delete");
    client.put(format!("{}format", config.registry_prefix()), "2", None).await.expect("put");
    match fresh.recover(leader.term()).await {
        Err(RegistryError::Corrupt(message)) => assert!(message.contains("format 2"), "{message}"),
        other => panic!("expected Corrupt about the format, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_refuses_claims_foreign_terms_and_writes_before_recovery() {
    let etcd = EtcdCluster::start(1);
    let config = config(&etcd, "refusals", 5);
    let leader = elect(&config, "leader").await;
    let registry = EtcdRegistry::new(&leader.client(), &config, leader.fence()).expect("registry");
    assert_eq!(registry.describe(), format!("etcd://{}/refusals", etcd.endpoints().join(",")));
    let invalid = |result: Result<_, RegistryError>| matches!(result, Err(RegistryError::InvalidArgument(_)));
    assert!(invalid(registry.claim_next().await.map(|_| ())));
    assert!(invalid(registry.apply(leader.term(), vec![admit("S1")]).await.map(|_| ())));
    assert!(invalid(registry.recover(Term(leader.epoch() + 1)).await.map(|_| ())));
    assert!(invalid(registry.recover(Term(0)).await.map(|_| ())));
    assert_eq!(registry.recover(leader.term()).await.expect("recover"), RegistryState::default());
    assert!(invalid(registry.apply(Term(leader.epoch() - 1), vec![admit("S1")]).await.map(|_| ())));
    assert_eq!(registry.apply(leader.term(), vec![]).await.expect("empty"), 0);
    // A write that fails its precondition writes nothing; the next one works.
    registry.apply(leader.term(), vec![admit("S1")]).await.expect("apply");
    assert!(matches!(
        registry.apply(leader.term(), vec![admit("S2"), admit("S1")]).await,
        Err(RegistryError::Precondition(_))
    ));
    assert_eq!(registry.apply(leader.term(), vec![admit("S2")]).await.expect("apply"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_etcd_follower_costs_neither_the_leadership_nor_writes() {
    let etcd = EtcdCluster::start(3);
    let config = config(&etcd, "stopped-member", 2);
    let (leader, registry, _) = leader_with_registry(&config, "leader").await;
    let mut observed = observe_leader(&config).expect("observer");
    let leader_epoch = leader.epoch();
    let shown = tokio::time::timeout(
        Duration::from_secs(10),
        observed.wait_for(|l| l.as_ref().map(|l| l.epoch) == Some(leader_epoch)),
    )
    .await
    .is_ok_and(|seen| seen.is_ok());
    assert!(shown, "the observer never showed the leader");
    let raft_leader = etcd.leader_member().expect("an etcd leader");
    let mut written = 0;
    for follower in (0..etcd.size()).filter(|&i| i != raft_leader) {
        // A stopped member keeps its connections open and answers nothing.
        etcd.stop(follower);
        let lost = leader.lost();
        tokio::pin!(lost);
        let end = Instant::now() + config.lease_ttl * 3;
        while Instant::now() < end {
            tokio::select! {
                reason = &mut lost => panic!("lost while etcd member {follower} was stopped: {reason}"),
                result = registry.apply(leader.term(), vec![admit(&format!("S{written}"))]) => {
                    result.unwrap_or_else(|e| panic!("write {written} with member {follower} stopped: {e}"));
                    written += 1;
                }
            }
        }
        etcd.cont(follower);
        assert!(eventually(Duration::from_secs(20), || etcd.is_healthy(follower)).await, "{}", etcd.logs());
    }
    assert_eq!(stored_state(&config, &leader).await.agents.len(), written);

    // With a member stopped, the observer still follows a change of leader. A
    // request that went to the stopped member is abandoned: the registry's and
    // resign's after a third of the request timeout, a campaign's or a watch's
    // when HTTP/2 keep-alive or the watch's progress check gives up on it (< 15 s).
    let follower = (0..etcd.size()).find(|&i| i != raft_leader).expect("a follower");
    etcd.stop(follower);
    let stopped_at = Instant::now();
    leader.resign().await.expect("resign");
    let next = tokio::time::timeout(Duration::from_secs(30), campaign(&config, "next".to_string()))
        .await
        .expect("nobody elected with a member stopped")
        .expect("campaign");
    let next_epoch = next.epoch();
    let shown = tokio::time::timeout(
        Duration::from_secs(30),
        observed.wait_for(|l| l.as_ref().map(|l| l.epoch) == Some(next_epoch)),
    )
    .await
    .is_ok_and(|seen| seen.is_ok());
    assert!(shown, "the observer never showed the next leader");
    eprintln!(
        "with etcd member {follower} stopped: {written} writes, the next leader elected and observed after {} ms",
        stopped_at.elapsed().as_millis()
    );
    etcd.cont(follower);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_failed_on_a_dead_etcd_needs_a_recover() {
    let mut etcd = EtcdCluster::start(1);
    let mut config = config(&etcd, "uncertain", 10);
    config.request_timeout = Duration::from_secs(1);
    let (leader, registry, _) = leader_with_registry(&config, "leader").await;
    registry.apply(leader.term(), vec![admit("S1")]).await.expect("apply");
    etcd.kill_member(0);
    let failed = registry.apply(leader.term(), vec![admit("S2")]).await;
    assert!(matches!(failed, Err(RegistryError::Unavailable(_))), "{failed:?}");
    let etcd = tokio::task::spawn_blocking(move || {
        etcd.restart_member(0);
        etcd.assert_healthy();
        etcd
    })
    .await
    .expect("etcd restarts");
    // The failed write may have committed: the registry refuses to guess.
    let refused = registry.apply(leader.term(), vec![admit("S3")]).await;
    assert!(matches!(refused, Err(RegistryError::InvalidArgument(_))), "{refused:?}");
    let recovered = registry.recover(leader.term()).await.expect("recover");
    assert_eq!(recovered.agents.keys().map(|id| id.as_str()).collect::<Vec<_>>(), ["S1"]);
    assert_eq!(registry.apply(leader.term(), vec![admit("S3")]).await.expect("apply"), 2);
    assert!(leader.is_held(), "{:?}", leader.lost_reason());
    drop(etcd);
}
