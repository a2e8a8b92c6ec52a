//! Memory: `MemTotal` from `/proc/meminfo`, capped by the cgroup memory limit, minus a
//! reserve for the agent, the OS and everything else on the node.
//!
//! Mesos' own rule is kept for small machines: with `base = min(MemTotal, cgroup limit)`,
//! the agent advertises `base - reserve` when `base >= 2 * reserve`, otherwise `base / 2`
//! (so a 1.5 GiB VM still offers something and keeps half for itself). The reserve
//! defaults to 1 GiB (Mesos' and DC/OS' default).

use super::{DetectError, SystemRoot};

/// The logical path of the memory summary.
pub const MEMINFO: &str = "/proc/meminfo";

/// Bytes in a MiB.
pub const MIB: u64 = 1024 * 1024;

/// `MemTotal` in bytes.
pub fn mem_total_bytes(root: &SystemRoot) -> Result<u64, DetectError> {
    let text = root.read_to_string(MEMINFO)?;
    let path = root.path(MEMINFO);
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("MemTotal:") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(n), Some("kB"), None) = (it.next(), it.next(), it.next()) else {
            return Err(DetectError::parse(
                &path,
                i + 1,
                format!("expected `MemTotal: N kB`, got {line:?}"),
            ));
        };
        let kb: u64 = n
            .parse()
            .map_err(|_| DetectError::parse(&path, i + 1, format!("bad number {n:?}")))?;
        if kb == 0 {
            return Err(DetectError::parse(&path, i + 1, "MemTotal is 0"));
        }
        return Ok(kb.saturating_mul(1024));
    }
    Err(DetectError::parse(
        &path,
        text.lines().count().max(1),
        "no MemTotal line",
    ))
}

/// MiB of memory to advertise.
pub fn advertised_mem_mib(
    mem_total_bytes: u64,
    cgroup_limit_bytes: Option<u64>,
    reserve_mib: u64,
) -> u64 {
    let base = cgroup_limit_bytes.map_or(mem_total_bytes, |l| l.min(mem_total_bytes));
    let reserve = reserve_mib.saturating_mul(MIB);
    let usable = if base >= reserve.saturating_mul(2) {
        base - reserve
    } else {
        base / 2
    };
    usable / MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn reserve_rules() {
        assert_eq!(advertised_mem_mib(16 * GIB, None, 1024), 15 * 1024);
        assert_eq!(advertised_mem_mib(16 * GIB, Some(4 * GIB), 1024), 3 * 1024);
        // The v1 "unlimited" value does not raise anything.
        assert_eq!(
            advertised_mem_mib(16 * GIB, Some(9_223_372_036_854_771_712), 1024),
            15 * 1024
        );
        // Small machine: half.
        assert_eq!(advertised_mem_mib(GIB + GIB / 2, None, 1024), 768);
        assert_eq!(advertised_mem_mib(8 * GIB, None, 0), 8 * 1024);
    }

    #[test]
    fn meminfo_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        let root = SystemRoot::new(dir.path());
        std::fs::write(dir.path().join("proc/meminfo"), "MemFree: 1 kB\n").unwrap();
        let err = mem_total_bytes(&root).unwrap_err();
        assert!(
            err.to_string()
                .contains("proc/meminfo line 1: no MemTotal line"),
            "{err}"
        );
        std::fs::write(dir.path().join("proc/meminfo"), "MemTotal:  12 MB\n").unwrap();
        assert!(mem_total_bytes(&root).is_err());
        std::fs::write(
            dir.path().join("proc/meminfo"),
            "MemTotal:       24684084 kB\n",
        )
        .unwrap();
        assert_eq!(mem_total_bytes(&root).unwrap(), 24_684_084 * 1024);
    }
}
