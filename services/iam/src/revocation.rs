//! [`RevocationCache`]: an in-memory mirror of `iam/revoked/` for gateways, so checking
//! whether a token was logged out costs a hash and a set lookup, not an etcd read.

use crate::jwt::token_id;
use crate::model::RevokedToken;
use crate::store::{IamError, revoked_prefix};
use basalt_store::{Store, WatchEvent};
use futures::StreamExt;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Mirrors the revocation list; see the module docs. Dropping it stops the watch.
#[derive(Debug)]
pub struct RevocationCache {
    ids: Arc<RwLock<HashSet<String>>>,
    task: JoinHandle<()>,
}

impl Drop for RevocationCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn load(store: &Store) -> Result<(HashSet<String>, u64), IamError> {
    let listing = store.list::<RevokedToken>(&revoked_prefix()?).await?;
    let ids = listing
        .items
        .iter()
        .filter_map(|(k, _)| k.segments().last().cloned())
        .collect();
    Ok((ids, listing.revision))
}

impl RevocationCache {
    /// Reads the list and starts following it. A revocation written to etcd shows up
    /// here within one watch round trip; if the watch breaks the list is read again.
    pub async fn start(store: Store) -> Result<RevocationCache, IamError> {
        let (initial, revision) = load(&store).await?;
        let ids = Arc::new(RwLock::new(initial));
        let task = tokio::spawn(follow(store, ids.clone(), revision));
        Ok(RevocationCache { ids, task })
    }

    /// Whether `token` (the compact JWT) has been revoked.
    pub fn is_revoked(&self, token: &str) -> bool {
        self.contains_id(&token_id(token))
    }

    /// Whether a token id ([`token_id`]) is in the list.
    pub fn contains_id(&self, id: &str) -> bool {
        self.ids.read().map(|s| s.contains(id)).unwrap_or(true)
    }

    /// How many revoked tokens are mirrored.
    pub fn len(&self) -> usize {
        self.ids.read().map(|s| s.len()).unwrap_or(0)
    }

    /// True if nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn follow(store: Store, ids: Arc<RwLock<HashSet<String>>>, mut revision: u64) {
    loop {
        match watch_once(&store, &ids, revision).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "revocation watch broke; re-reading the list"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match load(&store).await {
            Ok((fresh, rev)) => {
                if let Ok(mut s) = ids.write() {
                    *s = fresh;
                }
                revision = rev;
            }
            Err(e) => tracing::warn!(error = %e, "re-reading the revocation list failed"),
        }
    }
}

async fn watch_once(
    store: &Store,
    ids: &RwLock<HashSet<String>>,
    revision: u64,
) -> Result<(), IamError> {
    let mut w = store
        .watch::<RevokedToken>(&revoked_prefix()?, revision + 1)
        .await?;
    while let Some(ev) = w.next().await {
        let ev = ev?;
        let Some(id) = ev.key().segments().last().cloned() else {
            continue;
        };
        if let Ok(mut s) = ids.write() {
            match ev {
                WatchEvent::Put { .. } => {
                    s.insert(id);
                }
                WatchEvent::Delete { .. } => {
                    s.remove(&id);
                }
            }
        }
    }
    Ok(())
}
