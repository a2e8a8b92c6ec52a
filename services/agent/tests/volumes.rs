#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Local persistent volumes through the master: RESERVE + CREATE make
//! `<work_dir>/volumes/roles/<role>/<id>`; a task with the volume sees it at its
//! `container_path`; data written by one task is read by the next; DESTROY deletes it.
//! Also: finished sandboxes are garbage-collected after `gc_delay`.

mod common;

use std::time::Duration;

use basalt_master::api::{Accept, Call, Offer, Operation};
use basalt_master::testing::{TestScheduler, wait_until};
use basalt_mesos::{
    AgentId, CommandInfo, DiskInfo, OfferId, Persistence, ReservationInfo, Resource, TaskId,
    TaskState, Volume, VolumeMode,
};

use common::*;

fn volume(role: &str, id: &str, mb: f64) -> Resource {
    Resource::scalar("disk", mb)
        .unwrap()
        .with_reservation(ReservationInfo::new_dynamic(role, None, None))
        .with_disk(DiskInfo {
            persistence: Some(Persistence {
                id: id.into(),
                principal: None,
            }),
            volume: Some(Volume {
                container_path: "data".into(),
                host_path: None,
                mode: Some(VolumeMode::Rw),
                extra: Default::default(),
            }),
            source: None,
        })
}

async fn offer(
    s: &TestScheduler,
    agent: &AgentId,
    used: &mut Vec<OfferId>,
    with_volume: bool,
) -> Offer {
    let o = s
        .wait_outstanding_offer(T, |o| {
            &o.agent_id == agent
                && !used.contains(&o.id)
                && o.resources.cpus().is_some_and(|c| c.as_f64() >= 0.5)
                && o.resources.iter().any(|r| r.is_persistent_volume()) == with_volume
        })
        .await
        .unwrap();
    used.push(o.id.clone());
    o
}

async fn accept(s: &TestScheduler, o: &Offer, ops: Vec<Operation>) {
    let mut c = Call::new("ACCEPT", s.framework_id());
    c.accept = Some(Accept {
        offer_ids: vec![o.id.clone()],
        operations: ops,
        filters: None,
    });
    let r = s.call(&c).await.unwrap().unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
}

fn op(kind: &str, list: &str, res: &[Resource]) -> Operation {
    let mut other = serde_json::Map::new();
    other.insert(
        kind.to_ascii_lowercase(),
        serde_json::json!({ list: serde_json::to_value(res).unwrap() }),
    );
    Operation {
        kind: kind.into(),
        id: None,
        launch: None,
        launch_group: None,
        other,
    }
}

