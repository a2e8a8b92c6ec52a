//! `FrameworkInfo` and framework capabilities.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::ids::FrameworkId;
use crate::labels::Labels;
use crate::roles::DEFAULT_ROLE;

open_enum! {
    /// `FrameworkInfo.Capability.Type`.
    pub enum CapabilityType {
        /// `REVOCABLE_RESOURCES`: may be offered revocable resources.
        RevocableResources = "REVOCABLE_RESOURCES",
        /// `TASK_KILLING_STATE`: receives TASK_KILLING.
        TaskKillingState = "TASK_KILLING_STATE",
        /// `GPU_RESOURCES`: may be offered agents with GPUs.
        GpuResources = "GPU_RESOURCES",
        /// `SHARED_RESOURCES`: may be offered shared resources.
        SharedResources = "SHARED_RESOURCES",
        /// `PARTITION_AWARE`: sees UNREACHABLE/GONE/... instead of LOST.
        PartitionAware = "PARTITION_AWARE",
        /// `MULTI_ROLE`: uses `roles` instead of `role`.
        MultiRole = "MULTI_ROLE",
        /// `RESERVATION_REFINEMENT`: understands `reservations` stacks.
        ReservationRefinement = "RESERVATION_REFINEMENT",
        /// `REGION_AWARE`: may be offered agents in other regions.
        RegionAware = "REGION_AWARE",
    }
}

/// `{"type":"MULTI_ROLE"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capability {
    /// The capability.
    #[serde(rename = "type")]
    pub kind: CapabilityType,
}

impl From<CapabilityType> for Capability {
    fn from(kind: CapabilityType) -> Self {
        Self { kind }
    }
}

/// `FrameworkInfo`, as sent in SUBSCRIBE and shown in `/master/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// User tasks run as by default.
    pub user: String,
    /// Framework name (e.g. `marathon`).
    pub name: String,
    /// Set by the master on first subscription; re-sent on re-subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<FrameworkId>,
    /// Seconds the master waits for a disconnected framework (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_timeout: Option<f64>,
    /// Agents checkpoint its tasks (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<bool>,
    /// Single role (deprecated; default `*`; ignored with MULTI_ROLE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Roles (with MULTI_ROLE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Scheduler host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Authenticated principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Web UI URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    /// Capabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// `offer_filters` and other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl FrameworkInfo {
    /// A framework with only `user` and `name` set.
    pub fn new(user: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            name: name.into(),
            id: None,
            failover_timeout: None,
            checkpoint: None,
            role: None,
            roles: Vec::new(),
            hostname: None,
            principal: None,
            webui_url: None,
            capabilities: Vec::new(),
            labels: None,
            extra: Map::new(),
        }
    }

    /// True when the framework declares `kind`.
    pub fn has_capability(&self, kind: &CapabilityType) -> bool {
        self.capabilities.iter().any(|c| c.kind == *kind)
    }

    /// The roles the framework subscribes with (Mesos `getRoles`): `roles` with
    /// MULTI_ROLE, otherwise `[role]` (default `*`).
    pub fn effective_roles(&self) -> Vec<&str> {
        if self.has_capability(&CapabilityType::MultiRole) {
            self.roles.iter().map(String::as_str).collect()
        } else {
            vec![self.role.as_deref().unwrap_or(DEFAULT_ROLE)]
        }
    }

    /// `failover_timeout` in seconds (default 0: torn down on disconnect).
    pub fn failover_timeout_secs(&self) -> f64 {
        self.failover_timeout.unwrap_or(0.0)
    }

    /// `checkpoint` (default false).
    pub fn checkpoints(&self) -> bool {
        self.checkpoint.unwrap_or(false)
    }
}
