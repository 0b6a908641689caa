//! The checkpoint tree: what is written reads back whole, and what cannot be made
//! whole is an error, never half a state.

use std::collections::BTreeMap;

use keel_core::agent::container::ContainerId;
use keel_core::agent::Checkpoint;
use keel_proto::ids::{AgentId, UpdateId};
use keel_proto::messages::common::StatusUpdate;
use keel_proto::task::{
    AgentInfo, CommandInfo, ExecutorInfo, FrameworkInfo, StatusSource, TaskInfo, TaskState, TaskStatus,
};

use super::{CheckpointError, Checkpoints};
use crate::ids::{ExecutorId, FrameworkId, TaskId};

fn info() -> AgentInfo {
    AgentInfo {
        hostname: "h".into(),
        id: Some(AgentId("S1".into())),
        resources: "cpus:2;mem:512".parse().unwrap(),
        attributes: BTreeMap::new(),
    }
}

fn framework() -> FrameworkInfo {
    let mut framework = FrameworkInfo::new("fw");
    framework.id = Some(FrameworkId("F1".into()));
    framework.checkpoint = true;
    framework
}

fn task(id: &str) -> TaskInfo {
    TaskInfo {
        name: id.into(),
        task_id: TaskId(id.into()),
        agent_id: AgentId("S1".into()),
        resources: "cpus:1;mem:64".parse().unwrap(),
        command: Some(CommandInfo::shell("sleep 100")),
        executor: None,
        data: None,
        labels: BTreeMap::new(),
    }
}

fn update(task_id: &str) -> StatusUpdate {
    let mut status = TaskStatus::new(TaskId(task_id.into()), TaskState::Running, StatusSource::Executor);
    status.uuid = Some(UpdateId("u1".into()));
    StatusUpdate {
        framework_id: FrameworkId("F1".into()),
        executor_id: Some(ExecutorId(task_id.into())),
        agent_id: Some(AgentId("S1".into())),
        status,
        latest_state: Some(TaskState::Running),
        uuid: UpdateId("u1".into()),
        agent_pid: None,
    }
}

/// A tree with one command task (an unacknowledged RUNNING) and a custom executor.
fn written(dir: &std::path::Path) -> Checkpoints {
    let checkpoints = Checkpoints::new(dir);
    let f = FrameworkId("F1".into());
    let scheduler = "scheduler@127.0.0.1:6000".parse().unwrap();
    let writes = [
        Checkpoint::Agent(info()),
        Checkpoint::Resources("cpus(ads,dynamic):1;cpus:1;mem:512".parse().unwrap()),
        Checkpoint::Framework { framework_id: f.clone(), info: framework(), scheduler },
        Checkpoint::Executor {
            framework_id: f.clone(),
            executor_id: ExecutorId("t1".into()),
            info: None,
            pid: None,
            container: ContainerId("c1".into()),
            sandbox: dir.join("sandbox/t1"),
        },
        Checkpoint::Task {
            framework_id: f.clone(),
            executor_id: ExecutorId("t1".into()),
            info: task("t1"),
            state: TaskState::Running,
            pending: vec![update("t1")],
        },
        Checkpoint::Executor {
            framework_id: f.clone(),
            executor_id: ExecutorId("E".into()),
            info: Some(ExecutorInfo {
                executor_id: ExecutorId("E".into()),
                framework_id: Some(f.clone()),
                command: CommandInfo::shell("executor"),
                resources: Default::default(),
                name: None,
            }),
            pid: Some("executor@127.0.0.1:7000".parse().unwrap()),
            container: ContainerId("c2".into()),
            sandbox: dir.join("sandbox/E"),
        },
    ];
    for checkpoint in &writes {
        checkpoints.write(checkpoint).unwrap();
    }
    checkpoints
}

