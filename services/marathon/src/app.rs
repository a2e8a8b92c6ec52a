//! The Marathon app definition (`/v2/apps` request and response body) with Marathon's
//! field names and defaults, and its normalization into canonical form.
//!
//! Reading follows Marathon 1.4+ (RAML types without `additionalProperties: false`):
//! unknown top-level fields are ignored, so a body copied from `GET /v2/apps/{id}`
//! (with `tasksRunning`, `deployments`, ...) can be sent back unchanged. Deprecated
//! fields are translated the way Marathon's `AppNormalization` does: `uris` → `fetch`,
//! `ports` → `portDefinitions`, `container.docker.network`/`portMappings` →
//! `networks`/`container.portMappings`. Output always carries the canonical fields
//! with their defaults filled in.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

use crate::pathid;

/// `cpus` default.
pub const DEFAULT_CPUS: f64 = 1.0;
/// `mem` default (MiB).
pub const DEFAULT_MEM: f64 = 128.0;
/// `backoffSeconds` default.
pub const DEFAULT_BACKOFF_SECONDS: f64 = 1.0;
/// `backoffFactor` default.
pub const DEFAULT_BACKOFF_FACTOR: f64 = 1.15;
/// `maxLaunchDelaySeconds` default (Marathon 1.8+, PR #6686; 3600 before).
pub const DEFAULT_MAX_LAUNCH_DELAY_SECONDS: f64 = 300.0;

fn d_cpus() -> f64 {
    DEFAULT_CPUS
}
fn d_mem() -> f64 {
    DEFAULT_MEM
}
fn d_one_i() -> i64 {
    1
}
fn d_backoff() -> f64 {
    DEFAULT_BACKOFF_SECONDS
}
fn d_factor() -> f64 {
    DEFAULT_BACKOFF_FACTOR
}
fn d_max_delay() -> f64 {
    DEFAULT_MAX_LAUNCH_DELAY_SECONDS
}
fn d_tcp() -> String {
    "tcp".to_string()
}
fn d_true() -> bool {
    true
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// An `env` value: a plain string or a secret reference `{"secret": "<ref>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    /// A literal value.
    Value(String),
    /// A reference into `secrets`.
    Secret {
        /// The secret's name in the app's `secrets`.
        secret: String,
    },
}

/// `container.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ContainerKind {
    /// The Mesos (universal) containerizer.
    #[default]
    #[serde(rename = "MESOS")]
    Mesos,
    /// The Docker containerizer (run through the agent's OCI path).
    #[serde(rename = "DOCKER")]
    Docker,
}

/// `{key, value}` of `container.docker.parameters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    /// Docker CLI option name.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// A port mapping (`container.portMappings[]`, legacy `container.docker.portMappings[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port inside the container (0: same as the host port).
    #[serde(default)]
    pub container_port: i64,
    /// Host port (0: random; absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// Service port (0: assigned).
    #[serde(default)]
    pub service_port: i64,
    /// `tcp`, `udp` or `udp,tcp`.
    #[serde(default = "d_tcp")]
    pub protocol: String,
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port labels (e.g. `VIP_0`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Container networks this mapping applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_names: Vec<String>,
}

/// `container.docker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerSpec {
    /// Image reference.
    #[serde(default)]
    pub image: String,
    /// Legacy network mode (`HOST`, `BRIDGE`, `USER`, `NONE`); translated to `networks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Legacy port mappings; moved to `container.portMappings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// Privileged mode.
    #[serde(default)]
    pub privileged: bool,
    /// Extra docker CLI parameters.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    /// Pull the image on every launch.
    #[serde(default)]
    pub force_pull_image: bool,
    /// Registry credentials from a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_config: Option<Json>,
    /// Removed legacy credential field (rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Json>,
}

/// `container.volumes[].persistent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolume {
    /// `root` (default), `path` or `mount`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Size in MiB (required, > 0).
    #[serde(default)]
    pub size: i64,
    /// Maximum size (mount volumes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<i64>,
    /// Disk profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_name: Option<String>,
    /// Constraints on the disk's path (`[["path","LIKE","..."]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Vec<String>>,
}

