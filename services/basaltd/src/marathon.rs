//! `basaltd marathon`: the Marathon-compatible app scheduler (basalt-marathon) on masters,
//! with node defaults: etcd client settings from `etc/etcd-client.env` (+ `etc/tls/*`),
//! every master of `etc/master_list` (`http://<ip>:5050`, this node's first; Marathon asks
//! `/master/redirect` which one leads and fails over between them), and the advertised
//! address `<ip>:8080` that the Marathon election publishes (non-leaders proxy to it). Reports READY=1 once the REST API listens.

use std::net::SocketAddr;
use std::process::ExitCode;

use basalt_marathon::server::{MarathonConfig, start};
use basalt_store::Store;
use clap::Parser;

use crate::node::{Node, NodeArgs};

/// Basalt Marathon (REST v2 on :8080).
#[derive(Parser, Debug)]
#[command(name = "basaltd marathon", version)]
struct Args {
    /// Listen address of the REST API.
    #[arg(long, default_value = "0.0.0.0:8080", env = "BASALT_MARATHON_LISTEN")]
    listen: SocketAddr,
    /// Port of the masters' HTTP API.
    #[arg(long, default_value_t = 5050)]
    master_port: u16,
    #[command(flatten)]
    node: NodeArgs,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node = Node::new(&args.node);
    let store_config = node.store_config()?;
    let ip = node.ip().await?;
    let own = format!("{ip}:{}", args.master_port);
    let mut masters = vec![format!("http://{own}")];
    masters.extend(
        node.master_list(args.master_port)?
            .into_iter()
            .filter(|m| *m != own)
            .map(|m| format!("http://{m}")),
    );
    let mut config = MarathonConfig::new(masters.join(","));
    config.listen = args.listen;
    // Port 0 (tests) is only known once bound: the bound address is advertised then.
    if args.listen.port() != 0 {
        config.advertise = Some(SocketAddr::new(ip, args.listen.port()).to_string());
    }
    let store = Store::connect(store_config)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to etcd: {e}"))?;
    let mut marathon = start(config, store)
        .await
        .map_err(|e| anyhow::anyhow!("starting marathon: {e}"))?;
    tracing::info!(addr = %marathon.addr, advertised = %marathon.address, "marathon listening");
    let stop = crate::node::terminated();
    basalt_supervisor::notify::notify_ready();
    stop.await;
    marathon.kill();
    Ok(())
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    crate::node::runtime()?.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}
