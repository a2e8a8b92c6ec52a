//! Change feeds over HTTP long-poll: how nodes without etcd credentials (agents) follow
//! what the masters know, within one HTTP round trip of the change.
//!
//! A feed is a JSON document with a **revision** (a counter of the serving process,
//! bumped when the document changes). `GET <path>` answers at once; `GET
//! <path>?wait=<rev>` answers as soon as the revision is **different from** `rev` (so a
//! restarted server, whose counter started again, or another master answers at once
//! rather than hanging), or after `timeout` seconds (default 30, at most 300) with the
//! unchanged document. Every answer carries `X-Basalt-Revision: <rev>` and
//! `ETag: "<rev>"`; the body is the document alone, so plain clients see the usual
//! shape (`/v1/vips` is dcos-net's list).
//!
//! | feed | server | document |
//! |---|---|---|
//! | `GET :8123/v1/state` | masters' `basaltd dns` ([`crate::http`]) | the last `/master/state` the DNS server applied ([`crate::MasterState`] subset) |
//! | `GET :62080/v1/vips` | masters' `basaltd l4lb` (`basalt_l4lb::feed`) | dcos-net's VIP list plus each VIP's address |
//!
//! [`FeedClient`] follows one feed over a list of servers: it long-polls the server it
//! last got an answer from and, when that fails (connection refused or reset, HTTP
//! error, bad body, no answer within `timeout + grace`), moves on to the next one
//! (asking without `wait`, so the new server answers at once). A full round without an
//! answer yields one [`FeedError::AllFailed`] and waits `retry_delay`. [`FeedSource`]
//! is the DNS [`StateSource`] on top of it, with the Mesos-DNS poll of `/master/state`
//! as fallback while no feed server answers.
//!
//! Limits: a server that hangs (no RST) is noticed only after `timeout + grace`; each
//! change costs one full document per follower (no diff), fine for the node counts of
//! a DC/OS cluster with states of a few MB.

use crate::source::{SourceError, StateSource};
use crate::state::MasterState;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// The revision header.
pub const REVISION_HEADER: &str = "x-basalt-revision";
/// Default and largest long-poll hold.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(30);
const MAX_HOLD_SECS: u64 = 300;

/// One version of a feed document; the JSON body is rendered once, on first request.
#[derive(Debug)]
pub struct Snapshot<T> {
    /// The revision (0: nothing yet).
    pub revision: u64,
    /// The document (`None`: nothing yet, served as `null`).
    pub value: Option<Arc<T>>,
    body: OnceLock<Bytes>,
}

impl<T: serde::Serialize> Snapshot<T> {
    /// A snapshot of `value` at `revision`.
    pub fn new(revision: u64, value: Option<Arc<T>>) -> Snapshot<T> {
        Snapshot {
            revision,
            value,
            body: OnceLock::new(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        self.body
            .get_or_init(|| match &self.value {
                Some(v) => serde_json::to_vec(v.as_ref())
                    .map(Bytes::from)
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "encoding a feed document failed");
                        Bytes::from_static(b"null")
                    }),
                None => Bytes::from_static(b"null"),
            })
            .clone()
    }
}

/// The publishing side of a feed: keeps the current snapshot; bumps the revision only
/// when the document changes.
#[derive(Debug)]
pub struct Publisher<T> {
    tx: watch::Sender<Arc<Snapshot<T>>>,
}

impl<T: serde::Serialize + PartialEq + Send + Sync + 'static> Default for Publisher<T> {
    fn default() -> Self {
        Publisher::new()
    }
}

impl<T: serde::Serialize + PartialEq + Send + Sync + 'static> Publisher<T> {
    /// A feed with nothing yet (revision 0).
    pub fn new() -> Publisher<T> {
        Publisher {
            tx: watch::channel(Arc::new(Snapshot::new(0, None))).0,
        }
    }

    /// Publishes `value`; returns the revision now served (unchanged when `value` equals
    /// the current document).
    pub fn publish(&self, value: Arc<T>) -> u64 {
        let mut rev = 0;
        self.tx.send_if_modified(|cur| {
            if cur.value.as_deref() == Some(value.as_ref()) {
                rev = cur.revision;
                return false;
            }
            rev = cur.revision + 1;
            *cur = Arc::new(Snapshot::new(rev, Some(value.clone())));
            true
        });
        rev
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot<T>> {
        self.tx.borrow().clone()
    }

    /// A receiver for [`long_poll`].
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot<T>>> {
        self.tx.subscribe()
    }
}

