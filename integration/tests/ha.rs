//! High availability with real processes: `keel master --etcd` masters campaigning in
//! a real etcd (started by the harness on loopback ports, killed by PID), agents and
//! frameworks following the elected leader through `etcd://`. Leaders are SIGKILLed,
//! SIGSTOPped past their lease, and cut off from etcd; nothing that runs is lost.

use std::collections::BTreeSet;
use std::time::Duration;

use keel_actors::detector::MasterAddress;
use keel_actors::task::{FrameworkInfo, TaskState};
use keel_integration::cluster::{command_task, keel_batch_binary, metric, Event, Op, TempDir, TestFramework};
use keel_integration::ha::HaMasters;
use keel_integration::{http_get, run, wait_until, ChildNode};

/// How long a failover may take in these tests (the TTL is 2 s).
const FAILOVER: Duration = Duration::from_secs(15);

/// The tasks a master's `/state` shows RUNNING, by id.
fn running_tasks(master: &str) -> BTreeSet<String> {
    let Ok((200, body)) = http_get(master, "/state") else { return BTreeSet::new() };
    let state: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

/// Waits until master `i` leads with `agents` active agents and `tasks` running.
fn serving(cluster: &HaMasters, i: usize, agents: f64, tasks: &BTreeSet<String>) -> bool {
    wait_until(FAILOVER, || {
        cluster.elected(i)
            && metric(&cluster.addr(i), "master/slaves_active") == agents
            && tasks.is_subset(&running_tasks(&cluster.addr(i)))
    })
}

fn checkpointing(name: &str) -> FrameworkInfo {
    let mut info = FrameworkInfo::new(name);
    info.checkpoint = true;
    info
}

#[test]
fn killing_each_leader_in_turn_loses_no_task_and_new_launches_work() {
    let mut cluster = HaMasters::start(1, 3, &[]);
    let dirs: Vec<TempDir> = (0..3).map(|i| TempDir::new(&format!("ha-agent-{i}"))).collect();
    let _agents: Vec<ChildNode> =
        dirs.iter().map(|d| cluster.agent(&d.0, &["--resources", "cpus:2;mem:1024"])).collect();
    let first = cluster.wait_leader(FAILOVER).expect("a leader is elected");
    assert!(wait_until(FAILOVER, || metric(&cluster.addr(first), "master/slaves_active") == 3.0));
    // Standbys send callers to the leader, say who it is, and are not elected.
    let standby = (first + 1) % 3;
    let (status, body) = http_get(&cluster.addr(standby), "/tasks?limit=5").unwrap();
    assert_eq!(status, 307, "{body}");
    assert!(body.contains(&format!("master@{}", cluster.addr(first))), "{body}");
    let (_, state) = http_get(&cluster.addr(standby), "/state").unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["leader"], format!("master@{}", cluster.addr(first)));
    assert_eq!(metric(&cluster.addr(standby), "master/elected"), 0.0);
    assert_eq!(http_get(&cluster.addr(standby), "/health").unwrap().0, 200);
    let address: MasterAddress = cluster.address().parse().unwrap();
    let mut killed = BTreeSet::new();
    run(async {
        let node = keel_integration::cluster::test_node().await;
        let mut fw = TestFramework::start_at(&node, "ha", &address, checkpointing("ha")).await;
        // One long task per agent.
        let mut long = BTreeSet::new();
        while long.len() < 3 {
            let offer = fw.offer().await;
            let id = format!("long-{}", long.len());
            fw.op(Op::Launch(offer.id.clone(), vec![command_task(&id, &offer, "sleep 300")]));
            fw.status(&id, TaskState::Running).await;
            long.insert(id);
        }
        let mut round = 0;
        while killed.len() < 3 {
            round += 1;
            assert!(round <= 10, "ten failovers did not kill every master once: {killed:?}");
            let leader = cluster.wait_leader(FAILOVER).expect("a leader");
            cluster.kill(leader);
            killed.insert(leader);
            let next = cluster.wait_leader(FAILOVER).expect("a new leader");
            assert_ne!(next, leader);
            // The agents follow with their tasks; the framework resubscribes.
            let long_now = long.clone();
            let ok = serving(&cluster, next, 3.0, &long_now);
            assert!(ok, "round {round}: master {next} does not serve the agents and their tasks");
            // The framework resubscribes; the new master's offers follow (what came
            // before is the dead master's).
            fw.wait_for(|e| matches!(e, Event::Resubscribed(_)).then_some(())).await;
            // New launches work.
            let offer = fw.offer().await;
            let id = format!("short-{round}");
            fw.op(Op::Launch(offer.id.clone(), vec![command_task(&id, &offer, "true")]));
            fw.status(&id, TaskState::Finished).await;
            // The killed master comes back as a standby.
            cluster.restart(leader);
        }
        // Nothing that ran was ended by the failovers.
        for event in std::iter::from_fn(|| fw.events.try_recv().ok()) {
            if let Event::Status(status) = event {
                assert!(
                    !(long.contains(status.task_id.as_str()) && status.state.is_terminal()),
                    "a long task ended: {status:?}"
                );
            }
        }
        for id in &long {
            fw.op(Op::Kill(keel_actors::ids::TaskId(id.clone())));
            fw.status(id, TaskState::Killed).await;
        }
    });
}

