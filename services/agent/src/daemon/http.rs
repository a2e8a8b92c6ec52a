//! The agent's HTTP API on `--port` (5051): `/state` (also `/state.json`,
//! `/slave(1)/state`, `/slave(1)/state.json`) in the Mesos agent state shape,
//! `/metrics/snapshot`, `/health`, and the files API (`/files/browse`, `/files/read`,
//! `/files/download`, also with `.json`) limited to the sandboxes under
//! `<work_dir>/slaves`: a path with `..` or outside that directory is refused with `403`,
//! a missing one is `404`; both name the path.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json as AxJson, Response};
use axum::routing::get;
use basalt_mesos::TaskState;
use serde_json::{Map, Value as Json, json};

use super::{Inner, TaskEntry, lock};

type Shared = Arc<Inner>;

/// Mesos' default `/files/read` page (16 pages of 4 KiB).
const DEFAULT_READ_LENGTH: u64 = 16 * 4096;

pub(super) fn router(inner: Shared) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/state.json", get(state))
        .route("/slave(1)/state", get(state))
        .route("/slave(1)/state.json", get(state))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/metrics/snapshot", get(metrics))
        .route("/files/browse", get(browse))
        .route("/files/browse.json", get(browse))
        .route("/files/read", get(read))
        .route("/files/read.json", get(read))
        .route("/files/download", get(download))
        .route("/files/download.json", get(download))
        .with_state(inner)
}

fn task_json(t: &TaskEntry) -> Json {
    let statuses: Vec<Json> = t
        .statuses
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("state".into(), json!(s.state));
            m.insert("timestamp".into(), json!(s.timestamp.unwrap_or(0.0)));
            if let Some(c) = &s.container_status {
                m.insert("container_status".into(), json!(c));
            }
            Json::Object(m)
        })
        .collect();
    json!({
        "id": t.task.task_id.as_str(),
        "name": t.task.name,
        "framework_id": t.framework_id.as_str(),
        "executor_id": "",
        "slave_id": t.task.agent_id.as_str(),
        "state": t.status.state,
        "resources": Json::Object(t.task.resource_set().to_state_model()),
        "statuses": statuses,
        "labels": t.task.labels.as_ref().map(|l| json!(l.labels)).unwrap_or(json!([])),
        "discovery": t.task.discovery,
        "container": t.task.container,
    })
}

fn executor_json(agent_id: &str, tasks: &[&TaskEntry], completed: bool) -> Json {
    let Some(first) = tasks.first() else {
        return json!({});
    };
    let (running, done): (Vec<&&TaskEntry>, Vec<&&TaskEntry>) =
        tasks.iter().partition(|t| !t.status.state.is_terminal());
    // A task group's executor sandbox holds `tasks/<task_id>`.
    let group = first.group.is_some();
    let directory = first
        .sandbox
        .as_deref()
        .map(|p| {
            if group {
                p.parent().and_then(Path::parent).unwrap_or(p)
            } else {
                p
            }
        })
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let resources = first.task.resource_set();
    let name = if group {
        "Default Executor".to_string()
    } else {
        format!(
            "Command Executor (Task: {}) (Command: sh -c '...')",
            first.task.task_id.as_str()
        )
    };
    json!({
        "id": first.executor_id.as_str(),
        "name": name,
        "type": if group { "DEFAULT" } else { "COMMAND" },
        "source": first.task.task_id.as_str(),
        "framework_id": first.framework_id.as_str(),
        "slave_id": agent_id,
        "container": first.container_id.as_ref().map(|c| c.value.clone()).unwrap_or_default(),
        "directory": directory,
        "resources": Json::Object(resources.to_state_model()),
        "tasks": if completed { vec![] } else { running.iter().map(|t| task_json(t)).collect::<Vec<_>>() },
        "queued_tasks": [],
        "completed_tasks": done.iter().map(|t| task_json(t)).collect::<Vec<_>>(),
    })
}

