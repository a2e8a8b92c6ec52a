//! Render → bundle → verify for every role, per-role contents, determinism,
//! swapped roles, foreign keys and clusters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bundle_support;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::Ipv4Addr;

use basalt_genconf::bundle::{Bundle, MANIFEST_PATH, Role, SIGNATURE_PATH};
use basalt_genconf::render::{render, render_bundle};
use basalt_genconf::secrets::Secrets;
use basalt_genconf::verify::{VerifyError, verify_bundle, verify_bundle_reader};
use bundle_support::{PASSWORD_HASH, loaded};

const THREE: [&str; 3] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    loaded: basalt_genconf::config::LoadedConfig,
    secrets: Secrets,
}

fn fixture(masters: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let loaded = loaded(masters);
    let secrets = Secrets::load_or_create(&dir, &loaded.config).unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        loaded,
        secrets,
    }
}

fn bundle(f: &Fixture, role: Role) -> Bundle {
    render_bundle(&f.loaded, &f.secrets, role).unwrap()
}

fn paths(b: &basalt_genconf::verify::VerifiedBundle) -> BTreeSet<String> {
    b.files.iter().map(|f| f.path.clone()).collect()
}

fn common_paths() -> BTreeSet<String> {
    [
        "bin/fault-domain-detect",
        "bin/ip-detect",
        "bin/ip-detect-public",
        "etc/cluster-id",
        "etc/cluster.pub",
        "etc/cluster.toml",
        "etc/dns_search",
        "etc/iam-public-key.pem",
        "etc/join-credential",
        "etc/master_list",
        "etc/proxy.env",
        "etc/resolvers",
        "etc/role",
        "etc/tls/ca.crt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn every_role_round_trips_with_its_own_files() {
    let f = fixture(&THREE);
    let key = f.secrets.public_key();
    for role in Role::ALL {
        let b = bundle(&f, role);
        let v = verify_bundle(&b.bytes, &key, Some(role), Some(f.secrets.cluster_id())).unwrap();
        assert_eq!(v.role(), role);
        assert_eq!(v.cluster_id(), f.secrets.cluster_id());
        assert_eq!(v.config_id(), f.loaded.config.config_id());
        assert_eq!(v.manifest.basalt_version, env!("CARGO_PKG_VERSION"));
        // Same files as rendered, same modes, same bytes.
        let rendered = render(&f.loaded, &f.secrets, role).unwrap();
        assert_eq!(v.files.len(), rendered.len());
        for (a, b) in v.files.iter().zip(&rendered) {
            assert_eq!((&a.path, a.mode, &a.data), (&b.path, b.mode, &b.data));
        }
        // The reader entry point agrees.
        let r = verify_bundle_reader(&b.bytes[..], &key, Some(role), None).unwrap();
        assert_eq!(r.files, v.files);

        let mut want = common_paths();
        match role {
            Role::Master => {
                for p in [
                    "etc/etcd-client.env",
                    "etc/iam-signing-key.pem",
                    "etc/tls/etcd-client.crt",
                    "etc/tls/etcd-client.key",
                    "etc/tls/gateway.crt",
                    "etc/tls/gateway.key",
                ] {
                    want.insert(p.to_owned());
                }
                for m in THREE {
                    for p in [
                        "etc/etcd.env",
                        "etc/tls/etcd-peer.crt",
                        "etc/tls/etcd-peer.key",
                        "etc/tls/etcd-server.crt",
                        "etc/tls/etcd-server.key",
                    ] {
                        want.insert(format!("masters/{m}/{p}"));
                    }
                }
            }
            Role::Agent | Role::AgentPublic => {
                for p in [
                    "etc/agent.env",
                    "etc/attributes",
                    "etc/port_ranges",
                    "etc/tls/agent.crt",
                    "etc/tls/agent.key",
                ] {
                    want.insert(p.to_owned());
                }
            }
        }
        assert_eq!(paths(&v), want, "{role}");
        // Private keys and the join credential are 0600, scripts 0755, the rest 0644.
        for file in &v.files {
            let want_mode = if file.path.ends_with(".key")
                || file.path.ends_with("iam-signing-key.pem")
                || file.path.ends_with("join-credential")
            {
                0o600
            } else if file.path.starts_with("bin/") {
                0o755
            } else {
                0o644
            };
            assert_eq!(file.mode, want_mode, "{role} {}", file.path);
        }
    }
}

fn text(v: &basalt_genconf::verify::VerifiedBundle, path: &str) -> String {
    String::from_utf8(
        v.file(path)
            .unwrap_or_else(|| panic!("{path}"))
            .data
            .clone(),
    )
    .unwrap()
}

#[test]
fn rendered_contents_follow_the_config() {
    let f = fixture(&THREE);
    let key = f.secrets.public_key();
    let verified = |role| verify_bundle(&bundle(&f, role).bytes, &key, Some(role), None).unwrap();
    let master = verified(Role::Master);
    let agent = verified(Role::Agent);
    let public = verified(Role::AgentPublic);

    let etcd = text(&master, "masters/10.0.0.2/etc/etcd.env");
    assert!(etcd.contains("\nETCD_NAME=master-10.0.0.2\n"), "{etcd}");
    assert!(etcd.contains(
        "\nETCD_INITIAL_CLUSTER=master-10.0.0.1=https://10.0.0.1:2380,master-10.0.0.2=https://10.0.0.2:2380,master-10.0.0.3=https://10.0.0.3:2380\n"
    ));
    assert!(etcd.contains("\nETCD_HEARTBEAT_INTERVAL=150\n"));
    assert!(etcd.contains("\nETCD_ELECTION_TIMEOUT=1500\n"));
    assert!(etcd.contains("\nETCD_LISTEN_PEER_URLS=https://10.0.0.2:2380\n"));
    assert!(etcd.contains(&format!(
        "\nETCD_INITIAL_CLUSTER_TOKEN=basalt-{}\n",
        f.secrets.cluster_id()
    )));
    assert!(text(&master, "etc/etcd-client.env").contains(
        "ETCDCTL_ENDPOINTS=https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379\n"
    ));
    for v in [&master, &agent, &public] {
        assert_eq!(
            text(v, "etc/master_list"),
            "[\"10.0.0.1\",\"10.0.0.2\",\"10.0.0.3\"]\n"
        );
        assert_eq!(
            text(v, "etc/resolvers"),
            "203.0.113.53\n203.0.113.54:5353\n"
        );
        assert_eq!(text(v, "etc/dns_search"), "corp.example\nexample.org\n");
        assert_eq!(
            text(v, "etc/cluster-id"),
            format!("{}\n", f.secrets.cluster_id())
        );
        assert_eq!(
            text(v, "etc/join-credential"),
            format!("{}\n", f.secrets.join_credential())
        );
        assert_eq!(text(v, "etc/cluster.pub"), key.to_pem());
        assert_eq!(text(v, "bin/ip-detect"), bundle_support::IP_DETECT);
        assert_eq!(
            text(v, "bin/ip-detect-public"),
            bundle_support::IP_DETECT_PUBLIC
        );
        assert_eq!(
            text(v, "bin/fault-domain-detect"),
            bundle_support::FAULT_DOMAIN
        );
        assert!(text(v, "etc/proxy.env").contains("HTTP_PROXY=http://proxy.example:3128\n"));
        assert!(text(v, "etc/proxy.env").contains("NO_PROXY="));
    }
    assert_eq!(text(&master, "etc/role"), "master\n");
    assert_eq!(text(&public, "etc/role"), "agent-public\n");
    // The masters get the real config; agents get the password hash masked.
    assert_eq!(
        text(&master, "etc/cluster.toml"),
        f.loaded.config.canonical_toml()
    );
    assert!(text(&master, "etc/cluster.toml").contains(PASSWORD_HASH));
    for v in [&agent, &public] {
        let t = text(v, "etc/cluster.toml");
        assert!(
            !t.contains(PASSWORD_HASH),
            "agent config leaks the password hash"
        );
        assert!(t.contains("********"));
    }
    // Port ranges and attributes per role.
    assert_eq!(
        text(&agent, "etc/port_ranges"),
        "[1025-2180,2182-3887,3889-5049,5052-8079,8082-8180,8182-32000]\n"
    );
    assert_eq!(
        text(&public, "etc/port_ranges"),
        "[1-21,23-5050,5052-32000]\n"
    );
    assert_eq!(text(&agent, "etc/attributes"), "disk:ssd;rack:r1\n");
    assert_eq!(
        text(&public, "etc/attributes"),
        "disk:ssd;public_ip:true;rack:r1\n"
    );
    assert!(text(&agent, "etc/agent.env").contains("BASALT_AGENT_DEFAULT_ROLE=*\n"));
    assert!(text(&public, "etc/agent.env").contains("BASALT_AGENT_DEFAULT_ROLE=slave_public\n"));
    assert!(text(&agent, "etc/agent.env").contains("BASALT_AGENT_RESERVED_MEMORY_MB=2048\n"));
}

#[test]
fn a_master_picks_its_own_files_by_ip() {
    let f = fixture(&THREE);
    let key = f.secrets.public_key();
    let v = verify_bundle(
        &bundle(&f, Role::Master).bytes,
        &key,
        Some(Role::Master),
        None,
    )
    .unwrap();
    let me: Ipv4Addr = "10.0.0.3".parse().unwrap();
    let files = v.node_files(me).unwrap();
    let names: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert!(names.contains("etc/etcd.env"));
    assert!(names.contains("etc/tls/etcd-peer.key"));
    assert!(names.contains("etc/tls/gateway.key"));
    assert!(
        !names.iter().any(|n| n.starts_with("masters/")),
        "{names:?}"
    );
    let peer = files
        .iter()
        .find(|f| f.path == "etc/tls/etcd-peer.crt")
        .unwrap();
    assert_eq!(
        peer.data,
        f.secrets
            .leaf(basalt_genconf::secrets::Leaf::EtcdPeer(me))
            .unwrap()
            .cert_pem
            .as_bytes()
    );
    assert!(
        String::from_utf8(
            files
                .iter()
                .find(|f| f.path == "etc/etcd.env")
                .unwrap()
                .data
                .clone()
        )
        .unwrap()
        .contains("ETCD_NAME=master-10.0.0.3\n")
    );
    let err = v.node_files("10.0.0.4".parse().unwrap()).unwrap_err();
    assert!(
        matches!(&err, VerifyError::NotAMaster { masters, .. } if masters == "10.0.0.1, 10.0.0.2, 10.0.0.3"),
        "{err}"
    );
    // Agents install every file as is.
    let a = verify_bundle(&bundle(&f, Role::Agent).bytes, &key, None, None).unwrap();
    assert_eq!(a.node_files("10.9.9.9".parse().unwrap()).unwrap(), a.files);
}

#[test]
fn same_input_and_secrets_give_byte_identical_bundles() {
    let f = fixture(&THREE);
    // A second Secrets value read back from disk, as a later run would.
    let reread = Secrets::load_or_create(&f.dir, &f.loaded.config).unwrap();
    assert!(reread.events().is_empty());
    for role in Role::ALL {
        let a = bundle(&f, role);
        let b = bundle(&f, role);
        let c = render_bundle(&f.loaded, &reread, role).unwrap();
        assert!(
            a.bytes == b.bytes && a.bytes == c.bytes,
            "{role} bundle differs between runs"
        );
        // Canonical headers: fixed order, mtime 0, root owner, no names.
        let mut ar = tar::Archive::new(&a.bytes[..]);
        let mut order = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            assert_eq!(h.groupname_bytes(), Some(&b""[..]));
            assert!(h.entry_type().is_file());
            order.push(e.path().unwrap().to_string_lossy().into_owned());
            let mut sink = Vec::new();
            e.read_to_end(&mut sink).unwrap();
        }
        assert_eq!(order[0], MANIFEST_PATH);
        assert_eq!(order[1], SIGNATURE_PATH);
        let mut sorted = order[2..].to_vec();
        sorted.sort();
        assert_eq!(order[2..], sorted[..]);
    }
    // A different config gives a different config id (and bundle).
    let other = bundle_support::loaded(&["10.0.0.1", "10.0.0.2", "10.0.0.4"]);
    assert_ne!(other.config.config_id(), f.loaded.config.config_id());
}

