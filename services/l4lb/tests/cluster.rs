//! The whole service-discovery path against the real control plane: etcd + a master
//! (`basalt_master::testing`), Marathon (`basalt_marathon::server::start`), basalt-dns
//! and basalt-l4lb following the master through the etcd watch, in-process.
//!
//! An app with 3 instances and `VIP_0=/web:80` runs on 3 emulated agents (at
//! 127.0.0.11-13, each offering exactly one port, on which a real TCP listener plays
//! the task: emulated agents run no processes). The agents report TASK_RUNNING when the
//! test says so, which is the instant latencies are measured from. A and SRV answers,
//! queried with hickory-resolver over UDP, appear after TASK_RUNNING and disappear
//! after the task fails; connections to the VIP spread over the running backends and
//! never reach a failed one once it left the answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_dns::{DnsConfig, EtcdWatchSource, MasterEndpoints, Service};
use basalt_l4lb::{
    BindPolicy, Controller, FakeInterface, L4lbConfig, ProxyConfig, UserspaceProxy, VipAllocator,
};
use basalt_marathon::server::{MarathonConfig, start};
use basalt_master::testing::{AgentOptions, Cluster, EmulatedAgent};
use basalt_mesos::{FrameworkId, TaskId, TaskState};
use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(20);

async fn wait_until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn resolver(addr: SocketAddr) -> Resolver<TokioRuntimeProvider> {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let ns = NameServerConfig::new(addr.ip(), true, vec![udp]);
    let mut b = Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], vec![ns]),
        TokioRuntimeProvider::default(),
    );
    b.options_mut().cache_size = 0;
    b.options_mut().attempts = 3;
    b.options_mut().timeout = Duration::from_secs(2);
    b.build().unwrap()
}

