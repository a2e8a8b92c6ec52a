//! `AgentInfo`: what an agent registers with.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::attributes::Attributes;
use crate::domain::DomainInfo;
use crate::ids::AgentId;
use crate::resources::Resources;

/// The default agent port.
pub const DEFAULT_AGENT_PORT: u16 = 5051;

/// `AgentInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Host name or IP the agent is reached at.
    pub hostname: String,
    /// Agent port (default 5051).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Total resources (normalised).
    #[serde(default)]
    pub resources: Resources,
    /// Attributes.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// Set by the master on registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<AgentId>,
    /// Fault domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainInfo>,
    /// Other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl AgentInfo {
    /// An agent at `hostname` with these resources.
    pub fn new(hostname: impl Into<String>, resources: Resources) -> Self {
        Self {
            hostname: hostname.into(),
            port: None,
            resources,
            attributes: Attributes::new(),
            id: None,
            domain: None,
            extra: Map::new(),
        }
    }

    /// The port (default 5051).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_AGENT_PORT)
    }
}
