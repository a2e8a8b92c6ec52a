//! The HTTP API (axum): `/acs/api/v1/...` in DC/OS IAM's shapes, the gateway's
//! `/internal/acs/api/v1/authorize`, and `/metrics`.
//!
//! Errors are DC/OS IAM's `{"title","description","code"}`; every 401 carries
//! `WWW-Authenticate: oauthjwt`, every 429 `Retry-After`.

use crate::audit::AuditLog;
use crate::authz::{Authorizer, Grant};
use crate::config::IamConfig;
use crate::ids::{Action, IdError, validate_gid, validate_rid, validate_uid};
use crate::jwt::{Claims, TokenSigner, TokenVerifier, now_unix, token_from_headers, token_id};
use crate::keys::PublicKey;
use crate::metrics::Metrics;
use crate::model::{AclRecord, GroupRecord, RevokedToken, UserRecord};
use crate::store::{IamError, IamStore, Principal, Subject, SubjectKind};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The browser auth cookie (the token).
pub const AUTH_COOKIE: &str = "dcos-acs-auth-cookie";
/// The UI info cookie (base64 JSON `{"uid","description","is_remote"}`).
pub const INFO_COOKIE: &str = "dcos-acs-info-cookie";
/// Longest password accepted.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Shortest password accepted for new accounts.
pub const MIN_PASSWORD_LEN: usize = 8;

const API: &str = "/acs/api/v1";

/// The generic answer to every failed login (unknown account and wrong credential alike).
pub const LOGIN_FAILED: &str = "The login failed: the uid and credentials do not match an account.";

/// An API error in DC/OS IAM's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `ERR_...` code.
    pub code: &'static str,
    /// Human text naming the field or id.
    pub description: String,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// 400 `ERR_INVALID_DATA`.
    pub fn invalid(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "ERR_INVALID_DATA", description)
    }

    fn unauthorized(code: &'static str, description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, description)
    }

    fn forbidden(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "ERR_FORBIDDEN", description)
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        ApiError::invalid(e.to_string())
    }
}

impl From<IamError> for ApiError {
    fn from(e: IamError) -> Self {
        let text = e.to_string();
        match e {
            IamError::UnknownUser { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "ERR_UNKNOWN_USER_ID", text)
            }
            IamError::UnknownGroup { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "ERR_UNKNOWN_GROUP_ID", text)
            }
            IamError::UnknownResource { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "ERR_UNKNOWN_RESOURCE_ID", text)
            }
            IamError::UserExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "ERR_USER_EXISTS", text)
            }
            IamError::GroupExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "ERR_GROUP_EXISTS", text)
            }
            IamError::AclExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "ERR_ACL_EXISTS", text)
            }
            IamError::Invalid(e) => e.into(),
            other => {
                tracing::error!(error = %other, "IAM storage failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ERR_SERVICE_UNAVAILABLE",
                    format!("storage unavailable: {other}"),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut resp = (
            self.status,
            Json(json!({"title": title, "description": self.description, "code": self.code})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("oauthjwt"),
            );
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The shared state of the service.
pub struct Iam<S> {
    /// Storage.
    pub store: S,
    /// Permission checks.
    pub authorizer: Authorizer<S>,
    /// Token issuing.
    pub signer: TokenSigner,
    /// Token checking.
    pub verifier: TokenVerifier,
    /// Settings.
    pub config: IamConfig,
    /// Audit trail.
    pub audit: AuditLog,
    /// Counters.
    pub metrics: Metrics,
    /// A hash verified for unknown accounts so that they cost what a known one does.
    dummy_hash: String,
}

impl<S: IamStore> Iam<S> {
    /// Assembles the state.
    pub fn new(store: S, signer: TokenSigner, config: IamConfig) -> Result<Iam<S>, IamInitError> {
        let verifier = signer.verifier().with_leeway(config.leeway);
        let dummy_hash = basalt_genconf::password::hash_password("basalt-iam timing equaliser")
            .map_err(|e| IamInitError(e.to_string()))?;
        Ok(Iam {
            authorizer: Authorizer::new(store.clone()),
            store,
            signer,
            verifier,
            config,
            audit: AuditLog::default(),
            metrics: Metrics::default(),
            dummy_hash,
        })
    }
}

/// The state could not be built.
#[derive(Debug, thiserror::Error)]
#[error("initialising the IAM: {0}")]
pub struct IamInitError(pub String);

type St<S> = State<Arc<Iam<S>>>;

/// The router of the whole service.
pub fn router<S: IamStore>(iam: Arc<Iam<S>>) -> Router {
    Router::new()
        .route(&format!("{API}/auth/login"), post(login::<S>))
        .route(&format!("{API}/auth/logout"), post(logout::<S>))
        .route(&format!("{API}/auth/jwks"), get(jwks::<S>))
        .route(&format!("{API}/auth/providers"), get(providers))
        .route(&format!("{API}/users"), get(users_list::<S>))
        .route(
            &format!("{API}/users/{{uid}}"),
            get(user_get::<S>)
                .put(user_put::<S>)
                .patch(user_patch::<S>)
                .delete(user_delete::<S>),
        )
        .route(
            &format!("{API}/users/{{uid}}/groups"),
            get(user_groups::<S>),
        )
        .route(
            &format!("{API}/users/{{uid}}/permissions"),
            get(user_permissions::<S>),
        )
        .route(&format!("{API}/groups"), get(groups_list::<S>))
        .route(
            &format!("{API}/groups/{{gid}}"),
            get(group_get::<S>)
                .put(group_put::<S>)
                .patch(group_patch::<S>)
                .delete(group_delete::<S>),
        )
        .route(
            &format!("{API}/groups/{{gid}}/users"),
            get(group_users::<S>),
        )
        .route(
            &format!("{API}/groups/{{gid}}/users/{{uid}}"),
            axum::routing::put(member_put::<S>).delete(member_delete::<S>),
        )
        .route(
            &format!("{API}/groups/{{gid}}/permissions"),
            get(group_permissions::<S>),
        )
        .route(&format!("{API}/acls"), get(acls_list::<S>))
        .route(
            &format!("{API}/acls/{{rid}}"),
            get(acl_get::<S>)
                .put(acl_put::<S>)
                .patch(acl_patch::<S>)
                .delete(acl_delete::<S>),
        )
        .route(
            &format!("{API}/acls/{{rid}}/permissions"),
            get(acl_permissions::<S>),
        )
        .route(
            &format!("{API}/acls/{{rid}}/users/{{uid}}"),
            get(grant_user_list::<S>).delete(grant_user_clear::<S>),
        )
        .route(
            &format!("{API}/acls/{{rid}}/users/{{uid}}/{{action}}"),
            get(grant_user_get::<S>)
                .put(grant_user_put::<S>)
                .delete(grant_user_delete::<S>),
        )
        .route(
            &format!("{API}/acls/{{rid}}/groups/{{gid}}"),
            get(grant_group_list::<S>).delete(grant_group_clear::<S>),
        )
        .route(
            &format!("{API}/acls/{{rid}}/groups/{{gid}}/{{action}}"),
            get(grant_group_get::<S>)
                .put(grant_group_put::<S>)
                .delete(grant_group_delete::<S>),
        )
        .route(&format!("{API}/audit"), get(audit::<S>))
        .route("/internal/acs/api/v1/authorize", get(authorize::<S>))
        .route("/metrics", get(metrics::<S>))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "ERR_NOT_FOUND", "no such endpoint")
        })
        .with_state(iam)
}

