//! `basalt-iam`: runs the IAM service on a master.

use basalt_iam::{EtcdIamStore, IamConfig, IamServer, TokenSigner};
use basalt_store::{Store, StoreConfig, TlsFiles};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Basalt identity and access service (DC/OS `/acs/api/v1`).
#[derive(Parser, Debug)]
#[command(name = "basalt-iam", version)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = basalt_iam::config::DEFAULT_LISTEN, env = "BASALT_IAM_LISTEN")]
    listen: SocketAddr,
    /// etcd endpoints, comma-separated.
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
    /// The IAM signing key (Ed25519 PKCS#8 PEM).
    #[arg(long, default_value = "/etc/basalt/iam-signing-key.pem")]
    signing_key: PathBuf,
    /// The cluster config (genconf `config.toml`) whose `[auth]` names the first superuser.
    #[arg(long)]
    config: Option<PathBuf>,
}

async fn run(args: Args) -> Result<(), String> {
    let pem = std::fs::read_to_string(&args.signing_key)
        .map_err(|e| format!("reading {}: {e}", args.signing_key.display()))?;
    let signer = TokenSigner::from_pkcs8_pem(&pem, "basalt-iam").map_err(|e| e.to_string())?;
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let cluster = basalt_genconf::config::Config::from_toml_str(&text, path)
                .map_err(|e| e.to_string())?;
            IamConfig::from_auth(&cluster.auth).map_err(|e| e.to_string())?
        }
        None => IamConfig::default(),
    };
    config.listen = args.listen;
    let mut store_config = StoreConfig::new(args.etcd.clone());
    if let (Some(cert), Some(key), Some(ca)) = (args.etcd_cert, args.etcd_key, args.etcd_ca) {
        store_config = store_config.with_tls(TlsFiles { cert, key, ca });
    }
    let store = Store::connect(store_config)
        .await
        .map_err(|e| e.to_string())?;
    let server = IamServer::start(EtcdIamStore::new(store), signer, config)
        .await
        .map_err(|e| e.to_string())?;
    tokio::select! {
        r = server.wait() => r.map_err(|e| format!("serving: {e}")),
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
            eprintln!("basalt-iam: {e}");
            ExitCode::FAILURE
        }
    }
}
