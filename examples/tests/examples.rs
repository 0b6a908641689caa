//! The examples against a real in-process cluster (master and agents on their own
//! nodes and ports, tasks and executors as real child processes).

use std::path::PathBuf;
use std::time::Duration;

use keel_actors::local::{LocalCluster, LocalConfig};
use keel_actors::task::TaskState;
use keel_examples::batch::{self, BatchOptions};
use keel_examples::pi::{self, PiOptions};

/// How long one example may take before the test fails instead of hanging.
const RUN_DEADLINE: Duration = Duration::from_secs(90);

fn cluster_config(agents: usize) -> LocalConfig {
    LocalConfig { agents, agent_resources: Some("cpus:4;mem:4096".into()), ..LocalConfig::default() }
}

/// A fresh temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("keel-examples-{name}-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn batch_retries_failures_up_to_the_bound_and_summarises() {
    let temp = TempDir::new("batch");
    let mark = temp.0.join("MARK");
    let flaky = format!("test -f {0} || (touch {0}; exit 1)", mark.display());
    let jobs = vec!["true".to_string(), "exit 3".to_string(), flaky.clone()];
    let options = BatchOptions { retries: 2, ..BatchOptions::default() };
    let summary = actix_rt::System::new().block_on(async move {
        let cluster = LocalCluster::start(cluster_config(1)).await.expect("cluster starts");
        let run = batch::run_on(cluster.node(), cluster.master_upid().clone(), jobs, &options);
        let summary = tokio::time::timeout(RUN_DEADLINE, run).await;
        cluster.shutdown().await;
        summary.expect("the batch ended in time").expect("the batch ran")
    });
    assert!(summary.aborted.is_none(), "{summary:?}");
    let [ok, failing, flaky_job] = summary.jobs.as_slice() else { panic!("three jobs: {summary:?}") };
    assert_eq!((ok.attempts, ok.final_state, ok.exit_code), (1, Some(TaskState::Finished), Some(0)));
    assert_eq!(failing.command, "exit 3");
    assert_eq!(
        (failing.attempts, failing.final_state, failing.exit_code),
        (3, Some(TaskState::Failed), Some(3))
    );
    assert_eq!(flaky_job.command, flaky);
    assert_eq!(
        (flaky_job.attempts, flaky_job.final_state, flaky_job.exit_code),
        (2, Some(TaskState::Finished), Some(0))
    );
    assert!(!summary.succeeded());
    assert_eq!(summary.exit_code(), 1);
}

#[test]
fn batch_rejects_bad_input_with_clear_errors() {
    actix_rt::System::new().block_on(async {
        let cluster = LocalCluster::start(cluster_config(1)).await.expect("cluster starts");
        let master = cluster.master_upid().clone();
        let bad_cpus = BatchOptions { cpus: -1.0, ..BatchOptions::default() };
        let error = batch::run_on(cluster.node(), master.clone(), vec!["true".into()], &bad_cpus)
            .await
            .expect_err("negative cpus are refused");
        assert!(error.to_string().contains("--cpus"), "{error}");
        let error = batch::run_on(cluster.node(), master, Vec::new(), &BatchOptions::default())
            .await
            .expect_err("an empty batch is refused");
        assert!(error.to_string().contains("no commands"), "{error}");
        cluster.shutdown().await;
    });
}

#[test]
fn pi_executors_answer_every_unit_once_and_finish() {
    let mut options = PiOptions::new(PathBuf::from(env!("CARGO_BIN_EXE_keel-pi-executor")));
    options.executors = 2;
    options.units = 10;
    options.samples = 20_000;
    let report = actix_rt::System::new().block_on(async move {
        let cluster = LocalCluster::start(cluster_config(2)).await.expect("cluster starts");
        let run = pi::run_on(cluster.node(), cluster.master_upid().clone(), &options);
        let report = tokio::time::timeout(RUN_DEADLINE, run).await;
        cluster.shutdown().await;
        report.expect("the estimate ended in time").expect("the estimate ran")
    });
    assert_eq!(report.failure, None);
    let estimate = report.estimate().expect("an estimate");
    assert!((estimate - std::f64::consts::PI).abs() < 0.1, "estimate {estimate}");
    assert_eq!(report.units_done, 10);
    assert_eq!(report.answers.len(), 10);
    assert!(report.answers.values().all(|answers| *answers == 1), "{:?}", report.answers);
    assert_eq!(report.executors.len(), 2, "{:?}", report.executors);
    assert!(report.executors.values().all(|state| *state == TaskState::Finished), "{:?}", report.executors);
    assert!(report.succeeded());
}

#[test]
fn pi_refuses_a_missing_executor() {
    actix_rt::System::new().block_on(async {
        let cluster = LocalCluster::start(cluster_config(1)).await.expect("cluster starts");
        let options = PiOptions::new(PathBuf::from("/nonexistent/keel-pi-executor"));
        let error = pi::run_on(cluster.node(), cluster.master_upid().clone(), &options)
            .await
            .expect_err("a missing executor is refused");
        assert!(error.to_string().contains("does not exist"), "{error}");
        cluster.shutdown().await;
    });
}

#[test]
fn an_unreachable_master_is_an_error_not_a_hang() {
    actix_rt::System::new().block_on(async {
        let config = keel_kernel::NodeConfig { bind: ([127, 0, 0, 1], 0).into(), ..Default::default() };
        let node = keel_kernel::Node::start(config).await.expect("node starts");
        // Port 1 on loopback: nothing listens there.
        let master = keel_actors::cli::master_upid("127.0.0.1:1").expect("valid address");
        let options =
            BatchOptions { subscribe_timeout: Duration::from_millis(500), ..BatchOptions::default() };
        let run = batch::run_on(&node, master, vec!["true".into()], &options);
        let error = tokio::time::timeout(RUN_DEADLINE, run)
            .await
            .expect("gave up in time")
            .expect_err("no master, no batch");
        assert!(error.to_string().contains("no answer from the master"), "{error}");
    });
}
