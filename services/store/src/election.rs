//! Leader election over leases.
//!
//! ## Algorithm
//!
//! The same as etcd's own `concurrency.Election` (which the v3election gRPC service runs
//! server side), implemented here with plain KV calls so that every step is under our
//! timeouts and visible in the key layout:
//!
//! 1. A candidate grants a lease of `ttl` and creates `leader/<service>/<lease id>` with
//!    value `{"address": ...}` attached to that lease (create-if-absent transaction). The
//!    key's *create revision* is its place in the queue.
//! 2. The leader is the live candidate key with the lowest create revision. A candidate
//!    that is not first watches the key just ahead of it (not the leader's: no herd) and
//!    re-checks when that key is deleted.
//! 3. A leader stays leader while its key exists. It loses leadership when its lease is
//!    lost (expired, revoked, or not acknowledged within the TTL; see [`crate::lease`]) or
//!    when its key is deleted by someone else. [`Leadership::lost`] resolves then, and
//!    the leader must stop acting. Because the lease's local deadline is never later than
//!    etcd's expiry, a leader cut off from etcd gives up no later than its successor can
//!    be elected.
//! 4. Writes that must only happen while leading use
//!    [`crate::TxnBuilder::require_leadership`]: etcd checks, atomically with the write,
//!    that the leader key still has our create revision (a fencing token), so a deposed
//!    leader's late write fails with [`StoreError::NotLeader`].
//!
//! Followers call [`Election::leader`] (one range read) or keep an
//! [`Election::observe`] receiver to answer `/master/redirect` with the leader's address.
//!
//! Resigning ([`Leadership::resign`]) revokes the lease so the next candidate takes over
//! at once; dropping a [`Leadership`] (or a crash) hands over after the TTL.

use crate::StoreError;
use crate::keys::{Key, Prefix};
use crate::lease::{Lease, LeaseWatcher, LossReason};
use crate::store::{Store, to_version};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The value of a candidate key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct CandidateRecord {
    address: String,
}

/// Who leads a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The address the leader campaigned with (e.g. `10.0.0.1:5050`).
    pub address: String,
    /// The candidate id (the last segment of its election key: its lease id in hex).
    pub candidate: String,
    /// The create revision of the leader key: grows with every new term.
    pub revision: u64,
}

/// Why a [`Leadership`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeadershipLost {
    /// The lease behind the election key was lost.
    Lease(LossReason),
    /// Someone deleted the election key.
    KeyDeleted,
    /// [`Leadership::resign`] was called.
    Resigned,
}

impl fmt::Display for LeadershipLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeadershipLost::Lease(r) => write!(f, "lease lost: {r}"),
            LeadershipLost::KeyDeleted => f.write_str("election key deleted"),
            LeadershipLost::Resigned => f.write_str("resigned"),
        }
    }
}

/// Entry points of the election; see the module docs.
#[derive(Debug)]
pub struct Election;

/// Revokes a campaign's lease if the campaign is abandoned (its future dropped).
struct CampaignGuard {
    lease: Option<Lease>,
}

impl Drop for CampaignGuard {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                if let Err(e) = lease.revoke().await {
                    tracing::debug!(error = %e, "revoking an abandoned campaign's lease failed");
                }
            });
        }
    }
}

fn lease_lost(watcher: &LeaseWatcher) -> StoreError {
    StoreError::LeaseLost {
        lease_id: watcher.id(),
        reason: watcher.lost_reason().unwrap_or(LossReason::Unreachable),
    }
}

