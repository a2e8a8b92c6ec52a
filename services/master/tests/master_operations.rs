#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Offer operations beyond LAUNCH: LAUNCH_GROUP, RESERVE, CREATE, DESTROY, UNRESERVE.

use std::time::Duration;

use basalt_master::api::{Accept, Call, Filters, LaunchGroup, Operation, TaskGroupInfo};
use basalt_master::testing::{AgentOptions, Cluster, EmulatedAgent, TestScheduler, wait_until};
use basalt_mesos::{
    Capability, CapabilityType, ExecutorInfo, FrameworkInfo, OfferId, TaskId, TaskInfo, TaskState,
};
use serde_json::json;

const T: Duration = Duration::from_secs(10);

fn op(kind: &str, key: &str, body: serde_json::Value) -> Operation {
    let mut other = serde_json::Map::new();
    other.insert(key.to_string(), body);
    Operation {
        kind: kind.into(),
        id: None,
        launch: None,
        launch_group: None,
        other,
    }
}

async fn accept(s: &TestScheduler, offer: &OfferId, ops: Vec<Operation>) -> u16 {
    let mut c = Call::new("ACCEPT", s.framework_id());
    c.accept = Some(Accept {
        offer_ids: vec![offer.clone()],
        operations: ops,
        filters: Some(Filters {
            refuse_seconds: Some(0.0),
        }),
    });
    s.call(&c).await.unwrap().unwrap().status
}

fn reserved(name: &str, value: f64) -> serde_json::Value {
    json!({"name": name, "type": "SCALAR", "scalar": {"value": value},
           "reservations": [{"type": "DYNAMIC", "role": "web", "principal": "ops"}]})
}

