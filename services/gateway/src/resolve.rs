//! `/service/<name>` and `/agent/<id>` resolution.
//!
//! [`MesosStateResolver`] reads `/master/state` from the leading master (cached for
//! `state_cache_ttl`) and resolves, in DC/OS Admin Router order:
//!
//! 1. a running task labelled `DCOS_SERVICE_NAME=<name>` (Marathon copies app labels to
//!    its tasks): `<agent hostname>:<port[DCOS_SERVICE_PORT_INDEX]>` (ports from the
//!    task's `discovery` info, else its `ports` resources), scheme
//!    `DCOS_SERVICE_SCHEME` (`http`/`https`), and `DCOS_SERVICE_REWRITE_REQUEST_URLS=false`
//!    keeps the `/service/<name>` prefix;
//! 2. a framework whose id or name is `<name>`, through its `webui_url`;
//! 3. Mesos-DNS's SRV answer for `_<name>._tcp.marathon.mesos` (a Marathon app without
//!    labels; `/group/app` is Marathon's task name `app.group`, label `app-group`): the
//!    first target, its
//!    host name turned into the address Mesos-DNS gives it. The records are built with
//!    basalt-dns's own record builder from the same state, so the gateway answers exactly
//!    what the DNS would, without a DNS round trip;
//! 4. not found (404).
//!
//! A failed refresh falls back to a cached state up to 75 s old, as Admin Router does.
//!
//! `/agent/<id>` goes to the agent's `hostname:port` (port from the state's `port`, else
//! its `pid`, else the configured agent port).

use crate::proxy::HttpClient;
use async_trait::async_trait;
use axum::body::Body;
use basalt_store::LeaderInfo;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, watch};

/// How long a cached state is still used when refreshing it fails.
const STALE_FOR: Duration = Duration::from_secs(75);

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain.
    Http,
    /// TLS (trusting the cluster CA).
    Https,
}

impl Scheme {
    /// `http` / `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Where a resolved request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Scheme.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: String,
    /// Path prepended to the rewritten request path (`webui_url` paths), no trailing `/`.
    pub base_path: String,
    /// Send the original path (with `/service/<name>`), not the stripped one.
    pub keep_prefix: bool,
}

impl Target {
    /// A plain-HTTP target at `authority`.
    pub fn http(authority: impl Into<String>) -> Target {
        Target {
            scheme: Scheme::Http,
            authority: authority.into(),
            base_path: String::new(),
            keep_prefix: false,
        }
    }
}

/// Why resolution failed (the gateway answers 502/503, naming the route).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// No leading master is registered.
    #[error("no leading master is registered")]
    NoLeader,
    /// The leading master's state could not be read.
    #[error("reading /master/state from the leading master {leader}: {reason}")]
    State {
        /// The master's address.
        leader: String,
        /// What went wrong.
        reason: String,
    },
}

/// Resolves `/service/<name>` and `/agent/<id>`.
#[async_trait]
pub trait ServiceResolver: Send + Sync + 'static {
    /// The upstream of service `name`; `None`: unknown (404).
    async fn service(&self, name: &str) -> Result<Option<Target>, ResolveError>;
    /// The address of agent `id`; `None`: unknown (404).
    async fn agent(&self, id: &str) -> Result<Option<Target>, ResolveError>;
}

/// Resolution through the leading master's `/master/state`; see the module docs.
#[derive(Debug)]
pub struct MesosStateResolver {
    leader: watch::Receiver<Option<LeaderInfo>>,
    client: HttpClient,
    ttl: Duration,
    agent_port: u16,
    cache: Mutex<Option<(Instant, String, Arc<Value>)>>,
}

impl MesosStateResolver {
    /// Reads the state of whoever `leader` names, reusing an answer for `ttl`.
    pub fn new(
        leader: watch::Receiver<Option<LeaderInfo>>,
        client: HttpClient,
        ttl: Duration,
        agent_port: u16,
    ) -> MesosStateResolver {
        MesosStateResolver {
            leader,
            client,
            ttl,
            agent_port,
            cache: Mutex::new(None),
        }
    }

