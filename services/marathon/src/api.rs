//! The REST v2 API (axum), Marathon's paths, query parameters and JSON shapes.
//! Followers proxy every call except `/ping`, `/metrics` and `/v2/leader` to the
//! leader (Marathon proxies rather than redirects).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::app::AppDefinition;
use crate::core::{Change, Core};
use crate::error::ApiError;
use crate::state::Instance;

/// What the API needs besides the core.
#[derive(Clone)]
pub struct ApiState {
    /// The core.
    pub core: Core,
    /// This instance's advertised `host:port`.
    pub address: String,
    /// The current leader's address (`None`: no leader).
    pub leader: watch::Receiver<Option<String>>,
    /// The framework id, once subscribed.
    pub framework_id: watch::Receiver<Option<String>>,
    /// Master URL (for `/v2/info`).
    pub master: String,
    /// HTTP client for proxying.
    pub client: reqwest::Client,
    /// Request counter (`/metrics`).
    pub requests: Arc<AtomicU64>,
}

impl ApiState {
    fn is_leader(&self) -> bool {
        self.leader.borrow().as_deref() == Some(self.address.as_str())
    }
}

type Q = Query<Vec<(String, String)>>;

fn flag(q: &[(String, String)], name: &str, default: bool) -> bool {
    q.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.eq_ignore_ascii_case("true") || v.is_empty())
        .unwrap_or(default)
}

fn values<'a>(q: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    q.iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect()
}

fn json_body(bytes: &Bytes) -> Result<Json, ApiError> {
    serde_json::from_slice(bytes).map_err(ApiError::invalid_json)
}

fn deployment_response(status: StatusCode, change: &Change) -> Response {
    let mut r = (status, axum::Json(change.to_json())).into_response();
    if let Ok(v) = HeaderValue::from_str(&change.deployment_id) {
        r.headers_mut().insert("Marathon-Deployment-Id", v);
    }
    r
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/metrics", get(metrics))
        .route("/v2/leader", get(leader))
        .route("/v2/info", get(info))
        .route("/v2/apps", get(list_apps).post(create_app))
        .route(
            "/v2/apps/{*rest}",
            get(app_get)
                .put(app_put)
                .patch(app_patch)
                .delete(app_delete)
                .post(app_post),
        )
        .route(
            "/v2/groups",
            get(groups_get)
                .post(groups_post)
                .put(groups_put)
                .delete(groups_delete),
        )
        .route(
            "/v2/groups/{*rest}",
            get(groups_get_id)
                .put(groups_put_id)
                .post(groups_post_id)
                .delete(groups_delete_id),
        )
        .route(
            "/v2/pods",
            get(pods_list)
                .post(pods_post)
                .head(|| async { StatusCode::OK }),
        )
        .route(
            "/v2/pods/{*rest}",
            get(pods_get).put(pods_put).delete(pods_delete),
        )
        .route("/v2/deployments", get(list_deployments))
        .route(
            "/v2/deployments/{id}",
            axum::routing::delete(delete_deployment),
        )
        .route("/v2/tasks", get(list_tasks))
        .route("/v2/tasks/delete", post(delete_tasks))
        .route("/v2/queue", get(queue))
        .route("/v2/events", get(events))
        .layer(middleware::from_fn_with_state(state.clone(), leader_gate))
        .with_state(state)
}

async fn leader_gate(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    if s.is_leader() || matches!(path.as_str(), "/ping" | "/metrics" | "/v2/leader") {
        return next.run(req).await;
    }
    let leader = s.leader.borrow().clone();
    let Some(leader) = leader else {
        return ApiError::unavailable("Could not determine the current leader").into_response();
    };
    if req.headers().contains_key("X-Marathon-Via") {
        return ApiError::unavailable("Leader proxy loop detected").into_response();
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or(path);
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return ApiError::invalid_json(e).into_response(),
    };
    let url = format!("http://{leader}{pq}");
    let mut rb = s
        .client
        .request(method, &url)
        .header("X-Marathon-Via", s.address.clone())
        .body(body);
    for (k, v) in &headers {
        if k != header::HOST && k != header::CONTENT_LENGTH {
            rb = rb.header(k, v);
        }
    }
    match rb.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = Response::builder().status(status.as_u16());
            for (k, v) in resp.headers() {
                if k != header::TRANSFER_ENCODING && k != header::CONTENT_LENGTH {
                    out = out.header(k, v);
                }
            }
            let stream = resp.bytes_stream();
            out.body(axum::body::Body::from_stream(stream))
                .unwrap_or_else(|_| ApiError::unavailable("proxy").into_response())
        }
        Err(e) => {
            tracing::warn!(%leader, error = %e, "proxying to the leader failed");
            ApiError::unavailable(format!("Leader {leader} is not reachable")).into_response()
        }
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let apps = s.core.apps().await.map(|a| a.len()).unwrap_or(0);
    let deployments = s
        .core
        .repo()
        .deployments()
        .await
        .map(|d| d.len())
        .unwrap_or(0);
    axum::Json(json!({
        "version": "4.0.0",
        "gauges": {
            "marathon.apps.active.gauge": {"value": apps},
            "marathon.deployments.active.gauge": {"value": deployments},
        },
        "counters": {"marathon.http.requests.total": {"count": s.requests.load(Ordering::Relaxed)}},
    }))
    .into_response()
}