// --- request bodies ----------------------------------------------------------------

fn parse_body(bytes: &Bytes, allowed: &[&str]) -> ApiResult<Map<String, Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("request body: invalid JSON: {e}")))?;
    let Value::Object(map) = v else {
        return Err(ApiError::invalid("request body: must be a JSON object"));
    };
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "{k}: unknown field; expected {}",
            allowed.join(", ")
        )));
    }
    Ok(map)
}

fn opt_str(map: &Map<String, Value>, field: &str) -> ApiResult<Option<String>> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("{field}: must be a string"))),
    }
}

fn req_str(map: &Map<String, Value>, field: &str) -> ApiResult<String> {
    opt_str(map, field)?.ok_or_else(|| ApiError::invalid(format!("{field}: required")))
}

fn check_password(p: &str) -> ApiResult<()> {
    if p.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::invalid(format!(
            "password: longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::invalid(format!(
            "password: shorter than {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

async fn hash(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || basalt_genconf::password::hash_password(&password))
        .await
        .map_err(|e| ApiError::invalid(format!("password: hashing failed: {e}")))?
        .map_err(|e| ApiError::invalid(e.to_string()))
}

// --- JSON shapes --------------------------------------------------------------------

fn enc(id: &str) -> String {
    id.replace('%', "%25").replace('/', "%2F")
}

fn user_json(u: &UserRecord) -> Value {
    let mut v = json!({
        "uid": u.uid,
        "url": format!("{API}/users/{}", enc(&u.uid)),
        "description": u.description,
        "is_remote": false,
        "is_service": u.is_service(),
        "provider_type": "internal",
        "provider_id": "",
    });
    if let (Some(k), Value::Object(m)) = (&u.public_key, &mut v) {
        m.insert("public_key".to_owned(), Value::String(k.clone()));
    }
    v
}

fn group_json(g: &GroupRecord) -> Value {
    json!({
        "gid": g.gid,
        "url": format!("{API}/groups/{}", enc(&g.gid)),
        "description": g.description,
        "provider_type": "internal",
    })
}

fn acl_json(a: &AclRecord) -> Value {
    json!({"rid": a.rid, "url": format!("{API}/acls/{}", enc(&a.rid)), "description": a.description})
}

fn actions_json<'a>(base: &str, actions: impl IntoIterator<Item = &'a Action>) -> Value {
    Value::Array(
        actions
            .into_iter()
            .map(|a| json!({"name": a.as_str(), "url": format!("{base}/{a}")}))
            .collect(),
    )
}

fn user_grants_url(rid: &str, uid: &str) -> String {
    format!("{API}/acls/{}/users/{}", enc(rid), enc(uid))
}

fn group_grants_url(rid: &str, gid: &str) -> String {
    format!("{API}/acls/{}/groups/{}", enc(rid), enc(gid))
}

// --- caller identity ---------------------------------------------------------------

fn source_addr(config: &IamConfig, peer: SocketAddr, headers: &HeaderMap) -> String {
    if config.trust_forwarded_for && peer.ip().is_loopback() {
        // The rightmost entry is the one our gateway appended.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        if let Some(ip) = entries.last().and_then(|s| s.trim().parse::<IpAddr>().ok()) {
            return ip.to_string();
        }
    }
    peer.ip().to_string()
}

