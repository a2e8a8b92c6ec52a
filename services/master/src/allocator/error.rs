//! [`AllocatorError`]: every way an allocator call can be refused. A refused call
//! leaves the allocator unchanged.

use basalt_mesos::{AgentId, FrameworkId, ParseError};

/// Why an allocator call was refused; names the framework, agent or role involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllocatorError {
    /// `add_framework` for a framework id already added.
    #[error("framework {framework} is already added to the allocator")]
    FrameworkExists {
        /// The framework.
        framework: FrameworkId,
    },
    /// A call named a framework the allocator does not know.
    #[error("framework {framework} is not known to the allocator")]
    UnknownFramework {
        /// The framework.
        framework: FrameworkId,
    },
    /// `add_agent` for an agent id already added.
    #[error("agent {agent} is already added to the allocator")]
    AgentExists {
        /// The agent.
        agent: AgentId,
    },
    /// A call named an agent the allocator does not know.
    #[error("agent {agent} is not known to the allocator")]
    UnknownAgent {
        /// The agent.
        agent: AgentId,
    },
    /// SUPPRESS/REVIVE named a role the framework is not subscribed to.
    #[error("framework {framework} is not subscribed to role '{role}'")]
    NotSubscribed {
        /// The framework.
        framework: FrameworkId,
        /// The role.
        role: String,
    },
    /// A role name (framework role, allocation role, weight) is not a valid Mesos role.
    #[error("invalid role '{role}': {source}")]
    InvalidRole {
        /// The role as given.
        role: String,
        /// What is wrong with it.
        #[source]
        source: ParseError,
    },
    /// A role weight that is not finite and positive.
    #[error("weight {weight} of role '{role}' must be finite and greater than 0")]
    InvalidWeight {
        /// The role.
        role: String,
        /// The weight given.
        weight: f64,
    },
    /// An entry of `min_allocatable_resources` is unusable.
    #[error("min_allocatable_resources[{index}]: {reason}")]
    InvalidMinAllocatable {
        /// Index of the quantity set.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// Resources without `allocation_info` from a framework whose role cannot be
    /// inferred (it has several).
    #[error(
        "resources of framework {framework} on agent {agent} lack allocation_info.role \
         and the framework has several roles"
    )]
    MissingAllocationRole {
        /// The framework.
        framework: FrameworkId,
        /// The agent.
        agent: AgentId,
    },
    /// Resources to recover or transform are not allocated to the framework there.
    #[error(
        "resources {resources} are not allocated to framework {framework} in role '{role}' \
         on agent {agent}"
    )]
    NotAllocated {
        /// The framework.
        framework: FrameworkId,
        /// The agent.
        agent: AgentId,
        /// The allocation role.
        role: String,
        /// The resources (text form).
        resources: String,
    },
    /// Resources to transform are not available (unallocated) on the agent.
    #[error("resources {resources} are not available on agent {agent}")]
    NotAvailable {
        /// The agent.
        agent: AgentId,
        /// The resources (text form).
        resources: String,
    },
    /// Used resources do not fit in what the agent has left.
    #[error("used resources {resources} exceed what agent {agent} has unallocated")]
    UsedExceedsTotal {
        /// The agent.
        agent: AgentId,
        /// The resources (text form).
        resources: String,
    },
    /// An operation changed resource quantities (RESERVE/UNRESERVE/CREATE/DESTROY
    /// only change their shape).
    #[error("operation on agent {agent} changes quantities: {from} -> {to}")]
    QuantityMismatch {
        /// The agent.
        agent: AgentId,
        /// Resources before (text form).
        from: String,
        /// Resources after (text form).
        to: String,
    },
    /// `from` and `to` of an allocation update are in different allocation roles.
    #[error(
        "allocation update of framework {framework} on agent {agent} moves resources \
         between roles"
    )]
    RoleMismatch {
        /// The framework.
        framework: FrameworkId,
        /// The agent.
        agent: AgentId,
    },
}