fn volume() -> serde_json::Value {
    let mut v = reserved("disk", 100.0);
    v["disk"] = json!({"persistence": {"id": "v1", "principal": "ops"},
                       "volume": {"container_path": "data", "mode": "RW"}});
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_create_launch_group_destroy_unreserve() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent = EmulatedAgent::start(
        AgentOptions::new("a1", "cpus:4;mem:1024;disk:1000", c.addresses()).unwrap(),
    );
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let mut info = FrameworkInfo::new("root", "fw");
    info.role = Some("web".into());
    info.principal = Some("ops".into());
    info.capabilities = vec![Capability::from(CapabilityType::PartitionAware)];
    let s = TestScheduler::subscribe(c.addresses(), info).await.unwrap();
    let fw = s.framework_id().unwrap();

    // RESERVE 1 cpu and 100 disk for the role.
    let offer = s.wait_outstanding_offer(T, |_| true).await.unwrap();
    assert_eq!(
        offer.allocation_info.as_ref().unwrap().role.as_deref(),
        Some("web")
    );
    let st = accept(
        &s,
        &offer.id,
        vec![op(
            "RESERVE",
            "reserve",
            json!({"resources": [reserved("cpus", 1.0), reserved("disk", 100.0)]}),
        )],
    )
    .await;
    assert_eq!(st, 202);
    s.revive().await.unwrap();
    let offer = s
        .wait_outstanding_offer(T, |o| {
            o.resources.iter().any(|r| r.is_dynamically_reserved())
        })
        .await
        .unwrap();
    let slaves: serde_json::Value = reqwest::get(format!("{}/master/slaves", c.url(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        slaves["slaves"][0]["reserved_resources"]["web"]["cpus"],
        1.0
    );
    assert!(
        agent
            .events()
            .iter()
            .any(|e| e.kind == "CHECKPOINT_RESOURCES"),
        "the agent learns its new total"
    );

    // CREATE a persistent volume on the reserved disk.
    assert_eq!(
        accept(
            &s,
            &offer.id,
            vec![op("CREATE", "create", json!({"volumes": [volume()]}))]
        )
        .await,
        202
    );
    s.revive().await.unwrap();
    let offer = s
        .wait_outstanding_offer(T, |o| o.resources.iter().any(|r| r.is_persistent_volume()))
        .await
        .unwrap();

    // LAUNCH_GROUP: a default executor and two tasks, one on reserved cpus.
    let exec: ExecutorInfo = serde_json::from_value(json!({
        "type": "DEFAULT", "executor_id": {"value": "e1"}, "framework_id": {"value": fw.value},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]
    }))
    .unwrap();
    let mk = |id: &str, cpus: serde_json::Value| -> TaskInfo {
        serde_json::from_value(json!({
            "name": id, "task_id": {"value": id}, "agent_id": {"value": agent_id.value},
            "resources": [cpus, {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}}],
            "command": {"value": "sleep 100"}
        }))
        .unwrap()
    };
    let from = s.event_count();
    let group = Operation {
        kind: "LAUNCH_GROUP".into(),
        id: None,
        launch: None,
        launch_group: Some(LaunchGroup {
            executor: exec,
            task_group: TaskGroupInfo {
                tasks: vec![
                    mk("g1", reserved("cpus", 1.0)),
                    mk(
                        "g2",
                        json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}}),
                    ),
                ],
            },
        }),
        other: Default::default(),
    };
    assert_eq!(accept(&s, &offer.id, vec![group]).await, 202);
    for t in ["g1", "g2"] {
        let st = s
            .wait_update(t, from, T, |st| st.state == TaskState::Running)
            .await
            .unwrap();
        s.acknowledge(&st).await.unwrap();
    }
    let ev = agent.events();
    let lg = ev.iter().find_map(|e| e.launch_group.as_ref()).unwrap();
    assert_eq!(lg.task_group.tasks.len(), 2);
    assert_eq!(lg.executor.executor_id.value, "e1");

    // Kill both, then DESTROY the volume and UNRESERVE everything.
    let from = s.event_count();
    for t in ["g1", "g2"] {
        s.kill(&TaskId::new(t)).await.unwrap();
    }
    for t in ["g1", "g2"] {
        let st = s
            .wait_update(t, from, T, |st| st.state == TaskState::Killed)
            .await
            .unwrap();
        s.acknowledge(&st).await.unwrap();
    }
    s.revive().await.unwrap();
    let offer = wait_until(
        "an offer with the volume and the reserved cpu",
        T,
        || async {
            s.outstanding_offers().into_iter().find(|o| {
                o.resources.iter().any(|r| r.is_persistent_volume())
                    && o.resources
                        .iter()
                        .any(|r| r.name == "cpus" && r.is_dynamically_reserved())
            })
        },
    )
    .await
    .unwrap();
    let st = accept(
        &s,
        &offer.id,
        vec![
            op("DESTROY", "destroy", json!({"volumes": [volume()]})),
            op(
                "UNRESERVE",
                "unreserve",
                json!({"resources": [reserved("cpus", 1.0), reserved("disk", 100.0)]}),
            ),
        ],
    )
    .await;
    assert_eq!(st, 202);
    s.revive().await.unwrap();
    let offer = wait_until("a fully unreserved offer of the whole agent", T, || async {
        s.outstanding_offers().into_iter().find(|o| {
            o.resources.iter().all(|r| r.reservations.is_empty())
                && o.resources.cpus().map(|c| c.as_f64()) == Some(4.0)
        })
    })
    .await
    .unwrap();
    assert_eq!(offer.resources.disk().unwrap().as_f64(), 1000.0);

    // An invalid RESERVE (role of another framework) is dropped and changes nothing.
    let mut bad = reserved("cpus", 1.0);
    bad["reservations"][0]["role"] = json!("other");
    assert_eq!(
        accept(
            &s,
            &offer.id,
            vec![op("RESERVE", "reserve", json!({"resources": [bad]}))]
        )
        .await,
        202
    );
    s.revive().await.unwrap();
    let again = s.wait_outstanding_offer(T, |_| true).await.unwrap();
    assert!(again.resources.iter().all(|r| r.reservations.is_empty()));
    c.shutdown().await;
}

fn launch_op(tasks: Vec<TaskInfo>) -> Operation {
    Operation {
        kind: "LAUNCH".into(),
        id: None,
        launch: Some(basalt_master::api::Launch { task_infos: tasks }),
        launch_group: None,
        other: serde_json::Map::new(),
    }
}

