//! The node log API through the real gateway, auth on: the real log service
//! (basalt-logs) over a real journal written by systemd-journal-remote, on the master
//! route `/system/v1/logs` and through `/system/v1/agent/<id>/logs` to a real agent
//! gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_gateway::{GatewayConfig, GatewayServer};
use basalt_logs::LogsServer;
use basalt_logs::testing::{TestEntry, TestJournal};
use basalt_store::Election;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn messages(body: &str) -> Vec<String> {
    body.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["fields"]["MESSAGE"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn logs_through_master_and_agent_gateways_with_auth() {
    let mut journal = match TestJournal::new() {
        Ok(j) => j,
        Err(why) => {
            println!("SKIPPED logs_through_master_and_agent_gateways_with_auth: {why}");
            return;
        }
    };
    let Some(mut s) = setup().await else {
        println!("SKIPPED logs_through_master_and_agent_gateways_with_auth: etcd is not installed");
        return;
    };
    journal
        .append(&[
            TestEntry::new("basalt-gateway.service", "g1"),
            TestEntry::new("basalt-master.service", "m1"),
            TestEntry::new("basalt-gateway.service", "g2"),
        ])
        .unwrap();
    let logs = LogsServer::start(journal.config()).await.unwrap();

    // The agent's gateway (61001 in a cluster): no auth, its /system/v1/logs.
    let mut acfg = GatewayConfig::agent();
    acfg.http_listen = Some("127.0.0.1:0".parse().unwrap());
    acfg.metrics_listen = None;
    acfg.upstreams.logs = logs.addr().to_string();
    let agent_gw = GatewayServer::start(acfg, None).await.unwrap();

    // A master whose state names agent S1 on 127.0.0.1.
    let state = json!({"slaves": [{"id": "S1", "hostname": "127.0.0.1", "port": 5051}]});
    let master = serve(fake_master("master", state)).await;
    let _lead = Election::campaign(
        &s.etcd.store(),
        "master",
        &master.to_string(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    s.config.upstreams.logs = logs.addr().to_string();
    s.config.upstreams.agent_gateway_port = agent_gw.http_addr().unwrap().port();
    let env = s.start().await;
    let admin = env.admin().await;
    let json_get = |path: &str, token: Option<&str>| {
        let mut r = env
            .client
            .get(env.url(path))
            .header("Accept", "application/json");
        if let Some(t) = token {
            r = r.header("Authorization", format!("token={t}"));
        }
        r.send()
    };

    // No token: 401 on both routes.
    for path in [
        "/system/v1/logs/v1/range/",
        "/system/v1/agent/S1/logs/v1/range/",
    ] {
        assert_401(json_get(path, None).await.unwrap(), path).await;
    }

    // A user without dcos:adminrouter:ops:system-logs: 403; with it (full): 200.
    let created = env
        .call(
            Method::PUT,
            "/acs/api/v1/users/alice",
            &admin,
            Some(json!({"password": "alice-password"})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let alice = env.token("alice", "alice-password").await;
    for path in [
        "/system/v1/logs/v1/range/",
        "/system/v1/agent/S1/logs/v1/range/",
    ] {
        let r = json_get(path, Some(&alice)).await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["description"]
                .as_str()
                .unwrap()
                .contains("dcos:adminrouter:ops:system-logs"),
            "{v}"
        );
    }
    let rid = "dcos:adminrouter:ops:system-logs";
    assert_eq!(
        env.call(
            Method::PUT,
            &format!("/acs/api/v1/acls/{rid}"),
            &admin,
            Some(json!({"description": "logs"}))
        )
        .await
        .status(),
        201
    );
    let granted = env
        .call(
            Method::PUT,
            &format!("/acs/api/v1/acls/{rid}/users/alice/full"),
            &admin,
            None,
        )
        .await;
    assert!(granted.status().is_success(), "{}", granted.status());
    let body = poll("alice's grant to reach the gateway", || async {
        let r = json_get("/system/v1/logs/v1/range/", Some(&alice))
            .await
            .ok()?;
        (r.status() == 200).then_some(())?;
        r.text().await.ok()
    })
    .await;
    assert_eq!(messages(&body), ["g1", "m1", "g2"]);

    // The query and the answer's headers pass through both gateways.
    for base in ["/system/v1/logs", "/system/v1/agent/S1/logs"] {
        let r = json_get(
            &format!("{base}/v1/range/?skip_prev=2&filter=_SYSTEMD_UNIT:basalt-gateway.service"),
            Some(&admin),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200, "{base}");
        assert_eq!(r.headers()["x-journal-skip-prev"], "2");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(messages(&r.text().await.unwrap()), ["g1", "g2"], "{base}");
        // bad input: the service's 400 naming the parameter
        let r = json_get(&format!("{base}/v1/range/?limit=ten"), Some(&admin))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{base}");
        assert!(r.text().await.unwrap().contains("`limit`"));
    }
    let r = env
        .get("/system/v1/agent/S1/logs/v1/range/?limit=1", Some(&admin))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with("Nov 14 22:13:20 node1 basalt-gateway[101]: g1\n")
    );
    // an unknown agent, a path DC/OS does not proxy
    let r = env
        .get("/system/v1/agent/S9/logs/v1/range/", Some(&admin))
        .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ERR_UNKNOWN_AGENT");
    assert_eq!(
        env.get("/system/v1/agent/S1/health", Some(&admin))
            .await
            .status(),
        404
    );

    // SSE through the gateway: the tail, then an entry appended while it is open,
    // then a reconnect with Last-Event-ID.
    let mut r = env
        .client
        .get(env.url("/system/v1/agent/S1/logs/v1/stream/?skip_prev=1"))
        .header("Authorization", format!("token={admin}"))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let mut next_event = async |r: &mut reqwest::Response| -> (String, Value) {
        loop {
            if let Some(i) = buf.find("\n\n") {
                let ev: String = buf.drain(..i + 2).collect();
                let id = ev
                    .lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .unwrap()
                    .to_owned();
                let data = ev.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                return (id, serde_json::from_str(data).unwrap());
            }
            let chunk = tokio::time::timeout(DEADLINE, r.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream is open");
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    let (g2_id, g2) = next_event(&mut r).await;
    assert_eq!(g2["fields"]["MESSAGE"], "g2");
    journal
        .append(&[TestEntry::new("basalt-master.service", "live")])
        .unwrap();
    let (_, live) = next_event(&mut r).await;
    assert_eq!(live["fields"]["MESSAGE"], "live");
    drop(r);
    poll("the log service to drop the stream", || async {
        (logs.metrics().streams_active() == 0).then_some(())
    })
    .await;

    let mut r = env
        .client
        .get(env.url("/system/v1/logs/v1/stream/"))
        .header("Authorization", format!("token={admin}"))
        .header("Accept", "text/event-stream")
        .header("Last-Event-ID", &g2_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut buf2 = String::new();
    loop {
        if buf2.contains("\n\n") {
            break;
        }
        let chunk = tokio::time::timeout(DEADLINE, r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf2.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(buf2.contains("\"MESSAGE\":\"live\""), "{buf2}");
}
