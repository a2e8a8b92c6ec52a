//! The route table, as data: one row per path prefix.
//!
//! Matching is by path segments (`/mesos` matches `/mesos` and `/mesos/…`, never
//! `/mesos_dns`) and the longest matching prefix wins, so `/acs/api/v1/auth` (open)
//! beats `/acs/api/v1` (authenticated) and `/service/marathon` beats `/service`.
//!
//! ## Master (`MASTER_ROUTES`, ports 443 and 80)
//!
//! | prefix | upstream | path sent upstream | auth | permission (action `full`) |
//! |---|---|---|---|---|
//! | `/acs/api/v1/auth` | IAM `127.0.0.1:8101` | unchanged | no | – |
//! | `/acs/api/v1` | IAM | unchanged | yes | `dcos:adminrouter:acs` |
//! | `/mesos` | leading master (election `master`) | prefix stripped | yes | `dcos:adminrouter:ops:mesos` |
//! | `/mesos_dns` | Mesos-DNS-compatible API `127.0.0.1:8123` | prefix stripped | yes | `dcos:adminrouter:ops:mesos-dns` |
//! | `/marathon`, `/service/marathon` | Marathon leader (election `marathon`, else `127.0.0.1:8080`) | prefix stripped | yes | `dcos:adminrouter:service:marathon` |
//! | `/service/<name>` | [`crate::ServiceResolver`] | `/service/<name>` stripped | yes | `dcos:adminrouter:service:<name>` |
//! | `/agent/<id>`, `/slave/<id>` | the agent's `hostname:port` from `/master/state` | `/agent/<id>` stripped | yes | `dcos:adminrouter:ops:slave` |
//! | `/system/v1/agent/<id>/logs…`, `/system/v1/agent/<id>/metrics…` | the agent's gateway, `hostname` from `/master/state`, port 61001 (`agent_gateway_port`) | `/system/v1/agent/<id>` replaced by `/system/v1` (so the agent gateway's `/system/v1/logs` route strips it again); other subpaths 404 | yes | `dcos:adminrouter:ops:system-logs` / `…:system-metrics` |
//! | `/package`, `/cosmos/service`, `/capabilities` | Cosmos `127.0.0.1:7070` | unchanged | yes | `dcos:adminrouter:package` |
//! | `/system/health/v1` | diagnostics `127.0.0.1:1050` | unchanged | yes | `dcos:adminrouter:ops:system-health` |
//! | `/system/v1/logs` | log service `127.0.0.1:61081` | prefix stripped | yes | `dcos:adminrouter:ops:system-logs` |
//! | `/system/v1/metrics` | metrics service `127.0.0.1:61082` | prefix stripped | yes | `dcos:adminrouter:ops:system-metrics` |
//! | `= /metadata` | served here: `{"PUBLIC_IPV4", "CLUSTER_ID"}` | – | yes | `dcos:adminrouter:ops:metadata` |
//! | `= /dcos-metadata/dcos-version.json` | served here | – | no | – |
//! | `= /ca/dcos-ca.crt` | served here: the cluster CA (PEM), what `dcos cluster setup` pins | – | no | – |
//!
//! Everything else: 404. Permission names are DC/OS Enterprise's; DC/OS EE checks
//! every `dcos:adminrouter:*` resource with action `full`, and so does Basalt (`full`
//! is the only action that implies every other, so a grant of `read` on an adminrouter
//! resource does not open the route). `dcos:superuser` `full` opens everything.
//!
//! ## Agent (`AGENT_ROUTES`, port 61001)
//!
//! As DC/OS's agent Admin Router: no authentication (network isolation), only
//! `/system/health/v1`, `/system/v1/logs`, `/system/v1/metrics` and
//! `= /dcos-metadata/dcos-version.json`; everything else 404.

/// A fixed local upstream, addressed through [`crate::config::Upstreams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StaticUpstream {
    /// IAM (`/acs/api/v1`).
    Iam,
    /// Cosmos (`/package`).
    Cosmos,
    /// Mesos-DNS HTTP API.
    MesosDns,
    /// Diagnostics (`/system/health/v1`).
    Diagnostics,
    /// Logs (`/system/v1/logs`).
    Logs,
    /// Metrics (`/system/v1/metrics`).
    Metrics,
}

impl StaticUpstream {
    /// Name used in logs, metrics and error bodies.
    pub fn name(self) -> &'static str {
        match self {
            StaticUpstream::Iam => "iam",
            StaticUpstream::Cosmos => "cosmos",
            StaticUpstream::MesosDns => "mesos-dns",
            StaticUpstream::Diagnostics => "diagnostics",
            StaticUpstream::Logs => "logs",
            StaticUpstream::Metrics => "metrics",
        }
    }
}

