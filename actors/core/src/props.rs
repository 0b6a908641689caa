//! No input panics a core: property tests feed the master, the allocator and the
//! agent every kind of message, made up by [`crate::arbitrary`] (absurd numbers,
//! unknown ids, strangers as senders), mixed with link exits, stray timers,
//! registry answers and container ends.

use std::collections::BTreeMap;

use keel_message::Upid;
use keel_proto::messages::agent::{AgentRegistered, RegisterAgent};
use keel_proto::messages::scheduler::SubscribeFramework;
use keel_proto::messages::KINDS;
use keel_proto::registry::{RegistryState, Term};
use keel_proto::task::{AgentInfo, FrameworkInfo};
use proptest::prelude::*;
use serde::Deserialize;

use crate::agent::{self, Agent, AgentConfig};
use crate::allocator::messages::{Allocated, AllocatorEvent};
use crate::arbitrary::{self, Arbitrary};
use crate::master::{self, Master, MasterConfig, RegistryFailure};
use crate::timers::TimerId;

const PIDS: &[&str] = &[
    "master@127.0.0.1:5050",
    "agent@127.0.0.1:5051",
    "scheduler@127.0.0.1:6000",
    "executor@127.0.0.1:7000",
    "x@10.0.0.1:1",
];

fn pid(rng: &mut fastrand::Rng) -> Upid {
    PIDS[rng.usize(0..PIDS.len())].parse().expect("valid")
}

fn kind(rng: &mut fastrand::Rng) -> &'static str {
    KINDS[rng.usize(0..KINDS.len())]
}

/// A made-up message of a random kind.
fn made(rng: &mut fastrand::Rng) -> Option<keel_proto::messages::Msg> {
    let kind = kind(rng);
    arbitrary::message(rng, kind)
}

