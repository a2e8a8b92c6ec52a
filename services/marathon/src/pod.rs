//! Pods: the DC/OS pod JSON (`/v2/pods`), its defaults and validation, and what the
//! scheduler needs: an app-shaped view for placement and deployments ([`Pod::as_app`])
//! and the `LAUNCH_GROUP` operation (one `TaskGroupInfo` per instance, executor of type
//! `DEFAULT`).
//!
//! Internally a pod instance is an [`Instance`] whose `containers` hold one Mesos task
//! per container; its `state` is the aggregate of theirs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::app::{AppDefinition, KillSelection, UnreachableStrategy, UpgradeStrategy};
use crate::pathid;
use crate::state::Instance;
use crate::validation::{Features, Violations, constraint_errors, validate_id};

fn d_cpus() -> f64 {
    1.0
}
fn d_mem() -> f64 {
    128.0
}
fn d_tcp() -> Vec<String> {
    vec!["tcp".into()]
}
fn d_fixed() -> String {
    "fixed".into()
}
fn d_one() -> i64 {
    1
}
fn d_host() -> Vec<PodNetwork> {
    vec![PodNetwork {
        mode: "host".into(),
        name: None,
        labels: BTreeMap::new(),
    }]
}

/// `containers[].resources` and `executorResources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodResources {
    #[serde(default = "d_cpus")]
    pub cpus: f64,
    #[serde(default = "d_mem")]
    pub mem: f64,
    #[serde(default)]
    pub disk: f64,
    #[serde(default)]
    pub gpus: i64,
}

impl Default for PodResources {
    fn default() -> Self {
        PodResources {
            cpus: d_cpus(),
            mem: d_mem(),
            disk: 0.0,
            gpus: 0,
        }
    }
}

/// `executorResources` (defaults 0.1 cpus, 32 MiB, 10 MiB disk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ExecutorResources {
    #[serde(default = "d_exec_cpus")]
    pub cpus: f64,
    #[serde(default = "d_exec_mem")]
    pub mem: f64,
    #[serde(default = "d_exec_disk")]
    pub disk: f64,
}
fn d_exec_cpus() -> f64 {
    0.1
}
fn d_exec_mem() -> f64 {
    32.0
}
fn d_exec_disk() -> f64 {
    10.0
}
impl Default for ExecutorResources {
    fn default() -> Self {
        ExecutorResources {
            cpus: d_exec_cpus(),
            mem: d_exec_mem(),
            disk: d_exec_disk(),
        }
    }
}

/// `exec.command`: `{"shell": "..."}` or `{"argv": [...]}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct PodCommand {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
}

/// `containers[].exec`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodExec {
    pub command: PodCommand,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_entrypoint: Option<bool>,
}

