//! JSON of the read-only endpoints (Mesos' `/master/state` model) and the metrics.

use std::collections::BTreeMap;

use basalt_mesos::{FrameworkId, Resources, TaskState};
use serde_json::{Map, Value as Json, json};

use crate::config::MESOS_VERSION;
use crate::core::{Agent, Core, Framework};
use crate::master::Shared;
use crate::records::TaskRecord;

type Q = BTreeMap<String, String>;

/// `/version`.
pub fn version() -> Json {
    json!({
        "version": MESOS_VERSION,
        "build_date": "",
        "build_time": 0.0,
        "build_user": "basalt",
        "git_sha": "",
        "git_tag": "",
        "basalt_version": env!("CARGO_PKG_VERSION"),
    })
}

fn res_model(r: &Resources) -> Json {
    Json::Object(r.to_state_model())
}

fn task_json(t: &TaskRecord) -> Json {
    let statuses: Vec<Json> = t
        .statuses
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("state".into(), json!(s.state));
            m.insert("timestamp".into(), json!(s.timestamp.unwrap_or(0.0)));
            if let Some(h) = s.healthy {
                m.insert("healthy".into(), json!(h));
            }
            if let Some(l) = &s.labels {
                m.insert("labels".into(), json!(l.labels));
            }
            if let Some(c) = &s.container_status {
                m.insert("container_status".into(), json!(c));
            }
            Json::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(t.task.task_id.value));
    m.insert("name".into(), json!(t.task.name));
    m.insert("framework_id".into(), json!(t.framework_id.value));
    m.insert(
        "executor_id".into(),
        json!(
            t.executor()
                .map(|e| e.executor_id.value.clone())
                .unwrap_or_default()
        ),
    );
    m.insert("slave_id".into(), json!(t.agent_id.value));
    m.insert("state".into(), json!(t.state));
    m.insert("resources".into(), res_model(&t.resources()));
    m.insert("role".into(), json!(t.role));
    m.insert("statuses".into(), Json::Array(statuses));
    if let Some(l) = &t.task.labels {
        m.insert("labels".into(), json!(l.labels));
    }
    for (k, v) in [
        ("discovery", t.task.discovery.as_ref().map(|d| json!(d))),
        ("container", t.task.container.as_ref().map(|c| json!(c))),
        (
            "health_check",
            t.task.health_check.as_ref().map(|h| json!(h)),
        ),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    Json::Object(m)
}

fn agent_used(core: &Core, agent: &Agent) -> (Resources, Resources) {
    let id = agent.id();
    let mut used = Resources::new();
    for t in core.tasks.values() {
        if t.record.agent_id == id && !t.record.state.is_terminal() {
            used += &t.record.resources();
        }
    }
    let mut offered = Resources::new();
    for o in core.offers.values() {
        if o.offer.agent_id == id {
            offered += &o.offer.resources;
        }
    }
    (used, offered)
}

fn agent_json(core: &Core, a: &Agent) -> Json {
    let info = &a.record.info;
    let (used, offered) = agent_used(core, a);
    let reserved: Map<String, Json> = info
        .resources
        .reservations()
        .iter()
        .map(|(role, r)| (role.clone(), res_model(r)))
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), json!(a.id().value));
    m.insert(
        "pid".into(),
        json!(format!("slave(1)@{}:{}", info.hostname, info.port())),
    );
    m.insert("hostname".into(), json!(info.hostname));
    m.insert("port".into(), json!(info.port()));
    m.insert("registered_time".into(), json!(a.record.registered_time));
    if let Some(t) = a.record.reregistered_time {
        m.insert("reregistered_time".into(), json!(t));
    }
    m.insert("resources".into(), res_model(&info.resources));
    m.insert("used_resources".into(), res_model(&used.unallocate()));
    m.insert("offered_resources".into(), res_model(&offered.unallocate()));
    m.insert("reserved_resources".into(), Json::Object(reserved));
    m.insert(
        "unreserved_resources".into(),
        res_model(&info.resources.unreserved()),
    );
    m.insert(
        "attributes".into(),
        Json::Object(info.attributes.to_state_model()),
    );
    m.insert("active".into(), json!(a.active()));
    m.insert("deactivated".into(), json!(!a.active()));
    m.insert("version".into(), json!(MESOS_VERSION));
    m.insert("capabilities".into(), json!([]));
    m.insert("resources_full".into(), json!(info.resources));
    m.insert("used_resources_full".into(), json!(used));
    m.insert("offered_resources_full".into(), json!(offered));
    if let Some(d) = &info.domain {
        m.insert("domain".into(), json!(d));
    }
    Json::Object(m)
}

