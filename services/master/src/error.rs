//! [`MasterError`].

use basalt_store::StoreError;

/// Errors of the master process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterError {
    /// A setting is invalid.
    #[error("invalid master setting {field}: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An etcd operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The allocator refused an event (a bug or inconsistent state).
    #[error("allocator: {0}")]
    Allocator(#[from] crate::allocator::AllocatorError),
    /// A stored record could not be used.
    #[error("stored record {key}: {reason}")]
    Record {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// This master no longer leads.
    #[error("not the leading master")]
    NotLeader,
}
