//! Helpers shared by the daemon tests that go through a real master (the master's
//! in-process harness: etcd, one master, a v1 test scheduler over HTTP).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use basalt_agent::containerizer::{CgroupsConfig, Isolation};
use basalt_agent::daemon::{AgentConfig, AgentDaemon, ResourceSource};
use basalt_master::testing::{Cluster, TEST_CREDENTIAL, TestScheduler, wait_until};
use basalt_mesos::{
    AgentId, Attributes, CommandInfo, FrameworkInfo, Resource, Resources, TaskId, TaskInfo,
    TaskState, TaskStatus,
};

pub const T: Duration = Duration::from_secs(20);

pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn agent_config(c: &Cluster, work: &Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(
        c.addresses(),
        Some(TEST_CREDENTIAL.to_string()),
        work,
        "agent-e2e.example",
    );
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.resources = ResourceSource::Given {
        resources: Resources::parse("cpus:4;mem:2048;disk:1024;ports:[31000-31100]").unwrap(),
        attributes: Attributes::parse("rack:r1").unwrap(),
    };
    cfg.containers.isolation = Isolation {
        namespaces: true,
        cgroups: Some(CgroupsConfig {
            root: Some(cgroup_root(work)),
            ..CgroupsConfig::default()
        }),
    };
    cfg.containers.oom_check_interval = Duration::from_millis(50);
    cfg.containers.default_grace_period = Duration::from_secs(2);
    cfg
}

/// Root + etcd + a master, or why not.
pub async fn cluster(test: &str) -> Option<Cluster> {
    init_tracing();
    if !nix::unistd::geteuid().is_root() {
        skip(test, "not running as root (namespaces and cgroups)");
        return None;
    }
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        skip(test, "etcd is not installed");
        return None;
    };
    Some(c)
}

/// Root + etcd + a master + a registered agent (config tweaked by `tweak`), or why not.
pub async fn setup_with(
    test: &str,
    tweak: impl FnOnce(&mut AgentConfig),
) -> Option<(Cluster, AgentDaemon, tempfile::TempDir, AgentId)> {
    let c = cluster(test).await?;
    let work = tempfile::tempdir().unwrap();
    let mut cfg = agent_config(&c, work.path());
    tweak(&mut cfg);
    let agent = AgentDaemon::start(cfg).await.unwrap();
    let id = wait_registered(&agent, 1).await;
    Some((c, agent, work, id))
}

pub async fn setup(test: &str) -> Option<(Cluster, AgentDaemon, tempfile::TempDir, AgentId)> {
    setup_with(test, |_| {}).await
}

pub async fn wait_registered(agent: &AgentDaemon, n: u32) -> AgentId {
    wait_until("agent registration", T, || async {
        (agent.registrations() >= n && agent.connected())
            .then(|| agent.agent_id())
            .flatten()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; last error: {:?}", agent.last_error()))
}

pub fn framework(name: &str) -> FrameworkInfo {
    let mut f = FrameworkInfo::new("root", name);
    f.failover_timeout = Some(60.0);
    f
}

pub fn task(id: &str, agent: &AgentId, cmd: CommandInfo, cpus: f64, mem: f64) -> TaskInfo {
    let mut t = TaskInfo::command(id, TaskId::new(id), agent.clone(), cmd);
    t.resources = vec![
        Resource::scalar("cpus", cpus).unwrap(),
        Resource::scalar("mem", mem).unwrap(),
    ];
    t
}

/// Launches `t` on an outstanding offer of `agent`; returns the scheduler event index
/// before the launch.
pub async fn launch(s: &TestScheduler, agent: &AgentId, t: TaskInfo) -> usize {
    let offer = s
        .wait_outstanding_offer(T, |o| {
            &o.agent_id == agent && o.resources.cpus().is_some_and(|c| c.as_f64() >= 0.5)
        })
        .await
        .unwrap();
    let from = s.event_count();
    let r = s
        .launch(std::slice::from_ref(&offer.id), vec![t], Some(0.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    from
}

/// Every update of `task` at index ≥ `from` so far, acknowledging each once.
pub async fn updates(
    s: &TestScheduler,
    task: &str,
    from: usize,
    acked: &mut std::collections::BTreeSet<String>,
) -> Vec<TaskStatus> {
    let mut out = Vec::new();
    for e in s.events().iter().skip(from) {
        let Some(u) = e.update.as_ref() else { continue };
        if u.status.task_id.as_str() != task {
            continue;
        }
        if let Some(uuid) = u.status.uuid.clone()
            && acked.insert(uuid)
        {
            s.acknowledge(&u.status).await.unwrap();
        }
        out.push(u.status.clone());
    }
    out
}

/// Waits for an update of `task` (index ≥ `from`) matching `pred`, or a terminal one;
/// acknowledges every update of the task on the way.
pub async fn wait_status(
    s: &TestScheduler,
    task: &str,
    from: usize,
    what: &str,
    pred: impl Fn(&TaskStatus) -> bool,
) -> TaskStatus {
    let mut acked = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + T;
    loop {
        let all = updates(s, task, from, &mut acked).await;
        if let Some(st) = all
            .iter()
            .find(|st| pred(st) || st.state.is_terminal())
            .cloned()
        {
            assert!(pred(&st), "{task}: waiting for {what}, got {st:?}");
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what} of {task}: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `state` of `task` (or a terminal one, which must then be `state`).
pub async fn wait_state(
    s: &TestScheduler,
    task: &str,
    from: usize,
    state: TaskState,
) -> TaskStatus {
    wait_status(s, task, from, &format!("{state:?}"), |st| st.state == state).await
}

pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The cgroup root (below each hierarchy) of the agent on `work`.
pub fn cgroup_root(work: &Path) -> String {
    format!(
        "basalt-daemon-test{}",
        work.display().to_string().replace(['/', '.'], "-")
    )
}

/// Removes the test's cgroup roots once their task cgroups are gone.
pub async fn remove_roots(work: &Path) {
    let root = cgroup_root(work);
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup").join(&root)];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(rd.filter_map(Result::ok).map(|e| e.path().join(&root)));
    }
    let deadline = std::time::Instant::now() + T;
    loop {
        dirs.retain(|d| d.exists() && std::fs::remove_dir(d).is_err());
        if dirs.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cgroup roots not removable: {dirs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
