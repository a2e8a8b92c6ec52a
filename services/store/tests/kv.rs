//! Get/put/delete/list, compare-and-set and multi-key transactions against real etcd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_store::testing::EtcdCluster;
use basalt_store::{Key, MAX_TXN_OPS, Prefix, Store, StoreConfig, StoreError, TlsFiles, Versioned};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Agent {
    hostname: String,
    cpus: f64,
}

fn agent(host: &str) -> Agent {
    Agent {
        hostname: host.to_string(),
        cpus: 4.0,
    }
}

#[tokio::test]
async fn put_get_delete_round_trip_with_versions() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let key = Key::agent("a1").unwrap();

    assert_eq!(store.get::<Agent>(&key).await.unwrap(), None);
    let v1 = store.put(&key, &agent("h1")).await.unwrap();
    assert!(v1 > 0);
    assert_eq!(
        store.get::<Agent>(&key).await.unwrap(),
        Some(Versioned {
            value: agent("h1"),
            version: v1
        })
    );
    let v2 = store.put(&key, &agent("h2")).await.unwrap();
    assert!(v2 > v1, "every write gets a new, larger version");
    assert_eq!(store.get::<Agent>(&key).await.unwrap().unwrap().version, v2);
    assert_eq!(store.revision().await.unwrap(), v2);

    // The value is plain JSON under the documented full key.
    let mut raw = store.client().clone();
    let got = raw.get("/basalt/v1/master/agents/a1", None).await.unwrap();
    let text = got.kvs()[0].value_str().unwrap().to_string();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        serde_json::json!({"hostname": "h2", "cpus": 4.0})
    );

    assert!(store.delete(&key).await.unwrap());
    assert!(
        !store.delete(&key).await.unwrap(),
        "second delete finds nothing"
    );
    assert_eq!(store.get::<Agent>(&key).await.unwrap(), None);
}

#[tokio::test]
async fn put_if_version_is_compare_and_set() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let key = Key::framework("fw-1").unwrap();

    let v1 = store.put_if_version(&key, &"first", 0).await.unwrap();
    // Version 0 means "must not exist": a second create conflicts and says what it found.
    match store.create(&key, &"again").await.unwrap_err() {
        StoreError::Conflict {
            key: k,
            expected,
            found,
        } => {
            assert_eq!(k, "/basalt/v1/master/frameworks/fw-1");
            assert_eq!(expected, 0);
            assert_eq!(found, v1);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let v2 = store.put_if_version(&key, &"second", v1).await.unwrap();
    // A writer holding the stale version loses, and the value is untouched.
    let err = store.put_if_version(&key, &"stale", v1).await.unwrap_err();
    assert!(err.is_conflict());
    assert_eq!(
        err.to_string(),
        format!("conflict on /basalt/v1/master/frameworks/fw-1: expected version {v1}, found {v2}")
    );
    assert_eq!(
        store.get::<String>(&key).await.unwrap().unwrap().value,
        "second"
    );

    // Expecting a version of an absent key reports found 0.
    let absent = Key::framework("nope").unwrap();
    match store.put_if_version(&absent, &"x", 7).await.unwrap_err() {
        StoreError::Conflict { found, .. } => assert_eq!(found, 0),
        other => panic!("{other}"),
    }
    assert_eq!(store.get::<String>(&absent).await.unwrap(), None);

    // delete_if_version: stale fails, current succeeds.
    assert!(
        store
            .delete_if_version(&key, v1)
            .await
            .unwrap_err()
            .is_conflict()
    );
    store.delete_if_version(&key, v2).await.unwrap();
    assert_eq!(store.get::<String>(&key).await.unwrap(), None);
    let err = store.delete_if_version(&key, 0).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidTxn { .. }), "{err}");
}

