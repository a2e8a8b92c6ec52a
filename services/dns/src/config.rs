//! [`DnsConfig`]: the service's configuration, Mesos-DNS's `config.json` in Basalt form.
//!
//! Defaults follow DC/OS's `/etc/mesos-dns.json` (dcos/dcos `gen/dcos-config.yaml`):
//! domain `mesos`, TTL 60 s, IP sources `["host", "netinfo"]`, SOA `ns1.mesos` /
//! `root.ns1.mesos`, refresh 60, retry 600, expire 86400, minimum TTL 60. Every field
//! has a serde default, so an empty TOML/JSON object is a valid configuration; call
//! [`DnsConfig::validate`] (done by every constructor that consumes a config) to get
//! the first invalid field by name.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where a task's A/AAAA address comes from (Mesos-DNS `IPSources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpSource {
    /// The IP of the agent the task runs on.
    Host,
    /// `statuses[].container_status.network_infos[].ip_addresses[]` of the latest
    /// `TASK_RUNNING` status.
    Netinfo,
    /// The `MesosContainerizer.NetworkSettings.IPAddress` status label.
    Mesos,
    /// The `Docker.NetworkSettings.IPAddress` status label.
    Docker,
}

impl IpSource {
    /// The Mesos-DNS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IpSource::Host => "host",
            IpSource::Netinfo => "netinfo",
            IpSource::Mesos => "mesos",
            IpSource::Docker => "docker",
        }
    }
}

/// The DNS service configuration. See the module docs for the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// The Mesos-DNS domain (`mesos`), without dots at either end.
    pub domain: String,
    /// TTL of every record in the Mesos-DNS domain, SOA and NS included (60).
    pub ttl: u32,
    /// TTL of the named-VIP records under `l4lb.thisdcos.directory` (5, as dcos-net).
    pub vip_ttl: u32,
    /// DNS listeners: each address gets a UDP socket and a TCP listener. Real nodes use
    /// `198.51.100.1:53`..`198.51.100.3:53`, masters also `0.0.0.0:61053`.
    pub listen: Vec<SocketAddr>,
    /// Mesos-DNS HTTP API listener (port 8123 in DC/OS); `None` disables it.
    pub http_listen: Option<SocketAddr>,
    /// Upstream resolvers for every name outside the served zones, tried in order:
    /// `"10.0.0.2"` (port 53) or `"10.0.0.2:5353"` / `"[fd00::1]:53"`.
    pub resolvers: Vec<String>,
    /// Zone-specific resolvers (`"corp.example" -> ["10.1.0.2"]`); the longest
    /// matching zone wins over [`DnsConfig::resolvers`].
    pub forward_zones: BTreeMap<String, Vec<String>>,
    /// Forward queries outside the served zones at all (Mesos-DNS `ExternalOn`).
    pub external_on: bool,
    /// The RA bit in answers (Mesos-DNS `RecurseOn`).
    pub recurse_on: bool,
    /// Per-upstream dial/read timeout in milliseconds (Mesos-DNS `Timeout`, 5 s).
    pub forward_timeout_ms: u64,
    /// Task address sources in priority order (DC/OS `["host", "netinfo"]`).
    pub ip_sources: Vec<IpSource>,
    /// The configured masters (`"ip:port"`), in the order of `master0`, `master1`...
    pub masters: Vec<String>,
    /// Sanitise task names to RFC 952 (24 chars, no leading digit) instead of RFC 1123.
    pub enforce_rfc952: bool,
    /// SOA MNAME (and the NS target), relative names are not completed: `ns1.mesos`.
    pub soa_mname: String,
    /// SOA RNAME (mailbox): `root.ns1.mesos` (DC/OS sets `root.mesos-dns.mesos`).
    pub soa_rname: String,
    /// SOA refresh (60).
    pub soa_refresh: u32,
    /// SOA retry (600).
    pub soa_retry: u32,
    /// SOA expire (86400).
    pub soa_expire: u32,
    /// SOA minimum TTL (60).
    pub soa_minttl: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: "mesos".to_string(),
            ttl: 60,
            vip_ttl: 5,
            listen: Vec::new(),
            http_listen: None,
            resolvers: Vec::new(),
            forward_zones: BTreeMap::new(),
            external_on: true,
            recurse_on: true,
            forward_timeout_ms: 5000,
            ip_sources: vec![IpSource::Host, IpSource::Netinfo],
            masters: Vec::new(),
            enforce_rfc952: false,
            soa_mname: "ns1.mesos".to_string(),
            soa_rname: "root.ns1.mesos".to_string(),
            soa_refresh: 60,
            soa_retry: 600,
            soa_expire: 86400,
            soa_minttl: 60,
        }
    }
}

/// A configuration field that does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dns config field `{field}`: {reason}")]
pub struct ConfigError {
    /// The field, with an index or key where it is a list or map entry.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks a DNS name written without a trailing dot: labels of 1..=63 bytes of
/// `[A-Za-z0-9_-]`, 253 bytes in all.
fn check_name(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if name.len() > 253 {
        return Err(invalid(field, "longer than 253 bytes"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(invalid(
                field,
                format!("`{name}` has an empty label (no leading, trailing or double dots)"),
            ));
        }
        if label.len() > 63 {
            return Err(invalid(field, format!("label `{label}` is over 63 bytes")));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                field,
                format!("label `{label}` has characters outside [A-Za-z0-9_-]"),
            ));
        }
    }
    Ok(())
}

