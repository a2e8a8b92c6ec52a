//! Gateway configuration.

use crate::routes::StaticUpstream;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Master gateway or agent gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Master: [`crate::routes::MASTER_ROUTES`], TLS, auth.
    Master,
    /// Agent (61001): [`crate::routes::AGENT_ROUTES`], no auth.
    Agent,
}

/// PEM texts for the TLS server.
#[derive(Debug, Clone)]
pub struct TlsPems {
    /// Certificate chain (leaf first), e.g. `etc/tls/gateway.crt`.
    pub cert_chain: String,
    /// Private key (PKCS#8, SEC1 or PKCS#1), e.g. `etc/tls/gateway.key`.
    pub key: String,
}

/// Fixed upstream addresses (`host:port`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Upstreams {
    /// IAM.
    pub iam: String,
    /// Cosmos.
    pub cosmos: String,
    /// Mesos-DNS HTTP API.
    pub mesos_dns: String,
    /// Diagnostics.
    pub diagnostics: String,
    /// Logs.
    pub logs: String,
    /// Metrics.
    pub metrics: String,
    /// Marathon, when no Marathon leader is registered in the `marathon` election.
    pub marathon: String,
    /// Port of agents' HTTP API when `/master/state` has none (`/agent/<id>`).
    pub agent_port: u16,
    /// Port of the agents' gateway (`/system/v1/agent/<id>/logs|metrics`): 61001.
    pub agent_gateway_port: u16,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams {
            iam: "127.0.0.1:8101".into(),
            cosmos: "127.0.0.1:7070".into(),
            mesos_dns: "127.0.0.1:8123".into(),
            diagnostics: "127.0.0.1:1050".into(),
            logs: "127.0.0.1:61081".into(),
            metrics: "127.0.0.1:61082".into(),
            marathon: "127.0.0.1:8080".into(),
            agent_port: 5051,
            agent_gateway_port: 61001,
        }
    }
}

impl Upstreams {
    /// The address of a static upstream.
    pub fn addr(&self, u: StaticUpstream) -> &str {
        match u {
            StaticUpstream::Iam => &self.iam,
            StaticUpstream::Cosmos => &self.cosmos,
            StaticUpstream::MesosDns => &self.mesos_dns,
            StaticUpstream::Diagnostics => &self.diagnostics,
            StaticUpstream::Logs => &self.logs,
            StaticUpstream::Metrics => &self.metrics,
        }
    }
}

/// What `/dcos-metadata/dcos-version.json` and `/metadata` report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ClusterMetadata {
    /// `version`.
    pub version: String,
    /// `dcos-variant` (`open`).
    pub variant: String,
    /// `dcos-image-commit`: the Basalt build's commit.
    pub image_commit: String,
    /// `bootstrap-id`: the config bundle's id.
    pub bootstrap_id: String,
    /// `CLUSTER_ID` (genconf `etc/cluster-id`).
    pub cluster_id: String,
    /// `PUBLIC_IPV4` (the `ip-detect-public` answer).
    pub public_ipv4: String,
}

impl Default for ClusterMetadata {
    fn default() -> Self {
        ClusterMetadata {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            variant: "open".to_owned(),
            image_commit: String::new(),
            bootstrap_id: String::new(),
            cluster_id: String::new(),
            public_ipv4: String::new(),
        }
    }
}

/// The gateway's configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Which route table.
    pub role: Role,
    /// TLS listener (443); `None`: no TLS listener.
    pub https_listen: Option<SocketAddr>,
    /// Plain HTTP listener (80 on masters, 61001 on agents); `None`: none.
    pub http_listen: Option<SocketAddr>,
    /// `true`: the plain listener only redirects to `https://` (301); `false`: it serves
    /// the routes. Ignored without a TLS listener.
    pub redirect_http: bool,
    /// The public HTTPS port used in redirects.
    pub https_port: u16,
    /// Prometheus `/metrics` listener (internal); `None`: none.
    pub metrics_listen: Option<SocketAddr>,
    /// Server certificate and key (required with `https_listen`).
    pub tls: Option<TlsPems>,
    /// Cluster CA (PEM) trusted for `https` upstreams (`DCOS_SERVICE_SCHEME=https`).
    pub ca_pem: Option<String>,
    /// `auth.enabled`: check tokens and permissions. `false`: every route is open.
    pub auth_enabled: bool,
    /// IAM token verification key (SPKI PEM, `etc/iam-public-key.pem`).
    pub iam_public_key_pem: Option<String>,
    /// Verified tokens remembered by the [`basalt_iam::CachedVerifier`].
    pub token_cache_capacity: usize,
    /// Fixed upstreams.
    pub upstreams: Upstreams,
    /// Metadata answers.
    pub metadata: ClusterMetadata,
    /// How long a `/master/state` answer is reused for `/service` and `/agent` routing.
    pub state_cache_ttl: Duration,
    /// Connect timeout for upstreams.
    pub connect_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            role: Role::Master,
            https_listen: Some(SocketAddr::from(([0, 0, 0, 0], 443))),
            http_listen: Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            redirect_http: true,
            https_port: 443,
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 61091))),
            tls: None,
            ca_pem: None,
            auth_enabled: true,
            iam_public_key_pem: None,
            token_cache_capacity: 100_000,
            upstreams: Upstreams::default(),
            metadata: ClusterMetadata::default(),
            state_cache_ttl: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A file of the node's config bundle could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

fn read(path: PathBuf) -> Result<String, ReadError> {
    std::fs::read_to_string(&path).map_err(|source| ReadError { path, source })
}

impl GatewayConfig {
    /// The agent gateway: plain HTTP on `0.0.0.0:61001`, no TLS, no auth.
    pub fn agent() -> GatewayConfig {
        GatewayConfig {
            role: Role::Agent,
            https_listen: None,
            http_listen: Some(SocketAddr::from(([0, 0, 0, 0], 61001))),
            redirect_http: false,
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 61092))),
            auth_enabled: false,
            ..GatewayConfig::default()
        }
    }

    /// Fills TLS, CA, IAM key and cluster id from a rendered node bundle root (the
    /// directory holding `etc/`): `etc/tls/gateway.{crt,key}`, `etc/tls/ca.crt`,
    /// `etc/iam-public-key.pem`, `etc/cluster-id`.
    pub fn with_bundle(mut self, root: &Path) -> Result<GatewayConfig, ReadError> {
        let etc = root.join("etc");
        if self.role == Role::Master {
            self.tls = Some(TlsPems {
                cert_chain: read(etc.join("tls/gateway.crt"))?,
                key: read(etc.join("tls/gateway.key"))?,
            });
            self.iam_public_key_pem = Some(read(etc.join("iam-public-key.pem"))?);
        }
        self.ca_pem = Some(read(etc.join("tls/ca.crt"))?);
        self.metadata.cluster_id = read(etc.join("cluster-id"))?.trim().to_owned();
        Ok(self)
    }
}
