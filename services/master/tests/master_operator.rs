#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The v1 operator API (`POST /api/v1`): the read-only GET_* calls and the SUBSCRIBE
//! event stream (SUBSCRIBED with the state, TASK_ADDED / TASK_UPDATED, AGENT_ADDED,
//! FRAMEWORK_ADDED / FRAMEWORK_REMOVED, HEARTBEAT; closed when the leader steps down).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_master::recordio::Decoder;
use basalt_master::testing::{AgentOptions, Cluster, EmulatedAgent, TestScheduler, wait_until};
use basalt_mesos::{CommandInfo, FrameworkInfo, Resource, TaskId, TaskInfo, TaskState};
use futures::StreamExt;
use serde_json::Value as Json;

const T: Duration = Duration::from_secs(10);

/// An operator SUBSCRIBE stream read in the background.
struct OperatorStream {
    events: Arc<Mutex<Vec<Json>>>,
    closed: Arc<AtomicBool>,
}

impl OperatorStream {
    async fn open(http: &reqwest::Client, base: &str) -> OperatorStream {
        let resp = http
            .post(format!("{base}/api/v1"))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(r#"{"type":"SUBSCRIBE"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let events = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let (ev, cl) = (events.clone(), closed.clone());
        tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut decoder = Decoder::new();
            while let Some(Ok(chunk)) = body.next().await {
                decoder.feed(&chunk);
                while let Ok(Some(rec)) = decoder.next_record() {
                    ev.lock()
                        .unwrap()
                        .push(serde_json::from_slice::<Json>(&rec).unwrap());
                }
            }
            cl.store(true, Ordering::SeqCst);
        });
        OperatorStream { events, closed }
    }

    fn events(&self) -> Vec<Json> {
        self.events.lock().unwrap().clone()
    }

    /// Waits for an event matching `pred`; returns its index and the event.
    async fn wait(&self, what: &str, pred: impl Fn(&Json) -> bool) -> (usize, Json) {
        wait_until(what, T, || async {
            self.events().into_iter().enumerate().find(|(_, e)| pred(e))
        })
        .await
        .unwrap()
    }
}

