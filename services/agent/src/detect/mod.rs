//! Resource detection: what this machine offers to the cluster.
//!
//! A library the agent and the node supervisor both call. [`Detector::detect`] reads the
//! machine and returns a plain [`DetectedResources`]; [`Detector::detect_cached`] adds the
//! cache that keeps the advertised values stable across restarts (see the `cache` section
//! below).
//!
//! # What is detected
//!
//! | resource | source | rule |
//! |---|---|---|
//! | `cpus` | `/sys/devices/system/cpu/online`; cgroup `cpu.max` (v2) / `cpu.cfs_quota_us`÷`cpu.cfs_period_us` (v1); `cpuset.cpus.effective` (v2) / `cpuset.effective_cpus` (v1) | min of the three, 3 decimals |
//! | `mem` | `MemTotal` of `/proc/meminfo`; cgroup `memory.max` (v2) / `memory.limit_in_bytes` (v1) | `min(total, limit)` − reserve (default 1 GiB; half when less than twice the reserve) |
//! | `disk` (ROOT) | `statvfs` of the work dir | available − reserve (default 100 MiB, DC/OS' `make_disk_resources.py`) |
//! | `disk` (MOUNT) | mounts in `/proc/self/mountinfo` matching the pattern (default `/dcos/volume*`) | each: available − reserve (default 100 MiB) |
//! | `ports` | config | DC/OS defaults: private `[1025-2180,2182-3887,3889-5049,5052-8079,8082-8180,8182-32000]`, public `[1-21,23-5050,5052-32000]` |
//! | `gpus` | `/sys/bus/pci/devices/*` vendor `0x10de`, class `0x0300xx`/`0x0302xx`; model from `/proc/driver/nvidia/gpus/*/information` | count |
//!
//! Attributes (`disk_type`, `disk_type_<mount>`, `gpu_model`, `public_ip`, operator
//! attributes) are described in the `attributes` module; the fault domain comes from the
//! fault-domain-detect script. On a public agent every resource is statically reserved
//! to the public role (default `slave_public`) and `public_ip:true` is set, as DC/OS'
//! `MESOS_DEFAULT_ROLE=slave_public` + `MESOS_ATTRIBUTES=public_ip:true` did.
//!
//! # Seams
//!
//! Every read of `/proc` and `/sys` goes through a [`SystemRoot`] (`/` on a machine, a
//! recorded tree under `services/agent/fixtures/` in tests); free space goes through
//! [`FsStats`] ([`HostFsStats`] = `statvfs`); the fault-domain script through
//! [`ScriptRunner`] ([`HostScriptRunner`] = a real process with a timeout).
//!
//! # Cache
//!
//! The first detection is stored in `<work_dir>/detected-resources.json`; later starts
//! advertise it and report a [`DetectionDrift`] when the machine now looks different
//! (disk free space excepted). Changing what an agent advertises is the documented
//! drain-and-reset operation on [`ResourceCache::reset`] / [`reset_cache`], which
//! `basaltd agent reset-resources` will run after the agent is drained.
//!
//! # Limits
//!
//! * The device under the work dir is found by longest mount-point prefix in mountinfo
//!   (after resolving symlinks inside the root); file systems without a block device
//!   (tmpfs, overlay, some btrfs subvolumes) have no disk type.
//! * NVML is not loaded; count, model and minor come from sysfs and `/proc/driver/nvidia`.

mod attributes;
mod cache;
mod cgroup;
mod cpu;
mod disk;
mod error;
mod fault_domain;
mod gpu;
mod memory;
mod mountinfo;
mod ports;
mod resources;
mod seams;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use attributes::sanitize_text;
pub use cache::{
    Advertised, CACHE_FILE, DetectionDrift, Origin, PREVIOUS_SUFFIX, ResourceCache, reset_cache,
};
pub use cgroup::CgroupLimits;
pub use disk::{DiskType, MountDisk, RootDisk, glob_match};
pub use error::DetectError;
pub use fault_domain::FaultDomain;
pub use gpu::Gpu;
pub use ports::{DCOS_PRIVATE_PORTS, DCOS_PUBLIC_PORTS, PortRange, PortRanges};
pub use resources::{DetectedResources, DriftItem, UNRESERVED_ROLE, format_scalar};
pub use seams::{
    FsStats, FsUsage, HostFsStats, HostScriptRunner, ScriptOutput, ScriptRunner, SystemRoot,
};