/// Answers the gateway produces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalEndpoint {
    /// `/metadata`.
    Metadata,
    /// `/dcos-metadata/dcos-version.json`.
    DcosVersion,
    /// `/ca/dcos-ca.crt`: the cluster CA certificate (PEM), fetched before any trust
    /// exists so that clients can pin it by fingerprint.
    CaCert,
}

/// Where a route's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// A fixed address from the configuration.
    Static(StaticUpstream),
    /// The leader of an election service (`basalt_store::Election`), e.g. `master`.
    Leader(&'static str),
    /// The Marathon leader (election `marathon`), else the configured address.
    Marathon,
    /// `/service/<name>/…`, through the [`crate::ServiceResolver`].
    Service,
    /// `/agent/<id>/…`, the agent's address from the leading master's state.
    Agent,
    /// `/system/v1/agent/<id>/{logs,metrics}…`: the agent's gateway (its host from the
    /// leading master's state, the agent gateway port), path under `/system/v1`.
    AgentSystem,
    /// Served by the gateway.
    Local(LocalEndpoint),
}

/// How the request path is rewritten for the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Send the path as received.
    Keep,
    /// Drop the matched prefix (and, for `Service`/`Agent`, the name/id segment).
    Strip,
}

/// Which permission a route needs (action `full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// No permission check (only the token, if `auth`).
    None,
    /// A fixed resource id.
    Fixed(&'static str),
    /// `dcos:adminrouter:service:<name>` for `/service/<name>`.
    ServiceName,
    /// `dcos:adminrouter:ops:system-logs` or `…:system-metrics` by the subpath of
    /// `/system/v1/agent/<id>`.
    AgentSystem,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Path prefix, without trailing slash.
    pub prefix: &'static str,
    /// Only the exact path matches.
    pub exact: bool,
    /// Where it goes.
    pub upstream: UpstreamKind,
    /// Path rewriting.
    pub rewrite: Rewrite,
    /// Needs a valid token (when auth is enabled).
    pub auth: bool,
    /// Needs this permission (when auth is enabled).
    pub permission: Permission,
}

const fn route(
    prefix: &'static str,
    upstream: UpstreamKind,
    rewrite: Rewrite,
    auth: bool,
    permission: Permission,
) -> Route {
    Route {
        prefix,
        exact: false,
        upstream,
        rewrite,
        auth,
        permission,
    }
}

use Permission::{Fixed, ServiceName};
use Rewrite::{Keep, Strip};
use StaticUpstream as S;
use UpstreamKind as U;

/// The master gateway's routes (see the module docs for the same table in prose).
pub const MASTER_ROUTES: &[Route] = &[
    route(
        "/acs/api/v1/auth",
        U::Static(S::Iam),
        Keep,
        false,
        Permission::None,
    ),
    route(
        "/acs/api/v1",
        U::Static(S::Iam),
        Keep,
        true,
        Fixed("dcos:adminrouter:acs"),
    ),
    route(
        "/mesos",
        U::Leader("master"),
        Strip,
        true,
        Fixed("dcos:adminrouter:ops:mesos"),
    ),
    route(
        "/mesos_dns",
        U::Static(S::MesosDns),
        Strip,
        true,
        Fixed("dcos:adminrouter:ops:mesos-dns"),
    ),
    route(
        "/marathon",
        U::Marathon,
        Strip,
        true,
        Fixed("dcos:adminrouter:service:marathon"),
    ),
    route(
        "/service/marathon",
        U::Marathon,
        Strip,
        true,
        Fixed("dcos:adminrouter:service:marathon"),
    ),
    route("/service", U::Service, Strip, true, ServiceName),
    route(
        "/agent",
        U::Agent,
        Strip,
        true,
        Fixed("dcos:adminrouter:ops:slave"),
    ),
    route(
        "/slave",
        U::Agent,
        Strip,
        true,
        Fixed("dcos:adminrouter:ops:slave"),
    ),
    route(
        "/system/v1/agent",
        U::AgentSystem,
        Strip,
        true,
        Permission::AgentSystem,
    ),
    route(
        "/package",
        U::Static(S::Cosmos),
        Keep,
        true,
        Fixed("dcos:adminrouter:package"),
    ),
    route(
        "/cosmos/service",
        U::Static(S::Cosmos),
        Keep,
        true,
        Fixed("dcos:adminrouter:package"),
    ),
    route(
        "/capabilities",
        U::Static(S::Cosmos),
        Keep,
        true,
        Fixed("dcos:adminrouter:package"),
    ),
    route(
        "/system/health/v1",
        U::Static(S::Diagnostics),
        Keep,
        true,
        Fixed("dcos:adminrouter:ops:system-health"),
    ),
    route(
        "/system/v1/logs",
        U::Static(S::Logs),
        Strip,
        true,
        Fixed("dcos:adminrouter:ops:system-logs"),
    ),
    route(
        "/system/v1/metrics",
        U::Static(S::Metrics),
        Strip,
        true,
        Fixed("dcos:adminrouter:ops:system-metrics"),
    ),
    Route {
        exact: true,
        ..route(
            "/metadata",
            U::Local(LocalEndpoint::Metadata),
            Keep,
            true,
            Fixed("dcos:adminrouter:ops:metadata"),
        )
    },
    Route {
        exact: true,
        ..route(
            "/dcos-metadata/dcos-version.json",
            U::Local(LocalEndpoint::DcosVersion),
            Keep,
            false,
            Permission::None,
        )
    },
    Route {
        exact: true,
        ..route(
            "/ca/dcos-ca.crt",
            U::Local(LocalEndpoint::CaCert),
            Keep,
            false,
            Permission::None,
        )
    },
];

