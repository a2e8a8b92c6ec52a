//! VIP labels and backends from a `/master/state` ([`basalt_dns::MasterState`]).
//!
//! A VIP is declared by a discovery-port label whose key starts with `VIP`/`vip`
//! (`VIP_0` = `/name:port` named, `ip:port` IP VIP; split on the last `:`), or by the
//! legacy task label `VIP_PORT<i>` = `tcp://name:port` bound to the i-th `ports` value.
//! Unlike `basalt_dns::named_vips` (which silently skips what it cannot name), every
//! malformed label is reported as a [`LabelError`] naming the task, the label and its
//! value; the rest of the state still applies.
//!
//! Backends: tasks in `TASK_RUNNING` whose latest status does not say `healthy: false`
//! (`TASK_KILLING` tasks are dcos-net's weight-0 backends: they keep their VIP, hence its
//! address, alive but get no new connection). Address: agent IP : port when the port
//! label `network-scope` is `host` (or when the task reports no container IP), else each
//! container IP of the latest running status : port.

use basalt_dns::state::{MasterState, Slave, Task, split_pid};
use basalt_dns::vip_key;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A VIP's transport protocol (DiscoveryInfo port `protocol`, `tcp` by default).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// What a VIP label names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VipTarget {
    /// A named VIP: `key` is `basalt_dns::vip_key(name, framework)`, the allocator key
    /// and the key of the map `basalt_dns` takes.
    Named {
        /// `"<name>.<framework>"`, sanitised.
        key: String,
    },
    /// An IP VIP, used verbatim.
    Ip(IpAddr),
}

/// One VIP: target, port and protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipId {
    /// Named or IP.
    pub target: VipTarget,
    /// The VIP port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl fmt::Display for VipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            VipTarget::Named { key } => write!(f, "{key}:{}/{}", self.port, self.protocol),
            VipTarget::Ip(ip) => write!(f, "{}/{}", SocketAddr::new(*ip, self.port), self.protocol),
        }
    }
}

/// What is wrong with a VIP label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelProblem {
    /// No `:port` part.
    #[error("no port (expected `/name:port` or `ip:port`)")]
    MissingPort,
    /// The port is not an integer in 1..=65535.
    #[error("port {0:?} is out of range (1-65535)")]
    PortOutOfRange(String),
    /// The name is empty or sanitises to nothing.
    #[error("the name {0:?} makes no DNS name")]
    BadName(String),
    /// The label has no value.
    #[error("the label has no value")]
    NoValue,
    /// A protocol other than tcp/udp.
    #[error("unknown protocol {0:?} (tcp or udp)")]
    Protocol(String),
    /// A legacy `VIP_PORT<i>` whose index has no `ports` resource value.
    #[error("no ports resource value at index {0}")]
    NoResourcePort(String),
}

/// A malformed VIP label of a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task {task}: VIP label {label}={value:?}: {problem}")]
pub struct LabelError {
    /// The task id.
    pub task: String,
    /// The label key (`VIP_0`).
    pub label: String,
    /// The label value.
    pub value: String,
    /// What is wrong.
    pub problem: LabelProblem,
}

/// What a state asks for: every VIP with its healthy backends (possibly none: the VIP
/// still exists while a running or killing task declares it) and the bad labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// VIP → backends that may take new connections.
    pub vips: BTreeMap<VipId, BTreeSet<SocketAddr>>,
    /// Malformed labels, in state order.
    pub errors: Vec<LabelError>,
}

fn parse_protocol(p: Option<&str>) -> Result<Protocol, LabelProblem> {
    match p.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("tcp") => Ok(Protocol::Tcp),
        Some("udp") => Ok(Protocol::Udp),
        Some(other) => Err(LabelProblem::Protocol(other.to_string())),
    }
}

/// Parses a label value `name:port` / `ip:port` (split on the last `:`).
pub fn parse_vip_value(value: &str, framework: &str) -> Result<(VipTarget, u16), LabelProblem> {
    let Some((name, port)) = value.rsplit_once(':') else {
        return Err(LabelProblem::MissingPort);
    };
    let port_str = port.trim();
    if port_str.is_empty() {
        return Err(LabelProblem::MissingPort);
    }
    let port = match port_str.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        _ => return Err(LabelProblem::PortOutOfRange(port_str.to_string())),
    };
    let bare = name.trim_matches(['[', ']']);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((VipTarget::Ip(ip), port));
    }
    let key = vip_key(name, framework);
    if name.is_empty() || key.starts_with('.') || key.ends_with('.') {
        return Err(LabelProblem::BadName(name.to_string()));
    }
    Ok((VipTarget::Named { key }, port))
}

