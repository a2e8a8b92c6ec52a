//! Real etcd (`basalt_store::testing::EtcdCluster`) and real TCP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_dns::{ChannelSource, DnsConfig, DnsServer, MasterState};
use basalt_l4lb::{
    AllocError, Balance, BindPolicy, Controller, FakeInterface, L4lbConfig, ProxyConfig,
    UserspaceProxy, VipAllocator, VipEndpoint,
};
use basalt_store::testing::EtcdCluster;
use ipnet::Ipv4Net;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(10);

/// A backend that answers each connection with `<id>\n`, then echoes lines.
async fn echo_backend(id: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if s.write_all(format!("{id}\n").as_bytes()).await.is_err() {
                    return;
                }
                let (r, mut w) = s.split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A loopback port nothing listens on.
async fn refusing_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Connects through the VIP and returns the backend id and the open connection.
async fn hit(addr: SocketAddr) -> (String, BufReader<TcpStream>) {
    let s = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, r.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    (line.trim().to_string(), r)
}

fn state(vip: &str, backends: &[SocketAddr]) -> MasterState {
    let tasks: Vec<_> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"id": format!("echo.{i}"), "name": "echo", "slave_id": "S1", "state": "TASK_RUNNING",
               "resources": {"ports": format!("[{0}-{0}]", b.port())},
               "discovery": {"name": "echo", "ports": {"ports": [{"number": b.port(), "protocol": "tcp",
                  "labels": {"labels": [{"key": "VIP_0", "value": vip}, {"key": "network-scope", "value": "host"}]}}]}}})
        })
        .collect();
    serde_json::from_value(json!({
        "leader": "master@127.0.0.1:5050",
        "slaves": [{"id": "S1", "pid": "slave(1)@127.0.0.1:5051", "hostname": "a1"}],
        "frameworks": [{"id": "F1", "name": "marathon", "tasks": tasks}]
    }))
    .unwrap()
}

