//! A master in a high-availability cluster on etcd. It serves its port at once as a
//! standby (`/health`; `/state` and the metrics naming the leader, `master/elected`
//! 0; every other endpoint a 307 to the leader, or 503 while none is known) and
//! campaigns in the cluster's election. Elected, it starts its master and allocator
//! with a registry in etcd fenced by its leader key, recovering at the election's
//! epoch; its endpoints then serve it.
//!
//! It leads until it may no longer: when the lease is lost (no keep-alive
//! acknowledged for 2/3 of the TTL, the lease expired, the key deleted) or a
//! registry write fails (fenced by a successor, or etcd unavailable), the process
//! exits, as Mesos's master does when it loses its candidacy; a supervisor restarts
//! it as a standby. On its way out (an abort, a signal) it resigns, so the next
//! candidate need not wait for the lease to run out.
//!
//! The campaign and its keep-alive run on a thread of their own, so that a busy
//! master never delays the keep-alives that keep it leading.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use keel_kernel::Node;
use tokio::sync::oneshot;

use super::{http, MasterConfig, MasterHandle, MASTER_NAME};
use crate::detector;
use crate::etcd::{self, EtcdClient, EtcdConfig, EtcdRegistry, Fence, LostReason};
use crate::registry::{Registry, Term};

/// How long a leaving master waits for its resignation to reach etcd.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(2);

/// How an elected master stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It lost its leadership (the process must exit).
    Lost(String),
    /// It was asked to stop and resigned.
    Resigned,
}

/// The way to the election thread: ask it to resign, hear that it did.
type ResignChannel = (oneshot::Sender<()>, mpsc::Receiver<()>);

/// Asks the election thread to resign, once, and waits (bounded) until it did.
#[derive(Clone, Default)]
pub struct Resigner {
    inner: Arc<Mutex<Option<ResignChannel>>>,
}

impl std::fmt::Debug for Resigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resigner")
    }
}

impl Resigner {
    /// Resigns the leadership (if held) and waits at most [`RESIGN_TIMEOUT`]; safe
    /// to call from any thread, any number of times.
    pub fn resign(&self) {
        let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((ask, done)) = taken {
            if ask.send(()).is_ok() {
                let _ = done.recv_timeout(RESIGN_TIMEOUT + Duration::from_millis(500));
            }
        }
    }
}

/// What the election thread reports.
enum Elected {
    Leading { fence: Fence, client: EtcdClient, term: Term, lost: oneshot::Receiver<LostReason> },
    Failed(String),
}

/// Runs a master of the etcd cluster `etcd` on `node` until it stops leading or
/// `stop` resolves (then it resigns). `config.on_abort` should end the process; it
/// is wrapped so that an aborting master resigns first.
pub async fn run(
    node: &Node,
    mut config: MasterConfig,
    etcd: EtcdConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Ended> {
    let me = node.upid(MASTER_NAME)?;
    let leader = detector::watch_leader(&etcd)?;
    let slot = http::MasterSlot::standby(me.clone(), leader);
    node.add_routes(http::routes_for(slot.clone()));
    tracing::info!(master = %me, cluster = %etcd.address(), "standing by: campaigning for leadership");

    let resigner = Resigner::default();
    let elected = spawn_election(etcd.clone(), me.to_string(), resigner.clone())?;
    tokio::pin!(stop);
    let (fence, client, term, lost) = tokio::select! {
        elected = elected => match elected {
            Ok(Elected::Leading { fence, client, term, lost }) => (fence, client, term, lost),
            Ok(Elected::Failed(reason)) => anyhow::bail!("the campaign failed: {reason}"),
            Err(_) => anyhow::bail!("the election thread stopped"),
        },
        () = &mut stop => return Ok(Ended::Resigned),
    };
    tracing::info!(master = %me, epoch = term.0, "elected leading master");
    let registry: Arc<dyn Registry> = Arc::new(EtcdRegistry::new(&client, &etcd, fence)?);
    config.elected_term = Some(term);
    let abort = config.on_abort.take();
    let on_abort_resigner = resigner.clone();
    config.on_abort = Some(Arc::new(move |reason: &str| {
        on_abort_resigner.resign();
        if let Some(abort) = &abort {
            abort(reason);
        }
    }));
    let handle: MasterHandle = super::start_processes(node, config, registry)?;
    slot.lead(handle);
    tokio::select! {
        reason = lost => {
            let reason = reason.map(|r| r.to_string()).unwrap_or_else(|_| "the election thread stopped".into());
            tracing::error!(master = %me, epoch = term.0, %reason, "lost the leadership: this master stops serving");
            Ok(Ended::Lost(reason))
        }
        () = &mut stop => {
            resigner.resign();
            Ok(Ended::Resigned)
        }
    }
}

/// Campaigns on a thread with its own runtime; the answer comes once elected (or
/// when the campaign cannot go on). The thread then holds the leadership until it
/// is lost or resigned.
fn spawn_election(
    etcd: EtcdConfig,
    value: String,
    resigner: Resigner,
) -> anyhow::Result<oneshot::Receiver<Elected>> {
    let (elected_tx, elected_rx) = oneshot::channel();
    let (ask_tx, ask_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    *resigner.inner.lock().unwrap_or_else(|p| p.into_inner()) = Some((ask_tx, done_rx));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("keel-election".into()).spawn(move || {
        runtime.block_on(async move {
            let campaign = etcd::campaign(&etcd, value);
            tokio::pin!(campaign);
            let mut ask_rx = ask_rx;
            let leadership = tokio::select! {
                won = &mut campaign => match won {
                    Ok(leadership) => leadership,
                    Err(e) => {
                        let _ = elected_tx.send(Elected::Failed(e.to_string()));
                        return;
                    }
                },
                _ = &mut ask_rx => {
                    let _ = done_tx.send(());
                    return;
                }
            };
            let (lost_tx, lost_rx) = oneshot::channel();
            let elected = Elected::Leading {
                fence: leadership.fence(),
                client: leadership.client(),
                term: leadership.term(),
                lost: lost_rx,
            };
            if elected_tx.send(elected).is_err() {
                let _ = tokio::time::timeout(RESIGN_TIMEOUT, leadership.resign()).await;
                return;
            }
            let lost = tokio::select! {
                reason = leadership.lost() => Some(reason),
                _ = &mut ask_rx => None,
            };
            if let Some(reason) = lost {
                let _ = lost_tx.send(reason);
                // The runtime (and the registry's etcd clients on it) lives on until
                // the process exits, or resigns on its way out.
                let _ = ask_rx.await;
            }
            let resigned = tokio::time::timeout(RESIGN_TIMEOUT, leadership.resign()).await;
            if let Ok(Err(e)) | Err(e) =
                resigned.map_err(|_| etcd::EtcdError::Election("resigning timed out".into()))
            {
                tracing::warn!(error = %e, "could not resign; the lease will run out");
            }
            let _ = done_tx.send(());
        })
    })?;
    Ok(elected_rx)
}
