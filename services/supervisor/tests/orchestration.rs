//! The config-source ladder and the orchestration (verify → ip-detect → install → start
//! the role target → health) against the in-memory fakes, with real signed bundles made
//! by genconf. The same steps run against a real systemd in `qemu_node.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use basalt_genconf::bundle::Role;
use basalt_supervisor::fake::ok;
use basalt_supervisor::ladder::{LadderOptions, bundle_from_user_data, cmdline_url, obtain_bundle};
use basalt_supervisor::seams::CmdOutput;
use basalt_supervisor::{Options, SupervisorError, prepare, role_target, start_role};
use base64::Engine;
use support::{Cluster, Node};

fn agent_cluster() -> &'static Cluster {
    static C: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
    C.get_or_init(|| Cluster::new(&["192.0.2.10"]))
}

fn opts() -> Options {
    Options {
        ip_detect_wait: Duration::from_secs(5),
        ..Options::default()
    }
}

#[test]
fn kernel_command_line_and_user_data_parsing() {
    assert_eq!(
        cmdline_url("ro basalt.config=http://10.0.0.1/a.tar quiet").as_deref(),
        Some("http://10.0.0.1/a.tar")
    );
    assert_eq!(
        cmdline_url("basalt.config=file:///a basalt.config=file:///b").as_deref(),
        Some("file:///b")
    );
    assert_eq!(cmdline_url("ro basalt.slot=a basalt.configx=1"), None);
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"tar bytes");
    let ud = format!("\n#basalt-bundle\n{}\n{}\n", &b64[..4], &b64[4..]);
    assert_eq!(
        bundle_from_user_data(ud.as_bytes()).unwrap().unwrap(),
        b"tar bytes"
    );
    assert!(bundle_from_user_data(b"#cloud-config\nfoo: 1\n").is_none());
    assert!(
        bundle_from_user_data(b"#basalt-bundle\n!!!\n")
            .unwrap()
            .unwrap_err()
            .contains("invalid base64")
    );
}

#[tokio::test]
async fn command_line_url_wins_over_every_volume() {
    let c = agent_cluster();
    let n = Node::new(c);
    n.write("/srv/b.tar", &c.bundle("agent"));
    n.write("/proc/cmdline", b"ro basalt.config=file:///srv/b.tar\n");
    n.volume("BASALT_CONFIG", "/dev/vdb", &[("bundle.tar", b"other")]);
    let got = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap();
    assert_eq!(got.source, "basalt.config=file:///srv/b.tar");
    assert_eq!(got.bytes, c.bundle("agent"));
    assert!(n.mounter.mounted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn http_source_is_retried_until_its_deadline_and_never_falls_back() {
    let c = agent_cluster();
    let n = Node::new(c);
    n.write(
        "/proc/cmdline",
        b"basalt.config=http://192.0.2.5:8080/agent.tar\n",
    );
    n.write("/etc/basalt/bundle", &c.bundle("agent"));
    let e = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, SupervisorError::Source { .. }), "{e}");
    assert!(e.to_string().contains("connection refused"), "{e}");
    assert!(*n.fetcher.attempts.lock().unwrap() > 10);

    n.fetcher
        .bodies
        .lock()
        .unwrap()
        .insert("http://192.0.2.5:8080/agent.tar".into(), c.bundle("agent"));
    let got = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap();
    assert_eq!(got.bytes, c.bundle("agent"));
}

#[tokio::test]
async fn config_volume_then_cloud_metadata_then_local_file() {
    let c = agent_cluster();
    let bundle = c.bundle("agent");

    // BASALT_CONFIG beats NoCloud
    let n = Node::new(c);
    n.volume("cidata", "/dev/vdc", &[("basalt/bundle.tar", b"cloud")]);
    n.volume("BASALT_CONFIG", "/dev/vdb", &[("bundle.tar", &bundle)]);
    let got = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap();
    assert!(
        got.source.starts_with("volume BASALT_CONFIG"),
        "{}",
        got.source
    );
    assert_eq!(got.bytes, bundle);
    // unmounted again: the mount point is an empty folder
    let mnt = n.path("/run/basalt-supervisor/config-volume");
    assert!(mnt.is_dir() && std::fs::read_dir(&mnt).unwrap().next().is_none());

    // vfat labels hold 11 characters: BASALT_CFG
    let n = Node::new(c);
    n.volume("BASALT_CFG", "/dev/sda1", &[("basalt/bundle.tar", &bundle)]);
    let got = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap();
    assert!(
        got.source.starts_with("volume BASALT_CFG"),
        "{}",
        got.source
    );
    assert!(got.source.ends_with("basalt/bundle.tar"), "{}", got.source);

    // NoCloud user-data carrying the bundle in base64
    let n = Node::new(c);
    let ud = format!(
        "#basalt-bundle\n{}\n",
        base64::engine::general_purpose::STANDARD.encode(&bundle)
    );
    n.volume(
        "CIDATA",
        "/dev/sr0",
        &[("user-data", ud.as_bytes()), ("meta-data", b"")],
    );
    let got = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap();
    assert!(got.source.ends_with("user-data"), "{}", got.source);
    assert_eq!(got.bytes, bundle);

    // a config drive with basalt/bundle.tar
    let n = Node::new(c);
    n.volume("config-2", "/dev/vdd", &[("basalt/bundle.tar", &bundle)]);
    let got = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap();
    assert!(got.source.starts_with("config drive"), "{}", got.source);

    // a NoCloud volume for something else: the ladder goes on to the local file
    let n = Node::new(c);
    n.volume("cidata", "/dev/vdc", &[("user-data", b"#cloud-config\n")]);
    n.write("/etc/basalt/bundle", &bundle);
    let got = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap();
    assert_eq!(got.source, "local file /etc/basalt/bundle");

    // no volume at all: waits (on the fake clock) for udev, then the local file
    let n = Node::new(c);
    n.write("/etc/basalt/bundle", &bundle);
    let got = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap();
    assert_eq!(got.source, "local file /etc/basalt/bundle");

    // nothing anywhere: every rung is named
    let n = Node::new(c);
    let e = obtain_bundle(&n.env(), &LadderOptions::default())
        .await
        .unwrap_err();
    let msg = e.to_string();
    for part in [
        "basalt.config=",
        "BASALT_CONFIG",
        "cidata",
        "config-2",
        "/etc/basalt/bundle",
    ] {
        assert!(msg.contains(part), "{msg}");
    }
}

