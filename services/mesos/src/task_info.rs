//! `TaskInfo` and what it carries: `CommandInfo`, `Environment`, `ExecutorInfo`,
//! `HealthCheck`, `KillPolicy`, `DiscoveryInfo`.
//!
//! Unknown fields are tolerated and kept in `extra`, so the master can hand a task
//! from the framework to the agent without losing what this crate does not model
//! (`check`, `max_completion_time`, `limits`, ...).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::container::ContainerInfo;
use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::labels::Labels;
use crate::resource::Resource;
use crate::resources::Resources;
use crate::task_state::Nanoseconds;

/// `CommandInfo.URI`: something the fetcher downloads into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommandUri {
    /// The URI.
    pub value: String,
    /// Make it executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<bool>,
    /// Extract archives (Mesos default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<bool>,
    /// Use the fetcher cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// File name to save it as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
    /// Expected SHA-256 of the fetched content, `<64 hex digits>` or `sha256:<hex>`
    /// (a Basalt extension: Mesos' `URI` has no checksum; the agent's fetcher fails the
    /// task when the content differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

open_enum! {
    /// `Environment.Variable.Type`.
    pub enum EnvVariableType {
        /// `VALUE` (default)
        Value = "VALUE",
        /// `SECRET`
        Secret = "SECRET",
    }
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EnvVariable {
    /// Name.
    pub name: String,
    /// VALUE or SECRET.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EnvVariableType>,
    /// The value (type VALUE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The secret (type SECRET), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Json>,
}

/// `Environment`: `{"variables":[{"name":"A","value":"1"}]}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Environment {
    /// The variables, in order.
    #[serde(default)]
    pub variables: Vec<EnvVariable>,
}

impl Environment {
    /// The value of a VALUE variable.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.variables
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value.as_deref())
    }

    /// Appends a VALUE variable.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.variables.push(EnvVariable {
            name: name.into(),
            kind: None,
            value: Some(value.into()),
            secret: None,
        });
    }
}

/// `CommandInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CommandInfo {
    /// Files to fetch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<CommandUri>,
    /// Environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Run `value` with `/bin/sh -c` (Mesos default true); when false, `value` is
    /// the program and `arguments` its argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    /// The command line or program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// argv when `shell` is false.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// User to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl CommandInfo {
    /// A shell command.
    pub fn shell(value: impl Into<String>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Whether the command runs through the shell (default true).
    pub fn is_shell(&self) -> bool {
        self.shell.unwrap_or(true)
    }
}

open_enum! {
    /// `HealthCheck.Type`.
    pub enum HealthCheckType {
        /// `COMMAND`
        Command = "COMMAND",
        /// `HTTP`
        Http = "HTTP",
        /// `TCP`
        Tcp = "TCP",
    }
}

/// `HealthCheck.HTTPCheckInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpCheckInfo {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Port to probe.
    pub port: u32,
    /// Path to GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Statuses counted as healthy (default 200-399).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u32>,
    /// `IPv4`/`IPv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `HealthCheck.TCPCheckInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TcpCheckInfo {
    /// Port to connect to.
    pub port: u32,
    /// `IPv4`/`IPv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `HealthCheck`. Getters give the Mesos defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HealthCheck {
    /// COMMAND, HTTP or TCP.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<HealthCheckType>,
    /// Seconds before the first check (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<f64>,
    /// Seconds between checks (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    /// Seconds before a check times out (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Failures before the task is killed (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Seconds during which failures do not count (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<f64>,
    /// COMMAND check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// HTTP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheckInfo>,
    /// TCP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheckInfo>,
    /// Other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl HealthCheck {
    /// `delay_seconds`, default 15.
    pub fn delay(&self) -> f64 {
        self.delay_seconds.unwrap_or(15.0)
    }

    /// `interval_seconds`, default 10.
    pub fn interval(&self) -> f64 {
        self.interval_seconds.unwrap_or(10.0)
    }

    /// `timeout_seconds`, default 20.
    pub fn timeout(&self) -> f64 {
        self.timeout_seconds.unwrap_or(20.0)
    }

    /// `consecutive_failures`, default 3.
    pub fn failures(&self) -> u32 {
        self.consecutive_failures.unwrap_or(3)
    }

    /// `grace_period_seconds`, default 10.
    pub fn grace_period(&self) -> f64 {
        self.grace_period_seconds.unwrap_or(10.0)
    }
}

