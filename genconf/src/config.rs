//! The operator's cluster configuration (`genconf/config.toml`): its schema,
//! defaults, loading and canonical forms.
//!
//! * [`load`] reads a `config.toml`, validates it (every problem at once, each
//!   with TOML path and `line:column`, see [`crate::validate`]) and reads the
//!   ip-detect scripts it names (paths relative to the config file's folder).
//! * [`Config`] is fully defaulted and validated; every default is listed in
//!   `genconf/DEFAULTS.md` (a test compares that file with the code).
//! * [`Config::canonical_toml`] is deterministic (independent of key order,
//!   comments and formatting of the input, defaults expanded); the config id is
//!   its SHA-256 ([`Config::config_id`]).
//! * [`Config::expanded_toml`] is the same document with a header comment, for
//!   `show-config --expanded`; with `mask_secrets` the password hash and any
//!   password inside proxy URLs read `********`.
//!
//! Derived values: [`Config::master_quorum`] = ⌊n/2⌋+1. `proxy.no_proxy`
//! always ends with [`BUILTIN_NO_PROXY`] in a loaded config.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::validate::Problem;

/// Node-local DNS addresses served on every node (`198.51.100.1`–`3`); never valid
/// as an upstream resolver (a resolver there would loop).
pub const NODE_LOCAL_DNS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(198, 51, 100, 1),
    Ipv4Addr::new(198, 51, 100, 2),
    Ipv4Addr::new(198, 51, 100, 3),
];

/// Entries always appended (when absent) to `proxy.no_proxy`.
pub const BUILTIN_NO_PROXY: [&str; 5] = [
    ".mesos",
    ".thisdcos.directory",
    ".dcos.directory",
    "127.0.0.1",
    "localhost",
];

/// What masked secrets read as in [`Config::expanded_toml`].
pub const MASK: &str = "********";

/// The whole validated cluster configuration, every default filled in.
///
/// Field order here is the key order of [`Config::canonical_toml`]. The serde
/// `Deserialize` impl only checks shapes and fills defaults; to get every rule
/// checked (with positions) parse with [`load`] or [`Config::from_toml_str`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Human name of the cluster (required; 1–64 chars, no control characters).
    pub cluster_name: String,
    /// Static master IPv4 addresses (required; 1, 3, 5 or 7 distinct entries).
    pub masters: Vec<Ipv4Addr>,
    /// Where nodes fetch bundles from: `http://`, `https://` or `file://`, no
    /// trailing `/` (required).
    pub bootstrap_url: String,
    /// ip-detect script, as written (relative to the config file's folder).
    #[serde(default = "defaults::ip_detect")]
    pub ip_detect: PathBuf,
    /// Script printing the node's public IP; `None` → `ip_detect` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_detect_public: Option<PathBuf>,
    /// Script printing the node's fault domain (region/zone) as JSON; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_domain_detect: Option<PathBuf>,
    /// Upstream DNS resolvers, `ip` or `ip:port` (required; `[]` = offline, no
    /// upstream: only cluster-internal names resolve).
    pub resolvers: Vec<Resolver>,
    /// Search domains written to `resolv.conf` (≤ 6).
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// Zone → resolvers for that zone (conditional forwarding).
    #[serde(default)]
    pub dns_forward_zones: BTreeMap<String, Vec<Resolver>>,
    /// IP range for layer-4 virtual IPs; must not overlap masters or resolvers.
    #[serde(default = "defaults::vip_range")]
    pub vip_range: Ipv4Net,
    /// Gate clock-sensitive services on the kernel's clock-synchronised flag.
    #[serde(default = "defaults::check_time")]
    pub check_time: bool,
    /// Agent defaults (both roles).
    #[serde(default)]
    pub agent: AgentConfig,
    /// Authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Outbound HTTP proxy for cluster components.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// etcd tuning.
    #[serde(default)]
    pub etcd: EtcdConfig,
    /// Which node image to run.
    #[serde(default)]
    pub image: ImageConfig,
}

