//! DNS queries/s for A and SRV with ≥ 100,000 records on loopback UDP, and propagation
//! latency from a state change to the new answer. Bounded: stops by itself.
//!
//! `cargo bench -p basalt-dns --bench qps` (env `QPS_QUERIES` = queries per type,
//! default 200,000; `QPS_CLIENTS` = client threads, default 2).
//!
//! The server and the load generator share the machine: on a 2-core host the clients
//! take about half the CPU, so the figure is a lower bound for the server alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::routing::get;
use basalt_dns::{DnsConfig, DnsServer, EtcdWatchSource, MasterEndpoints, MasterState, Service};
use basalt_store::Key;
use basalt_store::testing::EtcdCluster;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::{Value, json};
use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TASKS: usize = 10_000;
const AGENTS: usize = 1_000;

fn agent_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 1 + i / 62500, (i / 250) % 250, i % 250 + 1)
}

fn task(i: usize, name: &str) -> Value {
    let port = 31000 + (i % 1000) as u16;
    json!({
        "id": format!("{name}.{i:08x}-0000-4000-8000-000000000000"), "name": name,
        "framework_id": "fw-marathon", "slave_id": format!("agent-{}-S{}", i % AGENTS, i % AGENTS),
        "state": "TASK_RUNNING",
        "resources": {"cpus": 0.1, "mem": 32.0, "ports": format!("[{port}-{port}]")},
        "statuses": [{"state": "TASK_RUNNING", "timestamp": 1700000000.0}],
        "discovery": {"visibility": "FRAMEWORK", "name": name,
            "ports": {"ports": [{"number": port, "name": "http", "protocol": "tcp"}]}}
    })
}

fn state_json(extra: &[String]) -> Value {
    let mut tasks: Vec<Value> = (0..TASKS).map(|i| task(i, &format!("app{i}"))).collect();
    for (k, name) in extra.iter().enumerate() {
        tasks.push(task(TASKS + k, name));
    }
    let slaves: Vec<Value> = (0..AGENTS)
        .map(|i| {
            json!({"id": format!("agent-{i}-S{i}"), "hostname": format!("a{i}"),
                         "pid": format!("slave(1)@{}:5051", agent_ip(i))})
        })
        .collect();
    json!({
        "leader": "master@10.0.0.1:5050",
        "slaves": slaves,
        "frameworks": [{"id": "fw-marathon", "name": "marathon", "pid": "scheduler-1@10.0.0.1:15101",
                        "tasks": tasks}]
    })
}

