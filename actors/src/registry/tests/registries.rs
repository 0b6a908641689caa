//! The `Registry` implementations: the same contract run against memory and file
//! registries (fencing, all-or-nothing transactions, versions), then what only the
//! file registry does (reopen, a second process, corruption, atomic writes).

use std::fs;
use std::path::Path;

use super::*;
use crate::registry::file::{self, Contents, FORMAT};
use crate::registry::{FileRegistry, MemoryRegistry, Registry, Term};

/// A temp dir and a file registry at `registry.json` inside it.
fn file_registry() -> (tempfile::TempDir, FileRegistry) {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = FileRegistry::open(dir.path().join("registry.json")).expect("open");
    (dir, registry)
}

#[track_caller]
fn assert_fenced<T: std::fmt::Debug>(result: Result<T, RegistryError>, term: u64, current: u64) {
    match result {
        Err(RegistryError::Fenced { term: t, current: c }) => assert_eq!((t, c), (Term(term), Term(current))),
        other => panic!("expected Fenced {{ term: {term}, current: {current} }}, got {other:?}"),
    }
}

async fn transactions_are_all_or_nothing(registry: impl Registry) {
    assert_eq!(registry.recover(Term(1)).await.expect("recover"), RegistryState::default());
    assert_eq!(registry.apply(Term(1), vec![admit("S1")]).await.expect("apply"), 1);
    let failing = vec![admit("S2"), Operation::PutFramework(framework("F1")), admit("S1")];
    assert_precondition(registry.apply(Term(1), failing).await, "agent S1 is already admitted");
    assert_eq!(registry.recover(Term(1)).await.expect("recover"), state_after(&[admit("S1")]));
    // The failed transaction did not count: the next one is version 2.
    assert_eq!(registry.apply(Term(1), vec![admit("S2"), unreachable("S2", 5.0)]).await.expect("apply"), 2);
    assert_eq!(registry.apply(Term(1), vec![]).await.expect("empty transaction"), 2);
    let expected = state_after(&[admit("S1"), admit("S2"), unreachable("S2", 5.0)]);
    assert_eq!(registry.recover(Term(1)).await.expect("recover"), expected);
}

async fn a_higher_term_fences_a_lower_one(registry: impl Registry) {
    registry.recover(Term(1)).await.expect("recover at 1");
    registry.apply(Term(1), vec![admit("S1")]).await.expect("apply at 1");
    let recovered = registry.recover(Term(2)).await.expect("recover at 2");
    assert_eq!(recovered, state_after(&[admit("S1")]));

    // The deposed leader can neither write nor claim again, and changes nothing.
    assert_fenced(registry.apply(Term(1), vec![admit("S2")]).await, 1, 2);
    assert_fenced(registry.apply(Term(1), vec![]).await, 1, 2);
    assert_fenced(registry.recover(Term(1)).await, 1, 2);
    assert_eq!(registry.recover(Term(2)).await.expect("recover at 2 again"), recovered);

    // The new leader writes; a term nobody claimed cannot.
    assert_eq!(registry.apply(Term(2), vec![admit("S2")]).await.expect("apply at 2"), 2);
    assert_invalid(registry.apply(Term(3), vec![admit("S3")]).await);
    assert_invalid(registry.apply(Term(0), vec![admit("S3")]).await);
    assert_invalid(registry.recover(Term(0)).await);
    assert_eq!(
        registry.recover(Term(5)).await.expect("recover at 5"),
        state_after(&[admit("S1"), admit("S2")])
    );
}

async fn writes_need_a_claimed_term(registry: impl Registry) {
    assert_invalid(registry.apply(Term(1), vec![admit("S1")]).await);
    registry.recover(Term(1)).await.expect("recover");
    assert_eq!(registry.recover(Term(1)).await.expect("recover"), RegistryState::default());
}

