//! Token and permission checks: [`basalt_iam::CachedVerifier`] (Ed25519 once per token),
//! [`basalt_iam::RevocationCache`] (logged-out tokens), [`basalt_iam::PolicyCache`]
//! (ACLs, groups, `dcos:superuser`), all in memory, fed by etcd watches.

use basalt_iam::{Action, CachedVerifier, PolicyCache, RevocationCache, TokenError, TokenVerifier};
use basalt_store::Store;
use http::HeaderMap;

/// Why the authenticator could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthInitError {
    /// No IAM public key was configured while auth is enabled.
    #[error("auth is enabled but no IAM public key (etc/iam-public-key.pem) is configured")]
    NoKey,
    /// The key did not parse.
    #[error("IAM public key: {0}")]
    Key(#[from] basalt_iam::KeyError),
    /// The etcd mirrors could not start.
    #[error("starting the IAM mirrors from etcd: {0}")]
    Mirror(#[from] basalt_iam::IamError),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token in `Authorization` nor in the `dcos-acs-auth-cookie`.
    #[error("no authentication token")]
    Missing,
    /// The token did not verify (signature, expiry, format, other cluster's key).
    #[error("{0}")]
    Invalid(TokenError),
    /// The token was revoked by a logout.
    #[error("token has been revoked")]
    Revoked,
    /// Authenticated, but `uid` lacks `full` on `rid`.
    #[error("{uid} lacks permission {rid} (full)")]
    Forbidden {
        /// The account.
        uid: String,
        /// The resource id.
        rid: String,
    },
}

impl Denied {
    /// 401 or 403.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Denied::Forbidden { .. } => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The DC/OS-style error code.
    pub fn code(&self) -> &'static str {
        match self {
            Denied::Missing => "ERR_MISSING_AUTH_TOKEN",
            Denied::Invalid(TokenError::Expired { .. }) => "ERR_EXPIRED_AUTH_TOKEN",
            Denied::Invalid(_) => "ERR_INVALID_AUTH_TOKEN",
            Denied::Revoked => "ERR_REVOKED_AUTH_TOKEN",
            Denied::Forbidden { .. } => "ERR_FORBIDDEN",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account.
    pub uid: String,
    /// The token it presented.
    pub token: String,
}

/// The gateway's authenticator.
#[derive(Debug)]
pub struct Authenticator {
    verifier: CachedVerifier,
    revoked: RevocationCache,
    policy: PolicyCache,
}

impl Authenticator {
    /// Starts the revocation and policy mirrors on `store`.
    pub async fn start(
        store: Store,
        public_key_pem: &str,
        cache_capacity: usize,
    ) -> Result<Authenticator, AuthInitError> {
        let verifier = TokenVerifier::from_public_key_pem(public_key_pem)?;
        Ok(Authenticator {
            verifier: CachedVerifier::new(verifier, cache_capacity),
            revoked: RevocationCache::start(store.clone()).await?,
            policy: PolicyCache::start(store).await?,
        })
    }

    /// Authenticates the request and, with `rid`, checks `full` on it.
    pub fn check(&self, headers: &HeaderMap, rid: Option<&str>) -> Result<Caller, Denied> {
        let token = basalt_iam::token_from_headers(headers).ok_or(Denied::Missing)?;
        let claims = self.verifier.verify(&token).map_err(Denied::Invalid)?;
        if self.revoked.is_revoked(&token) {
            return Err(Denied::Revoked);
        }
        if let Some(rid) = rid
            && !self
                .policy
                .authorize(&claims.uid, rid, Action::Full)
                .allowed
        {
            return Err(Denied::Forbidden {
                uid: claims.uid,
                rid: rid.to_owned(),
            });
        }
        Ok(Caller {
            uid: claims.uid,
            token,
        })
    }
}