/// `[agent]`: defaults for every agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Port resources offered by private agents (Mesos range syntax).
    #[serde(default = "defaults::private_ports")]
    pub private_ports: PortRanges,
    /// Port resources offered by public agents.
    #[serde(default = "defaults::public_ports")]
    pub public_ports: PortRanges,
    /// Memory (MiB) kept back from offers for the node itself.
    #[serde(default = "defaults::reserved_memory_mb")]
    pub reserved_memory_mb: u64,
    /// Extra Mesos attributes (name → value) on every agent.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Isolate NVIDIA GPUs (`gpu/nvidia` isolator).
    #[serde(default = "defaults::yes")]
    pub gpu_isolation: bool,
    /// Offer GPU agents only to GPU-aware frameworks; exclude GPUs from fair sharing.
    #[serde(default = "defaults::yes")]
    pub gpus_are_scarce: bool,
    /// Mesos role of public agents' resources.
    #[serde(default = "defaults::public_role")]
    pub public_role: String,
}

/// `[auth]`: authentication of people and services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Require tokens on the gateway.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// First superuser's uid (required when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_uid: Option<String>,
    /// Argon2 PHC string (`basalt-installer hash-password`); exactly one of this
    /// and `superuser_public_key` when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_password_hash: Option<String>,
    /// PEM `PUBLIC KEY` of a service-account-style superuser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_public_key: Option<String>,
    /// Lifetime of login tokens (`"5d"`, `"12h"`, `"90m"`, `"3600s"`).
    #[serde(default = "defaults::token_lifetime")]
    pub token_lifetime: DurationSpec,
}

/// `[proxy]`: outbound proxy for cluster components.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `http://` or `https://` URL of the proxy for plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    /// URL of the proxy for HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
    /// Hosts/domains reached directly; a loaded config always ends with
    /// [`BUILTIN_NO_PROXY`].
    #[serde(default)]
    pub no_proxy: Vec<String>,
}

/// `[etcd]`: etcd timing. etcd itself requires election ≥ 5 × heartbeat and
/// election ≤ 50000 ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// `--heartbeat-interval` in ms.
    #[serde(default = "defaults::heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// `--election-timeout` in ms.
    #[serde(default = "defaults::election_timeout_ms")]
    pub election_timeout_ms: u64,
}

/// `[image]`: node image selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Release channel (lowercase letters, digits, `-`).
    #[serde(default = "defaults::channel")]
    pub channel: String,
    /// Image version (`MAJOR.MINOR.PATCH[-pre][+build]`), default this crate's version.
    #[serde(default = "defaults::version")]
    pub version: String,
}

/// Default values. `genconf/DEFAULTS.md` lists the same values; a test keeps them equal.
pub mod defaults {
    use super::*;

    /// `ip_detect`
    pub fn ip_detect() -> PathBuf {
        PathBuf::from("ip-detect")
    }
    /// `vip_range`
    pub fn vip_range() -> Ipv4Net {
        Ipv4Net::new(Ipv4Addr::new(11, 0, 0, 0), 8).unwrap_or_default()
    }
    /// `check_time`
    pub fn check_time() -> bool {
        true
    }
    /// DC/OS private agent ports.
    pub const PRIVATE_PORTS: &str = "1025-2180,2182-3887,3889-5049,5052-8079,8082-8180,8182-32000";
    /// DC/OS public agent ports.
    pub const PUBLIC_PORTS: &str = "1-21,23-5050,5052-32000";
    /// `agent.private_ports`
    pub fn private_ports() -> PortRanges {
        PortRanges::from_str(PRIVATE_PORTS).unwrap_or_default()
    }
    /// `agent.public_ports`
    pub fn public_ports() -> PortRanges {
        PortRanges::from_str(PUBLIC_PORTS).unwrap_or_default()
    }
    /// `agent.reserved_memory_mb`
    pub fn reserved_memory_mb() -> u64 {
        1024
    }
    /// `true`
    pub fn yes() -> bool {
        true
    }
    /// `agent.public_role`
    pub fn public_role() -> String {
        "slave_public".to_owned()
    }
    /// `auth.token_lifetime` (DC/OS: 5 days)
    pub fn token_lifetime() -> DurationSpec {
        DurationSpec::from_secs(5 * 24 * 3600)
    }
    /// `etcd.heartbeat_interval_ms` (etcd's default)
    pub fn heartbeat_interval_ms() -> u64 {
        100
    }
    /// `etcd.election_timeout_ms` (etcd's default)
    pub fn election_timeout_ms() -> u64 {
        1000
    }
    /// `image.channel`
    pub fn channel() -> String {
        "stable".to_owned()
    }
    /// `image.version`: this crate's version.
    pub fn version() -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }
    /// `resolvers` when written as `[]`: none (there is no default; the key is required).
    pub fn resolvers() -> Vec<Resolver> {
        Vec::new()
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            private_ports: defaults::private_ports(),
            public_ports: defaults::public_ports(),
            reserved_memory_mb: defaults::reserved_memory_mb(),
            attributes: BTreeMap::new(),
            gpu_isolation: true,
            gpus_are_scarce: true,
            public_role: defaults::public_role(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            superuser_uid: None,
            superuser_password_hash: None,
            superuser_public_key: None,
            token_lifetime: defaults::token_lifetime(),
        }
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: defaults::heartbeat_interval_ms(),
            election_timeout_ms: defaults::election_timeout_ms(),
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            channel: defaults::channel(),
            version: defaults::version(),
        }
    }
}