/// The agent gateway's routes (port 61001, no authentication).
pub const AGENT_ROUTES: &[Route] = &[
    route(
        "/system/health/v1",
        U::Static(S::Diagnostics),
        Keep,
        false,
        Permission::None,
    ),
    route(
        "/system/v1/logs",
        U::Static(S::Logs),
        Strip,
        false,
        Permission::None,
    ),
    route(
        "/system/v1/metrics",
        U::Static(S::Metrics),
        Strip,
        false,
        Permission::None,
    ),
    Route {
        exact: true,
        ..route(
            "/dcos-metadata/dcos-version.json",
            U::Local(LocalEndpoint::DcosVersion),
            Keep,
            false,
            Permission::None,
        )
    },
];

/// A matched request: the route, its index in the table, and the path to send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a> {
    /// The row.
    pub route: &'a Route,
    /// Its index (metrics label).
    pub index: usize,
    /// `/service/<name>` name or `/agent/<id>` id.
    pub name: Option<String>,
    /// The path for the upstream (always starts with `/`).
    pub upstream_path: String,
}

impl Matched<'_> {
    /// The resource id to check, if any.
    pub fn permission(&self) -> Option<String> {
        match self.route.permission {
            Permission::None => None,
            Permission::Fixed(rid) => Some(rid.to_owned()),
            Permission::ServiceName => Some(format!(
                "dcos:adminrouter:service:{}",
                self.name.as_deref().unwrap_or_default()
            )),
            Permission::AgentSystem => Some(
                if under(&self.upstream_path, "/metrics").is_some() {
                    "dcos:adminrouter:ops:system-metrics"
                } else {
                    "dcos:adminrouter:ops:system-logs"
                }
                .to_owned(),
            ),
        }
    }
}

/// Does `path` fall under `prefix` (segment-aware)? Returns the remainder.
fn under<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn or_root(rest: &str) -> String {
    if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    }
}