fn framework_json(core: &Core, f: &Framework, with_tasks: bool) -> Json {
    let id = f.id();
    let info = &f.record.info;
    let mut used = Resources::new();
    let mut tasks = Vec::new();
    let mut unreachable = Vec::new();
    let mut completed = Vec::new();
    for t in core.tasks.values().filter(|t| t.record.framework_id == id) {
        if t.record.state.is_terminal() {
            completed.push(task_json(&t.record));
        } else if t.record.state == TaskState::Unreachable {
            unreachable.push(task_json(&t.record));
        } else {
            used += &t.record.resources();
            tasks.push(task_json(&t.record));
        }
    }
    for c in core.completed_tasks.iter().filter(|c| c.framework_id == id) {
        completed.push(task_json(c));
    }
    let mut offered = Resources::new();
    let mut offers = Vec::new();
    for o in core.offers.values().filter(|o| o.offer.framework_id == id) {
        offered += &o.offer.resources;
        offers.push(json!({
            "id": o.offer.id.value,
            "framework_id": id.value,
            "slave_id": o.offer.agent_id.value,
            "resources": res_model(&o.offer.resources),
            "allocation_info": o.offer.allocation_info,
        }));
    }
    let roles = info.effective_roles();
    let mut m = Map::new();
    m.insert("id".into(), json!(id.value));
    m.insert("name".into(), json!(info.name));
    // HTTP frameworks have no libprocess pid: Mesos leaves the field out.
    m.insert(
        "hostname".into(),
        json!(info.hostname.clone().unwrap_or_default()),
    );
    m.insert(
        "webui_url".into(),
        json!(info.webui_url.clone().unwrap_or_default()),
    );
    m.insert("user".into(), json!(info.user));
    m.insert("role".into(), json!(roles.first().copied().unwrap_or("*")));
    m.insert("roles".into(), json!(roles));
    m.insert("principal".into(), json!(info.principal));
    m.insert("active".into(), json!(f.conn.is_some()));
    m.insert("connected".into(), json!(f.conn.is_some()));
    m.insert("recovered".into(), json!(f.recovered));
    m.insert(
        "failover_timeout".into(),
        json!(info.failover_timeout_secs()),
    );
    m.insert("checkpoint".into(), json!(info.checkpoints()));
    m.insert(
        "capabilities".into(),
        json!(
            info.capabilities
                .iter()
                .map(|c| c.kind.as_str())
                .collect::<Vec<_>>()
        ),
    );
    m.insert("registered_time".into(), json!(f.record.registered_time));
    if let Some(t) = f.record.reregistered_time {
        m.insert("reregistered_time".into(), json!(t));
    }
    m.insert(
        "unregistered_time".into(),
        json!(f.unregistered_time.unwrap_or(0.0)),
    );
    m.insert(
        "resources".into(),
        res_model(&(used.clone() + &offered).unallocate()),
    );
    m.insert("used_resources".into(), res_model(&used.unallocate()));
    m.insert("offered_resources".into(), res_model(&offered.unallocate()));
    if with_tasks {
        m.insert("tasks".into(), Json::Array(tasks));
        m.insert("unreachable_tasks".into(), Json::Array(unreachable));
        m.insert("completed_tasks".into(), Json::Array(completed));
        m.insert("offers".into(), Json::Array(offers));
        m.insert("executors".into(), json!([]));
    }
    if let Some(l) = &info.labels {
        m.insert("labels".into(), json!(l.labels));
    }
    Json::Object(m)
}

fn completed_framework_json(
    record: &crate::records::FrameworkRecord,
    tasks: &[TaskRecord],
) -> Json {
    let info = &record.info;
    json!({
        "id": info.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
        "name": info.name,
        "user": info.user,
        "active": false,
        "connected": false,
        "roles": info.effective_roles(),
        "registered_time": record.registered_time,
        "tasks": [],
        "completed_tasks": tasks.iter().map(task_json).collect::<Vec<_>>(),
        "offers": [],
    })
}

