//! The DNS server: hickory-server listeners, an atomically swapped in-memory index,
//! Mesos-DNS's answer rules, and forwarding.
//!
//! * **Zones served**: the Mesos-DNS domain (`mesos.`), `thisdcos.directory.` and
//!   `thisdcos.global.` (named VIPs: `<vip>.<fw>.l4lb.thisdcos.directory`, also answered
//!   as `dclb.thisdcos.directory`, `l4lb.thisdcos.global` and `dclb.thisdcos.global` like
//!   dcos-net's router). Every other name is forwarded. dcos-net's other names under
//!   `thisdcos.directory` (`*.agentip.dcos…`, the `mesos.thisdcos.directory` mirror,
//!   `leader.dcos…`) are not generated yet and answer NXDOMAIN.
//! * **Logging**: hickory-server logs every request at `info` under the
//!   `hickory_server` target; run with `hickory_server=warn` in the filter (at 100k
//!   queries/s that line is the cost of the whole answer).
//! * **Answers** (Mesos-DNS `resolver.go`): AA set, RA = `recurse_on`; A, AAAA, SRV
//!   (targets' A/AAAA in ADDITIONAL), SOA/NS (in AUTHORITY, owner = the query name),
//!   ANY; answers shuffled per query. No records: `SRV`/`SOA`/`NS` → NOERROR empty; A
//!   for a name with only AAAA/SRV (and AAAA for a name with A/SRV) → NOERROR + SOA;
//!   everything else → NXDOMAIN + SOA. Mesos-DNS's TTL on every record.
//! * **Before the first state** every name in the zones answers SERVFAIL (not an
//!   NXDOMAIN that resolvers would cache for the SOA minimum TTL).
//! * **Index**: [`Index`] is immutable; a new state builds a new one off the query path
//!   and [`DnsServer::apply_state`] swaps it in with one `ArcSwap::store`. Queries never
//!   take a lock.
//! * **Forwarding** (Mesos-DNS `exchanger/forwarder.go`): the request's own bytes (so
//!   its id and flags) go to the longest matching `forward_zones` entry, else to
//!   `resolvers`, each in order, over the client's transport, with `forward_timeout_ms`
//!   per upstream; the first reply with the same id is relayed. `external_on = false` or
//!   no resolver → REFUSED; every upstream failed → SERVFAIL.
//! * **Transport**: hickory-server's UDP and TCP listeners. UDP answers larger than the
//!   client's EDNS size (512 without EDNS) are cut at a record boundary with TC set, so
//!   the client retries over TCP. Packets under 12 bytes are dropped, undecodable ones
//!   answered FORMERR; neither disturbs the listener.

use crate::config::{DnsConfig, parse_resolver};
use crate::metrics::Metrics;
use crate::records::{L4LB_ZONE, RecordSet, StateError};
use crate::state::MasterState;
use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Server failures.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The configuration does not validate.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A listener could not be bound.
    #[error("binding DNS {proto} listener {addr}: {source}")]
    Bind {
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A configured name does not parse as a DNS name.
    #[error("config field `{field}`: `{value}` is not a DNS name: {message}")]
    Name {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
        /// hickory's message.
        message: String,
    },
}

/// SOA fields shared by every zone.
#[derive(Debug, Clone)]
struct SoaTemplate {
    mname: Name,
    rname: Name,
    serial: u32,
    refresh: i32,
    retry: i32,
    expire: i32,
    minimum: u32,
    ttl: u32,
}

/// A query-ready view of one [`RecordSet`]: the record set itself (looked up by the
/// lower-case query name) plus the zone and SOA data. Building it costs nothing per
/// record, so a new state is in service as soon as the record set is generated;
/// hickory `Record`s are made per answer.
#[derive(Debug)]
pub struct Index {
    records: Arc<RecordSet>,
    zones: Vec<LowerName>,
    soa: SoaTemplate,
    ttl: u32,
    vip_ttl: u32,
    serial: u32,
    /// False until the first state: local names answer SERVFAIL rather than an
    /// NXDOMAIN that resolvers would cache for the SOA minimum TTL.
    ready: bool,
}

