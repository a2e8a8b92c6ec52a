//! The supervisor's seams to the outside world: commands, mounts, the clock, HTTP fetches
//! and systemd. Each is a trait with a real implementation here ([`HostRunner`],
//! [`CommandMounter`], [`SystemClock`], [`HttpFetcher`]; systemd's is [`crate::dbus`]) and an
//! in-memory fake in [`crate::fake`] for unit tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Serialize;

use crate::error::{Result, SupervisorError};

/// What a finished command left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code; `None` when killed by a signal or the timeout.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs programs (ip-detect, mount, journalctl).
#[async_trait]
pub trait CommandRunner: Send + Sync {
    /// Runs `program` with `args`; killed after `timeout`.
    async fn run(&self, program: &Path, args: &[String], timeout: Duration) -> Result<CmdOutput>;
}

/// Mounts config volumes read-only.
#[async_trait]
pub trait Mounter: Send + Sync {
    /// Mounts `device` read-only (no exec, suid or devices) on the existing folder `target`.
    async fn mount_ro(&self, device: &Path, target: &Path) -> Result<()>;
    /// Unmounts `target`.
    async fn unmount(&self, target: &Path) -> Result<()>;
}

/// Time: tests use a fake whose `sleep` returns at once and moves the clock.
#[async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
    async fn sleep(&self, d: Duration);
}

/// Fetches `http(s)://` bundle URLs.
#[async_trait]
pub trait Fetcher: Send + Sync {
    /// The body of `url`, or why not (connection refused, status, size).
    async fn fetch(&self, url: &str) -> std::result::Result<Vec<u8>, String>;
}

/// A unit's state as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitState {
    pub id: String,
    pub description: String,
    /// `loaded`, `not-found`, `masked`, …
    pub load_state: String,
    /// `active`, `activating`, `failed`, `inactive`, …
    pub active_state: String,
    pub sub_state: String,
}

impl UnitState {
    /// Healthy: loaded and active.
    pub fn healthy(&self) -> bool {
        self.load_state == "loaded" && self.active_state == "active"
    }
}

/// A change systemd reported while the supervisor followed the units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitEvent {
    /// A job finished (`JobRemoved`): `result` is `done`, `failed`, `timeout`, `dependency`, …
    JobRemoved { unit: String, result: String },
    /// `ActiveState` changed (`PropertiesChanged` on the unit).
    ActiveState { unit: String, state: String },
}

/// The systemd manager, over D-Bus in production.
#[async_trait]
pub trait Systemd: Send + Sync {
    /// `StartUnit(name, "replace")`; returns once the job is queued.
    async fn start_unit(&self, name: &str) -> Result<()>;
    /// The unit's current state (loads the unit if needed).
    async fn unit_state(&self, name: &str) -> Result<UnitState>;
    /// Subscribes and streams changes of `units` (job results and active-state changes).
    async fn follow(&self, units: &[String]) -> Result<BoxStream<'static, UnitEvent>>;
}

/// Runs programs on the host with tokio, killing them at the timeout.
#[derive(Debug, Default, Clone)]
pub struct HostRunner;

#[async_trait]
impl CommandRunner for HostRunner {
    async fn run(&self, program: &Path, args: &[String], timeout: Duration) -> Result<CmdOutput> {
        let name = program.display().to_string();
        let child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SupervisorError::Command {
                program: name.clone(),
                reason: e.to_string(),
            })?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(CmdOutput {
                code: out.status.code(),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Ok(Err(e)) => Err(SupervisorError::Command {
                program: name,
                reason: e.to_string(),
            }),
            Err(_) => Err(SupervisorError::Command {
                program: name,
                reason: format!("did not finish within {} s (killed)", timeout.as_secs()),
            }),
        }
    }
}

/// Mounts with `mount(8)` (it detects vfat, ext4, iso9660 …).
pub struct CommandMounter<R> {
    pub runner: R,
}

#[async_trait]
impl<R: CommandRunner> Mounter for CommandMounter<R> {
    async fn mount_ro(&self, device: &Path, target: &Path) -> Result<()> {
        let args = vec![
            "-o".to_string(),
            "ro,nosuid,nodev,noexec".to_string(),
            device.display().to_string(),
            target.display().to_string(),
        ];
        let out = self
            .runner
            .run(Path::new("mount"), &args, Duration::from_secs(30))
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(SupervisorError::Mount {
                device: device.to_path_buf(),
                target: target.to_path_buf(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    async fn unmount(&self, target: &Path) -> Result<()> {
        let out = self
            .runner
            .run(
                Path::new("umount"),
                &[target.display().to_string()],
                Duration::from_secs(30),
            )
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(SupervisorError::Mount {
                device: PathBuf::from("(umount)"),
                target: target.to_path_buf(),
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// The real clock.
#[derive(Debug, Default, Clone)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// `http(s)://` fetches with reqwest (rustls), 30 s per attempt.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl HttpFetcher {
    pub fn new() -> std::result::Result<HttpFetcher, String> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map(|client| HttpFetcher { client })
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Fetcher for HttpFetcher {
    async fn fetch(&self, url: &str) -> std::result::Result<Vec<u8>, String> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.len() as u64 > basalt_genconf::verify::MAX_BUNDLE_BYTES {
            return Err(format!("{} bytes: larger than a bundle may be", body.len()));
        }
        Ok(body.to_vec())
    }
}
