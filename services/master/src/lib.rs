//! Mesos-compatible master: agent registry, DRF allocator, v1 scheduler and operator APIs.
