//! The scheduler side: a v1 scheduler HTTP client of the master (SUBSCRIBE over a
//! RecordIO stream, `Mesos-Stream-Id`, heartbeats, re-subscription with the stored
//! framework id, 307 redirects to the leading master) and the launcher that turns
//! launch demand and offers into ACCEPT/LAUNCH, persisting every instance in etcd
//! **before** its LAUNCH is sent, so a failover never launches duplicates.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use basalt_mesos::{Attribute, DomainInfo, Resource, TaskStatus};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use crate::app::{AppDefinition, ContainerKind, EnvValue, HealthProtocol};
use crate::constraints::{OfferView, match_offer};
use crate::core::Core;
use basalt_mesos::recordio::Decoder;

use crate::error::MarathonError;
use crate::pathid;
use crate::state::Instance;

/// An offer as the master sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct Offer {
    /// `{"value": ...}`.
    pub id: Json,
    /// Agent id.
    pub agent_id: Json,
    /// Agent hostname.
    pub hostname: String,
    /// Resources.
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// Attributes.
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    /// Fault domain.
    #[serde(default)]
    pub domain: Option<DomainInfo>,
}

enum Command {
    Kill(Vec<Instance>),
    Wake,
}

/// Handle on the running driver (dropped: the driver stops).
#[derive(Debug)]
pub struct Driver {
    tx: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Driver {
    /// Starts the driver against `master` (`http://host:5050`).
    pub fn start(core: Core, master: String, fid: watch::Sender<Option<String>>) -> Driver {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(core, master, fid, rx));
        Driver { tx, task }
    }

    /// Asks the master to kill these instances.
    pub fn kill(&self, instances: Vec<Instance>) {
        if !instances.is_empty() {
            let _ = self.tx.send(Command::Kill(instances));
        }
    }

    /// Re-evaluates launch demand (REVIVE when there is some).
    pub fn wake(&self) {
        let _ = self.tx.send(Command::Wake);
    }
}

struct Conn {
    http: reqwest::Client,
    url: String,
    stream_id: String,
    framework_id: String,
}

impl Conn {
    async fn call(&self, kind: &str, body: Json) -> Result<(), MarathonError> {
        let mut call = json!({"framework_id": {"value": self.framework_id}, "type": kind});
        call[kind.to_ascii_lowercase()] = body;
        let r = self
            .http
            .post(&self.url)
            .header("Mesos-Stream-Id", &self.stream_id)
            .json(&call)
            .send()
            .await
            .map_err(|e| MarathonError::Master {
                url: self.url.clone(),
                message: e.to_string(),
            })?;
        if !r.status().is_success() {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            return Err(MarathonError::Master {
                url: self.url.clone(),
                message: format!("{kind}: {status} {text}"),
            });
        }
        Ok(())
    }
}

