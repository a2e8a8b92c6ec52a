//! The HTTP surface: scheduler API, agent API, redirects and read-only endpoints.
//!
//! | path | leader | follower |
//! |---|---|---|
//! | `POST /api/v1/scheduler` | v1 scheduler API | 307 `Location: //<leader>/api/v1/scheduler` |
//! | `POST /api/basalt/agent/v1` | agent protocol ([`crate::agent_api`]) | 307 to the leader |
//! | `GET /master/redirect`, `/redirect` | 307 `Location: //<leader>` | same |
//! | `GET /master/state` (`/state`, `.json`), `/master/state-summary`, `/master/frameworks`, `/master/slaves`, `/master/tasks`, `/master/roles` | JSON | 307 to the leader |
//! | `POST /api/v1` | operator calls `GET_STATE`, `GET_AGENTS`, `GET_FRAMEWORKS`, `GET_TASKS`, `GET_ROLES`, `GET_HEALTH`, `GET_VERSION`, `GET_MASTER`, `GET_METRICS`, `MARK_AGENT_GONE`, `SUBSCRIBE` (below) | 307 to the leader |
//! | `POST /master/teardown` (`/master/shutdown`), form `frameworkId=<id>` | removes the framework (200; 400 without the field; 404 unknown) | 307 to the leader |
//! | `GET /master/flags`, `/flags` | `{"flags":{...}}` (string values) | same |
//! | `GET /master/health`, `/health` | 200 | 200 |
//! | `GET /version` | JSON | JSON |
//! | `GET /metrics/snapshot` | flat JSON, Mesos names | `master/elected: 0` |
//! | `GET /metrics` | Prometheus text, `basalt_master_*` | same |
//!
//! With no leader known, redirects are `503 No leader elected`.
//!
//! Operator `SUBSCRIBE` answers a RecordIO stream of master `Event`s (JSON, Mesos
//! `master.proto` field names): first `SUBSCRIBED` `{get_state, heartbeat_interval_seconds}`,
//! then `TASK_ADDED` `{task}`, `TASK_UPDATED` `{framework_id, status, state}`,
//! `AGENT_ADDED` `{agent}`, `AGENT_REMOVED` `{agent_id}`, `FRAMEWORK_ADDED` /
//! `FRAMEWORK_UPDATED` `{framework}`, `FRAMEWORK_REMOVED` `{framework_info}` and
//! `HEARTBEAT`. Changes are announced once committed to etcd; the stream closes when the
//! master stops leading.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use basalt_mesos::AgentId;
use futures::stream;
use serde_json::Value as Json;

use crate::agent_api::{AGENT_API_PATH, AGENT_STREAM_ID_HEADER, AgentCall};
use crate::api::{Call, SCHEDULER_PATH, STREAM_ID_HEADER};
use crate::core::{BatchCall, BatchItem, CallError, Conn};
use crate::master::{LeaderCtx, Shared};

type S = State<Arc<Shared>>;

/// The master's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new()
        .route(SCHEDULER_PATH, post(scheduler))
        .route(AGENT_API_PATH, post(agent))
        .route("/api/v1", post(operator))
        .route("/master/teardown", post(teardown))
        .route("/teardown", post(teardown))
        .route("/master/shutdown", post(teardown))
        .route("/master/flags", get(flags))
        .route("/flags", get(flags))
        .route("/master/redirect", get(redirect))
        .route("/redirect", get(redirect))
        .route("/master/health", get(health))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics/snapshot", get(metrics_snapshot))
        .route("/metrics", get(metrics_prometheus));
    for p in [
        "/master/state",
        "/state",
        "/master/state.json",
        "/state.json",
    ] {
        r = r.route(p, get(state));
    }
    for p in ["/master/state-summary", "/state-summary"] {
        r = r.route(p, get(state_summary));
    }
    for p in [
        "/master/frameworks",
        "/frameworks",
        "/master/frameworks.json",
    ] {
        r = r.route(p, get(frameworks));
    }
    for p in ["/master/slaves", "/slaves", "/master/slaves.json"] {
        r = r.route(p, get(slaves));
    }
    for p in ["/master/tasks", "/tasks", "/master/tasks.json"] {
        r = r.route(p, get(tasks));
    }
    for p in ["/master/roles", "/roles", "/master/roles.json"] {
        r = r.route(p, get(roles));
    }
    // Large ACCEPTs (hundreds of TaskInfos) exceed axum's 2 MiB default.
    r.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 << 20;

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

