//! The data path: [`DataPath`] takes the whole VIP → backends table at once.
//!
//! [`UserspaceProxy`] is a tokio TCP proxy (for hosts without IPVS, like CI): one
//! listener per VIP `ip:port`, each accepted connection goes to a backend chosen
//! round-robin or by least connections, trying the next backend when a connect fails or
//! times out. A new table replaces each VIP's pool with one atomic pointer swap: from
//! the moment [`DataPath::apply`] returns, no new connection goes to a removed backend;
//! connections already open run to completion.
//!
//! UDP VIPs get a datagram proxy on the same `ip:port`: each client address is a
//! *flow* pinned to one backend (chosen like a TCP connection) through its own
//! connected upstream socket, whose replies go back to the client from the VIP socket.
//! A flow ends after [`ProxyConfig::udp_idle_timeout`] without datagrams either way;
//! a flow whose backend left the table moves to another backend with its next datagram.
//!
//! Kernel IPVS (a virtual server per VIP, programmed over generic netlink) is the
//! second [`DataPath`]: [`crate::ipvs::Ipvs`], re-exported here.
//!
//! Where the proxy listens is a [`BindPolicy`]: on nodes the VIP addresses are on the
//! dummy interface `basalt-vip` ([`crate::iface`]) and the proxy binds the VIP itself;
//! tests and hosts without that interface map each VIP to a loopback address.

use crate::backends::Protocol;
pub use crate::ipvs::Ipvs;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// One VIP endpoint of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipEndpoint {
    /// The VIP address and port.
    pub addr: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// What the data path serves: every VIP endpoint with its backends (in order).
pub type ServiceTable = BTreeMap<VipEndpoint, Vec<SocketAddr>>;

/// Data-path failures; each names the VIP.
#[derive(Debug, thiserror::Error)]
pub enum DataPathError {
    /// The listener for a VIP could not be bound (the other VIPs were applied).
    #[error("VIP {vip}: binding {bind}: {source}")]
    Bind {
        /// The VIP.
        vip: SocketAddr,
        /// The address the proxy tried to listen on.
        bind: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Kernel IPVS refused the table (or was unreachable).
    #[error("IPVS: {0}")]
    Ipvs(#[source] crate::ipvs::IpvsError),
}

/// A data path (userspace proxy now, IPVS later).
#[async_trait::async_trait]
pub trait DataPath: Send + Sync + 'static {
    /// Makes the served VIPs exactly `table`.
    async fn apply(&self, table: &ServiceTable) -> Result<(), DataPathError>;
}

/// How a backend is chosen for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each connection to the next backend.
    #[default]
    RoundRobin,
    /// The backend with the fewest open proxied connections (round-robin among ties).
    LeastConnections,
}

/// Where the proxy listens for a VIP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BindPolicy {
    /// On the VIP itself (nodes: the VIP is on the `basalt-vip` dummy interface).
    #[default]
    Vip,
    /// IPv4 `a.b.c.d` → `127.b.c.d` (any 127/8 address is local on Linux): tests and
    /// hosts without the dummy interface. IPv6 VIPs bind `::1`.
    Loopback,
    /// An explicit map; VIPs not in it bind themselves.
    Map(BTreeMap<IpAddr, IpAddr>),
}

impl BindPolicy {
    /// The listen address of `vip`.
    pub fn bind_addr(&self, vip: SocketAddr) -> SocketAddr {
        let ip = match (self, vip.ip()) {
            (BindPolicy::Vip, ip) => ip,
            (BindPolicy::Loopback, IpAddr::V4(v4)) => {
                let [_, b, c, d] = v4.octets();
                IpAddr::V4(Ipv4Addr::new(127, b, c, d))
            }
            (BindPolicy::Loopback, IpAddr::V6(_)) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            (BindPolicy::Map(m), ip) => m.get(&ip).copied().unwrap_or(ip),
        };
        SocketAddr::new(ip, vip.port())
    }
}

/// Userspace proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Backend choice.
    pub balance: Balance,
    /// Per-backend connect timeout before the next backend is tried (1 s).
    pub connect_timeout: Duration,
    /// Where to listen.
    pub bind: BindPolicy,
    /// How long a UDP flow lives without a datagram (60 s).
    pub udp_idle_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            balance: Balance::RoundRobin,
            connect_timeout: Duration::from_secs(1),
            bind: BindPolicy::Vip,
            udp_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Proxy counters.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    /// Client connections accepted.
    pub accepted: AtomicU64,
    /// Connections forwarded to a backend.
    pub forwarded: AtomicU64,
    /// Backend connects that failed or timed out (another backend was tried).
    pub connect_failures: AtomicU64,
    /// Client connections dropped because no backend answered.
    pub no_backend: AtomicU64,
    /// UDP datagrams forwarded (both ways).
    pub udp_datagrams: AtomicU64,
    /// UDP flows created.
    pub udp_flows_created: AtomicU64,
    /// UDP flows ended by the idle timeout.
    pub udp_flows_expired: AtomicU64,
    /// UDP flows now open.
    pub udp_flows: AtomicU64,
}

