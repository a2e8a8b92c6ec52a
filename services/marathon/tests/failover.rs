#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Marathon leader is killed (no resignation, like SIGKILL) mid-deployment: the
//! next leader re-subscribes with the stored framework id, reconciles, and completes
//! the deployment without launching duplicates (instances are persisted before LAUNCH).

mod common;

use std::time::Duration;

use basalt_marathon::server::start;
use basalt_master::testing::Cluster;
use basalt_mesos::{FrameworkId, TaskState};
use common::{agents, marathon_config, wait};
use serde_json::{Value, json};

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_mid_deployment_completes_without_duplicates() {
    let Some(cluster) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let leader = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    // tasks stay staging until the test says otherwise
    let agents = agents(&cluster, 2, "cpus:4;mem:4096;ports:[31000-31100]", false).await;
    let cfg = || {
        let mut c = marathon_config(cluster.url(leader));
        c.election_ttl = Duration::from_secs(1);
        c
    };
    let mut m1 = start(cfg(), cluster.etcd.store()).await.unwrap();
    wait("m1 to lead", 20, || async { m1.is_leader().then_some(()) }).await;
    let m2 = start(cfg(), cluster.etcd.store()).await.unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{}/v2/apps", m1.addr))
        .json(&json!({"id": "/svc", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let launched = || agents.iter().map(|a| a.tasks().len()).sum::<usize>();
    wait("3 tasks launched (staging)", 20, || async {
        (launched() == 3).then_some(())
    })
    .await;
    let fid = get(&http, format!("http://{}/v2/info", m1.addr)).await["frameworkId"]
        .as_str()
        .unwrap()
        .to_string();

    // Kill the leader mid-deployment.
    m1.kill();
    wait("m2 to lead", 20, || async { m2.is_leader().then_some(()) }).await;
    let deployments = get(&http, format!("http://{}/v2/deployments", m2.addr)).await;
    assert_eq!(deployments.as_array().unwrap().len(), 1, "still deploying");
    // m2 re-subscribed with the same framework id.
    wait("m2 to subscribe", 20, || async {
        (get(&http, format!("http://{}/v2/info", m2.addr)).await["frameworkId"] == fid.as_str())
            .then_some(())
    })
    .await;

    // The tasks start now; the deployment completes under m2.
    let fw = FrameworkId::new(fid.clone());
    for a in &agents {
        for t in a.tasks() {
            a.update(&fw, &t.task.task_id, TaskState::Running)
                .await
                .unwrap();
        }
    }
    wait("the deployment to finish under m2", 30, || async {
        let app = get(&http, format!("http://{}/v2/apps/svc", m2.addr)).await;
        let d = get(&http, format!("http://{}/v2/deployments", m2.addr)).await;
        (app["app"]["tasksRunning"] == 3 && d.as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    assert_eq!(launched(), 3, "no duplicate launches across the failover");
    cluster.shutdown().await;
}
