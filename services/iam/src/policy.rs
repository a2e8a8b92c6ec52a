//! [`PolicyCache`]: an in-memory mirror of accounts, memberships and ACLs for gateways,
//! so a permission check costs a few hash lookups instead of etcd reads.
//!
//! It reads all of `iam/` at one revision, then follows a watch from the next revision
//! (re-reading everything if the watch breaks). Changes made through the IAM API show
//! up within one watch round trip; [`PolicyCache::revision`] tells how fresh it is.

use crate::authz::{Decision, decide};
use crate::ids::{Action, SUPERUSER_RID};
use crate::model::AclRecord;
use crate::store::IamError;
use basalt_store::{Key, Prefix, Store, WatchEvent};
use futures::StreamExt;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct State {
    users: HashSet<String>,
    memberships: HashMap<String, BTreeSet<String>>,
    acls: HashMap<String, AclRecord>,
    revision: u64,
}

impl State {
    fn apply(&mut self, key: &Key, value: Option<&serde_json::Value>) {
        let seg = key.segments();
        match (seg.get(1).map(String::as_str), seg.len(), value) {
            (Some("users"), 3, Some(_)) => {
                self.users.insert(seg[2].clone());
            }
            (Some("users"), 3, None) => {
                self.users.remove(&seg[2]);
            }
            (Some("memberships"), 4, Some(_)) => {
                self.memberships
                    .entry(seg[2].clone())
                    .or_default()
                    .insert(seg[3].clone());
            }
            (Some("memberships"), 4, None) => {
                if let Some(set) = self.memberships.get_mut(&seg[2]) {
                    set.remove(&seg[3]);
                    if set.is_empty() {
                        self.memberships.remove(&seg[2]);
                    }
                }
            }
            (Some("acls"), 3, Some(v)) => match serde_json::from_value::<AclRecord>(v.clone()) {
                Ok(acl) => {
                    self.acls.insert(seg[2].clone(), acl);
                }
                Err(e) => tracing::warn!(key = %key, error = %e, "undecodable ACL ignored"),
            },
            (Some("acls"), 3, None) => {
                self.acls.remove(&seg[2]);
            }
            _ => {}
        }
    }
}

/// Mirrors the IAM policy; see the module docs. Dropping it stops the watch.
#[derive(Debug)]
pub struct PolicyCache {
    state: Arc<RwLock<State>>,
    task: JoinHandle<()>,
}

impl Drop for PolicyCache {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn iam_prefix() -> Result<Prefix, IamError> {
    Ok(Prefix::from_segments(["iam"])?)
}

async fn load(store: &Store) -> Result<State, IamError> {
    let listing = store.list::<serde_json::Value>(&iam_prefix()?).await?;
    let mut st = State {
        revision: listing.revision,
        ..State::default()
    };
    for (key, v) in &listing.items {
        st.apply(key, Some(&v.value));
    }
    Ok(st)
}

impl PolicyCache {
    /// Reads the policy and starts following it.
    pub async fn start(store: Store) -> Result<PolicyCache, IamError> {
        let state = Arc::new(RwLock::new(load(&store).await?));
        let task = tokio::spawn(follow(store, state.clone()));
        Ok(PolicyCache { state, task })
    }

    /// May `uid` perform `action` on `rid`? Same rules as [`crate::Authorizer`].
    pub fn authorize(&self, uid: &str, rid: &str, action: Action) -> Decision {
        let Ok(st) = self.state.read() else {
            return Decision {
                allowed: false,
                grant: None,
            };
        };
        if !st.users.contains(uid) {
            return Decision {
                allowed: false,
                grant: None,
            };
        }
        let groups: Vec<String> = st
            .memberships
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        decide(
            uid,
            &groups,
            st.acls.get(rid),
            st.acls.get(SUPERUSER_RID),
            action,
        )
    }

    /// The etcd revision the mirror reflects.
    pub fn revision(&self) -> u64 {
        self.state.read().map(|s| s.revision).unwrap_or(0)
    }
}

async fn follow(store: Store, state: Arc<RwLock<State>>) {
    loop {
        let from = state.read().map(|s| s.revision).unwrap_or(0);
        if let Err(e) = watch_once(&store, &state, from).await {
            tracing::warn!(error = %e, "IAM policy watch broke; re-reading");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match load(&store).await {
            Ok(fresh) => {
                if let Ok(mut s) = state.write() {
                    *s = fresh;
                }
            }
            Err(e) => tracing::warn!(error = %e, "re-reading the IAM policy failed"),
        }
    }
}

async fn watch_once(store: &Store, state: &RwLock<State>, from: u64) -> Result<(), IamError> {
    let mut w = store
        .watch::<serde_json::Value>(&iam_prefix()?, from + 1)
        .await?;
    while let Some(ev) = w.next().await {
        let ev = ev?;
        if let Ok(mut s) = state.write() {
            match &ev {
                WatchEvent::Put { key, value } => s.apply(key, Some(&value.value)),
                WatchEvent::Delete { key, .. } => s.apply(key, None),
            }
            s.revision = s.revision.max(ev.version());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_tracks_users_memberships_and_acls() {
        let mut st = State::default();
        let k = |s: &[&str]| Key::from_segments(s.iter().copied()).unwrap();
        let v = serde_json::json!({});
        st.apply(&k(&["iam", "users", "alice"]), Some(&v));
        st.apply(&k(&["iam", "memberships", "alice", "ops"]), Some(&v));
        let acl = serde_json::json!({"rid": "dcos:x", "groups": {"ops": ["read"]}});
        st.apply(&k(&["iam", "acls", "dcos:x"]), Some(&acl));
        st.apply(&k(&["iam", "revoked", "abc"]), Some(&v));
        assert!(st.users.contains("alice"));
        assert_eq!(st.acls["dcos:x"].groups["ops"].len(), 1);
        st.apply(&k(&["iam", "memberships", "alice", "ops"]), None);
        assert!(st.memberships.is_empty());
        st.apply(&k(&["iam", "users", "alice"]), None);
        assert!(st.users.is_empty());
    }
}
