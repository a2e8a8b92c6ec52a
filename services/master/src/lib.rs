//! Mesos-compatible master: agent registry, DRF allocator, v1 scheduler and operator APIs.
//!
//! - [`Master::start`] runs one master process ([`master`]): HTTP server, leader election
//!   on etcd, recovery of agents/frameworks/tasks from etcd, timers.
//! - [`api`]: the Mesos v1 scheduler API wire types; [`agent_api`]: the internal
//!   master ↔ agent protocol (documented there).
//! - [`core`]: what the leader does; [`records`]: what it keeps in etcd; [`http`] and
//!   [`endpoints`]: the HTTP surface and state/metrics JSON.
//! - [`allocator`]: the weighted-DRF allocator.
//! - `testing` (feature `testing`): in-process cluster harness with emulated agents and
//!   a v1 test scheduler.

pub mod agent_api;
pub mod allocator;
pub mod api;
pub mod auth;
pub mod config;
pub mod core;
pub mod endpoints;
pub mod error;
pub mod http;
pub mod master;
pub use basalt_mesos::recordio;
pub mod records;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::MasterConfig;
pub use error::MasterError;
pub use master::{Master, MasterHandle};
