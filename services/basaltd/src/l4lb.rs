//! `basaltd l4lb`: the layer-4 load balancer for named and IP VIPs (basalt-l4lb) with
//! node defaults: `vip_range` from `etc/cluster.toml`, etcd (VIP address allocation and
//! the master-state watch) from `etc/etcd-client.env`, masters from `etc/master_list`.
//!
//! The data path is the userspace TCP proxy ([`basalt_l4lb::UserspaceProxy`]), listening
//! on each VIP (`--bind vip`) or on its `127/8` twin (`--bind loopback`). Limits of the
//! library it runs: the VIP address set is recorded in memory
//! ([`basalt_l4lb::FakeInterface`]; no rtnetlink `basalt-vip` interface yet), so
//! `--bind vip` serves only VIPs whose addresses the host already has; and the VIP
//! allocator needs etcd, whose credentials only master bundles carry.

use std::process::ExitCode;
use std::sync::Arc;

use basalt_dns::{EtcdWatchSource, MasterEndpoints};
use basalt_l4lb::{
    BindPolicy, Controller, FakeInterface, L4lbConfig, ProxyConfig, UserspaceProxy, VipAllocator,
};
use basalt_store::Store;
use clap::Parser;

use crate::node::{Node, NodeArgs};

/// Basalt L4 load balancer (VIPs).
#[derive(Parser, Debug)]
#[command(name = "basaltd l4lb", version)]
struct Args {
    /// Where the proxy listens for a VIP: on the VIP itself, or on `127.b.c.d`.
    #[arg(long, default_value = "vip", value_parser = ["vip", "loopback"])]
    bind: String,
    /// Port of the masters' HTTP API.
    #[arg(long, default_value_t = 5050)]
    master_port: u16,
    #[command(flatten)]
    node: NodeArgs,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node = Node::new(&args.node);
    let cluster = node.cluster()?;
    let masters: Vec<String> = cluster
        .masters
        .iter()
        .map(|ip| format!("{ip}:{}", args.master_port))
        .collect();
    let store = Store::connect(node.store_config()?)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to etcd: {e}"))?;
    let config = L4lbConfig {
        vip_range: cluster.vip_range,
        ..L4lbConfig::default()
    };
    let proxy = ProxyConfig {
        bind: if args.bind == "loopback" {
            BindPolicy::Loopback
        } else {
            BindPolicy::Vip
        },
        ..ProxyConfig::default()
    };
    let controller = Controller::new(
        config.clone(),
        VipAllocator::new(store.clone(), config.vip_range),
        Arc::new(UserspaceProxy::new(proxy)),
        Arc::new(FakeInterface::default()),
    );
    let source = EtcdWatchSource::new(store, MasterEndpoints::from_masters(&masters))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(vip_range = %config.vip_range, bind = args.bind, "l4lb running");
    let stop = crate::node::terminated();
    basalt_supervisor::notify::notify_ready();
    tokio::select! {
        () = controller.run(source) => anyhow::bail!("the master state source ended"),
        () = stop => Ok(()),
    }
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    crate::node::runtime()?.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}
