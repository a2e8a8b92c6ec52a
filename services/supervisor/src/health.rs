//! Node health on port 1050, in the DC/OS diagnostics shape.
//!
//! - `GET /system/health/v1`: `{"units":[{"id","name","health","output","description",
//!   "help","active_state","sub_state"}…],"hostname","ip","dcos_version","node_role",
//!   "mesos_id","dcos_diagnostics_version"}`; `health` is `0` (healthy: loaded and active)
//!   or `1`; `output` holds the journal tail (`journalctl -u <id> -n 50 -o cat`) of an
//!   unhealthy unit and is empty for a healthy one.
//! - `GET /system/health/v1/units/<id>`: that one unit (404 for a unit not on this node).
//!
//! States are read from systemd at request time, so the answer is never stale.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::seams::{CommandRunner, Systemd, UnitState};

/// Port of the node health API (DC/OS `dcos-diagnostics`).
pub const HEALTH_PORT: u16 = 1050;
/// Lines of journal shown for an unhealthy unit.
pub const JOURNAL_LINES: u32 = 50;

/// One unit in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitHealth {
    pub id: String,
    pub name: String,
    /// 0 healthy, 1 unhealthy (DC/OS).
    pub health: u8,
    pub output: String,
    pub description: String,
    pub help: String,
    pub active_state: String,
    pub sub_state: String,
}

/// The node report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeHealth {
    pub units: Vec<UnitHealth>,
    pub hostname: String,
    pub ip: String,
    pub dcos_version: String,
    pub node_role: String,
    pub mesos_id: String,
    pub dcos_diagnostics_version: String,
}

/// What the health server knows about the node.
#[derive(Clone)]
pub struct HealthState {
    pub systemd: Arc<dyn Systemd>,
    pub runner: Arc<dyn CommandRunner>,
    /// The units reported, in order.
    pub units: Vec<String>,
    pub hostname: String,
    pub ip: String,
    /// DC/OS role names: `master`, `agent`, `agent_public`.
    pub node_role: String,
}

/// Short human name of a Basalt unit.
pub fn unit_name(id: &str) -> String {
    let base = id
        .strip_suffix(".service")
        .or_else(|| id.strip_suffix(".target"))
        .unwrap_or(id);
    match base {
        "basalt-supervisor" => "Basalt Supervisor".into(),
        "basalt-etcd" => "etcd".into(),
        "basalt-iam" => "Basalt IAM".into(),
        "basalt-dns" => "Basalt DNS".into(),
        "basalt-l4lb" => "Basalt L4LB".into(),
        "basalt-logs" => "Basalt Logs".into(),
        other => other
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The last `lines` journal lines of `unit`, or why they could not be read.
pub async fn journal_tail(runner: &dyn CommandRunner, unit: &str, lines: u32) -> String {
    let args = [
        "-u".to_string(),
        unit.to_string(),
        "-n".to_string(),
        lines.to_string(),
        "-o".to_string(),
        "cat".to_string(),
        "--no-pager".to_string(),
    ];
    match runner
        .run(Path::new("journalctl"), &args, Duration::from_secs(10))
        .await
    {
        Ok(out) if out.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => format!(
            "(journalctl failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("(journalctl: {e})"),
    }
}

impl HealthState {
    async fn unit(&self, id: &str) -> UnitHealth {
        let state = match self.systemd.unit_state(id).await {
            Ok(s) => s,
            Err(e) => UnitState {
                id: id.to_string(),
                description: String::new(),
                load_state: "error".into(),
                active_state: "unknown".into(),
                sub_state: e.to_string(),
            },
        };
        let healthy = state.healthy();
        let output = if healthy {
            String::new()
        } else {
            journal_tail(self.runner.as_ref(), id, JOURNAL_LINES).await
        };
        UnitHealth {
            id: id.to_string(),
            name: unit_name(id),
            health: u8::from(!healthy),
            output,
            description: state.description,
            help: format!("journalctl -u {id}"),
            active_state: state.active_state,
            sub_state: state.sub_state,
        }
    }

    /// The whole report.
    pub async fn report(&self) -> NodeHealth {
        let mut units = Vec::with_capacity(self.units.len());
        for u in &self.units {
            units.push(self.unit(u).await);
        }
        NodeHealth {
            units,
            hostname: self.hostname.clone(),
            ip: self.ip.clone(),
            dcos_version: basalt_genconf::bundle::BASALT_VERSION.to_string(),
            node_role: self.node_role.clone(),
            mesos_id: String::new(),
            dcos_diagnostics_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

async fn all(State(s): State<Arc<HealthState>>) -> Json<NodeHealth> {
    Json(s.report().await)
}

async fn one(State(s): State<Arc<HealthState>>, UrlPath(id): UrlPath<String>) -> Response {
    if !s.units.contains(&id) {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("unit {id} is not reported on this node") })),
        )
            .into_response();
    }
    Json(s.unit(&id).await).into_response()
}

/// The health API.
pub fn router(state: HealthState) -> axum::Router {
    axum::Router::new()
        .route("/system/health/v1", get(all))
        .route("/system/health/v1/units/{id}", get(one))
        .with_state(Arc::new(state))
}
