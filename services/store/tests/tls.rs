//! Mutual TLS to etcd with generated ECDSA P-256 certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_store::testing::{EtcdCluster, TestCa};
use basalt_store::{Election, Key, Prefix, Store, StoreConfig, StoreError, TlsFiles, WatchEvent};
use common::DEADLINE;
use futures::StreamExt;
use std::time::Duration;

#[tokio::test]
async fn the_store_works_over_mutual_tls() {
    let etcd = etcd_or_skip!(EtcdCluster::start_tls(1));
    assert!(etcd.endpoints()[0].starts_with("https://127.0.0.1:"));
    let store = Store::connect(etcd.config()).await.unwrap();
    let mut w = store.watch::<String>(&Prefix::agents(), 0).await.unwrap();
    let key = Key::agent("tls").unwrap();
    let v = store.put(&key, &"secure".to_string()).await.unwrap();
    assert_eq!(store.get::<String>(&key).await.unwrap().unwrap().version, v);
    let ev = tokio::time::timeout(DEADLINE, w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, WatchEvent::Put { value, .. } if value.value == "secure"));
    let lead = Election::campaign(&store, "master", "m:5050", Duration::from_secs(2))
        .await
        .unwrap();
    assert!(lead.is_leader());

    // Scheme-less endpoints follow the TLS setting.
    let mut config = etcd.config();
    config.endpoints = vec![
        etcd.endpoint(0)
            .unwrap()
            .trim_start_matches("https://")
            .to_string(),
    ];
    let bare = Store::connect(config).await.unwrap();
    assert!(bare.get::<String>(&key).await.unwrap().is_some());
}

fn short(mut config: StoreConfig) -> StoreConfig {
    config.dial_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(2);
    config
}

#[tokio::test]
async fn clients_without_a_trusted_certificate_are_refused() {
    let etcd = etcd_or_skip!(EtcdCluster::start_tls(1));
    let good = etcd.tls_files().unwrap().clone();
    let endpoint = etcd.endpoint(0).unwrap();

    // Plain HTTP to the TLS port.
    let plain = endpoint.replace("https://", "http://");
    let err = Store::connect(short(StoreConfig::new([plain.clone()])))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains(&plain), "{err}");

    // A client certificate from a CA etcd does not trust.
    let rogue = TestCa::new("rogue CA").unwrap();
    let rogue_files = rogue.write_files(etcd.dir(), "rogue").unwrap();
    let tls = TlsFiles {
        ca: good.ca.clone(),
        cert: rogue_files.cert.clone(),
        key: rogue_files.key.clone(),
    };
    let err = Store::connect(short(StoreConfig::new([endpoint.clone()]).with_tls(tls)))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");

    // A server certificate we do not trust (wrong CA file).
    let tls = TlsFiles {
        ca: rogue_files.ca.clone(),
        cert: good.cert.clone(),
        key: good.key.clone(),
    };
    let err = Store::connect(short(StoreConfig::new([endpoint.clone()]).with_tls(tls)))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");

    // TLS configured but an http:// endpoint: a configuration error naming the field.
    let err = Store::connect(StoreConfig::new([plain]).with_tls(good.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidConfig {
                field: "endpoints",
                ..
            }
        ),
        "{err}"
    );

    // A key file that is not a key.
    let junk = etcd.dir().join("junk.key");
    std::fs::write(&junk, "not a key").unwrap();
    let tls = TlsFiles {
        key: junk,
        ..good.clone()
    };
    let err = Store::connect(short(StoreConfig::new([endpoint.clone()]).with_tls(tls)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidConfig {
                field: "tls.key",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("junk.key"), "{err}");

    // A PEM key that does not match the certificate.
    let other_key = etcd.dir().join("other.key");
    std::fs::write(&other_key, rogue.issue("x").unwrap().1).unwrap();
    let tls = TlsFiles {
        key: other_key,
        ..good.clone()
    };
    let err = Store::connect(short(StoreConfig::new([endpoint]).with_tls(tls)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidConfig { field: "tls", .. }),
        "{err}"
    );
}