/// The outcome of a query inside the served zones.
#[derive(Debug)]
pub struct LocalAnswer {
    /// Response code.
    pub rcode: ResponseCode,
    /// ANSWER section.
    pub answers: Vec<Record>,
    /// AUTHORITY section (SOA / NS with the query name as owner).
    pub authority: Vec<Record>,
    /// ADDITIONAL section.
    pub additionals: Vec<Record>,
}

/// The zones whose names are answered from the named-VIP records (dcos-net's router
/// renames the last three to the first).
const VIP_ZONES: [&str; 4] = [
    "l4lb.thisdcos.directory.",
    "dclb.thisdcos.directory.",
    "l4lb.thisdcos.global.",
    "dclb.thisdcos.global.",
];

/// The record-set key of a (lower-case) name: `a.b.mesos.`. `None` for names with
/// characters no generated name has (they cannot match).
fn key_of(name: &Name) -> Option<String> {
    let mut out = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        for &b in label {
            let b = b.to_ascii_lowercase();
            if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
                return None;
            }
            out.push(char::from(b));
        }
        out.push('.');
    }
    if out.is_empty() {
        out.push('.');
    }
    Some(out)
}

/// Parses a name the generator made (plain `[a-z0-9_-]` labels, absolute) without
/// hickory's escape-aware text parser.
fn generated_name(host: &str) -> Option<Name> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.is_empty() {
        return Some(Name::root());
    }
    Name::from_labels(trimmed.split('.').map(str::as_bytes)).ok()
}

