#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Marathon against the real master (`basalt_master::testing`: real etcd, a master,
//! emulated agents over HTTP). Marathon reaches the master only through the public v1
//! scheduler API. Deploy 3 → running; scale 5 then 1; rolling restart with capacity
//! checked at every observed moment; killed and failed tasks replaced; SSE events.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use basalt_marathon::server::{MarathonHandle, start};
use basalt_master::testing::{Cluster, EmulatedAgent};
use basalt_mesos::{FrameworkId, TaskId, TaskState};
use common::{agents, marathon_config, wait};
use futures::StreamExt;
use serde_json::{Value, json};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, _, b) = common::send(&self.http, &self.base, method, path, body).await;
        (s, b)
    }
    async fn app(&self, id: &str) -> Value {
        self.send(reqwest::Method::GET, &format!("/v2/apps{id}"), None)
            .await
            .1["app"]
            .clone()
    }
    async fn deployments(&self) -> usize {
        self.send(reqwest::Method::GET, "/v2/deployments", None)
            .await
            .1
            .as_array()
            .map_or(0, Vec::len)
    }
    /// Waits for `n` running tasks and no deployment.
    async fn settle(&self, id: &str, n: u64) -> Value {
        wait(&format!("{id} to settle at {n} running"), 30, || async {
            let app = self.app(id).await;
            let running = app["tasks"].as_array().map_or(0, |t| {
                t.iter().filter(|t| t["state"] == "TASK_RUNNING").count()
            }) as u64;
            (app["tasksRunning"] == n
                && running == n
                && app["tasks"].as_array().map_or(0, Vec::len) as u64 == n
                && self.deployments().await == 0)
                .then_some(app)
        })
        .await
    }
}