/// An ACCEPT mixing valid launches with invalid operations: the invalid RESERVE with an
/// `id` is reported as OPERATION_ERROR, the one without is dropped silently, the launch
/// that needed the reservation is TASK_ERROR, the valid launch runs and everything else
/// of the offer comes back unchanged (nothing half-applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_operations_inside_accept() {
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return;
    };
    let agent = EmulatedAgent::start(
        AgentOptions::new("a1", "cpus:4;mem:1024;disk:1000", c.addresses()).unwrap(),
    );
    let agent_id = agent.wait_registered(1, T).await.unwrap();
    let mut info = FrameworkInfo::new("root", "fw");
    info.role = Some("web".into());
    info.principal = Some("ops".into());
    let s = TestScheduler::subscribe(c.addresses(), info).await.unwrap();
    let offer = s.wait_outstanding_offer(T, |_| true).await.unwrap();
    assert_eq!(offer.resources.cpus().unwrap().as_f64(), 4.0);

    let cmd = |id: &str, res: Vec<basalt_mesos::Resource>| {
        let mut t = TaskInfo::command(
            id,
            TaskId::new(id),
            agent_id.clone(),
            serde_json::from_value(json!({"value": "sleep 100"})).unwrap(),
        );
        t.resources = res;
        t
    };
    let plain_cpu = basalt_mesos::Resource::scalar("cpus", 1.0).unwrap();
    let reserved_cpu: basalt_mesos::Resource =
        serde_json::from_value(reserved("cpus", 1.0)).unwrap();
    // RESERVE of more cpus than offered (with an id), UNRESERVE of resources that are
    // not reserved (without an id), a launch on the reservation, a valid launch.
    let mut bad_reserve = op(
        "RESERVE",
        "reserve",
        json!({"resources": [reserved("cpus", 100.0)]}),
    );
    bad_reserve.id = Some(json!({"value": "op-1"}));
    let bad_unreserve = op(
        "UNRESERVE",
        "unreserve",
        json!({"resources": [reserved("mem", 64.0)]}),
    );
    let from = s.event_count();
    let st = accept(
        &s,
        &offer.id,
        vec![
            bad_reserve,
            bad_unreserve,
            launch_op(vec![cmd("on-reserved", vec![reserved_cpu])]),
            launch_op(vec![cmd("ok", vec![plain_cpu])]),
        ],
    )
    .await;
    assert_eq!(st, 202);
    let ev = s
        .wait_event("OPERATION_ERROR", from, T, |e| {
            e.kind == "UPDATE_OPERATION_STATUS"
        })
        .await
        .unwrap();
    let status = ev.update_operation_status.unwrap().status;
    assert_eq!(status.operation_id, json!({"value": "op-1"}));
    assert_eq!(status.state, "OPERATION_ERROR");
    assert!(status.message.unwrap().contains("RESERVE"));
    let err = s
        .wait_update("on-reserved", from, T, |st| st.state == TaskState::Error)
        .await
        .unwrap();
    assert_eq!(
        err.reason,
        Some(basalt_mesos::TaskStatusReason::TaskInvalid)
    );
    let running = s
        .wait_update("ok", from, T, |st| st.state == TaskState::Running)
        .await
        .unwrap();
    s.acknowledge(&running).await.unwrap();

    // The rest of the offer comes back whole and unreserved: 3 cpus, all the mem and disk.
    s.revive().await.unwrap();
    let again = s
        .wait_outstanding_offer(T, |o| o.id != offer.id)
        .await
        .unwrap();
    assert_eq!(again.resources.cpus().unwrap().as_f64(), 3.0);
    assert_eq!(again.resources.get_scalar("mem").unwrap().as_f64(), 1024.0);
    assert_eq!(again.resources.get_scalar("disk").unwrap().as_f64(), 1000.0);
    assert!(
        !again.resources.iter().any(|r| r.is_dynamically_reserved()),
        "no reservation was applied"
    );
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| e.kind == "CHECKPOINT_RESOURCES"),
        "the agent's total did not change"
    );
    // Only the operation with an id was reported.
    let reported = s
        .events()
        .iter()
        .skip(from)
        .filter(|e| e.kind == "UPDATE_OPERATION_STATUS")
        .count();
    assert_eq!(reported, 1);
    let m: serde_json::Value = reqwest::get(format!("{}/metrics/snapshot", c.url(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["master/operations_dropped"], 2.0);
    c.shutdown().await;
}