/// Authenticates the caller: a valid, unrevoked token of an existing account.
async fn caller<S: IamStore>(iam: &Iam<S>, headers: &HeaderMap) -> ApiResult<Claims> {
    let token = token_from_headers(headers).ok_or_else(|| {
        ApiError::unauthorized(
            "ERR_MISSING_AUTH_TOKEN",
            "authentication required: send Authorization: token=<token>",
        )
    })?;
    let claims = iam.verifier.verify(&token).map_err(|e| {
        ApiError::unauthorized("ERR_INVALID_AUTH_TOKEN", format!("invalid token: {e}"))
    })?;
    if iam.store.is_revoked(&token_id(&token)).await? {
        return Err(ApiError::unauthorized(
            "ERR_INVALID_AUTH_TOKEN",
            "invalid token: it was logged out",
        ));
    }
    if iam.store.get_user(&claims.uid).await?.is_none() {
        return Err(ApiError::unauthorized(
            "ERR_INVALID_AUTH_TOKEN",
            "invalid token: its account no longer exists",
        ));
    }
    Ok(claims)
}

async fn superuser<S: IamStore>(
    iam: &Iam<S>,
    headers: &HeaderMap,
    what: &str,
) -> ApiResult<Claims> {
    let claims = caller(iam, headers).await?;
    if !iam.authorizer.is_superuser(&claims.uid).await? {
        iam.audit.record(
            "permission_denied",
            &claims.uid,
            "",
            &format!("dcos:superuser full ({what})"),
        );
        Metrics::inc(&iam.metrics.authz_deny);
        return Err(ApiError::forbidden(format!(
            "{what} needs the dcos:superuser permission"
        )));
    }
    Ok(claims)
}

/// Superuser, or the account `uid` itself.
async fn self_or_superuser<S: IamStore>(
    iam: &Iam<S>,
    headers: &HeaderMap,
    uid: &str,
    what: &str,
) -> ApiResult<Claims> {
    let claims = caller(iam, headers).await?;
    if claims.uid == uid {
        return Ok(claims);
    }
    superuser(iam, headers, what).await
}

// --- auth ---------------------------------------------------------------------------

enum Credential {
    Password(String),
    Token(String),
}

fn cookie(name: &str, value: &str, config: &IamConfig, http_only: bool, max_age: u64) -> String {
    let mut c = format!("{name}={value}; Path=/; Max-Age={max_age}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if config.secure_cookies {
        c.push_str("; Secure");
    }
    c
}