#[tokio::test]
async fn concurrent_compare_and_set_has_one_winner() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let key = Key::cluster_id();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            store.create(&key, &format!("cluster-{i}")).await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => winners += 1,
            Err(e) => assert!(e.is_conflict(), "{e}"),
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn list_is_a_consistent_paged_snapshot() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    // More than one page (500) of agents, written 100 per transaction.
    let n = 1203;
    let mut txn = store.txn();
    for i in 0..n {
        txn = txn.put(
            &Key::agent(&format!("agent-{i:05}")).unwrap(),
            &agent(&format!("h{i}")),
        );
        if txn.len() == 100 {
            txn.commit().await.unwrap();
            txn = store.txn();
        }
    }
    txn.commit().await.unwrap();
    // Neighbours that must not show up.
    store
        .put(&Key::framework("f").unwrap(), &"fw")
        .await
        .unwrap();
    store
        .put(
            &Key::from_segments(["master", "agentsX"]).unwrap(),
            &"not an agent",
        )
        .await
        .unwrap();

    let listing = store.list::<Agent>(&Prefix::agents()).await.unwrap();
    assert_eq!(listing.items.len(), n);
    let names: Vec<String> = listing.items.iter().map(|(k, _)| k.name()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "key order");
    assert_eq!(names[0], "agent-00000");
    assert_eq!(listing.items[1202].1.value, agent("h1202"));
    assert_eq!(listing.revision, store.revision().await.unwrap());

    // A write after the listing is not in it, and has a later version.
    let later = store
        .put(&Key::agent("zzz").unwrap(), &agent("late"))
        .await
        .unwrap();
    assert!(later > listing.revision);
    assert_eq!(
        store.list_keys(&Prefix::agents()).await.unwrap().len(),
        n + 1
    );

    assert_eq!(
        store.delete_prefix(&Prefix::agents()).await.unwrap(),
        (n + 1) as u64
    );
    assert!(
        store
            .list::<Agent>(&Prefix::agents())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        store
            .get::<String>(&Key::framework("f").unwrap())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn task_prefixes_do_not_leak_between_frameworks_and_escape_ids() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    store.put(&Key::task("a", "t1").unwrap(), &1).await.unwrap();
    store
        .put(&Key::task("a", "t/2").unwrap(), &2)
        .await
        .unwrap();
    store
        .put(&Key::task("ab", "t1").unwrap(), &3)
        .await
        .unwrap();
    let a = store
        .list::<i32>(&Prefix::tasks_of("a").unwrap())
        .await
        .unwrap();
    let ids: Vec<(String, i32)> = a.items.iter().map(|(k, v)| (k.name(), v.value)).collect();
    assert_eq!(ids, vec![("t/2".to_string(), 2), ("t1".to_string(), 1)]);
    let all = store.list::<i32>(&Prefix::tasks()).await.unwrap();
    assert_eq!(all.items.len(), 3);
    let (key, _) = &all.items[2];
    assert_eq!(
        key.strip_prefix(&Prefix::tasks()).unwrap(),
        vec!["ab", "t1"]
    );

    // Marathon app ids carry slashes; they survive the round trip through etcd.
    store
        .put(&Key::marathon_app("/prod/web").unwrap(), &"app")
        .await
        .unwrap();
    let apps = store
        .list::<String>(&Prefix::marathon_apps())
        .await
        .unwrap();
    assert_eq!(apps.items[0].0.name(), "/prod/web");
}

#[tokio::test]
async fn decode_errors_name_the_key_and_field() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let key = Key::agent("bad").unwrap();
    store
        .put(&key, &serde_json::json!({"hostname": "h", "cpus": "four"}))
        .await
        .unwrap();
    let err = store.get::<Agent>(&key).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Decode { .. }), "{text}");
    assert!(text.contains("/basalt/v1/master/agents/bad"), "{text}");
    assert!(text.contains("invalid type: string \"four\""), "{text}");
    // A listing with one bad item reports it rather than dropping it silently.
    let err = store.list::<Agent>(&Prefix::agents()).await.unwrap_err();
    assert!(err.to_string().contains("master/agents/bad"), "{err}");

    // Raw non-JSON bytes written by someone else.
    let mut raw = store.client().clone();
    raw.put("/basalt/v1/master/agents/raw", "not json", None)
        .await
        .unwrap();
    let err = store
        .get::<Agent>(&Key::agent("raw").unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("master/agents/raw"), "{err}");
}

