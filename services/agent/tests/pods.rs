#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Task groups (pods) through the master: LAUNCH_GROUP with a DEFAULT executor; the
//! tasks share one network namespace (a server on 127.0.0.1 reached by its sibling,
//! invisible from the host), have sandboxes under `<executor sandbox>/tasks/<id>`, and
//! killing one task of a group kills the group.

mod common;

use basalt_master::api::{Accept, Call, LaunchGroup, Operation, TaskGroupInfo};
use basalt_master::testing::{TestScheduler, wait_until};
use basalt_mesos::{
    AgentId, CommandInfo, ExecutorId, ExecutorInfo, ExecutorType, HealthCheck, HealthCheckType,
    OfferId, Resource, TaskId, TaskInfo, TaskState, TcpCheckInfo,
};

use common::*;

fn executor(id: &str) -> ExecutorInfo {
    ExecutorInfo {
        kind: Some(ExecutorType::Default),
        executor_id: ExecutorId::new(id),
        framework_id: None,
        command: None,
        container: None,
        resources: vec![
            Resource::scalar("cpus", 0.1).unwrap(),
            Resource::scalar("mem", 32.0).unwrap(),
        ],
        name: None,
        data: None,
        discovery: None,
        shutdown_grace_period: None,
        labels: None,
        extra: Default::default(),
    }
}

fn bash(id: &str, agent: &AgentId, script: &str) -> TaskInfo {
    let mut cmd = CommandInfo::shell("/bin/bash");
    cmd.shell = Some(false);
    cmd.arguments = vec!["bash".into(), "-c".into(), script.into()];
    task(id, agent, cmd, 0.1, 48.0)
}

/// ACCEPTs an outstanding offer of `agent` with one LAUNCH_GROUP; returns the event
/// index before it.
async fn launch_group(
    s: &TestScheduler,
    agent: &AgentId,
    ex: ExecutorInfo,
    tasks: Vec<TaskInfo>,
    used: &mut Vec<OfferId>,
) -> usize {
    // `TestScheduler::call` does not mark offers used: skip the ones we used.
    let offer = s
        .wait_outstanding_offer(T, |o| {
            &o.agent_id == agent
                && !used.contains(&o.id)
                && o.resources.cpus().is_some_and(|c| c.as_f64() >= 0.5)
        })
        .await
        .unwrap();
    used.push(offer.id.clone());
    let from = s.event_count();
    let mut c = Call::new("ACCEPT", s.framework_id());
    c.accept = Some(Accept {
        offer_ids: vec![offer.id.clone()],
        operations: vec![Operation {
            kind: "LAUNCH_GROUP".into(),
            id: None,
            launch: None,
            launch_group: Some(LaunchGroup {
                executor: ex,
                task_group: TaskGroupInfo { tasks },
            }),
            other: Default::default(),
        }],
        filters: None,
    });
    let r = s.call(&c).await.unwrap().unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    from
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_tasks_share_localhost_and_die_together() {
    let test = "pod_tasks_share_localhost_and_die_together";
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
    let s = TestScheduler::subscribe(c.addresses(), framework("pods"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    let mut used = Vec::new();
    // A port nobody on the host listens on; the server binds it inside the pod.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = bash(
        "server",
        &agent_id,
        &format!(
            "exec python3 -c \"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {port}))
s.listen(1)
open('listening', 'w').close()
while True:
    c, _ = s.accept()
    c.sendall(b'hello-from-server')
    c.close()
\""
        ),
    );
    let client = bash(
        "client",
        &agent_id,
        &format!(
            "for i in $(seq 200); do exec 3<>/dev/tcp/127.0.0.1/{port} && break; sleep 0.05; done; \
             cat <&3 > got.txt; test \"$(cat got.txt)\" = hello-from-server"
        ),
    );
    // A TCP health check on the server's port: it only passes inside the pod's network
    // namespace.
    let mut server = server;
    server.health_check = Some(HealthCheck {
        kind: Some(HealthCheckType::Tcp),
        delay_seconds: Some(0.0),
        interval_seconds: Some(0.1),
        grace_period_seconds: Some(60.0),
        tcp: Some(TcpCheckInfo {
            port: u32::from(port),
            protocol: None,
        }),
        ..Default::default()
    });
    let from = launch_group(
        &s,
        &agent_id,
        executor("pod-1"),
        vec![server, client],
        &mut used,
    )
    .await;
    wait_state(&s, "server", from, TaskState::Running).await;
    let done = wait_state(&s, "client", from, TaskState::Finished).await;
    let healthy = wait_status(&s, "server", from, "healthy", |st| st.healthy.is_some()).await;
    assert_eq!(healthy.healthy, Some(true), "{healthy:?}");
    assert_eq!(
        done.message.as_deref(),
        Some("Command exited with status 0")
    );

    // Sandboxes: <executor sandbox>/tasks/<task_id>, one executor sandbox.
    let srv = agent.task(&fw, &TaskId::new("server")).unwrap();
    let cli = agent.task(&fw, &TaskId::new("client")).unwrap();
    assert_eq!(srv.executor_id.as_str(), "pod-1");
    let (ss, cs) = (srv.sandbox.unwrap(), cli.sandbox.unwrap());
    assert!(ss.ends_with("tasks/server"), "{}", ss.display());
    assert!(cs.ends_with("tasks/client"), "{}", cs.display());
    assert_eq!(ss.parent(), cs.parent());
    assert!(ss.join("listening").exists());
    assert_eq!(
        std::fs::read_to_string(cs.join("got.txt")).unwrap(),
        "hello-from-server"
    );
    let exec_sandbox = ss.parent().unwrap().parent().unwrap();
    assert!(
        exec_sandbox
            .display()
            .to_string()
            .contains("/executors/pod-1/runs/"),
        "{}",
        exec_sandbox.display()
    );
    // The pod's loopback is its own: the host does not see the server.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the pod's 127.0.0.1:{port} must not be the host's"
    );
    // A FINISHED task leaves its sibling running; killing the server ends the pod and
    // releases its network namespace.
    s.kill(&TaskId::new("server")).await.unwrap();
    wait_state(&s, "server", from, TaskState::Killed).await;
    let netns_dir = work.path().join("netns");
    wait_until("the pod's network namespace is released", T, || async {
        std::fs::read_dir(&netns_dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
            .then_some(())
    })
    .await
    .unwrap();

    // Killing one task of a group kills the others.
    let a = bash("a", &agent_id, "exec sleep 300");
    let b = bash("b", &agent_id, "exec sleep 300");
    let from = launch_group(&s, &agent_id, executor("pod-2"), vec![a, b], &mut used).await;
    wait_state(&s, "a", from, TaskState::Running).await;
    wait_state(&s, "b", from, TaskState::Running).await;
    s.kill(&TaskId::new("a")).await.unwrap();
    wait_state(&s, "a", from, TaskState::Killed).await;
    wait_state(&s, "b", from, TaskState::Killed).await;

    // /state shows the group's executor.
    let (code, st) = get_json(&format!("{}/state", agent.http_url())).await;
    assert_eq!(code, 200);
    assert!(st.to_string().contains("pod-2"), "{st}");

    agent.stop().await;
    remove_roots(work.path()).await;
    c.shutdown().await;
}
