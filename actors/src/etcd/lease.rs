//! A leader's lease, kept alive in the background: the deadline a leadership is
//! valid until (two thirds of the TTL after the last acknowledged keep-alive was
//! sent), the keep-alive task, the leader key watch, and the best-effort revoke
//! when a candidacy or leadership is dropped. Used by [`super::election`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{EventType, LeaseKeepAliveStream, LeaseKeeper, WatchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::election::{Fence, LostReason};
use super::{request, retrying, Backoff, EtcdClient, EtcdError};

/// What the keep-alive task, the key watcher and the [`Leadership`](super::Leadership) share.
#[derive(Debug)]
pub(super) struct LeaseState {
    pub(super) id: i64,
    pub(super) ttl: Duration,
    /// The last acknowledged keep-alive's send time plus 2/3 of the TTL.
    valid_until: Mutex<Instant>,
    /// The first loss reported; never cleared.
    pub(super) lost: watch::Sender<Option<LostReason>>,
}

impl LeaseState {
    pub(super) fn new(id: i64, ttl: Duration, granted_sent_at: Instant) -> LeaseState {
        let (lost, _) = watch::channel(None);
        LeaseState { id, ttl, valid_until: Mutex::new(granted_sent_at + grace(ttl)), lost }
    }

    pub(super) fn valid_until(&self) -> Instant {
        *self.valid_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A keep-alive sent at `sent_at` was acknowledged.
    pub(super) fn renewed(&self, sent_at: Instant) {
        let mut until = self.valid_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *until = (*until).max(sent_at + grace(self.ttl));
    }

    /// Records the first loss; later ones are ignored.
    pub(super) fn lose(&self, reason: LostReason) {
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
    pub(super) fn check_deadline(&self) -> Option<LostReason> {
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

pub(super) fn lost_future(lease: Arc<LeaseState>) -> impl Future<Output = LostReason> + Send + 'static {
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
pub(super) struct LeaseTasks {
    etcd: EtcdClient,
    lease: i64,
    pub(super) request_timeout: Duration,
    pub(super) keeper: Option<JoinHandle<()>>,
    pub(super) watcher: Option<JoinHandle<()>>,
    /// Set once the lease is revoked: dropping need not revoke it again.
    pub(super) revoked: bool,
}

impl LeaseTasks {
    pub(super) fn new(etcd: EtcdClient, lease: i64, request_timeout: Duration) -> LeaseTasks {
        LeaseTasks { etcd, lease, request_timeout, keeper: None, watcher: None, revoked: false }
    }

    pub(super) fn stop(&mut self) {
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
        let etcd = self.etcd.clone();
        let (lease, limit) = (self.lease, self.request_timeout);
        runtime.spawn(async move {
            let revoke = |mut client: etcd_client::Client| async move { client.lease_revoke(lease).await };
            match retrying(&etcd, limit, "lease revoke", &mut false, revoke).await {
                Ok(_) => tracing::debug!(lease = %format_args!("{lease:x}"), "lease revoked"),
                Err(error) => {
                    tracing::debug!(lease = %format_args!("{lease:x}"), error = %error, "lease not revoked")
                }
            }
        });
    }
}

/// Whether an error says the lease no longer exists.
pub(super) fn lease_not_found(error: &EtcdError) -> bool {
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
/// keep-alive unanswered for TTL/6 (a member that stopped answering without
/// closing the connection) or a broken stream is abandoned, and a new stream
/// opened after a short backoff, until the deadline passes. An abandoned stream's
/// late answers are never read, so none is taken for a later keep-alive's.
pub(super) async fn keep_alive(etcd: EtcdClient, lease: Arc<LeaseState>) {
    let interval = lease.ttl / 3;
    let attempt_limit = (lease.ttl / 6).max(Duration::from_millis(200));
    let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    // The member the stream is (or is being) opened on.
    let mut member = etcd.preferred();
    let mut retry = Backoff::new(interval.max(Duration::from_millis(100)));
    loop {
        if lease.check_deadline().is_some() {
            return;
        }
        let deadline = lease.valid_until();
        let sent_at = Instant::now();
        let attempt_deadline = (sent_at + attempt_limit).min(deadline);
        let renewal =
            tokio::time::timeout_at(attempt_deadline, renew(&etcd, lease.id, &mut stream, &mut member))
                .await
                .unwrap_or_else(|_| {
                    Renewal::Failed(EtcdError::Timeout {
                        operation: "lease keep-alive",
                        after: attempt_limit,
                    })
                });
        match renewal {
            Renewal::Renewed => {
                lease.renewed(sent_at);
                retry.reset();
                tokio::time::sleep_until(sent_at + interval).await;
            }
            Renewal::Expired => {
                lease.lose(LostReason::Expired);
                return;
            }
            Renewal::Failed(error) => {
                stream = None;
                etcd.failed(member);
                let delay = retry.next_delay();
                tracing::warn!(
                    lease = %format_args!("{:x}", lease.id),
                    endpoint = %etcd.endpoint(member),
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
    etcd: &EtcdClient,
    id: i64,
    stream: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    member: &mut usize,
) -> Renewal {
    let failed = |source| {
        Renewal::Failed(EtcdError::Request { operation: "lease keep-alive", source: Box::new(source) })
    };
    let Some((keeper, responses)) = stream else {
        let (index, client) = etcd.pick();
        *member = index;
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
pub(super) async fn watch_key(etcd: EtcdClient, fence: Fence, lease: Arc<LeaseState>) {
    let mut backoff = Backoff::new(lease.ttl.max(Duration::from_millis(200)));
    loop {
        let (member, client) = etcd.pick();
        match watch_key_once(&client, &fence, &lease).await {
            Ok(()) => return,
            Err(error) => {
                etcd.failed(member);
                let delay = backoff.next_delay();
                tracing::debug!(error = %error, retry_in_ms = delay.as_millis() as u64, "leader key watch failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Returns `Ok` once the key is gone (and the loss reported).
async fn watch_key_once(
    client: &etcd_client::Client,
    fence: &Fence,
    lease: &LeaseState,
) -> Result<(), EtcdError> {
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
