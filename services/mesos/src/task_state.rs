//! `TaskState` (with the Mesos task state machine), `TaskStatus` and its `Source` and
//! `Reason` enums.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::container::NetworkInfo;
use crate::error::ParseError;
use crate::ids::{AgentId, ContainerId, ExecutorId, TaskId};
use crate::labels::Labels;

macro_rules! task_states {
    ($( $(#[$m:meta])* $variant:ident = $text:literal ),+ $(,)?) => {
        /// `TaskState`, written as its proto name (`"TASK_RUNNING"`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum TaskState {
            $( $(#[$m])* #[serde(rename = $text)] $variant, )+
        }

        impl TaskState {
            /// Every state, in proto order.
            pub const ALL: &'static [TaskState] = &[ $( TaskState::$variant ),+ ];

            /// The proto/JSON name.
            pub fn as_str(self) -> &'static str {
                match self { $( TaskState::$variant => $text, )+ }
            }
        }

        impl FromStr for TaskState {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                match s {
                    $( $text => Ok(TaskState::$variant), )+
                    other => Err(ParseError::TaskState { text: other.to_owned() }),
                }
            }
        }
    };
}

task_states! {
    /// Accepted by the master/agent, not yet started.
    Staging = "TASK_STAGING",
    /// The executor is starting the task.
    Starting = "TASK_STARTING",
    /// Running.
    Running = "TASK_RUNNING",
    /// Being killed (sent only to frameworks with TASK_KILLING_STATE).
    Killing = "TASK_KILLING",
    /// Terminal: exited successfully.
    Finished = "TASK_FINISHED",
    /// Terminal: exited with an error.
    Failed = "TASK_FAILED",
    /// Terminal: killed on request.
    Killed = "TASK_KILLED",
    /// Terminal: the task description was invalid; it was never launched.
    Error = "TASK_ERROR",
    /// Terminal: lost (the state non-partition-aware frameworks see instead of
    /// DROPPED/UNREACHABLE/GONE/GONE_BY_OPERATOR/UNKNOWN).
    Lost = "TASK_LOST",
    /// Terminal: failed to launch because of a transient error; never started.
    Dropped = "TASK_DROPPED",
    /// The agent is partitioned away; the task may still be running.
    Unreachable = "TASK_UNREACHABLE",
    /// Terminal: the agent was removed; the task is certainly not running.
    Gone = "TASK_GONE",
    /// Terminal: the operator marked the agent gone.
    GoneByOperator = "TASK_GONE_BY_OPERATOR",
    /// The master does not know the task (reconciliation answer).
    Unknown = "TASK_UNKNOWN",
}

impl TaskState {
    /// Mesos `isTerminalState`: FINISHED, FAILED, KILLED, ERROR, LOST, DROPPED, GONE,
    /// GONE_BY_OPERATOR. UNREACHABLE and UNKNOWN are not terminal.
    pub fn is_terminal(self) -> bool {
        use TaskState::*;
        matches!(
            self,
            Finished | Failed | Killed | Error | Lost | Dropped | Gone | GoneByOperator
        )
    }

    /// The Mesos task state machine: whether a task in `self` may next report `next`.
    ///
    /// - nothing follows a terminal state;
    /// - STAGING is only ever the first state;
    /// - STARTING follows STAGING; RUNNING follows STAGING or STARTING; KILLING follows
    ///   any of those; a repeat of the same non-terminal state is allowed (health and
    ///   check updates re-send RUNNING);
    /// - ERROR and DROPPED only end a task that never started (STAGING);
    /// - FINISHED, FAILED, KILLED, LOST, GONE, GONE_BY_OPERATOR and UNREACHABLE may
    ///   follow any non-terminal state;
    /// - after UNREACHABLE (agent partitioned) or UNKNOWN (reconciliation did not
    ///   know the task), the task may come back in any state it could have reached
    ///   meanwhile: STARTING, RUNNING, KILLING, or any terminal state except ERROR;
    /// - UNKNOWN may be reported for any non-terminal task.
    pub fn can_transition_to(self, next: TaskState) -> bool {
        use TaskState::*;
        if self.is_terminal() {
            return false;
        }
        let limbo = matches!(self, Unreachable | Unknown);
        match next {
            Staging => false,
            Starting => matches!(self, Staging | Starting) || limbo,
            Running => matches!(self, Staging | Starting | Running) || limbo,
            Killing => matches!(self, Staging | Starting | Running | Killing) || limbo,
            Error => self == Staging,
            Dropped => self == Staging || limbo,
            Finished | Failed | Killed | Lost | Gone | GoneByOperator | Unreachable | Unknown => {
                true
            }
        }
    }

    /// True for the states Mesos only sends to PARTITION_AWARE frameworks.
    pub fn is_partition_aware_only(self) -> bool {
        use TaskState::*;
        matches!(
            self,
            Dropped | Unreachable | Gone | GoneByOperator | Unknown
        )
    }

    /// The state as a framework sees it: non-PARTITION_AWARE frameworks get TASK_LOST
    /// instead of DROPPED/UNREACHABLE/GONE/GONE_BY_OPERATOR/UNKNOWN; frameworks without
    /// TASK_KILLING_STATE get no KILLING update at all (`None`).
    pub fn for_framework(
        self,
        partition_aware: bool,
        task_killing_state: bool,
    ) -> Option<TaskState> {
        if self == TaskState::Killing && !task_killing_state {
            return None;
        }
        if !partition_aware && self.is_partition_aware_only() {
            return Some(TaskState::Lost);
        }
        Some(self)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

open_enum! {
    /// `TaskStatus.Source`: who generated the update.
    pub enum TaskStatusSource {
        /// `SOURCE_MASTER`
        Master = "SOURCE_MASTER",
        /// `SOURCE_AGENT`
        Agent = "SOURCE_AGENT",
        /// `SOURCE_EXECUTOR`
        Executor = "SOURCE_EXECUTOR",
    }
}

open_enum! {
    /// `TaskStatus.Reason` (all names of mesos.proto; newer ones are kept as `Other`).
    pub enum TaskStatusReason {
        /// `REASON_COMMAND_EXECUTOR_FAILED`
        CommandExecutorFailed = "REASON_COMMAND_EXECUTOR_FAILED",
        /// `REASON_CONTAINER_LAUNCH_FAILED`
        ContainerLaunchFailed = "REASON_CONTAINER_LAUNCH_FAILED",
        /// `REASON_CONTAINER_LIMITATION`
        ContainerLimitation = "REASON_CONTAINER_LIMITATION",
        /// `REASON_CONTAINER_LIMITATION_DISK`
        ContainerLimitationDisk = "REASON_CONTAINER_LIMITATION_DISK",
        /// `REASON_CONTAINER_LIMITATION_MEMORY` (OOM killed)
        ContainerLimitationMemory = "REASON_CONTAINER_LIMITATION_MEMORY",
        /// `REASON_CONTAINER_PREEMPTED`
        ContainerPreempted = "REASON_CONTAINER_PREEMPTED",
        /// `REASON_CONTAINER_UPDATE_FAILED`
        ContainerUpdateFailed = "REASON_CONTAINER_UPDATE_FAILED",
        /// `REASON_MAX_COMPLETION_TIME_REACHED`
        MaxCompletionTimeReached = "REASON_MAX_COMPLETION_TIME_REACHED",
        /// `REASON_EXECUTOR_REGISTRATION_TIMEOUT`
        ExecutorRegistrationTimeout = "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
        /// `REASON_EXECUTOR_REREGISTRATION_TIMEOUT`
        ExecutorReregistrationTimeout = "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
        /// `REASON_EXECUTOR_TERMINATED`
        ExecutorTerminated = "REASON_EXECUTOR_TERMINATED",
        /// `REASON_EXECUTOR_UNREGISTERED` (deprecated)
        ExecutorUnregistered = "REASON_EXECUTOR_UNREGISTERED",
        /// `REASON_FRAMEWORK_REMOVED`
        FrameworkRemoved = "REASON_FRAMEWORK_REMOVED",
        /// `REASON_GC_ERROR`
        GcError = "REASON_GC_ERROR",
        /// `REASON_INVALID_FRAMEWORKID`
        InvalidFrameworkId = "REASON_INVALID_FRAMEWORKID",
        /// `REASON_INVALID_OFFERS`
        InvalidOffers = "REASON_INVALID_OFFERS",
        /// `REASON_IO_SWITCHBOARD_EXITED`
        IoSwitchboardExited = "REASON_IO_SWITCHBOARD_EXITED",
        /// `REASON_MASTER_DISCONNECTED`
        MasterDisconnected = "REASON_MASTER_DISCONNECTED",
        /// `REASON_RECONCILIATION`
        Reconciliation = "REASON_RECONCILIATION",
        /// `REASON_RESOURCES_UNKNOWN`
        ResourcesUnknown = "REASON_RESOURCES_UNKNOWN",
        /// `REASON_AGENT_DISCONNECTED`
        AgentDisconnected = "REASON_AGENT_DISCONNECTED",
        /// `REASON_AGENT_REMOVED`
        AgentRemoved = "REASON_AGENT_REMOVED",
        /// `REASON_AGENT_REMOVED_BY_OPERATOR`
        AgentRemovedByOperator = "REASON_AGENT_REMOVED_BY_OPERATOR",
        /// `REASON_AGENT_REREGISTERED`
        AgentReregistered = "REASON_AGENT_REREGISTERED",
        /// `REASON_AGENT_RESTARTED`
        AgentRestarted = "REASON_AGENT_RESTARTED",
        /// `REASON_AGENT_UNKNOWN`
        AgentUnknown = "REASON_AGENT_UNKNOWN",
        /// `REASON_TASK_KILLED_DURING_LAUNCH`
        TaskKilledDuringLaunch = "REASON_TASK_KILLED_DURING_LAUNCH",
        /// `REASON_TASK_CHECK_STATUS_UPDATED`
        TaskCheckStatusUpdated = "REASON_TASK_CHECK_STATUS_UPDATED",
        /// `REASON_TASK_HEALTH_CHECK_STATUS_UPDATED`
        TaskHealthCheckStatusUpdated = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
        /// `REASON_TASK_GROUP_INVALID`
        TaskGroupInvalid = "REASON_TASK_GROUP_INVALID",
        /// `REASON_TASK_GROUP_UNAUTHORIZED`
        TaskGroupUnauthorized = "REASON_TASK_GROUP_UNAUTHORIZED",
        /// `REASON_TASK_INVALID`
        TaskInvalid = "REASON_TASK_INVALID",
        /// `REASON_TASK_UNAUTHORIZED`
        TaskUnauthorized = "REASON_TASK_UNAUTHORIZED",
        /// `REASON_TASK_UNKNOWN`
        TaskUnknown = "REASON_TASK_UNKNOWN",
    }
}

/// `TimeInfo` / `DurationInfo`: `{"nanoseconds": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Nanoseconds {
    /// Nanoseconds (since the epoch for a `TimeInfo`).
    pub nanoseconds: i64,
}

/// `ContainerStatus` of a task status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// The container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
    /// Networks and the IPs the container got (read by Mesos-DNS and l4lb).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<NetworkInfo>,
    /// PID of the executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_pid: Option<u32>,
    /// `cgroup_info` and other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

/// `TaskStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub task_id: TaskId,
    /// Its state.
    pub state: TaskState,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who generated the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TaskStatusSource>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<TaskStatusReason>,
    /// Executor data (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// The executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
    /// Update UUID (base64 of 16 bytes); absent means no acknowledgement is expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Health check result, if the task has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Container details (IPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_status: Option<ContainerStatus>,
    /// When the agent became unreachable (TASK_UNREACHABLE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_time: Option<Nanoseconds>,
    /// `check_status`, `limitation` and other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl TaskStatus {
    /// A status with only the task id and state set.
    pub fn new(task_id: TaskId, state: TaskState) -> Self {
        Self {
            task_id,
            state,
            message: None,
            source: None,
            reason: None,
            data: None,
            agent_id: None,
            executor_id: None,
            timestamp: None,
            uuid: None,
            healthy: None,
            labels: None,
            container_status: None,
            unreachable_time: None,
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), *s);
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<TaskState>(&json).unwrap(), *s);
        }
        assert_eq!(TaskState::ALL.len(), 14);
        let e = "TASK_BOGUS".parse::<TaskState>().unwrap_err();
        assert!(e.to_string().contains("TASK_BOGUS"));
        assert!(serde_json::from_str::<TaskState>("\"TASK_BOGUS\"").is_err());
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<_> = TaskState::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal.len(), 8);
        assert!(!TaskState::Unreachable.is_terminal());
        assert!(!TaskState::Unknown.is_terminal());
        assert!(!TaskState::Killing.is_terminal());
    }

    #[test]
    fn state_machine() {
        use TaskState::*;
        // Happy path and kill path.
        for (a, b) in [
            (Staging, Starting),
            (Starting, Running),
            (Running, Running),
            (Running, Killing),
            (Killing, Killed),
            (Running, Finished),
            (Staging, Error),
            (Staging, Dropped),
            (Running, Unreachable),
            (Unreachable, Running),
            (Unreachable, GoneByOperator),
            (Unreachable, Gone),
            (Running, Lost),
            (Unknown, Running),
        ] {
            assert!(a.can_transition_to(b), "{a} -> {b} should be allowed");
        }
        for (a, b) in [
            (Running, Staging),
            (Running, Starting),
            (Running, Error),
            (Killing, Running),
            (Finished, Running),
            (Killed, Killed),
            (Lost, Running),
            (Starting, Dropped),
            (Unreachable, Error),
        ] {
            assert!(!a.can_transition_to(b), "{a} -> {b} should be refused");
        }
        for t in TaskState::ALL.iter().filter(|s| s.is_terminal()) {
            assert!(TaskState::ALL.iter().all(|n| !t.can_transition_to(*n)));
        }
    }

    #[test]
    fn framework_view() {
        use TaskState::*;
        assert_eq!(Unreachable.for_framework(false, true), Some(Lost));
        assert_eq!(Unreachable.for_framework(true, true), Some(Unreachable));
        assert_eq!(Killing.for_framework(true, false), None);
        assert_eq!(Running.for_framework(false, false), Some(Running));
    }

    #[test]
    fn reasons_are_open() {
        let r: TaskStatusReason = serde_json::from_str("\"REASON_AGENT_REMOVED\"").unwrap();
        assert_eq!(r, TaskStatusReason::AgentRemoved);
        let r: TaskStatusReason = serde_json::from_str("\"REASON_SOMETHING_NEW\"").unwrap();
        assert_eq!(r, TaskStatusReason::Other("REASON_SOMETHING_NEW".into()));
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            "\"REASON_SOMETHING_NEW\""
        );
        for k in TaskStatusReason::KNOWN {
            assert_eq!(TaskStatusReason::from(k.as_str()), *k);
        }
    }
}
