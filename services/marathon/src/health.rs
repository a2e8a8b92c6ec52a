//! Marathon-side health checks (HTTP, HTTPS, TCP) run by the leader. Mesos-side checks
//! (`MESOS_*`, `COMMAND`) travel in the TaskInfo and come back as `TaskStatus.healthy`.
//!
//! Every `intervalSeconds` each running instance is probed; `maxConsecutiveFailures`
//! failures in a row (outside `gracePeriodSeconds` after start, 0 = never) mark it
//! unhealthy and get it killed — and, like any killed instance, replaced with back-off.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpStream;

use crate::app::{HealthCheckDef, HealthProtocol};
use crate::core::Core;
use crate::state::Instance;

/// One probe: HTTP(S) answers 200–399 (1xx too with `ignoreHttp1xx`), TCP connects.
pub async fn probe(
    client: &reqwest::Client,
    protocol: HealthProtocol,
    host: &str,
    port: u64,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    match protocol {
        HealthProtocol::Tcp => {
            match tokio::time::timeout(timeout, TcpStream::connect((host, port as u16))).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("connect {host}:{port}: {e}")),
                Err(_) => Err(format!("connect {host}:{port}: timed out")),
            }
        }
        HealthProtocol::Http | HealthProtocol::Https => {
            let scheme = if protocol == HealthProtocol::Https {
                "https"
            } else {
                "http"
            };
            let url = format!("{scheme}://{host}:{port}{path}");
            match client.get(&url).timeout(timeout).send().await {
                Ok(r) if (200..400).contains(&r.status().as_u16()) => Ok(()),
                Ok(r) => Err(format!("{url} answered {}", r.status())),
                Err(e) => Err(format!("{url}: {e}")),
            }
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Track {
    next_ms: u64,
    failures: i64,
}

fn port_of(hc: &HealthCheckDef, inst: &Instance) -> Option<u64> {
    hc.port.map(|p| p as u64).or_else(|| {
        hc.port_index
            .and_then(|i| inst.ports.get(i as usize).copied())
    })
}

/// Runs the Marathon-side checks forever (the leader spawns this).
pub async fn run(core: Core) {
    let client = reqwest::Client::new();
    let mut tracks: HashMap<String, Track> = HashMap::new();
    loop {
        if let Err(e) = round(&core, &client, &mut tracks).await {
            tracing::warn!(error = %e, "health check round failed");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn round(
    core: &Core,
    client: &reqwest::Client,
    tracks: &mut HashMap<String, Track>,
) -> Result<(), crate::error::MarathonError> {
    let apps = core.apps().await?;
    if !apps.values().any(|a| {
        a.health_checks
            .iter()
            .any(|h| h.protocol.is_marathon_side())
    }) {
        tracks.clear();
        return Ok(());
    }
    let now = crate::time::now_millis();
    let instances = core.repo().instances().await?;
    let ids: std::collections::HashSet<&str> =
        instances.iter().map(|i| i.instance_id.as_str()).collect();
    tracks.retain(|id, _| ids.contains(id.as_str()));
    for inst in &instances {
        if inst.state != "TASK_RUNNING" || inst.killing {
            continue;
        }
        let mut inst = Instance::clone(inst);
        let Some(app) = apps.get(&inst.app_id) else {
            continue;
        };
        let Some(hc) = app
            .health_checks
            .iter()
            .find(|h| h.protocol.is_marathon_side())
        else {
            continue;
        };
        let t = tracks.entry(inst.instance_id.clone()).or_default();
        if t.next_ms > now {
            continue;
        }
        t.next_ms = now + (hc.interval_seconds.max(1) as u64) * 1000;
        let Some(port) = port_of(hc, &inst) else {
            continue;
        };
        let result = probe(
            client,
            hc.protocol,
            &inst.host,
            port,
            hc.path.as_deref().unwrap_or("/"),
            Duration::from_secs(hc.timeout_seconds.max(1) as u64),
        )
        .await;
        let in_grace = inst
            .started_at_ms
            .is_some_and(|s| now < s + (hc.grace_period_seconds.max(0) as u64) * 1000);
        let before = inst.healthy;
        match result {
            Ok(()) => {
                t.failures = 0;
                inst.healthy = Some(true);
            }
            Err(e) => {
                if in_grace && before != Some(true) {
                    continue;
                }
                t.failures += 1;
                inst.healthy = Some(false);
                core.events().publish("failed_health_check_event", json!({
                    "appId": inst.app_id, "taskId": inst.task_id, "instanceId": inst.instance_id,
                    "healthCheck": hc, "reason": e, "host": inst.host, "version": inst.version,
                }));
                if hc.max_consecutive_failures > 0 && t.failures >= hc.max_consecutive_failures {
                    tracing::info!(task = %inst.task_id, failures = t.failures, "killing unhealthy instance");
                    inst.killing = true;
                    core.events().publish("unhealthy_instance_kill_event", json!({
                        "appId": inst.app_id, "taskId": inst.task_id, "instanceId": inst.instance_id,
                        "reason": e, "host": inst.host, "version": inst.version,
                    }));
                    core.record_failure(app, json!({"appId": inst.app_id, "host": inst.host, "message": e,
                        "state": "TASK_KILLED", "taskId": inst.task_id, "timestamp": crate::time::now(),
                        "version": inst.version, "slaveId": inst.agent_id}));
                }
            }
        }
        if before != inst.healthy || inst.killing {
            if before != inst.healthy
                && let Some(h) = inst.healthy
            {
                core.events().publish("health_status_changed_event", json!({
                    "appId": inst.app_id, "instanceId": inst.instance_id, "taskId": inst.task_id,
                    "version": inst.version, "alive": h,
                }));
            }
            core.repo().put_instance(&inst).await?;
            core.notify();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_http_and_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port() as u64;
        let app = axum::Router::new()
            .route("/ok", axum::routing::get(|| async { "ok" }))
            .route(
                "/bad",
                axum::routing::get(|| async {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no")
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let c = reqwest::Client::new();
        let t = Duration::from_secs(2);
        assert!(
            probe(&c, HealthProtocol::Http, "127.0.0.1", port, "/ok", t)
                .await
                .is_ok()
        );
        let err = probe(&c, HealthProtocol::Http, "127.0.0.1", port, "/bad", t)
            .await
            .unwrap_err();
        assert!(err.contains("500"), "{err}");
        assert!(
            probe(&c, HealthProtocol::Tcp, "127.0.0.1", port, "/", t)
                .await
                .is_ok()
        );
        // A port nobody listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port() as u64
        };
        assert!(
            probe(&c, HealthProtocol::Tcp, "127.0.0.1", closed, "/", t)
                .await
                .is_err()
        );
        assert!(
            probe(&c, HealthProtocol::Http, "127.0.0.1", closed, "/", t)
                .await
                .is_err()
        );
    }
}
