//! The DNS server over real sockets on loopback: answers, state swaps, forwarding,
//! truncation and garbage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_dns::{ChannelSource, DnsConfig, MasterState, Service};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn config(resolvers: Vec<String>) -> DnsConfig {
    DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        resolvers,
        forward_timeout_ms: 1000,
        masters: vec!["10.0.0.1:5050".into(), "10.0.0.2:5050".into()],
        ..DnsConfig::default()
    }
}

async fn start(cfg: DnsConfig) -> (Service, mpsc::Sender<MasterState>, SocketAddr) {
    let (tx, source) = ChannelSource::new(8);
    let svc = Service::start(cfg, source).await.unwrap();
    let addr = svc.listeners.addrs[0];
    (svc, tx, addr)
}

fn nginx_state(n: usize) -> MasterState {
    let tasks = (0..n)
        .map(|i| {
            task(
                &format!("nginx.{i}"),
                "nginx",
                &agent_id(i),
                "TASK_RUNNING",
                31000 + i as u16,
            )
        })
        .collect();
    serde_json::from_value(state(n.max(1), tasks)).unwrap()
}

async fn push(tx: &mpsc::Sender<MasterState>, s: MasterState, svc: &Service) {
    let before = svc.server.metrics().state_updates();
    tx.send(s).await.unwrap();
    eventually("state applied", || async {
        (svc.server.metrics().state_updates() > before).then_some(())
    })
    .await;
}

fn resolver(addr: SocketAddr) -> Resolver<TokioRuntimeProvider> {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
    let mut b = Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], vec![ns]),
        TokioRuntimeProvider::default(),
    );
    b.options_mut().cache_size = 0;
    b.options_mut().attempts = 3;
    b.options_mut().timeout = Duration::from_secs(2);
    b.build().unwrap()
}

#[tokio::test]
async fn a_and_srv_answers_through_a_real_resolver() {
    let (svc, tx, addr) = start(config(vec![])).await;
    // Before the first state: SERVFAIL, not a cacheable NXDOMAIN.
    let early = udp_query(addr, "leader.mesos.", RecordType::A, None).await;
    assert_eq!(early.metadata.response_code, ResponseCode::ServFail);
    push(&tx, nginx_state(3), &svc).await;
    let r = resolver(addr);

    let ips = r
        .lookup("nginx.marathon.mesos.", RecordType::A)
        .await
        .unwrap();
    let mut got: Vec<String> = ips.answers().iter().map(|r| r.data.to_string()).collect();
    got.sort();
    assert_eq!(got, [agent_ip(0), agent_ip(1), agent_ip(2)]);
    assert!(ips.answers().iter().all(|r| r.ttl <= 60 && r.ttl > 0));

    let srv = r
        .lookup("_nginx._tcp.marathon.mesos.", RecordType::SRV)
        .await
        .unwrap();
    let ports: Vec<u16> = {
        let mut p: Vec<u16> = srv
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(s.port),
                _ => None,
            })
            .collect();
        p.sort();
        p.dedup();
        p
    };
    assert_eq!(ports, [31000, 31001, 31002]);

    let leader = r.lookup("leader.mesos.", RecordType::A).await.unwrap();
    assert_eq!(leader.answers()[0].data.to_string(), "10.0.0.1");
    let masters = r.lookup("master.mesos.", RecordType::A).await.unwrap();
    assert_eq!(masters.answers().len(), 2);
    let agents = r.lookup("agent.mesos.", RecordType::A).await.unwrap();
    assert_eq!(agents.answers().len(), 3);

    // Wire-level details: AA, RA, SRV additionals, NXDOMAIN + SOA, SRV-empty NOERROR.
    let m = udp_query(addr, "_nginx._tcp.marathon.mesos.", RecordType::SRV, None).await;
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_available);
    assert!(
        !m.additionals.is_empty(),
        "SRV targets' A records go to ADDITIONAL"
    );
    let nx = udp_query(addr, "nope.marathon.mesos.", RecordType::A, None).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(nx.authorities[0].data, RData::SOA(_)));
    let empty = udp_query(addr, "_nope._tcp.marathon.mesos.", RecordType::SRV, None).await;
    assert_eq!(empty.metadata.response_code, ResponseCode::NoError);
    assert!(empty.answers.is_empty() && empty.authorities.is_empty());
    // A Basalt-unknown zone name is not forwarded when there are no resolvers: REFUSED.
    let refused = udp_query(addr, "example.com.", RecordType::A, None).await;
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    svc.shutdown().await;
}

