//! The Mesos-DNS HTTP API and `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_dns::{ChannelSource, DnsConfig, MasterState, Service};
use common::*;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

#[tokio::test]
async fn mesos_dns_http_api() {
    let cfg = DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        masters: vec!["10.0.0.1:5050".into()],
        ..DnsConfig::default()
    };
    let (tx, source) = ChannelSource::new(4);
    let svc = Service::start(cfg, source).await.unwrap();
    let base = format!("http://{}", svc.http_addr.unwrap());
    let dns = svc.listeners.addrs[0];
    let st: MasterState = serde_json::from_value(state(
        2,
        vec![
            task("nginx.0", "nginx", &agent_id(0), "TASK_RUNNING", 31000),
            task("nginx.1", "nginx", &agent_id(1), "TASK_RUNNING", 31001),
        ],
    ))
    .unwrap();
    tx.send(st).await.unwrap();
    eventually("state applied", || async {
        (svc.server.metrics().state_updates() == 1).then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };

    let (s, body) = get("/v1/version").await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Service"], "Mesos-DNS");
    assert_eq!(v["URL"], "https://github.com/mesosphere/mesos-dns");

    let (_, body) = get("/v1/config").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Domain"], "mesos");
    assert_eq!(v["TTL"], 60);
    assert_eq!(v["IPSources"], json!(["host", "netinfo"]));
    assert_eq!(v["SOAMname"], "ns1.mesos.");

    // dcoscli `node list` reads these two.
    let (_, body) = get("/v1/hosts/leader.mesos").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"host": "leader.mesos.", "ip": "10.0.0.1"}])
    );
    let (_, body) = get("/v1/hosts/Master.Mesos.").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"host": "master.mesos.", "ip": "10.0.0.1"}])
    );
    let (_, body) = get("/v1/hosts/nginx.marathon.mesos").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (s, body) = get("/v1/hosts/nothing.mesos").await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"host": "", "ip": ""}])
    );

    let (_, body) = get("/v1/services/_nginx._tcp.marathon.mesos").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let arr = v.as_array().unwrap();
    // 2 discovery targets + 2 `.slave` targets (task IP = agent IP).
    assert_eq!(arr.len(), 4, "{body}");
    for e in arr {
        assert_eq!(e["service"], "_nginx._tcp.marathon.mesos");
        assert!(e["host"].as_str().unwrap().ends_with(".mesos."));
        assert!(e["port"].is_string(), "port is a string in Mesos-DNS");
        assert!(e["ip"].as_str().unwrap().starts_with("10.1."));
    }
    let (_, body) = get("/v1/services/_nothing._tcp.mesos").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"service": "", "host": "", "ip": "", "port": ""}])
    );
    let (s, _) = get("/v1/hosts/leader.mesos/ports").await;
    assert_eq!(s, 501);

    let (_, body) = get("/v1/axfr").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["TTL"], 60);
    assert_eq!(v["Mname"], "ns1.mesos");
    assert_eq!(v["Rname"], "root.ns1.mesos");
    assert_eq!(v["Domain"], "mesos");
    assert!(v["Serial"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["Records"]["As"]["leader.mesos."], json!(["10.0.0.1"]));
    assert_eq!(
        v["Records"]["SRVs"]["_leader._tcp.mesos."],
        json!(["leader.mesos.:5050"])
    );
    assert!(v["Records"]["AAAAs"].as_object().unwrap().is_empty());

    // Metrics count real queries.
    let _ = udp_query(dns, "nginx.marathon.mesos.", RecordType::A, None).await;
    let _ = udp_query(dns, "nope.mesos.", RecordType::A, None).await;
    let _ = udp_query(dns, "_nginx._tcp.marathon.mesos.", RecordType::SRV, None).await;
    let (s, body) = get("/metrics").await;
    assert_eq!(s, 200);
    assert!(
        body.contains("basalt_dns_queries_total{type=\"A\",rcode=\"NOERROR\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("basalt_dns_queries_total{type=\"A\",rcode=\"NXDOMAIN\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("basalt_dns_queries_total{type=\"SRV\",rcode=\"NOERROR\"} 1"),
        "{body}"
    );
    assert!(body.contains("basalt_dns_state_updates_total 1"), "{body}");
    let records: usize = body
        .lines()
        .find_map(|l| l.strip_prefix("basalt_dns_records "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(records > 20, "{records}");
    svc.shutdown().await;
}