impl ProxyMetrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, v, help) in [
            (
                "l4lb_proxy_accepted_total",
                &self.accepted,
                "client connections accepted",
            ),
            (
                "l4lb_proxy_forwarded_total",
                &self.forwarded,
                "connections forwarded",
            ),
            (
                "l4lb_proxy_connect_failures_total",
                &self.connect_failures,
                "failed backend connects",
            ),
            (
                "l4lb_proxy_no_backend_total",
                &self.no_backend,
                "connections dropped with no reachable backend",
            ),
            (
                "l4lb_proxy_udp_datagrams_total",
                &self.udp_datagrams,
                "UDP datagrams forwarded",
            ),
            (
                "l4lb_proxy_udp_flows_created_total",
                &self.udp_flows_created,
                "UDP flows created",
            ),
            (
                "l4lb_proxy_udp_flows_expired_total",
                &self.udp_flows_expired,
                "UDP flows ended by the idle timeout",
            ),
        ] {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        s.push_str(&format!(
            "# HELP l4lb_proxy_udp_flows UDP flows open\n# TYPE l4lb_proxy_udp_flows gauge\nl4lb_proxy_udp_flows {}\n",
            self.udp_flows.load(Ordering::Relaxed)
        ));
        s
    }
}

#[derive(Debug)]
struct Backend {
    addr: SocketAddr,
    active: AtomicUsize,
}

#[derive(Debug, Default)]
struct Pool {
    backends: Vec<Arc<Backend>>,
}

struct Listener {
    pool: Arc<ArcSwap<Pool>>,
    bound: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    config: ProxyConfig,
    metrics: ProxyMetrics,
}

/// The userspace TCP proxy (module docs).
pub struct UserspaceProxy {
    shared: Arc<Shared>,
    listeners: tokio::sync::Mutex<BTreeMap<VipEndpoint, Listener>>,
    /// Per-backend state, shared by every pool version so connection counts survive
    /// table updates.
    backends: std::sync::Mutex<HashMap<SocketAddr, Arc<Backend>>>,
}

