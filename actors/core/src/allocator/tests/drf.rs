//! Weighted hierarchical DRF, multi-role frameworks, reservations, bookkeeping.

use super::*;
use crate::allocator::AllocatorError;

#[test]
fn an_agent_goes_whole_to_the_framework_with_the_lowest_share() {
    let mut core = cluster(2, "cpus:4;mem:4096");
    core.add_framework(fid("f1"), vec![], &[], true);
    core.add_framework(fid("f2"), vec![], &[], true);
    let allocations = run(&mut core, 0.0);
    assert_eq!(allocations.len(), 2);
    assert_ne!(allocations[0].framework_id, allocations[1].framework_id, "one agent each");
    assert_eq!(allocations[0].resources, res("cpus:4;mem:4096"));
    assert_eq!(allocations[0].role, "*");
    assert!(run(&mut core, 1.0).is_empty(), "everything is allocated");
}

#[test]
fn used_resources_and_inactive_agents_are_not_offered() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_framework(fid("f1"), vec![], &[], true);
    core.add_agent(aid("a1"), res("cpus:4;mem:4096"), &[(fid("f1"), res("cpus:3;mem:1024"))]);
    let allocations = run(&mut core, 0.0);
    assert_eq!(allocations[0].resources, res("cpus:1;mem:3072"));
    core.recover(&fid("f1"), &aid("a1"), &allocations[0].resources, None);
    core.set_agent_active(&aid("a1"), false);
    assert!(run(&mut core, 1.0).is_empty());
    core.set_agent_active(&aid("a1"), true);
    assert_eq!(run(&mut core, 2.0).len(), 1);
}

#[test]
fn weights_divide_shares() {
    let mut core = cluster(8, "cpus:1;mem:1024");
    core.set_weight("b", 3.0).unwrap();
    core.add_framework(fid("fa"), roles(&["a"]), &[], true);
    core.add_framework(fid("fb"), roles(&["b"]), &[], true);
    let counts = count(&run(&mut core, 0.0));
    assert_eq!(counts["fa"], 2);
    assert_eq!(counts["fb"], 6);
    let shares = core.role_shares();
    assert!((shares["b"].dominant_share - 0.75).abs() < 1e-9);
    assert!((shares["b"].weighted_share - 0.25).abs() < 1e-9);
    assert_eq!(shares["b"].weight, 3.0);
}

#[test]
fn weights_change_at_run_time() {
    let mut core = cluster(8, "cpus:1;mem:1024");
    core.add_framework(fid("fa"), roles(&["a"]), &[], true);
    core.add_framework(fid("fb"), roles(&["b"]), &[], true);
    let first = run(&mut core, 0.0);
    assert_eq!(count(&first)["fb"], 4);
    decline_all(&mut core, &first, None);
    core.set_weight("a", 3.0).unwrap();
    assert_eq!(core.weight("a"), 3.0);
    assert_eq!(count(&run(&mut core, 1.0))["fa"], 6);
}

#[test]
fn hierarchical_roles_are_sorted_level_by_level() {
    // eng has two children; ads competes with the whole eng subtree, not with each child.
    let mut core = cluster(8, "cpus:1;mem:1024");
    core.add_framework(fid("ml"), roles(&["eng/ml"]), &[], true);
    core.add_framework(fid("web"), roles(&["eng/web"]), &[], true);
    core.add_framework(fid("ads"), roles(&["ads"]), &[], true);
    let counts = count(&run(&mut core, 0.0));
    assert_eq!(counts["ads"], 4);
    assert_eq!(counts["ml"], 2);
    assert_eq!(counts["web"], 2);
    let shares = core.role_shares();
    assert!((shares["eng"].dominant_share - 0.5).abs() < 1e-9, "children count toward eng");
}

#[test]
fn frameworks_of_an_interior_role_compete_with_its_children() {
    let mut core = cluster(4, "cpus:1;mem:1024");
    core.add_framework(fid("eng"), roles(&["eng"]), &[], true);
    core.add_framework(fid("ml"), roles(&["eng/ml"]), &[], true);
    let counts = count(&run(&mut core, 0.0));
    assert_eq!(counts["eng"], 2);
    assert_eq!(counts["ml"], 2);
}