async fn state(State(inner): State<Shared>) -> AxJson<Json> {
    let s = lock(&inner.state);
    let agent_id = s
        .agent_id
        .as_ref()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    // framework → executor → tasks (live and acknowledged-terminal).
    let mut by_fw: BTreeMap<String, BTreeMap<String, Vec<&TaskEntry>>> = BTreeMap::new();
    let mut completed_by_fw: BTreeMap<String, BTreeMap<String, Vec<&TaskEntry>>> = BTreeMap::new();
    for t in s.tasks.values() {
        by_fw
            .entry(t.framework_id.as_str().to_string())
            .or_default()
            .entry(t.executor_id.as_str().to_string())
            .or_default()
            .push(t);
    }
    for t in &s.completed {
        completed_by_fw
            .entry(t.framework_id.as_str().to_string())
            .or_default()
            .entry(t.executor_id.as_str().to_string())
            .or_default()
            .push(t);
    }
    let fw_json = |id: &str,
                   live: Option<&BTreeMap<String, Vec<&TaskEntry>>>,
                   done: Option<&BTreeMap<String, Vec<&TaskEntry>>>| {
        let info = s
            .frameworks
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, f)| f);
        json!({
            "id": id,
            "name": info.map(|f| f.name.clone()).unwrap_or_default(),
            "user": info.map(|f| f.user.clone()).unwrap_or_default(),
            "role": info.and_then(|f| f.role.clone()).unwrap_or_else(|| "*".into()),
            "hostname": info.and_then(|f| f.hostname.clone()).unwrap_or_default(),
            "checkpoint": info.and_then(|f| f.checkpoint).unwrap_or(false),
            "executors": live.map(|m| m.values().map(|ts| executor_json(&agent_id, ts, false)).collect::<Vec<_>>()).unwrap_or_default(),
            "completed_executors": done.map(|m| m.values().map(|ts| executor_json(&agent_id, ts, true)).collect::<Vec<_>>()).unwrap_or_default(),
        })
    };
    let frameworks: Vec<Json> = by_fw
        .iter()
        .map(|(id, ex)| fw_json(id, Some(ex), completed_by_fw.get(id)))
        .collect();
    let completed_frameworks: Vec<Json> = completed_by_fw
        .iter()
        .filter(|(id, _)| !by_fw.contains_key(*id))
        .map(|(id, ex)| fw_json(id, None, Some(ex)))
        .collect();
    let master_hostname = s
        .master
        .as_deref()
        .map(|m| {
            let hp = m
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            hp.rsplit_once(':').map_or(hp, |(h, _)| h).to_string()
        })
        .unwrap_or_default();
    let res = Json::Object(s.resources.to_state_model());
    AxJson(json!({
        "version": "1.11.0",
        "build_version": env!("CARGO_PKG_VERSION"),
        "id": agent_id,
        "pid": format!("slave(1)@{}", inner.endpoint),
        "hostname": inner.cfg.hostname,
        "capabilities": ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT"],
        "start_time": inner.start_time,
        "resources": res,
        "unreserved_resources": Json::Object(s.resources.clone().unallocate().to_state_model()),
        "reserved_resources_full": {},
        "attributes": Json::Object(s.attributes.to_state_model()),
        "master_hostname": master_hostname,
        "flags": {
            "work_dir": inner.cfg.work_dir.display().to_string(),
            "hostname": inner.cfg.hostname,
            "port": inner.http_address.port().to_string(),
        },
        "frameworks": frameworks,
        "completed_frameworks": completed_frameworks,
    }))
}

async fn metrics(State(inner): State<Shared>) -> AxJson<Json> {
    let s = lock(&inner.state);
    let count = |st: TaskState| s.tasks.values().filter(|t| t.status.state == st).count() as f64;
    let terminal = |st: TaskState| s.terminal_counts.get(&st).copied().unwrap_or(0) as f64;
    let mut used_cpus = 0.0;
    let mut used_mem = 0.0;
    for t in s.tasks.values().filter(|t| !t.status.state.is_terminal()) {
        let r = t.task.resource_set();
        used_cpus += r.cpus().map_or(0.0, |c| c.as_f64());
        used_mem += r.mem().map_or(0.0, |c| c.as_f64());
    }
    let total_cpus = s.resources.cpus().map_or(0.0, |c| c.as_f64());
    let total_mem = s.resources.mem().map_or(0.0, |c| c.as_f64());
    let total_disk = s.resources.get_scalar("disk").map_or(0.0, |c| c.as_f64());
    let executors = s
        .tasks
        .values()
        .filter(|t| !t.status.state.is_terminal())
        .count() as f64;
    AxJson(json!({
        "slave/registered": if s.stream_id.is_some() && s.registrations > 0 { 1.0 } else { 0.0 },
        "slave/uptime_secs": super::now_secs() - inner.start_time,
        "slave/tasks_staging": count(TaskState::Staging),
        "slave/tasks_starting": count(TaskState::Starting),
        "slave/tasks_running": count(TaskState::Running),
        "slave/tasks_killing": count(TaskState::Killing),
        "slave/tasks_finished": terminal(TaskState::Finished),
        "slave/tasks_failed": terminal(TaskState::Failed),
        "slave/tasks_killed": terminal(TaskState::Killed),
        "slave/tasks_lost": terminal(TaskState::Lost),
        "slave/tasks_error": terminal(TaskState::Error),
        "slave/executors_running": executors,
        "slave/frameworks_active": s.frameworks.len() as f64,
        "slave/cpus_total": total_cpus,
        "slave/cpus_used": used_cpus,
        "slave/cpus_percent": if total_cpus > 0.0 { used_cpus / total_cpus } else { 0.0 },
        "slave/mem_total": total_mem,
        "slave/mem_used": used_mem,
        "slave/mem_percent": if total_mem > 0.0 { used_mem / total_mem } else { 0.0 },
        "slave/disk_total": total_disk,
        "slave/valid_status_updates": s.updates_sent as f64,
        "slave/status_updates_pending": s.pending.len() as f64,
        "containerizer/mesos/container_destroy_errors": 0.0,
    }))
}

