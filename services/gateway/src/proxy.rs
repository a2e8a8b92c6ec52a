//! The request path: route → auth → upstream → streamed response.

use crate::auth::{Authenticator, Caller, Denied};
use crate::config::GatewayConfig;
use crate::metrics::Metrics;
use crate::resolve::{ResolveError, Scheme, ServiceResolver, Target};
use crate::routes::{LocalEndpoint, Matched, Route, UpstreamKind, match_route};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use basalt_store::LeaderInfo;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The upstream client: pooled HTTP/1.1, `https` upstreams trusting the cluster CA.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Cookies the gateway never forwards (DC/OS Admin Router strips the same two).
pub const STRIPPED_COOKIES: [&str; 2] = ["dcos-acs-auth-cookie", "dcos-acs-info-cookie"];

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA PEM did not parse.
    #[error("cluster CA certificate: {0}")]
    Ca(String),
}

/// Builds the upstream client; `ca_pem` is trusted for `https` upstreams.
pub fn http_client(
    ca_pem: Option<&str>,
    connect_timeout: Duration,
) -> Result<HttpClient, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| ClientError::Ca(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Ca(e.to_string()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Ca(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}

/// Why a request could not be proxied; each names its route and upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matches.
    #[error("no route for {path}")]
    NoRoute {
        /// The request path.
        path: String,
    },
    /// The path has `.`/`..` segments.
    #[error("path {path} has dot segments")]
    DotSegments {
        /// The request path.
        path: String,
    },
    /// The election has no leader.
    #[error("route {route}: no leader is registered for {service}")]
    NoLeader {
        /// Route prefix.
        route: &'static str,
        /// Election service.
        service: &'static str,
    },
    /// `/service/<name>`: nothing by that name.
    #[error("route {route}: no service named {name:?}")]
    UnknownService {
        /// Route prefix.
        route: &'static str,
        /// The name.
        name: String,
    },
    /// `/agent/<id>`: no such agent.
    #[error("route {route}: no agent with id {id:?}")]
    UnknownAgent {
        /// Route prefix.
        route: &'static str,
        /// The id.
        id: String,
    },
    /// Resolution failed.
    #[error("route {route}: {source}")]
    Resolve {
        /// Route prefix.
        route: &'static str,
        /// The error.
        #[source]
        source: ResolveError,
    },
    /// The upstream URI could not be built.
    #[error("route {route}: bad upstream URI for {upstream} ({addr}): {reason}")]
    BadUri {
        /// Route prefix.
        route: &'static str,
        /// Upstream name.
        upstream: String,
        /// Its address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The upstream did not answer.
    #[error("route {route}: upstream {upstream} ({addr}) unreachable: {reason}")]
    Upstream {
        /// Route prefix.
        route: &'static str,
        /// Upstream name.
        upstream: String,
        /// Its address.
        addr: String,
        /// The client error, with its causes.
        reason: String,
    },
}

impl ProxyError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::NoRoute { .. } => (StatusCode::NOT_FOUND, "ERR_NOT_FOUND"),
            ProxyError::DotSegments { .. } => (StatusCode::BAD_REQUEST, "ERR_INVALID_PATH"),
            ProxyError::NoLeader { .. } => (StatusCode::SERVICE_UNAVAILABLE, "ERR_NO_LEADER"),
            ProxyError::UnknownService { .. } => (StatusCode::NOT_FOUND, "ERR_UNKNOWN_SERVICE"),
            ProxyError::UnknownAgent { .. } => (StatusCode::NOT_FOUND, "ERR_UNKNOWN_AGENT"),
            ProxyError::Resolve {
                source: ResolveError::NoLeader,
                ..
            } => (StatusCode::SERVICE_UNAVAILABLE, "ERR_NO_LEADER"),
            ProxyError::Resolve { .. } => (StatusCode::BAD_GATEWAY, "ERR_RESOLUTION_FAILED"),
            ProxyError::BadUri { .. } => (StatusCode::BAD_GATEWAY, "ERR_UPSTREAM_UNAVAILABLE"),
            ProxyError::Upstream { .. } => (StatusCode::BAD_GATEWAY, "ERR_UPSTREAM_UNAVAILABLE"),
        }
    }
}