fn agent_ips(state: &MasterState) -> HashMap<&str, IpAddr> {
    state
        .slaves
        .iter()
        .filter_map(|s: &Slave| {
            let (host, _) = split_pid(&s.pid)?;
            Some((s.id.as_str(), host.parse().ok()?))
        })
        .collect()
}

/// The container IPs of the task's latest running status.
fn container_ips(task: &Task) -> Vec<IpAddr> {
    let Some(status) = task.latest_running_status() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ni in status
        .container_status
        .iter()
        .flat_map(|c| c.network_infos.iter())
    {
        for a in &ni.ip_addresses {
            if let Some(ip) = a.ip_address.as_deref().and_then(|s| s.parse().ok()) {
                out.push(ip);
            }
        }
        if let Some(ip) = ni.ip_address.as_deref().and_then(|s| s.parse().ok()) {
            out.push(ip);
        }
    }
    out
}

/// Whether the task may take new connections: running, and its latest status does not
/// say unhealthy. A running task takes new connections unless its latest status says its health
/// check fails (tasks without health checks have no verdict and count as healthy).
fn takes_new_connections(task: &Task) -> bool {
    let latest_health = task
        .statuses
        .iter()
        .max_by(|a, b| a.timestamp.total_cmp(&b.timestamp))
        .and_then(|s| s.healthy);
    task.state == "TASK_RUNNING" && latest_health != Some(false)
}

