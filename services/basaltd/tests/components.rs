//! The real `basaltd` binary's components as child processes, on the node root of a
//! real genconf master bundle and a real etcd.
//!
//! The bundle is rendered from the repo's example genconf/ config, whose masters are
//! documentation addresses (genconf rejects loopback masters), so its
//! `etc/etcd-client.env` names etcd endpoints and certificates that do not exist here.
//! The tests overwrite that one file to point at the harness etcd (mutual TLS with the
//! harness CA); everything else (`etc/cluster.toml`, `etc/join-credential`,
//! `etc/tls/gateway.*`, `etc/iam-public-key.pem`, ...) is the bundle's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use basalt_store::testing::{EtcdCluster, wait_for};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_basaltd");
const STARTUP: Duration = Duration::from_secs(60);

/// Renders the example config and unpacks the master bundle: (tempdir, node root).
fn master_bundle() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _) = basalt_genconf::example::example_node_root(
        tmp.path(),
        basalt_genconf::bundle::Role::Master,
    )
    .unwrap();
    (tmp, root)
}

/// Points the bundle's `etc/etcd-client.env` at the harness etcd (see the module docs).
fn point_at(root: &Path, etcd: &EtcdCluster) {
    let tls = etcd.tls_files().expect("a TLS cluster");
    let env = format!(
        "ETCDCTL_API=3\nETCDCTL_ENDPOINTS={}\nETCDCTL_CACERT={}\nETCDCTL_CERT={}\nETCDCTL_KEY={}\n",
        etcd.endpoints().join(","),
        tls.ca.display(),
        tls.cert.display(),
        tls.key.display(),
    );
    fs::write(root.join("etc/etcd-client.env"), env).unwrap();
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A `basaltd` child, killed when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(component: &str, root: &Path, args: &[&str]) -> Proc {
        Proc::spawn_with(component, root, args, None)
    }

    /// Like [`Proc::spawn`], with `NOTIFY_SOCKET` set to `notify`.
    fn spawn_with(component: &str, root: &Path, args: &[&str], notify: Option<&Path>) -> Proc {
        let mut cmd = Command::new(BIN);
        if let Some(n) = notify {
            cmd.env("NOTIFY_SOCKET", n);
        } else {
            cmd.env_remove("NOTIFY_SOCKET");
        }
        let child = cmd
            .arg(component)
            .arg("--node-root")
            .arg(root)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Proc(Some(child))
    }

    fn alive(&mut self) -> bool {
        matches!(self.0.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// SIGTERM, then the exit status (fails the test after 30 s).
    async fn terminate(mut self) -> ExitStatus {
        let mut child = self.0.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = wait_for("exit after SIGTERM", Duration::from_secs(30), || {
            let s = child.try_wait().unwrap();
            async move { s }
        })
        .await;
        match status {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{e}");
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET `url` → (status, body), or None while it does not answer.
async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_and_gateway_serve_from_the_node_bundle() {
    let Some(etcd) = EtcdCluster::start_tls(1).await.unwrap() else {
        eprintln!("skipped: etcd is not installed (set BASALT_ETCD_BIN)");
        return;
    };
    let (_tmp, root) = master_bundle();
    point_at(&root, &etcd);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // The master: listening, healthy, elected.
    let master_addr = free_addr();
    let mut master = Proc::spawn(
        "master",
        &root,
        &["--listen", &master_addr.to_string(), "--ip", "127.0.0.1"],
    );
    let base = format!("http://{master_addr}");
    wait_for("master elected", STARTUP, || {
        let alive = master.alive();
        let client = &client;
        let base = &base;
        async move {
            assert!(alive, "basaltd master exited");
            let (s, _) = get(client, &format!("{base}/master/health")).await?;
            if s != 200 {
                return None;
            }
            let (_, body) = get(client, &format!("{base}/metrics/snapshot")).await?;
            let v: Value = serde_json::from_str(&body).ok()?;
            (v["master/elected"].as_f64() == Some(1.0)).then_some(())
        }
    })
    .await
    .unwrap();
    let (s, body) = get(&client, &format!("{base}/master/state")).await.unwrap();
    assert_eq!(s, 200, "{body}");
    let state: Value = serde_json::from_str(&body).unwrap();
    // The cluster name comes from the bundle's etc/cluster.toml.
    let cluster_toml = fs::read_to_string(root.join("etc/cluster.toml")).unwrap();
    let name = state["cluster"].as_str().unwrap_or_default().to_owned();
    assert!(
        !name.is_empty() && cluster_toml.contains(&name),
        "cluster {name:?}"
    );
    // Agents must present the bundle's join credential.
    let credential = fs::read_to_string(root.join("etc/join-credential")).unwrap();
    let agent_call = |token: String| {
        client
            .post(format!("{base}/api/basalt/agent/v1"))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
    };
    let r = agent_call("not-the-credential".into()).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = agent_call(credential.trim().to_owned()).await.unwrap();
    assert_ne!(r.status(), 401);

    // The gateway (auth off) proxies /mesos/ to the leading master found in etcd.
    let (https, http) = (free_addr(), free_addr());
    let gw_args = |extra: &'static [&'static str]| {
        let mut v = vec![
            "--https-listen".to_owned(),
            https.to_string(),
            "--http-listen".to_owned(),
            http.to_string(),
            "--no-redirect".to_owned(),
            "--metrics-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = gw_args(&["--auth-disabled"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut gateway = Proc::spawn("gateway", &root, &args);
    let url = format!("http://{http}/mesos/master/health");
    wait_for("gateway proxying to the master", STARTUP, || {
        let alive = gateway.alive();
        let client = &client;
        let url = &url;
        async move {
            assert!(alive, "basaltd gateway exited");
            let (s, _) = get(client, url).await?;
            (s == 200).then_some(())
        }
    })
    .await
    .unwrap();
    let status = gateway.terminate().await;
    assert!(status.success(), "gateway: {status}");

    // With auth on (the bundle's cluster.toml), the same route wants a token.
    let args = gw_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut gateway = Proc::spawn("gateway", &root, &args);
    let code = wait_for("gateway with auth", STARTUP, || {
        let alive = gateway.alive();
        let client = &client;
        let url = &url;
        async move {
            assert!(alive, "basaltd gateway exited");
            get(client, url).await.map(|(s, _)| s)
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 401);
    let status = gateway.terminate().await;
    assert!(status.success(), "gateway: {status}");

    // DNS on a master: names from the elected master's state (etcd watch).
    let (dns_addr, dns_http) = (free_addr(), free_addr());
    let mut dns = Proc::spawn(
        "dns",
        &root,
        &[
            "--role",
            "master",
            "--listen",
            &dns_addr.to_string(),
            "--http-listen",
            &dns_http.to_string(),
            "--master-port",
            &master_addr.port().to_string(),
        ],
    );
    wait_leader_name(&client, &mut dns, dns_http).await;
    let status = dns.terminate().await;
    assert!(status.success(), "dns: {status}");

    // DNS on an agent: no etcd, `/master/state` polled from etc/master_list (replaced,
    // like etcd-client.env, because the example masters do not exist here).
    fs::write(root.join("etc/master_list"), "[\"127.0.0.1\"]\n").unwrap();
    let (dns_addr, dns_http) = (free_addr(), free_addr());
    let mut dns = Proc::spawn(
        "dns",
        &root,
        &[
            "--role",
            "agent",
            "--listen",
            &dns_addr.to_string(),
            "--http-listen",
            &dns_http.to_string(),
            "--master-port",
            &master_addr.port().to_string(),
            "--poll-interval",
            "1",
        ],
    );
    wait_leader_name(&client, &mut dns, dns_http).await;
    let status = dns.terminate().await;
    assert!(status.success(), "dns: {status}");

    // l4lb: reports READY=1 over sd_notify once running.
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify");
    let notify = tokio::net::UnixDatagram::bind(&notify_path).unwrap();
    let l4lb = Proc::spawn_with(
        "l4lb",
        &root,
        &[
            "--bind",
            "loopback",
            "--master-port",
            &master_addr.port().to_string(),
        ],
        Some(&notify_path),
    );
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(STARTUP, notify.recv(&mut buf))
        .await
        .expect("READY=1 from l4lb")
        .unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    let status = l4lb.terminate().await;
    assert!(status.success(), "l4lb: {status}");

    let status = master.terminate().await;
    assert!(status.success(), "master: {status}");
}

/// Waits until the DNS HTTP API at `http` resolves `leader.mesos` to 127.0.0.1.
async fn wait_leader_name(client: &reqwest::Client, dns: &mut Proc, http: SocketAddr) {
    let url = format!("http://{http}/v1/hosts/leader.mesos");
    wait_for("leader.mesos in DNS", STARTUP, || {
        let alive = dns.alive();
        let url = &url;
        async move {
            assert!(alive, "basaltd dns exited");
            let (s, body) = get(client, url).await?;
            (s == 200 && body.contains("127.0.0.1")).then_some(())
        }
    })
    .await
    .unwrap();
}

fn run(args: &[&str]) -> std::process::Output {
    let start = Instant::now();
    let out = Command::new(BIN)
        .args(args)
        .env_remove("BASALT_NODE_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(30));
    out
}

#[test]
fn bad_arguments_exit_2_with_a_clear_error() {
    for (component, args, needle) in [
        ("master", &["--bogus"][..], "--bogus"),
        ("master", &["--listen", "nowhere"][..], "nowhere"),
        ("gateway", &["--role", "toaster"][..], "toaster"),
        ("gateway", &["--http-listen"][..], "--http-listen"),
        ("dns", &["--listen", "1.2.3.4"][..], "1.2.3.4"),
        ("dns", &["--poll-interval", "0"][..], "0"),
        ("l4lb", &["--bind", "everywhere"][..], "everywhere"),
    ] {
        let mut all = vec![component];
        all.extend_from_slice(args);
        let out = run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {err}");
        assert!(err.contains(needle), "{all:?}: {err}");
    }
    let out = run(&["master", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--node-root"));
}

#[test]
fn a_missing_bundle_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    for component in ["master", "gateway", "dns", "l4lb"] {
        let out = run(&[
            component,
            "--node-root",
            tmp.path().to_str().unwrap(),
            "--ip",
            "127.0.0.1",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{component}: {err}");
        assert!(
            err.contains(tmp.path().to_str().unwrap()),
            "{component}: {err}"
        );
    }
}