impl Election {
    /// Campaigns for the leadership of `service` with `address` as the value followers
    /// see. Resolves once this candidate is the leader; waits as long as others lead.
    /// Drop the future to give up (the candidate key is then revoked).
    pub async fn campaign(
        store: &Store,
        service: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Leadership, StoreError> {
        if address.is_empty() {
            return Err(StoreError::InvalidConfig {
                field: "election address",
                reason: format!("empty address campaigning for {service:?}"),
            });
        }
        let prefix = Prefix::leader(service)?;
        let full_prefix = store.full_prefix(&prefix);
        let lease = store.grant_lease(ttl).await?;
        let mut watcher = lease.watcher();
        let mut guard = CampaignGuard { lease: Some(lease) };
        let lease_id = watcher.id();
        let key = prefix.key(&format!("{lease_id:016x}"))?;
        let full = store.full_key(&key);
        let value = store.encode(
            &full,
            &CandidateRecord {
                address: address.to_string(),
            },
        )?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                full.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                full.as_str(),
                value,
                Some(PutOptions::new().with_lease(lease_id)),
            )])
            .or_else(vec![TxnOp::get(full.as_str(), None)]);
        let resp = store.raw_txn(&full, txn).await?;
        let my_rev = if resp.succeeded() {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        } else {
            // Our own lease id is unique, so the key can only exist if we wrote it.
            match resp.op_responses().first() {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| kv.create_revision()),
                _ => None,
            }
            .unwrap_or(0)
        };
        if my_rev <= 1 {
            // etcd's first write is revision 2; anything else means a malformed answer,
            // and `max_create_revision` of 0 would mean "no limit" below.
            return Err(StoreError::InvalidTxn {
                key: full,
                reason: format!("etcd reported create revision {my_rev} for the candidate key"),
            });
        }
        tracing::info!(%service, %address, key = %full, revision = my_rev, "campaigning");

        loop {
            let (ahead, rev) = store
                .first_created(&full_prefix, Some(my_rev - 1), true)
                .await?;
            let Some(ahead) = ahead else { break };
            let ahead_key = store.relative_key(ahead.key())?;
            tracing::debug!(%service, waiting_on = %ahead_key, "not first in line, waiting");
            let mut w = store
                .watch_key::<serde::de::IgnoredAny>(&ahead_key, to_version(rev) + 1)
                .await?;
            loop {
                tokio::select! {
                    _ = watcher.lost() => return Err(lease_lost(&watcher)),
                    ev = w.next() => match ev {
                        Some(Ok(crate::WatchEvent::Delete { .. })) | None => break,
                        Some(Err(StoreError::Compacted { .. })) => break,
                        Some(_) => continue,
                    }
                }
            }
        }
        // First in line: make sure our own key is still there (nobody deleted it).
        let own = store.get::<CandidateRecord>(&key).await?;
        if own.is_none() || watcher.lost_reason().is_some() {
            if let Some(reason) = watcher.lost_reason() {
                return Err(StoreError::LeaseLost { lease_id, reason });
            }
            return Err(StoreError::NotLeader {
                service: service.to_string(),
                key: full,
            });
        }
        let lease = guard.lease.take().ok_or_else(|| StoreError::LeaseLost {
            lease_id,
            reason: LossReason::Unreachable,
        })?;
        tracing::info!(%service, %address, key = %full, revision = my_rev, "elected leader");
        let (tx, rx) = watch::channel(None);
        let monitor = tokio::spawn(monitor(
            store.clone(),
            key.clone(),
            to_version(my_rev),
            lease.watcher(),
            tx.clone(),
        ));
        Ok(Leadership {
            service: service.to_string(),
            address: address.to_string(),
            key,
            revision: to_version(my_rev),
            lease: Some(lease),
            lost_tx: tx,
            lost_rx: rx,
            monitor,
        })
    }

    /// The current leader of `service`, if any.
    pub async fn leader(store: &Store, service: &str) -> Result<Option<LeaderInfo>, StoreError> {
        leader_at(store, &Prefix::leader(service)?)
            .await
            .map(|(info, _)| info)
    }

    /// Keeps a receiver up to date with the leader of `service` (via a watch) until the
    /// returned [`LeaderObserver`] is dropped.
    pub async fn observe(store: &Store, service: &str) -> Result<LeaderObserver, StoreError> {
        let prefix = Prefix::leader(service)?;
        let (current, rev) = leader_at(store, &prefix).await?;
        let watch = store
            .watch::<serde::de::IgnoredAny>(&prefix, rev + 1)
            .await?;
        let (tx, rx) = watch::channel(current);
        let task = tokio::spawn(observe_task(store.clone(), prefix, watch, tx));
        Ok(LeaderObserver { rx, task })
    }
}

async fn leader_at(
    store: &Store,
    prefix: &Prefix,
) -> Result<(Option<LeaderInfo>, u64), StoreError> {
    let full_prefix = store.full_prefix(prefix);
    let (first, rev) = store.first_created(&full_prefix, None, false).await?;
    let info = match first {
        None => None,
        Some(kv) => {
            let key = store.relative_key(kv.key())?;
            let record = Store::decode::<CandidateRecord>(&kv)?;
            Some(LeaderInfo {
                address: record.value.address,
                candidate: key.name(),
                revision: to_version(kv.create_revision()),
            })
        }
    };
    Ok((info, to_version(rev)))
}

