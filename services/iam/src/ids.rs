//! Identifier syntax (uids, gids, resource ids) and permission actions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest uid accepted (DC/OS: 1–96 characters).
pub const MAX_UID_LEN: usize = 96;
/// Longest gid accepted.
pub const MAX_GID_LEN: usize = 96;
/// Longest resource id accepted.
pub const MAX_RID_LEN: usize = 512;

/// The resource whose `full` grant makes an account a superuser.
pub const SUPERUSER_RID: &str = "dcos:superuser";

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct IdError {
    /// `uid`, `gid`, `rid` or `action`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn check(
    field: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    allowed_text: &str,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError {
            field,
            reason: "must not be empty".to_owned(),
        });
    }
    if value.len() > max {
        return Err(IdError {
            field,
            reason: format!("{} characters, the limit is {max}", value.len()),
        });
    }
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return Err(IdError {
            field,
            reason: format!("{value:?} contains {c:?}; allowed: {allowed_text}"),
        });
    }
    Ok(())
}

/// Account ids: `^[a-zA-Z0-9._@-]{1,96}$`, not starting with `.` or `-`.
pub fn validate_uid(uid: &str) -> Result<(), IdError> {
    check(
        "uid",
        uid,
        MAX_UID_LEN,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'),
        "letters, digits, '.', '_', '@', '-'",
    )?;
    if uid.starts_with(['.', '-']) {
        return Err(IdError {
            field: "uid",
            reason: format!("{uid:?} must start with a letter, digit, '_' or '@'"),
        });
    }
    Ok(())
}

/// Group ids: `^[a-zA-Z0-9._-]{1,96}$`, not starting with `.` or `-`.
pub fn validate_gid(gid: &str) -> Result<(), IdError> {
    check(
        "gid",
        gid,
        MAX_GID_LEN,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        "letters, digits, '.', '_', '-'",
    )?;
    if gid.starts_with(['.', '-']) {
        return Err(IdError {
            field: "gid",
            reason: format!("{gid:?} must start with a letter, digit or '_'"),
        });
    }
    Ok(())
}

/// Resource ids such as `dcos:adminrouter:service:marathon` or
/// `dcos:mesos:master:framework:role:*`: printable ASCII without spaces, quotes or
/// backslashes, up to 512 characters.
pub fn validate_rid(rid: &str) -> Result<(), IdError> {
    check(
        "rid",
        rid,
        MAX_RID_LEN,
        |c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '?' | '#'),
        "printable ASCII except '\"', '\\\\', '?', '#'",
    )
}

/// What may be done to a resource. `full` implies every other action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Create.
    Create,
    /// Read.
    Read,
    /// Update.
    Update,
    /// Delete.
    Delete,
    /// Everything.
    Full,
}

impl Action {
    /// Every action, in display order.
    pub const ALL: [Action; 5] = [
        Action::Create,
        Action::Read,
        Action::Update,
        Action::Delete,
        Action::Full,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Full => "full",
        }
    }

    /// Whether holding `self` permits `wanted`.
    pub fn permits(self, wanted: Action) -> bool {
        self == Action::Full || self == wanted
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| IdError {
                field: "action",
                reason: format!("{s:?} is not one of create, read, update, delete, full"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids() {
        for ok in [
            "alice",
            "bootstrapuser",
            "svc.marathon-lb",
            "a@b.c",
            "_x",
            "A1",
        ] {
            validate_uid(ok).unwrap();
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "ä", &"x".repeat(97)] {
            let e = validate_uid(bad).unwrap_err();
            assert_eq!(e.field, "uid", "{bad}");
        }
    }

    #[test]
    fn gids_and_rids() {
        validate_gid("ops-team").unwrap();
        assert!(validate_gid("a@b").is_err());
        validate_rid("dcos:adminrouter:service:marathon").unwrap();
        validate_rid("dcos:mesos:master:framework:role:*").unwrap();
        validate_rid("dcos:adminrouter:service:group/app").unwrap();
        assert!(validate_rid("a b").is_err());
        assert!(validate_rid("").is_err());
    }

    #[test]
    fn actions() {
        assert_eq!("read".parse::<Action>().unwrap(), Action::Read);
        assert!("write".parse::<Action>().is_err());
        assert!(Action::Full.permits(Action::Read));
        assert!(Action::Full.permits(Action::Full));
        assert!(!Action::Read.permits(Action::Full));
        assert!(!Action::Read.permits(Action::Update));
    }
}