/// A refused or failed files request.
fn err(code: StatusCode, msg: String) -> Response {
    (code, msg).into_response()
}

/// Resolves `path` to a file or directory under `<work_dir>/slaves`.
fn resolve(inner: &Inner, path: Option<&str>) -> Result<PathBuf, (StatusCode, String)> {
    let Some(raw) = path.filter(|p| !p.is_empty()) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "Expecting 'path=value' in query".into(),
        ));
    };
    let p = Path::new(raw);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("path '{raw}' is not an absolute path inside a sandbox"),
        ));
    }
    let root = inner.cfg.work_dir.join("slaves");
    let root = root.canonicalize().unwrap_or(root);
    let real = match p.canonicalize() {
        Ok(r) => r,
        Err(_) if !p.starts_with(&root) && !p.starts_with(&inner.cfg.work_dir) => {
            return Err((
                StatusCode::FORBIDDEN,
                format!("path '{raw}' is outside the agent's sandboxes"),
            ));
        }
        Err(_) => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("path '{raw}' does not exist"),
            ));
        }
    };
    if !real.starts_with(&root) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("path '{raw}' is outside the agent's sandboxes"),
        ));
    }
    Ok(real)
}

#[derive(Debug, serde::Deserialize)]
struct FileQuery {
    path: Option<String>,
    offset: Option<i64>,
    length: Option<i64>,
}

fn mode_string(mode: u32, is_dir: bool) -> String {
    let mut s = String::with_capacity(10);
    s.push(if is_dir { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn entry_json(path: &Path, md: &std::fs::Metadata) -> Json {
    let user = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name)
    };
    let group = |gid: u32| {
        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map_or_else(|| gid.to_string(), |g| g.name)
    };
    json!({
        "path": path.display().to_string(),
        "nlink": md.nlink(),
        "size": md.len(),
        "mtime": md.mtime(),
        "mode": mode_string(md.permissions().mode(), md.is_dir()),
        "uid": user(md.uid()),
        "gid": group(md.gid()),
    })
}

async fn browse(State(inner): State<Shared>, Query(q): Query<FileQuery>) -> Response {
    let dir = match resolve(&inner, q.path.as_deref()) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("cannot browse '{}': {e}", dir.display()),
            );
        }
    };
    let mut out: Vec<Json> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            Some(entry_json(&e.path(), &md))
        })
        .collect();
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    AxJson(Json::Array(out)).into_response()
}

async fn read(State(inner): State<Shared>, Query(q): Query<FileQuery>) -> Response {
    let path = match resolve(&inner, q.path.as_deref()) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let offset = q.offset.unwrap_or(0);
    if offset < -1 {
        return err(
            StatusCode::BAD_REQUEST,
            format!("Negative offset provided: {offset}"),
        );
    }
    if q.length.is_some_and(|l| l < -1) {
        return err(
            StatusCode::BAD_REQUEST,
            format!("Negative length provided: {:?}", q.length),
        );
    }
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            return err(
                StatusCode::NOT_FOUND,
                format!("cannot open '{}': {e}", path.display()),
            );
        }
    };
    let size = match f.metadata() {
        Ok(md) if md.is_dir() => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("cannot read '{}': it is a directory", path.display()),
            );
        }
        Ok(md) => md.len(),
        Err(e) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot stat '{}': {e}", path.display()),
            );
        }
    };
    // Mesos' files API: offset -1 (or past the end) gives the size and no data; a
    // missing or -1 length reads to the end; reads are capped at 16 pages.
    if offset == -1 {
        return AxJson(json!({"data": "", "offset": size})).into_response();
    }
    let offset = u64::try_from(offset).unwrap_or(0);
    if offset >= size {
        return AxJson(json!({"data": "", "offset": size})).into_response();
    }
    let length = match q.length {
        Some(l) if l >= 0 => u64::try_from(l).unwrap_or(0),
        _ => size - offset,
    }
    .min(DEFAULT_READ_LENGTH);
    let mut buf = Vec::new();
    let res = f
        .seek(SeekFrom::Start(offset))
        .and_then(|_| f.take(length).read_to_end(&mut buf));
    if let Err(e) = res {
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read '{}': {e}", path.display()),
        );
    }
    AxJson(json!({"data": String::from_utf8_lossy(&buf), "offset": offset})).into_response()
}

async fn download(State(inner): State<Shared>, Query(q): Query<FileQuery>) -> Response {
    let path = match resolve(&inner, q.path.as_deref()) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if path.is_dir() {
        return err(
            StatusCode::BAD_REQUEST,
            format!("cannot download '{}': it is a directory", path.display()),
        );
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => err(
            StatusCode::NOT_FOUND,
            format!("cannot read '{}': {e}", path.display()),
        ),
    }
}
