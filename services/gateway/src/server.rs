//! Listeners: TLS (tokio-rustls + hyper-util's HTTP/1.1+HTTP/2 server), plain HTTP
//! (redirect or serve), and the internal Prometheus listener.

use crate::auth::{AuthInitError, Authenticator};
use crate::config::{GatewayConfig, Role, TlsPems};
use crate::metrics::Metrics;
use crate::proxy::{self, ClientError, Conn, Leaders, State};
use crate::resolve::{MesosStateResolver, ServiceResolver};
use crate::routes::{AGENT_ROUTES, MASTER_ROUTES};
use axum::body::Body;
use basalt_store::{Election, Store, StoreError};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS listener configured without certificate and key.
    #[error("https listener {0} needs tls.cert_chain and tls.key")]
    NoCertificate(SocketAddr),
    /// The certificate or key did not load.
    #[error("gateway TLS certificate/key: {0}")]
    Tls(String),
    /// The upstream client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The authenticator could not start.
    #[error(transparent)]
    Auth(#[from] AuthInitError),
    /// The master role needs etcd (leaders, IAM mirrors).
    #[error("the master gateway needs an etcd store (leader election, IAM policy)")]
    NoStore,
    /// Following an election failed.
    #[error("following the {service} leader: {source}")]
    Leader {
        /// Election service.
        service: &'static str,
        /// The error.
        #[source]
        source: StoreError,
    },
    /// A listener could not be bound.
    #[error("binding {what} listener {addr}: {source}")]
    Bind {
        /// `https`, `http` or `metrics`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Loads a rustls server config (HTTP/1.1 and HTTP/2 via ALPN, ring provider).
pub fn tls_server_config(pems: &TlsPems) -> Result<rustls::ServerConfig, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(pems.cert_chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Tls(format!("certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(StartError::Tls("certificate chain: no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(pems.key.as_bytes())
        .map_err(|e| StartError::Tls(format!("private key: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| StartError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A running gateway. Dropping it stops the listeners and open connections.
pub struct GatewayServer {
    https_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for GatewayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayServer")
            .field("https_addr", &self.https_addr)
            .field("http_addr", &self.http_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

impl Drop for GatewayServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    l.local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })
}

impl GatewayServer {
    /// Starts the gateway with the default resolver ([`MesosStateResolver`] over the
    /// leading master). `store` is required for the master role.
    pub async fn start(
        config: GatewayConfig,
        store: Option<Store>,
    ) -> Result<GatewayServer, StartError> {
        GatewayServer::start_with(config, store, None).await
    }

    /// Starts the gateway; `resolver` replaces the default `/service` and `/agent`
    /// resolution.
    pub async fn start_with(
        config: GatewayConfig,
        store: Option<Store>,
        resolver: Option<Arc<dyn ServiceResolver>>,
    ) -> Result<GatewayServer, StartError> {
        let client = proxy::http_client(config.ca_pem.as_deref(), config.connect_timeout)?;
        let table = match config.role {
            Role::Master => MASTER_ROUTES,
            Role::Agent => AGENT_ROUTES,
        };
        let mut leaders = Leaders::default();
        let mut resolver = resolver;
        let mut auth = None;
        if config.role == Role::Master {
            let store = store.ok_or(StartError::NoStore)?;
            for service in ["master", "marathon"] {
                let obs = Election::observe(&store, service)
                    .await
                    .map_err(|source| StartError::Leader { service, source })?;
                let rx = obs.receiver();
                if service == "master" {
                    leaders.master = Some(rx);
                } else {
                    leaders.marathon = Some(rx);
                }
                leaders._observers.push(obs);
            }
            if resolver.is_none()
                && let Some(rx) = leaders.master.clone()
            {
                resolver = Some(Arc::new(MesosStateResolver::new(
                    rx,
                    client.clone(),
                    config.state_cache_ttl,
                    config.upstreams.agent_port,
                )));
            }
            if config.auth_enabled {
                let key = config
                    .iam_public_key_pem
                    .as_deref()
                    .ok_or(AuthInitError::NoKey)?;
                auth = Some(
                    Authenticator::start(store.clone(), key, config.token_cache_capacity).await?,
                );
            }
        }
        let tls = match (config.https_listen, &config.tls) {
            (Some(addr), None) => return Err(StartError::NoCertificate(addr)),
            (Some(_), Some(pems)) => Some(TlsAcceptor::from(Arc::new(tls_server_config(pems)?))),
            (None, _) => None,
        };

        let mut tasks = Vec::new();
        let mut https_addr = None;
        let mut http_addr = None;
        let mut metrics_addr = None;
        let https_port = config.https_port;
        let redirect = config.redirect_http && tls.is_some();
        let state = Arc::new(State {
            table,
            metrics: Metrics::new(table),
            auth,
            client,
            leaders,
            resolver,
            config,
        });
        if let (Some(addr), Some(tls)) = (state.config.https_listen, tls) {
            let l = bind("https", addr).await?;
            let bound = local_addr("https", &l, addr)?;
            https_addr = Some(bound);
            tracing::info!(addr = %bound, "gateway listening (https)");
            tasks.push(tokio::spawn(accept_loop(
                l,
                Some(tls),
                Mode::Serve(state.clone()),
            )));
        }
        if let Some(addr) = state.config.http_listen {
            let l = bind("http", addr).await?;
            let bound = local_addr("http", &l, addr)?;
            http_addr = Some(bound);
            let mode = if redirect {
                Mode::Redirect(https_port)
            } else {
                Mode::Serve(state.clone())
            };
            tracing::info!(addr = %bound, redirect, "gateway listening (http)");
            tasks.push(tokio::spawn(accept_loop(l, None, mode)));
        }
        if let Some(addr) = state.config.metrics_listen {
            let l = bind("metrics", addr).await?;
            let bound = local_addr("metrics", &l, addr)?;
            metrics_addr = Some(bound);
            tasks.push(tokio::spawn(accept_loop(
                l,
                None,
                Mode::Metrics(state.clone()),
            )));
        }
        Ok(GatewayServer {
            https_addr,
            http_addr,
            metrics_addr,
            state,
            tasks,
        })
    }

    /// The bound TLS address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The bound plain-HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The Prometheus text the metrics listener serves.
    pub fn metrics_text(&self) -> String {
        self.state.metrics.render()
    }

    /// Serves until a listener fails or the server is dropped.
    pub async fn wait(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for t in tasks {
            let _ = t.await;
        }
    }
}

#[derive(Clone)]
enum Mode {
    Serve(Arc<State>),
    Redirect(u16),
    Metrics(Arc<State>),
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, mode: Mode) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let mode = mode.clone();
        conns.spawn(async move {
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => serve_conn(stream, peer, "https", mode).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_conn(tcp, peer, "http", mode).await,
            }
        });
    }
}

async fn serve_conn<IO>(io: IO, peer: SocketAddr, proto: &'static str, mode: Mode)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = Conn { peer, proto };
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mode = mode.clone();
        async move {
            let req = req.map(Body::new);
            let resp = match mode {
                Mode::Serve(state) => proxy::handle(state, conn, req).await,
                Mode::Redirect(port) => redirect(&req, port),
                Mode::Metrics(state) => metrics(&state, &req),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// 301 to the same host and path on `https`.
fn redirect(req: &Request<Body>, https_port: u16) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("localhost");
    // Drop any port (IPv6 literals keep their brackets).
    let host = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{host}{port}{pq}");
    Response::builder()
        .status(StatusCode::MOVED_PERMANENTLY)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .unwrap_or_else(|_| {
            proxy::error_response(
                StatusCode::BAD_REQUEST,
                "ERR_INVALID_HOST",
                "bad Host header",
            )
        })
}

fn metrics(state: &State, req: &Request<Body>) -> Response<Body> {
    if req.uri().path() != "/metrics" {
        return proxy::error_response(StatusCode::NOT_FOUND, "ERR_NOT_FOUND", "only /metrics");
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Body::from(state.metrics.render()))
        .unwrap_or_else(|_| {
            proxy::error_response(StatusCode::INTERNAL_SERVER_ERROR, "ERR_INTERNAL", "metrics")
        })
}