fn retry_after(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

async fn login<S: IamStore>(
    State(iam): St<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let source = source_addr(&iam.config, peer, &headers);
    match login_inner(&iam, &source, &body).await {
        Ok(r) => r,
        Err(e) => {
            if e.status == StatusCode::BAD_REQUEST {
                Metrics::inc(&iam.metrics.login_invalid);
            }
            e.into_response()
        }
    }
}

async fn login_inner<S: IamStore>(iam: &Iam<S>, source: &str, body: &Bytes) -> ApiResult<Response> {
    let map = parse_body(body, &["uid", "password", "token"])?;
    let uid = req_str(&map, "uid")?;
    validate_uid(&uid)?;
    let cred = match (opt_str(&map, "password")?, opt_str(&map, "token")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "password, token: give a password (users) or a login token (service accounts), not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "password: required (or token, for service accounts)",
            ));
        }
        (Some(p), None) => {
            if p.len() > MAX_PASSWORD_LEN {
                return Err(ApiError::invalid(format!(
                    "password: longer than {MAX_PASSWORD_LEN} bytes"
                )));
            }
            Credential::Password(p)
        }
        (None, Some(t)) => Credential::Token(t),
    };
    let subjects = [
        Subject {
            kind: SubjectKind::Uid,
            id: uid.clone(),
        },
        Subject {
            kind: SubjectKind::Addr,
            id: source.to_owned(),
        },
    ];
    let now = now_ms();
    for s in &subjects {
        if let Some(lock) = iam.store.lockout(s, now).await? {
            Metrics::inc(&iam.metrics.login_locked);
            let by = match s.kind {
                SubjectKind::Uid => "uid",
                SubjectKind::Addr => "address",
            };
            iam.audit
                .record("login_locked", &uid, source, &format!("locked out by {by}"));
            let secs = retry_after(lock.until_ms, now);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ERR_TOO_MANY_LOGIN_ATTEMPTS",
                format!("too many failed logins: try again in {secs} s"),
            );
            e.retry_after = Some(secs);
            return Err(e);
        }
    }
    let user = iam.store.get_user(&uid).await?;
    let outcome: Result<(), &'static str> = match cred {
        Credential::Password(p) => {
            let (hash, known) = match user.as_ref().and_then(|u| u.password_hash.clone()) {
                Some(h) => (h, true),
                None => (iam.dummy_hash.clone(), false),
            };
            let ok = tokio::task::spawn_blocking(move || {
                basalt_genconf::password::verify_password(&p, &hash).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            match (known, ok) {
                (true, true) => Ok(()),
                (true, false) => Err("wrong password"),
                (false, _) if user.is_none() => Err("unknown account"),
                (false, _) => Err("account has no password"),
            }
        }
        Credential::Token(t) => match user.as_ref().and_then(|u| u.public_key.as_deref()) {
            None if user.is_none() => Err("unknown account"),
            None => Err("account has no public key"),
            Some(pem) => match PublicKey::from_spki_pem("public_key", pem) {
                Err(_) => Err("stored public key unusable"),
                Ok(key) => crate::jwt::verify_login_token(
                    &t,
                    &key,
                    &uid,
                    now_unix(),
                    iam.config.service_login_max_lifetime,
                    iam.config.leeway,
                )
                .map(|_| ())
                .map_err(|e| {
                    tracing::debug!(uid, error = %e, "service login token refused");
                    "login token refused"
                }),
            },
        },
    };
    if let Err(reason) = outcome {
        Metrics::inc(&iam.metrics.login_failure);
        iam.audit.record("login_failure", &uid, source, reason);
        for (s, t) in subjects
            .iter()
            .zip([&iam.config.uid_lockout, &iam.config.addr_lockout])
        {
            if let Some(lock) = iam.store.record_failure(s, t, now).await? {
                Metrics::inc(&iam.metrics.lockouts);
                let by = match s.kind {
                    SubjectKind::Uid => "uid",
                    SubjectKind::Addr => "address",
                };
                iam.audit.record(
                    "lockout",
                    &uid,
                    source,
                    &format!(
                        "{by} {} locked for {} s after {} failures",
                        s.id,
                        retry_after(lock.until_ms, now),
                        lock.failures
                    ),
                );
            }
        }
        return Err(ApiError::unauthorized(
            "ERR_INVALID_CREDENTIALS",
            LOGIN_FAILED,
        ));
    }
    iam.store.clear_failures(&subjects[0]).await?;
    let token = iam.signer.issue(&uid, iam.config.token_lifetime);
    Metrics::inc(&iam.metrics.login_success);
    iam.audit.record("login_success", &uid, source, "");
    let description = user.map(|u| u.description).unwrap_or_default();
    let info = base64::engine::general_purpose::STANDARD
        .encode(json!({"uid": uid, "description": description, "is_remote": false}).to_string());
    let max_age = iam.config.token_lifetime.as_secs();
    let mut resp = Json(json!({"token": token})).into_response();
    for c in [
        cookie(AUTH_COOKIE, &token, &iam.config, true, max_age),
        cookie(INFO_COOKIE, &info, &iam.config, false, max_age),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

async fn logout<S: IamStore>(
    State(iam): St<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let source = source_addr(&iam.config, peer, &headers);
    if let Some(token) = token_from_headers(&headers)
        && let Ok(claims) = iam.verifier.verify(&token)
    {
        let ttl = claims
            .exp
            .saturating_add(iam.config.leeway.as_secs())
            .saturating_sub(now_unix())
            .max(1);
        iam.store
            .revoke_token(
                &token_id(&token),
                &RevokedToken {
                    uid: claims.uid.clone(),
                    exp: claims.exp.saturating_add(iam.config.leeway.as_secs()),
                },
                std::time::Duration::from_secs(ttl),
            )
            .await?;
        Metrics::inc(&iam.metrics.revocations);
        iam.audit
            .record("token_revoked", &claims.uid, &source, "logout");
    }
    let mut resp = Json(json!({})).into_response();
    for name in [AUTH_COOKIE, INFO_COOKIE] {
        let c = cookie(name, "", &iam.config, name == AUTH_COOKIE, 0);
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

async fn jwks<S: IamStore>(State(iam): St<S>) -> Json<Value> {
    Json(iam.signer.jwks())
}

/// DC/OS IAM's login providers (public, like the login itself): user accounts log in
/// with a password, service accounts with a login token signed by their private key,
/// both by POSTing to `/acs/api/v1/auth/login`. The DC/OS CLI reads this for
/// `dcos auth list-providers` and `dcos auth login --provider=<id>`.
async fn providers() -> Json<Value> {
    let login = format!("{API}/auth/login");
    Json(json!({
        "dcos-users": {
            "authentication-type": "dcos-uid-password",
            "client-method": "dcos-usercredential-post-receive-authtoken",
            "config": {"start_flow_url": login},
            "description": "Default DC/OS login provider",
        },
        "dcos-services": {
            "authentication-type": "dcos-uid-servicekey",
            "client-method": "dcos-servicecredential-post-receive-authtoken",
            "config": {"start_flow_url": login},
            "description": "Default DC/OS login provider",
        },
    }))
}

// --- users --------------------------------------------------------------------------

async fn users_list<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    superuser(&iam, &headers, "listing users").await?;
    let want_service = match q.get("type").map(String::as_str) {
        None => None,
        Some("service") => Some(true),
        Some("user") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "type: {other:?} is not \"user\" or \"service\""
            )));
        }
    };
    let users = iam.store.list_users().await?;
    let array: Vec<Value> = users
        .iter()
        .filter(|u| want_service.is_none_or(|s| u.is_service() == s))
        .map(user_json)
        .collect();
    Ok(Json(json!({ "array": array })))
}

