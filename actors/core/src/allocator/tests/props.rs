//! Property tests over random clusters and event sequences (proptest prints the
//! failing case and persists its seed under `proptest-regressions/` for replay).
//!
//! - never more allocated on an agent than it has;
//! - reservations only to their role's subtree, allocations only in the framework's roles,
//!   nothing to suppressed or inactive framework roles;
//! - quota limits never exceeded (no allocation past a limit, even one just lowered);
//! - roles below their guarantee served before any other, and their guarantees reached;
//! - equal weights and demand: dominant shares within one agent's share;
//! - suppress then revive restores offers;
//! - the core's own bookkeeping matches the allocations made and recovered.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::allocator::Quota;
use keel_proto::resources::is_self_or_ancestor;

const ROLES: [&str; 6] = ["a", "a/x", "a/y", "b", "c", "c/z"];

/// An agent: cpus, memory in 256 MB units, and optionally a static reservation.
#[derive(Debug, Clone)]
struct AgentSpec {
    cpus: u32,
    mem: u32,
    reserved: Option<(usize, u32, u32)>,
}

impl AgentSpec {
    fn resources(&self) -> Resources {
        let mut text = format!("cpus:{};mem:{}", self.cpus, self.mem * 256);
        if let Some((role, cpus, mem)) = self.reserved {
            let role = ROLES[role];
            text.push_str(&format!(";cpus({role}):{cpus};mem({role}):{}", mem * 256));
        }
        res(&text)
    }
}

fn agent_spec() -> impl Strategy<Value = AgentSpec> {
    (1u32..8, 1u32..16, proptest::option::of((0..ROLES.len(), 1u32..4, 1u32..4)))
        .prop_map(|(cpus, mem, reserved)| AgentSpec { cpus, mem, reserved })
}

/// A framework: its roles (indices into `ROLES`).
fn framework_spec() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::btree_set(0..ROLES.len(), 1..3).prop_map(|set| set.into_iter().collect())
}

#[derive(Debug, Clone)]
enum Event {
    Run,
    Decline {
        pick: usize,
        filter_secs: Option<u8>,
    },
    Suppress {
        framework: usize,
        role: Option<usize>,
    },
    Revive {
        framework: usize,
        role: Option<usize>,
    },
    Active {
        framework: usize,
        active: bool,
    },
    AgentActive {
        agent: usize,
        active: bool,
    },
    Weight {
        role: usize,
        weight: u8,
    },
    RemoveAgent {
        agent: usize,
    },
    /// A quota on a role: guarantee (cpus, memory units), limit (cpus, memory units).
    Quota {
        role: usize,
        guarantee: (u32, u32),
        limit: Option<(u32, u32)>,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => Just(Event::Run),
        4 => (any::<usize>(), proptest::option::of(1u8..5))
            .prop_map(|(pick, filter_secs)| Event::Decline { pick, filter_secs }),
        1 => (any::<usize>(), proptest::option::of(0..ROLES.len()))
            .prop_map(|(framework, role)| Event::Suppress { framework, role }),
        1 => (any::<usize>(), proptest::option::of(0..ROLES.len()))
            .prop_map(|(framework, role)| Event::Revive { framework, role }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(framework, active)| Event::Active { framework, active }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(agent, active)| Event::AgentActive { agent, active }),
        1 => (0..ROLES.len(), 1u8..5).prop_map(|(role, weight)| Event::Weight { role, weight }),
        1 => any::<usize>().prop_map(|agent| Event::RemoveAgent { agent }),
        1 => (0..ROLES.len(), (0u32..4, 0u32..8), proptest::option::of((0u32..6, 0u32..12)))
            .prop_map(|(role, guarantee, limit)| Event::Quota { role, guarantee, limit }),
    ]
}

/// Limits per role: cpus and memory (256 MB units).
fn limits() -> impl Strategy<Value = BTreeMap<usize, (u32, u32)>> {
    proptest::collection::btree_map(0..ROLES.len(), (1u32..10, 1u32..20), 0..3)
}

/// The test's own record of what is allocated, from the allocations and recoveries.
#[derive(Default)]
struct Model {
    outstanding: Vec<Allocation>,
    agents: BTreeMap<String, Resources>,
    framework_roles: BTreeMap<String, Vec<String>>,
    suppressed: BTreeSet<(String, String)>,
    inactive: BTreeSet<String>,
    limits: BTreeMap<String, Resources>,
}

