//! `basalt-installer image build|verify` without building a real image (that is the QEMU
//! tests' job): verify against a hand-made image folder whose manifest is signed with the
//! cluster key genconf created, and build's refusals before any work starts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use basalt_genconf::config;
use basalt_genconf::secrets::{Secrets, secrets_dir};
use basalt_nodeimg::manifest::{ArtifactEntry, MANIFEST_FILE, Manifest, SCHEMA, SIGNATURE_FILE};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_basalt-installer"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The example genconf folder, generated (secrets + serve/).
fn generated() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("genconf");
    basalt_genconf::example::copy_example(&dir).unwrap();
    let out = run(&dir, &["genconf"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    (tmp, dir)
}

/// An image folder with two small artifacts and a manifest signed by `dir`'s cluster key.
fn signed_image(dir: &Path, image: &Path) {
    fs::create_dir_all(image).unwrap();
    fs::write(image.join("vmlinuz"), b"a kernel, more or less").unwrap();
    fs::write(image.join("root.erofs"), vec![7u8; 4096]).unwrap();
    let manifest = Manifest {
        schema: SCHEMA,
        role: "agent".into(),
        suite: "bookworm".into(),
        kernel_version: "6.1.0-test".into(),
        root_fs: "erofs".into(),
        root_hash: "00".repeat(32),
        cmdline: "root=/dev/mapper/root ro".into(),
        source_date_epoch: 1,
        base_key: "k".into(),
        inputs_digest: "d".into(),
        artifacts: vec![
            ArtifactEntry::measure(image, "kernel", "vmlinuz").unwrap(),
            ArtifactEntry::measure(image, "root", "root.erofs").unwrap(),
        ],
    };
    let bytes = manifest.to_bytes().unwrap();
    fs::write(image.join(MANIFEST_FILE), &bytes).unwrap();
    let loaded = config::load(&dir.join("config.toml")).unwrap();
    let secrets = Secrets::load_or_create(&secrets_dir(dir), &loaded.config).unwrap();
    fs::write(image.join(SIGNATURE_FILE), secrets.sign(&bytes)).unwrap();
}

#[test]
fn verify_accepts_a_signed_image_and_names_what_changed() {
    let (tmp, dir) = generated();
    let image = tmp.path().join("images/agent");
    signed_image(&dir, &image);
    let img = image.to_str().unwrap();

    let out = run(&dir, &["image", "verify", img]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("agent image, signature ok"),
        "{}",
        text(&out.stdout)
    );

    // one changed byte in an artifact: exit 4, the artifact named
    let root = image.join("root.erofs");
    let mut data = fs::read(&root).unwrap();
    data[100] ^= 1;
    fs::write(&root, &data).unwrap();
    let out = run(&dir, &["image", "verify", img]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("artifact root"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("sha256"),
        "{}",
        text(&out.stderr)
    );
    data[100] ^= 1;
    data.push(0);
    fs::write(&root, &data).unwrap();
    let out = run(&dir, &["image", "verify", img]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("4097 bytes"),
        "{}",
        text(&out.stderr)
    );
    data.pop();
    fs::write(&root, &data).unwrap();
    assert_eq!(run(&dir, &["image", "verify", img]).status.code(), Some(0));

    // an edited manifest no longer carries the cluster's signature
    let m = image.join(MANIFEST_FILE);
    let original = fs::read_to_string(&m).unwrap();
    fs::write(&m, original.replace("bookworm", "trixie")).unwrap();
    let out = run(&dir, &["image", "verify", img]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("is not signed by the cluster key"),
        "{}",
        text(&out.stderr)
    );
    fs::write(&m, original).unwrap();

    // no signature at all
    let sig = image.join(SIGNATURE_FILE);
    let saved = fs::read(&sig).unwrap();
    fs::remove_file(&sig).unwrap();
    let out = run(&dir, &["image", "verify", img]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains(SIGNATURE_FILE),
        "{}",
        text(&out.stderr)
    );
    fs::write(&sig, saved).unwrap();

    // another cluster's key: rotating the signing key makes the old signature foreign
    let out = run(&dir, &["genconf", "--rotate", "signing-key"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&dir, &["image", "verify", img]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("is not signed by the cluster key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn build_refuses_before_doing_anything() {
    // no genconf yet: say what to run first
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("genconf");
    basalt_genconf::example::copy_example(&dir).unwrap();
    let out = run(
        &dir,
        &[
            "image",
            "build",
            "--role",
            "agent",
            "--basaltd",
            "/bin/true",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("run `basalt-installer genconf` first"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.join("secrets").exists(),
        "build must not create secrets"
    );
    assert!(!dir.join("serve/images").exists());

    // generated, but the units folder is wrong: named, exit 5, nothing built
    let (_t, dir) = generated();
    let out = run(
        &dir,
        &[
            "image",
            "build",
            "--role",
            "agent",
            "--basaltd",
            "/bin/true",
            "--units",
            "/nonexistent/units",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--units /nonexistent/units"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("serve/images").exists());

    // an unknown role is a usage error
    let out = run(&dir, &["image", "build", "--role", "worker"]);
    assert_eq!(out.status.code(), Some(2));
}
