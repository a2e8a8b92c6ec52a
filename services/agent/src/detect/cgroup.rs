//! Limits the cgroup of this process imposes: CPU quota, cpuset and memory limit.
//!
//! The process's cgroups come from `/proc/self/cgroup` (`id:controllers:path`; cgroup v2
//! is the line `0::/path`). Each is located on disk through the mount table: a v1
//! hierarchy is the `cgroup` mount whose super options name the controller, v2 is the
//! `cgroup2` mount; the directory is the mount point joined with the cgroup path minus
//! the mount's root (so a container that sees `/docker/<id>` mounted as its
//! `/sys/fs/cgroup/cpu` finds its files at the mount point). Both v1 and v2 are read
//! where present (hybrid hosts such as this CI machine have both) and the tightest limit
//! wins.
//!
//! Quota and memory limits are read in the process's cgroup *and every ancestor up to the
//! mount point*, because systemd usually sets them on a slice above the service; cpusets
//! come from the nearest cgroup that has an effective list (the kernel already folds in
//! the ancestors there).
//!
//! | what | v2 file | v1 file |
//! |---|---|---|
//! | CPU quota | `cpu.max` (`max 100000` / `200000 100000`) | `cpu.cfs_quota_us` (-1 = none) / `cpu.cfs_period_us` |
//! | cpuset | `cpuset.cpus.effective` | `cpuset.effective_cpus` (else `cpuset.cpus`) |
//! | memory | `memory.max` (`max` / bytes) | `memory.limit_in_bytes` |

use std::path::{Path, PathBuf};

use super::cpu::parse_cpu_list;
use super::mountinfo::Mount;
use super::{DetectError, SystemRoot};

/// The logical path of this process's cgroup membership.
pub const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";

/// What confines this process. `None` means no limit found.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupLimits {
    /// CPU bandwidth quota in CPUs (quota / period), the smallest over the hierarchy.
    pub cpu_quota: Option<f64>,
    /// Number of CPUs in the effective cpuset.
    pub cpuset_cpus: Option<u32>,
    /// Memory limit in bytes, the smallest over the hierarchy.
    pub memory_limit_bytes: Option<u64>,
}

#[derive(Debug)]
struct Membership {
    controllers: Vec<String>,
    path: PathBuf,
}

/// Where one hierarchy of this process lives on disk.
#[derive(Debug, Clone)]
struct CgroupDir {
    mount_point: PathBuf,
    dir: PathBuf,
}

impl CgroupDir {
    /// The process's cgroup dir, then its parents up to and including the mount point.
    fn ancestors(&self) -> impl Iterator<Item = &Path> {
        self.dir
            .ancestors()
            .take_while(|p| p.starts_with(&self.mount_point))
    }
}

/// Reads the limits of this process's cgroups under `root`.
pub fn read_limits(root: &SystemRoot, mounts: &[Mount]) -> Result<CgroupLimits, DetectError> {
    let Some(text) = root.read_optional(PROC_SELF_CGROUP)? else {
        tracing::debug!(path = %root.path(PROC_SELF_CGROUP).display(), "no cgroup membership file; assuming no cgroup limits");
        return Ok(CgroupLimits::default());
    };
    let members = parse_membership(&text, &root.path(PROC_SELF_CGROUP))?;

    let v2 = locate_v2(&members, mounts);
    let v1 = |controller: &str| locate_v1(&members, mounts, controller);

    let mut limits = CgroupLimits::default();

    // CPU quota.
    let mut quotas = Vec::new();
    if let Some(cg) = &v2 {
        for dir in cg.ancestors() {
            let file = dir.join("cpu.max");
            if let Some(q) = read_cpu_max(root, &file)? {
                quotas.push(q);
            }
        }
    }
    if let Some(cg) = v1("cpu") {
        for dir in cg.ancestors() {
            if let Some(q) = read_cfs(root, dir)? {
                quotas.push(q);
            }
        }
    }
    limits.cpu_quota = quotas.into_iter().reduce(f64::min);

    // cpuset.
    let mut cpusets = Vec::new();
    if let Some(cg) = &v2
        && let Some(n) = nearest_cpuset(root, cg, &["cpuset.cpus.effective"])?
    {
        cpusets.push(n);
    }
    if let Some(cg) = v1("cpuset")
        && let Some(n) = nearest_cpuset(root, &cg, &["cpuset.effective_cpus", "cpuset.cpus"])?
    {
        cpusets.push(n);
    }
    limits.cpuset_cpus = cpusets.into_iter().min();

    // Memory.
    let mut mems = Vec::new();
    if let Some(cg) = &v2 {
        for dir in cg.ancestors() {
            if let Some(b) = read_bytes_limit(root, &dir.join("memory.max"))? {
                mems.push(b);
            }
        }
    }
    if let Some(cg) = v1("memory") {
        for dir in cg.ancestors() {
            if let Some(b) = read_bytes_limit(root, &dir.join("memory.limit_in_bytes"))? {
                mems.push(b);
            }
        }
    }
    limits.memory_limit_bytes = mems.into_iter().min();

    tracing::debug!(?limits, v2 = ?v2.as_ref().map(|c| &c.dir), "cgroup limits");
    Ok(limits)
}

