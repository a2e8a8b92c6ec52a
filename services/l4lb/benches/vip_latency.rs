//! VIP latency overhead of the userspace proxy against a direct connection, on
//! loopback: request/response round trips on one open connection, and connect + first
//! byte. Bounded: `L4LB_BENCH_ITERS` (default 2000) round trips, 200 connects.
//!
//! `cargo bench -p basalt-l4lb --bench vip_latency`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_l4lb::{
    BindPolicy, DataPath, Protocol, ProxyConfig, ServiceTable, UserspaceProxy, VipEndpoint,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

async fn round_trips(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut out = Vec::with_capacity(n);
    let mut buf = [0u8; 8];
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(b"ping0000").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        out.push(t.elapsed());
    }
    out
}

async fn connects(addr: SocketAddr, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    let mut buf = [0u8; 1];
    for _ in 0..n {
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(b"x").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        out.push(t.elapsed());
    }
    out
}

fn report(what: &str, direct: Vec<Duration>, vip: Vec<Duration>) {
    let (d50, d99) = (pct(direct.clone(), 0.5), pct(direct, 0.99));
    let (v50, v99) = (pct(vip.clone(), 0.5), pct(vip, 0.99));
    println!(
        "{what}: direct p50 {d50:?} p99 {d99:?} | VIP p50 {v50:?} p99 {v99:?} | overhead p50 {:?}",
        v50.saturating_sub(d50)
    );
}

fn main() {
    let iters: usize = std::env::var("L4LB_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = echo().await;
        // An IP VIP 11.0.0.1:<free port>, served on 127.0.0.1 through BindPolicy::Loopback.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let vip: SocketAddr = SocketAddr::from(([11, 0, 0, 1], port));
        let proxy = UserspaceProxy::new(ProxyConfig {
            bind: BindPolicy::Loopback,
            ..ProxyConfig::default()
        });
        let table: ServiceTable = BTreeMap::from([(
            VipEndpoint {
                addr: vip,
                protocol: Protocol::Tcp,
            },
            vec![backend],
        )]);
        proxy.apply(&table).await.unwrap();
        let via = proxy.bound_addr(vip).await.unwrap();
        // Warm up both paths.
        round_trips(backend, 100).await;
        round_trips(via, 100).await;
        report(
            "round trip (8 B)",
            round_trips(backend, iters).await,
            round_trips(via, iters).await,
        );
        report(
            "connect + first byte",
            connects(backend, 200).await,
            connects(via, 200).await,
        );
    });
}