#[test]
fn multi_role_frameworks_are_allocated_per_role() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus:2;mem:1024"), &[]);
    core.add_agent(aid("a1"), res("cpus(b):2;mem(b):1024"), &[]);
    core.add_framework(fid("multi"), roles(&["a", "b"]), &[], true);
    let sums = sums(&run(&mut core, 0.0));
    assert_eq!(sums[&("multi".into(), "a".into())], res("cpus:2;mem:1024"));
    assert_eq!(sums[&("multi".into(), "b".into())], res("cpus(b):2;mem(b):1024"));
    let stats = core.framework_stats(&fid("multi")).unwrap();
    assert_eq!(stats["b"].allocated, res("cpus(b):2;mem(b):1024"));
    // Recovered resources go back to the role that held them.
    core.recover(&fid("multi"), &aid("a1"), &res("cpus(b):2;mem(b):1024"), None);
    assert!(core.framework_stats(&fid("multi")).unwrap()["b"].allocated.is_empty());
    assert_eq!(core.role_shares()["a"].allocated, res("cpus:2;mem:1024"));
}

#[test]
fn reservations_go_only_to_the_role_and_its_descendants() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus:4;mem:1024;cpus(ads):4;mem(ads):1024"), &[]);
    core.add_framework(fid("eng"), roles(&["eng"]), &[], true);
    let allocations = run(&mut core, 0.0);
    assert_eq!(allocations.len(), 1);
    assert_eq!(allocations[0].resources, res("cpus:4;mem:1024"), "not the ads reservation");
    core.add_framework(fid("team"), roles(&["ads/team"]), &[], true);
    let allocations = run(&mut core, 1.0);
    assert_eq!(allocations.len(), 1);
    assert_eq!(allocations[0].framework_id, fid("team"));
    assert_eq!(allocations[0].resources, res("cpus(ads):4;mem(ads):1024"), "ads's descendants may use it");
}

#[test]
fn the_whole_usable_remainder_of_an_agent_goes_to_one_framework_then_the_rest_to_others() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus:4;mem:1024;cpus(ads):4;mem(ads):1024"), &[]);
    core.add_framework(fid("eng"), roles(&["eng"]), &[], true);
    core.add_framework(fid("ads"), roles(&["ads"]), &[], true);
    let sums = sums(&run(&mut core, 0.0));
    // eng goes first and takes the unreserved part; the rest of the agent, reserved for
    // ads, goes to ads; nothing is given twice.
    let total: Resources = sums.values().sum();
    assert_eq!(total, res("cpus:4;mem:1024;cpus(ads):4;mem(ads):1024"));
    assert!(sums[&("ads".into(), "ads".into())].contains(&res("cpus(ads):4;mem(ads):1024")));
}

#[test]
fn offers_below_the_minimum_are_not_made() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("small"), res("cpus:0.005;mem:16;disk:100"), &[]);
    core.add_framework(fid("f"), vec![], &[], true);
    assert!(run(&mut core, 0.0).is_empty());
    core.add_agent(aid("cpus-only"), res("cpus:0.01"), &[]);
    core.add_agent(aid("mem-only"), res("mem:32"), &[]);
    assert_eq!(run(&mut core, 1.0).len(), 2);
}

#[test]
fn used_reported_before_the_framework_is_known_is_not_counted_twice() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus:4;mem:4096"), &[(fid("f"), res("cpus:1;mem:1024"))]);
    core.add_framework(fid("f"), vec![], &[(aid("a0"), res("cpus:1;mem:1024"))], true);
    let allocations = run(&mut core, 0.0);
    assert_eq!(allocations[0].resources, res("cpus:3;mem:3072"));
    assert_eq!(core.framework_stats(&fid("f")).unwrap()["*"].allocated, res("cpus:4;mem:4096"));
}

