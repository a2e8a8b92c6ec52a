//! Typed, resumable watches.
//!
//! [`Store::watch`] returns a [`Watch`]: a `Stream` of [`WatchEvent`]s for every change
//! under a prefix from a given revision on. It survives etcd restarts and member
//! failures: when the gRPC stream breaks (or a member loses its leader and cancels the
//! watch) it reconnects, through any configured endpoint, and re-watches from the
//! revision after the last event it delivered, so no event is lost or repeated.
//!
//! The classic pattern is list-then-watch:
//!
//! ```no_run
//! # async fn demo(store: basalt_store::Store) -> Result<(), basalt_store::StoreError> {
//! use basalt_store::{Prefix, WatchEvent};
//! use futures::StreamExt;
//! let listing = store.list::<serde_json::Value>(&Prefix::agents()).await?;
//! let mut watch = store.watch::<serde_json::Value>(&Prefix::agents(), listing.revision + 1).await?;
//! while let Some(event) = watch.next().await {
//!     match event? {
//!         WatchEvent::Put { key, value } => println!("{key} = {:?}", value.value),
//!         WatchEvent::Delete { key, .. } => println!("{key} deleted"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Items are `Result`s. A value that does not decode yields [`StoreError::Decode`] and
//! the stream goes on. If the revision to start or resume from has been compacted, the
//! stream yields [`StoreError::Compacted`] (as its first item when the start revision was
//! already compacted: etcd creates the watch, then cancels it) and ends: list again and
//! start a new watch from the listing's revision + 1. While
//! etcd is unreachable the stream waits and retries (logging at `warn`); it does not end.

use crate::StoreError;
use crate::keys::{Key, Prefix, prefix_range_end};
use crate::store::{Store, Versioned, to_rev, to_version};
use etcd_client::{EventType, WatchOptions, WatchStream};
use futures::Stream;
use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// One change seen by a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent<T> {
    /// The key was created or updated; `value.version` is the revision of the change.
    Put {
        /// The key (relative to the store root).
        key: Key,
        /// The new value and version.
        value: Versioned<T>,
    },
    /// The key was deleted (or its lease ended) at revision `version`.
    Delete {
        /// The key.
        key: Key,
        /// The revision of the deletion.
        version: u64,
    },
}

impl<T> WatchEvent<T> {
    /// The key the event is about.
    pub fn key(&self) -> &Key {
        match self {
            WatchEvent::Put { key, .. } | WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the event.
    pub fn version(&self) -> u64 {
        match self {
            WatchEvent::Put { value, .. } => value.version,
            WatchEvent::Delete { version, .. } => *version,
        }
    }
}

/// A resumable typed watch; see the module docs.
pub struct Watch<T> {
    inner: BoxStream<'static, Result<WatchEvent<T>, StoreError>>,
}

impl<T> std::fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl<T> Stream for Watch<T> {
    type Item = Result<WatchEvent<T>, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct State<T> {
    store: Store,
    /// Full key (single-key watch) or full prefix.
    start: String,
    /// `None` for a single key.
    range_end: Option<Vec<u8>>,
    next_rev: i64,
    stream: Option<WatchStream>,
    /// The endpoint index the stream is on.
    endpoint: usize,
    pending: VecDeque<Result<WatchEvent<T>, StoreError>>,
    done: bool,
    failures: u32,
}

impl Store {
    /// Watches every key under `prefix`, starting at revision `from_revision` (inclusive).
    /// `0` means "changes after now".
    pub async fn watch<T>(
        &self,
        prefix: &Prefix,
        from_revision: u64,
    ) -> Result<Watch<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let full = self.full_prefix(prefix);
        let end = prefix_range_end(full.as_bytes());
        self.watch_range(full, Some(end), from_revision).await
    }

    /// Watches one key, starting at revision `from_revision` (`0`: after now).
    pub async fn watch_key<T>(&self, key: &Key, from_revision: u64) -> Result<Watch<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        self.watch_range(self.full_key(key), None, from_revision)
            .await
    }

    async fn watch_range<T>(
        &self,
        start: String,
        range_end: Option<Vec<u8>>,
        from_revision: u64,
    ) -> Result<Watch<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        // Pin "now" to a concrete revision so that a reconnect before the first event
        // still resumes at the right place.
        let next_rev = if from_revision == 0 {
            self.revision().await? + 1
        } else {
            from_revision
        };
        let mut state = State {
            store: self.clone(),
            start,
            range_end,
            next_rev: to_rev(next_rev),
            stream: None,
            endpoint: 0,
            pending: VecDeque::new(),
            done: false,
            failures: 0,
        };
        // Open the first stream now so that a dead cluster is reported to the caller.
        let stream = state.open().await?;
        state.stream = Some(stream);
        let inner = futures::stream::unfold(state, |mut s| async move {
            s.next().await.map(|item| (item, s))
        });
        Ok(Watch {
            inner: Box::pin(inner),
        })
    }
}

