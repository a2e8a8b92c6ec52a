//! Where master states come from: [`StateSource`].
//!
//! Mesos-DNS polled the leader's `/master/state` every `RefreshSeconds` (30 s in DC/OS).
//! Basalt keeps `/master/state` as the one input format — the records are a pure
//! function of it ([`crate::records`]) — but fetches it **when the cluster changes**
//! instead of on a timer:
//!
//! * [`EtcdWatchSource`] watches the store prefix `master/` (agents, frameworks, tasks:
//!   every key the leading master writes, see `basalt_store::keys`) and fetches
//!   `GET /master/state` from the leading master when a change arrives. The fetches are
//!   debounced to **one in flight plus one pending**: any number of changes during a
//!   fetch cause exactly one more fetch after it, so a burst of task updates costs at
//!   most two fetches and the last state always reflects the last change. There is a
//!   fetch at start, one once the watch is open (so nothing slips between the two) and
//!   one after every watch re-creation (etcd compaction), because events may have been
//!   missed. A failed fetch is retried after `retry_delay` (then again on the next
//!   change), the previous records staying in service meanwhile.
//! * [`ChannelSource`] takes states from an `mpsc` channel (tests, embedding).
//! * [`crate::FeedSource`] (nodes without etcd: agents) long-polls the masters' DNS
//!   `GET /v1/state` feed ([`crate::feed`]), with the Mesos-DNS `/master/state` poll as
//!   fallback while no master answers.
//!
//! Limits:
//!
//! * Propagation = etcd watch delivery + one `/master/state` fetch and decode + one
//!   full record-set generation; the last two grow with the cluster (a full state per
//!   change, as Mesos-DNS, no incremental diff): a few ms for small clusters, ~90 ms
//!   p50 for 10,000 tasks / 100,000 records on a busy 2-core host (see the `qps`
//!   bench).
//! * The fetch happens *after* the etcd write is seen, so the master must already
//!   serve the change from `/master/state` when its etcd write returns
//!   (read-your-writes): it must update what it serves before or atomically with
//!   persisting, never after. A state that lags shows the old answer until the next
//!   change.
//! * Writes under `master/` that do not change `/master/state` still cost a fetch.
//! * The leader is read from the etcd election of service `master` (or static URLs,
//!   redirects followed); a fetch from a non-leader that answers 200 with a stale
//!   state is not detected.

use crate::server::DnsServer;
use crate::state::MasterState;
use basalt_store::{Election, Prefix, Store, StoreError};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// Why a state could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No master answered `/master/state` with a decodable state.
    #[error("fetching master state from {url}: {message}")]
    Fetch {
        /// The last URL tried (empty when no master is known).
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// A producer of master-state snapshots.
pub trait StateSource: Send + 'static {
    /// The snapshots, newest last. An `Err` item is reported and skipped; the stream
    /// ending ends [`run_source`].
    fn into_stream(self) -> BoxStream<'static, Result<MasterState, SourceError>>;
}

/// Applies every state of `source` to `server` until the stream ends.
pub async fn run_source<S: StateSource>(source: S, server: DnsServer) {
    let mut stream = source.into_stream();
    while let Some(item) = stream.next().await {
        match item {
            Ok(state) => {
                if let Err(e) = server.apply_state(state) {
                    tracing::warn!(error = %e, "state not applied");
                }
            }
            Err(e) => tracing::warn!(error = %e, "master state source failed"),
        }
    }
    tracing::info!("master state source ended");
}

/// States pushed through a channel.
#[derive(Debug)]
pub struct ChannelSource {
    rx: mpsc::Receiver<MasterState>,
}

impl ChannelSource {
    /// A source and the sender feeding it.
    pub fn new(buffer: usize) -> (mpsc::Sender<MasterState>, ChannelSource) {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        (tx, ChannelSource { rx })
    }
}

impl StateSource for ChannelSource {
    fn into_stream(self) -> BoxStream<'static, Result<MasterState, SourceError>> {
        futures::stream::unfold(self.rx, |mut rx| async move {
            rx.recv().await.map(|s| (Ok(s), rx))
        })
        .boxed()
    }
}

