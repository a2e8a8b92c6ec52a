#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Healing against the real master (`basalt_master::testing`): an agent vanishes
//! (partitioned: the master marks it unreachable, its tasks TASK_UNREACHABLE) and its
//! instances are replaced per `unreachableStrategy`; when it comes back the surplus is
//! killed per `killSelection`; mass replacement is rate-limited; the leading master
//! dies while Marathon is connected and Marathon follows the new leader.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use basalt_marathon::core::RescheduleLimit;
use basalt_marathon::server::{MarathonHandle, start};
use basalt_master::testing::{Cluster, EmulatedAgent, Faults};
use basalt_mesos::{FrameworkId, TaskState};
use common::{agent, agents, marathon_config, wait};
use serde_json::{Value, json};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn new(m: &MarathonHandle) -> Api {
        wait("marathon to lead", 20, || async {
            m.is_leader().then_some(())
        })
        .await;
        Api {
            base: format!("http://{}", m.addr),
            http: reqwest::Client::new(),
        }
    }
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, _, b) = common::send(&self.http, &self.base, method, path, body).await;
        (s, b)
    }
    async fn post_app(&self, app: Value) {
        let (s, b) = self
            .send(reqwest::Method::POST, "/v2/apps", Some(app))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    async fn tasks(&self, id: &str) -> Vec<Value> {
        self.send(reqwest::Method::GET, &format!("/v2/apps{id}"), None)
            .await
            .1["app"]["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
    async fn deployments(&self) -> usize {
        self.send(reqwest::Method::GET, "/v2/deployments", None)
            .await
            .1
            .as_array()
            .map_or(0, Vec::len)
    }
    /// Waits for `n` running tasks (and nothing else) and no deployment.
    async fn settle(&self, id: &str, n: usize) -> Vec<Value> {
        wait(&format!("{id} to settle at {n} running"), 30, || async {
            let tasks = self.tasks(id).await;
            let running = tasks
                .iter()
                .filter(|t| t["state"] == "TASK_RUNNING")
                .count();
            (running == n && tasks.len() == n && self.deployments().await == 0).then_some(tasks)
        })
        .await
    }
}

fn ids(tasks: &[Value]) -> BTreeSet<String> {
    tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

const AGENT: &str = "cpus:8;mem:8192;ports:[31000-31100]";

fn partition(agent: &EmulatedAgent) {
    agent.set_faults(Faults {
        partitioned: true,
        ..Faults::default()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_agent_instances_replaced_per_unreachable_strategy() {
    let Some(cluster) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let leader = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    let agents = agents(&cluster, 4, AGENT, true).await;
    let m = start(marathon_config(cluster.url(leader)), cluster.etcd.store())
        .await
        .unwrap();
    let api = Api::new(&m).await;
    let unique = json!([["hostname", "UNIQUE"]]);
    // Replaced 1 s after becoming unreachable, kept for 10 min.
    api.post_app(json!({"id": "/replaced", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 3,
        "constraints": unique, "unreachableStrategy": {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 600}}))
        .await;
    // Never replaced while only unreachable.
    api.post_app(
        json!({"id": "/kept", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 3,
        "constraints": unique, "unreachableStrategy": "disabled"}),
    )
    .await;
    // Default {0, 0}: replaced and expunged at once; killed if it comes back.
    api.post_app(
        json!({"id": "/expunged", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 3,
        "constraints": unique}),
    )
    .await;
    let replaced_before = api.settle("/replaced", 3).await;
    let kept_before = api.settle("/kept", 3).await;
    let expunged_before = api.settle("/expunged", 3).await;
    // An agent running one instance of each app.
    let host_of = |tasks: &[Value]| -> BTreeSet<String> {
        tasks
            .iter()
            .map(|t| t["host"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b, c) = (
        host_of(&replaced_before),
        host_of(&kept_before),
        host_of(&expunged_before),
    );
    let victim_host = a
        .iter()
        .find(|h| b.contains(*h) && c.contains(*h))
        .expect("an agent hosting all three apps")
        .clone();
    let victim_idx: usize = victim_host.trim_start_matches("agent-").parse().unwrap();
    let on_victim = |tasks: &[Value]| -> String {
        tasks
            .iter()
            .find(|t| t["host"] == victim_host.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (r_old, k_old, e_old) = (
        on_victim(&replaced_before),
        on_victim(&kept_before),
        on_victim(&expunged_before),
    );

    partition(&agents[victim_idx]);

    // The master reports the tasks unreachable; /replaced gets a replacement on the spare
    // agent once inactiveAfterSeconds passed, the unreachable one still listed.
    wait("/replaced to be replaced", 30, || async {
        let tasks = api.tasks("/replaced").await;
        let unreachable = tasks
            .iter()
            .any(|t| t["id"] == r_old.as_str() && t["state"] == "TASK_UNREACHABLE");
        let running_elsewhere = tasks
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING" && t["host"] != victim_host.as_str())
            .count();
        (unreachable && running_elsewhere == 3).then_some(())
    })
    .await;
    // /expunged: replaced and forgotten.
    wait("/expunged to be replaced", 30, || async {
        let tasks = api.tasks("/expunged").await;
        (tasks.len() == 3
            && !ids(&tasks).contains(&e_old)
            && tasks.iter().all(|t| t["state"] == "TASK_RUNNING"))
        .then_some(())
    })
    .await;
    // /kept ("disabled"): the unreachable instance still counts, nothing replaces it.
    let kept = api.tasks("/kept").await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        kept.iter()
            .any(|t| t["id"] == k_old.as_str() && t["state"] == "TASK_UNREACHABLE"),
        "{kept:?}"
    );
    let (_, queue) = api.send(reqwest::Method::GET, "/v2/queue", None).await;
    assert!(
        !queue["queue"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["app"]["id"] == "/kept"),
        "disabled: nothing queued for /kept: {queue}"
    );

    // The agent comes back: its tasks run again. /replaced has 4 then; YoungestFirst
    // kills the replacement. /kept is whole again. /expunged's old task is unknown to
    // Marathon now and gets killed.
    agents[victim_idx].heal();
    let final_replaced = api.settle("/replaced", 3).await;
    assert_eq!(
        ids(&final_replaced),
        ids(&replaced_before),
        "the younger replacement was the surplus"
    );
    let final_kept = api.settle("/kept", 3).await;
    assert_eq!(ids(&final_kept), ids(&kept_before));
    let fid = FrameworkId::new(
        api.send(reqwest::Method::GET, "/v2/info", None).await.1["frameworkId"]
            .as_str()
            .unwrap(),
    );
    wait(
        "the expunged task to be killed on its agent",
        30,
        || async {
            let st = agents[victim_idx].task_state(&fid, &basalt_mesos::TaskId::new(e_old.clone()));
            (st.is_none() || st == Some(TaskState::Killed)).then_some(())
        },
    )
    .await;
    let final_expunged = api.settle("/expunged", 3).await;
    assert!(!ids(&final_expunged).contains(&e_old));
    drop(m);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mass_replacement_is_rate_limited() {
    let Some(cluster) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let leader = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    // Only one agent at first: every instance lands on it.
    let first = agents(&cluster, 1, AGENT, true).await;
    let mut cfg = marathon_config(cluster.url(leader));
    // Two replacements, then none for an hour.
    cfg.reschedule_limit = RescheduleLimit {
        tokens: 2,
        interval: Duration::from_secs(3600),
    };
    let m = start(cfg, cluster.etcd.store()).await.unwrap();
    let api = Api::new(&m).await;
    api.post_app(
        json!({"id": "/many", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 5}),
    )
    .await;
    api.settle("/many", 5).await;
    let mut spare = Vec::new();
    for i in 1..3 {
        spare.push(agent(&cluster, &format!("spare-{i}"), AGENT, true).await);
    }
    // The agent running all five vanishes.
    partition(&first[0]);
    wait("two replacements to run", 30, || async {
        let tasks = api.tasks("/many").await;
        (tasks.len() == 2 && tasks.iter().all(|t| t["state"] == "TASK_RUNNING")).then_some(())
    })
    .await;
    wait("the other three to wait in the queue", 30, || async {
        let (_, q) = api.send(reqwest::Method::GET, "/v2/queue", None).await;
        q["queue"]
            .as_array()?
            .iter()
            .find(|e| e["app"]["id"] == "/many" && e["count"] == 3)
            .map(|_| ())
    })
    .await;
    // A deployment is no replacement: a new app launches despite the exhausted limit.
    api.post_app(
        json!({"id": "/fresh", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 2}),
    )
    .await;
    api.settle("/fresh", 2).await;
    let tasks = api.tasks("/many").await;
    assert_eq!(tasks.len(), 2, "still bounded: {tasks:?}");
    assert!(m.core.throttled_replacements() > 0);
    drop(m);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follows_the_new_leading_master_without_duplicates() {
    let Some(mut cluster) = Cluster::start(1, 3, |_| {}).await.unwrap() else {
        return;
    };
    let leader = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    // Tasks stay staging until the test says otherwise.
    let agents = agents(&cluster, 2, AGENT, false).await;
    // Marathon knows every master, and starts with a follower first in the list.
    let mut urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    urls.rotate_left((leader + 1) % 3);
    let m = start(marathon_config(urls.join(",")), cluster.etcd.store())
        .await
        .unwrap();
    let api = Api::new(&m).await;
    api.post_app(
        json!({"id": "/svc", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 3}),
    )
    .await;
    let launched = || agents.iter().map(|a| a.tasks().len()).sum::<usize>();
    wait("3 tasks launched (staging)", 20, || async {
        (launched() == 3).then_some(())
    })
    .await;
    assert_eq!(api.deployments().await, 1, "deploying");
    let fid = FrameworkId::new(
        api.send(reqwest::Method::GET, "/v2/info", None).await.1["frameworkId"]
            .as_str()
            .unwrap(),
    );

    // The leading master dies mid-deployment.
    cluster.kill(leader).await.unwrap();
    let new_leader = wait("a new leading master", 30, || async {
        cluster.leader().filter(|l| *l != leader)
    })
    .await;
    for a in &agents {
        a.wait_registered(2, Duration::from_secs(30)).await.unwrap();
    }
    // The tasks start now (their updates reach Marathon through the new leader).
    for a in &agents {
        for t in a.tasks() {
            a.update(&fid, &t.task.task_id, TaskState::Running)
                .await
                .unwrap();
        }
    }
    api.settle("/svc", 3).await;
    assert_eq!(launched(), 3, "no duplicate launches across the failover");

    // Offers flow from the new leader: a scale-up launches exactly one more task.
    let (s, _) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/svc",
            Some(json!({"instances": 4})),
        )
        .await;
    assert_eq!(s, 200);
    wait("the 4th task launched", 30, || async {
        (launched() == 4).then_some(())
    })
    .await;
    for a in &agents {
        for t in a.tasks() {
            if t.status.state != TaskState::Running {
                a.update(&fid, &t.task.task_id, TaskState::Running)
                    .await
                    .unwrap();
            }
        }
    }
    api.settle("/svc", 4).await;
    assert_eq!(launched(), 4);
    let (_, info) = api.send(reqwest::Method::GET, "/v2/info", None).await;
    assert_eq!(info["frameworkId"], fid.value.as_str(), "same framework");
    let state: Value = reqwest::get(format!("{}/master/state", cluster.url(new_leader)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fw = state["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == fid.value.as_str())
        .cloned()
        .unwrap();
    assert_eq!(fw["active"], true, "subscribed to the new leader: {fw}");
    drop(m);
    cluster.shutdown().await;
}
