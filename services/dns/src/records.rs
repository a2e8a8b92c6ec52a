//! The record generator: `/master/state` → Mesos-DNS's record set, as a pure function.
//!
//! [`RecordSet::from_state`] reproduces mesosphere/mesos-dns `records/generator.go`
//! (`InsertState`: framework, slave, listener, master and task records) and
//! `records/chains.go`, `records/labels/labels.go`, with the facts of
//! `api-contracts.md` §6:
//!
//! | name | type | from |
//! |---|---|---|
//! | `<fw>.<domain>` | A | framework scheduler pid host (IP literals only) |
//! | `_framework._tcp.<fw>.<domain>` | SRV | → `<fw>.<domain>:<pid port>` |
//! | `slave.<domain>`, **`agent.<domain>`** | A | every agent's pid IP |
//! | `_slave._tcp.<domain>`, **`_agent._tcp.<domain>`** | SRV | → `slave.<domain>:<agent port>` / `agent.<domain>:…` |
//! | `<soa_mname>` | A/AAAA | the listener IPs (unspecified addresses are skipped) |
//! | `leader.<domain>` | A | the leader's pid (`leader`, else `leader_info.address`) |
//! | `_leader._tcp.<domain>`, `_leader._udp.<domain>` | SRV | → `leader.<domain>:<leader port>` |
//! | `master.<domain>`, `master<N>.<domain>` | A | leader + configured masters, Mesos-DNS's numbering |
//! | `<task>.<fw>.<domain>`, `<task>-<hash5>-<agentTail>.<fw>.<domain>` | A/AAAA | task IPs per `ip_sources` |
//! | the same with `.slave` before the domain | A | the agent's IP |
//! | `_<task>._tcp.<fw>.slave.<domain>` and `._udp` (+ without `.slave` when task IP = agent IP) | SRV | `ports` resource → `<canonical>.slave.<domain>:<port>` |
//! | `_<task>._<proto>.<fw>.<domain>`, `_<portname>._<task>._<proto>.<fw>.<domain>` | SRV | discovery ports → `<canonical>.<domain>:<number>` |
//!
//! `agent.<domain>` / `_agent._tcp.<domain>` are a **Basalt addition** (Mesos-DNS only
//! has `slave.<domain>`); everything else is Mesos-DNS's naming.
//!
//! Only `TASK_RUNNING` tasks whose agent is in the state get task records. A task with a
//! non-empty `discovery.name` is named after it (Marathon sets it to the task name),
//! and, like Mesos-DNS's legacy path, also gets records under the *raw* discovery name
//! (`app.group.marathon.mesos` next to `app-group.marathon.mesos`) — Basalt only keeps
//! that legacy name when it is already a valid lower-case DNS name, since a raw name
//! with other characters could never be queried. Tasks whose sanitised name is empty
//! get no records (Mesos-DNS would emit a name starting with `.`).
//!
//! ## Named VIPs
//!
//! Discovery-port labels whose key starts with `VIP`/`vip` and whose value is
//! `<name>:<port>` (and the legacy task label `VIP_PORT<i>` = `tcp://<name>:<port>`)
//! declare named VIPs. Their DNS name is `<name>.<fw>.l4lb.thisdcos.directory` with
//! dcos-net's `domain_frag` sanitisation ([`dcos_domain_frag`]). The address is **not**
//! chosen here: the L4LB allocator owns it and passes a map
//! `vip_addresses: BTreeMap<String, Ipv4Addr>` keyed by [`vip_key`]
//! (`"<name>.<fw>"`, both sanitised: `/my-group/my-app` of `marathon` →
//! `my-groupmy-app.marathon`). A named VIP without an entry in the map gets no record.
//! IP VIPs (`10.0.0.1:80`) have no DNS name. [`named_vips`] lists the VIPs of a state
//! for the allocator.

use crate::config::{DnsConfig, IpSource};
use crate::state::{MasterState, Task, split_pid};
use serde::Serialize;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The zone of named VIPs (dcos-net).
pub const L4LB_ZONE: &str = "l4lb.thisdcos.directory.";

/// Why a state produced no record set (the previous set stays in service).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// `leader` is empty and `leader_info` has no usable address (Mesos-DNS treats this
    /// as a failed refresh).
    #[error("master state has no leader (field `leader` = {leader:?}, no `leader_info.address`)")]
    NoLeader {
        /// The `leader` field as received.
        leader: String,
    },
}

/// An SRV target (`host` is absolute, with its trailing dot).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SrvTarget {
    /// Target host name.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// The generated records. Names are lower case and absolute (trailing dot).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSet {
    /// The Mesos-DNS domain, absolute: `mesos.`.
    pub domain: String,
    /// A records of the domain.
    pub a: HashMap<String, BTreeSet<Ipv4Addr>>,
    /// AAAA records of the domain.
    pub aaaa: HashMap<String, BTreeSet<Ipv6Addr>>,
    /// SRV records of the domain.
    pub srv: HashMap<String, BTreeSet<SrvTarget>>,
    /// Named-VIP A records under [`L4LB_ZONE`].
    pub vip_a: HashMap<String, BTreeSet<Ipv4Addr>>,
}

/// A task-name sanitiser (Mesos-DNS `labels.Func`).
type Spec = fn(&str) -> String;

fn map_char(c: char) -> Option<u8> {
    match c {
        'A'..='Z' => Some(c.to_ascii_lowercase() as u8),
        'a'..='z' | '0'..='9' => Some(c as u8),
        '-' | '.' | '_' => Some(b'-'),
        _ => None,
    }
}

fn trim_left<'a>(s: &'a [u8], set: &[u8]) -> &'a [u8] {
    let n = s.iter().take_while(|b| set.contains(b)).count();
    &s[n..]
}

