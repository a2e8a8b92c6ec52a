//! `cargo bench -p basalt-iam --bench verify`: what the gateway pays per request —
//! token verification (EdDSA signature + claims) and an in-memory permission decision —
//! on one core. Prints a table; asserts nothing about time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_iam::keys::pem_encode;
use basalt_iam::model::AclRecord;
use basalt_iam::{Action, CachedVerifier, TokenSigner, decide};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn rate(name: &str, mut f: impl FnMut()) {
    for _ in 0..1000 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..1000 {
            f();
        }
        n += 1000;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<40} {:>12.0} /s {:>10.2} µs each",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn main() {
    let rng = ring::rand::SystemRandom::new();
    let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let signer =
        TokenSigner::from_pkcs8_pem(&pem_encode("PRIVATE KEY", doc.as_ref()), "bench").unwrap();
    let verifier = signer.verifier();
    let token = signer.issue("bench-user", Duration::from_secs(3600));
    rate("TokenVerifier::verify (EdDSA)", || {
        black_box(verifier.verify(black_box(&token)).unwrap());
    });
    let cached = CachedVerifier::new(signer.verifier(), 100_000);
    rate("CachedVerifier::verify (hit)", || {
        black_box(cached.verify(black_box(&token)).unwrap());
    });
    rate("TokenSigner::issue", || {
        black_box(signer.issue("bench-user", Duration::from_secs(3600)));
    });
    let mut acl = AclRecord::new("dcos:adminrouter:service:marathon", "");
    for i in 0..100 {
        acl.users.insert(format!("u{i}"), [Action::Read].into());
        acl.groups.insert(format!("g{i}"), [Action::Update].into());
    }
    let su = AclRecord::new("dcos:superuser", "");
    let groups: Vec<String> = (0..5)
        .map(|i| format!("x{i}"))
        .chain(["g99".into()])
        .collect();
    rate("decide (group grant, 100-entry ACL)", || {
        black_box(decide(
            "bench-user",
            black_box(&groups),
            Some(&acl),
            Some(&su),
            Action::Update,
        ));
    });
}
