//! CPUs: the online CPUs of the machine, narrowed by this process's cgroup.
//!
//! `cpus = min(online, effective cpuset, quota / period)`, floored to Mesos' scalar
//! precision (3 decimals; never below 0.001). A quota of `150000 100000` therefore
//! advertises `1.5` CPUs, like the share a container runtime would give.

use std::path::Path;

use super::cgroup::CgroupLimits;
use super::{DetectError, SystemRoot};

/// The logical path of the online CPU list.
pub const CPU_ONLINE: &str = "/sys/devices/system/cpu/online";

/// Counts CPUs in a kernel CPU list (`0-3,8,10-11`), as in `online` and the cpuset files.
pub fn parse_cpu_list(text: &str, path: &Path) -> Result<u32, DetectError> {
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(DetectError::parse(path, 1, "empty CPU list"));
    }
    let mut count = 0u32;
    for part in line.split(',') {
        let bad = || {
            DetectError::parse(
                path,
                1,
                format!("bad CPU list element {part:?} in {line:?}"),
            )
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a.trim().parse().map_err(|_| bad())?;
        let b: u32 = b.trim().parse().map_err(|_| bad())?;
        if b < a {
            return Err(bad());
        }
        count = count.saturating_add(b - a + 1);
    }
    Ok(count)
}

/// Number of online CPUs.
pub fn online_cpus(root: &SystemRoot) -> Result<u32, DetectError> {
    let text = root.read_to_string(CPU_ONLINE)?;
    parse_cpu_list(&text, &root.path(CPU_ONLINE))
}

/// CPUs to advertise given the online count and the cgroup limits.
pub fn effective_cpus(online: u32, limits: &CgroupLimits) -> f64 {
    let mut cpus = f64::from(online);
    if let Some(n) = limits.cpuset_cpus {
        cpus = cpus.min(f64::from(n));
    }
    if let Some(q) = limits.cpu_quota {
        cpus = cpus.min(q);
    }
    ((cpus * 1000.0).floor() / 1000.0).max(0.001)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        let p = Path::new("online");
        assert_eq!(parse_cpu_list("0-7\n", p).unwrap(), 8);
        assert_eq!(parse_cpu_list("0\n", p).unwrap(), 1);
        assert_eq!(parse_cpu_list("0-3,8,10-11\n", p).unwrap(), 7);
        for bad in ["", "\n", "a-b", "3-1", "0-3,,5", "1-"] {
            let err = parse_cpu_list(bad, Path::new("/fx/online")).unwrap_err();
            assert!(
                err.to_string().starts_with("parsing /fx/online line 1"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn limits_narrow_the_count() {
        let none = CgroupLimits::default();
        assert_eq!(effective_cpus(8, &none), 8.0);
        let quota = CgroupLimits {
            cpu_quota: Some(2.0),
            ..none
        };
        assert_eq!(effective_cpus(16, &quota), 2.0);
        let both = CgroupLimits {
            cpu_quota: Some(3.0),
            cpuset_cpus: Some(2),
            ..none
        };
        assert_eq!(effective_cpus(16, &both), 2.0);
        let frac = CgroupLimits {
            cpu_quota: Some(1.23456),
            ..none
        };
        assert_eq!(effective_cpus(16, &frac), 1.234);
        let tiny = CgroupLimits {
            cpu_quota: Some(0.0001),
            ..none
        };
        assert_eq!(effective_cpus(16, &tiny), 0.001);
    }
}
