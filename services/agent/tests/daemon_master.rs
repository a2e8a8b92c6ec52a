#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real agent daemon through a real master (the master's in-process harness: etcd,
//! one master, a v1 test scheduler over HTTP): launch, cgroup limits, `/files`, kill,
//! OOM, bad users, HTTP endpoints and restart recovery. Needs root (namespaces and
//! cgroups) and etcd; each test prints why it is skipped otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use basalt_agent::containerizer::{CgroupVersion, CgroupsConfig, Isolation};
use basalt_agent::daemon::{AgentConfig, AgentDaemon, ResourceSource};
use basalt_master::testing::{Cluster, TEST_CREDENTIAL, TestScheduler, wait_until};
use basalt_mesos::{
    AgentId, Attributes, CommandInfo, FrameworkId, Resources, TaskId, TaskState, TaskStatus,
    TaskStatusReason,
};
use common::{
    T, cgroup_root, enc, framework, get_json, launch, remove_roots, skip, task, wait_registered,
};

fn agent_config(c: &Cluster, work: &Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(
        c.addresses(),
        Some(TEST_CREDENTIAL.to_string()),
        work,
        "agent-e2e.example",
    );
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.resources = ResourceSource::Given {
        resources: Resources::parse("cpus:2;mem:1024;disk:1024;ports:[31000-31100]").unwrap(),
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

/// Root + etcd + a master + a registered agent, or why not.
async fn setup(test: &str) -> Option<(Cluster, AgentDaemon, tempfile::TempDir, AgentId)> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if !nix::unistd::geteuid().is_root() {
        skip(test, "not running as root (namespaces and cgroups)");
        return None;
    }
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        skip(test, "etcd is not installed");
        return None;
    };
    let work = tempfile::tempdir().unwrap();
    let agent = AgentDaemon::start(agent_config(&c, work.path()))
        .await
        .unwrap();
    let id = wait_registered(&agent, 1).await;
    Some((c, agent, work, id))
}

