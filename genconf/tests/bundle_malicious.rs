//! Archives crafted by hand and signed with the real cluster key: the verifier
//! must still refuse unsafe or inconsistent content, each with its own error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bundle_support;

use basalt_genconf::bundle::{
    MANIFEST_PATH, Manifest, ManifestFile, Mode, Role, SIGNATURE_PATH, canonical_header,
};
use basalt_genconf::secrets::Secrets;
use basalt_genconf::verify::{MAX_BUNDLE_BYTES, VerifyError, verify_bundle, verify_bundle_reader};
use sha2::{Digest, Sha256};

struct Env {
    _tmp: tempfile::TempDir,
    secrets: Secrets,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = Secrets::load_or_create(
        &tmp.path().join("secrets"),
        &bundle_support::config(&["10.0.0.1"]),
    )
    .unwrap();
    Env { _tmp: tmp, secrets }
}

fn manifest(env: &Env, files: &[(&str, u32, &[u8])]) -> Manifest {
    Manifest {
        schema: 1,
        cluster_id: env.secrets.cluster_id().to_owned(),
        config_id: "ab".repeat(32),
        role: Role::Agent,
        basalt_version: "0.1.0".to_owned(),
        files: files
            .iter()
            .map(|(p, m, d)| ManifestFile {
                path: (*p).to_owned(),
                mode: Mode(*m),
                size: d.len() as u64,
                sha256: hex::encode(Sha256::digest(d)),
            })
            .collect(),
    }
}

/// One raw archive member: a header (checksum set by `archive`) and data.
struct Member {
    header: tar::Header,
    data: Vec<u8>,
}

fn regular(path: &str, mode: u32, data: &[u8]) -> Member {
    Member {
        header: canonical_header(path, mode, data.len() as u64).unwrap(),
        data: data.to_vec(),
    }
}

/// A regular-file header whose name field holds raw `name` (bypassing the tar
/// crate's own path checks).
fn raw_named(name: &[u8], data: &[u8]) -> Member {
    let mut m = regular("placeholder", 0o644, data);
    let field = &mut m.header.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name);
    m
}

fn special(path: &str, kind: tar::EntryType) -> Member {
    let mut h = canonical_header(path, 0o644, 0).unwrap();
    h.set_entry_type(kind);
    if kind == tar::EntryType::Symlink || kind == tar::EntryType::Link {
        h.set_link_name("/etc/shadow").unwrap();
    }
    Member {
        header: h,
        data: Vec::new(),
    }
}

