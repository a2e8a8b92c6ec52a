#![allow(clippy::unwrap_used, clippy::expect_used)]
//! REST v2 over real HTTP with real etcd (no master: deployments that need instances
//! stay in progress, which is what the lock/force/rollback tests need).

mod common;

use std::time::{Duration, Instant};

use basalt_marathon::server::{MarathonHandle, start};
use basalt_store::testing::EtcdCluster;
use common::marathon_config;
use futures::StreamExt;
use serde_json::{Value, json};

async fn marathon(etcd: &EtcdCluster) -> MarathonHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("basalt_marathon=debug")
        .with_test_writer()
        .try_init();
    start(marathon_config(""), etcd.store()).await.unwrap()
}

async fn wait<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        common::send(&self.http, &self.base, method, path, body).await
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, b) = self.send(reqwest::Method::GET, path, None).await;
        (s, b)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_deployments_locks_versions_rollback_and_events() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    let m = marathon(&etcd).await;
    wait("leadership", || async { m.is_leader().then_some(()) }).await;
    let api = Api {
        base: format!("http://{}", m.addr),
        http: reqwest::Client::new(),
    };

    assert_eq!(api.get("/ping").await, (200, Value::String("pong".into())));
    let (s, leader) = api.get("/v2/leader").await;
    assert_eq!(
        (s, leader["leader"].as_str()),
        (200, Some(m.address.as_str()))
    );
    let (_, info) = api.get("/v2/info").await;
    assert_eq!(info["elected"], true);
    assert_eq!(info["name"], "marathon");

    // SSE subscriber, filtered to a few types.
    let sse = api
        .http
        .get(format!("{}/v2/events?event_type=api_post_event&event_type=deployment_info&event_type=event_stream_attached", api.base))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut sse = sse.bytes_stream();
    let (s, _) = api.get("/v2/events").await;
    assert_eq!(s, 406, "SSE needs Accept: text/event-stream");

    // Create.
    let (s, h, body) = api
        .send(reqwest::Method::POST, "/v2/apps", Some(json!({"id": "web", "cmd": "sleep 1000", "instances": 2, "labels": {"tier": "front"}})))
        .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(h["location"], "/web");
    let dep1 = h["marathon-deployment-id"].to_str().unwrap().to_string();
    assert_eq!(body["id"], "/web");
    assert_eq!(body["tasksRunning"], 0);
    assert_eq!(body["deployments"], json!([{"id": dep1}]));
    assert_eq!(body["portDefinitions"][0]["port"], 0);

    // The SSE client sees the stream attach, the post and the deployment.
    let mut seen = Vec::new();
    let mut buf = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.contains(&"api_post_event".to_string())
        && seen.contains(&"deployment_info".to_string()))
    {
        let chunk = tokio::time::timeout_at(deadline.into(), sse.next())
            .await
            .expect("SSE events in time")
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame = buf[..end].to_string();
            buf.drain(..end + 2);
            let ev = frame
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|e| e.trim().to_string());
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(|d| d.trim().to_string());
            if let (Some(ev), Some(data)) = (ev, data) {
                let v: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(v["eventType"], ev.as_str());
                if ev == "api_post_event" {
                    assert_eq!(v["appDefinition"]["id"], "/web");
                }
                seen.push(ev);
            }
        }
    }
    assert_eq!(seen[0], "event_stream_attached");

    // Duplicate, invalid, bad JSON.
    let (s, _, body) = api
        .send(
            reqwest::Method::POST,
            "/v2/apps",
            Some(json!({"id": "/web", "cmd": "x"})),
        )
        .await;
    assert_eq!(
        (s, body["message"].as_str()),
        (409, Some("An app with id [/web] already exists."))
    );
    let (s, _, body) = api
        .send(
            reqwest::Method::POST,
            "/v2/apps",
            Some(json!({"id": "/Bad", "cmd": "x"})),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(body["message"], "Object is not valid");
    assert_eq!(body["details"][0]["path"], "/id");
    let r = api
        .http
        .post(format!("{}/v2/apps", api.base))
        .header("Content-Type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["message"], "Invalid JSON");

    // Listing, filters, embeds.
    api.send(
        reqwest::Method::POST,
        "/v2/apps",
        Some(json!({"id": "/back/db", "cmd": "x", "instances": 0, "labels": {"tier": "back"}})),
    )
    .await;
    let (_, list) = api
        .get("/v2/apps?label=tier==front&embed=apps.tasks&embed=apps.counts")
        .await;
    let ids: Vec<&str> = list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["/web"]);
    assert_eq!(list["apps"][0]["tasks"], json!([]));
    let (_, list) = api.get("/v2/apps?id=back").await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 1);
    let (_, list) = api.get("/v2/apps?label=tier%20in%20(front,back)").await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 2);
    let (s, body) = api.get("/v2/apps/nope").await;
    assert_eq!(
        (s, body["message"].as_str()),
        (404, Some("App '/nope' does not exist"))
    );
    let (_, group) = api.get("/v2/apps/back/*").await;
    assert_eq!(group["*"][0]["id"], "/back/db");

    // /back/db has 0 instances: its deployment finishes by itself.
    wait("the /back/db deployment to finish", || async {
        let (_, d) = api.get("/v2/deployments").await;
        let n = d
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["affectedApps"] == json!(["/back/db"]))
            .count();
        (n == 0).then_some(())
    })
    .await;

    // /web waits for instances (no master here): it is locked.
    let (_, deps) = api.get("/v2/deployments").await;
    let d = deps
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == dep1.as_str())
        .unwrap()
        .clone();
    assert_eq!(d["affectedApps"], json!(["/web"]));
    assert_eq!(d["currentActions"][0]["action"], "ScaleApplication");
    assert_eq!(d["totalSteps"], 2);
    let (s, _, body) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/web",
            Some(json!({"instances": 3})),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/{dep1}'."
        )
    );
    assert_eq!(body["deployments"], json!([{"id": dep1}]));
    let (s, h, body) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/web?force=True",
            Some(json!({"instances": 3})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let dep2 = body["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(h["marathon-deployment-id"].to_str().unwrap(), dep2);
    let (_, deps) = api.get("/v2/deployments").await;
    let ids: Vec<&str> = deps
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![dep2.as_str()],
        "the forced change replaced the old deployment"
    );
    let (_, app) = api.get("/v2/apps/web").await;
    assert_eq!(app["app"]["instances"], 3);
    assert_eq!(
        app["app"]["cmd"], "sleep 1000",
        "partial update kept the rest"
    );
    assert_eq!(
        app["app"]["versionInfo"]["lastConfigChangeAt"],
        app["app"]["versionInfo"]["lastConfigChangeAt"]
    );

    // Every version is kept.
    let (_, versions) = api.get("/v2/apps/web/versions").await;
    let versions: Vec<String> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(versions.len(), 2);
    let (_, oldest) = api
        .get(&format!("/v2/apps/web/versions/{}", versions[1]))
        .await;
    assert_eq!(oldest["instances"], 2);

    // Rollback by deleting the deployment.
    let (s, _, body) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v2/deployments/{dep2}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (_, app) = api.get("/v2/apps/web").await;
    assert_eq!(app["app"]["instances"], 2, "rolled back");
    let (_, versions) = api.get("/v2/apps/web/versions").await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 3);
    let (s, _, _) = api
        .send(reqwest::Method::DELETE, "/v2/deployments/nope", None)
        .await;
    assert_eq!(s, 404);

    // Rollback to a version with PUT {"version"}.
    let (s, _, body) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/web?force=true",
            Some(json!({"version": versions[1].clone()})),
        )
        .await;
    assert_eq!(s, 200, "{body}");

    // Queue shows the demand; restart; delete (force defaults to true).
    let (_, q) = api.get("/v2/queue").await;
    assert!(q["queue"].as_array().is_some());
    let (s, _, _) = api
        .send(reqwest::Method::POST, "/v2/apps/web/restart", None)
        .await;
    assert_eq!(s, 409, "restart respects the lock");
    let (s, _, body) = api
        .send(reqwest::Method::DELETE, "/v2/apps/web", None)
        .await;
    assert_eq!(s, 200, "{body}");
    wait("/web to be stopped and gone", || async {
        let (s, _) = api.get("/v2/apps/web").await;
        let (_, d) = api.get("/v2/deployments").await;
        (s == 404 && d.as_array().unwrap().is_empty()).then_some(())
    })
    .await;

    // A follower proxies to the leader.
    let f = marathon(&etcd).await;
    wait("the follower to see the leader", || async {
        (f.leader().as_deref() == Some(m.address.as_str())).then_some(())
    })
    .await;
    assert!(!f.is_leader());
    let follower = Api {
        base: format!("http://{}", f.addr),
        http: reqwest::Client::new(),
    };
    let (s, list) = follower.get("/v2/apps").await;
    assert_eq!(s, 200);
    assert_eq!(list["apps"][0]["id"], "/back/db");
    let (_, leader) = follower.get("/v2/leader").await;
    assert_eq!(leader["leader"], m.address.as_str());
    let (_, info) = follower.get("/v2/info").await;
    assert_eq!(info["elected"], true, "answered by the leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_with_dependencies_and_scale_by() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    let m = marathon(&etcd).await;
    wait("leadership", || async { m.is_leader().then_some(()) }).await;
    let api = Api {
        base: format!("http://{}", m.addr),
        http: reqwest::Client::new(),
    };
    let (s, h, body) = api
        .send(reqwest::Method::POST, "/v2/groups", Some(json!({"id": "/prod", "groups": [
            {"id": "db", "apps": [{"id": "pg", "cmd": "x", "instances": 1}]},
            {"id": "web", "apps": [{"id": "front", "cmd": "x", "instances": 1, "dependencies": ["/prod/db/pg"]}]}
        ]})))
        .await;
    assert_eq!(s, 201, "{body}");
    assert!(h.contains_key("marathon-deployment-id"));
    let (_, deps) = api.get("/v2/deployments").await;
    let steps = &deps[0]["steps"];
    let step_of = |app: &str| {
        steps.as_array().unwrap().iter().position(|s| {
            s["actions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["action"] == "ScaleApplication" && a["app"] == app)
        })
    };
    assert!(
        step_of("/prod/db/pg").unwrap() < step_of("/prod/web/front").unwrap(),
        "dependency first: {steps}"
    );
    let (s, tree) = api.get("/v2/groups/prod").await;
    assert_eq!(s, 200);
    assert_eq!(tree["id"], "/prod");
    assert_eq!(tree["groups"][0]["id"], "/prod/db");
    assert_eq!(tree["groups"][0]["apps"][0]["id"], "/prod/db/pg");
    assert_eq!(
        tree["groups"][1]["apps"][0]["dependencies"],
        json!(["/prod/db/pg"])
    );
    let (s, _) = api.get("/v2/groups/nope").await;
    assert_eq!(s, 404);
    // Unknown dependency is refused.
    let (s, _, body) = api.send(reqwest::Method::PUT, "/v2/groups/prod/web?force=true", Some(json!({"apps": [{"id": "front", "cmd": "x", "instances": 0, "dependencies": ["/nope"]}]}))).await;
    assert_eq!(s, 422, "{body}");
    // scaleBy.
    let (s, _, _) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/prod/db/pg?force=true",
            Some(json!({"instances": 2})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _, body) = api
        .send(
            reqwest::Method::PUT,
            "/v2/groups/prod?force=true",
            Some(json!({"scaleBy": 1.5})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (_, app) = api.get("/v2/apps/prod/db/pg").await;
    assert_eq!(app["app"]["instances"], 3);
    // Deleting the group deletes its apps.
    let (s, _, _) = api
        .send(reqwest::Method::DELETE, "/v2/groups/prod?force=true", None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = api.get("/v2/apps/prod/web/front").await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_larger_than_one_etcd_transaction_is_stored() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    let m = marathon(&etcd).await;
    wait("leadership", || async { m.is_leader().then_some(()) }).await;
    let api = Api {
        base: format!("http://{}", m.addr),
        http: reqwest::Client::new(),
    };
    // 150 apps = 300 app/version writes: more than etcd's 128 operations per txn.
    let apps: Vec<Value> = (0..150)
        .map(|i| json!({"id": format!("app-{i}"), "cmd": "x", "instances": 1}))
        .collect();
    let (s, h, body) = api
        .send(
            reqwest::Method::POST,
            "/v2/groups",
            Some(json!({"id": "/big", "apps": apps})),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    assert!(h.contains_key("marathon-deployment-id"));
    let (_, list) = api.get("/v2/apps").await;
    assert_eq!(list["apps"].as_array().unwrap().len(), 150);
    let (_, one) = api.get("/v2/apps/big/app-149/versions").await;
    assert_eq!(one["versions"].as_array().unwrap().len(), 1);
    let (_, deps) = api.get("/v2/deployments").await;
    assert_eq!(deps[0]["affectedApps"].as_array().unwrap().len(), 150);
}
