//! Mesos v1 scheduler API wire types (JSON): the [`Call`] and [`Event`] envelopes,
//! [`Offer`], offer operations and filters, with the exact field names of
//! `scheduler.proto` / `mesos.proto` (`{"type":"ACCEPT","accept":{...}}`).
//!
//! Envelopes are structs with one optional field per type (as protobuf's JSON form is):
//! [`Call::validate`] checks that the field the type needs is there and names it when
//! it is not. Unknown fields are ignored when reading.

use basalt_mesos::{
    AgentId, AllocationInfo, Attributes, DomainInfo, ExecutorId, ExecutorInfo, FrameworkId,
    FrameworkInfo, KillPolicy, OfferId, Resource, Resources, TaskId, TaskInfo, TaskStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The scheduler API path.
pub const SCHEDULER_PATH: &str = "/api/v1/scheduler";
/// The header carrying a subscription's stream id.
pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";

/// `Filters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// Seconds during which the refused resources are not re-offered (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_seconds: Option<f64>,
}

/// `Call.Subscribe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The framework (with `id` set when re-subscribing).
    pub framework_info: FrameworkInfo,
    /// Roles to subscribe suppressed (1.9+).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_roles: Vec<String>,
}

/// `TaskGroupInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskGroupInfo {
    /// The tasks.
    #[serde(default)]
    pub tasks: Vec<TaskInfo>,
}

/// `Offer.Operation.Launch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    /// Tasks to launch.
    #[serde(default)]
    pub task_infos: Vec<TaskInfo>,
}

/// `Offer.Operation.LaunchGroup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    /// The (DEFAULT) executor.
    pub executor: ExecutorInfo,
    /// The tasks.
    pub task_group: TaskGroupInfo,
}

/// `Offer.Operation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// `LAUNCH`, `LAUNCH_GROUP`, `RESERVE`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Operation id (for operation feedback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Json>,
    /// LAUNCH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    /// LAUNCH_GROUP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchGroup>,
    /// RESERVE, UNRESERVE, CREATE, DESTROY, ... kept verbatim.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Json>,
}

/// `Call.Accept`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accept {
    /// Offers used (all on one agent).
    #[serde(default)]
    pub offer_ids: Vec<OfferId>,
    /// Operations, applied in order.
    #[serde(default)]
    pub operations: Vec<Operation>,
    /// Filter for the unused resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// `Call.Decline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decline {
    /// Offers declined.
    #[serde(default)]
    pub offer_ids: Vec<OfferId>,
    /// Filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// `Call.Revive` / `Call.Suppress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    /// Roles (empty: all the framework's roles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// `Call.Kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kill {
    /// The task.
    pub task_id: TaskId,
    /// Its agent, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// Kill policy override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// `Call.Shutdown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shutdown {
    /// The executor.
    pub executor_id: ExecutorId,
    /// Its agent.
    pub agent_id: AgentId,
}

/// `Call.Acknowledge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acknowledge {
    /// The agent of the task.
    pub agent_id: AgentId,
    /// The task.
    pub task_id: TaskId,
    /// The status uuid (base64).
    pub uuid: String,
}

/// `Call.Reconcile.Task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconcileTask {
    /// The task.
    pub task_id: TaskId,
    /// Its agent, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
}

/// `Call.Reconcile`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    /// Tasks; empty for implicit reconciliation.
    #[serde(default)]
    pub tasks: Vec<ReconcileTask>,
}

/// `Call.Message` and `Event.Message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The agent.
    pub agent_id: AgentId,
    /// The executor.
    pub executor_id: ExecutorId,
    /// Data (base64).
    #[serde(default)]
    pub data: String,
}

/// The call types this master knows.
pub const CALL_TYPES: &[&str] = &[
    "SUBSCRIBE",
    "TEARDOWN",
    "ACCEPT",
    "DECLINE",
    "REVIVE",
    "SUPPRESS",
    "KILL",
    "SHUTDOWN",
    "ACKNOWLEDGE",
    "RECONCILE",
    "MESSAGE",
    "REQUEST",
];

/// The scheduler `Call` envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The caller (required for every call but SUBSCRIBE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<FrameworkId>,
    /// The call type (`SUBSCRIBE`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// SUBSCRIBE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    /// ACCEPT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Accept>,
    /// DECLINE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Decline>,
    /// REVIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revive: Option<Roles>,
    /// SUPPRESS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress: Option<Roles>,
    /// KILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    /// SHUTDOWN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<Shutdown>,
    /// ACKNOWLEDGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<Acknowledge>,
    /// RECONCILE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
    /// MESSAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
}

