//! Mesos data model shared by master, agent and frameworks: resources, attributes, wire types.
//!
//! Everything here (de)serialises with serde using exactly the field names of the
//! JSON form of `mesos.proto` (v1) as served by `/api/v1` and `/master/state`:
//! snake_case proto names, enums as their string names, IDs as `{"value":"..."}`.
//! Wire types tolerate unknown fields when reading; the larger ones (`TaskInfo`,
//! `ContainerInfo`, `FrameworkInfo`, `AgentInfo`, ...) keep them in an `extra` map and
//! write them back, so messages pass through the master unchanged.
//!
//! - [`values`]: [`Scalar`] (Mesos fixed point, 0.001 precision: `0.1 + 0.2 == 0.3`),
//!   normalised [`Ranges`], [`Set`], and the Mesos value text form.
//! - [`Resource`] / [`Resources`]: Mesos resource arithmetic (`+`, `-`, `contains`),
//!   reservations (static `slave_public`, dynamic with principal/labels, refinement
//!   stacks), disk info (ROOT/PATH/MOUNT, persistent volumes), shared and revocable
//!   resources; parsing of the agent `--resources` flag (text or JSON).
//! - [`Attributes`]: TEXT/SCALAR/RANGES/SET attributes and the `--attributes` flag.
//! - [`DomainInfo`]: fault domains (region/zone).
//! - IDs, [`AgentInfo`], [`FrameworkInfo`], [`TaskInfo`] and friends, [`TaskState`]
//!   with the task state machine, [`TaskStatus`].
//! - [`ParseError`]: every parse/validation error, naming the offending text.

#[macro_use]
mod macros;

pub mod agent;
pub mod attributes;
pub mod container;
pub mod domain;
pub mod error;
pub mod framework;
pub mod ids;
pub mod labels;
pub mod recordio;
pub mod resource;
pub mod resources;
pub mod roles;
pub mod task_info;
pub mod task_state;
pub mod values;

pub use agent::{AgentInfo, DEFAULT_AGENT_PORT};
pub use attributes::{Attribute, Attributes};
pub use container::{
    ContainerInfo, ContainerType, DockerImage, DockerInfo, DockerNetwork, Image, ImageType,
    IpAddress, MesosInfo, NetworkInfo, Parameter, PortMapping, Volume, VolumeMode,
};
pub use domain::{DomainInfo, DomainName, FaultDomain};
pub use error::ParseError;
pub use framework::{Capability, CapabilityType, FrameworkInfo};
pub use ids::{
    AgentId, ContainerId, ExecutorId, FrameworkId, MasterId, OfferId, OperationId,
    ResourceProviderId, TaskId,
};
pub use labels::{Label, Labels};
pub use resource::{
    AllocationInfo, DiskInfo, DiskKind, DiskRoot, DiskSource, DiskSourceType, FormattedResource,
    Persistence, ReservationInfo, ReservationType, Resource, ResourceFormat, ResourceValue,
};
pub use resources::{FormattedResources, Resources};
pub use roles::{DEFAULT_ROLE, is_strict_subrole_of, validate_role};
pub use task_info::{
    CommandInfo, CommandUri, DiscoveryInfo, DiscoveryPort, DiscoveryPorts, DiscoveryVisibility,
    EnvVariable, EnvVariableType, Environment, ExecutorInfo, ExecutorType, HealthCheck,
    HealthCheckType, HttpCheckInfo, KillPolicy, TaskInfo, TcpCheckInfo,
};
pub use task_state::{
    ContainerStatus, Nanoseconds, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource,
};
pub use values::{Range, Ranges, Scalar, Set, Text, Value, ValueType};
