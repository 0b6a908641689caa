//! Where the master is: a fixed address (`HOST:PORT`, `master@HOST:PORT`) or an
//! election on etcd (`etcd://HOST:PORT[,HOST:PORT...]/CLUSTER`), observed so that
//! agents, scheduler drivers and CLI tools follow whoever leads. The cores take the
//! detector's view as `Input::MasterDetected`; this module turns the etcd observer's
//! published values into that view.

use std::time::Duration;

pub use keel_core::detector::DetectedMaster;
use keel_kernel::Upid;
use tokio::sync::watch;

use crate::etcd::{self, EtcdConfig};
use crate::shell::LeaderWatch;

/// Where a process finds its master.
#[derive(Debug, Clone, PartialEq)]
pub enum MasterAddress {
    /// One master at a fixed address.
    Fixed(Upid),
    /// Whoever leads the election of this cluster on etcd.
    Etcd(EtcdConfig),
}

impl std::str::FromStr for MasterAddress {
    type Err = anyhow::Error;

    /// `etcd://h1:2379,h2:2379/NAME`, or a fixed `HOST:PORT` / `master@HOST:PORT`.
    fn from_str(text: &str) -> anyhow::Result<MasterAddress> {
        let text = text.trim();
        if etcd::is_etcd_address(text) {
            return Ok(MasterAddress::Etcd(EtcdConfig::from_master_address(text)?));
        }
        Ok(MasterAddress::Fixed(crate::cli::master_upid(text)?))
    }
}

impl From<Upid> for MasterAddress {
    fn from(upid: Upid) -> MasterAddress {
        MasterAddress::Fixed(upid)
    }
}

impl std::fmt::Display for MasterAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterAddress::Fixed(upid) => write!(f, "{upid}"),
            MasterAddress::Etcd(config) => f.write_str(&config.address()),
        }
    }
}

impl MasterAddress {
    /// The master to start with and, for an election, the watch that follows it.
    /// Waits until a leader is known (logging while it waits), at most `wait` when
    /// given. Must be called within a tokio runtime (the observer runs on it).
    pub async fn resolve(&self, wait: Option<Duration>) -> anyhow::Result<(Upid, Option<LeaderWatch>)> {
        match self {
            MasterAddress::Fixed(upid) => Ok((upid.clone(), None)),
            MasterAddress::Etcd(config) => {
                let mut leader = watch_leader(config)?;
                let first = wait_for_leader(&mut leader, config, wait).await?;
                Ok((first.upid, Some(leader)))
            }
        }
    }

    /// The `host:port` of the master's HTTP API: the fixed one, or the current
    /// leader's (asked once, for CLI tools).
    pub async fn http_address(&self) -> anyhow::Result<String> {
        match self {
            MasterAddress::Fixed(upid) => Ok(upid.node().to_string()),
            MasterAddress::Etcd(config) => match etcd::current_leader(config).await? {
                Some(leader) => Ok(parse_leader(&leader.value)?.node().to_string()),
                None => anyhow::bail!("no master leads the cluster at {} yet", config.address()),
            },
        }
    }
}

/// The leader a published election value names.
fn parse_leader(value: &str) -> anyhow::Result<Upid> {
    value.parse().map_err(|e| anyhow::anyhow!("the elected master published {value:?}, not a UPID: {e}"))
}

/// Observes the election of `config` and publishes its leader as the cores want it.
/// A value that is not a UPID is logged and skipped. Must be called within a tokio
/// runtime; the observer stops when every receiver is dropped.
pub fn watch_leader(config: &EtcdConfig) -> anyhow::Result<LeaderWatch> {
    let mut observed = etcd::observe_leader(config)?;
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(async move {
        loop {
            let leader = observed.borrow_and_update().clone();
            let detected = match leader {
                None => None,
                Some(leader) => match parse_leader(&leader.value) {
                    Ok(upid) => Some(DetectedMaster { upid, epoch: leader.epoch }),
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring an elected value that names no master");
                        None
                    }
                },
            };
            if sender.send(detected).is_err() {
                return;
            }
            tokio::select! {
                changed = observed.changed() => if changed.is_err() { return },
                () = sender.closed() => return,
            }
        }
    });
    Ok(receiver)
}

/// Waits for the first leader on `leader`, logging every few seconds.
async fn wait_for_leader(
    leader: &mut LeaderWatch,
    config: &EtcdConfig,
    wait: Option<Duration>,
) -> anyhow::Result<DetectedMaster> {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(first) = leader.borrow_and_update().clone() {
            return Ok(first);
        }
        if let Some(wait) = wait {
            if started.elapsed() >= wait {
                anyhow::bail!("no master leads the cluster at {} after {wait:?}", config.address());
            }
        }
        let tick = tokio::time::sleep(Duration::from_secs(5));
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the election observer of {} stopped", config.address());
                }
            }
            () = tick => tracing::warn!(
                cluster = %config.address(),
                waited_secs = started.elapsed().as_secs(),
                "waiting for a leading master"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_fixed_or_etcd() {
        let fixed: MasterAddress = "127.0.0.1:5050".parse().unwrap();
        assert_eq!(fixed.to_string(), "master@127.0.0.1:5050");
        let etcd: MasterAddress = "etcd://127.0.0.1:2379,127.0.0.2:2379/prod".parse().unwrap();
        match &etcd {
            MasterAddress::Etcd(config) => {
                assert_eq!(config.endpoints.len(), 2);
                assert_eq!(config.cluster, "prod");
            }
            other => panic!("{other:?}"),
        }
        assert!("etcd://127.0.0.1:2379/".parse::<MasterAddress>().is_err(), "a cluster name is needed");
        assert!("not an address".parse::<MasterAddress>().is_err());
    }

    #[test]
    fn only_upids_are_leaders() {
        assert_eq!(parse_leader("master@10.0.0.1:5050").unwrap().to_string(), "master@10.0.0.1:5050");
        assert!(parse_leader("garbage").is_err());
    }
}
