//! The gateway on the certificate, CA, IAM key and cluster id of a real genconf bundle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_gateway::{GatewayConfig, GatewayServer};
use basalt_iam::TokenSigner;
use basalt_store::testing::EtcdCluster;
use serde_json::Value;
use std::fs;
use std::time::Duration;

/// Runs the generator on a temp copy of the repo's example genconf/ and unpacks the
/// master bundle; returns (tempdir, bundle root, cluster id).
fn master_bundle() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (root, generated) = basalt_genconf::example::example_node_root(
        tmp.path(),
        basalt_genconf::bundle::Role::Master,
    )
    .unwrap();
    (tmp, root, generated.index.cluster_id)
}

#[tokio::test]
async fn serves_tls_with_the_bundle_certificate_and_checks_bundle_tokens() {
    let Some(etcd) = EtcdCluster::start(1).await.unwrap() else {
        return;
    };
    let (_tmp, root, cluster_id) = master_bundle();
    let config = GatewayConfig {
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: None,
        metrics_listen: None,
        ..GatewayConfig::default()
    }
    .with_bundle(&root)
    .unwrap();
    assert_eq!(config.metadata.cluster_id, cluster_id);
    let gw = GatewayServer::start(config, Some(etcd.store()))
        .await
        .unwrap();
    let addr = gw.https_addr().unwrap();

    let ca = fs::read(root.join("etc/tls/ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("leader.mesos", addr)
        .build()
        .unwrap();
    let base = format!("https://leader.mesos:{}", addr.port());
    let r = client
        .get(format!("{base}/dcos-metadata/dcos-version.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A token signed with the bundle's IAM key is accepted; the IAM has not created
    // any account in etcd, so the permission check refuses it (403, not 401).
    let key = fs::read_to_string(root.join("etc/iam-signing-key.pem")).unwrap();
    let token = TokenSigner::from_pkcs8_pem(&key, "basalt-iam")
        .unwrap()
        .issue("admin", Duration::from_secs(60));
    let r = client
        .get(format!("{base}/metadata"))
        .header("Authorization", format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .contains("dcos:adminrouter:ops:metadata")
    );

    // A client that does not trust the cluster CA fails the handshake.
    let stranger = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve("leader.mesos", addr)
        .build()
        .unwrap();
    assert!(
        stranger
            .get(format!("{base}/dcos-metadata/dcos-version.json"))
            .send()
            .await
            .is_err()
    );
}
