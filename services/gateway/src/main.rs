//! `basalt-gateway`: the Admin-Router-compatible front door (masters: 443/80; agents:
//! 61001).

use basalt_gateway::{GatewayConfig, GatewayServer, Role};
use basalt_store::{Store, StoreConfig, TlsFiles};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Basalt gateway (DC/OS Admin Router paths, TLS, token and permission checks).
#[derive(Parser, Debug)]
#[command(name = "basalt-gateway", version)]
struct Args {
    /// `master` (TLS, auth, full route table) or `agent` (61001, no auth).
    #[arg(long, default_value = "master")]
    role: String,
    /// The node's rendered bundle root (holds `etc/tls/gateway.{crt,key}`,
    /// `etc/tls/ca.crt`, `etc/iam-public-key.pem`, `etc/cluster-id`).
    #[arg(long, default_value = "/opt/basalt")]
    bundle: PathBuf,
    /// TLS listen address (masters).
    #[arg(long, default_value = "0.0.0.0:443")]
    https_listen: SocketAddr,
    /// Plain HTTP listen address (masters: redirects to https; agents: serves).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Serve routes on the plain listener instead of redirecting.
    #[arg(long)]
    no_redirect: bool,
    /// Internal Prometheus listener.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Open every route (DC/OS `oauth_enabled = false`).
    #[arg(long)]
    auth_disabled: bool,
    /// `PUBLIC_IPV4` for `/metadata` (the ip-detect-public answer).
    #[arg(long, default_value = "")]
    public_ipv4: String,
    /// `bootstrap-id` for `/dcos-metadata/dcos-version.json`.
    #[arg(long, default_value = "")]
    bootstrap_id: String,
    /// `dcos-image-commit` for `/dcos-metadata/dcos-version.json`.
    #[arg(long, default_value = "")]
    image_commit: String,
    /// etcd endpoints, comma-separated (masters).
    #[arg(long, value_delimiter = ',', default_value = "https://127.0.0.1:2379")]
    etcd: Vec<String>,
    /// etcd client certificate, key and CA (mutual TLS), all three or none.
    #[arg(long, requires_all = ["etcd_key", "etcd_ca"])]
    etcd_cert: Option<PathBuf>,
    /// etcd client key.
    #[arg(long)]
    etcd_key: Option<PathBuf>,
    /// etcd CA certificate.
    #[arg(long)]
    etcd_ca: Option<PathBuf>,
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = match args.role.as_str() {
        "master" => GatewayConfig {
            https_listen: Some(args.https_listen),
            http_listen: Some(
                args.http_listen
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 80))),
            ),
            https_port: args.https_listen.port(),
            ..GatewayConfig::default()
        },
        "agent" => {
            let mut c = GatewayConfig::agent();
            if let Some(l) = args.http_listen {
                c.http_listen = Some(l);
            }
            c
        }
        other => return Err(format!("--role {other:?}: expected master or agent")),
    }
    .with_bundle(&args.bundle)
    .map_err(|e| e.to_string())?;
    if args.no_redirect {
        config.redirect_http = false;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = Some(m);
    }
    if args.auth_disabled {
        config.auth_enabled = false;
    }
    config.metadata.public_ipv4 = args.public_ipv4;
    config.metadata.bootstrap_id = args.bootstrap_id;
    config.metadata.image_commit = args.image_commit;
    let store = if config.role == Role::Master {
        let mut store_config = StoreConfig::new(args.etcd.clone());
        if let (Some(cert), Some(key), Some(ca)) = (args.etcd_cert, args.etcd_key, args.etcd_ca) {
            store_config = store_config.with_tls(TlsFiles { cert, key, ca });
        }
        Some(
            Store::connect(store_config)
                .await
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let server = GatewayServer::start(config, store)
        .await
        .map_err(|e| e.to_string())?;
    tokio::select! {
        () = server.wait() => Err("a listener stopped".to_owned()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("basalt-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
