//! Master memory per agent and per task (figures printed, not asserted; targets
//! ≤ 8 KiB/agent, ≤ 2 KiB/task).
//!
//! Drives one leadership term's [`Core`] directly, with durable writes to a real etcd
//! (the store harness; skipped when etcd is not installed) and no HTTP in between, so the
//! figures are the master's own state: registers N agents over the internal protocol
//! (each with its event stream), then one framework launches M tasks through ACCEPTs
//! that use every offered resource, the agents report them RUNNING and the framework
//! acknowledges. Memory is measured with a counting global allocator (live heap bytes,
//! exact) and, for comparison, the process RSS (`/proc/self/statm`, coarse: the
//! allocator keeps freed pages). Streams are drained before each measurement (a real
//! connection hands the frames to the socket).
//!
//! `cargo bench -p basalt-master --bench memory`; `BASALT_BENCH_AGENTS` (default
//! 1,000) and `BASALT_BENCH_TASKS` (default 10,000) size it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use basalt_master::MasterConfig;
use basalt_master::agent_api::{StatusUpdate, Subscribe};
use basalt_master::api::{self, Accept, Call, Filters, Launch, Operation};
use basalt_master::core::{BatchCall, BatchItem, Conn, Core, new_status_uuid};
use basalt_mesos::{
    AgentId, AgentInfo, CommandInfo, FrameworkInfo, Resource, Resources, TaskId, TaskInfo,
    TaskState, TaskStatus,
};
use basalt_store::Election;
use basalt_store::testing::EtcdCluster;
use bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;

/// Live heap bytes of the whole process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Heap and RSS now.
fn sample() -> (i64, i64) {
    (
        LIVE.load(Ordering::Relaxed) as i64,
        rss_bytes().unwrap_or(0),
    )
}

fn drain(rxs: &mut [UnboundedReceiver<Bytes>]) {
    for rx in rxs {
        while rx.try_recv().is_ok() {}
    }
}

