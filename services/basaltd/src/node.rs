//! The node's installed bundle (`/run/basalt`, [`basalt_genconf::render::NODE_ROOT`]):
//! what the components read from it, and the options every component shares
//! (`--node-root`, `--ip`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use basalt_store::{StoreConfig, TlsFiles};

/// Options shared by the components that read the node bundle.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Root of the installed node bundle (holds `etc/` and `bin/`).
    #[arg(long, env = "BASALT_NODE_ROOT", default_value = basalt_genconf::render::NODE_ROOT)]
    pub node_root: PathBuf,
    /// This node's cluster IP; default: what the bundle's `bin/ip-detect` prints.
    #[arg(long)]
    pub ip: Option<IpAddr>,
}

/// The installed bundle under one root.
#[derive(Debug, Clone)]
pub struct Node {
    root: PathBuf,
    ip: Option<IpAddr>,
}

/// How long `bin/ip-detect` may run.
const IP_DETECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Node {
    pub fn new(args: &NodeArgs) -> Node {
        Node {
            root: args.node_root.clone(),
            ip: args.ip,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/etc/<rel>`.
    pub fn etc(&self, rel: &str) -> PathBuf {
        self.root.join("etc").join(rel)
    }

    /// Reads `etc/<rel>` as text; the error names the file.
    pub fn read(&self, rel: &str) -> anyhow::Result<String> {
        let path = self.etc(rel);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The etcd client settings of `etc/etcd-client.env` (`ETCDCTL_ENDPOINTS`,
    /// `ETCDCTL_CERT`/`_KEY`/`_CACERT`, all three or none).
    pub fn store_config(&self) -> anyhow::Result<StoreConfig> {
        let path = self.etc("etcd-client.env");
        let text = self.read("etcd-client.env")?;
        store_config_from_env(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The agent join credential (`etc/join-credential`).
    pub fn join_credential(&self) -> anyhow::Result<String> {
        let c = self.read("join-credential")?.trim().to_owned();
        if c.is_empty() {
            bail!("{} is empty", self.etc("join-credential").display());
        }
        Ok(c)
    }

    /// The cluster configuration (`etc/cluster.toml`).
    pub fn cluster(&self) -> anyhow::Result<basalt_genconf::config::Config> {
        let path = self.etc("cluster.toml");
        let text = self.read("cluster.toml")?;
        basalt_genconf::config::Config::from_toml_str(&text, &path)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The masters of `etc/master_list` (a JSON list of IPs, DC/OS format) as
    /// `<ip>:<port>`.
    pub fn master_list(&self, port: u16) -> anyhow::Result<Vec<String>> {
        let ips: Vec<String> = serde_json::from_str(&self.read("master_list")?)
            .with_context(|| format!("{} is not a JSON list", self.etc("master_list").display()))?;
        Ok(ips.into_iter().map(|ip| format!("{ip}:{port}")).collect())
    }

    /// The node's role (`etc/role`: `master`, `agent` or `agent-public`).
    pub fn role(&self) -> anyhow::Result<String> {
        Ok(self.read("role")?.trim().to_owned())
    }

    /// This node's IP: `--ip`, else the output of `bin/ip-detect`.
    pub async fn ip(&self) -> anyhow::Result<IpAddr> {
        if let Some(ip) = self.ip {
            return Ok(ip);
        }
        let script = self.root.join("bin/ip-detect");
        let out = tokio::time::timeout(
            IP_DETECT_TIMEOUT,
            tokio::process::Command::new(&script)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| format!("{} ran longer than {IP_DETECT_TIMEOUT:?}", script.display()))?
        .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().with_context(|| {
            format!(
                "{} printed {:?}, not an IP address",
                script.display(),
                text.trim()
            )
        })
    }
}

/// Parses `KEY=VALUE` lines (comments, blanks and `export ` allowed; values may be
/// quoted) into the store settings.
pub fn store_config_from_env(text: &str) -> anyhow::Result<StoreConfig> {
    let mut endpoints = None;
    let (mut cert, mut key, mut ca) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            bail!("line {line:?} is not KEY=VALUE");
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_owned();
        match k.trim() {
            "ETCDCTL_ENDPOINTS" => endpoints = Some(v),
            "ETCDCTL_CERT" => cert = Some(PathBuf::from(v)),
            "ETCDCTL_KEY" => key = Some(PathBuf::from(v)),
            "ETCDCTL_CACERT" => ca = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    let Some(endpoints) = endpoints else {
        bail!("no ETCDCTL_ENDPOINTS");
    };
    let list: Vec<String> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if list.is_empty() {
        bail!("ETCDCTL_ENDPOINTS is empty");
    }
    let mut config = StoreConfig::new(list);
    match (cert, key, ca) {
        (Some(cert), Some(key), Some(ca)) => config = config.with_tls(TlsFiles { cert, key, ca }),
        (None, None, None) => {}
        _ => bail!("ETCDCTL_CERT, ETCDCTL_KEY and ETCDCTL_CACERT go together"),
    }
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called (not
/// when first polled): call it before reporting READY=1, so that a SIGTERM right after
/// readiness is never lost.
pub fn terminated() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut int) = match (term, int) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM/SIGINT");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}

/// A multi-threaded tokio runtime.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rendered_etcd_client_env() {
        let c = store_config_from_env(
            "# etcd\nETCDCTL_API=3\nETCDCTL_ENDPOINTS=https://10.0.0.1:2379,https://10.0.0.2:2379\n\
             ETCDCTL_CACERT=/run/basalt/etc/tls/ca.crt\nETCDCTL_CERT=/run/basalt/etc/tls/etcd-client.crt\n\
             ETCDCTL_KEY=/run/basalt/etc/tls/etcd-client.key\n",
        )
        .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert!(c.tls.is_some());
        let c =
            store_config_from_env("export ETCDCTL_ENDPOINTS=\"http://127.0.0.1:2379\"\n").unwrap();
        assert_eq!(c.endpoints, vec!["http://127.0.0.1:2379".to_owned()]);
        assert!(c.tls.is_none());
    }

    #[test]
    fn rejects_incomplete_etcd_client_env() {
        assert!(store_config_from_env("ETCDCTL_API=3\n").is_err());
        assert!(store_config_from_env("ETCDCTL_ENDPOINTS=a:1\nETCDCTL_CERT=/x\n").is_err());
        assert!(store_config_from_env("garbage\n").is_err());
    }
}