/// Where the leading master is.
#[derive(Debug, Clone, Default)]
pub struct MasterEndpoints {
    /// Ask `basalt_store::Election::leader(store, service)` (service `master`) for the
    /// leader's `host:port` first.
    pub election_service: Option<String>,
    /// Then these base URLs in order (`http://10.0.0.1:5050`); redirects to the leader
    /// are followed.
    pub urls: Vec<String>,
}

impl MasterEndpoints {
    /// The etcd election of service `master` first, then the configured masters
    /// ([`crate::DnsConfig::masters`], `ip:port`) as `http://ip:port`.
    pub fn from_masters(masters: &[String]) -> MasterEndpoints {
        MasterEndpoints {
            election_service: Some("master".to_string()),
            urls: masters.iter().map(|m| base_url(m)).collect(),
        }
    }
}

/// Watch `master/` in etcd, fetch `/master/state` on change (module docs).
#[derive(Debug, Clone)]
pub struct EtcdWatchSource {
    store: Store,
    masters: MasterEndpoints,
    http: reqwest::Client,
    prefix: Prefix,
    /// Delay before retrying a failed fetch.
    pub retry_delay: Duration,
}

impl EtcdWatchSource {
    /// A source watching `master/` of `store`, fetching from `masters`.
    pub fn new(store: Store, masters: MasterEndpoints) -> Result<Self, SourceError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| SourceError::Client(e.to_string()))?;
        let prefix = Prefix::from_segments(["master"])?;
        Ok(EtcdWatchSource {
            store,
            masters,
            http,
            prefix,
            retry_delay: Duration::from_secs(1),
        })
    }

    async fn master_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        if let Some(svc) = &self.masters.election_service {
            match Election::leader(&self.store, svc).await {
                Ok(Some(l)) => urls.push(base_url(&l.address)),
                Ok(None) => tracing::debug!(service = %svc, "no elected master"),
                Err(e) => {
                    tracing::warn!(service = %svc, error = %e, "reading the master election failed")
                }
            }
        }
        urls.extend(self.masters.urls.iter().map(|u| base_url(u)));
        urls
    }

    /// One `GET /master/state` from the leader (election first, then the static URLs).
    pub async fn fetch(&self) -> Result<MasterState, SourceError> {
        let mut last = SourceError::Fetch {
            url: String::new(),
            message: "no master known (no election entry, no URLs)".to_string(),
        };
        for base in self.master_urls().await {
            let url = format!("{base}/master/state");
            let res = async {
                let resp = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| e.to_string())?;
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                serde_json::from_slice::<MasterState>(&body).map_err(|e| format!("decoding: {e}"))
            }
            .await;
            match res {
                Ok(state) => return Ok(state),
                Err(message) => {
                    tracing::debug!(url = %url, error = %message, "master state fetch failed");
                    last = SourceError::Fetch { url, message };
                }
            }
        }
        Err(last)
    }
}

fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The fetch loop: waits for a notification, fetches, sends. `Notify` holds at most one
/// permit, which is the "one pending" of the debounce. Ends when the receiver is gone.
pub(crate) async fn fetch_loop<F, Fut>(
    notify: Arc<Notify>,
    mut fetch: F,
    tx: mpsc::Sender<Result<MasterState, SourceError>>,
    retry_delay: Duration,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<MasterState, SourceError>>,
{
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = tx.closed() => return,
        }
        let item = fetch().await;
        let failed = item.is_err();
        if tx.send(item).await.is_err() {
            return;
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(retry_delay) => notify.notify_one(),
                _ = tx.closed() => return,
            }
        }
    }
}

