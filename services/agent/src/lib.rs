//! Mesos-compatible agent: resource detection, containerizer, executors, recovery.
//!
//! * [`detect`]: what this machine offers (CPUs, memory, disks, ports, GPUs, attributes,
//!   fault domain), cached so restarts advertise the same values. Also used by the node
//!   supervisor.
//! * [`containerizer`]: command tasks in their own cgroups and namespaces.
//! * [`daemon`]: the agent daemon (master subscription, status updates, HTTP API).
//! * [`fetcher`]: task URIs downloaded into the sandbox (cache, checksum, extract).
//! * [`health`]: Mesos-side health checks (HTTP, HTTPS, TCP, COMMAND).
//! * [`oci`]: OCI images (registry pull, layer store, bundles run through crun).

pub mod containerizer;
pub mod daemon;
pub mod detect;
pub mod fetcher;
pub mod health;
pub mod oci;