/// Finds the route for `path` (longest prefix wins). `None`: 404.
pub fn match_route<'a>(table: &'a [Route], path: &str) -> Option<Matched<'a>> {
    let (index, route, rest) = table
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            if r.exact {
                (path == r.prefix).then_some((i, r, ""))
            } else {
                under(path, r.prefix).map(|rest| (i, r, rest))
            }
        })
        .max_by_key(|(_, r, _)| r.prefix.len())?;
    let (name, rest) = match route.upstream {
        UpstreamKind::Service | UpstreamKind::Agent | UpstreamKind::AgentSystem => {
            let trimmed = rest.strip_prefix('/')?;
            let (name, tail) = match trimmed.find('/') {
                Some(i) => (&trimmed[..i], &trimmed[i..]),
                None => (trimmed, ""),
            };
            if name.is_empty() {
                return None;
            }
            // DC/OS: only `/logs…` and `/metrics…` of an agent's `/system/v1`.
            if route.upstream == UpstreamKind::AgentSystem
                && under(tail, "/logs").is_none()
                && under(tail, "/metrics").is_none()
            {
                return None;
            }
            (Some(name.to_owned()), tail)
        }
        _ => (None, rest),
    };
    let upstream_path = match route.rewrite {
        Rewrite::Keep => path.to_owned(),
        Rewrite::Strip => or_root(rest),
    };
    Some(Matched {
        route,
        index,
        name,
        upstream_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(path: &str) -> Option<(&'static str, Option<String>, String)> {
        match_route(MASTER_ROUTES, path).map(|m| (m.route.prefix, m.name, m.upstream_path))
    }

    #[test]
    fn longest_prefix_and_segments() {
        assert_eq!(
            m("/mesos/master/state"),
            Some(("/mesos", None, "/master/state".into()))
        );
        assert_eq!(m("/mesos"), Some(("/mesos", None, "/".into())));
        assert_eq!(
            m("/mesos_dns/v1/hosts/x"),
            Some(("/mesos_dns", None, "/v1/hosts/x".into()))
        );
        assert_eq!(m("/mesosx"), None);
        assert_eq!(
            m("/acs/api/v1/auth/login"),
            Some(("/acs/api/v1/auth", None, "/acs/api/v1/auth/login".into()))
        );
        assert_eq!(
            m("/acs/api/v1/users"),
            Some(("/acs/api/v1", None, "/acs/api/v1/users".into()))
        );
        assert_eq!(
            m("/service/marathon/v2/apps"),
            Some(("/service/marathon", None, "/v2/apps".into()))
        );
        assert_eq!(
            m("/service/kafka/v1/brokers"),
            Some(("/service", Some("kafka".into()), "/v1/brokers".into()))
        );
        assert_eq!(
            m("/service/kafka"),
            Some(("/service", Some("kafka".into()), "/".into()))
        );
        assert_eq!(m("/service/"), None);
        assert_eq!(m("/service"), None);
        assert_eq!(
            m("/agent/S1/files/browse"),
            Some(("/agent", Some("S1".into()), "/files/browse".into()))
        );
        assert_eq!(
            m("/metadata"),
            Some(("/metadata", None, "/metadata".into()))
        );
        assert_eq!(m("/metadata/x"), None);
        assert_eq!(m("/nope"), None);
        assert_eq!(
            m("/package/list"),
            Some(("/package", None, "/package/list".into()))
        );
    }

    #[test]
    fn permissions() {
        let p = |path: &str| match_route(MASTER_ROUTES, path).and_then(|m| m.permission());
        assert_eq!(
            p("/service/kafka/x").as_deref(),
            Some("dcos:adminrouter:service:kafka")
        );
        assert_eq!(
            p("/marathon/v2/apps").as_deref(),
            Some("dcos:adminrouter:service:marathon")
        );
        assert_eq!(p("/acs/api/v1/auth/login"), None);
        assert_eq!(p("/dcos-metadata/dcos-version.json"), None);
    }

    #[test]
    fn ca_certificate_is_open_and_exact() {
        let m = match_route(MASTER_ROUTES, "/ca/dcos-ca.crt").unwrap();
        assert_eq!(m.route.upstream, UpstreamKind::Local(LocalEndpoint::CaCert));
        assert!(!m.route.auth);
        assert_eq!(m.permission(), None);
        assert!(match_route(MASTER_ROUTES, "/ca/dcos-ca.crt/x").is_none());
        assert!(match_route(MASTER_ROUTES, "/ca").is_none());
        assert!(match_route(AGENT_ROUTES, "/ca/dcos-ca.crt").is_none());
    }

    #[test]
    fn agent_logs_and_metrics_through_the_master() {
        let m = match_route(MASTER_ROUTES, "/system/v1/agent/S1-x/logs/v1/range/").unwrap();
        assert_eq!(m.route.upstream, UpstreamKind::AgentSystem);
        assert_eq!(m.name.as_deref(), Some("S1-x"));
        assert_eq!(m.upstream_path, "/logs/v1/range/");
        assert_eq!(
            m.permission().as_deref(),
            Some("dcos:adminrouter:ops:system-logs")
        );
        let m = match_route(MASTER_ROUTES, "/system/v1/agent/S1/metrics/v0/node").unwrap();
        assert_eq!(
            m.permission().as_deref(),
            Some("dcos:adminrouter:ops:system-metrics")
        );
        assert_eq!(
            match_route(MASTER_ROUTES, "/system/v1/agent/S1/logs")
                .unwrap()
                .upstream_path,
            "/logs"
        );
        for other in [
            "/system/v1/agent/S1/health",
            "/system/v1/agent/S1/logsx/v1",
            "/system/v1/agent/S1",
            "/system/v1/agent/",
            "/system/v1/agent",
        ] {
            assert!(match_route(MASTER_ROUTES, other).is_none(), "{other}");
        }
        // the node's own logs are still the static route
        let m = match_route(MASTER_ROUTES, "/system/v1/logs/v1/range/").unwrap();
        assert_eq!(m.route.upstream, UpstreamKind::Static(StaticUpstream::Logs));
        assert_eq!(m.upstream_path, "/v1/range/");
        assert!(match_route(AGENT_ROUTES, "/system/v1/agent/S1/logs/v1/range/").is_none());
    }

    #[test]
    fn agent_table_is_small_and_open() {
        assert!(AGENT_ROUTES.iter().all(|r| !r.auth));
        assert!(match_route(AGENT_ROUTES, "/mesos/state").is_none());
        assert!(match_route(AGENT_ROUTES, "/system/health/v1/units").is_some());
    }
}