async fn leader(State(s): State<ApiState>) -> Response {
    match s.leader.borrow().clone() {
        Some(l) => axum::Json(json!({"leader": l})).into_response(),
        None => ApiError::message(StatusCode::NOT_FOUND, "There is no leader").into_response(),
    }
}

async fn info(State(s): State<ApiState>) -> Response {
    let leader = s.leader.borrow().clone();
    let fid = s.framework_id.borrow().clone();
    axum::Json(json!({
        "name": "marathon",
        "version": "1.10.0-basalt",
        "buildref": env!("CARGO_PKG_VERSION"),
        "elected": s.is_leader(),
        "leader": leader,
        "frameworkId": fid,
        "marathon_config": {
            "master": s.master,
            "mesos_role": "*",
            "local_port_min": 10000,
            "local_port_max": 20000,
            "failover_timeout": 604800,
            "framework_name": "marathon",
            "executor": "//cmd",
            "hostname": s.address,
        },
        "zookeeper_config": {"zk": null},
        "http_config": {"http_port": s.address.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()), "https_port": null},
        "event_subscriber": null,
    }))
    .into_response()
}

/// The `embed` set, with `app.`/`apps.`/`group.apps.` prefixes removed.
fn embeds(q: &[(String, String)]) -> Vec<String> {
    values(q, "embed")
        .into_iter()
        .map(|e| {
            e.trim_start_matches("group.apps.")
                .trim_start_matches("apps.")
                .trim_start_matches("app.")
                .to_string()
        })
        .collect()
}

/// AppInfo: the app plus counts, deployments and the embedded extras.
fn app_info(
    app: &AppDefinition,
    instances: &[&Instance],
    deployments: &[String],
    embed: &[String],
    last_failure: Option<Json>,
    readiness: &Core,
) -> Json {
    let mut v = app.to_json();
    if let Some(o) = v.as_object_mut() {
        o.extend(app_info_extras(
            app,
            instances,
            deployments,
            embed,
            last_failure,
            readiness,
        ));
    }
    v
}

/// What AppInfo adds to the app definition: counts, deployments, embeds.
fn app_info_extras(
    app: &AppDefinition,
    instances: &[&Instance],
    deployments: &[String],
    embed: &[String],
    last_failure: Option<Json>,
    readiness: &Core,
) -> serde_json::Map<String, Json> {
    let checks = !app.health_checks.is_empty();
    let live: Vec<&&Instance> = instances.iter().filter(|i| !i.is_terminal()).collect();
    let staged = live
        .iter()
        .filter(|i| matches!(i.state.as_str(), "TASK_STAGING" | "TASK_STARTING"))
        .count();
    let running = live.iter().filter(|i| i.state == "TASK_RUNNING").count();
    let healthy = if checks {
        live.iter().filter(|i| i.healthy == Some(true)).count()
    } else {
        0
    };
    let unhealthy = live.iter().filter(|i| i.healthy == Some(false)).count();
    let mut o = serde_json::Map::new();
    o.insert("tasksStaged".into(), json!(staged));
    o.insert("tasksRunning".into(), json!(running));
    o.insert("tasksHealthy".into(), json!(healthy));
    o.insert("tasksUnhealthy".into(), json!(unhealthy));
    o.insert(
        "deployments".into(),
        json!(
            deployments
                .iter()
                .map(|d| json!({"id": d}))
                .collect::<Vec<_>>()
        ),
    );
    if embed.iter().any(|e| e == "tasks") {
        o.insert(
            "tasks".into(),
            json!(live.iter().map(|i| i.to_task_json()).collect::<Vec<_>>()),
        );
    }
    if embed.iter().any(|e| e == "lastTaskFailure")
        && let Some(f) = last_failure
    {
        o.insert("lastTaskFailure".into(), f);
    }
    if embed.iter().any(|e| e == "readiness") {
        o.insert(
            "readinessCheckResults".into(),
            json!(readiness.readiness_results(&app.id)),
        );
    }
    o
}

