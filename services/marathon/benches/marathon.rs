#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Benchmarks: `GET /v2/apps` latency with 10,000 apps stored in real etcd, and offer
//! matching throughput. `cargo bench -p basalt-marathon` (set `MARATHON_BENCH_APPS`
//! to change the app count).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use basalt_marathon::app::AppDefinition;
use basalt_marathon::constraints::{OfferView, match_offer};
use basalt_marathon::server::{MarathonConfig, start};
use basalt_marathon::state::{Instance, Repo};
use basalt_mesos::Resource;
use basalt_store::testing::EtcdCluster;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn app(i: usize) -> AppDefinition {
    let mut a = AppDefinition::from_json(json!({"id": format!("/bench/app-{i}"), "cmd": "sleep 1000", "cpus": 0.1, "mem": 32,
        "instances": 1, "labels": {"team": format!("t{}", i % 10)}, "constraints": [["hostname", "UNIQUE"]],
        "healthChecks": [{"protocol": "MESOS_HTTP", "path": "/health"}]})).unwrap();
    a.normalize("/");
    a.version = Some(basalt_marathon::time::now());
    a
}

async fn get_apps_latency() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    let n: usize = std::env::var("MARATHON_BENCH_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let repo = Repo::new(etcd.store());
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let apps: Vec<AppDefinition> = chunk.iter().map(|i| app(*i)).collect();
        repo.commit_change(&apps, &[], None, &[]).await.unwrap();
    }
    println!("seeded {n} apps in {:?}", t.elapsed());
    let mut cfg = MarathonConfig::new("");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let m = start(cfg, etcd.store()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !m.is_leader() {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let http = reqwest::Client::new();
    let url = format!("http://{}/v2/apps", m.addr);
    let mut lat = Vec::new();
    for i in 0..210 {
        let t = Instant::now();
        let body = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        if i >= 10 {
            lat.push(t.elapsed());
        }
        assert!(body.len() > n * 100);
    }
    lat.sort();
    println!(
        "GET /v2/apps with {n} apps: p50 {:?}, p99 {:?}, max {:?} ({} samples)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
        lat.len()
    );
}

fn offer_matching() {
    let resources: Vec<Resource> = serde_json::from_value(json!([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 32}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 65536}},
        {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 32000}]}},
    ]))
    .unwrap();
    let offers: Vec<OfferView> = (0..1000)
        .map(|i| OfferView {
            hostname: format!("agent-{i}"),
            attributes: BTreeMap::from([("rack".to_string(), format!("r{}", i % 20))]),
            region: Some("r".into()),
            zone: Some(format!("z{}", i % 3)),
            resources: resources.clone(),
        })
        .collect();
    let mut a = AppDefinition::from_json(json!({"id": "/m", "cmd": "x", "cpus": 0.1, "mem": 32,
        "constraints": [["hostname", "UNIQUE"], ["@zone", "GROUP_BY", "3"], ["rack", "LIKE", "r[0-9]+"]]})).unwrap();
    a.normalize("/");
    let mut placed: Vec<Instance> = Vec::new();
    let t = Instant::now();
    let mut matched = 0u64;
    for o in &offers {
        let refs: Vec<&Instance> = placed.iter().collect();
        if let Ok(p) = match_offer(&a, o, &refs, &BTreeMap::new(), &BTreeSet::new()) {
            matched += 1;
            placed.push(Instance {
                instance_id: format!("i{matched}"),
                task_id: format!("i{matched}"),
                app_id: "/m".into(),
                version: "v".into(),
                agent_id: o.hostname.clone(),
                host: o.hostname.clone(),
                state: "TASK_RUNNING".into(),
                ports: p.ports,
                staged_at_ms: 0,
                started_at_ms: None,
                healthy: None,
                killing: false,
                region: o.region.clone(),
                zone: o.zone.clone(),
                attributes: o.attributes.clone(),
                message: None,
                unreachable_since_ms: None,
                ready: false,
                containers: Vec::new(),
            });
        }
    }
    let el = t.elapsed();
    println!(
        "offer matching (UNIQUE + GROUP_BY + LIKE, growing placement up to {matched}): {} offers in {el:?} = {:.0} offers/s",
        offers.len(),
        offers.len() as f64 / el.as_secs_f64()
    );
    // Without constraints: raw resource/port matching.
    let mut plain = a.clone();
    plain.constraints.clear();
    let t = Instant::now();
    let rounds = 200_000;
    let mut ok = 0u64;
    for i in 0..rounds {
        if match_offer(
            &plain,
            &offers[i % offers.len()],
            &[],
            &BTreeMap::new(),
            &BTreeSet::new(),
        )
        .is_ok()
        {
            ok += 1;
        }
    }
    let el = t.elapsed();
    assert_eq!(ok, rounds as u64);
    println!(
        "offer matching (resources + ports only): {rounds} in {el:?} = {:.0} matches/s",
        rounds as f64 / el.as_secs_f64()
    );
}

fn main() {
    offer_matching();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(get_apps_latency());
}