impl Index {
    /// Builds the index of `records` under `config` (TTLs, SOA); `serial` is the SOA
    /// serial (Mesos-DNS: the refresh time in Unix seconds).
    pub fn build(records: RecordSet, config: &DnsConfig, serial: u32) -> Result<Index, DnsError> {
        let fqdn = |field: &'static str, v: &str| {
            let v = format!("{}.", v.trim_end_matches('.'));
            Name::from_ascii(&v).map_err(|e| DnsError::Name {
                field,
                value: v.clone(),
                message: e.to_string(),
            })
        };
        let domain = fqdn("domain", &config.domain)?;
        let soa = SoaTemplate {
            mname: fqdn("soa_mname", &config.soa_mname)?,
            rname: fqdn("soa_rname", &config.soa_rname)?,
            serial,
            refresh: i32::try_from(config.soa_refresh).unwrap_or(i32::MAX),
            retry: i32::try_from(config.soa_retry).unwrap_or(i32::MAX),
            expire: i32::try_from(config.soa_expire).unwrap_or(i32::MAX),
            minimum: config.soa_minttl,
            ttl: config.ttl,
        };
        let mut zones = vec![LowerName::new(&domain)];
        for z in ["thisdcos.directory.", "thisdcos.global."] {
            if let Ok(n) = Name::from_ascii(z) {
                let n = LowerName::new(&n);
                if !zones.contains(&n) {
                    zones.push(n);
                }
            }
        }
        Ok(Index {
            records: Arc::new(records),
            zones,
            soa,
            ttl: config.ttl,
            vip_ttl: config.vip_ttl,
            serial,
            ready: true,
        })
    }

    /// An index with no records (before the first state arrives).
    pub fn empty(config: &DnsConfig) -> Result<Index, DnsError> {
        let mut index = Self::build(
            RecordSet {
                domain: config.domain_fqdn(),
                ..RecordSet::default()
            },
            config,
            0,
        )?;
        index.ready = false;
        Ok(index)
    }

    /// Whether this index comes from a master state (false before the first one).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The record set behind this index.
    pub fn records(&self) -> &Arc<RecordSet> {
        &self.records
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Whether `qname` is inside a served zone.
    pub fn is_local(&self, qname: &LowerName) -> bool {
        self.zones.iter().any(|z| z.zone_of(qname))
    }

    fn soa_record(&self, owner: &Name) -> Record {
        let s = &self.soa;
        Record::from_rdata(
            owner.clone(),
            s.ttl,
            RData::SOA(SOA::new(
                s.mname.clone(),
                s.rname.clone(),
                s.serial,
                s.refresh,
                s.retry,
                s.expire,
                s.minimum,
            )),
        )
    }

    fn ns_record(&self, owner: &Name) -> Record {
        Record::from_rdata(
            owner.clone(),
            self.soa.ttl,
            RData::NS(NS(self.soa.mname.clone())),
        )
    }

    /// A and AAAA records of `key` (VIP names answered from the VIP records).
    fn addresses(&self, key: &str, owner: &Name, a: &mut Vec<Record>, aaaa: &mut Vec<Record>) {
        let rs = &self.records;
        for ip in rs.a.get(key).into_iter().flatten() {
            a.push(Record::from_rdata(
                owner.clone(),
                self.ttl,
                RData::A(A(*ip)),
            ));
        }
        for ip in rs.aaaa.get(key).into_iter().flatten() {
            aaaa.push(Record::from_rdata(
                owner.clone(),
                self.ttl,
                RData::AAAA(AAAA(*ip)),
            ));
        }
        for zone in VIP_ZONES {
            if let Some(prefix) = key.strip_suffix(zone) {
                let canonical = format!("{prefix}{L4LB_ZONE}");
                for ip in rs.vip_a.get(&canonical).into_iter().flatten() {
                    a.push(Record::from_rdata(
                        owner.clone(),
                        self.vip_ttl,
                        RData::A(A(*ip)),
                    ));
                }
                break;
            }
        }
    }

    /// SRV records of `key` and their targets' addresses.
    fn services(&self, key: &str, owner: &Name, srv: &mut Vec<Record>, extra: &mut Vec<Record>) {
        let Some(targets) = self.records.srv.get(key) else {
            return;
        };
        let mut last_host: Option<(&str, Name)> = None;
        for t in targets {
            // Targets are sorted, so equal hosts are adjacent: parse each once.
            let target = match &last_host {
                Some((h, n)) if *h == t.host => n.clone(),
                _ => {
                    let Some(n) = generated_name(&t.host) else {
                        continue;
                    };
                    let (mut a, mut aaaa) = (Vec::new(), Vec::new());
                    self.addresses(&t.host, &n, &mut a, &mut aaaa);
                    extra.extend(a);
                    extra.extend(aaaa);
                    last_host = Some((t.host.as_str(), n.clone()));
                    n
                }
            };
            srv.push(Record::from_rdata(
                owner.clone(),
                self.ttl,
                RData::SRV(SRV::new(0, 0, t.port, target)),
            ));
        }
    }

    /// Answers a query for a name inside the served zones (`None` outside them), with
    /// Mesos-DNS's rules (module docs). Answers are shuffled.
    pub fn answer(&self, qname: &LowerName, qtype: RecordType) -> Option<LocalAnswer> {
        if !self.is_local(qname) {
            return None;
        }
        if !self.ready {
            return Some(LocalAnswer {
                rcode: ResponseCode::ServFail,
                answers: Vec::new(),
                authority: Vec::new(),
                additionals: Vec::new(),
            });
        }
        let owner: Name = (**qname).clone();
        let key = key_of(&owner);
        let (mut a, mut aaaa, mut srv, mut extra) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut has_srv = false;
        if let Some(k) = &key {
            self.addresses(k, &owner, &mut a, &mut aaaa);
            if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                self.services(k, &owner, &mut srv, &mut extra);
            }
            has_srv = self
                .records
                .srv
                .get(k.as_str())
                .is_some_and(|t| !t.is_empty());
        }
        let (has_a, has_aaaa) = (!a.is_empty(), !aaaa.is_empty());
        let mut out = LocalAnswer {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        };
        match qtype {
            RecordType::SRV => {
                out.answers = srv;
                out.additionals = extra;
            }
            RecordType::A => out.answers = a,
            RecordType::AAAA => out.answers = aaaa,
            RecordType::SOA => out.authority.push(self.soa_record(&owner)),
            RecordType::NS => out.authority.push(self.ns_record(&owner)),
            RecordType::ANY => {
                out.answers = srv;
                out.answers.extend(a);
                out.answers.extend(aaaa);
                out.additionals = extra;
                out.authority.push(self.soa_record(&owner));
                out.authority.push(self.ns_record(&owner));
            }
            _ => {}
        }
        if out.answers.is_empty() {
            match qtype {
                RecordType::SOA | RecordType::NS | RecordType::SRV => {}
                _ => {
                    let nodata = (qtype == RecordType::AAAA && (has_srv || has_a))
                        || (qtype == RecordType::A && (has_srv || has_aaaa));
                    out.rcode = if nodata {
                        ResponseCode::NoError
                    } else {
                        ResponseCode::NXDomain
                    };
                    if qtype != RecordType::ANY {
                        out.authority.push(self.soa_record(&owner));
                    }
                }
            }
        } else if out.answers.len() > 1 {
            out.answers.shuffle(&mut rand::thread_rng());
        }
        Some(out)
    }
}