/// `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` — all must hold.
fn label_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .all(|p| {
            let set = |s: &str| -> Vec<String> {
                s.trim()
                    .trim_start_matches('(')
                    .trim_end_matches(')')
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .collect()
            };
            if let Some((k, v)) = p.split_once("==") {
                labels.get(k.trim()).is_some_and(|l| l == v.trim())
            } else if let Some((k, v)) = p.split_once("!=") {
                labels.get(k.trim()).is_none_or(|l| l != v.trim())
            } else if let Some((k, v)) = p.split_once(" notin ") {
                labels.get(k.trim()).is_none_or(|l| !set(v).contains(l))
            } else if let Some((k, v)) = p.split_once(" in ") {
                labels.get(k.trim()).is_some_and(|l| set(v).contains(l))
            } else {
                labels.contains_key(p)
            }
        })
}

async fn list_apps(State(s): State<ApiState>, Query(q): Q) -> Result<Response, ApiError> {
    let apps = s.core.apps().await?;
    let instances = s.core.repo().instances().await?;
    let deployments = s.core.repo().deployments().await?;
    let embed = embeds(&q);
    let id_filter = values(&q, "id");
    let cmd_filter = values(&q, "cmd");
    let label = q.iter().find(|(k, _)| k == "label").map(|(_, v)| v.clone());
    let mut by_app: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for i in &instances {
        by_app.entry(i.app_id.as_str()).or_default().push(i);
    }
    let mut deps_by_app: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in deployments.iter() {
        for a in &d.affected_apps {
            deps_by_app
                .entry(a.as_str())
                .or_default()
                .push(d.id.clone());
        }
    }
    // The body is assembled from each app's serialized definition, cached per app
    // version, plus the per-request fields: no per-request re-serialization of 10,000
    // definitions.
    let mut out = String::with_capacity(apps.len() * 1024 + 16);
    out.push_str("{\"apps\":[");
    let mut first = true;
    for app in apps.values() {
        if !id_filter.is_empty() && !id_filter.iter().any(|f| app.id.contains(f)) {
            continue;
        }
        if !cmd_filter.is_empty()
            && !cmd_filter
                .iter()
                .any(|f| app.cmd.as_deref().is_some_and(|c| c.contains(f)))
        {
            continue;
        }
        if let Some(sel) = &label
            && !label_matches(sel, &app.labels)
        {
            continue;
        }
        let extras = app_info_extras(
            app,
            by_app
                .get(app.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            deps_by_app
                .get(app.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            &embed,
            s.core.last_failure(&app.id),
            &s.core,
        );
        if !first {
            out.push(',');
        }
        first = false;
        let def = s.core.app_json_open(app);
        out.push_str(&def);
        for (k, v) in extras {
            out.push(',');
            out.push_str(&Json::String(k).to_string());
            out.push(':');
            out.push_str(&v.to_string());
        }
        out.push('}');
    }
    out.push_str("]}");
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response())
}

fn client_ip(ci: &ConnectInfo<std::net::SocketAddr>) -> String {
    ci.0.ip().to_string()
}

async fn create_app(
    State(s): State<ApiState>,
    ci: ConnectInfo<std::net::SocketAddr>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let (app, change) = s
        .core
        .create_app(&body, flag(&q, "force", false), &client_ip(&ci))
        .await?;
    let info = app_info(
        &app,
        &[],
        std::slice::from_ref(&change.deployment_id),
        &[],
        None,
        &s.core,
    );
    let mut r = (StatusCode::CREATED, axum::Json(info)).into_response();
    if let Ok(v) = HeaderValue::from_str(&app.id) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&change.deployment_id) {
        r.headers_mut().insert("Marathon-Deployment-Id", v);
    }
    Ok(r)
}

/// What an `/v2/apps/{*rest}` path addresses.
enum AppPath {
    App(String),
    Group(String),
    Restart(String),
    Tasks(String),
    Task(String, String),
    Versions(String),
    Version(String, String),
}