fn archive(members: Vec<Member>) -> Vec<u8> {
    let mut out = Vec::new();
    for mut m in members {
        m.header.set_cksum();
        out.extend_from_slice(m.header.as_bytes());
        out.extend_from_slice(&m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// manifest.toml + its signature + `members`.
fn signed(env: &Env, manifest_text: &str, members: Vec<Member>) -> Vec<u8> {
    let sig = env.secrets.sign(manifest_text.as_bytes());
    let mut all = vec![
        regular(MANIFEST_PATH, 0o644, manifest_text.as_bytes()),
        regular(SIGNATURE_PATH, 0o644, &sig),
    ];
    all.extend(members);
    archive(all)
}

fn verify(env: &Env, bytes: &[u8]) -> Result<basalt_genconf::verify::VerifiedBundle, VerifyError> {
    verify_bundle(bytes, &env.secrets.public_key(), None, None)
}

const A: &[u8] = b"alpha\n";

#[test]
fn a_hand_made_canonical_bundle_is_accepted() {
    // Baseline: proves the crafting helpers produce what the verifier wants,
    // so every refusal below is due to the one thing each case changes.
    let env = env();
    let m = toml::to_string(&manifest(&env, &[("etc/a", 0o644, A)])).unwrap();
    let v = verify(&env, &signed(&env, &m, vec![regular("etc/a", 0o644, A)])).unwrap();
    assert_eq!(v.files.len(), 1);
}

#[test]
fn links_devices_and_directories_are_refused() {
    let env = env();
    let m = toml::to_string(&manifest(&env, &[])).unwrap();
    for (kind, flag) in [
        (tar::EntryType::Symlink, '2'),
        (tar::EntryType::Link, '1'),
        (tar::EntryType::Directory, '5'),
        (tar::EntryType::Char, '3'),
        (tar::EntryType::Block, '4'),
        (tar::EntryType::Fifo, '6'),
        (tar::EntryType::GNULongName, 'L'),
        (tar::EntryType::XHeader, 'x'),
        (tar::EntryType::XGlobalHeader, 'g'),
    ] {
        let bytes = signed(&env, &m, vec![special("etc/evil", kind)]);
        match verify(&env, &bytes) {
            Err(VerifyError::ForbiddenEntryType { path, entry_type }) => {
                assert_eq!((path.as_str(), entry_type), ("etc/evil", flag))
            }
            other => panic!("{kind:?}: {other:?}"),
        }
    }
    // The old-style NUL type flag of a "regular" file is not canonical either.
    let mut m0 = regular("etc/a", 0o644, A);
    m0.header.as_old_mut().linkflag = [0];
    let mtext = toml::to_string(&manifest(&env, &[("etc/a", 0o644, A)])).unwrap();
    assert!(matches!(
        verify(&env, &signed(&env, &mtext, vec![m0])),
        Err(VerifyError::ForbiddenEntryType {
            entry_type: '\0',
            ..
        })
    ));
}

#[test]
fn traversal_and_absolute_paths_are_refused() {
    let env = env();
    for name in [
        &b"../etc/passwd"[..],
        b"etc/../../x",
        b"/etc/passwd",
        b"etc//a",
        b"./etc/a",
        b"etc/a\xff",
    ] {
        let m = toml::to_string(&manifest(&env, &[])).unwrap();
        let bytes = signed(&env, &m, vec![raw_named(name, A)]);
        let err = verify(&env, &bytes).unwrap_err();
        assert!(
            matches!(&err, VerifyError::UnsafePath { .. }),
            "{}: {err}",
            String::from_utf8_lossy(name)
        );
    }
    // The same paths inside a validly signed manifest are refused too.
    let mut man = manifest(&env, &[("etc/a", 0o644, A)]);
    man.files[0].path = "../etc/passwd".to_owned();
    let bytes = signed(&env, &toml::to_string(&man).unwrap(), vec![]);
    assert!(matches!(
        verify(&env, &bytes),
        Err(VerifyError::UnsafePath { path, .. }) if path == "../etc/passwd"
    ));
}

#[test]
fn duplicates_extras_and_omissions_are_named() {
    let env = env();
    let m = toml::to_string(&manifest(&env, &[("etc/a", 0o644, A)])).unwrap();

    let dup = signed(
        &env,
        &m,
        vec![regular("etc/a", 0o644, A), regular("etc/a", 0o644, A)],
    );
    assert!(
        matches!(verify(&env, &dup), Err(VerifyError::DuplicateEntry { path }) if path == "etc/a")
    );

    let two_manifests = signed(
        &env,
        &m,
        vec![
            regular(MANIFEST_PATH, 0o644, m.as_bytes()),
            regular("etc/a", 0o644, A),
        ],
    );
    assert!(
        matches!(verify(&env, &two_manifests), Err(VerifyError::DuplicateEntry { path }) if path == MANIFEST_PATH)
    );

    let extra = signed(
        &env,
        &m,
        vec![regular("etc/a", 0o644, A), regular("etc/b", 0o644, b"b")],
    );
    assert!(
        matches!(verify(&env, &extra), Err(VerifyError::UnexpectedFile { path }) if path == "etc/b")
    );

    let missing = signed(&env, &m, vec![]);
    assert!(
        matches!(verify(&env, &missing), Err(VerifyError::MissingFile { path }) if path == "etc/a")
    );

    let no_sig = archive(vec![
        regular(MANIFEST_PATH, 0o644, m.as_bytes()),
        regular("etc/a", 0o644, A),
    ]);
    assert!(
        matches!(verify(&env, &no_sig), Err(VerifyError::MissingFile { path }) if path == SIGNATURE_PATH)
    );

    let no_manifest = archive(vec![regular("etc/a", 0o644, A)]);
    assert!(
        matches!(verify(&env, &no_manifest), Err(VerifyError::MissingFile { path }) if path == MANIFEST_PATH)
    );

    // Duplicate and unsorted entries in a signed manifest.
    let mut man = manifest(&env, &[("etc/a", 0o644, A), ("etc/a", 0o644, A)]);
    let bytes = signed(
        &env,
        &toml::to_string(&man).unwrap(),
        vec![regular("etc/a", 0o644, A)],
    );
    assert!(
        matches!(verify(&env, &bytes), Err(VerifyError::DuplicateEntry { path }) if path == "etc/a")
    );
    man = manifest(&env, &[("etc/b", 0o644, A), ("etc/a", 0o644, A)]);
    let bytes = signed(&env, &toml::to_string(&man).unwrap(), vec![]);
    assert!(
        matches!(verify(&env, &bytes), Err(VerifyError::Malformed { reason }) if reason.contains("sorted"))
    );
}

#[test]
fn modes_and_hashes_must_match_the_manifest() {
    let env = env();
    let m = toml::to_string(&manifest(&env, &[("etc/a", 0o644, A)])).unwrap();
    let bytes = signed(&env, &m, vec![regular("etc/a", 0o4755, A)]);
    assert!(matches!(
        verify(&env, &bytes),
        Err(VerifyError::ModeMismatch { path, expected: 0o644, found: 0o4755 }) if path == "etc/a"
    ));
    let bytes = signed(&env, &m, vec![regular("etc/a", 0o644, b"alpha!")]);
    assert!(
        matches!(verify(&env, &bytes), Err(VerifyError::HashMismatch { path }) if path == "etc/a")
    );
    let bytes = signed(&env, &m, vec![regular("etc/a", 0o644, b"alpha\nand more")]);
    assert!(
        matches!(verify(&env, &bytes), Err(VerifyError::HashMismatch { path }) if path == "etc/a")
    );
}

#[test]
fn headers_with_a_valid_checksum_but_other_fields_are_not_canonical() {
    let env = env();
    let m = toml::to_string(&manifest(&env, &[("etc/a", 0o644, A)])).unwrap();
    type Tweak = fn(&mut tar::Header);
    let tweaks: [(&str, Tweak); 5] = [
        ("mtime", |h| h.set_mtime(1_700_000_000)),
        ("uid", |h| h.set_uid(1000)),
        ("user name", |h| h.set_username("mallory").unwrap()),
        ("link name", |h| h.set_link_name("x").unwrap()),
        ("gnu magic", |h| {
            h.as_mut_bytes()[257..265].copy_from_slice(b"ustar  \0");
        }),
    ];
    for (what, tweak) in tweaks {
        let mut member = regular("etc/a", 0o644, A);
        tweak(&mut member.header);
        let bytes = signed(&env, &m, vec![member]);
        assert!(
            matches!(verify(&env, &bytes), Err(VerifyError::NonCanonicalHeader { ref path, .. }) if path == "etc/a"),
            "{what}: {:?}",
            verify(&env, &bytes).err()
        );
    }
}

#[test]
fn signed_manifests_of_unknown_schema_or_shape_are_refused() {
    let env = env();
    let mut man = manifest(&env, &[]);
    man.schema = 2;
    let bytes = signed(&env, &toml::to_string(&man).unwrap(), vec![]);
    assert!(matches!(
        verify(&env, &bytes),
        Err(VerifyError::UnknownSchema(2))
    ));
    // A future schema may add keys: the version is reported, not the keys.
    let text = "schema = 7\nsomething_new = true\n";
    assert!(matches!(
        verify(&env, &signed(&env, text, vec![])),
        Err(VerifyError::UnknownSchema(7))
    ));
    for text in [
        "schema = 1\n",
        "schema = 1\ncluster_id = \"x\"\nconfig_id = \"y\"\nrole = \"master\"\nbasalt_version = \"1\"\n",
        "not toml at all [",
        "schema = 1\nunknown = 1\n",
    ] {
        let err = verify(&env, &signed(&env, text, vec![])).unwrap_err();
        assert!(
            matches!(err, VerifyError::Malformed { .. }),
            "{text}: {err}"
        );
    }
    let mut man = manifest(&env, &[]);
    man.role = Role::Master;
    let text = toml::to_string(&man)
        .unwrap()
        .replace("role = \"master\"", "role = \"slave\"");
    assert!(matches!(
        verify(&env, &signed(&env, &text, vec![])),
        Err(VerifyError::Malformed { .. })
    ));
}

#[test]
fn bad_signatures_of_any_length_are_refused() {
    let env = env();
    let m = toml::to_string(&manifest(&env, &[])).unwrap();
    for sig in [
        vec![],
        vec![0u8; 63],
        vec![0u8; 64],
        vec![0u8; 65],
        env.secrets.sign(b"other").to_vec(),
    ] {
        let bytes = archive(vec![
            regular(MANIFEST_PATH, 0o644, m.as_bytes()),
            regular(SIGNATURE_PATH, 0o644, &sig),
        ]);
        assert!(
            matches!(verify(&env, &bytes), Err(VerifyError::BadSignature)),
            "{} bytes",
            sig.len()
        );
    }
}

#[test]
fn oversized_input_is_refused_without_reading_it_all() {
    let env = env();
    let big = std::io::repeat(0).take(MAX_BUNDLE_BYTES + 4096);
    let err = verify_bundle_reader(big, &env.secrets.public_key(), None, None).unwrap_err();
    assert!(matches!(err, VerifyError::TooLarge { .. }), "{err}");
}

use std::io::Read as _;
