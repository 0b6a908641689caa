//! Leader election on etcd's election API, bound to a lease the candidate keeps
//! alive, and how a leader learns, at once, that it may no longer lead.
//!
//! ```text
//! campaign: grant lease (TTL) -> keep it alive -> Campaign (no timeout) -> verify key
//!              ^                                    | error, lease lost, or the
//!              |                                    | keep-alive gave up on the
//!              |                                    | campaign's etcd member
//!              +---- revoke lease, back off --------+
//! leading:  every TTL/3 a keep-alive (abandoned after TTL/6 without an answer,
//!           and retried on a new stream); lost when
//!             - no keep-alive was acknowledged for 2/3 of the TTL (monotonic clock),
//!             - etcd answers that the lease is gone (TTL <= 0, "lease not found"),
//!             - the leader key is deleted,
//!             - resign() is called.
//! ```
//!
//! The 2/3 deadline counts from when the acknowledged keep-alive was *sent*: etcd
//! renewed the lease no earlier than that, so the lease outlives the deadline by at
//! least a third of the TTL. A process stopped (SIGSTOP) past its deadline sees the
//! loss as soon as it runs again: [`Leadership::is_held`] compares the deadline with
//! the clock, and [`Leadership::lost`] sleeps until the deadline itself rather than
//! trusting the keep-alive task to be scheduled first.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::ResignOptions;
use keel_proto::registry::Term;
use tokio::time::Instant;

use super::lease::{keep_alive, lease_not_found, lost_future, watch_key, LeaseState, LeaseTasks};
use super::{connect, request, retrying, Backoff, EtcdClient, EtcdConfig, EtcdError};

/// Why a leadership ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// No keep-alive was acknowledged for two thirds of the TTL.
    NotRenewed {
        /// How long since the last acknowledged keep-alive was sent.
        silent_for: Duration,
    },
    /// etcd says the lease has expired or was revoked.
    Expired,
    /// The leader key was deleted (or recreated by someone else).
    KeyDeleted,
    /// [`Leadership::resign`] was called.
    Resigned,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LostReason::NotRenewed { silent_for } => {
                write!(f, "no keep-alive acknowledged for {} ms", silent_for.as_millis())
            }
            LostReason::Expired => write!(f, "the lease expired"),
            LostReason::KeyDeleted => write!(f, "the leader key was deleted"),
            LostReason::Resigned => write!(f, "resigned"),
        }
    }
}

/// What fences a leader's writes: its key in the election and that key's create
/// revision (the epoch). A write guarded by `create_revision(key) == epoch` fails
/// once the key is gone, even if the same process campaigns again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The leader key, `/keel/<cluster>/leader/<lease id>`.
    pub key: Vec<u8>,
    /// The key's create revision.
    pub epoch: u64,
}

/// Won leadership. Dropping it stops the keep-alive and revokes the lease (best
/// effort); [`Leadership::resign`] does the same and waits for it.
pub struct Leadership {
    fence: Fence,
    name: Vec<u8>,
    value: String,
    etcd: EtcdClient,
    lease: Arc<LeaseState>,
    tasks: LeaseTasks,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("epoch", &self.fence.epoch)
            .field("key", &String::from_utf8_lossy(&self.fence.key))
            .field("lease", &format_args!("{:x}", self.lease.id))
            .field("value", &self.value)
            .field("lost", &*self.lease.lost.borrow())
            .finish()
    }
}

impl Leadership {
    /// The epoch: the leader key's create revision. Higher epochs are later leaders.
    pub fn epoch(&self) -> u64 {
        self.fence.epoch
    }

    /// The epoch as a registry term.
    pub fn term(&self) -> Term {
        Term(self.fence.epoch)
    }

    /// The leader key.
    pub fn key(&self) -> &[u8] {
        &self.fence.key
    }

    /// The key and epoch that fence this leader's writes.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// The lease id.
    pub fn lease(&self) -> i64 {
        self.lease.id
    }

    /// The value published as leader (the master's UPID).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The lease TTL in effect (the configured one, or less if etcd granted less).
    pub fn ttl(&self) -> Duration {
        self.lease.ttl
    }

    /// The etcd clients this leadership was won with (for the registry).
    pub fn client(&self) -> EtcdClient {
        self.etcd.clone()
    }

    /// Whether this process may still act as leader: nothing reported a loss and the
    /// last acknowledged keep-alive is recent enough, by the clock, now.
    pub fn is_held(&self) -> bool {
        self.lease.lost.borrow().is_none() && Instant::now() < self.lease.valid_until()
    }

    /// Why the leadership was lost, if it was (by a report or by the clock).
    pub fn lost_reason(&self) -> Option<LostReason> {
        self.lease.check_deadline();
        self.lease.lost.borrow().clone()
    }