async fn run(
    core: Core,
    master: String,
    fid_tx: watch::Sender<Option<String>>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client");
            return;
        }
    };
    let masters: Vec<String> = master
        .split(',')
        .map(|m| m.trim().trim_end_matches('/').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    let mut backoff = Duration::from_millis(100);
    let mut next = 0usize;
    loop {
        // Ask the masters where the leader is (`/master/redirect`); fall back to trying
        // them in turn (SUBSCRIBE follows a follower's 307 to the leader too).
        let master = match find_leader(&http, &masters).await {
            Some(l) => l,
            None => {
                next = next.wrapping_add(1);
                masters
                    .get(next % masters.len().max(1))
                    .cloned()
                    .unwrap_or_default()
            }
        };
        match session(&core, &http, &master, &fid_tx, &mut rx).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => tracing::warn!(error = %e, %master, "scheduler session ended"),
        }
        core.events()
            .publish("scheduler_disconnected_event", json!({}));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The leading master's base URL, as the first master that answers
/// `GET /master/redirect` says (`Location: //host:port`).
async fn find_leader(http: &reqwest::Client, masters: &[String]) -> Option<String> {
    let probe = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_else(|_| http.clone());
    for m in masters {
        let Ok(r) = probe.get(format!("{m}/master/redirect")).send().await else {
            continue;
        };
        if !r.status().is_redirection() {
            continue;
        }
        let Some(loc) = r.headers().get("Location").and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let loc = loc.trim_end_matches('/');
        let base = if let Some(rest) = loc.strip_prefix("//") {
            let scheme = m.split("://").next().unwrap_or("http");
            format!("{scheme}://{rest}")
        } else {
            loc.to_string()
        };
        // Keep scheme://host:port only.
        let end = base
            .find("://")
            .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(base.len());
        return Some(base[..end].to_string());
    }
    None
}

async fn session(
    core: &Core,
    http: &reqwest::Client,
    master: &str,
    fid_tx: &watch::Sender<Option<String>>,
    rx: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<(), MarathonError> {
    let url = format!("{}/api/v1/scheduler", master.trim_end_matches('/'));
    let stored = core.repo().framework_id().await?;
    let mut info = json!({
        "user": "root", "name": "marathon", "failover_timeout": 604800.0, "checkpoint": true,
        "roles": ["*"], "hostname": "marathon",
        "capabilities": [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}, {"type": "TASK_KILLING_STATE"}, {"type": "GPU_RESOURCES"}, {"type": "REGION_AWARE"}],
    });
    let mut call = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info.clone()}});
    if let Some(fid) = &stored {
        info["id"] = json!({"value": fid});
        call = json!({"type": "SUBSCRIBE", "framework_id": {"value": fid}, "subscribe": {"framework_info": info}});
    }
    let err = |m: String| MarathonError::Master {
        url: url.clone(),
        message: m,
    };
    let resp = http
        .post(&url)
        .header("Accept", "application/json")
        .json(&call)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        let s = resp.status();
        return Err(err(format!(
            "SUBSCRIBE answered {s}: {}",
            resp.text().await.unwrap_or_default()
        )));
    }
    // After a 307 the leading master is where we ended up.
    let url = resp.url().to_string();
    let stream_id = resp
        .headers()
        .get("Mesos-Stream-Id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| err("SUBSCRIBE answer without Mesos-Stream-Id".into()))?
        .to_string();
    let mut conn = Conn {
        http: http.clone(),
        url: url.clone(),
        stream_id,
        framework_id: stored.unwrap_or_default(),
    };
    // The stream is read by its own task into a channel: hyper reads the next chunk
    // from the socket only while the body is polled, so a loop that reads one chunk and
    // then handles it sees one event per round trip. With a reader running ahead,
    // whatever arrived while a batch was handled is taken at once.
    let (chunks_tx, mut chunks) = mpsc::unbounded_channel();
    let mut body = resp.bytes_stream();
    let _reader = crate::server::AbortOnDrop(tokio::spawn(async move {
        while let Some(c) = body.next().await {
            if chunks_tx.send(c.map_err(|e| e.to_string())).is_err() {
                return;
            }
        }
    }));
    let mut rio = Decoder::new();
    let mut heartbeat = Duration::from_secs(15);
    let mut suppressed = false;
    loop {
        tokio::select! {
            chunk = tokio::time::timeout(heartbeat * 5, chunks.recv()) => {
                let chunk = match chunk {
                    Err(_) => return Err(err("missed heartbeats".into())),
                    Ok(None) => return Err(err("stream closed".into())),
                    Ok(Some(Err(e))) => return Err(err(e)),
                    Ok(Some(Ok(c))) => c,
                };
                rio.feed(&chunk);
                // Take whatever else has arrived already: under load, updates are
                // handled in batches instead of one round trip each.
                let mut ended = false;
                loop {
                    match chunks.try_recv() {
                        Ok(Ok(c)) => rio.feed(&c),
                        Ok(Err(e)) => return Err(err(e)),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            ended = true;
                            break;
                        }
                    }
                }
                // Status updates that arrive together are handled as one batch
                // (acknowledged concurrently, written in one transaction per 100).
                let mut updates: Vec<TaskStatus> = Vec::new();
                while let Some(rec) = rio.next_record().map_err(|e| err(e.to_string()))? {
                    let ev: Json = serde_json::from_slice(&rec).map_err(|e| err(format!("bad event: {e}")))?;
                    if ev["type"] == "UPDATE" {
                        let status: TaskStatus = serde_json::from_value(ev["update"]["status"].clone()).map_err(|e| err(format!("bad status: {e}")))?;
                        updates.push(status);
                        continue;
                    }
                    if !updates.is_empty() {
                        handle_updates(core, &conn, std::mem::take(&mut updates)).await?;
                    }
                    match ev["type"].as_str().unwrap_or("") {
                        "SUBSCRIBED" => {
                            let fid = ev["subscribed"]["framework_id"]["value"].as_str().unwrap_or("").to_string();
                            if let Some(h) = ev["subscribed"]["heartbeat_interval_seconds"].as_f64() && h > 0.0 {
                                heartbeat = Duration::from_secs_f64(h);
                            }
                            core.repo().set_framework_id(&fid).await?;
                            conn.framework_id = fid.clone();
                            let _ = fid_tx.send(Some(fid.clone()));
                            tracing::info!(framework_id = %fid, master = %conn.url, "subscribed");
                            core.events().publish("scheduler_registered_event", json!({"frameworkId": fid, "master": conn.url}));
                            // Reconcile what we believe runs, then everything.
                            let tasks: Vec<Json> = core.repo().instances().await?.iter().filter(|i| !i.is_terminal())
                                .flat_map(|i| {
                                    let ids: Vec<String> = if i.containers.is_empty() { vec![i.task_id.clone()] } else { i.containers.iter().map(|c| c.task_id.clone()).collect() };
                                    ids.into_iter().map(|t| json!({"task_id": {"value": t}, "agent_id": {"value": i.agent_id}})).collect::<Vec<_>>()
                                }).collect();
                            conn.call("RECONCILE", json!({"tasks": tasks})).await?;
                            conn.call("RECONCILE", json!({"tasks": []})).await?;
                            conn.call("REVIVE", json!({})).await?;
                        }
                        "OFFERS" => {
                            let offers: Vec<Offer> = serde_json::from_value(ev["offers"]["offers"].clone()).map_err(|e| err(format!("bad offers: {e}")))?;
                            let any_demand = handle_offers(core, &conn, offers).await?;
                            if !any_demand && !suppressed {
                                conn.call("SUPPRESS", json!({})).await?;
                                suppressed = true;
                            }
                        }
                        "ERROR" => return Err(err(format!("master error: {}", ev["error"]["message"]))),
                        _ => {}
                    }
                }
                if !updates.is_empty() {
                    handle_updates(core, &conn, updates).await?;
                }
                if ended {
                    return Err(err("stream closed".into()));
                }
            }
            cmd = rx.recv() => match cmd {
                None => return Ok(()),
                Some(Command::Kill(list)) => {
                    let apps = core.apps().await?;
                    for i in list {
                        let grace = apps.get(&i.app_id).and_then(|a| a.task_kill_grace_period_seconds);
                        // A pod instance: every container task.
                        let tasks: Vec<&str> = if i.containers.is_empty() {
                            vec![i.task_id.as_str()]
                        } else {
                            i.containers.iter().filter(|c| !c.is_terminal()).map(|c| c.task_id.as_str()).collect()
                        };
                        for t in tasks {
                            let mut kill = json!({"task_id": {"value": t}, "agent_id": {"value": i.agent_id}});
                            if let Some(g) = grace {
                                kill["kill_policy"] = json!({"grace_period": {"nanoseconds": g * 1_000_000_000}});
                            }
                            if let Err(e) = conn.call("KILL", kill).await {
                                tracing::warn!(task = %t, error = %e, "KILL failed");
                            }
                        }
                    }
                }
                Some(Command::Wake) => {
                    if suppressed && !core.launch_demand().await?.is_empty() {
                        conn.call("REVIVE", json!({})).await?;
                        suppressed = false;
                    }
                }
            }
        }
    }
}

