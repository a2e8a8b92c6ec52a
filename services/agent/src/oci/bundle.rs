//! One OCI runtime bundle per container: the root filesystem assembled from the
//! image's layers and a generated `config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use super::error::OciError;
use super::store::{PulledImage, copy_layers};
use crate::containerizer::TaskLimits;

/// Where the sandbox appears in the container (Mesos' `MESOS_SANDBOX`).
pub const CONTAINER_SANDBOX: &str = "/mnt/mesos/sandbox";

/// How the root filesystem is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RootfsBackend {
    /// overlayfs when the kernel has it (and the mount works), else copying.
    #[default]
    Auto,
    /// Always overlayfs.
    Overlay,
    /// Always copy the layers into a fresh directory.
    Copy,
}

/// The user the container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// What the bundle is made from.
#[derive(Debug)]
pub struct BundleSpec {
    /// The image.
    pub image: PulledImage,
    /// The container id (also crun's container id).
    pub container_id: String,
    /// `<store>/bundles/<container_id>`.
    pub dir: PathBuf,
    /// The host sandbox, bind-mounted at [`CONTAINER_SANDBOX`].
    pub sandbox: PathBuf,
    /// `process.args`.
    pub args: Vec<String>,
    /// `process.env`.
    pub env: BTreeMap<String, String>,
    /// The task's user (`None`: root).
    pub user: Option<String>,
    /// The container's hostname (own UTS namespace).
    pub hostname: String,
    /// `linux.cgroupsPath` (the containerizer's cgroup of this container).
    pub cgroups_path: Option<String>,
    /// The cgroup limits, written to `linux.resources` as the containerizer sets them.
    pub limits: TaskLimits,
    /// The root filesystem backend.
    pub backend: RootfsBackend,
}

/// A prepared bundle; [`Bundle::cleanup`] undoes it.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory (`config.json`, `rootfs/`).
    pub dir: PathBuf,
    /// The container id.
    pub container_id: String,
    /// Whether `rootfs` is an overlay mount.
    pub overlay: bool,
    /// The process user.
    pub user: ContainerUser,
}

impl Bundle {
    /// The root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Unmounts the root filesystem and removes the bundle (best effort, logged).
    pub fn cleanup(&self) {
        if self.overlay
            && let Err(e) = nix::mount::umount2(&self.rootfs(), nix::mount::MntFlags::MNT_DETACH)
            && e != nix::errno::Errno::EINVAL
            && e != nix::errno::Errno::ENOENT
        {
            tracing::warn!(path = %self.rootfs().display(), error = %e, "unmounting a container rootfs");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.dir.display(), error = %e, "removing an OCI bundle");
        }
    }
}

fn overlay_available() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    })
}

/// Assembles the root filesystem and writes `config.json`. On error nothing is left.
pub fn prepare(spec: &BundleSpec) -> Result<Bundle, OciError> {
    let fail = |reason: String| OciError::Bundle {
        image: spec.image.name.clone(),
        reason,
    };
    let rootfs = spec.dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(OciError::io(&rootfs))?;
    let mut bundle = Bundle {
        dir: spec.dir.clone(),
        container_id: spec.container_id.clone(),
        overlay: false,
        user: ContainerUser {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        },
    };
    let result = (|| {
        bundle.overlay = assemble(spec, &rootfs).map_err(&fail)?;
        bundle.user = resolve_user(&rootfs, spec.user.as_deref()).map_err(&fail)?;
        let config = config_json(spec, &bundle.user);
        let path = spec.dir.join("config.json");
        let text = serde_json::to_vec_pretty(&config).map_err(|e| fail(e.to_string()))?;
        std::fs::write(&path, text).map_err(OciError::io(&path))?;
        if bundle.user.uid != 0 {
            std::os::unix::fs::chown(&spec.sandbox, Some(bundle.user.uid), Some(bundle.user.gid))
                .map_err(OciError::io(&spec.sandbox))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(bundle),
        Err(e) => {
            bundle.cleanup();
            Err(e)
        }
    }
}

/// Mounts an overlay of the layers at `rootfs` (upper and work directories in the
/// bundle) or copies them there; true for an overlay.
fn assemble(spec: &BundleSpec, rootfs: &Path) -> Result<bool, String> {
    let use_overlay = match spec.backend {
        RootfsBackend::Copy => false,
        RootfsBackend::Overlay => true,
        RootfsBackend::Auto => overlay_available(),
    };
    if use_overlay {
        match mount_overlay(spec, rootfs) {
            Ok(()) => return Ok(true),
            Err(e) if spec.backend == RootfsBackend::Overlay => return Err(e),
            Err(e) => {
                tracing::warn!(image = %spec.image.name, error = %e, "overlayfs unusable, copying the layers");
            }
        }
    }
    copy_layers(&spec.image.layers, rootfs)
        .map_err(|e| format!("copying the layers into {}: {e}", rootfs.display()))?;
    Ok(false)
}

fn mount_overlay(spec: &BundleSpec, rootfs: &Path) -> Result<(), String> {
    let upper = spec.dir.join("upper");
    let work = spec.dir.join("work");
    let mut lower: Vec<PathBuf> = spec.image.layers.iter().rev().cloned().collect();
    if lower.is_empty() {
        let empty = spec.dir.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| format!("{}: {e}", empty.display()))?;
        lower.push(empty);
    }
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let all: Vec<&Path> = lower
        .iter()
        .map(PathBuf::as_path)
        .chain([upper.as_path(), work.as_path()])
        .collect();
    if let Some(p) = all
        .iter()
        .find(|p| p.to_string_lossy().contains([',', ':', '\\']))
    {
        return Err(format!("path {} contains ',', ':' or '\\'", p.display()));
    }
    let lowerdir = lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if opts.len() >= 4000 {
        return Err(format!(
            "{} layers make mount options longer than a page",
            lower.len()
        ));
    }
    nix::mount::mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("mounting overlayfs at {}: {e}", rootfs.display()))
}

