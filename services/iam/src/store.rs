//! Storage: the [`IamStore`] trait and its etcd implementation.
//!
//! Keys (relative to the store root, `/basalt/v1/` by default), built with
//! [`Key::from_segments`] so ids are escaped like every other Basalt key:
//!
//! | key | value | lifetime |
//! |-----|-------|----------|
//! | `iam/users/<uid>` | [`UserRecord`] (argon2 hash or SPKI key) | until deleted |
//! | `iam/groups/<gid>` | [`GroupRecord`] | until deleted |
//! | `iam/memberships/<uid>/<gid>` | `{"gid": gid}` | until removed (written with the user and group versions checked) |
//! | `iam/acls/<rid>` | [`AclRecord`] (users/groups → actions) | until deleted |
//! | `iam/revoked/<sha256 of token>` | [`RevokedToken`] | lease = the token's remaining lifetime |
//! | `iam/login-failures/{uid,addr}/<subject>` | [`FailureWindow`] | lease = the rest of the window |
//! | `iam/lockouts/{uid,addr}/<subject>` | [`LockoutRecord`] | lease = the lockout duration |

use crate::ids::{Action, IdError, SUPERUSER_RID};
use crate::model::{
    AclRecord, FailureWindow, GroupRecord, LockoutRecord, RevokedToken, UserRecord,
};
use basalt_store::{Key, Prefix, Store, StoreError, Versioned};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

/// How often a compare-and-set is retried under contention.
const CAS_ATTEMPTS: u32 = 32;

/// Errors of IAM operations; each names the id concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IamError {
    /// No such account.
    #[error("user {uid:?} does not exist")]
    UnknownUser {
        /// The uid.
        uid: String,
    },
    /// No such group.
    #[error("group {gid:?} does not exist")]
    UnknownGroup {
        /// The gid.
        gid: String,
    },
    /// No ACL for the resource.
    #[error("resource {rid:?} has no ACL")]
    UnknownResource {
        /// The rid.
        rid: String,
    },
    /// The account exists.
    #[error("user {uid:?} already exists")]
    UserExists {
        /// The uid.
        uid: String,
    },
    /// The group exists.
    #[error("group {gid:?} already exists")]
    GroupExists {
        /// The gid.
        gid: String,
    },
    /// The ACL exists.
    #[error("resource {rid:?} already has an ACL")]
    AclExists {
        /// The rid.
        rid: String,
    },
    /// A malformed id.
    #[error(transparent)]
    Invalid(#[from] IdError),
    /// etcd failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A compare-and-set kept losing.
    #[error("{what}: still conflicting after {CAS_ATTEMPTS} attempts")]
    Contention {
        /// The key.
        what: String,
    },
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An account.
    User(String),
    /// A group.
    Group(String),
}

/// What login failures are counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    /// The uid tried.
    Uid,
    /// The client address.
    Addr,
}

impl SubjectKind {
    fn segment(self) -> &'static str {
        match self {
            SubjectKind::Uid => "uid",
            SubjectKind::Addr => "addr",
        }
    }
}

/// A uid or address that failed logins are counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Uid or address.
    pub kind: SubjectKind,
    /// The value.
    pub id: String,
}

/// Lockout thresholds for one subject kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    /// Failures within `window` that start a lockout (0: never).
    pub max_failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long the lockout lasts.
    pub lockout: Duration,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Serialize, Deserialize)]
struct Membership {
    gid: String,
}

