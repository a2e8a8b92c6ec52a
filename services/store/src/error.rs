//! The one error type of the store layer.

use std::path::PathBuf;
use std::time::Duration;

/// A boxed error used as the `source` of [`StoreError::Unavailable`], which covers both
/// transport errors from the etcd client and our own request timeouts.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to etcd through [`crate::Store`].
///
/// Every variant names what it was about: the etcd key (full path, prefix included), the
/// endpoints, the configuration field or the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No etcd member answered (connection refused, no leader, timeout). Safe to retry
    /// for reads; a write may or may not have been applied.
    #[error("etcd unavailable at {endpoints} during {op} {key}: {source}")]
    Unavailable {
        /// The configured endpoints, comma separated.
        endpoints: String,
        /// The operation (`get`, `put`, `txn`, `watch`, `lease grant`, ...).
        op: &'static str,
        /// The key or prefix the operation was about (empty for cluster-wide calls).
        key: String,
        /// What the client saw.
        #[source]
        source: BoxError,
    },

    /// etcd answered with an error that retrying will not fix (bad request, too large,
    /// permission denied, ...).
    #[error("etcd rejected {op} {key}: {source}")]
    Etcd {
        /// The operation.
        op: &'static str,
        /// The key or prefix.
        key: String,
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },

    /// A compare-and-set found another version than the caller expected.
    /// Version 0 means "does not exist".
    #[error("conflict on {key}: expected version {expected}, found {found}")]
    Conflict {
        /// Full key.
        key: String,
        /// The version the caller expected (0: must not exist).
        expected: u64,
        /// The version etcd holds (0: does not exist).
        found: u64,
    },

    /// A guarded write was refused because the caller no longer holds the leadership of
    /// `service` (its election key is gone or belongs to a newer term).
    #[error("not the leader of {service} any more (election key {key})")]
    NotLeader {
        /// The election's service name.
        service: String,
        /// Full election key of the deposed leader.
        key: String,
    },

    /// A stored value is not valid JSON for the requested type.
    #[error("cannot decode the value of {key}: {source}")]
    Decode {
        /// Full key.
        key: String,
        /// The serde error (names the field).
        #[source]
        source: serde_json::Error,
    },

    /// A value could not be serialized to JSON.
    #[error("cannot encode the value for {key}: {source}")]
    Encode {
        /// Full key.
        key: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A key segment or key read back from etcd is not valid in the layout.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key or segment.
        key: String,
        /// Why.
        reason: String,
    },

    /// A transaction cannot be sent as built.
    #[error("invalid transaction ({key}): {reason}")]
    InvalidTxn {
        /// The key that made it invalid (or the first key of the txn).
        key: String,
        /// Why.
        reason: String,
    },

    /// The store configuration is unusable.
    #[error("invalid store configuration: {field}: {reason}")]
    InvalidConfig {
        /// The field (`endpoints`, `prefix`, `tls.ca`, ...).
        field: &'static str,
        /// Why.
        reason: String,
    },

    /// A TLS file named in the configuration could not be read.
    #[error("cannot read TLS {field} file {}: {source}", path.display())]
    TlsFile {
        /// `ca`, `cert` or `key`.
        field: &'static str,
        /// The path from the configuration.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A watch asked for history etcd has already compacted. The watcher must list the
    /// prefix again and watch from the listing's revision.
    #[error("watch on {key} cannot resume at revision {requested}: compacted up to {compacted}")]
    Compacted {
        /// Watched key or prefix.
        key: String,
        /// The revision the watch wanted to (re)start from.
        requested: u64,
        /// etcd's compaction revision.
        compacted: u64,
    },

    /// The lease is gone (expired, revoked, or not kept alive in time).
    #[error("lease {lease_id:x} lost: {reason}")]
    LeaseLost {
        /// The etcd lease id.
        lease_id: i64,
        /// Why it was lost.
        reason: crate::lease::LossReason,
    },

    /// A request did not complete within the configured request timeout.
    #[error("etcd {op} {key} timed out after {after:?} (endpoints {endpoints})")]
    Timeout {
        /// The configured endpoints.
        endpoints: String,
        /// The operation.
        op: &'static str,
        /// The key or prefix.
        key: String,
        /// The timeout.
        after: Duration,
    },
}

impl StoreError {
    /// True for errors where trying again later may succeed (etcd unreachable, no leader,
    /// timeouts).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }

    /// True for a compare-and-set conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// gRPC status codes (numeric, so that we need not depend on tonic directly).
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// Sorts an etcd client error into "unavailable, retry later" or "rejected".
pub(crate) fn classify(
    endpoints: &str,
    op: &'static str,
    key: &str,
    err: etcd_client::Error,
) -> StoreError {
    use etcd_client::Error as E;
    let transient = match &err {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(status) => {
            let code = i32::from(status.code());
            code == GRPC_UNAVAILABLE
                || code == GRPC_DEADLINE_EXCEEDED
                || code == GRPC_CANCELLED
                // tonic reports a broken connection mid-call as Unknown with a
                // transport message ("h2 protocol error", "connection reset").
                || (code == GRPC_UNKNOWN && !status.message().starts_with("etcdserver:"))
        }
        _ => false,
    };
    if transient {
        StoreError::Unavailable {
            endpoints: endpoints.to_string(),
            op,
            key: key.to_string(),
            source: Box::new(err),
        }
    } else {
        StoreError::Etcd {
            op,
            key: key.to_string(),
            source: err,
        }
    }
}
