//! `/ca/dcos-ca.crt`: the cluster CA, served without a token so that a client with no
//! trust yet (`basalt cluster setup`, `dcos cluster setup`) can fetch and pin it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[tokio::test]
async fn ca_certificate_is_served_without_a_token() {
    let Some(s) = setup().await else {
        eprintln!("SKIPPED ca_certificate_is_served_without_a_token: etcd is not installed");
        return;
    };
    let env = s.start().await;
    let r = env.get("/ca/dcos-ca.crt", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("content-type").unwrap(),
        "application/x-x509-ca-cert"
    );
    let body = r.text().await.unwrap();
    assert_eq!(body, env.ca.cert_pem(), "the configured cluster CA");
    // Only the exact path.
    let admin = env.admin().await;
    assert_eq!(
        env.get("/ca/dcos-ca.crt/x", Some(&admin)).await.status(),
        404
    );
}

#[tokio::test]
async fn without_a_ca_the_answer_is_a_clear_404() {
    let Some(mut s) = setup().await else {
        eprintln!("SKIPPED without_a_ca_the_answer_is_a_clear_404: etcd is not installed");
        return;
    };
    s.config.ca_pem = None;
    let env = s.start().await;
    let r = env.get("/ca/dcos-ca.crt", None).await;
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["description"].as_str().unwrap().contains("no cluster CA"),
        "{v}"
    );
}
