//! Agents' l4lb without etcd: two "masters" (each a `Controller` on real etcd whose
//! `/v1/vips` feed is served from its own tokio runtime, so stopping it closes its
//! sockets like a dead process) and an agent `Follower` with a real userspace proxy in
//! front of real TCP backends on loopback. Backend changes on the masters reach the
//! agent's data path through the long-poll; master 1 dying fails over to master 2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_dns::feed::Publisher;
use basalt_dns::{ChannelSource, FeedClient, MasterState};
use basalt_l4lb::feed::{Follower, VipList};
use basalt_l4lb::{
    BindPolicy, Controller, DataPath, DataPathError, FakeInterface, L4lbConfig, ProxyConfig,
    ServiceTable, UserspaceProxy, VipAllocator,
};
use basalt_store::testing::EtcdCluster;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(10);

/// Masters here only serve the table; they do not proxy.
struct NoDataPath;

#[async_trait::async_trait]
impl DataPath for NoDataPath {
    async fn apply(&self, _: &ServiceTable) -> Result<(), DataPathError> {
        Ok(())
    }
}

async fn backend(id: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(format!("{id}\n").as_bytes()).await;
        }
    });
    addr
}

async fn hit(addr: SocketAddr) -> String {
    let s = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, BufReader::new(s).read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    line.trim().to_string()
}

fn state(backends: &[SocketAddr]) -> MasterState {
    let tasks: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"id": format!("web.{i}"), "name": "web", "slave_id": "S1", "state": "TASK_RUNNING",
               "discovery": {"name": "web", "ports": {"ports": [{"number": b.port(), "protocol": "tcp",
                  "labels": {"labels": [{"key": "VIP_0", "value": "/web:18080"}, {"key": "network-scope", "value": "host"}]}}]}}})
        })
        .collect();
    serde_json::from_value(json!({
        "slaves": [{"id": "S1", "pid": "slave(1)@127.0.0.1:5051"}],
        "frameworks": [{"id": "F1", "name": "marathon", "tasks": tasks}]
    }))
    .unwrap()
}