/// A DC/OS-style error body: `{"title", "description", "code"}`.
pub fn error_response(status: StatusCode, code: &str, description: &str) -> Response {
    let body = json!({
        "title": status.canonical_reason().unwrap_or("Error"),
        "description": description,
        "code": code,
    });
    (status, axum::Json(body)).into_response()
}

/// Followed election leaders.
#[derive(Debug, Default)]
pub(crate) struct Leaders {
    pub master: Option<watch::Receiver<Option<LeaderInfo>>>,
    pub marathon: Option<watch::Receiver<Option<LeaderInfo>>>,
    pub _observers: Vec<basalt_store::LeaderObserver>,
}

impl Leaders {
    fn get(&self, service: &str) -> Option<String> {
        let rx = match service {
            "master" => self.master.as_ref(),
            "marathon" => self.marathon.as_ref(),
            _ => None,
        }?;
        rx.borrow().as_ref().map(|l| l.address.clone())
    }
}

/// Everything a request needs.
pub(crate) struct State {
    pub table: &'static [Route],
    pub config: GatewayConfig,
    pub auth: Option<Authenticator>,
    pub client: HttpClient,
    pub leaders: Leaders,
    pub resolver: Option<Arc<dyn ServiceResolver>>,
    pub metrics: Metrics,
}

/// The connection a request came on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conn {
    pub peer: SocketAddr,
    pub proto: &'static str,
}

fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|seg| {
        let s = seg.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    })
}

/// The request id: the incoming `X-Request-Id` if sane, else a new UUID.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&X_REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("invalid"))
        })
}

/// Removes the DC/OS auth cookies from every `Cookie` header.
pub fn strip_auth_cookies(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter(|c| {
            let name = c.split('=').next().unwrap_or_default().trim();
            !STRIPPED_COOKIES.contains(&name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Drops hop-by-hop headers (RFC 9110 §7.6.1), keeping `Connection: upgrade` and
/// `Upgrade` when `upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if !(upgrade && n == header::UPGRADE) {
            headers.remove(n);
        }
    }
    for n in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
    ] {
        headers.remove(n);
    }
    headers.remove(header::CONNECTION);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn local(state: &State, which: LocalEndpoint) -> Response {
    let m = &state.config.metadata;
    let body = match which {
        LocalEndpoint::CaCert => return ca_cert(state.config.ca_pem.as_deref()),
        LocalEndpoint::DcosVersion => json!({
            "version": m.version,
            "dcos-variant": m.variant,
            "dcos-image-commit": m.image_commit,
            "bootstrap-id": m.bootstrap_id,
        }),
        LocalEndpoint::Metadata => json!({
            "PUBLIC_IPV4": m.public_ipv4,
            "CLUSTER_ID": m.cluster_id,
        }),
    };
    axum::Json(body).into_response()
}

/// `/ca/dcos-ca.crt`: the cluster CA as PEM (`application/x-x509-ca-cert`, as DC/OS),
/// or 404 when the gateway was started without one.
fn ca_cert(ca_pem: Option<&str>) -> Response {
    match ca_pem {
        Some(pem) => (
            [(header::CONTENT_TYPE, "application/x-x509-ca-cert")],
            pem.to_owned(),
        )
            .into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            "ERR_NOT_FOUND",
            "this gateway has no cluster CA configured (etc/tls/ca.crt)",
        ),
    }
}

