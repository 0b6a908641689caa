//! Finding the leader: what agents, schedulers, standby masters and CLI tools use
//! to learn who leads a Keel cluster on etcd.
//!
//! The leader is the candidate key under `/keel/<cluster>/leader/` with the lowest
//! create revision, exactly what etcd's `Leader` and `Observe` RPCs compute. The
//! observer reads the candidates once and then watches the prefix, rather than
//! using `Observe`, because `Observe` never reports that the leader key was deleted:
//! watching the prefix tells "no leader" apart from "the same leader", so a standby
//! can answer 503 while nobody leads. It costs one range read and one watch, like
//! `Observe` (which etcd implements the same way, server-side).

use std::collections::BTreeMap;

use etcd_client::{Client, EventType, GetOptions, SortOrder, SortTarget, WatchOptions};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{connect, request, retrying, Backoff, EtcdClient, EtcdConfig, EtcdError};

/// A leader as published in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// What the leader published (a master's UPID, `master@IP:PORT`).
    pub value: String,
    /// Its epoch: its key's create revision.
    pub epoch: u64,
}

/// Watches the election in a background task and publishes the current leader,
/// `None` while nobody leads (or before etcd first answered). The epochs published
/// never decrease. On errors the task reconnects with capped backoff, keeping the
/// last value meanwhile (a member that stops answering is noticed within twice
/// [`EtcdConfig::request_timeout`]); it stops when every receiver is dropped. Must be called
/// within a tokio runtime.
pub fn observe_leader(config: &EtcdConfig) -> Result<watch::Receiver<Option<Leader>>, EtcdError> {
    config.validate()?;
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(observe(config.clone(), sender));
    Ok(receiver)
}

/// The current leader, once: connects (with [`connect`]'s retries) and reads the
/// candidate with the lowest create revision. For CLI tools.
pub async fn current_leader(config: &EtcdConfig) -> Result<Option<Leader>, EtcdError> {
    let etcd = connect(config).await?;
    leader_with(&etcd, config).await
}

/// The current leader, read through `etcd`.
pub async fn leader_with(etcd: &EtcdClient, config: &EtcdConfig) -> Result<Option<Leader>, EtcdError> {
    let options =
        GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend).with_limit(1);
    let response = retrying(etcd, config.request_timeout, "get", &mut false, |mut client| {
        let (prefix, options) = (config.election_prefix(), options.clone());
        async move { client.get(prefix, Some(options)).await }
    })
    .await?;
    Ok(response.kvs().first().map(|kv| Leader {
        value: String::from_utf8_lossy(kv.value()).into_owned(),
        epoch: kv.create_revision().max(0) as u64,
    }))
}

