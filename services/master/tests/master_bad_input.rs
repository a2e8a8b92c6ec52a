#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad inputs get the documented errors and change nothing.

use std::time::Duration;

use basalt_master::agent_api::{AGENT_API_PATH, AgentCall};
use basalt_master::testing::{AgentOptions, Cluster, EmulatedAgent, TestScheduler};
use basalt_mesos::{CommandInfo, FrameworkInfo, OfferId, Resource, TaskId, TaskInfo, TaskState};

const T: Duration = Duration::from_secs(10);

fn task(id: &str, agent: &basalt_mesos::AgentId, cpus: f64) -> TaskInfo {
    let mut t = TaskInfo::command(
        id,
        TaskId::new(id),
        agent.clone(),
        serde_json::from_str::<CommandInfo>(r#"{"value":"true"}"#).unwrap(),
    );
    t.resources = vec![Resource::scalar("cpus", cpus).unwrap()];
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_bad_inputs() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:2;mem:1024", c.addresses()).unwrap());
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let mut info = FrameworkInfo::new("root", "fw");
    info.failover_timeout = Some(60.0);
    let s = TestScheduler::subscribe(c.addresses(), info).await.unwrap();
    let fw = s.framework_id().unwrap();
    let sid = s.stream_id().unwrap();
    let offers = s.wait_offers(0, T).await.unwrap();
    let json = "application/json";

    // Malformed JSON.
    let r = s.post_raw("{not json", Some(&sid), json).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("parse"), "{}", r.body);
    // Missing field: ACCEPT without 'accept'.
    let body = format!(r#"{{"type":"ACCEPT","framework_id":{{"value":"{fw}"}}}}"#);
    let r = s.post_raw(&body, Some(&sid), json).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("'accept'"), "{}", r.body);
    // Missing framework_id.
    let r = s
        .post_raw(r#"{"type":"REVIVE"}"#, Some(&sid), json)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("framework_id"), "{}", r.body);
    // Wrong and missing stream id.
    let body = format!(r#"{{"type":"REVIVE","framework_id":{{"value":"{fw}"}}}}"#);
    let r = s.post_raw(&body, Some("bogus"), json).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("bogus"), "{}", r.body);
    let r = s.post_raw(&body, None, json).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Mesos-Stream-Id"), "{}", r.body);
    // Unsupported content type.
    let r = s
        .post_raw(&body, Some(&sid), "application/x-protobuf")
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    // Unsupported Accept.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/scheduler", c.url(0)))
        .header("accept", "application/x-protobuf")
        .header("Mesos-Stream-Id", sid.as_str())
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    // Unsupported operation: 400 naming it; a RESERVE without resources: 400 naming
    // the field. The offer is untouched either way (it is used below).
    let body = format!(
        r#"{{"type":"ACCEPT","framework_id":{{"value":"{fw}"}},"accept":{{"offer_ids":[{{"value":"{}"}}],"operations":[{{"type":"GROW_VOLUME","grow_volume":{{}}}}]}}}}"#,
        offers[0].id
    );
    let r = s.post_raw(&body, Some(&sid), json).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("GROW_VOLUME"), "{}", r.body);
    let body = format!(
        r#"{{"type":"ACCEPT","framework_id":{{"value":"{fw}"}},"accept":{{"offer_ids":[{{"value":"{}"}}],"operations":[{{"type":"RESERVE","reserve":{{"resources":[]}}}}]}}}}"#,
        offers[0].id
    );
    let r = s.post_raw(&body, Some(&sid), json).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("'accept.operations[0].reserve.resources'"),
        "{}",
        r.body
    );

    // Launch with resources not in the offer → TASK_ERROR / REASON_TASK_INVALID; nothing launched.
    let from = s.event_count();
    let r = s
        .launch(
            &[offers[0].id.clone()],
            vec![task("big", &agent_id, 64.0)],
            Some(0.0),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 202);
    let err = s.wait_update("big", from, T, |_| true).await.unwrap();
    assert_eq!(err.state, TaskState::Error);
    assert_eq!(err.reason.as_ref().unwrap().as_str(), "REASON_TASK_INVALID");
    assert!(
        err.message.as_ref().unwrap().contains("not in the offered"),
        "{:?}",
        err.message
    );
    assert!(agent.tasks().is_empty());
    // Unknown offer id → TASK_LOST (not partition-aware) / REASON_INVALID_OFFERS.
    let from = s.event_count();
    s.launch(
        &[OfferId::new("no-such-offer")],
        vec![task("t2", &agent_id, 1.0)],
        None,
    )
    .await
    .unwrap();
    let lost = s.wait_update("t2", from, T, |_| true).await.unwrap();
    assert_eq!(lost.state, TaskState::Lost);
    assert_eq!(
        lost.reason.as_ref().unwrap().as_str(),
        "REASON_INVALID_OFFERS"
    );
    // The resources were all given back: the full agent is offered again.
    let offer = s
        .wait_outstanding_offer(T, |o| o.resources.cpus().map(|c| c.as_f64()) == Some(2.0))
        .await
        .unwrap();
    let offers = [offer];
    // Duplicate task id inside one ACCEPT: the second is TASK_ERROR.
    let from = s.event_count();
    s.launch(
        &[offers[0].id.clone()],
        vec![task("dup", &agent_id, 0.5), task("dup", &agent_id, 0.5)],
        None,
    )
    .await
    .unwrap();
    let dup = s
        .wait_update("dup", from, T, |st| st.state == TaskState::Error)
        .await
        .unwrap();
    assert!(dup.message.unwrap().contains("already in use"));
    s.wait_update("dup", from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_api_requires_the_join_credential() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let http = reqwest::Client::new();
    let url = format!("{}{AGENT_API_PATH}", c.url(0));
    let call = serde_json::to_string(&AgentCall::new("HEARTBEAT", Some("x".into()))).unwrap();
    let r = http.post(&url).body(call.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("missing Authorization"));
    let r = http
        .post(&url)
        .bearer_auth("wrong")
        .body(call.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("invalid join credential"));
    let r = http
        .post(&url)
        .basic_auth("u", Some("p"))
        .body(call.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Bearer"));
    // Right credential, unknown agent → 404; agent with a wrong credential never registers.
    let r = http
        .post(&url)
        .bearer_auth(basalt_master::testing::TEST_CREDENTIAL)
        .header(basalt_master::agent_api::AGENT_STREAM_ID_HEADER, "s")
        .body(call)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let mut opts = AgentOptions::new("bad", "cpus:1;mem:128", c.addresses()).unwrap();
    opts.credential = Some("nope".into());
    let bad = EmulatedAgent::start(opts);
    basalt_master::testing::wait_until("the rejection", T, || async {
        bad.last_error().filter(|e| e.contains("401")).map(|_| ())
    })
    .await
    .unwrap();
    assert_eq!(bad.registrations(), 0);
    c.shutdown().await;
}