async fn watch_loop(store: Store, prefix: Prefix, notify: Arc<Notify>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match store.watch::<serde::de::IgnoredAny>(&prefix, 0).await {
            Ok(mut watch) => {
                backoff = Duration::from_millis(100);
                // (Re)synchronise: changes before this watch may have been missed.
                notify.notify_one();
                while let Some(ev) = watch.next().await {
                    match ev {
                        Ok(_) | Err(StoreError::Decode { .. }) => notify.notify_one(),
                        Err(StoreError::Compacted { .. }) => {
                            tracing::info!("master watch compacted, re-creating");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "master watch error");
                            notify.notify_one();
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "creating the master watch failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A stream that aborts its background tasks when dropped.
struct TaskStream {
    rx: mpsc::Receiver<Result<MasterState, SourceError>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Stream for TaskStream {
    type Item = Result<MasterState, SourceError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for TaskStream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl StateSource for EtcdWatchSource {
    fn into_stream(self) -> BoxStream<'static, Result<MasterState, SourceError>> {
        let (tx, rx) = mpsc::channel(1);
        let notify = Arc::new(Notify::new());
        // Fetch at once (the static URLs work even while etcd is unreachable); the
        // watch's creation asks for one more fetch, which covers changes in between.
        notify.notify_one();
        let retry = self.retry_delay;
        let watcher = tokio::spawn(watch_loop(
            self.store.clone(),
            self.prefix.clone(),
            notify.clone(),
        ));
        let this = Arc::new(self);
        let fetcher = tokio::spawn(fetch_loop(
            notify,
            move || {
                let this = this.clone();
                async move { this.fetch().await }
            },
            tx,
            retry,
        ));
        TaskStream {
            rx,
            tasks: vec![watcher, fetcher],
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "current_thread")]
    async fn burst_of_changes_costs_at_most_two_fetches() {
        let notify = Arc::new(Notify::new());
        let fetches = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (tx, mut rx) = mpsc::channel(1);
        let (f, g) = (fetches.clone(), gate.clone());
        let task = tokio::spawn(fetch_loop(
            notify.clone(),
            move || {
                let (f, g) = (f.clone(), g.clone());
                async move {
                    let n = f.fetch_add(1, Ordering::SeqCst) + 1;
                    // Block until the test lets this fetch finish.
                    g.acquire()
                        .await
                        .map_err(|e| SourceError::Client(e.to_string()))?
                        .forget();
                    Ok(MasterState {
                        leader: format!("master@10.0.0.1:{n}"),
                        ..MasterState::default()
                    })
                }
            },
            tx,
            Duration::from_millis(10),
        ));
        notify.notify_one();
        // Wait for the first fetch to be in flight, then a burst of 100 changes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while fetches.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "first fetch never started"
            );
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            notify.notify_one();
        }
        gate.add_permits(1);
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.leader, "master@10.0.0.1:1");
        gate.add_permits(1);
        let second = rx.recv().await.unwrap().unwrap();
        assert_eq!(second.leader, "master@10.0.0.1:2");
        // No third fetch is pending: on this single-threaded runtime, yielding lets the
        // loop run up to its next wait; a pending permit would start fetch 3 at once.
        gate.add_permits(10);
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // A later change does cause a fetch.
        notify.notify_one();
        let third = rx.recv().await.unwrap().unwrap();
        assert_eq!(third.leader, "master@10.0.0.1:3");
        drop(rx);
        notify.notify_one();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn channel_source_feeds_the_server() {
        let server = DnsServer::new(crate::config::DnsConfig::default()).unwrap();
        let (tx, source) = ChannelSource::new(4);
        let run = tokio::spawn(run_source(source, server.clone()));
        tx.send(MasterState {
            leader: "master@10.0.0.9:5050".into(),
            ..MasterState::default()
        })
        .await
        .unwrap();
        drop(tx);
        run.await.unwrap();
        assert_eq!(server.metrics().state_updates(), 1);
        assert!(server.index().records().a.contains_key("leader.mesos."));
    }

    #[test]
    fn base_urls() {
        let m = MasterEndpoints::from_masters(&["10.0.0.1:5050".to_string()]);
        assert_eq!(m.election_service.as_deref(), Some("master"));
        assert_eq!(m.urls, ["http://10.0.0.1:5050"]);
        assert_eq!(base_url("10.0.0.1:5050"), "http://10.0.0.1:5050");
        assert_eq!(base_url("https://m:5050/"), "https://m:5050");
    }
}
