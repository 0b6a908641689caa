//! The allocator as a state machine around [`AllocatorCore`]: the master's calls
//! and timers go in, allocations and answers for the master come out. Runs are
//! batched: one soon after a burst of events that free resources or add demand,
//! and one every interval. The allocator actor (and the simulator) execute it.

use std::time::Duration;

use super::messages::*;
use super::{AllocatorCore, MinAllocatable, Quota};
use crate::timers::{SetTimer, TimerId, Timers};

/// How the allocator runs.
#[derive(Debug, Clone)]
pub struct AllocatorConfig {
    /// Time between periodic allocation runs (Mesos default 1 s).
    pub interval: Duration,
    /// Delay of the run that follows a burst of events.
    pub batch_delay: Duration,
    /// Resources too small to offer.
    pub min_allocatable: MinAllocatable,
    /// Seed for the agent visiting order.
    pub seed: u64,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            interval: Duration::from_secs(1),
            batch_delay: Duration::from_millis(1),
            min_allocatable: MinAllocatable::default(),
            seed: 0,
        }
    }
}

/// What the allocator's timers are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Interval,
    Soon,
}

/// One input of the allocator.
#[derive(Debug, Clone)]
pub enum AllocatorInput {
    /// The allocator starts (arms its interval).
    Start,
    /// A call from the master.
    Call(AllocatorCall),
    /// A timer fired.
    Timer(TimerId),
}

/// One effect of the allocator.
#[derive(Debug, Clone)]
pub enum AllocatorEffect {
    /// For the master.
    ToMaster(AllocatorEvent),
    /// Fire this timer back later.
    SetTimer(SetTimer),
    /// An allocation run happened in this step (shells time it).
    Ran,
}

/// The allocator machine.
#[derive(Debug)]
pub struct AllocatorMachine {
    core: AllocatorCore,
    config: AllocatorConfig,
    rng: fastrand::Rng,
    timers: Timers<Timer>,
    soon: Option<TimerId>,
    /// Completed allocation runs.
    pub allocation_runs: u64,
}

impl AllocatorMachine {
    /// A new allocator.
    pub fn new(config: AllocatorConfig) -> AllocatorMachine {
        AllocatorMachine {
            core: AllocatorCore::new(config.min_allocatable.clone()),
            rng: fastrand::Rng::with_seed(config.seed),
            config,
            timers: Timers::default(),
            soon: None,
            allocation_runs: 0,
        }
    }

    /// The decision core (for explanations, statistics and tests).
    pub fn core(&self) -> &AllocatorCore {
        &self.core
    }

    /// Takes one input at `now` (seconds) and returns the effects.
    pub fn handle(&mut self, now: f64, input: AllocatorInput) -> Vec<AllocatorEffect> {
        let mut out = Vec::new();
        match input {
            AllocatorInput::Start => {
                self.arm(&mut out, Timer::Interval, self.config.interval);
            }
            AllocatorInput::Timer(id) => match self.timers.fire(id) {
                Some(Timer::Interval) => {
                    self.arm(&mut out, Timer::Interval, self.config.interval);
                    self.run(now, &mut out);
                }
                Some(Timer::Soon) => {
                    self.soon = None;
                    self.run(now, &mut out);
                }
                None => {}
            },
            AllocatorInput::Call(call) => self.call(now, call, &mut out),
        }
        out
    }

    fn arm(&mut self, out: &mut Vec<AllocatorEffect>, kind: Timer, after: Duration) -> TimerId {
        let id = self.timers.set(kind);
        out.push(AllocatorEffect::SetTimer(SetTimer { id, after }));
        id
    }

    /// Asks for a run soon, once per burst of events.
    fn soon(&mut self, out: &mut Vec<AllocatorEffect>) {
        if self.soon.is_none() {
            self.soon = Some(self.arm(out, Timer::Soon, self.config.batch_delay));
        }
    }