/// Upstream selection and exchange.
#[derive(Debug, Clone)]
struct Forwarder {
    /// Zone → resolvers, longest zone first.
    zones: Vec<(LowerName, Vec<SocketAddr>)>,
    default: Vec<SocketAddr>,
    enabled: bool,
    timeout: Duration,
}

/// Why forwarding produced no reply.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("no upstream resolver configured for the name (or external_on is false)")]
    NoResolver,
    #[error("every upstream failed; last: {upstream}: {message}")]
    AllFailed {
        upstream: SocketAddr,
        message: String,
    },
}

impl Forwarder {
    fn new(config: &DnsConfig) -> Result<Forwarder, DnsError> {
        let mut zones = Vec::new();
        for (zone, resolvers) in &config.forward_zones {
            let fq = format!("{}.", zone.trim_end_matches('.'));
            let n = Name::from_ascii(&fq).map_err(|e| DnsError::Name {
                field: "forward_zones",
                value: fq.clone(),
                message: e.to_string(),
            })?;
            zones.push((
                LowerName::new(&n),
                resolvers.iter().filter_map(|r| parse_resolver(r)).collect(),
            ));
        }
        zones.sort_by_key(|(z, _)| std::cmp::Reverse(z.num_labels()));
        Ok(Forwarder {
            zones,
            default: config
                .resolvers
                .iter()
                .filter_map(|r| parse_resolver(r))
                .collect(),
            enabled: config.external_on,
            timeout: config.forward_timeout(),
        })
    }

    fn upstreams(&self, qname: &LowerName) -> &[SocketAddr] {
        for (z, r) in &self.zones {
            if z.zone_of(qname) {
                return r;
            }
        }
        &self.default
    }

    async fn forward(
        &self,
        qname: &LowerName,
        raw: &[u8],
        tcp: bool,
    ) -> Result<Message, ForwardError> {
        let ups = self.upstreams(qname);
        if !self.enabled || ups.is_empty() {
            return Err(ForwardError::NoResolver);
        }
        let id = raw.get(..2).map(|b| [b[0], b[1]]);
        let mut last = ForwardError::NoResolver;
        for up in ups {
            let res = if tcp {
                exchange_tcp(*up, raw, self.timeout).await
            } else {
                exchange_udp(*up, raw, self.timeout).await
            };
            let msg = res.and_then(|bytes| {
                if bytes.get(..2).map(|b| [b[0], b[1]]) != id {
                    return Err("reply id does not match the query".to_string());
                }
                Message::from_vec(&bytes).map_err(|e| format!("undecodable reply: {e}"))
            });
            match msg {
                Ok(m) => return Ok(m),
                Err(message) => {
                    tracing::debug!(upstream = %up, error = %message, "upstream failed");
                    last = ForwardError::AllFailed {
                        upstream: *up,
                        message,
                    };
                }
            }
        }
        Err(last)
    }
}