fn json_response(v: &Json) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// 307 to the leader with `path` appended, or 503.
async fn to_leader(shared: &Shared, path_and_query: &str) -> Response {
    match shared.leader_address().await {
        Some(addr) if !shared.killed.load(std::sync::atomic::Ordering::SeqCst) => {
            let loc = format!("//{addr}{path_and_query}");
            match HeaderValue::from_str(&loc) {
                Ok(v) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, v)]).into_response(),
                Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected"),
            }
        }
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "No leader elected"),
    }
}

/// Queues a call for the group commit and answers 202 once it is durable.
async fn batched(ctx: &LeaderCtx, call: BatchCall) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if ctx.batch.send(BatchItem { call, reply: tx }).is_err() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master is stepping down",
        );
    }
    match rx.await {
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
        Ok(Err(e)) => call_error(e),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master is stepping down",
        ),
    }
}

fn call_error(e: CallError) -> Response {
    match e {
        CallError::BadRequest(m) => text(StatusCode::BAD_REQUEST, m),
        CallError::Forbidden(m) => text(StatusCode::FORBIDDEN, m),
        CallError::NotFound(m) => text(StatusCode::NOT_FOUND, m),
        CallError::Conflict(m) => text(StatusCode::CONFLICT, m),
        CallError::Unavailable(m) => text(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

/// A RecordIO event stream; `stream_id` names the header carrying the stream id.
fn stream_response(
    rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    stream_id: Option<(&'static str, &str)>,
) -> Response {
    let body = Body::from_stream(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some((header_name, id)) = stream_id
        && let Ok(v) = HeaderValue::from_str(id)
    {
        resp.headers_mut().insert(header_name, v);
    }
    resp
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Box<Response>> {
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !accept.contains("application/json")
        && !accept.contains("*/*")
        && !accept.trim().is_empty()
    {
        return Err(Box::new(text(
            StatusCode::NOT_ACCEPTABLE,
            format!("unsupported Accept {accept:?}: this master answers application/json"),
        )));
    }
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct) if ct.starts_with("application/json") => Ok(()),
        Some(ct) => Err(Box::new(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {ct:?}: this master speaks application/json"),
        ))),
    }
}

async fn scheduler(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let Some(ctx) = shared.leading() else {
        return to_leader(&shared, SCHEDULER_PATH).await;
    };
    if let Err(r) = check_content_type(&headers) {
        return *r;
    }
    let call: Call = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("failed to parse the call: {e}"),
            );
        }
    };
    if let Err(m) = call.validate() {
        return text(StatusCode::BAD_REQUEST, m);
    }
    let stream_id = headers
        .get(STREAM_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut core = ctx.core.lock().await;
    if !ctx.watcher.is_leader() || core.poisoned() {
        drop(core);
        return to_leader(&shared, SCHEDULER_PATH).await;
    }
    if call.kind == "SUBSCRIBE" {
        if stream_id.is_some() {
            return text(
                StatusCode::BAD_REQUEST,
                format!("a SUBSCRIBE call must not include the '{STREAM_ID_HEADER}' header"),
            );
        }
        let (conn, rx) = Conn::new();
        let sid = conn.stream_id.clone();
        return match core.subscribe(&call, conn).await {
            Ok(_) => stream_response(rx, Some((STREAM_ID_HEADER, &sid))),
            Err(CallError::Forbidden(_)) => stream_response(rx, Some((STREAM_ID_HEADER, &sid))),
            Err(e) => call_error(e),
        };
    }
    if let Some(fw) = &call.framework_id
        && let Err(e) = core.check_stream(fw, stream_id.as_deref())
    {
        return call_error(e);
    }
    if call.kind == "ACKNOWLEDGE"
        && let (Some(fw), Some(ack)) = (call.framework_id.clone(), call.acknowledge.clone())
    {
        drop(core);
        return batched(&ctx, BatchCall::Acknowledge(fw, ack)).await;
    }
    match core.call(call).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => call_error(e),
    }
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(expected) = &shared.cfg.join_credential else {
        return Ok(());
    };
    let unauthorized = |m: &str| Box::new(text(StatusCode::UNAUTHORIZED, m.to_string()));
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("missing Authorization header"));
    };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return Err(unauthorized("Authorization is not a Bearer token"));
    };
    if crate::auth::credential_matches(expected.as_bytes(), token.trim().as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("invalid join credential"))
    }
}