fn task(id: &str, agent: &basalt_mesos::AgentId) -> TaskInfo {
    let mut t = TaskInfo::command(
        id,
        TaskId::new(id),
        agent.clone(),
        serde_json::from_str::<CommandInfo>(r#"{"value":"sleep 100"}"#).unwrap(),
    );
    t.resources = vec![Resource::scalar("cpus", 1.0).unwrap()];
    t
}

async fn op(http: &reqwest::Client, base: &str, kind: &str) -> Json {
    let r = http
        .post(format!("{base}/api/v1"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"type":"{kind}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{kind}");
    let v: Json = r.json().await.unwrap();
    assert_eq!(v["type"], kind);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_subscribe_streams_events_until_step_down() {
    let Some(mut c) = Cluster::start(1, 2, |_| {}).await.unwrap() else {
        return;
    };
    let leader = c.wait_leader(T).await.unwrap();
    let follower = 1 - leader;
    let base = c.url(leader);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // A follower redirects operator calls, SUBSCRIBE included, to the leader.
    let r = http
        .post(format!("{}/api/v1", c.url(follower)))
        .header("content-type", "application/json")
        .body(r#"{"type":"SUBSCRIBE"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(loc, format!("//{}/api/v1", c.addresses()[leader]));

    let a1 =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", c.addresses()).unwrap());
    let a1_id = a1.wait_registered(1, T).await.unwrap();

    let stream = OperatorStream::open(&http, &base).await;
    let (i, sub) = stream
        .wait("SUBSCRIBED", |e| e["type"] == "SUBSCRIBED")
        .await;
    assert_eq!(i, 0, "SUBSCRIBED comes first");
    assert_eq!(sub["subscribed"]["heartbeat_interval_seconds"], 0.2);
    let agents = sub["subscribed"]["get_state"]["get_agents"]["agents"]
        .as_array()
        .unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["agent_info"]["id"]["value"], a1_id.value);
    assert!(sub["subscribed"]["get_state"]["get_tasks"]["tasks"].is_array());
    assert!(sub["subscribed"]["get_state"]["get_frameworks"]["frameworks"].is_array());

    // A framework subscribes and launches a task.
    let s = TestScheduler::subscribe(c.addresses(), FrameworkInfo::new("root", "fw"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    let (_, added) = stream
        .wait("FRAMEWORK_ADDED", |e| e["type"] == "FRAMEWORK_ADDED")
        .await;
    assert_eq!(
        added["framework_added"]["framework"]["framework_info"]["id"]["value"],
        fw.value
    );
    assert_eq!(
        added["framework_added"]["framework"]["framework_info"]["name"],
        "fw"
    );
    let offer = s.wait_outstanding_offer(T, |_| true).await.unwrap();
    let from = s.event_count();
    s.launch(
        std::slice::from_ref(&offer.id),
        vec![task("t1", &a1_id)],
        None,
    )
    .await
    .unwrap();
    let running = s
        .wait_update("t1", from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    s.acknowledge(&running).await.unwrap();
    let (ia, ta) = stream
        .wait("TASK_ADDED t1", |e| {
            e["type"] == "TASK_ADDED" && e["task_added"]["task"]["task_id"]["value"] == "t1"
        })
        .await;
    assert_eq!(ta["task_added"]["task"]["state"], "TASK_STAGING");
    assert_eq!(ta["task_added"]["task"]["framework_id"]["value"], fw.value);
    assert_eq!(ta["task_added"]["task"]["agent_id"]["value"], a1_id.value);
    let (iu, tu) = stream
        .wait("TASK_UPDATED t1 RUNNING", |e| {
            e["type"] == "TASK_UPDATED" && e["task_updated"]["state"] == "TASK_RUNNING"
        })
        .await;
    assert!(ia < iu, "TASK_ADDED before TASK_UPDATED");
    assert_eq!(tu["task_updated"]["framework_id"]["value"], fw.value);
    assert_eq!(tu["task_updated"]["status"]["task_id"]["value"], "t1");
    assert_eq!(tu["task_updated"]["status"]["state"], "TASK_RUNNING");

    // A new agent.
    let a2 =
        EmulatedAgent::start(AgentOptions::new("a2", "cpus:2;mem:512", c.addresses()).unwrap());
    let a2_id = a2.wait_registered(1, T).await.unwrap();
    let (_, ag) = stream
        .wait("AGENT_ADDED a2", |e| e["type"] == "AGENT_ADDED")
        .await;
    assert_eq!(
        ag["agent_added"]["agent"]["agent_info"]["id"]["value"],
        a2_id.value
    );
    assert_eq!(ag["agent_added"]["agent"]["agent_info"]["hostname"], "a2");
    stream.wait("HEARTBEAT", |e| e["type"] == "HEARTBEAT").await;

    // The GET_* calls see the same cluster.
    let st = op(&http, &base, "GET_STATE").await;
    assert_eq!(
        st["get_state"]["get_agents"]["agents"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let tasks = op(&http, &base, "GET_TASKS").await;
    let t = &tasks["get_tasks"]["tasks"];
    assert_eq!(t.as_array().unwrap().len(), 1);
    assert_eq!(t[0]["task_id"]["value"], "t1");
    assert_eq!(t[0]["state"], "TASK_RUNNING");
    let fws = op(&http, &base, "GET_FRAMEWORKS").await;
    let f = &fws["get_frameworks"]["frameworks"];
    assert_eq!(f.as_array().unwrap().len(), 1);
    assert_eq!(f[0]["framework_info"]["id"]["value"], fw.value);
    assert_eq!(f[0]["active"], true);
    let ags = op(&http, &base, "GET_AGENTS").await;
    assert_eq!(ags["get_agents"]["agents"].as_array().unwrap().len(), 2);
    let v = op(&http, &base, "GET_VERSION").await;
    assert!(v["get_version"]["version_info"]["version"].is_string());
    let h = op(&http, &base, "GET_HEALTH").await;
    assert_eq!(h["get_health"]["healthy"], true);

    // TEARDOWN: the task is killed and the framework removed.
    s.teardown().await.unwrap();
    stream
        .wait("TASK_UPDATED t1 KILLED", |e| {
            e["type"] == "TASK_UPDATED" && e["task_updated"]["state"] == "TASK_KILLED"
        })
        .await;
    let (_, rm) = stream
        .wait("FRAMEWORK_REMOVED", |e| e["type"] == "FRAMEWORK_REMOVED")
        .await;
    assert_eq!(
        rm["framework_removed"]["framework_info"]["id"]["value"],
        fw.value
    );

    // The leader loses etcd and steps down: the stream ends.
    assert!(!stream.closed.load(Ordering::SeqCst));
    c.etcd.kill(0).unwrap();
    wait_until("operator stream closed", T, || async {
        stream.closed.load(Ordering::SeqCst).then_some(())
    })
    .await
    .unwrap();
    c.kill(0).await.ok();
    c.kill(1).await.ok();
}
