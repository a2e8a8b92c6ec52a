//! Mesos-compatible agent: resource detection, containerizer, executors, recovery.
//!
//! * [`detect`]: what this machine offers (CPUs, memory, disks, ports, GPUs, attributes,
//!   fault domain), cached so restarts advertise the same values. Also used by the node
//!   supervisor.

pub mod containerizer;
pub mod detect;