/// `KillPolicy`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct KillPolicy {
    /// Time between SIGTERM and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<Nanoseconds>,
    /// Other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

open_enum! {
    /// `DiscoveryInfo.Visibility`.
    pub enum DiscoveryVisibility {
        /// `FRAMEWORK`
        Framework = "FRAMEWORK",
        /// `CLUSTER`
        Cluster = "CLUSTER",
        /// `EXTERNAL`
        External = "EXTERNAL",
    }
}

/// `Port` of a `DiscoveryInfo` (Mesos-DNS SRV records, l4lb VIP labels).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiscoveryPort {
    /// The port number.
    pub number: u32,
    /// Name, e.g. `http` (the SRV `_http._tcp` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Visibility of this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<DiscoveryVisibility>,
    /// Labels (e.g. `VIP_0`, `network-scope`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

/// `Ports`: `{"ports":[...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiscoveryPorts {
    /// The ports, in order.
    #[serde(default)]
    pub ports: Vec<DiscoveryPort>,
}

/// `DiscoveryInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryInfo {
    /// FRAMEWORK, CLUSTER or EXTERNAL.
    pub visibility: DiscoveryVisibility,
    /// Service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Environment (e.g. `prod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<DiscoveryPorts>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl DiscoveryInfo {
    /// The ports, in order (empty when none).
    pub fn port_list(&self) -> &[DiscoveryPort] {
        self.ports.as_ref().map_or(&[], |p| p.ports.as_slice())
    }
}

open_enum! {
    /// `ExecutorInfo.Type`.
    pub enum ExecutorType {
        /// `DEFAULT`: Mesos' default executor (task groups / pods).
        Default = "DEFAULT",
        /// `CUSTOM`: a framework-provided executor.
        Custom = "CUSTOM",
    }
}

/// `ExecutorInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// DEFAULT or CUSTOM.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ExecutorType>,
    /// The executor id.
    pub executor_id: ExecutorId,
    /// The framework.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkId>,
    /// Command to start a CUSTOM executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Resources of the executor itself, in wire order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Opaque data (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Service discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryInfo>,
    /// Grace period on shutdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_period: Option<Nanoseconds>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Other fields (`source`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

/// `TaskInfo`: what a framework launches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Task name.
    pub name: String,
    /// Task id (unique within the framework).
    pub task_id: TaskId,
    /// The agent to run on.
    pub agent_id: AgentId,
    /// Resources, in wire order (a resource list, not merged; see
    /// [`TaskInfo::resource_set`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// Custom executor (exactly one of `executor` and `command` must be set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorInfo>,
    /// Command for the command executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// Health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Kill policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    /// Opaque data for the executor (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Service discovery (Mesos-DNS SRV, VIPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<DiscoveryInfo>,
    /// `check`, `max_completion_time`, `limits` and other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl TaskInfo {
    /// A command task with no resources yet.
    pub fn command(
        name: impl Into<String>,
        task_id: TaskId,
        agent_id: AgentId,
        command: CommandInfo,
    ) -> Self {
        Self {
            name: name.into(),
            task_id,
            agent_id,
            resources: Vec::new(),
            executor: None,
            command: Some(command),
            container: None,
            health_check: None,
            kill_policy: None,
            data: None,
            labels: None,
            discovery: None,
            extra: Map::new(),
        }
    }

    /// The task's resources as a normalised [`Resources`].
    pub fn resource_set(&self) -> Resources {
        self.resources.iter().cloned().collect()
    }

    /// Mesos' rule: exactly one of `executor` and `command`.
    pub fn has_executor_xor_command(&self) -> bool {
        self.executor.is_some() != self.command.is_some()
    }
}
