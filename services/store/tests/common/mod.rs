//! Shared by the integration tests: start etcd or skip visibly.
#![allow(dead_code)]

use std::time::Duration;

/// Generous bound for things that should take a few seconds at most. Tests never assert
/// wall time; they only require that a condition holds before this deadline.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Evaluates to a started `EtcdCluster`, or (etcd not installed) returns from the test
/// after the harness printed `skipped: etcd-server not installed (run scripts/setup.sh)`.
#[macro_export]
macro_rules! etcd_or_skip {
    ($start:expr) => {
        match $start.await.expect("starting etcd") {
            Some(cluster) => cluster,
            None => return,
        }
    };
}