#[tokio::test]
async fn multi_key_txn_applies_all_or_nothing() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let fw = Key::framework("fw").unwrap();
    let t1 = Key::task("fw", "t1").unwrap();
    let t2 = Key::task("fw", "t2").unwrap();
    let old = Key::task("fw", "old").unwrap();
    let fw_v = store.put(&fw, &"framework v1").await.unwrap();
    let old_v = store.put(&old, &"finished").await.unwrap();

    // One stale condition: nothing is written, not even the unconditional parts.
    let err = store
        .txn()
        .put_if_version(&fw, &"framework v2", fw_v)
        .put_if_version(&t1, &"staging", 0)
        .put(&t2, &"staging")
        .delete(&old)
        .require_version(&old, old_v + 1000)
        .commit()
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            key,
            expected,
            found,
        } => {
            assert_eq!(key, "/basalt/v1/master/tasks/fw/old");
            assert_eq!(expected, old_v + 1000);
            assert_eq!(found, old_v);
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        store.get::<String>(&fw).await.unwrap().unwrap().value,
        "framework v1"
    );
    assert!(store.get::<String>(&t1).await.unwrap().is_none());
    assert!(store.get::<String>(&t2).await.unwrap().is_none());
    assert!(store.get::<String>(&old).await.unwrap().is_some());

    // All conditions hold: everything lands at one revision.
    let rev = store
        .txn()
        .put_if_version(&fw, &"framework v2", fw_v)
        .put_if_version(&t1, &"staging", 0)
        .put(&t2, &"staging")
        .delete_if_version(&old, old_v)
        .commit()
        .await
        .unwrap();
    assert_eq!(
        store.get::<String>(&fw).await.unwrap().unwrap().version,
        rev
    );
    assert_eq!(
        store.get::<String>(&t1).await.unwrap().unwrap().version,
        rev
    );
    assert_eq!(
        store.get::<String>(&t2).await.unwrap().unwrap().version,
        rev
    );
    assert!(store.get::<String>(&old).await.unwrap().is_none());

    // delete_prefix inside a txn.
    store
        .txn()
        .require_version(&fw, rev)
        .delete_prefix(&Prefix::tasks_of("fw").unwrap())
        .commit()
        .await
        .unwrap();
    assert!(store.list_keys(&Prefix::tasks()).await.unwrap().is_empty());
}

#[tokio::test]
async fn invalid_transactions_are_refused_before_sending() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let k = Key::agent("dup").unwrap();
    let err = store
        .txn()
        .put(&k, &1)
        .put(&k, &2)
        .commit()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTxn { .. }), "{err}");
    assert!(err.to_string().contains("master/agents/dup"), "{err}");

    let mut txn = store.txn();
    for i in 0..=MAX_TXN_OPS {
        txn = txn.put(&Key::agent(&format!("a{i}")).unwrap(), &i);
    }
    let err = txn.commit().await.unwrap_err();
    assert!(err.to_string().contains("129 operations"), "{err}");
    assert!(store.list_keys(&Prefix::agents()).await.unwrap().is_empty());

    // A value that cannot be JSON (map with non-string keys) names its key.
    let mut bad = std::collections::HashMap::new();
    bad.insert((1, 2), "x");
    let err = store
        .txn()
        .put(&Key::agent("enc").unwrap(), &bad)
        .commit()
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Encode { .. }), "{err}");
    assert!(err.to_string().contains("master/agents/enc"), "{err}");
    let err = store
        .put(&Key::agent("enc").unwrap(), &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Encode { .. }), "{err}");

    // An empty txn just reports the current revision.
    assert_eq!(
        store.txn().commit().await.unwrap(),
        store.revision().await.unwrap()
    );
}

#[tokio::test]
async fn prefixes_isolate_stores_sharing_one_etcd() {
    let etcd = etcd_or_skip!(EtcdCluster::start(1));
    let a = etcd.store();
    let b = Store::connect(etcd.config().with_prefix("/other/v1/"))
        .await
        .unwrap();
    let key = Key::cluster_id();
    a.put(&key, &"A").await.unwrap();
    assert_eq!(b.get::<String>(&key).await.unwrap(), None);
    b.put(&key, &"B").await.unwrap();
    assert_eq!(a.get::<String>(&key).await.unwrap().unwrap().value, "A");
    assert_eq!(b.full_key(&key), "/other/v1/cluster/id");
}

#[tokio::test]
async fn connect_errors_name_endpoint_field_or_file() {
    // No etcd needed for configuration errors.
    let empty: [&str; 0] = [];
    let err = Store::connect(StoreConfig::new(empty)).await.unwrap_err();
    assert!(err.to_string().contains("endpoints"), "{err}");

    let missing = TlsFiles {
        ca: "/nonexistent/ca.crt".into(),
        cert: "/nonexistent/c.crt".into(),
        key: "/nonexistent/c.key".into(),
    };
    let err = Store::connect(StoreConfig::new(["127.0.0.1:1"]).with_tls(missing))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::TlsFile { field: "ca", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");

    // Nothing listens on this port: unavailable, naming the endpoint, within the dial
    // timeout.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = StoreConfig::new([format!("127.0.0.1:{port}")]);
    config.dial_timeout = Duration::from_millis(500);
    let err = Store::connect(config).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("http://127.0.0.1:{port}")),
        "{err}"
    );
}
