//! `basaltd supervisor`: the node supervisor with the real seams.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use basalt_supervisor::dbus::DbusSystemd;
use basalt_supervisor::seams::{CommandMounter, HostRunner, HttpFetcher, SystemClock};
use basalt_supervisor::{EXIT_CONFIG, Env, HostDetector, Layout, Options};
use clap::Parser;

/// Basalt node supervisor.
#[derive(Parser, Debug)]
#[command(name = "basaltd supervisor", version)]
struct Args {
    /// File-system root (tests).
    #[arg(long, default_value = "/")]
    root: std::path::PathBuf,
    /// Health API listen address.
    #[arg(long, default_value = "0.0.0.0:1050")]
    health_listen: std::net::SocketAddr,
}

pub fn main(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let args = Args::parse_from(args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let systemd = DbusSystemd::system()
            .await
            .context("connecting to systemd over the system bus")?;
        let env = Env {
            layout: Layout::new(&args.root),
            runner: Arc::new(HostRunner),
            mounter: Arc::new(CommandMounter { runner: HostRunner }),
            clock: Arc::new(SystemClock),
            fetcher: Arc::new(HttpFetcher::new().map_err(anyhow::Error::msg)?),
            systemd: Arc::new(systemd),
            detector: Arc::new(HostDetector),
        };
        let opts = Options {
            health_addr: args.health_listen,
            ..Options::default()
        };
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            term.recv().await;
        };
        match basalt_supervisor::run(env, opts, shutdown).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            // already printed on the console by run()
            Err(e) if e.is_permanent() => Ok(ExitCode::from(EXIT_CONFIG)),
            Err(e) => Err(e.into()),
        }
    })
}