#[test]
fn a_leader_stopped_past_its_lease_is_deposed_and_obeyed_by_nobody() {
    let mut cluster = HaMasters::start(1, 3, &[]);
    let dir = TempDir::new("ha-stopped");
    let _agent = cluster.agent(&dir.0, &["--resources", "cpus:2;mem:1024"]);
    let old = cluster.wait_leader(FAILOVER).expect("a leader");
    assert!(wait_until(FAILOVER, || metric(&cluster.addr(old), "master/slaves_active") == 1.0));
    let address: MasterAddress = cluster.address().parse().unwrap();
    run(async {
        let node = keel_integration::cluster::test_node().await;
        let mut fw = TestFramework::start_at(&node, "stopped", &address, checkpointing("stopped")).await;
        let offer = fw.offer().await;
        fw.op(Op::Launch(offer.id.clone(), vec![command_task("long", &offer, "sleep 300")]));
        fw.status("long", TaskState::Running).await;
        {
            // (Blocking checks on the test's thread: the framework's messages wait in
            // its socket meanwhile.)
            cluster.process(old).expect("the leader runs").stop();
            // Another wins once the stopped one's lease runs out; the agent follows it.
            let mut next = None;
            assert!(wait_until(FAILOVER, || {
                next = (0..3).filter(|i| *i != old).find(|i| cluster.elected(*i));
                next.is_some()
            }));
            let next = next.expect("checked");
            let long = BTreeSet::from(["long".to_string()]);
            assert!(serving(&cluster, next, 1.0, &long), "the new leader serves the agent and its task");
            // Resumed, the old leader sees its lease lapsed and exits; it never serves again.
            cluster.process(old).expect("still there").cont();
            let mut status = None;
            assert!(wait_until(FAILOVER, || {
                status = cluster.exited(old);
                status.is_some()
            }));
            assert!(!status.expect("checked").success(), "a deposed leader exits with a failure");
            // The agent and the task stayed with the new leader throughout.
            assert!(cluster.elected(next));
            assert_eq!(metric(&cluster.addr(next), "master/slaves_active"), 1.0);
            assert!(running_tasks(&cluster.addr(next)).contains("long"));
        }
        fw.wait_for(|e| matches!(e, Event::Resubscribed(_)).then_some(())).await;
        fw.op(Op::Kill(keel_actors::ids::TaskId("long".into())));
        fw.status("long", TaskState::Killed).await;
    });
}

