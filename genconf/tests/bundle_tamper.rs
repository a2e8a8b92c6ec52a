//! Flipping any single byte of a bundle is detected and named.
//!
//! Every byte of every bundle is flipped (XOR 0x01, and XOR 0x80 for the
//! smallest bundle), and the error must match the region the byte lies in:
//!
//! | region | error |
//! |---|---|
//! | a tar header (any of its 512 bytes) | `BadTarHeader` (the tar checksum covers the whole header; a flip inside the checksum field itself changes the stored sum) |
//! | data of `manifest.toml` or `manifest.toml.sig` | `BadSignature` |
//! | data of a file | `HashMismatch { path }` naming that file |
//! | zero padding after a file's data | `NonZeroPadding { path }` |
//! | the two end-of-archive zero blocks | `BadTrailer` |
//!
//! Plain tar readers ignore padding and the second end block, so flips there
//! would go unnoticed by design of tar; the verifier insists on the canonical
//! form (zero padding, exactly two zero end blocks, canonical headers), which
//! is why even those flips are caught here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bundle_support;

use basalt_genconf::bundle::{MANIFEST_PATH, Role, SIGNATURE_PATH};
use basalt_genconf::render::render_bundle;
use basalt_genconf::secrets::Secrets;
use basalt_genconf::verify::{ClusterPublicKey, VerifyError, verify_bundle};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Region {
    Header(String),
    Data(String),
    Padding(String),
    Trailer,
}

/// Region of every byte, from an independent walk over the ustar layout.
fn regions(bytes: &[u8]) -> Vec<Region> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut off = 0usize;
    loop {
        let h = &bytes[off..off + 512];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = h[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = String::from_utf8(h[..name_end].to_vec()).unwrap();
        let size_field = std::str::from_utf8(&h[124..136]).unwrap();
        let size =
            usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        out.extend(std::iter::repeat_n(Region::Header(name.clone()), 512));
        out.extend(std::iter::repeat_n(Region::Data(name.clone()), size));
        let padded = size.div_ceil(512) * 512;
        out.extend(std::iter::repeat_n(Region::Padding(name), padded - size));
        off += 512 + padded;
    }
    assert_eq!(bytes.len() - off, 1024, "two end blocks");
    out.extend(std::iter::repeat_n(Region::Trailer, 1024));
    assert_eq!(out.len(), bytes.len());
    out
}

fn check_every_flip(bytes: &[u8], key: &ClusterPublicKey, role: Role, id: &str, mask: u8) {
    let regions = regions(bytes);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut buf = bytes.to_vec();
    for (i, region) in regions.iter().enumerate() {
        buf[i] ^= mask;
        let res = verify_bundle(&buf, key, Some(role), Some(id));
        buf[i] ^= mask;
        let err = match res {
            Ok(_) => {
                panic!("{role}: flipping byte {i} ({region:?}) with {mask:#04x} went unnoticed")
            }
            Err(e) => e,
        };
        let ok = match (region, &err) {
            (Region::Header(_), VerifyError::BadTarHeader { .. }) => true,
            (Region::Data(p), VerifyError::BadSignature) => {
                p == MANIFEST_PATH || p == SIGNATURE_PATH
            }
            (Region::Data(p), VerifyError::HashMismatch { path }) => p == path,
            (Region::Padding(p), VerifyError::NonZeroPadding { path }) => p == path,
            (Region::Trailer, VerifyError::BadTrailer { .. }) => true,
            _ => false,
        };
        assert!(
            ok,
            "{role}: byte {i} in {region:?} flipped with {mask:#04x} gave: {err}"
        );
        let kind = match region {
            Region::Header(_) => "header",
            Region::Data(_) => "data",
            Region::Padding(_) => "padding",
            Region::Trailer => "trailer",
        };
        *counts.entry(kind).or_default() += 1;
    }
    assert_eq!(buf, bytes);
    eprintln!(
        "{role}: {} bytes flipped, all detected: {counts:?}",
        bytes.len()
    );
}

#[test]
fn every_single_byte_flip_of_every_bundle_is_detected_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = bundle_support::loaded(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    let secrets = Secrets::load_or_create(&tmp.path().join("secrets"), &loaded.config).unwrap();
    let key = secrets.public_key();
    for role in Role::ALL {
        let b = render_bundle(&loaded, &secrets, role).unwrap();
        check_every_flip(&b.bytes, &key, role, secrets.cluster_id(), 0x01);
        if role == Role::Agent {
            check_every_flip(&b.bytes, &key, role, secrets.cluster_id(), 0x80);
        }
    }
}