#[tokio::test]
async fn a_new_state_swaps_the_answers() {
    let (svc, tx, addr) = start(config(vec![])).await;
    push(&tx, nginx_state(2), &svc).await;
    let m = udp_query(addr, "nginx.marathon.mesos.", RecordType::A, None).await;
    assert_eq!(a_ips(&m), [agent_ip(0), agent_ip(1)]);

    // Scale to 1 and add a new app: the answers follow without restarting anything.
    let mut next = state(
        2,
        vec![
            task("nginx.0", "nginx", &agent_id(0), "TASK_RUNNING", 31000),
            task("api.1", "api.backend", &agent_id(1), "TASK_RUNNING", 31100),
        ],
    );
    next["frameworks"][0]["tasks"][0]["state"] = "TASK_RUNNING".into();
    let next: MasterState = serde_json::from_value(next).unwrap();
    let started = Instant::now();
    tx.send(next).await.unwrap();
    eventually("the new answer", || async {
        let m = udp_query(addr, "api-backend.marathon.mesos.", RecordType::A, None).await;
        (a_ips(&m) == [agent_ip(1)]).then_some(())
    })
    .await;
    println!(
        "propagation through the channel source: {:?}",
        started.elapsed()
    );
    let m = udp_query(addr, "nginx.marathon.mesos.", RecordType::A, None).await;
    assert_eq!(a_ips(&m), [agent_ip(0)]);
    // A state without a leader is rejected; the previous answers stay.
    let bad = MasterState::default();
    tx.send(bad).await.unwrap();
    eventually("the rejection counted", || async {
        svc.server
            .metrics()
            .render()
            .contains("basalt_dns_state_failures_total 1")
            .then_some(())
    })
    .await;
    let m = udp_query(addr, "api-backend.marathon.mesos.", RecordType::A, None).await;
    assert_eq!(a_ips(&m), [agent_ip(1)]);
    svc.shutdown().await;
}