/// SRV targets' ports of `_web._tcp.marathon.mesos` (no records: empty).
async fn srv_ports(r: &Resolver<TokioRuntimeProvider>) -> BTreeSet<u16> {
    match r.lookup("_web._tcp.marathon.mesos.", RecordType::SRV).await {
        Ok(l) => l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some(s.port),
                _ => None,
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

async fn a_records(r: &Resolver<TokioRuntimeProvider>, name: &str) -> BTreeSet<String> {
    match r.lookup(name, RecordType::A).await {
        Ok(l) => l.answers().iter().map(|r| r.data.to_string()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// A "task": answers each connection with its agent's index.
async fn backend(ip: IpAddr, id: usize) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(format!("{id}\n").as_bytes()).await;
        }
    });
    addr
}

async fn hit(addr: SocketAddr) -> usize {
    let s = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(DEADLINE, BufReader::new(s).read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    line.trim().parse().unwrap()
}

/// The task of `agent` waiting in STAGING (launched, not reported running yet).
fn staging(agent: &EmulatedAgent) -> Option<(FrameworkId, TaskId)> {
    agent
        .tasks()
        .into_iter()
        .find(|t| matches!(t.status.state, TaskState::Staging | TaskState::Starting))
        .map(|t| (t.framework_id, t.task.task_id))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vip_app_answers_and_connections_follow_task_states() {
    let Some(cluster) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        println!("SKIP: etcd is not installed");
        return;
    };
    let leader = cluster.wait_leader(DEADLINE).await.unwrap();
    let masters = cluster.addresses();
    let store = cluster.etcd.store();

    // Three agents, each with one port on which a real listener plays the task.
    let mut agents = Vec::new();
    let mut backends = Vec::new();
    for i in 0..3usize {
        let ip: IpAddr = format!("127.0.0.{}", 11 + i).parse().unwrap();
        let b = backend(ip, i).await;
        let mut opts = AgentOptions::new(
            &ip.to_string(),
            &format!("cpus:4;mem:4096;disk:1000;ports:[{0}-{0}]", b.port()),
            masters.clone(),
        )
        .unwrap();
        opts.auto_run = false;
        let a = EmulatedAgent::start(opts);
        a.wait_registered(1, DEADLINE).await.unwrap();
        agents.push(a);
        backends.push(b);
    }

    // DNS and l4lb, both following the master through the etcd watch.
    let dns = Service::start(
        DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..DnsConfig::default()
        },
        EtcdWatchSource::new(store.clone(), MasterEndpoints::from_masters(&masters)).unwrap(),
    )
    .await
    .unwrap();
    let proxy = Arc::new(UserspaceProxy::new(ProxyConfig {
        bind: BindPolicy::Loopback,
        ..ProxyConfig::default()
    }));
    let ctl = Controller::new(
        L4lbConfig::default(),
        VipAllocator::new(store.clone(), "11.0.0.0/8".parse().unwrap()),
        proxy.clone(),
        Arc::new(FakeInterface::default()),
    )
    .publish_to(Arc::new(dns.server.clone()));
    let l4lb = tokio::spawn(ctl.run(
        EtcdWatchSource::new(store.clone(), MasterEndpoints::from_masters(&masters)).unwrap(),
    ));
    let r = resolver(dns.listeners.addrs[0]);

    // Marathon, and the app.
    let mut cfg = MarathonConfig::new(cluster.url(leader));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.election_ttl = Duration::from_secs(2);
    let marathon = start(cfg, store.clone()).await.unwrap();
    let http = reqwest::Client::new();
    wait_until("Marathon to lead and register", || async {
        let info: serde_json::Value = http
            .get(format!("http://{}/v2/info", marathon.addr))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        info["frameworkId"].as_str().map(|_| ())
    })
    .await;
    let resp = http
        .post(format!("http://{}/v2/apps", marathon.addr))
        .json(
            &json!({"id": "/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 3,
            "portDefinitions": [{"port": 0, "name": "http", "labels": {"VIP_0": "/web:80"}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    let mut appear = Vec::new();
    let mut disappear = Vec::new();
    // First launch: each task shows up once its agent reports TASK_RUNNING.
    for (i, agent) in agents.iter().enumerate() {
        let (fw, task) = wait_until("a launch on each agent", || async { staging(agent) }).await;
        assert!(
            !srv_ports(&r).await.contains(&backends[i].port()),
            "no SRV record before TASK_RUNNING"
        );
        let t0 = Instant::now();
        assert_eq!(
            agent.update(&fw, &task, TaskState::Running).await.unwrap(),
            202
        );
        wait_until("the SRV record after TASK_RUNNING", || async {
            srv_ports(&r)
                .await
                .contains(&backends[i].port())
                .then_some(())
        })
        .await;
        appear.push(t0.elapsed());
    }
    let all_ports: BTreeSet<u16> = backends.iter().map(SocketAddr::port).collect();
    assert_eq!(srv_ports(&r).await, all_ports);
    let agent_ips: BTreeSet<String> = backends.iter().map(|b| b.ip().to_string()).collect();
    assert_eq!(a_records(&r, "web.marathon.mesos.").await, agent_ips);

    // The VIP name resolves to the allocated address, served by the proxy.
    let vip_ip = wait_until("the VIP name", || async {
        a_records(&r, "web.marathon.l4lb.thisdcos.directory.")
            .await
            .into_iter()
            .next()
    })
    .await;
    let vip = SocketAddr::new(vip_ip.parse().unwrap(), 80);
    let listen = wait_until("the VIP served with 3 backends", || async {
        let l = proxy.bound_addr(vip).await?;
        let mut seen = BTreeSet::new();
        for _ in 0..9 {
            seen.insert(hit(l).await);
        }
        (seen.len() == 3).then_some(l)
    })
    .await;
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        *seen.entry(hit(listen).await).or_insert(0usize) += 1;
    }
    assert_eq!(
        seen.len(),
        3,
        "connections spread over the 3 backends: {seen:?}"
    );

    // Rounds: a task fails (its records and backend go), Marathon relaunches it on the
    // same agent (the only one with its port), it reports running (they come back).
    for round in 0..6usize {
        let i = round % 3;
        let agent = &agents[i];
        let port = backends[i].port();
        let (fw, task) = agent
            .tasks()
            .into_iter()
            .find(|t| t.status.state == TaskState::Running)
            .map(|t| (t.framework_id, t.task.task_id))
            .unwrap();
        let t0 = Instant::now();
        assert_eq!(
            agent.update(&fw, &task, TaskState::Failed).await.unwrap(),
            202
        );
        wait_until("the SRV record to go after the task failed", || async {
            (!srv_ports(&r).await.contains(&port)).then_some(())
        })
        .await;
        disappear.push(t0.elapsed());
        // The failed backend gets no new connection.
        wait_until("the failed backend to leave the VIP", || async {
            let mut seen = BTreeSet::new();
            for _ in 0..6 {
                seen.insert(hit(listen).await);
            }
            (!seen.contains(&i)).then_some(())
        })
        .await;
        for _ in 0..12 {
            assert_ne!(
                hit(listen).await,
                i,
                "a failed backend got a new connection"
            );
        }

        let (fw, task) = wait_until("the replacement launch", || async { staging(agent) }).await;
        let t0 = Instant::now();
        assert_eq!(
            agent.update(&fw, &task, TaskState::Running).await.unwrap(),
            202
        );
        wait_until("the SRV record of the replacement", || async {
            srv_ports(&r).await.contains(&port).then_some(())
        })
        .await;
        appear.push(t0.elapsed());
        wait_until("the replacement to take VIP connections", || async {
            let mut seen = BTreeSet::new();
            for _ in 0..9 {
                seen.insert(hit(listen).await);
            }
            seen.contains(&i).then_some(())
        })
        .await;
    }
    appear.sort();
    disappear.sort();
    println!(
        "TASK_RUNNING -> SRV answer: p50 {:?}, p99 {:?}, max {:?} ({} tasks)",
        percentile(&appear, 0.5),
        percentile(&appear, 0.99),
        appear[appear.len() - 1],
        appear.len()
    );
    println!(
        "TASK_FAILED -> SRV answer gone: p50 {:?}, p99 {:?}, max {:?} ({} tasks)",
        percentile(&disappear, 0.5),
        percentile(&disappear, 0.99),
        disappear[disappear.len() - 1],
        disappear.len()
    );

    l4lb.abort();
    dns.shutdown().await;
    drop(marathon);
    cluster.shutdown().await;
}