/// `containers[].endpoints[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodEndpoint {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default = "d_tcp")]
    pub protocol: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `containers[].image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodImage {
    #[serde(default = "d_docker")]
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub force_pull: bool,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Json>,
}
fn d_docker() -> String {
    "DOCKER".into()
}

/// `containers[].volumeMounts[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// `containers[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodContainer {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<PodExec>,
    #[serde(default)]
    pub resources: PodResources,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<PodEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<PodImage>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `{http{endpoint,path,scheme}|tcp{endpoint}|exec{command}, gracePeriodSeconds, ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Json>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Json>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Json>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Json>,
}

/// `networks[]`: the same shape as an app's.
pub type PodNetwork = crate::app::Network;

/// `scaling`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodScaling {
    #[serde(default = "d_fixed")]
    pub kind: String,
    #[serde(default = "d_one")]
    pub instances: i64,
    #[serde(default)]
    pub max_instances: Option<i64>,
}
impl Default for PodScaling {
    fn default() -> Self {
        PodScaling {
            kind: d_fixed(),
            instances: 1,
            max_instances: None,
        }
    }
}

/// `scheduling.backoff`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodBackoff {
    #[serde(default = "d_backoff")]
    pub backoff: f64,
    #[serde(default = "d_backoff_factor")]
    pub backoff_factor: f64,
    #[serde(default = "d_max_delay", alias = "maxLaunchDelaySeconds")]
    pub max_launch_delay: f64,
}
fn d_backoff() -> f64 {
    1.0
}
fn d_backoff_factor() -> f64 {
    1.15
}
fn d_max_delay() -> f64 {
    300.0
}
impl Default for PodBackoff {
    fn default() -> Self {
        PodBackoff {
            backoff: d_backoff(),
            backoff_factor: d_backoff_factor(),
            max_launch_delay: d_max_delay(),
        }
    }
}

/// `scheduling.placement.constraints[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodConstraint {
    pub field_name: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `scheduling.placement`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodPlacement {
    #[serde(default)]
    pub constraints: Vec<PodConstraint>,
    #[serde(default)]
    pub accepted_resource_roles: Vec<String>,
}

/// `scheduling`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PodScheduling {
    #[serde(default)]
    pub backoff: PodBackoff,
    #[serde(default = "d_upgrade")]
    pub upgrade: UpgradeStrategy,
    #[serde(default)]
    pub placement: PodPlacement,
    #[serde(default)]
    pub kill_selection: KillSelection,
    #[serde(default = "d_unreachable")]
    pub unreachable_strategy: UnreachableStrategy,
}
fn d_upgrade() -> UpgradeStrategy {
    UpgradeStrategy::DEFAULT
}
fn d_unreachable() -> UnreachableStrategy {
    UnreachableStrategy::DEFAULT
}
impl Default for PodScheduling {
    fn default() -> Self {
        PodScheduling {
            backoff: PodBackoff::default(),
            upgrade: d_upgrade(),
            placement: PodPlacement::default(),
            kill_selection: KillSelection::default(),
            unreachable_strategy: d_unreachable(),
        }
    }
}

/// A pod definition, as `/v2/pods` takes and serves it (defaults filled in). Fields
/// Basalt does not interpret are kept as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Pod {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, Json>,
    #[serde(default)]
    pub containers: Vec<PodContainer>,
    #[serde(default)]
    pub volumes: Vec<Json>,
    #[serde(default = "d_host")]
    pub networks: Vec<PodNetwork>,
    #[serde(default)]
    pub scaling: PodScaling,
    #[serde(default)]
    pub scheduling: PodScheduling,
    #[serde(default)]
    pub executor_resources: ExecutorResources,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Json>,
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Pod {
    /// Parses a body (`Err`: the serde message).
    pub fn from_json(value: Json) -> Result<Pod, serde_json::Error> {
        serde_json::from_value(value)
    }

    /// The JSON served.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self).unwrap_or(Json::Null)
    }

    /// Whether the pod uses host networking.
    pub fn is_host_networking(&self) -> bool {
        self.networks.iter().all(|n| n.mode == "host")
    }

    /// Endpoints that need a host port, in order: `(container index, endpoint)`.
    pub fn host_endpoints(&self) -> Vec<(usize, &PodEndpoint)> {
        let host = self.is_host_networking();
        self.containers
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.endpoints.iter().map(move |e| (i, e)))
            .filter(|(_, e)| host || e.host_port.is_some())
            .collect()
    }

    /// Validates with Marathon's paths; returns the pod with its id made absolute.
    pub fn validate(mut self, features: &Features) -> Result<Pod, Violations> {
        let mut v = Violations::default();
        self.id = pathid::canonical(&self.id, "/");
        validate_id(&mut v, "/id", &self.id);
        if self.containers.is_empty() {
            v.add("/containers", "must not be empty");
        }
        let volumes: BTreeSet<&str> = self
            .volumes
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        for (i, vol) in self.volumes.iter().enumerate() {
            if vol["name"].as_str().is_none_or(|n| !is_dns_label(n)) {
                v.add(
                    format!("/volumes({i})/name"),
                    "must be a valid DNS label (lowercase letters, digits and '-')",
                );
            }
        }
        let mut names = BTreeSet::new();
        let mut endpoint_names = BTreeSet::new();
        let mut host_ports = BTreeSet::new();
        for (i, c) in self.containers.iter().enumerate() {
            let p = format!("/containers({i})");
            if !is_dns_label(&c.name) {
                v.add(
                    format!("{p}/name"),
                    "must be a valid DNS label (lowercase letters, digits and '-')",
                );
            } else if !names.insert(c.name.as_str()) {
                v.add(format!("{p}/name"), "container names must be unique");
            }
            if c.resources.cpus < 0.0 {
                v.add(
                    format!("{p}/resources/cpus"),
                    "got negative value, expected 0 or more",
                );
            }
            if c.resources.mem < 0.0 {
                v.add(
                    format!("{p}/resources/mem"),
                    "got negative value, expected 0 or more",
                );
            }
            if c.resources.disk < 0.0 {
                v.add(
                    format!("{p}/resources/disk"),
                    "got negative value, expected 0 or more",
                );
            }
            if c.resources.gpus < 0 {
                v.add(
                    format!("{p}/resources/gpus"),
                    "got negative value, expected 0 or more",
                );
            }
            if c.resources.cpus + c.resources.mem <= 0.0 {
                v.add(format!("{p}/resources"), "a container needs cpus or mem");
            }
            if let Some(e) = &c.exec
                && e.command.shell.is_none() == e.command.argv.is_none()
            {
                v.add(
                    format!("{p}/exec/command"),
                    "must set exactly one of shell or argv",
                );
            }
            for (j, e) in c.endpoints.iter().enumerate() {
                let ep = format!("{p}/endpoints({j})");
                if !is_dns_label(&e.name) {
                    v.add(format!("{ep}/name"), "must be a valid DNS label");
                } else if !endpoint_names.insert(e.name.clone()) {
                    v.add(
                        format!("{ep}/name"),
                        "endpoint names must be unique in a pod",
                    );
                }
                if let Some(hp) = e.host_port {
                    if !(0..=65535).contains(&hp) {
                        v.add(format!("{ep}/hostPort"), "must be between 0 and 65535");
                    } else if hp > 0 && !host_ports.insert(hp) {
                        v.add(
                            format!("{ep}/hostPort"),
                            "host ports must be unique in a pod",
                        );
                    }
                }
                if let Some(cp) = e.container_port
                    && !(0..=65535).contains(&cp)
                {
                    v.add(format!("{ep}/containerPort"), "must be between 0 and 65535");
                }
                if !self.is_host_networking() && e.container_port.is_none() {
                    v.add(
                        format!("{ep}/containerPort"),
                        "is required on container networks",
                    );
                }
            }
            for (j, m) in c.volume_mounts.iter().enumerate() {
                if !volumes.contains(m.name.as_str()) {
                    v.add(
                        format!("{p}/volumeMounts({j})/name"),
                        format!("volume '{}' is not defined in volumes", m.name),
                    );
                }
                if m.mount_path.is_empty() {
                    v.add(
                        format!("{p}/volumeMounts({j})/mountPath"),
                        "must not be empty",
                    );
                }
            }
            for (name, val) in &c.environment {
                if val.is_object() && !features.has("secrets") {
                    v.add(
                        format!("{p}/environment/{name}"),
                        "use of secret-references in the environment requires the secrets feature to be enabled (secrets are not configured)",
                    );
                }
            }
        }
        for (name, val) in &self.environment {
            if val.is_object() && !features.has("secrets") {
                v.add(
                    format!("/environment/{name}"),
                    "use of secret-references in the environment requires the secrets feature to be enabled (secrets are not configured)",
                );
            } else if !val.is_object() && !val.is_string() {
                v.add(format!("/environment/{name}"), "must be a string");
            }
        }
        if !self.secrets.is_empty() && !features.has("secrets") {
            v.add(
                "/secrets",
                "use of secrets requires the secrets feature to be enabled (secrets are not configured)",
            );
        }
        for (i, n) in self.networks.iter().enumerate() {
            if !matches!(n.mode.as_str(), "host" | "container" | "container/bridge") {
                v.add(
                    format!("/networks({i})/mode"),
                    format!(
                        "unknown network mode '{}': expected host, container or container/bridge",
                        n.mode
                    ),
                );
            }
        }
        if self.networks.iter().any(|n| n.mode == "host") && self.networks.len() > 1 {
            v.add("/networks", "host networking excludes other networks");
        }
        if self.scaling.kind != "fixed" {
            v.add("/scaling/kind", "only 'fixed' scaling is supported");
        }
        if self.scaling.instances < 0 {
            v.add(
                "/scaling/instances",
                "got negative value, expected 0 or more",
            );
        }
        if let Some(m) = self.scaling.max_instances
            && m < self.scaling.instances
        {
            v.add(
                "/scaling/maxInstances",
                format!("got {m}, expected {} or more", self.scaling.instances),
            );
        }
        let up = &self.scheduling.upgrade;
        if !(0.0..=1.0).contains(&up.minimum_health_capacity) {
            v.add(
                "/scheduling/upgrade/minimumHealthCapacity",
                "must be between 0 and 1",
            );
        }
        if !(0.0..=1.0).contains(&up.maximum_over_capacity) {
            v.add(
                "/scheduling/upgrade/maximumOverCapacity",
                "must be between 0 and 1",
            );
        }
        let b = &self.scheduling.backoff;
        if b.backoff < 0.0 {
            v.add(
                "/scheduling/backoff/backoff",
                "got negative value, expected 0 or more",
            );
        }
        if b.backoff_factor < 1.0 {
            v.add(
                "/scheduling/backoff/backoffFactor",
                "got less than 1.0, expected 1.0 or more",
            );
        }
        for (i, c) in self.scheduling.placement.constraints.iter().enumerate() {
            let mut arr = vec![c.field_name.clone(), c.operator.clone()];
            if let Some(val) = &c.value {
                arr.push(val.clone());
            }
            if let Some(msg) = constraint_errors(&arr) {
                v.add(format!("/scheduling/placement/constraints({i})"), msg);
            }
        }
        if let UnreachableStrategy::Enabled {
            inactive_after_seconds,
            expunge_after_seconds,
        } = self.scheduling.unreachable_strategy
        {
            if inactive_after_seconds < 0 {
                v.add(
                    "/scheduling/unreachableStrategy/inactiveAfterSeconds",
                    "got negative value, expected 0 or more",
                );
            }
            if expunge_after_seconds < inactive_after_seconds {
                v.add(
                    "/scheduling/unreachableStrategy/expungeAfterSeconds",
                    format!(
                        "got {expunge_after_seconds}, expected {inactive_after_seconds} or more"
                    ),
                );
            }
        }
        if v.is_empty() { Ok(self) } else { Err(v) }
    }

    /// Total resources of one instance (containers + executor).
    pub fn instance_resources(&self) -> (f64, f64, f64, i64) {
        let mut r = (
            self.executor_resources.cpus,
            self.executor_resources.mem,
            self.executor_resources.disk,
            0,
        );
        for c in &self.containers {
            r.0 += c.resources.cpus;
            r.1 += c.resources.mem;
            r.2 += c.resources.disk;
            r.3 += c.resources.gpus;
        }
        r
    }

    /// The app-shaped view the planner, the launch demand and offer matching use: one
    /// "instance" needs every container's resources plus the executor's, one host port
    /// per host endpoint, the pod's placement.
    pub fn as_app(&self) -> AppDefinition {
        let (cpus, mem, disk, gpus) = self.instance_resources();
        let ports: Vec<Json> = self
            .host_endpoints()
            .iter()
            .map(|(_, e)| json!({"port": e.host_port.unwrap_or(0), "name": e.name}))
            .collect();
        let constraints: Vec<Vec<String>> = self
            .scheduling
            .placement
            .constraints
            .iter()
            .map(|c| {
                let mut v = vec![c.field_name.clone(), c.operator.clone()];
                if let Some(val) = &c.value {
                    v.push(val.clone());
                }
                v
            })
            .collect();
        let mut j = json!({
            "id": self.id, "cmd": "pod", "instances": self.scaling.instances,
            "cpus": cpus, "mem": mem, "disk": disk, "gpus": gpus,
            "portDefinitions": ports, "requirePorts": true,
            "constraints": constraints, "labels": self.labels,
            "upgradeStrategy": self.scheduling.upgrade,
            "backoffSeconds": self.scheduling.backoff.backoff,
            "backoffFactor": self.scheduling.backoff.backoff_factor,
            "maxLaunchDelaySeconds": self.scheduling.backoff.max_launch_delay,
            "killSelection": self.scheduling.kill_selection,
            "unreachableStrategy": self.scheduling.unreachable_strategy,
        });
        if !self.scheduling.placement.accepted_resource_roles.is_empty() {
            j["acceptedResourceRoles"] = json!(self.scheduling.placement.accepted_resource_roles);
        }
        let mut app = match AppDefinition::from_json(j) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(pod = %self.id, error = %e, "pod has no app view");
                AppDefinition::from_json(json!({"id": self.id, "cmd": "pod", "instances": 0}))
                    .unwrap_or_else(|_| unreachable_app())
            }
        };
        app.normalize("/");
        app.version = self.version.clone();
        app
    }
}