    /// Resolves when the leadership is lost. It watches the deadline itself, so it
    /// fires even if the keep-alive task never runs again.
    pub fn lost(&self) -> impl Future<Output = LostReason> + Send + 'static {
        lost_future(self.lease.clone())
    }

    /// Steps down: stops the keep-alive, resigns (deletes the leader key, so the next
    /// candidate is elected at once) and revokes the lease.
    pub async fn resign(mut self) -> Result<(), EtcdError> {
        self.lease.lose(LostReason::Resigned);
        self.tasks.stop();
        let leader = etcd_client::LeaderKey::new()
            .with_name(self.name.clone())
            .with_key(self.fence.key.clone())
            .with_rev(self.fence.epoch as i64)
            .with_lease(self.lease.id);
        let limit = self.tasks.request_timeout;
        let resign = ResignOptions::new().with_leader(leader);
        let resigned = retrying(&self.etcd, limit, "resign", &mut false, |mut client| {
            let resign = resign.clone();
            async move { client.resign(Some(resign)).await }
        })
        .await;
        let lease = self.lease.id;
        let revoked = retrying(&self.etcd, limit, "lease revoke", &mut false, |mut client| async move {
            client.lease_revoke(lease).await
        })
        .await;
        self.tasks.revoked = revoked.is_ok();
        tracing::info!(epoch = self.fence.epoch, lease = %format_args!("{:x}", self.lease.id), "resigned");
        resigned?;
        match revoked {
            Ok(_) => Ok(()),
            Err(e) if lease_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Campaigns until elected: grants a lease of `config.lease_ttl`, keeps it alive,
/// and waits in etcd's election under `/keel/<cluster>/leader` with `value` as the
/// candidate's value. The campaign itself has no time limit (it waits while another
/// candidate leads); on any error, or if the lease is lost while waiting, the lease
/// is revoked and the campaign starts again with a fresh lease and connection,
/// after a capped backoff. It returns an error only for an invalid configuration,
/// or when [`connect`] gives up ([`EtcdConfig::connect_give_up_after`]).
/// Dropping the future withdraws the candidacy (the lease is revoked).
pub async fn campaign(config: &EtcdConfig, value: String) -> Result<Leadership, EtcdError> {
    config.validate()?;
    let mut backoff = Backoff::new(config.max_backoff);
    loop {
        let etcd = connect(config).await?;
        match campaign_once(config, etcd, &value).await {
            Ok(leadership) => {
                tracing::info!(
                    cluster = %config.cluster,
                    epoch = leadership.epoch(),
                    lease = %format_args!("{:x}", leadership.lease()),
                    value = %value,
                    "elected leader"
                );
                return Ok(leadership);
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    cluster = %config.cluster,
                    endpoints = %config.endpoints.join(","),
                    retry_in_ms = delay.as_millis() as u64,
                    error = %error,
                    "campaign failed, campaigning again with a fresh lease"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One campaign with one lease. On error, the lease is revoked when `tasks` drops.
async fn campaign_once(config: &EtcdConfig, etcd: EtcdClient, value: &str) -> Result<Leadership, EtcdError> {
    let (member, client) = etcd.pick();
    let mut granting = client.clone();
    let sent_at = Instant::now();
    let grant =
        request(config.request_timeout, "lease grant", granting.lease_grant(config.lease_ttl_secs(), None))
            .await?;
    let granted = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0));
    if granted.is_zero() {
        return Err(EtcdError::Election(format!(
            "etcd granted lease {:x} a TTL of {}",
            grant.id(),
            grant.ttl()
        )));
    }
    let ttl = config.lease_ttl.min(granted);
    let lease = Arc::new(LeaseState::new(grant.id(), ttl, sent_at));
    let mut tasks = LeaseTasks::new(etcd.clone(), lease.id, config.request_timeout);
    tasks.keeper = Some(tokio::spawn(keep_alive(etcd.clone(), lease.clone())));
    tracing::debug!(lease = %format_args!("{:x}", lease.id), ttl_secs = ttl.as_secs(), "campaigning");

    let name = config.election_name().into_bytes();
    let mut election = client.clone();
    let lost = lost_future(lease.clone());
    let response = tokio::select! {
        response = election.campaign(name.clone(), value.to_string(), lease.id) => {
            response.map_err(|source| {
                etcd.failed(member);
                EtcdError::Request { operation: "campaign", source: Box::new(source) }
            })?
        }
        reason = lost => {
            return Err(EtcdError::Election(format!("lease lost while campaigning: {reason}")));
        }
        // The keep-alive gave up on the member the campaign waits on: that member
        // may never answer, and the campaign has no time limit.
        () = preference_moves(&etcd, member) => {
            return Err(EtcdError::Election(format!(
                "etcd member {} stopped answering during the campaign",
                config.endpoints[member]
            )));
        }
    };
    let Some(leader) = response.leader() else {
        return Err(EtcdError::Election("the campaign answered without a leader key".to_string()));
    };
    let fence = Fence { key: leader.key().to_vec(), epoch: u64::try_from(leader.rev()).unwrap_or(0) };
    if fence.epoch == 0 || leader.lease() != lease.id {
        return Err(EtcdError::Election(format!(
            "the campaign answered key {} at revision {} with lease {:x}, not ours ({:x})",
            String::from_utf8_lossy(&fence.key),
            leader.rev(),
            leader.lease(),
            lease.id
        )));
    }

    // etcd can answer a campaign whose key expired while it waited: check the key.
    let current = retrying(&etcd, config.request_timeout, "get", &mut false, |mut client| {
        let key = fence.key.clone();
        async move { client.get(key, None).await }
    })
    .await?;
    match current.kvs().first() {
        Some(kv) if kv.create_revision() == leader.rev() && kv.lease() == lease.id => {}
        _ => {
            return Err(EtcdError::Election(format!(
                "elected, but leader key {} is already gone",
                String::from_utf8_lossy(&fence.key)
            )))
        }
    }
    tasks.watcher = Some(tokio::spawn(watch_key(etcd.clone(), fence.clone(), lease.clone())));
    Ok(Leadership { fence, name, value: value.to_string(), etcd, lease, tasks })
}

/// Resolves when `etcd` no longer prefers `member` (a request there failed).
async fn preference_moves(etcd: &EtcdClient, member: usize) {
    while etcd.preferred() == member {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
