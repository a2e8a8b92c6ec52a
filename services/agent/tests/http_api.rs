#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The agent's HTTP API through a real master and a real task: `/files/read` offset and
//! length semantics as Mesos (offset -1, past the end, length -1, the 16-page cap, bad
//! values), `/files/browse`, `/files/download`, `/state` (running and completed),
//! `/metrics/snapshot` and `/health`.

mod common;

use basalt_master::testing::{TestScheduler, wait_until};
use basalt_mesos::{CommandInfo, TaskId, TaskState};

use common::*;

const SIZE: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_state_metrics_and_health_endpoints() {
    let test = "files_state_metrics_and_health_endpoints";
    let Some((c, agent, work, agent_id)) = setup(test).await else {
        return;
    };
    let s = TestScheduler::subscribe(c.addresses(), framework("http"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    // 100 000 bytes of a known pattern, then stay up.
    let script = format!(
        "head -c {SIZE} /dev/zero | tr '\\0' 'a' > big.txt && printf 0123456789 > digits.txt && exec sleep 300"
    );
    let from = launch(
        &s,
        &agent_id,
        task("files", &agent_id, CommandInfo::shell(script), 0.1, 32.0),
    )
    .await;
    wait_state(&s, "files", from, TaskState::Running).await;
    let sandbox = agent
        .task(&fw, &TaskId::new("files"))
        .unwrap()
        .sandbox
        .unwrap();
    let base = agent.http_url();
    let big = enc(&sandbox.join("big.txt").display().to_string());
    let digits = enc(&sandbox.join("digits.txt").display().to_string());
    wait_until("the task wrote its files", T, || async {
        (std::fs::metadata(sandbox.join("digits.txt")).is_ok_and(|m| m.len() == 10)).then_some(())
    })
    .await
    .unwrap();

    let read = |q: String| {
        let base = base.clone();
        async move { get_json(&format!("{base}/files/read?{q}")).await }
    };
    // offset -1: the size, no data.
    let (code, v) = read(format!("path={big}&offset=-1")).await;
    assert_eq!(
        (code, v["offset"].as_u64(), v["data"].as_str()),
        (200, Some(SIZE as u64), Some(""))
    );
    // Past the end: the size, no data.
    let (code, v) = read(format!("path={digits}&offset=50&length=5")).await;
    assert_eq!(
        (code, v["offset"].as_u64(), v["data"].as_str()),
        (200, Some(10), Some(""))
    );
    // A slice.
    let (_, v) = read(format!("path={digits}&offset=3&length=4")).await;
    assert_eq!(
        (v["offset"].as_u64(), v["data"].as_str()),
        (Some(3), Some("3456"))
    );
    // No length / length -1: to the end, capped at 16 pages (64 KiB).
    for q in [
        format!("path={digits}&offset=7"),
        format!("path={digits}&offset=7&length=-1"),
    ] {
        let (_, v) = read(q).await;
        assert_eq!(v["data"].as_str(), Some("789"));
    }
    let (_, v) = read(format!("path={big}&offset=0&length=-1")).await;
    assert_eq!(v["data"].as_str().unwrap().len(), 16 * 4096);
    let (_, v) = read(format!("path={big}&offset={}", SIZE - 10)).await;
    assert_eq!(v["data"].as_str(), Some("aaaaaaaaaa"));
    // Bad values are refused.
    let (code, v) = read(format!("path={big}&offset=-2")).await;
    assert_eq!(code, 400, "{v}");
    assert!(v.as_str().unwrap().contains("offset"), "{v}");
    let (code, _) = read(format!("path={big}&length=-7")).await;
    assert_eq!(code, 400);
    let (code, _) = read(format!("path={big}&offset=abc")).await;
    assert_eq!(code, 400);
    let (code, v) = read(format!("path={}", enc(&sandbox.display().to_string()))).await;
    assert_eq!(code, 400, "reading a directory: {v}");

    // browse and download.
    let (code, v) = get_json(&format!(
        "{base}/files/browse?path={}",
        enc(&sandbox.display().to_string())
    ))
    .await;
    assert_eq!(code, 200);
    let entry = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with("/digits.txt"))
        .cloned()
        .expect("digits.txt listed");
    assert_eq!(entry["size"], 10);
    assert_eq!(entry["mode"], "-rw-r--r--");
    assert_eq!(entry["uid"], "root");
    let r = reqwest::get(format!("{base}/files/download?path={digits}"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("digits.txt")
    );
    assert_eq!(r.text().await.unwrap(), "0123456789");
    let (code, _) = get_json(&format!(
        "{base}/files/download?path={}",
        enc(&sandbox.display().to_string())
    ))
    .await;
    assert_eq!(code, 400);

    // /health, /metrics/snapshot, /state with the running task.
    let r = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (code, m) = get_json(&format!("{base}/metrics/snapshot")).await;
    assert_eq!(code, 200);
    assert_eq!(m["slave/registered"], 1.0);
    assert_eq!(m["slave/tasks_running"], 1.0);
    assert_eq!(m["slave/cpus_total"], 4.0);
    assert!(
        (m["slave/cpus_used"].as_f64().unwrap() - 0.1).abs() < 1e-9,
        "{m}"
    );
    let (_, st) = get_json(&format!("{base}/state")).await;
    let ex = &st["frameworks"][0]["executors"][0];
    assert_eq!(ex["tasks"][0]["id"], "files");
    assert_eq!(ex["directory"], sandbox.display().to_string());

    // Killed and acknowledged: the task moves to completed executors; counters follow.
    s.kill(&TaskId::new("files")).await.unwrap();
    wait_state(&s, "files", from, TaskState::Killed).await;
    wait_until("the task is completed in /state", T, || async {
        let (_, st) = get_json(&format!("{base}/state")).await;
        // No executor of the framework is left: it is a completed framework (Mesos).
        let done = &st["completed_frameworks"][0]["completed_executors"][0]["completed_tasks"][0];
        (done["id"] == "files" && done["state"] == "TASK_KILLED").then_some(())
    })
    .await
    .unwrap();
    let (_, m) = get_json(&format!("{base}/metrics/snapshot")).await;
    assert_eq!(m["slave/tasks_killed"], 1.0);
    assert_eq!(m["slave/tasks_running"], 0.0);

    agent.stop().await;
    remove_roots(work.path()).await;
    c.shutdown().await;
}