/// DC/OS' role for public agents.
pub const DEFAULT_PUBLIC_ROLE: &str = "slave_public";
/// Default MOUNT disk pattern (DC/OS' `/dcos/volume<N>`).
pub const DEFAULT_MOUNT_PATTERN: &str = "/dcos/volume*";
/// Default memory reserve, MiB (Mesos / DC/OS: 1 GB).
pub const DEFAULT_MEM_RESERVE_MIB: u64 = 1024;
/// Default reserve on the ROOT and each MOUNT disk, MiB (DC/OS `make_disk_resources.py`).
pub const DEFAULT_DISK_RESERVE_MIB: u64 = 100;
/// Default time the fault-domain script may run.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to detect and how. [`DetectConfig::new`] gives the DC/OS defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectConfig {
    /// Agent work dir (absolute, must exist): the ROOT disk is its file system.
    pub work_dir: PathBuf,
    /// A public agent: all resources reserved to `public_role`, `public_ip:true`.
    pub public: bool,
    /// Role of public agents (default `slave_public`).
    pub public_role: String,
    /// Memory kept for the node, MiB (default 1024).
    pub mem_reserve_mib: u64,
    /// Space kept on the work dir's file system, MiB (default 100).
    pub root_disk_reserve_mib: u64,
    /// Space kept on each MOUNT disk, MiB (default 100).
    pub mount_disk_reserve_mib: u64,
    /// Absolute glob (`*`, `?`; neither matches `/`) for MOUNT disk mount points.
    pub mount_pattern: String,
    /// Ports of private agents (default DC/OS').
    pub private_ports: PortRanges,
    /// Ports of public agents (default DC/OS').
    pub public_ports: PortRanges,
    /// The fault-domain-detect script, if any.
    pub fault_domain_script: Option<PathBuf>,
    /// How long the script may run before it is killed.
    pub fault_domain_timeout: Duration,
    /// Operator attributes (from the config bundle); they replace detected ones of the
    /// same name.
    pub attributes: BTreeMap<String, String>,
}

impl DetectConfig {
    /// Defaults for a private agent with this work dir.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        DetectConfig {
            work_dir: work_dir.into(),
            public: false,
            public_role: DEFAULT_PUBLIC_ROLE.into(),
            mem_reserve_mib: DEFAULT_MEM_RESERVE_MIB,
            root_disk_reserve_mib: DEFAULT_DISK_RESERVE_MIB,
            mount_disk_reserve_mib: DEFAULT_DISK_RESERVE_MIB,
            mount_pattern: DEFAULT_MOUNT_PATTERN.into(),
            private_ports: PortRanges::dcos_private(),
            public_ports: PortRanges::dcos_public(),
            fault_domain_script: None,
            fault_domain_timeout: DEFAULT_SCRIPT_TIMEOUT,
            attributes: BTreeMap::new(),
        }
    }

    /// The role resources are advertised for: `*` or the public role.
    pub fn role(&self) -> &str {
        if self.public {
            &self.public_role
        } else {
            UNRESERVED_ROLE
        }
    }

    /// The ports for this agent's role.
    pub fn ports(&self) -> &PortRanges {
        if self.public {
            &self.public_ports
        } else {
            &self.private_ports
        }
    }

    /// Checks every field; the first problem is returned with the field's name.
    pub fn validate(&self) -> Result<(), DetectError> {
        if !self.work_dir.is_absolute() {
            return Err(DetectError::config(
                "work_dir",
                format!("{:?} is not an absolute path", self.work_dir),
            ));
        }
        if self.public {
            validate_role(&self.public_role).map_err(|r| DetectError::config("public_role", r))?;
        }
        if !self.mount_pattern.starts_with('/') {
            return Err(DetectError::config(
                "mount_pattern",
                format!("{:?} is not an absolute path pattern", self.mount_pattern),
            ));
        }
        if let Some(s) = &self.fault_domain_script
            && !s.is_absolute()
        {
            return Err(DetectError::config(
                "fault_domain_script",
                format!("{s:?} is not an absolute path"),
            ));
        }
        if self.fault_domain_timeout.is_zero() {
            return Err(DetectError::config(
                "fault_domain_timeout",
                "must be more than 0",
            ));
        }
        for (name, value) in &self.attributes {
            attributes::validate(name, value)
                .map_err(|r| DetectError::config(format!("attributes.{name}"), r))?;
        }
        Ok(())
    }
}