impl Call {
    /// A call of `kind` with no body.
    pub fn new(kind: &str, framework_id: Option<FrameworkId>) -> Call {
        Call {
            framework_id,
            kind: kind.to_string(),
            subscribe: None,
            accept: None,
            decline: None,
            revive: None,
            suppress: None,
            kill: None,
            shutdown: None,
            acknowledge: None,
            reconcile: None,
            message: None,
        }
    }

    /// Checks the envelope: a known type, the body field it needs, `framework_id`
    /// present (except SUBSCRIBE). The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !CALL_TYPES.contains(&self.kind.as_str()) {
            return Err(format!("unknown or unsupported call type {:?}", self.kind));
        }
        if self.kind != "SUBSCRIBE" && self.framework_id.is_none() {
            return Err(format!(
                "field 'framework_id' is required for a {} call",
                self.kind
            ));
        }
        let missing = |field: &str| Err(format!("field '{field}' is required for {}", self.kind));
        match self.kind.as_str() {
            "SUBSCRIBE" => match &self.subscribe {
                None => missing("subscribe"),
                Some(s) => {
                    if s.framework_info.user.is_empty() {
                        return Err(
                            "field 'subscribe.framework_info.user' must not be empty".into()
                        );
                    }
                    if s.framework_info.name.is_empty() {
                        return Err(
                            "field 'subscribe.framework_info.name' must not be empty".into()
                        );
                    }
                    for r in s.framework_info.effective_roles() {
                        basalt_mesos::validate_role(r)
                            .map_err(|e| format!("field 'subscribe.framework_info.roles': {e}"))?;
                    }
                    if let (Some(top), Some(inner)) = (&self.framework_id, &s.framework_info.id)
                        && top != inner
                    {
                        return Err(format!(
                            "'framework_id' {top} differs from 'subscribe.framework_info.id' {inner}"
                        ));
                    }
                    Ok(())
                }
            },
            "ACCEPT" if self.accept.is_none() => missing("accept"),
            "DECLINE" if self.decline.is_none() => missing("decline"),
            "KILL" if self.kill.is_none() => missing("kill"),
            "SHUTDOWN" if self.shutdown.is_none() => missing("shutdown"),
            "ACKNOWLEDGE" if self.acknowledge.is_none() => missing("acknowledge"),
            "RECONCILE" if self.reconcile.is_none() => missing("reconcile"),
            "MESSAGE" if self.message.is_none() => missing("message"),
            _ => Ok(()),
        }
    }
}

/// `URL` of an offer's agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Url {
    /// `http`.
    pub scheme: String,
    /// `{hostname, ip, port}`.
    pub address: Json,
    /// Path (`/slave(1)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `Offer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Offer id.
    pub id: OfferId,
    /// The framework offered to.
    pub framework_id: FrameworkId,
    /// The agent.
    pub agent_id: AgentId,
    /// Agent host name.
    pub hostname: String,
    /// Agent URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    /// Fault domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainInfo>,
    /// Resources offered (each with `allocation_info`).
    #[serde(default)]
    pub resources: Resources,
    /// Agent attributes.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// Executors of this framework running on the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executor_ids: Vec<ExecutorId>,
    /// The role offered in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
}

/// `Event.Subscribed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The framework id assigned (or confirmed).
    pub framework_id: FrameworkId,
    /// Seconds between HEARTBEAT events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<f64>,
    /// `MasterInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_info: Option<Json>,
}

/// `Event.Offers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offers {
    /// The offers.
    #[serde(default)]
    pub offers: Vec<Offer>,
}

/// `Event.Rescind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rescind {
    /// The offer no longer valid.
    pub offer_id: OfferId,
}

/// `Event.Update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// The status.
    pub status: TaskStatus,
}

/// `Event.Failure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
    /// The executor (absent: the agent was lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<ExecutorId>,
    /// Exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

/// `Event.Error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// What went wrong.
    pub message: String,
}

/// `OperationStatus` (of an offer operation with an `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationStatus {
    /// The operation's `id` as the framework sent it (`{"value":...}`).
    pub operation_id: Json,
    /// `OPERATION_ERROR`, `OPERATION_FINISHED`, ...
    pub state: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The agent, when the operation reached one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<AgentId>,
}

