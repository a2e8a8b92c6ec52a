//! Stored records (the JSON values under `iam/`).

use crate::ids::Action;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// An account: a local user (password) or a service account (public key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Account id.
    pub uid: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Argon2id PHC string (local users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// SPKI PEM (service accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Creation time, Unix seconds.
    #[serde(default)]
    pub created: u64,
}

impl UserRecord {
    /// Service accounts log in with a key.
    pub fn is_service(&self) -> bool {
        self.public_key.is_some()
    }
}

/// A group of accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Group id.
    pub gid: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// The access control list of one resource: which accounts and groups may do what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AclRecord {
    /// Resource id.
    pub rid: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// uid → granted actions.
    #[serde(default)]
    pub users: BTreeMap<String, BTreeSet<Action>>,
    /// gid → granted actions.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeSet<Action>>,
}

impl AclRecord {
    /// A new ACL with no grants.
    pub fn new(rid: &str, description: &str) -> AclRecord {
        AclRecord {
            rid: rid.to_owned(),
            description: description.to_owned(),
            ..AclRecord::default()
        }
    }
}

/// A revoked (logged-out) token, kept until it would have expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    /// Whose token.
    pub uid: String,
    /// Its `exp`.
    pub exp: u64,
}

/// Failed logins of one subject within the current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureWindow {
    /// Failures so far.
    pub count: u32,
    /// Start of the window, Unix milliseconds.
    pub since_ms: u64,
}

/// An active lockout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutRecord {
    /// End of the lockout, Unix milliseconds.
    pub until_ms: u64,
    /// Failures that caused it.
    pub failures: u32,
}