/// Where the matched request goes: (upstream name, target).
async fn target(state: &State, m: &Matched<'_>) -> Result<(String, Target), ProxyError> {
    let route = m.route.prefix;
    let name = m.name.clone().unwrap_or_default();
    match m.route.upstream {
        UpstreamKind::Static(s) => Ok((
            s.name().to_owned(),
            Target::http(state.config.upstreams.addr(s)),
        )),
        UpstreamKind::Leader(service) => state
            .leaders
            .get(service)
            .map(|a| (format!("leader:{service}"), Target::http(a)))
            .ok_or(ProxyError::NoLeader { route, service }),
        UpstreamKind::Marathon => Ok((
            "marathon".to_owned(),
            Target::http(
                state
                    .leaders
                    .get("marathon")
                    .unwrap_or_else(|| state.config.upstreams.marathon.clone()),
            ),
        )),
        UpstreamKind::Service | UpstreamKind::Agent => {
            let service = m.route.upstream == UpstreamKind::Service;
            let resolver = state.resolver.as_ref().ok_or(ProxyError::Resolve {
                route,
                source: ResolveError::NoLeader,
            })?;
            let found = if service {
                resolver.service(&name).await
            } else {
                resolver.agent(&name).await
            }
            .map_err(|source| ProxyError::Resolve { route, source })?;
            match found {
                Some(t) if service => Ok((format!("service:{name}"), t)),
                Some(t) => Ok((format!("agent:{name}"), t)),
                None if service => Err(ProxyError::UnknownService { route, name }),
                None => Err(ProxyError::UnknownAgent { route, id: name }),
            }
        }
        UpstreamKind::AgentSystem => {
            let resolver = state.resolver.as_ref().ok_or(ProxyError::Resolve {
                route,
                source: ResolveError::NoLeader,
            })?;
            let found = resolver
                .agent(&name)
                .await
                .map_err(|source| ProxyError::Resolve { route, source })?;
            let Some(agent) = found else {
                return Err(ProxyError::UnknownAgent { route, id: name });
            };
            // The agent's host with its gateway's port; the path goes under /system/v1.
            let host = agent
                .authority
                .rsplit_once(':')
                .map_or(agent.authority.as_str(), |(h, _)| h);
            let mut t = Target::http(format!(
                "{host}:{}",
                state.config.upstreams.agent_gateway_port
            ));
            t.base_path = "/system/v1".to_owned();
            Ok((format!("agent-gateway:{name}"), t))
        }
        // Local endpoints never get here.
        UpstreamKind::Local(_) => Err(ProxyError::NoRoute {
            path: route.to_owned(),
        }),
    }
}

/// What the access log line reports.
struct Outcome {
    route: Option<usize>,
    uid: Option<String>,
    upstream: Option<String>,
}

/// Handles one request.
pub(crate) async fn handle(state: Arc<State>, conn: Conn, req: Request<Body>) -> Response {
    let started = Instant::now();
    state.metrics.start();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let rid = request_id(req.headers());
    let mut outcome = Outcome {
        route: None,
        uid: None,
        upstream: None,
    };
    let mut resp = match route_and_proxy(&state, conn, req, rid.clone(), &mut outcome).await {
        Ok(r) => r,
        Err(e) => {
            let (status, code) = e.status_and_code();
            if status.is_server_error() {
                state.metrics.upstream_error();
                tracing::warn!(error = %e, request_id = ?rid, "proxy error");
            }
            error_response(status, code, &e.to_string())
        }
    };
    resp.headers_mut().insert(X_REQUEST_ID, rid.clone());
    let took = started.elapsed();
    let status = resp.status().as_u16();
    state.metrics.finish(outcome.route, status, took);
    tracing::info!(
        target: "basalt_gateway::access",
        method = %method,
        path = %path,
        status,
        duration_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        uid = outcome.uid.as_deref().unwrap_or("-"),
        request_id = rid.to_str().unwrap_or("-"),
        upstream = outcome.upstream.as_deref().unwrap_or("-"),
        "request"
    );
    resp
}

fn denied_response(d: &Denied) -> Response {
    let mut r = error_response(d.status(), d.code(), &d.to_string());
    if d.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("oauthjwt"),
        );
    }
    r
}

