//! End to end with real etcd: a test "master" serves `/master/state` and is found
//! through the etcd election; writes under `master/` trigger a fetch and the DNS answer
//! changes, with no polling period.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use basalt_dns::{DnsConfig, EtcdWatchSource, MasterEndpoints, Service};
use basalt_store::testing::EtcdCluster;
use basalt_store::{Election, Key};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct FakeMaster {
    state: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    /// While `true`, `/master/state` requests wait (a slow master).
    hold: Arc<tokio::sync::watch::Sender<bool>>,
}

async fn master_state(State(m): State<FakeMaster>) -> axum::Json<Value> {
    // The answer is the state as of the request; a held request answers late.
    let snapshot = m.state.lock().unwrap().clone();
    m.fetches.fetch_add(1, Ordering::SeqCst);
    let mut rx = m.hold.subscribe();
    let _ = rx.wait_for(|held| !*held).await;
    axum::Json(snapshot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_change_notifications_drive_the_answers() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    let store = etcd.store();

    let master = FakeMaster {
        state: Arc::new(Mutex::new(state(2, vec![]))),
        fetches: Arc::new(AtomicUsize::new(0)),
        hold: Arc::new(tokio::sync::watch::channel(false).0),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let master_addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/master/state", get(master_state))
        .with_state(master.clone());
    let http = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // The source finds the leading master through the etcd election.
    let _leadership = Election::campaign(
        &store,
        "master",
        &master_addr.to_string(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();

    let source = EtcdWatchSource::new(
        store.clone(),
        MasterEndpoints {
            election_service: Some("master".into()),
            urls: vec![],
        },
    )
    .unwrap();
    let cfg = DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..DnsConfig::default()
    };
    let svc = Service::start(cfg, source).await.unwrap();
    let dns = svc.listeners.addrs[0];

    // The initial fetch.
    eventually("leader.mesos from the first fetch", || async {
        let m = udp_query(dns, "leader.mesos.", RecordType::A, None).await;
        (a_ips(&m) == ["10.0.0.1"]).then_some(())
    })
    .await;

    let mut latencies = Vec::new();
    for round in 0..5 {
        // TASK_RUNNING: the master updates its state, then writes the task key.
        let id = format!("web.{round}");
        *master.state.lock().unwrap() = state(
            2,
            vec![task(
                &id,
                "web",
                &agent_id(round % 2),
                "TASK_RUNNING",
                31000,
            )],
        );
        let key = Key::task("fw-marathon", &id).unwrap();
        let t0 = Instant::now();
        store
            .put(&key, &json!({"state": "TASK_RUNNING"}))
            .await
            .unwrap();
        let want = agent_ip(round % 2);
        eventually("the task's A record", || async {
            let m = udp_query(dns, "web.marathon.mesos.", RecordType::A, None).await;
            (a_ips(&m) == [want.clone()]).then_some(())
        })
        .await;
        latencies.push(t0.elapsed());

        // The task ends: the name goes away.
        *master.state.lock().unwrap() = state(2, vec![]);
        let t0 = Instant::now();
        store.delete(&key).await.unwrap();
        eventually("NXDOMAIN after the task ended", || async {
            let m = udp_query(dns, "web.marathon.mesos.", RecordType::A, None).await;
            (m.metadata.response_code == ResponseCode::NXDomain).then_some(())
        })
        .await;
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    println!(
        "etcd write -> DNS answer: min {:?}, median {:?}, max {:?} ({} changes)",
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );

    // A burst of 30 task writes while a fetch is in flight (the master is slow): they
    // all fold into one pending fetch.
    let mut probe = store
        .watch::<serde::de::IgnoredAny>(&basalt_store::Prefix::tasks(), 0)
        .await
        .unwrap();
    master.hold.send_replace(true);
    let before = master.fetches.load(Ordering::SeqCst);
    let tasks: Vec<Value> = (0..30)
        .map(|i| {
            task(
                &format!("burst.{i}"),
                "burst",
                &agent_id(i % 2),
                "TASK_RUNNING",
                32000,
            )
        })
        .collect();
    *master.state.lock().unwrap() = state(2, tasks[..1].to_vec());
    let put = |i: usize| {
        let store = store.clone();
        async move {
            store
                .put(
                    &Key::task("fw-marathon", &format!("burst.{i}")).unwrap(),
                    &json!({"state": "TASK_RUNNING"}),
                )
                .await
                .unwrap()
        }
    };
    put(0).await;
    eventually("the first fetch in flight", || async {
        (master.fetches.load(Ordering::SeqCst) > before).then_some(())
    })
    .await;
    *master.state.lock().unwrap() = state(2, tasks);
    futures::future::join_all((1..30).map(put)).await;
    // Our own watch has seen all 30 events, so etcd has sent them to the source too.
    let mut seen = 0;
    while seen < 30 {
        tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut probe))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen += 1;
    }
    master.hold.send_replace(false);
    eventually("the burst's records", || async {
        let m = udp_query(dns, "burst.marathon.mesos.", RecordType::A, None).await;
        (a_ips(&m) == [agent_ip(0), agent_ip(1)]).then_some(())
    })
    .await;
    let burst_fetches = master.fetches.load(Ordering::SeqCst) - before;
    println!("30 task writes during a slow fetch caused {burst_fetches} /master/state fetches");
    // 2 = the one in flight + the one pending; a watch event that reaches the source
    // after our probe saw it (after the release) can add a third.
    assert!(burst_fetches <= 3, "{burst_fetches} fetches for 30 writes");

    svc.shutdown().await;
    http.abort();
}