/// The query of a feed request.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct FeedQuery {
    /// Answer once the revision differs from this one.
    pub wait: Option<u64>,
    /// Longest hold in seconds (default 30, capped at 300).
    pub timeout: Option<u64>,
}

/// Answers a feed request (module docs).
pub async fn long_poll<T: serde::Serialize + Send + Sync + 'static>(
    mut rx: watch::Receiver<Arc<Snapshot<T>>>,
    q: FeedQuery,
) -> Response {
    if let Some(wait) = q.wait {
        let hold = q
            .timeout
            .map_or(DEFAULT_HOLD, |s| Duration::from_secs(s.min(MAX_HOLD_SECS)));
        // A closed channel (server shutting down) answers with what it has.
        let _ = tokio::time::timeout(hold, rx.wait_for(|s| s.revision != wait)).await;
    }
    let snap = rx.borrow().clone();
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        snap.body(),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(REVISION_HEADER, HeaderValue::from(snap.revision));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", snap.revision)) {
        h.insert(header::ETAG, etag);
    }
    resp
}

/// Why a feed could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// One server failed.
    #[error("feed {url}: {message}")]
    Server {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Every server failed in one round; the last error is given.
    #[error("no feed server answered (last: {last})")]
    AllFailed {
        /// The last server's failure.
        last: Box<FeedError>,
    },
    /// No server configured.
    #[error("no feed servers configured")]
    NoServers,
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// One document received from a feed.
#[derive(Debug, Clone)]
pub struct Update<T> {
    /// The server's base URL that answered.
    pub server: String,
    /// Its revision.
    pub revision: u64,
    /// The document.
    pub value: T,
}

/// Follows one feed over several servers (module docs).
#[derive(Debug, Clone)]
pub struct FeedClient {
    urls: Vec<String>,
    http: reqwest::Client,
    /// Long-poll hold asked of the server.
    pub hold: Duration,
    /// Extra time allowed beyond `hold` before a server counts as hung.
    pub grace: Duration,
    /// Pause after a round in which no server answered.
    pub retry_delay: Duration,
}

impl FeedClient {
    /// A client for the feed at `path` (`/v1/vips`) on each of `servers` (`host:port`
    /// or base URLs), tried in order.
    pub fn new(servers: &[String], path: &str) -> Result<FeedClient, FeedError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| FeedError::Client(e.to_string()))?;
        Ok(FeedClient {
            urls: servers
                .iter()
                .map(|s| format!("{}{path}", base_url(s)))
                .collect(),
            http,
            hold: DEFAULT_HOLD,
            grace: Duration::from_secs(5),
            retry_delay: Duration::from_millis(500),
        })
    }

    /// The feed URLs, in order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    async fn get<T: DeserializeOwned>(
        &self,
        url: &str,
        wait: Option<u64>,
    ) -> Result<(u64, T), FeedError> {
        let err = |message: String| FeedError::Server {
            url: url.to_string(),
            message,
        };
        let mut req = self.http.get(url).timeout(self.hold + self.grace);
        if let Some(w) = wait {
            req = req.query(&[("wait", w), ("timeout", self.hold.as_secs().max(1))]);
        }
        let resp = req
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| err(e.to_string()))?;
        let rev = resp
            .headers()
            .get(REVISION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| err(format!("no valid {REVISION_HEADER} header")))?;
        let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
        let value = serde_json::from_slice(&body).map_err(|e| err(format!("decoding: {e}")))?;
        Ok((rev, value))
    }

    /// The documents, each time one changes (the first answer of a server always
    /// counts as a change). `Err` items report a round without any answer; the stream
    /// goes on.
    pub fn stream<T: DeserializeOwned + Send + 'static>(
        self,
    ) -> BoxStream<'static, Result<Update<T>, FeedError>> {
        if self.urls.is_empty() {
            return futures::stream::once(async { Err(FeedError::NoServers) }).boxed();
        }
        struct St {
            c: FeedClient,
            idx: usize,
            rev: Option<u64>,
            failures: usize,
        }
        let st = St {
            c: self,
            idx: 0,
            rev: None,
            failures: 0,
        };
        futures::stream::unfold(st, |mut st| async move {
            loop {
                let url = st.c.urls[st.idx].clone();
                match st.c.get::<T>(&url, st.rev).await {
                    Ok((rev, value)) => {
                        st.failures = 0;
                        if st.rev == Some(rev) {
                            continue; // held until the timeout: nothing new
                        }
                        st.rev = Some(rev);
                        let server = url.clone();
                        return Some((
                            Ok(Update {
                                server,
                                revision: rev,
                                value,
                            }),
                            st,
                        ));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "feed server failed, trying the next");
                        st.rev = None;
                        st.idx = (st.idx + 1) % st.c.urls.len();
                        st.failures += 1;
                        if st.failures >= st.c.urls.len() {
                            st.failures = 0;
                            tokio::time::sleep(st.c.retry_delay).await;
                            return Some((Err(FeedError::AllFailed { last: Box::new(e) }), st));
                        }
                    }
                }
            }
        })
        .boxed()
    }
}

