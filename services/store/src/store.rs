//! The [`Store`] handle: typed get/put/delete/list and compare-and-set over etcd.

use crate::config::StoreConfig;
use crate::error::{StoreError, classify};
use crate::keys::{Key, Prefix, prefix_range_end};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    KeyValue, PutOptions, SortOrder, SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How many keys one page of [`Store::list`] asks for.
const LIST_PAGE: i64 = 500;

/// A value read from etcd with the version it had.
///
/// `version` is etcd's `mod_revision` of the key: it changes on every write and is what
/// [`Store::put_if_version`] compares. 0 is never a stored version; it means "absent".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The decoded value.
    pub value: T,
    /// The key's `mod_revision`.
    pub version: u64,
}

/// The result of [`Store::list`]: every item under a prefix as of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T> {
    /// Items in key order.
    pub items: Vec<(Key, Versioned<T>)>,
    /// The store revision the listing was read at: watch from `revision + 1` to see every
    /// later change and nothing twice.
    pub revision: u64,
}

/// A cheap-to-clone handle on etcd, scoped to one root prefix.
///
/// ## Endpoints and failover
///
/// The store keeps one gRPC connection per endpoint and sends every request to the
/// *current* one, like etcd's Go client pins an endpoint. When a request fails because
/// that member is unreachable or has no leader, the next endpoint becomes current; if the
/// request provably never reached a working member (the connection could not be
/// established, or the member answered "no leader") it is retried there at once, up to
/// once per endpoint. A request
/// that may have been applied (timeout, connection lost mid-call) is not retried: it is
/// returned as [`StoreError::Unavailable`] / [`StoreError::Timeout`] for the caller to
/// decide (compare-and-set makes that safe: re-read, then retry).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    clients: Vec<Client>,
    current: AtomicUsize,
    prefix: String,
    endpoints: String,
    request_timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("endpoints", &self.inner.endpoints)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM file of the TLS configuration and checks it holds what `field` needs.