async fn route_and_proxy(
    state: &State,
    conn: Conn,
    mut req: Request<Body>,
    rid: HeaderValue,
    outcome: &mut Outcome,
) -> Result<Response, ProxyError> {
    let path = req.uri().path();
    if has_dot_segments(path) {
        return Err(ProxyError::DotSegments {
            path: path.to_owned(),
        });
    }
    let m = match_route(state.table, path).ok_or_else(|| ProxyError::NoRoute {
        path: path.to_owned(),
    })?;
    outcome.route = Some(m.index);

    let mut caller: Option<Caller> = None;
    if m.route.auth
        && let Some(auth) = &state.auth
    {
        let rid = m.permission();
        match auth.check(req.headers(), rid.as_deref()) {
            Ok(c) => {
                outcome.uid = Some(c.uid.clone());
                caller = Some(c);
            }
            Err(d) => {
                if let Denied::Forbidden { uid, .. } = &d {
                    outcome.uid = Some(uid.clone());
                }
                tracing::info!(route = m.route.prefix, reason = %d, "request denied");
                return Ok(denied_response(&d));
            }
        }
    }
    if let UpstreamKind::Local(which) = m.route.upstream {
        return Ok(local(state, which));
    }

    let (upstream, t) = target(state, &m).await?;
    outcome.upstream = Some(upstream.clone());
    let route = m.route.prefix;
    let mut upstream_path = if t.keep_prefix {
        path.to_owned()
    } else {
        format!("{}{}", t.base_path, m.upstream_path)
    };
    if let Some(q) = req.uri().query() {
        upstream_path.push('?');
        upstream_path.push_str(q);
    }
    let uri: http::Uri = format!("{}://{}{}", t.scheme.as_str(), t.authority, upstream_path)
        .parse()
        .map_err(|e: http::uri::InvalidUri| ProxyError::BadUri {
            route,
            upstream: upstream.clone(),
            addr: t.authority.clone(),
            reason: e.to_string(),
        })?;

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers, upgrade);
    // Browsers authenticate with the cookie; upstreams (the IAM) expect the header.
    if !headers.contains_key(header::AUTHORIZATION)
        && let Some(c) = &caller
        && let Ok(v) = HeaderValue::from_str(&format!("token={}", c.token))
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    strip_auth_cookies(headers);
    let host = headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(h) = host {
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, h.clone());
        }
        headers.insert(X_FORWARDED_HOST, h);
    }
    let peer_ip = conn.peer.ip().to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {peer_ip}"),
        _ => peer_ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(conn.proto));
    headers.insert(X_REQUEST_ID, rid);
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body);

    let mut resp = state
        .client
        .request(upstream_req)
        .await
        .map_err(|e| ProxyError::Upstream {
            route,
            upstream: upstream.clone(),
            addr: t.authority.clone(),
            reason: error_chain(&e),
        })?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let name = upstream.clone();
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => {
                        let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            tracing::debug!(upstream = %name, error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::warn!(upstream = %name, error = %e, "upgrade failed"),
                }
            });
        }
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    if t.scheme == Scheme::Https {
        tracing::trace!(upstream = %upstream, "https upstream");
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_stripped_others_kept() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; dcos-acs-auth-cookie=xyz; b=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("dcos-acs-info-cookie=e30"),
        );
        strip_auth_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("dcos-acs-auth-cookie=xyz"),
        );
        strip_auth_cookies(&mut h);
        assert!(h.get(header::COOKIE).is_none());
    }

    #[test]
    fn dot_segments() {
        assert!(has_dot_segments("/acs/api/v1/auth/../users"));
        assert!(has_dot_segments("/acs/api/v1/auth/%2E%2e/users"));
        assert!(has_dot_segments("/a/./b"));
        assert!(!has_dot_segments("/a/..b/c"));
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h.clone(), true);
        let mut up = h.clone();
        strip_hop_by_hop(&mut up, true);
        assert_eq!(up.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(up.get(header::CONNECTION).unwrap(), "upgrade");
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none() && h.get(header::TE).is_none());
        assert!(h.get(header::UPGRADE).is_none() && h.get(header::CONNECTION).is_none());
        assert!(h.get("x-keep").is_some());
    }
}
