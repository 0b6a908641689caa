//! Leader election on etcd's election API, bound to a lease the candidate keeps
//! alive, and how a leader learns, at once, that it may no longer lead.
//!
//! ```text
//! campaign: grant lease (TTL) -> keep it alive -> Campaign (no timeout) -> verify key
//!              ^                                    | error, or lease lost
//!              +---- revoke lease, back off --------+
//! leading:  every TTL/3 a keep-alive; lost when
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, EventType, LeaseKeepAliveStream, LeaseKeeper, ResignOptions, WatchOptions};
use keel_proto::registry::Term;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{connect, request, Backoff, EtcdConfig, EtcdError};

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
    client: Client,
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

    /// The etcd client this leadership was won with (for the registry).
    pub fn client(&self) -> Client {
        self.client.clone()
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
        let mut client = self.client.clone();
        let limit = self.tasks.request_timeout;
        let resigned =
            request(limit, "resign", client.resign(Some(ResignOptions::new().with_leader(leader)))).await;
        let revoked = request(limit, "lease revoke", client.lease_revoke(self.lease.id)).await;
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
        let client = connect(config).await?;
        match campaign_once(config, client, &value).await {
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
async fn campaign_once(config: &EtcdConfig, client: Client, value: &str) -> Result<Leadership, EtcdError> {
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
    let mut tasks = LeaseTasks::new(client.clone(), lease.id, config.request_timeout);
    tasks.keeper = Some(tokio::spawn(keep_alive(client.clone(), lease.clone())));
    tracing::debug!(lease = %format_args!("{:x}", lease.id), ttl_secs = ttl.as_secs(), "campaigning");

    let name = config.election_name().into_bytes();
    let mut election = client.clone();
    let lost = lost_future(lease.clone());
    let response = tokio::select! {
        response = election.campaign(name.clone(), value.to_string(), lease.id) => {
            response.map_err(|source| EtcdError::Request { operation: "campaign", source: Box::new(source) })?
        }
        reason = lost => {
            return Err(EtcdError::Election(format!("lease lost while campaigning: {reason}")));
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
    let mut reading = client.clone();
    let current = request(config.request_timeout, "get", reading.get(fence.key.clone(), None)).await?;
    match current.kvs().first() {
        Some(kv) if kv.create_revision() == leader.rev() && kv.lease() == lease.id => {}
        _ => {
            return Err(EtcdError::Election(format!(
                "elected, but leader key {} is already gone",
                String::from_utf8_lossy(&fence.key)
            )))
        }
    }
    tasks.watcher = Some(tokio::spawn(watch_key(client.clone(), fence.clone(), lease.clone())));
    Ok(Leadership { fence, name, value: value.to_string(), client, lease, tasks })
}

/// What the keep-alive task, the key watcher and the [`Leadership`] share.
#[derive(Debug)]
struct LeaseState {
    id: i64,
    ttl: Duration,
    /// The last acknowledged keep-alive's send time plus 2/3 of the TTL.
    valid_until: Mutex<Instant>,
    /// The first loss reported; never cleared.
    lost: watch::Sender<Option<LostReason>>,
}

impl LeaseState {
    fn new(id: i64, ttl: Duration, granted_sent_at: Instant) -> LeaseState {
        let (lost, _) = watch::channel(None);
        LeaseState { id, ttl, valid_until: Mutex::new(granted_sent_at + grace(ttl)), lost }
    }

    fn valid_until(&self) -> Instant {
        *self.valid_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A keep-alive sent at `sent_at` was acknowledged.
    fn renewed(&self, sent_at: Instant) {
        let mut until = self.valid_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *until = (*until).max(sent_at + grace(self.ttl));
    }

    /// Records the first loss; later ones are ignored.
    fn lose(&self, reason: LostReason) {
        let recorded = self.lost.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason.clone());
                true
            } else {
                false
            }
        });
        if recorded && reason != LostReason::Resigned {
            tracing::warn!(lease = %format_args!("{:x}", self.id), reason = %reason, "leadership lost");
        }
    }

    /// Reports the loss if the deadline has passed; returns the loss, if any.
    fn check_deadline(&self) -> Option<LostReason> {
        let until = self.valid_until();
        let now = Instant::now();
        if now >= until {
            let silent_for = now.saturating_duration_since(until) + grace(self.ttl);
            self.lose(LostReason::NotRenewed { silent_for });
        }
        self.lost.borrow().clone()
    }
}

/// Two thirds of the TTL: how long a leader may go without an acknowledged renewal.
fn grace(ttl: Duration) -> Duration {
    ttl * 2 / 3
}

fn lost_future(lease: Arc<LeaseState>) -> impl Future<Output = LostReason> + Send + 'static {
    let mut reports = lease.lost.subscribe();
    async move {
        loop {
            if let Some(reason) = lease.check_deadline() {
                return reason;
            }
            let deadline = lease.valid_until();
            tokio::select! {
                _ = reports.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// The background tasks of one lease. Dropping it stops them and, unless the lease
/// was revoked already, revokes it in the background (best effort).
struct LeaseTasks {
    client: Client,
    lease: i64,
    request_timeout: Duration,
    keeper: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    revoked: bool,
}

impl LeaseTasks {
    fn new(client: Client, lease: i64, request_timeout: Duration) -> LeaseTasks {
        LeaseTasks { client, lease, request_timeout, keeper: None, watcher: None, revoked: false }
    }

    fn stop(&mut self) {
        for task in [self.keeper.take(), self.watcher.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

impl Drop for LeaseTasks {
    fn drop(&mut self) {
        self.stop();
        if self.revoked {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut client = self.client.clone();
        let (lease, limit) = (self.lease, self.request_timeout);
        runtime.spawn(async move {
            match request(limit, "lease revoke", client.lease_revoke(lease)).await {
                Ok(_) => tracing::debug!(lease = %format_args!("{lease:x}"), "lease revoked"),
                Err(error) => {
                    tracing::debug!(lease = %format_args!("{lease:x}"), error = %error, "lease not revoked")
                }
            }
        });
    }
}

/// Whether an error says the lease no longer exists.
fn lease_not_found(error: &EtcdError) -> bool {
    match error {
        EtcdError::Request { source, .. } => source.to_string().contains("lease not found"),
        _ => false,
    }
}

/// The outcome of one keep-alive round trip.
enum Renewal {
    Renewed,
    Expired,
    Failed(EtcdError),
}

/// Keeps the lease alive every TTL/3 until it is lost: one keep-alive in flight at
/// a time, each acknowledgement extending the deadline from when it was sent. A
/// broken stream is reopened (after a short backoff) until the deadline passes.
async fn keep_alive(client: Client, lease: Arc<LeaseState>) {
    let interval = lease.ttl / 3;
    let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    let mut retry = Backoff::new(interval.max(Duration::from_millis(100)));
    loop {
        if lease.check_deadline().is_some() {
            return;
        }
        let deadline = lease.valid_until();
        let sent_at = Instant::now();
        let renewal = tokio::time::timeout_at(deadline, renew(&client, lease.id, &mut stream)).await;
        match renewal {
            Err(_elapsed) => {
                lease.check_deadline();
                return;
            }
            Ok(Renewal::Renewed) => {
                lease.renewed(sent_at);
                retry.reset();
                tokio::time::sleep_until(sent_at + interval).await;
            }
            Ok(Renewal::Expired) => {
                lease.lose(LostReason::Expired);
                return;
            }
            Ok(Renewal::Failed(error)) => {
                stream = None;
                let delay = retry.next_delay();
                tracing::warn!(
                    lease = %format_args!("{:x}", lease.id),
                    retry_in_ms = delay.as_millis() as u64,
                    error = %error,
                    "lease keep-alive failed"
                );
                tokio::time::sleep_until((Instant::now() + delay).min(deadline)).await;
            }
        }
    }
}

/// One keep-alive: on the open stream, or by opening one (which sends the first).
async fn renew(
    client: &Client,
    id: i64,
    stream: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Renewal {
    let failed = |source| {
        Renewal::Failed(EtcdError::Request { operation: "lease keep-alive", source: Box::new(source) })
    };
    let Some((keeper, responses)) = stream else {
        let mut leases = client.lease_client();
        return match leases.keep_alive(id).await {
            Ok(opened) => {
                *stream = Some(opened);
                Renewal::Renewed
            }
            Err(error) if error.to_string().contains("lease not found") => Renewal::Expired,
            Err(error) => failed(error),
        };
    };
    if let Err(error) = keeper.keep_alive().await {
        return failed(error);
    }
    match responses.message().await {
        Ok(Some(response)) if response.ttl() > 0 => Renewal::Renewed,
        Ok(Some(_)) => Renewal::Expired,
        Ok(None) => {
            failed(etcd_client::Error::LeaseKeepAliveError("the keep-alive stream ended".to_string()))
        }
        Err(error) if error.to_string().contains("lease not found") => Renewal::Expired,
        Err(error) => failed(error),
    }
}

/// Reports [`LostReason::KeyDeleted`] when the leader key is deleted or replaced.
/// Errors only make it look again (after a backoff): the lease is what bounds how
/// long a leader may go unchecked.
async fn watch_key(client: Client, fence: Fence, lease: Arc<LeaseState>) {
    let mut backoff = Backoff::new(lease.ttl.max(Duration::from_millis(200)));
    loop {
        match watch_key_once(&client, &fence, &lease).await {
            Ok(()) => return,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::debug!(error = %error, retry_in_ms = delay.as_millis() as u64, "leader key watch failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Returns `Ok` once the key is gone (and the loss reported).
async fn watch_key_once(client: &Client, fence: &Fence, lease: &LeaseState) -> Result<(), EtcdError> {
    let limit = lease.ttl.max(Duration::from_secs(1));
    let mut reading = client.clone();
    let current = request(limit, "get", reading.get(fence.key.clone(), None)).await?;
    let held = current.kvs().first().is_some_and(|kv| kv.create_revision() as u64 == fence.epoch);
    if !held {
        lease.lose(LostReason::KeyDeleted);
        return Ok(());
    }
    let from = current.header().map(|h| h.revision()).unwrap_or(0) + 1;
    let mut watching = client.clone();
    let options = WatchOptions::new().with_start_revision(from);
    let (_watcher, mut events) =
        request(limit, "watch", watching.watch(fence.key.clone(), Some(options))).await?;
    loop {
        let response = events
            .message()
            .await
            .map_err(|source| EtcdError::Request { operation: "watch", source: Box::new(source) })?
            .ok_or_else(|| EtcdError::Election("the leader key watch ended".to_string()))?;
        if response.canceled() {
            return Err(EtcdError::Election(format!(
                "the leader key watch was canceled: {}",
                response.cancel_reason()
            )));
        }
        for event in response.events() {
            let replaced = event.kv().is_some_and(|kv| kv.create_revision() as u64 != fence.epoch);
            if event.event_type() == EventType::Delete || replaced {
                lease.lose(LostReason::KeyDeleted);
                return Ok(());
            }
        }
    }
}
