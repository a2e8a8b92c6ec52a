//! `basalt-l4lb`: Basalt's layer-4 load balancer for named and IP VIPs (`basaltd l4lb`),
//! the successor of DC/OS Minuteman / dcos-l4lb.
//!
//! ```text
//!  basalt_dns::StateSource ──MasterState──▶ backends::desired ──▶ VIP → healthy backends
//!   (etcd watch + fetch)                         │ named VIPs
//!                                                ▼
//!                       VipAllocator (etcd l4lb/vips/, l4lb/ips/) ──▶ VipPublisher
//!                                                │                   (basalt-dns names)
//!                                                ▼
//!                       VipInterface (basalt-vip addresses) + DataPath (proxy / IPVS)
//! ```
//!
//! * [`backends`]: VIP labels (`VIP_n` = `/name:port` or `ip:port`, legacy
//!   `VIP_PORT<i>`) and backends of a `/master/state`; bad labels are reported by name.
//! * [`allocator`]: stable named-VIP addresses from `vip_range` (11.0.0.0/8), persisted
//!   in etcd with create-if-absent transactions.
//! * [`datapath`]: [`DataPath`] and the userspace TCP/UDP proxy [`UserspaceProxy`].
//! * [`ipvs`]: the kernel IPVS data path over generic netlink ([`datapath::Ipvs`]).
//! * [`hostsetup`]: what local clients of IPVS VIPs need from the kernel
//!   (`net.ipv4.vs.conntrack`, an nftables masquerade rule), set at start.
//! * [`iface`]: the `basalt-vip` dummy interface behind [`VipInterface`]
//!   ([`IpCommandInterface`] on nodes, [`FakeInterface`] in tests).
//! * [`feed`]: `GET /v1/vips` (dcos-net's shape, long-poll): masters serve the table,
//!   agents (no etcd) follow it with [`feed::Follower`].
//!
//! How a node chooses its data path (`basaltd l4lb --datapath auto`): if
//! [`datapath::Ipvs::probe`] succeeds (the kernel resolves the generic-netlink family
//! `IPVS`: `ip_vs` loaded and `CAP_NET_ADMIN`), [`datapath::Ipvs`] with the VIP
//! addresses on `basalt-vip` via [`IpCommandInterface`]; otherwise [`UserspaceProxy`]
//! (binding each VIP on `basalt-vip`, or its `127/8` twin with `--bind loopback`).
//! `--datapath ipvs` fails instead of falling back. Masters run the [`Controller`]
//! (etcd allocation + watch) and serve its [`Controller::vip_feed`] on port 62080;
//! agents run a [`feed::Follower`] on the masters' feed.
//!
//! [`Controller::apply_state`] turns one state into one data-path table; each table
//! replaces the previous one atomically per VIP, so a backend leaves as soon as a state
//! without it is applied. Named VIPs whose tasks are gone keep their address for
//! [`L4lbConfig::release_grace`] (so a redeploy keeps its address), then it is freed.
//!
//! A backend serves while its task is TASK_RUNNING and its latest status is not
//! `healthy: false`; killing tasks keep their VIP without new connections.
//!
//! Limits: the grace timer lives in memory (a restart restarts it); the IPVS data path
//! is tested against the uapi byte layout here (this CI kernel has no `ip_vs`), for
//! real where `tests/ipvs.rs` does not SKIP, and between two agents of a QEMU cluster
//! (`qemu/tests/cluster.rs`: local clients, masquerade, backend removal); IPVS
//! reconciles *every* service of the network namespace; `basalt-vip` is managed with
//! the `ip` command, not rtnetlink; the masquerade rule covers `vip_range` only.

pub mod allocator;
pub mod backends;
pub mod datapath;
pub mod feed;
pub mod hostsetup;
pub mod iface;
pub mod ipvs;

pub use allocator::{AllocError, VipAllocator};
pub use backends::{Desired, LabelError, LabelProblem, Protocol, VipId, VipTarget, desired};
pub use datapath::{
    Balance, BindPolicy, DataPath, DataPathError, Ipvs, ProxyConfig, ServiceTable, UserspaceProxy,
    VipEndpoint,
};
pub use iface::{FakeInterface, InterfaceError, IpCommandInterface, VIP_INTERFACE, VipInterface};