/// Matches offers against the launch demand; persists instances, then ACCEPTs.
/// Returns whether there is any demand left.
async fn handle_offers(
    core: &Core,
    conn: &Conn,
    offers: Vec<Offer>,
) -> Result<bool, MarathonError> {
    let mut demand = core.launch_demand().await?;
    let apps = core.specs().await?;
    let pods = core.pods().await?;
    let mut live: Vec<std::sync::Arc<Instance>> = core
        .repo()
        .instances()
        .await?
        .into_iter()
        .filter(|i| !i.is_terminal())
        .collect();
    let now = crate::time::now_millis();
    let stamp = crate::time::now();
    // Statistics restart whenever an app re-enters the queue.
    core.offer_stats(|s| s.retain_queued(|app| demand.contains_key(app)));
    // Launches for apps no deployment works on are replacements: rate-limited.
    let deploying: BTreeSet<String> = core.repo().deploying_apps().await?;
    let mut by_app: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (n, i) in live.iter().enumerate() {
        by_app.entry(i.app_id.clone()).or_default().push(n);
    }
    let mut declines: Vec<Json> = Vec::new();
    let mut accepts: Vec<Json> = Vec::new();
    let mut to_persist: Vec<Instance> = Vec::new();
    for offer in offers {
        let view = OfferView::new(
            &offer.hostname,
            &offer.attributes,
            offer.domain.as_ref(),
            offer.resources.clone(),
        );
        let agent_id = offer.agent_id["value"].as_str().unwrap_or("").to_string();
        let mut used: BTreeMap<&'static str, f64> = BTreeMap::new();
        let mut used_ports: BTreeSet<u64> = BTreeSet::new();
        let mut launches: Vec<(Instance, Json)> = Vec::new();
        let mut groups: Vec<(Instance, Json)> = Vec::new();
        for (app_id, n) in demand.iter_mut() {
            let Some(app) = apps.get(app_id) else {
                continue;
            };
            if core.backoff(app_id).not_before_ms > now {
                continue;
            }
            let healing = !deploying.contains(app_id);
            let mut placed_here = 0usize;
            while *n > 0 {
                let placed: Vec<&Instance> = by_app
                    .get(app_id)
                    .map(|v| {
                        v.iter()
                            .filter_map(|k| live.get(*k).map(|i| &**i))
                            .collect()
                    })
                    .unwrap_or_default();
                let p = match match_offer(app, &view, &placed, &used, &used_ports) {
                    Ok(p) => p,
                    Err(why) => {
                        if placed_here == 0 {
                            core.offer_stats(|s| s.app(app_id).unused(&agent_id, why, &stamp));
                        }
                        break;
                    }
                };
                if healing && !core.take_reschedule_token() {
                    break;
                }
                if placed_here == 0 {
                    core.offer_stats(|s| s.app(app_id).used(&agent_id, &stamp));
                }
                placed_here += 1;
                *used.entry("cpus").or_default() += app.cpus;
                *used.entry("mem").or_default() += app.mem;
                *used.entry("disk").or_default() += app.disk;
                *used.entry("gpus").or_default() += app.gpus as f64;
                used_ports.extend(p.ports.iter().copied());
                let pod = pods.get(app_id);
                let (task_id, containers) = match pod {
                    Some(pod) => {
                        let iid = crate::pod::new_instance_id(&pod.id);
                        let cts: Vec<crate::pod::ContainerTask> = pod
                            .containers
                            .iter()
                            .map(|c| crate::pod::ContainerTask {
                                name: c.name.clone(),
                                task_id: format!("{iid}.{}", c.name),
                                state: "TASK_STAGING".into(),
                                healthy: None,
                            })
                            .collect();
                        (iid, cts)
                    }
                    None => (pathid::new_task_id(&app.id), Vec::new()),
                };
                let inst = Instance {
                    instance_id: task_id.clone(),
                    task_id: task_id.clone(),
                    app_id: app.id.clone(),
                    version: app.version.clone().unwrap_or_default(),
                    agent_id: agent_id.clone(),
                    host: offer.hostname.clone(),
                    state: "TASK_STAGING".into(),
                    ports: p.ports.clone(),
                    staged_at_ms: crate::time::now_millis(),
                    started_at_ms: None,
                    healthy: None,
                    killing: false,
                    region: view.region.clone(),
                    zone: view.zone.clone(),
                    attributes: view.attributes.clone(),
                    message: None,
                    unreachable_since_ms: None,
                    ready: false,
                    containers,
                };
                by_app.entry(app_id.clone()).or_default().push(live.len());
                live.push(std::sync::Arc::new(inst.clone()));
                match pod {
                    Some(pod) => {
                        let op = crate::pod::launch_group(pod, &inst, &conn.framework_id, &p.role);
                        groups.push((inst, op));
                    }
                    None => {
                        let ti = task_info(app, &inst, &p.role);
                        launches.push((inst, ti));
                    }
                }
                *n -= 1;
            }
        }
        if launches.is_empty() && groups.is_empty() {
            declines.push(offer.id);
            continue;
        }
        to_persist.extend(launches.iter().chain(groups.iter()).map(|(i, _)| i.clone()));
        let infos: Vec<Json> = launches.into_iter().map(|(_, t)| t).collect();
        tracing::debug!(agent = %agent_id, tasks = infos.len(), groups = groups.len(), "launching");
        let mut operations = Vec::new();
        if !infos.is_empty() {
            operations.push(json!({"type": "LAUNCH", "launch": {"task_infos": infos}}));
        }
        operations.extend(groups.into_iter().map(|(_, op)| op));
        accepts.push(json!({"offer_ids": [offer.id], "operations": operations, "filters": {"refuse_seconds": 1.0}}));
    }
    if !declines.is_empty() {
        conn.call(
            "DECLINE",
            json!({"offer_ids": declines, "filters": {"refuse_seconds": 5.0}}),
        )
        .await?;
    }
    if !accepts.is_empty() {
        // Persist first: after a failover the instance is known and reconciled, never
        // re-launched. Then the ACCEPTs go out concurrently.
        core.repo().put_instances(&to_persist).await?;
        tracing::info!(
            offers = accepts.len(),
            instances = to_persist.len(),
            "launching"
        );
        let results: Vec<Result<(), MarathonError>> =
            futures::stream::iter(accepts.into_iter().map(|a| conn.call("ACCEPT", a)))
                .buffer_unordered(32)
                .collect()
                .await;
        for r in results {
            r?;
        }
    }
    Ok(demand.values().any(|n| *n > 0))
}