/// The observer task: one connection at a time, reconnecting after errors.
async fn observe(config: EtcdConfig, sender: watch::Sender<Option<Leader>>) {
    // A second sender only to notice, while the first is lent out, that every
    // receiver is gone.
    let closer = sender.clone();
    let mut published = Published { sender, highest_epoch: 0 };
    let mut backoff = Backoff::new(config.max_backoff);
    let etcd = match EtcdClient::lazy(&config).await {
        Ok(etcd) => etcd,
        Err(error) => {
            tracing::error!(cluster = %config.cluster, error = %error, "cannot observe the leader");
            return;
        }
    };
    loop {
        let outcome = tokio::select! {
            outcome = observe_once(&config, &etcd, &mut published, &mut backoff) => outcome,
            _ = closer.closed() => return,
        };
        let delay = backoff.next_delay();
        if let Err(error) = outcome {
            tracing::warn!(
                cluster = %config.cluster,
                endpoints = %config.endpoints.join(","),
                retry_in_ms = delay.as_millis() as u64,
                error = %error,
                "observing the leader failed, reconnecting"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closer.closed() => return,
        }
    }
}

/// Reads the candidates, publishes the leader, then follows the prefix's events.
/// Returns only on error.
async fn observe_once(
    config: &EtcdConfig,
    etcd: &EtcdClient,
    published: &mut Published,
    backoff: &mut Backoff,
) -> Result<(), EtcdError> {
    let prefix = config.election_prefix();
    let snapshot = retrying(etcd, config.request_timeout, "get", &mut false, |mut client| {
        let prefix = prefix.clone();
        async move { client.get(prefix, Some(GetOptions::new().with_prefix())).await }
    })
    .await?;
    let mut candidates: BTreeMap<Vec<u8>, (i64, String)> = snapshot
        .kvs()
        .iter()
        .map(|kv| {
            (kv.key().to_vec(), (kv.create_revision(), String::from_utf8_lossy(kv.value()).into_owned()))
        })
        .collect();
    let revision = snapshot.header().map(|h| h.revision()).unwrap_or(0);
    published.publish(&candidates);

    let (member, client) = etcd.pick();
    let following = follow(config, client, prefix, revision, &mut candidates, published, backoff).await;
    if following.is_err() {
        etcd.failed(member);
    }
    following
}

/// Watches the election prefix from `revision + 1`, publishing the leader after
/// every change. Returns only on error.
async fn follow(
    config: &EtcdConfig,
    mut client: Client,
    prefix: String,
    revision: i64,
    candidates: &mut BTreeMap<Vec<u8>, (i64, String)>,
    published: &mut Published,
    backoff: &mut Backoff,
) -> Result<(), EtcdError> {
    let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let (mut watcher, mut events) =
        request(config.request_timeout, "watch", client.watch(prefix, Some(options))).await?;
    backoff.reset();
    // A quiet election and a member that stopped answering look alike: after
    // `request_timeout` of silence, ask for a progress report, and reconnect if it
    // does not come within another `request_timeout`.
    let quiet = config.request_timeout;
    let mut heard_at = Instant::now();
    let mut asked_at: Option<Instant> = None;
    loop {
        let check_at = asked_at.unwrap_or(heard_at) + quiet;
        let message = tokio::select! {
            message = events.message() => message,
            _ = tokio::time::sleep_until(check_at) => {
                if asked_at.is_some() {
                    return Err(EtcdError::Timeout { operation: "watch progress", after: quiet });
                }
                watcher
                    .request_progress()
                    .await
                    .map_err(|source| EtcdError::Request { operation: "watch progress", source: Box::new(source) })?;
                asked_at = Some(Instant::now());
                continue;
            }
        };
        let response = message
            .map_err(|source| EtcdError::Request { operation: "watch", source: Box::new(source) })?
            .ok_or_else(|| EtcdError::Election("the election watch ended".to_string()))?;
        (heard_at, asked_at) = (Instant::now(), None);
        if response.canceled() {
            return Err(EtcdError::Election(format!(
                "the election watch was canceled (compacted at {}): {}",
                response.compact_revision(),
                response.cancel_reason()
            )));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => {
                    let value = String::from_utf8_lossy(kv.value()).into_owned();
                    candidates.insert(kv.key().to_vec(), (kv.create_revision(), value));
                }
                EventType::Delete => {
                    candidates.remove(kv.key());
                }
            }
        }
        published.publish(candidates);
    }
}

/// The sending side, with the highest epoch published so far.
struct Published {
    sender: watch::Sender<Option<Leader>>,
    highest_epoch: u64,
}

impl Published {
    /// Publishes the candidate with the lowest create revision (or `None`), unless it
    /// is older than a leader already published.
    fn publish(&mut self, candidates: &BTreeMap<Vec<u8>, (i64, String)>) {
        let leader = candidates.values().min_by_key(|(create_revision, _)| *create_revision).map(
            |(create_revision, value)| Leader {
                value: value.clone(),
                epoch: (*create_revision).max(0) as u64,
            },
        );
        if let Some(leader) = &leader {
            if leader.epoch < self.highest_epoch {
                tracing::warn!(
                    epoch = leader.epoch,
                    highest = self.highest_epoch,
                    "ignoring an older leader"
                );
                return;
            }
            self.highest_epoch = leader.epoch;
        }
        self.sender.send_if_modified(|current| {
            if *current == leader {
                return false;
            }
            match &leader {
                Some(leader) => {
                    tracing::info!(epoch = leader.epoch, leader = %leader.value, "leader observed")
                }
                None => tracing::info!("no leader"),
            }
            *current = leader;
            true
        });
    }
}