// ---------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------

/// An upstream DNS server: `ip` or `ip:port` (`[v6]:port` for IPv6). Port 53 is
/// written without the port in canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Resolver {
    /// Address.
    pub ip: IpAddr,
    /// UDP/TCP port (53 unless given).
    pub port: u16,
}

impl Resolver {
    /// `ip:port` as a socket address.
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip, self.port)
    }
}

impl fmt::Display for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (ip, 53) => write!(f, "{ip}"),
            (IpAddr::V4(ip), port) => write!(f, "{ip}:{port}"),
            (IpAddr::V6(ip), port) => write!(f, "[{ip}]:{port}"),
        }
    }
}

impl FromStr for Resolver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self { ip, port: 53 });
        }
        match s.parse::<std::net::SocketAddr>() {
            Ok(sa) if sa.port() == 0 => Err(format!("`{s}`: port 0 is not a valid DNS port")),
            Ok(sa) => Ok(Self {
                ip: sa.ip(),
                port: sa.port(),
            }),
            Err(_) => Err(format!(
                "`{s}` is not an IP address or ip:port (e.g. `192.0.2.53` or `192.0.2.53:5353`)"
            )),
        }
    }
}

impl TryFrom<String> for Resolver {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Resolver> for String {
    fn from(r: Resolver) -> String {
        r.to_string()
    }
}

/// An inclusive port range `start-end` (or a single port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A list of port ranges in Mesos range syntax without brackets:
/// `"1025-2180,2182-3887"`. Validated ranges are sorted and disjoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRanges(pub Vec<PortRange>);

impl PortRanges {
    /// Whether `port` lies in one of the ranges.
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.start <= port && port <= r.end)
    }
    /// Mesos resource form: `[1025-2180,2182-3887]`.
    pub fn to_mesos(&self) -> String {
        let inner: Vec<String> = self
            .0
            .iter()
            .map(|r| format!("{}-{}", r.start, r.end))
            .collect();
        format!("[{}]", inner.join(","))
    }
    /// Total number of ports.
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .map(|r| u64::from(r.end) - u64::from(r.start) + 1)
            .sum()
    }
}

impl fmt::Display for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for PortRanges {
    type Err = String;
    /// Parses and checks syntax, 1 ≤ start ≤ end ≤ 65535, and that ranges are
    /// ascending and do not overlap.
    fn from_str(s: &str) -> Result<Self, String> {
        let body = s.trim();
        let body = body
            .strip_prefix('[')
            .and_then(|b| b.strip_suffix(']'))
            .unwrap_or(body);
        if body.trim().is_empty() {
            return Err("no port ranges (write e.g. `1025-32000`)".to_owned());
        }
        let mut out: Vec<PortRange> = Vec::new();
        for part in body.split(',') {
            let part = part.trim();
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let parse = |x: &str| -> Result<u16, String> {
                match x.parse::<u32>() {
                    Ok(0) => Err(format!("`{part}`: port 0 is not usable")),
                    Ok(n) if n > 65535 => Err(format!("`{part}`: port {n} is above 65535")),
                    Ok(n) => u16::try_from(n).map_err(|_| format!("`{part}`: bad port")),
                    Err(_) => Err(format!(
                        "`{part}` is not a port or port range (e.g. `1025-2180`)"
                    )),
                }
            };
            let r = PortRange {
                start: parse(a)?,
                end: parse(b)?,
            };
            if r.start > r.end {
                return Err(format!("`{part}`: range start is above its end"));
            }
            if let Some(prev) = out.last()
                && r.start <= prev.end
            {
                return Err(format!(
                    "`{part}` overlaps or is not after `{prev}`; list ranges ascending and disjoint"
                ));
            }
            out.push(r);
        }
        Ok(Self(out))
    }
}