    async fn state(&self) -> Result<Arc<Value>, ResolveError> {
        let leader = self
            .leader
            .borrow()
            .as_ref()
            .map(|l| l.address.clone())
            .ok_or(ResolveError::NoLeader)?;
        let mut cache = self.cache.lock().await;
        if let Some((at, from, v)) = cache.as_ref()
            && *from == leader
            && at.elapsed() < self.ttl
        {
            return Ok(v.clone());
        }
        match self.fetch(&leader).await {
            Ok(v) => {
                let v = Arc::new(v);
                *cache = Some((Instant::now(), leader, v.clone()));
                Ok(v)
            }
            // Admin Router keeps serving a stale cache for a while when a refresh fails.
            Err(e) => match cache.as_ref() {
                Some((at, from, v)) if *from == leader && at.elapsed() < STALE_FOR => {
                    tracing::warn!(error = %e, "using a stale /master/state");
                    Ok(v.clone())
                }
                _ => Err(e),
            },
        }
    }

    async fn fetch(&self, leader: &str) -> Result<Value, ResolveError> {
        let err = |reason: String| ResolveError::State {
            leader: leader.to_owned(),
            reason,
        };
        let req = http::Request::get(format!("http://{leader}/master/state"))
            .header(http::header::ACCEPT, "application/json")
            .body(Body::empty())
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("status {}", resp.status())));
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))
    }
}

fn label<'a>(labels: &'a Value, key: &str) -> Option<&'a str> {
    // Mesos JSON: `"labels": [{"key": .., "value": ..}]`; also accept `{"labels": [...]}`.
    let arr = labels
        .as_array()
        .or_else(|| labels.get("labels").and_then(Value::as_array))?;
    arr.iter()
        .find(|l| l.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|l| l.get("value").and_then(Value::as_str))
}

/// Ports of a task: `discovery.ports.ports[].number`, else the `ports` resource ranges.
fn task_ports(task: &Value) -> Vec<u64> {
    if let Some(ports) = task
        .pointer("/discovery/ports/ports")
        .and_then(Value::as_array)
    {
        let v: Vec<u64> = ports
            .iter()
            .filter_map(|p| p.get("number").and_then(Value::as_u64))
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    let mut out = Vec::new();
    if let Some(s) = task.pointer("/resources/ports").and_then(Value::as_str) {
        for range in s.trim_matches(|c| c == '[' || c == ']').split(',') {
            let mut it = range.trim().splitn(2, '-');
            let lo = it.next().and_then(|x| x.trim().parse::<u64>().ok());
            let hi = it.next().and_then(|x| x.trim().parse::<u64>().ok());
            if let (Some(lo), Some(hi)) = (lo, hi.or(lo)) {
                out.extend(lo..=hi.min(lo.saturating_add(1024)));
            }
        }
    }
    out
}

fn agent_hostname<'a>(state: &'a Value, id: &str) -> Option<&'a Value> {
    state
        .get("slaves")?
        .as_array()?
        .iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(id))
}

/// Splits a `webui_url` into a target.
fn parse_webui(url: &str) -> Option<Target> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return None;
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return None;
    }
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!(
            "{authority}:{}",
            if scheme == Scheme::Http { 80 } else { 443 }
        )
    };
    Some(Target {
        scheme,
        authority,
        base_path: path.trim_end_matches('/').to_owned(),
        keep_prefix: false,
    })
}