#[test]
fn keel_batch_finishes_two_thousand_tasks_exactly_once_while_leaders_are_killed() {
    let mut cluster = HaMasters::start(1, 3, &[]);
    let dirs: Vec<TempDir> = (0..3).map(|i| TempDir::new(&format!("ha-batch-{i}"))).collect();
    let _agents: Vec<ChildNode> =
        dirs.iter().map(|d| cluster.agent(&d.0, &["--resources", "cpus:8;mem:8192"])).collect();
    let leader = cluster.wait_leader(FAILOVER).expect("a leader");
    assert!(wait_until(FAILOVER, || metric(&cluster.addr(leader), "master/slaves_active") == 3.0));
    // Each job appends its task id to a marker file of its own: a job that ran twice
    // has two lines.
    let markers = TempDir::new("ha-batch-markers");
    let jobs: Vec<String> = (0..2000)
        .map(|n| format!("sleep 0.2; echo $KEEL_TASK_ID >> {}/job-{n}", markers.0.display()))
        .collect();
    let job_file = markers.0.join("jobs.txt");
    std::fs::write(&job_file, jobs.join("\n")).unwrap();
    let mut batch = std::process::Command::new(keel_batch_binary())
        .args(["--master", &cluster.address(), "--file", job_file.to_str().unwrap()])
        .args(["--cpus", "0.1", "--mem", "16", "--retries", "2", "--subscribe-timeout", "60"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("keel-batch starts");
    let done = |n: usize| (0..n).filter(|i| markers.0.join(format!("job-{i}")).exists()).count();
    let mut kills = 0;
    while kills < 5 {
        let leader = cluster.wait_leader(FAILOVER).expect("a leader");
        // Let some work through, then kill the leader in the middle of it.
        let before = done(2000);
        assert!(wait_until(FAILOVER, || done(2000) > before), "no progress under master {leader}");
        if batch.try_wait().expect("wait").is_some() {
            break;
        }
        cluster.kill(leader);
        kills += 1;
        cluster.restart(leader);
    }
    let mut status = None;
    assert!(wait_until(Duration::from_secs(240), || {
        status = batch.try_wait().expect("wait");
        status.is_some()
    }));
    assert!(kills >= 5, "the batch finished after only {kills} leader kills");
    assert!(status.expect("checked").success(), "keel-batch failed");
    for n in 0..2000 {
        let runs = std::fs::read_to_string(markers.0.join(format!("job-{n}"))).unwrap_or_default();
        assert_eq!(runs.lines().count(), 1, "job {n} ran {} times: {runs:?}", runs.lines().count());
    }
}

#[test]
fn etcd_unreachable_at_start_is_retried_and_etcd_lost_makes_the_leader_step_down() {
    let mut etcd = keel_integration::etcd::EtcdCluster::new(1);
    let endpoints = etcd.endpoints().join(",");
    let port = keel_integration::proxy::free_port().to_string();
    let binary = keel_integration::cluster::keel_binary();
    let args = ["master", "--port", &port, "--etcd", &endpoints, "--cluster", "unreachable"];
    let mut master = ChildNode::start_with(binary.to_str().unwrap(), &args, "master listening on ")
        .expect("a master starts without etcd");
    let addr = master.addr.clone();
    // A standby that knows no leader: it answers, and sends callers nowhere.
    assert_eq!(metric(&addr, "master/elected"), 0.0);
    assert_eq!(http_get(&addr, "/tasks").unwrap().0, 503);
    assert_eq!(http_get(&addr, "/health").unwrap().0, 200);
    assert!(master.try_wait().is_none(), "it keeps retrying");
    etcd.start_all();
    assert!(wait_until(FAILOVER, || metric(&addr, "master/elected") == 1.0), "elected once etcd is up");
    assert_eq!(http_get(&addr, "/tasks").unwrap().0, 200);
    // etcd goes away under the leader: it stops serving within the TTL (it exits).
    etcd.kill_member(0);
    let killed = std::time::Instant::now();
    let mut status = None;
    assert!(wait_until(Duration::from_secs(10), || {
        status = master.try_wait();
        status.is_some()
    }));
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(4), "the leader stepped down after {took:?}");
    assert!(!status.expect("checked").success());
}
