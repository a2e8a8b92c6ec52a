//! Readiness checks (`readinessChecks`), run by the leader during deployments: a new
//! instance of an app being deployed counts toward the step only once its check
//! answered one of `httpStatusCodesForReady`. Results are served as
//! `readinessCheckResults` (deployments' `currentActions`, `embed=apps.readiness`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::app::{AppDefinition, ReadinessCheck};
use crate::core::Core;
use crate::error::MarathonError;
use crate::state::Instance;

/// The host port named `name` of an instance (port mappings' names if the app has
/// them, port definitions' otherwise).
pub fn named_port(app: &AppDefinition, inst: &Instance, name: &str) -> Option<u64> {
    let names: Vec<Option<&str>> = match app
        .container
        .as_ref()
        .and_then(|c| c.port_mappings.as_ref())
    {
        Some(pm) if !pm.is_empty() => pm.iter().map(|m| m.name.as_deref()).collect(),
        _ => app
            .port_definitions
            .iter()
            .flatten()
            .map(|d| d.name.as_deref())
            .collect(),
    };
    let idx = names.iter().position(|n| *n == Some(name))?;
    inst.ports.get(idx).copied()
}

/// One probe; returns `(ready, result JSON)`.
pub async fn probe(
    client: &reqwest::Client,
    check: &ReadinessCheck,
    inst: &Instance,
    port: u64,
) -> (bool, Json) {
    let scheme = if check.protocol.eq_ignore_ascii_case("HTTPS") {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}:{port}{}", inst.host, check.path);
    let timeout = Duration::from_secs(check.timeout_seconds.max(1) as u64);
    let mut result = json!({"name": check.name, "taskId": inst.task_id, "ready": false});
    match client.get(&url).timeout(timeout).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let content_type = r
                .headers()
                .get("Content-Type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = r.text().await.unwrap_or_default();
            let ready = check
                .http_status_codes_for_ready
                .contains(&i64::from(status));
            result["ready"] = json!(ready);
            if check.preserve_last_response {
                result["lastResponse"] =
                    json!({"status": status, "contentType": content_type, "body": body});
            }
            (ready, result)
        }
        Err(e) => {
            tracing::debug!(%url, error = %e, "readiness probe failed");
            (false, result)
        }
    }
}

/// Runs the checks forever (the leader spawns this).
pub async fn run(core: Core) {
    let client = reqwest::Client::new();
    let mut next: HashMap<String, u64> = HashMap::new();
    loop {
        if let Err(e) = round(&core, &client, &mut next).await {
            tracing::warn!(error = %e, "readiness round failed");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn round(
    core: &Core,
    client: &reqwest::Client,
    next: &mut HashMap<String, u64>,
) -> Result<(), MarathonError> {
    let apps = core.apps().await?;
    if !apps.values().any(|a| !a.readiness_checks.is_empty()) {
        return Ok(());
    }
    let deploying: BTreeSet<String> = core.repo().deploying_apps().await?;
    let instances = core.repo().instances().await?;
    let tasks: std::collections::HashSet<&str> =
        instances.iter().map(|i| i.task_id.as_str()).collect();
    next.retain(|id, _| tasks.contains(id.as_str()));
    core.retain_readiness(|task| tasks.contains(task));
    let now = crate::time::now_millis();
    for inst in &instances {
        if inst.ready || inst.killing || inst.state != "TASK_RUNNING" {
            continue;
        }
        let mut inst = Instance::clone(inst);
        if !deploying.contains(&inst.app_id) {
            continue;
        }
        let Some(app) = apps.get(&inst.app_id) else {
            continue;
        };
        let Some(check) = app.readiness_checks.first() else {
            continue;
        };
        let due = next.entry(inst.task_id.clone()).or_insert(0);
        if *due > now {
            continue;
        }
        *due = now + (check.interval_seconds.max(1) as u64) * 1000;
        let Some(port) = named_port(app, &inst, &check.port_name) else {
            continue;
        };
        let (ready, result) = probe(client, check, &inst, port).await;
        core.set_readiness(&inst.app_id, &inst.task_id, result);
        if ready {
            tracing::info!(task = %inst.task_id, app = %inst.app_id, "instance ready");
            inst.ready = true;
            core.repo().put_instance(&inst).await?;
            core.notify();
        }
    }
    Ok(())
}
