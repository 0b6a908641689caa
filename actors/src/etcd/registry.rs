//! The registry in etcd: one key per entity under `/keel/<cluster>/registry/`
//! (layout in [`super`]), every read and write fenced by the leader's election key.
//!
//! An [`EtcdRegistry`] belongs to one [`Leadership`](super::Leadership): its term is
//! the leadership's epoch (the leader key's create revision), and every transaction
//! is guarded by `create_revision(leader key) == epoch`. When the key is gone (the
//! lease expired, the leader resigned or was deposed) the guard fails and the call
//! is [`RegistryError::Fenced`]: nothing was written.
//!
//! - `recover(term)` reads the whole registry at one etcd revision, in pages of
//!   [`PAGE_KEYS`] keys (the first page in a transaction with the guard), so
//!   100,000 removed framework ids load without a message above gRPC's limits. An
//!   empty registry gets its `format` key.
//! - `apply(term, operations)` runs the operations on the cached state with the
//!   shared pure logic (nothing is written if one fails), turns what changed into
//!   per-key puts and deletes, and commits them with the `version` key in a fenced
//!   transaction. The cache is updated only once everything committed.
//! - etcd limits a transaction to `--max-txn-ops` operations (128 by default) and a
//!   request to `--max-request-bytes` (1.5 MiB). A larger transaction is written as
//!   several fenced transactions, split only *between* operations: each operation
//!   stays atomic, and a failure part-way leaves the state after some prefix of the
//!   operations (only a `PruneUnreachable` whose own deletions exceed the limit is
//!   split inside, between unreachable agents, which leaves a smaller prune). A
//!   failure after the first chunk, or any failure that may have committed (a
//!   timeout, a lost connection), marks the cache unknown: the next `apply` fails
//!   until `recover` re-reads the state.
//! - Requests that fail in a way a retry can fix (a member down or stopped, no etcd
//!   leader for a moment) are retried with backoff within
//!   [`EtcdConfig::request_timeout`], each on the next endpoint: reads are harmless to
//!   repeat, and so is a fenced transaction that sets keys to given values
//!   (committing it twice leaves the same state).
//! - `claim_next` is refused: terms come from the election, not the registry.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KvClient, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};
use keel_proto::registry::{Operation, RegistryError, RegistryState, Term};

use super::diff::{self, Chunk, FORMAT, FORMAT_KEY, VERSION_KEY};
use super::{prefix_end, retrying, EtcdClient, EtcdConfig, EtcdError, Fence};
use crate::registry::{BoxFuture, Registry};

/// Keys read per page by `recover`.
pub const PAGE_KEYS: i64 = 1_000;

/// About how many bytes of keys and values one transaction writes (etcd refuses
/// requests above 1.5 MiB by default).
pub const MAX_TXN_BYTES: usize = 1 << 20;

/// The largest response accepted from etcd (a page of large agent records).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A registry in etcd, fenced by one leadership. Cheap to clone; clones share the
/// cached state and write one transaction at a time.
#[derive(Clone)]
pub struct EtcdRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("address", &self.inner.address)
            .field("epoch", &self.inner.fence.epoch)
            .finish()
    }
}

struct Inner {
    etcd: EtcdClient,
    /// `/keel/<cluster>/registry/`.
    prefix: String,
    /// `/keel/<cluster>/leader/`.
    election_prefix: String,
    fence: Fence,
    /// `etcd://...`, for `describe` and errors.
    address: String,
    request_timeout: Duration,
    /// Entity changes per transaction (etcd's limit minus the version key).
    max_changes: usize,
    /// Held for a whole `recover` or `apply`: one transaction at a time.
    cache: tokio::sync::Mutex<Cache>,
}

/// What this process knows of the stored state.
enum Cache {
    /// `recover` has not succeeded yet.
    NotRecovered,
    /// The state and version etcd holds (as far as this leader's writes go).
    Known { state: RegistryState, version: u64 },
    /// A write may or may not have committed: `recover` must re-read.
    Unknown,
}

impl EtcdRegistry {
    /// The registry of `config.cluster`, written through `etcd` (e.g.
    /// [`Leadership::client`](super::Leadership::client)) under `fence` (from
    /// [`Leadership::fence`](super::Leadership::fence)).
    pub fn new(etcd: &EtcdClient, config: &EtcdConfig, fence: Fence) -> Result<EtcdRegistry, EtcdError> {
        config.validate()?;
        if fence.epoch == 0 || i64::try_from(fence.epoch).is_err() {
            return Err(EtcdError::InvalidConfig(format!("epoch {} is not a create revision", fence.epoch)));
        }
        let inner = Inner {
            etcd: etcd.clone(),
            prefix: config.registry_prefix(),
            election_prefix: config.election_prefix(),
            fence,
            address: config.address(),
            request_timeout: config.request_timeout,
            max_changes: config.max_txn_ops - 1,
            cache: tokio::sync::Mutex::new(Cache::NotRecovered),
        };
        Ok(EtcdRegistry { inner: Arc::new(inner) })
    }