async fn user_get<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> ApiResult<Json<Value>> {
    validate_uid(&uid)?;
    self_or_superuser(&iam, &headers, &uid, "reading another account").await?;
    let user = iam
        .store
        .get_user(&uid)
        .await?
        .ok_or(IamError::UnknownUser { uid })?;
    Ok(Json(user_json(&user)))
}

async fn user_put<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    validate_uid(&uid)?;
    superuser(&iam, &headers, "creating accounts").await?;
    let map = parse_body(
        &body,
        &[
            "description",
            "password",
            "public_key",
            "provider_type",
            "provider_id",
            "cluster_url",
            "creator_uid",
        ],
    )?;
    if let Some(p) = opt_str(&map, "provider_type")?
        && p != "internal"
    {
        return Err(ApiError::invalid(format!(
            "provider_type: {p:?} is not supported; only \"internal\" accounts exist"
        )));
    }
    let description = opt_str(&map, "description")?.unwrap_or_default();
    let (password_hash, public_key) = match (
        opt_str(&map, "password")?,
        opt_str(&map, "public_key")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "password, public_key: a user has a password, a service account a public key; not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "password: required (or public_key, for a service account)",
            ));
        }
        (Some(p), None) => {
            check_password(&p)?;
            (Some(hash(p).await?), None)
        }
        (None, Some(k)) => {
            PublicKey::from_spki_pem("public_key", &k)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            (None, Some(k))
        }
    };
    iam.store
        .create_user(&UserRecord {
            uid,
            description,
            password_hash,
            public_key,
            created: now_unix(),
        })
        .await?;
    Ok(StatusCode::CREATED)
}