fn parse_membership(text: &str, path: &Path) -> Result<Vec<Membership>, DetectError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrl), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DetectError::parse(
                path,
                i + 1,
                format!("expected `id:controllers:path`, got {line:?}"),
            ));
        };
        if !p.starts_with('/') {
            return Err(DetectError::parse(
                path,
                i + 1,
                format!("cgroup path {p:?} is not absolute"),
            ));
        }
        out.push(Membership {
            controllers: if ctrl.is_empty() {
                Vec::new()
            } else {
                ctrl.split(',').map(str::to_owned).collect()
            },
            path: PathBuf::from(p),
        });
    }
    Ok(out)
}

fn place(mount: &Mount, cgroup_path: &Path) -> CgroupDir {
    let rel = match cgroup_path.strip_prefix(&mount.root) {
        Ok(rel) => rel.to_path_buf(),
        Err(_) => {
            // Typical of a cgroup namespace whose root is not the mount's root; the files
            // we can see are those at the mount point.
            tracing::debug!(cgroup = %cgroup_path.display(), mount_root = %mount.root.display(), "cgroup path outside its mount; using the mount point");
            PathBuf::new()
        }
    };
    CgroupDir {
        mount_point: mount.mount_point.clone(),
        dir: mount.mount_point.join(rel),
    }
}

fn locate_v2(members: &[Membership], mounts: &[Mount]) -> Option<CgroupDir> {
    let m = members.iter().find(|m| m.controllers.is_empty())?;
    let mount = mounts.iter().rev().find(|mt| mt.fs_type == "cgroup2")?;
    Some(place(mount, &m.path))
}

fn locate_v1(members: &[Membership], mounts: &[Mount], controller: &str) -> Option<CgroupDir> {
    let m = members
        .iter()
        .find(|m| m.controllers.iter().any(|c| c == controller))?;
    let mount = mounts
        .iter()
        .rev()
        .find(|mt| mt.fs_type == "cgroup" && mt.super_options.iter().any(|o| o == controller))?;
    Some(place(mount, &m.path))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}

/// `cpu.max`: `max PERIOD` (no quota) or `QUOTA PERIOD`.
fn read_cpu_max(root: &SystemRoot, file: &Path) -> Result<Option<f64>, DetectError> {
    let Some(text) = root.read_optional(file)? else {
        return Ok(None);
    };
    let err = |r: String| DetectError::parse(root.path(file), 1, r);
    let line = first_line(&text);
    let mut it = line.split_whitespace();
    let (Some(q), Some(p), None) = (it.next(), it.next(), it.next()) else {
        return Err(err(format!(
            "expected `QUOTA PERIOD` or `max PERIOD`, got {line:?}"
        )));
    };
    let period: u64 = p
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| err(format!("bad period {p:?}")))?;
    if q == "max" {
        return Ok(None);
    }
    let quota: u64 = q.parse().map_err(|_| err(format!("bad quota {q:?}")))?;
    Ok(Some(quota as f64 / period as f64))
}