    /// The key and epoch fencing this registry's writes.
    pub fn fence(&self) -> &Fence {
        &self.inner.fence
    }
}

impl Registry for EtcdRegistry {
    fn recover(&self, term: Term) -> BoxFuture<'static, Result<RegistryState, RegistryError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.recover(term).await })
    }

    fn claim_next(&self) -> BoxFuture<'static, Result<(Term, RegistryState), RegistryError>> {
        Box::pin(async {
            Err(RegistryError::InvalidArgument(
                "the etcd registry takes its term from the election: campaign, then recover with the \
                 leadership's epoch"
                    .to_string(),
            ))
        })
    }

    fn apply(
        &self,
        term: Term,
        operations: Vec<Operation>,
    ) -> BoxFuture<'static, Result<u64, RegistryError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.apply(term, operations).await })
    }

    fn describe(&self) -> String {
        self.inner.address.clone()
    }
}

impl Inner {
    async fn recover(&self, term: Term) -> Result<RegistryState, RegistryError> {
        self.check_term(term)?;
        let mut cache = self.cache.lock().await;
        let loaded = self.load(term).await?;
        if loaded.keys == 0 {
            // A registry never written: record its format, under the fence.
            let format = TxnOp::put(self.key(FORMAT_KEY), diff::encode_number(u64::from(FORMAT)), None);
            let version = TxnOp::put(self.key(VERSION_KEY), diff::encode_number(0), None);
            self.fenced_txn(term, vec![format, version], &mut false).await?;
        } else if loaded.format != Some(FORMAT) {
            return Err(RegistryError::Corrupt(match loaded.format {
                Some(format) => format!(
                    "{}{FORMAT_KEY}: format {format} is not supported (expected {FORMAT})",
                    self.prefix
                ),
                None => {
                    format!("{}{FORMAT_KEY} is missing but {} other keys exist", self.prefix, loaded.keys)
                }
            }));
        }
        let state = &loaded.state;
        tracing::info!(
            registry = %self.address,
            term = term.0,
            version = loaded.version,
            agents = state.agents.len(),
            unreachable = state.unreachable.len(),
            frameworks = state.frameworks.len(),
            removed_frameworks = state.removed_frameworks.len(),
            "registry recovered"
        );
        *cache = Cache::Known { state: loaded.state.clone(), version: loaded.version };
        Ok(loaded.state)
    }

    async fn apply(&self, term: Term, operations: Vec<Operation>) -> Result<u64, RegistryError> {
        self.check_term(term)?;
        let mut cache = self.cache.lock().await;
        let (plan, version) = match &*cache {
            Cache::NotRecovered => {
                return Err(RegistryError::InvalidArgument(format!(
                    "term {term} has not been recovered: call recover first"
                )))
            }
            Cache::Unknown => {
                self.fenced_txn(term, Vec::new(), &mut false).await?;
                return Err(RegistryError::InvalidArgument(
                    "the registry's state is unknown after a failed write: recover first".to_string(),
                ));
            }
            Cache::Known { version, .. } if operations.is_empty() => {
                let version = *version;
                self.fenced_txn(term, Vec::new(), &mut false).await?;
                return Ok(version);
            }
            Cache::Known { state, version } => {
                (diff::plan(state, &operations, self.max_changes, MAX_TXN_BYTES)?, *version + 1)
            }
        };
        let chunks = if plan.chunks.is_empty() { vec![Chunk::default()] } else { plan.chunks };
        for (index, chunk) in chunks.iter().enumerate() {
            let mut writes: Vec<TxnOp> = chunk
                .writes()
                .map(|(key, value)| match value {
                    Some(value) => TxnOp::put(self.key(key), value, None),
                    None => TxnOp::delete(self.key(key), None),
                })
                .collect();
            writes.push(TxnOp::put(self.key(VERSION_KEY), diff::encode_number(version), None));
            let mut uncertain = false;
            if let Err(error) = self.fenced_txn(term, writes, &mut uncertain).await {
                // Only a first transaction refused by the fence at its first attempt
                // certainly wrote nothing.
                if index > 0 || uncertain || !matches!(error, RegistryError::Fenced { .. }) {
                    *cache = Cache::Unknown;
                }
                tracing::warn!(
                    registry = %self.address,
                    term = term.0,
                    transaction = index + 1,
                    of = chunks.len(),
                    error = %error,
                    "registry write failed"
                );
                return Err(error);
            }
        }
        tracing::debug!(
            registry = %self.address,
            term = term.0,
            version,
            operations = operations.len(),
            transactions = chunks.len(),
            keys = chunks.iter().map(Chunk::len).sum::<usize>(),
            "registry applied"
        );
        *cache = Cache::Known { state: plan.state, version };
        Ok(version)
    }