#[allow(clippy::unwrap_used)]
fn unreachable_app() -> AppDefinition {
    // A literal that always parses.
    AppDefinition::from_json(json!({"id": "/pod", "cmd": "pod"})).unwrap()
}

/// A pod instance's container task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerTask {
    /// Container name.
    pub name: String,
    /// Mesos task id.
    pub task_id: String,
    /// Mesos task state.
    pub state: String,
    /// Latest health, if checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

impl ContainerTask {
    /// Whether the container's task ended.
    pub fn is_terminal(&self) -> bool {
        is_terminal_state(&self.state)
    }
}

fn is_terminal_state(s: &str) -> bool {
    matches!(
        s,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_LOST"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

/// A new pod instance id: `<pod-path-with-underscores>.instance-<uuid>`.
pub fn new_instance_id(pod_id: &str) -> String {
    format!(
        "{}.instance-{}",
        pathid::task_id_prefix(pod_id),
        uuid::Uuid::new_v4()
    )
}

fn scalar(name: &str, v: f64, role: &str) -> Json {
    json!({"name": name, "type": "SCALAR", "scalar": {"value": v}, "allocation_info": {"role": role}})
}

fn env_vars(pod: &Pod, c: &PodContainer, inst: &Instance) -> Vec<Json> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in pod.environment.iter().chain(c.environment.iter()) {
        if let Some(s) = v.as_str() {
            env.insert(k.clone(), s.to_string());
        }
    }
    env.insert("MARATHON_APP_ID".into(), pod.id.clone());
    env.insert(
        "MARATHON_APP_VERSION".into(),
        pod.version.clone().unwrap_or_default(),
    );
    env.insert("MESOS_TASK_ID".into(), inst.task_id.clone());
    env.insert("HOST".into(), inst.host.clone());
    for ((_, e), p) in pod.host_endpoints().iter().zip(&inst.ports) {
        env.insert(
            format!("ENDPOINT_{}", e.name.to_ascii_uppercase().replace('-', "_")),
            p.to_string(),
        );
    }
    env.into_iter()
        .map(|(k, v)| json!({"name": k, "type": "VALUE", "value": v}))
        .collect()
}

/// The `LAUNCH_GROUP` operation of one pod instance: the DEFAULT executor and one
/// TaskInfo per container (the container tasks in `inst.containers`, same order).
pub fn launch_group(pod: &Pod, inst: &Instance, framework_id: &str, role: &str) -> Json {
    let executor_id = format!("instance-{}", inst.instance_id);
    let er = &pod.executor_resources;
    let mut exec_res = vec![scalar("cpus", er.cpus, role), scalar("mem", er.mem, role)];
    if er.disk > 0.0 {
        exec_res.push(scalar("disk", er.disk, role));
    }
    let host_endpoints = pod.host_endpoints();
    let volumes: BTreeMap<&str, &Json> = pod
        .volumes
        .iter()
        .filter_map(|v| v["name"].as_str().map(|n| (n, v)))
        .collect();
    let mut tasks = Vec::new();
    for (ci, (c, ct)) in pod.containers.iter().zip(&inst.containers).enumerate() {
        let mut resources = vec![
            scalar("cpus", c.resources.cpus, role),
            scalar("mem", c.resources.mem, role),
        ];
        if c.resources.disk > 0.0 {
            resources.push(scalar("disk", c.resources.disk, role));
        }
        if c.resources.gpus > 0 {
            resources.push(scalar("gpus", c.resources.gpus as f64, role));
        }
        // This container's host ports.
        let mine: Vec<(&PodEndpoint, u64)> = host_endpoints
            .iter()
            .zip(&inst.ports)
            .filter(|((i, _), _)| *i == ci)
            .map(|((_, e), p)| (*e, *p))
            .collect();
        if !mine.is_empty() {
            let ranges: Vec<Json> = mine
                .iter()
                .map(|(_, p)| json!({"begin": p, "end": p}))
                .collect();
            resources.push(json!({"name": "ports", "type": "RANGES", "ranges": {"range": ranges}, "allocation_info": {"role": role}}));
        }
        let mut command = json!({"environment": {"variables": env_vars(pod, c, inst)}});
        if let Some(e) = &c.exec {
            if let Some(sh) = &e.command.shell {
                command["shell"] = json!(true);
                command["value"] = json!(sh);
            } else if let Some(argv) = &e.command.argv {
                command["shell"] = json!(false);
                if let Some(first) = argv.first() {
                    command["value"] = json!(first);
                }
                command["arguments"] = json!(argv);
            }
        } else {
            command["shell"] = json!(false);
        }
        if let Some(u) = c.user.as_ref().or(pod.user.as_ref()) {
            command["user"] = json!(u);
        }
        let mut ti = json!({
            "name": c.name,
            "task_id": {"value": ct.task_id},
            "agent_id": {"value": inst.agent_id},
            "resources": resources,
            "command": command,
            "labels": {"labels": c.labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()},
        });
        let ports: Vec<Json> = c
            .endpoints
            .iter()
            .map(|e| {
                let number = mine
                    .iter()
                    .find(|(m, _)| m.name == e.name)
                    .map(|(_, p)| *p as i64)
                    .or(e.container_port)
                    .unwrap_or(0);
                let mut l: Vec<Json> = e
                    .labels
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect();
                let scope = if pod.is_host_networking() { "host" } else { "container" };
                l.push(json!({"key": "network-scope", "value": scope}));
                json!({"number": number, "name": e.name, "protocol": e.protocol.first().cloned().unwrap_or_else(|| "tcp".into()), "labels": {"labels": l}})
            })
            .collect();
        ti["discovery"] = json!({"visibility": "FRAMEWORK", "name": format!("{}.{}", c.name, pathid::task_name(&pod.id)), "ports": {"ports": ports}});
        let mut container = json!({"type": "MESOS"});
        if let Some(img) = &c.image {
            container["mesos"] = json!({"image": {"type": if img.kind == "APPC" { "APPC" } else { "DOCKER" }, "docker": {"name": img.id}, "cached": !img.force_pull}});
        }
        let vols: Vec<Json> = c
            .volume_mounts
            .iter()
            .filter_map(|m| {
                let v = volumes.get(m.name.as_str())?;
                let mode = if m.read_only == Some(true) { "RO" } else { "RW" };
                Some(match v["host"].as_str() {
                    Some(h) => json!({"container_path": m.mount_path, "host_path": h, "mode": mode}),
                    None => json!({"container_path": m.mount_path, "mode": mode, "source": {"type": "SANDBOX_PATH", "sandbox_path": {"type": "PARENT", "path": m.name}}}),
                })
            })
            .collect();
        if !vols.is_empty() {
            container["volumes"] = json!(vols);
        }
        ti["container"] = container;
        if let Some(hc) = &c.health_check
            && let Some(mh) = mesos_health_check(hc, &c.endpoints, &mine)
        {
            ti["health_check"] = mh;
        }
        if let Some(g) = c
            .lifecycle
            .as_ref()
            .and_then(|l| l["killGracePeriodSeconds"].as_f64())
        {
            ti["kill_policy"] = json!({"grace_period": {"nanoseconds": (g * 1e9) as i64}});
        }
        tasks.push(ti);
    }
    json!({
        "type": "LAUNCH_GROUP",
        "launch_group": {
            "executor": {
                "type": "DEFAULT",
                "executor_id": {"value": executor_id},
                "framework_id": {"value": framework_id},
                "resources": exec_res,
            },
            "task_group": {"tasks": tasks},
        }
    })
}

fn mesos_health_check(
    hc: &Json,
    endpoints: &[PodEndpoint],
    host_ports: &[(&PodEndpoint, u64)],
) -> Option<Json> {
    let port_of = |name: &str| -> Option<i64> {
        host_ports
            .iter()
            .find(|(e, _)| e.name == name)
            .map(|(_, p)| *p as i64)
            .or_else(|| {
                endpoints
                    .iter()
                    .find(|e| e.name == name)
                    .and_then(|e| e.container_port)
            })
    };
    let mut mh = json!({
        "delay_seconds": hc["delaySeconds"].as_f64().unwrap_or(15.0),
        "interval_seconds": hc["intervalSeconds"].as_f64().unwrap_or(10.0),
        "timeout_seconds": hc["timeoutSeconds"].as_f64().unwrap_or(20.0),
        "consecutive_failures": hc["maxConsecutiveFailures"].as_u64().unwrap_or(3),
        "grace_period_seconds": hc["gracePeriodSeconds"].as_f64().unwrap_or(300.0),
    });
    if let Some(h) = hc.get("http") {
        mh["type"] = json!("HTTP");
        mh["http"] = json!({"port": port_of(h["endpoint"].as_str().unwrap_or(""))?, "path": h["path"].as_str().unwrap_or("/"),
            "scheme": h["scheme"].as_str().unwrap_or("HTTP").to_ascii_lowercase()});
    } else if let Some(t) = hc.get("tcp") {
        mh["type"] = json!("TCP");
        mh["tcp"] = json!({"port": port_of(t["endpoint"].as_str().unwrap_or(""))?});
    } else if let Some(e) = hc.get("exec") {
        mh["type"] = json!("COMMAND");
        let cmd = &e["command"];
        mh["command"] = match (cmd["shell"].as_str(), cmd["argv"].as_array()) {
            (Some(sh), _) => json!({"shell": true, "value": sh}),
            (None, Some(argv)) => {
                json!({"shell": false, "value": argv.first().cloned().unwrap_or(Json::Null), "arguments": argv})
            }
            _ => return None,
        };
    } else {
        return None;
    }
    Some(mh)
}

/// The aggregate Mesos state of a pod instance from its containers' states.
pub fn aggregate_state(containers: &[ContainerTask]) -> String {
    let states: Vec<&str> = containers.iter().map(|c| c.state.as_str()).collect();
    let terminal = |s: &str| is_terminal_state(s);
    if !states.is_empty() && states.iter().all(|s| terminal(s)) {
        // The "worst" terminal state names the instance.
        for s in [
            "TASK_FAILED",
            "TASK_ERROR",
            "TASK_LOST",
            "TASK_GONE",
            "TASK_DROPPED",
            "TASK_KILLED",
        ] {
            if states.contains(&s) {
                return s.to_string();
            }
        }
        return states[0].to_string();
    }
    if states.iter().any(|s| terminal(s)) {
        return "TASK_KILLING".into();
    }
    for s in [
        "TASK_UNREACHABLE",
        "TASK_KILLING",
        "TASK_STAGING",
        "TASK_STARTING",
    ] {
        if states.contains(&s) {
            return s.to_string();
        }
    }
    if !states.is_empty() && states.iter().all(|s| *s == "TASK_RUNNING") {
        return "TASK_RUNNING".into();
    }
    "TASK_STAGING".into()
}

/// `PodInstanceStatus` JSON.
pub fn instance_status(pod: &Pod, inst: &Instance) -> Json {
    let status = match inst.state.as_str() {
        "TASK_RUNNING" if inst.healthy == Some(false) => "DEGRADED",
        "TASK_RUNNING" => "STABLE",
        "TASK_STAGING" => "STAGING",
        "TASK_STARTING" => "STAGING",
        "TASK_KILLING" | "TASK_UNREACHABLE" => "DEGRADED",
        _ => "PENDING",
    };
    let since = crate::time::format_millis(inst.started_at_ms.unwrap_or(inst.staged_at_ms));
    let host_endpoints = pod.host_endpoints();
    let containers: Vec<Json> = pod
        .containers
        .iter()
        .zip(&inst.containers)
        .enumerate()
        .map(|(ci, (c, ct))| {
            let endpoints: Vec<Json> = c
                .endpoints
                .iter()
                .map(|e| {
                    let mut j = json!({"name": e.name});
                    if let Some((_, p)) = host_endpoints
                        .iter()
                        .zip(&inst.ports)
                        .find(|((i, he), _)| *i == ci && he.name == e.name)
                    {
                        j["allocatedHostPort"] = json!(p);
                    }
                    if let Some(h) = ct.healthy {
                        j["healthy"] = json!(h);
                    }
                    j
                })
                .collect();
            json!({
                "name": c.name, "status": ct.state, "statusSince": since, "containerId": ct.task_id,
                "endpoints": endpoints, "conditions": [],
                "resources": {"cpus": c.resources.cpus, "mem": c.resources.mem, "disk": c.resources.disk, "gpus": c.resources.gpus},
                "lastUpdated": since, "lastChanged": since,
            })
        })
        .collect();
    let (cpus, mem, disk, gpus) = pod.instance_resources();
    json!({
        "id": inst.instance_id, "status": status, "statusSince": since,
        "agentHostname": inst.host, "agentId": inst.agent_id,
        "containers": containers, "networks": [], "conditions": [],
        "resources": {"cpus": cpus, "mem": mem, "disk": disk, "gpus": gpus},
        "specReference": format!("/v2/pods{}::versions/{}", pod.id, inst.version),
        "lastUpdated": since, "lastChanged": since,
    })
}

/// `PodStatus` JSON (`GET /v2/pods/{id}::status`).
pub fn pod_status(pod: &Pod, instances: &[&Instance]) -> Json {
    let live: Vec<&&Instance> = instances.iter().filter(|i| !i.is_terminal()).collect();
    let stable = live
        .iter()
        .filter(|i| i.state == "TASK_RUNNING" && i.healthy != Some(false))
        .count();
    let want = usize::try_from(pod.scaling.instances.max(0)).unwrap_or(0);
    let status = if want == 0 && live.is_empty() {
        "TERMINAL"
    } else if stable >= want && live.len() == want {
        "STABLE"
    } else {
        "DEGRADED"
    };
    let now = crate::time::now();
    json!({
        "id": pod.id, "spec": pod.to_json(), "status": status, "statusSince": now,
        "instances": live.iter().map(|i| instance_status(pod, i)).collect::<Vec<_>>(),
        "terminationHistory": [], "lastUpdated": now, "lastChanged": now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_app_view() {
        let p = Pod::from_json(json!({"id": "web", "containers": [
            {"name": "a", "resources": {"cpus": 0.5, "mem": 64}, "endpoints": [{"name": "http", "hostPort": 0}]},
            {"name": "b", "resources": {"cpus": 0.25, "mem": 32}}]}))
        .unwrap()
        .validate(&Features::default())
        .unwrap();
        assert_eq!(p.id, "/web");
        assert_eq!(p.scaling.instances, 1);
        assert_eq!(p.executor_resources.cpus, 0.1);
        assert_eq!(p.networks[0].mode, "host");
        let a = p.as_app();
        assert!((a.cpus - 0.85).abs() < 1e-9);
        assert!((a.mem - 128.0).abs() < 1e-9);
        assert_eq!(a.host_port_requests(), vec![0]);
        let j = p.to_json();
        assert_eq!(j["scheduling"]["backoff"]["backoffFactor"], 1.15);
        assert_eq!(
            j["containers"][0]["endpoints"][0]["protocol"],
            json!(["tcp"])
        );
    }

    #[test]
    fn aggregate() {
        let ct = |s: &str| ContainerTask {
            name: "c".into(),
            task_id: "t".into(),
            state: s.into(),
            healthy: None,
        };
        assert_eq!(
            aggregate_state(&[ct("TASK_RUNNING"), ct("TASK_RUNNING")]),
            "TASK_RUNNING"
        );
        assert_eq!(
            aggregate_state(&[ct("TASK_RUNNING"), ct("TASK_STAGING")]),
            "TASK_STAGING"
        );
        assert_eq!(
            aggregate_state(&[ct("TASK_RUNNING"), ct("TASK_FAILED")]),
            "TASK_KILLING"
        );
        assert_eq!(
            aggregate_state(&[ct("TASK_KILLED"), ct("TASK_FAILED")]),
            "TASK_FAILED"
        );
    }
}
