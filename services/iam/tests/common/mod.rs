//! Shared by the integration tests: real etcd, a real IAM server, a reqwest client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use basalt_iam::keys::pem_encode;
use basalt_iam::{EtcdIamStore, IamConfig, IamServer, SeedCredential, SuperuserSeed, TokenSigner};
use basalt_store::testing::EtcdCluster;
use ring::signature::Ed25519KeyPair;
use std::future::Future;
use std::time::Duration;

pub const DEADLINE: Duration = Duration::from_secs(30);
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

pub fn new_key_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    pem_encode("PRIVATE KEY", doc.as_ref())
}

pub fn admin_config() -> IamConfig {
    IamConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        secure_cookies: true,
        superuser: Some(SuperuserSeed {
            uid: ADMIN.to_owned(),
            credential: SeedCredential::PasswordHash(
                basalt_genconf::password::hash_password(ADMIN_PASSWORD).unwrap(),
            ),
        }),
        ..IamConfig::default()
    }
}

pub struct Env {
    pub etcd: EtcdCluster,
    pub server: IamServer<EtcdIamStore>,
    pub base: String,
    pub client: reqwest::Client,
    pub key_pem: String,
}

impl Env {
    pub fn signer(&self) -> TokenSigner {
        TokenSigner::from_pkcs8_pem(&self.key_pem, "basalt-iam").unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&self, uid: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/acs/api/v1/auth/login"))
            .json(&serde_json::json!({"uid": uid, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self, uid: &str, password: &str) -> String {
        let r = self.login(uid, password).await;
        assert_eq!(r.status(), 200, "login {uid}");
        let v: serde_json::Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.token(ADMIN, ADMIN_PASSWORD).await
    }

    /// Sends `method path` with `token` and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut r = self
            .client
            .request(method, self.url(path))
            .header("Authorization", format!("token={token}"));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }
}

/// Starts etcd and an IAM with `config`; `None` (visibly skipped) without etcd.
pub async fn start(config: IamConfig) -> Option<Env> {
    let etcd = EtcdCluster::start(1).await.expect("starting etcd")?;
    let key_pem = new_key_pem();
    let signer = TokenSigner::from_pkcs8_pem(&key_pem, "basalt-iam").unwrap();
    let server = IamServer::start(EtcdIamStore::new(etcd.store()), signer, config)
        .await
        .unwrap();
    let base = format!("http://{}", server.addr());
    Some(Env {
        etcd,
        server,
        base,
        client: reqwest::Client::new(),
        key_pem,
    })
}

/// Polls `check` until it returns `Some` or the deadline passes.
pub async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
