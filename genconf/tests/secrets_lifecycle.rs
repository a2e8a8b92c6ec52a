//! Secrets: creation, permissions, reuse across runs, leaf re-issue when the
//! config changes, rotation of exactly one secret, and refusal of corrupt,
//! missing or exposed files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bundle_support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use basalt_genconf::secrets::{Leaf, RotateTarget, SecretEvent, Secrets, SecretsError, rotate};
use bundle_support::{config, mode, snapshot};

const THREE: [&str; 3] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn fresh() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    (tmp, dir)
}

fn expected_files(masters: &[&str]) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = [
        "cluster-id",
        "signing-key.pem",
        "ca.crt",
        "ca.key",
        "iam-signing-key.pem",
        "join-credential",
        "tls/etcd-client.crt",
        "tls/etcd-client.key",
        "tls/gateway.crt",
        "tls/gateway.key",
        "tls/agent.crt",
        "tls/agent.key",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for m in masters {
        for kind in ["etcd-peer", "etcd-server"] {
            s.insert(format!("tls/{kind}-{m}.crt"));
            s.insert(format!("tls/{kind}-{m}.key"));
        }
    }
    s
}

#[test]
fn creates_everything_with_private_permissions() {
    let (_tmp, dir) = fresh();
    let s = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    let files = snapshot(&dir);
    assert_eq!(
        files.keys().cloned().collect::<BTreeSet<_>>(),
        expected_files(&THREE)
    );
    assert_eq!(mode(&dir), 0o700, "secrets dir");
    assert_eq!(mode(&dir.join("tls")), 0o700, "tls dir");
    for name in files.keys() {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    // Every file was reported as created.
    let created: Vec<&SecretEvent> = s
        .events()
        .iter()
        .filter(|e| matches!(e, SecretEvent::Created { .. }))
        .collect();
    let masters: Vec<Ipv4Addr> = THREE.iter().map(|m| ip(m)).collect();
    // 6 root files (cluster-id, signing key, CA cert + key, IAM key, join
    // credential) and one event per leaf (2 per master + etcd-client, gateway, agent).
    assert_eq!(Leaf::all_for(&masters).len(), 9);
    assert_eq!(created.len(), 6 + 9, "{created:?}");
    assert!(basalt_genconf::secrets::is_cluster_id(s.cluster_id()));
    assert_eq!(s.join_credential().len(), 64);
    assert!(s.ca_key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(s.iam_key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    // Every needed leaf is loaded.
    for m in THREE {
        assert!(s.leaf(Leaf::EtcdPeer(ip(m))).is_some());
        assert!(s.leaf(Leaf::EtcdServer(ip(m))).is_some());
    }
    // A signature made with the key verifies with the public half.
    let sig = s.sign(b"hello");
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, s.public_key().as_bytes())
        .verify(b"hello", &sig)
        .unwrap();
}

#[test]
fn certificates_carry_the_right_names_and_chain_to_the_ca() {
    let (_tmp, dir) = fresh();
    let s = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    let ca_der = pem_der(s.ca_cert_pem());
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(ca.is_ca());
    // ECDSA P-256 everywhere (etcd is Go: no Ed25519 TLS certs).
    assert_eq!(
        ca.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "CA key must be EC"
    );
    for (leaf, ck) in s.leaves() {
        let der = pem_der(&ck.cert_pem);
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        c.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(
            c.public_key().algorithm.algorithm.to_id_string(),
            "1.2.840.10045.2.1"
        );
        let names: BTreeSet<String> = c
            .subject_alternative_name()
            .unwrap()
            .map(|e| e.value.general_names.iter().map(general_name).collect())
            .unwrap_or_default();
        let eku = c.extended_key_usage().unwrap().unwrap().value.clone();
        match leaf {
            Leaf::EtcdPeer(m) | Leaf::EtcdServer(m) => {
                let want: BTreeSet<String> = [
                    format!("IPAddress({m})"),
                    "IPAddress(127.0.0.1)".to_owned(),
                    "DNSName(localhost)".to_owned(),
                ]
                .into();
                assert_eq!(names, want, "{leaf}");
                assert!(eku.server_auth && eku.client_auth, "{leaf}");
            }
            Leaf::Gateway => {
                for n in [
                    "DNSName(master.mesos)",
                    "DNSName(leader.mesos)",
                    "DNSName(localhost)",
                ] {
                    assert!(names.contains(n), "{n} in {names:?}");
                }
                for m in THREE {
                    assert!(names.contains(&format!("IPAddress({m})")), "{m}");
                }
                assert!(eku.server_auth);
            }
            Leaf::Agent => {
                assert!(c.subject().to_string().contains("CN=agent"));
                assert!(eku.client_auth && !eku.server_auth);
            }
            Leaf::EtcdClient => assert!(eku.client_auth && !eku.server_auth),
        }
    }
}

fn general_name(g: &x509_parser::extensions::GeneralName<'_>) -> String {
    use x509_parser::extensions::GeneralName;
    match g {
        GeneralName::DNSName(d) => format!("DNSName({d})"),
        GeneralName::IPAddress(b) if b.len() == 4 => {
            format!("IPAddress({})", Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        }
        other => format!("{other:?}"),
    }
}

fn pem_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

#[test]
fn second_run_reuses_every_file_byte_for_byte() {
    let (_tmp, dir) = fresh();
    let first = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    let before = snapshot(&dir);
    let second = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    assert_eq!(snapshot(&dir), before);
    assert!(second.events().is_empty(), "{:?}", second.events());
    assert_eq!(first.cluster_id(), second.cluster_id());
    assert_eq!(first.public_key(), second.public_key());
    assert_eq!(first.leaves(), second.leaves());
}

#[test]
fn changed_master_ips_reissue_only_the_affected_leaves() {
    let (_tmp, dir) = fresh();
    Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    let before = snapshot(&dir);
    let moved = ["10.0.0.1", "10.0.0.2", "10.0.0.9"];
    let s = Secrets::load_or_create(&dir, &config(&moved)).unwrap();
    let after = snapshot(&dir);

    // The gateway cert names every master: re-issued, and said so.
    assert!(
        s.events().iter().any(|e| matches!(e,
            SecretEvent::Reissued { leaf: Leaf::Gateway, reason } if reason.contains("10.0.0.9"))),
        "{:?}",
        s.events()
    );
    // The new master's certs are created; the old master's are reported unused.
    assert!(s.events().contains(&SecretEvent::Created {
        name: "tls/etcd-peer-10.0.0.9.crt".into()
    }));
    assert!(s.events().iter().any(|e| matches!(e,
        SecretEvent::Unused { path } if path.ends_with("etcd-peer-10.0.0.3.crt"))));
    // Everything else is untouched.
    let changed: BTreeSet<&str> = before
        .keys()
        .filter(|k| after.get(*k) != before.get(*k))
        .map(String::as_str)
        .collect();
    assert_eq!(
        changed,
        BTreeSet::from(["tls/gateway.crt", "tls/gateway.key"])
    );
    for m in ["10.0.0.1", "10.0.0.2"] {
        assert_eq!(
            s.leaf(Leaf::EtcdPeer(ip(m))).unwrap().cert_pem.as_bytes(),
            &before[&format!("tls/etcd-peer-{m}.crt")][..]
        );
    }
    // And the next run is quiet again (apart from the unused files).
    let again = Secrets::load_or_create(&dir, &config(&moved)).unwrap();
    assert!(
        again
            .events()
            .iter()
            .all(|e| matches!(e, SecretEvent::Unused { .. })),
        "{:?}",
        again.events()
    );
}

#[test]
fn a_leaf_from_another_ca_is_reissued() {
    let (_tmp, dir) = fresh();
    let (_tmp2, other) = fresh();
    Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    Secrets::load_or_create(&other, &config(&THREE)).unwrap();
    for ext in ["crt", "key"] {
        std::fs::copy(
            other.join(format!("tls/agent.{ext}")),
            dir.join(format!("tls/agent.{ext}")),
        )
        .unwrap();
    }
    let s = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    assert!(
        s.events().iter().any(|e| matches!(e,
            SecretEvent::Reissued { leaf: Leaf::Agent, reason } if reason.contains("not signed by the current cluster CA"))),
        "{:?}",
        s.events()
    );
    // A cert with the right names and CA but another common name (the etcd
    // server cert of the same master in place of its peer cert) is re-issued.
    for ext in ["crt", "key"] {
        std::fs::copy(
            dir.join(format!("tls/etcd-server-10.0.0.2.{ext}")),
            dir.join(format!("tls/etcd-peer-10.0.0.2.{ext}")),
        )
        .unwrap();
    }
    let s = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    assert!(
        s.events().iter().any(|e| matches!(e,
            SecretEvent::Reissued { leaf: Leaf::EtcdPeer(m), reason }
                if *m == ip("10.0.0.2") && reason.contains("common name"))),
        "{:?}",
        s.events()
    );
    // A cert whose key was swapped is re-issued too.
    std::fs::copy(dir.join("tls/gateway.key"), dir.join("tls/agent.key")).unwrap();
    let s = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    assert!(
        s.events().iter().any(|e| matches!(e,
            SecretEvent::Reissued { leaf: Leaf::Agent, reason } if reason.contains("does not belong to the key"))),
        "{:?}",
        s.events()
    );
}

fn changed_files(
    before: &std::collections::BTreeMap<String, Vec<u8>>,
    after: &std::collections::BTreeMap<String, Vec<u8>>,
) -> BTreeSet<String> {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "rotation must not add or remove files"
    );
    before
        .keys()
        .filter(|k| before[*k] != after[*k])
        .cloned()
        .collect()
}

#[test]
fn rotate_replaces_only_the_named_secret() {
    let all_leaves: BTreeSet<String> = expected_files(&THREE)
        .into_iter()
        .filter(|f| f.starts_with("tls/"))
        .collect();
    let cases: [(RotateTarget, BTreeSet<String>); 5] = [
        (
            RotateTarget::SigningKey,
            ["signing-key.pem".to_owned()].into(),
        ),
        (
            RotateTarget::IamKey,
            ["iam-signing-key.pem".to_owned()].into(),
        ),
        (
            RotateTarget::JoinCredential,
            ["join-credential".to_owned()].into(),
        ),
        (RotateTarget::Certs, all_leaves.clone()),
        (RotateTarget::Ca, {
            let mut s = all_leaves.clone();
            s.insert("ca.crt".to_owned());
            s.insert("ca.key".to_owned());
            s
        }),
    ];
    for (target, want) in cases {
        let (_tmp, dir) = fresh();
        let old = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
        let before = snapshot(&dir);
        let r = rotate(&dir, &config(&THREE), target).unwrap();
        let after = snapshot(&dir);
        assert_eq!(changed_files(&before, &after), want, "{target}");
        assert_eq!(r.target, target);
        assert_eq!(
            r.replaced.iter().cloned().collect::<BTreeSet<_>>(),
            want,
            "{target}"
        );
        assert!(r.breaks.len() > 40, "{target}: {}", r.breaks);
        for name in after.keys() {
            assert_eq!(mode(&dir.join(name)), 0o600, "{target}: {name}");
        }
        // The rotated set loads cleanly and keeps the cluster id.
        let reloaded = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
        assert!(
            reloaded.events().is_empty(),
            "{target}: {:?}",
            reloaded.events()
        );
        assert_eq!(reloaded.cluster_id(), old.cluster_id());
        assert_eq!(
            reloaded.public_key() != old.public_key(),
            target == RotateTarget::SigningKey,
            "{target}"
        );
    }
}

#[test]
fn rotate_breakage_texts_name_the_consequence() {
    assert!(RotateTarget::SigningKey.breaks().contains("new image"));
    assert!(RotateTarget::Ca.breaks().contains("every leaf certificate"));
    assert!(RotateTarget::IamKey.breaks().contains("token"));
    assert!(RotateTarget::JoinCredential.breaks().contains("agent"));
    assert!(RotateTarget::Certs.breaks().contains("same CA"));
}

#[test]
fn rotate_refuses_a_folder_without_a_cluster() {
    let (_tmp, dir) = fresh();
    let err = rotate(&dir, &config(&THREE), RotateTarget::Ca).unwrap_err();
    assert!(
        matches!(&err, SecretsError::Missing { path, .. } if path.ends_with("cluster-id")),
        "{err}"
    );
    assert!(
        !dir.join("ca.key").exists(),
        "rotate must not create secrets"
    );
}

/// Writes `bytes` over `name` keeping mode 0600.
fn clobber(dir: &Path, name: &str, bytes: &[u8]) {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_corrupt_secret_is_an_error_naming_the_file_and_is_left_alone() {
    let names = [
        "cluster-id",
        "signing-key.pem",
        "ca.crt",
        "ca.key",
        "iam-signing-key.pem",
        "join-credential",
        "tls/gateway.crt",
        "tls/gateway.key",
        "tls/etcd-peer-10.0.0.2.key",
    ];
    for name in names {
        for garbage in [
            &b"garbage\n"[..],
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            b"\xff\xfe",
        ] {
            let (_tmp, dir) = fresh();
            Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
            clobber(&dir, name, garbage);
            let before = snapshot(&dir);
            let err = Secrets::load_or_create(&dir, &config(&THREE)).unwrap_err();
            match &err {
                SecretsError::Corrupt { path, .. } => {
                    assert!(
                        path.ends_with(name),
                        "{name}: error names {}",
                        path.display()
                    )
                }
                other => panic!("{name}: expected Corrupt, got {other}"),
            }
            assert!(err.to_string().contains(name), "{name}: {err}");
            assert_eq!(snapshot(&dir), before, "{name}: nothing may be rewritten");
        }
    }
}

#[test]
fn ca_cert_and_key_that_do_not_match_are_refused() {
    let (_tmp, dir) = fresh();
    let (_tmp2, other) = fresh();
    Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    Secrets::load_or_create(&other, &config(&THREE)).unwrap();
    std::fs::copy(other.join("ca.key"), dir.join("ca.key")).unwrap();
    let err = Secrets::load_or_create(&dir, &config(&THREE)).unwrap_err();
    assert!(
        matches!(&err, SecretsError::Corrupt { path, .. } if path.ends_with("ca.crt")),
        "{err}"
    );
}

#[test]
fn a_missing_root_secret_of_an_existing_cluster_is_not_recreated() {
    for (name, target) in [
        ("signing-key.pem", RotateTarget::SigningKey),
        ("ca.key", RotateTarget::Ca),
        ("ca.crt", RotateTarget::Ca),
        ("iam-signing-key.pem", RotateTarget::IamKey),
        ("join-credential", RotateTarget::JoinCredential),
    ] {
        let (_tmp, dir) = fresh();
        Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
        std::fs::remove_file(dir.join(name)).unwrap();
        let err = Secrets::load_or_create(&dir, &config(&THREE)).unwrap_err();
        match &err {
            SecretsError::Missing { path, rotate } => {
                assert!(path.ends_with(name), "{name}");
                assert_eq!(*rotate, target, "{name}");
            }
            other => panic!("{name}: expected Missing, got {other}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("--rotate {}", target.name())),
            "{err}"
        );
        assert!(!dir.join(name).exists(), "{name} must not be re-created");
    }
    // Rotating is the deliberate way out: it replaces the missing secret.
    for (name, target) in [
        ("signing-key.pem", RotateTarget::SigningKey),
        ("ca.key", RotateTarget::Ca),
        ("join-credential", RotateTarget::JoinCredential),
    ] {
        let (_tmp, dir) = fresh();
        Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
        std::fs::remove_file(dir.join(name)).unwrap();
        rotate(&dir, &config(&THREE), target).unwrap();
        let s = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
        assert!(s.events().is_empty(), "{name}: {:?}", s.events());
    }
    // ... and a corrupt one; rotating something else leaves the folder refused.
    let (_tmp, dir) = fresh();
    Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    clobber(&dir, "iam-signing-key.pem", b"garbage");
    let before = snapshot(&dir);
    assert!(matches!(
        rotate(&dir, &config(&THREE), RotateTarget::JoinCredential),
        Err(SecretsError::Corrupt { path, .. }) if path.ends_with("iam-signing-key.pem")
    ));
    assert_eq!(snapshot(&dir), before, "a refused rotation changes nothing");
    rotate(&dir, &config(&THREE), RotateTarget::IamKey).unwrap();
    Secrets::load_or_create(&dir, &config(&THREE)).unwrap();

    // A missing leaf is simply issued.
    let (_tmp, dir) = fresh();
    Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    std::fs::remove_file(dir.join("tls/agent.key")).unwrap();
    let s = Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    assert!(s.events().iter().any(|e| matches!(e,
        SecretEvent::Reissued { leaf: Leaf::Agent, reason } if reason.contains("agent.key is missing"))));
}

#[test]
fn secrets_readable_by_others_are_refused() {
    let (_tmp, dir) = fresh();
    Secrets::load_or_create(&dir, &config(&THREE)).unwrap();
    let key = dir.join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Secrets::load_or_create(&dir, &config(&THREE)).unwrap_err();
    assert!(
        matches!(&err, SecretsError::InsecurePermissions { path, mode: 0o644, .. } if path == &key),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Secrets::load_or_create(&dir, &config(&THREE)).unwrap_err();
    assert!(
        matches!(&err, SecretsError::InsecurePermissions { path, want: 0o700, .. } if path == &dir),
        "{err}"
    );
}
