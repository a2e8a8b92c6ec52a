//! Password hashes for `auth.superuser_password_hash` (argon2id, PHC string form).
//!
//! `basalt-installer hash-password` prints what [`hash_password`] returns; the IAM
//! service checks logins with [`verify_password`] against the same string.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use ring::rand::{SecureRandom, SystemRandom};

/// Errors from hashing or checking a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password is empty or only whitespace.
    #[error("password: must not be empty")]
    Empty,
    /// The stored hash is not an argon2 PHC string.
    #[error("password hash: not an argon2 PHC string ({0})")]
    BadHash(String),
    /// argon2 itself failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hashes `password` with argon2id and a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.trim().is_empty() {
        return Err(PasswordError::Empty);
    }
    let mut raw = [0u8; 16];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| PasswordError::Hash("no system randomness".to_owned()))?;
    let salt = SaltString::encode_b64(&raw).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Checks `password` against a PHC string made by [`hash_password`].
/// `Ok(false)` is a wrong password; `Err` is a malformed hash.
pub fn verify_password(password: &str, phc: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|e| PasswordError::BadHash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("s3cret pass").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret pass", &h).unwrap());
        assert!(!verify_password("wrong", &h).unwrap());
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash_password("x1").unwrap(), hash_password("x1").unwrap());
    }

    #[test]
    fn bad_inputs_are_named() {
        assert!(matches!(hash_password("  "), Err(PasswordError::Empty)));
        let e = verify_password("x", "not-a-hash").unwrap_err();
        assert!(e.to_string().starts_with("password hash:"), "{e}");
    }
}