    fn run(&mut self, now: f64, out: &mut Vec<AllocatorEffect>) {
        let mut order = self.core.agent_ids();
        self.rng.shuffle(&mut order);
        let allocations = self.core.allocate(now, &order);
        self.allocation_runs += 1;
        out.push(AllocatorEffect::Ran);
        if !allocations.is_empty() {
            out.push(AllocatorEffect::ToMaster(AllocatorEvent::Allocated(Allocated { allocations })));
        }
    }

    fn call(&mut self, now: f64, call: AllocatorCall, out: &mut Vec<AllocatorEffect>) {
        match call {
            AllocatorCall::AddFramework(m) => {
                self.core.add_framework(m.framework_id, m.roles, &m.used, m.active);
                self.soon(out);
            }
            AllocatorCall::RemoveFramework(m) => self.core.remove_framework(&m.framework_id),
            AllocatorCall::SetFrameworkActive(m) => {
                self.core.set_framework_active(&m.framework_id, m.active);
                if m.active {
                    self.soon(out);
                }
            }
            AllocatorCall::AddAgent(m) => {
                self.core.add_agent(m.agent_id, m.total, &m.used);
                self.soon(out);
            }
            AllocatorCall::RemoveAgent(m) => self.core.remove_agent(&m.agent_id),
            AllocatorCall::SetAgentActive(m) => {
                self.core.set_agent_active(&m.agent_id, m.active);
                if m.active {
                    self.soon(out);
                }
            }
            AllocatorCall::RecoverResources(m) => {
                // A filter lasts at least one allocation interval (Mesos); refusals
                // are bounded by the protocol's longest duration.
                let interval = self.config.interval.as_secs_f64();
                let until = m
                    .refuse_seconds
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(|s| now + s.clamp(interval, keel_proto::time::MAX_DURATION.as_secs_f64()));
                match &m.role {
                    Some(role) => {
                        self.core.recover_in_role(&m.framework_id, &m.agent_id, role, &m.resources, until)
                    }
                    None => self.core.recover(&m.framework_id, &m.agent_id, &m.resources, until),
                }
                self.soon(out);
            }
            AllocatorCall::Revive(m) => {
                self.core.revive_roles(&m.framework_id, &m.roles);
                self.soon(out);
            }
            AllocatorCall::Suppress(m) => self.core.suppress_roles(&m.framework_id, &m.roles),
            AllocatorCall::UpdateAllocation(m) => {
                if !self.core.update_allocation(&m.framework_id, &m.agent_id, &m.from, &m.to) {
                    tracing::warn!(framework_id = %m.framework_id, agent_id = %m.agent_id, "allocation update refused");
                }
            }
            AllocatorCall::UpdateAvailable(m) => {
                let updated = self.core.update_available(&m.agent_id, &m.from, &m.to);
                out.push(AllocatorEffect::ToMaster(AllocatorEvent::AvailableUpdated(AvailableUpdated {
                    request: m.request,
                    updated,
                })));
                self.soon(out);
            }
            AllocatorCall::SetWeights(m) => {
                for (role, weight) in m.weights {
                    if let Err(e) = self.core.set_weight(&role, weight) {
                        tracing::warn!(%role, weight, error = %e, "weight not applied");
                    }
                }
                self.soon(out);
            }
            AllocatorCall::SetQuota(m) => {
                let quota = Quota { guarantee: m.guarantee, limit: m.limit };
                if let Err(e) = self.core.set_quota(&m.role, quota) {
                    tracing::warn!(role = %m.role, error = %e, "quota not applied");
                    return;
                }
                let over = self.core.over_limit();
                if !over.is_empty() {
                    out.push(AllocatorEffect::ToMaster(AllocatorEvent::OverLimit(OverLimit {
                        allocations: over,
                    })));
                }
                self.soon(out);
            }
            AllocatorCall::RemoveQuota(m) => {
                self.core.remove_quota(&m.role);
                self.soon(out);
            }
        }
    }
}