fn running_on_agents(agents: &[EmulatedAgent]) -> usize {
    agents
        .iter()
        .flat_map(|a| a.tasks())
        .filter(|t| t.status.state == TaskState::Running)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_scale_restart_heal_and_events() {
    let Some(cluster) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let leader = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    let agents = agents(
        &cluster,
        3,
        "cpus:4;mem:4096;disk:1000;ports:[31000-31100]",
        true,
    )
    .await;
    let m: MarathonHandle = start(marathon_config(cluster.url(leader)), cluster.etcd.store())
        .await
        .unwrap();
    let api = Api {
        base: format!("http://{}", m.addr),
        http: reqwest::Client::new(),
    };
    let fid = wait("the framework id", 20, || async {
        let (_, info) = api.send(reqwest::Method::GET, "/v2/info", None).await;
        info["frameworkId"].as_str().map(str::to_string)
    })
    .await;

    // SSE client.
    let sse = api
        .http
        .get(format!(
            "{}/v2/events?event_type=status_update_event",
            api.base
        ))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut sse = sse.bytes_stream();

    // Deploy 3.
    let (s, _) = api.send(reqwest::Method::POST, "/v2/apps", Some(json!({"id": "/grp/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 3,
        "portDefinitions": [{"port": 0, "name": "http", "labels": {"VIP_0": "/web:80"}}]}))).await;
    assert_eq!(s, 201);
    let app = api.settle("/grp/web", 3).await;
    assert_eq!(running_on_agents(&agents), 3);
    let task = agents.iter().flat_map(|a| a.tasks()).next().unwrap();
    assert_eq!(task.task.name, "web.grp", "Mesos-DNS friendly task name");
    assert!(task.task.task_id.value.starts_with("grp_web."));
    let env = task
        .task
        .command
        .as_ref()
        .unwrap()
        .environment
        .as_ref()
        .unwrap();
    assert_eq!(env.get("MARATHON_APP_ID"), Some("/grp/web"));
    assert_eq!(
        env.get("PORT0"),
        Some(
            app["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == task.task.task_id.value.as_str())
                .unwrap()["ports"][0]
                .to_string()
                .as_str()
        )
    );
    assert_eq!(
        task.task.discovery.as_ref().unwrap().port_list()[0]
            .labels
            .as_ref()
            .unwrap()
            .get("VIP_0"),
        Some(Some("/web:80"))
    );

    // The SSE client saw TASK_RUNNING updates.
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !buf.contains("\"taskStatus\":\"TASK_RUNNING\"") {
        let chunk = tokio::time::timeout_at(deadline.into(), sse.next())
            .await
            .expect("status events")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(buf.contains("event: status_update_event"));

    // Scale to 5, then 1.
    let (s, _) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/grp/web",
            Some(json!({"instances": 5})),
        )
        .await;
    assert_eq!(s, 200);
    api.settle("/grp/web", 5).await;
    assert_eq!(running_on_agents(&agents), 5);
    let (s, _) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/grp/web",
            Some(json!({"instances": 1})),
        )
        .await;
    assert_eq!(s, 200);
    api.settle("/grp/web", 1).await;
    wait("agents to run 1 task", 20, || async {
        (running_on_agents(&agents) == 1).then_some(())
    })
    .await;

    // Rolling restart of 4 with min health 0.5 (≥ 2 healthy) and over capacity 0.25 (≤ 5).
    let (s, _) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/grp/web",
            Some(json!({"instances": 4})),
        )
        .await;
    assert_eq!(s, 200);
    let before = api.settle("/grp/web", 4).await;
    let old: BTreeSet<String> = before["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let (s, _) = api.send(reqwest::Method::PUT, "/v2/apps/grp/web", Some(json!({"cmd": "sleep 2000", "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.25}}))).await;
    assert_eq!(s, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut observations = 0;
    loop {
        let app = api.app("/grp/web").await;
        let tasks = app["tasks"].as_array().cloned().unwrap_or_default();
        let running = tasks
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .count();
        let on_agents = running_on_agents(&agents);
        assert!(
            running >= 2,
            "healthy capacity dropped to {running}: {tasks:?}"
        );
        assert!(
            on_agents <= 5,
            "over capacity: {on_agents} running on agents"
        );
        assert!(tasks.len() <= 5, "over capacity: {} instances", tasks.len());
        observations += 1;
        let all_new = tasks
            .iter()
            .all(|t| !old.contains(t["id"].as_str().unwrap()));
        if all_new && running == 4 && api.deployments().await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restart did not finish: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(observations > 1);
    let after = api.settle("/grp/web", 4).await;
    assert_eq!(after["cmd"], "sleep 2000");

    // Kill one task (no scale): it is replaced.
    let victim = after["tasks"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v2/apps/grp/web/tasks/{victim}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    wait("the killed task to be replaced", 30, || async {
        let app = api.app("/grp/web").await;
        let ids: Vec<&str> = app["tasks"]
            .as_array()?
            .iter()
            .filter_map(|t| t["id"].as_str())
            .collect();
        (app["tasksRunning"] == 4 && !ids.contains(&victim.as_str())).then_some(())
    })
    .await;

    // A task fails on its agent: replaced, lastTaskFailure reported.
    let fw = FrameworkId::new(fid);
    let (agent, failing) = agents
        .iter()
        .find_map(|a| {
            a.tasks()
                .into_iter()
                .find(|t| t.status.state == TaskState::Running)
                .map(|t| (a, t.task.task_id.clone()))
        })
        .unwrap();
    agent
        .update(&fw, &TaskId::new(failing.value.clone()), TaskState::Failed)
        .await
        .unwrap();
    let app = wait("the failed task to be replaced", 30, || async {
        let app = api.app("/grp/web").await;
        let ids: Vec<&str> = app["tasks"]
            .as_array()?
            .iter()
            .filter_map(|t| t["id"].as_str())
            .collect();
        (app["tasksRunning"] == 4 && !ids.contains(&failing.value.as_str())).then_some(app)
    })
    .await;
    assert_eq!(app["lastTaskFailure"]["taskId"], failing.value.as_str());
    assert_eq!(app["lastTaskFailure"]["state"], "TASK_FAILED");

    // Constraints: UNIQUE hostname over 3 agents runs 3 of 4; the 4th waits in the queue.
    let (s, _) = api
        .send(
            reqwest::Method::POST,
            "/v2/apps",
            Some(
                json!({"id": "/uniq", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 3,
                "constraints": [["hostname", "UNIQUE"]]}),
            ),
        )
        .await;
    assert_eq!(s, 201);
    let app = api.settle("/uniq", 3).await;
    let hosts: BTreeSet<&str> = app["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 3, "one per agent");
    let (s, _) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/uniq",
            Some(json!({"instances": 4})),
        )
        .await;
    assert_eq!(s, 200);
    // The queue says why: every agent's offer failed the constraint.
    let summary = wait("the 4th instance queued, offers declined", 30, || async {
        let (_, q) = api.send(reqwest::Method::GET, "/v2/queue", None).await;
        let e = q["queue"]
            .as_array()?
            .iter()
            .find(|e| e["app"]["id"] == "/uniq" && e["count"] == 1)?
            .clone();
        let s = e["processedOffersSummary"].clone();
        let declined = s["rejectSummaryLaunchAttempt"]
            .as_array()?
            .iter()
            .find(|r| r["reason"] == "UnfulfilledConstraint")?["declined"]
            .as_u64()?;
        (declined >= 1).then_some(s)
    })
    .await;
    assert!(summary["unusedOffersCount"].as_u64().unwrap() >= 1);
    assert!(summary["lastUnusedOfferAt"].is_string());
    let last: Vec<&Value> = summary["rejectSummaryLastOffers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["declined"].as_u64().unwrap() > 0)
        .collect();
    assert!(
        last.iter().all(|r| r["reason"] == "UnfulfilledConstraint"),
        "only the constraint declines the 4th: {last:?}"
    );
    assert_eq!(
        api.app("/uniq").await["tasksRunning"],
        3,
        "UNIQUE keeps the 4th off every agent"
    );
    let (s, _) = api
        .send(reqwest::Method::DELETE, "/v2/apps/uniq", None)
        .await;
    assert_eq!(s, 200);

    // Delete: every task goes away.
    let (s, _) = api
        .send(reqwest::Method::DELETE, "/v2/apps/grp/web", None)
        .await;
    assert_eq!(s, 200);
    wait("all tasks killed", 30, || async {
        (running_on_agents(&agents) == 0 && api.deployments().await == 0).then_some(())
    })
    .await;
    drop(m);
    cluster.shutdown().await;
}
