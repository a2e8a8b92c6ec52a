//! Multi-key atomic transactions.
//!
//! ```no_run
//! # async fn demo(store: basalt_store::Store) -> Result<(), basalt_store::StoreError> {
//! use basalt_store::Key;
//! let fw = Key::framework("fw-1")?;
//! let task = Key::task("fw-1", "t-1")?;
//! // Launch a task only if the framework record is still the one we read (version 42)
//! // and the task does not exist yet; both writes land at one revision, or neither.
//! let revision = store
//!     .txn()
//!     .require_version(&fw, 42)
//!     .put_if_version(&task, &"TASK_STAGING", 0)
//!     .commit()
//!     .await?;
//! # let _ = revision; Ok(()) }
//! ```
//!
//! Conditions are etcd compares evaluated atomically with the writes; if any fails,
//! nothing is written and [`StoreError::Conflict`] names the first key whose version
//! differed (or [`StoreError::NotLeader`] for a leadership guard).

use crate::election::Leadership;
use crate::keys::{Key, Prefix, prefix_range_end};
use crate::store::{Store, cmp_version, found_version, get_op, to_rev, to_version};
use crate::{Lease, StoreError};
use etcd_client::{Compare, CompareOp, DeleteOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::Serialize;
use std::collections::HashSet;

/// etcd's default `--max-txn-ops`: the most compares, or operations, in one txn.
pub const MAX_TXN_OPS: usize = 128;

enum Check {
    /// The key's mod_revision must equal `expected` (0: absent).
    Version { full: String, expected: u64 },
    /// The leader key must still exist with our create revision.
    Leader {
        full: String,
        service: String,
        create_revision: i64,
    },
}

/// Builds a transaction; see the module docs. Errors found while building (a value that
/// does not serialize, too many operations, a key written twice) are reported by
/// [`TxnBuilder::commit`].
#[must_use = "a transaction does nothing until commit() is awaited"]
pub struct TxnBuilder {
    store: Store,
    checks: Vec<Check>,
    ops: Vec<TxnOp>,
    written: HashSet<String>,
    first_key: String,
    error: Option<StoreError>,
}

impl TxnBuilder {
    pub(crate) fn new(store: Store) -> TxnBuilder {
        TxnBuilder {
            store,
            checks: Vec::new(),
            ops: Vec::new(),
            written: HashSet::new(),
            first_key: String::new(),
            error: None,
        }
    }

    fn note_key(&mut self, full: &str) {
        if self.first_key.is_empty() {
            self.first_key = full.to_string();
        }
    }

    fn note_write(&mut self, full: &str) {
        self.note_key(full);
        if !self.written.insert(full.to_string()) && self.error.is_none() {
            self.error = Some(StoreError::InvalidTxn {
                key: full.to_string(),
                reason: "the same key is written twice in one transaction".to_string(),
            });
        }
    }

    fn push_put<T: Serialize + ?Sized>(&mut self, key: &Key, value: &T, lease: Option<i64>) {
        let full = self.store.full_key(key);
        self.note_write(&full);
        match self.store.encode(&full, value) {
            Ok(bytes) => {
                let opts = lease.map(|id| PutOptions::new().with_lease(id));
                self.ops.push(TxnOp::put(full, bytes, opts));
            }
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
            }
        }
    }

    /// Condition: `key` is at version `expected` (0: does not exist).
    pub fn require_version(mut self, key: &Key, expected: u64) -> Self {
        let full = self.store.full_key(key);
        self.note_key(&full);
        self.checks.push(Check::Version { full, expected });
        self
    }

    /// Condition: the caller still leads `leadership`'s election (fencing: a deposed
    /// leader's writes are refused with [`StoreError::NotLeader`]).
    pub fn require_leadership(mut self, leadership: &Leadership) -> Self {
        let full = self.store.full_key(leadership.key());
        self.note_key(&full);
        self.checks.push(Check::Leader {
            full,
            service: leadership.service().to_string(),
            create_revision: to_rev(leadership.revision()),
        });
        self
    }

    /// Write `key` unconditionally.
    pub fn put<T: Serialize + ?Sized>(mut self, key: &Key, value: &T) -> Self {
        self.push_put(key, value, None);
        self
    }

    /// Write `key` attached to `lease`.
    pub fn put_with_lease<T: Serialize + ?Sized>(
        mut self,
        key: &Key,
        value: &T,
        lease: &Lease,
    ) -> Self {
        self.push_put(key, value, Some(lease.id()));
        self
    }

    /// Write `key` if it is at version `expected` (0: create).
    pub fn put_if_version<T: Serialize + ?Sized>(
        self,
        key: &Key,
        value: &T,
        expected: u64,
    ) -> Self {
        self.require_version(key, expected).put(key, value)
    }

    /// Delete `key` (a no-op if absent).
    pub fn delete(mut self, key: &Key) -> Self {
        let full = self.store.full_key(key);
        self.note_write(&full);
        self.ops.push(TxnOp::delete(full, None));
        self
    }

    /// Delete `key` if it is at version `expected` (must be > 0).
    pub fn delete_if_version(mut self, key: &Key, expected: u64) -> Self {
        if expected == 0 && self.error.is_none() {
            self.error = Some(StoreError::InvalidTxn {
                key: self.store.full_key(key),
                reason: "delete_if_version needs an existing version (> 0)".to_string(),
            });
        }
        self.require_version(key, expected).delete(key)
    }

    /// Delete every key under `prefix`.
    pub fn delete_prefix(mut self, prefix: &Prefix) -> Self {
        let full = self.store.full_prefix(prefix);
        self.note_write(&full);
        let end = prefix_range_end(full.as_bytes());
        self.ops.push(TxnOp::delete(
            full,
            Some(DeleteOptions::new().with_range(end)),
        ));
        self
    }

    /// Number of write operations so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if nothing would be written.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Sends the transaction. Returns the store revision it committed at: the new version
    /// of every key it wrote.
    pub async fn commit(self) -> Result<u64, StoreError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let key = self.first_key.clone();
        if self.checks.len() > MAX_TXN_OPS || self.ops.len() > MAX_TXN_OPS {
            return Err(StoreError::InvalidTxn {
                key,
                reason: format!(
                    "{} conditions and {} operations; etcd allows at most {MAX_TXN_OPS} of each",
                    self.checks.len(),
                    self.ops.len()
                ),
            });
        }
        if self.checks.is_empty() && self.ops.is_empty() {
            return self.store.revision().await;
        }
        let compares: Vec<Compare> = self
            .checks
            .iter()
            .map(|c| match c {
                Check::Version { full, expected } => cmp_version(full, *expected),
                Check::Leader {
                    full,
                    create_revision,
                    ..
                } => Compare::create_revision(full.as_str(), CompareOp::Equal, *create_revision),
            })
            .collect();
        let failure: Vec<TxnOp> = self
            .checks
            .iter()
            .map(|c| match c {
                Check::Version { full, .. } | Check::Leader { full, .. } => get_op(full),
            })
            .collect();
        let txn = Txn::new()
            .when(compares)
            .and_then(self.ops)
            .or_else(failure);
        let resp = self.store.raw_txn(&key, txn).await?;
        let revision = resp.header().map(|h| to_version(h.revision())).unwrap_or(0);
        if resp.succeeded() {
            return Ok(revision);
        }
        let responses = resp.op_responses();
        for (check, got) in self.checks.iter().zip(responses.iter()) {
            match check {
                Check::Version { full, expected } => {
                    let found = found_version(got);
                    if found != *expected {
                        return Err(StoreError::Conflict {
                            key: full.clone(),
                            expected: *expected,
                            found,
                        });
                    }
                }
                Check::Leader {
                    full,
                    service,
                    create_revision,
                } => {
                    let created = match got {
                        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.create_revision()),
                        _ => None,
                    };
                    if created != Some(*create_revision) {
                        return Err(StoreError::NotLeader {
                            service: service.clone(),
                            key: full.clone(),
                        });
                    }
                }
            }
        }
        // Unreachable in practice: etcd evaluated the same compares atomically.
        Err(StoreError::InvalidTxn {
            key,
            reason: "etcd refused the transaction but every condition reads as met".to_string(),
        })
    }
}
