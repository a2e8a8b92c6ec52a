//! `generate`: a genconf folder on disk → the serve folder; verified from the
//! files alone, deterministic across runs, secrets reused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bundle_support;

use basalt_genconf::bundle::Role;
use basalt_genconf::generate::{BootstrapIndex, GenerateError, generate};
use basalt_genconf::verify::{ClusterPublicKey, verify_bundle};
use bundle_support::{mode, snapshot, write_genconf};
use sha2::{Digest, Sha256};

const FIVE: [&str; 5] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"];

#[test]
fn generate_writes_a_verifiable_deterministic_serve_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let genconf = tmp.path().join("genconf");
    write_genconf(&genconf, &FIVE);
    let out1 = genconf.join("serve");
    let g1 = generate(&genconf, &out1).unwrap();
    assert!(!g1.secret_events.is_empty(), "first run creates secrets");

    let files = snapshot(&out1);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "bundles/agent-public.tar",
            "bundles/agent.tar",
            "bundles/master.tar",
            "cluster.pub",
            "cluster.pub.sha256",
            "index.json",
            "summary.txt"
        ]
    );
    for role in Role::ALL {
        assert_eq!(mode(&out1.join(format!("bundles/{role}.tar"))), 0o600);
    }
    assert_eq!(mode(&out1.join("cluster.pub")), 0o644);

    // Everything a node or operator needs comes from the files alone.
    let key =
        ClusterPublicKey::from_pem(std::str::from_utf8(&files["cluster.pub"]).unwrap()).unwrap();
    assert_eq!(key, g1.public_key);
    assert_eq!(
        std::str::from_utf8(&files["cluster.pub.sha256"]).unwrap(),
        format!("{}\n", hex::encode(Sha256::digest(key.as_bytes())))
    );
    let index: BootstrapIndex = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(index, g1.index);
    assert_eq!(index.public_key_sha256, key.fingerprint());
    assert_eq!(index.bundles.len(), 3);
    for b in &index.bundles {
        let bytes = &files[&b.path];
        assert_eq!(b.size, bytes.len() as u64);
        assert_eq!(b.sha256, hex::encode(Sha256::digest(bytes)));
        let v = verify_bundle(bytes, &key, Some(b.role), Some(&index.cluster_id)).unwrap();
        assert_eq!(v.config_id(), index.config_id);
    }
    let summary = std::str::from_utf8(&files["summary.txt"]).unwrap();
    assert_eq!(summary, g1.summary);
    assert!(
        summary.contains("masters         5 (quorum 3)"),
        "{summary}"
    );
    assert!(summary.contains(&index.cluster_id));
    assert!(summary.contains(&key.fingerprint()));

    // Second run into another folder: same secrets, byte-identical output.
    let secrets_before = snapshot(&genconf.join("secrets"));
    let out2 = tmp.path().join("serve2");
    let g2 = generate(&genconf, &out2).unwrap();
    assert!(g2.secret_events.is_empty(), "{:?}", g2.secret_events);
    assert_eq!(snapshot(&out2), files);
    assert_eq!(snapshot(&genconf.join("secrets")), secrets_before);
    // And again over the first folder.
    generate(&genconf, &out1).unwrap();
    assert_eq!(snapshot(&out1), files);
}

#[test]
fn generate_reports_config_errors_without_creating_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let genconf = tmp.path().join("genconf");
    write_genconf(&genconf, &["10.0.0.1", "10.0.0.2"]);
    let err = generate(&genconf, &genconf.join("serve")).unwrap_err();
    assert!(matches!(err, GenerateError::Config(_)), "{err}");
    assert!(err.to_string().contains("masters"), "{err}");
    assert!(!genconf.join("secrets").exists());
    assert!(!genconf.join("serve").exists());
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bundle is an ordinary tar, its signature an ordinary Ed25519 signature
/// and its certificates ordinary X.509: GNU tar and OpenSSL agree.
#[test]
fn gnu_tar_and_openssl_read_what_generate_writes() {
    use std::process::Command;
    let have = |b: &str| Command::new(b).arg("--version").output().is_ok();
    if !have("tar") || !have("openssl") {
        eprintln!("SKIP: needs GNU tar and openssl in PATH");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let genconf = tmp.path().join("genconf");
    write_genconf(&genconf, &["10.0.0.1"]);
    let serve = genconf.join("serve");
    generate(&genconf, &serve).unwrap();
    for role in Role::ALL {
        let x = tmp.path().join(format!("x-{role}"));
        std::fs::create_dir_all(&x).unwrap();
        let listing = run(Command::new("tar")
            .arg("-tvf")
            .arg(serve.join(format!("bundles/{role}.tar"))));
        assert!(listing.lines().all(|l| l.contains(" 0/0 ")), "{listing}");
        run(Command::new("tar")
            .arg("-xf")
            .arg(serve.join(format!("bundles/{role}.tar")))
            .arg("-C")
            .arg(&x));
        let verified = run(Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(serve.join("cluster.pub"))
            .arg("-in")
            .arg(x.join("manifest.toml"))
            .arg("-sigfile")
            .arg(x.join("manifest.toml.sig")));
        assert!(
            verified.contains("Signature Verified Successfully"),
            "{verified}"
        );
        assert_eq!(mode(&x.join("bin/ip-detect")), 0o755);
        let (leaf, dir) = if role == Role::Master {
            ("gateway.crt", x.join("etc/tls"))
        } else {
            ("agent.crt", x.join("etc/tls"))
        };
        let ok = run(Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(dir.join("ca.crt"))
            .arg(dir.join(leaf)));
        assert!(ok.contains(": OK"), "{ok}");
        if role == Role::Master {
            let peer = x.join("masters/10.0.0.1/etc/tls/etcd-peer.crt");
            let ok = run(Command::new("openssl")
                .args(["verify", "-purpose", "sslserver", "-CAfile"])
                .arg(dir.join("ca.crt"))
                .arg(&peer));
            assert!(ok.contains(": OK"), "{ok}");
            // The private key matches the certificate.
            let cert_pub = run(Command::new("openssl")
                .args(["x509", "-noout", "-pubkey", "-in"])
                .arg(&peer));
            let key_pub = run(Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(x.join("masters/10.0.0.1/etc/tls/etcd-peer.key")));
            assert_eq!(cert_pub, key_pub);
        }
    }
}