fn leader_info(shared: &Shared, core: &Core) -> Json {
    let _ = shared;
    core.master_info()
}

fn wants(q: &Q, key: &str, value: &str) -> bool {
    q.get(key).is_none_or(|v| v == value)
}

/// `/flags`: the master's settings under Mesos' flag names, as strings.
pub fn flags(shared: &Shared) -> Json {
    let c = &shared.cfg;
    let weights: Vec<String> = c
        .role_weights
        .iter()
        .map(|(r, w)| format!("{r}={w}"))
        .collect();
    json!({"flags": {
        "port": c.listen.port().to_string(),
        "ip": c.listen.ip().to_string(),
        "advertise_ip": crate::core::split_address(&shared.address).0,
        "agent_ping_timeout": format!("{}secs", c.agent_ping_timeout.as_secs_f64()),
        "max_agent_ping_timeouts": c.max_agent_ping_timeouts.to_string(),
        "offer_timeout": c.offer_timeout.map(|t| format!("{}secs", t.as_secs_f64())).unwrap_or_default(),
        "filter_gpu_resources": c.gpus_are_scarce.to_string(),
        "weights": weights.join(","),
        "cluster": c.cluster.clone().unwrap_or_default(),
        "registry": "etcd",
        "authenticate_agents": c.join_credential.is_some().to_string(),
    }})
}

/// `/master/state`.
pub fn state(shared: &Shared, core: &Core, _q: &Q) -> Json {
    let info = core.master_info();
    let activated = core.agents.values().filter(|a| a.active()).count();
    let unreachable = core.agents.values().filter(|a| !a.reachable()).count();
    json!({
        "version": MESOS_VERSION,
        "git_sha": "",
        "git_tag": "",
        "build_date": "",
        "build_time": 0.0,
        "build_user": "basalt",
        "start_time": shared.start_time,
        "elected_time": core.elected_time,
        "id": core.master_id,
        "pid": info["pid"],
        "hostname": info["hostname"],
        "activated_slaves": activated,
        "deactivated_slaves": core.agents.len() - activated - unreachable,
        "unreachable_slaves": unreachable,
        "cluster": shared.cfg.cluster.clone().unwrap_or_default(),
        "leader": info["pid"],
        "leader_info": leader_info(shared, core),
        "log_dir": "",
        "flags": flags(shared)["flags"],
        "slaves": core.agents.values().filter(|a| a.reachable() && !a.recovered).map(|a| agent_json(core, a)).collect::<Vec<_>>(),
        "recovered_slaves": core.agents.values().filter(|a| a.recovered).map(|a| json!({"id": a.id().value, "hostname": a.record.info.hostname})).collect::<Vec<_>>(),
        "frameworks": core.frameworks.values().map(|f| framework_json(core, f, true)).collect::<Vec<_>>(),
        "completed_frameworks": core.completed_frameworks.iter().map(|(r, t)| completed_framework_json(r, t)).collect::<Vec<_>>(),
        "orphan_tasks": [],
        "unregistered_frameworks": [],
    })
}

/// `/master/state-summary`.
pub fn state_summary(shared: &Shared, core: &Core, _q: &Q) -> Json {
    json!({
        "hostname": core.master_info()["hostname"],
        "cluster": shared.cfg.cluster.clone().unwrap_or_default(),
        "slaves": core.agents.values().filter(|a| a.reachable()).map(|a| agent_json(core, a)).collect::<Vec<_>>(),
        "frameworks": core.frameworks.values().map(|f| framework_json(core, f, false)).collect::<Vec<_>>(),
    })
}

/// `/master/frameworks` (`?framework_id=`).
pub fn frameworks(_shared: &Shared, core: &Core, q: &Q) -> Json {
    json!({
        "frameworks": core.frameworks.values().filter(|f| wants(q, "framework_id", f.id().as_str())).map(|f| framework_json(core, f, true)).collect::<Vec<_>>(),
        "completed_frameworks": core.completed_frameworks.iter().map(|(r, t)| completed_framework_json(r, t)).collect::<Vec<_>>(),
        "unregistered_frameworks": [],
    })
}

