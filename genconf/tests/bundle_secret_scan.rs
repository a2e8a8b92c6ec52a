//! No master-only secret ends up in an agent bundle, and the CA key and the
//! cluster signing key are in no bundle at all. The scan looks for the PEM
//! text, the DER bytes and (for Ed25519 keys) the raw 32-byte seed of every
//! key in the raw archive bytes. A positive control proves the scan finds
//! keys that are meant to be there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bundle_support;

use basalt_genconf::bundle::Role;
use basalt_genconf::render::render_bundle;
use basalt_genconf::secrets::{Leaf, Secrets};
use bundle_support::contains;

/// Every byte string that identifies a private key given as PKCS#8 PEM.
fn needles(pem: &str) -> Vec<Vec<u8>> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    assert_eq!(p.label, "PRIVATE KEY");
    let der = p.contents;
    let mut v = vec![pem.as_bytes().to_vec(), der.clone()];
    // Ed25519 PKCS#8 (ring, v2): the 32-byte seed follows `04 22 04 20`.
    if let Some(i) = der.windows(4).position(|w| w == [0x04, 0x22, 0x04, 0x20]) {
        v.push(der[i + 4..i + 36].to_vec());
    }
    // ECDSA PKCS#8: the 32-byte private scalar follows `04 20` inside the ECPrivateKey.
    if let Some(i) = der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
    {
        v.push(der[i + 5..i + 37].to_vec());
    }
    // A body line of the PEM (base64) as well.
    v.push(pem.lines().nth(2).unwrap().as_bytes().to_vec());
    assert!(v.len() >= 4, "key material not found in {pem}");
    v
}

fn file_pem(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn agent_bundles_hold_no_master_only_secret() {
    let masters = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("secrets");
    let loaded = bundle_support::loaded(&masters);
    let s = Secrets::load_or_create(&dir, &loaded.config).unwrap();

    let mut master_only: Vec<(String, String)> = vec![
        ("CA key".into(), s.ca_key_pem().to_owned()),
        ("IAM signing key".into(), s.iam_key_pem().to_owned()),
    ];
    for (leaf, ck) in s.leaves() {
        if *leaf != Leaf::Agent {
            master_only.push((format!("{leaf} key"), ck.key_pem.clone()));
        }
    }
    assert_eq!(
        master_only.len(),
        2 + 3 * 2 + 2,
        "CA, IAM, etcd peer/server x3, etcd client, gateway"
    );
    let never = [
        ("CA key", s.ca_key_pem().to_owned()),
        (
            "cluster signing key",
            file_pem(&dir.join("signing-key.pem")),
        ),
    ];

    let bundles: Vec<(Role, Vec<u8>)> = Role::ALL
        .iter()
        .map(|r| (*r, render_bundle(&loaded, &s, *r).unwrap().bytes))
        .collect();

    for (role, bytes) in &bundles {
        for (what, pem) in &never {
            for n in needles(pem) {
                assert!(!contains(bytes, &n), "{what} found in the {role} bundle");
            }
        }
        if role.is_agent() {
            for (what, pem) in &master_only {
                for n in needles(pem) {
                    assert!(!contains(bytes, &n), "{what} found in the {role} bundle");
                }
            }
        } else {
            // Positive control: the same scan finds the master's own keys (as
            // PEM text) in the master bundle.
            for (what, pem) in master_only.iter().filter(|(w, _)| !w.starts_with("CA")) {
                assert!(
                    contains(bytes, pem.as_bytes()),
                    "{what} missing from the master bundle"
                );
            }
        }
    }
    // The agent key is where it belongs, and nowhere else.
    let agent_key = &s.leaf(Leaf::Agent).unwrap().key_pem;
    for (role, bytes) in &bundles {
        assert_eq!(
            contains(bytes, agent_key.as_bytes()),
            role.is_agent(),
            "agent key in {role}"
        );
    }
}
