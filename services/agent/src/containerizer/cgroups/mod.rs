//! Task cgroups on cgroup v1 (and hybrid) and cgroup v2, written file by file.
//!
//! The Mesos isolators this follows (`cgroups/cpu`, `cgroups/mem`, the Linux launcher):
//!
//! | what | v1 file (controller dir) | v2 file |
//! |---|---|---|
//! | CPU shares: `max(1024 × cpus, 2)` | `cpu.shares` | `cpu.weight` = `1 + (shares − 2) × 9999 / 262142` |
//! | CFS quota (`--cgroups_enable_cfs`): `max(100 ms × cpus, 1 ms)` per 100 ms | `cpu.cfs_period_us`, `cpu.cfs_quota_us` | `cpu.max` = `"<quota> 100000"` |
//! | memory hard limit: `max(mem, 32 MiB)` | `memory.limit_in_bytes` | `memory.max` |
//! | memory soft limit (same value) | `memory.soft_limit_in_bytes` | `memory.low` |
//! | OOM kills | `memory.oom_control` `oom_kill` | `memory.events` `oom_kill` |
//! | peak memory | `memory.max_usage_in_bytes` | `memory.peak` (Linux 5.19+) |
//! | processes | `cgroup.procs` of every controller dir | `cgroup.procs` (`cgroup.kill` on 5.14+) |
//!
//! Tasks live at `<controller mount>/<root>/<container_id>`: on v1 under each of `cpu`,
//! `cpuacct`, `memory` (those enabled) and `freezer` when mounted (it only tracks the
//! processes); on v2 under the one unified mount. The default root is `basalt` on v1 and
//! `basalt.slice` on v2.
//!
//! # cgroup v2 under systemd (the node images)
//!
//! systemd owns `/sys/fs/cgroup`; a program may only manage a subtree systemd delegated
//! to it. The agent unit therefore runs with `Delegate=yes` (so systemd leaves the
//! controllers and sub-cgroups below the unit's cgroup alone) and `KillMode=process` (so
//! a restart of the agent does not kill its tasks), and the agent's configured v2 root
//! must lie in that delegated subtree, e.g. a root of
//! `system.slice/basalt-agent.service/tasks` with the agent itself moved to a sibling
//! leaf (`.../basalt-agent.service/agent`), because v2 forbids processes in a cgroup that
//! enables controllers for its children. [`CgroupManager::create`] enables the needed
//! controllers (`+cpu +memory`) in `cgroup.subtree_control` of every directory from the
//! mount down to the root, skipping those where they are already on (the ancestors
//! systemd configured), and fails with [`CgroupError::ControllerUnavailable`] when the
//! mount does not offer them — a task is never started without the limits it asked for.

mod fs;

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

pub use fs::{CgroupFs, CgroupOp, FakeCgroupFs, HostCgroupFs};

use super::usage::ResourceStatistics;

/// Mesos `CPU_SHARES_PER_CPU`.
pub const CPU_SHARES_PER_CPU: u64 = 1024;
/// Mesos `MIN_CPU_SHARES`.
pub const MIN_CPU_SHARES: u64 = 2;
/// Mesos `CPU_CFS_PERIOD` (100 ms) in microseconds.
pub const CFS_PERIOD_US: u64 = 100_000;
/// Mesos `MIN_CPU_CFS_QUOTA` (1 ms) in microseconds.
pub const MIN_CFS_QUOTA_US: u64 = 1_000;
/// Mesos `MIN_MEMORY` (32 MiB): no task gets a smaller memory limit.
pub const MIN_MEMORY_BYTES: u64 = 32 * 1024 * 1024;

/// The mount table the host layout is read from.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// cgroup v1 (per-controller hierarchies) or v2 (one unified hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Per-controller mounts (`/sys/fs/cgroup/<controller>`), also the hybrid layout.
    V1,
    /// The unified hierarchy.
    V2,
}

