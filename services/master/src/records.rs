//! What the leading master keeps in etcd (see `basalt_store::keys` for the layout):
//! one [`AgentRecord`] per agent, one [`FrameworkRecord`] per framework and one
//! [`TaskRecord`] per task not yet both terminal and acknowledged. A change is
//! acknowledged to its sender only after the write committed, and every write is fenced
//! by the leadership (`require_leadership`), so a deposed leader cannot write.

use basalt_mesos::{
    AgentId, AgentInfo, ExecutorInfo, FrameworkId, FrameworkInfo, Resources, TaskInfo, TaskState,
    TaskStatus,
};
use serde::{Deserialize, Serialize};

/// `master/agents/<agent_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// The agent's info, `id` set.
    pub info: AgentInfo,
    /// When it first registered (epoch seconds).
    pub registered_time: f64,
    /// When it last re-registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<f64>,
    /// Set while the agent is unreachable (epoch seconds it became so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_time: Option<f64>,
    /// `info.resources` was changed by offer operations (dynamic reservations,
    /// volumes): it, not the total the agent reports, is the truth.
    #[serde(default)]
    pub checkpointed: bool,
    /// Set when an operator marked the agent gone (MARK_AGENT_GONE): it may never
    /// register again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_time: Option<f64>,
}

/// `master/frameworks/<framework_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    /// The framework's info, `id` set.
    pub info: FrameworkInfo,
    /// When it first subscribed.
    pub registered_time: f64,
    /// When it last re-subscribed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reregistered_time: Option<f64>,
}

/// A status update not yet acknowledged by the framework.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The status, `uuid` set.
    pub status: TaskStatus,
    /// True when the agent generated it (the acknowledgement is forwarded to the agent);
    /// false for master-generated updates (unreachable, lost, reconciled).
    pub from_agent: bool,
}

/// `master/tasks/<framework_id>/<task_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The framework.
    pub framework_id: FrameworkId,
    /// The agent.
    pub agent_id: AgentId,
    /// The task as launched (resources with `allocation_info`).
    pub task: TaskInfo,
    /// The executor of a task group (LAUNCH_GROUP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_executor: Option<ExecutorInfo>,
    /// The role the task's resources were allocated in.
    pub role: String,
    /// The latest state.
    pub state: TaskState,
    /// Status history, oldest first (bounded).
    #[serde(default)]
    pub statuses: Vec<TaskStatus>,
    /// Updates not yet acknowledged, oldest first; the first is the one in flight.
    #[serde(default)]
    pub pending: Vec<PendingUpdate>,
}

impl TaskRecord {
    /// The resources the task itself holds (its executor's are accounted per executor).
    pub fn resources(&self) -> Resources {
        self.task.resource_set()
    }

    /// The custom or group executor, if any (none: the command executor).
    pub fn executor(&self) -> Option<&ExecutorInfo> {
        self.task.executor.as_ref().or(self.group_executor.as_ref())
    }

    /// The latest status.
    pub fn latest_status(&self) -> Option<&TaskStatus> {
        self.statuses.last()
    }
}
