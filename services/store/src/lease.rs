//! Leases: grant, keep alive in the background, revoke, and learn when one is lost.
//!
//! [`Store::grant_lease`] grants a lease and starts a keep-alive task that refreshes it
//! every third of its TTL. The task tracks a *local deadline*: the time a keep-alive was
//! sent plus the TTL etcd answered with. Because it is measured from before the request
//! left, the local deadline is never later than etcd's own expiry, so when it passes
//! without a fresh answer the holder can be sure it may have lost the lease and must stop
//! acting on it (this is what makes leader election safe across a network partition).
//!
//! Dropping a [`Lease`] stops the keep-alive task *without* revoking: the lease, and every
//! key attached to it, expires after its TTL, exactly as if the process had died. Call
//! [`Lease::revoke`] to release it at once.

use crate::Store;
use crate::StoreError;
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Why a lease is no longer held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossReason {
    /// etcd says the lease no longer exists (it expired, or someone revoked it).
    Expired,
    /// No keep-alive was acknowledged before the local deadline: etcd may have expired it.
    Unreachable,
    /// This handle revoked it.
    Revoked,
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LossReason::Expired => "expired or revoked in etcd",
            LossReason::Unreachable => "no keep-alive acknowledged within the TTL",
            LossReason::Revoked => "revoked by its holder",
        })
    }
}

/// A granted lease kept alive in the background. See the module docs.
pub struct Lease {
    id: i64,
    ttl: Duration,
    store: Store,
    state: watch::Receiver<Option<LossReason>>,
    state_tx: watch::Sender<Option<LossReason>>,
    task: JoinHandle<()>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("id", &format_args!("{:x}", self.id))
            .field("ttl", &self.ttl)
            .field("lost", &*self.state.borrow())
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A cloneable receiver that resolves when a lease is lost; see [`Lease::watcher`].
#[derive(Clone, Debug)]
pub struct LeaseWatcher {
    id: i64,
    state: watch::Receiver<Option<LossReason>>,
}

impl LeaseWatcher {
    /// `None` while the lease is held.
    pub fn lost_reason(&self) -> Option<LossReason> {
        *self.state.borrow()
    }

    /// Resolves when the lease is lost (at once if it already is). If the [`Lease`] handle
    /// is dropped, resolves with [`LossReason::Unreachable`]: nobody keeps it alive.
    pub async fn lost(&mut self) -> LossReason {
        let seen = match self.state.wait_for(Option::is_some).await {
            Ok(v) => *v,
            Err(_) => None,
        };
        seen.or(*self.state.borrow())
            .unwrap_or(LossReason::Unreachable)
    }

    /// The lease id.
    pub fn id(&self) -> i64 {
        self.id
    }
}

impl Store {
    /// Grants a lease of at least `ttl` (rounded up to whole seconds; etcd may raise it to
    /// its minimum) and starts keeping it alive.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let secs = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let started = Instant::now();
        let resp = self
            .call("lease grant", "", |mut c| async move {
                c.lease_grant(secs, None).await
            })
            .await?;
        let id = resp.id();
        let granted = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(1).max(1));
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(keep_alive(
            self.clone(),
            id,
            granted,
            started + granted,
            tx.clone(),
        ));
        tracing::debug!(
            lease = format_args!("{id:x}"),
            ttl_s = granted.as_secs(),
            "lease granted"
        );
        Ok(Lease {
            id,
            ttl: granted,
            store: self.clone(),
            state: rx,
            state_tx: tx,
            task,
        })
    }
}

impl Lease {
    /// The etcd lease id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL etcd granted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// True until the lease is lost.
    pub fn is_alive(&self) -> bool {
        self.state.borrow().is_none()
    }

    /// Why the lease was lost, if it was.
    pub fn lost_reason(&self) -> Option<LossReason> {
        *self.state.borrow()
    }

    /// Resolves when the lease is lost.
    pub async fn lost(&self) -> LossReason {
        self.watcher().lost().await
    }

    /// A cloneable handle that observes this lease's loss.
    pub fn watcher(&self) -> LeaseWatcher {
        LeaseWatcher {
            id: self.id,
            state: self.state.clone(),
        }
    }

    /// Revokes the lease now: every key attached to it is deleted.
    pub async fn revoke(self) -> Result<(), StoreError> {
        self.task.abort();
        let id = self.id;
        let res = self
            .store
            .call("lease revoke", "", |mut c| async move {
                c.lease_revoke(id).await
            })
            .await;
        match res {
            Ok(_) => {}
            // Already gone: the goal is reached.
            Err(StoreError::Etcd { source, .. })
                if source.to_string().contains("requested lease not found") => {}
            Err(e) => return Err(e),
        }
        self.state_tx.send_replace(Some(LossReason::Revoked));
        Ok(())
    }
}

fn lost(tx: &watch::Sender<Option<LossReason>>, id: i64, reason: LossReason) {
    tracing::warn!(lease = format_args!("{id:x}"), %reason, "lease lost");
    tx.send_replace(Some(reason));
}

fn is_not_found(err: &etcd_client::Error) -> bool {
    let text = err.to_string();
    text.contains("lease not found") || text.contains("requested lease not found")
}

async fn keep_alive(
    store: Store,
    id: i64,
    ttl: Duration,
    mut deadline: Instant,
    tx: watch::Sender<Option<LossReason>>,
) {
    let interval = (ttl / 3).max(Duration::from_millis(100));
    let retry = (ttl / 10).max(Duration::from_millis(50));
    'connect: loop {
        if Instant::now() >= deadline {
            return lost(&tx, id, LossReason::Unreachable);
        }
        let sent = Instant::now();
        let (idx, mut client) = store.pick();
        let opened = tokio::time::timeout_at(deadline, client.lease_keep_alive(id)).await;
        let (mut keeper, mut stream) = match opened {
            Err(_) => return lost(&tx, id, LossReason::Unreachable),
            Ok(Err(e)) if is_not_found(&e) => return lost(&tx, id, LossReason::Expired),
            Ok(Err(e)) => {
                store.failed(idx);
                tracing::debug!(lease = format_args!("{id:x}"), error = %e, "keep-alive stream failed, retrying");
                tokio::time::sleep(retry.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                continue 'connect;
            }
            // The first keep-alive was sent and answered with ttl > 0.
            Ok(Ok(pair)) => {
                deadline = deadline.max(sent + ttl);
                pair
            }
        };
        loop {
            tokio::time::sleep(interval).await;
            let sent = Instant::now();
            if sent >= deadline {
                return lost(&tx, id, LossReason::Unreachable);
            }
            if let Err(e) = keeper.keep_alive().await {
                store.failed(idx);
                tracing::debug!(lease = format_args!("{id:x}"), error = %e, "keep-alive send failed");
                continue 'connect;
            }
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => return lost(&tx, id, LossReason::Unreachable),
                Ok(Ok(Some(resp))) => {
                    if resp.ttl() <= 0 {
                        return lost(&tx, id, LossReason::Expired);
                    }
                    let granted = Duration::from_secs(u64::try_from(resp.ttl()).unwrap_or(1));
                    deadline = sent + granted;
                }
                Ok(Ok(None)) => {
                    store.failed(idx);
                    continue 'connect;
                }
                Ok(Err(e)) => {
                    store.failed(idx);
                    tracing::debug!(lease = format_args!("{id:x}"), error = %e, "keep-alive stream broke");
                    continue 'connect;
                }
            }
        }
    }
}
