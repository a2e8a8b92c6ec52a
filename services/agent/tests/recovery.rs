#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Recovery through the master: a task recovered by a restarted agent keeps its OOM
//! detection (TASK_FAILED, REASON_CONTAINER_LIMITATION_MEMORY).

mod common;

use basalt_agent::daemon::AgentDaemon;
use basalt_master::testing::TestScheduler;
use basalt_mesos::{CommandInfo, TaskId, TaskState, TaskStatusReason, TaskStatusSource};

use common::*;

/// Runs an agent on a runtime of its own (like a separate agent process) until `stop`
/// fires; then drops the runtime with everything the agent ran (supervisors included),
/// leaving its tasks running — what a SIGKILL of the agent process does.
fn agent_process(
    cfg: basalt_agent::daemon::AgentConfig,
    registered: std::sync::mpsc::Sender<basalt_mesos::AgentId>,
    stop: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let agent = rt.block_on(AgentDaemon::start(cfg)).unwrap();
        let id = rt.block_on(wait_registered(&agent, 1));
        registered.send(id).unwrap();
        let _ = stop.recv();
        rt.block_on(agent.stop());
        rt.shutdown_background();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovered_task_is_still_oom_killed_and_reported() {
    let test = "a_recovered_task_is_still_oom_killed_and_reported";
    let Some(c) = cluster(test).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (id_tx, id_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    let first = agent_process(agent_config(&c, work.path()), id_tx, stop_rx);
    let agent_id = tokio::task::spawn_blocking(move || id_rx.recv().unwrap())
        .await
        .unwrap();
    let s = TestScheduler::subscribe(c.addresses(), framework("recovery"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    // Waits for a file, then eats memory past its 32 MB limit.
    let hog = task(
        "hog",
        &agent_id,
        CommandInfo::shell("while [ ! -f go ]; do sleep 0.05; done; exec tail /dev/zero"),
        0.1,
        32.0,
    );
    let from = launch(&s, &agent_id, hog).await;
    wait_state(&s, "hog", from, TaskState::Running).await;

    // The agent process goes away and a new one recovers the task.
    stop_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || first.join().unwrap())
        .await
        .unwrap();
    let agent = AgentDaemon::start(agent_config(&c, work.path()))
        .await
        .unwrap();
    wait_registered(&agent, 1).await;
    let entry = agent.task(&fw, &TaskId::new("hog")).expect("recovered");
    assert!(agent.container(&fw, &TaskId::new("hog")).is_none());
    let sandbox = entry.sandbox.unwrap();

    std::fs::write(sandbox.join("go"), b"").unwrap();
    let st = wait_state(&s, "hog", from, TaskState::Failed).await;
    assert_eq!(
        st.reason,
        Some(TaskStatusReason::ContainerLimitationMemory),
        "{st:?}"
    );
    assert_eq!(st.source, Some(TaskStatusSource::Agent));
    let msg = st.message.unwrap_or_default();
    assert!(
        msg.starts_with("Memory limit exceeded: Requested: 32MB"),
        "{msg}"
    );
    agent.stop().await;
    remove_roots(work.path()).await;
    c.shutdown().await;
}