/// `/master/slaves` (`?slave_id=`).
pub fn slaves(_shared: &Shared, core: &Core, q: &Q) -> Json {
    json!({
        "slaves": core.agents.values().filter(|a| !a.recovered && wants(q, "slave_id", a.id().as_str())).map(|a| agent_json(core, a)).collect::<Vec<_>>(),
        "recovered_slaves": core.agents.values().filter(|a| a.recovered).map(|a| json!({"id": a.id().value, "hostname": a.record.info.hostname})).collect::<Vec<_>>(),
    })
}

/// `/master/tasks` (`limit` (100), `offset`, `order` asc|des, `framework_id`, `task_id`).
pub fn tasks(_shared: &Shared, core: &Core, q: &Q) -> Json {
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(100);
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut all: Vec<&TaskRecord> = core
        .tasks
        .values()
        .map(|t| &*t.record)
        .chain(core.completed_tasks.iter())
        .filter(|t| {
            wants(q, "framework_id", t.framework_id.as_str())
                && wants(q, "task_id", t.task.task_id.as_str())
        })
        .collect();
    all.sort_by(|a, b| {
        let ta = a.statuses.first().and_then(|s| s.timestamp).unwrap_or(0.0);
        let tb = b.statuses.first().and_then(|s| s.timestamp).unwrap_or(0.0);
        ta.total_cmp(&tb)
    });
    if q.get("order").is_some_and(|o| o == "des") {
        all.reverse();
    }
    json!({
        "tasks": all.into_iter().skip(offset).take(limit).map(task_json).collect::<Vec<_>>(),
    })
}

/// `/master/roles`.
pub fn roles(shared: &Shared, core: &Core, _q: &Q) -> Json {
    let mut roles: BTreeMap<String, (Vec<FrameworkId>, Resources)> = BTreeMap::new();
    for f in core.frameworks.values() {
        for r in f.record.info.effective_roles() {
            roles.entry(r.to_string()).or_default().0.push(f.id());
        }
    }
    for t in core.tasks.values() {
        if !t.record.state.is_terminal() {
            roles.entry(t.record.role.clone()).or_default().1 += &t.record.resources();
        }
    }
    for o in core.offers.values() {
        if let Some(r) = o
            .offer
            .allocation_info
            .as_ref()
            .and_then(|a| a.role.clone())
        {
            roles.entry(r).or_default().1 += &o.offer.resources;
        }
    }
    json!({
        "roles": roles.iter().map(|(name, (fws, res))| json!({
            "name": name,
            "weight": shared.cfg.role_weights.get(name).copied().unwrap_or(1.0),
            "frameworks": fws.iter().map(|f| f.value.clone()).collect::<Vec<_>>(),
            "resources": res_model(&res.unallocate()),
        })).collect::<Vec<_>>(),
    })
}

/// `/metrics/snapshot` values (Mesos names).
pub fn metrics(shared: &Shared, core: Option<&Core>) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    m.insert(
        "master/uptime_secs".into(),
        crate::core::now_secs() - shared.start_time,
    );
    m.insert(
        "master/elected".into(),
        if core.is_some() { 1.0 } else { 0.0 },
    );
    let Some(core) = core else {
        return m;
    };
    let agents = core.agents.values();
    let (mut active, mut connected, mut disconnected, mut unreachable) = (0, 0, 0, 0);
    let mut total = Resources::new();
    let mut used = Resources::new();
    for a in agents {
        if !a.reachable() {
            unreachable += 1;
            continue;
        }
        if a.conn.is_some() {
            connected += 1;
        } else {
            disconnected += 1;
        }
        if a.active() {
            active += 1;
        }
        total += &a.record.info.resources;
        used += &agent_used(core, a).0.unallocate();
    }
    m.insert("master/slaves_active".into(), f64::from(active));
    m.insert(
        "master/slaves_inactive".into(),
        f64::from(connected + disconnected - active),
    );
    m.insert("master/slaves_connected".into(), f64::from(connected));
    m.insert("master/slaves_disconnected".into(), f64::from(disconnected));
    m.insert("master/slaves_unreachable".into(), f64::from(unreachable));
    let fw_connected = core
        .frameworks
        .values()
        .filter(|f| f.conn.is_some())
        .count() as f64;
    m.insert("master/frameworks_active".into(), fw_connected);
    m.insert("master/frameworks_connected".into(), fw_connected);
    m.insert(
        "master/frameworks_disconnected".into(),
        core.frameworks.len() as f64 - fw_connected,
    );
    m.insert("master/outstanding_offers".into(), core.offers.len() as f64);
    for s in TaskState::ALL {
        let name = s.as_str().trim_start_matches("TASK_").to_ascii_lowercase();
        let live = core.tasks.values().filter(|t| t.record.state == *s).count();
        let done = core
            .completed_tasks
            .iter()
            .filter(|t| t.state == *s)
            .count();
        m.insert(format!("master/tasks_{name}"), (live + done) as f64);
    }
    for r in ["cpus", "mem", "disk", "gpus"] {
        let t = total.get_scalar(r).map_or(0.0, |s| s.as_f64());
        let u = used.get_scalar(r).map_or(0.0, |s| s.as_f64());
        m.insert(format!("master/{r}_total"), t);
        m.insert(format!("master/{r}_used"), u);
        m.insert(
            format!("master/{r}_percent"),
            if t > 0.0 { u / t } else { 0.0 },
        );
    }
    for (k, v) in &core.counters {
        m.insert((*k).to_string(), *v as f64);
    }
    m.insert("allocator/event_queue_dispatches".into(), 0.0);
    m.extend(core.allocator.metrics());
    m
}