pub(crate) fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The DNS state source of nodes without etcd: the masters' `/v1/state` feed, and while
/// no master serves it, `GET /master/state` from the masters every `poll_interval`
/// (what Mesos-DNS did).
#[derive(Debug, Clone)]
pub struct FeedSource {
    feed: FeedClient,
    masters: Vec<String>,
    poll_interval: Duration,
}

impl FeedSource {
    /// Follows `feed` (e.g. [`FeedClient::new`] on the masters' `:8123`, `/v1/state`);
    /// falls back to `masters` (`ip:port` of the Mesos API) every `poll_interval`.
    pub fn new(feed: FeedClient, masters: Vec<String>, poll_interval: Duration) -> FeedSource {
        FeedSource {
            feed,
            masters,
            poll_interval,
        }
    }

    async fn fetch_master_state(
        http: &reqwest::Client,
        masters: &[String],
    ) -> Result<MasterState, SourceError> {
        let mut last = SourceError::Fetch {
            url: String::new(),
            message: "no masters configured".into(),
        };
        for m in masters {
            let url = format!("{}/master/state", base_url(m));
            let res = async {
                let r = http
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| e.to_string())?;
                let body = r.bytes().await.map_err(|e| e.to_string())?;
                serde_json::from_slice::<MasterState>(&body).map_err(|e| format!("decoding: {e}"))
            }
            .await;
            match res {
                Ok(s) => return Ok(s),
                Err(message) => last = SourceError::Fetch { url, message },
            }
        }
        Err(last)
    }
}

impl StateSource for FeedSource {
    fn into_stream(self) -> BoxStream<'static, Result<MasterState, SourceError>> {
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                return futures::stream::once(
                    async move { Err(SourceError::Client(e.to_string())) },
                )
                .boxed();
            }
        };
        let masters = Arc::new(self.masters);
        let every = self.poll_interval;
        let mut last_poll: Option<tokio::time::Instant> = None;
        self.feed
            .stream::<Option<MasterState>>()
            .filter_map(move |item| {
                let (http, masters) = (http.clone(), masters.clone());
                let due = last_poll.is_none_or(|t| t.elapsed() >= every);
                if item.is_err() && due {
                    last_poll = Some(tokio::time::Instant::now());
                }
                async move {
                    match item {
                        Ok(Update {
                            value: Some(state), ..
                        }) => Some(Ok(state)),
                        // The master's DNS has no state yet.
                        Ok(Update { value: None, .. }) => None,
                        Err(e) if due => {
                            tracing::warn!(error = %e, "no master serves the state feed, polling /master/state");
                            Some(Self::fetch_master_state(&http, &masters).await)
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "state feed unreachable");
                            None
                        }
                    }
                }
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_bumps_only_on_change() {
        let p: Publisher<Vec<u32>> = Publisher::new();
        assert_eq!(p.current().revision, 0);
        assert_eq!(&p.current().body()[..], b"null");
        assert_eq!(p.publish(Arc::new(vec![1])), 1);
        assert_eq!(p.publish(Arc::new(vec![1])), 1);
        assert_eq!(p.publish(Arc::new(vec![1, 2])), 2);
        assert_eq!(&p.current().body()[..], b"[1,2]");
    }

    #[tokio::test]
    async fn long_poll_answers_on_a_different_revision() {
        let p: Publisher<Vec<u32>> = Publisher::new();
        p.publish(Arc::new(vec![1]));
        // A revision the server never had (restart, other master): at once.
        let r = long_poll(
            p.subscribe(),
            FeedQuery {
                wait: Some(99),
                timeout: Some(60),
            },
        )
        .await;
        assert_eq!(r.headers()[REVISION_HEADER], "1");
        // The current one: held until the next change.
        let rx = p.subscribe();
        let held = tokio::spawn(long_poll(
            rx,
            FeedQuery {
                wait: Some(1),
                timeout: Some(60),
            },
        ));
        tokio::task::yield_now().await;
        assert!(!held.is_finished());
        p.publish(Arc::new(vec![2]));
        let r = held.await.unwrap();
        assert_eq!(r.headers()[REVISION_HEADER], "2");
        assert_eq!(r.headers()[header::ETAG], "\"2\"");
    }
}
