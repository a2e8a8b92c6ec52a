//! Shared by the integration tests: real etcd, the real IAM, the real gateway over TLS
//! (certificates from a throwaway ECDSA P-256 CA), and small axum backends on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use basalt_gateway::{GatewayConfig, GatewayServer, TlsPems};
use basalt_iam::keys::pem_encode;
use basalt_iam::{EtcdIamStore, IamConfig, IamServer, SeedCredential, SuperuserSeed, TokenSigner};
use basalt_store::testing::{EtcdCluster, TestCa};
use ring::signature::Ed25519KeyPair;
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const DEADLINE: Duration = Duration::from_secs(30);
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

pub fn new_key_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    pem_encode("PRIVATE KEY", doc.as_ref())
}

/// Serves `app` on a loopback port.
pub async fn serve(app: Router) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    addr
}

/// A loopback address nothing listens on.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Echoes what it received: `{"name", "method", "path", "query", "headers"}`.
pub fn echo(name: &'static str) -> Router {
    Router::new().fallback(move |req: Request| async move {
        let headers: serde_json::Map<String, Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or_default())))
            .collect();
        axum::Json(json!({
            "name": name,
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "query": req.uri().query(),
            "headers": headers,
        }))
    })
}

/// A backend whose streams send a first chunk, then wait for `release` before the rest.
#[derive(Clone, Default)]
pub struct Streams {
    pub release: Arc<Notify>,
}

async fn stream_handler(State(s): State<Streams>, req: Request) -> Response {
    let sse = req.uri().path().ends_with("/events");
    let (first, second, ctype) = if sse {
        (
            "event: deployment_info\ndata: {\"n\":1}\n\n",
            "event: status_update_event\ndata: {\"n\":2}\n\n",
            "text/event-stream",
        )
    } else {
        // RecordIO: "<length>\n<record>".
        (
            "20\n{\"type\":\"SUBSCRIBED\"}",
            "21\n{\"type\":\"HEARTBEAT\"}",
            "application/recordio",
        )
    };
    let release = s.release.clone();
    let stream = async_stream(first, second, release);
    Response::builder()
        .header("content-type", ctype)
        .body(Body::from_stream(stream))
        .unwrap()
}

fn async_stream(
    first: &'static str,
    second: &'static str,
    release: Arc<Notify>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::unfold(0u8, move |step| {
        let release = release.clone();
        async move {
            match step {
                0 => Some((Ok(bytes::Bytes::from_static(first.as_bytes())), 1)),
                1 => {
                    release.notified().await;
                    Some((Ok(bytes::Bytes::from_static(second.as_bytes())), 2))
                }
                _ => None,
            }
        }
    })
}

/// An upgrade endpoint that echoes raw bytes after `101 Switching Protocols`.
async fn ws_echo(mut req: Request) -> Response {
    let ok = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !ok {
        return (axum::http::StatusCode::BAD_REQUEST, "no upgrade header").into_response();
    }
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            let mut io = hyper_util::rt::TokioIo::new(up);
            let (mut r, mut w) = tokio::io::split(&mut io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", "test")
        .body(Body::empty())
        .unwrap()
}

pub fn streams_backend(s: Streams) -> Router {
    Router::new()
        .route("/ws", axum::routing::get(ws_echo))
        .fallback(stream_handler)
        .with_state(s)
}

/// A fake Mesos master: `/master/state` is `state`; everything else echoes with `name`.
pub fn fake_master(name: &'static str, state: Value) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route(
            "/master/state",
            axum::routing::get(move || {
                let s = state.clone();
                async move { axum::Json((*s).clone()) }
            }),
        )
        .fallback_service(echo(name))
}

pub struct Env {
    pub etcd: EtcdCluster,
    pub iam: IamServer<EtcdIamStore>,
    pub gw: GatewayServer,
    pub ca: TestCa,
    pub key_pem: String,
    pub client: reqwest::Client,
    pub base: String,
}

pub struct Setup {
    pub etcd: EtcdCluster,
    pub iam: IamServer<EtcdIamStore>,
    pub ca: TestCa,
    pub key_pem: String,
    pub config: GatewayConfig,
}

/// etcd + IAM + a gateway config pointing at them, with TLS on loopback; `None`
/// (visibly skipped) without an etcd binary.
pub async fn setup() -> Option<Setup> {
    let etcd = EtcdCluster::start(1).await.expect("starting etcd")?;
    let key_pem = new_key_pem();
    let signer = TokenSigner::from_pkcs8_pem(&key_pem, "basalt-iam").unwrap();
    let public = signer.public_key_pem();
    let iam_config = IamConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        superuser: Some(SuperuserSeed {
            uid: ADMIN.to_owned(),
            credential: SeedCredential::PasswordHash(
                basalt_genconf::password::hash_password(ADMIN_PASSWORD).unwrap(),
            ),
        }),
        ..IamConfig::default()
    };
    let iam = IamServer::start(EtcdIamStore::new(etcd.store()), signer, iam_config)
        .await
        .unwrap();
    let ca = TestCa::new("basalt test CA").unwrap();
    let (cert, key) = ca.issue("gateway").unwrap();
    let mut config = GatewayConfig {
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: None,
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(TlsPems {
            cert_chain: cert,
            key,
        }),
        ca_pem: Some(ca.cert_pem().to_owned()),
        iam_public_key_pem: Some(public),
        state_cache_ttl: Duration::from_millis(200),
        ..GatewayConfig::default()
    };
    config.upstreams.iam = iam.addr().to_string();
    config.metadata.cluster_id = "test-cluster-id".into();
    config.metadata.public_ipv4 = "203.0.113.7".into();
    Some(Setup {
        etcd,
        iam,
        ca,
        key_pem,
        config,
    })
}

impl Setup {
    pub async fn start(self) -> Env {
        let gw = GatewayServer::start(self.config, Some(self.etcd.store()))
            .await
            .unwrap();
        let client = tls_client(&self.ca);
        let base = format!("https://localhost:{}", gw.https_addr().unwrap().port());
        Env {
            etcd: self.etcd,
            iam: self.iam,
            gw,
            ca: self.ca,
            key_pem: self.key_pem,
            client,
            base,
        }
    }
}

pub fn tls_client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn signer(&self) -> TokenSigner {
        TokenSigner::from_pkcs8_pem(&self.key_pem, "basalt-iam").unwrap()
    }

    pub async fn login(&self, uid: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/acs/api/v1/auth/login"))
            .json(&json!({"uid": uid, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self, uid: &str, password: &str) -> String {
        let r = self.login(uid, password).await;
        assert_eq!(r.status(), 200, "login {uid} through the gateway");
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.token(ADMIN, ADMIN_PASSWORD).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.header("Authorization", format!("token={t}"));
        }
        r.send().await.unwrap()
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
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

/// Asserts a DC/OS-style 401: `WWW-Authenticate: oauthjwt` and a JSON error body.
pub async fn assert_401(r: reqwest::Response, what: &str) -> Value {
    assert_eq!(r.status(), 401, "{what}");
    assert_eq!(
        r.headers().get("www-authenticate").unwrap(),
        "oauthjwt",
        "{what}"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["title"], "Unauthorized", "{what}: {v}");
    assert!(
        v["code"].as_str().unwrap().starts_with("ERR_"),
        "{what}: {v}"
    );
    v
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
