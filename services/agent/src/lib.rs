// NOTE FOR HELPERS: read /tmp/common.md before editing (no git commit; cargo fmt -p <crate> only). Lead removes this line.
//! Mesos-compatible agent: resource detection, containerizer, executors, recovery.
//!
//! * [`detect`]: what this machine offers (CPUs, memory, disks, ports, GPUs, attributes,
//!   fault domain), cached so restarts advertise the same values. Also used by the node
//!   supervisor.

pub mod detect;
