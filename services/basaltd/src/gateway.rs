//! `basaltd gateway`: the Admin-Router-compatible front door (basalt-gateway) with node
//! defaults. The role comes from `etc/role` (`master`: TLS on 443 with
//! `etc/tls/gateway.{crt,key}`, 80 redirecting, tokens checked with
//! `etc/iam-public-key.pem` unless `auth.enabled = false` in `etc/cluster.toml`, leaders
//! observed in etcd via `etc/etcd-client.env`; agents: plain HTTP on 61001, no auth).

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::bail;
use basalt_gateway::{GatewayConfig, GatewayServer, Role};
use basalt_store::Store;
use clap::Parser;

use crate::node::{Node, NodeArgs};

/// Basalt gateway (DC/OS Admin Router paths, TLS, token and permission checks).
#[derive(Parser, Debug)]
#[command(name = "basaltd gateway", version)]
struct Args {
    /// `master` or `agent`; default: from the bundle's `etc/role` (`agent-public` → agent).
    #[arg(long, value_parser = ["master", "agent"])]
    role: Option<String>,
    /// TLS listen address (masters).
    #[arg(long, default_value = "0.0.0.0:443")]
    https_listen: SocketAddr,
    /// Plain HTTP listen address (default: masters 0.0.0.0:80, agents 0.0.0.0:61001).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Serve routes on the plain listener instead of redirecting to https (masters).
    #[arg(long)]
    no_redirect: bool,
    /// Internal Prometheus listener (default: masters 127.0.0.1:61091, agents :61092).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Open every route, whatever `auth.enabled` in `etc/cluster.toml` says.
    #[arg(long)]
    auth_disabled: bool,
    /// `PUBLIC_IPV4` for `/metadata` (the ip-detect-public answer).
    #[arg(long, default_value = "")]
    public_ipv4: String,
    #[command(flatten)]
    node: NodeArgs,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node = Node::new(&args.node);
    let role = match &args.role {
        Some(r) => r.clone(),
        None => node.role()?,
    };
    let mut config = match role.as_str() {
        "master" => GatewayConfig {
            https_listen: Some(args.https_listen),
            https_port: args.https_listen.port(),
            ..GatewayConfig::default()
        },
        "agent" | "agent-public" => GatewayConfig::agent(),
        other => bail!("unknown node role {other:?} (expected master, agent or agent-public)"),
    }
    .with_bundle(node.root())
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(l) = args.http_listen {
        config.http_listen = Some(l);
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = Some(m);
    }
    if args.no_redirect {
        config.redirect_http = false;
    }
    config.metadata.public_ipv4 = args.public_ipv4;
    let store = if config.role == Role::Master {
        if args.auth_disabled || !node.cluster()?.auth.enabled {
            config.auth_enabled = false;
        }
        let store = Store::connect(node.store_config()?)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to etcd: {e}"))?;
        Some(store)
    } else {
        None
    };
    let server = GatewayServer::start(config, store)
        .await
        .map_err(|e| anyhow::anyhow!("starting the gateway: {e}"))?;
    let stop = crate::node::terminated();
    basalt_supervisor::notify::notify_ready();
    tokio::select! {
        () = server.wait() => bail!("a gateway listener stopped"),
        () = stop => Ok(()),
    }
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    crate::node::runtime()?.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}
