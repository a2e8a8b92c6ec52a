//! The gateway end to end: real TLS, real etcd, the real IAM, loopback backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_gateway::{GatewayConfig, GatewayServer, Role};
use basalt_store::Election;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

macro_rules! setup_or_skip {
    () => {
        match setup().await {
            Some(s) => s,
            None => return,
        }
    };
}

async fn json_ok(r: reqwest::Response, want: u16) -> Value {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, want, "body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn login_token_permissions_and_cookie() {
    let mut s = setup_or_skip!();
    let cosmos = serve(echo("cosmos")).await;
    s.config.upstreams.cosmos = cosmos.to_string();
    let env = s.start().await;

    // Login through the gateway (open route) → token → a protected route.
    let admin = env.admin().await;
    let v = json_ok(env.get("/package/list?x=1", Some(&admin)).await, 200).await;
    assert_eq!(v["name"], "cosmos");
    assert_eq!(v["path"], "/package/list");
    assert_eq!(v["query"], "x=1");
    let h = &v["headers"];
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(
        h["x-forwarded-host"]
            .as_str()
            .unwrap()
            .starts_with("localhost:")
    );
    assert_eq!(h["x-request-id"].as_str().unwrap().len(), 36);

    // An incoming request id is kept, and returned.
    let r = env
        .client
        .get(env.url("/package/list"))
        .header("Authorization", format!("Bearer {admin}"))
        .header("X-Request-Id", "req-123")
        .header("X-Forwarded-For", "198.51.100.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers().get("x-request-id").unwrap(), "req-123");
    let v = json_ok(r, 200).await;
    assert_eq!(v["headers"]["x-request-id"], "req-123");
    assert_eq!(v["headers"]["x-forwarded-for"], "198.51.100.9, 127.0.0.1");

    // No token → 401 oauthjwt.
    let v = assert_401(env.get("/package/list", None).await, "no token").await;
    assert_eq!(v["code"], "ERR_MISSING_AUTH_TOKEN");

    // A user without the permission → 403; granted → 200.
    json_ok(
        env.call(
            Method::PUT,
            "/acs/api/v1/users/alice",
            &admin,
            Some(json!({"password": "alice-password"})),
        )
        .await,
        201,
    )
    .await;
    let alice = env.token("alice", "alice-password").await;
    let r = env.get("/package/list", Some(&alice)).await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ERR_FORBIDDEN");
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .contains("dcos:adminrouter:package")
    );
    // alice cannot manage the IAM either (dcos:adminrouter:acs).
    assert_eq!(
        env.get("/acs/api/v1/users", Some(&alice)).await.status(),
        403
    );
    json_ok(
        env.call(
            Method::PUT,
            "/acs/api/v1/acls/dcos:adminrouter:package",
            &admin,
            Some(json!({"description": "Cosmos"})),
        )
        .await,
        201,
    )
    .await;
    // `read` is not enough: adminrouter resources need `full`.
    let r = env
        .call(
            Method::PUT,
            "/acs/api/v1/acls/dcos:adminrouter:package/users/alice/read",
            &admin,
            None,
        )
        .await;
    assert!(r.status().is_success(), "grant read: {}", r.status());
    let r = env
        .call(
            Method::PUT,
            "/acs/api/v1/acls/dcos:adminrouter:package/users/alice/full",
            &admin,
            None,
        )
        .await;
    assert!(r.status().is_success(), "grant full: {}", r.status());
    poll("alice allowed on /package", || async {
        (env.get("/package/list", Some(&alice)).await.status() == 200).then_some(())
    })
    .await;
    // Still not on /mesos.
    assert_eq!(
        env.get("/mesos/master/state", Some(&alice)).await.status(),
        403
    );

    // Cookie flow: the login sets the cookie, the cookie authenticates, the backend
    // never sees it (it gets `Authorization: token=` instead), other cookies pass.
    let r = env.login("alice", "alice-password").await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("dcos-acs-auth-cookie="))
        .expect("login sets dcos-acs-auth-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = env
        .client
        .get(env.url("/package/list"))
        .header(
            "Cookie",
            format!("theme=dark; {cookie}; dcos-acs-info-cookie=e30"),
        )
        .send()
        .await
        .unwrap();
    let v = json_ok(r, 200).await;
    assert_eq!(v["headers"]["cookie"], "theme=dark");
    let token = cookie.trim_start_matches("dcos-acs-auth-cookie=");
    assert_eq!(v["headers"]["authorization"], format!("token={token}"));
    // A header token is forwarded as given.
    let v = json_ok(env.get("/package/list", Some(&alice)).await, 200).await;
    assert_eq!(v["headers"]["authorization"], format!("token={alice}"));

    // Metrics count the traffic, 401 and 403 included.
    let m = env
        .client
        .get(format!("http://{}/metrics", env.gw.metrics_addr().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("basalt_gateway_requests_total{route=\"/package\",code=\"2xx\"}"));
    let count = |name: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    assert!(count("basalt_gateway_unauthorized_total") >= 1);
    assert!(count("basalt_gateway_forbidden_total") >= 2);
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let mut s = setup_or_skip!();
    s.config.upstreams.cosmos = serve(echo("cosmos")).await.to_string();
    let env = s.start().await;
    let admin = env.admin().await;
    assert_eq!(env.get("/package/x", Some(&admin)).await.status(), 200);

    // Expired (signed by the cluster key).
    let now = basalt_iam::jwt::now_unix();
    let expired = env.signer().sign(ADMIN, now - 7200, now - 3600);
    let v = assert_401(env.get("/package/x", Some(&expired)).await, "expired").await;
    assert_eq!(v["code"], "ERR_EXPIRED_AUTH_TOKEN");

    // Tampered: payload changed, signature kept.
    let parts: Vec<&str> = admin.split('.').collect();
    let forged_payload = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        claims["uid"] = json!("mallory");
        b64.encode(serde_json::to_vec(&claims).unwrap())
    };
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let v = assert_401(env.get("/package/x", Some(&tampered)).await, "tampered").await;
    assert_eq!(v["code"], "ERR_INVALID_AUTH_TOKEN");

    // Another cluster's key.
    let other = basalt_iam::TokenSigner::from_pkcs8_pem(&new_key_pem(), "basalt-iam")
        .unwrap()
        .issue(ADMIN, Duration::from_secs(600));
    assert_401(env.get("/package/x", Some(&other)).await, "other cluster").await;

    // Garbage, and a bad cookie.
    assert_401(env.get("/package/x", Some("not-a-jwt")).await, "garbage").await;
    let r = env
        .client
        .get(env.url("/package/x"))
        .header("Cookie", "dcos-acs-auth-cookie=abc.def.ghi")
        .send()
        .await
        .unwrap();
    assert_401(r, "bad cookie").await;

    // Logged out → revoked → 401 once the mirror has it.
    let r = env
        .client
        .post(env.url("/acs/api/v1/auth/logout"))
        .header("Authorization", format!("token={admin}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "logout: {}", r.status());
    poll("revoked token refused", || async {
        (env.get("/package/x", Some(&admin)).await.status() == 401).then_some(())
    })
    .await;
    let v = assert_401(env.get("/package/x", Some(&admin)).await, "revoked").await;
    assert_eq!(v["code"], "ERR_REVOKED_AUTH_TOKEN");
}

#[tokio::test]
async fn streams_flow_incrementally_and_upgrades_pass() {
    let mut s = setup_or_skip!();
    let streams = Streams::default();
    let backend = serve(streams_backend(streams.clone())).await;
    // Marathon SSE via /service/marathon, the v1 API stream via /mesos.
    s.config.upstreams.marathon = backend.to_string();
    let leader_store = s.etcd.store();
    let _lead = Election::campaign(
        &leader_store,
        "master",
        &backend.to_string(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let env = s.start().await;
    let admin = env.admin().await;

    for (path, first, second) in [
        (
            "/mesos/api/v1/scheduler",
            "20\n{\"type\":\"SUBSCRIBED\"}",
            "21\n{\"type\":\"HEARTBEAT\"}",
        ),
        (
            "/service/marathon/v2/events",
            "event: deployment_info\ndata: {\"n\":1}\n\n",
            "event: status_update_event\ndata: {\"n\":2}\n\n",
        ),
    ] {
        let mut r = poll(&format!("{path} answers"), || async {
            let r = env.get(path, Some(&admin)).await;
            (r.status() == 200).then_some(r)
        })
        .await;
        // The first chunk arrives while the backend is still waiting to send the second.
        let mut got = Vec::new();
        while got.len() < first.len() {
            let chunk = tokio::time::timeout(DEADLINE, r.chunk())
                .await
                .expect("first chunk before the stream ends")
                .unwrap()
                .expect("stream open");
            got.extend_from_slice(&chunk);
        }
        assert_eq!(String::from_utf8_lossy(&got), first, "{path}");
        streams.release.notify_one();
        let rest = tokio::time::timeout(DEADLINE, r.bytes())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&rest), second, "{path}");
    }

    // A websocket handshake upgrades through the proxy, then bytes echo both ways.
    let r = env
        .client
        .get(env.url("/service/marathon/ws"))
        .header("Authorization", format!("token={admin}"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 101);
    assert_eq!(r.headers().get("upgrade").unwrap(), "websocket");
    let mut up = r.upgrade().await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for msg in [&b"ping"[..], b"second message"] {
        up.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(DEADLINE, up.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg);
    }
}

fn master_state(
    web: std::net::SocketAddr,
    ui: std::net::SocketAddr,
    agent: std::net::SocketAddr,
) -> Value {
    json!({
        "slaves": [
            {"id": "S1", "hostname": "127.0.0.1", "port": agent.port()},
            {"id": "S2", "hostname": "127.0.0.1", "pid": format!("slave(1)@127.0.0.1:{}", web.port())}
        ],
        "frameworks": [
            {"id": "F1", "name": "marathon", "webui_url": "", "tasks": [
                {"id": "web.1", "state": "TASK_RUNNING", "slave_id": "S2",
                 "resources": {"ports": format!("[1-1, {}-{}]", web.port(), web.port())},
                 "labels": [{"key": "DCOS_SERVICE_NAME", "value": "web"},
                            {"key": "DCOS_SERVICE_PORT_INDEX", "value": "1"}]}
            ]},
            {"id": "F2", "name": "dashboard", "webui_url": format!("http://127.0.0.1:{}/ui/", ui.port())}
        ]
    })
}

#[tokio::test]
async fn mesos_follows_the_leader_and_services_resolve() {
    let s = setup_or_skip!();
    let web = serve(echo("web")).await;
    let ui = serve(echo("dashboard")).await;
    let agent = serve(echo("agent-S1")).await;
    let state = master_state(web, ui, agent);
    let m1 = serve(fake_master("master-1", state.clone())).await;
    let m2 = serve(fake_master("master-2", state)).await;
    let store = s.etcd.store();
    let ttl = Duration::from_secs(10);
    let lead1 = Election::campaign(&store, "master", &m1.to_string(), ttl)
        .await
        .unwrap();
    let store2 = store.clone();
    let m2s = m2.to_string();
    let second =
        tokio::spawn(async move { Election::campaign(&store2, "master", &m2s, ttl).await });
    let env = s.start().await;
    let admin = env.admin().await;

    let v = json_ok(env.get("/mesos/master/flags", Some(&admin)).await, 200).await;
    assert_eq!(v["name"], "master-1");
    assert_eq!(v["path"], "/master/flags");
    lead1.resign().await.unwrap();
    poll("gateway follows the new leader", || async {
        let r = env.get("/mesos/master/flags", Some(&admin)).await;
        let v: Value = r.json().await.ok()?;
        (v["name"] == "master-2").then_some(())
    })
    .await;
    let _lead2 = second.await.unwrap().unwrap();

    // /service/<name>: DCOS_SERVICE_NAME label (port index 1), then webui_url.
    let v = json_ok(env.get("/service/web/hello?a=b", Some(&admin)).await, 200).await;
    assert_eq!(
        (v["name"].as_str(), v["path"].as_str()),
        (Some("web"), Some("/hello"))
    );
    assert_eq!(v["query"], "a=b");
    let v = json_ok(env.get("/service/dashboard/api/x", Some(&admin)).await, 200).await;
    assert_eq!(v["name"], "dashboard");
    assert_eq!(v["path"], "/ui/api/x");
    let r = env.get("/service/ghost/x", Some(&admin)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ERR_UNKNOWN_SERVICE");
    // /agent/<id>.
    let v = json_ok(env.get("/agent/S1/state", Some(&admin)).await, 200).await;
    assert_eq!(
        (v["name"].as_str(), v["path"].as_str()),
        (Some("agent-S1"), Some("/state"))
    );
    assert_eq!(env.get("/agent/S9/state", Some(&admin)).await.status(), 404);
}

#[tokio::test]
async fn errors_metadata_and_redirect() {
    let mut s = setup_or_skip!();
    let down = closed_port().await;
    s.config.upstreams.mesos_dns = down.to_string();
    s.config.http_listen = Some("127.0.0.1:0".parse().unwrap());
    s.config.redirect_http = true;
    s.config.https_port = 8443;
    let env = s.start().await;
    let admin = env.admin().await;

    let r = env.get("/no/such/route", Some(&admin)).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ERR_NOT_FOUND");

    let r = env
        .get("/mesos_dns/v1/hosts/leader.mesos", Some(&admin))
        .await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    let d = v["description"].as_str().unwrap();
    assert!(
        d.contains("mesos-dns") && d.contains(&down.to_string()),
        "{d}"
    );
    assert_eq!(v["code"], "ERR_UPSTREAM_UNAVAILABLE");

    // No master registered → 503.
    assert_eq!(
        env.get("/mesos/master/state", Some(&admin)).await.status(),
        503
    );

    // What `dcos cluster setup` reads.
    let v = json_ok(env.get("/dcos-metadata/dcos-version.json", None).await, 200).await;
    assert_eq!(v["dcos-variant"], "open");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v.get("dcos-image-commit").is_some() && v.get("bootstrap-id").is_some());
    assert_401(env.get("/metadata", None).await, "metadata needs a token").await;
    let v = json_ok(env.get("/metadata", Some(&admin)).await, 200).await;
    assert_eq!(
        v,
        json!({"PUBLIC_IPV4": "203.0.113.7", "CLUSTER_ID": "test-cluster-id"})
    );

    // Port 80 redirects to https.
    let http = env.gw.http_addr().unwrap();
    let r = env
        .client
        .get(format!("http://127.0.0.1:{}/mesos/x?y=1", http.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers().get("location").unwrap(),
        "https://127.0.0.1:8443/mesos/x?y=1"
    );
}

#[tokio::test]
async fn auth_disabled_and_agent_variant() {
    let mut s = setup_or_skip!();
    s.config.upstreams.cosmos = serve(echo("cosmos")).await.to_string();
    s.config.auth_enabled = false;
    let env = s.start().await;
    let v = json_ok(env.get("/package/list", None).await, 200).await;
    assert_eq!(v["name"], "cosmos");
    assert!(env.get("/metadata", None).await.status().is_success());

    // Agent gateway: plain HTTP, no auth, only its few routes.
    let diag = serve(echo("diagnostics")).await;
    let logs = serve(echo("logs")).await;
    let mut cfg = GatewayConfig::agent();
    cfg.http_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.metrics_listen = None;
    cfg.upstreams.diagnostics = diag.to_string();
    cfg.upstreams.logs = logs.to_string();
    assert_eq!(cfg.role, Role::Agent);
    let agent = GatewayServer::start(cfg, None).await.unwrap();
    let base = format!("http://{}", agent.http_addr().unwrap());
    let c = reqwest::Client::new();
    let v: Value = c
        .get(format!("{base}/system/health/v1/units"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["name"].as_str(), v["path"].as_str()),
        (Some("diagnostics"), Some("/system/health/v1/units"))
    );
    let v: Value = c
        .get(format!("{base}/system/v1/logs/v1/range/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["name"].as_str(), v["path"].as_str()),
        (Some("logs"), Some("/v1/range/"))
    );
    assert_eq!(
        c.get(format!("{base}/mesos/state"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Dot segments (clients normalise them, so send raw bytes) never reach an upstream.
    for path in ["/system/health/v1/../../x", "/system/health/v1/%2E%2e/x"] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(agent.http_addr().unwrap())
            .await
            .unwrap();
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        tokio::time::timeout(DEADLINE, tcp.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{path}: {out}");
        assert!(out.contains("ERR_INVALID_PATH"), "{path}: {out}");
    }
    assert_eq!(
        c.get(format!("{base}/dcos-metadata/dcos-version.json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