/// VIPs and backends of `state` (module docs).
pub fn desired(state: &MasterState) -> Desired {
    let agents = agent_ips(state);
    let mut out = Desired::default();
    for fw in &state.frameworks {
        for task in &fw.tasks {
            if task.state != "TASK_RUNNING" && task.state != "TASK_KILLING" {
                continue;
            }
            let agent_ip = agents.get(task.slave_id.as_str()).copied();
            let cips = container_ips(task);
            let live = takes_new_connections(task);
            let mut report = |label: &str, value: &str, problem: LabelProblem| {
                out.errors.push(LabelError {
                    task: task.id.clone(),
                    label: label.to_string(),
                    value: value.to_string(),
                    problem,
                });
            };
            let mut found: Vec<(VipId, Vec<SocketAddr>)> = Vec::new();
            for dp in task.discovery_ports() {
                let labels = dp.labels.iter().flat_map(|l| l.labels.iter());
                let host_scope = dp
                    .labels
                    .iter()
                    .flat_map(|l| l.labels.iter())
                    .any(|l| l.key == "network-scope" && l.value.as_deref() == Some("host"));
                for l in labels {
                    if !(l.key.starts_with("VIP") || l.key.starts_with("vip")) {
                        continue;
                    }
                    let Some(value) = l.value.as_deref() else {
                        report(&l.key, "", LabelProblem::NoValue);
                        continue;
                    };
                    let protocol = match parse_protocol(dp.protocol.as_deref()) {
                        Ok(p) => p,
                        Err(p) => {
                            report(&l.key, value, p);
                            continue;
                        }
                    };
                    let (target, port) = match parse_vip_value(value, &fw.name) {
                        Ok(v) => v,
                        Err(p) => {
                            report(&l.key, value, p);
                            continue;
                        }
                    };
                    let Ok(bport) = u16::try_from(dp.number) else {
                        report(
                            &l.key,
                            value,
                            LabelProblem::PortOutOfRange(dp.number.to_string()),
                        );
                        continue;
                    };
                    let ips: Vec<IpAddr> = if host_scope || cips.is_empty() {
                        agent_ip.into_iter().collect()
                    } else {
                        cips.clone()
                    };
                    let backends = ips.into_iter().map(|ip| SocketAddr::new(ip, bport));
                    found.push((
                        VipId {
                            target,
                            port,
                            protocol,
                        },
                        backends.collect(),
                    ));
                }
            }
            // Legacy task label `VIP_PORT<i>` = `tcp://name:port`, i-th ports value.
            let rports = task.resource_ports();
            for l in &task.labels {
                let Some(idx) = l.key.strip_prefix("VIP_PORT") else {
                    continue;
                };
                let Some(value) = l.value.as_deref() else {
                    report(&l.key, "", LabelProblem::NoValue);
                    continue;
                };
                let (proto, rest) = match value.split_once("://") {
                    Some((p, r)) => (Some(p), r),
                    None => (None, value),
                };
                let protocol = match parse_protocol(proto) {
                    Ok(p) => p,
                    Err(p) => {
                        report(&l.key, value, p);
                        continue;
                    }
                };
                let (target, port) = match parse_vip_value(rest, &fw.name) {
                    Ok(v) => v,
                    Err(p) => {
                        report(&l.key, value, p);
                        continue;
                    }
                };
                let Some(bport) = idx.parse::<usize>().ok().and_then(|i| rports.get(i)) else {
                    report(&l.key, value, LabelProblem::NoResourcePort(idx.to_string()));
                    continue;
                };
                let backends = agent_ip.map(|ip| SocketAddr::new(ip, *bport));
                found.push((
                    VipId {
                        target,
                        port,
                        protocol,
                    },
                    backends.into_iter().collect(),
                ));
            }
            for (vip, backends) in found {
                let set = out.vips.entry(vip).or_default();
                if live {
                    set.extend(backends);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(labels: serde_json::Value) -> MasterState {
        serde_json::from_value(json!({
            "slaves": [{"id": "S1", "pid": "slave(1)@10.0.0.2:5051"}],
            "frameworks": [{"name": "marathon", "tasks": [
                {"id": "web.1", "slave_id": "S1", "state": "TASK_RUNNING",
                 "resources": {"ports": "[31000-31001]"},
                 "labels": [{"key": "VIP_PORT1", "value": "udp://legacy:53"}],
                 "discovery": {"ports": {"ports": [
                    {"number": 31000, "protocol": "tcp", "labels": {"labels": labels}}]}}},
                {"id": "web.2", "slave_id": "S1", "state": "TASK_KILLING",
                 "discovery": {"ports": {"ports": [
                    {"number": 31005, "labels": {"labels": [{"key": "VIP_0", "value": "/web:80"}]}}]}}},
                {"id": "web.3", "slave_id": "S1", "state": "TASK_FINISHED",
                 "discovery": {"ports": {"ports": [
                    {"number": 31006, "labels": {"labels": [{"key": "VIP_0", "value": "/gone:80"}]}}]}}}
            ]}]
        }))
        .unwrap()
    }

    #[test]
    fn an_unhealthy_task_is_no_backend_until_it_is_healthy_again() {
        let with_health = |verdicts: &[(f64, bool)]| -> MasterState {
            let statuses: Vec<_> = verdicts
                .iter()
                .map(|(t, h)| json!({"state": "TASK_RUNNING", "timestamp": t, "healthy": h}))
                .collect();
            serde_json::from_value(json!({
                "slaves": [{"id": "S1", "pid": "slave(1)@10.0.0.2:5051"}],
                "frameworks": [{"name": "marathon", "tasks": [
                    {"id": "web.1", "slave_id": "S1", "state": "TASK_RUNNING",
                     "statuses": statuses,
                     "discovery": {"ports": {"ports": [{"number": 31000, "protocol": "tcp",
                        "labels": {"labels": [{"key": "VIP_0", "value": "/web:80"}]}}]}}}]}]
            }))
            .unwrap()
        };
        let vip = VipId {
            target: VipTarget::Named {
                key: "web.marathon".into(),
            },
            port: 80,
            protocol: Protocol::Tcp,
        };
        let backends = |s: &MasterState| desired(s).vips.get(&vip).cloned().unwrap_or_default();
        // No verdict yet (no health checks): a backend.
        assert_eq!(backends(&with_health(&[])).len(), 1);
        // Latest verdict unhealthy (statuses out of order on purpose): not a backend.
        assert!(backends(&with_health(&[(2.0, false), (1.0, true)])).is_empty());
        // Healthy again later: a backend again.
        assert_eq!(
            backends(&with_health(&[(1.0, false), (2.0, true)])).len(),
            1
        );
    }

    #[test]
    fn named_ip_and_legacy_vips_with_backends() {
        let d = desired(&state(json!([
            {"key": "VIP_0", "value": "/my-group/web:80"},
            {"key": "vip1", "value": "10.1.2.3:8080"},
            {"key": "network-scope", "value": "host"}
        ])));
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let named = VipId {
            target: VipTarget::Named {
                key: "my-groupweb.marathon".into(),
            },
            port: 80,
            protocol: Protocol::Tcp,
        };
        let b: SocketAddr = "10.0.0.2:31000".parse().unwrap();
        assert_eq!(d.vips[&named], BTreeSet::from([b]));
        let ip = VipId {
            target: VipTarget::Ip("10.1.2.3".parse().unwrap()),
            port: 8080,
            protocol: Protocol::Tcp,
        };
        assert_eq!(d.vips[&ip], BTreeSet::from([b]));
        let legacy = VipId {
            target: VipTarget::Named {
                key: "legacy.marathon".into(),
            },
            port: 53,
            protocol: Protocol::Udp,
        };
        assert_eq!(
            d.vips[&legacy],
            BTreeSet::from(["10.0.0.2:31001".parse().unwrap()])
        );
        // A killing task keeps its VIP but is no backend; a finished one is gone.
        let killing = VipId {
            target: VipTarget::Named {
                key: "web.marathon".into(),
            },
            port: 80,
            protocol: Protocol::Tcp,
        };
        assert!(d.vips[&killing].is_empty());
        assert_eq!(d.vips.len(), 4);
    }

    #[test]
    fn bad_labels_are_reported_by_name() {
        let d = desired(&state(json!([
            {"key": "VIP_0", "value": "/noport"},
            {"key": "VIP_1", "value": "/big:70000"},
            {"key": "VIP_2", "value": "/zero:0"},
            {"key": "VIP_3", "value": "/:80"},
            {"key": "VIP_4"},
            {"key": "VIP_5", "value": "/ok:81"}
        ])));
        let got: Vec<(String, LabelProblem)> = d
            .errors
            .iter()
            .map(|e| (e.label.clone(), e.problem.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("VIP_0".into(), LabelProblem::MissingPort),
                ("VIP_1".into(), LabelProblem::PortOutOfRange("70000".into())),
                ("VIP_2".into(), LabelProblem::PortOutOfRange("0".into())),
                ("VIP_3".into(), LabelProblem::BadName("/".into())),
                ("VIP_4".into(), LabelProblem::NoValue),
            ]
        );
        let msg = d.errors[1].to_string();
        assert!(
            msg.contains("web.1") && msg.contains("VIP_1") && msg.contains("70000"),
            "{msg}"
        );
        // The good label of the same port still applies.
        assert!(d.vips.keys().any(|v| v.target
            == VipTarget::Named {
                key: "ok.marathon".into()
            }));
    }

    #[test]
    fn named_keys_agree_with_the_dns_crate() {
        let s = state(json!([
            {"key": "VIP_0", "value": "/My_Group/Web.Front:80"},
            {"key": "VIP_1", "value": "10.1.2.3:8080"}
        ]));
        let ours: BTreeSet<String> = desired(&s)
            .vips
            .into_keys()
            .filter_map(|v| match v.target {
                VipTarget::Named { key } => Some(key),
                VipTarget::Ip(_) => None,
            })
            .collect();
        let dns: BTreeSet<String> = basalt_dns::named_vips(&s)
            .into_iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(ours, dns);
        assert_eq!(ours.len(), 3, "{ours:?}");
    }

    #[test]
    fn container_ips_without_host_scope() {
        let s: MasterState = serde_json::from_value(json!({
            "slaves": [{"id": "S1", "pid": "slave(1)@10.0.0.2:5051"}],
            "frameworks": [{"name": "marathon", "tasks": [
                {"id": "c.1", "slave_id": "S1", "state": "TASK_RUNNING",
                 "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0, "container_status":
                    {"network_infos": [{"ip_addresses": [{"ip_address": "9.0.0.7"}]}]}}],
                 "discovery": {"ports": {"ports": [
                    {"number": 8080, "labels": {"labels": [{"key": "VIP_0", "value": "/c:80"}]}}]}}}
            ]}]
        }))
        .unwrap();
        let d = desired(&s);
        let set: Vec<_> = d.vips.values().flatten().copied().collect();
        assert_eq!(set, vec!["9.0.0.7:8080".parse::<SocketAddr>().unwrap()]);
    }
}
