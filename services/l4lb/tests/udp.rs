//! The userspace UDP data path with real sockets on loopback: per-client-flow backend
//! affinity, spreading over flows, removed backends, idle expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_l4lb::{
    BindPolicy, DataPath, Protocol, ProxyConfig, ServiceTable, UserspaceProxy, VipEndpoint,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const DEADLINE: Duration = Duration::from_secs(10);

/// A UDP backend answering each datagram with `<id>:<payload>`.
async fn backend(id: &'static str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let mut reply = format!("{id}:").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from).await;
        }
    });
    addr
}

/// Sends `msg` from `client` and returns the backend id of the reply (datagrams may be
/// lost: retried until the deadline).
async fn ask(client: &UdpSocket, to: SocketAddr, msg: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = [0u8; 1500];
    loop {
        client.send_to(msg.as_bytes(), to).await.unwrap();
        // Read until our reply (earlier datagrams' replies may come first) or a timeout.
        while let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf)).await
        {
            assert_eq!(from, to, "the reply comes from the VIP address");
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let (id, echoed) = text.split_once(':').unwrap();
            if echoed == msg {
                return id.to_string();
            }
        }
        assert!(Instant::now() < deadline, "no UDP reply through the VIP");
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_stick_to_a_backend_spread_and_expire() {
    let proxy = UserspaceProxy::new(ProxyConfig {
        bind: BindPolicy::Loopback,
        udp_idle_timeout: Duration::from_secs(1),
        ..ProxyConfig::default()
    });
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let ep = VipEndpoint {
        addr: "11.7.7.7:5353".parse().unwrap(),
        protocol: Protocol::Udp,
    };
    let tcp_twin = VipEndpoint {
        protocol: Protocol::Tcp,
        ..ep
    };
    let table = |b: Vec<SocketAddr>| ServiceTable::from([(ep, b)]);
    proxy.apply(&table(vec![a, b, c])).await.unwrap();
    let vip = proxy.bound(ep).await.expect("UDP VIP served");
    assert!(proxy.bound(tcp_twin).await.is_none(), "UDP only");

    // Each client flow sticks to one backend; flows spread over all three.
    let mut clients = Vec::new();
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..9 {
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = ask(&c, vip, &format!("hello {i}")).await;
        for j in 0..5 {
            assert_eq!(
                ask(&c, vip, &format!("again {i}.{j}")).await,
                first,
                "affinity"
            );
        }
        *per_backend.entry(first.clone()).or_default() += 1;
        clients.push((c, first));
    }
    assert_eq!(per_backend.len(), 3, "{per_backend:?}");
    let m = proxy.metrics();
    // (Unless a flow already idled out on a very slow host.)
    let none_expired = || m.udp_flows_expired.load(Ordering::Relaxed) == 0;
    if none_expired() {
        assert_eq!(m.udp_flows.load(Ordering::Relaxed), 9);
    }

    // b leaves: flows pinned to b move on with their next datagram; others stay put.
    proxy.apply(&table(vec![a, c])).await.unwrap();
    for (c, first) in &clients {
        let now = ask(c, vip, "after").await;
        if first == "b" {
            assert_ne!(now, "b", "a removed backend got a datagram");
        } else if none_expired() {
            assert_eq!(&now, first, "unaffected flows keep their backend");
        }
    }

    // Idle flows expire.
    wait_until("idle flows to expire", || {
        m.udp_flows.load(Ordering::Relaxed) == 0
    })
    .await;
    assert!(m.udp_flows_expired.load(Ordering::Relaxed) >= 9);
    assert!(m.render().contains("l4lb_proxy_udp_flows 0"));

    // Garbage and an empty datagram are forwarded as they are; the VIP keeps serving.
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.send_to(&[], vip).await.unwrap();
    c.send_to(&[0xff; 1400], vip).await.unwrap();
    let seen: BTreeSet<String> = [ask(&c, vip, "x").await].into();
    assert!(seen.is_subset(&["a".to_string(), "c".to_string()].into()));

    // No backend left: datagrams are dropped, counted, and nothing breaks.
    proxy.apply(&table(vec![])).await.unwrap();
    let before = m.no_backend.load(Ordering::Relaxed);
    let lonely = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    lonely.send_to(b"anyone?", vip).await.unwrap();
    wait_until("the datagram to be counted as dropped", || {
        m.no_backend.load(Ordering::Relaxed) > before
    })
    .await;
    // The VIP gone from the table: its socket is closed.
    proxy.apply(&ServiceTable::new()).await.unwrap();
    assert!(proxy.bound(ep).await.is_none());
}