async fn agent(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let Some(ctx) = shared.leading() else {
        return to_leader(&shared, AGENT_API_PATH).await;
    };
    if let Err(r) = authenticate(&shared, &headers) {
        return *r;
    }
    let call: AgentCall = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("failed to parse the call: {e}"),
            );
        }
    };
    if let Err(m) = call.validate() {
        return text(StatusCode::BAD_REQUEST, m);
    }
    let stream_id = headers
        .get(AGENT_STREAM_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut core = ctx.core.lock().await;
    if !ctx.watcher.is_leader() || core.poisoned() {
        drop(core);
        return to_leader(&shared, AGENT_API_PATH).await;
    }
    if call.kind == "SUBSCRIBE" {
        let Some(sub) = call.subscribe else {
            return text(StatusCode::BAD_REQUEST, "field 'subscribe' is required");
        };
        let (conn, rx) = Conn::new();
        let sid = conn.stream_id.clone();
        return match core.agent_subscribe(sub, conn).await {
            Ok(_) => stream_response(rx, Some((AGENT_STREAM_ID_HEADER, &sid))),
            Err(e) => call_error(e),
        };
    }
    let agent_id: AgentId = match call.agent_id {
        Some(a) => a,
        None => return text(StatusCode::BAD_REQUEST, "field 'agent_id' is required"),
    };
    if let Err(e) = core.check_agent_stream(&agent_id, stream_id.as_deref()) {
        return call_error(e);
    }
    let result = match call.kind.as_str() {
        "HEARTBEAT" => {
            core.touch_agent(&agent_id);
            Ok(())
        }
        "UPDATE" => match call.update {
            Some(u) => {
                drop(core);
                return batched(&ctx, BatchCall::AgentUpdate(agent_id, Box::new(u))).await;
            }
            None => Err(CallError::BadRequest("field 'update' is required".into())),
        },
        "MESSAGE" => match call.message {
            Some(m) => {
                core.agent_message(&agent_id, m);
                Ok(())
            }
            None => Err(CallError::BadRequest("field 'message' is required".into())),
        },
        other => Err(CallError::BadRequest(format!(
            "unknown agent call type {other:?}"
        ))),
    };
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => call_error(e),
    }
}

#[derive(serde::Deserialize)]
struct MarkAgentGone {
    agent_id: AgentId,
}

#[derive(serde::Deserialize)]
struct OperatorCall {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    mark_agent_gone: Option<MarkAgentGone>,
}

