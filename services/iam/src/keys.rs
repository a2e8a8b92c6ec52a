//! PEM handling and the public-key types accepted for tokens.
//!
//! - The IAM's own token key is Ed25519: PKCS#8 `PRIVATE KEY` PEM for signing
//!   (`etc/iam-signing-key.pem` on masters) and SPKI `PUBLIC KEY` PEM for verifying
//!   (`etc/iam-public-key.pem` on every node).
//! - Service accounts register an SPKI `PUBLIC KEY` PEM of type RSA (login tokens
//!   `RS256`), EC P-256 (`ES256`) or Ed25519 (`EdDSA`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of an EC P-256 SubjectPublicKeyInfo with an uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not PEM with the expected label.
    #[error("{what}: not a PEM {label} block ({reason})")]
    Pem {
        /// Which key.
        what: String,
        /// Expected label.
        label: &'static str,
        /// Detail.
        reason: String,
    },
    /// PEM, but not a usable key.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which key.
        what: String,
        /// Detail.
        reason: String,
    },
}

/// Decodes the first `-----BEGIN <label>-----` block of `text`.
pub fn pem_decode(what: &str, text: &str, label: &'static str) -> Result<Vec<u8>, KeyError> {
    let err = |reason: &str| KeyError::Pem {
        what: what.to_owned(),
        label,
        reason: reason.to_owned(),
    };
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(|| err("no BEGIN line"))? + begin.len();
    let stop = text[start..].find(&end).ok_or_else(|| err("no END line"))? + start;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|e| err(&format!("bad base64: {e}")))?;
    if der.is_empty() {
        return Err(err("empty body"));
    }
    Ok(der)
}

/// Encodes DER as PEM with 64-column lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// SPKI `PUBLIC KEY` PEM of a raw Ed25519 public key.
pub fn ed25519_public_key_pem(raw: &[u8]) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(raw);
    pem_encode("PUBLIC KEY", &der)
}

/// SPKI `PUBLIC KEY` PEM of an uncompressed P-256 point (65 bytes, `04 || x || y`), as
/// `ring::signature::EcdsaKeyPair::public_key` returns it.
pub fn p256_public_key_pem(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    pem_encode("PUBLIC KEY", &der)
}

/// A public key a login token may be signed with, and the only JWT `alg` it accepts.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA, `RSAPublicKey` DER (PKCS#1): `RS256`.
    Rsa(Vec<u8>),
    /// EC P-256 uncompressed point: `ES256`.
    P256(Vec<u8>),
    /// Ed25519 raw 32 bytes: `EdDSA`.
    Ed25519(Vec<u8>),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.jwt_alg())
    }
}

impl PublicKey {
    /// Parses an SPKI `PUBLIC KEY` PEM. `what` names the key in errors.
    pub fn from_spki_pem(what: &str, pem: &str) -> Result<PublicKey, KeyError> {
        let der = pem_decode(what, pem, "PUBLIC KEY")?;
        Self::from_spki_der(what, &der)
    }

    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(what: &str, der: &[u8]) -> Result<PublicKey, KeyError> {
        let invalid = |reason: String| KeyError::Invalid {
            what: what.to_owned(),
            reason,
        };
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| invalid(format!("not a SubjectPublicKeyInfo: {e}")))?;
        if !rest.is_empty() {
            return Err(invalid("trailing bytes after the key".to_owned()));
        }
        let oid = &spki.algorithm.algorithm;
        let bits = spki.subject_public_key.data.to_vec();
        if *oid == OID_PKCS1_RSAENCRYPTION {
            // ring checks the modulus size (2048..8192 bits) at verification; check it
            // here too so registration fails early.
            let parsed = spki
                .parsed()
                .map_err(|e| invalid(format!("bad RSA key: {e}")))?;
            let size = match parsed {
                x509_parser::public_key::PublicKey::RSA(rsa) => rsa.key_size(),
                _ => 0,
            };
            if !(2048..=8192).contains(&size) {
                return Err(invalid(format!(
                    "RSA key of {size} bits; 2048 to 8192 bits are accepted"
                )));
            }
            Ok(PublicKey::Rsa(bits))
        } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve.as_ref() != Some(&OID_EC_P256) {
                return Err(invalid(
                    "EC key on a curve other than P-256; only P-256 (ES256) is accepted".to_owned(),
                ));
            }
            if bits.len() != 65 || bits.first() != Some(&4) {
                return Err(invalid(
                    "EC P-256 key is not an uncompressed point".to_owned(),
                ));
            }
            Ok(PublicKey::P256(bits))
        } else if *oid == OID_SIG_ED25519 {
            if bits.len() != 32 {
                return Err(invalid(format!(
                    "Ed25519 key of {} bytes; expected 32",
                    bits.len()
                )));
            }
            Ok(PublicKey::Ed25519(bits))
        } else {
            Err(invalid(format!(
                "unsupported key algorithm {oid}; use RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA)"
            )))
        }
    }

    /// The JWT `alg` for this key.
    pub fn jwt_alg(&self) -> &'static str {
        match self {
            PublicKey::Rsa(_) => "RS256",
            PublicKey::P256(_) => "ES256",
            PublicKey::Ed25519(_) => "EdDSA",
        }
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{
            ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
        };
        match self {
            PublicKey::Rsa(k) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, k)
                .verify(message, signature)
                .is_ok(),
            PublicKey::P256(k) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k)
                .verify(message, signature)
                .is_ok(),
            PublicKey::Ed25519(k) => UnparsedPublicKey::new(&ED25519, k)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    #[test]
    fn ed25519_and_p256_round_trip() {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let pem = ed25519_public_key_pem(kp.public_key().as_ref());
        let key = PublicKey::from_spki_pem("k", &pem).unwrap();
        assert_eq!(key.jwt_alg(), "EdDSA");
        let sig = kp.sign(b"m");
        assert!(key.verify(b"m", sig.as_ref()));
        assert!(!key.verify(b"n", sig.as_ref()));

        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        let pem = p256_public_key_pem(kp.public_key().as_ref());
        let key = PublicKey::from_spki_pem("k", &pem).unwrap();
        assert_eq!(key.jwt_alg(), "ES256");
        let sig = kp.sign(&rng, b"m").unwrap();
        assert!(key.verify(b"m", sig.as_ref()));
    }

    #[test]
    fn rsa_fixture_parses() {
        let pem = include_str!("../tests/fixtures/rsa-service-pub.pem");
        assert_eq!(
            PublicKey::from_spki_pem("k", pem).unwrap().jwt_alg(),
            "RS256"
        );
    }

    #[test]
    fn garbage_is_named() {
        let e = PublicKey::from_spki_pem("public_key", "hello").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("public_key: not a PEM PUBLIC KEY"),
            "{e}"
        );
        let e = PublicKey::from_spki_pem(
            "public_key",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a SubjectPublicKeyInfo"), "{e}");
    }
}
