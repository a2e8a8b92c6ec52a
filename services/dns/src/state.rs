//! The typed subset of Mesos' `GET /master/state` JSON that Mesos-DNS reads.
//!
//! Every field is optional on the wire (serde defaults), unknown fields are ignored, so
//! any real `/master/state` document (Mesos 1.x or Basalt's master) decodes. Field
//! names are Mesos' JSON model (`src/common/http.cpp`): tasks carry `labels` as a flat
//! `[{key, value}]` list, while `discovery` is protobuf-JSON (`ports.ports[]`,
//! `labels.labels[]`).

use serde::{Deserialize, Serialize};

/// `GET /master/state` (the fields DNS needs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MasterState {
    /// The master answering (`master@10.0.0.1:5050`).
    pub pid: String,
    /// The answering master's hostname.
    pub hostname: String,
    /// The leader's pid (`master@10.0.0.1:5050`); empty while there is no leader.
    pub leader: String,
    /// The leader's MasterInfo (used when `leader` is empty).
    pub leader_info: Option<LeaderInfo>,
    /// Registered frameworks with their tasks.
    pub frameworks: Vec<Framework>,
    /// Registered agents.
    pub slaves: Vec<Slave>,
}

/// `leader_info` (a MasterInfo).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaderInfo {
    /// Master id.
    pub id: String,
    /// `master@ip:port`.
    pub pid: String,
    /// Port.
    pub port: u16,
    /// Hostname.
    pub hostname: String,
    /// `address{hostname, ip, port}`.
    pub address: Option<Address>,
}

/// An `Address`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    /// Hostname.
    pub hostname: String,
    /// IP literal.
    pub ip: String,
    /// Port.
    pub port: u16,
}

/// A framework.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Framework {
    /// Framework id.
    pub id: String,
    /// Framework name (`marathon`, `metronome`, ...).
    pub name: String,
    /// Scheduler pid (`scheduler-…@ip:port`), empty for HTTP schedulers.
    pub pid: String,
    /// The scheduler's hostname.
    pub hostname: String,
    /// Active tasks.
    pub tasks: Vec<Task>,
}

/// A task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// `TaskInfo.name` (Marathon: the app path reversed and dot-joined).
    pub name: String,
    /// Owning framework id.
    pub framework_id: String,
    /// Agent id.
    pub slave_id: String,
    /// `TASK_RUNNING`, ...
    pub state: String,
    /// Resources (only `ports` is read).
    pub resources: Resources,
    /// Status updates, in no guaranteed order.
    pub statuses: Vec<TaskStatus>,
    /// Task labels.
    pub labels: Vec<Label>,
    /// `DiscoveryInfo`.
    pub discovery: Option<DiscoveryInfo>,
}

/// A resources object; only `ports` (Mesos range syntax, `"[31000-31002, 31005-31005]"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Port ranges, e.g. `"[31000-31001]"`.
    pub ports: Option<String>,
}

/// A key/value label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Label {
    /// Key.
    pub key: String,
    /// Value (optional in Mesos).
    pub value: Option<String>,
}

/// A task status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskStatus {
    /// State of this update.
    pub state: String,
    /// Seconds since the epoch.
    pub timestamp: f64,
    /// Status labels (`Docker.NetworkSettings.IPAddress`, ...).
    pub labels: Vec<Label>,
    /// Container status with the network infos.
    pub container_status: Option<ContainerStatus>,
    /// Health check verdict (`TaskStatus.healthy`); absent without health checks.
    pub healthy: Option<bool>,
}

/// `ContainerStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerStatus {
    /// Network infos.
    pub network_infos: Vec<NetworkInfo>,
}

/// `NetworkInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkInfo {
    /// Addresses (Mesos >= 0.26).
    pub ip_addresses: Vec<IpAddress>,
    /// The single address of Mesos 0.25.
    pub ip_address: Option<String>,
}

/// `NetworkInfo.IPAddress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpAddress {
    /// `IPv4` / `IPv6`.
    pub protocol: Option<String>,
    /// The address.
    pub ip_address: Option<String>,
}

