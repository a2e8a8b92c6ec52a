//! Authorization: may account `uid` perform `action` on resource `rid`?
//!
//! An account is allowed when its own grants on `rid`, or the grants of any group it
//! belongs to, include `action` or `full`; superusers (`dcos:superuser` `full`, directly
//! or through a group) are allowed everything. Resource ids match exactly. Unknown
//! accounts are never allowed.

use crate::ids::{Action, SUPERUSER_RID, validate_rid, validate_uid};
use crate::model::AclRecord;
use crate::store::{IamError, IamStore};

/// Why access was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `dcos:superuser` `full`, directly.
    Superuser,
    /// `dcos:superuser` `full` through a group.
    SuperuserGroup(String),
    /// A direct grant on the resource.
    Direct,
    /// A grant to this group on the resource.
    Group(String),
}

/// The answer of [`decide`] / [`Authorizer::authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed?
    pub allowed: bool,
    /// The grant that allowed it.
    pub grant: Option<Grant>,
}

fn holds(acl: Option<&AclRecord>, uid: &str, groups: &[String], action: Action) -> Option<Grant> {
    let acl = acl?;
    if acl
        .users
        .get(uid)
        .is_some_and(|set| set.iter().any(|a| a.permits(action)))
    {
        return Some(Grant::Direct);
    }
    groups.iter().find_map(|g| {
        acl.groups
            .get(g)
            .is_some_and(|set| set.iter().any(|a| a.permits(action)))
            .then(|| Grant::Group(g.clone()))
    })
}

/// The pure decision over already-read records: `acl` is the resource's ACL, `superuser`
/// the `dcos:superuser` ACL, `groups` the account's groups.
pub fn decide(
    uid: &str,
    groups: &[String],
    acl: Option<&AclRecord>,
    superuser: Option<&AclRecord>,
    action: Action,
) -> Decision {
    let grant = match holds(superuser, uid, groups, Action::Full) {
        Some(Grant::Direct) => Some(Grant::Superuser),
        Some(Grant::Group(g)) => Some(Grant::SuperuserGroup(g)),
        _ => holds(acl, uid, groups, action),
    };
    Decision {
        allowed: grant.is_some(),
        grant,
    }
}

/// Answers authorization questions from the store (a few etcd reads, run concurrently).
/// This is the library form of `GET /internal/acs/api/v1/authorize`.
#[derive(Clone, Debug)]
pub struct Authorizer<S> {
    store: S,
}

impl<S: IamStore> Authorizer<S> {
    /// Over `store`.
    pub fn new(store: S) -> Authorizer<S> {
        Authorizer { store }
    }

    /// May `uid` perform `action` on `rid`?
    pub async fn authorize(
        &self,
        uid: &str,
        rid: &str,
        action: Action,
    ) -> Result<Decision, IamError> {
        validate_uid(uid)?;
        validate_rid(rid)?;
        let (user, groups, acl, superuser) = tokio::try_join!(
            self.store.get_user(uid),
            self.store.groups_of(uid),
            self.store.get_acl(rid),
            async {
                if rid == SUPERUSER_RID {
                    Ok(None)
                } else {
                    self.store.get_acl(SUPERUSER_RID).await
                }
            },
        )?;
        if user.is_none() {
            return Ok(Decision {
                allowed: false,
                grant: None,
            });
        }
        let superuser = if rid == SUPERUSER_RID {
            acl.as_ref()
        } else {
            superuser.as_ref()
        };
        Ok(decide(uid, &groups, acl.as_ref(), superuser, action))
    }

    /// Whether `uid` is a superuser.
    pub async fn is_superuser(&self, uid: &str) -> Result<bool, IamError> {
        Ok(self
            .authorize(uid, SUPERUSER_RID, Action::Full)
            .await?
            .allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(rid: &str, users: &[(&str, &[Action])], groups: &[(&str, &[Action])]) -> AclRecord {
        let mut a = AclRecord::new(rid, "");
        for (u, acts) in users {
            a.users
                .insert((*u).to_owned(), acts.iter().copied().collect());
        }
        for (g, acts) in groups {
            a.groups
                .insert((*g).to_owned(), acts.iter().copied().collect());
        }
        a
    }

    #[test]
    fn direct_group_full_superuser() {
        let m = acl(
            "dcos:adminrouter:service:marathon",
            &[("alice", &[Action::Read]), ("bob", &[Action::Full])],
            &[("ops", &[Action::Update])],
        );
        let su = acl(
            SUPERUSER_RID,
            &[("root", &[Action::Full])],
            &[("admins", &[Action::Full])],
        );
        let d = |uid: &str, groups: &[&str], action| {
            let g: Vec<String> = groups.iter().map(|s| (*s).to_owned()).collect();
            decide(uid, &g, Some(&m), Some(&su), action)
        };
        assert_eq!(d("alice", &[], Action::Read).grant, Some(Grant::Direct));
        assert!(!d("alice", &[], Action::Update).allowed);
        assert!(!d("alice", &[], Action::Full).allowed);
        assert!(d("bob", &[], Action::Delete).allowed, "full implies delete");
        assert_eq!(
            d("carol", &["ops"], Action::Update).grant,
            Some(Grant::Group("ops".to_owned()))
        );
        assert!(!d("carol", &["ops"], Action::Read).allowed);
        assert!(!d("carol", &[], Action::Update).allowed);
        assert_eq!(d("root", &[], Action::Delete).grant, Some(Grant::Superuser));
        assert_eq!(
            d("dave", &["admins"], Action::Create).grant,
            Some(Grant::SuperuserGroup("admins".to_owned()))
        );
        // No ACL at all: only superusers.
        assert!(!decide("alice", &[], None, Some(&su), Action::Read).allowed);
        assert!(decide("root", &[], None, Some(&su), Action::Read).allowed);
        // A superuser grant other than full does not make a superuser.
        let weak = acl(SUPERUSER_RID, &[("eve", &[Action::Read])], &[]);
        assert!(!decide("eve", &[], Some(&m), Some(&weak), Action::Read).allowed);
    }
}
