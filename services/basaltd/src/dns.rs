//! `basaltd dns`: Mesos-DNS-compatible names and the node-local forwarder (basalt-dns)
//! with node defaults: upstream resolvers from `etc/resolvers`, zone forwarding from
//! `dns_forward_zones` in `etc/cluster.toml`, masters from `etc/master_list`
//! (`<ip>:5050`).
//!
//! Where the master state comes from depends on the role (`etc/role`):
//!
//! - masters have etcd (`etc/etcd-client.env`): [`basalt_dns::EtcdWatchSource`] fetches
//!   `/master/state` from the elected master on every change;
//! - agents have no etcd credentials: they follow the masters' DNS state feed
//!   (`GET <master>:8123/v1/state?wait=<rev>`, a long-poll answered as soon as a master
//!   applied a new state, [`basalt_dns::feed`]), failing over between the masters of
//!   `etc/master_list`; while no master serves it, `/master/state` is fetched from the
//!   masters every `--poll-interval`, as Mesos-DNS did.
//!
//! On every node the VIP names (`<name>.<framework>.l4lb.thisdcos.directory`) come from
//! the masters' l4lb VIP table (`GET <master>:62080/v1/vips`, also a long-poll feed).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use std::sync::Arc;

use basalt_dns::{DnsConfig, EtcdWatchSource, FeedClient, FeedSource, MasterEndpoints, Service};
use basalt_store::Store;
use clap::Parser;

use crate::node::{Node, NodeArgs};

/// The node-local DNS addresses every role serves.
const NODE_LOCAL: [&str; 3] = ["198.51.100.1:53", "198.51.100.2:53", "198.51.100.3:53"];
/// The masters' extra listener (DC/OS Mesos-DNS port).
const MASTER_EXTRA: &str = "0.0.0.0:61053";

/// Basalt DNS (Mesos-DNS names, node-local forwarder).
#[derive(Parser, Debug)]
#[command(name = "basaltd dns", version)]
struct Args {
    /// `master` or `agent`; default: from the bundle's `etc/role` (`agent-public` → agent).
    #[arg(long, value_parser = ["master", "agent"])]
    role: Option<String>,
    /// DNS listeners (UDP and TCP each), comma-separated. Default: 198.51.100.1-3:53,
    /// masters also 0.0.0.0:61053.
    #[arg(long, value_delimiter = ',')]
    listen: Vec<SocketAddr>,
    /// Mesos-DNS HTTP API listener (default: masters 0.0.0.0:8123, agents none).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Port of the masters' HTTP API.
    #[arg(long, default_value_t = 5050)]
    master_port: u16,
    /// Agents: how often `/master/state` is fetched while no master serves the state
    /// feed, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    poll_interval: u64,
    /// Agents: port of the masters' DNS HTTP API (the `/v1/state` feed).
    #[arg(long, default_value_t = 8123)]
    feed_port: u16,
    /// Port of the masters' l4lb `/v1/vips` (VIP names).
    #[arg(long, default_value_t = basalt_l4lb::feed::VIP_FEED_PORT)]
    vip_feed_port: u16,
    #[command(flatten)]
    node: NodeArgs,
}

/// The DNS configuration of this node.
fn config(node: &Node, args: &Args, master: bool) -> anyhow::Result<DnsConfig> {
    let cluster = node.cluster()?;
    let masters = node.master_list(args.master_port)?;
    let resolvers = node
        .read("resolvers")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let listen = if args.listen.is_empty() {
        let mut l = NODE_LOCAL.to_vec();
        if master {
            l.push(MASTER_EXTRA);
        }
        l.iter()
            .map(|a| a.parse())
            .collect::<Result<Vec<SocketAddr>, _>>()
            .context("default listeners")?
    } else {
        args.listen.clone()
    };
    let http_listen = match (args.http_listen, master) {
        (Some(a), _) => Some(a),
        (None, true) => Some(SocketAddr::from(([0, 0, 0, 0], 8123))),
        (None, false) => None,
    };
    let config = DnsConfig {
        listen,
        http_listen,
        resolvers,
        forward_zones: cluster
            .dns_forward_zones
            .iter()
            .map(|(zone, rs)| (zone.clone(), rs.iter().map(ToString::to_string).collect()))
            .collect(),
        masters,
        ..DnsConfig::default()
    };
    config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(config)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node = Node::new(&args.node);
    let role = match &args.role {
        Some(r) => r.clone(),
        None => node.role()?,
    };
    let master = role == "master";
    let config = config(&node, &args, master)?;
    let service = if master {
        let store = Store::connect(node.store_config()?)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to etcd: {e}"))?;
        let source = EtcdWatchSource::new(store, MasterEndpoints::from_masters(&config.masters))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Service::start(config, source).await
    } else {
        let feed = FeedClient::new(&node.master_list(args.feed_port)?, "/v1/state")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let source = FeedSource::new(
            feed,
            config.masters.clone(),
            Duration::from_secs(args.poll_interval),
        );
        Service::start(config, source).await
    }
    .map_err(|e| anyhow::anyhow!("starting DNS: {e}"))?;
    let vips = FeedClient::new(&node.master_list(args.vip_feed_port)?, "/v1/vips")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let names = tokio::spawn(basalt_l4lb::feed::follow_names(
        vips,
        Arc::new(service.server.clone()),
    ));
    tracing::info!(listen = ?service.listeners.addrs, http = ?service.http_addr, role, "dns serving");
    let stop = crate::node::terminated();
    basalt_supervisor::notify::notify_ready();
    stop.await;
    names.abort();
    service.shutdown().await;
    Ok(())
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    crate::node::runtime()?.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}
