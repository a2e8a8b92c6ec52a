#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TEARDOWN, MESSAGE both ways, SHUTDOWN, GPU-scarce offers, the task state machine on
//! agent updates, and the read-only endpoints.

use std::time::Duration;

use basalt_master::api::{Call, Message, Shutdown};
use basalt_master::testing::{AgentOptions, Cluster, EmulatedAgent, TestScheduler, wait_until};
use basalt_mesos::{
    Capability, CapabilityType, CommandInfo, ExecutorId, FrameworkInfo, Resource, TaskId, TaskInfo,
    TaskState,
};

const T: Duration = Duration::from_secs(10);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_shutdown_teardown_and_state_machine() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", c.addresses()).unwrap());
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let s = TestScheduler::subscribe(c.addresses(), FrameworkInfo::new("root", "fw"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    let offer = s.wait_outstanding_offer(T, |_| true).await.unwrap();
    let from = s.event_count();
    s.launch(
        std::slice::from_ref(&offer.id),
        vec![task("t1", &agent_id)],
        None,
    )
    .await
    .unwrap();
    let st = s
        .wait_update("t1", from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    s.acknowledge(&st).await.unwrap();

    // Scheduler → executor MESSAGE and SHUTDOWN reach the agent.
    let mut m = Call::new("MESSAGE", Some(fw.clone()));
    m.message = Some(Message {
        agent_id: agent_id.clone(),
        executor_id: ExecutorId::new("t1"),
        data: "aGVsbG8=".into(),
    });
    assert_eq!(s.call(&m).await.unwrap().unwrap().status, 202);
    let mut sd = Call::new("SHUTDOWN", Some(fw.clone()));
    sd.shutdown = Some(Shutdown {
        executor_id: ExecutorId::new("t1"),
        agent_id: agent_id.clone(),
    });
    assert_eq!(s.call(&sd).await.unwrap().unwrap().status, 202);
    wait_until("MESSAGE and SHUTDOWN_EXECUTOR at the agent", T, || async {
        let ev = agent.events();
        (ev.iter()
            .any(|e| e.message.as_ref().is_some_and(|m| m.data == "aGVsbG8="))
            && ev.iter().any(|e| e.kind == "SHUTDOWN_EXECUTOR"))
        .then_some(())
    })
    .await
    .unwrap();
    // Executor → scheduler MESSAGE.
    assert_eq!(
        agent
            .message(&fw, &ExecutorId::new("t1"), "d29ybGQ=")
            .await
            .unwrap(),
        202
    );
    let ev = s
        .wait_event("MESSAGE", 0, T, |e| e.kind == "MESSAGE")
        .await
        .unwrap();
    assert_eq!(ev.message.unwrap().data, "d29ybGQ=");

    // The state machine: FINISHED, then RUNNING is refused (409) and not forwarded.
    let from = s.event_count();
    assert_eq!(
        agent
            .update(&fw, &TaskId::new("t1"), TaskState::Finished)
            .await
            .unwrap(),
        202
    );
    let fin = s
        .wait_update("t1", from, T, |st| st.state == TaskState::Finished)
        .await
        .unwrap();
    assert_eq!(
        agent
            .update(&fw, &TaskId::new("t1"), TaskState::Running)
            .await
            .unwrap(),
        409
    );
    s.acknowledge(&fin).await.unwrap();

    // TEARDOWN removes the framework at once.
    let offer = {
        s.revive().await.unwrap();
        s.wait_outstanding_offer(T, |_| true).await.unwrap()
    };
    let from = s.event_count();
    s.launch(
        std::slice::from_ref(&offer.id),
        vec![task("t2", &agent_id)],
        None,
    )
    .await
    .unwrap();
    s.wait_update("t2", from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    assert_eq!(s.teardown().await.unwrap().unwrap().status, 202);
    wait_until("SHUTDOWN_FRAMEWORK", T, || async {
        agent
            .events()
            .iter()
            .any(|e| e.kind == "SHUTDOWN_FRAMEWORK")
            .then_some(())
    })
    .await
    .unwrap();
    let j: serde_json::Value = reqwest::get(format!("{}/master/frameworks", c.url(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(j["frameworks"].as_array().unwrap().is_empty());
    assert_eq!(j["completed_frameworks"][0]["id"], fw.value);
    // A removed framework cannot come back.
    let mut info = FrameworkInfo::new("root", "fw");
    info.id = Some(fw.clone());
    let err = TestScheduler::subscribe(c.addresses(), info)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has been removed"), "{err}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_agents_only_for_gpu_frameworks_and_endpoints() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let gpu = EmulatedAgent::start(
        AgentOptions::new("gpu", "cpus:4;mem:1024;gpus:1", c.addresses()).unwrap(),
    );
    let plain =
        EmulatedAgent::start(AgentOptions::new("plain", "cpus:4;mem:1024", c.addresses()).unwrap());
    let gpu_id = gpu.wait_registered(1, T).await.unwrap();
    let plain_id = plain.wait_registered(1, T).await.unwrap();
    let s = TestScheduler::subscribe(c.addresses(), FrameworkInfo::new("root", "cpu-only"))
        .await
        .unwrap();
    s.wait_outstanding_offer(T, |o| o.agent_id == plain_id)
        .await
        .unwrap();
    assert!(
        s.wait_outstanding_offer(Duration::from_millis(500), |o| o.agent_id == gpu_id)
            .await
            .is_err()
    );
    let mut info = FrameworkInfo::new("root", "gpu");
    info.capabilities = vec![
        Capability::from(CapabilityType::GpuResources),
        Capability::from(CapabilityType::PartitionAware),
    ];
    let g = TestScheduler::subscribe(c.addresses(), info).await.unwrap();
    let o = g
        .wait_outstanding_offer(T, |o| o.agent_id == gpu_id)
        .await
        .unwrap();
    assert_eq!(o.resources.gpus().unwrap().as_f64(), 1.0);

    let get = |p: &str| {
        let url = format!("{}{p}", c.url(0));
        async move { reqwest::get(url).await.unwrap() }
    };
    assert_eq!(get("/master/health").await.status(), 200);
    let v: serde_json::Value = get("/version").await.json().await.unwrap();
    assert!(v["version"].is_string());
    let r: serde_json::Value = get("/master/roles").await.json().await.unwrap();
    assert_eq!(r["roles"][0]["name"], "*");
    assert_eq!(r["roles"][0]["frameworks"].as_array().unwrap().len(), 2);
    for p in [
        "/state.json",
        "/master/state",
        "/master/state-summary",
        "/master/slaves",
        "/master/tasks",
    ] {
        let resp = get(p).await;
        assert_eq!(resp.status(), 200, "{p}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{p}");
    }
    let st: serde_json::Value = get("/master/state").await.json().await.unwrap();
    assert_eq!(st["slaves"].as_array().unwrap().len(), 2);
    assert!(st["leader_info"]["hostname"].is_string());
    assert!(
        st["slaves"][0]["pid"]
            .as_str()
            .unwrap()
            .starts_with("slave(1)@")
    );
    let one: serde_json::Value = get(&format!("/master/slaves?slave_id={}", gpu_id.value))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["slaves"].as_array().unwrap().len(), 1);
    assert_eq!(one["slaves"][0]["resources"]["gpus"], 1.0);

    // The read-only v1 operator API.
    let http = reqwest::Client::new();
    let op = |t: &str| {
        let url = format!("{}/api/v1", c.url(0));
        let body = format!(r#"{{"type":"{t}"}}"#);
        let http = http.clone();
        async move {
            http.post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let st: serde_json::Value = op("GET_STATE").await.json().await.unwrap();
    assert_eq!(st["type"], "GET_STATE");
    assert_eq!(
        st["get_state"]["get_agents"]["agents"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        st["get_state"]["get_frameworks"]["frameworks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let h: serde_json::Value = op("GET_HEALTH").await.json().await.unwrap();
    assert_eq!(h["get_health"]["healthy"], true);
    let a: serde_json::Value = op("GET_AGENTS").await.json().await.unwrap();
    assert!(a["get_agents"]["agents"][0]["agent_info"]["hostname"].is_string());
    let bad = op("GET_QUOTA").await;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("GET_QUOTA"));

    // MARK_AGENT_GONE: its task goes TASK_GONE_BY_OPERATOR, the agent is shut down and
    // refused afterwards.
    let from = g.event_count();
    let r = g
        .launch(
            std::slice::from_ref(&o.id),
            vec![task("on-gpu", &gpu_id)],
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 202);
    let running = g
        .wait_update("on-gpu", from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    g.acknowledge(&running).await.unwrap();
    let from = g.event_count();
    let body = format!(
        r#"{{"type":"MARK_AGENT_GONE","mark_agent_gone":{{"agent_id":{{"value":"{}"}}}}}}"#,
        gpu_id.value
    );
    let r = http
        .post(format!("{}/api/v1", c.url(0)))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    g.wait_update("on-gpu", from, T, |st| {
        st.state == TaskState::GoneByOperator
    })
    .await
    .unwrap();
    wait_until("the gone agent is refused", T, || async {
        gpu.last_error().filter(|e| e.contains("403")).map(|_| ())
    })
    .await
    .unwrap();
    assert!(gpu.events().iter().any(|e| e.kind == "SHUTDOWN"));
    let slaves: serde_json::Value = get("/master/slaves").await.json().await.unwrap();
    assert_eq!(slaves["slaves"].as_array().unwrap().len(), 1);

    // /flags, and the dcoscli-style form teardown.
    let flags: serde_json::Value = get("/flags").await.json().await.unwrap();
    assert_eq!(flags["flags"]["max_agent_ping_timeouts"], "5");
    let teardown = |body: &'static str| {
        let url = format!("{}/master/teardown", c.url(0));
        let http = http.clone();
        async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(teardown("nothing=1").await, 400);
    assert_eq!(teardown("frameworkId=nope").await, 404);
    let gid = g.framework_id().unwrap();
    let form: &'static str = Box::leak(format!("frameworkId={}", gid.value).into_boxed_str());
    assert_eq!(teardown(form).await, 200);
    g.wait_event("ERROR: removed", 0, T, |e| {
        e.error
            .as_ref()
            .is_some_and(|x| x.message.contains("removed"))
    })
    .await
    .unwrap();
    c.shutdown().await;
}
