//! `basalt cluster …`, `basalt auth …` and the error paths that must tell the user what
//! to do next, against a real cluster behind the real gateway (auth on, TLS).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[tokio::test]
async fn without_a_cluster_every_command_says_to_run_setup() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["node", "list"][..],
        &["marathon", "app", "list"],
        &["task"],
        &["service", "list", "--json"],
        &["auth", "login", "--username", "a", "--password", "b"],
        &["cluster", "list"],
    ] {
        run_in(home.path(), args, None, &[])
            .await
            .fails_with(&["no cluster is configured", "basalt cluster setup <url>"]);
    }
    // A bad command line is clap's exit 2, naming the problem.
    let out = run_in(home.path(), &["node", "log"], None, &[]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--leader"), "{out:?}");
    let out = run_in(home.path(), &["marathon", "app", "--help"], None, &[])
        .await
        .ok();
    assert!(out.stdout.contains("version") && out.stdout.contains("restart"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn setup_pins_the_ca_logs_in_and_errors_say_what_to_do() {
    let Some(c) = TestCluster::start("setup_pins_the_ca", Agents::Emulated(1)).await else {
        return;
    };
    let pw = [("PW", ADMIN_PASSWORD)];
    let wrong = format!("sha256:{}", "00".repeat(32));

    // A wrong fingerprint is refused, naming both; nothing is stored.
    c.basalt_env(
        &[
            "cluster",
            "setup",
            &c.url,
            "--ca-fingerprint",
            &wrong,
            "--username",
            ADMIN,
            "--password-env",
            "PW",
        ],
        &pw,
    )
    .await
    .fails_with(&["refusing to trust", &wrong, &c.fingerprint]);
    c.basalt(&["cluster", "list"])
        .await
        .fails_with(&["no cluster is configured"]);
    // Without a terminal the fingerprint cannot be confirmed: the error shows it.
    c.basalt_env(
        &[
            "cluster",
            "setup",
            &c.url,
            "--username",
            ADMIN,
            "--password-env",
            "PW",
        ],
        &pw,
    )
    .await
    .fails_with(&["--ca-fingerprint", &c.fingerprint]);
    // Plain http is refused with the way out.
    c.basalt(&["cluster", "setup", &c.url.replace("https://", "http://")])
        .await
        .fails_with(&["use https://"]);
    // A malformed fingerprint names the flag.
    c.basalt(&["cluster", "setup", &c.url, "--ca-fingerprint", "sha256:zz"])
        .await
        .fails_with(&["--ca-fingerprint", "64 hex digits"]);
    // A bad password: the IAM's message, nothing stored.
    c.basalt_env(
        &[
            "cluster",
            "setup",
            &c.url,
            "--ca-fingerprint",
            &c.fingerprint,
            "--username",
            ADMIN,
            "--password-env",
            "PW",
        ],
        &[("PW", "not the password")],
    )
    .await
    .fails_with(&["login to", "failed", "do not match"]);
    c.basalt(&["cluster", "list"])
        .await
        .fails_with(&["no cluster is configured"]);
    // Nothing listens: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    c.basalt(&[
        "cluster",
        "setup",
        &format!("https://localhost:{closed}"),
        "--no-check",
    ])
    .await
    .fails_with(&["cannot reach the gateway", "check the URL"]);

    // The right fingerprint (pasted with colons, upper case): pinned, logged in, attached.
    let hexs = c
        .fingerprint
        .trim_start_matches("sha256:")
        .to_ascii_uppercase();
    let pairs: Vec<&str> = (0..32).map(|i| &hexs[2 * i..2 * i + 2]).collect();
    let out = c
        .basalt_env(
            &[
                "cluster",
                "setup",
                &c.url,
                "--ca-fingerprint",
                &pairs.join(":"),
                "--username",
                ADMIN,
                "--password-env",
                "PW",
                "--name",
                "test",
            ],
            &pw,
        )
        .await
        .ok();
    assert!(out.stderr.contains(&c.fingerprint), "{out:?}");
    let dir = c.cluster_dir();
    assert_eq!(
        std::fs::read_to_string(dir.join("dcos_ca.crt")).unwrap(),
        c.ca.cert_pem()
    );
    let toml = std::fs::read_to_string(dir.join("basalt.toml")).unwrap();
    assert!(
        toml.contains("dcos_acs_token") && toml.contains(&c.url),
        "{toml}"
    );
    let list = c.basalt(&["cluster", "list", "--json"]).await.ok().json();
    assert_eq!(list[0]["name"], "test");
    assert_eq!(list[0]["cluster_id"], CLUSTER_ID);
    assert_eq!(list[0]["attached"], true);
    assert_eq!(list[0]["ca_fingerprint"], c.fingerprint.as_str());
    let table = c.basalt(&["cluster", "list"]).await.ok().stdout;
    assert!(
        table.starts_with("NAME") && table.contains("test*"),
        "{table}"
    );
    c.basalt(&["node", "list"]).await.ok();

    // auth login: bad password → the IAM's message; good → works.
    c.basalt_env(
        &["auth", "login", "--username", ADMIN, "--password-env", "PW"],
        &[("PW", "wrong")],
    )
    .await
    .fails_with(&["login to", "failed"]);
    c.basalt(&[
        "auth",
        "login",
        "--username",
        ADMIN,
        "--password-env",
        "UNSET_VAR",
    ])
    .await
    .fails_with(&["UNSET_VAR", "is not set"]);
    c.basalt_env(
        &["auth", "login", "--username", ADMIN, "--password-env", "PW"],
        &pw,
    )
    .await
    .ok();
    let providers = c
        .basalt(&["auth", "list-providers", "--json"])
        .await
        .ok()
        .json();
    assert!(providers.get("dcos-users").is_some(), "{providers}");

    // A tampered token → 401 from the gateway → "run `basalt auth login`".
    let token = c
        .basalt(&["config", "show", "core.dcos_acs_token"])
        .await
        .ok()
        .stdout;
    assert_eq!(token.trim(), "********", "the token is masked");
    let good = c
        .signer()
        .issue(ADMIN, std::time::Duration::from_secs(3600));
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    c.basalt(&["config", "set", "core.dcos_acs_token", &tampered])
        .await
        .ok();
    c.basalt(&["marathon", "app", "list"])
        .await
        .fails_with(&["authentication failed", "basalt auth login"]);
    // An expired token → refused before sending, same advice.
    let now = basalt_cli::client::now_unix();
    let expired = c.signer().sign(ADMIN, now - 7200, now - 3600);
    c.basalt(&["config", "set", "core.dcos_acs_token", &expired])
        .await
        .ok();
    c.basalt(&["node", "list"])
        .await
        .fails_with(&["expired", "basalt auth login"]);
    // Logging in again replaces it.
    c.basalt_env(
        &["auth", "login", "--username", ADMIN, "--password-env", "PW"],
        &pw,
    )
    .await
    .ok();
    c.basalt(&["service", "list"]).await.ok();
    // Logout revokes the token at the cluster and forgets it.
    c.basalt(&["auth", "logout"]).await.ok();
    c.basalt(&["node", "list"])
        .await
        .fails_with(&["authentication failed", "basalt auth login"]);
    c.basalt_env(
        &["auth", "login", "--username", ADMIN, "--password-env", "PW"],
        &pw,
    )
    .await
    .ok();

    // A service account logs in with its private key (an EdDSA login token); it has
    // no permissions, so the gateway answers 403 and the CLI says so.
    let rng = ring::rand::SystemRandom::new();
    let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    use ring::signature::KeyPair;
    let public = basalt_iam::keys::ed25519_public_key_pem(pair.public_key().as_ref());
    let admin_token = c.signer().issue(ADMIN, std::time::Duration::from_secs(600));
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .put(format!("http://{}/acs/api/v1/users/ci-robot", c.iam.addr()))
        .header("Authorization", format!("token={admin_token}"))
        .json(&serde_json::json!({"description": "CI robot", "public_key": public}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "creating the service account: {r:?}"
    );
    let key_file = c.home.path().join("ci-robot.pem");
    std::fs::write(
        &key_file,
        basalt_iam::keys::pem_encode("PRIVATE KEY", doc.as_ref()),
    )
    .unwrap();
    let key_arg = key_file.display().to_string();
    c.basalt(&[
        "auth",
        "login",
        "--uid",
        "ci-robot",
        "--private-key",
        &key_arg,
    ])
    .await
    .ok();
    c.basalt(&["node", "list"])
        .await
        .fails_with(&["permission denied", "/mesos/master/slaves"]);
    c.basalt(&[
        "auth",
        "login",
        "--uid",
        "nobody",
        "--private-key",
        &key_arg,
    ])
    .await
    .fails_with(&["login to", "failed"]);
    c.basalt_env(
        &["auth", "login", "--username", ADMIN, "--password-env", "PW"],
        &pw,
    )
    .await
    .ok();

    // The pinned CA file replaced by another CA: refused, advice to set up again.
    let other = basalt_store::testing::TestCa::new("another CA").unwrap();
    std::fs::write(c.cluster_dir().join("dcos_ca.crt"), other.cert_pem()).unwrap();
    c.basalt(&["node", "list"]).await.fails_with(&[
        "no longer has the pinned fingerprint",
        "basalt cluster setup",
    ]);
    std::fs::write(c.cluster_dir().join("dcos_ca.crt"), c.ca.cert_pem()).unwrap();
    // A gateway whose certificate is not from the pinned CA: a TLS error (another
    // gateway on the same cluster, with a certificate from `other`).
    let (cert, key) = other.issue("gateway").unwrap();
    let mut cfg = basalt_gateway::GatewayConfig {
        https_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: None,
        metrics_listen: None,
        tls: Some(basalt_gateway::TlsPems {
            cert_chain: cert,
            key,
        }),
        auth_enabled: false,
        ..basalt_gateway::GatewayConfig::default()
    };
    cfg.upstreams.iam = c.iam.addr().to_string();
    let impostor = basalt_gateway::GatewayServer::start(cfg, Some(c.master.etcd.store()))
        .await
        .unwrap();
    let impostor_url = format!(
        "https://localhost:{}",
        impostor.https_addr().unwrap().port()
    );
    c.basalt(&["config", "set", "core.dcos_url", &impostor_url])
        .await
        .ok();
    c.basalt(&["node", "list"])
        .await
        .fails_with(&["TLS verification", "not signed by the CA pinned"]);
    // Unreachable gateway.
    c.basalt(&[
        "config",
        "set",
        "core.dcos_url",
        &format!("https://localhost:{closed}"),
    ])
    .await
    .ok();
    c.basalt(&["marathon", "app", "list"])
        .await
        .fails_with(&["cannot reach the gateway"]);
    c.basalt(&["config", "set", "core.dcos_url", &c.url])
        .await
        .ok();
    c.basalt(&["node", "list", "--json"]).await.ok();

    // --insecure: no CA pinned, no verification (stored as ssl_verify = false).
    c.basalt_env(
        &[
            "cluster",
            "setup",
            &c.url,
            "--insecure",
            "--username",
            ADMIN,
            "--password-env",
            "PW",
            "--name",
            "test",
        ],
        &pw,
    )
    .await
    .ok();
    let v = c
        .basalt(&["config", "show", "core.ssl_verify"])
        .await
        .ok()
        .stdout;
    assert_eq!(v.trim(), "false");
    c.basalt(&["node", "list"]).await.ok();

    // attach / remove.
    c.basalt(&["cluster", "attach", "nope"])
        .await
        .fails_with(&["unknown cluster", "basalt cluster list"]);
    c.basalt(&["cluster", "attach", "test"]).await.ok();
    c.basalt(&["cluster", "remove"]).await.ok();
    c.basalt(&["node", "list"])
        .await
        .fails_with(&["no cluster is configured"]);
}
