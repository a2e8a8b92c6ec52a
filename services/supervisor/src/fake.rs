//! In-memory fakes of the seams, for unit tests (here and in other crates).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{Result, SupervisorError};
use crate::seams::{
    Clock, CmdOutput, CommandRunner, Fetcher, Mounter, Systemd, UnitEvent, UnitState,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A clock that starts at the epoch + 1e9 s; `sleep` advances it at once.
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<SystemTime>,
}

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock {
            now: Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
        }
    }
}

#[async_trait]
impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *lock(&self.now)
    }
    async fn sleep(&self, d: Duration) {
        *lock(&self.now) += d;
        tokio::task::yield_now().await;
    }
}

/// Answers commands from a table keyed by program file name; records every call.
#[derive(Debug, Default)]
pub struct FakeRunner {
    /// program file name → outputs, used in turn (the last one repeats).
    pub answers: Mutex<BTreeMap<String, Vec<CmdOutput>>>,
    pub calls: Mutex<Vec<(String, Vec<String>)>>,
}

impl FakeRunner {
    pub fn answer(&self, program: &str, out: CmdOutput) {
        lock(&self.answers)
            .entry(program.to_string())
            .or_default()
            .push(out);
    }
    pub fn calls(&self) -> Vec<(String, Vec<String>)> {
        lock(&self.calls).clone()
    }
}

/// Output with exit 0 and `stdout`.
pub fn ok(stdout: &str) -> CmdOutput {
    CmdOutput {
        code: Some(0),
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

#[async_trait]
impl CommandRunner for FakeRunner {
    async fn run(&self, program: &Path, args: &[String], _timeout: Duration) -> Result<CmdOutput> {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        lock(&self.calls).push((name.clone(), args.to_vec()));
        let mut answers = lock(&self.answers);
        match answers.get_mut(&name) {
            Some(v) if v.len() > 1 => Ok(v.remove(0)),
            Some(v) if v.len() == 1 => Ok(v[0].clone()),
            _ => Err(SupervisorError::Command {
                program: name,
                reason: "no such program (fake)".into(),
            }),
        }
    }
}

/// "Mounts" a device by making the target a symlink to a prepared folder.
#[derive(Debug, Default)]
pub struct FakeMounter {
    /// device path → folder with the volume's content.
    pub volumes: Mutex<BTreeMap<PathBuf, PathBuf>>,
    pub mounted: Mutex<Vec<PathBuf>>,
}

#[async_trait]
impl Mounter for FakeMounter {
    async fn mount_ro(&self, device: &Path, target: &Path) -> Result<()> {
        let dev = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
        let src = lock(&self.volumes)
            .get(&dev)
            .cloned()
            .ok_or_else(|| SupervisorError::Mount {
                device: device.to_path_buf(),
                target: target.to_path_buf(),
                reason: "no such volume (fake)".into(),
            })?;
        std::fs::remove_dir(target).map_err(SupervisorError::io(target))?;
        std::os::unix::fs::symlink(&src, target).map_err(SupervisorError::io(target))?;
        lock(&self.mounted).push(dev);
        Ok(())
    }
    async fn unmount(&self, target: &Path) -> Result<()> {
        std::fs::remove_file(target).map_err(SupervisorError::io(target))?;
        std::fs::create_dir(target).map_err(SupervisorError::io(target))?;
        Ok(())
    }
}

/// Answers fetches from a table; an unknown URL fails like a refused connection.
#[derive(Debug, Default)]
pub struct FakeFetcher {
    pub bodies: Mutex<BTreeMap<String, Vec<u8>>>,
    pub attempts: Mutex<u32>,
}

#[async_trait]
impl Fetcher for FakeFetcher {
    async fn fetch(&self, url: &str) -> std::result::Result<Vec<u8>, String> {
        *lock(&self.attempts) += 1;
        lock(&self.bodies)
            .get(url)
            .cloned()
            .ok_or_else(|| "connection refused (fake)".to_string())
    }
}

/// A systemd whose units are a table; starting a unit runs its "start plan": the units it
/// pulls in become `active`, or `failed` when listed in `failing`.
#[derive(Debug, Default)]
pub struct FakeSystemd {
    /// target → units it wants.
    pub wants: Mutex<BTreeMap<String, Vec<String>>>,
    pub failing: Mutex<Vec<String>>,
    pub states: Mutex<BTreeMap<String, UnitState>>,
    pub started: Mutex<Vec<String>>,
    events: Mutex<Option<futures::channel::mpsc::UnboundedSender<UnitEvent>>>,
}

impl FakeSystemd {
    pub fn started(&self) -> Vec<String> {
        lock(&self.started).clone()
    }

    fn set(&self, unit: &str, active: &str, sub: &str) {
        lock(&self.states).insert(
            unit.to_string(),
            UnitState {
                id: unit.to_string(),
                description: format!("fake {unit}"),
                load_state: "loaded".into(),
                active_state: active.into(),
                sub_state: sub.into(),
            },
        );
        if let Some(tx) = lock(&self.events).as_ref() {
            let _ = tx.unbounded_send(UnitEvent::ActiveState {
                unit: unit.to_string(),
                state: active.to_string(),
            });
        }
    }
}

#[async_trait]
impl Systemd for FakeSystemd {
    async fn start_unit(&self, name: &str) -> Result<()> {
        lock(&self.started).push(name.to_string());
        let wants = lock(&self.wants).get(name).cloned().unwrap_or_default();
        let failing = lock(&self.failing).clone();
        for u in wants.iter().chain(std::iter::once(&name.to_string())) {
            if failing.contains(u) {
                self.set(u, "failed", "failed");
            } else {
                self.set(u, "active", "running");
            }
        }
        Ok(())
    }

    async fn unit_state(&self, name: &str) -> Result<UnitState> {
        Ok(lock(&self.states).get(name).cloned().unwrap_or(UnitState {
            id: name.to_string(),
            description: String::new(),
            load_state: "loaded".into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
        }))
    }

    async fn follow(&self, _units: &[String]) -> Result<BoxStream<'static, UnitEvent>> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        *lock(&self.events) = Some(tx);
        Ok(rx.boxed())
    }
}