fn launch_op(t: basalt_mesos::TaskInfo) -> Operation {
    Operation {
        kind: "LAUNCH".into(),
        id: None,
        launch: Some(basalt_master::api::Launch {
            task_infos: vec![t],
        }),
        launch_group: None,
        other: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persistent_volume_outlives_its_tasks_until_destroyed() {
    let test = "persistent_volume_outlives_its_tasks_until_destroyed";
    let Some((c, agent, work, agent_id)) = setup(test).await else {
        return;
    };
    let mut fi = framework("volumes");
    fi.role = Some("db".into());
    let s = TestScheduler::subscribe(c.addresses(), fi).await.unwrap();
    let mut used = Vec::new();

    // RESERVE + CREATE.
    let o = offer(&s, &agent_id, &mut used, false).await;
    let reserved = Resource::scalar("disk", 64.0)
        .unwrap()
        .with_reservation(ReservationInfo::new_dynamic("db", None, None));
    accept(
        &s,
        &o,
        vec![
            op("RESERVE", "resources", &[reserved]),
            op("CREATE", "volumes", &[volume("db", "vol1", 64.0)]),
        ],
    )
    .await;
    let dir = work.path().join("volumes/roles/db/vol1");
    wait_until("the volume directory", T, || async {
        dir.is_dir().then_some(())
    })
    .await
    .unwrap();

    // Task 1 writes into the volume; task 2 reads it back.
    for (id, script) in [
        ("writer", "echo written-by-writer > data/hello"),
        (
            "reader",
            "test \"$(cat data/hello)\" = written-by-writer && echo ok > data/read",
        ),
    ] {
        let o = offer(&s, &agent_id, &mut used, true).await;
        let vol = o
            .resources
            .iter()
            .find(|r| r.is_persistent_volume())
            .cloned()
            .unwrap();
        let mut t = task(id, &agent_id, CommandInfo::shell(script), 0.1, 32.0);
        t.resources.push(vol);
        let from = s.event_count();
        accept(&s, &o, vec![launch_op(t)]).await;
        let st = wait_state(&s, id, from, TaskState::Finished).await;
        assert_eq!(
            st.message.as_deref(),
            Some("Command exited with status 0"),
            "{id}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("hello")).unwrap(),
        "written-by-writer\n"
    );
    assert_eq!(std::fs::read_to_string(dir.join("read")).unwrap(), "ok\n");
    // The host side of the mount point stays empty (the bind mount was the task's).
    let fw = s.framework_id().unwrap();
    let sb = agent
        .task(&fw, &TaskId::new("reader"))
        .unwrap()
        .sandbox
        .unwrap();
    assert!(sb.join("data").is_dir());
    assert!(!sb.join("data/hello").exists());

    // DESTROY deletes it.
    let o = offer(&s, &agent_id, &mut used, true).await;
    let vol = o
        .resources
        .iter()
        .find(|r| r.is_persistent_volume())
        .cloned()
        .unwrap();
    accept(&s, &o, vec![op("DESTROY", "volumes", &[vol])]).await;
    wait_until("the volume is deleted", T, || async {
        (!dir.exists()).then_some(())
    })
    .await
    .unwrap();

    agent.stop().await;
    remove_roots(work.path()).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_sandboxes_are_garbage_collected_after_gc_delay() {
    let test = "finished_sandboxes_are_garbage_collected_after_gc_delay";
    let Some((c, agent, work, agent_id)) = setup_with(test, |cfg| {
        cfg.gc_delay = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    let s = TestScheduler::subscribe(c.addresses(), framework("gc"))
        .await
        .unwrap();
    let fw = s.framework_id().unwrap();
    let from = launch(
        &s,
        &agent_id,
        task(
            "short",
            &agent_id,
            CommandInfo::shell("echo bye"),
            0.1,
            32.0,
        ),
    )
    .await;
    wait_state(&s, "short", from, TaskState::Finished).await;
    let entry = agent.task(&fw, &TaskId::new("short")).unwrap();
    let (sandbox, meta) = (entry.sandbox.unwrap(), entry.meta_dir.unwrap());
    // A running task's sandbox is left alone.
    let from = launch(
        &s,
        &agent_id,
        task(
            "long",
            &agent_id,
            CommandInfo::shell("exec sleep 300"),
            0.1,
            32.0,
        ),
    )
    .await;
    wait_state(&s, "long", from, TaskState::Running).await;
    wait_until("the finished sandbox is collected", T, || async {
        (!sandbox.exists() && !meta.exists()).then_some(())
    })
    .await
    .unwrap();
    let long = agent
        .task(&fw, &TaskId::new("long"))
        .unwrap()
        .sandbox
        .unwrap();
    assert!(long.join("stdout").exists());
    s.kill(&TaskId::new("long")).await.unwrap();
    wait_state(&s, "long", from, TaskState::Killed).await;
    agent.stop().await;
    remove_roots(work.path()).await;
    c.shutdown().await;
}

/// Without a mount namespace a volume is a symlink at its container path; a volume
/// path leaving the sandbox and a missing network namespace are launch errors.
#[tokio::test]
async fn plain_tasks_get_volume_symlinks_and_bad_volumes_or_netns_are_refused() {
    use basalt_agent::containerizer::{
        Containerizer, ContainerizerConfig, Isolation, LaunchSpec, VolumeMount,
    };
    use basalt_mesos::{ContainerId, FrameworkId};

    let work = tempfile::tempdir().unwrap();
    let mut cfg = ContainerizerConfig::new(
        work.path(),
        AgentId::new("agent-v"),
        "host-v",
        "127.0.0.1:5051",
    );
    cfg.isolation = Isolation::none();
    let cz = Containerizer::new(cfg).unwrap();
    let vol = work.path().join("volumes/roles/r/v1");
    std::fs::create_dir_all(&vol).unwrap();
    let t = task(
        "sym",
        &AgentId::new("agent-v"),
        CommandInfo::shell("echo via-symlink > data/sub/file"),
        0.1,
        32.0,
    );
    let mut spec = LaunchSpec::new(ContainerId::new("c-sym"), FrameworkId::new("fw"), t);
    spec.volumes = vec![VolumeMount {
        host_path: vol.clone(),
        container_path: "data/sub".into(),
        read_only: false,
    }];
    let c = cz.launch(spec).await.unwrap();
    let term = tokio::time::timeout(T, c.wait()).await.unwrap();
    assert_eq!(term.message, "Command exited with status 0");
    assert_eq!(
        std::fs::read_link(c.sandbox().join("data/sub")).unwrap(),
        vol
    );
    assert_eq!(
        std::fs::read_to_string(vol.join("file")).unwrap(),
        "via-symlink\n"
    );

    // A container path leaving the sandbox is refused, naming it.
    let t = task(
        "bad",
        &AgentId::new("agent-v"),
        CommandInfo::shell("true"),
        0.1,
        32.0,
    );
    let mut spec = LaunchSpec::new(ContainerId::new("c-bad"), FrameworkId::new("fw"), t);
    spec.volumes = vec![VolumeMount {
        host_path: vol.clone(),
        container_path: "../escape".into(),
        read_only: false,
    }];
    let e = cz.launch(spec).await.unwrap_err().to_string();
    assert!(e.contains("../escape"), "{e}");

    // A missing network namespace file is a launch error naming it.
    let t = task(
        "ns",
        &AgentId::new("agent-v"),
        CommandInfo::shell("true"),
        0.1,
        32.0,
    );
    let mut spec = LaunchSpec::new(ContainerId::new("c-ns"), FrameworkId::new("fw"), t);
    spec.netns = Some(work.path().join("no-such-netns"));
    let e = cz.launch(spec).await.unwrap_err().to_string();
    assert!(e.contains("no-such-netns"), "{e}");
}
