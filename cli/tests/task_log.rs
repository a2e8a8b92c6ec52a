//! `basalt task log | ls` through the gateway's `/agent/<id>/files/…` to a real agent
//! daemon (plain processes, no isolation) running a real Marathon task.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn task_log_and_ls_read_the_sandbox_of_a_real_task() {
    let work = tempfile::tempdir().unwrap();
    let Some(c) = TestCluster::start("task_log", Agents::Real(work.path().to_owned())).await else {
        return;
    };
    c.setup().await;
    let def = r#"{"id": "/logger", "cmd": "for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2; exec sleep 1000", "cpus": 0.1, "mem": 32, "instances": 1}"#;
    c.basalt_stdin(&["marathon", "app", "add"], def).await.ok();
    let id = wait_until("the logger task running", || async {
        let tasks = c.basalt(&["task", "list", "--json"]).await.ok().json();
        tasks
            .as_array()?
            .iter()
            .find(|t| t["state"] == "TASK_RUNNING" && t["name"] == "logger")
            .and_then(|t| t["id"].as_str().map(str::to_owned))
    })
    .await;

    // stdout: the last 3 lines once all five are written.
    let out = wait_until("line-5 in stdout", || async {
        let out = c.basalt(&["task", "log", &id, "--lines", "3"]).await.ok();
        out.stdout.contains("line-5").then_some(out)
    })
    .await;
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("line-"))
        .collect();
    assert_eq!(lines, ["line-3", "line-4", "line-5"], "{out:?}");
    // A unique part of the id works; stderr by name.
    let out = c.basalt(&["task", "log", "logger", "stderr"]).await.ok();
    assert!(out.stdout.contains("oops"), "{out:?}");
    c.basalt(&["task", "log", "logger", "no-such-file"])
        .await
        .fails_with(&["no file", "no-such-file"]);
    c.basalt(&["task", "log", "nothing-like-this"])
        .await
        .fails_with(&["no running task matches", "basalt task list"]);

    // ls: the sandbox holds stdout and stderr.
    let out = c.basalt(&["task", "ls", &id]).await.ok();
    let names: Vec<&str> = out.stdout.lines().collect();
    assert!(
        names.contains(&"stdout") && names.contains(&"stderr"),
        "{out:?}"
    );
    let out = c.basalt(&["task", "ls", &id, "--long"]).await.ok();
    assert!(out.stdout.starts_with("MODE"), "{out:?}");

    // The task is in Marathon's list too, on the real agent's host.
    let mt = c
        .basalt(&["marathon", "task", "list", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(mt.as_array().map(Vec::len), Some(1), "{mt}");
    assert_eq!(mt[0]["host"], Value::from("127.0.0.1"));
    c.basalt(&["marathon", "app", "remove", "/logger"])
        .await
        .ok();

    // --follow prints what the task appends after the command started.
    let def = r#"{"id": "/ticker", "cmd": "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done", "cpus": 0.1, "mem": 32, "instances": 1}"#;
    c.basalt_stdin(&["marathon", "app", "add"], def).await.ok();
    let id = wait_until("the ticker task running", || async {
        let tasks = c.basalt(&["task", "list", "--json"]).await.ok().json();
        tasks
            .as_array()?
            .iter()
            .find(|t| t["state"] == "TASK_RUNNING" && t["name"] == "ticker")
            .and_then(|t| t["id"].as_str().map(str::to_owned))
    })
    .await;
    wait_until("a first tick", || async {
        let out = c.basalt(&["task", "log", &id]).await.ok();
        out.stdout.contains("tick-").then_some(())
    })
    .await;
    let mut child = spawn_in(
        c.home.path(),
        &["task", "log", &id, "--follow", "--lines", "1"],
    );
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let got = tokio::time::timeout(DEADLINE, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            seen.push(l);
            if seen.len() >= 4 {
                break;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "follow printed only {seen:?}");
    let n: Vec<u64> = seen
        .iter()
        .map(|l| l.trim_start_matches("tick-").parse().unwrap())
        .collect();
    assert!(
        n.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive lines, nothing lost or repeated: {seen:?}"
    );
    child.kill().await.unwrap();
    c.basalt(&["marathon", "app", "remove", "/ticker"])
        .await
        .ok();
}