impl Model {
    fn check_run(&self, core: &AllocatorCore, new: &[Allocation]) -> Result<(), TestCaseError> {
        // Limits: replaying the run, no allocation takes a role past its limit.
        let mut consumed: BTreeMap<String, Resources> = BTreeMap::new();
        for role in self.limits.keys() {
            let held: Resources = self
                .outstanding
                .iter()
                .filter(|a| is_self_or_ancestor(role, &a.role))
                .map(|a| a.resources.without_reservations())
                .sum();
            consumed.insert(role.clone(), held);
        }
        for allocation in new {
            for (role, limit) in &self.limits {
                if !is_self_or_ancestor(role, &allocation.role) {
                    continue;
                }
                let held = consumed.entry(role.clone()).or_default();
                *held += &allocation.resources.without_reservations();
                for (name, milli) in allocation.resources.scalars_milli() {
                    let limit = limit.scalar_milli(name);
                    prop_assert!(
                        limit == 0 || milli == 0 || held.scalar_milli(name) <= limit,
                        "{allocation:?} takes {role} to {held}, above its limit"
                    );
                }
            }
        }
        let mut outstanding = self.outstanding.clone();
        outstanding.extend(new.iter().cloned());
        for allocation in new {
            let framework = allocation.framework_id.to_string();
            prop_assert!(self.framework_roles[&framework].contains(&allocation.role), "{allocation:?}");
            prop_assert!(!self.inactive.contains(&framework), "inactive got {allocation:?}");
            prop_assert!(
                !self.suppressed.contains(&(framework.clone(), allocation.role.clone())),
                "suppressed got {allocation:?}"
            );
            for entry in &allocation.resources {
                let reserved = entry.reservation().role();
                prop_assert!(
                    entry.reservation().is_unreserved() || is_self_or_ancestor(reserved, &allocation.role),
                    "{reserved} reservation given to {}",
                    allocation.role
                );
            }
        }
        for (agent, total) in &self.agents {
            let held: Resources =
                outstanding.iter().filter(|a| a.agent_id.as_str() == agent).map(|a| &a.resources).sum();
            prop_assert!(total.contains(&held), "agent {agent}: {held} allocated of {total}");
        }
        // The core's bookkeeping agrees with the allocations outstanding.
        let shares = core.role_shares();
        for (role, stats) in &shares {
            let held: Resources =
                outstanding.iter().filter(|a| is_self_or_ancestor(role, &a.role)).map(|a| &a.resources).sum();
            prop_assert_eq!(&stats.allocated, &held, "role {}", role);
        }
        Ok(())
    }
}

