//! `basaltd l4lb`: the layer-4 load balancer for named and IP VIPs (basalt-l4lb) with
//! node defaults: `vip_range` from `etc/cluster.toml`, masters from `etc/master_list`,
//! the role from `etc/role`.
//!
//! - **masters** have etcd (`etc/etcd-client.env`): they allocate VIP addresses there,
//!   follow the master state through the etcd watch, and serve the resulting table as
//!   dcos-net's `GET /v1/vips` on `--feed-listen` (`0.0.0.0:62080`), a long-poll change
//!   feed ([`basalt_l4lb::feed`]);
//! - **agents** have no etcd credentials: they follow that feed from the masters of
//!   `etc/master_list` (`<ip>:62080`, failing over between them) and apply each table
//!   to their own data path, within one HTTP round trip of the masters' change.
//!
//! The data path (`--datapath`, default `auto`): kernel IPVS over generic netlink
//! ([`basalt_l4lb::datapath::Ipvs`]) when [`basalt_l4lb::datapath::Ipvs::probe`]
//! succeeds (kernel with `ip_vs`, `CAP_NET_ADMIN`), else the userspace TCP/UDP proxy
//! ([`basalt_l4lb::UserspaceProxy`]), listening on each VIP (`--bind vip`) or on its
//! `127/8` twin (`--bind loopback`). IPVS also needs the host settings of
//! [`basalt_l4lb::hostsetup`] (conntrack, a masquerade rule for the VIP range); when they
//! fail, `auto` falls back to the proxy. With IPVS or `--bind vip` the VIP addresses are put
//! on the dummy interface `basalt-vip` with iproute2
//! ([`basalt_l4lb::IpCommandInterface`]); with `--bind loopback` they are only recorded.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use basalt_dns::{EtcdWatchSource, FeedClient, MasterEndpoints};
use basalt_l4lb::datapath::Ipvs;
use basalt_l4lb::feed::{Follower, VIP_FEED_PORT};
use basalt_l4lb::{
    BindPolicy, Controller, DataPath, FakeInterface, IpCommandInterface, L4lbConfig, ProxyConfig,
    UserspaceProxy, VipAllocator, VipInterface,
};
use basalt_store::Store;
use clap::Parser;

use crate::node::{Node, NodeArgs};

/// Basalt L4 load balancer (VIPs).
#[derive(Parser, Debug)]
#[command(name = "basaltd l4lb", version)]
struct Args {
    /// `master` or `agent`; default: from the bundle's `etc/role` (`agent-public` → agent).
    #[arg(long, value_parser = ["master", "agent"])]
    role: Option<String>,
    /// Where the proxy listens for a VIP: on the VIP itself, or on `127.b.c.d`.
    #[arg(long, default_value = "vip", value_parser = ["vip", "loopback"])]
    bind: String,
    /// Port of the masters' HTTP API.
    #[arg(long, default_value_t = 5050)]
    master_port: u16,
    /// Masters: where `GET /v1/vips` is served.
    #[arg(long, default_value = "0.0.0.0:62080")]
    feed_listen: SocketAddr,
    /// Agents: the port of the masters' `/v1/vips`.
    #[arg(long, default_value_t = VIP_FEED_PORT)]
    feed_port: u16,
    /// `auto` (IPVS when the kernel has it), `ipvs` or `userspace`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "ipvs", "userspace"])]
    datapath: String,
    #[command(flatten)]
    node: NodeArgs,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node = Node::new(&args.node);
    let role = match &args.role {
        Some(r) => r.clone(),
        None => node.role()?,
    };
    let ipvs = match args.datapath.as_str() {
        "userspace" => None,
        want => match Ipvs::new().map_err(|e| e.to_string()).and_then(|i| {
            // local clients of remote backends: conntrack + masquerade (hostsetup docs)
            let range = node.cluster().map_err(|e| e.to_string())?.vip_range;
            basalt_l4lb::hostsetup::prepare_local_clients(range).map_err(|e| e.to_string())?;
            Ok(i)
        }) {
            Ok(i) => Some(i),
            Err(e) if want == "auto" => {
                tracing::info!(reason = %e, "no kernel IPVS: userspace proxy");
                None
            }
            Err(e) => anyhow::bail!("--datapath ipvs: {e}"),
        },
    };
    match ipvs {
        Some(i) => {
            tracing::info!("data path: kernel IPVS");
            run_with(
                &args,
                &node,
                &role,
                Arc::new(i),
                Arc::new(IpCommandInterface::default()),
            )
            .await
        }
        None => {
            let proxy = ProxyConfig {
                bind: if args.bind == "loopback" {
                    BindPolicy::Loopback
                } else {
                    BindPolicy::Vip
                },
                ..ProxyConfig::default()
            };
            let datapath = Arc::new(UserspaceProxy::new(proxy));
            if args.bind == "loopback" {
                run_with(
                    &args,
                    &node,
                    &role,
                    datapath,
                    Arc::new(FakeInterface::default()),
                )
                .await
            } else {
                run_with(
                    &args,
                    &node,
                    &role,
                    datapath,
                    Arc::new(IpCommandInterface::default()),
                )
                .await
            }
        }
    }
}

async fn run_with<D: DataPath, I: VipInterface>(
    args: &Args,
    node: &Node,
    role: &str,
    datapath: Arc<D>,
    iface: Arc<I>,
) -> anyhow::Result<()> {
    let stop = crate::node::terminated();
    if role != "master" {
        let feeds = node.master_list(args.feed_port)?;
        let client = FeedClient::new(&feeds, "/v1/vips").map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(
            ?feeds,
            bind = args.bind,
            role,
            "l4lb following the masters' VIP feed"
        );
        basalt_supervisor::notify::notify_ready();
        tokio::select! {
            () = Follower::new(datapath, iface).run(client) => anyhow::bail!("the VIP feed ended"),
            () = stop => return Ok(()),
        }
    }
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
    let controller = Controller::new(
        config.clone(),
        VipAllocator::new(store.clone(), config.vip_range),
        datapath,
        iface,
    );
    let (feed_addr, _feed) = basalt_l4lb::feed::serve(controller.vip_feed(), args.feed_listen)
        .await
        .map_err(|e| anyhow::anyhow!("serving /v1/vips on {}: {e}", args.feed_listen))?;
    let source = EtcdWatchSource::new(store, MasterEndpoints::from_masters(&masters))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(vip_range = %config.vip_range, bind = args.bind, feed = %feed_addr, "l4lb running");
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