#[tokio::test]
async fn forwards_to_upstream_resolvers_and_zones() {
    let general = Upstream::start(Ipv4Addr::new(192, 0, 2, 10)).await;
    let corp = Upstream::start(Ipv4Addr::new(198, 51, 100, 20)).await;
    let mut cfg = config(vec![general.addr.to_string()]);
    cfg.forward_zones
        .insert("corp.test".into(), vec![corp.addr.to_string()]);
    let (svc, tx, addr) = start(cfg).await;
    push(&tx, nginx_state(1), &svc).await;

    // udp_query asserts that the reply carries the query's id.
    let m = udp_query(addr, "www.example.test.", RecordType::A, None).await;
    assert_eq!(a_ips(&m), ["192.0.2.10"]);
    assert!(!m.metadata.authoritative);
    let m = udp_query(addr, "host.eu.corp.test.", RecordType::A, None).await;
    assert_eq!(a_ips(&m), ["198.51.100.20"]);
    assert!(corp.queries.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // The Mesos domain is never forwarded.
    let before = general.queries.load(std::sync::atomic::Ordering::SeqCst);
    let _ = udp_query(addr, "nope.mesos.", RecordType::A, None).await;
    assert_eq!(
        general.queries.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
    // Upstream truncation is relayed over UDP; over TCP the full answer comes through.
    let m = udp_query(addr, "big.example.test.", RecordType::A, None).await;
    assert!(m.metadata.truncation);
    let m = tcp_query(addr, "big.example.test.", RecordType::A).await;
    assert_eq!(m.answers.len(), 60);
    // Through the real resolver too (it retries truncated answers over TCP).
    let r = resolver(addr);
    let big = r.lookup("big.example.test.", RecordType::A).await.unwrap();
    assert_eq!(big.answers().len(), 60);
    svc.shutdown().await;

    // A dead upstream: SERVFAIL.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let (svc, tx, addr) = start(config(vec![dead.to_string()])).await;
    push(&tx, nginx_state(1), &svc).await;
    let m = udp_query(addr, "www.example.test.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    svc.shutdown().await;
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let (svc, tx, addr) = start(config(vec![])).await;
    push(&tx, nginx_state(100), &svc).await;
    let m = udp_query(addr, "nginx.marathon.mesos.", RecordType::A, None).await;
    assert!(m.metadata.truncation, "100 A records do not fit 512 bytes");
    assert!(!m.answers.is_empty() && m.answers.len() < 100);
    let m = udp_query(addr, "nginx.marathon.mesos.", RecordType::A, Some(4096)).await;
    assert!(!m.metadata.truncation, "EDNS 4096 fits 100 A records");
    assert_eq!(m.answers.len(), 100);
    let m = tcp_query(addr, "nginx.marathon.mesos.", RecordType::A).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    svc.shutdown().await;
}

#[tokio::test]
async fn garbage_leaves_the_server_answering() {
    let (svc, tx, addr) = start(config(vec![])).await;
    push(&tx, nginx_state(1), &svc).await;
    let valid = query_message(77, "nginx.marathon.mesos.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mut header_only_lies = valid[..12].to_vec();
    header_only_lies[5] = 40; // claims 40 questions, has none
    let mut truncated = valid.clone();
    truncated.truncate(valid.len() - 3);
    let mut pointer_loop = valid[..12].to_vec();
    pointer_loop.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]); // name points at itself
    let oversized = vec![0xABu8; 65_000];
    let mut response_bit = valid.clone();
    response_bit[2] |= 0x80;
    let packets: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0xFF; 5],
        header_only_lies,
        truncated,
        pointer_loop,
        oversized,
        response_bit,
        (0..512).map(|i| (i * 37 % 251) as u8).collect(),
    ];
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for p in &packets {
        sock.send_to(p, addr).await.unwrap();
    }
    // TCP garbage: a length prefix promising more than is sent, then a hang-up; and a
    // well-framed nonsense message.
    {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0xFF, 0xFF, 1, 2, 3]).await.unwrap();
    }
    {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0, 3, 9, 9, 9]).await.unwrap();
    }
    // Still answering, over both transports.
    let m = udp_query(addr, "nginx.marathon.mesos.", RecordType::A, None).await;
    assert_eq!(a_ips(&m), [agent_ip(0)]);
    let m = tcp_query(addr, "nginx.marathon.mesos.", RecordType::A).await;
    assert_eq!(a_ips(&m), [agent_ip(0)]);
    // A truncated question with a valid header gets FORMERR with the same id.
    let mut t = query_message(4242, "nginx.marathon.mesos.", RecordType::A, None)
        .to_vec()
        .unwrap();
    t.truncate(t.len() - 3);
    let reply = udp_exchange(addr, &t, Duration::from_secs(5))
        .await
        .unwrap();
    let m = hickory_proto::op::Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    svc.shutdown().await;
}

#[tokio::test]
async fn vip_names_are_served_under_l4lb() {
    let (svc, tx, addr) = start(config(vec![])).await;
    push(&tx, nginx_state(2), &svc).await;
    svc.server
        .set_vip_addresses([("nginx.marathon".to_string(), Ipv4Addr::new(11, 0, 0, 42))].into())
        .unwrap();
    let m = udp_query(
        addr,
        "nginx.marathon.l4lb.thisdcos.directory.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(a_ips(&m), ["11.0.0.42"]);
    assert_eq!(m.answers[0].ttl, 5);
    let m = udp_query(
        addr,
        "nginx.marathon.dclb.thisdcos.global.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(a_ips(&m), ["11.0.0.42"]);
    let m = udp_query(
        addr,
        "other.marathon.l4lb.thisdcos.directory.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    svc.shutdown().await;
}
