//! Constant-time comparison of the agent join credential.

use ring::hmac;

/// True when `presented` equals `expected`, compared in constant time: both are
/// HMAC'd under a fresh random key and the tags compared with `ring::hmac::verify`, so
/// neither the content nor the length of the credential leaks through timing.
pub fn credential_matches(expected: &[u8], presented: &[u8]) -> bool {
    let rng = ring::rand::SystemRandom::new();
    let Ok(key) = hmac::Key::generate(hmac::HMAC_SHA256, &rng) else {
        return false;
    };
    let tag = hmac::sign(&key, expected);
    hmac::verify(&key, presented, tag.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares() {
        assert!(credential_matches(b"abc", b"abc"));
        assert!(!credential_matches(b"abc", b"abd"));
        assert!(!credential_matches(b"abc", b"ab"));
        assert!(!credential_matches(b"abc", b""));
    }
}