fn trim_right<'a>(s: &'a [u8], set: &[u8]) -> &'a [u8] {
    let n = s.iter().rev().take_while(|b| set.contains(b)).count();
    &s[..s.len() - n]
}

/// Mesos-DNS `labels.trimCut`: trims `left` chars at the start, cuts at `max`, trims
/// `right` chars at the cut and refills from what follows the cut.
fn trim_cut(label: &[u8], max: usize, left: &[u8], right: &[u8]) -> String {
    let trim = trim_left(label, left);
    let size = trim.len().min(max);
    let mut head = trim_right(&trim[..size], right).to_vec();
    if head.len() < size {
        let tail = trim_left(&trim[size..], right);
        let take = (size - head.len()).min(tail.len());
        head.extend_from_slice(&tail[..take]);
    }
    // Only ASCII bytes ever get here.
    String::from_utf8_lossy(&head).into_owned()
}

fn mesos_label(name: &str, max: usize, left: &[u8]) -> String {
    let mapped: Vec<u8> = name.chars().filter_map(map_char).collect();
    trim_cut(&mapped, max, left, b"-")
}

/// Mesos-DNS's RFC 1123 label sanitiser (the default): lower case, `[a-z0-9]` kept,
/// `-` `.` `_` → `-`, everything else dropped, leading `-` trimmed, at most 63 bytes.
pub fn rfc1123_label(name: &str) -> String {
    mesos_label(name, 63, b"-")
}

/// Mesos-DNS's RFC 952 label sanitiser (`enforce_rfc952`): as [`rfc1123_label`] but
/// leading digits are trimmed too and the cut is at 24 bytes.
pub fn rfc952_label(name: &str) -> String {
    mesos_label(name, 24, b"-0123456789")
}