fn read_tls(
    field: &'static str,
    path: &std::path::Path,
    marker: &str,
) -> Result<Vec<u8>, StoreError> {
    let bytes = std::fs::read(path).map_err(|source| StoreError::TlsFile {
        field,
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains(marker));
    if !found {
        return Err(StoreError::InvalidConfig {
            field: match field {
                "ca" => "tls.ca",
                "cert" => "tls.cert",
                _ => "tls.key",
            },
            reason: format!("{} holds no PEM {marker}", path.display()),
        });
    }
    Ok(bytes)
}

/// An error with its causes, `a: b: c`, for messages.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

pub(crate) fn to_version(rev: i64) -> u64 {
    u64::try_from(rev).unwrap_or(0)
}

pub(crate) fn to_rev(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// True if the request certainly did not reach a member able to apply it, so sending it
/// to another endpoint cannot apply it twice.
fn never_applied(err: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match err {
        E::TransportError(_) => true,
        E::GRpcStatus(status) => {
            let msg = status.message();
            if msg.contains("tcp connect error") || msg.contains("etcdserver: no leader") {
                return true;
            }
            // Walk the cause chain for a refused connection or a failed handshake.
            let mut source: Option<&(dyn std::error::Error + 'static)> =
                std::error::Error::source(status);
            while let Some(e) = source {
                if let Some(io) = e.downcast_ref::<std::io::Error>()
                    && matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::AddrNotAvailable
                            | std::io::ErrorKind::NotConnected
                    )
                {
                    return true;
                }
                if e.to_string().contains("tcp connect error") {
                    return true;
                }
                // tonic wraps every failure to establish a connection (refused, connect
                // timeout, TLS handshake) in its `ConnectError`, which we cannot name
                // without depending on tonic directly.
                if format!("{e:?}").contains("ConnectError(") {
                    return true;
                }
                source = e.source();
            }
            false
        }
        _ => false,
    }
}

impl Store {
    /// Connects to etcd and checks that some endpoint answers within `dial_timeout`.
    pub async fn connect(config: StoreConfig) -> Result<Store, StoreError> {
        config.validate()?;
        let endpoints = config.client_endpoints();
        let joined = endpoints.join(",");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.dial_timeout)
            // Ask members to refuse requests (and cancel watches) while they have no
            // leader, so a partitioned member cannot serve stale reads or a silent watch.
            .with_require_leader(true)
            // Detect dead connections on otherwise idle watch and keep-alive streams.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &config.tls {
            let ca = read_tls("ca", &tls.ca, "CERTIFICATE")?;
            let cert = read_tls("cert", &tls.cert, "CERTIFICATE")?;
            let key = read_tls("key", &tls.key, "PRIVATE KEY")?;
            options = options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .identity(Identity::from_pem(cert, key)),
            );
        }
        let mut clients = Vec::with_capacity(endpoints.len());
        for ep in &endpoints {
            // Connecting is lazy: this only builds the channel, so an error here is
            // about the configuration (URL, TLS material), not the network.
            let client = Client::connect([ep.as_str()], Some(options.clone()))
                .await
                .map_err(|e| StoreError::InvalidConfig {
                    field: if config.tls.is_some() {
                        "tls"
                    } else {
                        "endpoints"
                    },
                    reason: format!("{ep}: {}", chain(&e)),
                })?;
            clients.push(client);
        }
        let store = Store {
            inner: Arc::new(Inner {
                clients,
                current: AtomicUsize::new(0),
                prefix: config.prefix.clone(),
                endpoints: joined.clone(),
                request_timeout: config.request_timeout,
            }),
        };
        // Make one real request so that a wrong address, a TLS mismatch or a dead cluster
        // shows up here and not on first use.
        let probe = store.full_prefix(&Prefix::root());
        let first = tokio::time::timeout(config.dial_timeout, async {
            store
                .call("connect", &probe, |mut c| {
                    let probe = probe.clone();
                    async move {
                        c.get(probe, Some(GetOptions::new().with_count_only()))
                            .await
                    }
                })
                .await
        })
        .await;
        match first {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Unavailable {
                endpoints: joined,
                op: "connect",
                key: probe,
                source: format!("no answer within dial_timeout {:?}", config.dial_timeout).into(),
            }),
        }
    }

    /// The client of the current endpoint and its index.
    pub(crate) fn pick(&self) -> (usize, Client) {
        let n = self.inner.clients.len();
        let idx = self.inner.current.load(Ordering::Relaxed) % n;
        (idx, self.inner.clients[idx].clone())
    }

    /// Moves off endpoint `idx` after a failure (no-op if another task already did).
    pub(crate) fn failed(&self, idx: usize) {
        let n = self.inner.clients.len();
        if n > 1 {
            let _ = self.inner.current.compare_exchange(
                idx,
                (idx + 1) % n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// The root prefix (e.g. `/basalt/v1/`).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The configured endpoints, comma separated (for messages).
    pub fn endpoints(&self) -> &str {
        &self.inner.endpoints
    }

    /// The full etcd key of `key`: root prefix + relative path.
    pub fn full_key(&self, key: &Key) -> String {
        format!("{}{}", self.inner.prefix, key.as_str())
    }

    /// The full etcd key prefix of `prefix`.
    pub fn full_prefix(&self, prefix: &Prefix) -> String {
        format!("{}{}", self.inner.prefix, prefix.as_str())
    }

    /// The etcd client of the current endpoint, for calls this layer does not wrap
    /// (status, members, compaction).
    pub fn client(&self) -> Client {
        self.pick().1
    }

    /// Turns a full etcd key read back from etcd into a relative [`Key`].
    pub(crate) fn relative_key(&self, full: &[u8]) -> Result<Key, StoreError> {
        let text = std::str::from_utf8(full).map_err(|_| StoreError::InvalidKey {
            key: String::from_utf8_lossy(full).into_owned(),
            reason: "key is not UTF-8".to_string(),
        })?;
        let rel = text
            .strip_prefix(&self.inner.prefix)
            .ok_or_else(|| StoreError::InvalidKey {
                key: text.to_string(),
                reason: format!("not under the store prefix {}", self.inner.prefix),
            })?;
        Key::parse(rel)
    }

    /// Runs one unary etcd call on the current endpoint under the request timeout, fails
    /// over as described on [`Store`], and maps the error.
    pub(crate) async fn call<R, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        mut f: F,
    ) -> Result<R, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<R, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.inner.clients.len() {
            let (idx, client) = self.pick();
            match tokio::time::timeout(self.inner.request_timeout, f(client)).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => {
                    let retry = never_applied(&e);
                    let err = classify(&self.inner.endpoints, op, key, e);
                    if err.is_unavailable() {
                        self.failed(idx);
                    }
                    if !retry {
                        return Err(err);
                    }
                    tracing::debug!(op, key, error = %err, "etcd endpoint failed, trying the next");
                    last = Some(err);
                }
                Err(_) => {
                    self.failed(idx);
                    return Err(StoreError::Timeout {
                        endpoints: self.inner.endpoints.clone(),
                        op,
                        key: key.to_string(),
                        after: self.inner.request_timeout,
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Unavailable {
            endpoints: self.inner.endpoints.clone(),
            op,
            key: key.to_string(),
            source: "no endpoint".into(),
        }))
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        full: &str,
        value: &T,
    ) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            key: full.to_string(),
            source,
        })
    }

    pub(crate) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Versioned<T>, StoreError> {
        let value = serde_json::from_slice(kv.value()).map_err(|source| StoreError::Decode {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            source,
        })?;
        Ok(Versioned {
            value,
            version: to_version(kv.mod_revision()),
        })
    }

    /// Reads one key. `None` if it does not exist.
    pub async fn get<T: DeserializeOwned>(
        &self,
        key: &Key,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let full = self.full_key(key);
        let resp = self
            .call("get", &full, |mut c| {
                let k = full.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        resp.kvs().first().map(Self::decode).transpose()
    }

    /// Writes one key unconditionally; returns its new version.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
    ) -> Result<u64, StoreError> {
        self.put_opts(key, value, None).await
    }

    /// Writes one key attached to a lease: it disappears when the lease ends.
    pub async fn put_with_lease<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        lease: &crate::Lease,
    ) -> Result<u64, StoreError> {
        self.put_opts(key, value, Some(PutOptions::new().with_lease(lease.id())))
            .await
    }

    async fn put_opts<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        options: Option<PutOptions>,
    ) -> Result<u64, StoreError> {
        let full = self.full_key(key);
        let bytes = self.encode(&full, value)?;
        let resp = self
            .call("put", &full, |mut c| {
                let (k, v, o) = (full.clone(), bytes.clone(), options.clone());
                async move { c.put(k, v, o).await }
            })
            .await?;
        Ok(resp.header().map(|h| to_version(h.revision())).unwrap_or(0))
    }

    /// Writes `key` only if its current version is `expected` (0: only if it does not
    /// exist). Returns the new version, or [`StoreError::Conflict`] with what was found.
    pub async fn put_if_version<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
        expected: u64,
    ) -> Result<u64, StoreError> {
        self.txn()
            .put_if_version(key, value, expected)
            .commit()
            .await
    }

    /// Creates `key`; [`StoreError::Conflict`] if it exists.
    pub async fn create<T: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &T,
    ) -> Result<u64, StoreError> {
        self.put_if_version(key, value, 0).await
    }

    /// Deletes one key; returns whether it existed.
    pub async fn delete(&self, key: &Key) -> Result<bool, StoreError> {
        let full = self.full_key(key);
        let resp = self
            .call("delete", &full, |mut c| {
                let k = full.clone();
                async move { c.delete(k, None).await }
            })
            .await?;
        Ok(resp.deleted() > 0)
    }

    /// Deletes `key` only if its version is `expected` (which must be > 0).
    pub async fn delete_if_version(&self, key: &Key, expected: u64) -> Result<(), StoreError> {
        self.txn()
            .delete_if_version(key, expected)
            .commit()
            .await
            .map(|_| ())
    }

    /// Deletes every key under `prefix`; returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: &Prefix) -> Result<u64, StoreError> {
        let full = self.full_prefix(prefix);
        let end = prefix_range_end(full.as_bytes());
        let resp = self
            .call("delete prefix", &full, |mut c| {
                let (k, end) = (full.clone(), end.clone());
                async move {
                    c.delete(k, Some(DeleteOptions::new().with_range(end)))
                        .await
                }
            })
            .await?;
        Ok(to_version(resp.deleted()))
    }

    /// Reads every key under `prefix` at one revision, in key order. Large directories
    /// are read in pages at the same revision, so the result is a consistent snapshot.
    pub async fn list<T: DeserializeOwned>(
        &self,
        prefix: &Prefix,
    ) -> Result<Listing<T>, StoreError> {
        let full = self.full_prefix(prefix);
        let end = prefix_range_end(full.as_bytes());
        let mut items = Vec::new();
        let mut start = full.clone().into_bytes();
        let mut revision: i64 = 0;
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE)
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self
                .call("list", &full, |mut c| {
                    let (k, o) = (start.clone(), opts.clone());
                    async move { c.get(k, Some(o)).await }
                })
                .await?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            for kv in resp.kvs() {
                let key = self.relative_key(kv.key())?;
                items.push((key, Self::decode(kv)?));
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        Ok(Listing {
            items,
            revision: to_version(revision),
        })
    }

    /// The keys under `prefix` (relative), without values.
    pub async fn list_keys(&self, prefix: &Prefix) -> Result<Vec<Key>, StoreError> {
        let full = self.full_prefix(prefix);
        let end = prefix_range_end(full.as_bytes());
        let resp = self
            .call("list keys", &full, |mut c| {
                let (k, end) = (full.clone(), end.clone());
                async move {
                    c.get(k, Some(GetOptions::new().with_range(end).with_keys_only()))
                        .await
                }
            })
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| self.relative_key(kv.key()))
            .collect()
    }

    /// The current revision of the whole etcd keyspace (a linearizable read).
    pub async fn revision(&self) -> Result<u64, StoreError> {
        let full = self.full_prefix(&Prefix::root());
        let resp = self
            .call("revision", &full, |mut c| {
                let k = full.clone();
                async move { c.get(k, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        Ok(resp.header().map(|h| to_version(h.revision())).unwrap_or(0))
    }

    /// Starts a multi-key transaction: every change in it applies, or none.
    pub fn txn(&self) -> crate::txn::TxnBuilder {
        crate::txn::TxnBuilder::new(self.clone())
    }

    /// Sends a raw transaction (used by the builder and the election).
    pub(crate) async fn raw_txn(
        &self,
        key: &str,
        txn: Txn,
    ) -> Result<etcd_client::TxnResponse, StoreError> {
        self.call("txn", key, |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })
        .await
    }

    /// The oldest live key under `full` by create revision, and the response revision.
    pub(crate) async fn first_created(
        &self,
        full_prefix: &str,
        max_create_revision: Option<i64>,
        newest: bool,
    ) -> Result<(Option<KeyValue>, i64), StoreError> {
        let end = prefix_range_end(full_prefix.as_bytes());
        let order = if newest {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        };
        let mut opts = GetOptions::new()
            .with_range(end)
            .with_sort(SortTarget::Create, order)
            .with_limit(1);
        if let Some(max) = max_create_revision {
            opts = opts.with_max_create_revision(max);
        }
        let mut resp = self
            .call("get oldest", full_prefix, |mut c| {
                let (k, o) = (full_prefix.to_string(), opts.clone());
                async move { c.get(k, Some(o)).await }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.take_kvs().into_iter().next(), rev))
    }
}

/// Helpers shared with the txn builder.
pub(crate) fn cmp_version(full: &str, expected: u64) -> Compare {
    Compare::mod_revision(full, CompareOp::Equal, to_rev(expected))
}

pub(crate) fn found_version(resp: &TxnOpResponse) -> u64 {
    match resp {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| to_version(kv.mod_revision()))
            .unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn get_op(full: &str) -> TxnOp {
    TxnOp::get(full, None)
}
