//! "Why pending?": one test per reason, and the rendering.

use super::*;
use crate::allocator::{PendingReason, Quota};

fn reasons(core: &AllocatorCore, framework: &str) -> Vec<PendingReason> {
    core.explain(&fid(framework)).unwrap().roles[0].reasons.clone()
}

#[test]
fn an_inactive_framework() {
    let mut core = cluster(1, "cpus:1;mem:1024");
    core.add_framework(fid("f"), vec![], &[], false);
    run(&mut core, 0.0);
    assert_eq!(reasons(&core, "f"), vec![PendingReason::Inactive]);
    let text = core.explain(&fid("f")).unwrap().to_string();
    assert!(text.contains("inactive"), "{text}");
}

#[test]
fn a_suppressed_framework() {
    let mut core = cluster(1, "cpus:1;mem:1024");
    core.add_framework(fid("f"), roles(&["eng"]), &[], true);
    core.suppress(&fid("f"));
    run(&mut core, 0.0);
    run(&mut core, 1.0);
    assert_eq!(reasons(&core, "f"), vec![PendingReason::Suppressed]);
    let text = core.explain(&fid("f")).unwrap().to_string();
    assert!(text.contains("nothing offered in the last 2 runs (never offered)"), "{text}");
    assert!(text.contains("suppressed offers for role eng"), "{text}");
}

#[test]
fn a_framework_filtered_by_its_own_declines() {
    let mut core = cluster(2, "cpus:1;mem:1024");
    core.add_framework(fid("f"), vec![], &[], true);
    let first = run(&mut core, 0.0);
    decline_all(&mut core, &first, Some(100.0));
    run(&mut core, 1.0);
    assert_eq!(reasons(&core, "f"), vec![PendingReason::Filtered { agents: 2 }]);
    let text = core.explain(&fid("f")).unwrap().to_string();
    assert!(text.contains("declined earlier offers of 2 agents"), "{text}");
    assert!(text.contains("last offered 1.0 s before the last run"), "{text}");
}

#[test]
fn a_framework_starved_by_a_quota_limit() {
    let mut core = cluster(2, "cpus:1;mem:1024");
    core.set_quota("eng", Quota { guarantee: Resources::new(), limit: Some(res("cpus:1;mem:1024")) })
        .unwrap();
    core.add_framework(fid("f"), roles(&["eng/ml"]), &[], true);
    assert_eq!(run(&mut core, 0.0).len(), 1);
    run(&mut core, 1.0);
    assert_eq!(
        reasons(&core, "f"),
        vec![PendingReason::AboveLimit {
            role: "eng".into(),
            allocated: res("cpus:1;mem:1024"),
            limit: res("cpus:1;mem:1024")
        }]
    );
    let text = core.explain(&fid("f")).unwrap().to_string();
    assert!(
        text.contains("role eng is at its quota limit (allocated cpus:1;mem:1024, limit cpus:1;mem:1024)"),
        "{text}"
    );
}

#[test]
fn a_framework_whose_resources_are_held_for_guarantees() {
    let mut core = cluster(2, "cpus:2;mem:2048");
    core.set_quota("q", Quota { guarantee: res("cpus:4;mem:4096"), limit: None }).unwrap();
    core.add_framework(fid("f"), roles(&["other"]), &[], true);
    assert!(run(&mut core, 0.0).is_empty());
    assert_eq!(
        reasons(&core, "f"),
        vec![PendingReason::HeldForGuarantees { agents: 2, required: res("cpus:4;mem:4096") }]
    );
    let text = core.explain(&fid("f")).unwrap().to_string();
    assert!(
        text.contains("held back for other roles' quota guarantees (still needed: cpus:4;mem:4096)"),
        "{text}"
    );
}

#[test]
fn a_framework_outweighed_by_other_roles_and_frameworks() {
    let mut core = cluster(1, "cpus:1;mem:1024");
    core.add_framework(fid("fa"), roles(&["a"]), &[], true);
    core.add_framework(fid("fb"), roles(&["b"]), &[], true);
    core.add_framework(fid("fb2"), roles(&["b"]), &[], true);
    assert_eq!(run(&mut core, 0.0)[0].framework_id, fid("fa"));
    assert_eq!(
        reasons(&core, "fb"),
        vec![
            PendingReason::Outweighed { roles: 1, frameworks: 0, agents: 1, share: 0.0, weight: 1.0 },
            PendingReason::NoFreeResources { agents: 1 },
        ]
    );
    let text = core.explain(&fid("fb")).unwrap().to_string();
    assert!(
        text.contains("1 role with lower weighted share took the 1 agent with free resources (b's share 0.00, weight 1)"),
        "{text}"
    );
    // Within a role: fb gets the next agent, fb2 waits for fb.
    core.add_agent(aid("a1"), res("cpus:1;mem:1024"), &[]);
    core.set_framework_active(&fid("fa"), false);
    run(&mut core, 1.0);
    assert!(matches!(reasons(&core, "fb2")[0], PendingReason::Outweighed { roles: 0, frameworks: 1, .. }));
}