/// One `container.volumes[]` entry: host, persistent, external or secret volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Path in the container (relative, no `/`, for persistent volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    /// Host path (host volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `RW` or `RO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// A persistent local volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentVolume>,
    /// An external (DVDI) volume, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<Json>,
    /// A secret volume's secret reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `container`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `MESOS` (default) or `DOCKER`.
    #[serde(rename = "type", default)]
    pub kind: ContainerKind,
    /// The image and docker options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerSpec>,
    /// Volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Port mappings (container/bridge networking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// Fields this model does not interpret (`appc`, `linuxInfo`, ...), kept as given.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Json>,
}

/// `portDefinitions[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortDefinition {
    /// Port number (0: random).
    #[serde(default)]
    pub port: i64,
    /// `tcp`, `udp` or `udp,tcp`.
    #[serde(default = "d_tcp")]
    pub protocol: String,
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port labels (`VIP_0`...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `networks[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// `host`, `container` or `container/bridge`.
    #[serde(default = "d_host")]
    pub mode: String,
    /// Network name (container mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Network labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn d_host() -> String {
    "host".to_string()
}

impl Network {
    /// `{"mode":"host"}`.
    pub fn host() -> Network {
        Network {
            mode: d_host(),
            name: None,
            labels: BTreeMap::new(),
        }
    }

    /// Whether this is host networking.
    pub fn is_host(&self) -> bool {
        self.mode == "host"
    }
}

/// `fetch[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// What to fetch.
    #[serde(default)]
    pub uri: String,
    /// Mark it executable.
    #[serde(default)]
    pub executable: bool,
    /// Extract archives.
    #[serde(default = "d_true")]
    pub extract: bool,
    /// Use the fetcher cache.
    #[serde(default)]
    pub cache: bool,
    /// Destination file name in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_path: Option<String>,
}

/// Health check protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[allow(missing_docs)]
pub enum HealthProtocol {
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "COMMAND")]
    Command,
    #[serde(rename = "MESOS_HTTP")]
    MesosHttp,
    #[serde(rename = "MESOS_HTTPS")]
    MesosHttps,
    #[serde(rename = "MESOS_TCP")]
    MesosTcp,
}

impl HealthProtocol {
    /// Checks Marathon runs itself.
    pub fn is_marathon_side(self) -> bool {
        matches!(self, Self::Http | Self::Https | Self::Tcp)
    }

    /// HTTP-flavoured checks (have a `path`).
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Self::Http | Self::Https | Self::MesosHttp | Self::MesosHttps
        )
    }
}

/// `{"value": "..."}` of a COMMAND health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// Shell command.
    pub value: String,
}

fn d_grace() -> i64 {
    300
}
fn d_interval() -> i64 {
    60
}
fn d_timeout() -> i64 {
    20
}
fn d_failures() -> i64 {
    3
}
fn d_delay() -> i64 {
    15
}
fn d_ipv4() -> String {
    "IPv4".to_string()
}

/// `healthChecks[]` with Marathon's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckDef {
    /// Protocol, default `HTTP`.
    #[serde(default)]
    pub protocol: HealthProtocol,
    /// HTTP path (default `/` for HTTP checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Index into the app's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<i64>,
    /// A fixed port instead of `portIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Command of a COMMAND check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,
    /// Seconds failures are ignored after launch (300).
    #[serde(default = "d_grace")]
    pub grace_period_seconds: i64,
    /// Seconds between checks (60).
    #[serde(default = "d_interval")]
    pub interval_seconds: i64,
    /// Seconds before a check times out (20).
    #[serde(default = "d_timeout")]
    pub timeout_seconds: i64,
    /// Failures before the task is killed (3; 0 = never).
    #[serde(default = "d_failures")]
    pub max_consecutive_failures: i64,
    /// Seconds before the first Mesos-side check (15).
    #[serde(default = "d_delay")]
    pub delay_seconds: i64,
    /// `IPv4` or `IPv6`.
    #[serde(default = "d_ipv4")]
    pub ip_protocol: String,
    /// Ignore 1xx answers.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_http1xx: bool,
}

