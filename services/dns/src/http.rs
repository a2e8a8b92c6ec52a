//! Mesos-DNS's HTTP API (port 8123; DC/OS `<dcos>/mesos_dns/`) and `/metrics`.
//!
//! | path | answer |
//! |---|---|
//! | `GET /v1/version` | `{"Service":"Mesos-DNS","URL":…,"Version":…}` |
//! | `GET /v1/config` | the configuration as Mesos-DNS's config object |
//! | `GET /v1/hosts/{host}` | `[{"host":"nginx.marathon.mesos.","ip":"10.0.0.1"}]` (A then AAAA; VIP names too) |
//! | `GET /v1/hosts/{host}/ports` | 501, as Mesos-DNS |
//! | `GET /v1/services/{service}` | `[{"service":…,"host":…,"ip":…,"port":"31000"}]`, one per SRV target address |
//! | `GET /v1/axfr` | the whole Mesos-DNS domain (dcos-net mirrors it into `mesos.thisdcos.directory`) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /v1/state[?wait=<rev>&timeout=<s>]` | Basalt: the last applied master state as a long-poll change feed ([`crate::feed`]); agents follow it |
//!
//! No match answers `[{"host":"","ip":""}]` / `[{"service":"","host":"","ip":"","port":""}]`
//! with 200, never 404. Lookups lower-case the name, remove `.*` wildcards and make it
//! absolute (Mesos-DNS `RestHost` / `RestService`).

use crate::server::DnsServer;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The router serving the API for `server`.
pub fn router(server: DnsServer) -> Router {
    Router::new()
        .route("/v1/version", get(version))
        .route("/v1/config", get(config))
        .route("/v1/hosts/{host}", get(hosts))
        .route("/v1/hosts/{host}/ports", get(host_ports))
        .route("/v1/services/{service}", get(services))
        .route("/v1/axfr", get(axfr))
        .route("/metrics", get(metrics))
        .route("/v1/state", get(state_feed))
        .with_state(server)
}

/// Binds `addr` and serves the API in a background task; returns the bound address.
pub async fn serve(
    server: DnsServer,
    addr: SocketAddr,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(server);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(addr = %bound, error = %e, "DNS HTTP API stopped");
        }
    });
    tracing::info!(addr = %bound, "DNS HTTP API listening");
    Ok((bound, task))
}

fn normalise(name: &str) -> String {
    let mut n = name.to_ascii_lowercase().replace(".*", "");
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "Service": "Mesos-DNS",
        "URL": "https://github.com/mesosphere/mesos-dns",
        "Version": concat!("basalt-dns ", env!("CARGO_PKG_VERSION")),
    }))
}

async fn config(State(s): State<DnsServer>) -> Json<serde_json::Value> {
    Json(s.config().mesos_dns_json())
}

#[derive(Serialize)]
struct HostRecord {
    host: String,
    ip: String,
}

#[derive(Serialize)]
struct ServiceRecord {
    service: String,
    host: String,
    ip: String,
    port: String,
}

async fn hosts(State(s): State<DnsServer>, Path(host): Path<String>) -> Json<Vec<HostRecord>> {
    let name = normalise(&host);
    let index = s.index();
    let rs = index.records();
    let mut out: Vec<HostRecord> = Vec::new();
    for ip in rs.a.get(&name).into_iter().flatten() {
        out.push(HostRecord {
            host: name.clone(),
            ip: ip.to_string(),
        });
    }
    for ip in rs.aaaa.get(&name).into_iter().flatten() {
        out.push(HostRecord {
            host: name.clone(),
            ip: ip.to_string(),
        });
    }
    for ip in rs.vip_a.get(&name).into_iter().flatten() {
        out.push(HostRecord {
            host: name.clone(),
            ip: ip.to_string(),
        });
    }
    if out.is_empty() {
        out.push(HostRecord {
            host: String::new(),
            ip: String::new(),
        });
    }
    Json(out)
}

async fn host_ports() -> Response {
    (StatusCode::NOT_IMPLEMENTED, "To be implemented...").into_response()
}

async fn services(
    State(s): State<DnsServer>,
    Path(service): Path<String>,
) -> Json<Vec<ServiceRecord>> {
    let name = normalise(&service);
    let index = s.index();
    let rs = index.records();
    let mut out = Vec::new();
    for t in rs.srv.get(&name).into_iter().flatten() {
        let ips =
            rs.a.get(&t.host)
                .into_iter()
                .flatten()
                .map(ToString::to_string)
                .chain(
                    rs.aaaa
                        .get(&t.host)
                        .into_iter()
                        .flatten()
                        .map(ToString::to_string),
                );
        for ip in ips {
            out.push(ServiceRecord {
                service: service.clone(),
                host: t.host.clone(),
                ip,
                port: t.port.to_string(),
            });
        }
    }
    if out.is_empty() {
        out.push(ServiceRecord {
            service: String::new(),
            host: String::new(),
            ip: String::new(),
            port: String::new(),
        });
    }
    Json(out)
}

async fn axfr(State(s): State<DnsServer>) -> Json<serde_json::Value> {
    let index = s.index();
    let rs = index.records();
    let cfg = s.config();
    let a: BTreeMap<&str, Vec<String>> =
        rs.a.iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(ToString::to_string).collect()))
            .collect();
    let aaaa: BTreeMap<&str, Vec<String>> = rs
        .aaaa
        .iter()
        .map(|(k, v)| (k.as_str(), v.iter().map(ToString::to_string).collect()))
        .collect();
    let srv: BTreeMap<&str, Vec<String>> = rs
        .srv
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                v.iter().map(|t| format!("{}:{}", t.host, t.port)).collect(),
            )
        })
        .collect();
    Json(serde_json::json!({
        "TTL": cfg.ttl,
        "Serial": index.serial(),
        "RefreshSeconds": cfg.soa_refresh,
        "Mname": cfg.soa_mname.trim_end_matches('.'),
        "Rname": cfg.soa_rname.trim_end_matches('.'),
        "Domain": cfg.domain,
        "Records": {"As": a, "AAAAs": aaaa, "SRVs": srv},
    }))
}

async fn state_feed(
    State(s): State<DnsServer>,
    axum::extract::Query(q): axum::extract::Query<crate::feed::FeedQuery>,
) -> Response {
    crate::feed::long_poll(s.state_feed().subscribe(), q).await
}

async fn metrics(State(s): State<DnsServer>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics().render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalise("Nginx.Marathon.Mesos"), "nginx.marathon.mesos.");
        assert_eq!(normalise("leader.mesos."), "leader.mesos.");
        assert_eq!(normalise("web.*.marathon.mesos"), "web.marathon.mesos.");
    }
}