fn parse_app_path(rest: &str) -> AppPath {
    let rest = format!("/{}", rest.trim_matches('/'));
    if let Some(g) = rest.strip_suffix("/*") {
        return AppPath::Group(g.to_string());
    }
    if let Some(a) = rest.strip_suffix("/restart") {
        return AppPath::Restart(a.to_string());
    }
    if let Some(a) = rest.strip_suffix("/tasks") {
        return AppPath::Tasks(a.to_string());
    }
    if let Some(a) = rest.strip_suffix("/versions") {
        return AppPath::Versions(a.to_string());
    }
    if let Some((a, t)) = rest.rsplit_once('/')
        && let Some(app) = a.strip_suffix("/tasks")
    {
        return AppPath::Task(app.to_string(), t.to_string());
    }
    if let Some((a, v)) = rest.rsplit_once('/')
        && let Some(app) = a.strip_suffix("/versions")
    {
        return AppPath::Version(app.to_string(), v.to_string());
    }
    AppPath::App(rest)
}

async fn one_app_info(s: &ApiState, id: &str, embed: &[String]) -> Result<Json, ApiError> {
    let Some(app) = s.core.repo().app(id).await? else {
        return Err(ApiError::unknown_app(id));
    };
    let instances = s.core.repo().instances().await?;
    let mine: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.app_id == id)
        .map(|i| &**i)
        .collect();
    let deps: Vec<String> = s
        .core
        .repo()
        .deployments()
        .await?
        .iter()
        .filter(|d| d.affected_apps.iter().any(|a| a == id))
        .map(|d| d.id.clone())
        .collect();
    let mut embed = embed.to_vec();
    embed.extend(["tasks".to_string(), "lastTaskFailure".to_string()]);
    Ok(app_info(
        &app.value,
        &mine,
        &deps,
        &embed,
        s.core.last_failure(id),
        &s.core,
    ))
}

async fn app_get(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    match parse_app_path(&rest) {
        AppPath::App(id) => {
            let info = one_app_info(&s, &id, &embeds(&q)).await?;
            Ok(axum::Json(json!({"app": info})).into_response())
        }
        AppPath::Group(g) => {
            let apps = s.core.apps().await?;
            let mut out = Vec::new();
            for id in apps
                .keys()
                .filter(|k| k.starts_with(&format!("{}/", g.trim_end_matches('/'))))
            {
                out.push(one_app_info(&s, id, &embeds(&q)).await?);
            }
            Ok(axum::Json(json!({"*": out})).into_response())
        }
        AppPath::Tasks(id) => {
            if s.core.repo().app(&id).await?.is_none() {
                return Err(ApiError::unknown_app(&id));
            }
            let tasks: Vec<Json> = s
                .core
                .repo()
                .instances()
                .await?
                .into_iter()
                .filter(|i| i.app_id == id && !i.is_terminal())
                .map(|i| i.to_task_json())
                .collect();
            Ok(axum::Json(json!({"tasks": tasks})).into_response())
        }
        AppPath::Versions(id) => {
            if s.core.repo().app(&id).await?.is_none() {
                return Err(ApiError::unknown_app(&id));
            }
            let mut v = s.core.repo().versions(&id).await?;
            v.reverse();
            Ok(axum::Json(json!({"versions": v})).into_response())
        }
        AppPath::Version(id, v) => match s.core.repo().version(&id, &v).await? {
            Some(app) => Ok(axum::Json(app.to_json()).into_response()),
            None => Err(ApiError::message(
                StatusCode::NOT_FOUND,
                format!("App '{id}' does not exist in version {v}"),
            )),
        },
        _ => Err(ApiError::message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        )),
    }
}

async fn app_update(
    s: ApiState,
    rest: String,
    q: Vec<(String, String)>,
    body: Bytes,
    ci: String,
    patch: bool,
) -> Result<Response, ApiError> {
    let AppPath::App(id) = parse_app_path(&rest) else {
        return Err(ApiError::message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        ));
    };
    let body = json_body(&body)?;
    let partial = patch || flag(&q, "partialUpdate", true);
    let (change, created) = s
        .core
        .update_app(&id, &body, flag(&q, "force", false), partial, &ci)
        .await?;
    if created {
        let mut r = deployment_response(StatusCode::CREATED, &change);
        if let Ok(v) = HeaderValue::from_str(&id) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(r);
    }
    Ok(deployment_response(StatusCode::OK, &change))
}

async fn app_put(
    State(s): State<ApiState>,
    ci: ConnectInfo<std::net::SocketAddr>,
    Path(rest): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    app_update(s, rest, q, body, client_ip(&ci), false).await
}

async fn app_patch(
    State(s): State<ApiState>,
    ci: ConnectInfo<std::net::SocketAddr>,
    Path(rest): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    app_update(s, rest, q, body, client_ip(&ci), true).await
}