fn d_rc_name() -> String {
    "readinessCheck".to_string()
}
fn d_http() -> String {
    "HTTP".to_string()
}
fn d_slash() -> String {
    "/".to_string()
}
fn d_port_name() -> String {
    "http-api".to_string()
}
fn d_30() -> i64 {
    30
}
fn d_10() -> i64 {
    10
}
fn d_200() -> Vec<i64> {
    vec![200]
}

/// `readinessChecks[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ReadinessCheck {
    #[serde(default = "d_rc_name")]
    pub name: String,
    #[serde(default = "d_http")]
    pub protocol: String,
    #[serde(default = "d_slash")]
    pub path: String,
    #[serde(default = "d_port_name")]
    pub port_name: String,
    #[serde(default = "d_30")]
    pub interval_seconds: i64,
    #[serde(default = "d_10")]
    pub timeout_seconds: i64,
    #[serde(default = "d_200")]
    pub http_status_codes_for_ready: Vec<i64>,
    #[serde(default)]
    pub preserve_last_response: bool,
}

/// `upgradeStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    /// Fraction of `instances` that must stay healthy during an upgrade.
    #[serde(default = "d_one_f")]
    pub minimum_health_capacity: f64,
    /// Fraction of `instances` that may be started on top during an upgrade.
    #[serde(default = "d_one_f")]
    pub maximum_over_capacity: f64,
}

fn d_one_f() -> f64 {
    1.0
}

impl UpgradeStrategy {
    /// `{1, 1}`, the default.
    pub const DEFAULT: UpgradeStrategy = UpgradeStrategy {
        minimum_health_capacity: 1.0,
        maximum_over_capacity: 1.0,
    };
    /// `{0.5, 0}`, the default for resident apps.
    pub const RESIDENT: UpgradeStrategy = UpgradeStrategy {
        minimum_health_capacity: 0.5,
        maximum_over_capacity: 0.0,
    };
}

/// `unreachableStrategy`: `"disabled"` or `{inactiveAfterSeconds, expungeAfterSeconds}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnreachableStrategy {
    /// Unreachable instances are never replaced.
    Disabled,
    /// Replace after `inactive_after_seconds`, forget after `expunge_after_seconds`.
    Enabled {
        /// Seconds until an unreachable instance is replaced.
        inactive_after_seconds: i64,
        /// Seconds until it is expunged.
        expunge_after_seconds: i64,
    },
}

impl UnreachableStrategy {
    /// The default since Marathon 1.6: `{0, 0}`.
    pub const DEFAULT: UnreachableStrategy = UnreachableStrategy::Enabled {
        inactive_after_seconds: 0,
        expunge_after_seconds: 0,
    };
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnreachableEnabledJson {
    #[serde(default)]
    inactive_after_seconds: i64,
    #[serde(default)]
    expunge_after_seconds: i64,
}

impl Serialize for UnreachableStrategy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            UnreachableStrategy::Disabled => s.serialize_str("disabled"),
            UnreachableStrategy::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            } => UnreachableEnabledJson {
                inactive_after_seconds,
                expunge_after_seconds,
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for UnreachableStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Json::deserialize(d)? {
            Json::String(s) if s == "disabled" => Ok(UnreachableStrategy::Disabled),
            v @ Json::Object(_) => {
                let e: UnreachableEnabledJson =
                    serde_json::from_value(v).map_err(D::Error::custom)?;
                Ok(UnreachableStrategy::Enabled {
                    inactive_after_seconds: e.inactive_after_seconds,
                    expunge_after_seconds: e.expunge_after_seconds,
                })
            }
            other => Err(D::Error::custom(format!(
                "unreachableStrategy must be \"disabled\" or an object, got {other}"
            ))),
        }
    }
}

