//! Watches (typed, resumable across an etcd restart, compaction) and leases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_store::testing::{EtcdCluster, wait_for};
use basalt_store::{Key, LossReason, Prefix, StoreError, Watch, WatchEvent};
use common::DEADLINE;
use futures::StreamExt;
use std::time::Duration;
use tokio::time::{Instant, timeout};

async fn next<T>(w: &mut Watch<T>) -> Result<WatchEvent<T>, StoreError> {
    timeout(DEADLINE, w.next())
        .await
        .expect("no watch event before the deadline")
        .expect("watch ended")
}

#[tokio::test]
async fn list_then_watch_sees_every_later_change_once_in_order() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    store.put(&Key::agent("a0").unwrap(), &0).await.unwrap();
    let listing = store.list::<i32>(&Prefix::agents()).await.unwrap();
    assert_eq!(listing.items.len(), 1);
    // Written between the listing and the watch: must still be seen.
    let v1 = store.put(&Key::agent("a1").unwrap(), &1).await.unwrap();
    let mut w = store
        .watch::<i32>(&Prefix::agents(), listing.revision + 1)
        .await
        .unwrap();
    let v2 = store.put(&Key::agent("a2").unwrap(), &2).await.unwrap();
    store.put(&Key::framework("f").unwrap(), &99).await.unwrap(); // outside the prefix
    let v3 = store.put(&Key::agent("a1").unwrap(), &11).await.unwrap();
    store.delete(&Key::agent("a0").unwrap()).await.unwrap();
    let v5 = store.revision().await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut w).await.unwrap());
    }
    assert_eq!(
        seen,
        vec![
            WatchEvent::Put {
                key: Key::agent("a1").unwrap(),
                value: basalt_store::Versioned {
                    value: 1,
                    version: v1
                }
            },
            WatchEvent::Put {
                key: Key::agent("a2").unwrap(),
                value: basalt_store::Versioned {
                    value: 2,
                    version: v2
                }
            },
            WatchEvent::Put {
                key: Key::agent("a1").unwrap(),
                value: basalt_store::Versioned {
                    value: 11,
                    version: v3
                }
            },
            WatchEvent::Delete {
                key: Key::agent("a0").unwrap(),
                version: v5
            },
        ]
    );
}

#[tokio::test]
async fn watch_yields_decode_errors_and_goes_on() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let mut w = store.watch::<i32>(&Prefix::agents(), 0).await.unwrap();
    store
        .put(&Key::agent("bad").unwrap(), &"not a number")
        .await
        .unwrap();
    store.put(&Key::agent("good").unwrap(), &7).await.unwrap();
    let err = next(&mut w).await.unwrap_err();
    assert!(
        err.to_string().contains("/basalt/v1/master/agents/bad"),
        "{err}"
    );
    match next(&mut w).await.unwrap() {
        WatchEvent::Put { key, value } => {
            assert_eq!(key.name(), "good");
            assert_eq!(value.value, 7);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn watch_key_and_history_replay() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let key = Key::cluster_id();
    let first = store.put(&key, &"one").await.unwrap();
    store
        .put(&Key::agent("x").unwrap(), &"other")
        .await
        .unwrap();
    store.put(&key, &"two").await.unwrap();
    // Starting in the past replays history, for this key only.
    let mut w = store.watch_key::<String>(&key, first).await.unwrap();
    let a = next(&mut w).await.unwrap();
    let b = next(&mut w).await.unwrap();
    assert_eq!(a.version(), first);
    assert!(matches!(&a, WatchEvent::Put { value, .. } if value.value == "one"));
    assert!(matches!(&b, WatchEvent::Put { value, .. } if value.value == "two"));
    assert_eq!(b.key(), &key);
}

#[tokio::test]
async fn watch_from_a_compacted_revision_reports_compacted_and_ends() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let key = Key::cluster_id();
    let first = store.put(&key, &1).await.unwrap();
    store.put(&key, &2).await.unwrap();
    let last = store.put(&key, &3).await.unwrap();
    store
        .client()
        .clone()
        .compact(last as i64, None)
        .await
        .unwrap();
    // etcd creates the watch and then cancels it: the error is the first item, and the
    // stream ends after it.
    let mut stale = store.watch_key::<i32>(&key, first).await.unwrap();
    match next(&mut stale).await.unwrap_err() {
        StoreError::Compacted {
            key: k,
            requested,
            compacted,
        } => {
            assert_eq!(k, "/basalt/v1/cluster/id");
            assert_eq!(requested, first);
            assert_eq!(compacted, last);
        }
        other => panic!("{other}"),
    }
    assert!(timeout(DEADLINE, stale.next()).await.unwrap().is_none());
    // From the compaction revision on, history is still there.
    let mut w = store.watch_key::<i32>(&key, last).await.unwrap();
    assert!(
        matches!(next(&mut w).await.unwrap(), WatchEvent::Put { value, .. } if value.value == 3)
    );
}

