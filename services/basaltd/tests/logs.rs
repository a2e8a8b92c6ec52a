//! `basaltd logs` as a child process: serves the journal of `--directory` (real journal
//! files written by systemd-journal-remote), stops cleanly on SIGTERM, and refuses a
//! journal directory that does not exist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use basalt_logs::testing::{TestEntry, TestJournal};
use basalt_store::testing::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_basaltd");

#[tokio::test]
async fn basaltd_logs_serves_the_journal_and_stops_on_sigterm() {
    let mut journal = match TestJournal::new() {
        Ok(j) => j,
        Err(why) => {
            println!("SKIPPED basaltd_logs_serves_the_journal_and_stops_on_sigterm: {why}");
            return;
        }
    };
    journal
        .append(&[TestEntry::new(
            "basalt-logs.service",
            "hello from the journal",
        )])
        .unwrap();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["logs", "--listen", &addr.to_string(), "--directory"])
        .arg(journal.dir())
        .arg("--journalctl")
        .arg(journal.journalctl())
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/range/");
    let body = wait_for("basaltd logs to answer", Duration::from_secs(30), || {
        let c = client.clone();
        let u = url.clone();
        async move {
            let r = c.get(&u).send().await.ok()?;
            (r.status() == 200).then_some(())?;
            r.text().await.ok()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        body,
        "Nov 14 22:13:20 node1 basalt-logs[101]: hello from the journal\n"
    );

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = wait_for("exit after SIGTERM", Duration::from_secs(30), || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");

    let out = Command::new(BIN)
        .args([
            "logs",
            "--listen",
            "127.0.0.1:0",
            "--directory",
            "/nonexistent/journal",
        ])
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/journal"), "{stderr}");
}