/// `killSelection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum KillSelection {
    /// Kill the most recently started instances first (default).
    #[default]
    #[serde(rename = "YOUNGEST_FIRST")]
    YoungestFirst,
    /// Kill the oldest instances first.
    #[serde(rename = "OLDEST_FIRST")]
    OldestFirst,
}

/// `residency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Residency {
    /// Seconds before a resident task is relaunched elsewhere (3600).
    #[serde(default = "d_3600")]
    pub relaunch_escalation_timeout_seconds: i64,
    /// `WAIT_FOREVER` (default) or `RELAUNCH_AFTER_TIMEOUT`.
    #[serde(default = "d_wait_forever")]
    pub task_lost_behavior: String,
}

fn d_3600() -> i64 {
    3600
}
fn d_wait_forever() -> String {
    "WAIT_FOREVER".to_string()
}

impl Default for Residency {
    fn default() -> Self {
        Residency {
            relaunch_escalation_timeout_seconds: 3600,
            task_lost_behavior: d_wait_forever(),
        }
    }
}

/// `versionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// When `instances` last changed.
    pub last_scaling_at: String,
    /// When anything but `instances` last changed.
    pub last_config_change_at: String,
}

/// A Marathon app definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppDefinition {
    /// Path id (`/group/app`); canonical after [`AppDefinition::normalize`].
    #[serde(default)]
    pub id: String,
    /// Shell command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Command arguments (no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// User to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Instance count (default 1).
    #[serde(default = "d_one_i")]
    pub instances: i64,
    /// CPU shares per instance (default 1).
    #[serde(default = "d_cpus")]
    pub cpus: f64,
    /// Memory MiB per instance (default 128).
    #[serde(default = "d_mem")]
    pub mem: f64,
    /// Disk MiB per instance (default 0).
    #[serde(default)]
    pub disk: f64,
    /// GPUs per instance (default 0).
    #[serde(default)]
    pub gpus: i64,
    /// Executor (`""` or `//cmd`: the command executor).
    #[serde(default)]
    pub executor: String,
    /// Placement constraints `[[field, OP, value?]]`.
    #[serde(default)]
    pub constraints: Vec<Vec<String>>,
    /// Legacy fetch URIs (translated to `fetch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<Vec<String>>,
    /// Artifacts to fetch.
    #[serde(default)]
    pub fetch: Vec<Artifact>,
    /// Store URLs.
    #[serde(default)]
    pub store_urls: Vec<String>,
    /// Launch back-off base (default 1 s).
    #[serde(default = "d_backoff")]
    pub backoff_seconds: f64,
    /// Launch back-off factor (default 1.15).
    #[serde(default = "d_factor")]
    pub backoff_factor: f64,
    /// Launch back-off cap (default 300 s).
    #[serde(default = "d_max_delay")]
    pub max_launch_delay_seconds: f64,
    /// Container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Health checks.
    #[serde(default)]
    pub health_checks: Vec<HealthCheckDef>,
    /// Readiness checks.
    #[serde(default)]
    pub readiness_checks: Vec<ReadinessCheck>,
    /// Apps this one depends on.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Upgrade strategy (default `{1,1}`, resident `{0.5,0}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_strategy: Option<UpgradeStrategy>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Roles of the resources the app may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_resource_roles: Option<Vec<String>>,
    /// Legacy IP-per-task (translated to `networks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<Json>,
    /// Version timestamp (response; in requests only for rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Residency (implied by persistent volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residency: Option<Residency>,
    /// Secrets (needs the secrets feature).
    #[serde(default)]
    pub secrets: BTreeMap<String, Json>,
    /// Seconds between SIGTERM and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<i64>,
    /// Unreachable strategy (default `{0,0}`, resident `"disabled"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_strategy: Option<UnreachableStrategy>,
    /// Which instances go first on scale-down.
    #[serde(default)]
    pub kill_selection: KillSelection,
    /// Use the declared ports as host ports.
    #[serde(default)]
    pub require_ports: bool,
    /// Host ports (host networking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Legacy host ports (translated to `portDefinitions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<i64>>,
    /// Networks (default `[{"mode":"host"}]`).
    #[serde(default)]
    pub networks: Vec<Network>,
    /// Version info (response only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
    /// Newer optional fields, emitted only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Allocate a TTY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// Executor resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_resources: Option<Json>,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_limits: Option<Json>,
    /// Mesos check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Json>,
}