/// `name:x:uid:gid:...` entries of a passwd or group file.
fn lookup(file: &Path, name: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|f| f.first().is_some_and(|n| n == name))
}

fn supplementary(rootfs: &Path, name: &str, primary: u32) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(rootfs.join("etc/group")) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let members = f.get(3)?;
            let gid: u32 = f.get(2)?.parse().ok()?;
            members
                .split(',')
                .any(|m| m == name)
                .then_some(gid)
                .filter(|g| *g != primary)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The task's user in the image (`/etc/passwd` of the rootfs), else on the agent; a
/// numeric `uid[:gid]` is taken as is.
pub fn resolve_user(rootfs: &Path, user: Option<&str>) -> Result<ContainerUser, String> {
    let Some(name) = user.filter(|u| !u.is_empty() && *u != "root") else {
        return Ok(ContainerUser {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
        });
    };
    let (u, g) = match name.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (name, None),
    };
    if let Ok(uid) = u.parse::<u32>() {
        let gid = match g {
            Some(g) => g
                .parse::<u32>()
                .map_err(|_| format!("user '{name}': group '{g}' is not numeric"))?,
            None => uid,
        };
        return Ok(ContainerUser {
            uid,
            gid,
            additional_gids: Vec::new(),
        });
    }
    if let Some(f) = lookup(&rootfs.join("etc/passwd"), u) {
        let uid = f.get(2).and_then(|v| v.parse().ok());
        let gid = f.get(3).and_then(|v| v.parse().ok());
        if let (Some(uid), Some(gid)) = (uid, gid) {
            return Ok(ContainerUser {
                uid,
                gid,
                additional_gids: supplementary(rootfs, u, gid),
            });
        }
    }
    match nix::unistd::User::from_name(u) {
        Ok(Some(pw)) => Ok(ContainerUser {
            uid: pw.uid.as_raw(),
            gid: pw.gid.as_raw(),
            additional_gids: Vec::new(),
        }),
        Ok(None) => Err(format!(
            "user '{u}' does not exist in the image or on the agent"
        )),
        Err(e) => Err(format!("looking up user '{u}': {e}")),
    }
}

/// Docker's default capability set.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn bind(dest: &str, source: &Path, ro: bool) -> Json {
    let mut opts = vec!["rbind", "nosuid", "nodev"];
    opts.push(if ro { "ro" } else { "rw" });
    json!({"destination": dest, "type": "bind", "source": source, "options": opts})
}

/// The runtime configuration (OCI runtime spec 1.0).
pub fn config_json(spec: &BundleSpec, user: &ContainerUser) -> Json {
    let caps: Vec<&str> = if user.uid == 0 {
        CAPABILITIES.to_vec()
    } else {
        Vec::new()
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        bind(CONTAINER_SANDBOX, &spec.sandbox, false),
    ];
    // Host networking: the host's resolver configuration and hosts file.
    for f in ["/etc/resolv.conf", "/etc/hosts"] {
        if Path::new(f).is_file() {
            mounts.push(bind(f, Path::new(f), true));
        }
    }
    let mut resources = serde_json::Map::new();
    let mut cpu = serde_json::Map::new();
    if let Some(s) = spec.limits.cpu_shares() {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(q) = spec.limits.cfs_quota_us() {
        cpu.insert("quota".into(), json!(q));
        cpu.insert("period".into(), json!(100_000));
    }
    if !cpu.is_empty() {
        resources.insert("cpu".into(), Json::Object(cpu));
    }
    if let Some(m) = spec.limits.memory_limit() {
        resources.insert("memory".into(), json!({"limit": m}));
    }
    let mut linux = json!({
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
        "resources": resources,
        "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
            "/proc/sysrq-trigger"],
    });
    if let (Some(p), Some(obj)) = (&spec.cgroups_path, linux.as_object_mut()) {
        obj.insert("cgroupsPath".into(), json!(p));
    }
    let cwd = spec
        .image
        .config
        .working_dir
        .as_deref()
        .filter(|w| w.starts_with('/'))
        .unwrap_or(CONTAINER_SANDBOX);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": spec.args,
            "env": spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_in_the_image_first() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1234:1235::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("etc/group"),
            "app:x:1235:\nextra:x:77:app,other\n",
        )
        .unwrap();
        let u = resolve_user(t.path(), Some("app")).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1234, 1235, vec![77]));
        assert_eq!(resolve_user(t.path(), None).unwrap().uid, 0);
        assert_eq!(resolve_user(t.path(), Some("5:6")).unwrap().gid, 6);
        let e = resolve_user(t.path(), Some("no-such-user-x")).unwrap_err();
        assert!(
            e.contains("'no-such-user-x' does not exist in the image"),
            "{e}"
        );
    }
}