/// Mesos role name rules (`roles.md`): not empty, `.` or `..`; no leading `-`; no `/`,
/// whitespace or control characters; not `*` for a reservation.
fn validate_role(role: &str) -> Result<(), String> {
    if role.is_empty() || role == "." || role == ".." {
        return Err(format!("{role:?} is not a valid role name"));
    }
    if role == UNRESERVED_ROLE {
        return Err("resources cannot be statically reserved to `*`".into());
    }
    if role.starts_with('-') {
        return Err(format!("{role:?} starts with `-`"));
    }
    if let Some(c) = role
        .chars()
        .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{role:?} contains {c:?}"));
    }
    Ok(())
}

/// Reads a machine through its seams.
pub struct Detector {
    root: SystemRoot,
    fs: Box<dyn FsStats + Send + Sync>,
    scripts: Box<dyn ScriptRunner + Send + Sync>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// The real machine: root `/`, `statvfs`, real processes.
    pub fn host() -> Self {
        Detector::new(SystemRoot::host(), HostFsStats, HostScriptRunner)
    }

    /// Any combination of seams (fixtures and fakes in tests).
    pub fn new(
        root: SystemRoot,
        fs: impl FsStats + Send + Sync + 'static,
        scripts: impl ScriptRunner + Send + Sync + 'static,
    ) -> Self {
        Detector {
            root,
            fs: Box::new(fs),
            scripts: Box::new(scripts),
        }
    }

    /// The root every kernel file is read under.
    pub fn root(&self) -> &SystemRoot {
        &self.root
    }

    /// The cgroup limits of this process.
    pub fn cgroup_limits(&self) -> Result<CgroupLimits, DetectError> {
        let mounts = mountinfo::read_mounts(&self.root)?;
        cgroup::read_limits(&self.root, &mounts)
    }

    /// NVIDIA GPUs.
    pub fn gpus(&self) -> Result<Vec<Gpu>, DetectError> {
        gpu::detect_gpus(&self.root)
    }

    /// Detects everything afresh (no cache).
    pub fn detect(&self, cfg: &DetectConfig) -> Result<DetectedResources, DetectError> {
        cfg.validate()?;
        let root = &self.root;
        let mounts = mountinfo::read_mounts(root)?;
        let limits = cgroup::read_limits(root, &mounts)?;

        let online = cpu::online_cpus(root)?;
        let cpus = cpu::effective_cpus(online, &limits);

        let mem_total = memory::mem_total_bytes(root)?;
        let mem_mib =
            memory::advertised_mem_mib(mem_total, limits.memory_limit_bytes, cfg.mem_reserve_mib);

        let work_dir = root.canonicalize(&cfg.work_dir);
        let (size_mib, fs_total_mib) =
            disk::sized(self.fs.as_ref(), &cfg.work_dir, cfg.root_disk_reserve_mib)?;
        let work_mount = mountinfo::mount_of(&mounts, &work_dir);
        let (device, disk_type) = match work_mount {
            Some(m) => disk::device_and_type(root, m)?,
            None => (None, None),
        };
        let root_disk = RootDisk {
            path: cfg.work_dir.clone(),
            size_mib,
            fs_total_mib,
            device,
            disk_type,
        };

        let mut mount_disks = Vec::new();
        for m in disk::matching_mounts(&mounts, &cfg.mount_pattern) {
            if work_mount.is_some_and(|w| w.mount_point == m.mount_point) {
                return Err(DetectError::config(
                    "work_dir",
                    format!(
                        "{} lies on MOUNT disk {}; it would be advertised twice",
                        cfg.work_dir.display(),
                        m.mount_point.display()
                    ),
                ));
            }
            let (size_mib, fs_total_mib) =
                disk::sized(self.fs.as_ref(), &m.mount_point, cfg.mount_disk_reserve_mib)?;
            let (device, disk_type) = disk::device_and_type(root, m)?;
            mount_disks.push(MountDisk {
                root: m.mount_point.clone(),
                size_mib,
                fs_total_mib,
                device,
                disk_type,
            });
        }

        let gpus = gpu::detect_gpus(root)?;

        let mut attrs = BTreeMap::new();
        if let Some(t) = root_disk.disk_type {
            attrs.insert("disk_type".to_owned(), t.to_string());
        }
        for d in &mount_disks {
            if let Some(t) = d.disk_type {
                attrs.insert(attributes::mount_disk_type_name(&d.root), t.to_string());
            }
        }
        if let Some(m) = gpu::model_attribute(&gpus) {
            attrs.insert("gpu_model".to_owned(), m);
        }
        if cfg.public {
            attrs.insert("public_ip".to_owned(), "true".to_owned());
        }
        for (k, v) in &cfg.attributes {
            if let Some(old) = attrs.insert(k.clone(), v.clone())
                && &old != v
            {
                tracing::info!(attribute = %k, detected = %old, operator = %v, "operator attribute replaces a detected one");
            }
        }

        let fault_domain = match &cfg.fault_domain_script {
            Some(script) => Some(fault_domain::run_script(
                self.scripts.as_ref(),
                script,
                cfg.fault_domain_timeout,
            )?),
            None => None,
        };

        let detected = DetectedResources {
            role: cfg.role().to_owned(),
            cpus,
            mem_mib,
            root_disk,
            mount_disks,
            ports: cfg.ports().clone(),
            gpus,
            attributes: attrs,
            fault_domain,
        };
        tracing::info!(
            root = %root.root().display(),
            online_cpus = online,
            ?limits,
            mem_total_mib = mem_total / memory::MIB,
            resources = %detected.to_mesos_resources_text(),
            attributes = %detected.to_mesos_attributes_text(),
            "resources detected"
        );
        Ok(detected)
    }

