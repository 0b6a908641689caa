//! Quota guarantees (served first, headroom held back), limits (offers cut, never
//! exceeded, rescinds after lowering), and their hierarchy.

use super::*;
use crate::allocator::{AllocatorError, Quota};

fn guarantee(text: &str) -> Quota {
    Quota { guarantee: res(text), limit: None }
}

fn limit(text: &str) -> Quota {
    Quota { guarantee: Resources::new(), limit: Some(res(text)) }
}

#[test]
fn a_role_below_its_guarantee_is_served_before_heavier_roles() {
    let mut core = cluster(4, "cpus:1;mem:1024");
    core.set_weight("big", 100.0).unwrap();
    core.add_framework(fid("big"), roles(&["big"]), &[], true);
    core.add_framework(fid("q"), roles(&["q"]), &[], true);
    core.set_quota("q", guarantee("cpus:2;mem:2048")).unwrap();
    let allocations = run(&mut core, 0.0);
    assert_eq!(count(&allocations)["q"], 2);
    assert_eq!(allocations[0].framework_id, fid("q"));
    assert_eq!(allocations[1].framework_id, fid("q"));
}

#[test]
fn headroom_is_held_back_for_guarantees_without_frameworks_yet() {
    let mut core = cluster(4, "cpus:1;mem:1024");
    core.set_quota("q", guarantee("cpus:2;mem:2048")).unwrap();
    core.add_framework(fid("other"), roles(&["other"]), &[], true);
    assert_eq!(count(&run(&mut core, 0.0))["other"], 2, "two agents held back");
    core.add_framework(fid("q"), roles(&["q"]), &[], true);
    assert_eq!(count(&run(&mut core, 1.0))["q"], 2);
}

#[test]
fn roles_share_an_agent_to_reach_their_guarantees() {
    let mut core = cluster(1, "cpus:4;mem:4096");
    core.set_quota("q1", guarantee("cpus:2")).unwrap();
    core.set_quota("q2", guarantee("cpus:2")).unwrap();
    core.add_framework(fid("q1"), roles(&["q1"]), &[], true);
    core.add_framework(fid("q2"), roles(&["q2"]), &[], true);
    let sums = sums(&run(&mut core, 0.0));
    assert_eq!(
        sums[&("q1".into(), "q1".into())],
        res("cpus:2;mem:4096"),
        "memory is not guaranteed to anyone"
    );
    assert_eq!(sums[&("q2".into(), "q2".into())], res("cpus:2"));
}

#[test]
fn a_parent_guarantee_is_reached_through_its_children() {
    let mut core = cluster(4, "cpus:1;mem:1024");
    core.set_weight("big", 100.0).unwrap();
    core.add_framework(fid("big"), roles(&["big"]), &[], true);
    core.add_framework(fid("ml"), roles(&["eng/ml"]), &[], true);
    core.set_quota("eng", guarantee("cpus:3;mem:3072")).unwrap();
    assert_eq!(count(&run(&mut core, 0.0))["ml"], 3);
}

#[test]
fn a_child_guarantee_inside_a_parent_guarantee_is_not_counted_twice() {
    let mut core = cluster(4, "cpus:1;mem:1024");
    core.set_quota("eng", guarantee("cpus:2;mem:2048")).unwrap();
    core.set_quota("eng/ml", guarantee("cpus:2;mem:2048")).unwrap();
    core.add_framework(fid("other"), roles(&["other"]), &[], true);
    assert_eq!(count(&run(&mut core, 0.0))["other"], 2, "only two agents are held back");
}

#[test]
fn offers_are_cut_to_the_limit_and_the_rest_goes_to_others() {
    let mut core = cluster(2, "cpus:2;mem:1024");
    core.set_quota("l", limit("cpus:3")).unwrap();
    core.add_framework(fid("l"), roles(&["l"]), &[], true);
    let first = run(&mut core, 0.0);
    let held: Resources = first.iter().map(|a| &a.resources).sum();
    assert_eq!(held, res("cpus:3;mem:2048"), "memory is not limited");
    core.add_framework(fid("other"), roles(&["other"]), &[], true);
    let second = run(&mut core, 1.0);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].resources, res("cpus:1"));
    assert!(core.over_limit().is_empty());
}

#[test]
fn an_ancestor_limit_binds_its_descendants() {
    let mut core = cluster(4, "cpus:1;mem:1024");
    core.set_quota("eng", limit("cpus:2;mem:2048")).unwrap();
    core.add_framework(fid("ml"), roles(&["eng/ml"]), &[], true);
    core.add_framework(fid("web"), roles(&["eng/web"]), &[], true);
    let allocations = run(&mut core, 0.0);
    assert_eq!(allocations.len(), 2);
    assert_eq!(core.role_shares()["eng"].allocated, res("cpus:2;mem:2048"));
}

#[test]
fn lowering_a_limit_lists_what_to_rescind() {
    let mut core = cluster(4, "cpus:1;mem:1024");
    core.add_framework(fid("f"), roles(&["l"]), &[], true);
    let first = run(&mut core, 0.0);
    assert_eq!(first.len(), 4);
    core.set_quota("l", limit("cpus:2")).unwrap();
    assert_eq!(core.over_limit(), vec![(fid("f"), "l".to_string())]);
    decline_all(&mut core, &first, None);
    assert!(core.over_limit().is_empty());
    let second = run(&mut core, 1.0);
    let cpus: f64 = second.iter().map(|a| a.resources.cpus()).sum();
    assert_eq!(cpus, 2.0);
    core.remove_quota("l");
    assert!(core.quota("l").is_none());
    assert_eq!(run(&mut core, 2.0).len(), 2, "no limit any more");
}

#[test]
fn invalid_quotas_are_refused() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    let above = Quota { guarantee: res("cpus:4"), limit: Some(res("cpus:2")) };
    assert!(matches!(core.set_quota("a", above), Err(AllocatorError::GuaranteeAboveLimit { .. })));
    assert!(matches!(core.set_quota("*", guarantee("cpus:1")), Err(AllocatorError::InvalidRole { .. })));
    assert!(matches!(core.set_quota("a//b", guarantee("cpus:1")), Err(AllocatorError::InvalidRole { .. })));
    let ok = Quota { guarantee: res("cpus:1;mem:64"), limit: Some(res("cpus:2")) };
    core.set_quota("a", ok.clone()).unwrap();
    assert_eq!(core.quota("a"), Some(&ok));
    assert_eq!(core.role_shares()["a"].limit, Some(res("cpus:2")));
}

#[test]
fn a_role_at_its_cpus_and_memory_limits_gets_no_leftover_disk() {
    let mut core = cluster(2, "cpus:1;mem:512;disk:100");
    core.set_quota("l", limit("cpus:1;mem:512")).unwrap();
    core.add_framework(fid("l"), roles(&["l"]), &[], true);
    let allocations = run(&mut core, 0.0);
    assert_eq!(allocations.len(), 1);
    assert_eq!(allocations[0].resources, res("cpus:1;mem:512;disk:100"));
}