#[test]
fn what_is_checkpointed_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = written(dir.path());
    let recovered = checkpoints.read().unwrap().expect("a previous agent");
    assert_eq!(recovered.info, info());
    assert_eq!(recovered.resources.unwrap().to_string(), "cpus:1;cpus(ads,dynamic):1;mem:512");
    assert_eq!(recovered.frameworks.len(), 1);
    let framework = &recovered.frameworks[0];
    assert_eq!(framework.info.id, Some(FrameworkId("F1".into())));
    assert_eq!(framework.executors.len(), 2);
    let custom = framework.executors.iter().find(|e| e.executor_id.as_str() == "E").unwrap();
    assert_eq!(custom.pid.as_ref().map(|p| p.to_string()), Some("executor@127.0.0.1:7000".to_string()));
    assert!(custom.tasks.is_empty());
    let command = framework.executors.iter().find(|e| e.executor_id.as_str() == "t1").unwrap();
    assert_eq!(command.container, ContainerId("c1".into()));
    assert_eq!(command.tasks.len(), 1);
    assert_eq!(command.tasks[0].pending, vec![update("t1")]);

    // Removing an executor takes all of it; removing the framework, the rest.
    let f = FrameworkId("F1".into());
    checkpoints
        .write(&Checkpoint::RemoveExecutor { framework_id: f.clone(), executor_id: ExecutorId("t1".into()) })
        .unwrap();
    let recovered = checkpoints.read().unwrap().unwrap();
    assert_eq!(recovered.frameworks[0].executors.len(), 1);
    checkpoints.write(&Checkpoint::RemoveFramework { framework_id: f }).unwrap();
    assert!(checkpoints.read().unwrap().unwrap().frameworks.is_empty());
    // A shut-down agent forgets everything: the next one starts afresh.
    checkpoints.write(&Checkpoint::Clear).unwrap();
    assert!(checkpoints.read().unwrap().is_none());
}

#[test]
fn nothing_checkpointed_is_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Checkpoints::new(dir.path()).read().unwrap().is_none());
}

#[test]
fn a_torn_or_foreign_or_incomplete_tree_is_an_error_not_half_a_state() {
    // A task file cut short.
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = written(dir.path());
    let task = checkpoints.task(&FrameworkId("F1".into()), &ExecutorId("t1".into()), &TaskId("t1".into()));
    let bytes = std::fs::read(&task).unwrap();
    std::fs::write(&task, &bytes[..bytes.len() / 2]).unwrap();
    let error = checkpoints.read().unwrap_err();
    assert!(matches!(error, CheckpointError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("t1.json"), "names the file: {error}");

    // Another format (the unversioned tree of older agents).
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = written(dir.path());
    std::fs::write(checkpoints.agent(), serde_json::to_vec(&info()).unwrap()).unwrap();
    assert!(matches!(checkpoints.read().unwrap_err(), CheckpointError::Format { found: 0, .. }));

    // A framework directory without its framework.json.
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = written(dir.path());
    std::fs::remove_file(checkpoints.framework(&FrameworkId("F1".into()))).unwrap();
    assert!(matches!(checkpoints.read().unwrap_err(), CheckpointError::Missing(_)));

    // Frameworks without the agent.
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = written(dir.path());
    std::fs::remove_file(checkpoints.agent()).unwrap();
    assert!(matches!(checkpoints.read().unwrap_err(), CheckpointError::Missing(_)));

    // Set aside, the tree is kept for an operator and the next read starts afresh.
    let aside = checkpoints.set_aside().unwrap();
    assert!(aside.join("frameworks").exists());
    assert!(checkpoints.read().unwrap().is_none());
}

#[test]
fn an_interrupted_removal_is_finished_not_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = written(dir.path());
    // What a crash between the rename and the delete leaves.
    let executors = checkpoints.framework_dir(&FrameworkId("F1".into())).join("executors");
    std::fs::rename(executors.join("t1"), executors.join(".gone-t1-0000000000000001")).unwrap();
    let recovered = checkpoints.read().unwrap().unwrap();
    assert_eq!(recovered.frameworks[0].executors.len(), 1);
    assert!(!executors.join(".gone-t1-0000000000000001").exists());
}

#[test]
fn container_pids_are_remembered_until_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = Checkpoints::new(dir.path());
    checkpoints.write_container_pid(&ContainerId("b".into()), 200).unwrap();
    checkpoints.write_container_pid(&ContainerId("a".into()), 100).unwrap();
    std::fs::write(checkpoints.containers_dir().join("junk.pid"), "not a pid").unwrap();
    assert_eq!(
        checkpoints.container_pids(),
        vec![(ContainerId("a".into()), 100), (ContainerId("b".into()), 200)]
    );
    checkpoints.remove_container_pid(&ContainerId("a".into()));
    assert_eq!(checkpoints.container_pids(), vec![(ContainerId("b".into()), 200)]);
}