/// Storage of users, groups, memberships, ACLs, revoked tokens and login throttling.
///
/// Every method is one consistent operation; the etcd implementation uses
/// compare-and-set so concurrent masters never lose each other's writes.
pub trait IamStore: Clone + Send + Sync + 'static {
    /// One account.
    fn get_user(
        &self,
        uid: &str,
    ) -> impl Future<Output = Result<Option<UserRecord>, IamError>> + Send;
    /// Every account.
    fn list_users(&self) -> impl Future<Output = Result<Vec<UserRecord>, IamError>> + Send;
    /// Creates an account ([`IamError::UserExists`] if taken).
    fn create_user(&self, user: &UserRecord) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Changes description and/or password hash.
    fn update_user(
        &self,
        uid: &str,
        description: Option<String>,
        password_hash: Option<String>,
    ) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Deletes an account, its memberships and its grants.
    fn delete_user(&self, uid: &str) -> impl Future<Output = Result<(), IamError>> + Send;

    /// One group.
    fn get_group(
        &self,
        gid: &str,
    ) -> impl Future<Output = Result<Option<GroupRecord>, IamError>> + Send;
    /// Every group.
    fn list_groups(&self) -> impl Future<Output = Result<Vec<GroupRecord>, IamError>> + Send;
    /// Creates a group ([`IamError::GroupExists`] if taken).
    fn create_group(
        &self,
        group: &GroupRecord,
    ) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Changes a group's description.
    fn update_group(
        &self,
        gid: &str,
        description: String,
    ) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Deletes a group, its memberships and its grants.
    fn delete_group(&self, gid: &str) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Adds `uid` to `gid` (both must exist; idempotent).
    fn add_member(&self, gid: &str, uid: &str)
    -> impl Future<Output = Result<(), IamError>> + Send;
    /// Removes `uid` from `gid`; whether it was a member.
    fn remove_member(
        &self,
        gid: &str,
        uid: &str,
    ) -> impl Future<Output = Result<bool, IamError>> + Send;
    /// The groups `uid` belongs to.
    fn groups_of(&self, uid: &str) -> impl Future<Output = Result<Vec<String>, IamError>> + Send;
    /// The members of `gid`.
    fn members_of(&self, gid: &str) -> impl Future<Output = Result<Vec<String>, IamError>> + Send;

    /// One ACL.
    fn get_acl(
        &self,
        rid: &str,
    ) -> impl Future<Output = Result<Option<AclRecord>, IamError>> + Send;
    /// Every ACL.
    fn list_acls(&self) -> impl Future<Output = Result<Vec<AclRecord>, IamError>> + Send;
    /// Creates an ACL ([`IamError::AclExists`] if present).
    fn create_acl(&self, acl: &AclRecord) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Changes an ACL's description.
    fn update_acl(
        &self,
        rid: &str,
        description: String,
    ) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Deletes an ACL.
    fn delete_acl(&self, rid: &str) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Grants (`granted`) or revokes one action of `principal` on `rid`. Granting needs
    /// the ACL and the principal to exist; both are idempotent.
    fn set_grant(
        &self,
        rid: &str,
        principal: &Principal,
        action: Action,
        granted: bool,
    ) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Revokes every action of `principal` on `rid`.
    fn clear_grants(
        &self,
        rid: &str,
        principal: &Principal,
    ) -> impl Future<Output = Result<(), IamError>> + Send;

    /// Creates `user` if absent and grants it `dcos:superuser full` (creating that ACL if
    /// absent). Safe to run from several masters at once. Returns whether the account
    /// was created by this call.
    fn ensure_superuser(
        &self,
        user: &UserRecord,
    ) -> impl Future<Output = Result<bool, IamError>> + Send;

    /// Records a revoked token until `ttl` from now.
    fn revoke_token(
        &self,
        token_id: &str,
        record: &RevokedToken,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), IamError>> + Send;
    /// Whether a token id is revoked.
    fn is_revoked(&self, token_id: &str) -> impl Future<Output = Result<bool, IamError>> + Send;

    /// The subject's active lockout, if any, as of `now_ms`.
    fn lockout(
        &self,
        subject: &Subject,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<LockoutRecord>, IamError>> + Send;
    /// Counts one failed login; returns the lockout it started, if it reached the
    /// threshold.
    fn record_failure(
        &self,
        subject: &Subject,
        threshold: &Threshold,
        now_ms: u64,
    ) -> impl Future<Output = Result<Option<LockoutRecord>, IamError>> + Send;
    /// Forgets a subject's failures (after a successful login).
    fn clear_failures(
        &self,
        subject: &Subject,
    ) -> impl Future<Output = Result<(), IamError>> + Send;
}