impl TryFrom<String> for PortRanges {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<PortRanges> for String {
    fn from(r: PortRanges) -> String {
        r.to_string()
    }
}

/// A duration written as `<n><unit>` with unit `s`, `m`, `h` or `d`
/// (e.g. `"5d"`). Canonical form uses the largest unit that divides it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DurationSpec {
    secs: u64,
}

impl DurationSpec {
    /// From seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self { secs }
    }
    /// Length in seconds.
    pub const fn as_secs(&self) -> u64 {
        self.secs
    }
    /// As a `std::time::Duration`.
    pub const fn as_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.secs)
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.secs;
        if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl FromStr for DurationSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a duration like `5d`, `12h`, `30m` or `3600s`");
        let t = s.trim();
        let unit_at = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (num, unit) = t.split_at(unit_at);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        n.checked_mul(mult)
            .map(Self::from_secs)
            .ok_or_else(|| format!("`{s}` is too long"))
    }
}

impl TryFrom<String> for DurationSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DurationSpec> for String {
    fn from(d: DurationSpec) -> String {
        d.to_string()
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Errors from [`load`] / [`Config::from_toml_str`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: TOML syntax error: {message}", path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// Parser message.
        message: String,
    },
    /// The TOML is well-formed but breaks the schema or a rule; every problem found.
    #[error("{} is invalid ({} problem{}):\n{}", file.display(), problems.len(),
        if problems.len() == 1 { "" } else { "s" }, render_problems(file, problems))]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// Every problem, in document order.
        problems: Vec<Problem>,
    },
}

fn render_problems(file: &Path, problems: &[Problem]) -> String {
    let name = file.display().to_string();
    problems
        .iter()
        .map(|p| format!("  {}", p.display_in(&name)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An ip-detect style script read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Path as written in the config (relative to the config folder).
    pub configured: PathBuf,
    /// Resolved path on disk.
    pub path: PathBuf,
    /// File contents (ships in bundles, mode 0755).
    pub contents: Vec<u8>,
}

/// The scripts a config names, read at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripts {
    /// `ip_detect`.
    pub ip_detect: Script,
    /// `ip_detect_public`, if set.
    pub ip_detect_public: Option<Script>,
    /// `fault_domain_detect`, if set.
    pub fault_domain_detect: Option<Script>,
}

/// A loaded, validated config and what was read with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedConfig {
    /// The config, defaults filled in.
    pub config: Config,
    /// The config file.
    pub path: PathBuf,
    /// Its folder (scripts are relative to it).
    pub dir: PathBuf,
    /// The scripts it names, read and checked (exists, regular file, executable, shebang).
    pub scripts: Scripts,
}

/// Reads, validates and completes `path`, and reads the scripts it names.
/// Every schema or rule problem is returned at once in [`ConfigError::Invalid`].
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (config, scripts) = crate::validate::parse_and_validate(&text, path, Some(&dir))?;
    let scripts = scripts.ok_or_else(|| ConfigError::Invalid {
        file: path.to_path_buf(),
        problems: vec![Problem::new("ip_detect", 1, 1, "script was not read")],
    })?;
    Ok(LoadedConfig {
        config,
        path: path.to_path_buf(),
        dir,
        scripts,
    })
}

impl Config {
    /// Parses and validates TOML text without touching the filesystem (scripts
    /// are not checked). `name` labels positions in errors. Accepts the output of
    /// [`Config::canonical_toml`] and of `expanded_toml(false)`.
    pub fn from_toml_str(text: &str, name: &Path) -> Result<Config, ConfigError> {
        crate::validate::parse_and_validate(text, name, None).map(|(c, _)| c)
    }