impl<T: DeserializeOwned> State<T> {
    async fn open(&mut self) -> Result<WatchStream, StoreError> {
        let mut opts = WatchOptions::new().with_start_revision(self.next_rev);
        if let Some(end) = &self.range_end {
            opts = opts.with_range(end.clone());
        }
        // Opening the stream and reading its `created` answer is one request for the
        // failover logic: a member that cannot serve moves us to the next endpoint.
        self.endpoint = self.store.pick().0;
        let (stream, first) = self
            .store
            .call("watch", &self.start, |mut c| {
                let (key, opts) = (self.start.clone(), opts.clone());
                async move {
                    let mut stream = c.watch(key, Some(opts)).await?;
                    // etcd answers a create request with a `created` response first; a
                    // compacted start revision shows up right after it as a cancel.
                    let first = stream.message().await?;
                    Ok((stream, first))
                }
            })
            .await?;
        match first {
            Some(resp) if resp.created() && !resp.canceled() => Ok(stream),
            Some(resp) if resp.compact_revision() > 0 => {
                Err(self.compacted(resp.compact_revision()))
            }
            Some(resp) => Err(StoreError::Unavailable {
                endpoints: self.store.endpoints().to_string(),
                op: "watch",
                key: self.start.clone(),
                source: format!("watch not created: {}", resp.cancel_reason()).into(),
            }),
            None => Err(StoreError::Unavailable {
                endpoints: self.store.endpoints().to_string(),
                op: "watch",
                key: self.start.clone(),
                source: "watch stream closed before it was created".into(),
            }),
        }
    }

    fn compacted(&self, compacted: i64) -> StoreError {
        StoreError::Compacted {
            key: self.start.clone(),
            requested: to_version(self.next_rev),
            compacted: to_version(compacted),
        }
    }

    async fn backoff(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let ms = 50u64.saturating_mul(1 << self.failures.min(5)).min(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn next(&mut self) -> Option<Result<WatchEvent<T>, StoreError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            let stream = match self.stream.as_mut() {
                Some(s) => s,
                None => match self.open().await {
                    Ok(s) => {
                        tracing::info!(key = %self.start, revision = self.next_rev, "watch resumed");
                        self.stream.insert(s)
                    }
                    Err(e @ StoreError::Compacted { .. }) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    Err(e) => {
                        tracing::warn!(key = %self.start, error = %e, "watch reconnect failed, retrying");
                        self.backoff().await;
                        continue;
                    }
                },
            };
            match stream.message().await {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        self.stream = None;
                        if resp.compact_revision() > 0 {
                            self.done = true;
                            return Some(Err(self.compacted(resp.compact_revision())));
                        }
                        tracing::warn!(key = %self.start, reason = resp.cancel_reason(), "watch canceled by etcd, resuming");
                        self.store.failed(self.endpoint);
                        self.backoff().await;
                        continue;
                    }
                    self.failures = 0;
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let rev = kv.mod_revision();
                        if rev < self.next_rev {
                            continue;
                        }
                        let item = match self.store.relative_key(kv.key()) {
                            Err(e) => Err(e),
                            Ok(key) => match ev.event_type() {
                                EventType::Put => {
                                    Store::decode(kv).map(|value| WatchEvent::Put { key, value })
                                }
                                EventType::Delete => Ok(WatchEvent::Delete {
                                    key,
                                    version: to_version(rev),
                                }),
                            },
                        };
                        self.pending.push_back(item);
                    }
                    // Events of one revision always arrive in one response.
                    if let Some(last) = resp.events().last().and_then(|e| e.kv()) {
                        self.next_rev = self.next_rev.max(last.mod_revision() + 1);
                    }
                }
                Ok(None) => {
                    tracing::warn!(key = %self.start, "watch stream ended, resuming");
                    self.store.failed(self.endpoint);
                    self.stream = None;
                }
                Err(e) => {
                    tracing::warn!(key = %self.start, error = %e, "watch stream broke, resuming");
                    self.store.failed(self.endpoint);
                    self.stream = None;
                    self.backoff().await;
                }
            }
        }
    }
}
