//! Inputs of [`crate::build`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{ImageError, Result};

const MIB: u64 = 1024 * 1024;

/// Which node the image is for. Masters carry etcd; agents do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Master,
    Agent,
    AgentPublic,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Master, Role::Agent, Role::AgentPublic];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::AgentPublic => "agent-public",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Role> {
        match s {
            "master" => Ok(Role::Master),
            "agent" => Ok(Role::Agent),
            "agent-public" => Ok(Role::AgentPublic),
            other => Err(ImageError::InvalidOption(format!(
                "unknown role {other:?} (master, agent, agent-public)"
            ))),
        }
    }
}

/// The read-only root file system format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootFsKind {
    /// erofs, lz4hc-compressed (erofs-utils 1.5 on bookworm has no lzma).
    Erofs,
    /// squashfs, zstd-compressed: smaller, slower to read.
    Squashfs,
}

impl RootFsKind {
    pub fn fstype(self) -> &'static str {
        match self {
            RootFsKind::Erofs => "erofs",
            RootFsKind::Squashfs => "squashfs",
        }
    }
}

/// One file (or directory tree) copied into the image: `dest` is the absolute path in the
/// image, `src` a host path; `mode` applies to every regular file (directories get 0755).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    pub dest: String,
    pub src: PathBuf,
    pub mode: u32,
}

impl ExtraFile {
    pub fn new(dest: impl Into<String>, src: impl Into<PathBuf>, mode: u32) -> ExtraFile {
        ExtraFile {
            dest: dest.into(),
            src: src.into(),
            mode,
        }
    }
}

impl From<(String, PathBuf, u32)> for ExtraFile {
    fn from((dest, src, mode): (String, PathBuf, u32)) -> ExtraFile {
        ExtraFile { dest, src, mode }
    }
}

/// Everything [`crate::build`] needs. `BuildOptions::new(role, out_dir)` gives the defaults
/// documented on each field.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub role: Role,
    /// Where the artifacts are written (created if missing).
    pub out_dir: PathBuf,
    /// Base rootfs tarballs and the .deb cache: `$BASALT_IMAGE_CACHE` or
    /// `target/nodeimg-cache`.
    pub cache_dir: PathBuf,
    /// Debian suite (`bookworm`).
    pub suite: String,
    /// mmdebstrap variant (`essential`: Essential:yes packages plus the list; no apt in the
    /// image).
    pub variant: String,
    /// APT sources, one-line format.
    pub mirrors: Vec<String>,
    /// Packages on top of the role's list.
    pub extra_packages: Vec<String>,
    /// basaltd, units/, the cluster public key … (never a secret).
    pub extra_files: Vec<ExtraFile>,
    pub root_fs: RootFsKind,
    /// Every timestamp in the root image; also exported as SOURCE_DATE_EPOCH.
    pub source_date_epoch: u64,
    pub esp_size: u64,
    /// Size of each of the root A and root B partitions.
    pub root_slot_size: u64,
    /// Size of each verity (hash tree) partition.
    pub verity_slot_size: u64,
    /// Free space left at the end of `disk.raw` for the state partition that
    /// systemd-repart creates on first boot (it grows with the disk).
    pub state_space: u64,
    /// Extra kernel command line arguments (after the image's own).
    pub extra_cmdline: Vec<String>,
    /// Kernel module subtrees (relative to `lib/modules/<kver>/kernel/`) that are kept, with
    /// everything they depend on; the rest is removed.
    pub keep_modules: Vec<String>,
    /// Also write `disk.qcow2`.
    pub qcow2: bool,
    /// Reuse the artifacts in `out_dir` when their manifest records the same inputs.
    pub reuse_outputs: bool,
}

impl BuildOptions {
    pub fn new(role: Role, out_dir: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            role,
            out_dir: out_dir.into(),
            cache_dir: default_cache_dir(),
            suite: "bookworm".to_string(),
            variant: "essential".to_string(),
            mirrors: vec![
                "deb http://deb.debian.org/debian bookworm main".to_string(),
                "deb http://deb.debian.org/debian bookworm-updates main".to_string(),
                "deb http://deb.debian.org/debian-security bookworm-security main".to_string(),
            ],
            extra_packages: Vec::new(),
            extra_files: Vec::new(),
            root_fs: RootFsKind::Erofs,
            source_date_epoch: 1_700_000_000,
            esp_size: 128 * MIB,
            root_slot_size: 512 * MIB,
            verity_slot_size: 8 * MIB,
            state_space: 256 * MIB,
            extra_cmdline: Vec::new(),
            keep_modules: DEFAULT_KEEP_MODULES.iter().map(|s| s.to_string()).collect(),
            qcow2: true,
            reuse_outputs: true,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("esp_size", self.esp_size),
            ("root_slot_size", self.root_slot_size),
            ("verity_slot_size", self.verity_slot_size),
            ("state_space", self.state_space),
        ] {
            if v == 0 || v % MIB != 0 {
                return Err(ImageError::InvalidOption(format!(
                    "{name} = {v}: must be a positive multiple of 1 MiB"
                )));
            }
        }
        if self.esp_size < 64 * MIB {
            return Err(ImageError::InvalidOption(
                "esp_size must be at least 64 MiB (FAT32 minimum with room for A and B)".into(),
            ));
        }
        if self.mirrors.is_empty() {
            return Err(ImageError::InvalidOption("mirrors is empty".into()));
        }
        for a in &self.extra_cmdline {
            if a.starts_with("roothash=") || a.starts_with("root=") {
                return Err(ImageError::InvalidOption(format!(
                    "extra_cmdline {a:?}: root= and roothash= belong to the image"
                )));
            }
        }
        Ok(())
    }
}

