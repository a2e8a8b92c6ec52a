#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Mesos-side health checks: the checker against real HTTP/TCP servers and real
//! commands (transitions, grace period, consecutive failures, timeouts), then through
//! the master: TASK_RUNNING updates with `healthy`, the kill after too many failures
//! (TASK_KILLED, healthy false) and a bad health check refused with TASK_ERROR.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use basalt_agent::health::{CheckContext, HealthChecker, HealthUpdate, check_once};
use basalt_master::testing::{TestScheduler, wait_until};
use basalt_mesos::{
    CommandInfo, HealthCheck, HealthCheckType, HttpCheckInfo, Resource, TaskId, TaskState,
    TaskStatusReason, TcpCheckInfo,
};
use tokio::sync::mpsc;

use common::*;

fn fast(kind: HealthCheckType) -> HealthCheck {
    HealthCheck {
        kind: Some(kind),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.05),
        timeout_seconds: Some(2.0),
        consecutive_failures: Some(3),
        grace_period_seconds: Some(0.0),
        ..Default::default()
    }
}

/// An HTTP server answering `/health` with 200 while `ok`, else 503; counts requests.
async fn health_server(ok: Arc<AtomicBool>, hits: Arc<AtomicUsize>) -> u16 {
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let ok = ok.clone();
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                if ok.load(Ordering::SeqCst) {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

async fn next(rx: &mut mpsc::UnboundedReceiver<HealthUpdate>) -> HealthUpdate {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("a health update")
        .expect("the checker is running")
}

#[tokio::test]
async fn http_check_reports_transitions_and_asks_for_the_kill() {
    let ok = Arc::new(AtomicBool::new(true));
    let hits = Arc::new(AtomicUsize::new(0));
    let port = health_server(ok.clone(), hits.clone()).await;
    let mut hc = fast(HealthCheckType::Http);
    hc.http = Some(HttpCheckInfo {
        port: u32::from(port),
        path: Some("/health".into()),
        ..Default::default()
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _checker = HealthChecker::spawn(hc, CheckContext::default(), tx).unwrap();
    let u = next(&mut rx).await;
    assert!(u.healthy && !u.kill_task, "{u:?}");
    // Further successes send nothing; a failure does.
    let seen = hits.load(Ordering::SeqCst);
    wait_until("more checks", T, || async {
        (hits.load(Ordering::SeqCst) >= seen + 3).then_some(())
    })
    .await
    .unwrap();
    assert!(rx.try_recv().is_err(), "no update while staying healthy");
    ok.store(false, Ordering::SeqCst);
    let u = next(&mut rx).await;
    assert_eq!(
        (u.healthy, u.consecutive_failures, u.kill_task),
        (false, 1, false)
    );
    assert!(u.message.as_deref().unwrap().contains("503"), "{u:?}");
    // Back to healthy: one healthy update, the count resets.
    ok.store(true, Ordering::SeqCst);
    loop {
        let u = next(&mut rx).await;
        if u.healthy {
            break;
        }
    }
    ok.store(false, Ordering::SeqCst);
    let fails: Vec<HealthUpdate> = vec![
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
    ];
    let counts: Vec<(u32, bool)> = fails
        .iter()
        .map(|u| (u.consecutive_failures, u.kill_task))
        .collect();
    assert_eq!(counts, vec![(1, false), (2, false), (3, true)]);
    // The checker stops after asking for the kill.
    let seen = hits.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .map(|u| assert!(u.is_none(), "nothing after the kill: {u:?}"))
        .ok();
    assert!(hits.load(Ordering::SeqCst) <= seen + 1);
}

#[tokio::test]
async fn failures_in_the_grace_period_are_ignored_until_the_first_success() {
    let ok = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let port = health_server(ok.clone(), hits.clone()).await;
    let mut hc = fast(HealthCheckType::Http);
    hc.grace_period_seconds = Some(600.0);
    hc.consecutive_failures = Some(1);
    hc.http = Some(HttpCheckInfo {
        port: u32::from(port),
        path: Some("/health".into()),
        statuses: vec![200],
        ..Default::default()
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _checker = HealthChecker::spawn(hc, CheckContext::default(), tx).unwrap();
    wait_until("failing checks", T, || async {
        (hits.load(Ordering::SeqCst) >= 5).then_some(())
    })
    .await
    .unwrap();
    assert!(
        rx.try_recv().is_err(),
        "failures within the grace period are ignored"
    );
    ok.store(true, Ordering::SeqCst);
    assert!(next(&mut rx).await.healthy);
    // After the first success the grace period no longer applies.
    ok.store(false, Ordering::SeqCst);
    let u = next(&mut rx).await;
    assert!(!u.healthy && u.kill_task, "{u:?}");
}

#[tokio::test]
async fn tcp_and_command_checks_and_timeouts() {
    // TCP: a listener is healthy; a closed port is not.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let mut tcp = fast(HealthCheckType::Tcp);
    tcp.tcp = Some(TcpCheckInfo {
        port: u32::from(port),
        protocol: None,
    });
    let ctx = CheckContext::default();
    assert_eq!(check_once(&tcp, &ctx).await, Ok(()));
    drop(l);
    let e = check_once(&tcp, &ctx).await.unwrap_err();
    assert!(e.contains(&port.to_string()), "{e}");

    // COMMAND: the task's environment and sandbox.
    let dir = tempfile::tempdir().unwrap();
    let ctx = CheckContext {
        env: BTreeMap::from([
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("MARKER".to_string(), "ready".to_string()),
        ]),
        sandbox: dir.path().to_path_buf(),
        ..Default::default()
    };
    let mut cmd = fast(HealthCheckType::Command);
    cmd.command = Some(CommandInfo::shell(
        "test -f \"$MARKER\" && test \"$(pwd)\" = \"$SB\"",
    ));
    let mut env = basalt_mesos::Environment::default();
    env.push("SB", dir.path().display().to_string());
    cmd.command.as_mut().unwrap().environment = Some(env);
    let e = check_once(&cmd, &ctx).await.unwrap_err();
    assert!(e.contains("test -f"), "{e}");
    std::fs::write(dir.path().join("ready"), b"").unwrap();
    assert_eq!(check_once(&cmd, &ctx).await, Ok(()));

    // A check that outlives timeout_seconds fails, and its processes are killed.
    let pidfile = dir.path().join("pid");
    let mut slow = fast(HealthCheckType::Command);
    slow.timeout_seconds = Some(0.2);
    slow.consecutive_failures = Some(1);
    slow.command = Some(CommandInfo::shell(format!(
        "sleep 300 & echo $! > {}; wait",
        pidfile.display()
    )));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let checker = HealthChecker::spawn(slow, ctx.clone(), tx).unwrap();
    let u = next(&mut rx).await;
    assert!(!u.healthy && u.kill_task);
    assert!(u.message.unwrap().contains("timed out"));
    drop(checker);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the timed-out check's sleep is killed", T, || async {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for its reaper.
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    })
    .await
    .unwrap();
}

// ---- through the master --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_reports_health_and_kills_an_unhealthy_task() {
    let test = "daemon_reports_health_and_kills_an_unhealthy_task";
    if std::fs::metadata("/usr/bin/python3").is_err() {
        skip(
            test,
            "/usr/bin/python3 is missing (scripts/setup.sh installs python3-minimal)",
        );
        return;
    }
    let Some((c, agent, work, agent_id)) = setup(test).await else {
        return;
    };
    let s = TestScheduler::subscribe(c.addresses(), framework("health"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();

    // An HTTP check on the task's port (python3 serving the sandbox: /ok while it
    // exists) and a COMMAND check on a file; the HTTP one decides.
    let mut t = task(
        "web",
        &agent_id,
        CommandInfo::shell(
            "touch ok; exec python3 -m http.server $PORT0 --bind 127.0.0.1 >/dev/null 2>&1",
        ),
        0.2,
        64.0,
    );
    t.resources.push(Resource::ranges(
        "ports",
        basalt_mesos::Ranges::parse("[31005-31005]").unwrap(),
    ));
    let mut hc = fast(HealthCheckType::Http);
    hc.interval_seconds = Some(0.1);
    hc.consecutive_failures = Some(2);
    hc.grace_period_seconds = Some(30.0);
    hc.http = Some(HttpCheckInfo {
        port: 31005,
        path: Some("/ok".into()),
        ..Default::default()
    });
    t.health_check = Some(hc);
    t.kill_policy = Some(basalt_mesos::KillPolicy {
        grace_period: Some(basalt_mesos::Nanoseconds {
            nanoseconds: 500_000_000,
        }),
        extra: Default::default(),
    });
    let from = launch(&s, &agent_id, t).await;
    let running = wait_state(&s, "web", from, TaskState::Running).await;
    assert_eq!(
        running.healthy, None,
        "the first TASK_RUNNING has no health yet"
    );
    let healthy = wait_status(&s, "web", from, "healthy: true", |st| {
        st.healthy == Some(true)
    })
    .await;
    assert_eq!(healthy.state, TaskState::Running);
    assert_eq!(
        healthy.reason,
        Some(TaskStatusReason::TaskHealthCheckStatusUpdated)
    );

    // Make it unhealthy: two failures, then the kill; TASK_KILLED carries healthy false.
    let sandbox = agent
        .task(&fw, &TaskId::new("web"))
        .unwrap()
        .sandbox
        .unwrap();
    std::fs::remove_file(sandbox.join("ok")).unwrap();
    let unhealthy = wait_status(&s, "web", from, "healthy: false", |st| {
        st.healthy == Some(false)
    })
    .await;
    assert_eq!(unhealthy.state, TaskState::Running);
    assert!(
        unhealthy.message.as_deref().unwrap_or("").contains("404"),
        "{unhealthy:?}"
    );
    let killed = wait_state(&s, "web", from, TaskState::Killed).await;
    assert_eq!(killed.healthy, Some(false), "{killed:?}");

    // A COMMAND check runs in the task's mount namespace: its /proc is the task's pid
    // namespace, where the task is pid 2.
    let mut t = task(
        "cmd",
        &agent_id,
        CommandInfo::shell("touch ok; exec sleep 300"),
        0.1,
        32.0,
    );
    let mut hc = fast(HealthCheckType::Command);
    // Failures before the task exec'd `sleep` fall in the grace period.
    hc.grace_period_seconds = Some(30.0);
    hc.command = Some(CommandInfo::shell(
        "test -f ok && tr '\\0' ' ' < /proc/2/cmdline | grep -q '^sleep 300'",
    ));
    t.health_check = Some(hc);
    let from = launch(&s, &agent_id, t).await;
    let st = wait_status(&s, "cmd", from, "healthy: true", |st| st.healthy.is_some()).await;
    assert_eq!(st.healthy, Some(true), "{st:?}");
    s.kill(&TaskId::new("cmd")).await.unwrap();
    let killed = wait_state(&s, "cmd", from, TaskState::Killed).await;
    assert_eq!(
        killed.healthy, None,
        "a kill on request says nothing about health"
    );

    // A health check that cannot run: TASK_ERROR naming the field; the agent stays up.
    let mut bad = task(
        "bad-check",
        &agent_id,
        CommandInfo::shell("sleep 30"),
        0.1,
        32.0,
    );
    bad.health_check = Some(HealthCheck {
        kind: Some(HealthCheckType::Tcp),
        ..Default::default()
    });
    let from = launch(&s, &agent_id, bad).await;
    let st = wait_state(&s, "bad-check", from, TaskState::Error).await;
    assert!(st.message.as_deref().unwrap().contains("'tcp'"), "{st:?}");
    assert_eq!(st.reason, Some(TaskStatusReason::TaskInvalid));

    let from = launch(
        &s,
        &agent_id,
        task("after", &agent_id, CommandInfo::shell("exit 0"), 0.1, 32.0),
    )
    .await;
    wait_state(&s, "after", from, TaskState::Finished).await;
    agent.stop().await;
    remove_roots(work.path()).await;
    c.shutdown().await;
}