/// Why a cgroup operation failed; each variant names the path or controller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// A file system operation on a cgroup path failed.
    #[error("cgroup {op} {path}: {source}")]
    Io {
        /// `mkdir`, `rmdir`, `read` or `write`.
        op: &'static str,
        /// The directory or control file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A control file did not hold what the kernel writes there.
    #[error("cgroup file {path}: {reason}")]
    Parse {
        /// The control file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// No usable cgroup mount.
    #[error("no cgroup {version:?} hierarchy found in {mountinfo}")]
    NoHierarchy {
        /// The version looked for.
        version: CgroupVersion,
        /// The mount table read.
        mountinfo: PathBuf,
    },
    /// A controller the configuration needs is not mounted (v1) or offered (v2).
    #[error("cgroup controller '{controller}' is not available at {path}")]
    ControllerUnavailable {
        /// `cpu`, `cpuacct` or `memory`.
        controller: &'static str,
        /// The mount (v1: the cgroup mount root; v2: its `cgroup.controllers`).
        path: PathBuf,
    },
    /// The configured root is not a relative path of plain names.
    #[error("cgroup root '{root}' must be a relative path of plain names (like 'basalt')")]
    InvalidRoot {
        /// The configured root.
        root: String,
    },
}

impl CgroupError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        CgroupError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Which cgroups tasks get and how they are limited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CgroupsConfig {
    /// Force a version; `None` detects it (v2 when `/sys/fs/cgroup` is a cgroup2 mount,
    /// else v1 when `cpu`/`memory` v1 mounts exist).
    #[serde(default)]
    pub version: Option<CgroupVersion>,
    /// The cgroup2 mount to use (default: `/sys/fs/cgroup`, else the first cgroup2 mount).
    #[serde(default)]
    pub v2_mount: Option<PathBuf>,
    /// The hierarchy below each mount that holds the task cgroups (default `basalt` on
    /// v1, `basalt.slice` on v2).
    #[serde(default)]
    pub root: Option<String>,
    /// The `cpu` controller (Mesos `cgroups/cpu`): shares and, with `cfs_quota`, quota.
    #[serde(default = "yes")]
    pub cpu: bool,
    /// The `memory` controller (Mesos `cgroups/mem`): hard and soft limit, OOM events.
    #[serde(default = "yes")]
    pub memory: bool,
    /// Hard CPU caps by CFS quota (Mesos `--cgroups_enable_cfs`, on in DC/OS).
    #[serde(default = "yes")]
    pub cfs_quota: bool,
}

fn yes() -> bool {
    true
}

impl Default for CgroupsConfig {
    fn default() -> Self {
        Self {
            version: None,
            v2_mount: None,
            root: None,
            cpu: true,
            memory: true,
            cfs_quota: true,
        }
    }
}

/// Where the hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// v1: controller name → mount point (`cpu` → `/sys/fs/cgroup/cpu`; co-mounted
    /// controllers share a mount point).
    V1 {
        /// Controller → mount point.
        mounts: BTreeMap<String, PathBuf>,
    },
    /// v2: the unified mount.
    V2 {
        /// Mount point (`/sys/fs/cgroup`).
        mount: PathBuf,
    },
}

const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "freezer", "pids"];