/// Parses a resolver written as `ip` (port 53) or `ip:port` / `[v6]:port`.
pub fn parse_resolver(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

impl DnsConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name("domain", &self.domain)?;
        if self.ttl == 0 {
            return Err(invalid("ttl", "must be at least 1 second"));
        }
        for (i, r) in self.resolvers.iter().enumerate() {
            if parse_resolver(r).is_none() {
                return Err(invalid(
                    format!("resolvers[{i}]"),
                    format!("`{r}` is not `ip` or `ip:port`"),
                ));
            }
        }
        for (zone, resolvers) in &self.forward_zones {
            check_name(&format!("forward_zones.{zone}"), zone.trim_end_matches('.'))?;
            if resolvers.is_empty() {
                return Err(invalid(
                    format!("forward_zones.{zone}"),
                    "needs at least one resolver",
                ));
            }
            for (i, r) in resolvers.iter().enumerate() {
                if parse_resolver(r).is_none() {
                    return Err(invalid(
                        format!("forward_zones.{zone}[{i}]"),
                        format!("`{r}` is not `ip` or `ip:port`"),
                    ));
                }
            }
        }
        if self.forward_timeout_ms == 0 {
            return Err(invalid("forward_timeout_ms", "must be at least 1 ms"));
        }
        if self.ip_sources.is_empty() {
            return Err(invalid("ip_sources", "needs at least one source"));
        }
        for (i, m) in self.masters.iter().enumerate() {
            if m.parse::<SocketAddr>().is_err() {
                return Err(invalid(
                    format!("masters[{i}]"),
                    format!("`{m}` is not `ip:port`"),
                ));
            }
        }
        check_name("soa_mname", self.soa_mname.trim_end_matches('.'))?;
        check_name("soa_rname", self.soa_rname.trim_end_matches('.'))?;
        Ok(())
    }

    /// The domain as an absolute name, lower case: `mesos.`.
    pub fn domain_fqdn(&self) -> String {
        format!(
            "{}.",
            self.domain.trim_end_matches('.').to_ascii_lowercase()
        )
    }

    /// The upstream timeout.
    pub fn forward_timeout(&self) -> Duration {
        Duration::from_millis(self.forward_timeout_ms)
    }

    /// The parsed masters list (invalid entries skipped; [`Self::validate`] rejects them).
    pub fn master_addrs(&self) -> Vec<SocketAddr> {
        self.masters.iter().filter_map(|m| m.parse().ok()).collect()
    }

    /// Mesos-DNS's `/v1/config` object for this configuration.
    pub fn mesos_dns_json(&self) -> serde_json::Value {
        let port = self.listen.first().map(|a| a.port()).unwrap_or(53);
        let listener = self
            .listen
            .first()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "0.0.0.0".to_string());
        serde_json::json!({
            "Masters": self.masters,
            "Zk": "",
            "RefreshSeconds": 0,
            "StateTimeoutSeconds": 0,
            "TTL": self.ttl,
            "Port": port,
            "Domain": self.domain,
            "Resolvers": self.resolvers,
            "ZoneResolvers": self.forward_zones,
            "Timeout": self.forward_timeout_ms.div_ceil(1000),
            "Listener": listener,
            "HttpPort": self.http_listen.map(|a| a.port()).unwrap_or(0),
            "DnsOn": !self.listen.is_empty(),
            "HttpOn": self.http_listen.is_some(),
            "ExternalOn": self.external_on,
            "RecurseOn": self.recurse_on,
            "EnforceRFC952": self.enforce_rfc952,
            "IPSources": self.ip_sources.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "SOAMname": format!("{}.", self.soa_mname.trim_end_matches('.')),
            "SOARname": format!("{}.", self.soa_rname.trim_end_matches('.')),
            "SOARefresh": self.soa_refresh,
            "SOARetry": self.soa_retry,
            "SOAExpire": self.soa_expire,
            "SOAMinttl": self.soa_minttl,
            "SetTruncateBit": true,
            "EnumerationOn": true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_match_dcos() {
        let c: DnsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, DnsConfig::default());
        c.validate().unwrap();
        assert_eq!(c.domain_fqdn(), "mesos.");
        assert_eq!(c.ttl, 60);
        assert_eq!(c.ip_sources, vec![IpSource::Host, IpSource::Netinfo]);
        assert_eq!(c.soa_rname, "root.ns1.mesos");
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = DnsConfig {
            resolvers: vec!["8.8.8.8".into(), "not-an-ip".into()],
            ..DnsConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "resolvers[1]");
        c.resolvers = vec!["8.8.8.8".into(), "[::1]:5353".into()];
        c.validate().unwrap();
        c.domain = "bad..domain".into();
        assert_eq!(c.validate().unwrap_err().field, "domain");
        c.domain = "mesos".into();
        c.masters = vec!["10.0.0.1:5050".into(), "10.0.0.2".into()];
        assert_eq!(c.validate().unwrap_err().field, "masters[1]");
        c.masters.clear();
        c.forward_zones.insert("corp.example".into(), vec![]);
        assert_eq!(
            c.validate().unwrap_err().field,
            "forward_zones.corp.example"
        );
        c.forward_zones
            .insert("corp.example".into(), vec!["x".into()]);
        assert_eq!(
            c.validate().unwrap_err().field,
            "forward_zones.corp.example[0]"
        );
        c.forward_zones.clear();
        c.ip_sources.clear();
        assert_eq!(c.validate().unwrap_err().field, "ip_sources");
        let err = serde_json::from_str::<DnsConfig>(r#"{"ttl":60,"bogus":1}"#).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn resolver_forms() {
        assert_eq!(
            parse_resolver("10.0.0.2"),
            Some("10.0.0.2:53".parse().unwrap())
        );
        assert_eq!(
            parse_resolver("10.0.0.2:5353"),
            Some("10.0.0.2:5353".parse().unwrap())
        );
        assert_eq!(parse_resolver("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_resolver("dns.example"), None);
    }
}