fn range(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_is_stable_across_restarts() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    let a = VipAllocator::new(etcd.connect().await.unwrap(), range("11.0.0.0/8"));
    let ip = a.allocate("web.marathon").await.unwrap();
    assert_eq!(ip, a.first_choice("web.marathon"));
    let other = a.allocate("db.marathon").await.unwrap();
    assert_ne!(ip, other);
    drop(a);
    // A "restarted" allocator on a new connection gets the same addresses.
    let b = VipAllocator::new(etcd.connect().await.unwrap(), range("11.0.0.0/8"));
    assert_eq!(b.allocate("web.marathon").await.unwrap(), ip);
    assert_eq!(b.allocate("db.marathon").await.unwrap(), other);
    assert_eq!(
        b.list().await.unwrap(),
        BTreeMap::from([
            ("web.marathon".to_string(), ip),
            ("db.marathon".to_string(), other)
        ])
    );
    // Released and asked for again: the same deterministic first choice.
    assert!(b.release("web.marathon").await.unwrap());
    assert!(!b.release("web.marathon").await.unwrap());
    assert_eq!(b.allocate("web.marathon").await.unwrap(), ip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_allocators_never_share_names_or_addresses() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    // 6 usable addresses for 6 names: every probe collides with the other allocator.
    let r = range("11.0.0.0/29");
    let names: Vec<String> = (0..6).map(|i| format!("app{i}.marathon")).collect();
    let mut runs = Vec::new();
    for rev in [false, true] {
        let a = VipAllocator::new(etcd.connect().await.unwrap(), r);
        let mut order = names.clone();
        if rev {
            order.reverse();
        }
        runs.push(tokio::spawn(async move {
            let mut got = BTreeMap::new();
            for n in order {
                got.insert(n.clone(), a.allocate(&n).await.unwrap());
            }
            got
        }));
    }
    let first = runs.remove(0).await.unwrap();
    let second = runs.remove(0).await.unwrap();
    assert_eq!(first, second, "both allocators see one address per name");
    let distinct: BTreeSet<_> = first.values().collect();
    assert_eq!(distinct.len(), 6, "no address is given twice: {first:?}");
    assert!(
        first
            .values()
            .all(|ip| r.contains(ip) && *ip != r.network() && *ip != r.broadcast())
    );
    let a = VipAllocator::new(etcd.connect().await.unwrap(), r);
    match a.allocate("one-too-many.marathon").await {
        Err(e @ AllocError::Exhausted { .. }) => {
            assert!(e.to_string().contains("one-too-many.marathon"), "{e}");
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
}

struct Setup {
    proxy: Arc<UserspaceProxy>,
    tx: tokio::sync::mpsc::Sender<MasterState>,
    applied: tokio::sync::watch::Receiver<u64>,
    allocator: VipAllocator,
    iface: Arc<FakeInterface>,
    dns: DnsServer,
    _etcd: EtcdCluster,
}

async fn setup(balance: Balance) -> Option<Setup> {
    let etcd = EtcdCluster::start(1).await.unwrap()?;
    let allocator = VipAllocator::new(etcd.connect().await.unwrap(), range("11.0.0.0/8"));
    let proxy = Arc::new(UserspaceProxy::new(ProxyConfig {
        balance,
        connect_timeout: Duration::from_secs(2),
        bind: BindPolicy::Loopback,
        ..ProxyConfig::default()
    }));
    let iface = Arc::new(FakeInterface::default());
    let dns = DnsServer::new(DnsConfig::default()).unwrap();
    let controller = Controller::new(
        L4lbConfig::default(),
        allocator.clone(),
        proxy.clone(),
        iface.clone(),
    )
    .publish_to(Arc::new(dns.clone()));
    let applied = controller.applied();
    let (tx, source) = ChannelSource::new(4);
    tokio::spawn(controller.run(source));
    Some(Setup {
        proxy,
        tx,
        applied,
        allocator,
        iface,
        dns,
        _etcd: etcd,
    })
}

impl Setup {
    /// Sends a state and waits (with a deadline) until its table is live.
    async fn apply(&mut self, s: MasterState) {
        let before = *self.applied.borrow();
        self.dns.apply_state(s.clone()).unwrap();
        self.tx.send(s).await.unwrap();
        tokio::time::timeout(DEADLINE, self.applied.wait_for(|n| *n > before))
            .await
            .expect("state applied in time")
            .unwrap();
    }

    async fn vip_listen_addr(&self, key: &str, port: u16) -> SocketAddr {
        let ip = self.allocator.allocate(key).await.unwrap();
        self.proxy
            .bound_addr(SocketAddr::new(IpAddr::V4(ip), port))
            .await
            .expect("VIP served")
    }
}

async fn ids(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        *seen.entry(hit(addr).await.0).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_spreads_drops_removed_and_skips_refusing_backends() {
    let Some(mut s) = setup(Balance::RoundRobin).await else {
        return;
    };
    let (a, b, c) = (
        echo_backend("a").await,
        echo_backend("b").await,
        echo_backend("c").await,
    );
    s.apply(state("/echo:17001", &[a, b, c])).await;
    let vip = s.vip_listen_addr("echo.marathon", 17001).await;
    let ip = s.allocator.allocate("echo.marathon").await.unwrap();
    assert!(range("11.0.0.0/8").contains(&ip));
    assert_eq!(s.iface.addresses(), BTreeSet::from([IpAddr::V4(ip)]));
    // The DNS server got the allocated address for the VIP name.
    let idx = s.dns.index();
    assert_eq!(
        idx.records().vip_a["echo.marathon.l4lb.thisdcos.directory."],
        BTreeSet::from([ip])
    );

    let seen = ids(vip, 30).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "b", "c"], "{seen:?}");
    assert!(seen.values().all(|n| *n >= 5), "{seen:?}");

    // Hold a connection to b, then remove b from the state.
    let mut held = loop {
        let (id, conn) = hit(vip).await;
        if id == "b" {
            break conn;
        }
    };
    s.apply(state("/echo:17001", &[a, c])).await;
    let seen = ids(vip, 30).await;
    assert!(
        !seen.contains_key("b"),
        "removed backend got a new connection: {seen:?}"
    );
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "c"]);
    // The existing connection to b still works.
    held.get_mut().write_all(b"still here\n").await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, held.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line, "still here\n");

    // A backend refusing connections is skipped: every connection still lands.
    let dead = refusing_port().await;
    s.apply(state("/echo:17001", &[dead, a, c])).await;
    let seen = ids(vip, 30).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "c"], "{seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 30);
    let failures = s
        .proxy
        .metrics()
        .connect_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        failures >= 5,
        "the dead backend was tried and skipped ({failures})"
    );
    assert!(
        s.proxy
            .metrics()
            .render()
            .contains("l4lb_proxy_connect_failures_total")
    );

    // No task left: the VIP stops being served.
    s.apply(state("/echo:17001", &[])).await;
    assert!(
        s.proxy
            .bound_addr(SocketAddr::new(IpAddr::V4(ip), 17001))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_picks_the_idle_backend() {
    let Some(mut s) = setup(Balance::LeastConnections).await else {
        return;
    };
    let (a, b, c) = (
        echo_backend("a").await,
        echo_backend("b").await,
        echo_backend("c").await,
    );
    // Four long connections on a alone, then b and c join.
    s.apply(state("/lc:17002", &[a])).await;
    let vip = s.vip_listen_addr("lc.marathon", 17002).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let (id, conn) = hit(vip).await;
        assert_eq!(id, "a");
        held.push(conn);
    }
    s.apply(state("/lc:17002", &[a, b, c])).await;
    // Every new (held) connection goes to the least loaded: b and c until they catch up.
    let mut seen = BTreeMap::new();
    for _ in 0..8 {
        let (id, conn) = hit(vip).await;
        *seen.entry(id).or_insert(0) += 1;
        held.push(conn);
    }
    assert_eq!(
        seen,
        BTreeMap::from([("b".to_string(), 4), ("c".to_string(), 4)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vips_without_backends_are_released_after_the_grace_period_and_bad_labels_reported() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    let allocator = VipAllocator::new(etcd.connect().await.unwrap(), range("11.0.0.0/8"));
    let proxy = Arc::new(UserspaceProxy::new(ProxyConfig {
        bind: BindPolicy::Loopback,
        ..ProxyConfig::default()
    }));
    let mut ctl = Controller::new(
        L4lbConfig {
            release_grace: Some(Duration::ZERO),
            ..L4lbConfig::default()
        },
        allocator.clone(),
        proxy.clone(),
        Arc::new(FakeInterface::default()),
    );
    let a = echo_backend("a").await;
    let mut st = state("/gc:17003", &[a]);
    // A second port with bad labels on the same task.
    let bad = serde_json::from_value(json!({"number": 1, "labels": {"labels": [
        {"key": "VIP_1", "value": "/noport"}, {"key": "VIP_2", "value": "/big:65536"}]}}))
    .unwrap();
    st.frameworks[0].tasks[0]
        .discovery
        .as_mut()
        .unwrap()
        .ports
        .as_mut()
        .unwrap()
        .ports
        .push(bad);
    let out = ctl.apply_state(&st).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let msgs: Vec<String> = out.label_errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].contains("VIP_1") && msgs[0].contains("no port"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("VIP_2") && msgs[1].contains("65536"),
        "{msgs:?}"
    );
    let ip = out.addresses["gc.marathon"];
    let ep = VipEndpoint {
        addr: SocketAddr::new(IpAddr::V4(ip), 17003),
        protocol: basalt_l4lb::Protocol::Tcp,
    };
    assert_eq!(out.table[&ep], vec![a]);
    assert_eq!(allocator.list().await.unwrap().len(), 1);
    // The task is gone: with a zero grace period the address is freed at once.
    let out = ctl.apply_state(&state("/gc:17003", &[])).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.addresses.is_empty());
    assert!(allocator.list().await.unwrap().is_empty());
}
