//! The user a task runs as: looked up in the agent (the child only makes raw
//! `setgroups`/`setresgid`/`setresuid` calls, see the `launch` module).

use nix::unistd::{Gid, Uid, User};

use super::error::ContainerizerError;

/// Credentials to switch to in the child, with `initgroups`' supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUser {
    /// The user name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Every group it is in (primary included), as `initgroups(3)` would set.
    pub groups: Vec<u32>,
}

/// Looks `name` up; an unknown user is [`ContainerizerError::UnknownUser`].
pub fn lookup(name: &str) -> Result<TaskUser, ContainerizerError> {
    let user = User::from_name(name)
        .map_err(|source| ContainerizerError::UserLookup {
            user: name.to_owned(),
            source,
        })?
        .ok_or_else(|| ContainerizerError::UnknownUser {
            user: name.to_owned(),
        })?;
    let cname = std::ffi::CString::new(name).map_err(|_| ContainerizerError::NulByte {
        field: format!("user '{name}'"),
    })?;
    let groups = nix::unistd::getgrouplist(&cname, user.gid)
        .map_err(|source| ContainerizerError::UserLookup {
            user: name.to_owned(),
            source,
        })?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    Ok(TaskUser {
        name: name.to_owned(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
    })
}

/// The credentials to switch to for a task that asks for `requested`: `None` when it
/// runs as the agent's user (no user asked for, `switch_user` off, or the same uid).
/// An unknown user is an error even when no switch would happen, so a typo is never
/// silently ignored.
pub fn resolve(
    requested: Option<&str>,
    switch_user: bool,
) -> Result<Option<TaskUser>, ContainerizerError> {
    let Some(name) = requested else {
        return Ok(None);
    };
    let user = lookup(name)?;
    let me = Uid::effective();
    if !switch_user || user.uid == me.as_raw() {
        return Ok(None);
    }
    if !me.is_root() {
        return Err(ContainerizerError::UserSwitchNotPermitted {
            user: name.to_owned(),
            agent_uid: me.as_raw(),
        });
    }
    Ok(Some(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        let e = lookup("no-such-user-basalt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "user 'no-such-user-basalt' does not exist on the agent"
        );
        assert!(resolve(Some("no-such-user-basalt"), false).is_err());
        assert_eq!(resolve(None, true).unwrap(), None);
    }
}