/// A serving master with an agent and a framework.
fn master() -> (Master, Vec<master::WriteId>) {
    let mut master = Master::new(MasterConfig::new("master@127.0.0.1:5050".parse().expect("valid"), "M"));
    let mut writes = Vec::new();
    let feed = |master: &mut Master, input, writes: &mut Vec<master::WriteId>| {
        for effect in master.handle(1000.0, input) {
            if let master::Effect::Persist { write, .. } = effect {
                writes.push(write);
            }
        }
    };
    feed(&mut master, master::Input::Start, &mut writes);
    feed(&mut master, master::Input::Recovered(Ok((Term(7), RegistryState::default()))), &mut writes);
    let info = AgentInfo {
        hostname: "h".into(),
        id: None,
        resources: "cpus:4;mem:1024".parse().expect("valid"),
        attributes: BTreeMap::new(),
    };
    let register = RegisterAgent { agent: info, version: "t".into(), incarnation: 1 };
    let from: Upid = "agent@127.0.0.1:5051".parse().expect("valid");
    feed(&mut master, master::Input::Message { from, message: register.into() }, &mut writes);
    let subscribe = SubscribeFramework { framework: FrameworkInfo::new("fw"), subscription: 1 };
    let from: Upid = "scheduler@127.0.0.1:6000".parse().expect("valid");
    feed(&mut master, master::Input::Message { from, message: subscribe.into() }, &mut writes);
    for write in std::mem::take(&mut writes) {
        feed(&mut master, master::Input::Persisted { write, result: Ok(()) }, &mut writes);
    }
    (master, writes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn no_input_panics_the_master_or_its_allocator(seed in any::<u64>()) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut master, mut writes) = master();
        let mut allocator = crate::allocator::AllocatorMachine::new(Default::default());
        let mut now = 1000.0;
        for _ in 0..300 {
            now += rng.f64();
            let input = match rng.u8(0..20) {
                0 => master::Input::Exited(pid(&mut rng)),
                1 => master::Input::Timer(TimerId(rng.u64(0..50))),
                2 => match Allocated::deserialize(&mut Arbitrary::new(&mut rng)) {
                    Ok(allocated) => master::Input::Allocator(AllocatorEvent::Allocated(allocated)),
                    Err(_) => continue,
                },
                3 if !writes.is_empty() => {
                    let write = writes.remove(0);
                    let result = if rng.u8(0..20) == 0 { Err(RegistryFailure("disk".into())) } else { Ok(()) };
                    master::Input::Persisted { write, result }
                }
                _ => match made(&mut rng) {
                    Some(message) => master::Input::Message { from: pid(&mut rng), message },
                    None => continue,
                },
            };
            for effect in master.handle(now, input) {
                match effect {
                    master::Effect::Persist { write, .. } => writes.push(write),
                    master::Effect::Allocator(call) => {
                        allocator.handle(now, crate::allocator::AllocatorInput::Call(call));
                    }
                    _ => {}
                }
            }
            allocator.handle(now, crate::allocator::AllocatorInput::Timer(TimerId(rng.u64(0..20))));
        }
        // Reads of the state never panic either.
        let _ = master.metrics_snapshot(now);
        for agent_id in master.agents().keys() {
            let _ = (master.used_on(agent_id), master.offered_on(agent_id));
        }
    }

    #[test]
    fn no_input_panics_the_agent(seed in any::<u64>()) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let info = AgentInfo {
            hostname: "h".into(),
            id: None,
            resources: "cpus:4;mem:1024".parse().expect("valid"),
            attributes: BTreeMap::new(),
        };
        let config = AgentConfig::new(
            "agent@127.0.0.1:5051".parse().expect("valid"),
            "master@127.0.0.1:5050".parse().expect("valid"),
            "/work".into(),
            info,
        );
        let mut agent = Agent::new(config);
        agent.handle(0.0, agent::Input::Start);
        let registered = AgentRegistered {
            agent_id: "S1".into(),
            ping_interval_secs: 1.0,
            epoch: 1,
            max_ping_timeouts: 3,
            session: 1,
        };
        let master_pid: Upid = "master@127.0.0.1:5050".parse().expect("valid");
        agent.handle(0.0, agent::Input::Message { from: master_pid.clone(), message: registered.into() });
        let mut containers = Vec::new();
        let mut now = 0.0;
        for _ in 0..300 {
            now += rng.f64();
            let input = match rng.u8(0..20) {
                0 => agent::Input::Exited(pid(&mut rng)),
                1 => agent::Input::Timer(TimerId(rng.u64(0..50))),
                2 | 3 if !containers.is_empty() => {
                    let container = containers.swap_remove(rng.usize(0..containers.len()));
                    let status = if rng.bool() {
                        agent::container::ExitStatus::Exited(rng.i32(..))
                    } else {
                        agent::container::ExitStatus::Signaled(rng.i32(..))
                    };
                    let termination = agent::container::Termination {
                        status,
                        message: "ended".into(),
                        memory_limit: rng.bool().then(|| (rng.u64(..), rng.u64(..))),
                    };
                    agent::Input::ContainerExited { container, termination }
                }
                4 if !containers.is_empty() => {
                    let container = containers.swap_remove(0);
                    agent::Input::LaunchFailed { container, message: "no".into() }
                }
                5 => agent::Input::ContainerExited {
                    container: agent::container::ContainerId("nope".into()),
                    termination: agent::container::Termination {
                        status: agent::container::ExitStatus::Exited(0),
                        message: String::new(),
                        memory_limit: None,
                    },
                },
                _ => match made(&mut rng) {
                    // Mostly from the master, so that its messages get past the sender check.
                    Some(message) => {
                        let from = if rng.bool() { master_pid.clone() } else { pid(&mut rng) };
                        agent::Input::Message { from, message }
                    }
                    None => continue,
                },
            };
            for effect in agent.handle(now, input) {
                if let agent::Effect::Launch(spec) = effect {
                    containers.push(spec.id);
                }
            }
        }
        let _ = agent.known_containers();
    }

    #[test]
    fn made_up_messages_of_every_kind_are_made(seed in any::<u64>()) {
        // The generator does produce messages (the properties above are not vacuous).
        let mut rng = fastrand::Rng::with_seed(seed);
        let made = KINDS.iter().filter(|kind| (0..20).any(|_| arbitrary::message(&mut rng, kind).is_some())).count();
        prop_assert!(made * 2 >= KINDS.len(), "only {made} of {} kinds", KINDS.len());
    }
}

#[test]
fn the_generator_makes_most_kinds_often() {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut made = BTreeMap::new();
    for kind in KINDS {
        let count = (0..200).filter(|_| arbitrary::message(&mut rng, kind).is_some()).count();
        made.insert(*kind, count);
    }
    let often = made.values().filter(|c| **c >= 20).count();
    assert!(often * 3 >= KINDS.len() * 2, "{made:?}");
}