/// `DiscoveryInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscoveryInfo {
    /// `FRAMEWORK`, `CLUSTER`, `EXTERNAL`.
    pub visibility: Option<String>,
    /// Discovery name (Marathon: same as the task name).
    pub name: Option<String>,
    /// Ports.
    pub ports: Option<DiscoveryPorts>,
    /// Labels.
    pub labels: Option<Labels>,
}

/// `Ports` (protobuf JSON: `{"ports": [...]}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscoveryPorts {
    /// The ports.
    pub ports: Vec<DiscoveryPort>,
}

/// One discovery port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiscoveryPort {
    /// Port number (container port, or host port with `network-scope=host`).
    pub number: u32,
    /// Port name (`http`).
    pub name: Option<String>,
    /// `tcp` / `udp`.
    pub protocol: Option<String>,
    /// Port labels (`VIP_0`, `network-scope`).
    pub labels: Option<Labels>,
}

/// `Labels` (protobuf JSON: `{"labels": [...]}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Labels {
    /// The labels.
    pub labels: Vec<Label>,
}

/// An agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Slave {
    /// Agent id.
    pub id: String,
    /// `slave(1)@10.0.0.2:5051`.
    pub pid: String,
    /// Hostname.
    pub hostname: String,
    /// Attributes (name → text/number/range string).
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// Splits a libprocess pid `name@host:port` into `(host, port)`.
pub fn split_pid(pid: &str) -> Option<(&str, &str)> {
    let (_, addr) = pid.split_once('@')?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port.is_empty() {
        return None;
    }
    Some((host, port))
}

impl Task {
    /// Every port of the task's `ports` resource (Mesos range syntax), in order.
    pub fn resource_ports(&self) -> Vec<u16> {
        let Some(spec) = self.resources.ports.as_deref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for range in spec
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
        {
            let range = range.trim();
            if range.is_empty() {
                continue;
            }
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) else {
                continue;
            };
            // A corrupt range must not turn into 65,536 records.
            if hi < lo || hi - lo > 1024 {
                continue;
            }
            out.extend(lo..=hi);
        }
        out
    }

    /// The latest `TASK_RUNNING` status (statuses come in no guaranteed order).
    pub fn latest_running_status(&self) -> Option<&TaskStatus> {
        let mut best: Option<&TaskStatus> = None;
        for s in &self.statuses {
            if s.state == "TASK_RUNNING" && best.is_none_or(|b| s.timestamp > b.timestamp) {
                best = Some(s);
            }
        }
        best
    }

    /// `DiscoveryInfo.name` when present and non-empty (Mesos-DNS `HasDiscoveryInfo`).
    pub fn discovery_name(&self) -> Option<&str> {
        self.discovery
            .as_ref()
            .and_then(|d| d.name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// The discovery ports (empty without discovery info).
    pub fn discovery_ports(&self) -> &[DiscoveryPort] {
        self.discovery
            .as_ref()
            .and_then(|d| d.ports.as_ref())
            .map(|p| p.ports.as_slice())
            .unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_and_ports() {
        assert_eq!(
            split_pid("slave(1)@10.0.0.2:5051"),
            Some(("10.0.0.2", "5051"))
        );
        assert_eq!(split_pid("master@[::1]:5050"), Some(("::1", "5050")));
        assert_eq!(split_pid("nonsense"), None);
        let t = Task {
            resources: Resources {
                ports: Some("[31000-31002, 31005-31005]".into()),
            },
            ..Task::default()
        };
        assert_eq!(t.resource_ports(), vec![31000, 31001, 31002, 31005]);
        let bad = Task {
            resources: Resources {
                ports: Some("[1-65535, x-3, 9-7]".into()),
            },
            ..Task::default()
        };
        assert!(bad.resource_ports().is_empty());
    }

    #[test]
    fn tolerant_decoding() {
        let s: MasterState = serde_json::from_str(
            r#"{"leader":"master@10.0.0.1:5050","unknown":[1,2],"slaves":[{"id":"S1","attributes":{"rack":"a","n":3}}],
                "frameworks":[{"name":"marathon","tasks":[{"id":"t","discovery":{"name":"x","ports":{"ports":[{"number":80}]}}}]}]}"#,
        )
        .unwrap();
        assert_eq!(s.slaves[0].attributes["n"], 3);
        assert_eq!(s.frameworks[0].tasks[0].discovery_ports()[0].number, 80);
    }
}
