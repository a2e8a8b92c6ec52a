#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Readiness checks against a real HTTP backend: the emulated agent runs no process,
//! so its hostname is 127.0.0.1 and its only port is a real axum server's, which
//! answers 503 to its first requests and 200 after. The deployment waits for
//! readiness; `readinessCheckResults` are served on deployments and apps.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use basalt_marathon::server::start;
use basalt_master::testing::Cluster;
use common::{agent, marathon_config, wait};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_waits_for_readiness() {
    let Some(cluster) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    // The readiness target: 503 for the first 2 requests, then 200.
    let hits = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = hits.clone();
    let router = axum::Router::new().route(
        "/ready",
        axum::routing::get(move || {
            let h = h.clone();
            async move {
                if h.fetch_add(1, Ordering::SeqCst) < 2 {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "warming up")
                } else {
                    (axum::http::StatusCode::OK, "ready")
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let leader = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    let _agent = agent(
        &cluster,
        "127.0.0.1",
        &format!("cpus:4;mem:4096;ports:[{port}-{port}]"),
        true,
    )
    .await;
    let m = start(marathon_config(cluster.url(leader)), cluster.etcd.store())
        .await
        .unwrap();
    wait("marathon to lead", 20, || async {
        m.is_leader().then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", m.addr);
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    // A readiness check naming an unknown port is rejected, nothing stored.
    let bad = http
        .post(format!("{base}/v2/apps"))
        .json(&json!({"id": "/bad", "cmd": "x", "portDefinitions": [{"port": 0, "name": "http"}],
            "readinessChecks": [{"name": "r", "portName": "nope", "intervalSeconds": 2, "timeoutSeconds": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["details"][0]["path"], "/readinessChecks(0)/portName");
    assert_eq!(get("/v2/apps").await["apps"], json!([]));

    let r = http
        .post(format!("{base}/v2/apps"))
        .json(&json!({"id": "/web", "cmd": "serve", "cpus": 0.1, "mem": 16, "instances": 1,
            "portDefinitions": [{"port": port, "name": "http"}], "requirePorts": true,
            "readinessChecks": [{"name": "readiness", "protocol": "HTTP", "path": "/ready", "portName": "http",
                "intervalSeconds": 2, "timeoutSeconds": 1, "httpStatusCodesForReady": [200], "preserveLastResponse": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Running but not ready: the deployment waits and reports the failed check.
    let results = wait("a not-ready result on the deployment", 30, || async {
        let d = get("/v2/deployments").await;
        let res = d[0]["currentActions"][0]["readinessCheckResults"].clone();
        (res[0]["ready"] == false && res[0]["lastResponse"]["status"] == 503).then_some(res)
    })
    .await;
    assert_eq!(results[0]["name"], "readiness");
    assert_eq!(results[0]["lastResponse"]["body"], "warming up");
    let app = get("/v2/apps/web").await;
    assert_eq!(app["app"]["tasksRunning"], 1);
    assert_eq!(
        get("/v2/deployments").await.as_array().unwrap().len(),
        1,
        "running is not enough: not ready yet"
    );
    let apps = get("/v2/apps?embed=apps.readiness").await;
    assert_eq!(
        apps["apps"][0]["readinessCheckResults"][0]["taskId"],
        app["app"]["tasks"][0]["id"]
    );

    // Ready after the third request: the deployment completes.
    wait("the deployment to finish", 30, || async {
        get("/v2/deployments")
            .await
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(hits.load(Ordering::SeqCst) >= 3);
    let apps = get("/v2/apps?embed=apps.readiness").await;
    let res = &apps["apps"][0]["readinessCheckResults"][0];
    assert_eq!(res["ready"], true, "{apps}");
    assert_eq!(res["lastResponse"]["status"], 200);
    drop(m);
    cluster.shutdown().await;
}