    /// Detects and reconciles with the cache: the first start stores and advertises the
    /// detection; later starts advertise the cache, reporting drift when the new detection
    /// differs (see the `cache` docs). A cache that exists but is unreadable is an error.
    pub fn detect_cached(
        &self,
        cfg: &DetectConfig,
        cache: &ResourceCache,
    ) -> Result<Advertised, DetectError> {
        let cached = cache.load()?;
        let fresh = self.detect(cfg);
        let Some(cached) = cached else {
            let fresh = fresh?;
            cache.store(&fresh)?;
            tracing::info!(cache = %cache.path().display(), "resource detection cached");
            return Ok(Advertised {
                resources: fresh,
                origin: Origin::Detected,
                drift: None,
                redetect_error: None,
            });
        };
        let (drift, redetect_error) = match fresh {
            Ok(fresh) => {
                let changes = resources::compare(&cached, &fresh);
                if changes.is_empty() {
                    (None, None)
                } else {
                    let drift = DetectionDrift {
                        changes,
                        detected: fresh,
                    };
                    tracing::warn!(cache = %cache.path().display(), %drift, "detected resources differ from the cache");
                    (Some(drift), None)
                }
            }
            Err(e) => {
                tracing::warn!(cache = %cache.path().display(), error = %e, "detecting afresh failed; advertising the cache");
                (None, Some(e))
            }
        };
        Ok(Advertised {
            resources: cached,
            origin: Origin::Cache,
            drift,
            redetect_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_field() {
        let ok = DetectConfig::new("/var/lib/mesos/slave");
        ok.validate().unwrap();
        let field = |c: DetectConfig| match c.validate().unwrap_err() {
            DetectError::Config { field, .. } => field,
            other => panic!("{other}"),
        };
        let mut c = ok.clone();
        c.work_dir = "var/lib".into();
        assert_eq!(field(c), "work_dir");
        let mut c = ok.clone();
        c.public = true;
        c.public_role = "a/b".into();
        assert_eq!(field(c), "public_role");
        let mut c = ok.clone();
        c.public = true;
        c.public_role = "*".into();
        assert_eq!(field(c), "public_role");
        let mut c = ok.clone();
        c.mount_pattern = "dcos/*".into();
        assert_eq!(field(c), "mount_pattern");
        let mut c = ok.clone();
        c.attributes.insert("rack".into(), "a b".into());
        assert_eq!(field(c), "attributes.rack");
        let mut c = ok.clone();
        c.fault_domain_script = Some("detect".into());
        assert_eq!(field(c), "fault_domain_script");
        let mut c = ok;
        c.fault_domain_timeout = Duration::ZERO;
        assert_eq!(field(c), "fault_domain_timeout");
    }

    #[test]
    fn roles() {
        assert!(validate_role("slave_public").is_ok());
        for bad in ["", ".", "..", "-x", "a b", "a/b", "*"] {
            assert!(validate_role(bad).is_err(), "{bad:?}");
        }
    }
}
