//! Isolation through the real agent: a task that outgrows its memory limit is
//! OOM-killed and reported TASK_FAILED with the memory limitation, and the agent
//! keeps running tasks afterwards. Needs writable cgroups: skips loudly where they
//! are not, and fails instead when KEEL_REQUIRE_CGROUPS=1 (as in CI).

use keel_actors::cli::master_upid;
use keel_actors::task::{CommandInfo, FrameworkInfo, TaskInfo, TaskReason, TaskState};
use keel_integration::cluster::{start_agent, start_master, Op, TempDir, TestFramework};
use keel_isolation::{best_available, CgroupsConfig};
use keel_kernel::{Node, NodeConfig};

/// Whether this machine gives the agent cgroups; panics when they are required.
fn cgroups_or_skip(test: &str) -> bool {
    let probe =
        CgroupsConfig { root: format!("keel-probe-{}", std::process::id()), ..CgroupsConfig::default() };
    let (containerizer, why) = best_available(probe);
    let available = containerizer.name().starts_with("cgroups");
    containerizer.cleanup();
    if !available {
        if std::env::var("KEEL_REQUIRE_CGROUPS").is_ok_and(|v| v == "1") {
            panic!("{test}: KEEL_REQUIRE_CGROUPS=1 but cgroups are not usable: {why}");
        }
        eprintln!("\n*** SKIPPING {test}: cgroups are not usable here ({why}) ***\n");
    }
    available
}

#[test]
fn a_task_past_its_memory_limit_fails_with_the_memory_limitation() {
    if !cgroups_or_skip("a_task_past_its_memory_limit_fails_with_the_memory_limitation") {
        return;
    }
    let dir = TempDir::new("oom");
    let master = start_master(&[]);
    let agent = start_agent(&master.addr, &dir.0, &["--resources", "cpus:2;mem:1024"]);
    let master_upid = master_upid(&master.addr).unwrap();
    actix_rt::System::new().block_on(async {
        let node = Node::start(NodeConfig::default()).await.unwrap();
        let mut fw = TestFramework::start(&node, "fw", &master_upid, FrameworkInfo::new("oom")).await;
        let offer = fw.offer().await;
        // `tail /dev/zero` holds an ever-growing line in memory.
        let hog = TaskInfo::command(
            "hog",
            &offer,
            "cpus:0.5;mem:48".parse().unwrap(),
            CommandInfo::shell("tail /dev/zero"),
        );
        let fine = TaskInfo::command(
            "fine",
            &offer,
            "cpus:0.5;mem:64".parse().unwrap(),
            CommandInfo::shell("echo still here"),
        );
        fw.op(Op::Launch(offer.id.clone(), vec![hog, fine]));
        // Both end; take their terminal updates in whatever order they come.
        let mut ends = std::collections::HashMap::new();
        while ends.len() < 2 {
            let status = fw
                .wait_for(|e| match e {
                    keel_integration::cluster::Event::Status(s) if s.state.is_terminal() => Some(s.clone()),
                    _ => None,
                })
                .await;
            ends.insert(status.task_id.as_str().to_string(), status);
        }
        let failed = ends["hog"].clone();
        assert_eq!(failed.state, TaskState::Failed, "{failed:?}");
        assert_eq!(failed.reason, Some(TaskReason::ContainerLimitationMemory), "{failed:?}");
        let message = failed.message.clone().unwrap_or_default();
        assert!(
            message.contains("container limitation: memory") && message.contains("limit 48 MB"),
            "{message}"
        );
        assert_eq!(ends["fine"].state, TaskState::Finished);
    });
    // The agent is still there and serving.
    let (status, _) = keel_integration::http_get(&agent.addr, "/health").unwrap();
    assert_eq!(status, 200);
}
