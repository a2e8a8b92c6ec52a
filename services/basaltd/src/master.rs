//! `basaltd master`: the Mesos-compatible master (basalt-master) with node defaults:
//! etcd client settings from `etc/etcd-client.env` (+ `etc/tls/*`), the agent join
//! credential from `etc/join-credential`, `gpus_are_scarce` and the cluster name from
//! `etc/cluster.toml`, the advertised address `<ip>:<port>` (ip from `bin/ip-detect` or
//! `--ip`). Reports READY=1 once listening and runs until SIGTERM, then resigns the
//! leadership so a successor takes over at once.

use std::net::SocketAddr;
use std::process::ExitCode;

use basalt_master::{Master, MasterConfig};
use clap::Parser;

use crate::node::{Node, NodeArgs};

/// Basalt master (Mesos master HTTP APIs on :5050).
#[derive(Parser, Debug)]
#[command(name = "basaltd master", version)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = basalt_master::config::DEFAULT_LISTEN, env = "BASALT_MASTER_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    node: NodeArgs,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node = Node::new(&args.node);
    let cluster = node.cluster()?;
    let mut config = MasterConfig::new(node.store_config()?);
    config.listen = args.listen;
    config.join_credential = Some(node.join_credential()?);
    config.gpus_are_scarce = cluster.agent.gpus_are_scarce;
    config.cluster = Some(cluster.cluster_name.clone());
    let ip = node.ip().await?;
    // Port 0 (tests) is only known once bound: the bound address is advertised then.
    if args.listen.port() != 0 {
        config.advertised_address = Some(SocketAddr::new(ip, args.listen.port()).to_string());
    }
    let master = Master::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the master: {e}"))?;
    tracing::info!(addr = %master.local_addr(), advertised = master.address(), "master listening");
    let stop = crate::node::terminated();
    basalt_supervisor::notify::notify_ready();
    stop.await;
    master.shutdown().await;
    Ok(())
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    crate::node::runtime()?.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}