async fn user_patch<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    validate_uid(&uid)?;
    self_or_superuser(&iam, &headers, &uid, "changing another account").await?;
    let map = parse_body(&body, &["description", "password"])?;
    let description = opt_str(&map, "description")?;
    let password = opt_str(&map, "password")?;
    let user = iam
        .store
        .get_user(&uid)
        .await?
        .ok_or_else(|| IamError::UnknownUser { uid: uid.clone() })?;
    let password_hash = match password {
        Some(_) if user.is_service() => {
            return Err(ApiError::invalid(
                "password: service accounts log in with a key, not a password",
            ));
        }
        Some(p) => {
            check_password(&p)?;
            Some(hash(p).await?)
        }
        None => None,
    };
    iam.store
        .update_user(&uid, description, password_hash)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user_delete<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> ApiResult<StatusCode> {
    validate_uid(&uid)?;
    superuser(&iam, &headers, "deleting accounts").await?;
    iam.store.delete_user(&uid).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user_groups<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> ApiResult<Json<Value>> {
    validate_uid(&uid)?;
    self_or_superuser(&iam, &headers, &uid, "reading another account").await?;
    if iam.store.get_user(&uid).await?.is_none() {
        return Err(IamError::UnknownUser { uid }.into());
    }
    let mut array = Vec::new();
    for gid in iam.store.groups_of(&uid).await? {
        if let Some(g) = iam.store.get_group(&gid).await? {
            array.push(json!({
                "membershipurl": format!("{API}/groups/{}/users/{}", enc(&gid), enc(&uid)),
                "group": group_json(&g),
            }));
        }
    }
    Ok(Json(json!({ "array": array })))
}

async fn user_permissions<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> ApiResult<Json<Value>> {
    validate_uid(&uid)?;
    self_or_superuser(
        &iam,
        &headers,
        &uid,
        "reading another account's permissions",
    )
    .await?;
    if iam.store.get_user(&uid).await?.is_none() {
        return Err(IamError::UnknownUser { uid }.into());
    }
    let groups = iam.store.groups_of(&uid).await?;
    let mut direct = Vec::new();
    let mut via_groups = Vec::new();
    for acl in iam.store.list_acls().await? {
        let aclurl = format!("{API}/acls/{}", enc(&acl.rid));
        if let Some(actions) = acl.users.get(&uid) {
            direct.push(json!({
                "rid": acl.rid,
                "description": acl.description,
                "aclurl": aclurl,
                "actions": actions_json(&user_grants_url(&acl.rid, &uid), actions),
            }));
        }
        for gid in &groups {
            if let Some(actions) = acl.groups.get(gid) {
                via_groups.push(json!({
                    "rid": acl.rid,
                    "gid": gid,
                    "description": acl.description,
                    "aclurl": aclurl,
                    "membershipurl": format!("{API}/groups/{}/users/{}", enc(gid), enc(&uid)),
                    "actions": actions_json(&group_grants_url(&acl.rid, gid), actions),
                }));
            }
        }
    }
    Ok(Json(json!({"direct": direct, "groups": via_groups})))
}

// --- groups -------------------------------------------------------------------------

async fn groups_list<S: IamStore>(State(iam): St<S>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    superuser(&iam, &headers, "listing groups").await?;
    let array: Vec<Value> = iam
        .store
        .list_groups()
        .await?
        .iter()
        .map(group_json)
        .collect();
    Ok(Json(json!({ "array": array })))
}

async fn group_get<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(gid): Path<String>,
) -> ApiResult<Json<Value>> {
    validate_gid(&gid)?;
    superuser(&iam, &headers, "reading groups").await?;
    let g = iam
        .store
        .get_group(&gid)
        .await?
        .ok_or(IamError::UnknownGroup { gid })?;
    Ok(Json(group_json(&g)))
}

async fn group_put<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    validate_gid(&gid)?;
    superuser(&iam, &headers, "creating groups").await?;
    let map = parse_body(&body, &["description", "provider_type"])?;
    let description = req_str(&map, "description")?;
    if let Some(p) = opt_str(&map, "provider_type")?
        && p != "internal"
    {
        return Err(ApiError::invalid(format!(
            "provider_type: {p:?} is not supported; only \"internal\" groups exist"
        )));
    }
    iam.store
        .create_group(&GroupRecord { gid, description })
        .await?;
    Ok(StatusCode::CREATED)
}

async fn group_patch<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    validate_gid(&gid)?;
    superuser(&iam, &headers, "changing groups").await?;
    let map = parse_body(&body, &["description"])?;
    let description = req_str(&map, "description")?;
    iam.store.update_group(&gid, description).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn group_delete<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(gid): Path<String>,
) -> ApiResult<StatusCode> {
    validate_gid(&gid)?;
    superuser(&iam, &headers, "deleting groups").await?;
    iam.store.delete_group(&gid).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn group_users<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(gid): Path<String>,
) -> ApiResult<Json<Value>> {
    validate_gid(&gid)?;
    superuser(&iam, &headers, "reading group members").await?;
    if iam.store.get_group(&gid).await?.is_none() {
        return Err(IamError::UnknownGroup { gid }.into());
    }
    let mut array = Vec::new();
    for uid in iam.store.members_of(&gid).await? {
        if let Some(u) = iam.store.get_user(&uid).await? {
            array.push(json!({
                "membershipurl": format!("{API}/groups/{}/users/{}", enc(&gid), enc(&uid)),
                "user": user_json(&u),
            }));
        }
    }
    Ok(Json(json!({ "array": array })))
}