    /// Reads every registry key at one revision; the first page under the fence.
    async fn load(&self, term: Term) -> Result<diff::Decoded, RegistryError> {
        let range_end = prefix_end(self.prefix.as_bytes());
        let first = GetOptions::new().with_range(range_end.clone()).with_limit(PAGE_KEYS);
        let txn = Txn::new()
            .when([self.guard()])
            .and_then([TxnOp::get(self.prefix.clone(), Some(first))])
            .or_else([self.current_leader()]);
        let response = self.txn(txn, &mut false).await?;
        if !response.succeeded() {
            return Err(self.fenced(term, &response));
        }
        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
        let Some(TxnOpResponse::Get(mut page)) = response.op_responses().into_iter().next() else {
            return Err(RegistryError::Unavailable(format!("{}: the read answered no range", self.address)));
        };
        let mut entries = Vec::new();
        loop {
            let more = page.more();
            entries.extend(page.take_kvs().into_iter().map(|kv| kv.into_key_value()));
            if !more {
                break;
            }
            let Some((last, _)) = entries.last() else { break };
            let mut start = last.clone();
            start.push(0);
            let options =
                GetOptions::new().with_range(range_end.clone()).with_limit(PAGE_KEYS).with_revision(revision);
            page = retrying(&self.etcd, self.request_timeout, "get", &mut false, |client| {
                let (mut kv, start, options) = (kv_client(&client), start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await
            .map_err(|e| self.unavailable(e))?;
        }
        diff::decode(entries, &self.prefix)
    }

    /// Runs `writes` if the leader key still has our epoch; `Fenced` otherwise.
    /// `*uncertain` is set if an attempt failed (it may have committed).
    async fn fenced_txn(
        &self,
        term: Term,
        writes: Vec<TxnOp>,
        uncertain: &mut bool,
    ) -> Result<(), RegistryError> {
        let txn = Txn::new().when([self.guard()]).and_then(writes).or_else([self.current_leader()]);
        let response = self.txn(txn, uncertain).await?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(self.fenced(term, &response))
        }
    }

    async fn txn(&self, txn: Txn, uncertain: &mut bool) -> Result<TxnResponse, RegistryError> {
        retrying(&self.etcd, self.request_timeout, "txn", uncertain, |client| {
            let (mut kv, txn) = (kv_client(&client), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(|e| self.unavailable(e))
    }

    /// `create_revision(leader key) == epoch`.
    fn guard(&self) -> Compare {
        Compare::create_revision(self.fence.key.clone(), CompareOp::Equal, self.fence.epoch as i64)
    }

    /// Reads the current leader key (the failure branch: who fenced us out).
    fn current_leader(&self) -> TxnOp {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1)
            .with_keys_only();
        TxnOp::get(self.election_prefix.clone(), Some(options))
    }

    /// The `Fenced` error for a transaction whose guard failed: `current` is the
    /// epoch of the leader etcd has now or, while nobody leads, the revision the
    /// transaction was evaluated at (any later leader's epoch is above it).
    fn fenced(&self, term: Term, response: &TxnResponse) -> RegistryError {
        let leader = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.create_revision()),
            _ => None,
        });
        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
        let current = Term(leader.unwrap_or(revision).max(0) as u64);
        RegistryError::Fenced { term, current }
    }

    fn unavailable(&self, error: EtcdError) -> RegistryError {
        RegistryError::Unavailable(format!("{}: {error}", self.address))
    }

    fn check_term(&self, term: Term) -> Result<(), RegistryError> {
        if term.0 == 0 {
            return Err(RegistryError::InvalidArgument("term 0 is not a valid term".to_string()));
        }
        if term.0 != self.fence.epoch {
            return Err(RegistryError::InvalidArgument(format!(
                "term {term} is not this registry's leadership epoch {}",
                self.fence.epoch
            )));
        }
        Ok(())
    }

    fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.prefix)
    }
}

/// A KV client that accepts responses up to [`MAX_RESPONSE_BYTES`].
fn kv_client(client: &Client) -> KvClient {
    client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES)
}
