//! A 3-member etcd cluster: losing one member keeps the store, leases, elections and
//! watches working; a watch whose only member dies resumes without losing events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_store::testing::{EtcdCluster, wait_for};
use basalt_store::{Election, Key, Prefix, Store, StoreConfig, Watch, WatchEvent};
use common::DEADLINE;
use futures::StreamExt;
use std::time::Duration;
use tokio::time::timeout;

async fn next<T>(w: &mut Watch<T>) -> WatchEvent<T> {
    timeout(DEADLINE, w.next())
        .await
        .expect("no watch event before the deadline")
        .expect("watch ended")
        .expect("watch error")
}

/// Creates `key`, retrying while the cluster recovers; a conflict means an earlier try
/// landed, so nothing is written twice.
async fn create_retrying(store: &Store, key: &Key, value: u32) {
    wait_for(&format!("creating {key}"), DEADLINE, || async {
        match store.create(key, &value).await {
            Ok(_) => Some(()),
            Err(e) if e.is_conflict() => Some(()),
            Err(_) => None,
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn losing_one_member_keeps_the_store_working() {
    let mut etcd = etcd_or_skip!(EtcdCluster::start(3));
    let store = etcd.store();
    store.put(&Key::cluster_id(), &"c1").await.unwrap();
    let leadership = Election::campaign(&store, "master", "m0:5050", Duration::from_secs(3))
        .await
        .unwrap();
    let lease = store.grant_lease(Duration::from_secs(3)).await.unwrap();
    let leased = Key::agent("leased").unwrap();
    store.put_with_lease(&leased, &"x", &lease).await.unwrap();
    let mut all = store
        .watch::<serde_json::Value>(&Prefix::agents(), 0)
        .await
        .unwrap();

    // Member 0 is the first endpoint the client knows.
    etcd.kill(0).unwrap();
    assert!(!etcd.is_running(0));

    // Writes go through the surviving quorum.
    for i in 0..20 {
        create_retrying(&store, &Key::agent(&format!("a{i:02}")).unwrap(), i).await;
    }
    assert_eq!(
        store
            .get::<String>(&Key::cluster_id())
            .await
            .unwrap()
            .unwrap()
            .value,
        "c1"
    );
    let v = store.get::<String>(&leased).await.unwrap().unwrap().version;
    store.put_if_version(&leased, &"y", v).await.unwrap();
    assert_eq!(store.list_keys(&Prefix::agents()).await.unwrap().len(), 21);

    // The watch saw every write exactly once, in order.
    let mut seen = Vec::new();
    while seen.len() < 21 {
        if let WatchEvent::Put { key, .. } = next(&mut all).await {
            seen.push(key.name());
        }
    }
    let mut want: Vec<String> = (0..20).map(|i| format!("a{i:02}")).collect();
    want.push("leased".to_string());
    assert_eq!(seen, want);

    // Lease and leadership survived the member loss (keep-alives moved to a live member).
    let other = etcd.connect().await.unwrap();
    wait_for(
        "a keep-alive through a surviving member",
        DEADLINE,
        || async {
            let ttl = other
                .client()
                .clone()
                .lease_time_to_live(lease.id(), None)
                .await
                .ok()?;
            (ttl.ttl() > 0).then_some(())
        },
    )
    .await
    .unwrap();
    assert!(lease.is_alive());
    assert!(leadership.is_leader());
    assert_eq!(
        Election::leader(&other, "master")
            .await
            .unwrap()
            .unwrap()
            .address,
        "m0:5050"
    );

    // The member comes back and catches up.
    etcd.restart(0).await.unwrap();
    let only_m0 = Store::connect(StoreConfig::new([etcd.endpoint(0).unwrap()]))
        .await
        .unwrap();
    assert_eq!(
        only_m0.list_keys(&Prefix::agents()).await.unwrap().len(),
        21
    );
}

#[tokio::test]
async fn a_watch_whose_member_dies_resumes_without_losing_events() {
    let mut etcd = etcd_or_skip!(EtcdCluster::start(3));
    let writer = Store::connect(StoreConfig::new([
        etcd.endpoint(1).unwrap(),
        etcd.endpoint(2).unwrap(),
    ]))
    .await
    .unwrap();
    // This watcher can only ever reach member 0.
    let pinned = Store::connect(StoreConfig::new([etcd.endpoint(0).unwrap()]))
        .await
        .unwrap();
    let mut w = pinned.watch::<u32>(&Prefix::tasks(), 0).await.unwrap();
    writer
        .put(&Key::task("fw", "t0").unwrap(), &0)
        .await
        .unwrap();
    assert!(matches!(next(&mut w).await, WatchEvent::Put { value, .. } if value.value == 0));

    etcd.kill(0).unwrap();
    // Written while the watcher's only member is down.
    for i in 1..=10 {
        create_retrying(&writer, &Key::task("fw", &format!("t{i}")).unwrap(), i).await;
    }
    writer
        .delete(&Key::task("fw", "t0").unwrap())
        .await
        .unwrap();
    etcd.restart(0).await.unwrap();

    for i in 1..=10 {
        match next(&mut w).await {
            WatchEvent::Put { key, value } => {
                assert_eq!(key.name(), format!("t{i}"));
                assert_eq!(value.value, i);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(next(&mut w).await, WatchEvent::Delete { key, .. } if key.name() == "t0"));
    // And nothing more than that.
    writer
        .put(&Key::task("fw", "last").unwrap(), &99)
        .await
        .unwrap();
    assert!(matches!(next(&mut w).await, WatchEvent::Put { value, .. } if value.value == 99));
}
