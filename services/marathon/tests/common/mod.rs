//! Helpers shared by Marathon's cluster tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns `Some`, failing the test after `secs` seconds.
pub async fn wait<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Marathon configuration for tests: a free loopback port, a 2 s election TTL.
pub fn marathon_config(master: impl Into<String>) -> basalt_marathon::server::MarathonConfig {
    let mut cfg = basalt_marathon::server::MarathonConfig::new(master);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.election_ttl = Duration::from_secs(2);
    cfg
}

/// Starts an emulated agent `name` offering `resources` and waits until it registered.
/// `auto_run`: whether launched tasks report TASK_RUNNING by themselves.
pub async fn agent(
    cluster: &basalt_master::testing::Cluster,
    name: &str,
    resources: &str,
    auto_run: bool,
) -> basalt_master::testing::EmulatedAgent {
    let mut opts =
        basalt_master::testing::AgentOptions::new(name, resources, cluster.addresses()).unwrap();
    opts.auto_run = auto_run;
    let a = basalt_master::testing::EmulatedAgent::start(opts);
    a.wait_registered(1, Duration::from_secs(20)).await.unwrap();
    a
}

/// `n` running agents named `agent-<i>`, each offering `resources`.
pub async fn agents(
    cluster: &basalt_master::testing::Cluster,
    n: usize,
    resources: &str,
    auto_run: bool,
) -> Vec<basalt_master::testing::EmulatedAgent> {
    let mut list = Vec::new();
    for i in 0..n {
        list.push(agent(cluster, &format!("agent-{i}"), resources, auto_run).await);
    }
    list
}

/// Sends `method path` (with a JSON `body`) to the Marathon at `base`; the status, the
/// headers and the body as JSON (a non-JSON body as a JSON string).
pub async fn send(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut rb = http.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, headers, json)
}