async fn member_put<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((gid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    validate_gid(&gid)?;
    validate_uid(&uid)?;
    superuser(&iam, &headers, "changing group members").await?;
    iam.store.add_member(&gid, &uid).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn member_delete<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((gid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    validate_gid(&gid)?;
    validate_uid(&uid)?;
    superuser(&iam, &headers, "changing group members").await?;
    if iam.store.get_group(&gid).await?.is_none() {
        return Err(IamError::UnknownGroup { gid }.into());
    }
    if !iam.store.remove_member(&gid, &uid).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_UNKNOWN_MEMBERSHIP",
            format!("user {uid:?} is not a member of group {gid:?}"),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn group_permissions<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(gid): Path<String>,
) -> ApiResult<Json<Value>> {
    validate_gid(&gid)?;
    superuser(&iam, &headers, "reading group permissions").await?;
    if iam.store.get_group(&gid).await?.is_none() {
        return Err(IamError::UnknownGroup { gid }.into());
    }
    let array: Vec<Value> = iam
        .store
        .list_acls()
        .await?
        .iter()
        .filter_map(|acl| {
            acl.groups.get(&gid).map(|actions| {
                json!({
                    "rid": acl.rid,
                    "description": acl.description,
                    "aclurl": format!("{API}/acls/{}", enc(&acl.rid)),
                    "actions": actions_json(&group_grants_url(&acl.rid, &gid), actions),
                })
            })
        })
        .collect();
    Ok(Json(json!({ "array": array })))
}

// --- ACLs ---------------------------------------------------------------------------

async fn acls_list<S: IamStore>(State(iam): St<S>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    superuser(&iam, &headers, "listing ACLs").await?;
    let array: Vec<Value> = iam.store.list_acls().await?.iter().map(acl_json).collect();
    Ok(Json(json!({ "array": array })))
}

async fn load_acl<S: IamStore>(iam: &Iam<S>, rid: &str) -> ApiResult<AclRecord> {
    Ok(iam
        .store
        .get_acl(rid)
        .await?
        .ok_or_else(|| IamError::UnknownResource {
            rid: rid.to_owned(),
        })?)
}

async fn acl_get<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(rid): Path<String>,
) -> ApiResult<Json<Value>> {
    validate_rid(&rid)?;
    superuser(&iam, &headers, "reading ACLs").await?;
    Ok(Json(acl_json(&load_acl(&iam, &rid).await?)))
}

async fn acl_put<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(rid): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    validate_rid(&rid)?;
    superuser(&iam, &headers, "creating ACLs").await?;
    let map = parse_body(&body, &["description"])?;
    let description = req_str(&map, "description")?;
    iam.store
        .create_acl(&AclRecord::new(&rid, &description))
        .await?;
    Ok(StatusCode::CREATED)
}

async fn acl_patch<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(rid): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    validate_rid(&rid)?;
    superuser(&iam, &headers, "changing ACLs").await?;
    let map = parse_body(&body, &["description"])?;
    let description = req_str(&map, "description")?;
    iam.store.update_acl(&rid, description).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn acl_delete<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(rid): Path<String>,
) -> ApiResult<StatusCode> {
    validate_rid(&rid)?;
    superuser(&iam, &headers, "deleting ACLs").await?;
    iam.store.delete_acl(&rid).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn acl_permissions<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path(rid): Path<String>,
) -> ApiResult<Json<Value>> {
    validate_rid(&rid)?;
    superuser(&iam, &headers, "reading ACLs").await?;
    let acl = load_acl(&iam, &rid).await?;
    let users: Vec<Value> = acl
        .users
        .iter()
        .map(|(uid, a)| {
            json!({"uid": uid, "userurl": format!("{API}/users/{}", enc(uid)),
                   "actions": actions_json(&user_grants_url(&rid, uid), a)})
        })
        .collect();
    let groups: Vec<Value> = acl
        .groups
        .iter()
        .map(|(gid, a)| {
            json!({"gid": gid, "groupurl": format!("{API}/groups/{}", enc(gid)),
                   "actions": actions_json(&group_grants_url(&rid, gid), a)})
        })
        .collect();
    Ok(Json(json!({"users": users, "groups": groups})))
}

fn principal_of(kind: &str, id: String) -> ApiResult<Principal> {
    if kind == "users" {
        validate_uid(&id)?;
        Ok(Principal::User(id))
    } else {
        validate_gid(&id)?;
        Ok(Principal::Group(id))
    }
}

async fn grant_list<S: IamStore>(
    iam: &Iam<S>,
    headers: &HeaderMap,
    rid: String,
    principal: Principal,
) -> ApiResult<Json<Value>> {
    validate_rid(&rid)?;
    superuser(iam, headers, "reading ACLs").await?;
    let acl = load_acl(iam, &rid).await?;
    let (set, base) = match &principal {
        Principal::User(u) => (acl.users.get(u), user_grants_url(&rid, u)),
        Principal::Group(g) => (acl.groups.get(g), group_grants_url(&rid, g)),
    };
    let empty = Default::default();
    Ok(Json(
        json!({"array": actions_json(&base, set.unwrap_or(&empty))}),
    ))
}