/// Creates `key` retrying while etcd comes back; a retry that finds its own earlier
/// write (conflict) counts as done, so nothing is written twice.
async fn create_retrying(store: &basalt_store::Store, key: &Key, value: u32) {
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
async fn watch_resumes_across_an_etcd_restart_without_losing_events() {
    let mut etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let mut w = store.watch::<u32>(&Prefix::agents(), 0).await.unwrap();
    for i in 0..3 {
        store
            .put(&Key::agent(&format!("a{i}")).unwrap(), &i)
            .await
            .unwrap();
    }
    for i in 0..3 {
        assert!(
            matches!(next(&mut w).await.unwrap(), WatchEvent::Put { value, .. } if value.value == i)
        );
    }

    etcd.kill(0).unwrap();
    etcd.restart(0).await.unwrap();
    // These land while the watch's stream is broken (it is not even polled yet).
    for i in 3..6 {
        create_retrying(&store, &Key::agent(&format!("a{i}")).unwrap(), i).await;
    }
    for i in 3..6 {
        match next(&mut w).await.unwrap() {
            WatchEvent::Put { key, value } => {
                assert_eq!(key.name(), format!("a{i}"));
                assert_eq!(value.value, i);
            }
            other => panic!("{other:?}"),
        }
    }
    // Nothing was repeated: the next event is the next write.
    store.delete(&Key::agent("a0").unwrap()).await.unwrap();
    assert!(
        matches!(next(&mut w).await.unwrap(), WatchEvent::Delete { key, .. } if key.name() == "a0")
    );
}

#[tokio::test]
async fn revoking_a_lease_deletes_its_keys_at_once() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    assert!(lease.is_alive());
    let watcher = lease.watcher();
    let key = Key::agent("leased").unwrap();
    store.put_with_lease(&key, &"x", &lease).await.unwrap();
    let in_txn = Key::agent("leased-txn").unwrap();
    store
        .txn()
        .put_with_lease(&in_txn, &"y", &lease)
        .commit()
        .await
        .unwrap();
    assert!(store.get::<String>(&key).await.unwrap().is_some());
    lease.revoke().await.unwrap();
    assert_eq!(store.get::<String>(&key).await.unwrap(), None);
    assert_eq!(store.get::<String>(&in_txn).await.unwrap(), None);
    assert_eq!(watcher.lost_reason(), Some(LossReason::Revoked));
}

#[tokio::test]
async fn keys_of_a_dead_holder_vanish_after_the_ttl() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    let key = Key::agent("ephemeral").unwrap();
    store.put_with_lease(&key, &"x", &lease).await.unwrap();
    // The holder "dies": keep-alives stop, nobody revokes.
    drop(lease);
    wait_for("the leased key to expire", DEADLINE, || async {
        store
            .get::<String>(&key)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_held_lease_outlives_its_ttl() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    let ttl = lease.ttl();
    let key = Key::agent("kept").unwrap();
    store.put_with_lease(&key, &"x", &lease).await.unwrap();
    // Poll the key for three TTLs; it must be there every time.
    let until = Instant::now() + 3 * ttl;
    wait_for("three TTLs to pass", DEADLINE, || async {
        assert!(
            store.get::<String>(&key).await.unwrap().is_some(),
            "leased key expired while held"
        );
        (Instant::now() >= until).then_some(())
    })
    .await
    .unwrap();
    assert!(lease.is_alive());
}

#[tokio::test]
async fn lease_loss_is_reported_when_revoked_elsewhere() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    let other = etcd.connect().await.unwrap();
    other
        .client()
        .clone()
        .lease_revoke(lease.id())
        .await
        .unwrap();
    let reason = timeout(DEADLINE, lease.lost()).await.unwrap();
    assert_eq!(reason, LossReason::Expired);
    assert!(!lease.is_alive());
}

#[tokio::test]
async fn lease_loss_is_reported_when_etcd_is_unreachable() {
    let mut etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let lease = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    etcd.kill(0).unwrap();
    let reason = timeout(DEADLINE, lease.lost()).await.unwrap();
    assert_eq!(reason, LossReason::Unreachable);
    // Requests fail as unavailable (not hang) while etcd is down.
    let err = store.get::<String>(&Key::cluster_id()).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        err.to_string().contains(&etcd.endpoint(0).unwrap()),
        "{err}"
    );
}
