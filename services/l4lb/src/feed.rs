//! The VIP table over HTTP: masters serve it, agents follow it (agents have no etcd
//! credentials, so they neither allocate addresses nor watch the store).
//!
//! `GET /v1/vips` on port [`VIP_FEED_PORT`] (dcos-net's REST port) answers dcos-net's
//! shape, a list of
//!
//! ```json
//! {"vip": "web.marathon.l4lb.thisdcos.directory:80", "protocol": "tcp",
//!  "backend": [{"ip": "10.0.0.2", "port": 31000}], "ip": "11.8.9.10"}
//! ```
//!
//! (`vip` is `<name>.<framework>.l4lb.thisdcos.directory:<port>` for named VIPs and
//! `<ip>:<port>` for IP VIPs; `ip`, the VIP address, is Basalt's addition: dcos-net
//! agents computed it themselves from lashup). `?wait=<rev>[&timeout=<s>]` makes it a
//! long-poll change feed (`basalt_dns::feed`): the answer comes as soon as the table
//! differs from revision `rev`, with `X-Basalt-Revision`.
//!
//! [`Follower`] is the agent side: it follows the feed of the masters (failing over
//! between them, `basalt_dns::FeedClient`) and applies each table to its own data path,
//! VIP interface and DNS publishers, as [`crate::Controller`] does on masters.

use crate::backends::Protocol;
use crate::datapath::{DataPath, ServiceTable, VipEndpoint};
use crate::iface::VipInterface;
use crate::{L4lbError, VipPublisher};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use basalt_dns::feed::{FeedClient, FeedQuery, Publisher, long_poll};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// dcos-net's REST port, where masters serve `/v1/vips`.
pub const VIP_FEED_PORT: u16 = 62080;
/// The zone of named VIPs.
pub const VIP_ZONE: &str = "l4lb.thisdcos.directory";

/// One backend of a [`VipEntry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendEntry {
    /// Backend IP.
    pub ip: IpAddr,
    /// Backend port.
    pub port: u16,
}

/// One VIP of `GET /v1/vips` (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipEntry {
    /// `<key>.l4lb.thisdcos.directory:<port>` or `<ip>:<port>`.
    pub vip: String,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// Backends taking new connections.
    pub backend: Vec<BackendEntry>,
    /// The VIP address (Basalt).
    pub ip: IpAddr,
}

/// The whole table as served.
pub type VipList = Vec<VipEntry>;

/// Why an entry of a fetched table was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VIP entry {vip:?}: {problem}")]
pub struct EntryError {
    /// The entry's `vip`.
    pub vip: String,
    /// What is wrong.
    pub problem: String,
}

impl VipEntry {
    /// The named-VIP key (`web.marathon`) of a named entry.
    pub fn named_key(&self) -> Option<&str> {
        let (name, _) = self.vip.rsplit_once(':')?;
        name.strip_suffix(VIP_ZONE)?.strip_suffix('.')
    }

    /// The VIP port.
    pub fn port(&self) -> Result<u16, EntryError> {
        self.vip
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| EntryError {
                vip: self.vip.clone(),
                problem: "no valid :port".into(),
            })
    }
}

/// Turns a served list into a data-path table and the named-address map; malformed
/// entries are reported and skipped.
pub fn table_of(list: &[VipEntry]) -> (ServiceTable, BTreeMap<String, Ipv4Addr>, Vec<EntryError>) {
    let mut table = ServiceTable::new();
    let mut names = BTreeMap::new();
    let mut errors = Vec::new();
    for e in list {
        let port = match e.port() {
            Ok(p) => p,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        if let Some(key) = e.named_key() {
            match e.ip {
                IpAddr::V4(v4) => {
                    names.insert(key.to_string(), v4);
                }
                IpAddr::V6(_) => errors.push(EntryError {
                    vip: e.vip.clone(),
                    problem: "named VIPs are IPv4".into(),
                }),
            }
        }
        let ep = VipEndpoint {
            addr: SocketAddr::new(e.ip, port),
            protocol: e.protocol,
        };
        let b = table.entry(ep).or_default();
        b.extend(e.backend.iter().map(|b| SocketAddr::new(b.ip, b.port)));
        b.sort();
        b.dedup();
    }
    (table, names, errors)
}

/// The list served for a table and named-address map (inverse of [`table_of`]).
pub fn list_of(table: &ServiceTable, names: &BTreeMap<String, Ipv4Addr>) -> VipList {
    let by_ip: BTreeMap<IpAddr, &str> = names
        .iter()
        .map(|(k, ip)| (IpAddr::V4(*ip), k.as_str()))
        .collect();
    table
        .iter()
        .map(|(ep, backends)| {
            let ip = ep.addr.ip();
            let vip = match by_ip.get(&ip) {
                Some(key) => format!("{key}.{VIP_ZONE}:{}", ep.addr.port()),
                None => ep.addr.to_string(),
            };
            VipEntry {
                vip,
                protocol: ep.protocol,
                backend: backends
                    .iter()
                    .map(|b| BackendEntry {
                        ip: b.ip(),
                        port: b.port(),
                    })
                    .collect(),
                ip,
            }
        })
        .collect()
}

/// The router serving `GET /v1/vips` from `feed`.
pub fn router(feed: Arc<Publisher<VipList>>) -> Router {
    Router::new().route("/v1/vips", get(vips)).with_state(feed)
}

async fn vips(State(feed): State<Arc<Publisher<VipList>>>, Query(q): Query<FeedQuery>) -> Response {
    long_poll(feed.subscribe(), q).await
}

/// Binds `addr` and serves [`router`] in a background task; returns the bound address.
pub async fn serve(
    feed: Arc<Publisher<VipList>>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(feed);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(addr = %bound, error = %e, "VIP feed server stopped");
        }
    });
    tracing::info!(addr = %bound, "VIP feed listening");
    Ok((bound, task))
}