/// Mesos-DNS `labels.DomainFrag`: splits on `.`, sanitises each part, drops empty parts.
pub fn domain_frag(name: &str, label: impl Fn(&str) -> String) -> String {
    name.split('.')
        .map(label)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// dcos-net's `mesos_state:domain_frag` (VIP names): split on `.`; per label lower
/// case, leading non-`[a-z0-9]` skipped, `-`/`_` → `-`, other characters (`/`
/// included) dropped, cut at 63, trailing `-` stripped; empty labels dropped.
pub fn dcos_domain_frag(name: &str) -> String {
    name.split('.')
        .map(|part| {
            let lower = part.to_ascii_lowercase();
            let start = lower
                .char_indices()
                .find(|(_, c)| c.is_ascii_lowercase() || c.is_ascii_digit())
                .map(|(i, _)| i)
                .unwrap_or(lower.len());
            let mut out = String::new();
            for c in lower[start..].chars() {
                match c {
                    'a'..='z' | '0'..='9' => out.push(c),
                    '-' | '_' => out.push('-'),
                    _ => {}
                }
            }
            out.truncate(63);
            out.trim_end_matches('-').to_string()
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

const ZBASE32: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Mesos-DNS `hashString`: the first 5 characters of zbase32(sha1(s)).
pub fn task_id_hash(s: &str) -> String {
    let digest = Sha1::digest(s.as_bytes());
    let v = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    (0..5)
        .map(|i| ZBASE32[((v >> (27 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// Mesos-DNS `slaveIDTail`: the last `-` field of the agent id, lower case.
pub fn slave_id_tail(id: &str) -> String {
    id.rsplit('-').next().unwrap_or(id).to_ascii_lowercase()
}

/// The allocator key of a named VIP: `"<name>.<framework>"`, both through
/// [`dcos_domain_frag`]. `vip_key("/my-group/my-app", "marathon")` =
/// `"my-groupmy-app.marathon"`.
pub fn vip_key(name: &str, framework: &str) -> String {
    format!("{}.{}", dcos_domain_frag(name), dcos_domain_frag(framework))
}

/// A named VIP declared by a running task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NamedVip {
    /// [`vip_key`] of the VIP: the allocator's map key.
    pub key: String,
    /// The name as written in the label (`/myapp`).
    pub name: String,
    /// The framework name (`marathon`).
    pub framework: String,
    /// The VIP port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Splits a VIP label value on the last `:`; `None` unless the port is a positive
/// integer. Returns `(name_or_ip, port)`.
fn parse_vip_value(value: &str) -> Option<(&str, u16)> {
    let (name, port) = value.rsplit_once(':')?;
    let port: u16 = port.trim().parse().ok()?;
    if port == 0 || name.is_empty() {
        return None;
    }
    Some((name, port))
}

fn task_vips(task: &Task, framework: &str, out: &mut BTreeSet<NamedVip>) {
    let mut add = |raw: &str, port: u16, protocol: &str| {
        // IP VIPs have no DNS name.
        if raw.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
            return;
        }
        let key = vip_key(raw, framework);
        if key.starts_with('.') || key.ends_with('.') {
            return;
        }
        out.insert(NamedVip {
            key,
            name: raw.to_string(),
            framework: framework.to_string(),
            port,
            protocol: protocol.to_string(),
        });
    };
    for p in task.discovery_ports() {
        let protocol = p
            .protocol
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("tcp")
            .to_ascii_lowercase();
        for l in p.labels.iter().flat_map(|l| l.labels.iter()) {
            if !(l.key.starts_with("VIP") || l.key.starts_with("vip")) {
                continue;
            }
            if let Some((name, port)) = l.value.as_deref().and_then(parse_vip_value) {
                add(name, port, &protocol);
            }
        }
    }
    // Legacy task-level `VIP_PORT<i>` = `tcp://name:port`.
    for l in &task.labels {
        if !l.key.starts_with("VIP_PORT") {
            continue;
        }
        let Some(value) = l.value.as_deref() else {
            continue;
        };
        let (protocol, rest) = match value.split_once("://") {
            Some((p, r)) => (p.to_ascii_lowercase(), r),
            None => ("tcp".to_string(), value),
        };
        if let Some((name, port)) = parse_vip_value(rest) {
            add(name, port, &protocol);
        }
    }
}

/// Every named VIP of the tasks in `TASK_RUNNING` or `TASK_KILLING` (dcos-net keeps a
/// killing task as a weight-0 backend, so its VIP keeps existing), deduplicated.
pub fn named_vips(state: &MasterState) -> Vec<NamedVip> {
    let mut out = BTreeSet::new();
    for f in &state.frameworks {
        for t in &f.tasks {
            if t.state == "TASK_RUNNING" || t.state == "TASK_KILLING" {
                task_vips(t, &f.name, &mut out);
            }
        }
    }
    out.into_iter().collect()
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim_matches(['[', ']']).parse().ok()
}

/// Per-task naming context (Mesos-DNS `context`).
struct TaskCtx<'a> {
    id_hash: String,
    slave_tail: String,
    ips: Vec<IpAddr>,
    slave_ip: Option<IpAddr>,
    task: &'a Task,
}

struct Builder<'c> {
    set: RecordSet,
    spec: Spec,
    config: &'c DnsConfig,
}

impl Builder<'_> {
    fn tail(&self) -> String {
        format!(".{}", self.set.domain)
    }

    fn insert_ip(&mut self, name: impl AsRef<str> + Into<String>, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => match self.set.a.get_mut(name.as_ref()) {
                Some(set) => {
                    set.insert(v4);
                }
                None => {
                    self.set.a.insert(name.into(), BTreeSet::from([v4]));
                }
            },
            IpAddr::V6(v6) => match self.set.aaaa.get_mut(name.as_ref()) {
                Some(set) => {
                    set.insert(v6);
                }
                None => {
                    self.set.aaaa.insert(name.into(), BTreeSet::from([v6]));
                }
            },
        }
    }

    fn insert_srv(&mut self, name: impl AsRef<str> + Into<String>, host: &str, port: u16) {
        let target = SrvTarget {
            host: host.to_string(),
            port,
        };
        match self.set.srv.get_mut(name.as_ref()) {
            Some(set) => {
                set.insert(target);
            }
            None => {
                self.set.srv.insert(name.into(), BTreeSet::from([target]));
            }
        }
    }

    fn frameworks(&mut self, state: &MasterState) {
        let tail = self.tail();
        for f in &state.frameworks {
            let fname = domain_frag(&f.name, self.spec);
            if fname.is_empty() {
                continue;
            }
            let (host, port) = match split_pid(&f.pid) {
                Some((h, p)) => (h, Some(p)),
                None => (f.hostname.as_str(), None),
            };
            // Mesos-DNS `hostToIP4`: IPv4 only; Basalt does not resolve hostnames here.
            let Some(IpAddr::V4(ip)) = parse_ip(host) else {
                continue;
            };
            let a = format!("{fname}{tail}");
            self.insert_ip(&a, IpAddr::V4(ip));
            if let Some(port) = port.and_then(|p| p.parse::<u16>().ok()) {
                self.insert_srv(format!("_framework._tcp.{a}"), &a, port);
            }
        }
    }

    fn slaves(&mut self, state: &MasterState) -> HashMap<String, Option<IpAddr>> {
        let domain = self.set.domain.clone();
        let mut ips = HashMap::new();
        for s in &state.slaves {
            let (host, port) = match split_pid(&s.pid) {
                Some((h, p)) => (h, p.parse::<u16>().ok()),
                None => (s.hostname.as_str(), None),
            };
            let ip = match parse_ip(host) {
                Some(IpAddr::V4(v4)) => Some(IpAddr::V4(v4)),
                _ => None,
            };
            if let Some(ip) = ip {
                for kind in ["slave", "agent"] {
                    let a = format!("{kind}.{domain}");
                    self.insert_ip(&a, ip);
                    if let Some(port) = port {
                        self.insert_srv(format!("_{kind}._tcp.{domain}"), &a, port);
                    }
                }
            }
            // Mesos-DNS keeps agents without an IP: their tasks still get records
            // from the other IP sources.
            ips.insert(s.id.clone(), ip);
        }
        ips
    }

    fn listener(&mut self) {
        let ns = format!("{}.", self.config.soa_mname.trim_end_matches('.')).to_ascii_lowercase();
        let ips: BTreeSet<IpAddr> = self
            .config
            .listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        for ip in ips {
            self.insert_ip(&ns, ip);
        }
    }

    fn masters(&mut self, state: &MasterState) -> Result<(), StateError> {
        let no_leader = || StateError::NoLeader {
            leader: state.leader.clone(),
        };
        let leader: SocketAddr = if !state.leader.is_empty() {
            let (host, port) = split_pid(&state.leader).ok_or_else(no_leader)?;
            let ip = parse_ip(host).ok_or_else(no_leader)?;
            SocketAddr::new(ip, port.parse().map_err(|_| no_leader())?)
        } else {
            let addr = state
                .leader_info
                .as_ref()
                .and_then(|l| l.address.as_ref().map(|a| (a, l.port)))
                .ok_or_else(no_leader)?;
            let ip = parse_ip(&addr.0.ip).ok_or_else(no_leader)?;
            let port = if addr.0.port != 0 {
                addr.0.port
            } else {
                addr.1
            };
            SocketAddr::new(ip, port)
        };
        let domain = self.set.domain.clone();
        let leader_name = format!("leader.{domain}");
        let master_name = format!("master.{domain}");
        self.insert_ip(&leader_name, leader.ip());
        self.insert_ip(&master_name, leader.ip());
        for proto in ["_tcp", "_udp"] {
            self.insert_srv(
                format!("_leader.{proto}.{domain}"),
                &leader_name,
                leader.port(),
            );
        }
        // Mesos-DNS `masterRecord`: masterN follow the configured order; the leader gets
        // its number once; a leader missing from the list gets the next number.
        let mut seen = BTreeSet::new();
        let mut added_leader = false;
        let mut idx = 0usize;
        for m in self.config.master_addrs() {
            if m != leader && !seen.insert(m.ip()) {
                continue;
            }
            if m != leader {
                self.insert_ip(&master_name, m.ip());
            }
            if m == leader && added_leader {
                continue;
            }
            self.insert_ip(format!("master{idx}.{domain}"), m.ip());
            idx += 1;
            if m == leader {
                added_leader = true;
            }
        }
        if !added_leader {
            self.insert_ip(format!("master{idx}.{domain}"), leader.ip());
        }
        Ok(())
    }

    fn task_ips(&self, task: &Task, slave_ip: Option<IpAddr>) -> Vec<IpAddr> {
        for src in &self.config.ip_sources {
            let ips: Vec<IpAddr> = match src {
                IpSource::Host => slave_ip.into_iter().collect(),
                IpSource::Netinfo => task
                    .latest_running_status()
                    .and_then(|s| s.container_status.as_ref())
                    .map(|cs| {
                        cs.network_infos
                            .iter()
                            .flat_map(|ni| {
                                if ni.ip_addresses.is_empty() {
                                    ni.ip_address.iter().cloned().collect::<Vec<_>>()
                                } else {
                                    ni.ip_addresses
                                        .iter()
                                        .filter_map(|a| a.ip_address.clone())
                                        .collect()
                                }
                            })
                            .filter_map(|s| parse_ip(&s))
                            .collect()
                    })
                    .unwrap_or_default(),
                IpSource::Mesos | IpSource::Docker => {
                    let key = if *src == IpSource::Mesos {
                        "MesosContainerizer.NetworkSettings.IPAddress"
                    } else {
                        "Docker.NetworkSettings.IPAddress"
                    };
                    task.latest_running_status()
                        .map(|s| {
                            s.labels
                                .iter()
                                .filter(|l| l.key == key)
                                .filter_map(|l| l.value.as_deref().and_then(parse_ip))
                                .collect()
                        })
                        .unwrap_or_default()
                }
            };
            if !ips.is_empty() {
                return ips;
            }
        }
        Vec::new()
    }

    fn tasks(&mut self, state: &MasterState, slave_ips: &HashMap<String, Option<IpAddr>>) {
        for f in &state.frameworks {
            let fname = domain_frag(&f.name, self.spec);
            if fname.is_empty() {
                continue;
            }
            for task in &f.tasks {
                if task.state != "TASK_RUNNING" {
                    continue;
                }
                let Some(slave_ip) = slave_ips.get(&task.slave_id) else {
                    continue;
                };
                let ctx = TaskCtx {
                    id_hash: task_id_hash(&task.id),
                    slave_tail: slave_id_tail(&task.slave_id),
                    ips: self.task_ips(task, *slave_ip),
                    slave_ip: *slave_ip,
                    task,
                };
                match task.discovery_name() {
                    Some(dname) => {
                        let name = (self.spec)(dname);
                        // Mesos-DNS's legacy raw-name records, when queryable at all and
                        // not the same names again.
                        if dname != name && is_plain_dns_name(dname) {
                            self.task_context(&ctx, dname, &fname);
                        }
                        self.task_context(&ctx, &name, &fname);
                    }
                    None => {
                        let name = (self.spec)(&task.name);
                        self.task_context(&ctx, &name, &fname);
                    }
                }
            }
        }
    }

    fn task_context(&mut self, ctx: &TaskCtx<'_>, name: &str, fname: &str) {
        if name.is_empty() {
            return;
        }
        let tail = self.tail();
        let canonical = format!("{name}-{}-{}.{fname}", ctx.id_hash, ctx.slave_tail);
        let arec = format!("{name}.{fname}");
        for ip in &ctx.ips {
            self.insert_ip(format!("{arec}{tail}"), *ip);
            self.insert_ip(format!("{canonical}{tail}"), *ip);
        }
        if let Some(sip) = ctx.slave_ip {
            self.insert_ip(format!("{arec}.slave{tail}"), sip);
            self.insert_ip(format!("{canonical}.slave{tail}"), sip);
        }
        // SRV for the `ports` resource: `.slave` always, the plain name too when the
        // task's address is the agent's.
        let same_ip = ctx.ips.first().copied() == ctx.slave_ip;
        let slave_host = format!("{canonical}.slave{tail}");
        for port in ctx.task.resource_ports() {
            for proto in ["_tcp", "_udp"] {
                self.insert_srv(
                    format!("_{name}.{proto}.{fname}.slave{tail}"),
                    &slave_host,
                    port,
                );
                if same_ip {
                    self.insert_srv(format!("_{name}.{proto}.{fname}{tail}"), &slave_host, port);
                }
            }
        }
        if ctx.task.discovery_name().is_none() {
            return;
        }
        let host = format!("{canonical}{tail}");
        for dp in ctx.task.discovery_ports() {
            let Ok(port) = u16::try_from(dp.number) else {
                continue;
            };
            if port == 0 {
                continue;
            }
            let protos: Vec<String> = match dp.protocol.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => vec![(self.spec)(p)],
                None => vec!["tcp".to_string(), "udp".to_string()],
            };
            let port_name = dp
                .name
                .as_deref()
                .filter(|n| !n.is_empty())
                .map(self.spec)
                .filter(|n| !n.is_empty());
            for proto in protos {
                let base = format!("_{name}._{proto}.{fname}{tail}");
                self.insert_srv(&base, &host, port);
                if let Some(pn) = &port_name {
                    self.insert_srv(format!("_{pn}.{base}"), &host, port);
                }
            }
        }
    }

    fn vips(&mut self, state: &MasterState, vip_addresses: &BTreeMap<String, Ipv4Addr>) {
        for vip in named_vips(state) {
            match vip_addresses.get(&vip.key) {
                Some(ip) => {
                    self.set
                        .vip_a
                        .entry(format!("{}.{L4LB_ZONE}", vip.key))
                        .or_default()
                        .insert(*ip);
                }
                None => {
                    tracing::debug!(vip = %vip.key, "named VIP has no allocated address yet");
                }
            }
        }
    }
}

/// `[a-z0-9_-]` labels of 1..=63 bytes separated by dots.
fn is_plain_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

impl RecordSet {
    /// The record set of `state` without named VIPs (see [`Self::from_state_with_vips`]).
    pub fn from_state(state: &MasterState, config: &DnsConfig) -> Result<RecordSet, StateError> {
        Self::from_state_with_vips(state, config, &BTreeMap::new())
    }

    /// The full record set of `state`; `vip_addresses` maps [`vip_key`]s to the
    /// addresses the L4LB allocated.
    pub fn from_state_with_vips(
        state: &MasterState,
        config: &DnsConfig,
        vip_addresses: &BTreeMap<String, Ipv4Addr>,
    ) -> Result<RecordSet, StateError> {
        // Pre-size the maps (rehashing 100,000 names several times is measurable):
        // a task makes about 4 A names and 6 SRV names.
        let tasks: usize = state.frameworks.iter().map(|f| f.tasks.len()).sum();
        let mut b = Builder {
            set: RecordSet {
                domain: config.domain_fqdn(),
                a: HashMap::with_capacity(4 * tasks + state.frameworks.len() + 16),
                srv: HashMap::with_capacity(6 * tasks + state.frameworks.len() + 16),
                ..RecordSet::default()
            },
            spec: if config.enforce_rfc952 {
                rfc952_label
            } else {
                rfc1123_label
            },
            config,
        };
        b.frameworks(state);
        let slave_ips = b.slaves(state);
        b.listener();
        b.masters(state)?;
        b.tasks(state, &slave_ips);
        b.vips(state, vip_addresses);
        Ok(b.set)
    }

    /// The number of resource records.
    pub fn len(&self) -> usize {
        self.a.values().map(BTreeSet::len).sum::<usize>()
            + self.aaaa.values().map(BTreeSet::len).sum::<usize>()
            + self.srv.values().map(BTreeSet::len).sum::<usize>()
            + self.vip_a.values().map(BTreeSet::len).sum::<usize>()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(set: &RecordSet, name: &str) -> Vec<String> {
        set.a
            .get(name)
            .map(|s| s.iter().map(|ip| ip.to_string()).collect())
            .unwrap_or_default()
    }

    fn srv(set: &RecordSet, name: &str) -> Vec<String> {
        set.srv
            .get(name)
            .map(|s| s.iter().map(|t| format!("{}:{}", t.host, t.port)).collect())
            .unwrap_or_default()
    }

    /// A `/master/state` document in Mesos' own shape: two agents, Marathon with a
    /// host-network app (2 instances), a grouped app on a container network with
    /// discovery ports and VIP labels, a staging task and a task on an unknown agent.
    const STATE: &str = r#"{
      "version": "1.11.0",
      "pid": "master@10.0.0.1:5050",
      "hostname": "m1",
      "leader": "master@10.0.0.1:5050",
      "leader_info": {"id": "m-1", "pid": "master@10.0.0.1:5050", "port": 5050, "hostname": "m1",
                      "address": {"hostname": "m1", "ip": "10.0.0.1", "port": 5050}},
      "slaves": [
        {"id": "5c0b0a5e-0000-4000-8000-000000000001-S0", "pid": "slave(1)@10.0.1.10:5051", "hostname": "a0",
         "attributes": {"rack": "r1"}},
        {"id": "5c0b0a5e-0000-4000-8000-000000000001-S1", "pid": "slave(1)@10.0.1.11:5051", "hostname": "a1"}
      ],
      "frameworks": [
        {"id": "fw-marathon", "name": "marathon", "pid": "scheduler-1@10.0.0.1:15101", "hostname": "m1",
         "tasks": [
           {"id": "nginx.11111111-aaaa", "name": "nginx", "framework_id": "fw-marathon",
            "slave_id": "5c0b0a5e-0000-4000-8000-000000000001-S0", "state": "TASK_RUNNING",
            "resources": {"cpus": 0.1, "mem": 32, "ports": "[31000-31000]"},
            "statuses": [{"state": "TASK_RUNNING", "timestamp": 1700000000.5}],
            "discovery": {"visibility": "FRAMEWORK", "name": "nginx",
                          "ports": {"ports": [{"number": 31000, "name": "http", "protocol": "tcp",
                                               "labels": {"labels": [{"key": "VIP_0", "value": "/nginx:80"},
                                                                     {"key": "network-scope", "value": "host"}]}}]}}},
           {"id": "nginx.22222222-bbbb", "name": "nginx", "framework_id": "fw-marathon",
            "slave_id": "5c0b0a5e-0000-4000-8000-000000000001-S1", "state": "TASK_RUNNING",
            "resources": {"ports": "[31005-31005]"},
            "statuses": [{"state": "TASK_RUNNING", "timestamp": 1700000001.0}],
            "discovery": {"visibility": "FRAMEWORK", "name": "nginx",
                          "ports": {"ports": [{"number": 31005, "name": "http", "protocol": "tcp",
                                               "labels": {"labels": [{"key": "VIP_0", "value": "/nginx:80"}]}}]}}},
           {"id": "app.group.33333333-cccc", "name": "app.group", "framework_id": "fw-marathon",
            "slave_id": "5c0b0a5e-0000-4000-8000-000000000001-S1", "state": "TASK_RUNNING",
            "resources": {},
            "statuses": [
              {"state": "TASK_STARTING", "timestamp": 1700000002.0,
               "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": "9.9.9.9"}]}]}},
              {"state": "TASK_RUNNING", "timestamp": 1700000003.0,
               "container_status": {"network_infos": [{"ip_addresses": [{"protocol": "IPv4", "ip_address": "172.17.0.5"}]}]}}],
            "discovery": {"visibility": "FRAMEWORK", "name": "app.group",
                          "ports": {"ports": [{"number": 8080, "name": "api", "protocol": "tcp",
                                               "labels": {"labels": [{"key": "VIP_0", "value": "/my-group/my-app:80"}]}},
                                              {"number": 9090}]}}},
           {"id": "staging.1", "name": "staging", "slave_id": "5c0b0a5e-0000-4000-8000-000000000001-S0",
            "state": "TASK_STAGING", "resources": {"ports": "[31010-31010]"}},
           {"id": "lost.1", "name": "lost", "slave_id": "gone-S9", "state": "TASK_RUNNING",
            "resources": {"ports": "[31011-31011]"}}
         ]},
        {"id": "fw-chronos", "name": "Chronos.Prod_1", "pid": "", "hostname": "10.0.0.7",
         "tasks": [
           {"id": "ct:1:job", "name": "ChronosTask:My_Job", "slave_id": "5c0b0a5e-0000-4000-8000-000000000001-S0",
            "state": "TASK_RUNNING", "resources": {"ports": "[31020-31021]"}}
         ]}
      ]
    }"#;

    fn state() -> MasterState {
        serde_json::from_str(STATE).unwrap()
    }

    fn config() -> DnsConfig {
        DnsConfig {
            masters: vec![
                "10.0.0.2:5050".into(),
                "10.0.0.1:5050".into(),
                "10.0.0.3:5050".into(),
            ],
            listen: vec!["127.0.0.1:61053".parse().unwrap()],
            ..DnsConfig::default()
        }
    }

    #[test]
    fn sanitisation_matches_mesos_dns() {
        // Marathon's `/group/app` becomes task name `app.group`: one label.
        assert_eq!(rfc1123_label("app.group"), "app-group");
        assert_eq!(rfc1123_label("My_App.Sub.Group"), "my-app-sub-group");
        assert_eq!(rfc1123_label("--lead"), "lead");
        assert_eq!(rfc1123_label("trail--"), "trail");
        assert_eq!(rfc1123_label("a!b@c#d$"), "abcd");
        assert_eq!(rfc1123_label("ünïcode-Ok"), "ncode-ok");
        assert_eq!(rfc1123_label("__"), "");
        let long = "x".repeat(70);
        assert_eq!(rfc1123_label(&long), "x".repeat(63));
        // A `-` at the cut is trimmed and the label refilled from after the cut.
        let at_cut = format!("{}-{}", "a".repeat(62), "bcd");
        assert_eq!(rfc1123_label(&at_cut), format!("{}b", "a".repeat(62)));
        // Refill never reads past the end (Go would panic here).
        let dashes = format!("{}-----x", "a".repeat(58));
        assert_eq!(rfc1123_label(&dashes), format!("{}x", "a".repeat(58)));
        // RFC 952: leading digits trimmed, 24 bytes.
        assert_eq!(rfc952_label("123-abc"), "abc");
        assert_eq!(rfc952_label(&"y".repeat(30)), "y".repeat(24));
        assert_eq!(rfc952_label("99"), "");
        // Framework names: split on dots, each part sanitised, empty parts dropped.
        assert_eq!(
            domain_frag("Chronos.Prod_1", rfc1123_label),
            "chronos.prod-1"
        );
        assert_eq!(domain_frag("a..b.", rfc1123_label), "a.b");
        // dcos-net VIP names drop `/` and keep dots.
        assert_eq!(dcos_domain_frag("/my-group/my-app"), "my-groupmy-app");
        assert_eq!(dcos_domain_frag("/myapp"), "myapp");
        assert_eq!(dcos_domain_frag("-_x_y-"), "x-y");
        assert_eq!(dcos_domain_frag("a.B/c"), "a.bc");
        assert_eq!(
            vip_key("/my-group/my-app", "marathon"),
            "my-groupmy-app.marathon"
        );
    }

    #[test]
    fn hashes_match_mesos_dns() {
        // zbase32(sha1("nginx.11111111-aaaa")) computed independently (Python
        // hashlib + base64.b32encode translated to the zbase32 alphabet).
        assert_eq!(task_id_hash("nginx.11111111-aaaa"), "dtfhd");
        assert_eq!(task_id_hash(""), "5eh48");
        assert_eq!(task_id_hash("abc"), "igcuh");
        assert_eq!(
            slave_id_tail("5c0b0a5e-0000-4000-8000-000000000001-S0"),
            "s0"
        );
        assert_eq!(slave_id_tail("plain"), "plain");
    }

    #[test]
    fn leader_masters_and_agents() {
        let set = RecordSet::from_state(&state(), &config()).unwrap();
        assert_eq!(set.domain, "mesos.");
        assert_eq!(a(&set, "leader.mesos."), ["10.0.0.1"]);
        assert_eq!(srv(&set, "_leader._tcp.mesos."), ["leader.mesos.:5050"]);
        assert_eq!(srv(&set, "_leader._udp.mesos."), ["leader.mesos.:5050"]);
        assert_eq!(
            a(&set, "master.mesos."),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(a(&set, "master0.mesos."), ["10.0.0.2"]);
        assert_eq!(a(&set, "master1.mesos."), ["10.0.0.1"]);
        assert_eq!(a(&set, "master2.mesos."), ["10.0.0.3"]);
        assert!(!set.a.contains_key("master3.mesos."));
        assert_eq!(a(&set, "slave.mesos."), ["10.0.1.10", "10.0.1.11"]);
        assert_eq!(a(&set, "agent.mesos."), ["10.0.1.10", "10.0.1.11"]);
        assert_eq!(srv(&set, "_slave._tcp.mesos."), ["slave.mesos.:5051"]);
        assert_eq!(srv(&set, "_agent._tcp.mesos."), ["agent.mesos.:5051"]);
        assert_eq!(a(&set, "ns1.mesos."), ["127.0.0.1"]);
        // Frameworks: pid host; an HTTP framework without pid uses its hostname, no SRV.
        assert_eq!(a(&set, "marathon.mesos."), ["10.0.0.1"]);
        assert_eq!(
            srv(&set, "_framework._tcp.marathon.mesos."),
            ["marathon.mesos.:15101"]
        );
        assert_eq!(a(&set, "chronos.prod-1.mesos."), ["10.0.0.7"]);
        assert!(
            !set.srv
                .contains_key("_framework._tcp.chronos.prod-1.mesos.")
        );
    }

    #[test]
    fn leader_not_in_masters_list_gets_next_number() {
        let mut c = config();
        c.masters = vec!["10.0.0.2:5050".into()];
        let set = RecordSet::from_state(&state(), &c).unwrap();
        assert_eq!(a(&set, "master0.mesos."), ["10.0.0.2"]);
        assert_eq!(a(&set, "master1.mesos."), ["10.0.0.1"]);
        c.masters.clear();
        let set = RecordSet::from_state(&state(), &c).unwrap();
        assert_eq!(a(&set, "master0.mesos."), ["10.0.0.1"]);
    }

    #[test]
    fn leader_from_leader_info_or_error() {
        let mut s = state();
        s.leader.clear();
        let set = RecordSet::from_state(&s, &config()).unwrap();
        assert_eq!(a(&set, "leader.mesos."), ["10.0.0.1"]);
        s.leader_info = None;
        assert_eq!(
            RecordSet::from_state(&s, &config()).unwrap_err(),
            StateError::NoLeader {
                leader: String::new()
            }
        );
        s.leader = "garbage".into();
        assert!(RecordSet::from_state(&s, &config()).is_err());
    }

    #[test]
    fn task_a_records_per_ip_source() {
        let set = RecordSet::from_state(&state(), &config()).unwrap();
        // Two running nginx instances on two agents: two A records.
        assert_eq!(a(&set, "nginx.marathon.mesos."), ["10.0.1.10", "10.0.1.11"]);
        assert_eq!(
            a(&set, "nginx.marathon.slave.mesos."),
            ["10.0.1.10", "10.0.1.11"]
        );
        let h = task_id_hash("nginx.11111111-aaaa");
        let canonical = format!("nginx-{h}-s0.marathon.mesos.");
        assert_eq!(a(&set, &canonical), ["10.0.1.10"]);
        assert_eq!(
            a(&set, &format!("nginx-{h}-s0.marathon.slave.mesos.")),
            ["10.0.1.10"]
        );
        // Group path flattened into one label; host source first (DC/OS default).
        assert_eq!(a(&set, "app-group.marathon.mesos."), ["10.0.1.11"]);
        // ...and the legacy raw discovery name.
        assert_eq!(a(&set, "app.group.marathon.mesos."), ["10.0.1.11"]);
        // netinfo first: the latest TASK_RUNNING status's container IP.
        let mut c = config();
        c.ip_sources = vec![IpSource::Netinfo, IpSource::Host];
        let set2 = RecordSet::from_state(&state(), &c).unwrap();
        assert_eq!(a(&set2, "app-group.marathon.mesos."), ["172.17.0.5"]);
        assert_eq!(a(&set2, "app-group.marathon.slave.mesos."), ["10.0.1.11"]);
        assert_eq!(
            a(&set2, "nginx.marathon.mesos."),
            ["10.0.1.10", "10.0.1.11"]
        );
        // Framework name split on dots; task name one label.
        assert_eq!(
            a(&set, "chronostaskmy-job.chronos.prod-1.mesos."),
            ["10.0.1.10"]
        );
        // Not running / unknown agent: nothing.
        assert!(
            !set.a
                .keys()
                .any(|k| k.starts_with("staging.") || k.starts_with("lost."))
        );
        assert!(
            !set.srv
                .keys()
                .any(|k| k.starts_with("_staging.") || k.starts_with("_lost."))
        );
    }

    #[test]
    fn task_srv_records() {
        let set = RecordSet::from_state(&state(), &config()).unwrap();
        let h0 = task_id_hash("nginx.11111111-aaaa");
        let h1 = task_id_hash("nginx.22222222-bbbb");
        // Resource ports: tcp and udp, `.slave` and (task IP = agent IP) plain.
        let slave_targets = vec![
            format!("nginx-{h0}-s0.marathon.slave.mesos.:31000"),
            format!("nginx-{h1}-s1.marathon.slave.mesos.:31005"),
        ];
        for name in [
            "_nginx._tcp.marathon.slave.mesos.",
            "_nginx._udp.marathon.slave.mesos.",
        ] {
            assert_eq!(srv(&set, name), slave_targets, "{name}");
        }
        // Discovery ports (protocol tcp): target the canonical name, plus named port.
        let mut plain = vec![
            format!("nginx-{h0}-s0.marathon.mesos.:31000"),
            format!("nginx-{h1}-s1.marathon.mesos.:31005"),
        ];
        plain.extend(slave_targets.clone());
        plain.sort();
        assert_eq!(srv(&set, "_nginx._tcp.marathon.mesos."), plain);
        assert_eq!(srv(&set, "_nginx._udp.marathon.mesos."), slave_targets);
        assert_eq!(
            srv(&set, "_http._nginx._tcp.marathon.mesos."),
            [
                format!("nginx-{h0}-s0.marathon.mesos.:31000"),
                format!("nginx-{h1}-s1.marathon.mesos.:31005"),
            ]
        );
        // A discovery port without protocol gets both; without name no `_name` record.
        let hg = task_id_hash("app.group.33333333-cccc");
        let target = format!("app-group-{hg}-s1.marathon.mesos.");
        assert_eq!(
            srv(&set, "_app-group._tcp.marathon.mesos."),
            [format!("{target}:8080"), format!("{target}:9090")]
        );
        assert_eq!(
            srv(&set, "_app-group._udp.marathon.mesos."),
            [format!("{target}:9090")]
        );
        assert_eq!(
            srv(&set, "_api._app-group._tcp.marathon.mesos."),
            [format!("{target}:8080")]
        );
        // No discovery info: only resource-port SRVs.
        let ch = task_id_hash("ct:1:job");
        assert_eq!(
            srv(&set, "_chronostaskmy-job._tcp.chronos.prod-1.mesos."),
            [
                format!("chronostaskmy-job-{ch}-s0.chronos.prod-1.slave.mesos.:31020"),
                format!("chronostaskmy-job-{ch}-s0.chronos.prod-1.slave.mesos.:31021"),
            ]
        );
    }

    #[test]
    fn container_ip_tasks_only_get_slave_srv_for_host_ports() {
        let mut s = state();
        let mut c = config();
        c.ip_sources = vec![IpSource::Netinfo, IpSource::Host];
        s.frameworks[0].tasks[2].resources.ports = Some("[31050-31050]".into());
        let set = RecordSet::from_state(&s, &c).unwrap();
        let hg = task_id_hash("app.group.33333333-cccc");
        assert_eq!(
            srv(&set, "_app-group._udp.marathon.slave.mesos."),
            [format!("app-group-{hg}-s1.marathon.slave.mesos.:31050")]
        );
        // Task IP differs from the agent IP: no plain-name SRV for the host port.
        assert!(
            !srv(&set, "_app-group._udp.marathon.mesos.")
                .iter()
                .any(|t| t.ends_with(":31050"))
        );
    }

    #[test]
    fn rfc952_mode() {
        let mut c = config();
        c.enforce_rfc952 = true;
        let mut s = state();
        s.frameworks[1].tasks[0].name = "1234-a-very-long-task-name-indeed-yes".into();
        let set = RecordSet::from_state(&s, &c).unwrap();
        assert_eq!(
            a(&set, "a-very-long-task-name-in.chronos.prod-1.mesos."),
            ["10.0.1.10"]
        );
    }

    #[test]
    fn named_vips_and_l4lb_names() {
        let s = state();
        let vips = named_vips(&s);
        let keys: Vec<_> = vips.iter().map(|v| (v.key.as_str(), v.port)).collect();
        assert_eq!(
            keys,
            [("my-groupmy-app.marathon", 80), ("nginx.marathon", 80)]
        );
        assert_eq!(vips[1].name, "/nginx");
        assert_eq!(vips[1].protocol, "tcp");
        let addrs = BTreeMap::from([("nginx.marathon".to_string(), Ipv4Addr::new(11, 0, 0, 7))]);
        let set = RecordSet::from_state_with_vips(&s, &config(), &addrs).unwrap();
        assert_eq!(
            set.vip_a.get("nginx.marathon.l4lb.thisdcos.directory."),
            Some(&BTreeSet::from([Ipv4Addr::new(11, 0, 0, 7)]))
        );
        // No address allocated yet: no name.
        assert_eq!(set.vip_a.len(), 1);
    }

    #[test]
    fn vip_label_forms() {
        let mut s = state();
        let t = &mut s.frameworks[0].tasks[0];
        let labels = &mut t.discovery.as_mut().unwrap().ports.as_mut().unwrap().ports[0]
            .labels
            .as_mut()
            .unwrap()
            .labels;
        labels.push(crate::state::Label {
            key: "vip_1".into(),
            value: Some("10.1.2.3:80".into()),
        });
        labels.push(crate::state::Label {
            key: "VIP_2".into(),
            value: Some("/bad:0".into()),
        });
        labels.push(crate::state::Label {
            key: "VIP_3".into(),
            value: Some("svc.with:colon:8080".into()),
        });
        t.labels.push(crate::state::Label {
            key: "VIP_PORT0".into(),
            value: Some("udp://legacy:53".into()),
        });
        let keys: Vec<_> = named_vips(&s)
            .into_iter()
            .map(|v| (v.key, v.port, v.protocol))
            .collect();
        assert_eq!(
            keys,
            [
                ("legacy.marathon".to_string(), 53, "udp".to_string()),
                ("my-groupmy-app.marathon".to_string(), 80, "tcp".to_string()),
                ("nginx.marathon".to_string(), 80, "tcp".to_string()),
                (
                    "svc.withcolon.marathon".to_string(),
                    8080,
                    "tcp".to_string()
                ),
            ]
        );
    }

    #[test]
    fn generation_is_deterministic_and_counts() {
        let s = state();
        let one = RecordSet::from_state(&s, &config()).unwrap();
        let two = RecordSet::from_state(&s, &config()).unwrap();
        assert_eq!(one, two);
        assert!(one.len() > 40, "{}", one.len());
        assert!(!one.is_empty());
        let empty = RecordSet::from_state(
            &MasterState {
                leader: "master@10.0.0.1:5050".into(),
                ..MasterState::default()
            },
            &DnsConfig::default(),
        )
        .unwrap();
        // leader, master, master0, 2 SRV.
        assert_eq!(empty.len(), 5);
    }
}
