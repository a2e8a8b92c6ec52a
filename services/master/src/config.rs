//! [`MasterConfig`]: the master's settings (Mesos flag defaults).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use basalt_store::StoreConfig;

use crate::error::MasterError;

/// Mesos' default `--agent_ping_timeout`.
pub const DEFAULT_AGENT_PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Mesos' default `--max_agent_ping_timeouts`.
pub const DEFAULT_MAX_AGENT_PING_TIMEOUTS: u32 = 5;
/// The master's default scheduler heartbeat interval (Mesos: 15 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
/// The default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:5050";
/// The version this master reports (`/version`, state `version`): the Mesos release
/// whose APIs it speaks.
pub const MESOS_VERSION: &str = "1.8.1";

/// Settings of one master process.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where to listen (default `0.0.0.0:5050`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// `host:port` other nodes reach this master at (what followers redirect to). Default:
    /// the bound address.
    pub advertised_address: Option<String>,
    /// How to reach etcd.
    pub store: StoreConfig,
    /// Lease TTL of the leadership (how fast a successor takes over a dead leader).
    pub election_ttl: Duration,
    /// Mesos `--agent_ping_timeout`.
    pub agent_ping_timeout: Duration,
    /// Mesos `--max_agent_ping_timeouts`: silent for timeout × this → unreachable.
    pub max_agent_ping_timeouts: u32,
    /// Heartbeat interval of scheduler streams (and of agent PINGs / HEARTBEATs).
    pub heartbeat_interval: Duration,
    /// Mesos `--offer_timeout`: outstanding offers are rescinded after it (None: never).
    pub offer_timeout: Option<Duration>,
    /// Agents with GPUs are offered only to GPU_RESOURCES frameworks.
    pub gpus_are_scarce: bool,
    /// The agent join credential; `None` accepts any agent (development only).
    pub join_credential: Option<String>,
    /// Mesos `--weights`.
    pub role_weights: BTreeMap<String, f64>,
    /// How often the master's timer runs (timeouts, retries, allocation).
    pub tick: Duration,
    /// First resend delay of an unacknowledged status update (doubles up to 10 min).
    pub status_retry_initial: Duration,
    /// Cluster name shown in `/master/state`.
    pub cluster: Option<String>,
}

impl MasterConfig {
    /// Mesos defaults, with this store.
    pub fn new(store: StoreConfig) -> MasterConfig {
        MasterConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5050)),
            advertised_address: None,
            store,
            election_ttl: Duration::from_secs(2),
            agent_ping_timeout: DEFAULT_AGENT_PING_TIMEOUT,
            max_agent_ping_timeouts: DEFAULT_MAX_AGENT_PING_TIMEOUTS,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            offer_timeout: None,
            gpus_are_scarce: true,
            join_credential: None,
            role_weights: BTreeMap::new(),
            tick: Duration::from_millis(100),
            status_retry_initial: Duration::from_secs(10),
            cluster: None,
        }
    }

    /// How long an agent may be silent before it is unreachable.
    pub fn agent_unreachable_after(&self) -> Duration {
        self.agent_ping_timeout * self.max_agent_ping_timeouts.max(1)
    }

    /// Checks the settings; errors name the field.
    pub fn validate(&self) -> Result<(), MasterError> {
        let bad = |field: &'static str, reason: String| MasterError::Config { field, reason };
        if self.agent_ping_timeout.is_zero() {
            return Err(bad("agent_ping_timeout", "must be > 0".into()));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(bad("heartbeat_interval", "must be > 0".into()));
        }
        if self.tick.is_zero() {
            return Err(bad("tick", "must be > 0".into()));
        }
        if self.election_ttl < Duration::from_secs(1) {
            return Err(bad("election_ttl", "must be at least 1 s".into()));
        }
        if let Some(c) = &self.join_credential
            && c.is_empty()
        {
            return Err(bad("join_credential", "must not be empty".into()));
        }
        for (role, w) in &self.role_weights {
            basalt_mesos::validate_role(role).map_err(|e| bad("role_weights", e.to_string()))?;
            if !w.is_finite() || *w <= 0.0 {
                return Err(bad(
                    "role_weights",
                    format!("weight {w} of role {role:?} must be > 0"),
                ));
            }
        }
        if let Some(a) = &self.advertised_address
            && !a.contains(':')
        {
            return Err(bad("advertised_address", format!("{a:?} is not host:port")));
        }
        self.store
            .validate()
            .map_err(|e| bad("store", e.to_string()))
    }
}