/// `$BASALT_IMAGE_CACHE`, else `<workspace>/target/nodeimg-cache` (found from
/// `$CARGO_TARGET_DIR` or the current directory).
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BASALT_IMAGE_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(t).join("nodeimg-cache");
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    workspace_root(&cwd)
        .unwrap_or(cwd)
        .join("target")
        .join("nodeimg-cache")
}

/// The nearest ancestor holding a `Cargo.lock` (the workspace root).
pub fn workspace_root(from: &Path) -> Option<PathBuf> {
    from.ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
}

/// Module subtrees kept by default: virtio (virtio_console carries the QEMU guest agent's
/// port) and common datacenter storage/NICs, the file systems the image uses (erofs,
/// squashfs, ext4, vfat, overlay, iso9660 for config drives), device-mapper (verity, crypt,
/// thin) and md RAID, and networking (netfilter, ip_vs, bridge, vlan, vxlan, veth, bonding,
/// wireguard). An entry is a path under `kernel/` (a directory or a `.ko`) or, ending in
/// `*`, a plain prefix. Dependencies are added automatically.
pub const DEFAULT_KEEP_MODULES: &[&str] = &[
    "arch/x86/crypto",
    "crypto",
    "drivers/block/virtio_blk.ko",
    "drivers/block/loop.ko",
    "drivers/block/nbd.ko",
    "drivers/md/dm-*",
    "drivers/md/md-mod.ko",
    "drivers/md/raid0.ko",
    "drivers/md/raid1.ko",
    "drivers/md/raid10.ko",
    "drivers/nvme/host/nvme.ko",
    "drivers/ata/ahci.ko",
    "drivers/scsi/sd_mod.ko",
    "drivers/scsi/sr_mod.ko",
    "drivers/scsi/virtio_scsi.ko",
    "drivers/virtio",
    "drivers/char/hw_random/virtio-rng.ko",
    "drivers/char/virtio_console.ko",
    "drivers/net/virtio_net.ko",
    "drivers/net/veth.ko",
    "drivers/net/macvlan.ko",
    "drivers/net/ipvlan",
    "drivers/net/vxlan",
    "drivers/net/dummy.ko",
    "drivers/net/tun.ko",
    "drivers/net/bonding",
    "drivers/net/geneve.ko",
    "drivers/net/wireguard",
    "drivers/net/ethernet/intel",
    "drivers/net/ethernet/amazon",
    "drivers/net/ethernet/google",
    "fs/erofs",
    "fs/squashfs",
    "fs/ext4",
    "fs/fat",
    "fs/nls",
    "fs/overlayfs",
    "fs/isofs",
    "fs/autofs",
    "fs/fuse",
    "fs/efivarfs",
    "net/netfilter",
    "net/ipv4",
    "net/ipv6",
    "net/bridge",
    "net/8021q",
    "net/sched",
    "net/packet",
    "net/core",
    "net/key",
    "net/xfrm",
    "net/unix",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_round_trips() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("worker".parse::<Role>().is_err());
    }

    #[test]
    fn defaults_validate_and_bad_sizes_do_not() {
        let o = BuildOptions::new(Role::Agent, "/tmp/x");
        o.validate().unwrap();
        let mut bad = o.clone();
        bad.root_slot_size = 1000;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("root_slot_size")
        );
        let mut bad = o.clone();
        bad.extra_cmdline = vec!["roothash=00".into()];
        assert!(bad.validate().is_err());
    }

    #[test]
    fn cache_dir_honours_env_name() {
        // Only checks the fallback shape; the env var is process-global so it is not set here.
        let d = default_cache_dir();
        assert!(d.ends_with("nodeimg-cache") || std::env::var_os("BASALT_IMAGE_CACHE").is_some());
    }
}