fn pick<T: Clone>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()].clone())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_event_sequences_keep_the_invariants(
        agents in proptest::collection::vec(agent_spec(), 1..10),
        frameworks in proptest::collection::vec(framework_spec(), 1..6),
        limits in limits(),
        events in proptest::collection::vec(event(), 1..40),
    ) {
        let mut core = AllocatorCore::new(MinAllocatable::default());
        let mut model = Model::default();
        for (role, (cpus, mem)) in &limits {
            let limit = res(&format!("cpus:{cpus};mem:{}", mem * 256));
            core.set_quota(ROLES[*role], Quota { guarantee: Resources::new(), limit: Some(limit.clone()) }).unwrap();
            model.limits.insert(ROLES[*role].to_string(), limit);
        }
        let mut agent_ids = Vec::new();
        for (i, spec) in agents.iter().enumerate() {
            let id = format!("agent{i}");
            core.add_agent(id.as_str().into(), spec.resources(), &[]);
            model.agents.insert(id.clone(), spec.resources());
            agent_ids.push(id);
        }
        let mut framework_ids = Vec::new();
        for (i, role_indices) in frameworks.iter().enumerate() {
            let id = format!("fw{i}");
            let names: Vec<String> = role_indices.iter().map(|&r| ROLES[r].to_string()).collect();
            core.add_framework(id.as_str().into(), names.clone(), &[], true);
            model.framework_roles.insert(id.clone(), names);
            framework_ids.push(id);
        }
        let mut now = 0.0;
        for event in events {
            match event {
                Event::Run => {
                    now += 1.0;
                    let new = run(&mut core, now);
                    model.check_run(&core, &new)?;
                    model.outstanding.extend(new);
                }
                Event::Decline { pick: i, filter_secs } => {
                    if !model.outstanding.is_empty() {
                        let allocation = model.outstanding.swap_remove(i % model.outstanding.len());
                        let until = filter_secs.map(|secs| now + f64::from(secs));
                        core.recover_in_role(&allocation.framework_id, &allocation.agent_id, &allocation.role, &allocation.resources, until);
                    }
                }
                Event::Suppress { framework, role } | Event::Revive { framework, role } => {
                    let Some(id) = pick(&framework_ids, framework) else { continue };
                    let suppress = matches!(event, Event::Suppress { .. });
                    let all = model.framework_roles[&id].clone();
                    let named: Vec<String> = role.map(|r| vec![ROLES[r].to_string()]).unwrap_or_default();
                    let affected: Vec<String> =
                        if named.is_empty() { all } else { all.into_iter().filter(|r| named.contains(r)).collect() };
                    for role in affected {
                        if suppress {
                            model.suppressed.insert((id.clone(), role));
                        } else {
                            model.suppressed.remove(&(id.clone(), role));
                        }
                    }
                    if suppress {
                        core.suppress_roles(&id.as_str().into(), &named);
                    } else {
                        core.revive_roles(&id.as_str().into(), &named);
                    }
                }
                Event::Active { framework, active } => {
                    let Some(id) = pick(&framework_ids, framework) else { continue };
                    core.set_framework_active(&id.as_str().into(), active);
                    if active { model.inactive.remove(&id); } else { model.inactive.insert(id); }
                }
                Event::AgentActive { agent, active } => {
                    let Some(id) = pick(&agent_ids, agent) else { continue };
                    core.set_agent_active(&id.as_str().into(), active);
                }
                Event::Weight { role, weight } => {
                    core.set_weight(ROLES[role], f64::from(weight)).unwrap();
                }
                Event::Quota { role, guarantee: (gc, gm), limit } => {
                    let guarantee = res(&format!("cpus:{gc};mem:{}", gm * 256));
                    let limit = limit.map(|(lc, lm)| res(&format!("cpus:{};mem:{}", lc.max(gc), lm.max(gm) * 256)));
                    let role = ROLES[role];
                    // A zero limit is no limit (Resources drop zeros).
                    let limit = limit.filter(|l| !l.is_empty());
                    core.set_quota(role, Quota { guarantee, limit: limit.clone() }).unwrap();
                    match limit {
                        Some(limit) => { model.limits.insert(role.to_string(), limit); }
                        None => { model.limits.remove(role); }
                    }
                }
                Event::RemoveAgent { agent } => {
                    let Some(id) = pick(&agent_ids, agent) else { continue };
                    core.remove_agent(&id.as_str().into());
                    model.agents.remove(&id);
                    model.outstanding.retain(|a| a.agent_id.as_str() != id);
                    agent_ids.retain(|a| *a != id);
                }
            }
        }
        now += 1.0;
        let new = run(&mut core, now);
        model.check_run(&core, &new)?;
    }

    #[test]
    fn roles_below_their_guarantee_are_served_first_and_reach_it(
        agents in proptest::collection::vec((1u32..8, 1u32..16), 1..12),
        guarantees in proptest::collection::vec((0u32..6, 0u32..12), 1..4),
        others in proptest::collection::vec(1u8..20, 1..4),
    ) {
        let mut core = AllocatorCore::new(MinAllocatable { cpus: 0.001, mem_mb: 1.0 });
        let (mut cpus_total, mut mem_total) = (0, 0);
        for (i, (cpus, mem)) in agents.iter().enumerate() {
            core.add_agent(format!("agent{i}").into(), res(&format!("cpus:{cpus};mem:{}", mem * 256)), &[]);
            cpus_total += cpus;
            mem_total += mem * 256;
        }
        // Non-quota roles, heavier than the quota roles, created first.
        for (i, weight) in others.iter().enumerate() {
            let role = format!("other{i}");
            core.set_weight(&role, f64::from(*weight) * 10.0).unwrap();
            core.add_framework(format!("o{i}").into(), vec![role], &[], true);
        }
        // Guarantees scaled down to fit the cluster together.
        let (cpus_sum, mem_sum) = guarantees.iter().fold((0, 0), |(c, m), (gc, gm)| (c + gc, m + gm * 256));
        let mut wanted = BTreeMap::new();
        for (i, (cpus, mem)) in guarantees.iter().enumerate() {
            let cpus = if cpus_sum > cpus_total { cpus * cpus_total / cpus_sum } else { *cpus };
            let mem = if mem_sum > mem_total { mem * 256 * mem_total / mem_sum } else { mem * 256 };
            let role = format!("q{i}");
            let guarantee = res(&format!("cpus:{cpus};mem:{mem}"));
            core.set_quota(&role, Quota { guarantee: guarantee.clone(), limit: None }).unwrap();
            core.add_framework(format!("q{i}").into(), vec![role.clone()], &[], true);
            wanted.insert(role, guarantee);
        }
        let allocations = run(&mut core, 0.0);
        let mut held: BTreeMap<String, Resources> = BTreeMap::new();
        for allocation in &allocations {
            if !wanted.contains_key(&allocation.role) {
                for (role, guarantee) in &wanted {
                    let got = held.get(role).cloned().unwrap_or_default();
                    prop_assert!(got.contains(guarantee), "{} served while {role} has {got} of {guarantee}", allocation.role);
                }
            }
            *held.entry(allocation.role.clone()).or_default() += &allocation.resources;
        }
        for (role, guarantee) in &wanted {
            let got = held.get(role).cloned().unwrap_or_default();
            prop_assert!(got.contains(guarantee), "{role} has {got} of {guarantee}");
        }
    }

    #[test]
    fn equal_weights_and_demand_converge_within_one_agent(
        agents in 2usize..24,
        roles_count in 1usize..4,
        per_role in 1usize..3,
        releases in proptest::collection::vec(proptest::collection::vec(any::<usize>(), 0..6), 1..6),
    ) {
        let mut core = cluster(agents, "cpus:1;mem:1024");
        for r in 0..roles_count {
            for f in 0..per_role {
                core.add_framework(format!("f{r}-{f}").into(), vec![format!("r{r}")], &[], true);
            }
        }
        let one = 1.0 / agents as f64 + 1e-9;
        let mut outstanding = run(&mut core, 0.0);
        for (round, release) in releases.iter().enumerate() {
            let shares = core.role_shares();
            let role_shares: Vec<f64> = shares.values().map(|s| s.dominant_share).collect();
            let max = role_shares.iter().cloned().fold(0.0, f64::max);
            let min = role_shares.iter().cloned().fold(1.0, f64::min);
            prop_assert!(max - min <= one, "roles {shares:?}");
            let by_role: BTreeMap<String, Vec<f64>> = core.framework_shares().into_iter().fold(BTreeMap::new(), |mut acc, (_, s)| {
                for (role, share) in s { acc.entry(role).or_insert_with(Vec::new).push(share); }
                acc
            });
            for (role, shares) in by_role {
                let max = shares.iter().cloned().fold(0.0, f64::max);
                let min = shares.iter().cloned().fold(1.0, f64::min);
                prop_assert!(max - min <= one, "frameworks of {role}: {shares:?}");
            }
            for &i in release {
                if !outstanding.is_empty() {
                    let allocation = outstanding.swap_remove(i % outstanding.len());
                    core.recover(&allocation.framework_id, &allocation.agent_id, &allocation.resources, None);
                }
            }
            outstanding.extend(run(&mut core, round as f64 + 1.0));
        }
    }

    #[test]
    fn suppress_then_revive_restores_offers(
        agents in proptest::collection::vec((1u32..8, 1u32..16), 1..10),
        frameworks in proptest::collection::vec(framework_spec(), 2..5),
        which in any::<usize>(),
    ) {
        let build = || {
            let mut core = AllocatorCore::new(MinAllocatable::default());
            for (i, (cpus, mem)) in agents.iter().enumerate() {
                core.add_agent(format!("agent{i}").into(), res(&format!("cpus:{cpus};mem:{}", mem * 256)), &[]);
            }
            for (i, role_indices) in frameworks.iter().enumerate() {
                let names = role_indices.iter().map(|&r| ROLES[r].to_string()).collect();
                core.add_framework(format!("fw{i}").into(), names, &[], true);
            }
            core
        };
        let target = fid(&format!("fw{}", which % frameworks.len()));
        // Suppress then revive at once changes nothing.
        let mut core = build();
        let mut untouched = build();
        core.suppress(&target);
        core.revive(&target);
        prop_assert_eq!(run(&mut core, 0.0), run(&mut untouched, 0.0));
        // Suppressed through a run: nothing for it; the others give everything back with
        // long filters; revived, it gets every agent.
        let mut core = build();
        core.suppress(&target);
        let first = run(&mut core, 1.0);
        prop_assert!(first.iter().all(|a| a.framework_id != target));
        decline_all(&mut core, &first, Some(1000.0));
        // Frameworks with several roles are offered the agents again in their other roles.
        for _ in 0..ROLES.len() {
            let again = run(&mut core, 2.0);
            prop_assert!(again.iter().all(|a| a.framework_id != target));
            decline_all(&mut core, &again, Some(1000.0));
        }
        prop_assert!(run(&mut core, 2.0).is_empty());
        core.revive(&target);
        let revived = run(&mut core, 3.0);
        prop_assert_eq!(revived.len(), agents.len());
        prop_assert!(revived.iter().all(|a| a.framework_id == target));
    }
}
