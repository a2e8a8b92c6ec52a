//! Mesos role names: `*` (the default, unreserved role), plain names like
//! `slave_public`, and hierarchical names like `eng/frontend`.

use crate::error::ParseError;

/// The default role: resources in it are unreserved.
pub const DEFAULT_ROLE: &str = "*";

/// Checks a role name against the Mesos rules (`roles::validate`): `*`, or `/`-separated
/// components that are non-empty, not `.`/`..`/`*`, do not start with `-`, and contain
/// no whitespace or control characters.
pub fn validate_role(role: &str) -> Result<(), ParseError> {
    if role == DEFAULT_ROLE {
        return Ok(());
    }
    let err = |reason: &str| ParseError::Role {
        role: role.to_owned(),
        reason: reason.to_owned(),
    };
    if role.is_empty() {
        return Err(err("a role name cannot be empty"));
    }
    if role.starts_with('/') {
        return Err(err("a role cannot start with a slash"));
    }
    if role.ends_with('/') {
        return Err(err("a role cannot end with a slash"));
    }
    for component in role.split('/') {
        match component {
            "" => return Err(err("a role cannot contain two adjacent slashes")),
            "." | ".." => return Err(err("a role cannot contain '.' or '..' as a path component")),
            "*" => return Err(err("'*' cannot be a path component of a role")),
            c if c.starts_with('-') => {
                return Err(err("a role path component cannot start with '-'"));
            }
            c if c.chars().any(|ch| ch.is_whitespace() || ch.is_control()) => {
                return Err(err(
                    "a role cannot contain whitespace or control characters",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// True when `role` is strictly below `ancestor` in the role tree: `a/b` and `a/b/c`
/// are strict subroles of `a`; `a` is not a strict subrole of itself; `*` has no
/// subroles.
pub fn is_strict_subrole_of(role: &str, ancestor: &str) -> bool {
    ancestor != DEFAULT_ROLE
        && role.len() > ancestor.len() + 1
        && role.starts_with(ancestor)
        && role.as_bytes().get(ancestor.len()) == Some(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_rules() {
        for ok in ["*", "slave_public", "eng/frontend", "a.b", "r-1"] {
            validate_role(ok).unwrap();
        }
        for bad in [
            "", "/a", "a/", "a//b", ".", "a/..", "-a", "a/-b", "a b", "a/*", "a\tb",
        ] {
            let e = validate_role(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn subroles() {
        assert!(is_strict_subrole_of("a/b", "a"));
        assert!(is_strict_subrole_of("a/b/c", "a"));
        assert!(!is_strict_subrole_of("a", "a"));
        assert!(!is_strict_subrole_of("ab", "a"));
        assert!(!is_strict_subrole_of("a", "*"));
    }
}