/// Applies the masters' VIP tables on a node without etcd (module docs).
pub struct Follower<D: DataPath, I: VipInterface> {
    datapath: Arc<D>,
    iface: Arc<I>,
    publishers: Vec<Arc<dyn VipPublisher>>,
    applied: tokio::sync::watch::Sender<u64>,
}

impl<D: DataPath, I: VipInterface> Follower<D, I> {
    /// A follower applying to `datapath` and `iface`.
    pub fn new(datapath: Arc<D>, iface: Arc<I>) -> Self {
        Follower {
            datapath,
            iface,
            publishers: Vec::new(),
            applied: tokio::sync::watch::channel(0).0,
        }
    }

    /// Also publish the named-VIP map to `p` after each table.
    pub fn publish_to(mut self, p: Arc<dyn VipPublisher>) -> Self {
        self.publishers.push(p);
        self
    }

    /// Counts applied tables.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Applies one served list; returns the failures (the rest was applied).
    pub async fn apply(&self, list: &[VipEntry]) -> Vec<L4lbError> {
        let (table, names, bad) = table_of(list);
        for e in &bad {
            tracing::warn!(error = %e, "skipping a malformed VIP entry");
        }
        let mut errors = Vec::new();
        // The data path first: a removed backend leaves it without waiting for the
        // interface's `ip` commands (three process starts per sync).
        if let Err(e) = self.datapath.apply(&table).await {
            errors.push(e.into());
        }
        let addrs = table.keys().map(|e| e.addr.ip()).collect();
        if let Err(e) = self.iface.sync(&addrs).await {
            errors.push(e.into());
        }
        for p in &self.publishers {
            p.publish(&names);
        }
        self.applied.send_modify(|n| *n += 1);
        errors
    }

    /// Follows `client` (built for `/v1/vips`) until the task is dropped.
    pub async fn run(self, client: FeedClient) {
        let mut stream = client.stream::<Option<VipList>>();
        while let Some(item) = stream.next().await {
            match item {
                Ok(update) => {
                    tracing::debug!(server = %update.server, revision = update.revision, "VIP table received");
                    // `null`: the master has not applied a state yet; keep what we serve.
                    let Some(list) = update.value else { continue };
                    for e in self.apply(&list).await {
                        tracing::warn!(error = %e, "part of the VIP table was not applied");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "VIP feed unreachable"),
            }
        }
    }
}

/// Follows only the named-VIP addresses of the feed into `p` (a DNS server that runs
/// without a data path, e.g. `basaltd dns`), until the task is dropped.
pub async fn follow_names(client: FeedClient, p: Arc<dyn VipPublisher>) {
    let mut stream = client.stream::<Option<VipList>>();
    while let Some(item) = stream.next().await {
        match item {
            Ok(update) => {
                let Some(list) = update.value else { continue };
                let (_, names, bad) = table_of(&list);
                for e in &bad {
                    tracing::warn!(error = %e, "skipping a malformed VIP entry");
                }
                p.publish(&names);
            }
            Err(e) => tracing::warn!(error = %e, "VIP feed unreachable"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trips_and_has_dcos_nets_shape() {
        let mut table = ServiceTable::new();
        let named = VipEndpoint {
            addr: "11.1.2.3:80".parse().unwrap(),
            protocol: Protocol::Tcp,
        };
        let ipvip = VipEndpoint {
            addr: "10.9.9.9:53".parse().unwrap(),
            protocol: Protocol::Udp,
        };
        table.insert(named, vec!["10.0.0.2:31000".parse().unwrap()]);
        table.insert(ipvip, vec![]);
        let names = BTreeMap::from([("web.marathon".to_string(), Ipv4Addr::new(11, 1, 2, 3))]);
        let list = list_of(&table, &names);
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"vip": "10.9.9.9:53", "protocol": "udp", "backend": [], "ip": "10.9.9.9"},
                {"vip": "web.marathon.l4lb.thisdcos.directory:80", "protocol": "tcp",
                 "backend": [{"ip": "10.0.0.2", "port": 31000}], "ip": "11.1.2.3"}
            ])
        );
        let (t2, n2, errs) = table_of(&list);
        assert!(errs.is_empty());
        assert_eq!(t2, table);
        assert_eq!(n2, names);
    }

    #[test]
    fn malformed_entries_are_skipped_by_name() {
        let list: VipList = serde_json::from_value(serde_json::json!([
            {"vip": "noport", "protocol": "tcp", "backend": [], "ip": "11.0.0.1"},
            {"vip": "x.marathon.l4lb.thisdcos.directory:0", "protocol": "tcp", "backend": [], "ip": "11.0.0.2"},
            {"vip": "ok.marathon.l4lb.thisdcos.directory:81", "protocol": "tcp", "backend": [], "ip": "11.0.0.3"}
        ]))
        .unwrap();
        let (t, n, errs) = table_of(&list);
        assert_eq!(t.len(), 1);
        assert_eq!(n.len(), 1);
        assert_eq!(errs.len(), 2);
        assert!(errs[0].to_string().contains("noport"), "{}", errs[0]);
        // Bad protocol or address: the whole body is refused by the decoder.
        assert!(
            serde_json::from_str::<VipList>(
                r#"[{"vip":"a:1","protocol":"sctp","backend":[],"ip":"11.0.0.1"}]"#
            )
            .is_err()
        );
    }
}