#[test]
fn a_framework_whose_free_resources_are_reserved_for_another_role() {
    let mut core = AllocatorCore::new(MinAllocatable::default());
    core.add_agent(aid("a0"), res("cpus(ads):4;mem(ads):1024"), &[]);
    core.add_framework(fid("f"), roles(&["eng"]), &[], true);
    assert!(run(&mut core, 0.0).is_empty());
    assert_eq!(reasons(&core, "f"), vec![PendingReason::ReservedForOtherRoles { agents: 1 }]);
    let text = core.explain(&fid("f")).unwrap().to_string();
    assert!(text.contains("free resources of 1 agent are reserved for other roles"), "{text}");
}

#[test]
fn a_framework_with_no_agent_big_enough() {
    let mut core = cluster(2, "cpus:0.005;mem:16");
    core.add_framework(fid("f"), vec![], &[], true);
    run(&mut core, 0.0);
    assert_eq!(
        reasons(&core, "f"),
        vec![PendingReason::TooLittleFree { agents: 2, min_cpus: 0.01, min_mem_mb: 32.0 }]
    );
    let text = core.explain(&fid("f")).unwrap().to_string();
    assert!(
        text.contains("no agent has at least 0.01 cpus or 32 MB of memory free (2 agents have less)"),
        "{text}"
    );
}

#[test]
fn a_framework_in_a_full_cluster() {
    let mut core = cluster(2, "cpus:1;mem:1024");
    core.add_framework(fid("f1"), vec![], &[], true);
    run(&mut core, 0.0);
    core.add_framework(fid("f2"), vec![], &[], true);
    run(&mut core, 1.0);
    assert_eq!(reasons(&core, "f2"), vec![PendingReason::NoFreeResources { agents: 2 }]);
    core.set_agent_active(&aid("a0"), false);
    core.set_agent_active(&aid("a1"), false);
    run(&mut core, 2.0);
    assert_eq!(reasons(&core, "f2"), vec![PendingReason::NoActiveAgents { agents: 2 }]);
}

#[test]
fn a_served_framework_and_one_screen_of_text() {
    let mut core = cluster(2, "cpus:1;mem:1024");
    core.add_framework(fid("f"), roles(&["eng", "ads"]), &[], true);
    core.suppress_roles(&fid("f"), &roles(&["ads"]));
    run(&mut core, 3.0);
    let explanation = core.explain(&fid("f")).unwrap();
    assert_eq!(explanation.last_run, Some(3.0));
    assert_eq!(explanation.roles[0].runs_without_allocation, 0);
    assert_eq!(explanation.roles[0].last_allocation, Some(3.0));
    assert!(explanation.roles[0].reasons.is_empty());
    let text = explanation.to_string();
    assert!(text.starts_with("framework f, last allocation run at 3.0 s\n"), "{text}");
    assert!(
        text.contains(
            "role eng (weight 1, share 1.00; this framework holds cpus:2;mem:2048): offered in the last run"
        ),
        "{text}"
    );
    assert!(text.lines().count() < 25, "{text}");
}

#[test]
fn a_framework_at_its_limit_in_a_full_cluster_hears_both() {
    let mut core = cluster(2, "cpus:1;mem:1024");
    core.set_quota("l", Quota { guarantee: Resources::new(), limit: Some(res("cpus:1;mem:1024")) }).unwrap();
    core.add_framework(fid("l"), roles(&["l"]), &[], true);
    core.add_framework(fid("other"), roles(&["other"]), &[], true);
    run(&mut core, 0.0);
    run(&mut core, 1.0);
    let reasons = reasons(&core, "l");
    assert!(matches!(&reasons[0], PendingReason::AboveLimit { role, .. } if role == "l"), "{reasons:?}");
    assert_eq!(reasons[1], PendingReason::NoFreeResources { agents: 2 });
}
