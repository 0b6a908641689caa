//! Choosing the containerizer: cgroups where they are usable and writable, else POSIX.

use std::sync::Arc;

use crate::cgroups::{CgroupsConfig, CgroupsContainerizer};
use crate::error::IsolationError;
use crate::posix::PosixContainerizer;
use crate::Containerizer;

/// The environment variable that forces the POSIX containerizer when set to `posix`.
pub const ISOLATION_ENV: &str = "KEEL_ISOLATION";

/// The best containerizer for this machine and why it was chosen, for the agent's
/// start-up log: [`CgroupsContainerizer`] when cgroups are usable and writable (it
/// creates its root cgroup to check), else [`PosixContainerizer`] with the reason
/// ("cgroups not writable: ..."). `KEEL_ISOLATION=posix` forces POSIX. Either way
/// `config.state_dir`, if set, is where waiters record exit statuses.
pub fn best_available(config: CgroupsConfig) -> (Arc<dyn Containerizer>, String) {
    let state_dir = config.state_dir.clone();
    let posix = || -> Arc<dyn Containerizer> {
        Arc::new(match &state_dir {
            Some(dir) => PosixContainerizer::with_state_dir(dir),
            None => PosixContainerizer::new(),
        })
    };
    let forced = std::env::var(ISOLATION_ENV).unwrap_or_default();
    if forced == "posix" {
        return (posix(), format!("{ISOLATION_ENV}=posix"));
    }
    let note = match forced.as_str() {
        "" | "cgroups" => String::new(),
        other => format!(" ({ISOLATION_ENV}={other:?} ignored: only \"posix\" is recognised)"),
    };
    match CgroupsContainerizer::new(config) {
        Ok(cgroups) => {
            let why = format!("cgroups are writable: {}{note}", cgroups.isolation());
            (Arc::new(cgroups), why)
        }
        Err(IsolationError::CgroupsUnavailable { reason }) => {
            (posix(), format!("cgroups not writable: {reason}{note}"))
        }
        Err(error) => (posix(), format!("cgroups not writable: {error}{note}")),
    }
}
