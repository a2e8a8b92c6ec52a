//! The HTTP API: dcos-log's v1 paths (behind the gateway's `/system/v1/logs`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use crate::format::Format;
use crate::journal::Journal;
use crate::metrics::{Metrics, StreamGuard};
use crate::query::Query;
use crate::reader::{OpenError, Reader};

/// The fields `/v1/fields/<field>` answers: dcos-log's (the Mesos journald container
/// logger's: `FRAMEWORK_ID`, `AGENT_ID`, `EXECUTOR_ID`, `CONTAINER_ID`, `STREAM`) and,
/// since Basalt's tasks log to sandbox files rather than the journal, the ones that
/// name a node's own components.
pub const ALLOWED_FIELDS: [&str; 9] = [
    "FRAMEWORK_ID",
    "AGENT_ID",
    "EXECUTOR_ID",
    "CONTAINER_ID",
    "STREAM",
    "_SYSTEMD_UNIT",
    "SYSLOG_IDENTIFIER",
    "_HOSTNAME",
    "PRIORITY",
];

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    /// Becomes `true` when the server stops: streaming bodies end.
    pub stopped: tokio::sync::watch::Receiver<bool>,
    /// The journal.
    pub journal: Journal,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/range/", get(range))
        .route("/v1/range", get(range))
        .route("/v1/stream/", get(stream))
        .route("/v1/stream", get(stream))
        .route("/v1/fields/{field}", get(fields))
        .route("/v1/range/download", get(download))
        .route(
            "/v1/range/framework/{framework_id}/executor/{executor_id}/container/{container_id}",
            get(task),
        )
        .route(
            "/v1/range/framework/{framework_id}/executor/{executor_id}/container/{container_id}/download",
            get(task),
        )
        .route(
            "/v1/stream/framework/{framework_id}/executor/{executor_id}/container/{container_id}",
            get(task),
        )
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(app)
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut body = msg.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn answer(app: &App, endpoint: &str, r: Response) -> Response {
    app.metrics.request(endpoint, r.status().as_u16());
    r
}

async fn range(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let r = read_journal(&app, &headers, raw.as_deref(), false).await;
    answer(&app, "range", r)
}

async fn stream(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let r = read_journal(&app, &headers, raw.as_deref(), true).await;
    answer(&app, "stream", r)
}

async fn read_journal(
    app: &Arc<App>,
    headers: &HeaderMap,
    raw: Option<&str>,
    follow: bool,
) -> Response {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let mut q = match Query::parse(raw, follow) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if follow && let Some(id) = headers.get("last-event-id") {
        let resumed = id
            .to_str()
            .map_err(|_| "not ASCII".to_owned())
            .and_then(|id| q.resume_from(id).map_err(|e| e.to_string()));
        if let Err(e) = resumed {
            return text(
                StatusCode::BAD_REQUEST,
                format!("header `Last-Event-ID`: {e}"),
            );
        }
    }
    let mut reader = match Reader::open(&app.journal, &q, follow).await {
        Ok(r) => r,
        Err(e @ OpenError::UnknownCursor { .. }) => {
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
        Err(OpenError::Journal(e)) => {
            app.metrics.journal_error();
            tracing::warn!(error = %e, "reading the journal");
            return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    // A range with nothing in it is 204, as in dcos-log ("No match found").
    let first = if follow {
        None
    } else {
        match reader.next().await {
            Ok(Some(e)) => Some(e),
            Ok(None) => {
                return skip_headers((StatusCode::NO_CONTENT, "").into_response(), &reader);
            }
            Err(e) => {
                app.metrics.journal_error();
                tracing::warn!(error = %e, "reading the journal");
                return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
        }
    };
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if follow {
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    let mut resp = skip_headers(resp, &reader);
    let body = BodyState {
        reader,
        first,
        format,
        with_id: follow,
        metrics: app.metrics.clone(),
        stopped: app.stopped.clone(),
        _guard: app.metrics.stream_started(),
    };
    *resp.body_mut() = Body::from_stream(futures::stream::unfold(body, next_chunk));
    resp
}

fn skip_headers(mut r: Response, reader: &Reader) -> Response {
    let h = r.headers_mut();
    h.insert(
        "x-journal-skip-next",
        HeaderValue::from(reader.skipped_next),
    );
    h.insert(
        "x-journal-skip-prev",
        HeaderValue::from(reader.skipped_prev),
    );
    r
}

/// The state of a response body.
struct BodyState {
    reader: Reader,
    first: Option<crate::journal::Entry>,
    format: Format,
    with_id: bool,
    metrics: Arc<Metrics>,
    stopped: tokio::sync::watch::Receiver<bool>,
    _guard: StreamGuard,
}

async fn next_chunk(mut b: BodyState) -> Option<(Result<Bytes, std::io::Error>, BodyState)> {
    let entry = match b.first.take() {
        Some(e) => e,
        None => match tokio::select! {
            r = b.reader.next() => r,
            // the server stops (or is gone): end the body cleanly
            _ = b.stopped.wait_for(|s| *s) => Ok(None),
        } {
            Ok(Some(e)) => e,
            Ok(None) => return None,
            Err(e) => {
                b.metrics.journal_error();
                tracing::warn!(error = %e, "reading the journal mid-response");
                // Ends the body with an error: the client sees a cut-off response.
                let err = std::io::Error::other(e.to_string());
                // No further item: the unfold ends after this one.
                b.reader.stop();
                return Some((Err(err), b));
            }
        },
    };
    b.metrics.entry_sent();
    let chunk = Bytes::from(b.format.entry(&entry, b.with_id));
    Some((Ok(chunk), b))
}

async fn fields(State(app): State<Arc<App>>, Path(field): Path<String>) -> Response {
    let r = if !ALLOWED_FIELDS.contains(&field.as_str()) {
        text(
            StatusCode::BAD_REQUEST,
            format!(
                "field {field:?} is not an allowed field (one of {})",
                ALLOWED_FIELDS.join(", ")
            ),
        )
    } else {
        match app.journal.unique_values(&field).await {
            Ok(v) if v.is_empty() => StatusCode::NO_CONTENT.into_response(),
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => {
                app.metrics.journal_error();
                tracing::warn!(error = %e, field = %field, "journal field values");
                text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    };
    answer(&app, "fields", r)
}

async fn download(State(app): State<Arc<App>>) -> Response {
    let r = text(
        StatusCode::NOT_IMPLEMENTED,
        "/v1/range/download (gzipped journal) is not served by Basalt; use /v1/range/ with the same parameters",
    );
    answer(&app, "range", r)
}

async fn task(State(app): State<Arc<App>>) -> Response {
    let r = text(
        StatusCode::NOT_IMPLEMENTED,
        "task logs are not in the journal on Basalt: the agent writes each task's stdout/stderr \
         to its sandbox; read them with the Mesos files API (/agent/<agent-id>/files/read?path=<sandbox>/stdout) \
         or `basalt task log <task-id>`",
    );
    answer(&app, "task", r)
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

async fn not_found(State(app): State<Arc<App>>, uri: axum::http::Uri) -> Response {
    let r = text(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint {}: the log API serves /v1/range/, /v1/stream/ and /v1/fields/<field>",
            uri.path()
        ),
    );
    answer(&app, "other", r)
}
