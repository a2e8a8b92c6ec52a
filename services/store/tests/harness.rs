//! The test harness itself: ports, members, kill/restart, cleanup on drop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_store::testing::{EtcdCluster, HarnessError};
use basalt_store::{Key, StoreConfig};
use std::net::TcpStream;

fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn three_members_on_distinct_loopback_ports_form_one_cluster() {
    let etcd = etcd_or_skip!(EtcdCluster::start(3));
    let endpoints = etcd.endpoints();
    assert_eq!(endpoints.len(), 3);
    assert_eq!(etcd.len(), 3);
    let mut ports: Vec<u16> = endpoints.iter().map(|e| port_of(e)).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    assert!(endpoints.iter().all(|e| e.starts_with("http://127.0.0.1:")));
    let members = etcd.store().client().member_list().await.unwrap();
    assert_eq!(members.members().len(), 3);
    // Each member answers on its own.
    for i in 0..3 {
        let one = basalt_store::Store::connect(StoreConfig::new([etcd.endpoint(i).unwrap()]))
            .await
            .unwrap();
        one.revision().await.unwrap();
    }
}

#[tokio::test]
async fn kill_restart_and_drop_clean_up() {
    let mut etcd = etcd_or_skip!(EtcdCluster::start(1));
    let store = etcd.store();
    let port = port_of(&etcd.endpoint(0).unwrap());
    let dir = etcd.dir().to_path_buf();
    assert!(dir.join("m0.etcd").is_dir());
    store.put(&Key::cluster_id(), &"kept").await.unwrap();

    assert!(etcd.is_running(0));
    etcd.kill(0).unwrap();
    assert!(!etcd.is_running(0));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "killed member still listens"
    );
    // Data survives a restart on the same port.
    etcd.restart(0).await.unwrap();
    assert!(etcd.is_running(0));
    let again = etcd.connect().await.unwrap();
    assert_eq!(
        again
            .get::<String>(&Key::cluster_id())
            .await
            .unwrap()
            .unwrap()
            .value,
        "kept"
    );

    assert!(matches!(
        etcd.kill(5),
        Err(HarnessError::NoSuchMember {
            index: 5,
            members: 1
        })
    ));
    assert!(etcd.endpoint(1).is_err());

    drop(etcd);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "etcd outlived the harness"
    );
    assert!(!dir.exists(), "temp dir left behind");
}
