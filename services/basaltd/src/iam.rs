//! `basaltd iam`: the IAM service (basalt-iam) with node defaults: the signing key and
//! etcd client settings come from the installed bundle (`/run/basalt/etc/…`, the unit's
//! `EnvironmentFile=/run/basalt/etc/etcd-client.env` gives `ETCDCTL_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use basalt_iam::{EtcdIamStore, IamConfig, IamServer, TokenSigner};
use basalt_store::{Store, StoreConfig, TlsFiles};
use clap::Parser;

/// Basalt identity and access service (DC/OS `/acs/api/v1`).
#[derive(Parser, Debug)]
#[command(name = "basaltd iam", version)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = basalt_iam::config::DEFAULT_LISTEN, env = "BASALT_IAM_LISTEN")]
    listen: SocketAddr,
    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "https://127.0.0.1:2379",
        env = "ETCDCTL_ENDPOINTS"
    )]
    etcd: Vec<String>,
    /// etcd client certificate (mutual TLS; with --etcd-key and --etcd-ca).
    #[arg(long, env = "ETCDCTL_CERT", requires_all = ["etcd_key", "etcd_ca"])]
    etcd_cert: Option<PathBuf>,
    /// etcd client key.
    #[arg(long, env = "ETCDCTL_KEY")]
    etcd_key: Option<PathBuf>,
    /// etcd CA certificate.
    #[arg(long, env = "ETCDCTL_CACERT")]
    etcd_ca: Option<PathBuf>,
    /// The IAM signing key (Ed25519 PKCS#8 PEM) from the master bundle.
    #[arg(long, default_value = "/run/basalt/etc/iam-signing-key.pem")]
    signing_key: PathBuf,
    /// The cluster config whose `[auth]` names the first superuser.
    #[arg(long, default_value = "/run/basalt/etc/cluster.toml")]
    config: PathBuf,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(&args.signing_key)
        .with_context(|| format!("reading {}", args.signing_key.display()))?;
    let signer =
        TokenSigner::from_pkcs8_pem(&pem, "basalt-iam").map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut config = match std::fs::read_to_string(&args.config) {
        Ok(text) => {
            let cluster = basalt_genconf::config::Config::from_toml_str(&text, &args.config)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            IamConfig::from_auth(&cluster.auth).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => IamConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", args.config.display())),
    };
    config.listen = args.listen;
    let mut store_config = StoreConfig::new(args.etcd.clone());
    if let (Some(cert), Some(key), Some(ca)) = (args.etcd_cert, args.etcd_key, args.etcd_ca) {
        store_config = store_config.with_tls(TlsFiles { cert, key, ca });
    }
    let store = Store::connect(store_config)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to etcd: {e}"))?;
    let server = IamServer::start(EtcdIamStore::new(store), signer, config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    basalt_supervisor::notify::notify_ready();
    tokio::select! {
        r = server.wait() => r.map_err(|e| anyhow::anyhow!("serving: {e}")),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}
