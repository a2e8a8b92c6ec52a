//! Resource usage of a container, as Mesos' `ResourceStatistics` (the objects of the
//! agent's `/monitor/statistics`), and Mesos' byte formatting.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Mesos `ResourceStatistics` (the fields the cgroup isolators fill). Absent values are
/// left out of the JSON, like unset proto fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceStatistics {
    /// Seconds since the epoch when sampled.
    pub timestamp: f64,
    /// Number of processes in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u32>,
    /// User CPU time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_user_time_secs: Option<f64>,
    /// System CPU time, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_system_time_secs: Option<f64>,
    /// The task's `cpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_limit: Option<f64>,
    /// CFS periods elapsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_nr_periods: Option<u64>,
    /// CFS periods throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_nr_throttled: Option<u64>,
    /// Time throttled, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_throttled_time_secs: Option<f64>,
    /// Memory in use (cgroup usage), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<u64>,
    /// Hard limit, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit_bytes: Option<u64>,
    /// Soft limit, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_soft_limit_bytes: Option<u64>,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_rss_bytes: Option<u64>,
    /// Page cache (v1 `total_cache`, v2 `file`), bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_cache_bytes: Option<u64>,
}

/// Bytes printed like Mesos' `Bytes`: the largest of B, KB, MB, GB, TB that loses
/// nothing (`33554432` → `32MB`, `1536` → `1536B`), as in its OOM messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MesosBytes(pub u64);

impl fmt::Display for MesosBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        const UNITS: [(&str, u64); 4] = [
            ("TB", 1 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("KB", 1 << 10),
        ];
        if b != 0 {
            for (name, size) in UNITS {
                if b.is_multiple_of(size) {
                    return write!(f, "{}{name}", b / size);
                }
            }
        }
        write!(f, "{b}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesos_bytes() {
        assert_eq!(MesosBytes(0).to_string(), "0B");
        assert_eq!(MesosBytes(1000).to_string(), "1000B");
        assert_eq!(MesosBytes(1024).to_string(), "1KB");
        assert_eq!(MesosBytes(1536).to_string(), "1536B");
        assert_eq!(MesosBytes(32 << 20).to_string(), "32MB");
        assert_eq!(MesosBytes(3 << 30).to_string(), "3GB");
        assert_eq!(MesosBytes((32 << 20) + 4096).to_string(), "32772KB");
    }

    #[test]
    fn statistics_json_uses_mesos_names() {
        let s = ResourceStatistics {
            timestamp: 1.5,
            mem_limit_bytes: Some(33554432),
            cpus_limit: Some(0.5),
            ..Default::default()
        };
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"timestamp":1.5,"mem_limit_bytes":33554432u64,"cpus_limit":0.5})
        );
    }
}