/// The Mesos TaskInfo of one instance (JSON, v1 field names).
pub fn task_info(app: &AppDefinition, inst: &Instance, role: &str) -> Json {
    let alloc = json!({"role": role});
    let scalar = |name: &str, v: f64| json!({"name": name, "type": "SCALAR", "scalar": {"value": v}, "allocation_info": alloc});
    let mut resources = vec![scalar("cpus", app.cpus), scalar("mem", app.mem)];
    if app.disk > 0.0 {
        resources.push(scalar("disk", app.disk));
    }
    if app.gpus > 0 {
        resources.push(scalar("gpus", app.gpus as f64));
    }
    if !inst.ports.is_empty() {
        let ranges: Vec<Json> = inst
            .ports
            .iter()
            .map(|p| json!({"begin": p, "end": p}))
            .collect();
        resources.push(json!({"name": "ports", "type": "RANGES", "ranges": {"range": ranges}, "allocation_info": alloc}));
    }
    let mut env: Vec<Json> = Vec::new();
    let mut push = |k: &str, v: &str| env.push(json!({"name": k, "type": "VALUE", "value": v}));
    for (k, v) in &app.env {
        if let EnvValue::Value(v) = v {
            push(k, v);
        }
    }
    push("MARATHON_APP_ID", &app.id);
    push("MARATHON_APP_VERSION", app.version.as_deref().unwrap_or(""));
    push(
        "MARATHON_APP_LABELS",
        &app.labels.keys().cloned().collect::<Vec<_>>().join(" "),
    );
    for (k, v) in &app.labels {
        let name: String = k
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        push(&format!("MARATHON_APP_LABEL_{name}"), v);
    }
    push("MARATHON_APP_RESOURCE_CPUS", &app.cpus.to_string());
    push("MARATHON_APP_RESOURCE_MEM", &app.mem.to_string());
    push("MARATHON_APP_RESOURCE_DISK", &app.disk.to_string());
    push("MARATHON_APP_RESOURCE_GPUS", &app.gpus.to_string());
    if let Some(image) = app
        .container
        .as_ref()
        .and_then(|c| c.docker.as_ref())
        .map(|d| d.image.clone())
    {
        push("MARATHON_APP_DOCKER_IMAGE", &image);
    }
    push("MESOS_TASK_ID", &inst.task_id);
    push("HOST", &inst.host);
    for (i, p) in inst.ports.iter().enumerate() {
        push(&format!("PORT{i}"), &p.to_string());
    }
    if let Some(p) = inst.ports.first() {
        push("PORT", &p.to_string());
    }
    push(
        "PORTS",
        &inst
            .ports
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    let port_defs: Vec<(Option<String>, String, BTreeMap<String, String>)> = match app
        .container
        .as_ref()
        .and_then(|c| c.port_mappings.as_ref())
    {
        Some(pm) if !pm.is_empty() => pm
            .iter()
            .map(|m| (m.name.clone(), m.protocol.clone(), m.labels.clone()))
            .collect(),
        _ => app
            .port_definitions
            .iter()
            .flatten()
            .map(|d| (d.name.clone(), d.protocol.clone(), d.labels.clone()))
            .collect(),
    };
    for ((name, _, _), p) in port_defs.iter().zip(&inst.ports) {
        if let Some(n) = name {
            push(
                &format!("PORT_{}", n.to_ascii_uppercase().replace('-', "_")),
                &p.to_string(),
            );
        }
    }
    let mut command = json!({"environment": {"variables": env}});
    match (&app.cmd, &app.args) {
        (Some(cmd), _) => {
            command["shell"] = json!(true);
            command["value"] = json!(cmd);
        }
        (None, Some(args)) if !args.is_empty() => {
            command["shell"] = json!(false);
            if app.container.is_none() {
                command["value"] = json!(args[0]);
            }
            command["arguments"] = json!(args);
        }
        _ => command["shell"] = json!(false),
    }
    if let Some(u) = &app.user {
        command["user"] = json!(u);
    }
    if !app.fetch.is_empty() {
        command["uris"] = json!(app.fetch.iter().map(|a| {
            let mut u = json!({"value": a.uri, "executable": a.executable, "extract": a.extract, "cache": a.cache});
            if let Some(d) = &a.dest_path { u["output_file"] = json!(d); }
            u
        }).collect::<Vec<_>>());
    }
    let discovery_ports: Vec<Json> = port_defs
        .iter()
        .zip(&inst.ports)
        .map(|((name, proto, labels), p)| {
            let mut dp = json!({"number": p, "protocol": proto.split(',').next().unwrap_or("tcp")});
            if let Some(n) = name {
                dp["name"] = json!(n);
            }
            let mut l: Vec<Json> = labels
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            l.push(json!({"key": "network-scope", "value": "host"}));
            dp["labels"] = json!({"labels": l});
            dp
        })
        .collect();
    let mut ti = json!({
        "name": pathid::task_name(&app.id),
        "task_id": {"value": inst.task_id},
        "agent_id": {"value": inst.agent_id},
        "resources": resources,
        "command": command,
        "labels": {"labels": app.labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()},
        "discovery": {"visibility": "FRAMEWORK", "name": pathid::task_name(&app.id), "ports": {"ports": discovery_ports}},
    });
    if let Some(c) = &app.container {
        let mut ci = json!({"type": "MESOS"});
        if let Some(d) = &c.docker {
            // DOCKER apps run through the agent's OCI path (Mesos containerizer + image).
            ci["mesos"] = json!({"image": {"type": "DOCKER", "docker": {"name": d.image}, "cached": !d.force_pull_image}});
        }
        if c.kind == ContainerKind::Docker || c.docker.is_some() {
            ci["type"] = json!("MESOS");
        }
        let vols: Vec<Json> = c.volumes.iter().filter(|v| v.host_path.is_some()).map(|v| json!({"container_path": v.container_path, "host_path": v.host_path, "mode": v.mode.clone().unwrap_or_else(|| "RW".into())})).collect();
        if !vols.is_empty() {
            ci["volumes"] = json!(vols);
        }
        ti["container"] = ci;
    }
    if let Some(hc) = app
        .health_checks
        .iter()
        .find(|h| !h.protocol.is_marathon_side())
    {
        let port = hc.port.map(|p| p as u64).or_else(|| {
            hc.port_index
                .and_then(|i| inst.ports.get(i as usize).copied())
        });
        let mut mh = json!({
            "delay_seconds": hc.delay_seconds as f64, "interval_seconds": hc.interval_seconds as f64,
            "timeout_seconds": hc.timeout_seconds as f64, "consecutive_failures": hc.max_consecutive_failures,
            "grace_period_seconds": hc.grace_period_seconds as f64,
        });
        match hc.protocol {
            HealthProtocol::Command => {
                mh["type"] = json!("COMMAND");
                mh["command"] = json!({"value": hc.command.as_ref().map(|c| c.value.clone()).unwrap_or_default(), "shell": true});
            }
            HealthProtocol::MesosTcp => {
                mh["type"] = json!("TCP");
                mh["tcp"] = json!({"port": port});
            }
            _ => {
                mh["type"] = json!("HTTP");
                mh["http"] = json!({"port": port, "path": hc.path.clone().unwrap_or_else(|| "/".into()),
                    "scheme": if hc.protocol == HealthProtocol::MesosHttps { "https" } else { "http" }});
            }
        }
        ti["health_check"] = mh;
    }
    if let Some(g) = app.task_kill_grace_period_seconds {
        ti["kill_policy"] = json!({"grace_period": {"nanoseconds": g * 1_000_000_000}});
    }
    ti
}

/// Handles status updates that arrived together: applies them in order, writes the
/// changed instances in as few transactions as etcd allows, and only then acknowledges
/// them (concurrently) — an update acknowledged before it is stored would be lost if
/// this leader died in between. A resend of a status the instance already has (the
/// master resends until acknowledged) is acknowledged without a write or an event.
async fn handle_updates(
    core: &Core,
    conn: &Conn,
    statuses: Vec<TaskStatus>,
) -> Result<(), MarathonError> {
    let acks: Vec<Json> = statuses
        .iter()
        .filter_map(|st| {
            st.uuid.as_ref().map(|uuid| {
                let agent = st.agent_id.as_ref().map(|a| a.value.clone()).unwrap_or_default();
                json!({"agent_id": {"value": agent}, "task_id": {"value": st.task_id.value}, "uuid": uuid})
            })
        })
        .collect();
    // Changed instances by (app, instance), and which task ids they hold.
    let mut pending: BTreeMap<(String, String), (Instance, bool)> = BTreeMap::new();
    let mut by_task: std::collections::HashMap<String, (String, String)> =
        std::collections::HashMap::new();
    for status in &statuses {
        let task_id = status.task_id.value.clone();
        let known = match by_task.get(&task_id).and_then(|k| pending.get(k)) {
            Some((i, _)) => Some(i.clone()),
            None => core.repo().instance_by_task(&task_id).await?,
        };
        let Some(mut inst) = known else {
            if !status.state.is_terminal() {
                // Not ours (or forgotten): kill it rather than let it run unmanaged.
                tracing::warn!(task = %task_id, state = %status.state.as_str(), "unknown task, killing");
                let agent = status
                    .agent_id
                    .as_ref()
                    .map(|a| a.value.clone())
                    .unwrap_or_default();
                conn.call(
                    "KILL",
                    json!({"task_id": {"value": task_id}, "agent_id": {"value": agent}}),
                )
                .await?;
            }
            continue;
        };
        if already_applied(&inst, status) {
            continue;
        }
        let terminal = apply_status(core, &mut inst, status).await?;
        let key = (inst.app_id.clone(), inst.instance_id.clone());
        by_task.insert(inst.task_id.clone(), key.clone());
        for c in &inst.containers {
            by_task.insert(c.task_id.clone(), key.clone());
        }
        pending.insert(key, (inst, terminal));
    }
    let puts: Vec<Instance> = pending
        .values()
        .filter(|(_, t)| !*t)
        .map(|(i, _)| i.clone())
        .collect();
    let deletes: Vec<(String, String)> = pending
        .iter()
        .filter(|(_, (_, t))| *t)
        .map(|(k, _)| k.clone())
        .collect();
    core.repo().write_instances(&puts, &deletes).await?;
    tracing::debug!(
        updates = statuses.len(),
        written = puts.len() + deletes.len(),
        "status updates applied"
    );
    if !pending.is_empty() {
        core.notify();
    }
    let results: Vec<Result<(), MarathonError>> =
        futures::stream::iter(acks.into_iter().map(|a| conn.call("ACKNOWLEDGE", a)))
            .buffer_unordered(32)
            .collect()
            .await;
    results.into_iter().collect()
}

/// Whether `status` says nothing the instance does not already record (a resend).
fn already_applied(inst: &Instance, status: &TaskStatus) -> bool {
    let state = status.state.as_str();
    let healthy_same = status.healthy.is_none_or(|h| inst.healthy == Some(h));
    if inst.containers.is_empty() {
        inst.task_id == status.task_id.value
            && inst.state == state
            && healthy_same
            && inst.message == status.message
    } else {
        inst.containers.iter().any(|c| {
            c.task_id == status.task_id.value
                && c.state == state
                && status.healthy.is_none_or(|h| c.healthy == Some(h))
        })
    }
}

/// Applies one status to its instance (events, back-off, unreachable bookkeeping).
/// Returns whether the instance is gone (terminal).
async fn apply_status(
    core: &Core,
    inst: &mut Instance,
    status: &TaskStatus,
) -> Result<bool, MarathonError> {
    let task_id = status.task_id.value.clone();
    let state = status.state.as_str().to_string();
    let was_healthy = inst.healthy;
    let mut container_failed = false;
    let state = if inst.containers.is_empty() {
        state
    } else {
        // A pod instance: one container changed; the instance's state is the aggregate.
        if let Some(ct) = inst.containers.iter_mut().find(|c| c.task_id == task_id) {
            ct.state = state.clone();
            if let Some(h) = status.healthy {
                ct.healthy = Some(h);
            }
        }
        let agg = crate::pod::aggregate_state(&inst.containers);
        if agg == "TASK_KILLING" && !inst.killing {
            // One container ended: the whole instance goes and is replaced.
            container_failed = true;
            inst.killing = true;
        }
        agg
    };
    inst.state = state.clone();
    inst.message = status.message.clone();
    if state == "TASK_RUNNING" && inst.started_at_ms.is_none() {
        inst.started_at_ms = Some(crate::time::now_millis());
        core.reset_backoff(&inst.app_id);
    }
    if !inst.containers.is_empty() {
        inst.healthy = if inst.containers.iter().any(|c| c.healthy == Some(false)) {
            Some(false)
        } else if inst.containers.iter().any(|c| c.healthy == Some(true)) {
            Some(true)
        } else {
            None
        };
    } else if let Some(h) = status.healthy {
        inst.healthy = Some(h);
    }
    core.events().publish("status_update_event", json!({
        "slaveId": inst.agent_id, "taskId": task_id, "taskStatus": status.state.as_str(), "message": status.message.clone().unwrap_or_default(),
        "appId": inst.app_id, "host": inst.host, "ipAddresses": [], "ports": inst.ports, "version": inst.version,
    }));
    core.events().publish("instance_changed_event", json!({
        "instanceId": inst.instance_id, "condition": condition(&state), "runSpecId": inst.app_id,
        "agentId": inst.agent_id, "host": inst.host, "runSpecVersion": inst.version,
    }));
    if was_healthy != inst.healthy
        && let Some(h) = inst.healthy
    {
        core.events().publish("health_status_changed_event", json!({
            "appId": inst.app_id, "instanceId": inst.instance_id, "taskId": inst.task_id, "version": inst.version, "alive": h,
        }));
    }
    if state == "TASK_UNREACHABLE" {
        // Counted until `inactiveAfterSeconds`, replaced after, expunged after
        // `expungeAfterSeconds` (the executor's tick); "disabled": kept until LOST/GONE.
        if inst.unreachable_since_ms.is_none() {
            inst.unreachable_since_ms = Some(crate::time::now_millis());
        }
    } else {
        inst.unreachable_since_ms = None;
    }
    if (container_failed || inst.is_terminal() && !inst.killing)
        && let Some(app) = core.specs().await?.get(&inst.app_id)
    {
        core.record_failure(app, json!({
            "appId": inst.app_id, "host": inst.host, "message": status.message.clone().unwrap_or_default(),
            "state": status.state.as_str(), "taskId": task_id, "timestamp": crate::time::now(), "version": inst.version, "slaveId": inst.agent_id,
        }));
    }
    Ok(inst.is_terminal())
}

fn condition(state: &str) -> &'static str {
    match state {
        "TASK_STAGING" => "Staging",
        "TASK_STARTING" => "Starting",
        "TASK_RUNNING" => "Running",
        "TASK_KILLING" => "Killing",
        "TASK_FINISHED" => "Finished",
        "TASK_FAILED" => "Failed",
        "TASK_KILLED" => "Killed",
        "TASK_ERROR" => "Error",
        "TASK_UNREACHABLE" => "Unreachable",
        "TASK_GONE" => "Gone",
        "TASK_DROPPED" => "Dropped",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_mesos::TaskState;

    #[test]
    fn a_resent_status_is_recognised_and_a_new_one_is_not() {
        let inst = Instance {
            task_id: "web.1".into(),
            state: "TASK_RUNNING".into(),
            healthy: Some(true),
            ..Instance::default()
        };
        let status = |state: TaskState, healthy: Option<bool>| {
            let mut s = TaskStatus::new(basalt_mesos::TaskId::new("web.1"), state);
            s.healthy = healthy;
            s
        };
        assert!(already_applied(&inst, &status(TaskState::Running, None)));
        assert!(already_applied(
            &inst,
            &status(TaskState::Running, Some(true))
        ));
        assert!(!already_applied(
            &inst,
            &status(TaskState::Running, Some(false))
        ));
        assert!(!already_applied(&inst, &status(TaskState::Killed, None)));
        let mut with_message = status(TaskState::Running, None);
        with_message.message = Some("health check passed".into());
        assert!(!already_applied(&inst, &with_message));
        let mut other_task = status(TaskState::Running, None);
        other_task.task_id = basalt_mesos::TaskId::new("web.2");
        assert!(!already_applied(&inst, &other_task));
    }

    #[test]
    fn task_info_is_marathon_shaped() {
        let mut app = AppDefinition::from_json(
            json!({"id": "/group/web", "cmd": "run", "labels": {"tier": "front"},
            "portDefinitions": [{"port": 0, "name": "http", "labels": {"VIP_0": "/web:80"}}],
            "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/ok"}]}),
        )
        .unwrap();
        app.normalize("/");
        app.version = Some("2026-01-01T00:00:00.000Z".into());
        let inst = Instance {
            instance_id: "group_web.1".into(),
            task_id: "group_web.1".into(),
            app_id: app.id.clone(),
            version: "v".into(),
            agent_id: "S1".into(),
            host: "h1".into(),
            state: "TASK_STAGING".into(),
            ports: vec![31005],
            staged_at_ms: 0,
            started_at_ms: None,
            healthy: None,
            killing: false,
            region: None,
            zone: None,
            attributes: BTreeMap::new(),
            message: None,
            unreachable_since_ms: None,
            ready: false,
            containers: Vec::new(),
        };
        let ti = task_info(&app, &inst, "*");
        assert_eq!(ti["name"], "web.group");
        assert_eq!(ti["discovery"]["visibility"], "FRAMEWORK");
        assert_eq!(ti["discovery"]["ports"]["ports"][0]["number"], 31005);
        assert_eq!(
            ti["discovery"]["ports"]["ports"][0]["labels"]["labels"][0],
            json!({"key": "VIP_0", "value": "/web:80"})
        );
        assert_eq!(ti["health_check"]["http"]["port"], 31005);
        assert_eq!(ti["health_check"]["http"]["path"], "/ok");
        let env: BTreeMap<String, String> = ti["command"]["environment"]["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(env["MARATHON_APP_ID"], "/group/web");
        assert_eq!(env["MARATHON_APP_LABEL_TIER"], "front");
        assert_eq!(env["PORT0"], "31005");
        assert_eq!(env["PORT_HTTP"], "31005");
        assert_eq!(env["PORTS"], "31005");
        assert_eq!(env["HOST"], "h1");
        assert_eq!(env["MESOS_TASK_ID"], "group_web.1");
        assert_eq!(
            ti["resources"][2]["ranges"]["range"][0],
            json!({"begin": 31005, "end": 31005})
        );
    }
}