async fn grant_clear<S: IamStore>(
    iam: &Iam<S>,
    headers: &HeaderMap,
    rid: String,
    principal: Principal,
) -> ApiResult<StatusCode> {
    validate_rid(&rid)?;
    superuser(iam, headers, "changing ACLs").await?;
    iam.store.clear_grants(&rid, &principal).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant_query<S: IamStore>(
    iam: &Iam<S>,
    headers: &HeaderMap,
    rid: String,
    principal: Principal,
    action: String,
) -> ApiResult<Json<Value>> {
    validate_rid(&rid)?;
    let action: Action = action.parse()?;
    superuser(iam, headers, "reading ACLs").await?;
    let allowed = match &principal {
        Principal::User(uid) => iam.authorizer.authorize(uid, &rid, action).await?.allowed,
        Principal::Group(gid) => iam
            .store
            .get_acl(&rid)
            .await?
            .and_then(|a| a.groups.get(gid).cloned())
            .is_some_and(|set| set.iter().any(|a| a.permits(action))),
    };
    Ok(Json(json!({ "allowed": allowed })))
}

async fn grant_set<S: IamStore>(
    iam: &Iam<S>,
    headers: &HeaderMap,
    rid: String,
    principal: Principal,
    action: String,
    granted: bool,
) -> ApiResult<StatusCode> {
    validate_rid(&rid)?;
    let action: Action = action.parse()?;
    superuser(iam, headers, "changing ACLs").await?;
    iam.store
        .set_grant(&rid, &principal, action, granted)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn grant_user_list<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, uid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    grant_list(&iam, &headers, rid, principal_of("users", uid)?).await
}
async fn grant_user_clear<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    grant_clear(&iam, &headers, rid, principal_of("users", uid)?).await
}
async fn grant_user_get<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, uid, action)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    grant_query(&iam, &headers, rid, principal_of("users", uid)?, action).await
}
async fn grant_user_put<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, uid, action)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    grant_set(
        &iam,
        &headers,
        rid,
        principal_of("users", uid)?,
        action,
        true,
    )
    .await
}
async fn grant_user_delete<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, uid, action)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    grant_set(
        &iam,
        &headers,
        rid,
        principal_of("users", uid)?,
        action,
        false,
    )
    .await
}
async fn grant_group_list<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, gid)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    grant_list(&iam, &headers, rid, principal_of("groups", gid)?).await
}
async fn grant_group_clear<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, gid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    grant_clear(&iam, &headers, rid, principal_of("groups", gid)?).await
}
async fn grant_group_get<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, gid, action)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    grant_query(&iam, &headers, rid, principal_of("groups", gid)?, action).await
}
async fn grant_group_put<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, gid, action)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    grant_set(
        &iam,
        &headers,
        rid,
        principal_of("groups", gid)?,
        action,
        true,
    )
    .await
}
async fn grant_group_delete<S: IamStore>(
    State(iam): St<S>,
    headers: HeaderMap,
    Path((rid, gid, action)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    grant_set(
        &iam,
        &headers,
        rid,
        principal_of("groups", gid)?,
        action,
        false,
    )
    .await
}

// --- audit, authorize, metrics ------------------------------------------------------

async fn audit<S: IamStore>(State(iam): St<S>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    superuser(&iam, &headers, "reading the audit log").await?;
    Ok(Json(json!({ "array": iam.audit.snapshot() })))
}

/// `GET /internal/acs/api/v1/authorize?uid=&rid=&action=`: 200 `{"allowed": true, ..}` or
/// 403 `{"allowed": false, ..}`; 400 names a missing or malformed parameter. Internal
/// (the gateway calls it on loopback; the gateway does not route `/internal`).
async fn authorize<S: IamStore>(
    State(iam): St<S>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let param = |name: &str| {
        q.get(name)
            .cloned()
            .ok_or_else(|| ApiError::invalid(format!("{name}: required query parameter")))
    };
    let (uid, rid, action) = (param("uid")?, param("rid")?, param("action")?);
    validate_uid(&uid)?;
    validate_rid(&rid)?;
    let action: Action = action.parse()?;
    let d = iam.authorizer.authorize(&uid, &rid, action).await?;
    let grant = d.grant.as_ref().map(|g| match g {
        Grant::Superuser => "superuser".to_owned(),
        Grant::SuperuserGroup(g) => format!("superuser via group {g}"),
        Grant::Direct => "direct".to_owned(),
        Grant::Group(g) => format!("group {g}"),
    });
    let body =
        json!({"allowed": d.allowed, "uid": uid, "rid": rid, "action": action, "grant": grant});
    if d.allowed {
        Metrics::inc(&iam.metrics.authz_allow);
        Ok((StatusCode::OK, Json(body)).into_response())
    } else {
        Metrics::inc(&iam.metrics.authz_deny);
        iam.audit
            .record("permission_denied", &uid, "", &format!("{rid} {action}"));
        Ok((StatusCode::FORBIDDEN, Json(body)).into_response())
    }
}

async fn metrics<S: IamStore>(State(iam): St<S>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        iam.metrics.render(),
    )
        .into_response()
}