#[tokio::test(flavor = "current_thread")]
async fn memory_transactions_are_all_or_nothing() {
    transactions_are_all_or_nothing(MemoryRegistry::new()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn memory_a_higher_term_fences_a_lower_one() {
    a_higher_term_fences_a_lower_one(MemoryRegistry::new()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn memory_writes_need_a_claimed_term() {
    writes_need_a_claimed_term(MemoryRegistry::new()).await;
}

#[tokio::test(flavor = "current_thread")]
async fn file_transactions_are_all_or_nothing() {
    let (_dir, registry) = file_registry();
    transactions_are_all_or_nothing(registry).await;
}

#[tokio::test(flavor = "current_thread")]
async fn file_a_higher_term_fences_a_lower_one() {
    let (_dir, registry) = file_registry();
    a_higher_term_fences_a_lower_one(registry).await;
}

#[tokio::test(flavor = "current_thread")]
async fn file_writes_need_a_claimed_term() {
    let (_dir, registry) = file_registry();
    writes_need_a_claimed_term(registry).await;
}

#[tokio::test(flavor = "current_thread")]
async fn memory_clones_share_the_state() {
    let registry = MemoryRegistry::new();
    let master = registry.clone();
    master.recover(Term(3)).await.expect("recover");
    master.apply(Term(3), vec![admit("S1")]).await.expect("apply");
    assert_eq!(registry.state(), state_after(&[admit("S1")]));
    assert_eq!(registry.term_and_version(), (Term(3), 1));
    assert_eq!(registry.describe(), "memory");

    let seeded = MemoryRegistry::with_state(state_after(&[admit("S7")]));
    assert_eq!(seeded.recover(Term(1)).await.expect("recover"), state_after(&[admit("S7")]));
}

#[tokio::test(flavor = "current_thread")]
async fn file_registry_survives_reopen() {
    let (dir, registry) = file_registry();
    let path = dir.path().join("registry.json");
    assert_eq!(registry.describe(), format!("file:{}", path.display()));
    let operations = vec![
        admit("S1"),
        admit("S2"),
        unreachable("S2", 20.5),
        admit("S3"),
        gone("S3", 30.25),
        Operation::PutFramework(framework("F1")),
        Operation::SetWeight { role: "eng".to_string(), weight: 2.5 },
    ];
    registry.recover(Term(1)).await.expect("recover");
    registry.apply(Term(1), operations[..3].to_vec()).await.expect("apply");
    registry.apply(Term(1), operations[3..].to_vec()).await.expect("apply");
    drop(registry);

    let reopened = FileRegistry::open(&path).expect("reopen");
    assert_eq!(reopened.recover(Term(2)).await.expect("recover"), state_after(&operations));
    assert_fenced(reopened.recover(Term(1)).await, 1, 2);
    assert_eq!(reopened.apply(Term(2), vec![admit("S4")]).await.expect("apply"), 3, "the version continues");
}

#[tokio::test(flavor = "current_thread")]
async fn a_second_file_registry_on_the_same_path_sees_the_fence() {
    let (dir, old_leader) = file_registry();
    let new_leader = FileRegistry::open(dir.path().join("registry.json")).expect("open");
    old_leader.recover(Term(1)).await.expect("recover at 1");
    old_leader.apply(Term(1), vec![admit("S1")]).await.expect("apply at 1");
    assert_eq!(new_leader.recover(Term(2)).await.expect("recover at 2"), state_after(&[admit("S1")]));
    assert_fenced(old_leader.apply(Term(1), vec![admit("S2")]).await, 1, 2);
    new_leader.apply(Term(2), vec![admit("S3")]).await.expect("apply at 2");
    assert_eq!(
        old_leader.recover(Term(3)).await.expect("recover at 3"),
        state_after(&[admit("S1"), admit("S3")])
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_file_is_the_empty_state() {
    let (dir, registry) = file_registry();
    let path = dir.path().join("registry.json");
    assert!(!path.exists());
    assert_invalid(registry.apply(Term(1), vec![admit("S1")]).await);
    assert!(!path.exists(), "a refused write creates nothing");
    assert_eq!(registry.recover(Term(1)).await.expect("recover"), RegistryState::default());
    assert!(path.exists(), "recover records the term");
}

#[tokio::test(flavor = "current_thread")]
async fn writes_leave_no_temp_files() {
    let (dir, registry) = file_registry();
    registry.recover(Term(1)).await.expect("recover");
    for n in 0..5 {
        registry.apply(Term(1), vec![admit(&format!("S{n}"))]).await.expect("apply");
    }
    assert_precondition(registry.apply(Term(1), vec![admit("S0")]).await, "already admitted");
    assert_eq!(file_names(dir.path()), ["registry.json"]);
}

#[test]
fn opening_a_corrupt_file_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("registry.json");
    for text in ["{not json", "", "{\"format\": 1}", "null"] {
        fs::write(&path, text).expect("write");
        match FileRegistry::open(&path) {
            Err(RegistryError::Corrupt(message)) => assert!(message.contains("registry.json"), "{message}"),
            other => panic!("expected Corrupt for {text:?}, got {other:?}"),
        }
    }
    let future = serde_json::json!({"format": FORMAT + 1, "term": 1, "version": 0, "state": {}});
    fs::write(&path, future.to_string()).expect("write");
    assert!(matches!(FileRegistry::open(&path), Err(RegistryError::Corrupt(m)) if m.contains("format")));
}

#[tokio::test(flavor = "current_thread")]
async fn a_file_corrupted_while_open_is_reported_and_kept() {
    let (dir, registry) = file_registry();
    let path = dir.path().join("registry.json");
    registry.recover(Term(1)).await.expect("recover");
    fs::write(&path, "{\"format\": 1, \"term\": ").expect("corrupt");
    assert!(matches!(registry.apply(Term(1), vec![admit("S1")]).await, Err(RegistryError::Corrupt(_))));
    assert!(matches!(registry.recover(Term(2)).await, Err(RegistryError::Corrupt(_))));
    assert_eq!(fs::read_to_string(&path).expect("read"), "{\"format\": 1, \"term\": ", "never reset");
}

#[test]
fn open_needs_an_existing_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let result = FileRegistry::open(dir.path().join("missing").join("registry.json"));
    assert!(matches!(result, Err(RegistryError::Io { .. })), "{result:?}");
    assert_invalid(FileRegistry::open("/"));
}

#[test]
fn unreadable_states_are_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("registry.json");
    let mut contents = Contents::empty();
    contents.term = Term(1);
    file::write(&path, &contents).expect("write");
    // JSON has no NaN: serde_json would write `null` and fail to read it back.
    contents.state.weights.insert("eng".to_string(), f64::NAN);
    assert_invalid(file::write(&path, &contents));
    let stored = file::read(&path).expect("read").expect("exists");
    assert_eq!(stored.state, RegistryState::default());
    assert_eq!(file_names(dir.path()), ["registry.json"]);
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_applies_are_serialised() {
    let (_dir, registry) = file_registry();
    registry.recover(Term(1)).await.expect("recover");
    let writers: Vec<_> = (0..16)
        .map(|n| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.apply(Term(1), vec![admit(&format!("S{n}"))]).await })
        })
        .collect();
    let mut versions = Vec::new();
    for writer in writers {
        versions.push(writer.await.expect("join").expect("apply"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=16).collect::<Vec<u64>>());
    assert_eq!(registry.recover(Term(1)).await.expect("recover").agents.len(), 16);
}
