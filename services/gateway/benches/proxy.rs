//! Requests/s through the gateway with token checks to a trivial loopback backend, and
//! the latency the gateway adds, against a direct run. The gateway runs on a
//! single-threaded runtime (one core); the backend and the load generator each get
//! their own thread too.
//!
//! `cargo bench -p basalt-gateway --bench proxy` (needs `etcd` on PATH: the gateway's
//! permission and revocation mirrors read it). Env: `BENCH_REQUESTS` (default 20000),
//! `BENCH_CONCURRENCY` (default 8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_gateway::{GatewayConfig, GatewayServer};
use basalt_iam::keys::pem_encode;
use basalt_iam::{EtcdIamStore, IamConfig, IamServer, SeedCredential, SuperuserSeed, TokenSigner};
use basalt_store::testing::EtcdCluster;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(
    url: &str,
    token: Option<&str>,
    ca_pem: &str,
    total: usize,
    concurrency: usize,
) -> Run {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let client = Arc::new(client);
    let uri: http::Uri = url.parse().unwrap();
    let auth = token.map(|t| format!("token={t}"));
    let one = {
        let client = client.clone();
        let uri = uri.clone();
        let auth = auth.clone();
        move || {
            let client = client.clone();
            let uri = uri.clone();
            let auth = auth.clone();
            async move {
                let mut req = http::Request::get(uri);
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                let t = Instant::now();
                let resp = client
                    .request(req.body(Empty::new()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
                t.elapsed()
            }
        }
    };
    // Warm-up: one connection per client (TLS handshakes), the token cache.
    let warm: Vec<_> = (0..concurrency)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    one().await;
                }
            })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    let per_task = total / concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let one = one.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                lat.push(one().await);
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let took = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Run {
        rps: all.len() as f64 / took.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn main() {
    let total = env_usize("BENCH_REQUESTS", 20_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 8).max(1);

    // Infrastructure (etcd, IAM, backend) on its own runtime thread.
    let infra = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let Some(etcd) = infra.block_on(EtcdCluster::start(1)).unwrap() else {
        println!("proxy bench skipped: no etcd binary");
        return;
    };
    let rng = ring::rand::SystemRandom::new();
    let key = pem_encode(
        "PRIVATE KEY",
        ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .unwrap()
            .as_ref(),
    );
    let signer = TokenSigner::from_pkcs8_pem(&key, "basalt-iam").unwrap();
    let public = signer.public_key_pem();
    let token = signer.issue("admin", Duration::from_secs(3600));
    let iam = infra
        .block_on(IamServer::start(
            EtcdIamStore::new(etcd.store()),
            signer,
            IamConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                superuser: Some(SuperuserSeed {
                    uid: "admin".into(),
                    credential: SeedCredential::PasswordHash(
                        basalt_genconf::password::hash_password("bench-password").unwrap(),
                    ),
                }),
                ..IamConfig::default()
            },
        ))
        .unwrap();
    let backend: SocketAddr = infra.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = axum::Router::new().fallback(|| async { "ok" });
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        addr
    });

    // The gateway on one single-threaded runtime: one core.
    let ca = basalt_store::testing::TestCa::new("bench CA").unwrap();
    let (cert, cert_key) = ca.issue("gateway").unwrap();
    let ca_pem = ca.cert_pem().to_owned();
    let mut config = GatewayConfig {
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(basalt_gateway::TlsPems {
            cert_chain: cert,
            key: cert_key,
        }),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        redirect_http: false,
        metrics_listen: None,
        iam_public_key_pem: Some(public),
        ..GatewayConfig::default()
    };
    config.upstreams.cosmos = backend.to_string();
    config.upstreams.iam = iam.addr().to_string();
    let etcd_config = etcd.config();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let store = basalt_store::Store::connect(etcd_config).await.unwrap();
            let gw = GatewayServer::start(config, Some(store)).await.unwrap();
            tx.send((gw.http_addr().unwrap(), gw.https_addr().unwrap()))
                .unwrap();
            gw.wait().await;
        });
    });
    let (gw, gw_tls) = rx.recv().unwrap();

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let direct = client.block_on(load(
        &format!("http://{backend}/package/list"),
        None,
        &ca_pem,
        total,
        concurrency,
    ));
    let via = client.block_on(load(
        &format!("http://{gw}/package/list"),
        Some(&token),
        &ca_pem,
        total,
        concurrency,
    ));
    let via_tls = client.block_on(load(
        &format!("https://localhost:{}/package/list", gw_tls.port()),
        Some(&token),
        &ca_pem,
        total,
        concurrency,
    ));

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "gateway proxy bench: {total} GETs, {concurrency} concurrent keep-alive clients, loopback, gateway on 1 core (current-thread runtime), token check (cached Ed25519) + permission check on every request"
    );
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "", "req/s", "p50 ms", "p99 ms"
    );
    println!(
        "{:<28} {:>12.0} {:>10.3} {:>10.3}",
        "direct to backend",
        direct.rps,
        ms(direct.p50),
        ms(direct.p99)
    );
    println!(
        "{:<28} {:>12.0} {:>10.3} {:>10.3}",
        "through gateway (auth on)",
        via.rps,
        ms(via.p50),
        ms(via.p99)
    );
    println!(
        "{:<28} {:>12.0} {:>10.3} {:>10.3}",
        "through gateway, TLS",
        via_tls.rps,
        ms(via_tls.p50),
        ms(via_tls.p99)
    );
    println!(
        "added p99: {:.3} ms (TLS: {:.3} ms) (target <= 1 ms); gateway {:.0} req/s on one core (target >= 30000; anchor NGINX ~74000 req/s per core serving small files)",
        ms(via.p99.saturating_sub(direct.p99)),
        ms(via_tls.p99.saturating_sub(direct.p99)),
        via.rps
    );
    drop(iam);
    drop(etcd);
}