/// Waits for `state` of `task` (or a terminal one) in the updates at index ≥ `from`,
/// acknowledging every update of the task on the way (the master forwards a task's
/// next update once the previous one is acknowledged).
async fn wait_state(s: &TestScheduler, task: &str, from: usize, state: TaskState) -> TaskStatus {
    let mut acked = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + T;
    let st = 'found: loop {
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
            if u.status.state == state || u.status.state.is_terminal() {
                break 'found u.status.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {state:?} of {task}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(st.state, state, "{task}: {st:?}");
    st
}

fn memory_limit(cg: &basalt_agent::containerizer::TaskCgroup) -> String {
    let dir = cg.memory.clone().expect("memory cgroup");
    let file = match cg.version {
        CgroupVersion::V1 => "memory.limit_in_bytes",
        CgroupVersion::V2 => "memory.max",
    };
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_launch_limits_files_kill_through_the_master() {
    let test = "daemon_launch_limits_files_kill_through_the_master";
    let Some((c, agent, work, agent_id)) = setup(test).await else {
        return;
    };
    let s = TestScheduler::subscribe(c.addresses(), framework("e2e"))
        .await
        .unwrap();
    let fw: FrameworkId = s.framework_id().unwrap();
    let offer = s
        .wait_outstanding_offer(T, |o| o.agent_id == agent_id)
        .await
        .unwrap();
    assert_eq!(offer.hostname, "agent-e2e.example");
    assert_eq!(offer.resources.cpus().unwrap().as_f64(), 2.0);
    assert_eq!(offer.resources.mem().unwrap().as_f64(), 1024.0);

    let mut t1 = task(
        "t1",
        &agent_id,
        CommandInfo::shell("echo hello; exec sleep 30"),
        0.1,
        32.0,
    );
    t1.kill_policy = Some(basalt_mesos::KillPolicy {
        grace_period: Some(basalt_mesos::Nanoseconds {
            nanoseconds: 500_000_000,
        }),
        extra: Default::default(),
    });
    let from = launch(&s, &agent_id, t1).await;
    let running = wait_state(&s, "t1", from, TaskState::Running).await;
    assert_eq!(running.agent_id.as_ref(), Some(&agent_id));

    // The task runs under its cgroup limits.
    let container = agent.container(&fw, &TaskId::new("t1")).expect("container");
    let cg = container.cgroup().expect("cgroup").clone();
    assert_eq!(memory_limit(&cg), (32u64 << 20).to_string());
    if let (CgroupVersion::V1, Some(cpu)) = (cg.version, &cg.cpu) {
        let shares = std::fs::read_to_string(cpu.join("cpu.shares")).unwrap();
        assert_eq!(shares.trim(), "102");
    }

    // Its stdout through /files/read, with offset -1 giving the size.
    let base = agent.http_url();
    let stdout = container.sandbox().join("stdout");
    let stdout_q = enc(&stdout.display().to_string());
    let data = wait_until("hello in stdout via /files/read", T, || async {
        let (code, v) = get_json(&format!("{base}/files/read?path={stdout_q}&offset=0")).await;
        (code == 200 && v["data"].as_str().is_some_and(|d| d.contains("hello"))).then_some(v)
    })
    .await
    .unwrap();
    assert_eq!(data["offset"], 0);
    let (code, v) = get_json(&format!("{base}/files/read?path={stdout_q}&offset=-1")).await;
    assert_eq!(code, 200);
    assert_eq!(v["offset"], "hello\n".len());
    assert_eq!(v["data"], "");
    let (code, v) = get_json(&format!(
        "{base}/files/read?path={stdout_q}&offset=1&length=3"
    ))
    .await;
    assert_eq!((code, v["data"].as_str()), (200, Some("ell")));
    let sandbox_q = enc(&container.sandbox().display().to_string());
    let (code, v) = get_json(&format!("{base}/files/browse?path={sandbox_q}")).await;
    assert_eq!(code, 200, "{v}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"].as_str().is_some_and(|p| p.ends_with("/stdout"))),
        "{v}"
    );
    let dl = reqwest::get(format!("{base}/files/download?path={stdout_q}"))
        .await
        .unwrap();
    assert_eq!(dl.status().as_u16(), 200);
    assert_eq!(dl.text().await.unwrap(), "hello\n");

    // Bad paths are refused, naming the path.
    for (path, want) in [
        ("/etc/passwd".to_string(), 403),
        (
            format!("{}/../../../../etc", container.sandbox().display()),
            403,
        ),
        ("relative/stdout".to_string(), 403),
        (
            format!("{}/no-such-file", container.sandbox().display()),
            404,
        ),
    ] {
        let (code, v) = get_json(&format!("{base}/files/read?path={}", enc(&path))).await;
        assert_eq!(code, want, "{path}: {v}");
        assert!(v.as_str().is_some_and(|m| m.contains(&path)), "{path}: {v}");
    }
    let (code, _) = get_json(&format!("{base}/files/read")).await;
    assert_eq!(code, 400);

    // /state, /metrics/snapshot, /health.
    for path in ["/state", "/state.json", "/slave(1)/state"] {
        let (code, st) = get_json(&format!("{base}{path}")).await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(st["id"], agent_id.as_str());
        assert_eq!(st["hostname"], "agent-e2e.example");
        assert_eq!(st["resources"]["cpus"], 2.0);
        assert_eq!(st["attributes"]["rack"], "r1");
        let t = &st["frameworks"][0]["executors"][0]["tasks"][0];
        assert_eq!(t["id"], "t1", "{st}");
        assert_eq!(t["state"], "TASK_RUNNING");
        assert_eq!(st["frameworks"][0]["id"], fw.as_str());
        assert_eq!(
            st["frameworks"][0]["executors"][0]["directory"],
            container.sandbox().display().to_string()
        );
    }
    let (code, m) = get_json(&format!("{base}/metrics/snapshot")).await;
    assert_eq!(code, 200);
    assert_eq!(m["slave/registered"], 1.0);
    assert_eq!(m["slave/tasks_running"], 1.0);
    assert_eq!(m["slave/cpus_used"], 0.1);
    let (code, _) = get_json(&format!("{base}/health")).await;
    assert_eq!(code, 200);

    // KILL → TASK_KILLED at the scheduler within the grace period, acknowledged.
    let from = s.event_count();
    let started = std::time::Instant::now();
    s.kill(&TaskId::new("t1")).await.unwrap();
    let killed = wait_state(&s, "t1", from, TaskState::Killed).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{killed:?}");
    wait_until("every update acknowledged", T, || async {
        agent.pending_updates().is_empty().then_some(())
    })
    .await
    .unwrap();
    assert!(!cg.dirs.iter().any(|d| d.exists()), "cgroup left behind");
    let (_, m) = get_json(&format!("{base}/metrics/snapshot")).await;
    assert_eq!(m["slave/tasks_killed"], 1.0);
    assert_eq!(m["slave/tasks_running"], 0.0);
    let (_, st) = get_json(&format!("{base}/state")).await;
    assert_eq!(
        st["completed_frameworks"][0]["completed_executors"][0]["completed_tasks"][0]["state"],
        "TASK_KILLED",
        "{st}"
    );
    agent.stop().await;
    c.shutdown().await;
    remove_roots(work.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_oom_and_unknown_user_fail_and_the_agent_stays_up() {
    let test = "daemon_oom_and_unknown_user_fail_and_the_agent_stays_up";
    let Some((c, agent, work, agent_id)) = setup(test).await else {
        return;
    };
    // Bigger than the task may grow, so the OOM killer picks the task (see the
    // containerizer's OOM test).
    let ballast = vec![7u8; 96 << 20];
    std::hint::black_box(&ballast);
    let s = TestScheduler::subscribe(c.addresses(), framework("e2e-bad"))
        .await
        .unwrap();

    let from = launch(
        &s,
        &agent_id,
        task(
            "hog",
            &agent_id,
            CommandInfo::shell("head -c 200M /dev/zero | tail"),
            0.1,
            32.0,
        ),
    )
    .await;
    let failed = wait_state(&s, "hog", from, TaskState::Failed).await;
    assert_eq!(
        failed.reason,
        Some(TaskStatusReason::ContainerLimitationMemory),
        "{failed:?}"
    );
    assert!(
        failed
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Memory limit exceeded")),
        "{failed:?}"
    );

    let mut cmd = CommandInfo::shell("echo never");
    cmd.user = Some("basalt-no-such-user".into());
    let from = launch(&s, &agent_id, task("nouser", &agent_id, cmd, 0.1, 32.0)).await;
    let failed = wait_state(&s, "nouser", from, TaskState::Failed).await;
    assert!(
        failed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("basalt-no-such-user") && m.contains("does not exist")),
        "{failed:?}"
    );

    // Still up: another task runs to completion.
    let from = launch(
        &s,
        &agent_id,
        task("after", &agent_id, CommandInfo::shell("echo ok"), 0.1, 32.0),
    )
    .await;
    wait_state(&s, "after", from, TaskState::Running).await;
    wait_state(&s, "after", from, TaskState::Finished).await;
    assert_eq!(agent.registrations(), 1);
    assert!(agent.connected());
    agent.stop().await;
    c.shutdown().await;
    remove_roots(work.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_restart_keeps_the_task_and_re_registers_with_its_id() {
    let test = "daemon_restart_keeps_the_task_and_re_registers_with_its_id";
    let Some((c, agent, work, agent_id)) = setup(test).await else {
        return;
    };
    let s = TestScheduler::subscribe(c.addresses(), framework("e2e-restart"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    let from = launch(
        &s,
        &agent_id,
        task(
            "long",
            &agent_id,
            CommandInfo::shell("exec sleep 60"),
            0.1,
            32.0,
        ),
    )
    .await;
    // TASK_RUNNING reaches the scheduler but stays unacknowledged across the restart.
    let running = s
        .wait_update("long", from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    let uuid = running.uuid.clone().unwrap();
    assert!(
        agent
            .pending_updates()
            .iter()
            .any(|p| p.status.uuid.as_deref() == Some(uuid.as_str()))
    );
    let container = agent.container(&fw, &TaskId::new("long")).unwrap();
    let pid = container.pid();
    let dirs = container
        .cgroup()
        .map(|c| c.dirs.clone())
        .unwrap_or_default();
    assert_eq!(
        std::fs::read_link(work.path().join("meta/slaves/latest")).unwrap(),
        PathBuf::from(agent_id.as_str())
    );

    // "Kill" the daemon (its loops and endpoint; the task keeps running) and start a
    // new one on the same work dir.
    agent.stop().await;
    let agent = AgentDaemon::start(agent_config(&c, work.path()))
        .await
        .unwrap();
    assert_eq!(agent.agent_id().as_ref(), Some(&agent_id));
    // The unacknowledged update was checkpointed and is pending again.
    assert!(
        agent
            .pending_updates()
            .iter()
            .any(|p| p.status.uuid.as_deref() == Some(uuid.as_str())),
        "{:?}",
        agent.pending_updates()
    );
    let again = wait_registered(&agent, 1).await;
    assert_eq!(again, agent_id);
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
    assert_eq!(
        agent.task(&fw, &TaskId::new("long")).unwrap().status.state,
        TaskState::Running
    );
    // The master still has it running after the re-registration.
    let (_, st) = get_json(&format!("{}/master/state.json", c.url(0))).await;
    assert_eq!(
        st["frameworks"][0]["tasks"][0]["state"], "TASK_RUNNING",
        "{st}"
    );
    let (_, st) = get_json(&format!("{}/state", agent.http_url())).await;
    assert_eq!(
        st["frameworks"][0]["executors"][0]["tasks"][0]["id"],
        "long"
    );

    // The acknowledgement reaches the new daemon, which drops the update.
    s.acknowledge(&running).await.unwrap();
    wait_until("the checkpointed update acknowledged", T, || async {
        agent.pending_updates().is_empty().then_some(())
    })
    .await
    .unwrap();

    // The recovered task is killed on request.
    let from = s.event_count();
    s.kill(&TaskId::new("long")).await.unwrap();
    wait_state(&s, "long", from, TaskState::Killed).await;
    wait_until("the recovered task's process is gone", T, || async {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            .is_err()
            .then_some(())
    })
    .await
    .unwrap();
    wait_until("the recovered task's cgroups removed", T, || async {
        (!dirs.iter().any(|d| d.exists())).then_some(())
    })
    .await
    .unwrap();
    agent.stop().await;
    c.shutdown().await;
    remove_roots(work.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_follows_a_master_failover_with_its_running_task() {
    let test = "daemon_follows_a_master_failover_with_its_running_task";
    if !nix::unistd::geteuid().is_root() {
        return skip(test, "not running as root (namespaces and cgroups)");
    }
    let Some(mut c) = Cluster::start(1, 2, |_| {}).await.unwrap() else {
        return skip(test, "etcd is not installed");
    };
    let work = tempfile::tempdir().unwrap();
    let agent = AgentDaemon::start(agent_config(&c, work.path()))
        .await
        .unwrap();
    let agent_id = wait_registered(&agent, 1).await;
    let s = TestScheduler::subscribe(c.addresses(), framework("e2e-failover"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    let from = launch(
        &s,
        &agent_id,
        task(
            "survivor",
            &agent_id,
            CommandInfo::shell("exec sleep 60"),
            0.1,
            32.0,
        ),
    )
    .await;
    wait_state(&s, "survivor", from, TaskState::Running).await;
    let pid = agent
        .container(&fw, &TaskId::new("survivor"))
        .unwrap()
        .pid();

    let old = c.leader().unwrap();
    c.kill(old).await.unwrap();
    let new = c.wait_leader(T).await.unwrap();
    assert_ne!(old, new);
    // Re-registered with the new leader under the same id, the task still running.
    assert_eq!(wait_registered(&agent, 2).await, agent_id);
    let st = wait_until("the task known running by the new leader", T, || async {
        let (_, st) = get_json(&format!("{}/master/state.json", c.url(new))).await;
        (st["frameworks"][0]["tasks"][0]["state"] == "TASK_RUNNING").then_some(st)
    })
    .await
    .unwrap();
    assert_eq!(st["slaves"][0]["id"], agent_id.as_str());
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());

    // Kill through the new leader.
    let mut s = s;
    s.resubscribe(T).await.unwrap();
    let from = s.event_count();
    s.kill(&TaskId::new("survivor")).await.unwrap();
    wait_state(&s, "survivor", from, TaskState::Killed).await;
    agent.stop().await;
    c.shutdown().await;
    remove_roots(work.path()).await;
}