fn encode(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

struct Run {
    answered: u64,
    lost: u64,
    errors: u64,
    elapsed: Duration,
}

/// `clients` threads, each keeping `window` queries in flight, `total` queries in all.
fn load(server: SocketAddr, queries: &[Vec<u8>], total: u64, clients: usize, window: usize) -> Run {
    let per_client = total / clients as u64;
    let start = Instant::now();
    let results: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                    sock.connect(server).unwrap();
                    sock.set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let (mut sent, mut answered, mut lost, mut errors) = (0u64, 0u64, 0u64, 0u64);
                    let mut next = c * 7919;
                    let mut send = |sent: &mut u64| {
                        let mut q = queries[next % queries.len()].clone();
                        next += 1;
                        q[0..2].copy_from_slice(&(*sent as u16).to_be_bytes());
                        sock.send(&q).unwrap();
                        *sent += 1;
                    };
                    for _ in 0..window.min(per_client as usize) {
                        send(&mut sent);
                    }
                    let mut buf = [0u8; 4096];
                    while answered + lost < per_client {
                        match sock.recv(&mut buf) {
                            Ok(n) => {
                                answered += 1;
                                // NOERROR with at least one answer.
                                if n < 12
                                    || buf[3] & 0x0F != 0
                                    || u16::from_be_bytes([buf[6], buf[7]]) == 0
                                {
                                    errors += 1;
                                }
                            }
                            Err(_) => {
                                // Timed out: count the window as lost and refill it.
                                let outstanding = sent - answered - lost;
                                lost += outstanding;
                            }
                        }
                        while sent - answered - lost < window as u64 && sent < per_client {
                            send(&mut sent);
                        }
                    }
                    (answered, lost, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    Run {
        answered: results.iter().map(|r| r.0).sum(),
        lost: results.iter().map(|r| r.1).sum(),
        errors: results.iter().map(|r| r.2).sum(),
        elapsed,
    }
}

fn query_once(server: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.connect(server).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    sock.send(q).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn has_answer(server: SocketAddr, q: &[u8]) -> bool {
    query_once(server, q)
        .is_some_and(|r| r.len() >= 12 && r[3] & 0x0F == 0 && u16::from_be_bytes([r[6], r[7]]) > 0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let total: u64 = std::env::var("QPS_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let clients: usize = std::env::var("QPS_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    let server = DnsServer::new(DnsConfig::default()).unwrap();
    let listeners = rt
        .block_on(server.serve(&["127.0.0.1:0".parse().unwrap()]))
        .unwrap();
    let addr = listeners.addrs[0];

    let state: MasterState = serde_json::from_value(state_json(&[])).unwrap();
    let t0 = Instant::now();
    let records = server.apply_state(state).unwrap();
    let build = t0.elapsed();
    println!(
        "basalt-dns qps bench: {TASKS} tasks on {AGENTS} agents -> {records} records (generate + index: {build:?}); {cores} cores, {clients} client threads"
    );
    assert!(records >= 100_000, "only {records} records");

    let a_queries: Vec<Vec<u8>> = (0..4096)
        .map(|i| {
            encode(
                0,
                &format!("app{}.marathon.mesos.", (i * 2654435761usize) % TASKS),
                RecordType::A,
            )
        })
        .collect();
    let srv_queries: Vec<Vec<u8>> = (0..4096)
        .map(|i| {
            encode(
                0,
                &format!("_app{}._tcp.marathon.mesos.", (i * 2654435761usize) % TASKS),
                RecordType::SRV,
            )
        })
        .collect();
    // In-process cost of one answer (lookup + records), without sockets and encoding.
    {
        let index = server.index();
        for (label, fmt) in [
            ("A", "app{}.marathon.mesos."),
            ("SRV", "_app{}._tcp.marathon.mesos."),
        ] {
            let qtype = if label == "A" {
                RecordType::A
            } else {
                RecordType::SRV
            };
            let names: Vec<_> = (0..4096)
                .map(|i| {
                    basalt_dns::server::lower_name(
                        &fmt.replace("{}", &((i * 7919) % TASKS).to_string()),
                    )
                    .unwrap()
                })
                .collect();
            let n = 400_000;
            let t = Instant::now();
            let mut records = 0usize;
            for i in 0..n {
                let a = index.answer(&names[i % names.len()], qtype).unwrap();
                records += a.answers.len() + a.additionals.len();
            }
            let per = t.elapsed() / n as u32;
            println!(
                "in-process Index::answer {label}: {per:?} per query ({} records per answer)",
                records / n
            );
        }
    }
    // Warm-up.
    let _ = load(addr, &a_queries, 20_000, clients, 32);
    let a = load(addr, &a_queries, total, clients, 64);
    let srv = load(addr, &srv_queries, total, clients, 64);

    println!();
    println!("{:<34} {:>12}", "", "queries/s");
    for (label, run) in [
        ("basalt-dns A (UDP, loopback)", &a),
        ("basalt-dns SRV (UDP, loopback)", &srv),
    ] {
        let qps = run.answered as f64 / run.elapsed.as_secs_f64();
        println!(
            "{label:<34} {qps:>12.0}   ({} answered, {} lost, {} bad, {:?})",
            run.answered, run.lost, run.errors, run.elapsed
        );
    }
    println!("{:<34} {:>12}", "anchor: CoreDNS, 2 vCPU", "~33,700");
    println!("{:<34} {:>12}", "anchor: Mesos-DNS, per core", "~8,500");
    println!("{:<34} {:>12}", "target", ">= 60,000");

    // Propagation: a state with one more app handed to the server -> the new name
    // answers over UDP. Includes generating and indexing all records (full rebuild).
    let mut lat = Vec::new();
    for k in 0..20 {
        let name = format!("probe{k}");
        let state: MasterState =
            serde_json::from_value(state_json(std::slice::from_ref(&name))).unwrap();
        let q = encode(9, &format!("{name}.marathon.mesos."), RecordType::A);
        let t0 = Instant::now();
        let s2 = server.clone();
        let apply = std::thread::spawn(move || s2.apply_state(state));
        while !has_answer(addr, &q) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "probe never answered"
            );
            // Leave the CPU to the rebuild (2-core hosts).
            std::thread::sleep(Duration::from_micros(500));
        }
        lat.push(t0.elapsed());
        apply.join().unwrap().unwrap();
    }
    lat.sort();
    println!();
    println!(
        "propagation, state handed to the server -> new answer ({} records, full rebuild): p50 {:?}, p99 {:?} (n={})",
        records,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len()
    );
    rt.block_on(etcd_propagation(records));
    println!("anchor: Mesos-DNS refresh period 30-60 s; target: well under 100 ms");
    rt.block_on(listeners.shutdown());
}

#[derive(Clone)]
struct FakeMaster(Arc<Mutex<Bytes>>);

async fn master_state(
    State(m): State<FakeMaster>,
) -> ([(header::HeaderName, &'static str); 1], Bytes) {
    let body = m.0.lock().unwrap().clone();
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// The whole path with real etcd: the master writes a task key, the DNS service's watch
/// fires, it fetches and decodes `/master/state` (~100,000 records' worth), rebuilds, and
/// the new name answers.
async fn etcd_propagation(records: usize) {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        println!("propagation through etcd: skipped (etcd-server not installed)");
        return;
    };
    let store = etcd.store();
    let master = FakeMaster(Arc::new(Mutex::new(Bytes::from(
        serde_json::to_vec(&state_json(&[])).unwrap(),
    ))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/master/state", get(master_state))
        .with_state(master.clone());
    let http = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let source = EtcdWatchSource::new(
        store.clone(),
        MasterEndpoints {
            election_service: None,
            urls: vec![format!("http://{maddr}")],
        },
    )
    .unwrap();
    let cfg = DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        ..DnsConfig::default()
    };
    let svc = Service::start(cfg, source).await.unwrap();
    let addr = svc.listeners.addrs[0];
    let mut lat = Vec::new();
    for k in 0..20 {
        let name = format!("etcdprobe{k}");
        let body =
            Bytes::from(serde_json::to_vec(&state_json(std::slice::from_ref(&name))).unwrap());
        *master.0.lock().unwrap() = body;
        let q = encode(9, &format!("{name}.marathon.mesos."), RecordType::A);
        let t0 = Instant::now();
        store
            .put(
                &Key::task("fw-marathon", &name).unwrap(),
                &json!({"state": "TASK_RUNNING"}),
            )
            .await
            .unwrap();
        let probe = tokio::task::spawn_blocking(move || {
            while !has_answer(addr, &q) {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "etcd probe never answered"
                );
                std::thread::sleep(Duration::from_micros(500));
            }
            t0.elapsed()
        });
        lat.push(probe.await.unwrap());
    }
    lat.sort();
    println!(
        "propagation, etcd task write -> watch -> GET /master/state ({} KiB JSON) -> new answer ({records} records): p50 {:?}, p99 {:?} (n={})",
        master.0.lock().unwrap().len() / 1024,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len()
    );
    svc.shutdown().await;
    http.abort();
}
