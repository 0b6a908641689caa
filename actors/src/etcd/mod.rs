//! High availability on etcd: the configuration, the key layout and the error type
//! shared by the clients ([`client`]: one per endpoint, connecting with retries),
//! the election ([`election`]), leader observation ([`observe`]) and the etcd
//! registry ([`registry`]).
//!
//! Every key of a Keel cluster lives under `/keel/<cluster>/`:
//!
//! ```text
//! /keel/<cluster>/leader/<lease id, hex>     one per candidate (etcd's election API):
//!                                            the key with the lowest create revision
//!                                            is the leader; its value is the leader's
//!                                            UPID and its create revision the epoch
//! /keel/<cluster>/registry/format            the registry's format (JSON number, 1)
//! /keel/<cluster>/registry/version           bumped by every registry transaction
//! /keel/<cluster>/registry/agents/<id>       one JSON value per entity: admitted,
//! /keel/<cluster>/registry/unreachable/<id>  unreachable and gone agents, frameworks,
//! /keel/<cluster>/registry/gone/<id>         removed framework ids (the time they were
//! /keel/<cluster>/registry/frameworks/<id>   removed), role weights and role quotas
//! /keel/<cluster>/registry/removed_frameworks/<id>
//! /keel/<cluster>/registry/weights/<role>
//! /keel/<cluster>/registry/quotas/<role>
//! ```
//!
//! A master address naming etcd is `etcd://HOST:PORT[,HOST:PORT...]/CLUSTER`
//! ([`parse_master_address`]).

pub mod client;
pub mod election;
pub mod observe;
pub mod registry;

mod diff;
mod lease;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use client::{connect, connect_once, EtcdClient};
pub(crate) use client::{request, retrying, Backoff};
pub use election::{campaign, Fence, Leadership, LostReason};
pub use observe::{current_leader, observe_leader, Leader};
pub use registry::EtcdRegistry;

/// How an address names etcd: `etcd://HOST:PORT[,HOST:PORT...]/CLUSTER`.
pub const SCHEME: &str = "etcd://";

/// The longest cluster name accepted.
pub const MAX_CLUSTER_NAME_LEN: usize = 64;

/// etcd's default `--max-txn-ops`: the most operations one transaction may hold.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// How to reach etcd and which Keel cluster's keys to use.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdConfig {
    /// Client endpoints, `host:port` (or `http://host:port`).
    pub endpoints: Vec<String>,
    /// The Keel cluster's name: its keys live under `/keel/<cluster>/`.
    pub cluster: String,
    /// The leader's lease TTL, in whole seconds (at least 1). A leader renews it every
    /// third of it and stops serving when no renewal was acknowledged for two thirds.
    pub lease_ttl: Duration,
    /// The longest one connection attempt (TCP connect and a first read) may take.
    pub connect_timeout: Duration,
    /// The longest any request but the campaign may take (the campaign waits for as
    /// long as another candidate leads).
    pub request_timeout: Duration,
    /// Retries back off exponentially (from 100 ms, with jitter) up to this.
    pub max_backoff: Duration,
    /// [`connect`] gives up after this long; `None`: it retries until etcd answers.
    pub connect_give_up_after: Option<Duration>,
    /// The most operations one etcd transaction may hold (etcd's `--max-txn-ops`).
    pub max_txn_ops: usize,
}

impl EtcdConfig {
    /// A configuration with the defaults: a 2 s lease, 2 s connection attempts, 5 s
    /// requests, backoff up to 5 s, retries for ever, 128 operations per transaction.
    pub fn new(endpoints: Vec<String>, cluster: impl Into<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            cluster: cluster.into(),
            lease_ttl: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            connect_give_up_after: None,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
        }
    }

    /// The configuration for a master address `etcd://HOST:PORT[,...]/CLUSTER`.
    pub fn from_master_address(address: &str) -> Result<EtcdConfig, EtcdError> {
        let (endpoints, cluster) = parse_master_address(address)?;
        Ok(EtcdConfig::new(endpoints, cluster))
    }

    /// Checks the endpoints, the cluster name, the TTL and the limits.
    pub fn validate(&self) -> Result<(), EtcdError> {
        if self.endpoints.is_empty() {
            return Err(invalid("no etcd endpoints"));
        }
        for endpoint in &self.endpoints {
            validate_endpoint(endpoint)?;
        }
        validate_cluster_name(&self.cluster)?;
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl.subsec_nanos() != 0 {
            return Err(invalid(format!(
                "lease TTL {:?} is not a whole number of seconds >= 1",
                self.lease_ttl
            )));
        }
        if self.lease_ttl > Duration::from_secs(3600) {
            return Err(invalid(format!("lease TTL {:?} is above an hour", self.lease_ttl)));
        }
        for (name, value) in [
            ("connect timeout", self.connect_timeout),
            ("request timeout", self.request_timeout),
            ("max backoff", self.max_backoff),
        ] {
            if value.is_zero() {
                return Err(invalid(format!("the {name} is zero")));
            }
        }
        if self.max_txn_ops < 2 {
            return Err(invalid(format!("max_txn_ops {} leaves no room for a change", self.max_txn_ops)));
        }
        Ok(())
    }

    /// `/keel/<cluster>/`: every key of the cluster is below it.
    pub fn cluster_prefix(&self) -> String {
        format!("/keel/{}/", self.cluster)
    }

    /// `/keel/<cluster>/leader`: the election's name.
    pub fn election_name(&self) -> String {
        format!("/keel/{}/leader", self.cluster)
    }

    /// `/keel/<cluster>/leader/`: the prefix of the candidates' keys.
    pub fn election_prefix(&self) -> String {
        format!("{}/", self.election_name())
    }

    /// `/keel/<cluster>/registry/`: the registry's keys.
    pub fn registry_prefix(&self) -> String {
        format!("/keel/{}/registry/", self.cluster)
    }

    /// The address this configuration came from, `etcd://h1:2379,h2:2379/NAME`.
    pub fn address(&self) -> String {
        format!("{SCHEME}{}/{}", self.endpoints.join(","), self.cluster)
    }

    /// The lease TTL in etcd's unit (seconds).
    pub(crate) fn lease_ttl_secs(&self) -> i64 {
        i64::try_from(self.lease_ttl.as_secs()).unwrap_or(i64::MAX)
    }
}

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The configuration (or a `--master etcd://...` address) is invalid. Retrying
    /// cannot help.
    #[error("invalid etcd configuration: {0}")]
    InvalidConfig(String),
    /// No endpoint answered within [`EtcdConfig::connect_give_up_after`]. Retry later.
    #[error("cannot reach etcd at {endpoints} after {attempts} attempts: {last_error}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// How many connection attempts were made.
        attempts: u32,
        /// What the last attempt failed with.
        last_error: String,
    },
    /// etcd refused a request or the connection failed during it. Back off and retry.
    #[error("etcd {operation} failed: {source}")]
    Request {
        /// What was asked (`lease grant`, `campaign`, `get`...).
        operation: &'static str,
        /// The client's error (boxed: it is large).
        #[source]
        source: Box<etcd_client::Error>,
    },
    /// etcd did not answer in time. Back off and retry.
    #[error("etcd {operation} timed out after {after:?}")]
    Timeout {
        /// What was asked.
        operation: &'static str,
        /// The time limit.
        after: Duration,
    },
    /// The election answered something unexpected (a leader key that is already
    /// gone, the lease lost while campaigning). Retry with a fresh lease.
    #[error("election: {0}")]
    Election(String),
}

