//! `basaltd agent`: the Mesos-compatible agent (basalt-agent) with node defaults from the
//! installed bundle: masters from `etc/master_list` (`<ip>:5050`), the join credential from
//! `etc/join-credential`, the role from `etc/role` (`agent-public` reserves everything to
//! the cluster's public role and adds `public_ip:true`), ports from `etc/port_ranges`,
//! reserved memory and operator attributes from `etc/cluster.toml`, the fault domain from
//! `bin/fault-domain-detect` when the bundle has one. Like DC/OS, the agent's host name is
//! its cluster IP. Reports READY=1 once the HTTP API listens; registration with a master
//! follows in the background (and is retried forever).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use basalt_agent::daemon::{AgentConfig, AgentDaemon, ResourceSource};
use basalt_agent::detect::{DetectConfig, PortRanges};
use clap::Parser;

use crate::node::{Node, NodeArgs};

/// Basalt agent (Mesos agent HTTP API on :5051).
#[derive(Parser, Debug)]
#[command(name = "basaltd agent", version)]
struct Args {
    /// Listen address of the agent API.
    #[arg(long, default_value = "0.0.0.0:5051", env = "BASALT_AGENT_LISTEN")]
    listen: SocketAddr,
    /// Sandboxes, checkpoints and the resource cache (the unit's StateDirectory).
    #[arg(
        long,
        default_value = "/var/lib/basalt/agent",
        env = "BASALT_AGENT_WORK_DIR"
    )]
    work_dir: PathBuf,
    /// Port of the masters' HTTP API.
    #[arg(long, default_value_t = 5050)]
    master_port: u16,
    #[command(flatten)]
    node: NodeArgs,
}

/// The agent settings this node's bundle gives.
async fn config(node: &Node, args: &Args) -> anyhow::Result<AgentConfig> {
    let cluster = node.cluster()?;
    let role = node.role()?;
    let public = match role.as_str() {
        "agent" => false,
        "agent-public" => true,
        other => anyhow::bail!(
            "{} says {other:?}: `basaltd agent` runs on agent and agent-public nodes",
            node.etc("role").display()
        ),
    };
    let masters = node.master_list(args.master_port)?;
    let ip = node.ip().await?;
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let mut detect = DetectConfig::new(&args.work_dir);
    detect.public = public;
    detect.public_role = cluster.agent.public_role.clone();
    detect.mem_reserve_mib = cluster.agent.reserved_memory_mb;
    let ports: PortRanges = node
        .read("port_ranges")?
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{}: {e}", node.etc("port_ranges").display()))?;
    if public {
        detect.public_ports = ports;
    } else {
        detect.private_ports = ports;
    }
    let fault_domain = node.root().join("bin/fault-domain-detect");
    if fault_domain.is_file() {
        detect.fault_domain_script = Some(fault_domain);
    }
    detect.attributes = cluster.agent.attributes.clone();
    detect
        .validate()
        .map_err(|e| anyhow::anyhow!("agent detection settings: {e}"))?;
    let mut config = AgentConfig::new(
        masters,
        Some(node.join_credential()?),
        &args.work_dir,
        ip.to_string(),
    );
    config.resources = ResourceSource::Detect(detect);
    config.listen = args.listen;
    config.advertise_ip = Some(ip);
    Ok(config)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let node = Node::new(&args.node);
    let config = config(&node, &args).await?;
    let agent = AgentDaemon::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the agent: {e}"))?;
    tracing::info!(addr = %agent.http_address(), "agent listening");
    let stop = crate::node::terminated();
    basalt_supervisor::notify::notify_ready();
    stop.await;
    // Tasks keep running: the next start recovers them from the checkpoints.
    agent.stop().await;
    Ok(())
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    crate::node::runtime()?.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}
