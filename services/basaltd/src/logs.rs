//! `basaltd logs`: the node log service (basalt-logs), DC/OS's dcos-log v1 API over this
//! node's journal on `127.0.0.1:61081`, behind the gateway's `/system/v1/logs` (masters
//! and agents alike). It reads the journal with `journalctl`; the unit runs it in the
//! `systemd-journal` group so that it may read every unit's entries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use basalt_logs::{LogsConfig, LogsServer};
use clap::Parser;

/// Basalt node log service (DC/OS `/system/v1/logs`).
#[derive(Parser, Debug)]
#[command(name = "basaltd logs", version)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = basalt_logs::DEFAULT_LISTEN, env = "BASALT_LOGS_LISTEN")]
    listen: SocketAddr,
    /// Read this journal directory instead of the system journal (`journalctl --directory`).
    #[arg(long, env = "BASALT_LOGS_DIRECTORY")]
    directory: Option<PathBuf>,
    /// The journalctl program.
    #[arg(long, default_value = "journalctl")]
    journalctl: PathBuf,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let stop = crate::node::terminated();
    let server = LogsServer::start(LogsConfig {
        listen: args.listen,
        journalctl: args.journalctl,
        directory: args.directory,
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    basalt_supervisor::notify::notify_ready();
    tokio::select! {
        r = server.wait() => r.map_err(|e| anyhow::anyhow!("serving: {e}")),
        () = stop => Ok(()),
    }
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    crate::node::runtime()?.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}