#[tokio::test]
async fn agent_bundle_is_verified_installed_and_its_target_started() {
    let c = agent_cluster();
    let n = Node::new(c);
    n.volume(
        "BASALT_CONFIG",
        "/dev/vdb",
        &[("bundle.tar", &c.bundle("agent"))],
    );
    // DHCP not done on the first try
    n.runner.answer("ip-detect", ok(""));
    n.runner.answer("ip-detect", ok("10.0.2.15\n"));
    n.write("/run/basalt/etc/upper/hostname", b"overlay upper");
    n.write("/run/basalt/etc/stale", b"from an older bundle");
    n.write("/run/basalt/.installed", b"etc/stale\n");
    let env = n.env();
    let p = prepare(&env, &opts()).await.unwrap();
    assert_eq!(p.role, Role::Agent);
    assert_eq!(p.ip.to_string(), "10.0.2.15");
    assert_eq!(n.read("/run/basalt/etc/role").trim(), "agent");
    assert_eq!(n.read("/run/basalt/etc/node-ip"), "10.0.2.15\n");
    let res: serde_json::Value =
        serde_json::from_str(&n.read("/run/basalt/etc/resources.json")).unwrap();
    assert_eq!(res["public"], false);
    assert!(!n.path("/run/basalt/etc/stale").exists(), "stale file kept");
    assert_eq!(n.read("/run/basalt/etc/upper/hostname"), "overlay upper");
    assert!(!n.path("/run/basalt/.staging").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(n.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("/run/basalt/bin/ip-detect"), 0o755);
    assert_eq!(mode("/run/basalt/etc/tls/agent.key"), 0o600);
    assert!(n.systemd.started().is_empty(), "prepare starts nothing");

    // start: the fake systemd fails basalt-agent.service
    n.systemd.wants.lock().unwrap().insert(
        role_target(Role::Agent).into(),
        basalt_supervisor::role_units(Role::Agent)
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    n.systemd
        .failing
        .lock()
        .unwrap()
        .push("basalt-agent.service".into());
    n.runner.answer(
        "journalctl",
        ok("basaltd: unknown component \"agent\"\nbasalt-agent.service: Failed with result 'exit-code'.\n"),
    );
    let follower = start_role(&env, p.role).await.unwrap();
    assert_eq!(n.systemd.started(), ["basalt-agent.target"]);
    let health = basalt_supervisor::health_state(&env, &p).report().await;
    let by_id = |id: &str| health.units.iter().find(|u| u.id == id).unwrap().clone();
    let agent = by_id("basalt-agent.service");
    assert_eq!(agent.health, 1);
    assert_eq!(agent.active_state, "failed");
    assert!(
        agent.output.contains("unknown component"),
        "{}",
        agent.output
    );
    let dns = by_id("basalt-dns.service");
    assert_eq!(dns.health, 0);
    assert!(dns.output.is_empty());
    assert_eq!(health.node_role, "agent");
    assert_eq!(health.ip, "10.0.2.15");
    let jc: Vec<_> = n
        .runner
        .calls()
        .into_iter()
        .filter(|(p, _)| p == "journalctl")
        .collect();
    assert_eq!(
        jc.len(),
        2,
        "journal read for the unhealthy units only: {jc:?}"
    );
    assert!(jc.iter().all(|(_, a)| a.contains(&"-u".to_string())));
    follower.abort();
}

#[tokio::test]
async fn one_changed_byte_starts_nothing_and_names_the_check() {
    let c = agent_cluster();
    let mut bundle = c.bundle("agent");
    // a byte inside the first file's data (after the 512-byte header)
    bundle[600] ^= 0x01;
    let n = Node::new(c);
    n.volume("BASALT_CONFIG", "/dev/vdb", &[("bundle.tar", &bundle)]);
    n.runner.answer("ip-detect", ok("10.0.2.15\n"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let e = basalt_supervisor::run(n.env(), opts(), async {
        let _ = rx.await;
    })
    .await
    .unwrap_err();
    drop(tx);
    assert!(matches!(e, SupervisorError::Verify { .. }), "{e}");
    assert!(e.is_permanent());
    let msg = e.to_string();
    assert!(msg.contains("failed verification"), "{msg}");
    assert!(msg.contains("volume BASALT_CONFIG"), "{msg}");
    assert!(n.systemd.started().is_empty());
    assert!(!n.path("/run/basalt/etc/role").exists());
    assert!(
        n.runner.calls().is_empty(),
        "ip-detect must not run: {:?}",
        n.runner.calls()
    );
}

#[tokio::test]
async fn ip_detect_must_print_exactly_one_ipv4_address() {
    let c = agent_cluster();
    for (out, want) in [
        (ok("10.0.0.1\n10.0.0.2\n"), "2 lines"),
        (ok("fe80::1\n"), "not an IPv4 address"),
        (
            CmdOutput {
                code: Some(1),
                stdout: vec![],
                stderr: b"no route".to_vec(),
            },
            "no route",
        ),
    ] {
        let n = Node::new(c);
        n.write("/etc/basalt/bundle", &c.bundle("agent"));
        n.runner.answer("ip-detect", out);
        let e = prepare(&n.env(), &opts()).await.unwrap_err();
        assert!(matches!(e, SupervisorError::IpDetect(_)), "{e}");
        assert!(e.to_string().contains(want), "{e}");
        assert!(!n.path("/run/basalt/etc/role").exists());
    }
}

#[tokio::test]
async fn master_gets_its_own_view_and_a_stranger_is_refused() {
    let c = Cluster::new(&["192.0.2.10", "192.0.2.11", "192.0.2.12"]);
    let n = Node::new(&c);
    n.write("/etc/basalt/bundle", &c.bundle("master"));
    n.runner.answer("ip-detect", ok("192.0.2.11\n"));
    let p = prepare(&n.env(), &opts()).await.unwrap();
    assert_eq!(p.role, Role::Master);
    let etcd = n.read("/run/basalt/etc/etcd.env");
    assert!(etcd.contains("master-192.0.2.11"), "{etcd}");
    assert!(!n.path("/run/basalt/masters").exists());
    assert!(!n.path("/run/basalt/etc/resources.json").exists());

    let n = Node::new(&c);
    n.write("/etc/basalt/bundle", &c.bundle("master"));
    n.runner.answer("ip-detect", ok("192.0.2.99\n"));
    let e = prepare(&n.env(), &opts()).await.unwrap_err();
    assert!(e.to_string().contains("192.0.2.99 is not one of"), "{e}");
}

#[tokio::test]
async fn a_key_of_another_cluster_rejects_the_bundle() {
    let c = agent_cluster();
    let other = Cluster::new(&["192.0.2.10"]);
    let n = Node::new(&other);
    n.write("/etc/basalt/bundle", &c.bundle("agent"));
    let e = prepare(&n.env(), &opts()).await.unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
}

#[tokio::test]
async fn health_api_serves_the_dcos_shape() {
    let c = agent_cluster();
    let n = Node::new(c);
    n.write("/etc/basalt/bundle", &c.bundle("agent-public"));
    n.runner.answer("ip-detect", ok("10.0.2.15\n"));
    n.runner.answer("journalctl", ok("some journal line\n"));
    n.systemd
        .failing
        .lock()
        .unwrap()
        .push("basalt-gateway.service".into());
    n.systemd.wants.lock().unwrap().insert(
        "basalt-agent-public.target".into(),
        vec![
            "basalt-gateway.service".into(),
            "basalt-agent.service".into(),
        ],
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let o = Options {
        health_addr: addr,
        ..opts()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(basalt_supervisor::run(n.env(), o, async {
        let _ = rx.await;
    }));
    let url = format!("http://{addr}/system/health/v1");
    let mut body = None;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(&url).await {
            body = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = body.expect("health API never answered");
    assert_eq!(body["node_role"], "agent_public");
    let units = body["units"].as_array().unwrap();
    let gw = units
        .iter()
        .find(|u| u["id"] == "basalt-gateway.service")
        .unwrap();
    assert_eq!(gw["health"], 1);
    assert_eq!(gw["output"], "some journal line\n");
    let agent = units
        .iter()
        .find(|u| u["id"] == "basalt-agent.service")
        .unwrap();
    assert_eq!(agent["health"], 0);
    let one: serde_json::Value = reqwest::get(format!("{url}/units/basalt-gateway.service"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["health"], 1);
    let missing = reqwest::get(format!("{url}/units/sshd.service"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(n.systemd.started(), ["basalt-agent-public.target"]);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
