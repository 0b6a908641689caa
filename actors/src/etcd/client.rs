//! Talking to etcd: an [`EtcdClient`] holds one etcd-client per endpoint and sends
//! requests to a preferred one; a request that fails or hangs there moves the
//! preference to the next endpoint. (etcd-client's own balancing picks among the
//! endpoints at random, so a member that stopped answering without closing its
//! connections, stopped or stuck on its disk, would keep getting a share of the
//! requests, each one hanging until its time limit.) Also: connecting with
//! retries, requests with time limits and bounded retries, backoff.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};

use super::{EtcdConfig, EtcdError};

/// Clients for every etcd endpoint, one of them preferred. Cheap to clone; clones
/// share the preference.
#[derive(Clone)]
pub struct EtcdClient {
    inner: Arc<Members>,
}

struct Members {
    endpoints: Vec<String>,
    clients: Vec<Client>,
    preferred: AtomicUsize,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.inner.endpoints)
            .field("preferred", &self.preferred_endpoint())
            .finish()
    }
}

impl EtcdClient {
    /// A client per endpoint, preferring a random one. Nothing is connected yet:
    /// connections are made by the first requests, and remade after failures.
    pub async fn lazy(config: &EtcdConfig) -> Result<EtcdClient, EtcdError> {
        config.validate()?;
        // HTTP/2 pings notice a member that stopped answering; etcd refuses pings more
        // often than every 5 s (`--grpc-keepalive-min-time`) and pings without a stream.
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(false);
        let mut clients = Vec::with_capacity(config.endpoints.len());
        for endpoint in &config.endpoints {
            let client = Client::connect([endpoint], Some(options.clone()))
                .await
                .map_err(|source| EtcdError::Request { operation: "connect", source: Box::new(source) })?;
            clients.push(client);
        }
        let preferred = AtomicUsize::new(fastrand::usize(..clients.len()));
        Ok(EtcdClient {
            inner: Arc::new(Members { endpoints: config.endpoints.clone(), clients, preferred }),
        })
    }

    /// The preferred endpoint's client (for requests this module does not make).
    pub fn client(&self) -> Client {
        self.pick().1
    }

    /// The preferred endpoint.
    pub fn preferred_endpoint(&self) -> &str {
        &self.inner.endpoints[self.preferred()]
    }

    /// Endpoint `index`.
    pub(crate) fn endpoint(&self, index: usize) -> &str {
        &self.inner.endpoints[index % self.inner.endpoints.len()]
    }

    /// The preferred endpoint's index and client.
    pub(crate) fn pick(&self) -> (usize, Client) {
        let index = self.preferred();
        (index, self.inner.clients[index].clone())
    }

    pub(crate) fn preferred(&self) -> usize {
        self.inner.preferred.load(Ordering::Relaxed) % self.inner.clients.len()
    }

    /// A request to endpoint `index` failed: prefer the next one (unless another
    /// failure moved the preference already).
    pub(crate) fn failed(&self, index: usize) {
        let next = (index + 1) % self.inner.clients.len();
        if self.inner.preferred.compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            && next != index
        {
            tracing::debug!(failed = %self.inner.endpoints[index], next = %self.inner.endpoints[next], "preferring another etcd endpoint");
        }
    }
}

/// Connects to etcd, retrying with capped exponential backoff until a linearizable
/// read succeeds (or [`EtcdConfig::connect_give_up_after`] passes). Each failed
/// attempt is logged as a warning with the endpoints and the error.
pub async fn connect(config: &EtcdConfig) -> Result<EtcdClient, EtcdError> {
    config.validate()?;
    let endpoints = config.endpoints.join(",");
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new(config.max_backoff);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match connect_once(config).await {
            Ok(client) => {
                if attempts > 1 {
                    tracing::info!(endpoints = %endpoints, attempts, "connected to etcd");
                }
                return Ok(client);
            }
            Err(error) => error,
        };
        let delay = backoff.next_delay();
        if let Some(limit) = config.connect_give_up_after {
            if started.elapsed() + delay > limit {
                tracing::warn!(endpoints = %endpoints, attempts, error = %error, "cannot reach etcd, giving up");
                return Err(EtcdError::Unreachable { endpoints, attempts, last_error: error.to_string() });
            }
        }
        tracing::warn!(
            endpoints = %endpoints,
            cluster = %config.cluster,
            attempt = attempts,
            retry_in_ms = delay.as_millis() as u64,
            error = %error,
            "cannot reach etcd, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// One connection attempt: clients for the endpoints, and a linearizable read (so a
/// quorum answered) through each in turn, from a random one, until one answers
/// within [`EtcdConfig::connect_timeout`]; that one is preferred.
pub async fn connect_once(config: &EtcdConfig) -> Result<EtcdClient, EtcdError> {
    let etcd = EtcdClient::lazy(config).await?;
    let mut last_error = None;
    for _ in 0..config.endpoints.len() {
        let (index, mut client) = etcd.pick();
        let probe = client.get(config.election_name(), Some(GetOptions::new().with_count_only()));
        match request(config.connect_timeout, "connect", probe).await {
            Ok(_) => return Ok(etcd),
            Err(error) => {
                etcd.failed(index);
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| EtcdError::InvalidConfig("no etcd endpoints".to_string())))
}

/// Runs `request` with a time limit; etcd errors become [`EtcdError::Request`].
pub(crate) async fn request<T>(
    limit: Duration,
    operation: &'static str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(EtcdError::Request { operation, source: Box::new(source) }),
        Err(_) => Err(EtcdError::Timeout { operation, after: limit }),
    }
}

/// Runs `attempt` on the preferred endpoint until it succeeds, fails in a way
/// retrying cannot fix ([`EtcdError::is_retryable`]), or `budget` has passed in
/// all. A failed attempt moves the preference to the next endpoint, and each
/// attempt gets at most a third of the budget, so a member that stopped answering
/// leaves time to try another. For requests that are safe to repeat; `*uncertain`
/// is set when an attempt failed, since it may have taken effect.
pub(crate) async fn retrying<T, F, Fut>(
    etcd: &EtcdClient,
    budget: Duration,
    operation: &'static str,
    uncertain: &mut bool,
    mut attempt: F,
) -> Result<T, EtcdError>
where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    const FIRST_PAUSE: Duration = Duration::from_millis(50);
    const LONGEST_PAUSE: Duration = Duration::from_millis(500);
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let remaining = budget.saturating_sub(started.elapsed());
        let limit = remaining.min((budget / 3).max(LONGEST_PAUSE));
        let (index, client) = etcd.pick();
        match request(limit, operation, attempt(client)).await {
            Ok(value) => return Ok(value),
            Err(error) => {
                *uncertain = true;
                if !error.is_retryable() || started.elapsed() + pause >= budget {
                    return Err(error);
                }
                etcd.failed(index);
                tracing::debug!(
                    operation,
                    endpoint = %etcd.inner.endpoints[index],
                    error = %error,
                    retry_in_ms = pause.as_millis() as u64,
                    "etcd request failed, retrying"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}

/// Capped exponential backoff with jitter: 100 ms, 200 ms, ... up to the cap, each
/// delay drawn between half and all of its step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub(crate) const INITIAL: Duration = Duration::from_millis(100);

    pub(crate) fn new(cap: Duration) -> Backoff {
        Backoff { next: Backoff::INITIAL.min(cap), cap }
    }

    /// The next delay.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.cap);
        step.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Back to the first step (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = Backoff::INITIAL.min(self.cap);
    }
}
