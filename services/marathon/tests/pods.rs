#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `/v2/pods` against the real master: the DC/OS "pod of three containers" example is
//! accepted, round-trips, and launches as LAUNCH_GROUP (one task group per instance,
//! executor of type DEFAULT) through the v1 scheduler API; scale, a failed container
//! replaces its instance, bad pods get Marathon's validation shape, delete kills all.

mod common;

use std::time::Duration;

use basalt_marathon::server::start;
use basalt_master::testing::Cluster;
use basalt_mesos::{FrameworkId, TaskState};
use common::{agents, marathon_config, wait};
use serde_json::{Value, json};

/// Every field of `want` is in `got` with the same meaning (numbers compared as f64).
fn contains(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, v) in w {
                let gv = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}/{k} missing in {got}"));
                contains(gv, v, &format!("{path}/{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path}: {got} vs {want}");
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                contains(a, b, &format!("{path}({i})"));
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(a.as_f64(), b.as_f64(), "{path}")
        }
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

/// The DC/OS documentation's multi-container pod example.
fn dcos_three_container_pod() -> Value {
    json!({
        "id": "/pod-with-multiple-containers",
        "version": "2017-01-03T18:21:19.31Z",
        "containers": [
            {"name": "sleep1", "exec": {"command": {"shell": "sleep 1000"}}, "resources": {"cpus": 0.01, "mem": 32, "disk": 0, "gpus": 0}},
            {"name": "sleep2", "exec": {"command": {"shell": "sleep 1000"}}, "resources": {"cpus": 0.01, "mem": 32, "disk": 0, "gpus": 0}},
            {"name": "sleep3", "exec": {"command": {"shell": "sleep 1000"}}, "resources": {"cpus": 0.01, "mem": 32, "disk": 0, "gpus": 0}}
        ],
        "networks": [{"mode": "host"}],
        "scaling": {"kind": "fixed", "instances": 10, "maxInstances": null},
        "scheduling": {
            "backoff": {"backoff": 1, "backoffFactor": 1.15, "maxLaunchDelay": 300},
            "upgrade": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
            "placement": {"constraints": [], "acceptedResourceRoles": []},
            "killSelection": "YOUNGEST_FIRST",
            "unreachableStrategy": {"inactiveAfterSeconds": 900, "expungeAfterSeconds": 604800}
        },
        "executorResources": {"cpus": 0.1, "mem": 32, "disk": 10},
        "volumes": [],
        "fetch": []
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_launch_as_task_groups_and_round_trip() {
    let Some(cluster) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let leader = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    let agents = agents(
        &cluster,
        2,
        "cpus:8;mem:8192;disk:10000;ports:[31000-31100]",
        true,
    )
    .await;
    let m = start(marathon_config(cluster.url(leader)), cluster.etcd.store())
        .await
        .unwrap();
    wait("marathon to lead", 20, || async {
        m.is_leader().then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", m.addr);
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.get(url).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let running_tasks = || {
        agents
            .iter()
            .flat_map(|a| a.tasks())
            .filter(|t| t.status.state == TaskState::Running)
            .count()
    };

    // HEAD: pods are supported.
    let r = http.head(format!("{base}/v2/pods")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The documentation example is accepted...
    let example = dcos_three_container_pod();
    let r = http
        .post(format!("{base}/v2/pods"))
        .json(&example)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("Marathon-Deployment-Id"));
    let created: Value = r.json().await.unwrap();
    assert_eq!(created["id"], "/pod-with-multiple-containers");
    // ...and round-trips through GET unchanged in meaning (the version is Marathon's).
    let (s, got) = get("/v2/pods/pod-with-multiple-containers".into()).await;
    assert_eq!(s, 200);
    let mut want = example.clone();
    want.as_object_mut().unwrap().remove("version");
    contains(&got, &want, "");
    assert_ne!(got["version"], example["version"]);

    // 10 instances × 3 containers run, each instance one LAUNCH_GROUP with a DEFAULT executor.
    let status = wait("the pod to be stable", 30, || async {
        let (_, st) = get("/v2/pods/pod-with-multiple-containers::status".into()).await;
        let (_, d) = get("/v2/deployments".into()).await;
        (st["status"] == "STABLE" && d.as_array().is_some_and(Vec::is_empty)).then_some(st)
    })
    .await;
    let instances = status["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 10);
    for i in instances {
        assert_eq!(i["status"], "STABLE");
        let names: Vec<&str> = i["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sleep1", "sleep2", "sleep3"]);
        assert!(
            i["containers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["status"] == "TASK_RUNNING")
        );
    }
    assert_eq!(running_tasks(), 30);
    let groups: Vec<_> = agents
        .iter()
        .flat_map(|a| a.events())
        .filter_map(|e| e.launch_group)
        .collect();
    assert_eq!(groups.len(), 10);
    for g in &groups {
        assert_eq!(
            serde_json::to_value(&g.executor).unwrap()["type"],
            "DEFAULT"
        );
        assert_eq!(g.task_group.tasks.len(), 3);
        assert_eq!(g.task_group.tasks[0].name, "sleep1");
    }
    let (_, all) = get("/v2/pods".into()).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    let (_, all_status) = get("/v2/pods/::status".into()).await;
    assert_eq!(all_status.as_array().unwrap().len(), 1);
    let (_, versions) = get("/v2/pods/pod-with-multiple-containers::versions".into()).await;
    let v = versions[0].as_str().unwrap().to_string();
    let (s, old) = get(format!(
        "/v2/pods/pod-with-multiple-containers::versions/{v}"
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(old["scaling"]["instances"], 10);

    // Bad pods: Marathon's validation shape, nothing stored.
    let r = http
        .post(format!("{base}/v2/pods"))
        .json(&json!({"id": "/bad", "containers": [{"name": "Bad_Name", "resources": {"cpus": 0.1, "mem": 16},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}], "scaling": {"kind": "fixed", "instances": -1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Object is not valid");
    let paths: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/containers(0)/name"), "{body}");
    assert!(
        paths.contains(&"/containers(0)/volumeMounts(0)/name"),
        "{body}"
    );
    assert!(paths.contains(&"/scaling/instances"), "{body}");
    let r = http
        .post(format!("{base}/v2/pods"))
        .json(&json!({"id": "/bad", "containers": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let (s, _) = get("/v2/pods/bad".into()).await;
    assert_eq!(s, 404);
    let (s, nf) = get("/v2/pods/nope".into()).await;
    assert_eq!(s, 404);
    assert_eq!(nf["message"], "Pod '/nope' does not exist");
    let r = http
        .post(format!("{base}/v2/pods"))
        .json(&example)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Scale down to 2 with PUT.
    let mut scaled = got.clone();
    scaled["scaling"]["instances"] = json!(2);
    let r = http
        .put(format!("{base}/v2/pods/pod-with-multiple-containers"))
        .json(&scaled)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("Marathon-Deployment-Id"));
    let status = wait("2 stable instances", 30, || async {
        let (_, st) = get("/v2/pods/pod-with-multiple-containers::status".into()).await;
        (st["status"] == "STABLE"
            && st["instances"].as_array().map_or(0, Vec::len) == 2
            && running_tasks() == 6)
            .then_some(st)
    })
    .await;

    // One container fails: the instance goes and is replaced by a whole new one.
    let fid = FrameworkId::new(
        get("/v2/info".into()).await.1["frameworkId"]
            .as_str()
            .unwrap(),
    );
    let victim = status["instances"][0]["id"].as_str().unwrap().to_string();
    let container_task = status["instances"][0]["containers"][1]["containerId"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = agents
        .iter()
        .find(|a| {
            a.tasks()
                .iter()
                .any(|t| t.task.task_id.value == container_task)
        })
        .unwrap();
    agent
        .update(
            &fid,
            &basalt_mesos::TaskId::new(container_task.clone()),
            TaskState::Failed,
        )
        .await
        .unwrap();
    wait("the failed instance to be replaced", 30, || async {
        let (_, st) = get("/v2/pods/pod-with-multiple-containers::status".into()).await;
        let ids: Vec<&str> = st["instances"]
            .as_array()?
            .iter()
            .filter_map(|i| i["id"].as_str())
            .collect();
        (st["status"] == "STABLE"
            && ids.len() == 2
            && !ids.contains(&victim.as_str())
            && running_tasks() == 6)
            .then_some(())
    })
    .await;

    // Delete: 202 with a deployment; every container task is killed.
    let r = http
        .delete(format!("{base}/v2/pods/pod-with-multiple-containers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("Marathon-Deployment-Id"));
    wait("all pod tasks killed", 30, || async {
        let (_, d) = get("/v2/deployments".into()).await;
        (running_tasks() == 0 && d.as_array().is_some_and(Vec::is_empty)).then_some(())
    })
    .await;
    let (_, all) = get("/v2/pods".into()).await;
    assert_eq!(all, json!([]));

    // A pod no agent can take waits in /v2/queue under "pod", with the reason.
    let mut stuck = dcos_three_container_pod();
    stuck["id"] = json!("/stuck");
    stuck["scaling"]["instances"] = json!(1);
    stuck["scheduling"]["placement"]["constraints"] =
        json!([{"fieldName": "hostname", "operator": "LIKE", "value": "no-such-host"}]);
    let r = http
        .post(format!("{base}/v2/pods"))
        .json(&stuck)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    wait(
        "the stuck pod queued with constraint declines",
        30,
        || async {
            let (_, q) = get("/v2/queue".into()).await;
            let e = q["queue"]
                .as_array()?
                .iter()
                .find(|e| e["pod"]["id"] == "/stuck" && e["count"] == 1)?
                .clone();
            let declined = e["processedOffersSummary"]["rejectSummaryLaunchAttempt"]
                .as_array()?
                .iter()
                .find(|r| r["reason"] == "UnfulfilledConstraint")?["declined"]
                .as_u64()?;
            (declined >= 1 && e.get("app").is_none()).then_some(())
        },
    )
    .await;
    assert_eq!(running_tasks(), 0);
    drop(m);
    cluster.shutdown().await;
}