#[test]
fn removing_frameworks_and_agents_releases_what_they_hold() {
    let mut core = cluster(2, "cpus:2;mem:2048");
    core.add_framework(fid("f1"), vec![], &[], true);
    assert_eq!(run(&mut core, 0.0).len(), 2);
    core.remove_framework(&fid("f1"));
    core.add_framework(fid("f2"), vec![], &[], true);
    assert_eq!(run(&mut core, 1.0).len(), 2, "f1's resources were released");
    core.remove_agent(&aid("a0"));
    assert_eq!(core.framework_stats(&fid("f2")).unwrap()["*"].allocated, res("cpus:2;mem:2048"));
    assert_eq!(core.total(), &res("cpus:2;mem:2048"));
    assert_eq!(core.agent_ids(), vec![aid("a1")]);
    // Unknown ids are ignored.
    core.recover(&fid("nobody"), &aid("nowhere"), &res("cpus:1"), Some(10.0));
    core.remove_framework(&fid("nobody"));
    core.remove_agent(&aid("nowhere"));
    core.set_agent_active(&aid("nowhere"), false);
    core.set_framework_active(&fid("nobody"), false);
    core.suppress(&fid("nobody"));
    core.revive(&fid("nobody"));
    assert!(core.explain(&fid("nobody")).is_none());
}

#[test]
fn dynamic_reservations_relabel_held_and_free_resources() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus:4;mem:4096"), &[]);
    core.add_framework(fid("f"), roles(&["eng"]), &[], true);
    let allocations = run(&mut core, 0.0);
    let reserve_from = res("cpus:2;mem:1024");
    let reserve_to = res("cpus(eng,dynamic):2;mem(eng,dynamic):1024");
    assert!(
        !core.update_allocation(
            &fid("f"),
            &aid("a0"),
            &reserve_from,
            &res("cpus(ads,dynamic):2;mem(ads,dynamic):1024")
        ),
        "not its role"
    );
    assert!(
        !core.update_allocation(&fid("f"), &aid("a0"), &reserve_from, &res("cpus(eng):3")),
        "quantities differ"
    );
    assert!(core.update_allocation(&fid("f"), &aid("a0"), &reserve_from, &reserve_to));
    let held = &(&allocations[0].resources - &reserve_from) + &reserve_to;
    core.recover(&fid("f"), &aid("a0"), &held, None);
    core.add_framework(fid("other"), roles(&["other"]), &[], true);
    core.suppress(&fid("f"));
    let allocations = run(&mut core, 1.0);
    assert_eq!(allocations[0].framework_id, fid("other"));
    assert_eq!(allocations[0].resources, res("cpus:2;mem:3072"), "the reservation is eng's now");
    // An operator unreserves free resources.
    assert!(core.update_available(&aid("a0"), &reserve_to, &reserve_from));
    assert!(!core.update_available(&aid("a0"), &reserve_to, &reserve_from), "no longer there");
    assert_eq!(run(&mut core, 2.0)[0].resources, reserve_from);
}

#[test]
fn invalid_weights_and_roles_are_refused() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    assert!(matches!(core.set_weight("a", 0.0), Err(AllocatorError::InvalidWeight { .. })));
    assert!(matches!(core.set_weight("a", f64::NAN), Err(AllocatorError::InvalidWeight { .. })));
    assert!(matches!(core.set_weight("/a", 1.0), Err(AllocatorError::InvalidRole { .. })));
    core.add_framework(fid("f"), roles(&["bad//role", "ok"]), &[], true);
    assert_eq!(core.framework_stats(&fid("f")).unwrap().keys().collect::<Vec<_>>(), vec!["ok"]);
}

#[test]
fn usage_reported_by_agents_for_an_unknown_framework_is_adopted_when_it_comes() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus:4;mem:4096"), &[(fid("f"), res("cpus:1;mem:1024"))]);
    core.add_framework(fid("other"), vec![], &[], true);
    assert_eq!(
        run(&mut core, 0.0)[0].resources,
        res("cpus:3;mem:3072"),
        "the unknown framework's use is kept"
    );
    core.add_framework(fid("f"), roles(&["eng"]), &[], true);
    assert_eq!(core.framework_stats(&fid("f")).unwrap()["eng"].allocated, res("cpus:1;mem:1024"));
    core.recover(&fid("f"), &aid("a0"), &res("cpus:1;mem:1024"), None);
    assert_eq!(run(&mut core, 1.0)[0].resources, res("cpus:1;mem:1024"));
}
