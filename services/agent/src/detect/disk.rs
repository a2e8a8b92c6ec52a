//! Disks: the ROOT disk (the work dir's file system), MOUNT disks (file systems mounted
//! at a pattern, default `/dcos/volume*`), and whether each sits on an SSD or an HDD.
//!
//! Sizes follow DC/OS' `make_disk_resources.py` (dcos/dcos `packages/mesos/extra`): the
//! space *available* on the file system (`f_bavail`, what `psutil` calls free) minus a
//! reserve of 100 MiB, for the ROOT disk and for every MOUNT disk alike; a disk with no
//! space left after the reserve is an error, as it was there. (Plain Mesos would use the
//! file system size minus 5 GiB; DC/OS replaced that.) Both reserves are configurable.
//!
//! Disk type: the mount's `major:minor` (from mountinfo) is looked up in
//! `/sys/dev/block/<maj:min>/uevent` for `DEVNAME`; a whole disk has
//! `/sys/block/<DEVNAME>/queue/rotational`, a partition is found as the child directory
//! `/sys/block/<disk>/<DEVNAME>` and takes its disk's value. `rotational` 0 is `ssd`,
//! 1 is `hdd`. When the device is not a block device (tmpfs, overlay, btrfs subvolumes
//! report major 0) the source path's basename (`/dev/sdb1` → `sdb1`) is tried; when that
//! fails too the type is unknown and no attribute is advertised for it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::memory::MIB;
use super::mountinfo::Mount;
use super::{DetectError, FsStats, SystemRoot};

/// Solid-state or spinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskType {
    /// `rotational` = 0.
    Ssd,
    /// `rotational` = 1.
    Hdd,
}

impl DiskType {
    /// `ssd` / `hdd`, the attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskType::Ssd => "ssd",
            DiskType::Hdd => "hdd",
        }
    }
}

impl std::fmt::Display for DiskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The work dir's disk: advertised as a plain `disk` resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootDisk {
    /// The agent work dir.
    pub path: PathBuf,
    /// MiB advertised (available − reserve, at first detection).
    pub size_mib: u64,
    /// Size of the whole file system, MiB (compared for drift; free space is not).
    pub fs_total_mib: u64,
    /// Block device name (`nvme0n1p2`), when it is one.
    pub device: Option<String>,
    /// SSD or HDD, when known.
    pub disk_type: Option<DiskType>,
}

/// A file system mounted at the MOUNT pattern: advertised as a `disk` resource with
/// `disk.source = {type: MOUNT, mount: {root}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountDisk {
    /// The mount point, e.g. `/dcos/volume0`.
    pub root: PathBuf,
    /// MiB advertised (available − reserve, at first detection).
    pub size_mib: u64,
    /// Size of the whole file system, MiB.
    pub fs_total_mib: u64,
    /// Block device name (`sdb1`), when it is one.
    pub device: Option<String>,
    /// SSD or HDD, when known.
    pub disk_type: Option<DiskType>,
}

/// Size to advertise for a path: available − reserve, in MiB; the file system's total.
pub fn sized(fs: &dyn FsStats, path: &Path, reserve_mib: u64) -> Result<(u64, u64), DetectError> {
    let usage = fs.usage(path).map_err(|source| DetectError::Statvfs {
        path: path.to_path_buf(),
        source,
    })?;
    let available_mib = usage.available_bytes / MIB;
    if available_mib <= reserve_mib {
        return Err(DetectError::DiskTooSmall {
            path: path.to_path_buf(),
            available_mib,
            reserve_mib,
        });
    }
    Ok((available_mib - reserve_mib, usage.total_bytes / MIB))
}

/// Mounts whose mount point matches `pattern`, one per mount point (the topmost), sorted
/// by mount point.
pub fn matching_mounts<'a>(mounts: &'a [Mount], pattern: &str) -> Vec<&'a Mount> {
    let mut out: Vec<&Mount> = Vec::new();
    for m in mounts {
        let Some(mp) = m.mount_point.to_str() else {
            continue;
        };
        if !glob_match(pattern, mp) {
            continue;
        }
        if let Some(slot) = out.iter_mut().find(|o| o.mount_point == m.mount_point) {
            *slot = m;
        } else {
            out.push(m);
        }
    }
    out.sort_by(|a, b| natural_cmp(&a.mount_point, &b.mount_point));
    out
}

