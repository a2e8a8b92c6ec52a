//! Typed etcd store: key layout, versioned values, transactions, watches, leases, leader
//! election.
//!
//! Every durable fact of a Basalt master component lives in etcd (Debian's etcd-server
//! 3.4, v3 gRPC API) behind this crate:
//!
//! - [`Store`]: a cheap-to-clone handle, connected with a [`StoreConfig`] (endpoints,
//!   optional mutual TLS, root prefix, timeouts).
//! - [`Key`] / [`Prefix`]: typed paths under `/basalt/v1/`; the layout table is in
//!   [`keys`].
//! - [`Versioned<T>`]: a JSON value with the key's `mod_revision` as its version;
//!   [`Store::put_if_version`] (0 = must not exist) and [`Store::txn`] for multi-key
//!   atomic compare-and-set.
//! - [`Watch`]: a typed stream of [`WatchEvent`]s under a prefix from a revision, resumed
//!   across reconnects without losing events ([`watch`]).
//! - [`Lease`]: granted, kept alive in the background, revoked; loss is observable
//!   ([`lease`]).
//! - [`Election`]: leases + create-revision ordering; [`Leadership`] tells its holder
//!   when it is lost, followers ask [`Election::leader`] ([`election`]).
//! - `testing` (feature `testing`): starts 1 or 3 real etcd processes for tests.
//!
//! Errors are one [`StoreError`] enum whose variants name the key or endpoints.

pub mod config;
pub mod election;
pub mod error;
pub mod keys;
pub mod lease;
mod store;
pub mod txn;
pub mod watch;

#[cfg(feature = "testing")]
pub mod testing;

pub use config::{StoreConfig, TlsFiles};
pub use election::{
    Election, LeaderInfo, LeaderObserver, Leadership, LeadershipLost, LeadershipWatcher,
};
pub use error::StoreError;
pub use keys::{DEFAULT_PREFIX, Key, Prefix};
pub use lease::{Lease, LeaseWatcher, LossReason};
pub use store::{Listing, Store, Versioned};
pub use txn::{MAX_TXN_OPS, TxnBuilder};
pub use watch::{Watch, WatchEvent};

/// The etcd client crate this store is built on, for calls it does not wrap.
pub use etcd_client;
