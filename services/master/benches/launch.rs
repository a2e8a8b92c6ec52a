//! Offer → launch → RUNNING → ACK throughput through the real master, with durable
//! writes to a real etcd, emulated agents and a v1 scheduler over HTTP on loopback
//! (figures printed, not asserted). Every task costs: its share of one ACCEPT txn (up to
//! 100 tasks) and its agent UPDATE and scheduler ACKNOWLEDGE, which the master group-commits
//! (many concurrent calls share one etcd transaction).
//!
//! `cargo bench -p basalt-master --bench launch`; `BASALT_BENCH_TASKS` (default 2,000)
//! and `BASALT_BENCH_AGENTS` (default 10) size it. Skipped when etcd is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use basalt_master::testing::{AgentOptions, Cluster, EmulatedAgent, TestScheduler, wait_until};
use basalt_mesos::{CommandInfo, FrameworkInfo, Resource, TaskId, TaskInfo, TaskState};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tasks = env("BASALT_BENCH_TASKS", 2000);
    let agents = env("BASALT_BENCH_AGENTS", 10);
    let Some(c) = Cluster::start(1, 1, |cfg| {
        cfg.heartbeat_interval = Duration::from_secs(5);
        cfg.agent_ping_timeout = Duration::from_secs(5);
        cfg.status_retry_initial = Duration::from_secs(60);
    })
    .await
    .unwrap() else {
        return;
    };
    let per_agent = tasks.div_ceil(agents);
    let mut emulated = Vec::new();
    for i in 0..agents {
        let res = format!("cpus:{};mem:{}", per_agent, per_agent * 32);
        emulated.push(EmulatedAgent::start(
            AgentOptions::new(&format!("agent-{i}"), &res, c.addresses()).unwrap(),
        ));
    }
    for a in &emulated {
        a.wait_registered(1, Duration::from_secs(30)).await.unwrap();
    }
    let s = TestScheduler::subscribe(c.addresses(), FrameworkInfo::new("root", "bench"))
        .await
        .unwrap();
    let offers = wait_until(
        "offers for every agent",
        Duration::from_secs(30),
        || async {
            let o = s.outstanding_offers();
            (o.len() == agents).then_some(o)
        },
    )
    .await
    .unwrap();

    let started = Instant::now();
    let mut launched = 0usize;
    let mut accepts = 0usize;
    for o in &offers {
        let n = per_agent.min(tasks - launched);
        let mut batch = Vec::new();
        for _ in 0..n {
            let id = format!("t{launched}");
            launched += 1;
            let mut t = TaskInfo::command(
                &id,
                TaskId::new(&id),
                o.agent_id.clone(),
                serde_json::from_str::<CommandInfo>(r#"{"value":"true"}"#).unwrap(),
            );
            t.resources = vec![
                Resource::scalar("cpus", 1.0).unwrap(),
                Resource::scalar("mem", 32.0).unwrap(),
            ];
            batch.push(t);
        }
        // One offer can be accepted once: every task on the agent goes in that ACCEPT.
        let r = s
            .launch(std::slice::from_ref(&o.id), batch, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 202, "{}", r.body);
        accepts += 1;
    }
    let accepted = started.elapsed();
    // Acknowledge every RUNNING as it arrives (concurrently, like real frameworks).
    let mut acked = std::collections::BTreeSet::new();
    let mut cursor = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while acked.len() < launched && Instant::now() < deadline {
        let events = s.events();
        let mut acks = Vec::new();
        for e in &events[cursor..] {
            if let Some(u) = &e.update
                && u.status.state == TaskState::Running
                && acked.insert(u.status.task_id.clone())
            {
                acks.push(u.status.clone());
            }
        }
        cursor = events.len();
        futures::future::join_all(acks.iter().map(|st| s.acknowledge(st))).await;
        if acked.len() < launched {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let total = started.elapsed();
    println!(
        "master launch throughput (etcd 1 member, {agents} emulated agents, 1 scheduler, HTTP loopback)"
    );
    println!("  tasks launched:              {launched} in {accepts} ACCEPT calls");
    println!(
        "  ACCEPT → 202 (durable):      {:>8.1} ms  ({:.0} tasks/s)",
        accepted.as_secs_f64() * 1e3,
        launched as f64 / accepted.as_secs_f64()
    );
    println!(
        "  ACCEPT → all RUNNING acked:  {:>8.1} ms  ({:.0} tasks/s; target ≥ 5,000 tasks/s)",
        total.as_secs_f64() * 1e3,
        acked.len() as f64 / total.as_secs_f64()
    );
    c.shutdown().await;
}
