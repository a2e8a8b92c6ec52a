//! `basalt-dns`: Mesos-DNS-compatible service discovery for Basalt (`basaltd dns`).
//!
//! Apps written for DC/OS find each other as `<app>.marathon.mesos`,
//! `_<app>._tcp.marathon.mesos` and `<vip>.marathon.l4lb.thisdcos.directory`. This crate
//! serves those names with Mesos-DNS's exact naming, answer rules, TTL and HTTP API, but
//! follows the cluster within one etcd watch event plus one `/master/state` fetch instead
//! of Mesos-DNS's 30–60 s polling period.
//!
//! ```text
//!   etcd `master/` watch ──change──▶ fetch leader /master/state ──▶ records::RecordSet
//!          (source)                   (1 in flight + 1 pending)      (pure generator)
//!                                                                          │ Index::build
//!   UDP/TCP :53, :61053 ◀── hickory-server ◀── ArcSwap<Index> ◀────────────┘ atomic swap
//!   HTTP :8123 (/v1/*, /metrics)             └─ not ours ─▶ forward_zones / resolvers
//! ```
//!
//! * [`state`]: the typed subset of Mesos' `/master/state` JSON.
//! * [`records`]: `RecordSet::from_state` — Mesos-DNS's generator, sanitisation and the
//!   named-VIP names (the VIP addresses are an input from the L4LB allocator).
//! * [`server`]: the authoritative server for `mesos.` and `thisdcos.directory.` /
//!   `thisdcos.global.`, forwarding everything else.
//! * [`source`]: where states come from (etcd watch + fetch, or a channel).
//! * [`feed`]: HTTP long-poll change feeds; agents (no etcd) follow the masters'
//!   `GET /v1/state` with [`FeedSource`] instead of polling `/master/state`.
//! * [`http`]: `/v1/version`, `/v1/config`, `/v1/hosts/{host}`, `/v1/services/{service}`,
//!   `/v1/axfr`, `/metrics`.
//! * [`config`]: [`DnsConfig`] with Mesos-DNS / DC/OS defaults and field-named errors.
//!
//! [`Service::start`] wires them together.
//!
//! Differences from Mesos-DNS, on purpose: `agent.<domain>` / `_agent._tcp.<domain>`
//! exist next to `slave.<domain>`; framework and agent host names are not resolved
//! through DNS (only IP literals make records); listener records skip unspecified
//! addresses; the legacy raw discovery-name records are kept only when the raw name is
//! already a valid lower-case DNS name; there is no `refreshSeconds` (states arrive on
//! change) and no ZooKeeper leader detection (the etcd election or static URLs).

pub mod config;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod records;
pub mod server;
pub mod source;
pub mod state;

pub use config::{ConfigError, DnsConfig, IpSource};
pub use feed::{FeedClient, FeedError, FeedSource};
pub use records::{NamedVip, RecordSet, StateError, named_vips, vip_key};
pub use server::{DnsError, DnsServer, Index, Listeners};
pub use source::{ChannelSource, EtcdWatchSource, MasterEndpoints, SourceError, StateSource};
pub use state::MasterState;

use std::net::SocketAddr;

/// A running DNS service: listeners, HTTP API and the state source task.
#[derive(Debug)]
pub struct Service {
    /// The server handle (apply states, VIP addresses, metrics).
    pub server: DnsServer,
    /// The DNS listeners.
    pub listeners: Listeners,
    /// The HTTP API address, when enabled.
    pub http_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Validates `config`, binds its DNS (`listen`) and HTTP (`http_listen`) listeners
    /// and applies the states of `source` as they arrive.
    pub async fn start<S: StateSource>(config: DnsConfig, source: S) -> Result<Service, DnsError> {
        let listen = config.listen.clone();
        let http_listen = config.http_listen;
        let server = DnsServer::new(config)?;
        let listeners = server.serve(&listen).await?;
        let mut tasks = Vec::new();
        let mut http_addr = None;
        if let Some(addr) = http_listen {
            let (bound, task) =
                http::serve(server.clone(), addr)
                    .await
                    .map_err(|source| DnsError::Bind {
                        proto: "http",
                        addr,
                        source,
                    })?;
            http_addr = Some(bound);
            tasks.push(task);
        }
        tasks.push(tokio::spawn(source::run_source(source, server.clone())));
        Ok(Service {
            server,
            listeners,
            http_addr,
            tasks,
        })
    }

    /// Stops the source, the HTTP API and the listeners.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.listeners.shutdown().await;
    }
}
