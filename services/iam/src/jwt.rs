//! JSON Web Tokens: the IAM's own EdDSA tokens and service-account login tokens.
//!
//! A Basalt auth token is a compact JWS: header `{"alg":"EdDSA","typ":"JWT","kid":..}`,
//! claims `{"uid","exp","iat","iss","jti"}`, signed with the cluster's Ed25519 IAM key.
//! [`TokenVerifier`] is what the gateway holds: built from `etc/iam-public-key.pem` (or
//! the JWKS), it checks a token without any I/O.
//!
//! Verification is strict: the `alg` must be exactly the one the key is for (`none`, `HS*`
//! and every mismatch are refused before any signature check), `crit` is refused, the
//! `kid` must name a known key when present, `uid` and `exp` are required, and `exp` is
//! checked with a small leeway.

use crate::ids::validate_uid;
use crate::keys::{KeyError, PublicKey, pem_decode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The default leeway on `exp` / `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a token was refused. The gateway answers all of them with 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is not the one the key is for.
    #[error("token algorithm {found:?} not accepted (expected {expected})")]
    Algorithm {
        /// The header's `alg`.
        found: String,
        /// What the key accepts.
        expected: &'static str,
    },
    /// `kid` names no known key.
    #[error("token key id {0:?} is not known")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("token signature does not verify")]
    Signature,
    /// A required claim is missing or has the wrong type.
    #[error("token claim {claim}: {reason}")]
    Claim {
        /// Claim name.
        claim: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `exp` has passed.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// The claim.
        exp: u64,
        /// The time checked against.
        now: u64,
    },
    /// The token lives longer than allowed (service login tokens).
    #[error("token lifetime {lifetime_s}s exceeds the limit of {limit_s}s")]
    TooLong {
        /// exp - now (or exp - iat).
        lifetime_s: u64,
        /// The limit.
        limit_s: u64,
    },
}

/// The verified claims of a Basalt auth token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Account id.
    pub uid: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Unique token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The parts of a compact JWS, decoded.
struct Parts<'a> {
    signing_input: &'a [u8],
    header: Header,
    claims: serde_json::Map<String, serde_json::Value>,
    signature: Vec<u8>,
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|e| TokenError::Malformed(format!("{what} is not base64url: {e}")))
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "{} bytes, the limit is {MAX_TOKEN_LEN}",
            token.len()
        )));
    }
    let mut it = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(TokenError::Malformed(
            "expected three '.'-separated parts".to_owned(),
        ));
    };
    let header: Header = serde_json::from_slice(&b64(h, "header")?)
        .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&b64(c, "claims")?)
            .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    let signature = b64(s, "signature")?;
    let signing_input = &token.as_bytes()[..h.len() + 1 + c.len()];
    Ok(Parts {
        signing_input,
        header,
        claims,
        signature,
    })
}

fn check_header(header: &Header, expected: &'static str) -> Result<(), TokenError> {
    if header.alg != expected {
        return Err(TokenError::Algorithm {
            found: header.alg.clone(),
            expected,
        });
    }
    if header.crit.is_some() {
        return Err(TokenError::Malformed(
            "header: \"crit\" is not supported".to_owned(),
        ));
    }
    Ok(())
}

fn claim_uid(claims: &serde_json::Map<String, serde_json::Value>) -> Result<String, TokenError> {
    let uid = claims
        .get("uid")
        .ok_or(TokenError::Claim {
            claim: "uid",
            reason: "missing".to_owned(),
        })?
        .as_str()
        .ok_or(TokenError::Claim {
            claim: "uid",
            reason: "not a string".to_owned(),
        })?;
    validate_uid(uid).map_err(|e| TokenError::Claim {
        claim: "uid",
        reason: e.reason,
    })?;
    Ok(uid.to_owned())
}

fn claim_u64(
    claims: &serde_json::Map<String, serde_json::Value>,
    claim: &'static str,
    required: bool,
) -> Result<Option<u64>, TokenError> {
    match claims.get(claim) {
        None if required => Err(TokenError::Claim {
            claim,
            reason: "missing".to_owned(),
        }),
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(TokenError::Claim {
            claim,
            reason: "not a non-negative integer".to_owned(),
        }),
    }
}

fn check_times(exp: u64, iat: Option<u64>, now: u64, leeway: u64) -> Result<(), TokenError> {
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        return Err(TokenError::Claim {
            claim: "iat",
            reason: format!("{iat} is in the future (now {now})"),
        });
    }
    Ok(())
}

/// Key id of an Ed25519 public key: base64url of the first 12 bytes of its SHA-256.
pub fn key_id(raw_public: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, raw_public);
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..12])
}

/// Stable id of a token for revocation lists: hex SHA-256 of the whole token.
pub fn token_id(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// Signs Basalt auth tokens with the IAM Ed25519 key.
pub struct TokenSigner {
    pair: Ed25519KeyPair,
    kid: String,
    issuer: String,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenSigner {
    /// From the PKCS#8 `PRIVATE KEY` PEM genconf writes (`etc/iam-signing-key.pem`).
    pub fn from_pkcs8_pem(pem: &str, issuer: impl Into<String>) -> Result<TokenSigner, KeyError> {
        let what = "IAM signing key";
        let der = pem_decode(what, pem, "PRIVATE KEY")?;
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
            .map_err(|e| KeyError::Invalid {
                what: what.to_owned(),
                reason: format!("not an Ed25519 PKCS#8 key: {e}"),
            })?;
        let kid = key_id(pair.public_key().as_ref());
        Ok(TokenSigner {
            pair,
            kid,
            issuer: issuer.into(),
            rng: ring::rand::SystemRandom::new(),
        })
    }

    /// The key id put in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key.
    pub fn public_key_raw(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// SPKI `PUBLIC KEY` PEM of the verification key.
    pub fn public_key_pem(&self) -> String {
        crate::keys::ed25519_public_key_pem(self.public_key_raw())
    }

    /// A verifier for this signer's tokens.
    pub fn verifier(&self) -> TokenVerifier {
        let mut raw = [0u8; 32];
        raw.copy_from_slice(self.public_key_raw());
        TokenVerifier {
            keys: vec![(self.kid.clone(), raw)],
            leeway: DEFAULT_LEEWAY.as_secs(),
        }
    }

    /// Signs a token for `uid` valid for `lifetime` from now.
    pub fn issue(&self, uid: &str, lifetime: Duration) -> String {
        let now = now_unix();
        self.sign(uid, now, now.saturating_add(lifetime.as_secs()))
    }

    /// Signs a token with explicit times (tests use it for expired tokens).
    pub fn sign(&self, uid: &str, iat: u64, exp: u64) -> String {
        let mut jti = [0u8; 16];
        let jti = match ring::rand::SecureRandom::fill(&self.rng, &mut jti) {
            Ok(()) => Some(hex::encode(jti)),
            Err(_) => None,
        };
        let claims = Claims {
            uid: uid.to_owned(),
            exp,
            iat: Some(iat),
            iss: Some(self.issuer.clone()),
            jti,
        };
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let claims_json = serde_json::to_vec(&claims).unwrap_or_default();
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string().as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(&claims_json));
        let sig = self.pair.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        token
    }

    /// The JWKS document (`GET /acs/api/v1/auth/jwks`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public_key_raw()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }]})
    }
}

/// Verifies Basalt auth tokens offline: cheap, no I/O, shareable (`Clone`).
///
/// Holds one or more Ed25519 keys (more during a key rotation). It does not consult the
/// revocation list: pair it with [`crate::RevocationCache`] to refuse logged-out tokens.
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    keys: Vec<(String, [u8; 32])>,
    leeway: u64,
}

impl TokenVerifier {
    /// From the SPKI `PUBLIC KEY` PEM genconf writes on every node
    /// (`etc/iam-public-key.pem`).
    pub fn from_public_key_pem(pem: &str) -> Result<TokenVerifier, KeyError> {
        let mut v = TokenVerifier {
            keys: Vec::new(),
            leeway: DEFAULT_LEEWAY.as_secs(),
        };
        v.add_public_key_pem(pem)?;
        Ok(v)
    }

    /// From a JWKS document (every `OKP`/`Ed25519` key in it).
    pub fn from_jwks(jwks: &serde_json::Value) -> Result<TokenVerifier, KeyError> {
        let invalid = |reason: &str| KeyError::Invalid {
            what: "JWKS".to_owned(),
            reason: reason.to_owned(),
        };
        let keys = jwks
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| invalid("no \"keys\" array"))?;
        let mut out = Vec::new();
        for k in keys {
            if k.get("kty").and_then(|v| v.as_str()) != Some("OKP")
                || k.get("crv").and_then(|v| v.as_str()) != Some("Ed25519")
            {
                continue;
            }
            let x = k
                .get("x")
                .and_then(|v| v.as_str())
                .ok_or_else(|| invalid("key without \"x\""))?;
            let raw = URL_SAFE_NO_PAD
                .decode(x.as_bytes())
                .map_err(|e| invalid(&format!("\"x\" is not base64url: {e}")))?;
            let raw: [u8; 32] = raw
                .try_into()
                .map_err(|_| invalid("\"x\" is not 32 bytes"))?;
            let kid = k
                .get("kid")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| key_id(&raw));
            out.push((kid, raw));
        }
        if out.is_empty() {
            return Err(invalid("no Ed25519 key"));
        }
        Ok(TokenVerifier {
            keys: out,
            leeway: DEFAULT_LEEWAY.as_secs(),
        })
    }

    /// Adds another accepted key (key rotation).
    pub fn add_public_key_pem(&mut self, pem: &str) -> Result<(), KeyError> {
        match PublicKey::from_spki_pem("IAM public key", pem)? {
            PublicKey::Ed25519(raw) => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&raw);
                self.keys.push((key_id(&k), k));
                Ok(())
            }
            other => Err(KeyError::Invalid {
                what: "IAM public key".to_owned(),
                reason: format!("{} key; the IAM signs with Ed25519", other.jwt_alg()),
            }),
        }
    }

    /// Sets the leeway applied to `exp` and `iat`.
    pub fn with_leeway(mut self, leeway: Duration) -> TokenVerifier {
        self.leeway = leeway.as_secs();
        self
    }

    /// Verifies `token` now.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, now_unix())
    }

    /// Verifies `token` as of `now` (Unix seconds).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let parts = split(token)?;
        check_header(&parts.header, "EdDSA")?;
        let candidates: Vec<&[u8; 32]> = match &parts.header.kid {
            Some(kid) => {
                let found: Vec<&[u8; 32]> = self
                    .keys
                    .iter()
                    .filter(|(k, _)| k == kid)
                    .map(|(_, raw)| raw)
                    .collect();
                if found.is_empty() {
                    return Err(TokenError::UnknownKey(kid.clone()));
                }
                found
            }
            None => self.keys.iter().map(|(_, raw)| raw).collect(),
        };
        let ok = candidates.iter().any(|raw| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, raw.as_slice())
                .verify(parts.signing_input, &parts.signature)
                .is_ok()
        });
        if !ok {
            return Err(TokenError::Signature);
        }
        let uid = claim_uid(&parts.claims)?;
        let exp = claim_u64(&parts.claims, "exp", true)?.unwrap_or(0);
        let iat = claim_u64(&parts.claims, "iat", false)?;
        check_times(exp, iat, now, self.leeway)?;
        let iss = parts
            .claims
            .get("iss")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let jti = parts
            .claims
            .get("jti")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Ok(Claims {
            uid,
            exp,
            iat,
            iss,
            jti,
        })
    }
}

/// Verifies a service account's login token (`POST /auth/login` with `{"uid","token"}`):
/// signed by the account's registered `key` with the matching `alg`, `uid` equal to
/// `expected_uid`, `exp` present, not expired, and at most `max_lifetime` in the future
/// (and, when `iat` is present, `exp - iat` at most `max_lifetime`).
pub fn verify_login_token(
    token: &str,
    key: &PublicKey,
    expected_uid: &str,
    now: u64,
    max_lifetime: Duration,
    leeway: Duration,
) -> Result<u64, TokenError> {
    let parts = split(token)?;
    check_header(&parts.header, key.jwt_alg())?;
    if !key.verify(parts.signing_input, &parts.signature) {
        return Err(TokenError::Signature);
    }
    let uid = claim_uid(&parts.claims)?;
    if uid != expected_uid {
        return Err(TokenError::Claim {
            claim: "uid",
            reason: "does not match the login uid".to_owned(),
        });
    }
    let exp = claim_u64(&parts.claims, "exp", true)?.unwrap_or(0);
    let iat = claim_u64(&parts.claims, "iat", false)?;
    let leeway = leeway.as_secs();
    check_times(exp, iat, now, leeway)?;
    let limit = max_lifetime.as_secs();
    let lifetime = exp.saturating_sub(now);
    if lifetime > limit.saturating_add(leeway) {
        return Err(TokenError::TooLong {
            lifetime_s: lifetime,
            limit_s: limit,
        });
    }
    if let Some(iat) = iat {
        let declared = exp.saturating_sub(iat);
        if declared > limit.saturating_add(leeway) {
            return Err(TokenError::TooLong {
                lifetime_s: declared,
                limit_s: limit,
            });
        }
    }
    Ok(exp)
}

/// Builds a compact JWS over `claims` with `alg`, signing with `sign` (for clients and
/// tests that make service login tokens).
pub fn encode_with(
    alg: &str,
    claims: &serde_json::Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let header = serde_json::json!({"alg": alg, "typ": "JWT"});
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string().as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes()));
    let sig = sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(sig));
    token
}

/// The token a request carries: `Authorization: token=<jwt>` or `Bearer <jwt>`, else
/// the `dcos-acs-auth-cookie` cookie (the Admin Router order).
pub fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(t) = v.strip_prefix("token=") {
            return Some(t.trim().to_owned());
        }
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim().to_owned());
        }
        return None;
    }
    for cookie in headers.get_all(axum::http::header::COOKIE) {
        let Ok(cookie) = cookie.to_str() else {
            continue;
        };
        for pair in cookie.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == crate::http::AUTH_COOKIE
            {
                return Some(value.trim().to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pem = crate::keys::pem_encode("PRIVATE KEY", doc.as_ref());
        TokenSigner::from_pkcs8_pem(&pem, "test").unwrap()
    }

    #[test]
    fn issue_and_verify() {
        let s = signer();
        let t = s.issue("alice", Duration::from_secs(60));
        let c = s.verifier().verify(&t).unwrap();
        assert_eq!(c.uid, "alice");
        assert_eq!(c.iss.as_deref(), Some("test"));
        let v = TokenVerifier::from_public_key_pem(&s.public_key_pem()).unwrap();
        assert_eq!(v.verify(&t).unwrap().uid, "alice");
        let v = TokenVerifier::from_jwks(&s.jwks()).unwrap();
        assert_eq!(v.verify(&t).unwrap().uid, "alice");
    }

    #[test]
    fn expiry_with_leeway() {
        let s = signer();
        let v = s.verifier().with_leeway(Duration::from_secs(5));
        let t = s.sign("bob", 1000, 2000);
        assert!(v.verify_at(&t, 1999).is_ok());
        assert!(v.verify_at(&t, 2004).is_ok());
        assert!(matches!(
            v.verify_at(&t, 2005),
            Err(TokenError::Expired { .. })
        ));
        assert!(matches!(
            v.verify_at(&t, 900),
            Err(TokenError::Claim { claim: "iat", .. })
        ));
    }

    #[test]
    fn alg_none_and_confusion_refused() {
        let s = signer();
        let claims = serde_json::json!({"uid": "root", "exp": now_unix() + 60});
        let none = encode_with("none", &claims, |_| Vec::new());
        assert!(matches!(
            s.verifier().verify(&none),
            Err(TokenError::Algorithm { .. })
        ));
        let hs = encode_with("HS256", &claims, |_| vec![1; 32]);
        assert!(matches!(
            s.verifier().verify(&hs),
            Err(TokenError::Algorithm { .. })
        ));
        // EdDSA without kid, signed by another key.
        let other = signer();
        let forged = encode_with("EdDSA", &claims, |m| other.pair.sign(m).as_ref().to_vec());
        assert_eq!(s.verifier().verify(&forged), Err(TokenError::Signature));
    }

    #[test]
    fn missing_claims_and_garbage() {
        let s = signer();
        let no_exp = encode_with("EdDSA", &serde_json::json!({"uid": "a"}), |m| {
            s.pair.sign(m).as_ref().to_vec()
        });
        assert!(matches!(
            s.verifier().verify(&no_exp),
            Err(TokenError::Claim { claim: "exp", .. })
        ));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(
                matches!(s.verifier().verify(bad), Err(TokenError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn login_token_lifetime() {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let key = PublicKey::Ed25519(kp.public_key().as_ref().to_vec());
        let now = 10_000;
        let make = |uid: &str, exp: u64| {
            encode_with("EdDSA", &serde_json::json!({"uid": uid, "exp": exp}), |m| {
                kp.sign(m).as_ref().to_vec()
            })
        };
        let max = Duration::from_secs(600);
        let lw = Duration::from_secs(5);
        assert!(verify_login_token(&make("svc", now + 300), &key, "svc", now, max, lw).is_ok());
        assert!(matches!(
            verify_login_token(&make("svc", now + 3600), &key, "svc", now, max, lw),
            Err(TokenError::TooLong { .. })
        ));
        assert!(matches!(
            verify_login_token(&make("other", now + 60), &key, "svc", now, max, lw),
            Err(TokenError::Claim { claim: "uid", .. })
        ));
        assert!(matches!(
            verify_login_token(&make("svc", now - 60), &key, "svc", now, max, lw),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn header_extraction() {
        use axum::http::{HeaderMap, HeaderValue, header};
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("token=abc"));
        assert_eq!(token_from_headers(&h).as_deref(), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(token_from_headers(&h).as_deref(), Some("xyz"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; dcos-acs-auth-cookie=tok; c=d"),
        );
        assert_eq!(token_from_headers(&h).as_deref(), Some("tok"));
    }
}

/// A [`TokenVerifier`] that remembers tokens it has verified, so a gateway pays the
/// Ed25519 check (tens of µs) once per token rather than once per request. Entries are
/// keyed by the exact token text (a tampered token never matches) and `exp` is
/// re-checked on every hit. When `capacity` is reached the cache starts over.
#[derive(Debug)]
pub struct CachedVerifier {
    verifier: TokenVerifier,
    capacity: usize,
    cache: std::sync::RwLock<std::collections::HashMap<String, Claims>>,
}

impl CachedVerifier {
    /// Wraps `verifier`, remembering up to `capacity` tokens.
    pub fn new(verifier: TokenVerifier, capacity: usize) -> CachedVerifier {
        CachedVerifier {
            verifier,
            capacity: capacity.max(1),
            cache: std::sync::RwLock::new(std::collections::HashMap::new()),
        }
    }

    /// Verifies `token` now.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, now_unix())
    }

    /// Verifies `token` as of `now`.
    pub fn verify_at(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if let Ok(cache) = self.cache.read()
            && let Some(c) = cache.get(token)
        {
            check_times(c.exp, None, now, self.verifier.leeway)?;
            return Ok(c.clone());
        }
        let claims = self.verifier.verify_at(token, now)?;
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= self.capacity {
                cache.clear();
            }
            cache.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod cached_tests {
    use super::*;

    #[test]
    fn cached_hits_still_expire_and_tampering_misses() {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pem = crate::keys::pem_encode("PRIVATE KEY", doc.as_ref());
        let s = TokenSigner::from_pkcs8_pem(&pem, "t").unwrap();
        let v = CachedVerifier::new(s.verifier().with_leeway(Duration::ZERO), 2);
        let t = s.sign("a", 100, 200);
        assert_eq!(v.verify_at(&t, 150).unwrap().uid, "a");
        assert_eq!(v.verify_at(&t, 199).unwrap().uid, "a");
        assert!(matches!(
            v.verify_at(&t, 200),
            Err(TokenError::Expired { .. })
        ));
        let mut bad = t.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(v.verify_at(&bad, 150).is_err());
        for uid in ["b", "c", "d"] {
            let t = s.sign(uid, 100, 200);
            assert_eq!(v.verify_at(&t, 150).unwrap().uid, uid);
        }
        assert!(v.cache.read().unwrap().len() <= 2);
    }
}