/// The default `portDefinitions` of a host-networked app: one random port.
pub fn default_port_definitions() -> Vec<PortDefinition> {
    vec![PortDefinition {
        port: 0,
        protocol: d_tcp(),
        name: Some("default".to_string()),
        labels: BTreeMap::new(),
    }]
}

impl AppDefinition {
    /// Parses a request body (JSON object). Type errors name the offending field.
    pub fn from_json(value: Json) -> Result<AppDefinition, serde_json::Error> {
        serde_json::from_value(value)
    }

    /// Whether the app has persistent local volumes (is resident).
    pub fn has_persistent_volumes(&self) -> bool {
        self.container
            .as_ref()
            .is_some_and(|c| c.volumes.iter().any(|v| v.persistent.is_some()))
    }

    /// Whether every network is host networking.
    pub fn is_host_networking(&self) -> bool {
        self.networks.iter().all(Network::is_host)
    }

    /// How many ports the app declares: `container.portMappings` when set, else
    /// `portDefinitions` (what health check `portIndex` addresses).
    pub fn port_count(&self) -> usize {
        match self
            .container
            .as_ref()
            .and_then(|c| c.port_mappings.as_ref())
        {
            Some(pm) if !pm.is_empty() => pm.len(),
            _ => self.port_definitions.as_ref().map_or(0, Vec::len),
        }
    }

    /// Number of host ports an instance needs (port definitions on host networking,
    /// port mappings with a `hostPort` otherwise).
    pub fn host_port_requests(&self) -> Vec<i64> {
        if self.is_host_networking() {
            self.port_definitions
                .as_ref()
                .map(|p| p.iter().map(|d| d.port).collect())
                .unwrap_or_default()
        } else {
            self.container
                .as_ref()
                .and_then(|c| c.port_mappings.as_ref())
                .map(|pm| pm.iter().filter_map(|m| m.host_port).collect())
                .unwrap_or_default()
        }
    }

    /// The upgrade strategy in force.
    pub fn upgrade(&self) -> UpgradeStrategy {
        self.upgrade_strategy
            .unwrap_or(if self.residency.is_some() {
                UpgradeStrategy::RESIDENT
            } else {
                UpgradeStrategy::DEFAULT
            })
    }

    /// The unreachable strategy in force.
    pub fn unreachable(&self) -> UnreachableStrategy {
        self.unreachable_strategy
            .unwrap_or(if self.residency.is_some() {
                UnreachableStrategy::Disabled
            } else {
                UnreachableStrategy::DEFAULT
            })
    }

