//! The internal master ↔ agent protocol (Basalt's replacement for libprocess messages).
//!
//! ## Transport
//!
//! Everything is JSON over HTTP to the leading master at [`AGENT_API_PATH`]
//! (`POST /api/basalt/agent/v1`), in the style of the v1 scheduler API:
//!
//! - Every request carries `Authorization: Bearer <join credential>` (genconf's
//!   `etc/join-credential`). The master compares it in constant time and answers
//!   `401` with a plain-text reason (`missing Authorization header`,
//!   `Authorization is not a Bearer token`, `invalid join credential`) otherwise.
//! - A non-leading master answers `307` with `Location: //<leader>/api/basalt/agent/v1`
//!   (or `503 No leader elected`); the agent re-sends to the leader.
//! - **SUBSCRIBE** (`{"type":"SUBSCRIBE","subscribe":{...}}`, [`Subscribe`]) opens the
//!   agent's event stream: `200`, `Content-Type: application/json`, RecordIO-framed
//!   [`AgentEvent`]s (`<len>\n<json>`), header [`AGENT_STREAM_ID_HEADER`]. A first
//!   registration leaves `agent_id` out; a re-registration (agent restart or master
//!   failover) sends the `agent_id` it was given plus every task it runs
//!   ([`RunningTask`]) and the frameworks they belong to. The first event is
//!   `REGISTERED` with the agent id and the heartbeat interval. A new SUBSCRIBE of the
//!   same agent closes the previous stream.
//! - Every other call is a separate POST with the stream id header, answered `202` once
//!   the master has applied it and etcd has it (so a `202` for UPDATE means the status
//!   is durable; the agent retries an UPDATE until it gets one). A wrong or missing
//!   stream id gets `400`; an unknown agent id `404`.
//!
//! ## Calls (agent → master), [`AgentCall`]
//!
//! | type | body | meaning |
//! |---|---|---|
//! | `SUBSCRIBE` | `subscribe{agent_info, agent_id?, tasks[], frameworks[]}` | register / re-register |
//! | `UPDATE` | `update{framework_id, status}` | a task status; `status.uuid` (base64) set |
//! | `HEARTBEAT` | — | liveness, every `heartbeat_interval_seconds` |
//! | `MESSAGE` | `message{framework_id, executor_id, data}` | executor → framework message |
//!
//! ## Events (master → agent), [`AgentEvent`]
//!
//! | type | body | meaning |
//! |---|---|---|
//! | `REGISTERED` | `registered{agent_id, heartbeat_interval_seconds, master_id}` | first event |
//! | `LAUNCH` | `launch{framework_info, task}` | launch one task (command or custom executor) |
//! | `LAUNCH_GROUP` | `launch_group{framework_info, executor, task_group}` | launch a task group |
//! | `KILL` | `kill{framework_id, task_id, kill_policy?}` | kill a task |
//! | `ACKNOWLEDGE` | `acknowledge{framework_id, task_id, uuid}` | the framework acknowledged this status |
//! | `SHUTDOWN_FRAMEWORK` | `shutdown_framework{framework_id}` | the framework is gone: kill all its tasks |
//! | `SHUTDOWN_EXECUTOR` | `shutdown_executor{framework_id, executor_id}` | scheduler SHUTDOWN call |
//! | `MESSAGE` | `message{framework_id, executor_id, data}` | framework → executor message |
//! | `CHECKPOINT_RESOURCES` | `checkpoint_resources[]` | the agent's total after RESERVE/UNRESERVE/CREATE/DESTROY |
//! | `SHUTDOWN` | — | the operator marked the agent gone: kill everything and stop (a later SUBSCRIBE with this agent id gets `403`) |
//! | `PING` | — | master heartbeat, every `heartbeat_interval_seconds` |
//!
//! The master is the source of truth for an agent's total once operations changed it:
//! a re-registering agent's reported total is replaced by the checkpointed one (sent
//! again in `REGISTERED.checkpointed_resources`).
//!
//! ## Liveness
//!
//! The master marks an agent unreachable when it has heard nothing from it (SUBSCRIBE,
//! calls) for `agent_ping_timeout × max_agent_ping_timeouts` (Mesos' 15 s × 5 by
//! default). Its tasks then go to `TASK_UNREACHABLE` (`TASK_LOST` for frameworks without
//! PARTITION_AWARE) and its resources leave the allocator; a later re-registration
//! re-admits it and reconciles its tasks.

use basalt_mesos::{
    AgentId, AgentInfo, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, KillPolicy, TaskId,
    TaskInfo, TaskStatus,
};
use serde::{Deserialize, Serialize};

use crate::api::TaskGroupInfo;

/// The agent API path.
pub const AGENT_API_PATH: &str = "/api/basalt/agent/v1";
/// Header with the agent's stream id on calls after SUBSCRIBE.
pub const AGENT_STREAM_ID_HEADER: &str = "Basalt-Agent-Stream-Id";

/// A task an agent reports when re-registering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningTask {
    /// Its framework.
    pub framework_id: FrameworkId,
    /// The task as launched.
    pub task: TaskInfo,
    /// Its latest status (state, and uuid when not yet acknowledged).
    pub status: TaskStatus,
}

