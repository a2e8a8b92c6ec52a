//! Mesos ID messages, each `{"value":"..."}` in JSON.

id_type!(
    /// `FrameworkID`: assigned by the master on first SUBSCRIBE.
    FrameworkId
);
id_type!(
    /// `AgentID` (`SlaveID` in older Mesos): assigned by the master on registration.
    AgentId
);
id_type!(
    /// `TaskID`: chosen by the framework, unique within it.
    TaskId
);
id_type!(
    /// `OfferID`: assigned by the master.
    OfferId
);
id_type!(
    /// `ExecutorID`: chosen by the framework (the command executor uses the task id).
    ExecutorId
);
id_type!(
    /// `ResourceProviderID`.
    ResourceProviderId
);
id_type!(
    /// `OperationID`: chosen by the framework for operation feedback.
    OperationId
);
id_type!(
    /// `MasterInfo.id`-style plain ID used for masters.
    MasterId
);

/// `ContainerID`: `{"value":"...","parent":{...}}` (nested containers have a parent).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct ContainerId {
    /// The opaque ID string.
    pub value: String,
    /// The parent container of a nested container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<ContainerId>>,
}

impl ContainerId {
    /// A top-level container ID.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            parent: None,
        }
    }
}

impl std::fmt::Display for ContainerId {
    /// `parent.child` like Mesos.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.parent {
            write!(f, "{p}.")?;
        }
        f.write_str(&self.value)
    }
}
