//! Leader election: one leader among candidates, hand-over on resign and on death,
//! loss notifications, fencing of a deposed leader's writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_store::testing::{EtcdCluster, wait_for};
use basalt_store::{Election, Key, LeadershipLost, LossReason, Prefix, Store, StoreError};
use common::DEADLINE;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

const TTL: Duration = Duration::from_secs(1);

/// Starts `n` candidates for "master", each on its own connection; elected ones report
/// on the channel.
async fn candidates(
    etcd: &EtcdCluster,
    n: usize,
) -> (
    mpsc::UnboundedReceiver<basalt_store::Leadership>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for i in 0..n {
        let store = etcd.connect().await.unwrap();
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            let leadership = Election::campaign(&store, "master", &format!("10.0.0.{i}:5050"), TTL)
                .await
                .unwrap();
            let _ = tx.send(leadership);
        }));
    }
    (rx, handles)
}

async fn candidate_count(store: &Store) -> usize {
    store
        .list_keys(&Prefix::leader("master").unwrap())
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn three_candidates_one_leader_and_orderly_hand_over() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    assert_eq!(Election::leader(&store, "master").await.unwrap(), None);
    let mut observer = Election::observe(&store, "master").await.unwrap();
    assert_eq!(observer.current(), None);

    let (mut elected, _handles) = candidates(&etcd, 3).await;
    let first = timeout(DEADLINE, elected.recv()).await.unwrap().unwrap();
    // Every candidate has registered before we check that only one leads.
    wait_for("three candidate keys", DEADLINE, || async {
        (candidate_count(&store).await == 3).then_some(())
    })
    .await
    .unwrap();
    assert!(elected.try_recv().is_err(), "a second leader was elected");
    assert!(first.is_leader());
    let leader = Election::leader(&store, "master").await.unwrap().unwrap();
    assert_eq!(leader.address, first.address());
    assert_eq!(leader.revision, first.revision());
    assert_eq!(format!("{:016x}", first.lease_id()), leader.candidate);
    // The observer follows (it may see the leader appear a moment after).
    wait_for("observer to see the leader", DEADLINE, || {
        let cur = observer.current();
        let want = first.address().to_string();
        async move { (cur.map(|l| l.address) == Some(want)).then_some(()) }
    })
    .await
    .unwrap();

    // Resigning hands over to exactly one of the two others.
    let first_address = first.address().to_string();
    let watcher = first.watcher();
    first.resign().await.unwrap();
    assert!(!watcher.is_leader());
    let second = timeout(DEADLINE, elected.recv()).await.unwrap().unwrap();
    assert_ne!(second.address(), first_address);
    assert!(
        second.revision() > leader.revision,
        "a new term has a larger fencing token"
    );
    assert_eq!(
        Election::leader(&store, "master")
            .await
            .unwrap()
            .unwrap()
            .address,
        second.address()
    );
    let seen = timeout(DEADLINE, async {
        loop {
            if let Some(l) = observer.changed().await
                && l.address == second.address()
            {
                return l;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(seen.revision, second.revision());
    assert_eq!(candidate_count(&store).await, 2);
    assert!(elected.try_recv().is_err());

    // A leader that dies without resigning (keep-alives stop) is replaced after its TTL.
    let second_address = second.address().to_string();
    drop(second);
    let third = timeout(DEADLINE, elected.recv()).await.unwrap().unwrap();
    assert_ne!(third.address(), second_address);
    assert_ne!(third.address(), first_address);
    assert_eq!(candidate_count(&store).await, 1);
}

#[tokio::test]
async fn leadership_loss_is_reported_when_the_key_is_deleted_and_writes_are_fenced() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let leadership = Election::campaign(&store, "marathon", "m1:8080", TTL)
        .await
        .unwrap();
    let fenced = Key::marathon_app("/web").unwrap();

    // While leading, guarded writes pass.
    store
        .txn()
        .require_leadership(&leadership)
        .put(&fenced, &"v1")
        .commit()
        .await
        .unwrap();

    // An operator deletes the election key: the holder learns it lost leadership.
    let mut watcher = leadership.watcher();
    assert!(store.delete(leadership.key()).await.unwrap());
    let reason = timeout(DEADLINE, watcher.lost()).await.unwrap();
    assert_eq!(reason, LeadershipLost::KeyDeleted);
    assert!(!leadership.is_leader());

    // Its late writes are refused and change nothing.
    let err = store
        .txn()
        .require_leadership(&leadership)
        .put(&fenced, &"v2")
        .commit()
        .await
        .unwrap_err();
    match &err {
        StoreError::NotLeader { service, key } => {
            assert_eq!(service, "marathon");
            assert!(key.starts_with("/basalt/v1/leader/marathon/"), "{key}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        store.get::<String>(&fenced).await.unwrap().unwrap().value,
        "v1"
    );

    // A new campaign wins, and its guard works while the old one still fails.
    let next = Election::campaign(&store, "marathon", "m2:8080", TTL)
        .await
        .unwrap();
    store
        .txn()
        .require_leadership(&next)
        .put(&fenced, &"v3")
        .commit()
        .await
        .unwrap();
    assert!(matches!(
        store
            .txn()
            .require_leadership(&leadership)
            .put(&fenced, &"v4")
            .commit()
            .await,
        Err(StoreError::NotLeader { .. })
    ));
}

#[tokio::test]
async fn leadership_is_lost_when_etcd_is_unreachable() {
    let mut etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let leadership = Election::campaign(&store, "dns", "d1:53", TTL)
        .await
        .unwrap();
    etcd.kill(0).unwrap();
    let reason = timeout(DEADLINE, leadership.lost()).await.unwrap();
    assert_eq!(reason, LeadershipLost::Lease(LossReason::Unreachable));
}

#[tokio::test]
async fn an_abandoned_campaign_withdraws_its_candidate_key() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let _leader = Election::campaign(&store, "master", "a:1", Duration::from_secs(30))
        .await
        .unwrap();
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            Election::campaign(&store, "master", "b:1", Duration::from_secs(30)).await
        })
    };
    wait_for("the second candidate to register", DEADLINE, || async {
        (candidate_count(&store).await == 2).then_some(())
    })
    .await
    .unwrap();
    // Give up (the lease TTL is 30 s, so only the revoke can remove the key in time).
    waiting.abort();
    wait_for("the abandoned candidate key to go", DEADLINE, || async {
        (candidate_count(&store).await == 1).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        Election::leader(&store, "master")
            .await
            .unwrap()
            .unwrap()
            .address,
        "a:1"
    );
}

#[tokio::test]
async fn elections_reject_bad_input() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let err = Election::campaign(&store, "", "a:1", TTL)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
    let err = Election::campaign(&store, "master", "", TTL)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("election address"), "{err}");
    assert!(Election::leader(&store, "").await.is_err());
    // Services are independent elections.
    let m = Election::campaign(&store, "master", "m:1", TTL)
        .await
        .unwrap();
    let d = Election::campaign(&store, "dns", "d:1", TTL).await.unwrap();
    assert!(m.is_leader() && d.is_leader());
    assert_eq!(
        Election::leader(&store, "dns")
            .await
            .unwrap()
            .unwrap()
            .address,
        "d:1"
    );
}