/// A `/v1/vips` server in its own runtime on its own thread.
struct FeedServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FeedServer {
    fn start(feed: Arc<Publisher<VipList>>) -> FeedServer {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (addr, _task) = basalt_l4lb::feed::serve(feed, "127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap();
                ready_tx.send(addr).unwrap();
                let _ = stop_rx.await;
            });
            rt.shutdown_background();
        });
        FeedServer {
            addr: ready_rx.recv().unwrap(),
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

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_follow_the_masters_vip_table_and_fail_over() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    // Two masters: each its own controller (the same etcd, so the same addresses).
    let mut txs: Vec<mpsc::Sender<MasterState>> = Vec::new();
    let mut servers: Vec<FeedServer> = Vec::new();
    for _ in 0..2 {
        let ctl = Controller::new(
            L4lbConfig::default(),
            VipAllocator::new(etcd.connect().await.unwrap(), "11.0.0.0/8".parse().unwrap()),
            Arc::new(NoDataPath),
            Arc::new(FakeInterface::default()),
        );
        let server = FeedServer::start(ctl.vip_feed());
        let (tx, source) = ChannelSource::new(4);
        tokio::spawn(ctl.run(source));
        txs.push(tx);
        servers.push(server);
    }
    let ip = VipAllocator::new(etcd.connect().await.unwrap(), "11.0.0.0/8".parse().unwrap())
        .allocate("web.marathon")
        .await
        .unwrap();
    let vip = SocketAddr::new(IpAddr::V4(ip), 18080);

    // The agent.
    let proxy = Arc::new(UserspaceProxy::new(ProxyConfig {
        bind: BindPolicy::Loopback,
        ..ProxyConfig::default()
    }));
    let iface = Arc::new(FakeInterface::default());
    let follower = Follower::new(proxy.clone(), iface.clone());
    let mut applied = follower.applied();
    let mut client = FeedClient::new(
        &[servers[0].addr.to_string(), servers[1].addr.to_string()],
        "/v1/vips",
    )
    .unwrap();
    client.retry_delay = Duration::from_millis(100);
    tokio::spawn(follower.run(client));

    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let send_all = |s: MasterState, to: &[usize]| {
        let to: Vec<_> = to.iter().map(|i| txs[*i].clone()).collect();
        async move {
            for tx in to {
                tx.send(s.clone()).await.unwrap();
            }
        }
    };
    let spread = |n: usize| async move {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            *seen.entry(hit(proxy_addr(vip)).await).or_insert(0usize) += 1;
        }
        seen
    };

    // Backends a, b: the agent serves the VIP within one feed round trip.
    let t0 = Instant::now();
    send_all(state(&[a, b]), &[0, 1]).await;
    tokio::time::timeout(DEADLINE, async {
        loop {
            applied.changed().await.unwrap();
            if proxy.bound_addr(vip).await.is_some() {
                break;
            }
        }
    })
    .await
    .expect("the agent serves the VIP");
    println!(
        "VIP created on the masters -> live on the agent: {:?}",
        t0.elapsed()
    );
    assert_eq!(iface.addresses(), [vip.ip()].into());
    let seen = spread(20).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "b"], "{seen:?}");

    // b leaves: once the agent applied the new table, no new connection reaches b.
    let mut latencies = Vec::new();
    for (round, set) in [vec![a], vec![a, b], vec![a]].into_iter().enumerate() {
        let before = *applied.borrow();
        let t0 = Instant::now();
        send_all(state(&set), &[0, 1]).await;
        tokio::time::timeout(DEADLINE, applied.wait_for(|n| *n > before))
            .await
            .unwrap()
            .unwrap();
        latencies.push(t0.elapsed());
        let seen = spread(10).await;
        let want: Vec<&str> = if set.len() == 1 {
            vec!["a"]
        } else {
            vec!["a", "b"]
        };
        assert_eq!(
            seen.keys().map(String::as_str).collect::<Vec<_>>(),
            want,
            "round {round}: {seen:?}"
        );
    }
    println!("backend change on the masters -> applied on the agent: {latencies:?}");

    // Master 1 dies; the change is applied on master 2 only and still arrives.
    servers[0].kill();
    let t0 = Instant::now();
    send_all(state(&[c]), &[1]).await;
    let deadline = Instant::now() + DEADLINE;
    while !spread(1).await.contains_key("c") {
        assert!(
            Instant::now() < deadline,
            "the change from master 2 never arrived"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), applied.changed()).await;
    }
    println!(
        "change after master 1 died -> applied on the agent: {:?}",
        t0.elapsed()
    );
    let seen = spread(10).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["c"], "{seen:?}");
}

fn proxy_addr(vip: SocketAddr) -> SocketAddr {
    BindPolicy::Loopback.bind_addr(vip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vip_feed_serves_dcos_nets_shape_and_rejects_bad_queries() {
    let feed: Arc<Publisher<VipList>> = Arc::new(Publisher::new());
    let server = FeedServer::start(feed.clone());
    let base = format!("http://{}/v1/vips", server.addr);
    let http = reqwest::Client::new();
    let r = http.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-basalt-revision"], "0");
    let held = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move { http.get(format!("{base}?wait=0")).send().await.unwrap() }
    });
    let list: VipList = serde_json::from_value(json!([
        {"vip": "web.marathon.l4lb.thisdcos.directory:80", "protocol": "tcp",
         "backend": [{"ip": "10.0.0.2", "port": 31000}], "ip": "11.1.2.3"}]))
    .unwrap();
    feed.publish(Arc::new(list));
    let r = tokio::time::timeout(DEADLINE, held).await.unwrap().unwrap();
    assert_eq!(r.headers()["x-basalt-revision"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body[0]["vip"], "web.marathon.l4lb.thisdcos.directory:80");
    assert_eq!(body[0]["backend"][0]["port"], 31000);
    for q in [
        "wait=x",
        "timeout=-3&wait=1",
        "wait=99999999999999999999999",
    ] {
        let r = http.get(format!("{base}?{q}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
    }
    assert_eq!(http.get(&base).send().await.unwrap().status(), 200);
}