/// v1 `cpu.cfs_quota_us` (-1 = none) over `cpu.cfs_period_us`.
fn read_cfs(root: &SystemRoot, dir: &Path) -> Result<Option<f64>, DetectError> {
    let qf = dir.join("cpu.cfs_quota_us");
    let Some(qt) = root.read_optional(&qf)? else {
        return Ok(None);
    };
    let q = first_line(&qt);
    let quota: i64 = q
        .parse()
        .map_err(|_| DetectError::parse(root.path(&qf), 1, format!("bad quota {q:?}")))?;
    if quota < 0 {
        return Ok(None);
    }
    let pf = dir.join("cpu.cfs_period_us");
    let pt = root.read_to_string(&pf)?;
    let p = first_line(&pt);
    let period: u64 = p
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| DetectError::parse(root.path(&pf), 1, format!("bad period {p:?}")))?;
    Ok(Some(quota as f64 / period as f64))
}

fn nearest_cpuset(
    root: &SystemRoot,
    cg: &CgroupDir,
    names: &[&str],
) -> Result<Option<u32>, DetectError> {
    for dir in cg.ancestors() {
        for name in names {
            let file = dir.join(name);
            if let Some(text) = root.read_optional(&file)? {
                if text.trim().is_empty() {
                    continue;
                }
                return parse_cpu_list(&text, &root.path(&file)).map(Some);
            }
        }
    }
    Ok(None)
}

/// `memory.max` (`max` or bytes) / `memory.limit_in_bytes` (bytes; "unlimited" is a huge
/// page-aligned number, which the caller's `min` with MemTotal absorbs).
fn read_bytes_limit(root: &SystemRoot, file: &Path) -> Result<Option<u64>, DetectError> {
    let Some(text) = root.read_optional(file)? else {
        return Ok(None);
    };
    let v = first_line(&text);
    if v == "max" {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        DetectError::parse(
            root.path(file),
            1,
            format!("expected bytes or `max`, got {v:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_parses_v1_v2_and_names_bad_lines() {
        let m = parse_membership("4:cpu,cpuacct:/docker/abc\n0::/\n", Path::new("c")).unwrap();
        assert_eq!(m[0].controllers, vec!["cpu", "cpuacct"]);
        assert!(m[1].controllers.is_empty());
        let err = parse_membership("0::/\ngarbage\n", Path::new("/fx/cgroup")).unwrap_err();
        assert!(
            err.to_string().starts_with("parsing /fx/cgroup line 2"),
            "{err}"
        );
        assert!(parse_membership("1:cpu:relative\n", Path::new("c")).is_err());
    }

    #[test]
    fn place_strips_mount_root() {
        let mount = Mount {
            major: 0,
            minor: 30,
            root: PathBuf::from("/docker/abc"),
            mount_point: PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
            fs_type: "cgroup".into(),
            source: "cgroup".into(),
            super_options: vec!["rw".into(), "cpu".into(), "cpuacct".into()],
        };
        let cg = place(&mount, Path::new("/docker/abc"));
        assert_eq!(cg.dir, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        let cg = place(&mount, Path::new("/docker/abc/child"));
        let anc: Vec<_> = cg.ancestors().collect();
        assert_eq!(
            anc,
            vec![
                Path::new("/sys/fs/cgroup/cpu,cpuacct/child"),
                Path::new("/sys/fs/cgroup/cpu,cpuacct")
            ]
        );
    }

    #[test]
    fn bad_limit_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpu.max"), "lots 100000\n").unwrap();
        std::fs::write(dir.path().join("memory.max"), "12k\n").unwrap();
        let root = SystemRoot::new(dir.path());
        let err = read_cpu_max(&root, Path::new("/cpu.max")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cpu.max line 1: bad quota \"lots\""),
            "{err}"
        );
        let err = read_bytes_limit(&root, Path::new("/memory.max")).unwrap_err();
        assert!(err.to_string().contains("memory.max line 1"), "{err}");
        std::fs::write(dir.path().join("cpu.max"), "max 100000\n").unwrap();
        assert_eq!(read_cpu_max(&root, Path::new("/cpu.max")).unwrap(), None);
        std::fs::write(dir.path().join("cpu.max"), "50000 100000\n").unwrap();
        assert_eq!(
            read_cpu_max(&root, Path::new("/cpu.max")).unwrap(),
            Some(0.5)
        );
    }
}
