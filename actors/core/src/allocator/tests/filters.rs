//! One test per filter rule, and suppress / revive per role.

use super::*;

fn declined_cluster() -> (AllocatorCore, Vec<Allocation>) {
    let mut core = cluster(1, "cpus:2;mem:1024");
    core.add_framework(fid("f1"), vec![], &[], true);
    let first = run(&mut core, 0.0);
    assert_eq!(first.len(), 1);
    decline_all(&mut core, &first, Some(5.0));
    (core, first)
}

#[test]
fn a_filter_holds_until_its_time_then_expires() {
    let (mut core, _) = declined_cluster();
    assert!(run(&mut core, 1.0).is_empty(), "filtered until 5.0");
    assert!(run(&mut core, 4.999).is_empty());
    assert_eq!(run(&mut core, 5.0).len(), 1, "expired at 5.0");
}

#[test]
fn a_filter_applies_only_to_the_framework_that_declined() {
    let (mut core, _) = declined_cluster();
    core.add_framework(fid("f2"), vec![], &[], true);
    let allocations = run(&mut core, 1.0);
    assert_eq!(allocations.len(), 1);
    assert_eq!(allocations[0].framework_id, fid("f2"));
}

#[test]
fn a_filter_applies_only_to_the_agent_it_was_made_for() {
    let (mut core, _) = declined_cluster();
    core.add_agent(aid("a1"), res("cpus:2;mem:1024"), &[]);
    let allocations = run(&mut core, 1.0);
    assert_eq!(allocations.len(), 1);
    assert_eq!(allocations[0].agent_id, aid("a1"));
}

#[test]
fn a_filter_does_not_apply_to_a_larger_offer() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_framework(fid("f1"), vec![], &[], true);
    core.add_framework(fid("f2"), vec![], &[], true);
    core.add_agent(aid("a0"), res("cpus:4;mem:2048"), &[(fid("f2"), res("cpus:2;mem:1024"))]);
    let first = run(&mut core, 0.0);
    assert_eq!(first[0].framework_id, fid("f1"));
    decline_all(&mut core, &first, Some(100.0));
    core.suppress(&fid("f2"));
    assert!(run(&mut core, 1.0).is_empty(), "the same offer is filtered");
    // f2's task ends: the agent now has more free than f1 refused.
    core.recover(&fid("f2"), &aid("a0"), &res("cpus:2;mem:1024"), None);
    let allocations = run(&mut core, 2.0);
    assert_eq!(allocations.len(), 1);
    assert_eq!(allocations[0].resources, res("cpus:4;mem:2048"));
}

#[test]
fn a_filter_applies_to_a_smaller_offer() {
    let mut core = cluster(1, "cpus:4;mem:2048");
    core.add_framework(fid("f1"), vec![], &[], true);
    core.add_framework(fid("f2"), vec![], &[], true);
    core.suppress(&fid("f2"));
    let first = run(&mut core, 0.0);
    assert_eq!(first[0].framework_id, fid("f1"));
    decline_all(&mut core, &first, Some(100.0));
    core.revive(&fid("f2"));
    assert_eq!(run(&mut core, 1.0)[0].framework_id, fid("f2"));
    core.recover(&fid("f2"), &aid("a0"), &res("cpus:2;mem:1024"), None);
    core.suppress(&fid("f2"));
    assert!(run(&mut core, 2.0).is_empty(), "cpus:2;mem:1024 is within what f1 refused");
}

#[test]
fn a_filter_applies_only_to_the_role_the_resources_came_back_from() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus:2;mem:1024"), &[]);
    core.add_framework(fid("f"), roles(&["a", "b"]), &[], true);
    let first = run(&mut core, 0.0);
    assert_eq!(first[0].role, "a");
    decline_all(&mut core, &first, Some(100.0));
    let second = run(&mut core, 1.0);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].role, "b", "role a filters the agent, role b does not");
}

#[test]
fn no_filter_without_a_time_or_with_a_time_already_past() {
    let mut core = cluster(1, "cpus:2;mem:1024");
    core.add_framework(fid("f1"), vec![], &[], true);
    let first = run(&mut core, 0.0);
    decline_all(&mut core, &first, None);
    assert_eq!(run(&mut core, 1.0).len(), 1, "no filter");
    let second = core.framework_stats(&fid("f1")).unwrap()["*"].allocated.clone();
    core.recover(&fid("f1"), &aid("a0"), &second, Some(0.5));
    assert_eq!(run(&mut core, 1.0).len(), 1, "already expired");
    core.recover(&fid("f1"), &aid("a0"), &second, Some(f64::NAN));
    assert_eq!(run(&mut core, 1.0).len(), 1, "not a time");
}

#[test]
fn revive_clears_filters_in_its_roles_only() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus:2;mem:1024"), &[]);
    core.add_framework(fid("f"), roles(&["a", "b"]), &[], true);
    let first = run(&mut core, 0.0);
    decline_all(&mut core, &first, Some(100.0));
    let second = run(&mut core, 1.0);
    decline_all(&mut core, &second, Some(100.0));
    assert!(run(&mut core, 2.0).is_empty(), "both roles filter the agent");
    core.revive_roles(&fid("f"), &roles(&["b"]));
    assert_eq!(run(&mut core, 3.0)[0].role, "b");
}

#[test]
fn removing_an_agent_drops_its_filters_and_deactivation_drops_all() {
    let (mut core, _) = declined_cluster();
    core.remove_agent(&aid("a0"));
    core.add_agent(aid("a0"), res("cpus:2;mem:1024"), &[]);
    assert_eq!(run(&mut core, 1.0).len(), 1, "a re-added agent is not filtered");
    let (mut core, _) = declined_cluster();
    core.set_framework_active(&fid("f1"), false);
    core.set_framework_active(&fid("f1"), true);
    assert_eq!(run(&mut core, 1.0).len(), 1, "deactivation dropped the filters");
}

#[test]
fn expired_filters_are_pruned() {
    let (mut core, _) = declined_cluster();
    assert_eq!(core.framework_stats(&fid("f1")).unwrap()["*"].filtered_agents, 1);
    run(&mut core, 6.0);
    assert_eq!(core.framework_stats(&fid("f1")).unwrap()["*"].filtered_agents, 0);
}

#[test]
fn suppress_and_revive_per_role() {
    let mut core = cluster(4, "cpus:1;mem:1024");
    core.add_framework(fid("f"), roles(&["a", "b"]), &[], true);
    core.suppress_roles(&fid("f"), &roles(&["a"]));
    let allocations = run(&mut core, 0.0);
    assert_eq!(allocations.len(), 4);
    assert!(allocations.iter().all(|a| a.role == "b"));
    decline_all(&mut core, &allocations, None);
    core.suppress_roles(&fid("f"), &[]);
    assert!(run(&mut core, 1.0).is_empty(), "all roles suppressed");
    core.revive_roles(&fid("f"), &roles(&["a"]));
    let allocations = run(&mut core, 2.0);
    assert_eq!(allocations.len(), 4);
    assert!(allocations.iter().all(|a| a.role == "a"));
}

#[test]
fn inactive_frameworks_get_nothing() {
    let mut core = cluster(1, "cpus:1;mem:1024");
    core.add_framework(fid("f"), vec![], &[], false);
    assert!(run(&mut core, 0.0).is_empty());
    core.set_framework_active(&fid("f"), true);
    assert_eq!(run(&mut core, 1.0).len(), 1);
}