#[test]
fn a_bundle_verified_as_another_role_is_refused() {
    let f = fixture(&THREE);
    let key = f.secrets.public_key();
    for built in Role::ALL {
        let b = bundle(&f, built);
        for expected in Role::ALL {
            let r = verify_bundle(&b.bytes, &key, Some(expected), Some(f.secrets.cluster_id()));
            if built == expected {
                assert!(r.is_ok());
            } else {
                match r {
                    Err(VerifyError::RoleMismatch { expected: e, found }) => {
                        assert_eq!((e, found), (expected, built))
                    }
                    other => panic!("{built} as {expected}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn another_clusters_key_or_id_is_refused() {
    let ours = fixture(&THREE);
    let theirs = fixture(&THREE);
    assert_ne!(ours.secrets.cluster_id(), theirs.secrets.cluster_id());
    for role in Role::ALL {
        let b = bundle(&ours, role);
        let err =
            verify_bundle(&b.bytes, &theirs.secrets.public_key(), Some(role), None).unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature), "{role}: {err}");
        let err = verify_bundle(
            &b.bytes,
            &ours.secrets.public_key(),
            Some(role),
            Some(theirs.secrets.cluster_id()),
        )
        .unwrap_err();
        match err {
            VerifyError::ClusterMismatch { expected, found } => {
                assert_eq!(expected, theirs.secrets.cluster_id());
                assert_eq!(found, ours.secrets.cluster_id());
            }
            other => panic!("{role}: {other}"),
        }
    }
}

#[test]
fn truncated_or_extended_bundles_are_refused() {
    let f = fixture(&["10.0.0.1"]);
    let key = f.secrets.public_key();
    let b = bundle(&f, Role::Agent);
    // Cut anywhere on a block boundary or inside data: never accepted.
    for cut in (0..b.bytes.len())
        .step_by(97)
        .chain([b.bytes.len() - 1, b.bytes.len() - 512])
    {
        assert!(
            verify_bundle(&b.bytes[..cut], &key, None, None).is_err(),
            "accepted a bundle cut to {cut} bytes"
        );
    }
    let mut longer = b.bytes.clone();
    longer.extend_from_slice(&[0u8; 512]);
    assert!(matches!(
        verify_bundle(&longer, &key, None, None),
        Err(VerifyError::BadTrailer { .. })
    ));
    let mut longer = b.bytes.clone();
    longer.push(b'x');
    assert!(matches!(
        verify_bundle(&longer, &key, None, None),
        Err(VerifyError::BadTrailer { .. })
    ));
    assert!(verify_bundle(b"", &key, None, None).is_err());
}

/// Components on every node read the installed `etc/cluster.toml` with
/// `Config::from_toml_str`: agents' copies carry the masked password hash, which must
/// load there (and only there: the operator's loader still refuses it).
#[test]
fn every_roles_installed_cluster_toml_loads_on_the_node() {
    use basalt_genconf::config::{Config, MASK};
    let f = fixture(&THREE);
    for role in Role::ALL {
        let files = render(&f.loaded, &f.secrets, role).unwrap();
        let toml = files.iter().find(|x| x.path == "etc/cluster.toml").unwrap();
        let text = String::from_utf8(toml.data.clone()).unwrap();
        let c = Config::from_toml_str(&text, std::path::Path::new("/run/basalt/etc/cluster.toml"))
            .unwrap_or_else(|e| panic!("{role:?}: {e}"));
        assert_eq!(c.masters, f.loaded.config.masters);
        let hash = c.auth.superuser_password_hash.unwrap();
        if role.is_agent() {
            assert_eq!(hash, MASK);
        } else {
            assert_eq!(hash, PASSWORD_HASH);
        }
    }
    // The operator's config folder: a masked hash is not a password hash.
    let dir = tempfile::tempdir().unwrap();
    let agent = render(&f.loaded, &f.secrets, Role::Agent).unwrap();
    let text = agent.iter().find(|x| x.path == "etc/cluster.toml").unwrap();
    std::fs::write(dir.path().join("config.toml"), &text.data).unwrap();
    std::fs::write(dir.path().join("ip-detect"), "#!/bin/sh\necho 10.0.0.1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("ip-detect"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let e = basalt_genconf::config::load(&dir.path().join("config.toml"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("superuser_password_hash"), "{e}");
}