async fn operator(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let Some(ctx) = shared.leading() else {
        return to_leader(&shared, "/api/v1").await;
    };
    if let Err(r) = check_content_type(&headers) {
        return *r;
    }
    let call: OperatorCall = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("failed to parse the call: {e}"),
            );
        }
    };
    let mut core = ctx.core.lock().await;
    if !ctx.watcher.is_leader() || core.poisoned() {
        drop(core);
        return to_leader(&shared, "/api/v1").await;
    }
    if call.kind == "SUBSCRIBE" {
        let (conn, rx) = Conn::new();
        core.operator_subscribe(conn);
        return stream_response(rx, None);
    }
    if call.kind == "MARK_AGENT_GONE" {
        let Some(m) = call.mark_agent_gone else {
            return text(
                StatusCode::BAD_REQUEST,
                "field 'mark_agent_gone' is required for MARK_AGENT_GONE",
            );
        };
        return match core.mark_agent_gone(&m.agent_id).await {
            Ok(()) => StatusCode::OK.into_response(),
            Err(e) => call_error(e),
        };
    }
    match crate::endpoints::operator(&shared, &core, &call.kind) {
        Ok(v) => json_response(&v),
        Err(m) => text(StatusCode::BAD_REQUEST, m),
    }
}

async fn teardown(State(shared): S, body: Bytes) -> Response {
    let Some(ctx) = shared.leading() else {
        return to_leader(&shared, "/master/teardown").await;
    };
    let form = String::from_utf8_lossy(&body);
    let id = form.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "frameworkId").then(|| v.trim().to_string())
    });
    let Some(id) = id.filter(|v| !v.is_empty()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "missing 'frameworkId' in the form body",
        );
    };
    let fw = basalt_mesos::FrameworkId::new(id);
    let mut core = ctx.core.lock().await;
    if !core.frameworks.contains_key(&fw) {
        return text(StatusCode::NOT_FOUND, format!("no framework {fw}"));
    }
    match core.remove_framework(&fw, "operator teardown").await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn flags(State(shared): S) -> Response {
    json_response(&crate::endpoints::flags(&shared))
}

async fn redirect(State(shared): S) -> Response {
    if shared.leading().is_some() {
        return match HeaderValue::from_str(&format!("//{}", shared.address)) {
            Ok(v) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, v)]).into_response(),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "bad advertised address"),
        };
    }
    to_leader(&shared, "").await
}

async fn health() -> Response {
    StatusCode::OK.into_response()
}

async fn version() -> Response {
    json_response(&crate::endpoints::version())
}

macro_rules! leader_json {
    ($name:ident, $f:path) => {
        async fn $name(
            State(shared): S,
            uri: Uri,
            Query(q): Query<std::collections::BTreeMap<String, String>>,
        ) -> Response {
            let Some(ctx) = shared.leading() else {
                let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
                return to_leader(&shared, pq).await;
            };
            let core = ctx.core.lock().await;
            json_response(&$f(&shared, &core, &q))
        }
    };
}

leader_json!(state, crate::endpoints::state);
leader_json!(state_summary, crate::endpoints::state_summary);
leader_json!(frameworks, crate::endpoints::frameworks);
leader_json!(slaves, crate::endpoints::slaves);
leader_json!(tasks, crate::endpoints::tasks);
leader_json!(roles, crate::endpoints::roles);

async fn metrics_snapshot(State(shared): S) -> Response {
    let snapshot = match shared.leading() {
        Some(ctx) => {
            let core = ctx.core.lock().await;
            crate::endpoints::metrics(&shared, Some(&core))
        }
        None => crate::endpoints::metrics(&shared, None),
    };
    let obj: serde_json::Map<String, Json> = snapshot
        .into_iter()
        .map(|(k, v)| (k, Json::from(v)))
        .collect();
    json_response(&Json::Object(obj))
}

async fn metrics_prometheus(State(shared): S) -> Response {
    let snapshot = match shared.leading() {
        Some(ctx) => {
            let core = ctx.core.lock().await;
            crate::endpoints::metrics(&shared, Some(&core))
        }
        None => crate::endpoints::metrics(&shared, None),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::endpoints::prometheus(&snapshot),
    )
        .into_response()
}