/// `SUBSCRIBE` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The agent's description (host, port, total resources, attributes, domain).
    pub agent_info: AgentInfo,
    /// Set when re-registering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// Tasks the agent runs (re-registration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<RunningTask>,
    /// Frameworks of those tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frameworks: Vec<FrameworkInfo>,
}

/// `UPDATE` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The task's framework.
    pub framework_id: FrameworkId,
    /// The status (with `uuid`).
    pub status: TaskStatus,
}

/// `MESSAGE` body (both directions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkMessage {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The executor.
    pub executor_id: ExecutorId,
    /// Data (base64).
    #[serde(default)]
    pub data: String,
}

/// An agent → master call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCall {
    /// `SUBSCRIBE`, `UPDATE`, `HEARTBEAT`, `MESSAGE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The caller (all calls but SUBSCRIBE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// SUBSCRIBE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    /// UPDATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<StatusUpdate>,
    /// MESSAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<FrameworkMessage>,
}

impl AgentCall {
    /// A call of `kind` with no body.
    pub fn new(kind: &str, agent_id: Option<AgentId>) -> AgentCall {
        AgentCall {
            kind: kind.to_string(),
            agent_id,
            subscribe: None,
            update: None,
            message: None,
        }
    }

    /// Checks the envelope; the error names the missing field.
    pub fn validate(&self) -> Result<(), String> {
        let need = |present: bool, field: &str| {
            if present {
                Ok(())
            } else {
                Err(format!("field '{field}' is required for {}", self.kind))
            }
        };
        match self.kind.as_str() {
            "SUBSCRIBE" => {
                need(self.subscribe.is_some(), "subscribe")?;
                if let Some(s) = &self.subscribe {
                    if s.agent_info.hostname.is_empty() {
                        return Err(
                            "field 'subscribe.agent_info.hostname' must not be empty".into()
                        );
                    }
                    s.agent_info
                        .resources
                        .validate()
                        .map_err(|e| format!("field 'subscribe.agent_info.resources': {e}"))?;
                }
                Ok(())
            }
            "UPDATE" => {
                need(self.agent_id.is_some(), "agent_id")?;
                need(self.update.is_some(), "update")?;
                if let Some(u) = &self.update {
                    need(u.status.uuid.is_some(), "update.status.uuid")?;
                }
                Ok(())
            }
            "HEARTBEAT" => need(self.agent_id.is_some(), "agent_id"),
            "MESSAGE" => {
                need(self.agent_id.is_some(), "agent_id")?;
                need(self.message.is_some(), "message")
            }
            other => Err(format!("unknown agent call type {other:?}")),
        }
    }
}

/// `REGISTERED` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    /// The agent's id (new, or the one it re-registered with).
    pub agent_id: AgentId,
    /// How often the agent must send HEARTBEAT.
    pub heartbeat_interval_seconds: f64,
    /// The leading master's id.
    pub master_id: String,
    /// The agent's total as the master keeps it (after offer operations), if it differs
    /// from what the agent reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpointed_resources: Option<basalt_mesos::Resources>,
}

/// `LAUNCH` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTask {
    /// The framework (with id).
    pub framework_info: FrameworkInfo,
    /// The task.
    pub task: TaskInfo,
}

/// `LAUNCH_GROUP` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchTaskGroup {
    /// The framework (with id).
    pub framework_info: FrameworkInfo,
    /// The default executor.
    pub executor: ExecutorInfo,
    /// The tasks.
    pub task_group: TaskGroupInfo,
}

/// `KILL` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillTask {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task_id: TaskId,
    /// Kill policy override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// `ACKNOWLEDGE` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The task.
    pub task_id: TaskId,
    /// The acknowledged status uuid.
    pub uuid: String,
}

/// `SHUTDOWN_FRAMEWORK` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutdownFramework {
    /// The framework.
    pub framework_id: FrameworkId,
}

/// `SHUTDOWN_EXECUTOR` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutdownExecutor {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The executor.
    pub executor_id: ExecutorId,
}

/// A master → agent event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// REGISTERED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<Registered>,
    /// LAUNCH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchTask>,
    /// LAUNCH_GROUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchTaskGroup>,
    /// KILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<KillTask>,
    /// ACKNOWLEDGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<Acknowledged>,
    /// SHUTDOWN_FRAMEWORK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_framework: Option<ShutdownFramework>,
    /// SHUTDOWN_EXECUTOR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_executor: Option<ShutdownExecutor>,
    /// MESSAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<FrameworkMessage>,
    /// CHECKPOINT_RESOURCES: the agent's total with dynamic reservations and volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_resources: Option<basalt_mesos::Resources>,
}

impl AgentEvent {
    /// An event of `kind` with no body.
    pub fn bare(kind: &str) -> AgentEvent {
        AgentEvent {
            kind: kind.to_string(),
            registered: None,
            launch: None,
            launch_group: None,
            kill: None,
            acknowledge: None,
            shutdown_framework: None,
            shutdown_executor: None,
            message: None,
            checkpoint_resources: None,
        }
    }
}
