//! The master's counters and its `master/*` metrics snapshot (Mesos's keys). Every
//! value is computed from the state or counted where it happens.

use std::collections::BTreeMap;

use keel_proto::resources::Resources;

use super::{Master, Phase};

/// Counters the master exposes under `master/*`.
#[derive(Debug, Default, Clone)]
pub struct MasterMetrics {
    /// Messages dropped because they came from an unknown or wrong sender.
    pub invalid_senders: u64,
    /// Framework calls naming an unknown framework.
    pub unknown_framework_calls: u64,
    /// Status updates for unknown tasks or from unknown agents.
    pub invalid_status_updates: u64,
    /// Status updates forwarded to schedulers.
    pub status_updates_forwarded: u64,
    /// Acknowledgements for unknown updates or agents.
    pub invalid_acknowledgements: u64,
    /// Kills of unknown tasks.
    pub unknown_task_kills: u64,
    /// Inputs dropped while the master was not serving (recovering or aborted).
    pub dropped_while_not_serving: u64,
    /// Messages of kinds the master does not handle.
    pub unexpected_messages: u64,
    /// Tasks launched.
    pub tasks_launched: u64,
    /// Tasks refused at launch.
    pub tasks_refused: u64,
    /// Launches their agent never received (found by a launch check).
    pub launches_lost: u64,
    /// Tasks a registered agent ran that the master had not placed there.
    pub unknown_tasks_killed: u64,
    /// Reserve/unreserve operations refused.
    pub invalid_operations: u64,
    /// Terminal states reached, by state name.
    pub terminal: BTreeMap<&'static str, u64>,
    /// Offers sent.
    pub offers_sent: u64,
    /// Offers declined.
    pub offers_declined: u64,
    /// Offers rescinded.
    pub offers_rescinded: u64,
    /// Agents that became unreachable.
    pub agents_unreachable: u64,
    /// Agents marked gone.
    pub agents_gone: u64,
    /// Frameworks removed (teardown or failover timeout).
    pub frameworks_removed: u64,
    /// Registry writes that failed (each one aborts the master).
    pub registry_write_failures: u64,
    /// Copies of calls already handled, ignored.
    pub duplicate_calls: u64,
    /// Updates older than a final state the framework was told, acknowledged by
    /// the master instead of delivered.
    pub stale_updates_acknowledged: u64,
}

impl Master {
    /// The metrics snapshot at `now`, Mesos-style keys.
    pub fn metrics_snapshot(&self, now: f64) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: f64| {
            out.insert(k.to_string(), v);
        };
        let count = |n: usize| n as f64;
        put("master/elected", if self.phase == Phase::Serving { 1.0 } else { 0.0 });
        put("master/recovering", if self.phase == Phase::Recovering { 1.0 } else { 0.0 });
        put("master/uptime_secs", (now - self.started_secs).max(0.0));
        let agents = self.agents.values();
        put("master/slaves_active", count(agents.clone().filter(|a| a.active).count()));
        put("master/slaves_inactive", count(agents.clone().filter(|a| !a.active).count()));
        put("master/slaves_connected", count(agents.clone().filter(|a| a.connected).count()));
        put("master/slaves_disconnected", count(agents.clone().filter(|a| !a.connected).count()));
        put("master/slaves_unreachable", count(self.unreachable_agents.len()));
        put("master/slaves_recovered", count(self.recovered_agents.len()));
        put("master/slaves_gone", count(self.gone_agents.len()));
        let frameworks = self.frameworks.values();
        put("master/frameworks_active", count(frameworks.clone().filter(|f| f.active).count()));
        put("master/frameworks_inactive", count(frameworks.clone().filter(|f| !f.active).count()));
        put("master/frameworks_connected", count(frameworks.clone().filter(|f| f.connected).count()));
        put("master/frameworks_disconnected", count(frameworks.clone().filter(|f| !f.connected).count()));
        put("master/outstanding_offers", count(self.offers.len()));
        let mut by_state: BTreeMap<&'static str, u64> = BTreeMap::new();
        for framework in self.frameworks.values() {
            for task in framework.tasks.values() {
                *by_state.entry(task.state.name()).or_default() += 1;
            }
            *by_state.entry("TASK_UNREACHABLE").or_default() += framework.unreachable_tasks.len() as u64;
        }
        for state in ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_UNREACHABLE"] {
            let key = format!("master/tasks_{}", state.trim_start_matches("TASK_").to_lowercase());
            put(&key, *by_state.get(state).unwrap_or(&0) as f64);
        }
        for state in [
            "TASK_FINISHED",
            "TASK_FAILED",
            "TASK_KILLED",
            "TASK_LOST",
            "TASK_ERROR",
            "TASK_DROPPED",
            "TASK_GONE",
        ] {
            let key = format!("master/tasks_{}", state.trim_start_matches("TASK_").to_lowercase());
            put(&key, *self.metrics.terminal.get(state).unwrap_or(&0) as f64);
        }
        let m = &self.metrics;
        put("master/invalid_senders", m.invalid_senders as f64);
        put("master/invalid_framework_calls", m.unknown_framework_calls as f64);
        put("master/invalid_status_updates", m.invalid_status_updates as f64);
        put("master/valid_status_updates", m.status_updates_forwarded as f64);
        put("master/invalid_status_update_acknowledgements", m.invalid_acknowledgements as f64);
        put("master/invalid_kill_task", m.unknown_task_kills as f64);
        put("master/dropped_messages_while_not_serving", m.dropped_while_not_serving as f64);
        put("master/unexpected_messages", m.unexpected_messages as f64);
        put("master/tasks_launched", m.tasks_launched as f64);
        put("master/tasks_refused", m.tasks_refused as f64);
        put("master/launches_lost", m.launches_lost as f64);
        put("master/unknown_tasks_killed", m.unknown_tasks_killed as f64);
        put("master/invalid_operations", m.invalid_operations as f64);
        put("master/offers_sent", m.offers_sent as f64);
        put("master/offers_declined", m.offers_declined as f64);
        put("master/offers_rescinded", m.offers_rescinded as f64);
        put("master/slave_unreachable_completed", m.agents_unreachable as f64);
        put("master/slave_removals", m.agents_gone as f64);
        put("master/frameworks_removed", m.frameworks_removed as f64);
        put("master/registrar/write_failures", m.registry_write_failures as f64);
        put("master/duplicate_calls", m.duplicate_calls as f64);
        put("master/stale_updates_acknowledged", m.stale_updates_acknowledged as f64);
        put("master/registrar/queued_writes", count(self.writes.len()));
        let total: Resources = self.agents.values().map(|a| a.info.resources.clone()).sum();
        let used: Resources = self.agents.keys().map(|id| self.used_on(id)).sum();
        put("master/cpus_total", total.cpus());
        put("master/cpus_used", used.cpus());
        put("master/mem_total", total.mem_mb());
        put("master/mem_used", used.mem_mb());
        put("master/disk_total", total.disk_mb());
        put("master/disk_used", used.disk_mb());
        out
    }
}