/// Resolution over a parsed `/master/state`; see the module docs.
pub fn resolve_service_in(state: &Value, name: &str) -> Option<Target> {
    let frameworks = state.get("frameworks").and_then(Value::as_array)?;
    // 1. Tasks with DCOS_SERVICE_NAME.
    for fw in frameworks {
        for task in fw
            .get("tasks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(labels) = task.get("labels") else {
                continue;
            };
            if label(labels, "DCOS_SERVICE_NAME") != Some(name) {
                continue;
            }
            if task.get("state").and_then(Value::as_str) != Some("TASK_RUNNING") {
                continue;
            }
            let index: usize = label(labels, "DCOS_SERVICE_PORT_INDEX")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let Some(port) = task_ports(task).get(index).copied() else {
                continue;
            };
            let Some(host) = task
                .get("slave_id")
                .and_then(Value::as_str)
                .and_then(|id| agent_hostname(state, id))
                .and_then(|a| a.get("hostname"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let scheme = match label(labels, "DCOS_SERVICE_SCHEME") {
                Some("https") => Scheme::Https,
                _ => Scheme::Http,
            };
            return Some(Target {
                scheme,
                authority: format!("{host}:{port}"),
                base_path: String::new(),
                keep_prefix: label(labels, "DCOS_SERVICE_REWRITE_REQUEST_URLS") == Some("false"),
            });
        }
    }
    // 2. Frameworks by id or name, through webui_url.
    frameworks
        .iter()
        .filter(|fw| {
            fw.get("id").and_then(Value::as_str) == Some(name)
                || fw.get("name").and_then(Value::as_str) == Some(name)
        })
        .find_map(|fw| {
            fw.get("webui_url")
                .and_then(Value::as_str)
                .and_then(parse_webui)
        })
        // 3. Mesos-DNS SRV.
        .or_else(|| resolve_srv_in(state, name))
}

/// Step 3: the SRV records Mesos-DNS serves for `_<name>._tcp.marathon.<domain>`.
pub fn resolve_srv_in(state: &Value, name: &str) -> Option<Target> {
    use basalt_dns::records::rfc1123_label;
    use serde::Deserialize;
    let parsed = basalt_dns::MasterState::deserialize(state).ok()?;
    let set = basalt_dns::RecordSet::from_state(&parsed, &basalt_dns::DnsConfig::default()).ok()?;
    // Marathon names the tasks of `/group/app` `app.group`; Mesos-DNS makes the whole task
    // name one label (`app-group`)
    let task_name: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).rev().collect();
    let frag = rfc1123_label(&task_name.join("."));
    if frag.is_empty() {
        return None;
    }
    let key = format!("_{frag}._tcp.marathon.{}", set.domain);
    let target = set.srv.get(&key)?.iter().next()?;
    let host = set
        .a
        .get(&target.host)
        .and_then(|ips| ips.iter().next())
        .map(ToString::to_string)
        .unwrap_or_else(|| target.host.trim_end_matches('.').to_owned());
    Some(Target::http(format!("{host}:{}", target.port)))
}

/// The agent `id`'s HTTP address in a parsed `/master/state`.
pub fn resolve_agent_in(state: &Value, id: &str, default_port: u16) -> Option<Target> {
    let agent = agent_hostname(state, id)?;
    let host = agent.get("hostname").and_then(Value::as_str)?;
    let port = agent
        .get("port")
        .and_then(Value::as_u64)
        .or_else(|| {
            agent
                .get("pid")
                .and_then(Value::as_str)
                .and_then(|p| p.rsplit(':').next())
                .and_then(|p| p.parse().ok())
        })
        .unwrap_or(u64::from(default_port));
    Some(Target::http(format!("{host}:{port}")))
}

#[async_trait]
impl ServiceResolver for MesosStateResolver {
    async fn service(&self, name: &str) -> Result<Option<Target>, ResolveError> {
        let state = self.state().await?;
        Ok(resolve_service_in(&state, name))
    }