/// Prometheus text of a snapshot: `master/tasks_running` → `basalt_master_tasks_running`.
pub fn prometheus(snapshot: &BTreeMap<String, f64>) -> String {
    let mut out = String::new();
    for (k, v) in snapshot {
        let name: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let name = if let Some(rest) = name.strip_prefix("master_") {
            format!("basalt_master_{rest}")
        } else {
            format!("basalt_master_{name}")
        };
        out.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
    }
    out
}

/// v1 `Task` (operator API form).
pub(crate) fn v1_task(t: &TaskRecord) -> Json {
    let mut m = Map::new();
    m.insert("name".into(), json!(t.task.name));
    m.insert("task_id".into(), json!(t.task.task_id));
    m.insert("framework_id".into(), json!(t.framework_id));
    if let Some(e) = t.executor() {
        m.insert("executor_id".into(), json!(e.executor_id));
    }
    m.insert("agent_id".into(), json!(t.agent_id));
    m.insert("state".into(), json!(t.state));
    m.insert("resources".into(), json!(t.task.resources));
    m.insert("statuses".into(), json!(t.statuses));
    if let Some(p) = t.pending.first() {
        m.insert("status_update_state".into(), json!(p.status.state));
        m.insert("status_update_uuid".into(), json!(p.status.uuid));
    }
    for (k, v) in [
        ("labels", t.task.labels.as_ref().map(|l| json!(l))),
        ("discovery", t.task.discovery.as_ref().map(|d| json!(d))),
        ("container", t.task.container.as_ref().map(|c| json!(c))),
        (
            "health_check",
            t.task.health_check.as_ref().map(|h| json!(h)),
        ),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    Json::Object(m)
}

fn nanos(secs: f64) -> Json {
    json!({"nanoseconds": (secs * 1e9) as i64})
}

fn v1_tasks(core: &Core) -> Json {
    let live = core.tasks.values().map(|t| &*t.record);
    json!({
        "tasks": live.clone().filter(|t| !t.state.is_terminal() && t.state != TaskState::Unreachable).map(v1_task).collect::<Vec<_>>(),
        "unreachable_tasks": live.clone().filter(|t| t.state == TaskState::Unreachable).map(v1_task).collect::<Vec<_>>(),
        "completed_tasks": live.filter(|t| t.state.is_terminal()).chain(core.completed_tasks.iter()).map(v1_task).collect::<Vec<_>>(),
    })
}

/// v1 `Response.GetFrameworks.Framework`.
pub(crate) fn v1_framework(f: &Framework) -> Json {
    let mut m = Map::new();
    m.insert("framework_info".into(), json!(f.record.info));
    m.insert("active".into(), json!(f.conn.is_some()));
    m.insert("connected".into(), json!(f.conn.is_some()));
    m.insert("recovered".into(), json!(f.recovered));
    m.insert("registered_time".into(), nanos(f.record.registered_time));
    if let Some(t) = f.record.reregistered_time {
        m.insert("reregistered_time".into(), nanos(t));
    }
    Json::Object(m)
}

fn v1_frameworks(core: &Core) -> Json {
    json!({
        "frameworks": core.frameworks.values().map(v1_framework).collect::<Vec<_>>(),
        "completed_frameworks": core.completed_frameworks.iter().map(|(r, _)| json!({
            "framework_info": r.info, "active": false, "connected": false, "recovered": false,
            "registered_time": nanos(r.registered_time),
        })).collect::<Vec<_>>(),
    })
}

/// v1 `Response.GetAgents.Agent`.
pub(crate) fn v1_agent(core: &Core, a: &Agent) -> Json {
    let (used, offered) = agent_used(core, a);
    let info = &a.record.info;
    let mut m = Map::new();
    m.insert("agent_info".into(), json!(info));
    m.insert("active".into(), json!(a.active()));
    m.insert("deactivated".into(), json!(!a.active()));
    m.insert("version".into(), json!(MESOS_VERSION));
    m.insert(
        "pid".into(),
        json!(format!("slave(1)@{}:{}", info.hostname, info.port())),
    );
    m.insert("registered_time".into(), nanos(a.record.registered_time));
    if let Some(t) = a.record.reregistered_time {
        m.insert("reregistered_time".into(), nanos(t));
    }
    m.insert("total_resources".into(), json!(info.resources));
    m.insert("allocated_resources".into(), json!(used));
    m.insert("offered_resources".into(), json!(offered));
    Json::Object(m)
}

fn v1_agents(core: &Core) -> Json {
    json!({
        "agents": core.agents.values().filter(|a| !a.recovered && a.reachable()).map(|a| v1_agent(core, a)).collect::<Vec<_>>(),
        "recovered_agents": core.agents.values().filter(|a| a.recovered).map(|a| json!(a.record.info)).collect::<Vec<_>>(),
    })
}

/// v1 `Response.GetState` (the body of GET_STATE and of the SUBSCRIBED event).
pub fn v1_state(core: &Core) -> Json {
    json!({
        "get_tasks": v1_tasks(core),
        "get_executors": {"executors": [], "orphan_executors": []},
        "get_frameworks": v1_frameworks(core),
        "get_agents": v1_agents(core),
    })
}

/// The operator API calls this master answers (`POST /api/v1`).
pub const OPERATOR_CALLS: &[&str] = &[
    "GET_HEALTH",
    "GET_VERSION",
    "GET_STATE",
    "GET_AGENTS",
    "GET_FRAMEWORKS",
    "GET_TASKS",
    "GET_ROLES",
    "GET_MASTER",
    "GET_METRICS",
    "MARK_AGENT_GONE",
    "SUBSCRIBE",
];

/// Answers a read-only v1 operator call (`{"type":"GET_STATE"}` →
/// `{"type":"GET_STATE","get_state":{...}}`); `Err` names an unsupported type.
pub fn operator(shared: &Shared, core: &Core, kind: &str) -> Result<Json, String> {
    let body = match kind {
        "GET_HEALTH" => json!({"healthy": true}),
        "GET_VERSION" => json!({"version_info": version()}),
        "GET_STATE" => v1_state(core),
        "GET_AGENTS" => v1_agents(core),
        "GET_FRAMEWORKS" => v1_frameworks(core),
        "GET_TASKS" => v1_tasks(core),
        "GET_ROLES" => {
            let r = roles(shared, core, &Q::new());
            json!({"roles": r["roles"].as_array().cloned().unwrap_or_default().into_iter().map(|mut x| {
                x["resources"] = json!([]);
                x
            }).collect::<Vec<_>>()})
        }
        "GET_MASTER" => json!({
            "master_info": core.master_info(),
            "start_time": shared.start_time,
            "elected_time": core.elected_time,
        }),
        "GET_METRICS" => json!({
            "metrics": metrics(shared, Some(core)).into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        }),
        other => {
            return Err(format!(
                "operator call {other:?} is not supported by this master (supported: {})",
                OPERATOR_CALLS.join(", ")
            ));
        }
    };
    Ok(json!({"type": kind, kind.to_ascii_lowercase(): body}))
}