    /// Translates deprecated fields to canonical ones and fills defaults, like
    /// Marathon's `AppNormalization` (ids resolved against `base`, `/` for `/v2/apps`).
    /// Idempotent.
    pub fn normalize(&mut self, base: &str) {
        if !self.id.is_empty() {
            self.id = pathid::canonical(&self.id, base);
        }
        let app_id = self.id.clone();
        for dep in &mut self.dependencies {
            *dep = pathid::canonical(dep, &pathid::parent(&app_id));
        }
        // uris -> fetch
        if let Some(uris) = self.uris.take()
            && self.fetch.is_empty()
        {
            self.fetch = uris
                .into_iter()
                .map(|uri| {
                    let extract = is_archive(&uri);
                    Artifact {
                        uri,
                        executable: false,
                        extract,
                        cache: false,
                        dest_path: None,
                    }
                })
                .collect();
        }
        // container.docker.network / ipAddress -> networks
        let mut legacy_network: Option<String> = None;
        if let Some(c) = self.container.as_mut()
            && let Some(d) = c.docker.as_mut()
        {
            legacy_network = d.network.take();
            if let Some(pm) = d.port_mappings.take()
                && c.port_mappings.is_none()
            {
                c.port_mappings = Some(pm);
            }
        }
        if self.networks.is_empty() {
            if let Some(n) = legacy_network.as_deref() {
                self.networks = vec![match n {
                    "BRIDGE" => Network {
                        mode: "container/bridge".into(),
                        name: None,
                        labels: BTreeMap::new(),
                    },
                    "USER" => Network {
                        mode: "container".into(),
                        name: None,
                        labels: BTreeMap::new(),
                    },
                    _ => Network::host(),
                }];
            } else if let Some(ip) = self.ip_address.take() {
                let name = ip
                    .get("networkName")
                    .and_then(Json::as_str)
                    .map(str::to_string);
                self.networks = vec![Network {
                    mode: "container".into(),
                    name,
                    labels: BTreeMap::new(),
                }];
                if self.container.is_none() {
                    self.container = Some(Container {
                        kind: ContainerKind::Mesos,
                        docker: None,
                        volumes: Vec::new(),
                        port_mappings: None,
                        extra: BTreeMap::new(),
                    });
                }
            } else {
                self.networks = vec![Network::host()];
            }
        }
        let host = self.is_host_networking();
        // ports -> portDefinitions; defaults.
        if let Some(ports) = self.ports.take()
            && self.port_definitions.is_none()
            && host
        {
            self.port_definitions = Some(
                ports
                    .into_iter()
                    .map(|port| PortDefinition {
                        port,
                        protocol: d_tcp(),
                        name: None,
                        labels: BTreeMap::new(),
                    })
                    .collect(),
            );
        }
        if host {
            if self.port_definitions.is_none() {
                self.port_definitions = Some(default_port_definitions());
            }
            if let Some(c) = self.container.as_mut()
                && c.port_mappings.as_ref().is_some_and(Vec::is_empty)
            {
                c.port_mappings = None;
            }
        } else {
            self.require_ports = false;
            if self.port_definitions.as_ref().is_some_and(Vec::is_empty) {
                self.port_definitions = None;
            }
        }
        // health checks: default path and portIndex
        let has_ports = self.port_count() > 0;
        for hc in &mut self.health_checks {
            if hc.protocol.is_http() && hc.path.is_none() {
                hc.path = Some("/".to_string());
            }
            if hc.protocol != HealthProtocol::Command
                && hc.port.is_none()
                && hc.port_index.is_none()
                && has_ports
            {
                hc.port_index = Some(0);
            }
        }
        if self.has_persistent_volumes() && self.residency.is_none() {
            self.residency = Some(Residency::default());
        }
        if self.upgrade_strategy.is_none() {
            self.upgrade_strategy = Some(self.upgrade());
        }
        if self.unreachable_strategy.is_none() {
            self.unreachable_strategy = Some(self.unreachable());
        }
    }

    /// Whether `other` differs from `self` in more than `instances` (and the version
    /// bookkeeping): such a change needs a restart of every instance.
    pub fn needs_restart(&self, other: &AppDefinition) -> bool {
        let strip = |a: &AppDefinition| {
            let mut a = a.clone();
            a.instances = 0;
            a.version = None;
            a.version_info = None;
            a
        };
        strip(self) != strip(other)
    }

    /// The app as JSON.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }
}