async fn app_post(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    match parse_app_path(&rest) {
        AppPath::Restart(id) => {
            let change = s.core.restart_app(&id, flag(&q, "force", false)).await?;
            Ok(deployment_response(StatusCode::OK, &change))
        }
        _ => Err(ApiError::message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        )),
    }
}

async fn app_delete(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    match parse_app_path(&rest) {
        AppPath::App(id) => {
            // DELETE defaults to force=true in Marathon 1.4–1.10 (AppsResource.scala).
            let change = s.core.delete_app(&id, flag(&q, "force", true)).await?;
            Ok(deployment_response(StatusCode::OK, &change))
        }
        AppPath::Tasks(id) => {
            let host = q.iter().find(|(k, _)| k == "host").map(|(_, v)| v.clone());
            let ids: Vec<String> = s
                .core
                .repo()
                .instances()
                .await?
                .into_iter()
                .filter(|i| i.app_id == id && !i.is_terminal())
                .filter(|i| host.as_ref().is_none_or(|h| &i.host == h))
                .map(|i| i.task_id.clone())
                .collect();
            kill_response(&s, &ids, &q, false).await
        }
        AppPath::Task(id, task) => {
            let exists = s
                .core
                .repo()
                .instances()
                .await?
                .iter()
                .any(|i| i.app_id == id && i.task_id == task);
            if !exists {
                return Err(ApiError::message(
                    StatusCode::NOT_FOUND,
                    format!("Task '{task}' does not exist"),
                ));
            }
            kill_response(&s, &[task], &q, true).await
        }
        _ => Err(ApiError::message(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
        )),
    }
}

async fn kill_response(
    s: &ApiState,
    ids: &[String],
    q: &[(String, String)],
    single: bool,
) -> Result<Response, ApiError> {
    let scale = flag(q, "scale", false);
    let (killed, change) = s
        .core
        .kill_tasks(ids, scale, flag(q, "force", false))
        .await?;
    if let Some(c) = change {
        return Ok(deployment_response(StatusCode::OK, &c));
    }
    let tasks: Vec<Json> = killed.iter().map(Instance::to_task_json).collect();
    if single {
        Ok(axum::Json(json!({"task": tasks.first()})).into_response())
    } else {
        Ok(axum::Json(json!({"tasks": tasks})).into_response())
    }
}

async fn list_deployments(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let d: Vec<Json> = s
        .core
        .repo()
        .deployments()
        .await?
        .iter()
        .map(|d| {
            let mut j = d.to_json();
            if let Some(actions) = j["currentActions"].as_array_mut() {
                for a in actions {
                    let app = a["app"].as_str().unwrap_or("").to_string();
                    a["readinessCheckResults"] = json!(s.core.readiness_results(&app));
                }
            }
            j
        })
        .collect();
    Ok(axum::Json(Json::Array(d)).into_response())
}

async fn delete_deployment(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    match s
        .core
        .cancel_deployment(&id, flag(&q, "force", false))
        .await?
    {
        Some(change) => Ok(deployment_response(StatusCode::OK, &change)),
        None => Ok(StatusCode::ACCEPTED.into_response()),
    }
}

async fn list_tasks(State(s): State<ApiState>, Query(q): Q) -> Result<Response, ApiError> {
    let status: Vec<String> = values(&q, "status")
        .into_iter()
        .map(|v| format!("TASK_{}", v.to_ascii_uppercase()))
        .collect();
    let tasks: Vec<Json> = s
        .core
        .repo()
        .instances()
        .await?
        .into_iter()
        .filter(|i| !i.is_terminal())
        .filter(|i| status.is_empty() || status.contains(&i.state))
        .map(|i| i.to_task_json())
        .collect();
    Ok(axum::Json(json!({"tasks": tasks})).into_response())
}

async fn delete_tasks(
    State(s): State<ApiState>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let ids: Vec<String> = body
        .get("ids")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    kill_response(&s, &ids, &q, false).await
}

async fn queue(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let demand = s.core.launch_demand().await?;
    // Pods queue like apps (their launch demand is app-shaped), under "pod".
    let specs = s.core.specs().await?;
    let pods = s.core.pods().await?;
    let now = crate::time::now_millis();
    let mut out = Vec::new();
    for (id, count) in demand {
        let Some(app) = specs.get(&id) else { continue };
        let (key, spec) = match pods.get(&id) {
            Some(pod) => ("pod", pod.to_json()),
            None => ("app", app.to_json()),
        };
        let b = s.core.backoff(&id);
        let left = b.not_before_ms.saturating_sub(now) as f64 / 1000.0;
        out.push(json!({
            key: spec,
            "count": count,
            "delay": {"timeLeftSeconds": left.ceil() as u64, "overdue": left <= 0.0},
            "since": app.version,
            "processedOffersSummary": s.core.offer_stats(|st| st.summary(&id)),
            "role": app.role.clone().unwrap_or_else(|| "*".to_string()),
        }));
    }
    Ok(axum::Json(json!({"queue": out})).into_response())
}