/// The etcd implementation (the real one).
#[derive(Clone, Debug)]
pub struct EtcdIamStore {
    store: Store,
}

fn key(segments: &[&str]) -> Result<Key, IamError> {
    let mut all = vec!["iam"];
    all.extend_from_slice(segments);
    Ok(Key::from_segments(all)?)
}

fn prefix(segments: &[&str]) -> Result<Prefix, IamError> {
    let mut all = vec!["iam"];
    all.extend_from_slice(segments);
    Ok(Prefix::from_segments(all)?)
}

/// `iam/users/<uid>`
pub fn user_key(uid: &str) -> Result<Key, IamError> {
    key(&["users", uid])
}
/// `iam/groups/<gid>`
pub fn group_key(gid: &str) -> Result<Key, IamError> {
    key(&["groups", gid])
}
/// `iam/memberships/<uid>/<gid>`
pub fn membership_key(uid: &str, gid: &str) -> Result<Key, IamError> {
    key(&["memberships", uid, gid])
}
/// `iam/acls/<rid>`
pub fn acl_key(rid: &str) -> Result<Key, IamError> {
    key(&["acls", rid])
}
/// `iam/revoked/<token id>`
pub fn revoked_key(token_id: &str) -> Result<Key, IamError> {
    key(&["revoked", token_id])
}
/// `iam/revoked/`
pub fn revoked_prefix() -> Result<Prefix, IamError> {
    prefix(&["revoked"])
}
/// `iam/login-failures/<kind>/<id>`
pub fn failures_key(subject: &Subject) -> Result<Key, IamError> {
    key(&["login-failures", subject.kind.segment(), &subject.id])
}
/// `iam/lockouts/<kind>/<id>`
pub fn lockout_key(subject: &Subject) -> Result<Key, IamError> {
    key(&["lockouts", subject.kind.segment(), &subject.id])
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict { .. })
}