fn is_archive(uri: &str) -> bool {
    [
        ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip",
    ]
    .iter()
    .any(|s| uri.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Json) -> AppDefinition {
        let mut a = AppDefinition::from_json(v).unwrap();
        a.normalize("/");
        a
    }

    #[test]
    fn defaults_match_marathon() {
        let a = parse(json!({"id": "web", "cmd": "sleep 100"}));
        let j = a.to_json();
        assert_eq!(j["id"], "/web");
        assert_eq!(j["cpus"], 1.0);
        assert_eq!(j["mem"], 128.0);
        assert_eq!(j["disk"], 0.0);
        assert_eq!(j["gpus"], 0);
        assert_eq!(j["instances"], 1);
        assert_eq!(j["backoffSeconds"], 1.0);
        assert_eq!(j["backoffFactor"], 1.15);
        assert_eq!(j["maxLaunchDelaySeconds"], 300.0);
        assert_eq!(
            j["upgradeStrategy"],
            json!({"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0})
        );
        assert_eq!(
            j["unreachableStrategy"],
            json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0})
        );
        assert_eq!(j["killSelection"], "YOUNGEST_FIRST");
        assert_eq!(j["requirePorts"], false);
        assert_eq!(
            j["portDefinitions"],
            json!([{"port": 0, "protocol": "tcp", "name": "default"}])
        );
        assert_eq!(j["networks"], json!([{"mode": "host"}]));
        assert!(j.get("ports").is_none());
        assert!(j.get("uris").is_none());
    }

    #[test]
    fn health_check_defaults() {
        let a = parse(
            json!({"id": "/h", "cmd": "x", "healthChecks": [{}, {"protocol": "COMMAND", "command": {"value": "true"}}]}),
        );
        let j = a.to_json();
        assert_eq!(
            j["healthChecks"][0],
            json!({"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 300,
                   "intervalSeconds": 60, "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                   "delaySeconds": 15, "ipProtocol": "IPv4"})
        );
        assert!(j["healthChecks"][1].get("portIndex").is_none());
        assert!(j["healthChecks"][1].get("path").is_none());
    }

    #[test]
    fn resident_defaults() {
        let a = parse(
            json!({"id": "/db", "cmd": "x", "container": {"type": "MESOS",
            "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 100}}]}}),
        );
        assert_eq!(a.upgrade(), UpgradeStrategy::RESIDENT);
        assert_eq!(a.unreachable(), UnreachableStrategy::Disabled);
        assert_eq!(a.to_json()["unreachableStrategy"], "disabled");
        assert_eq!(
            a.to_json()["residency"],
            json!({"relaunchEscalationTimeoutSeconds": 3600, "taskLostBehavior": "WAIT_FOREVER"})
        );
    }

    #[test]
    fn legacy_fields_are_translated() {
        let a = parse(
            json!({"id": "a", "cmd": "x", "ports": [0, 0], "uris": ["http://x/a.tgz"],
            "container": {"type": "DOCKER", "docker": {"image": "nginx", "network": "BRIDGE",
            "portMappings": [{"containerPort": 80, "hostPort": 0}]}}}),
        );
        assert_eq!(a.networks[0].mode, "container/bridge");
        assert!(
            a.port_definitions.is_none(),
            "portDefinitions dropped off host networking"
        );
        let c = a.container.as_ref().unwrap();
        assert_eq!(c.port_mappings.as_ref().unwrap()[0].container_port, 80);
        assert!(c.docker.as_ref().unwrap().network.is_none());
        assert_eq!(a.fetch[0].uri, "http://x/a.tgz");
        assert!(a.fetch[0].extract);
        // normalize is idempotent
        let mut b = a.clone();
        b.normalize("/");
        assert_eq!(a, b);
    }

    #[test]
    fn unknown_fields_are_ignored_like_marathon_1_4_plus() {
        let a = parse(
            json!({"id": "/a", "cmd": "x", "tasksRunning": 3, "deployments": [], "someFutureField": 1}),
        );
        let j = a.to_json();
        assert!(j.get("tasksRunning").is_none());
        assert!(j.get("someFutureField").is_none());
    }

    #[test]
    fn restart_detection() {
        let a = parse(json!({"id": "/a", "cmd": "x"}));
        let mut b = a.clone();
        b.instances = 5;
        assert!(!a.needs_restart(&b));
        b.cmd = Some("y".into());
        assert!(a.needs_restart(&b));
    }
}
