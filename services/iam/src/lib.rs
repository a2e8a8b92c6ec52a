//! Basalt identity and access management (the DC/OS IAM, `/acs/api/v1`).
//!
//! Local users log in with a password (argon2id, [`basalt_genconf::password`]); service
//! accounts log in with a short-lived JWT signed by their own key (RS256, ES256 or
//! EdDSA, at most 10 minutes). Either way the answer is `{"token": <jwt>}` plus the
//! `dcos-acs-auth-cookie` / `dcos-acs-info-cookie` cookies: an EdDSA JWT signed with the
//! cluster's IAM key (genconf `etc/iam-signing-key.pem`), claims `uid`, `exp`, `iat`,
//! `iss`, `jti`, valid 5 days by default (`auth.token_lifetime`).
//!
//! ## For the gateway
//!
//! - [`TokenVerifier::from_public_key_pem`] over `etc/iam-public-key.pem` (or
//!   [`TokenVerifier::from_jwks`] over `GET /acs/api/v1/auth/jwks`): `verify(token)` →
//!   [`Claims`] (`uid`, `exp`) with no I/O. [`token_from_headers`] reads
//!   `Authorization: token=<jwt>`, `Bearer <jwt>`, then the `dcos-acs-auth-cookie`.
//!   An Ed25519 check costs tens of µs; [`CachedVerifier`] pays it once per token.
//! - [`RevocationCache::start`] mirrors logged-out tokens from etcd: `is_revoked(token)`.
//! - Authorization: `GET /internal/acs/api/v1/authorize?uid=&rid=&action=` → 200/403
//!   with `{"allowed": bool, ..}`, or in-process [`Authorizer::authorize`] over an
//!   [`EtcdIamStore`], or — cheapest, no I/O per request — [`PolicyCache::authorize`], a
//!   watch-fed in-memory mirror of accounts, memberships and ACLs. Resource ids follow DC/OS (`dcos:adminrouter:service:<name>`,
//!   `dcos:adminrouter:ops:mesos`, ...); actions `create`, `read`, `update`, `delete`,
//!   `full` (implies all). `dcos:superuser` `full` allows everything.
//! - Missing/invalid token → 401 with `WWW-Authenticate: oauthjwt`; denied → 403.
//!
//! ## HTTP API (default `127.0.0.1:8101`)
//!
//! `POST /acs/api/v1/auth/login`, `POST /acs/api/v1/auth/logout` (revokes the token until
//! it expires), `GET /acs/api/v1/auth/jwks`,
//! `GET /acs/api/v1/auth/providers` (password and service-key logins, for the DC/OS CLI);
//! `users[/{uid}[/groups|/permissions]]`,
//! `groups[/{gid}[/users[/{uid}]|/permissions]]`, `acls[/{rid}[/permissions|/users/{uid}[/{action}]|/groups/{gid}[/{action}]]]`
//! in DC/OS IAM shapes (lists as `{"array": [...]}`), `GET /acs/api/v1/audit`
//! (superusers), `GET /metrics`. Everything except `auth/*` needs a token; management
//! needs `dcos:superuser` (accounts may read themselves). Errors are
//! `{"title","description","code"}` (`ERR_INVALID_DATA` naming the field,
//! `ERR_UNKNOWN_USER_ID`, `ERR_UNKNOWN_GROUP_ID`, `ERR_UNKNOWN_RESOURCE_ID`,
//! `ERR_USER_EXISTS`, ...).
//!
//! ## Login protection
//!
//! Failed logins are counted per uid and per client address (the last
//! `X-Forwarded-For` entry when the peer is the local gateway) in etcd, so every master
//! agrees: by default 5 failures per uid or 20 per address within 5 minutes lock that
//! uid/address out for 15 minutes (429 with `Retry-After`). Unknown accounts and wrong
//! credentials get the same 401 body, and unknown accounts still cost an argon2
//! verification.
//!
//! ## etcd keys
//!
//! See [`store`] for the table (`iam/users/<uid>`, `iam/groups/<gid>`,
//! `iam/memberships/<uid>/<gid>`, `iam/acls/<rid>`, `iam/revoked/<sha256>`,
//! `iam/login-failures/{uid,addr}/<id>`, `iam/lockouts/{uid,addr}/<id>`).
//!
//! ## Audit
//!
//! Target `basalt_iam::audit`: `login_success`, `login_failure`, `login_locked`,
//! `lockout`, `token_revoked`, `permission_denied`, `superuser_bootstrap`, with fields
//! `event`, `uid`, `source`, `detail`.

pub mod audit;
pub mod authz;
pub mod config;
pub mod http;
pub mod ids;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod revocation;
pub mod server;
pub mod store;

pub use authz::{Authorizer, Decision, Grant, decide};
pub use config::{ConfigError, IamConfig, SeedCredential, SuperuserSeed};
pub use http::{ApiError, Iam, router};
pub use ids::{Action, SUPERUSER_RID};
pub use jwt::{
    CachedVerifier, Claims, TokenError, TokenSigner, TokenVerifier, token_from_headers, token_id,
};
pub use keys::{KeyError, PublicKey};
pub use policy::PolicyCache;
pub use revocation::RevocationCache;
pub use server::{IamServer, ServeError, bootstrap_superuser};
pub use store::{EtcdIamStore, IamError, IamStore, Principal, Subject, SubjectKind, Threshold};