/// `Event.UpdateOperationStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateOperationStatus {
    /// The status.
    pub status: OperationStatus,
}

/// The scheduler `Event` envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `SUBSCRIBED`, `OFFERS`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// SUBSCRIBED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    /// OFFERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offers: Option<Offers>,
    /// RESCIND.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescind: Option<Rescind>,
    /// UPDATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    /// MESSAGE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// FAILURE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// ERROR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorEvent>,
    /// UPDATE_OPERATION_STATUS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_operation_status: Option<UpdateOperationStatus>,
}

impl Event {
    fn bare(kind: &str) -> Event {
        Event {
            kind: kind.to_string(),
            subscribed: None,
            offers: None,
            rescind: None,
            update: None,
            message: None,
            failure: None,
            error: None,
            update_operation_status: None,
        }
    }

    /// HEARTBEAT.
    pub fn heartbeat() -> Event {
        Event::bare("HEARTBEAT")
    }

    /// SUBSCRIBED.
    pub fn subscribed(s: Subscribed) -> Event {
        Event {
            subscribed: Some(s),
            ..Event::bare("SUBSCRIBED")
        }
    }

    /// OFFERS.
    pub fn offers(offers: Vec<Offer>) -> Event {
        Event {
            offers: Some(Offers { offers }),
            ..Event::bare("OFFERS")
        }
    }

    /// RESCIND.
    pub fn rescind(offer_id: OfferId) -> Event {
        Event {
            rescind: Some(Rescind { offer_id }),
            ..Event::bare("RESCIND")
        }
    }

    /// UPDATE.
    pub fn update(status: TaskStatus) -> Event {
        Event {
            update: Some(Update { status }),
            ..Event::bare("UPDATE")
        }
    }

    /// MESSAGE.
    pub fn message(m: Message) -> Event {
        Event {
            message: Some(m),
            ..Event::bare("MESSAGE")
        }
    }

    /// FAILURE.
    pub fn failure(f: Failure) -> Event {
        Event {
            failure: Some(f),
            ..Event::bare("FAILURE")
        }
    }

    /// UPDATE_OPERATION_STATUS with `OPERATION_ERROR` for a dropped operation (Mesos
    /// sets neither an agent id nor a uuid on these: nothing to acknowledge).
    pub fn operation_error(operation_id: Json, message: impl Into<String>) -> Event {
        Event {
            update_operation_status: Some(UpdateOperationStatus {
                status: OperationStatus {
                    operation_id,
                    state: "OPERATION_ERROR".into(),
                    message: Some(message.into()),
                    agent_id: None,
                },
            }),
            ..Event::bare("UPDATE_OPERATION_STATUS")
        }
    }

    /// ERROR (`{"type":"ERROR","error":{"message":...}}`).
    pub fn error(message: impl Into<String>) -> Event {
        Event {
            error: Some(ErrorEvent {
                message: message.into(),
            }),
            ..Event::bare("ERROR")
        }
    }
}

/// Resources sent by a framework, as a normalised set with `allocation_info` filled in
/// from `role` where missing (what Mesos' master does in ACCEPT).
pub fn with_allocation_role(resources: &[Resource], role: &str) -> Resources {
    resources
        .iter()
        .cloned()
        .map(|mut r| {
            if r.allocation_info
                .as_ref()
                .and_then(|a| a.role.as_ref())
                .is_none()
            {
                r.allocation_info = Some(AllocationInfo::new(role));
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_validation_names_fields() {
        let c: Call =
            serde_json::from_str(r#"{"type":"ACCEPT","framework_id":{"value":"f"}}"#).unwrap();
        assert!(c.validate().unwrap_err().contains("'accept'"));
        let c: Call =
            serde_json::from_str(r#"{"type":"DECLINE","decline":{"offer_ids":[]}}"#).unwrap();
        assert!(c.validate().unwrap_err().contains("'framework_id'"));
        let c: Call = serde_json::from_str(r#"{"type":"BOGUS"}"#).unwrap();
        assert!(c.validate().unwrap_err().contains("BOGUS"));
        let c: Call = serde_json::from_str(
            r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}"#,
        )
        .unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn error_event_shape() {
        let j = serde_json::to_value(Event::error("boom")).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"type":"ERROR","error":{"message":"boom"}})
        );
        let j = serde_json::to_value(Event::heartbeat()).unwrap();
        assert_eq!(j, serde_json::json!({"type":"HEARTBEAT"}));
    }
}
