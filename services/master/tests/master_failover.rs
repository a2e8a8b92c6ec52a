#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Failures: framework failover, agents going silent and coming back, agent restarts,
//! master failover with redirects.

use std::time::{Duration, Instant};

use basalt_master::testing::{
    AgentOptions, Cluster, EmulatedAgent, Faults, TestScheduler, wait_until,
};
use basalt_mesos::{
    AgentId, Capability, CapabilityType, CommandInfo, FrameworkInfo, Resource, TaskId, TaskInfo,
    TaskState,
};

const T: Duration = Duration::from_secs(10);

fn framework(name: &str, failover: f64, caps: &[CapabilityType]) -> FrameworkInfo {
    let mut f = FrameworkInfo::new("root", name);
    f.failover_timeout = Some(failover);
    f.capabilities = caps.iter().cloned().map(Capability::from).collect();
    f
}

fn task(id: &str, agent: &AgentId) -> TaskInfo {
    let mut t = TaskInfo::command(
        id,
        TaskId::new(id),
        agent.clone(),
        serde_json::from_str::<CommandInfo>(r#"{"value":"sleep 100"}"#).unwrap(),
    );
    t.resources = vec![
        Resource::scalar("cpus", 0.5).unwrap(),
        Resource::scalar("mem", 32.0).unwrap(),
    ];
    t
}

/// Launches `id` on the first offer and returns the acknowledged RUNNING status.
async fn launch_running(s: &TestScheduler, agent: &AgentId, id: &str) -> basalt_mesos::TaskStatus {
    s.revive().await.unwrap();
    let offer = s
        .wait_outstanding_offer(T, |o| &o.agent_id == agent)
        .await
        .unwrap();
    let from = s.event_count();
    let r = s
        .launch(std::slice::from_ref(&offer.id), vec![task(id, agent)], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let st = s
        .wait_update(id, from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    s.acknowledge(&st).await.unwrap();
    st
}

async fn get_json(url: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_failover_keeps_tasks_within_timeout() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", c.addresses()).unwrap());
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let mut s = TestScheduler::subscribe(c.addresses(), framework("fw", 30.0, &[]))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    launch_running(&s, &agent_id, "t1").await;

    // Disconnect; the master notices and keeps the framework.
    s.disconnect();
    let url = format!("{}/master/frameworks", c.url(0));
    wait_until("framework disconnected", T, || async {
        let j = get_json(&url).await;
        (j["frameworks"][0]["connected"] == false).then_some(())
    })
    .await
    .unwrap();
    let old_stream = s.stream_id();
    assert_eq!(s.resubscribe(T).await.unwrap(), fw);
    assert_ne!(s.stream_id(), old_stream);
    let from = s.event_count();
    s.reconcile(&[TaskId::new("t1")]).await.unwrap();
    let st = s.wait_update("t1", from, T, |_| true).await.unwrap();
    assert_eq!(st.state, TaskState::Running);
    assert_eq!(
        agent.task_state(&fw, &TaskId::new("t1")),
        Some(TaskState::Running)
    );

    // A second subscription with the same id while connected closes the first stream
    // with an ERROR event.
    let mut s2 = TestScheduler::subscribe(c.addresses(), {
        let mut f = framework("fw", 30.0, &[]);
        f.id = Some(fw.clone());
        f
    })
    .await
    .unwrap();
    assert_eq!(s2.framework_id().unwrap(), fw);
    s.wait_event("ERROR on the old stream", 0, T, |e| {
        e.error
            .as_ref()
            .is_some_and(|x| x.message.contains("failed over"))
    })
    .await
    .unwrap();
    wait_until("old stream closed", T, || async {
        (!s.connected()).then_some(())
    })
    .await
    .unwrap();
    // The old stream id is no longer valid.
    let body = format!(r#"{{"type":"REVIVE","framework_id":{{"value":"{fw}"}}}}"#);
    let r = s2
        .post_raw(&body, old_stream.as_deref(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    s2.disconnect();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_failover_timeout_tears_down() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", c.addresses()).unwrap());
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let mut s = TestScheduler::subscribe(c.addresses(), framework("fw", 0.5, &[]))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    launch_running(&s, &agent_id, "t1").await;
    s.disconnect();
    wait_until("agent told to shut the framework down", T, || async {
        agent
            .events()
            .iter()
            .any(|e| {
                e.shutdown_framework
                    .as_ref()
                    .is_some_and(|x| x.framework_id == fw)
            })
            .then_some(())
    })
    .await
    .unwrap();
    assert!(agent.tasks().is_empty());
    let j = get_json(&format!("{}/master/frameworks", c.url(0))).await;
    assert_eq!(j["frameworks"].as_array().unwrap().len(), 0);
    assert_eq!(j["completed_frameworks"][0]["id"], fw.value);
    assert_eq!(
        j["completed_frameworks"][0]["completed_tasks"][0]["state"],
        "TASK_KILLED"
    );
    // Nothing of it is left in etcd.
    let store = c.etcd.store();
    assert!(
        store
            .get::<serde_json::Value>(&basalt_store::Key::framework(fw.as_str()).unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .list_keys(&basalt_store::Prefix::tasks_of(fw.as_str()).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    // The resources are free: a new framework gets the whole agent.
    let s2 = TestScheduler::subscribe(c.addresses(), framework("fw2", 0.0, &[]))
        .await
        .unwrap();
    let offers = s2.wait_offers(0, T).await.unwrap();
    assert_eq!(offers[0].resources.cpus().unwrap().as_f64(), 4.0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agent_becomes_unreachable_and_comes_back() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", c.addresses()).unwrap());
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let pa = TestScheduler::subscribe(
        c.addresses(),
        framework("pa", 60.0, &[CapabilityType::PartitionAware]),
    )
    .await
    .unwrap();
    let legacy = TestScheduler::subscribe(c.addresses(), framework("legacy", 60.0, &[]))
        .await
        .unwrap();
    launch_running(&pa, &agent_id, "p1").await;
    launch_running(&legacy, &agent_id, "l1").await;

    let (from_pa, from_legacy) = (pa.event_count(), legacy.event_count());
    let cut = Instant::now();
    agent.set_faults(Faults {
        partitioned: true,
        ..Faults::default()
    });
    let un = pa
        .wait_update("p1", from_pa, T, |st| st.state == TaskState::Unreachable)
        .await
        .unwrap();
    eprintln!(
        "agent unreachable after {:?} (timeout 200 ms x 5)",
        cut.elapsed()
    );
    assert!(
        cut.elapsed() >= Duration::from_millis(900),
        "too early: {:?}",
        cut.elapsed()
    );
    assert!(un.unreachable_time.is_some());
    pa.acknowledge(&un).await.unwrap();
    let lost = legacy
        .wait_update("l1", from_legacy, T, |st| st.state == TaskState::Lost)
        .await
        .unwrap();
    legacy.acknowledge(&lost).await.unwrap();
    let m: serde_json::Value = get_json(&format!("{}/metrics/snapshot", c.url(0))).await;
    assert_eq!(m["master/slaves_unreachable"], 1.0);
    assert_eq!(m["master/slaves_active"], 0.0);
    // Its resources left the allocator: no offers for it while unreachable.
    let j = get_json(&format!("{}/master/state", c.url(0))).await;
    assert_eq!(j["unreachable_slaves"], 1);

    // Heal: the agent re-registers with its tasks; the partition-aware task is RUNNING
    // again, the legacy one is killed (Mesos semantics).
    let (from_pa, from_legacy) = (pa.event_count(), legacy.event_count());
    agent.heal();
    agent.wait_registered(2, T).await.unwrap();
    let back = pa
        .wait_update("p1", from_pa, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    pa.acknowledge(&back).await.unwrap();
    legacy
        .wait_update("l1", from_legacy, T, |st| st.state == TaskState::Killed)
        .await
        .unwrap();
    let m: serde_json::Value = get_json(&format!("{}/metrics/snapshot", c.url(0))).await;
    assert_eq!(m["master/slaves_active"], 1.0);
    assert_eq!(m["master/slaves_unreachable"], 0.0);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_agent_reregisters_with_its_tasks() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let mut agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", c.addresses()).unwrap());
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let s = TestScheduler::subscribe(c.addresses(), framework("fw", 60.0, &[]))
        .await
        .unwrap();
    launch_running(&s, &agent_id, "t1").await;
    agent.restart();
    assert_eq!(agent.wait_registered(2, T).await.unwrap(), agent_id);
    let from = s.event_count();
    s.reconcile(&[]).await.unwrap();
    let st = s.wait_update("t1", from, T, |_| true).await.unwrap();
    assert_eq!(st.state, TaskState::Running);
    let j = get_json(&format!("{}/master/slaves", c.url(0))).await;
    assert_eq!(j["slaves"].as_array().unwrap().len(), 1);
    assert_eq!(j["slaves"][0]["used_resources"]["cpus"], 0.5);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_failover_keeps_everything() {
    let Some(mut c) = Cluster::start(3, 3, |_| {}).await.unwrap() else {
        return;
    };
    let leader = c.wait_leader(T).await.unwrap();
    let follower = (leader + 1) % 3;

    // Followers redirect, Mesos style.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = wait_until("the follower knows the leader", T, || async {
        let r = http
            .get(format!("{}/master/redirect", c.url(follower)))
            .send()
            .await
            .unwrap();
        (r.status() == 307).then_some(r)
    })
    .await
    .unwrap();
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("//{}", c.addresses()[leader])
    );
    let r = http
        .post(format!("{}/api/v1/scheduler", c.url(follower)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("//{}/api/v1/scheduler", c.addresses()[leader])
    );
    let r = http
        .get(format!("{}/master/health", c.url(follower)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Agents and the scheduler start from a follower's address and get redirected.
    let mut order = c.addresses();
    order.rotate_left(follower);
    let a1 =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", order.clone()).unwrap());
    let a2 =
        EmulatedAgent::start(AgentOptions::new("a2", "cpus:4;mem:1024", order.clone()).unwrap());
    let id1 = a1.wait_registered(1, T).await.unwrap();
    let id2 = a2.wait_registered(1, T).await.unwrap();
    let mut s = TestScheduler::subscribe(
        order.clone(),
        framework("fw", 60.0, &[CapabilityType::PartitionAware]),
    )
    .await
    .unwrap();
    let fw = s.framework_id().unwrap();
    launch_running(&s, &id1, "t1").await;
    launch_running(&s, &id2, "t2").await;
    // t2 finishes but its FINISHED update is not acknowledged before the failover.
    let from = s.event_count();
    assert_eq!(
        a2.update(&fw, &TaskId::new("t2"), TaskState::Finished)
            .await
            .unwrap(),
        202
    );
    let fin = s
        .wait_update("t2", from, T, |st| st.state == TaskState::Finished)
        .await
        .unwrap();

    // Kill the leader (no resignation).
    let killed_at = Instant::now();
    c.kill(leader).await.unwrap();
    let new_leader = c.wait_leader(Duration::from_secs(15)).await.unwrap();
    let takeover = killed_at.elapsed();
    eprintln!("new leader (master {new_leader}) serving {takeover:?} after the kill");
    assert_ne!(new_leader, leader);
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );

    // Everyone reconnects.
    wait_until("scheduler stream closed", T, || async {
        (!s.connected()).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(s.resubscribe(T).await.unwrap(), fw);
    assert_eq!(s.master().unwrap(), c.url(new_leader));
    a1.wait_registered(2, T).await.unwrap();
    a2.wait_registered(2, T).await.unwrap();

    // The unacknowledged FINISHED is resent by the new leader (persisted), same uuid.
    let again = s.wait_update("t2", 0, T, |st| {
        st.uuid == fin.uuid && st.state == TaskState::Finished
    });
    let again = again.await.unwrap();
    s.acknowledge(&again).await.unwrap();

    // Reconciliation tells the truth.
    let from = s.event_count();
    s.reconcile(&[TaskId::new("t1"), TaskId::new("t2")])
        .await
        .unwrap();
    let t1 = s.wait_update("t1", from, T, |_| true).await.unwrap();
    assert_eq!(t1.state, TaskState::Running);
    let t2 = s.wait_update("t2", from, T, |_| true).await.unwrap();
    assert_eq!(t2.state, TaskState::Finished);
    // The state endpoint on the new leader has the task and both agents.
    let j = get_json(&format!("{}/master/state", c.url(new_leader))).await;
    assert_eq!(j["activated_slaves"], 2);
    let tasks = j["frameworks"][0]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], "t1");
    // And offers flow again (t1's resources stay in use).
    s.revive().await.unwrap();
    let cpus = wait_until("offers of both agents", T, || async {
        let offers = s.outstanding_offers();
        let agents: std::collections::BTreeSet<_> =
            offers.iter().map(|o| o.agent_id.clone()).collect();
        (agents.len() == 2).then(|| {
            offers
                .iter()
                .map(|o| o.resources.cpus().unwrap().as_f64())
                .sum::<f64>()
        })
    })
    .await
    .unwrap();
    assert!(
        (cpus - 7.5).abs() < 1e-9,
        "t1's 0.5 cpus must stay allocated, offered {cpus}"
    );
    // Kill still works through the new leader.
    let from = s.event_count();
    s.kill(&TaskId::new("t1")).await.unwrap();
    s.wait_update("t1", from, T, |st| st.state == TaskState::Killed)
        .await
        .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_cut_off_from_etcd_stops_then_recovers() {
    let Some(mut c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", c.addresses()).unwrap());
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let mut s = TestScheduler::subscribe(c.addresses(), framework("fw", 60.0, &[]))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    launch_running(&s, &agent_id, "t1").await;

    // etcd goes away: the leader's lease cannot be kept, it stops acting at once.
    c.etcd.kill(0).unwrap();
    wait_until("leader steps down", T, || async {
        c.leader().is_none().then_some(())
    })
    .await
    .unwrap();
    wait_until("scheduler stream closed", T, || async {
        (!s.connected()).then_some(())
    })
    .await
    .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/master/state", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "a deposed leader must not serve state");
    let m: serde_json::Value = http
        .get(format!("{}/metrics/snapshot", c.url(0)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["master/elected"], 0.0);

    // etcd is back: the master is elected again and recovers everything from etcd.
    c.etcd.restart(0).await.unwrap();
    c.wait_leader(Duration::from_secs(20)).await.unwrap();
    assert_eq!(s.resubscribe(T).await.unwrap(), fw);
    agent.wait_registered(2, T).await.unwrap();
    let from = s.event_count();
    s.reconcile(&[TaskId::new("t1")]).await.unwrap();
    let st = s.wait_update("t1", from, T, |_| true).await.unwrap();
    assert_eq!(st.state, TaskState::Running);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_timeout_rescinds() {
    let Some(c) = Cluster::start(1, 1, |cfg| {
        cfg.offer_timeout = Some(Duration::from_millis(300));
    })
    .await
    .unwrap() else {
        return;
    };
    let agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:1;mem:128", c.addresses()).unwrap());
    agent.wait_registered(1, T).await.unwrap();
    let s = TestScheduler::subscribe(c.addresses(), framework("fw", 0.0, &[]))
        .await
        .unwrap();
    let offers = s.wait_offers(0, T).await.unwrap();
    let id = offers[0].id.clone();
    s.wait_event("RESCIND", 0, T, |e| {
        e.rescind.as_ref().is_some_and(|r| r.offer_id == id)
    })
    .await
    .unwrap();
    // The resources come back in a new offer; accepting the rescinded one fails.
    let again = s.wait_outstanding_offer(T, |o| o.id != id).await.unwrap();
    assert_eq!(again.agent_id, offers[0].agent_id);
    let from = s.event_count();
    s.launch(&[id], vec![task("late", &offers[0].agent_id)], None)
        .await
        .unwrap();
    let st = s.wait_update("late", from, T, |_| true).await.unwrap();
    assert_eq!(st.state, TaskState::Lost);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_heartbeats_make_a_connected_agent_unreachable() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent =
        EmulatedAgent::start(AgentOptions::new("a1", "cpus:4;mem:1024", c.addresses()).unwrap());
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let s = TestScheduler::subscribe(
        c.addresses(),
        framework("fw", 60.0, &[CapabilityType::PartitionAware]),
    )
    .await
    .unwrap();
    launch_running(&s, &agent_id, "t1").await;
    let from = s.event_count();
    // The stream stays open, but the master hears nothing from the agent.
    agent.set_faults(Faults {
        drop_calls: vec!["HEARTBEAT".into()],
        delay: Duration::from_millis(10),
        ..Faults::default()
    });
    let st = s
        .wait_update("t1", from, T, |st| st.state == TaskState::Unreachable)
        .await
        .unwrap();
    s.acknowledge(&st).await.unwrap();
    s.wait_event("FAILURE for the agent", from, T, |e| {
        e.failure
            .as_ref()
            .is_some_and(|f| f.agent_id.as_ref() == Some(&agent_id))
    })
    .await
    .unwrap();
    agent.heal();
    let from = s.event_count();
    agent.wait_registered(2, T).await.unwrap();
    s.wait_update("t1", from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    c.shutdown().await;
}
