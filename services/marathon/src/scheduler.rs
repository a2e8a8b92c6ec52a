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
    let mut backoff = Duration::from_millis(100);
    loop {
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
    let mut body = resp.bytes_stream();
    let mut rio = Decoder::new();
    let mut heartbeat = Duration::from_secs(15);
    let mut suppressed = false;
    loop {
        tokio::select! {
            chunk = tokio::time::timeout(heartbeat * 5, body.next()) => {
                let chunk = match chunk {
                    Err(_) => return Err(err("missed heartbeats".into())),
                    Ok(None) => return Err(err("stream closed".into())),
                    Ok(Some(Err(e))) => return Err(err(e.to_string())),
                    Ok(Some(Ok(c))) => c,
                };
                rio.feed(&chunk);
                while let Some(rec) = rio.next_record().map_err(|e| err(e.to_string()))? {
                    let ev: Json = serde_json::from_slice(&rec).map_err(|e| err(format!("bad event: {e}")))?;
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
                                .map(|i| json!({"task_id": {"value": i.task_id}, "agent_id": {"value": i.agent_id}})).collect();
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
                        "UPDATE" => {
                            let status: TaskStatus = serde_json::from_value(ev["update"]["status"].clone()).map_err(|e| err(format!("bad status: {e}")))?;
                            handle_update(core, &conn, &status).await?;
                        }
                        "ERROR" => return Err(err(format!("master error: {}", ev["error"]["message"]))),
                        _ => {}
                    }
                }
            }
            cmd = rx.recv() => match cmd {
                None => return Ok(()),
                Some(Command::Kill(list)) => {
                    for i in list {
                        let mut kill = json!({"task_id": {"value": i.task_id}, "agent_id": {"value": i.agent_id}});
                        if let Some(app) = core.repo().app(&i.app_id).await?
                            && let Some(g) = app.value.task_kill_grace_period_seconds {
                            kill["kill_policy"] = json!({"grace_period": {"nanoseconds": g * 1_000_000_000}});
                        }
                        if let Err(e) = conn.call("KILL", kill).await {
                            tracing::warn!(task = %i.task_id, error = %e, "KILL failed");
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
    let apps = core.apps().await?;
    let mut live: Vec<Instance> = core
        .repo()
        .instances()
        .await?
        .into_iter()
        .filter(|i| !i.is_terminal())
        .collect();
    let now = crate::time::now_millis();
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
        for (app_id, n) in demand.iter_mut() {
            let Some(app) = apps.get(app_id) else {
                continue;
            };
            if core.backoff(app_id).not_before_ms > now {
                continue;
            }
            while *n > 0 {
                let placed: Vec<&Instance> = live.iter().filter(|i| &i.app_id == app_id).collect();
                let Ok(p) = match_offer(app, &view, &placed, &used, &used_ports) else {
                    break;
                };
                *used.entry("cpus").or_default() += app.cpus;
                *used.entry("mem").or_default() += app.mem;
                *used.entry("disk").or_default() += app.disk;
                *used.entry("gpus").or_default() += app.gpus as f64;
                used_ports.extend(p.ports.iter().copied());
                let task_id = pathid::new_task_id(&app.id);
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
                };
                let ti = task_info(app, &inst, &p.role);
                live.push(inst.clone());
                launches.push((inst, ti));
                *n -= 1;
            }
        }
        if launches.is_empty() {
            conn.call(
                "DECLINE",
                json!({"offer_ids": [offer.id], "filters": {"refuse_seconds": 5.0}}),
            )
            .await?;
            continue;
        }
        let instances: Vec<Instance> = launches.iter().map(|(i, _)| i.clone()).collect();
        // Persist first: after a failover the instance is known and reconciled, never re-launched.
        core.repo().put_instances(&instances).await?;
        let infos: Vec<Json> = launches.into_iter().map(|(_, t)| t).collect();
        tracing::info!(agent = %agent_id, tasks = infos.len(), "launching");
        conn.call("ACCEPT", json!({"offer_ids": [offer.id], "operations": [{"type": "LAUNCH", "launch": {"task_infos": infos}}], "filters": {"refuse_seconds": 1.0}})).await?;
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

async fn handle_update(core: &Core, conn: &Conn, status: &TaskStatus) -> Result<(), MarathonError> {
    let task_id = status.task_id.value.clone();
    let state = status.state.as_str().to_string();
    if let Some(uuid) = &status.uuid {
        let agent = status
            .agent_id
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        conn.call(
            "ACKNOWLEDGE",
            json!({"agent_id": {"value": agent}, "task_id": {"value": task_id}, "uuid": uuid}),
        )
        .await?;
    }
    let instances = core.repo().instances().await?;
    let Some(mut inst) = instances.into_iter().find(|i| i.task_id == task_id) else {
        if !status.state.is_terminal() {
            // Not ours (or forgotten): kill it rather than let it run unmanaged.
            tracing::warn!(task = %task_id, %state, "unknown task, killing");
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
        return Ok(());
    };
    let was_healthy = inst.healthy;
    inst.state = state.clone();
    inst.message = status.message.clone();
    if state == "TASK_RUNNING" && inst.started_at_ms.is_none() {
        inst.started_at_ms = Some(crate::time::now_millis());
        core.reset_backoff(&inst.app_id);
    }
    if let Some(h) = status.healthy {
        inst.healthy = Some(h);
    }
    core.events().publish("status_update_event", json!({
        "slaveId": inst.agent_id, "taskId": inst.task_id, "taskStatus": state, "message": status.message.clone().unwrap_or_default(),
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
    if inst.is_terminal()
        || state == "TASK_UNREACHABLE"
            && core.repo().app(&inst.app_id).await?.is_some_and(|a| {
                matches!(
                    a.value.unreachable(),
                    crate::app::UnreachableStrategy::Enabled {
                        inactive_after_seconds: 0,
                        ..
                    }
                )
            })
    {
        if !inst.killing
            && let Some(app) = core.repo().app(&inst.app_id).await?
        {
            core.record_failure(&app.value, json!({
                "appId": inst.app_id, "host": inst.host, "message": status.message.clone().unwrap_or_default(),
                "state": state, "taskId": inst.task_id, "timestamp": crate::time::now(), "version": inst.version, "slaveId": inst.agent_id,
            }));
        }
        core.repo()
            .delete_instance(&inst.app_id, &inst.instance_id)
            .await?;
    } else {
        core.repo().put_instance(&inst).await?;
    }
    core.notify();
    Ok(())
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
