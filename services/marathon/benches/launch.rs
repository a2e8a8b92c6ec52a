#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Placement throughput: 1,000 apps × 10 instances against 1,000 emulated agents (the
//! real master over HTTP, real etcd), from one `POST /v2/groups` until every instance
//! runs. Prints time-to-all-running and instances/s next to the anchor (Marathon's
//! published demo ≈ 555 instances/s; target ≥ 5,000/s). Figures only, no assertions on
//! time. `MARATHON_BENCH_AGENTS`, `MARATHON_BENCH_LAUNCH_APPS`, `MARATHON_BENCH_INSTANCES`
//! change the sizes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use basalt_marathon::server::{MarathonConfig, start};
use basalt_master::MasterConfig;
use basalt_master::testing::{AgentOptions, Cluster, EmulatedAgent};
use basalt_mesos::{FrameworkId, TaskId, TaskState};
use serde_json::{Value, json};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run() {
    let n_agents = env("MARATHON_BENCH_AGENTS", 1000);
    let n_apps = env("MARATHON_BENCH_LAUNCH_APPS", 1000);
    let per_app = env("MARATHON_BENCH_INSTANCES", 10);
    let total = n_apps * per_app;
    let Some(cluster) = Cluster::start(1, 1, |c| {
        // The master runs with its production timings (the harness's are shortened for
        // fast failover tests: a 300 ms status resend would flood the scheduler with
        // duplicates at this scale), and generous liveness timeouts for 1,000
        // in-process agents on a small machine.
        let prod = MasterConfig::new(c.store.clone());
        c.election_ttl = prod.election_ttl;
        c.tick = prod.tick;
        c.status_retry_initial = prod.status_retry_initial;
        c.heartbeat_interval = prod.heartbeat_interval;
        c.agent_ping_timeout = Duration::from_secs(5);
        c.max_agent_ping_timeouts = 10;
    })
    .await
    .unwrap() else {
        println!("etcd not installed: skipped");
        return;
    };
    let leader = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    let t = Instant::now();
    // The agents do not auto-run their tasks: that spawns one HTTP update per task at
    // once, which with 1,000 agents in one process exhausts file descriptors. The
    // bench reports TASK_RUNNING for them instead, 256 updates in flight at most.
    let agents: Vec<Arc<EmulatedAgent>> = (0..n_agents)
        .map(|i| {
            let mut opts = AgentOptions::new(
                &format!("agent-{i}"),
                "cpus:4;mem:4096;disk:1000;ports:[31000-31100]",
                cluster.addresses(),
            )
            .unwrap();
            opts.auto_run = false;
            Arc::new(EmulatedAgent::start(opts))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while agents.iter().filter(|a| a.agent_id().is_some()).count() < n_agents {
        assert!(Instant::now() < deadline, "agents did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{n_agents} emulated agents registered in {:?}", t.elapsed());
    let mut cfg = MarathonConfig::new(cluster.url(leader));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let m = start(cfg, cluster.etcd.store()).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", m.addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info: Value = http
            .get(format!("{base}/v2/info"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        if info["frameworkId"].is_string() {
            break;
        }
        assert!(Instant::now() < deadline, "marathon did not subscribe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let apps: Vec<Value> = (0..n_apps)
        .map(|i| json!({"id": format!("app-{i}"), "cmd": "sleep 1000", "cpus": 0.01, "mem": 8, "instances": per_app, "portDefinitions": []}))
        .collect();
    let fid = FrameworkId::new(
        http.get(format!("{base}/v2/info"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["frameworkId"]
            .as_str()
            .unwrap(),
    );
    let runner = {
        let agents = agents.clone();
        tokio::spawn(async move {
            let mut reported: HashSet<String> = HashSet::new();
            loop {
                let staged: Vec<(Arc<EmulatedAgent>, TaskId)> = agents
                    .iter()
                    .flat_map(|a| {
                        a.task_states()
                            .into_iter()
                            .filter(|(_, s)| *s == TaskState::Staging)
                            .map(|(t, _)| (a.clone(), t))
                            .collect::<Vec<_>>()
                    })
                    .filter(|(_, t)| !reported.contains(&t.value))
                    .collect();
                for (_, t) in &staged {
                    reported.insert(t.value.clone());
                }
                let fid = fid.clone();
                futures::stream::iter(staged.into_iter().map(|(a, t)| {
                    let fid = fid.clone();
                    async move {
                        let _ = a.update(&fid, &t, TaskState::Running).await;
                    }
                }))
                .buffer_unordered(256)
                .collect::<Vec<()>>()
                .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let t0 = Instant::now();
    let r = http
        .post(format!("{base}/v2/groups"))
        .json(&json!({"id": "/bench", "apps": apps}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let accepted = t0.elapsed();
    println!("  POST /v2/groups accepted after {accepted:?}");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last_print = Instant::now();
    let mut all_launched = None;
    let on_agents = loop {
        let states: Vec<TaskState> = agents
            .iter()
            .flat_map(|a| a.task_states())
            .map(|(_, s)| s)
            .collect();
        if all_launched.is_none() && states.len() >= total {
            all_launched = Some(t0.elapsed());
            println!(
                "  all {total} tasks launched on agents after {:?}",
                t0.elapsed()
            );
        }
        let running = states.iter().filter(|s| **s == TaskState::Running).count();
        if running >= total {
            break t0.elapsed();
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            println!("  … {running}/{total} running after {:?}", t0.elapsed());
            last_print = Instant::now();
        }
        assert!(Instant::now() < deadline, "only {running}/{total} running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Marathon's own view: every instance TASK_RUNNING and the deployment done.
    println!("  all running on agents after {on_agents:?}");
    let in_marathon = loop {
        let d: Value = http
            .get(format!("{base}/v2/deployments"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if d.as_array().is_some_and(Vec::is_empty) {
            break t0.elapsed();
        }
        assert!(Instant::now() < deadline, "deployment did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    runner.abort();
    let launched: usize = agents.iter().map(|a| a.tasks().len()).sum();
    println!(
        "{n_apps} apps × {per_app} instances on {n_agents} emulated agents: POST accepted in {accepted:?}; \
         all {total} running on agents after {on_agents:?} = {:.0} instances/s; deployment finished after {in_marathon:?} = {:.0} instances/s; {launched} tasks launched \
         (anchor: Marathon demo ≈ 555 instances/s; target ≥ 5,000/s)",
        total as f64 / on_agents.as_secs_f64(),
        total as f64 / in_marathon.as_secs_f64(),
    );
    drop(m);
    drop(agents);
    cluster.shutdown().await;
}

fn main() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