    /// Majority of masters: ⌊n/2⌋ + 1.
    pub fn master_quorum(&self) -> usize {
        self.masters.len() / 2 + 1
    }

    /// Deterministic TOML of the whole config, defaults expanded, no comments.
    /// Same meaning → same bytes, whatever the input's key order or comments.
    pub fn canonical_toml(&self) -> String {
        // Serialising plain structs, BTreeMaps and strings cannot fail.
        toml::to_string(self).unwrap_or_else(|e| format!("# serialisation failed: {e}\n"))
    }

    /// Config id: lowercase hex SHA-256 of [`Config::canonical_toml`].
    pub fn config_id(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_toml().as_bytes()))
    }

    /// The canonical document with a header comment, for `show-config --expanded`.
    /// With `mask_secrets`, `auth.superuser_password_hash` and passwords inside
    /// proxy URLs read [`MASK`].
    pub fn expanded_toml(&self, mask_secrets: bool) -> String {
        let mut c = self.clone();
        if mask_secrets {
            if c.auth.superuser_password_hash.is_some() {
                c.auth.superuser_password_hash = Some(MASK.to_owned());
            }
            c.proxy.http_proxy = c.proxy.http_proxy.as_deref().map(mask_url_password);
            c.proxy.https_proxy = c.proxy.https_proxy.as_deref().map(mask_url_password);
        }
        format!(
            "# Basalt cluster configuration, every default filled in.\n# config id: {}\n{}{}",
            self.config_id(),
            if mask_secrets {
                "# secrets are masked as \"********\"\n"
            } else {
                ""
            },
            c.canonical_toml()
        )
    }

    /// Effective public ip-detect script path (falls back to `ip_detect`).
    pub fn ip_detect_public_or_default(&self) -> &Path {
        self.ip_detect_public.as_deref().unwrap_or(&self.ip_detect)
    }
}

/// `scheme://user:pass@host` → `scheme://user:********@host`.
fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_print() {
        let p: PortRanges = defaults::PRIVATE_PORTS.parse().unwrap();
        assert_eq!(p.to_string(), defaults::PRIVATE_PORTS);
        assert!(!p.contains(2181));
        assert!(p.contains(2182));
        assert_eq!(
            p.to_mesos(),
            "[1025-2180,2182-3887,3889-5049,5052-8079,8082-8180,8182-32000]"
        );
        assert!("10-5".parse::<PortRanges>().is_err());
        assert!("1-10,5-20".parse::<PortRanges>().is_err());
        assert!("0-10".parse::<PortRanges>().is_err());
        assert!("1-70000".parse::<PortRanges>().is_err());
        assert!("".parse::<PortRanges>().is_err());
        assert_eq!("[22]".parse::<PortRanges>().unwrap().count(), 1);
    }

    #[test]
    fn durations() {
        assert_eq!("5d".parse::<DurationSpec>().unwrap().as_secs(), 432_000);
        assert_eq!(DurationSpec::from_secs(7200).to_string(), "2h");
        assert_eq!(DurationSpec::from_secs(90).to_string(), "90s");
        assert_eq!("120m".parse::<DurationSpec>().unwrap().to_string(), "2h");
        for bad in ["", "5", "d", "5w", "-1d", "1.5h"] {
            assert!(bad.parse::<DurationSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn resolvers() {
        let r: Resolver = "192.0.2.1".parse().unwrap();
        assert_eq!(r.port, 53);
        assert_eq!(
            "192.0.2.1:53".parse::<Resolver>().unwrap().to_string(),
            "192.0.2.1"
        );
        assert_eq!("[2001:db8::1]:5353".parse::<Resolver>().unwrap().port, 5353);
        assert!("192.0.2.1:0".parse::<Resolver>().is_err());
        assert!("dns.example".parse::<Resolver>().is_err());
    }

    #[test]
    fn url_password_masking() {
        assert_eq!(
            mask_url_password("http://bob:hunter2@proxy.example:3128/"),
            "http://bob:********@proxy.example:3128/"
        );
        assert_eq!(
            mask_url_password("http://proxy.example:3128"),
            "http://proxy.example:3128"
        );
    }
}