use basalt_dns::{MasterState, StateSource};
use futures::StreamExt;
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Controller settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4lbConfig {
    /// Named-VIP range (genconf `vip_range`, default `11.0.0.0/8`).
    pub vip_range: Ipv4Net,
    /// How long a named VIP without backends keeps its address; `None`: forever.
    pub release_grace: Option<Duration>,
}

impl Default for L4lbConfig {
    fn default() -> Self {
        L4lbConfig {
            vip_range: Ipv4Net::new(Ipv4Addr::new(11, 0, 0, 0), 8)
                .unwrap_or_else(|_| Ipv4Net::default()),
            release_grace: Some(Duration::from_secs(600)),
        }
    }
}

/// Takes the named-VIP map (`vip_key` → address), e.g. the DNS server.
pub trait VipPublisher: Send + Sync + 'static {
    /// Publishes the complete map.
    fn publish(&self, vips: &BTreeMap<String, Ipv4Addr>);
}

impl VipPublisher for basalt_dns::DnsServer {
    fn publish(&self, vips: &BTreeMap<String, Ipv4Addr>) {
        if let Err(e) = self.set_vip_addresses(vips.clone()) {
            tracing::warn!(error = %e, "publishing VIP addresses to DNS failed");
        }
    }
}

/// Controller failures for one state (the rest of the state was applied).
#[derive(Debug, thiserror::Error)]
pub enum L4lbError {
    /// Allocation failed.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// The data path refused a VIP.
    #[error(transparent)]
    DataPath(#[from] DataPathError),
    /// The VIP interface failed.
    #[error(transparent)]
    Interface(#[from] InterfaceError),
}

/// The outcome of one applied state.
#[derive(Debug, Default)]
pub struct Applied {
    /// What the data path now serves.
    pub table: ServiceTable,
    /// Named VIP addresses (`vip_key` → address), as published.
    pub addresses: BTreeMap<String, Ipv4Addr>,
    /// Malformed labels.
    pub label_errors: Vec<LabelError>,
    /// Failures (allocation, bind, interface); the rest was applied.
    pub errors: Vec<L4lbError>,
}

/// Turns master states into VIP addresses, DNS names and a data-path table.
pub struct Controller<D: DataPath, I: VipInterface> {
    config: L4lbConfig,
    allocator: VipAllocator,
    datapath: Arc<D>,
    iface: Arc<I>,
    publishers: Vec<Arc<dyn VipPublisher>>,
    /// Named VIP → when it last had a backend (or was first seen without one).
    last_backed: HashMap<String, Instant>,
    applied: tokio::sync::watch::Sender<u64>,
    feed: Arc<basalt_dns::feed::Publisher<feed::VipList>>,
}

impl<D: DataPath, I: VipInterface> Controller<D, I> {
    /// A controller allocating through `allocator`.
    pub fn new(
        config: L4lbConfig,
        allocator: VipAllocator,
        datapath: Arc<D>,
        iface: Arc<I>,
    ) -> Self {
        Controller {
            config,
            allocator,
            datapath,
            iface,
            publishers: Vec::new(),
            last_backed: HashMap::new(),
            applied: tokio::sync::watch::channel(0).0,
            feed: Arc::new(basalt_dns::feed::Publisher::new()),
        }
    }

    /// The applied tables as a change feed (serve it with [`feed::serve`]).
    pub fn vip_feed(&self) -> Arc<basalt_dns::feed::Publisher<feed::VipList>> {
        self.feed.clone()
    }

    /// Also publish the named-VIP map to `p` after each state.
    pub fn publish_to(mut self, p: Arc<dyn VipPublisher>) -> Self {
        self.publishers.push(p);
        self
    }

    /// Counts applied states (waiters see each state once its table is live).
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Applies one state (crate docs).
    pub async fn apply_state(&mut self, state: &MasterState) -> Applied {
        let want = desired(state);
        let mut out = Applied {
            label_errors: want.errors,
            ..Applied::default()
        };
        for e in &out.label_errors {
            tracing::warn!(task = %e.task, label = %e.label, value = %e.value, problem = %e.problem, "bad VIP label");
        }
        let now = Instant::now();
        // Allocate every named VIP of the state.
        for (vip, backends) in &want.vips {
            let VipTarget::Named { key } = &vip.target else {
                continue;
            };
            if !backends.is_empty() || !self.last_backed.contains_key(key) {
                self.last_backed.insert(key.clone(), now);
            }
            if out.addresses.contains_key(key) || (backends.is_empty() && self.expired(key, now)) {
                // An expired VIP without backends is released below, not re-allocated.
                continue;
            }
            match self.allocator.allocate(key).await {
                Ok(ip) => {
                    out.addresses.insert(key.clone(), ip);
                }
                Err(e) => {
                    tracing::warn!(vip = %key, error = %e, "VIP allocation failed");
                    out.errors.push(e.into());
                }
            }
        }
        self.release_expired(&want.vips, now, &mut out).await;
        for (vip, backends) in &want.vips {
            let ip = match &vip.target {
                VipTarget::Ip(ip) => *ip,
                VipTarget::Named { key } => match out.addresses.get(key) {
                    Some(ip) => IpAddr::V4(*ip),
                    None => continue,
                },
            };
            let ep = VipEndpoint {
                addr: SocketAddr::new(ip, vip.port),
                protocol: vip.protocol,
            };
            out.table
                .entry(ep)
                .or_default()
                .extend(backends.iter().copied());
        }
        for b in out.table.values_mut() {
            b.sort();
            b.dedup();
        }
        // The agents' feed first: they apply the table to their own data paths while this
        // node applies it here (a removed backend leaves every node sooner).
        self.feed
            .publish(Arc::new(feed::list_of(&out.table, &out.addresses)));
        // The data path before the interface: a removed backend gets no new connection
        // before the interface's `ip` commands have run.
        if let Err(e) = self.datapath.apply(&out.table).await {
            out.errors.push(e.into());
        }
        let addrs: BTreeSet<IpAddr> = out.table.keys().map(|e| e.addr.ip()).collect();
        if let Err(e) = self.iface.sync(&addrs).await {
            tracing::warn!(error = %e, "VIP interface sync failed");
            out.errors.push(e.into());
        }
        // Names last: a name never points at an address that is not served yet.
        for p in &self.publishers {
            p.publish(&out.addresses);
        }
        tracing::debug!(
            vips = out.table.len(),
            named = out.addresses.len(),
            "state applied"
        );
        self.applied.send_modify(|n| *n += 1);
        out
    }

    fn expired(&self, key: &str, now: Instant) -> bool {
        match (self.config.release_grace, self.last_backed.get(key)) {
            (Some(grace), Some(since)) => now.duration_since(*since) >= grace,
            _ => false,
        }
    }

    /// Frees the addresses of named VIPs that have had no backend for the grace period
    /// (including allocations found in etcd that no state mentions any more).
    async fn release_expired(
        &mut self,
        vips: &BTreeMap<VipId, BTreeSet<SocketAddr>>,
        now: Instant,
        out: &mut Applied,
    ) {
        let Some(grace) = self.config.release_grace else {
            return;
        };
        let stored = match self.allocator.list().await {
            Ok(s) => s,
            Err(e) => {
                out.errors.push(e.into());
                return;
            }
        };
        let mut backed: BTreeSet<&str> = BTreeSet::new();
        for (vip, b) in vips {
            if let VipTarget::Named { key } = &vip.target
                && !b.is_empty()
            {
                backed.insert(key);
            }
        }
        for key in stored.keys() {
            if backed.contains(key.as_str()) {
                continue;
            }
            let since = *self.last_backed.entry(key.clone()).or_insert(now);
            if now.duration_since(since) < grace {
                continue;
            }
            match self.allocator.release(key).await {
                Ok(_) => {
                    self.last_backed.remove(key);
                    out.addresses.remove(key);
                }
                Err(e) => out.errors.push(e.into()),
            }
        }
    }

    /// Applies every state of `source` until it ends.
    pub async fn run<S: StateSource>(mut self, source: S) {
        let mut stream = source.into_stream();
        while let Some(item) = stream.next().await {
            match item {
                Ok(state) => {
                    let applied = self.apply_state(&state).await;
                    for e in &applied.errors {
                        tracing::warn!(error = %e, "part of the state was not applied");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "master state source failed"),
            }
        }
        tracing::info!("master state source ended");
    }
}
