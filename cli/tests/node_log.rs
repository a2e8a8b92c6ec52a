//! `basalt node log` end to end: the CLI binary → the real gateway (auth on) → the real
//! log service over a journal written by systemd-journal-remote, for the leading master
//! and, through `/system/v1/agent/<id>/logs`, for an agent (whose gateway is a real agent
//! gateway on loopback).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_logs::testing::TestEntry;
use basalt_logs::{LogsConfig, LogsServer};
use basalt_master::testing::{AgentOptions, EmulatedAgent};
use common::*;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

#[tokio::test]
async fn node_log_leader_agent_component_json_and_follow() {
    let Some(mut c) = TestCluster::start("node_log", Agents::Emulated(0)).await else {
        return;
    };
    if let Err(why) = &c.logs {
        println!("SKIPPED node_log_leader_agent_component_json_and_follow: {why}");
        return;
    }
    c.setup().await;

    // The leading master's journal: the last 10 by default, --lines, --component.
    let out = c.basalt(&["node", "log", "--leader"]).await.ok();
    assert_eq!(
        out.stdout,
        "Nov 14 22:13:20 node1 basalt-master[101]: master ready\n\
         Nov 14 22:13:21 node1 basalt-gateway[102]: gateway listening\n\
         Nov 14 22:13:22 node1 basalt-master[103]: leading\n"
    );
    let out = c
        .basalt(&["node", "log", "--leader", "--lines", "2"])
        .await
        .ok();
    assert_eq!(out.stdout.lines().count(), 2);
    assert!(out.stdout.starts_with("Nov 14 22:13:21"));
    for component in ["basalt-gateway", "basalt-gateway.service"] {
        let out = c
            .basalt(&["node", "log", "--leader", "--component", component])
            .await
            .ok();
        assert_eq!(
            out.stdout, "Nov 14 22:13:21 node1 basalt-gateway[102]: gateway listening\n",
            "{component}"
        );
    }
    // nothing of that unit: no lines, no error
    let out = c
        .basalt(&["node", "log", "--leader", "--component", "basalt-nothing"])
        .await
        .ok();
    assert_eq!(out.stdout, "");

    // --json: dcos-log's entries
    let out = c
        .basalt(&["node", "log", "--leader", "--lines", "1", "--json"])
        .await
        .ok();
    let e: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(e["fields"]["MESSAGE"], "leading");
    assert_eq!(e["fields"]["_SYSTEMD_UNIT"], "basalt-master.service");
    assert!(e["cursor"].as_str().unwrap().starts_with("s="));

    // An agent: through the master gateway to the agent's gateway.
    let opts = AgentOptions::new("127.0.0.1", "cpus:1;mem:256", c.master.addresses()).unwrap();
    let agent = EmulatedAgent::start(opts);
    let id = agent
        .wait_registered(1, DEADLINE)
        .await
        .unwrap()
        .to_string();
    let out = wait_until("the agent to be in the master state", || async {
        let o = c
            .basalt(&["node", "log", "--mesos-id", &id, "--lines", "1"])
            .await;
        (o.code == 0).then_some(o)
    })
    .await;
    assert_eq!(
        out.stdout,
        "Nov 14 22:13:22 node1 basalt-master[103]: leading\n"
    );
    c.basalt(&["node", "log", "--mesos-id", "no-such-agent"])
        .await
        .fails_with(&["no agent with id \"no-such-agent\""]);
    // one of --leader and --mesos-id is required (a usage error, exit 2)
    let o = c.basalt(&["node", "log"]).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--leader|--mesos-id"), "{o:?}");

    // --follow: the last line, then a line written while it runs.
    let mut child = spawn_in(
        c.home.path(),
        &["node", "log", "--leader", "--follow", "--lines", "1"],
    );
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the first followed line")
        .unwrap()
        .unwrap();
    assert_eq!(first, "Nov 14 22:13:22 node1 basalt-master[103]: leading");
    c.logs
        .as_mut()
        .unwrap()
        .journal
        .append(&[TestEntry::new(
            "basalt-iam.service",
            "written while following",
        )])
        .unwrap();
    let next = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the appended line")
        .unwrap()
        .unwrap();
    assert_eq!(
        next,
        "Nov 14 22:13:23 node1 basalt-iam[104]: written while following"
    );

    // The log service restarts (its streams end): the CLI reconnects with
    // Last-Event-ID and goes on with the next entry, printing nothing twice.
    let logs = c.logs.as_mut().unwrap();
    let addr = logs.server.addr();
    let config = |listen| LogsConfig {
        listen,
        journalctl: logs.journal.journalctl().to_owned(),
        directory: Some(logs.journal.dir().to_owned()),
    };
    let elsewhere = LogsServer::start(config("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    drop(std::mem::replace(&mut logs.server, elsewhere));
    let again = wait_until("the log service back on its port", || async {
        LogsServer::start(config(addr)).await.ok()
    })
    .await;
    logs.server = again;
    logs.journal
        .append(&[TestEntry::new("basalt-iam.service", "after the restart")])
        .unwrap();
    let after = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("the line after the restart")
        .unwrap()
        .unwrap();
    assert_eq!(
        after,
        "Nov 14 22:13:24 node1 basalt-iam[105]: after the restart"
    );
    child.kill().await.unwrap();
}