impl EtcdIamStore {
    /// Wraps a connected [`Store`].
    pub fn new(store: Store) -> EtcdIamStore {
        EtcdIamStore { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn values<T: DeserializeOwned>(&self, p: &Prefix) -> Result<Vec<T>, IamError> {
        Ok(self
            .store
            .list::<T>(p)
            .await?
            .items
            .into_iter()
            .map(|(_, v)| v.value)
            .collect())
    }

    /// Read-modify-write of one ACL under compare-and-set. `f` returns `Ok(false)` when
    /// nothing needs writing. `guards` are extra keys whose versions must not change.
    async fn modify_acl<F>(
        &self,
        rid: &str,
        guards: &[(Key, u64)],
        mut f: F,
    ) -> Result<(), IamError>
    where
        F: FnMut(&mut AclRecord) -> bool + Send,
    {
        let k = acl_key(rid)?;
        for _ in 0..CAS_ATTEMPTS {
            let Some(Versioned { mut value, version }) = self.store.get::<AclRecord>(&k).await?
            else {
                return Err(IamError::UnknownResource {
                    rid: rid.to_owned(),
                });
            };
            if !f(&mut value) {
                return Ok(());
            }
            let mut txn = self.store.txn();
            for (g, v) in guards {
                txn = txn.require_version(g, *v);
            }
            match txn.put_if_version(&k, &value, version).commit().await {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) => {
                    // A guard changed (principal deleted?) or the ACL did: re-check.
                    for (g, v) in guards {
                        let now = self.store.get::<serde_json::Value>(g).await?;
                        if now.map(|n| n.version) != Some(*v) {
                            return Err(Self::vanished(g));
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(IamError::Contention {
            what: k.to_string(),
        })
    }

    fn vanished(k: &Key) -> IamError {
        let seg = k.segments();
        let id = seg.last().cloned().unwrap_or_default();
        match seg.get(1).map(String::as_str) {
            Some("groups") => IamError::UnknownGroup { gid: id },
            _ => IamError::UnknownUser { uid: id },
        }
    }

    /// Removes `principal` from every ACL.
    async fn purge_grants(&self, principal: &Principal) -> Result<(), IamError> {
        for acl in self.list_acls().await? {
            let present = match principal {
                Principal::User(u) => acl.users.contains_key(u),
                Principal::Group(g) => acl.groups.contains_key(g),
            };
            if present {
                match self.clear_grants(&acl.rid, principal).await {
                    Ok(()) | Err(IamError::UnknownResource { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn principal_version(&self, principal: &Principal) -> Result<(Key, u64), IamError> {
        let (k, missing) = match principal {
            Principal::User(uid) => (user_key(uid)?, IamError::UnknownUser { uid: uid.clone() }),
            Principal::Group(gid) => (group_key(gid)?, IamError::UnknownGroup { gid: gid.clone() }),
        };
        match self.store.get::<serde_json::Value>(&k).await? {
            Some(v) => Ok((k, v.version)),
            None => Err(missing),
        }
    }
}

impl IamStore for EtcdIamStore {
    async fn get_user(&self, uid: &str) -> Result<Option<UserRecord>, IamError> {
        Ok(self.store.get(&user_key(uid)?).await?.map(|v| v.value))
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, IamError> {
        self.values(&prefix(&["users"])?).await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<(), IamError> {
        match self.store.create(&user_key(&user.uid)?, user).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Err(IamError::UserExists {
                uid: user.uid.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn update_user(
        &self,
        uid: &str,
        description: Option<String>,
        password_hash: Option<String>,
    ) -> Result<(), IamError> {
        let k = user_key(uid)?;
        for _ in 0..CAS_ATTEMPTS {
            let Some(Versioned { mut value, version }) = self.store.get::<UserRecord>(&k).await?
            else {
                return Err(IamError::UnknownUser {
                    uid: uid.to_owned(),
                });
            };
            if let Some(d) = &description {
                value.description = d.clone();
            }
            if let Some(h) = &password_hash {
                value.password_hash = Some(h.clone());
            }
            match self.store.put_if_version(&k, &value, version).await {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IamError::Contention {
            what: k.to_string(),
        })
    }

    async fn delete_user(&self, uid: &str) -> Result<(), IamError> {
        let k = user_key(uid)?;
        let Some(v) = self.store.get::<serde_json::Value>(&k).await? else {
            return Err(IamError::UnknownUser {
                uid: uid.to_owned(),
            });
        };
        match self
            .store
            .txn()
            .delete_if_version(&k, v.version)
            .delete_prefix(&prefix(&["memberships", uid])?)
            .commit()
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {
                // Changed or deleted meanwhile: report what is there now.
                if self.store.get::<serde_json::Value>(&k).await?.is_none() {
                    return Err(IamError::UnknownUser {
                        uid: uid.to_owned(),
                    });
                }
                return Err(IamError::Contention {
                    what: k.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.purge_grants(&Principal::User(uid.to_owned())).await
    }

    async fn get_group(&self, gid: &str) -> Result<Option<GroupRecord>, IamError> {
        Ok(self.store.get(&group_key(gid)?).await?.map(|v| v.value))
    }

    async fn list_groups(&self) -> Result<Vec<GroupRecord>, IamError> {
        self.values(&prefix(&["groups"])?).await
    }

    async fn create_group(&self, group: &GroupRecord) -> Result<(), IamError> {
        match self.store.create(&group_key(&group.gid)?, group).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Err(IamError::GroupExists {
                gid: group.gid.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn update_group(&self, gid: &str, description: String) -> Result<(), IamError> {
        let k = group_key(gid)?;
        for _ in 0..CAS_ATTEMPTS {
            let Some(Versioned { mut value, version }) = self.store.get::<GroupRecord>(&k).await?
            else {
                return Err(IamError::UnknownGroup {
                    gid: gid.to_owned(),
                });
            };
            value.description = description.clone();
            match self.store.put_if_version(&k, &value, version).await {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IamError::Contention {
            what: k.to_string(),
        })
    }

    async fn delete_group(&self, gid: &str) -> Result<(), IamError> {
        let k = group_key(gid)?;
        if !self.store.delete(&k).await? {
            return Err(IamError::UnknownGroup {
                gid: gid.to_owned(),
            });
        }
        // Memberships of a deleted group: add_member checks the group's version, so no
        // new one can appear after the delete above.
        let all = self.store.list_keys(&prefix(&["memberships"])?).await?;
        for m in all {
            if m.segments().last().map(String::as_str) == Some(gid) {
                self.store.delete(&m).await?;
            }
        }
        self.purge_grants(&Principal::Group(gid.to_owned())).await
    }

    async fn add_member(&self, gid: &str, uid: &str) -> Result<(), IamError> {
        let mk = membership_key(uid, gid)?;
        for _ in 0..CAS_ATTEMPTS {
            // Both must exist, and still be the same records when the membership lands
            // (so a deleted group cannot gain members).
            let (gk, gv) = self
                .principal_version(&Principal::Group(gid.to_owned()))
                .await?;
            let (uk, uv) = self
                .principal_version(&Principal::User(uid.to_owned()))
                .await?;
            let res = self
                .store
                .txn()
                .require_version(&gk, gv)
                .require_version(&uk, uv)
                .put(
                    &mk,
                    &Membership {
                        gid: gid.to_owned(),
                    },
                )
                .commit()
                .await;
            match res {
                Ok(_) => return Ok(()),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IamError::Contention {
            what: mk.to_string(),
        })
    }

    async fn remove_member(&self, gid: &str, uid: &str) -> Result<bool, IamError> {
        Ok(self.store.delete(&membership_key(uid, gid)?).await?)
    }

    async fn groups_of(&self, uid: &str) -> Result<Vec<String>, IamError> {
        let keys = self
            .store
            .list_keys(&prefix(&["memberships", uid])?)
            .await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.segments().last().cloned())
            .collect())
    }

    async fn members_of(&self, gid: &str) -> Result<Vec<String>, IamError> {
        let keys = self.store.list_keys(&prefix(&["memberships"])?).await?;
        Ok(keys
            .iter()
            .filter_map(|k| {
                let s = k.segments();
                (s.len() == 4 && s[3] == gid).then(|| s[2].clone())
            })
            .collect())
    }

    async fn get_acl(&self, rid: &str) -> Result<Option<AclRecord>, IamError> {
        Ok(self.store.get(&acl_key(rid)?).await?.map(|v| v.value))
    }

    async fn list_acls(&self) -> Result<Vec<AclRecord>, IamError> {
        self.values(&prefix(&["acls"])?).await
    }

    async fn create_acl(&self, acl: &AclRecord) -> Result<(), IamError> {
        match self.store.create(&acl_key(&acl.rid)?, acl).await {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Err(IamError::AclExists {
                rid: acl.rid.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    async fn update_acl(&self, rid: &str, description: String) -> Result<(), IamError> {
        self.modify_acl(rid, &[], |acl| {
            acl.description = description.clone();
            true
        })
        .await
    }

    async fn delete_acl(&self, rid: &str) -> Result<(), IamError> {
        if self.store.delete(&acl_key(rid)?).await? {
            Ok(())
        } else {
            Err(IamError::UnknownResource {
                rid: rid.to_owned(),
            })
        }
    }

    async fn set_grant(
        &self,
        rid: &str,
        principal: &Principal,
        action: Action,
        granted: bool,
    ) -> Result<(), IamError> {
        let guards = if granted {
            vec![self.principal_version(principal).await?]
        } else {
            Vec::new()
        };
        self.modify_acl(rid, &guards, |acl| {
            let map = match principal {
                Principal::User(u) => (&mut acl.users, u),
                Principal::Group(g) => (&mut acl.groups, g),
            };
            let (map, id) = map;
            if granted {
                map.entry(id.clone()).or_default().insert(action)
            } else {
                let Some(set) = map.get_mut(id) else {
                    return false;
                };
                let changed = set.remove(&action);
                if set.is_empty() {
                    map.remove(id);
                }
                changed
            }
        })
        .await
    }

    async fn clear_grants(&self, rid: &str, principal: &Principal) -> Result<(), IamError> {
        self.modify_acl(rid, &[], |acl| match principal {
            Principal::User(u) => acl.users.remove(u).is_some(),
            Principal::Group(g) => acl.groups.remove(g).is_some(),
        })
        .await
    }

    async fn ensure_superuser(&self, user: &UserRecord) -> Result<bool, IamError> {
        let created = match self.create_user(user).await {
            Ok(()) => true,
            Err(IamError::UserExists { .. }) => false,
            Err(e) => return Err(e),
        };
        match self
            .create_acl(&AclRecord::new(
                SUPERUSER_RID,
                "Superuser: every permission",
            ))
            .await
        {
            Ok(()) | Err(IamError::AclExists { .. }) => {}
            Err(e) => return Err(e),
        }
        self.set_grant(
            SUPERUSER_RID,
            &Principal::User(user.uid.clone()),
            Action::Full,
            true,
        )
        .await?;
        Ok(created)
    }

    async fn revoke_token(
        &self,
        token_id: &str,
        record: &RevokedToken,
        ttl: Duration,
    ) -> Result<(), IamError> {
        let lease = self
            .store
            .grant_lease(ttl.max(Duration::from_secs(1)))
            .await?;
        self.store
            .put_with_lease(&revoked_key(token_id)?, record, &lease)
            .await?;
        // Dropping the handle stops the keep-alive: the key goes when the TTL ends.
        drop(lease);
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool, IamError> {
        Ok(self
            .store
            .get::<RevokedToken>(&revoked_key(token_id)?)
            .await?
            .is_some_and(|v| v.value.exp >= crate::jwt::now_unix()))
    }

    async fn lockout(
        &self,
        subject: &Subject,
        now_ms: u64,
    ) -> Result<Option<LockoutRecord>, IamError> {
        Ok(self
            .store
            .get::<LockoutRecord>(&lockout_key(subject)?)
            .await?
            .map(|v| v.value)
            .filter(|r| r.until_ms > now_ms))
    }

    async fn record_failure(
        &self,
        subject: &Subject,
        threshold: &Threshold,
        now_ms: u64,
    ) -> Result<Option<LockoutRecord>, IamError> {
        if threshold.max_failures == 0 {
            return Ok(None);
        }
        let fk = failures_key(subject)?;
        let lk = lockout_key(subject)?;
        let window = ms(threshold.window);
        for _ in 0..CAS_ATTEMPTS {
            let cur = self.store.get::<FailureWindow>(&fk).await?;
            let (count, since, version) = match cur {
                Some(v) if now_ms.saturating_sub(v.value.since_ms) < window => {
                    (v.value.count.saturating_add(1), v.value.since_ms, v.version)
                }
                Some(v) => (1, now_ms, v.version),
                None => (1, now_ms, 0),
            };
            let res = if count >= threshold.max_failures {
                let rec = LockoutRecord {
                    until_ms: now_ms.saturating_add(ms(threshold.lockout)),
                    failures: count,
                };
                let lease = self.store.grant_lease(threshold.lockout).await?;
                let mut txn = self.store.txn().require_version(&fk, version);
                if version > 0 {
                    txn = txn.delete(&fk);
                }
                txn.put_with_lease(&lk, &rec, &lease)
                    .commit()
                    .await
                    .map(|_| Some(rec))
            } else {
                let rest =
                    Duration::from_millis(since.saturating_add(window).saturating_sub(now_ms));
                let lease = self.store.grant_lease(rest).await?;
                self.store
                    .txn()
                    .require_version(&fk, version)
                    .put_with_lease(
                        &fk,
                        &FailureWindow {
                            count,
                            since_ms: since,
                        },
                        &lease,
                    )
                    .commit()
                    .await
                    .map(|_| None)
            };
            match res {
                Ok(r) => return Ok(r),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IamError::Contention {
            what: fk.to_string(),
        })
    }

    async fn clear_failures(&self, subject: &Subject) -> Result<(), IamError> {
        self.store.delete(&failures_key(subject)?).await?;
        Ok(())
    }
}