async fn events(
    State(s): State<ApiState>,
    ci: ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    method: Method,
    Query(q): Q,
) -> Response {
    let accepts = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if method != Method::GET || !accepts {
        return ApiError::message(
            StatusCode::NOT_ACCEPTABLE,
            "Accept: text/event-stream is required",
        )
        .into_response();
    }
    let filter: Vec<String> = values(&q, "event_type")
        .into_iter()
        .map(str::to_string)
        .collect();
    let rx = s.core.events().subscribe();
    let attached = json!({"eventType": "event_stream_attached", "remoteAddress": client_ip(&ci), "timestamp": crate::time::now()});
    let first = futures::stream::iter([attached]);
    let rest = tokio_stream_from(rx);
    let stream = first
        .chain(rest)
        .filter(move |ev| {
            let t = ev
                .get("eventType")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            let keep = filter.is_empty() || filter.contains(&t);
            async move { keep }
        })
        .map(|ev| {
            let t = ev
                .get("eventType")
                .and_then(Json::as_str)
                .unwrap_or("event")
                .to_string();
            Ok::<Event, Infallible>(Event::default().event(t).data(ev.to_string()))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn tokio_stream_from(
    rx: tokio::sync::broadcast::Receiver<Json>,
) -> impl futures::Stream<Item = Json> {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => return Some((v, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event subscriber lagged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// The group tree under `id` built from the app ids (`/a/b/app` → groups `/a`, `/a/b`).
fn group_tree(id: &str, apps: &BTreeMap<String, AppDefinition>, version: Option<&str>) -> Json {
    let prefix = if id == "/" {
        "/".to_string()
    } else {
        format!("{id}/")
    };
    let mut direct_apps = Vec::new();
    let mut subgroups: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (app_id, app) in apps.range(prefix.clone()..) {
        if !app_id.starts_with(&prefix) {
            break;
        }
        let rest = &app_id[prefix.len()..];
        match rest.split_once('/') {
            None => direct_apps.push(app.to_json()),
            Some((g, _)) => {
                subgroups.insert(format!("{prefix}{g}"));
            }
        }
    }
    let groups: Vec<Json> = subgroups
        .iter()
        .map(|g| group_tree(g, apps, version))
        .collect();
    json!({"id": id, "apps": direct_apps, "groups": groups, "pods": [], "dependencies": [], "version": version})
}

fn group_id(rest: &str) -> String {
    crate::pathid::canonical(rest, "/")
}

async fn groups_get(State(s): State<ApiState>) -> Result<Response, ApiError> {
    group_response(&s, "/").await
}

async fn groups_get_id(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(g) = rest
        .strip_suffix("/versions")
        .or_else(|| (rest == "versions").then_some(""))
    {
        let id = group_id(g);
        let apps = s.core.apps().await?;
        let mut versions: Vec<String> = apps
            .values()
            .filter(|a| id == "/" || a.id.starts_with(&format!("{id}/")))
            .filter_map(|a| a.version.clone())
            .collect();
        versions.sort();
        versions.dedup();
        versions.reverse();
        return Ok(axum::Json(json!(versions)).into_response());
    }
    group_response(&s, &group_id(&rest)).await
}

async fn group_response(s: &ApiState, id: &str) -> Result<Response, ApiError> {
    let apps = s.core.apps().await?;
    let exists = id == "/" || apps.keys().any(|k| k.starts_with(&format!("{id}/")));
    if !exists {
        return Err(ApiError::message(
            StatusCode::NOT_FOUND,
            format!("Group '{id}' does not exist"),
        ));
    }
    let version = apps
        .values()
        .filter_map(|a| a.version.as_deref())
        .max()
        .map(str::to_string);
    Ok(axum::Json(group_tree(id, &apps, version.as_deref())).into_response())
}

/// Collects `(app body, base group)` pairs from a group body, recursively.
fn collect_group_apps(group: &Json, base: &str, out: &mut Vec<(Json, String)>) {
    let gid = group
        .get("id")
        .and_then(Json::as_str)
        .map(|g| crate::pathid::canonical(g, base))
        .unwrap_or_else(|| base.to_string());
    for app in group
        .get("apps")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        out.push((app.clone(), gid.clone()));
    }
    for g in group
        .get("groups")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        collect_group_apps(g, &gid, out);
    }
}

async fn group_update(
    s: &ApiState,
    id: &str,
    body: Json,
    q: &[(String, String)],
    created: bool,
) -> Result<Response, ApiError> {
    let force = flag(q, "force", false);
    if let Some(factor) = body.get("scaleBy").and_then(Json::as_f64) {
        let apps = s.core.apps().await?;
        let bodies: Vec<(Json, String)> = apps
            .values()
            .filter(|a| id == "/" || a.id.starts_with(&format!("{id}/")))
            .map(|a| {
                let mut j = a.to_json();
                j["instances"] = json!(((a.instances as f64) * factor).ceil() as i64);
                (j, "/".to_string())
            })
            .collect();
        let change = s.core.group_change(bodies, vec![], force).await?;
        return Ok(deployment_response(StatusCode::OK, &change));
    }
    let mut body = body;
    if body.get("id").is_none() {
        body["id"] = json!(id);
    }
    let mut bodies = Vec::new();
    collect_group_apps(&body, "/", &mut bodies);
    if flag(q, "dryRun", false) {
        return Ok(axum::Json(json!({"steps": []})).into_response());
    }
    let change = s.core.group_change(bodies, vec![], force).await?;
    Ok(deployment_response(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &change,
    ))
}

async fn groups_post(
    State(s): State<ApiState>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    group_update(&s, "/", body, &q, true).await
}

async fn groups_put(
    State(s): State<ApiState>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    group_update(&s, "/", body, &q, false).await
}

async fn groups_post_id(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let id = group_id(&rest);
    let mut body = body;
    // POST to a group creates the posted group inside it.
    if let Some(sub) = body.get("id").and_then(Json::as_str) {
        body["id"] = json!(crate::pathid::canonical(sub, &id));
    }
    group_update(&s, &id, body, &q, true).await
}

async fn groups_put_id(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let id = group_id(&rest);
    let mut body = body;
    body["id"] = json!(id);
    group_update(&s, &id, body, &q, false).await
}

async fn group_delete(
    s: &ApiState,
    id: &str,
    q: &[(String, String)],
) -> Result<Response, ApiError> {
    let apps = s.core.apps().await?;
    let doomed: Vec<String> = apps
        .keys()
        .filter(|k| id == "/" || k.starts_with(&format!("{id}/")))
        .cloned()
        .collect();
    if doomed.is_empty() && id != "/" {
        return Err(ApiError::message(
            StatusCode::NOT_FOUND,
            format!("Group '{id}' does not exist"),
        ));
    }
    let change = s
        .core
        .group_change(vec![], doomed, flag(q, "force", false))
        .await?;
    Ok(deployment_response(StatusCode::OK, &change))
}

async fn groups_delete(State(s): State<ApiState>, Query(q): Q) -> Result<Response, ApiError> {
    group_delete(&s, "/", &q).await
}

async fn groups_delete_id(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    group_delete(&s, &group_id(&rest), &q).await
}

// ---- /v2/pods ----------------------------------------------------------------------

fn pod_not_found(id: &str) -> ApiError {
    ApiError::message(StatusCode::NOT_FOUND, format!("Pod '{id}' does not exist"))
}

/// `id::suffix` of a `/v2/pods/...` path: the pod id (canonical) and the suffix
/// (`status`, `versions[/v]`, `instances[/id]`), if any.
fn pod_path(rest: &str) -> (String, Option<String>) {
    match rest.split_once("::") {
        Some((id, suffix)) => (crate::pathid::canonical(id, "/"), Some(suffix.to_string())),
        None => (crate::pathid::canonical(rest, "/"), None),
    }
}

fn pod_response(status: StatusCode, pod: &crate::pod::Pod, change: &Change) -> Response {
    let mut r = (status, axum::Json(pod.to_json())).into_response();
    if let Ok(v) = HeaderValue::from_str(&change.deployment_id) {
        r.headers_mut().insert("Marathon-Deployment-Id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("/v2/pods{}", pod.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn pod_instances(s: &ApiState, id: &str) -> Result<Vec<Instance>, ApiError> {
    Ok(s.core
        .repo()
        .instances()
        .await?
        .into_iter()
        .filter(|i| i.app_id == id)
        .map(|i| (*i).clone())
        .collect())
}

async fn pods_list(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let pods = s.core.pods().await?;
    let out: Vec<Json> = pods.values().map(crate::pod::Pod::to_json).collect();
    Ok(axum::Json(Json::Array(out)).into_response())
}

async fn pods_post(
    State(s): State<ApiState>,
    ci: ConnectInfo<std::net::SocketAddr>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let (pod, change, _) = s
        .core
        .put_pod(&body, None, flag(&q, "force", false))
        .await?;
    s.core.events().publish(
        "pod_created_event",
        json!({"clientIp": client_ip(&ci), "uri": format!("/v2/pods{}", pod.id)}),
    );
    Ok(pod_response(StatusCode::CREATED, &pod, &change))
}

async fn pods_put(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    ci: ConnectInfo<std::net::SocketAddr>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (id, suffix) = pod_path(&rest);
    if suffix.is_some() {
        return Err(ApiError::message(
            StatusCode::METHOD_NOT_ALLOWED,
            "PUT is not supported here",
        ));
    }
    let body = json_body(&body)?;
    let (pod, change, created) = s
        .core
        .put_pod(&body, Some(&id), flag(&q, "force", false))
        .await?;
    s.core.events().publish(
        if created {
            "pod_created_event"
        } else {
            "pod_updated_event"
        },
        json!({"clientIp": client_ip(&ci), "uri": format!("/v2/pods{}", pod.id)}),
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(pod_response(status, &pod, &change))
}

async fn pods_get(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    let (id, suffix) = pod_path(&rest);
    let suffix = suffix.unwrap_or_default();
    // `/v2/pods/::status`: every pod's status.
    if id == "/" && suffix == "status" {
        let pods = s.core.pods().await?;
        let instances = s.core.repo().instances().await?;
        let out: Vec<Json> = pods
            .values()
            .map(|p| {
                let mine: Vec<&Instance> = instances
                    .iter()
                    .filter(|i| i.app_id == p.id)
                    .map(|i| &**i)
                    .collect();
                crate::pod::pod_status(p, &mine)
            })
            .collect();
        return Ok(axum::Json(Json::Array(out)).into_response());
    }
    if let Some(v) = suffix.strip_prefix("versions/") {
        let pod = s.core.repo().pod_version(&id, v).await?.ok_or_else(|| {
            ApiError::message(
                StatusCode::NOT_FOUND,
                format!("Pod '{id}' does not exist in version {v}"),
            )
        })?;
        return Ok(axum::Json(pod.to_json()).into_response());
    }
    let pod = s
        .core
        .repo()
        .pod(&id)
        .await?
        .ok_or_else(|| pod_not_found(&id))?;
    match suffix.as_str() {
        "" => Ok(axum::Json(pod.to_json()).into_response()),
        "status" => {
            let instances = pod_instances(&s, &id).await?;
            let mine: Vec<&Instance> = instances.iter().collect();
            Ok(axum::Json(crate::pod::pod_status(&pod, &mine)).into_response())
        }
        "versions" => Ok(axum::Json(json!(s.core.repo().pod_versions(&id).await?)).into_response()),
        other => Err(ApiError::message(
            StatusCode::NOT_FOUND,
            format!("Unknown pod resource '::{other}'"),
        )),
    }
}

async fn pods_delete(
    State(s): State<ApiState>,
    Path(rest): Path<String>,
    ci: ConnectInfo<std::net::SocketAddr>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let (id, suffix) = pod_path(&rest);
    match suffix.as_deref() {
        None => {
            let change = s.core.delete_pod(&id, flag(&q, "force", false)).await?;
            s.core.events().publish(
                "pod_deleted_event",
                json!({"clientIp": client_ip(&ci), "uri": format!("/v2/pods{id}")}),
            );
            let mut r = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&change.deployment_id) {
                r.headers_mut().insert("Marathon-Deployment-Id", v);
            }
            Ok(r)
        }
        Some(sfx) if sfx.starts_with("instances/") => {
            let instance_id = sfx.trim_start_matches("instances/");
            let pod = s
                .core
                .repo()
                .pod(&id)
                .await?
                .ok_or_else(|| pod_not_found(&id))?;
            let inst = pod_instances(&s, &id)
                .await?
                .into_iter()
                .find(|i| i.instance_id == instance_id)
                .ok_or_else(|| {
                    ApiError::message(
                        StatusCode::NOT_FOUND,
                        format!("Pod instance '{instance_id}' does not exist"),
                    )
                })?;
            let status = crate::pod::instance_status(&pod, &inst);
            s.core
                .kill_tasks(std::slice::from_ref(&inst.instance_id), false, false)
                .await?;
            Ok(axum::Json(status).into_response())
        }
        Some(other) => Err(ApiError::message(
            StatusCode::NOT_FOUND,
            format!("Unknown pod resource '::{other}'"),
        )),
    }
}