async fn batch(core: &mut Core, calls: Vec<BatchCall>) {
    let items = calls
        .into_iter()
        .map(|call| {
            let (reply, _) = tokio::sync::oneshot::channel();
            BatchItem { call, reply }
        })
        .collect();
    core.apply_batch(items).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let agents = env("BASALT_BENCH_AGENTS", 1000).max(1);
    let tasks = env("BASALT_BENCH_TASKS", 10_000);
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        println!("memory bench skipped: etcd is not installed (the store harness needs it)");
        return;
    };
    let store = etcd.store();
    let address = "127.0.0.1:5050";
    let leadership = Arc::new(
        Election::campaign(&store, "memory-bench", address, Duration::from_secs(10))
            .await
            .unwrap(),
    );
    let mut cfg = MasterConfig::new(etcd.config());
    cfg.status_retry_initial = Duration::from_secs(600);
    let mut core = Core::recover(
        Arc::new(cfg),
        store,
        leadership,
        address.to_string(),
        Arc::new(tokio::sync::Notify::new()),
    )
    .await
    .unwrap();
    let mut streams: Vec<UnboundedReceiver<Bytes>> = Vec::new();

    // Agents: each exactly big enough for its share of the tasks, so that every offer
    // is used up and none stays outstanding at the end.
    let per_agent = tasks.div_ceil(agents);
    let res = Resources::parse(&format!("cpus:{per_agent};mem:{}", per_agent * 32)).unwrap();
    let started = Instant::now();
    let (heap0, rss0) = sample();
    let mut agent_ids = Vec::with_capacity(agents);
    for i in 0..agents {
        let mut info = AgentInfo::new(format!("agent-{i:05}.cluster.internal"), res.clone());
        info.port = Some(5051);
        let (conn, rx) = Conn::new();
        streams.push(rx);
        let id = core
            .agent_subscribe(
                Subscribe {
                    agent_info: info,
                    agent_id: None,
                    tasks: Vec::new(),
                    frameworks: Vec::new(),
                },
                conn,
            )
            .await
            .unwrap();
        agent_ids.push(id);
    }
    drain(&mut streams);
    let (heap1, rss1) = sample();
    let agents_took = started.elapsed();

    // One framework launches every task.
    let started = Instant::now();
    let (conn, rx) = Conn::new();
    streams.push(rx);
    let mut sub = Call::new("SUBSCRIBE", None);
    sub.subscribe = Some(api::Subscribe {
        framework_info: FrameworkInfo::new("root", "memory-bench"),
        suppressed_roles: Vec::new(),
    });
    let fw = core.subscribe(&sub, conn).await.unwrap();
    let offers: Vec<(basalt_mesos::OfferId, AgentId)> = core
        .offers
        .values()
        .map(|o| (o.offer.id.clone(), o.offer.agent_id.clone()))
        .collect();
    let mut launched: Vec<(AgentId, TaskId)> = Vec::with_capacity(tasks);
    for (offer, agent) in offers {
        let n = per_agent.min(tasks - launched.len());
        if n == 0 {
            break;
        }
        let mut infos = Vec::with_capacity(n);
        for _ in 0..n {
            let id = format!("app.instance-{}._app.1", uuid::Uuid::new_v4());
            let mut t = TaskInfo::command(
                &id,
                TaskId::new(&id),
                agent.clone(),
                serde_json::from_str::<CommandInfo>(r#"{"value":"./server --port $PORT0"}"#)
                    .unwrap(),
            );
            t.resources = vec![
                Resource::scalar("cpus", 1.0).unwrap(),
                Resource::scalar("mem", 32.0).unwrap(),
            ];
            launched.push((agent.clone(), t.task_id.clone()));
            infos.push(t);
        }
        let mut call = Call::new("ACCEPT", Some(fw.clone()));
        call.accept = Some(Accept {
            offer_ids: vec![offer],
            operations: vec![Operation {
                kind: "LAUNCH".into(),
                id: None,
                launch: Some(Launch { task_infos: infos }),
                launch_group: None,
                other: serde_json::Map::new(),
            }],
            filters: Some(Filters {
                refuse_seconds: Some(5.0),
            }),
        });
        core.call(call).await.unwrap();
        drain(&mut streams);
    }
    // RUNNING from the agents, then the framework's acknowledgements (group-committed
    // like the HTTP path does).
    let mut uuids: BTreeMap<TaskId, String> = BTreeMap::new();
    for chunk in launched.chunks(500) {
        let calls = chunk
            .iter()
            .map(|(agent, task)| {
                let mut status = TaskStatus::new(task.clone(), TaskState::Running);
                let uuid = new_status_uuid();
                status.uuid = Some(uuid.clone());
                uuids.insert(task.clone(), uuid);
                BatchCall::AgentUpdate(
                    agent.clone(),
                    Box::new(StatusUpdate {
                        framework_id: fw.clone(),
                        status,
                    }),
                )
            })
            .collect();
        batch(&mut core, calls).await;
        drain(&mut streams);
    }
    for chunk in launched.chunks(500) {
        let calls = chunk
            .iter()
            .map(|(agent, task)| {
                BatchCall::Acknowledge(
                    fw.clone(),
                    api::Acknowledge {
                        agent_id: agent.clone(),
                        task_id: task.clone(),
                        uuid: uuids.get(task).cloned().unwrap_or_default(),
                    },
                )
            })
            .collect();
        batch(&mut core, calls).await;
        drain(&mut streams);
    }
    // The bench's own bookkeeping is not the master's.
    drop(uuids);
    let n_launched = launched.len();
    drop(launched);
    drop(agent_ids);
    drain(&mut streams);
    let (heap2, rss2) = sample();
    let tasks_took = started.elapsed();
    let running = core
        .tasks
        .values()
        .filter(|t| t.record.state == TaskState::Running && t.record.pending.is_empty())
        .count();

    let kib = |b: f64| b / 1024.0;
    let per = |d: i64, n: usize| d as f64 / n.max(1) as f64;
    println!(
        "master memory: {agents} agents registered in {:.2?}, {n_launched} tasks launched, RUNNING and acknowledged in {:.2?} ({running} running, {} offers outstanding)",
        agents_took,
        tasks_took,
        core.offers.len()
    );
    println!("                 heap (counting allocator)   RSS (/proc/self/statm)   target");
    println!(
        "  per agent      {:>10.2} KiB               {:>10.2} KiB             <= 8 KiB",
        kib(per(heap1 - heap0, agents)),
        kib(per(rss1 - rss0, agents)),
    );
    println!(
        "  per task       {:>10.2} KiB               {:>10.2} KiB             <= 2 KiB",
        kib(per(heap2 - heap1, n_launched)),
        kib(per(rss2 - rss1, n_launched)),
    );
    println!(
        "  (heap: {:.1} MiB for the agents, {:.1} MiB for the tasks; per task includes its share of the one framework)",
        (heap1 - heap0) as f64 / 1048576.0,
        (heap2 - heap1) as f64 / 1048576.0
    );
    println!(
        "  (inline sizes: TaskRecord {} B, TaskInfo {} B, TaskStatus {} B, Resource {} B, AgentInfo {} B)",
        std::mem::size_of::<basalt_master::records::TaskRecord>(),
        std::mem::size_of::<TaskInfo>(),
        std::mem::size_of::<TaskStatus>(),
        std::mem::size_of::<Resource>(),
        std::mem::size_of::<AgentInfo>(),
    );
    core.shutdown();
}
