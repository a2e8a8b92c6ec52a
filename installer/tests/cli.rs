//! The `basalt-installer` binary end to end, on a copy of the example genconf/:
//! each subcommand's output and its stable exit code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn installer() -> Command {
    Command::new(env!("CARGO_BIN_EXE_basalt-installer"))
}

/// A temp copy of the repo's example genconf/ (config + scripts, no secrets).
fn example() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("genconf");
    basalt_genconf::example::copy_example(&dst).unwrap();
    (tmp, dst)
}

fn run(dir: &Path, args: &[&str]) -> Output {
    installer()
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_accepts_the_example() {
    let (_t, dir) = example();
    let out = run(&dir, &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("valid (1 master"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn invalid_config_exits_3_and_lists_every_problem() {
    let (_t, dir) = example();
    let cfg = fs::read_to_string(dir.join("config.toml")).unwrap();
    let cfg = cfg
        .replace(
            "masters = [\"192.0.2.10\"]",
            "masters = [\"192.0.2.10\", \"192.0.2.11\"]",
        )
        .replace(
            "bootstrap_url = \"http://192.0.2.5:8080\"",
            "bootstrap_url = \"http://192.0.2.5:8080/\"",
        );
    fs::write(dir.join("config.toml"), cfg).unwrap();
    let out = run(&dir, &["validate"]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("masters: 2 entries"), "{err}");
    assert!(
        err.contains("bootstrap_url: must not end with '/'"),
        "{err}"
    );
    // Nothing was generated from an invalid config.
    let out = run(&dir, &["genconf"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(!dir.join("secrets").exists());
    assert!(!dir.join("serve").exists());
}

#[test]
fn missing_config_exits_5() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        text(&out.stderr).contains("config.toml"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn genconf_then_verify_every_role_and_reject_tampering() {
    let (_t, dir) = example();
    let out = run(&dir, &["genconf"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("cluster id"));
    let serve = dir.join("serve");
    for f in [
        "cluster.pub",
        "cluster.pub.sha256",
        "index.json",
        "summary.txt",
    ] {
        assert!(serve.join(f).is_file(), "{f}");
    }
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(serve.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["bundles"].as_array().unwrap().len(), 3);
    for role in ["master", "agent", "agent-public"] {
        let b = serve.join(format!("bundles/{role}.tar"));
        let out = run(&dir, &["verify", b.to_str().unwrap(), "--role", role]);
        assert_eq!(out.status.code(), Some(0), "{role}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!("role {role}")));
        // Secrets and bundles are private.
        let mode = fs::metadata(&b).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{role}");
    }
    // Wrong role: exit 4, naming both roles.
    let agent = serve.join("bundles/agent.tar");
    let out = run(
        &dir,
        &["verify", agent.to_str().unwrap(), "--role", "master"],
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("expected master"),
        "{}",
        text(&out.stderr)
    );
    // One flipped byte in the middle of the bundle: exit 4.
    let mut bytes = fs::read(&agent).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x01;
    let tampered = dir.join("tampered.tar");
    fs::write(&tampered, &bytes).unwrap();
    let out = run(&dir, &["verify", tampered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
    // A wrong cluster id: exit 4.
    let out = run(
        &dir,
        &[
            "verify",
            agent.to_str().unwrap(),
            "--cluster-id",
            "not-this-cluster",
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    // Unknown role on the command line is a usage error (clap: exit 2).
    let out = run(
        &dir,
        &["verify", agent.to_str().unwrap(), "--role", "slave"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("master, agent, agent-public"));
    // A missing bundle is I/O: exit 5.
    let out = run(&dir, &["verify", dir.join("nope.tar").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn genconf_is_deterministic_and_reuses_secrets() {
    let (_t, dir) = example();
    assert_eq!(run(&dir, &["genconf"]).status.code(), Some(0));
    let first: Vec<Vec<u8>> = ["master", "agent", "agent-public"]
        .iter()
        .map(|r| fs::read(dir.join(format!("serve/bundles/{r}.tar"))).unwrap())
        .collect();
    let key1 = fs::read(dir.join("secrets/signing-key.pem")).unwrap();
    let out = run(&dir, &["genconf"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !text(&out.stderr).contains("created"),
        "second run created secrets"
    );
    for (i, r) in ["master", "agent", "agent-public"].iter().enumerate() {
        let again = fs::read(dir.join(format!("serve/bundles/{r}.tar"))).unwrap();
        assert!(again == first[i], "{r} bundle changed between runs");
    }
    assert_eq!(key1, fs::read(dir.join("secrets/signing-key.pem")).unwrap());
}

#[test]
fn rotate_prints_what_breaks_and_replaces_only_that_secret() {
    let (_t, dir) = example();
    assert_eq!(run(&dir, &["genconf"]).status.code(), Some(0));
    let ca = fs::read(dir.join("secrets/ca.crt")).unwrap();
    let key = fs::read(dir.join("secrets/signing-key.pem")).unwrap();
    let old_pub = fs::read(dir.join("serve/cluster.pub")).unwrap();
    let out = run(&dir, &["genconf", "--rotate", "signing-key"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("rotating signing-key"), "{err}");
    assert!(err.contains("new image"), "{err}");
    assert_ne!(key, fs::read(dir.join("secrets/signing-key.pem")).unwrap());
    assert_eq!(ca, fs::read(dir.join("secrets/ca.crt")).unwrap());
    // Bundles signed with the new key no longer verify with the old public key.
    let old = dir.join("old.pub");
    fs::write(&old, old_pub).unwrap();
    let agent = dir.join("serve/bundles/agent.tar");
    let out = run(
        &dir,
        &[
            "verify",
            agent.to_str().unwrap(),
            "--public-key",
            old.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    // An unknown rotation target is rejected before anything changes.
    let out = run(&dir, &["genconf", "--rotate", "everything"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("everything"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn hash_password_output_is_accepted_by_the_config() {
    let (_t, dir) = example();
    let mut child = installer()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hash = text(&out.stdout).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(basalt_genconf::password::verify_password("correct horse", &hash).unwrap());
    // Put it in the config: still valid.
    let cfg = fs::read_to_string(dir.join("config.toml")).unwrap();
    let start = cfg.find("superuser_password_hash = \"").unwrap();
    let end = start + cfg[start..].find('\n').unwrap();
    let cfg = format!(
        "{}superuser_password_hash = \"{hash}\"{}",
        &cfg[..start],
        &cfg[end..]
    );
    fs::write(dir.join("config.toml"), cfg).unwrap();
    assert_eq!(run(&dir, &["validate"]).status.code(), Some(0));
    // An empty password is refused.
    let mut child = installer()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("must not be empty"));
}

#[test]
fn show_config_expanded_fills_defaults_and_masks_secrets() {
    let (_t, dir) = example();
    let out = run(&dir, &["show-config", "--expanded"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("vip_range = \"11.0.0.0/8\""), "{s}");
    assert!(s.contains("heartbeat_interval_ms = 100"), "{s}");
    assert!(s.contains("********"), "{s}");
    assert!(!s.contains("$argon2id$"), "password hash leaked: {s}");
}