async fn exchange_udp(up: SocketAddr, raw: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let bind: SocketAddr = if up.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let work = async {
        let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
        sock.connect(up).await.map_err(|e| e.to_string())?;
        sock.send(raw).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
            // Ignore strays (another query's late reply on a reused port).
            if n >= 12 && buf[..2] == raw[..2] {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no reply within {timeout:?}"))?
}

async fn exchange_tcp(up: SocketAddr, raw: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let work = async {
        let mut s = TcpStream::connect(up).await.map_err(|e| e.to_string())?;
        let len = u16::try_from(raw.len()).map_err(|_| "query over 65535 bytes".to_string())?;
        let mut framed = Vec::with_capacity(raw.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(raw);
        s.write_all(&framed).await.map_err(|e| e.to_string())?;
        let mut lenb = [0u8; 2];
        s.read_exact(&mut lenb).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(lenb))];
        s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(buf)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no reply within {timeout:?}"))?
}

/// The last good state and the named-VIP map.
type Inputs = (Option<Arc<MasterState>>, BTreeMap<String, Ipv4Addr>);

struct Shared {
    config: DnsConfig,
    index: ArcSwap<Index>,
    forwarder: Forwarder,
    metrics: Metrics,
    /// The last good state and the VIP map, to rebuild when either changes.
    inputs: Mutex<Inputs>,
    /// The applied states as a change feed (`GET /v1/state`, [`crate::feed`]).
    state_feed: crate::feed::Publisher<MasterState>,
}

/// The DNS service: owns the index and answers queries. Cheap to clone.
#[derive(Clone)]
pub struct DnsServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("domain", &self.shared.config.domain)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

impl DnsServer {
    /// A server for `config` with no records yet.
    pub fn new(config: DnsConfig) -> Result<DnsServer, DnsError> {
        config.validate()?;
        let index = Index::empty(&config)?;
        Ok(DnsServer {
            shared: Arc::new(Shared {
                forwarder: Forwarder::new(&config)?,
                index: ArcSwap::from_pointee(index),
                metrics: Metrics::default(),
                inputs: Mutex::new((None, BTreeMap::new())),
                state_feed: crate::feed::Publisher::new(),
                config,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DnsConfig {
        &self.shared.config
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The index now in service.
    pub fn index(&self) -> Arc<Index> {
        self.shared.index.load_full()
    }

    /// Turns `state` into records and swaps them in; returns the record count. A state
    /// that fails ([`StateError`]) leaves the previous records in service.
    pub fn apply_state(&self, state: MasterState) -> Result<usize, StateError> {
        let mut inputs = self
            .shared
            .inputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let res = self.rebuild(&state, &inputs.1);
        if res.is_ok() {
            let state = Arc::new(state);
            inputs.0 = Some(state.clone());
            self.shared.state_feed.publish(state);
        }
        res
    }

    /// The applied states as a change feed (served as `GET /v1/state`).
    pub fn state_feed(&self) -> &crate::feed::Publisher<MasterState> {
        &self.shared.state_feed
    }

    /// Replaces the named-VIP address map (keyed by [`crate::records::vip_key`]) and
    /// rebuilds from the last state.
    pub fn set_vip_addresses(&self, vips: BTreeMap<String, Ipv4Addr>) -> Result<usize, StateError> {
        let mut inputs = self
            .shared
            .inputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inputs.1 = vips;
        match &inputs.0 {
            Some(state) => self.rebuild(state, &inputs.1),
            None => Ok(0),
        }
    }

    fn rebuild(
        &self,
        state: &MasterState,
        vips: &BTreeMap<String, Ipv4Addr>,
    ) -> Result<usize, StateError> {
        let cfg = &self.shared.config;
        let set = match RecordSet::from_state_with_vips(state, cfg, vips) {
            Ok(s) => s,
            Err(e) => {
                self.shared.metrics.state_failed();
                tracing::warn!(error = %e, "master state rejected, keeping previous records");
                return Err(e);
            }
        };
        let count = set.len();
        // The config was validated and the generator only emits names built from it.
        let index = match Index::build(set, cfg, unix_now()) {
            Ok(i) => i,
            Err(e) => {
                self.shared.metrics.state_failed();
                tracing::error!(error = %e, "building the DNS index failed");
                return Ok(0);
            }
        };
        let old = self.shared.index.swap(Arc::new(index));
        self.shared.metrics.state_applied(count);
        tracing::debug!(records = count, "DNS records updated");
        // Freeing a large record set takes tens of milliseconds: not on this path.
        if old.records().len() > 10_000 {
            std::thread::spawn(move || drop(old));
        }
        Ok(count)
    }

    /// Binds UDP and TCP listeners on every address of `listen` (port 0: a free port,
    /// the same for UDP and TCP) and starts serving.
    pub async fn serve(&self, listen: &[SocketAddr]) -> Result<Listeners, DnsError> {
        let mut server = Server::new(Handler {
            shared: self.shared.clone(),
        });
        let mut addrs = Vec::new();
        for addr in listen {
            let (udp, tcp) = bind_pair(*addr).await?;
            let bound = udp.local_addr().map_err(|source| DnsError::Bind {
                proto: "udp",
                addr: *addr,
                source,
            })?;
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(10), 64);
            tracing::info!(addr = %bound, "DNS listening (udp+tcp)");
            addrs.push(bound);
        }
        Ok(Listeners {
            addrs,
            server: Some(server),
        })
    }
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Bind {
                proto: "udp",
                addr,
                source,
            })?;
        let port = udp
            .local_addr()
            .map_err(|source| DnsError::Bind {
                proto: "udp",
                addr,
                source,
            })?
            .port();
        let taddr = SocketAddr::new(addr.ip(), port);
        match TcpListener::bind(taddr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last = Some(DnsError::Bind {
                    proto: "tcp",
                    addr: taddr,
                    source,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| DnsError::Bind {
        proto: "tcp",
        addr,
        source: std::io::Error::other("no attempt made"),
    }))
}

/// Running listeners; dropping them stops serving.
pub struct Listeners {
    /// The bound addresses (UDP and TCP share each).
    pub addrs: Vec<SocketAddr>,
    server: Option<Server<Handler>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl Listeners {
    /// Stops the listeners and waits for in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(mut s) = self.server.take()
            && let Err(e) = s.shutdown_gracefully().await
        {
            tracing::debug!(error = %e, "DNS listener shutdown");
        }
    }
}

struct Handler {
    shared: Arc<Shared>,
}

fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(request.max_payload().clamp(512, 4096));
        e.set_version(0);
        e
    })
}

fn failed_info(request: &Request, rcode: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

impl Handler {
    async fn send_error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut rh: R,
        rcode: ResponseCode,
        qtype: RecordType,
    ) -> ResponseInfo {
        let mut md = Metadata::response_from_request(&request.metadata);
        md.response_code = rcode;
        md.recursion_available = self.shared.config.recurse_on;
        let edns = response_edns(request);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        self.shared.metrics.query(qtype, rcode);
        match rh.send_response(builder.build_no_records(md)).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending DNS error response failed");
                failed_info(request, rcode)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        let queries = request.queries.queries();
        if request.metadata.op_code != OpCode::Query {
            return self
                .send_error(request, rh, ResponseCode::NotImp, RecordType::Unknown(0))
                .await;
        }
        let [query] = queries else {
            return self
                .send_error(request, rh, ResponseCode::FormErr, RecordType::Unknown(0))
                .await;
        };
        let qname = query.name();
        let qtype = query.query_type();
        let edns = response_edns(request);
        let cfg = &self.shared.config;
        let index = self.shared.index.load();
        if let Some(ans) = index.answer(qname, qtype) {
            let mut md = Metadata::response_from_request(&request.metadata);
            md.authoritative = true;
            md.recursion_available = cfg.recurse_on;
            md.response_code = ans.rcode;
            let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
            let resp = builder.build(
                md,
                ans.answers.iter(),
                ans.authority.iter(),
                std::iter::empty(),
                ans.additionals.iter(),
            );
            self.shared.metrics.query(qtype, ans.rcode);
            return match rh.send_response(resp).await {
                Ok(info) => info,
                Err(e) => {
                    tracing::debug!(error = %e, src = %request.src(), "sending DNS response failed");
                    failed_info(request, ResponseCode::ServFail)
                }
            };
        }
        drop(index);
        let tcp = request.protocol() == Protocol::Tcp;
        match self
            .shared
            .forwarder
            .forward(qname, request.as_slice(), tcp)
            .await
        {
            Ok(reply) => {
                self.shared.metrics.forwarded(true);
                let mut md = reply.metadata;
                md.id = request.metadata.id;
                let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
                let resp = builder.build(
                    md,
                    reply.answers.iter(),
                    reply.authorities.iter(),
                    std::iter::empty(),
                    reply.additionals.iter(),
                );
                self.shared.metrics.query(qtype, md.response_code);
                match rh.send_response(resp).await {
                    Ok(info) => info,
                    Err(e) => {
                        tracing::debug!(error = %e, "relaying forwarded response failed");
                        failed_info(request, ResponseCode::ServFail)
                    }
                }
            }
            Err(e) => {
                let rcode = match e {
                    ForwardError::NoResolver => ResponseCode::Refused,
                    ForwardError::AllFailed { .. } => {
                        self.shared.metrics.forwarded(false);
                        tracing::warn!(name = %qname, error = %e, "forwarding failed");
                        ResponseCode::ServFail
                    }
                };
                self.send_error(request, rh, rcode, qtype).await
            }
        }
    }
}

/// Parses an absolute or relative name into a [`LowerName`] (for tests and tools).
pub fn lower_name(s: &str) -> Option<LowerName> {
    let fq = if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    };
    Name::from_str(&fq).ok().map(|n| LowerName::new(&n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::SrvTarget;
    use std::collections::BTreeSet;

    fn index() -> Index {
        let mut set = RecordSet {
            domain: "mesos.".into(),
            ..RecordSet::default()
        };
        set.a.insert(
            "web.marathon.mesos.".into(),
            BTreeSet::from([Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]),
        );
        set.a.insert(
            "web-abcde-s0.marathon.mesos.".into(),
            BTreeSet::from([Ipv4Addr::new(10, 0, 0, 1)]),
        );
        set.aaaa.insert(
            "six.marathon.mesos.".into(),
            BTreeSet::from(["fd00::1".parse().unwrap()]),
        );
        set.srv.insert(
            "_web._tcp.marathon.mesos.".into(),
            BTreeSet::from([SrvTarget {
                host: "web-abcde-s0.marathon.mesos.".into(),
                port: 31000,
            }]),
        );
        set.vip_a.insert(
            "web.marathon.l4lb.thisdcos.directory.".into(),
            BTreeSet::from([Ipv4Addr::new(11, 0, 0, 9)]),
        );
        Index::build(set, &DnsConfig::default(), 1234).unwrap()
    }

    fn q(i: &Index, n: &str, t: RecordType) -> Option<LocalAnswer> {
        i.answer(&lower_name(n).unwrap(), t)
    }

    #[test]
    fn answers_follow_mesos_dns_rules() {
        let i = index();
        let a = q(&i, "WEB.Marathon.mesos", RecordType::A).unwrap();
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 2);
        assert!(a.answers.iter().all(|r| r.ttl == 60));
        let srv = q(&i, "_web._tcp.marathon.mesos", RecordType::SRV).unwrap();
        assert_eq!(srv.answers.len(), 1);
        assert_eq!(srv.additionals.len(), 1);
        // Unknown name, A: NXDOMAIN + SOA with the query name as owner.
        let nx = q(&i, "nope.mesos", RecordType::A).unwrap();
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert_eq!(nx.authority.len(), 1);
        assert_eq!(nx.authority[0].name.to_string(), "nope.mesos.");
        match &nx.authority[0].data {
            RData::SOA(soa) => {
                assert_eq!(soa.mname.to_string(), "ns1.mesos.");
                assert_eq!(soa.rname.to_string(), "root.ns1.mesos.");
                assert_eq!(soa.serial, 1234);
            }
            other => panic!("not a SOA: {other:?}"),
        }
        // Unknown name, SRV: NOERROR, empty, no SOA.
        let s = q(&i, "_nope._tcp.mesos", RecordType::SRV).unwrap();
        assert_eq!(
            (s.rcode, s.answers.len(), s.authority.len()),
            (ResponseCode::NoError, 0, 0)
        );
        // NODATA: AAAA for a name with A; A for a name with AAAA.
        let nd = q(&i, "web.marathon.mesos", RecordType::AAAA).unwrap();
        assert_eq!((nd.rcode, nd.authority.len()), (ResponseCode::NoError, 1));
        let nd = q(&i, "six.marathon.mesos", RecordType::A).unwrap();
        assert_eq!(nd.rcode, ResponseCode::NoError);
        // Other types: NXDOMAIN path.
        let mx = q(&i, "web.marathon.mesos", RecordType::MX).unwrap();
        assert_eq!(mx.rcode, ResponseCode::NXDomain);
        // SOA / NS: NOERROR, record in AUTHORITY.
        let soa = q(&i, "mesos", RecordType::SOA).unwrap();
        assert_eq!(
            (soa.rcode, soa.answers.len(), soa.authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
        let ns = q(&i, "mesos", RecordType::NS).unwrap();
        assert!(matches!(ns.authority[0].data, RData::NS(_)));
        // Outside the zones: not local.
        assert!(q(&i, "example.com", RecordType::A).is_none());
        // No state yet: SERVFAIL inside the zones, forwarding outside.
        let empty = Index::empty(&DnsConfig::default()).unwrap();
        assert!(!empty.is_ready());
        let sf = q(&empty, "leader.mesos", RecordType::A).unwrap();
        assert_eq!((sf.rcode, sf.authority.len()), (ResponseCode::ServFail, 0));
        assert!(q(&empty, "example.com", RecordType::A).is_none());
        assert!(q(&i, "mesos.example.com", RecordType::A).is_none());
    }

    #[test]
    fn generated_names_parse_like_hickory() {
        for n in [
            "a.b.mesos.",
            "web-abcde-s0.marathon.slave.mesos.",
            "_x._tcp.y.mesos.",
        ] {
            assert_eq!(generated_name(n), Name::from_ascii(n).ok(), "{n}");
        }
        assert!(generated_name(&format!("{}.mesos.", "x".repeat(64))).is_none());
        assert_eq!(generated_name("."), Some(Name::root()));
    }

    #[test]
    fn vip_names_and_aliases() {
        let i = index();
        for n in [
            "web.marathon.l4lb.thisdcos.directory",
            "web.marathon.dclb.thisdcos.directory",
            "web.marathon.l4lb.thisdcos.global",
            "web.marathon.dclb.thisdcos.global",
        ] {
            let a = q(&i, n, RecordType::A).unwrap();
            assert_eq!(a.answers.len(), 1, "{n}");
            assert_eq!(a.answers[0].ttl, 5);
        }
        let nx = q(&i, "other.marathon.l4lb.thisdcos.directory", RecordType::A).unwrap();
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn shuffles_answers() {
        let i = index();
        let mut firsts = BTreeSet::new();
        for _ in 0..200 {
            let a = q(&i, "web.marathon.mesos", RecordType::A).unwrap();
            firsts.insert(a.answers[0].data.to_string());
        }
        assert_eq!(firsts.len(), 2);
    }

    #[test]
    fn forward_zone_selection() {
        let cfg = DnsConfig {
            resolvers: vec!["10.0.0.53".into()],
            forward_zones: BTreeMap::from([
                ("corp".to_string(), vec!["10.1.0.1".to_string()]),
                ("eu.corp".to_string(), vec!["10.2.0.1:5353".to_string()]),
            ]),
            ..DnsConfig::default()
        };
        let f = Forwarder::new(&cfg).unwrap();
        let up = |n: &str| f.upstreams(&lower_name(n).unwrap()).to_vec();
        assert_eq!(
            up("x.eu.corp"),
            vec!["10.2.0.1:5353".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            up("x.us.corp"),
            vec!["10.1.0.1:53".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            up("example.com"),
            vec!["10.0.0.53:53".parse::<SocketAddr>().unwrap()]
        );
    }
}
