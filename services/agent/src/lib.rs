//! Mesos-compatible agent: resource detection, containerizer, executors, recovery.