impl CgroupLayout {
    /// The layout from `/proc/self/mountinfo` text. `path` names the file in errors.
    pub fn from_mountinfo(
        text: &str,
        path: &Path,
        version: Option<CgroupVersion>,
        v2_mount: Option<&Path>,
    ) -> Result<Self, CgroupError> {
        let mut v1: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut v2: Vec<PathBuf> = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(mount_point), Some(fs_type), Some(super_opts)) =
                (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
            else {
                continue;
            };
            let mount_point = PathBuf::from(unescape(mount_point));
            match *fs_type {
                "cgroup" => {
                    for opt in super_opts.split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            v1.insert(opt.to_owned(), mount_point.clone());
                        }
                    }
                }
                "cgroup2" => v2.push(mount_point),
                _ => {}
            }
        }
        let standard = Path::new("/sys/fs/cgroup");
        let pick_v2 = || -> Option<PathBuf> {
            if let Some(m) = v2_mount {
                return Some(m.to_path_buf());
            }
            v2.iter()
                .find(|m| m.as_path() == standard)
                .or_else(|| v2.first())
                .cloned()
        };
        let has_v1 = v1.contains_key("cpu") || v1.contains_key("memory");
        let chosen = match version {
            Some(v) => v,
            None if v2_mount.is_some() => CgroupVersion::V2,
            None if v2.iter().any(|m| m.as_path() == standard) => CgroupVersion::V2,
            None if has_v1 => CgroupVersion::V1,
            None => CgroupVersion::V2,
        };
        match chosen {
            CgroupVersion::V1 if !v1.is_empty() => Ok(CgroupLayout::V1 { mounts: v1 }),
            CgroupVersion::V2 => match pick_v2() {
                Some(mount) => Ok(CgroupLayout::V2 { mount }),
                None => Err(CgroupError::NoHierarchy {
                    version: CgroupVersion::V2,
                    mountinfo: path.to_path_buf(),
                }),
            },
            CgroupVersion::V1 => Err(CgroupError::NoHierarchy {
                version: CgroupVersion::V1,
                mountinfo: path.to_path_buf(),
            }),
        }
    }

    /// The version of this layout.
    pub fn version(&self) -> CgroupVersion {
        match self {
            CgroupLayout::V1 { .. } => CgroupVersion::V1,
            CgroupLayout::V2 { .. } => CgroupVersion::V2,
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The limits of one task, from its resources.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskLimits {
    /// `cpus`; `None` leaves the CPU settings at the kernel defaults.
    pub cpus: Option<f64>,
    /// `mem` in bytes; `None` sets no memory limit.
    pub mem_bytes: Option<u64>,
}

impl TaskLimits {
    /// `cpu.shares`: `max(1024 × cpus, 2)`.
    pub fn cpu_shares(&self) -> Option<u64> {
        self.cpus
            .map(|c| ((c * CPU_SHARES_PER_CPU as f64) as u64).max(MIN_CPU_SHARES))
    }

    /// CFS quota in µs per [`CFS_PERIOD_US`]: `max(100000 × cpus, 1000)`.
    pub fn cfs_quota_us(&self) -> Option<u64> {
        self.cpus
            .map(|c| ((c * CFS_PERIOD_US as f64) as u64).max(MIN_CFS_QUOTA_US))
    }

    /// v2 `cpu.weight` for the shares (the systemd/runc conversion).
    pub fn cpu_weight(&self) -> Option<u64> {
        self.cpu_shares()
            .map(|s| (1 + (s.saturating_sub(2) * 9999) / 262_142).clamp(1, 10_000))
    }

    /// The memory limit: `max(mem, 32 MiB)`.
    pub fn memory_limit(&self) -> Option<u64> {
        self.mem_bytes.map(|m| m.max(MIN_MEMORY_BYTES))
    }
}

/// The cgroup of one task: what to join and where each controller's files are.
/// Checkpointed with the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCgroup {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// Every directory the task's processes belong to (one on v2).
    pub dirs: Vec<PathBuf>,
    /// The `cpu` controller directory, if limited.
    pub cpu: Option<PathBuf>,
    /// The `cpuacct` directory (v1) or the cgroup (v2), for CPU time.
    pub cpuacct: Option<PathBuf>,
    /// The `memory` controller directory, if limited.
    pub memory: Option<PathBuf>,
}

impl TaskCgroup {
    /// The `cgroup.procs` files a process writes its pid (or `0`) to, to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

/// Creates, inspects and removes task cgroups through a [`CgroupFs`].
#[derive(Debug)]
pub struct CgroupManager {
    fs: Arc<dyn CgroupFs>,
    layout: CgroupLayout,
    root: PathBuf,
    config: CgroupsConfig,
    root_ready: AtomicBool,
}

impl CgroupManager {
    /// A manager over `fs` with an explicit layout.
    pub fn new(
        fs: Arc<dyn CgroupFs>,
        layout: CgroupLayout,
        config: CgroupsConfig,
    ) -> Result<Self, CgroupError> {
        let root = match (&config.root, layout.version()) {
            (Some(r), _) => r.clone(),
            (None, CgroupVersion::V1) => "basalt".to_owned(),
            (None, CgroupVersion::V2) => "basalt.slice".to_owned(),
        };
        let root_path = PathBuf::from(&root);
        if root.is_empty()
            || !root_path
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(CgroupError::InvalidRoot { root });
        }
        if let CgroupLayout::V1 { mounts } = &layout {
            let needed: &[(&'static str, bool)] = &[
                ("cpu", config.cpu),
                ("cpuacct", config.cpu),
                ("memory", config.memory),
            ];
            for (c, on) in needed {
                if *on && !mounts.contains_key(*c) {
                    return Err(CgroupError::ControllerUnavailable {
                        controller: c,
                        path: PathBuf::from("/sys/fs/cgroup").join(c),
                    });
                }
            }
        }
        Ok(Self {
            fs,
            layout,
            root: root_path,
            config,
            root_ready: AtomicBool::new(false),
        })
    }

    /// The host's cgroups, from `/proc/self/mountinfo`.
    pub fn host(config: CgroupsConfig) -> Result<Self, CgroupError> {
        let path = Path::new(MOUNTINFO);
        let text = std::fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, e))?;
        let layout =
            CgroupLayout::from_mountinfo(&text, path, config.version, config.v2_mount.as_deref())?;
        Self::new(Arc::new(HostCgroupFs), layout, config)
    }

    /// v1 or v2.
    pub fn version(&self) -> CgroupVersion {
        self.layout.version()
    }

    /// The layout in use.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// The configuration in use.
    pub fn config(&self) -> &CgroupsConfig {
        &self.config
    }

    /// The controllers (v1: with their mount) task cgroups are made in.
    fn v1_controllers(&self) -> Vec<(&'static str, PathBuf)> {
        let CgroupLayout::V1 { mounts } = &self.layout else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (c, on) in [
            ("cpu", self.config.cpu),
            ("cpuacct", self.config.cpu),
            ("memory", self.config.memory),
            ("freezer", true),
        ] {
            if on && let Some(m) = mounts.get(c) {
                out.push((c, m.clone()));
            }
        }
        out
    }

    /// The root directories (`<mount>/<root>`) task cgroups are made under.
    pub fn root_dirs(&self) -> Vec<PathBuf> {
        match &self.layout {
            CgroupLayout::V1 { .. } => {
                let mut dirs: Vec<PathBuf> = self
                    .v1_controllers()
                    .into_iter()
                    .map(|(_, m)| m.join(&self.root))
                    .collect();
                dirs.dedup();
                dirs.sort();
                dirs.dedup();
                dirs
            }
            CgroupLayout::V2 { mount } => vec![mount.join(&self.root)],
        }
    }

    fn v2_needed(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.config.cpu {
            v.push("cpu");
        }
        if self.config.memory {
            v.push("memory");
        }
        v
    }

    /// Makes the root hierarchy and (v2) enables the controllers down to it. Done once.
    fn ensure_root(&self) -> Result<(), CgroupError> {
        if self.root_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.layout {
            CgroupLayout::V1 { .. } => {
                for dir in self.root_dirs() {
                    self.fs
                        .create_dir_all(&dir)
                        .map_err(|e| CgroupError::io("mkdir", &dir, e))?;
                }
            }
            CgroupLayout::V2 { mount } => {
                let needed = self.v2_needed();
                if !needed.is_empty() {
                    let offered_path = mount.join("cgroup.controllers");
                    let offered = self
                        .fs
                        .read(&offered_path)
                        .map_err(|e| CgroupError::io("read", &offered_path, e))?;
                    for c in &needed {
                        if !offered.split_whitespace().any(|o| o == *c) {
                            return Err(CgroupError::ControllerUnavailable {
                                controller: c,
                                path: offered_path,
                            });
                        }
                    }
                }
                let root = mount.join(&self.root);
                self.fs
                    .create_dir_all(&root)
                    .map_err(|e| CgroupError::io("mkdir", &root, e))?;
                // Every directory from the mount to the root passes the controllers on.
                let mut dir = mount.clone();
                let mut chain = vec![dir.clone()];
                for c in self.root.components() {
                    dir.push(c);
                    chain.push(dir.clone());
                }
                for d in chain {
                    let ctl = d.join("cgroup.subtree_control");
                    let on = self
                        .fs
                        .read(&ctl)
                        .map_err(|e| CgroupError::io("read", &ctl, e))?;
                    let missing: Vec<String> = needed
                        .iter()
                        .filter(|c| !on.split_whitespace().any(|o| o == **c))
                        .map(|c| format!("+{c}"))
                        .collect();
                    if !missing.is_empty() {
                        self.fs
                            .write(&ctl, &missing.join(" "))
                            .map_err(|e| CgroupError::io("write", &ctl, e))?;
                    }
                }
            }
        }
        self.root_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn write(&self, path: PathBuf, value: impl ToString) -> Result<(), CgroupError> {
        self.fs
            .write(&path, &value.to_string())
            .map_err(|e| CgroupError::io("write", &path, e))
    }

    /// Creates the cgroup of container `id` with `limits`. On failure nothing is left.
    pub fn create(&self, id: &str, limits: &TaskLimits) -> Result<TaskCgroup, CgroupError> {
        self.ensure_root()?;
        let cg = self.task_cgroup(id);
        let mut made: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for d in &cg.dirs {
                self.fs
                    .create_dir_all(d)
                    .map_err(|e| CgroupError::io("mkdir", d, e))?;
                made.push(d.clone());
            }
            self.apply_limits(&cg, limits)
        })();
        match result {
            Ok(()) => Ok(cg),
            Err(e) => {
                for d in made.iter().rev() {
                    if let Err(re) = self.fs.remove_dir(d) {
                        tracing::warn!(path = %d.display(), error = %re, "removing half-made cgroup");
                    }
                }
                Err(e)
            }
        }
    }

    /// The cgroup paths of container `id` (nothing is created).
    pub fn task_cgroup(&self, id: &str) -> TaskCgroup {
        match &self.layout {
            CgroupLayout::V1 { .. } => {
                let mut cg = TaskCgroup {
                    version: CgroupVersion::V1,
                    dirs: Vec::new(),
                    cpu: None,
                    cpuacct: None,
                    memory: None,
                };
                for (c, mount) in self.v1_controllers() {
                    let dir = mount.join(&self.root).join(id);
                    match c {
                        "cpu" => cg.cpu = Some(dir.clone()),
                        "cpuacct" => cg.cpuacct = Some(dir.clone()),
                        "memory" => cg.memory = Some(dir.clone()),
                        _ => {}
                    }
                    if !cg.dirs.contains(&dir) {
                        cg.dirs.push(dir);
                    }
                }
                cg
            }
            CgroupLayout::V2 { mount } => {
                let dir = mount.join(&self.root).join(id);
                TaskCgroup {
                    version: CgroupVersion::V2,
                    dirs: vec![dir.clone()],
                    cpu: self.config.cpu.then(|| dir.clone()),
                    cpuacct: Some(dir.clone()),
                    memory: self.config.memory.then_some(dir),
                }
            }
        }
    }

    fn apply_limits(&self, cg: &TaskCgroup, limits: &TaskLimits) -> Result<(), CgroupError> {
        if let Some(cpu) = &cg.cpu {
            match cg.version {
                CgroupVersion::V1 => {
                    if let Some(shares) = limits.cpu_shares() {
                        self.write(cpu.join("cpu.shares"), shares)?;
                    }
                    if self.config.cfs_quota
                        && let Some(quota) = limits.cfs_quota_us()
                    {
                        self.write(cpu.join("cpu.cfs_period_us"), CFS_PERIOD_US)?;
                        self.write(cpu.join("cpu.cfs_quota_us"), quota)?;
                    }
                }
                CgroupVersion::V2 => {
                    if let Some(weight) = limits.cpu_weight() {
                        self.write(cpu.join("cpu.weight"), weight)?;
                    }
                    if self.config.cfs_quota
                        && let Some(quota) = limits.cfs_quota_us()
                    {
                        self.write(cpu.join("cpu.max"), format!("{quota} {CFS_PERIOD_US}"))?;
                    }
                }
            }
        }
        if let (Some(mem), Some(limit)) = (&cg.memory, limits.memory_limit()) {
            match cg.version {
                CgroupVersion::V1 => {
                    self.write(mem.join("memory.limit_in_bytes"), limit)?;
                    self.write(mem.join("memory.soft_limit_in_bytes"), limit)?;
                }
                CgroupVersion::V2 => {
                    self.write(mem.join("memory.max"), limit)?;
                    self.write(mem.join("memory.low"), limit)?;
                }
            }
        }
        Ok(())
    }

    /// Every process in the cgroup (all its directories), sorted. Directories already
    /// gone count as empty.
    pub fn pids(&self, cg: &TaskCgroup) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for f in cg.procs_files() {
            let text = match self.fs.read(&f) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CgroupError::io("read", &f, e)),
            };
            for w in text.split_whitespace() {
                let pid = w.parse::<i32>().map_err(|_| CgroupError::Parse {
                    path: f.clone(),
                    reason: format!("'{w}' is not a pid"),
                })?;
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// v2 with `cgroup.kill` (Linux 5.14+): SIGKILLs every process in the cgroup at once
    /// and returns true. Otherwise returns false and the caller kills pid by pid.
    pub fn kill_all(&self, cg: &TaskCgroup) -> Result<bool, CgroupError> {
        if cg.version != CgroupVersion::V2 {
            return Ok(false);
        }
        let Some(dir) = cg.dirs.first() else {
            return Ok(false);
        };
        let kill = dir.join("cgroup.kill");
        if !self.fs.exists(&kill) {
            return Ok(false);
        }
        self.write(kill, 1).map(|()| true)
    }

    fn read_opt(&self, path: &Path) -> Result<Option<String>, CgroupError> {
        match self.fs.read(path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CgroupError::io("read", path, e)),
        }
    }

    /// How many processes the OOM killer killed in the cgroup (`None` without the
    /// memory controller or on kernels without the counter).
    pub fn oom_kills(&self, cg: &TaskCgroup) -> Result<Option<u64>, CgroupError> {
        let Some(mem) = &cg.memory else {
            return Ok(None);
        };
        let file = match cg.version {
            CgroupVersion::V1 => mem.join("memory.oom_control"),
            CgroupVersion::V2 => mem.join("memory.events"),
        };
        Ok(self
            .read_opt(&file)?
            .and_then(|t| key_value(&t, "oom_kill")))
    }

    /// The most memory the cgroup used, in bytes.
    pub fn memory_peak(&self, cg: &TaskCgroup) -> Result<Option<u64>, CgroupError> {
        let Some(mem) = &cg.memory else {
            return Ok(None);
        };
        let file = match cg.version {
            CgroupVersion::V1 => mem.join("memory.max_usage_in_bytes"),
            CgroupVersion::V2 => mem.join("memory.peak"),
        };
        Ok(self.read_opt(&file)?.and_then(|t| t.trim().parse().ok()))
    }

    /// CPU and memory statistics of the cgroup, Mesos `ResourceStatistics` fields
    /// (limits filled in by the caller, who knows the task's resources).
    pub fn usage(&self, cg: &TaskCgroup) -> Result<ResourceStatistics, CgroupError> {
        let mut st = ResourceStatistics::default();
        match cg.version {
            CgroupVersion::V1 => {
                if let Some(acct) = &cg.cpuacct
                    && let Some(t) = self.read_opt(&acct.join("cpuacct.stat"))?
                {
                    let hz = clock_ticks();
                    st.cpus_user_time_secs = key_value(&t, "user").map(|v| v as f64 / hz);
                    st.cpus_system_time_secs = key_value(&t, "system").map(|v| v as f64 / hz);
                }
                if let Some(cpu) = &cg.cpu
                    && let Some(t) = self.read_opt(&cpu.join("cpu.stat"))?
                {
                    st.cpus_nr_periods = key_value(&t, "nr_periods");
                    st.cpus_nr_throttled = key_value(&t, "nr_throttled");
                    st.cpus_throttled_time_secs =
                        key_value(&t, "throttled_time").map(|ns| ns as f64 / 1e9);
                }
                if let Some(mem) = &cg.memory {
                    st.mem_total_bytes = self
                        .read_opt(&mem.join("memory.usage_in_bytes"))?
                        .and_then(|t| t.trim().parse().ok());
                    if let Some(t) = self.read_opt(&mem.join("memory.stat"))? {
                        st.mem_rss_bytes = key_value(&t, "total_rss");
                        st.mem_cache_bytes = key_value(&t, "total_cache");
                    }
                }
            }
            CgroupVersion::V2 => {
                let usec = |t: &str, k: &str| key_value(t, k).map(|u| u as f64 / 1e6);
                if let Some(dir) = cg.dirs.first()
                    && let Some(t) = self.read_opt(&dir.join("cpu.stat"))?
                {
                    st.cpus_user_time_secs = usec(&t, "user_usec");
                    st.cpus_system_time_secs = usec(&t, "system_usec");
                    st.cpus_nr_periods = key_value(&t, "nr_periods");
                    st.cpus_nr_throttled = key_value(&t, "nr_throttled");
                    st.cpus_throttled_time_secs = usec(&t, "throttled_usec");
                }
                if let Some(mem) = &cg.memory {
                    st.mem_total_bytes = self
                        .read_opt(&mem.join("memory.current"))?
                        .and_then(|t| t.trim().parse().ok());
                    if let Some(t) = self.read_opt(&mem.join("memory.stat"))? {
                        st.mem_rss_bytes = key_value(&t, "anon");
                        st.mem_cache_bytes = key_value(&t, "file");
                    }
                }
            }
        }
        Ok(st)
    }

    /// Removes the cgroup's directories (those already gone are fine). Fails with the
    /// first error, typically `EBUSY` while processes remain.
    pub fn destroy(&self, cg: &TaskCgroup) -> Result<(), CgroupError> {
        let mut first = None;
        for d in &cg.dirs {
            match self.fs.remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    if first.is_none() {
                        first = Some(CgroupError::io("rmdir", d, e));
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Whether any directory of the cgroup still exists.
    pub fn exists(&self, cg: &TaskCgroup) -> bool {
        cg.dirs.iter().any(|d| self.fs.exists(d))
    }
}

/// `key value` lines (`cpu.stat`, `memory.stat`, `memory.events`, `memory.oom_control`).
pub fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// `USER_HZ`, the unit of `cpuacct.stat` (100 on every Linux build).
fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

#[cfg(test)]
mod tests;