impl UserspaceProxy {
    /// A proxy serving nothing yet.
    pub fn new(config: ProxyConfig) -> UserspaceProxy {
        UserspaceProxy {
            shared: Arc::new(Shared {
                config,
                metrics: ProxyMetrics::default(),
            }),
            listeners: tokio::sync::Mutex::new(BTreeMap::new()),
            backends: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &ProxyMetrics {
        &self.shared.metrics
    }

    /// Where the proxy listens for the TCP VIP `vip` (None when it does not serve it).
    pub async fn bound_addr(&self, vip: SocketAddr) -> Option<SocketAddr> {
        self.bound(VipEndpoint {
            addr: vip,
            protocol: Protocol::Tcp,
        })
        .await
    }

    /// Where the proxy listens for `ep` (TCP or UDP).
    pub async fn bound(&self, ep: VipEndpoint) -> Option<SocketAddr> {
        self.listeners.lock().await.get(&ep).map(|l| l.bound)
    }

    fn pool(&self, addrs: &[SocketAddr]) -> Pool {
        let mut known = self
            .backends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let backends = addrs
            .iter()
            .map(|a| {
                known
                    .entry(*a)
                    .or_insert_with(|| {
                        Arc::new(Backend {
                            addr: *a,
                            active: AtomicUsize::new(0),
                        })
                    })
                    .clone()
            })
            .collect();
        // Forget backends no pool refers to any more.
        known.retain(|_, b| Arc::strong_count(b) > 1);
        Pool { backends }
    }
}

#[async_trait::async_trait]
impl DataPath for UserspaceProxy {
    async fn apply(&self, table: &ServiceTable) -> Result<(), DataPathError> {
        let mut listeners = self.listeners.lock().await;
        let mut first_err = None;
        listeners.retain(|ep, _| {
            let keep = table.contains_key(ep);
            if !keep {
                tracing::info!(vip = %ep.addr, protocol = %ep.protocol, "VIP removed");
            }
            keep
        });
        for (ep, addrs) in table {
            let vip = ep.addr;
            let pool = Arc::new(self.pool(addrs));
            if let Some(l) = listeners.get(ep) {
                l.pool.store(pool);
                continue;
            }
            let bind = self.shared.config.bind.bind_addr(vip);
            let pool = Arc::new(ArcSwap::new(pool));
            let started = match ep.protocol {
                Protocol::Tcp => TcpListener::bind(bind).await.map(|listener| {
                    let bound = listener.local_addr().unwrap_or(bind);
                    let task = tokio::spawn(accept_loop(
                        vip,
                        listener,
                        pool.clone(),
                        self.shared.clone(),
                    ));
                    (bound, task)
                }),
                Protocol::Udp => UdpSocket::bind(bind).await.map(|sock| {
                    let bound = sock.local_addr().unwrap_or(bind);
                    let task = tokio::spawn(udp_loop(
                        vip,
                        Arc::new(sock),
                        pool.clone(),
                        self.shared.clone(),
                    ));
                    (bound, task)
                }),
            };
            match started {
                Ok((bound, task)) => {
                    tracing::info!(vip = %vip, protocol = %ep.protocol, bind = %bound, "VIP listening");
                    listeners.insert(*ep, Listener { pool, bound, task });
                }
                Err(source) => {
                    tracing::warn!(vip = %vip, bind = %bind, error = %source, "VIP bind failed");
                    first_err.get_or_insert(DataPathError::Bind { vip, bind, source });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

async fn accept_loop(
    vip: SocketAddr,
    listener: TcpListener,
    pool: Arc<ArcSwap<Pool>>,
    shared: Arc<Shared>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(vip = %vip, error = %e, "accept failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        shared.metrics.accepted.fetch_add(1, Ordering::Relaxed);
        // The pool as of this accept: a table applied before it is what counts.
        let current = pool.load_full();
        let turn = next.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            forward(vip, peer, client, &current, turn, &shared).await;
        });
    }
}

/// Backend order for one connection: rotated by `turn`, then (least connections) by
/// open connections, the sort being stable so ties stay round-robin.
fn order(pool: &Pool, turn: usize, balance: Balance) -> Vec<Arc<Backend>> {
    let n = pool.backends.len();
    let mut out: Vec<Arc<Backend>> = (0..n)
        .map(|i| pool.backends[(turn + i) % n].clone())
        .collect();
    if balance == Balance::LeastConnections {
        out.sort_by_key(|b| b.active.load(Ordering::Relaxed));
    }
    out
}

struct ActiveGuard(Arc<Backend>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn forward(
    vip: SocketAddr,
    peer: SocketAddr,
    mut client: TcpStream,
    pool: &Pool,
    turn: usize,
    shared: &Shared,
) {
    for backend in order(pool, turn, shared.config.balance) {
        let connect = tokio::time::timeout(
            shared.config.connect_timeout,
            TcpStream::connect(backend.addr),
        )
        .await;
        let mut upstream = match connect {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                shared
                    .metrics
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(vip = %vip, backend = %backend.addr, error = %e, "backend connect failed");
                continue;
            }
            Err(_) => {
                shared
                    .metrics
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(vip = %vip, backend = %backend.addr, "backend connect timed out");
                continue;
            }
        };
        backend.active.fetch_add(1, Ordering::Relaxed);
        let _guard = ActiveGuard(backend.clone());
        shared.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(vip = %vip, backend = %backend.addr, peer = %peer, error = %e, "proxied connection ended with an error");
        }
        return;
    }
    shared.metrics.no_backend.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(vip = %vip, peer = %peer, backends = pool.backends.len(), "no backend reachable");
}

/// One UDP client flow: pinned to a backend through its own upstream socket.
struct Flow {
    backend: Arc<Backend>,
    upstream: Arc<UdpSocket>,
    /// Milliseconds since the loop started, at the last datagram either way.
    last: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.task.abort();
        self.backend.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Opens a flow from `client` to `backend`: a connected upstream socket whose replies
/// go back to `client` from the VIP socket.
async fn open_flow(
    vip: SocketAddr,
    client: SocketAddr,
    backend: Arc<Backend>,
    sock: Arc<UdpSocket>,
    start: Instant,
    shared: Arc<Shared>,
) -> std::io::Result<Flow> {
    let any: SocketAddr = if backend.addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let upstream = UdpSocket::bind(any).await?;
    upstream.connect(backend.addr).await?;
    let upstream = Arc::new(upstream);
    let last = Arc::new(AtomicU64::new(millis_since(start)));
    let task = {
        let (upstream, last, baddr) = (upstream.clone(), last.clone(), backend.addr);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                match upstream.recv(&mut buf).await {
                    Ok(n) => {
                        last.store(millis_since(start), Ordering::Relaxed);
                        shared.metrics.udp_datagrams.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = sock.send_to(&buf[..n], client).await {
                            tracing::debug!(vip = %vip, client = %client, error = %e, "UDP reply not delivered");
                        }
                    }
                    // ICMP errors (port unreachable) surface here; the flow stays.
                    Err(e) => {
                        tracing::debug!(vip = %vip, backend = %baddr, error = %e, "UDP backend error");
                        tokio::task::yield_now().await;
                    }
                }
            }
        })
    };
    backend.active.fetch_add(1, Ordering::Relaxed);
    Ok(Flow {
        backend,
        upstream,
        last,
        task,
    })
}

async fn udp_loop(
    vip: SocketAddr,
    sock: Arc<UdpSocket>,
    pool: Arc<ArcSwap<Pool>>,
    shared: Arc<Shared>,
) {
    let start = Instant::now();
    let idle = shared.config.udp_idle_timeout;
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let mut sweep = tokio::time::interval((idle / 4).max(Duration::from_millis(10)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut turn = 0usize;
    let metrics = &shared.metrics;
    let set_gauge = |flows: &HashMap<SocketAddr, Flow>| {
        metrics
            .udp_flows
            .store(flows.len() as u64, Ordering::Relaxed);
    };
    loop {
        let (n, client) = tokio::select! {
            _ = sweep.tick() => {
                let now = millis_since(start);
                let before = flows.len();
                flows.retain(|_, f| now.saturating_sub(f.last.load(Ordering::Relaxed)) < idle_ms);
                let expired = before - flows.len();
                if expired > 0 {
                    metrics.udp_flows_expired.fetch_add(expired as u64, Ordering::Relaxed);
                    set_gauge(&flows);
                }
                continue;
            }
            r = sock.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(vip = %vip, error = %e, "UDP receive failed");
                    tokio::task::yield_now().await;
                    continue;
                }
            },
        };
        let current = pool.load();
        let pinned = flows
            .get(&client)
            .is_some_and(|f| current.backends.iter().any(|b| b.addr == f.backend.addr));
        if !pinned {
            flows.remove(&client);
            let candidates = order(&current, turn, shared.config.balance);
            turn = turn.wrapping_add(1);
            let mut opened = None;
            for b in candidates {
                match open_flow(vip, client, b.clone(), sock.clone(), start, shared.clone()).await {
                    Ok(f) => {
                        opened = Some(f);
                        break;
                    }
                    Err(e) => {
                        metrics.connect_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(vip = %vip, backend = %b.addr, error = %e, "UDP upstream socket failed");
                    }
                }
            }
            let Some(flow) = opened else {
                metrics.no_backend.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(vip = %vip, client = %client, "UDP datagram dropped: no backend");
                continue;
            };
            metrics.udp_flows_created.fetch_add(1, Ordering::Relaxed);
            flows.insert(client, flow);
            set_gauge(&flows);
        }
        if let Some(f) = flows.get(&client) {
            f.last.store(millis_since(start), Ordering::Relaxed);
            match f.upstream.send(&buf[..n]).await {
                Ok(_) => {
                    metrics.udp_datagrams.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(vip = %vip, backend = %f.backend.addr, error = %e, "UDP forward failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_policies() {
        let vip: SocketAddr = "11.2.3.4:80".parse().unwrap();
        assert_eq!(BindPolicy::Vip.bind_addr(vip), vip);
        assert_eq!(
            BindPolicy::Loopback.bind_addr(vip),
            "127.2.3.4:80".parse().unwrap()
        );
        let m = BindPolicy::Map(BTreeMap::from([(vip.ip(), "127.9.9.9".parse().unwrap())]));
        assert_eq!(m.bind_addr(vip), "127.9.9.9:80".parse().unwrap());
    }

    #[test]
    fn least_connections_prefers_idle_backends() {
        let mk = |p: u16, n: usize| {
            Arc::new(Backend {
                addr: SocketAddr::from(([127, 0, 0, 1], p)),
                active: AtomicUsize::new(n),
            })
        };
        let pool = Pool {
            backends: vec![mk(1, 3), mk(2, 0), mk(3, 1)],
        };
        let ports = |v: Vec<Arc<Backend>>| v.iter().map(|b| b.addr.port()).collect::<Vec<_>>();
        assert_eq!(ports(order(&pool, 0, Balance::LeastConnections)), [2, 3, 1]);
        assert_eq!(ports(order(&pool, 1, Balance::RoundRobin)), [2, 3, 1]);
        assert_eq!(ports(order(&pool, 2, Balance::RoundRobin)), [3, 1, 2]);
    }
}
