//! Helpers shared by the integration tests: wire-level DNS queries, a tiny upstream DNS
//! server, and `/master/state` fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn query_message(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// One UDP exchange; `None` on timeout.
pub async fn udp_exchange(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(server).await.unwrap();
    sock.send(bytes).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// A UDP query, retried (a lost datagram is not a failure) until `DEADLINE`.
pub async fn udp_query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    edns: Option<u16>,
) -> Message {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut id: u16 = rand_id();
    loop {
        let q = query_message(id, name, qtype, edns).to_vec().unwrap();
        if let Some(bytes) = udp_exchange(server, &q, Duration::from_millis(500)).await {
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(m.metadata.id, id, "reply id must match the query id");
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no UDP answer for {name} {qtype}"
        );
        id = id.wrapping_add(1);
    }
}

pub async fn tcp_query(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let id = rand_id();
    let q = query_message(id, name, qtype, None).to_vec().unwrap();
    let mut s = tokio::time::timeout(DEADLINE, TcpStream::connect(server))
        .await
        .unwrap()
        .unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

fn rand_id() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0x1234);
    NEXT.fetch_add(7919, Ordering::Relaxed) as u16
}

pub fn a_ips(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

pub fn srv_targets(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(format!("{}:{}", s.target, s.port)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Polls `check` until it returns `Some` or `DEADLINE` passes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A tiny upstream DNS server on loopback (UDP + TCP, same port): answers every A
/// query with `answer`, except names starting with `big.` which get 60 A records
/// (too big for 512-byte UDP: the upstream sets TC over UDP, answers fully over TCP).
pub struct Upstream {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn upstream_reply(req: &[u8], answer: Ipv4Addr, tcp: bool) -> Option<Vec<u8>> {
    let q = Message::from_vec(req).ok()?;
    let query = q.queries.first()?.clone();
    let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    let name = query.name().clone();
    let big = name.to_string().starts_with("big.");
    r.add_query(query);
    if big {
        if tcp {
            for i in 0..60u8 {
                r.add_answer(Record::from_rdata(
                    name.clone(),
                    30,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
                ));
            }
        } else {
            r.metadata.truncation = true;
        }
    } else {
        r.add_answer(Record::from_rdata(name, 30, RData::A(A(answer))));
    }
    r.to_vec().ok()
}

impl Upstream {
    pub async fn start(answer: Ipv4Addr) -> Upstream {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let q1 = queries.clone();
        let t1 = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                q1.fetch_add(1, Ordering::SeqCst);
                if let Some(r) = upstream_reply(&buf[..n], answer, false) {
                    let _ = udp.send_to(&r, from).await;
                }
            }
        });
        let q2 = queries.clone();
        let t2 = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    return;
                };
                let q2 = q2.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while s.read_exact(&mut len).await.is_ok() {
                        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        q2.fetch_add(1, Ordering::SeqCst);
                        let Some(r) = upstream_reply(&buf, answer, true) else {
                            return;
                        };
                        let mut out = (r.len() as u16).to_be_bytes().to_vec();
                        out.extend_from_slice(&r);
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            queries,
            tasks: vec![t1, t2],
        }
    }
}

/// A Marathon task as `/master/state` shows it.
pub fn task(id: &str, name: &str, slave: &str, state: &str, port: u16) -> Value {
    json!({
        "id": id, "name": name, "framework_id": "fw-marathon", "slave_id": slave, "state": state,
        "resources": {"cpus": 0.1, "mem": 32.0, "ports": format!("[{port}-{port}]")},
        "statuses": [{"state": state, "timestamp": 1700000000.0}],
        "discovery": {"visibility": "FRAMEWORK", "name": name,
            "ports": {"ports": [{"number": port, "name": "http", "protocol": "tcp",
                "labels": {"labels": [{"key": "VIP_0", "value": format!("/{name}:80")}]}}]}}
    })
}

/// A `/master/state` with `agents` agents (`S0`.. at 10.0.<i/250>.<i%250+1>) and the given
/// Marathon tasks.
pub fn state(agents: usize, tasks: Vec<Value>) -> Value {
    let slaves: Vec<Value> = (0..agents)
        .map(|i| {
            json!({"id": format!("agent-{i}-S{i}"), "hostname": format!("a{i}"),
                   "pid": format!("slave(1)@{}:5051", agent_ip(i))})
        })
        .collect();
    json!({
        "version": "1.11.0",
        "leader": "master@10.0.0.1:5050",
        "leader_info": {"id": "m1", "pid": "master@10.0.0.1:5050", "port": 5050, "hostname": "m1",
                        "address": {"hostname": "m1", "ip": "10.0.0.1", "port": 5050}},
        "slaves": slaves,
        "frameworks": [{"id": "fw-marathon", "name": "marathon", "pid": "scheduler-1@10.0.0.1:15101",
                        "hostname": "m1", "tasks": tasks}]
    })
}

pub fn agent_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 1 + i / 62500, (i / 250) % 250, i % 250 + 1)
}

pub fn agent_id(i: usize) -> String {
    format!("agent-{i}-S{i}")
}
