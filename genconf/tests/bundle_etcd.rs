//! The master bundle drives a real etcd (Debian's etcd-server, Go): three
//! members on loopback addresses form a cluster over mutual TLS with the
//! rendered peer certificates, and serve clients that present the rendered
//! etcd client certificate — and nobody without one.
//!
//! Each master's files come from `VerifiedBundle::node_files(ip)`, installed in
//! a temporary root (the env file's `/run/basalt` is rewritten to it). The one
//! other change: the client URL on 127.0.0.1 is dropped, since three members
//! share this host's loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bundle_support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use basalt_genconf::bundle::Role;
use basalt_genconf::render::{NODE_ROOT, render_bundle};
use basalt_genconf::secrets::Secrets;
use basalt_genconf::verify::verify_bundle;

const MASTERS: [&str; 3] = ["127.0.0.121", "127.0.0.122", "127.0.0.123"];

fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn curl(root: &Path, url: &str, body: Option<&str>, with_cert: bool) -> Result<String, String> {
    let tls = root.join("etc/tls");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--max-time", "3", "--cacert"])
        .arg(tls.join("ca.crt"));
    if with_cert {
        cmd.arg("--cert")
            .arg(tls.join("etcd-client.crt"))
            .arg("--key")
            .arg(tls.join("etcd-client.key"));
    }
    if let Some(b) = body {
        cmd.args(["-X", "POST", "-d", b]);
    }
    let out = cmd.arg(url).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn rendered_master_bundle_runs_a_three_member_etcd_over_mutual_tls() {
    if !have("etcd") || !have("curl") {
        eprintln!("SKIP: needs `etcd` and `curl` in PATH (scripts/setup installs etcd-server)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut loaded = bundle_support::loaded(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    // Loopback masters (validation rightly refuses them in a real config).
    loaded.config.masters = MASTERS.iter().map(|m| m.parse().unwrap()).collect();
    let secrets = Secrets::load_or_create(&tmp.path().join("secrets"), &loaded.config).unwrap();
    let bundle = render_bundle(&loaded, &secrets, Role::Master).unwrap();
    let verified = verify_bundle(
        &bundle.bytes,
        &secrets.public_key(),
        Some(Role::Master),
        Some(secrets.cluster_id()),
    )
    .unwrap();

    let mut members = Members(Vec::new());
    let mut roots = Vec::new();
    for m in MASTERS {
        let ip: Ipv4Addr = m.parse().unwrap();
        let root = tmp.path().join(format!("node-{m}"));
        for f in verified.node_files(ip).unwrap() {
            let p = root.join(&f.path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &f.data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode)).unwrap();
        }
        let env_text = std::fs::read_to_string(root.join("etc/etcd.env")).unwrap();
        let mut env: BTreeMap<String, String> = env_text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.replace(NODE_ROOT, root.to_str().unwrap()))
            })
            .collect();
        assert_eq!(env["ETCD_NAME"], format!("master-{m}"));
        env.insert(
            "ETCD_DATA_DIR".into(),
            root.join("data").display().to_string(),
        );
        env.insert(
            "ETCD_LISTEN_CLIENT_URLS".into(),
            format!("https://{m}:2379"),
        );
        let log = std::fs::File::create(root.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .envs(&env)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        members.0.push(child);
        roots.push(root);
    }

    // Poll until every member reports healthy (quorum formed over peer TLS).
    let deadline = Instant::now() + Duration::from_secs(60);
    for (m, root) in MASTERS.iter().zip(&roots) {
        loop {
            match curl(root, &format!("https://{m}:2379/health"), None, true) {
                Ok(body) if body.contains("\"health\":\"true\"") => break,
                other => {
                    for (i, c) in members.0.iter_mut().enumerate() {
                        if let Some(status) = c.try_wait().unwrap() {
                            panic!(
                                "etcd {} exited ({status}):\n{}",
                                MASTERS[i],
                                log_tail(&roots[i])
                            );
                        }
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{m} not healthy: {other:?}\n{}",
                        log_tail(root)
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
    let list = curl(
        &roots[0],
        &format!("https://{}:2379/v3/cluster/member/list", MASTERS[0]),
        Some("{}"),
        true,
    )
    .unwrap();
    for m in MASTERS {
        assert!(list.contains(&format!("\"name\":\"master-{m}\"")), "{list}");
        assert!(list.contains(&format!("https://{m}:2380")), "{list}");
    }
    // Without a client certificate etcd refuses the connection.
    let refused = curl(
        &roots[0],
        &format!("https://{}:2379/health", MASTERS[0]),
        None,
        false,
    );
    assert!(
        refused.is_err(),
        "etcd accepted a client without a certificate"
    );
}

fn log_tail(root: &Path) -> String {
    let log = std::fs::read_to_string(root.join("etcd.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