impl EtcdError {
    /// Whether the same request may succeed if retried after a backoff: transport
    /// failures, timeouts and etcd being unavailable (no leader, a member down) are;
    /// an invalid configuration or a request etcd refuses as malformed is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            EtcdError::InvalidConfig(_) => false,
            EtcdError::Unreachable { .. } | EtcdError::Timeout { .. } | EtcdError::Election(_) => true,
            EtcdError::Request { source, .. } => match source.as_ref() {
                // gRPC codes that say the request itself is wrong: InvalidArgument (3),
                // NotFound (5), AlreadyExists (6), PermissionDenied (7),
                // FailedPrecondition (9), OutOfRange (11), Unimplemented (12),
                // Unauthenticated (16). etcd answers "too many operations" and "request
                // too large" as InvalidArgument.
                etcd_client::Error::GRpcStatus(status) => {
                    !matches!(status.code() as i32, 3 | 5 | 6 | 7 | 9 | 11 | 12 | 16)
                }
                etcd_client::Error::InvalidArgs(_)
                | etcd_client::Error::InvalidUri(_)
                | etcd_client::Error::Utf8Error(_)
                | etcd_client::Error::InvalidHeaderValue(_) => false,
                _ => true,
            },
        }
    }
}

fn invalid(message: impl Into<String>) -> EtcdError {
    EtcdError::InvalidConfig(message.into())
}

/// Splits `etcd://h1:2379,h2:2379/NAME` into its endpoints and cluster name.
pub fn parse_master_address(address: &str) -> Result<(Vec<String>, String), EtcdError> {
    let Some(rest) = address.trim().strip_prefix(SCHEME) else {
        return Err(invalid(format!("{address:?} does not start with {SCHEME}")));
    };
    let Some((hosts, cluster)) = rest.split_once('/') else {
        return Err(invalid(format!(
            "{address:?} names no cluster (etcd://HOST:PORT[,HOST:PORT...]/CLUSTER)"
        )));
    };
    let endpoints: Vec<String> = hosts.split(',').map(|host| host.trim().to_string()).collect();
    for endpoint in &endpoints {
        validate_endpoint(endpoint).map_err(|e| invalid(format!("in {address:?}: {e}")))?;
    }
    validate_cluster_name(cluster).map_err(|e| invalid(format!("in {address:?}: {e}")))?;
    Ok((endpoints, cluster.to_string()))
}

/// Whether `address` names etcd (starts with `etcd://`).
pub fn is_etcd_address(address: &str) -> bool {
    address.trim().starts_with(SCHEME)
}

/// `host:port`, optionally after `http://`; the port a number from 1 to 65535.
fn validate_endpoint(endpoint: &str) -> Result<(), EtcdError> {
    let bare = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    let Some((host, port)) = bare.rsplit_once(':') else {
        return Err(invalid(format!("endpoint {endpoint:?} is not HOST:PORT")));
    };
    if host.is_empty() || host.contains(['/', ' ', ',', '@']) {
        return Err(invalid(format!("endpoint {endpoint:?} has no valid host")));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(invalid(format!("endpoint {endpoint:?} has no valid port"))),
    }
}

/// 1 to 64 characters of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
fn validate_cluster_name(cluster: &str) -> Result<(), EtcdError> {
    if cluster.is_empty() {
        return Err(invalid("the cluster name is empty"));
    }
    if cluster.len() > MAX_CLUSTER_NAME_LEN {
        return Err(invalid(format!("the cluster name is longer than {MAX_CLUSTER_NAME_LEN} characters")));
    }
    if cluster.starts_with(['.', '-']) {
        return Err(invalid(format!("the cluster name {cluster:?} starts with {:?}", &cluster[..1])));
    }
    if let Some(bad) = cluster.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "the cluster name {cluster:?} contains {bad:?} (allowed: A-Z a-z 0-9 . _ -)"
        )));
    }
    Ok(())
}

/// The end of the key range `[prefix, end)` holding every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or empty): every key from the prefix on.
    vec![0]
}