/// Orders `/dcos/volume2` before `/dcos/volume10`.
fn natural_cmp(a: &Path, b: &Path) -> std::cmp::Ordering {
    fn key(p: &Path) -> (String, u64) {
        let s = p.to_string_lossy();
        let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, tail) = s.split_at(s.len() - digits);
        (head.to_owned(), tail.parse().unwrap_or(0))
    }
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

/// Shell-style match of a whole path: `*` is any run of characters but `/`, `?` one
/// character but `/`, everything else literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == t[ti] && p[pi] != '*' || p[pi] == '?' && t[ti] != '/') {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            if t[st] == '/' {
                return false;
            }
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The block device name and SSD/HDD type of a mount.
pub fn device_and_type(
    root: &SystemRoot,
    mount: &Mount,
) -> Result<(Option<String>, Option<DiskType>), DetectError> {
    let mut name = None;
    if mount.major != 0 {
        let uevent = format!("/sys/dev/block/{}:{}/uevent", mount.major, mount.minor);
        if let Some(text) = root.read_optional(&uevent)? {
            name = text
                .lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|s| s.trim().to_owned());
            if name.is_none() {
                return Err(DetectError::parse(
                    root.path(&uevent),
                    1,
                    "no DEVNAME= line",
                ));
            }
        }
    }
    if name.is_none() {
        name = mount
            .source
            .strip_prefix("/dev/")
            .and_then(|s| s.rsplit('/').next())
            .filter(|s| !s.is_empty() && root.exists(format!("/sys/class/block/{s}")))
            .map(str::to_owned);
    }
    let Some(name) = name else {
        tracing::debug!(mount = %mount.mount_point.display(), source = %mount.source, "not a block device; disk type unknown");
        return Ok((None, None));
    };
    let disk_type = rotational(root, &name)?;
    Ok((Some(name), disk_type))
}

/// `rotational` of a whole disk, or of the disk holding a partition.
fn rotational(root: &SystemRoot, dev: &str) -> Result<Option<DiskType>, DetectError> {
    let mut file = format!("/sys/block/{dev}/queue/rotational");
    if !root.exists(&file) {
        let parent = root
            .list_dir("/sys/block")?
            .into_iter()
            .find(|disk| root.exists(format!("/sys/block/{disk}/{dev}/partition")));
        let Some(parent) = parent else {
            tracing::debug!(
                device = dev,
                "no /sys/block entry for device or its disk; disk type unknown"
            );
            return Ok(None);
        };
        file = format!("/sys/block/{parent}/queue/rotational");
    }
    let Some(text) = root.read_optional(&file)? else {
        return Ok(None);
    };
    match text.trim() {
        "0" => Ok(Some(DiskType::Ssd)),
        "1" => Ok(Some(DiskType::Hdd)),
        other => Err(DetectError::parse(
            root.path(&file),
            1,
            format!("expected 0 or 1, got {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("/dcos/volume*", "/dcos/volume0"));
        assert!(glob_match("/dcos/volume*", "/dcos/volume12"));
        assert!(glob_match("/dcos/volume*", "/dcos/volume"));
        assert!(!glob_match("/dcos/volume*", "/dcos/volume0/sub"));
        assert!(!glob_match("/dcos/volume*", "/dcos/other"));
        assert!(glob_match("/mnt/*/data", "/mnt/ssd1/data"));
        assert!(!glob_match("/mnt/*/data", "/mnt/a/b/data"));
        assert!(glob_match("/mnt/disk?", "/mnt/disk3"));
        assert!(!glob_match("/mnt/disk?", "/mnt/disk33"));
        assert!(glob_match("/exact", "/exact"));
        assert!(!glob_match("/exact", "/exactly"));
    }

    #[test]
    fn natural_order() {
        let mut v = [
            PathBuf::from("/dcos/volume10"),
            PathBuf::from("/dcos/volume2"),
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v[0], PathBuf::from("/dcos/volume2"));
    }
}