    async fn agent(&self, id: &str) -> Result<Option<Target>, ResolveError> {
        let state = self.state().await?;
        Ok(resolve_agent_in(&state, id, self.agent_port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state() -> Value {
        json!({
            "slaves": [
                {"id": "S1", "hostname": "10.0.0.5", "port": 5051},
                {"id": "S2", "hostname": "agent-2", "pid": "slave(1)@10.0.0.6:5052"}
            ],
            "frameworks": [
                {"id": "F-marathon", "name": "marathon", "webui_url": "http://10.0.0.1:8080",
                 "tasks": [
                    {"id": "web.1", "state": "TASK_RUNNING", "slave_id": "S1",
                     "resources": {"ports": "[31000-31001]"},
                     "labels": [{"key": "DCOS_SERVICE_NAME", "value": "web"},
                                {"key": "DCOS_SERVICE_PORT_INDEX", "value": "1"},
                                {"key": "DCOS_SERVICE_SCHEME", "value": "https"}]},
                    {"id": "dead.1", "state": "TASK_FAILED", "slave_id": "S1",
                     "resources": {"ports": "[31002-31002]"},
                     "labels": [{"key": "DCOS_SERVICE_NAME", "value": "dead"}]},
                    {"id": "disc.1", "state": "TASK_RUNNING", "slave_id": "S2",
                     "discovery": {"ports": {"ports": [{"number": 4000}]}},
                     "labels": [{"key": "DCOS_SERVICE_NAME", "value": "disc"},
                                {"key": "DCOS_SERVICE_REWRITE_REQUEST_URLS", "value": "false"}]}
                 ]},
                {"id": "F-kafka", "name": "kafka", "webui_url": "https://kafka.example:9443/ui/"},
                {"id": "F-nourl", "name": "nourl", "webui_url": ""}
            ]
        })
    }

    #[test]
    fn labels_then_webui() {
        let s = state();
        let web = resolve_service_in(&s, "web").unwrap();
        assert_eq!(web.authority, "10.0.0.5:31001");
        assert_eq!(web.scheme, Scheme::Https);
        let disc = resolve_service_in(&s, "disc").unwrap();
        assert_eq!(disc.authority, "agent-2:4000");
        assert!(disc.keep_prefix);
        assert_eq!(resolve_service_in(&s, "dead"), None);
        let m = resolve_service_in(&s, "marathon").unwrap();
        assert_eq!(
            (m.authority.as_str(), m.base_path.as_str()),
            ("10.0.0.1:8080", "")
        );
        let k = resolve_service_in(&s, "F-kafka").unwrap();
        assert_eq!(k.authority, "kafka.example:9443");
        assert_eq!(k.base_path, "/ui");
        assert_eq!(resolve_service_in(&s, "nourl"), None);
        assert_eq!(resolve_service_in(&s, "ghost"), None);
    }

    /// A Mesos-shaped state Mesos-DNS can build records from (a leader, agents with IP
    /// host names, Marathon tasks with port resources and no labels).
    fn srv_state() -> Value {
        json!({
            "leader": "master@10.0.0.1:5050",
            "hostname": "m1",
            "slaves": [{"id": "S1", "hostname": "10.0.0.5", "pid": "slave(1)@10.0.0.5:5051"}],
            "frameworks": [
                {"id": "F-marathon", "name": "marathon", "webui_url": "http://10.0.0.1:8080",
                 "tasks": [
                    {"id": "plain.1", "name": "plain", "framework_id": "F-marathon",
                     "state": "TASK_RUNNING", "slave_id": "S1",
                     "resources": {"ports": "[31500-31500]"}, "statuses": []},
                    {"id": "app.grp.1", "name": "app.grp", "framework_id": "F-marathon",
                     "state": "TASK_RUNNING", "slave_id": "S1",
                     "resources": {"ports": "[31600-31600]"}, "statuses": []}
                 ]}
            ]
        })
    }

    #[test]
    fn srv_fallback_answers_what_mesos_dns_would() {
        let s = srv_state();
        let t = resolve_service_in(&s, "plain").unwrap();
        assert_eq!(
            (t.scheme, t.authority.as_str()),
            (Scheme::Http, "10.0.0.5:31500")
        );
        // `/service/grp/app`: Marathon's task name is `app.grp`
        let t = resolve_service_in(&s, "grp/app").unwrap();
        assert_eq!(t.authority, "10.0.0.5:31600");
        assert_eq!(resolve_service_in(&s, "absent"), None);
        assert_eq!(resolve_srv_in(&s, "///"), None);
        // a state Mesos-DNS rejects (no leader) resolves nothing, it does not fail
        let mut no_leader = s.clone();
        no_leader["leader"] = json!("");
        assert_eq!(resolve_srv_in(&no_leader, "plain"), None);
    }

    #[test]
    fn agents() {
        let s = state();
        assert_eq!(
            resolve_agent_in(&s, "S1", 5051).unwrap().authority,
            "10.0.0.5:5051"
        );
        assert_eq!(
            resolve_agent_in(&s, "S2", 5051).unwrap().authority,
            "agent-2:5052"
        );
        assert_eq!(resolve_agent_in(&s, "S3", 5051), None);
    }
}
