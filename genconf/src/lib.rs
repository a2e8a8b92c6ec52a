//! Cluster configuration for Basalt: the operator's `config.toml`, its
//! validation, the cluster secrets, the per-role signed bundles rendered from
//! them, and the verifier that nodes run before they trust a bundle.
//!
//! Used by `basalt-installer` (to generate) and by the node supervisor (to verify).

pub mod bundle;
pub mod config;
#[cfg(feature = "example")]
pub mod example;
pub mod generate;
pub mod password;
pub mod render;
pub mod secrets;
pub mod validate;
pub mod verify;
