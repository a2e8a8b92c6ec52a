//! Agents' DNS without etcd: two "masters" (real `Service`s with the HTTP API, each in
//! its own tokio runtime so that stopping one closes its sockets like a dead process)
//! serve `GET /v1/state`; the agent's `Service` follows them with `FeedSource`. A change
//! applied on the masters reaches the agent's DNS answers through the long-poll; killing
//! the first master fails over to the second; with both gone the Mesos-DNS poll of
//! `/master/state` takes over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::Router;
use axum::routing::get;
use basalt_dns::{ChannelSource, DnsConfig, FeedClient, FeedSource, MasterState, Service};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A master-side DNS service in its own runtime on its own thread.
struct RemoteMaster {
    http: SocketAddr,
    tx: mpsc::Sender<MasterState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RemoteMaster {
    fn start() -> RemoteMaster {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (tx, source) = ChannelSource::new(4);
                let cfg = DnsConfig {
                    listen: vec!["127.0.0.1:0".parse().unwrap()],
                    http_listen: Some("127.0.0.1:0".parse().unwrap()),
                    ..DnsConfig::default()
                };
                let svc = Service::start(cfg, source).await.unwrap();
                ready_tx.send((svc.http_addr.unwrap(), tx)).unwrap();
                let _ = stop_rx.await;
                drop(svc);
            });
            // Dropping the runtime drops every connection task: sockets close.
            rt.shutdown_background();
        });
        let (http, tx) = ready_rx.recv().unwrap();
        RemoteMaster {
            http,
            tx,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for RemoteMaster {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse(v: Value) -> MasterState {
    serde_json::from_value(v).unwrap()
}

fn with_web(ids: &[usize]) -> MasterState {
    parse(state(
        3,
        ids.iter()
            .map(|i| {
                task(
                    &format!("web.{i}"),
                    "web",
                    &agent_id(*i),
                    "TASK_RUNNING",
                    31000,
                )
            })
            .collect(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_follow_the_masters_state_feed_and_fail_over() {
    let mut m1 = RemoteMaster::start();
    let mut m2 = RemoteMaster::start();
    // The Mesos-DNS fallback: a plain `/master/state` server, used only when no feed
    // server answers.
    let fallback_state = Arc::new(Mutex::new(state(3, vec![])));
    let fs = fallback_state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fallback_addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/master/state",
        get(move || {
            let fs = fs.clone();
            async move { axum::Json(fs.lock().unwrap().clone()) }
        }),
    );
    let fallback = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut feed =
        FeedClient::new(&[m1.http.to_string(), m2.http.to_string()], "/v1/state").unwrap();
    feed.retry_delay = Duration::from_millis(100);
    let source = FeedSource::new(
        feed,
        vec![fallback_addr.to_string()],
        Duration::from_secs(1),
    );
    let agent = Service::start(
        DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..DnsConfig::default()
        },
        source,
    )
    .await
    .unwrap();
    let dns = agent.listeners.addrs[0];

    let apply_both = |s: MasterState| {
        let (t1, t2) = (m1.tx.clone(), m2.tx.clone());
        async move {
            let _ = t1.send(s.clone()).await;
            let _ = t2.send(s).await;
        }
    };
    // Changes on the masters reach the agent's answers.
    let mut latencies = Vec::new();
    for round in 0..10usize {
        let ids: Vec<usize> = (0..=round % 3).collect();
        let t0 = Instant::now();
        apply_both(with_web(&ids)).await;
        let want: Vec<String> = ids.iter().map(|i| agent_ip(*i)).collect();
        eventually("the agent's answer to follow the masters", || async {
            let m = udp_query(dns, "web.marathon.mesos.", RecordType::A, None).await;
            (a_ips(&m) == want).then_some(())
        })
        .await;
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    println!(
        "master state applied -> agent DNS answer: min {:?}, p50 {:?}, max {:?} ({} changes)",
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );

    // Master 1 goes away: the agent follows master 2.
    m1.kill();
    let t0 = Instant::now();
    m2.tx.send(with_web(&[2])).await.unwrap();
    eventually("the answer after failing over to master 2", || async {
        let m = udp_query(dns, "web.marathon.mesos.", RecordType::A, None).await;
        (a_ips(&m) == [agent_ip(2)]).then_some(())
    })
    .await;
    println!(
        "change after master 1 died -> agent answer: {:?}",
        t0.elapsed()
    );

    // Both gone: the /master/state poll (every second here) keeps the agent current.
    m2.kill();
    *fallback_state.lock().unwrap() = state(3, vec![]);
    eventually("NXDOMAIN from the fallback poll", || async {
        let m = udp_query(dns, "web.marathon.mesos.", RecordType::A, None).await;
        (m.metadata.response_code == ResponseCode::NXDomain).then_some(())
    })
    .await;

    agent.shutdown().await;
    fallback.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_feed_long_polls_and_rejects_bad_queries() {
    let m = RemoteMaster::start();
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/state", m.http);
    // Nothing applied yet: `null` at revision 0.
    let r = http.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-basalt-revision"], "0");
    assert_eq!(r.text().await.unwrap(), "null");
    // A held request answers with the next state.
    let held = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}?wait=0&timeout=60"))
                .send()
                .await
                .unwrap()
        }
    });
    m.tx.send(with_web(&[0])).await.unwrap();
    let r = tokio::time::timeout(DEADLINE, held).await.unwrap().unwrap();
    assert_eq!(r.headers()["x-basalt-revision"], "1");
    let got: MasterState = r.json().await.unwrap();
    assert_eq!(got, with_web(&[0]));
    // The same state again is no change: the hold runs out (1 s) at revision 1.
    m.tx.send(with_web(&[0])).await.unwrap();
    let r = http
        .get(format!("{base}?wait=1&timeout=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-basalt-revision"], "1");
    // Malformed queries: 400, and the server keeps serving.
    for q in ["wait=abc", "wait=-1", "timeout=x&wait=1"] {
        let r = http.get(format!("{base}?{q}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
    }
    let r = http.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
