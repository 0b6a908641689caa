//! Benchmarks of the allocator core, after Mesos's hierarchical allocator benchmarks
//! (`cargo bench -p keel-actors --bench allocator`). Each scenario prints, on stderr,
//! the median time of one full allocation round (or of adding all agents):
//!
//! - `decline_offers`: 10,000 agents, 1,000 frameworks in 10 roles; every framework
//!   declines every offer with a long filter; 20 rounds per cluster (Mesos: ~1.06 s per
//!   round; target here <= 50 ms);
//! - `quota`: 3,000 agents, 3,000 roles each with a small quota (guarantee and limit),
//!   one framework per role; one round from an empty allocation (Mesos 1.9: ~15 s for
//!   3,500 allocations; target < 1 s);
//! - `add_agents`: adding 10,000 agents with 1,000 frameworks subscribed (Mesos: 1.6 s;
//!   target < 100 ms).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use keel_actors::allocator::core::{AllocatorCore, MinAllocatable, Quota};
use keel_actors::ids::AgentId;
use keel_actors::resources::Resources;

const AGENT: &str = "cpus:24;mem:49152;disk:1000000;ports:[31000-32000]";

fn res(text: &str) -> Resources {
    text.parse().expect("valid resources")
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn report(name: &str, what: &str, samples: &[Duration], extra: &str) {
    if samples.is_empty() {
        return;
    }
    eprintln!(
        "{name}: median {:.2} ms {what} over {} samples{extra}",
        median(samples).as_secs_f64() * 1e3,
        samples.len()
    );
}

fn agents(core: &mut AllocatorCore, count: usize, resources: &Resources) -> Vec<AgentId> {
    (0..count)
        .map(|i| {
            let id = AgentId::from(format!("agent-{i:05}"));
            core.add_agent(id.clone(), resources.clone(), &[]);
            id
        })
        .collect()
}

fn decline_offers(c: &mut Criterion) {
    const AGENTS: usize = 10_000;
    const FRAMEWORKS: usize = 1_000;
    const ROUNDS: usize = 20;
    let resources = res(AGENT);
    let build = || {
        let mut core = AllocatorCore::new(MinAllocatable::default());
        for i in 0..FRAMEWORKS {
            core.add_framework(
                format!("framework-{i:04}").into(),
                vec![format!("role-{}", i % 10)],
                &[],
                true,
            );
        }
        let ids = agents(&mut core, AGENTS, &resources);
        (core, ids)
    };
    let mut rng = fastrand::Rng::with_seed(7);
    let mut state = None;
    let mut round = 0usize;
    let mut samples = Vec::new();
    let mut allocated = 0usize;
    let mut group = c.benchmark_group("allocator");
    group.bench_function("decline_offers", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                if round % ROUNDS == 0 {
                    state = Some(build());
                }
                let Some((core, ids)) = state.as_mut() else { break };
                let mut order = ids.clone();
                rng.shuffle(&mut order);
                let now = round as f64;
                let start = Instant::now();
                let allocations = core.allocate(now, &order);
                let elapsed = start.elapsed();
                total += elapsed;
                samples.push(elapsed);
                allocated += allocations.len();
                for allocation in allocations {
                    core.recover(
                        &allocation.framework_id,
                        &allocation.agent_id,
                        &allocation.resources,
                        Some(now + 1e9),
                    );
                }
                round += 1;
            }
            total
        })
    });
    group.finish();
    let per_round = allocated / round.max(1);
    report(
        "decline_offers",
        "per round",
        &samples,
        &format!(" ({per_round} allocations per round on average)"),
    );
}

fn quota(c: &mut Criterion) {
    const AGENTS: usize = 3_000;
    const ROLES: usize = 3_000;
    let resources = res("cpus:8;mem:16384");
    let quota = Quota { guarantee: res("cpus:1;mem:2048"), limit: Some(res("cpus:2;mem:4096")) };
    let build = || {
        let mut core = AllocatorCore::new(MinAllocatable::default());
        let ids = agents(&mut core, AGENTS, &resources);
        for i in 0..ROLES {
            let role = format!("role-{i:04}");
            core.set_quota(&role, quota.clone()).expect("valid quota");
            core.add_framework(format!("framework-{i:04}").into(), vec![role], &[], true);
        }
        (core, ids)
    };
    let mut rng = fastrand::Rng::with_seed(11);
    let mut samples = Vec::new();
    let mut allocated = 0;
    let mut group = c.benchmark_group("allocator");
    group.bench_function("quota", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let (mut core, mut order) = build();
                rng.shuffle(&mut order);
                let start = Instant::now();
                let allocations = core.allocate(0.0, &order);
                let elapsed = start.elapsed();
                total += elapsed;
                samples.push(elapsed);
                allocated = allocations.len();
            }
            total
        })
    });
    group.finish();
    report("quota", "per round", &samples, &format!(" ({allocated} allocations per round)"));
}

fn add_agents(c: &mut Criterion) {
    const AGENTS: usize = 10_000;
    const FRAMEWORKS: usize = 1_000;
    let resources = res(AGENT);
    let ids: Vec<AgentId> = (0..AGENTS).map(|i| AgentId::from(format!("agent-{i:05}"))).collect();
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("allocator");
    group.bench_function("add_agents", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let mut core = AllocatorCore::new(MinAllocatable::default());
                for i in 0..FRAMEWORKS {
                    core.add_framework(
                        format!("framework-{i:04}").into(),
                        vec![format!("role-{}", i % 10)],
                        &[],
                        true,
                    );
                }
                let start = Instant::now();
                for id in &ids {
                    core.add_agent(id.clone(), resources.clone(), &[]);
                }
                let elapsed = start.elapsed();
                total += elapsed;
                samples.push(elapsed);
                std::hint::black_box(&core);
            }
            total
        })
    });
    group.finish();
    report("add_agents", "to add 10,000 agents", &samples, "");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = decline_offers, quota, add_agents
}
criterion_main!(benches);