async fn observe_task(
    store: Store,
    prefix: Prefix,
    mut watch: crate::Watch<serde::de::IgnoredAny>,
    tx: watch::Sender<Option<LeaderInfo>>,
) {
    loop {
        match watch.next().await {
            // Any change among the candidates: read who leads now.
            Some(_) => loop {
                match leader_at(&store, &prefix).await {
                    Ok((info, _)) => {
                        tx.send_if_modified(|cur| {
                            let changed = *cur != info;
                            *cur = info;
                            changed
                        });
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(prefix = %prefix, error = %e, "reading the leader failed, retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            },
            // Compacted: start over with a fresh read and watch.
            None => loop {
                match leader_at(&store, &prefix).await {
                    Ok((info, rev)) => match store.watch(&prefix, rev + 1).await {
                        Ok(w) => {
                            tx.send_replace(info);
                            watch = w;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(prefix = %prefix, error = %e, "re-watching leader failed")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(prefix = %prefix, error = %e, "reading the leader failed")
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            },
        }
    }
}

/// Follows the leader of one service; see [`Election::observe`].
#[derive(Debug)]
pub struct LeaderObserver {
    rx: watch::Receiver<Option<LeaderInfo>>,
    task: JoinHandle<()>,
}

impl Drop for LeaderObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LeaderObserver {
    /// The leader as last seen.
    pub fn current(&self) -> Option<LeaderInfo> {
        self.rx.borrow().clone()
    }

    /// Waits until the leader differs from the last value this observer returned, and
    /// returns the new one.
    pub async fn changed(&mut self) -> Option<LeaderInfo> {
        if self.rx.changed().await.is_err() {
            return None;
        }
        self.rx.borrow_and_update().clone()
    }

    /// A receiver to share with request handlers.
    pub fn receiver(&self) -> watch::Receiver<Option<LeaderInfo>> {
        self.rx.clone()
    }
}

async fn monitor(
    store: Store,
    key: Key,
    revision: u64,
    mut lease: LeaseWatcher,
    tx: watch::Sender<Option<LeadershipLost>>,
) {
    let deleted = async {
        let mut w = match store
            .watch_key::<serde::de::IgnoredAny>(&key, revision + 1)
            .await
        {
            Ok(w) => w,
            Err(e) => {
                // Without a watch we cannot see a deletion; the lease still protects us.
                tracing::warn!(key = %key, error = %e, "cannot watch the leader key");
                return std::future::pending().await;
            }
        };
        while let Some(ev) = w.next().await {
            if let Ok(crate::WatchEvent::Delete { .. }) = ev {
                return LeadershipLost::KeyDeleted;
            }
        }
        std::future::pending().await
    };
    let reason = tokio::select! {
        r = lease.lost() => LeadershipLost::Lease(r),
        r = deleted => r,
    };
    tracing::warn!(key = %key, %reason, "leadership lost");
    tx.send_if_modified(|cur| {
        if cur.is_none() {
            *cur = Some(reason);
            true
        } else {
            false
        }
    });
}

/// Being the leader of one service. Keep it alive as long as you act as leader; see the
/// module docs for how it ends.
pub struct Leadership {
    service: String,
    address: String,
    key: Key,
    revision: u64,
    lease: Option<Lease>,
    lost_tx: watch::Sender<Option<LeadershipLost>>,
    lost_rx: watch::Receiver<Option<LeadershipLost>>,
    monitor: JoinHandle<()>,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("service", &self.service)
            .field("address", &self.address)
            .field("key", &self.key)
            .field("revision", &self.revision)
            .field("lost", &*self.lost_rx.borrow())
            .finish()
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

/// A cloneable observer of one [`Leadership`]'s end.
#[derive(Debug, Clone)]
pub struct LeadershipWatcher {
    rx: watch::Receiver<Option<LeadershipLost>>,
}

impl LeadershipWatcher {
    /// True while still leading.
    pub fn is_leader(&self) -> bool {
        self.rx.borrow().is_none()
    }

    /// Resolves when leadership ends (at once if it has). If the [`Leadership`] is dropped
    /// the lease is no longer kept alive, so this resolves with an `Unreachable` lease.
    pub async fn lost(&mut self) -> LeadershipLost {
        let seen = match self.rx.wait_for(Option::is_some).await {
            Ok(v) => *v,
            Err(_) => None,
        };
        seen.or(*self.rx.borrow())
            .unwrap_or(LeadershipLost::Lease(LossReason::Unreachable))
    }
}

impl Leadership {
    /// The service led.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The address campaigned with.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The election key (relative).
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The create revision of the election key: the term's fencing token.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The lease id behind the leadership.
    pub fn lease_id(&self) -> i64 {
        self.lease.as_ref().map(Lease::id).unwrap_or(0)
    }

    /// True until leadership is lost.
    pub fn is_leader(&self) -> bool {
        self.lost_rx.borrow().is_none()
    }

    /// Why leadership ended, if it did.
    pub fn lost_reason(&self) -> Option<LeadershipLost> {
        *self.lost_rx.borrow()
    }

    /// Resolves when leadership is lost.
    pub async fn lost(&self) -> LeadershipLost {
        self.watcher().lost().await
    }

    /// A cloneable observer for tasks that must stop when leadership ends.
    pub fn watcher(&self) -> LeadershipWatcher {
        LeadershipWatcher {
            rx: self.lost_rx.clone(),
        }
    }

    /// Gives leadership up now: revokes the lease, which deletes the election key, so the
    /// next candidate is elected at once.
    pub async fn resign(mut self) -> Result<(), StoreError> {
        self.monitor.abort();
        self.lost_tx.send_if_modified(|cur| {
            if cur.is_none() {
                *cur = Some(LeadershipLost::Resigned);
                true
            } else {
                false
            }
        });
        match self.lease.take() {
            Some(lease) => lease.revoke().await,
            None => Ok(()),
        }
    }
}
