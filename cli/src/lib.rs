//! The `basalt` command line: DC/OS CLI's successor. Everything goes through the
//! cluster's gateway (Admin Router paths), with the token from `basalt auth login` and
//! TLS pinned to the cluster CA fetched and confirmed by `basalt cluster setup`.
//!
//! One module per command group: [`cluster`], [`auth`], [`node`], [`marathon`],
//! [`task`], [`service`], [`config`] (files under `$BASALT_DIR`, default `~/.basalt`);
//! [`client`] is the HTTP layer, [`output`] the tables and `--json`, [`error`] the
//! messages. Errors exit with status 1 (`Error: …` on stderr), bad command lines with 2.

pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod error;
pub mod marathon;
pub mod node;
pub mod output;
pub mod service;
pub mod task;

use clap::{Parser, Subcommand};
pub use error::{CliError, Result};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "basalt",
    version,
    about = "Manage a Basalt cluster (the DC/OS CLI's successor)",
    propagate_version = true
)]
pub struct Cli {
    /// Log HTTP requests to stderr (`-v`: debug, `-vv`: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up, list, attach and remove clusters.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Log in and out.
    #[command(subcommand)]
    Auth(auth::AuthCmd),
    /// Cluster nodes: list, logs, diagnostics (no subcommand: list).
    Node {
        /// What to do.
        #[command(subcommand)]
        cmd: Option<node::NodeCmd>,
        /// Print JSON (for the default `list`).
        #[arg(long)]
        json: bool,
    },
    /// Marathon apps, deployments, pods and tasks.
    #[command(subcommand)]
    Marathon(marathon::MarathonCmd),
    /// Mesos tasks: list, sandbox logs and files (no subcommand: list, as
    /// `basalt task [filter] [--completed] [--json]`).
    Task {
        /// What to do.
        #[command(subcommand)]
        cmd: Option<task::TaskCmd>,
        /// Only tasks whose id or name contains this (for the default `list`).
        filter: Option<String>,
        /// Print JSON (for the default `list`).
        #[arg(long)]
        json: bool,
        /// Include completed tasks (for the default `list`).
        #[arg(long)]
        completed: bool,
    },
    /// Services (Mesos frameworks) (no subcommand: list).
    Service {
        /// What to do.
        #[command(subcommand)]
        cmd: Option<service::ServiceCmd>,
        /// Print JSON (for the default `list`).
        #[arg(long)]
        json: bool,
    },
    /// Show or change the attached cluster's settings.
    #[command(subcommand)]
    Config(config::ConfigCmd),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let dirs = config::BasaltDir::from_env()?;
    match cli.command {
        Command::Cluster(c) => cluster::run(&dirs, c).await,
        Command::Auth(c) => auth::run(&dirs, c).await,
        Command::Node { cmd, json } => node::run(&dirs, cmd, json).await,
        Command::Marathon(c) => marathon::run(&dirs, c).await,
        Command::Task {
            cmd,
            filter,
            json,
            completed,
        } => {
            let cmd = cmd.unwrap_or(task::TaskCmd::List {
                filter,
                json,
                completed,
            });
            task::run(&dirs, cmd).await
        }
        Command::Service { cmd, json } => service::run(&dirs, cmd, json).await,
        Command::Config(c) => config::run(&dirs, c),
    }
}
