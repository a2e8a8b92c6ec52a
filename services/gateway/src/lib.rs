//! Basalt's gateway: the DC/OS Admin Router–compatible front door.
//!
//! One route table ([`routes::MASTER_ROUTES`], [`routes::AGENT_ROUTES`]) says, per path
//! prefix, where requests go (a fixed local service, the leading master, the Marathon
//! leader, `/service/<name>` through a [`ServiceResolver`], an agent by id, or an answer
//! served here), whether a token is needed, and which DC/OS permission (action `full`).
//!
//! - **TLS** on 443 with the bundle's `etc/tls/gateway.{crt,key}` (rustls, ring; HTTP/2
//!   and HTTP/1.1 by ALPN); 80 redirects to 443 (`redirect_http`); the agent variant
//!   serves plain HTTP on 61001 ([`GatewayConfig::agent`]). Listeners are
//!   `tokio-rustls` + `hyper-util`'s auto server, the upstream client is `hyper-util`'s
//!   pooled client (with `hyper-rustls` for `https` services): the hyper/rustls
//!   maintainers' own crates, no extra server framework; `axum` supplies body and
//!   response types.
//! - **Proxying** streams both ways without buffering (Mesos v1 RecordIO streams,
//!   Marathon SSE), passes `Upgrade` (websockets) through, keeps or sets
//!   `X-Request-Id`, appends `X-Forwarded-For`, sets `X-Forwarded-Proto`/`-Host`,
//!   strips `dcos-acs-auth-cookie`/`dcos-acs-info-cookie` (a cookie-authenticated
//!   request gets `Authorization: token=…` instead, as Admin Router does) and
//!   hop-by-hop headers, and refuses `.`/`..` path segments.
//! - **Auth** ([`auth::Authenticator`]): token from `Authorization: token=`/`Bearer`, or
//!   the cookie → [`basalt_iam::CachedVerifier`] → revocation → permission
//!   ([`basalt_iam::PolicyCache`], `dcos:superuser` passes everything). Missing or
//!   invalid/expired/revoked → 401 with `WWW-Authenticate: oauthjwt`; permission
//!   missing → 403; bodies `{"title","description","code"}`. `auth_enabled = false`
//!   opens every route.
//! - **Errors**: unknown route 404; unknown service/agent 404; no leader 503; upstream
//!   unreachable 502 with a body naming the route, upstream and address.
//! - **Access log**: target `basalt_gateway::access`, fields `method`, `path`, `status`,
//!   `duration_us` (to response headers), `uid`, `request_id`, `upstream`.
//! - **Metrics**: Prometheus text at `/metrics` on the internal `metrics_listen`
//!   (default `127.0.0.1:61091`, agents `61092`).

pub mod auth;
pub mod config;
pub mod metrics;
pub mod proxy;
pub mod resolve;
pub mod routes;
pub mod server;

pub use auth::{Authenticator, Caller, Denied};
pub use config::{ClusterMetadata, GatewayConfig, Role, TlsPems, Upstreams};
pub use proxy::{ProxyError, STRIPPED_COOKIES};
pub use resolve::{MesosStateResolver, ResolveError, Scheme, ServiceResolver, Target};
pub use routes::{AGENT_ROUTES, MASTER_ROUTES, Route, UpstreamKind};
pub use server::{GatewayServer, StartError};
