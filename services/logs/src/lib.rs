//! `basalt-logs`: the node log service, DC/OS's `dcos-log` v1 API over the node's
//! journal, on `127.0.0.1:61081` behind the gateway's `/system/v1/logs` (masters, with
//! `dcos:adminrouter:ops:system-logs`) and the agent gateway's (`:61001`, reached from the
//! masters as `/system/v1/agent/<agent-id>/logs/…`).
//!
//! | path | answer |
//! |---|---|
//! | `GET /v1/range/` | the journal entries selected by `filter`, `cursor`, `skip_next`, `skip_prev`, `limit`, `read_reverse` ([`query`], [`reader`]); 204 when none |
//! | `GET /v1/stream/` | the same, then every new entry as it is written, until the client goes away; `Last-Event-ID` resumes after that cursor |
//! | `GET /v1/fields/<field>` | the field's unique values, a JSON array (204 when none); fields: [`server::ALLOWED_FIELDS`] |
//! | `GET /v1/range/framework/<fid>/executor/<eid>/container/<cid>` (also `/download`, and under `/v1/stream/`) | 501: Basalt's tasks log to sandbox files, not the journal (the message points at the files API and `basalt task log`) |
//! | `GET /v1/range/download` | 501 (no gzipped download) |
//! | `GET /metrics` | Prometheus counters ([`metrics`]) |
//!
//! Formats by `Accept` ([`format`]): journalctl `short` lines, JSON entries, or
//! Server-Sent Events. Responses carry `X-Journal-Skip-Next`/`X-Journal-Skip-Prev`,
//! `Cache-Control: no-cache` and `Access-Control-Allow-Origin: *` like dcos-log's. Bad
//! parameters are 400 with a plain-text message naming the parameter.
//!
//! The journal is read by running systemd's `journalctl --output=json` ([`journal`]),
//! one child per read, killed when the response body is dropped.

pub mod format;
pub mod journal;
pub mod metrics;
pub mod query;
pub mod reader;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use journal::Journal;
pub use metrics::Metrics;

/// The default listener (DC/OS's dcos-log port behind Admin Router).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:61081";

/// How the service runs.
#[derive(Debug, Clone)]
pub struct LogsConfig {
    /// Listener.
    pub listen: SocketAddr,
    /// The journalctl program.
    pub journalctl: PathBuf,
    /// A journal directory (`journalctl --directory`); `None`: the system journal.
    pub directory: Option<PathBuf>,
}

impl Default for LogsConfig {
    fn default() -> LogsConfig {
        LogsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 61081)),
            journalctl: PathBuf::from("journalctl"),
            directory: None,
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listener.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `--directory` is no directory.
    #[error("journal directory {path}: {reason}")]
    Directory {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A running log service; dropping it stops it.
#[derive(Debug)]
pub struct LogsServer {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    /// Ends the response bodies still streaming (graceful shutdown waits for requests
    /// to finish, and a `/v1/stream/` never does).
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), std::io::Error>>,
}

impl LogsServer {
    /// Binds and serves in the background.
    pub async fn start(config: LogsConfig) -> Result<LogsServer, StartError> {
        if let Some(d) = &config.directory {
            match std::fs::metadata(d) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(StartError::Directory {
                        path: d.clone(),
                        reason: "not a directory".into(),
                    });
                }
                Err(e) => {
                    return Err(StartError::Directory {
                        path: d.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = watch::channel(false);
        let app = Arc::new(server::App {
            stopped,
            journal: Journal {
                program: config.journalctl.clone(),
                directory: config.directory.clone(),
            },
            metrics: metrics.clone(),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let router = server::router(app);
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        tracing::info!(%addr, directory = ?config.directory, "log service listening");
        Ok(LogsServer {
            addr,
            metrics,
            shutdown: Some(tx),
            stop,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Serves until the server task ends (it ends only on an I/O error).
    pub async fn wait(mut self) -> Result<(), std::io::Error> {
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Ok(()) }));
        match task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }
}

impl Drop for LogsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}
