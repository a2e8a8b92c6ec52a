//! Login, tokens, service accounts, logout and request validation, through real HTTP
//! against a real etcd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_iam::jwt::{encode_with, now_unix};
use basalt_iam::keys::{ed25519_public_key_pem, p256_public_key_pem};
use basalt_iam::{RevocationCache, TokenError, TokenVerifier};
use base64::Engine;
use common::*;
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use serde_json::{Value, json};

macro_rules! env_or_skip {
    ($config:expr) => {
        match start($config).await {
            Some(env) => env,
            None => return,
        }
    };
}

/// DC/OS's `GET /acs/api/v1/auth/providers`, public: the DC/OS CLI's
/// `dcos auth list-providers` / `auth login --provider`.
#[tokio::test]
async fn providers_lists_the_password_and_service_key_logins_without_a_token() {
    let env = env_or_skip!(admin_config());
    let r = env
        .client
        .get(env.url("/acs/api/v1/auth/providers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["dcos-users"]["authentication-type"], "dcos-uid-password");
    assert_eq!(
        p["dcos-users"]["client-method"],
        "dcos-usercredential-post-receive-authtoken"
    );
    assert_eq!(
        p["dcos-services"]["authentication-type"],
        "dcos-uid-servicekey"
    );
    for id in ["dcos-users", "dcos-services"] {
        assert_eq!(p[id]["config"]["start_flow_url"], "/acs/api/v1/auth/login");
    }
}

#[tokio::test]
async fn login_returns_a_token_the_jwks_verifies_and_cookies() {
    let env = env_or_skip!(admin_config());
    let r = env.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body: Value = r.json().await.unwrap();
    let token = body["token"].as_str().unwrap();

    let jwks: Value = env
        .client
        .get(env.url("/acs/api/v1/auth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    let claims = TokenVerifier::from_jwks(&jwks)
        .unwrap()
        .verify(token)
        .unwrap();
    assert_eq!(claims.uid, ADMIN);
    let lifetime = claims.exp - now_unix();
    assert!(
        (5 * 86400 - 60..=5 * 86400).contains(&lifetime),
        "{lifetime}"
    );
    let by_pem = TokenVerifier::from_public_key_pem(&env.signer().public_key_pem()).unwrap();
    assert_eq!(by_pem.verify(token).unwrap().uid, ADMIN);

    let auth = cookies
        .iter()
        .find(|c| c.starts_with("dcos-acs-auth-cookie="))
        .expect("auth cookie");
    assert!(
        auth.starts_with(&format!("dcos-acs-auth-cookie={token};")),
        "{auth}"
    );
    for attr in ["Path=/", "HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(auth.contains(attr), "{attr} missing in {auth}");
    }
    let info = cookies
        .iter()
        .find(|c| c.starts_with("dcos-acs-info-cookie="))
        .expect("info cookie");
    let value = info["dcos-acs-info-cookie=".len()..]
        .split(';')
        .next()
        .unwrap();
    let decoded: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decoded["uid"], ADMIN);
    assert_eq!(decoded["is_remote"], false);

    // The token works as a header and as the cookie.
    let r = env
        .call(Method::GET, "/acs/api/v1/users", token, None)
        .await;
    assert_eq!(r.status(), 200);
    let users: Value = r.json().await.unwrap();
    assert_eq!(users["array"][0]["uid"], ADMIN);
    assert!(users["array"][0].get("password_hash").is_none());
    let r = env
        .client
        .get(env.url("/acs/api/v1/users/admin"))
        .header("Cookie", format!("dcos-acs-auth-cookie={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let env = env_or_skip!(admin_config());
    let wrong = env.login(ADMIN, "not the password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["www-authenticate"], "oauthjwt");
    let wrong: Value = wrong.json().await.unwrap();
    let unknown = env.login("nobody", "not the password").await;
    assert_eq!(unknown.status(), 401);
    assert_eq!(unknown.headers()["www-authenticate"], "oauthjwt");
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["code"], "ERR_INVALID_CREDENTIALS");
    let metrics = env
        .client
        .get(env.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("basalt_iam_logins_total{result=\"failure\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn expired_tampered_and_foreign_tokens_are_refused() {
    let env = env_or_skip!(admin_config());
    let signer = env.signer();
    let verifier = signer.verifier();
    let now = now_unix();

    let expired = signer.sign(ADMIN, now - 7200, now - 3600);
    assert!(matches!(
        verifier.verify(&expired),
        Err(TokenError::Expired { .. })
    ));

    let good = env.admin().await;
    let parts: Vec<&str> = good.split('.').collect();
    // One byte flipped in the payload (still valid base64url) and in the signature.
    let flip = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        let i = b.len() / 2;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let tampered_payload = format!("{}.{}.{}", parts[0], flip(parts[1]), parts[2]);
    let tampered_sig = format!("{}.{}.{}", parts[0], parts[1], flip(parts[2]));
    for t in [&tampered_payload, &tampered_sig] {
        assert!(verifier.verify(t).is_err(), "{t}");
    }

    // A token from another cluster's key: unknown kid, and without kid a bad signature.
    let foreign = basalt_iam::TokenSigner::from_pkcs8_pem(&new_key_pem(), "other").unwrap();
    let other = foreign.issue(ADMIN, std::time::Duration::from_secs(600));
    assert!(matches!(
        verifier.verify(&other),
        Err(TokenError::UnknownKey(_))
    ));

    for (what, t) in [
        ("expired", expired.as_str()),
        ("tampered payload", &tampered_payload),
        ("tampered signature", &tampered_sig),
        ("foreign", &other),
        ("garbage", "abc"),
    ] {
        let r = env.call(Method::GET, "/acs/api/v1/users", t, None).await;
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(r.headers()["www-authenticate"], "oauthjwt", "{what}");
    }
    let r = env
        .client
        .get(env.url("/acs/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "ERR_MISSING_AUTH_TOKEN");
}

async fn service_login(env: &Env, uid: &str, token: &str) -> reqwest::Response {
    env.client
        .post(env.url("/acs/api/v1/auth/login"))
        .json(&json!({"uid": uid, "token": token}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn service_accounts_log_in_with_rs256_es256_and_eddsa() {
    let env = env_or_skip!(admin_config());
    let admin = env.admin().await;
    let rng = SystemRandom::new();

    // ES256 with a key made here.
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    // Ed25519 with a key made here.
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    // RS256 with the committed fixture (ring cannot generate RSA keys).
    let rsa_der = basalt_iam::keys::pem_decode(
        "fixture",
        include_str!("fixtures/rsa-service-key.pem"),
        "PRIVATE KEY",
    )
    .unwrap();
    let rsa = RsaKeyPair::from_pkcs8(&rsa_der).unwrap();

    let accounts = [
        ("svc-ec", p256_public_key_pem(ec.public_key().as_ref())),
        ("svc-ed", ed25519_public_key_pem(ed.public_key().as_ref())),
        (
            "svc-rsa",
            include_str!("fixtures/rsa-service-pub.pem").to_owned(),
        ),
    ];
    for (uid, pem) in &accounts {
        let r = env
            .call(
                Method::PUT,
                &format!("/acs/api/v1/users/{uid}"),
                &admin,
                Some(json!({"description": "service", "public_key": pem})),
            )
            .await;
        assert_eq!(r.status(), 201, "{uid}: {}", r.text().await.unwrap());
    }
    let sign = |alg: &str, uid: &str, exp: u64| -> String {
        let claims = json!({"uid": uid, "exp": exp});
        match alg {
            "ES256" => encode_with("ES256", &claims, |m| {
                ec.sign(&SystemRandom::new(), m).unwrap().as_ref().to_vec()
            }),
            "EdDSA" => encode_with("EdDSA", &claims, |m| ed.sign(m).as_ref().to_vec()),
            _ => encode_with("RS256", &claims, |m| {
                let mut sig = vec![0; rsa.public().modulus_len()];
                rsa.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), m, &mut sig)
                    .unwrap();
                sig
            }),
        }
    };
    let now = now_unix();
    let verifier = env.signer().verifier();
    for (uid, alg) in [
        ("svc-ec", "ES256"),
        ("svc-ed", "EdDSA"),
        ("svc-rsa", "RS256"),
    ] {
        let r = service_login(&env, uid, &sign(alg, uid, now + 300)).await;
        assert_eq!(r.status(), 200, "{uid}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            verifier
                .verify(body["token"].as_str().unwrap())
                .unwrap()
                .uid,
            *uid
        );
        // Longer than 10 minutes, expired, for another uid: refused alike.
        for bad in [
            sign(alg, uid, now + 3600),
            sign(alg, uid, now - 120),
            sign(alg, "svc-other", now + 60),
        ] {
            let r = service_login(&env, uid, &bad).await;
            assert_eq!(r.status(), 401, "{uid}");
        }
    }
    // Signed by another account's key, and alg confusion (EdDSA header for an RSA key).
    let r = service_login(&env, "svc-rsa", &sign("EdDSA", "svc-rsa", now + 60)).await;
    assert_eq!(r.status(), 401);
    let r = service_login(&env, "svc-ec", &sign("RS256", "svc-ec", now + 60)).await;
    assert_eq!(r.status(), 401);
    // A password login for a service account fails like any other.
    let r = env.login("svc-ed", "some password").await;
    assert_eq!(r.status(), 401);
    // Listing service accounts only.
    let r = env
        .call(Method::GET, "/acs/api/v1/users?type=service", &admin, None)
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["array"].as_array().unwrap().len(), 3);
    assert!(
        v["array"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["is_service"] == true)
    );
}

#[tokio::test]
async fn logout_revokes_the_token_until_it_expires() {
    let env = env_or_skip!(admin_config());
    let cache = RevocationCache::start(env.etcd.store()).await.unwrap();
    let token = env.admin().await;
    let keep = env.admin().await;
    assert_ne!(token, keep);
    assert!(!cache.is_revoked(&token));
    let r = env
        .call(Method::POST, "/acs/api/v1/auth/logout", &token, None)
        .await;
    assert_eq!(r.status(), 200);
    let cleared: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("dcos-acs-auth-cookie=;") && c.contains("Max-Age=0")),
        "{cleared:?}"
    );
    let r = env
        .call(Method::GET, "/acs/api/v1/users/admin", &token, None)
        .await;
    assert_eq!(r.status(), 401);
    // The other session is unaffected.
    let r = env
        .call(Method::GET, "/acs/api/v1/users/admin", &keep, None)
        .await;
    assert_eq!(r.status(), 200);
    // Gateways learn about it through the cache.
    poll("the revocation to reach the cache", || async {
        cache.is_revoked(&token).then_some(())
    })
    .await;
    assert!(!cache.is_revoked(&keep));
    let audit: Value = env
        .call(Method::GET, "/acs/api/v1/audit", &keep, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        audit["array"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"] == "token_revoked" && r["uid"] == ADMIN)
    );
}

#[tokio::test]
async fn bad_bodies_are_named() {
    let env = env_or_skip!(admin_config());
    let admin = env.admin().await;
    let login = |body: &'static str| {
        let env = &env;
        async move {
            let r = env
                .client
                .post(env.url("/acs/api/v1/auth/login"))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v)
        }
    };
    for (body, needle) in [
        ("{", "invalid JSON"),
        ("[]", "JSON object"),
        (r#"{"password":"x"}"#, "uid: required"),
        (r#"{"uid":"bad uid","password":"x"}"#, "uid:"),
        (
            r#"{"uid":"a","password":"x","extra":1}"#,
            "extra: unknown field",
        ),
        (r#"{"uid":"a"}"#, "password: required"),
        (r#"{"uid":"a","password":5}"#, "password: must be a string"),
    ] {
        let (status, v) = login(body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(v["code"], "ERR_INVALID_DATA", "{body}");
        assert_eq!(v["title"], "Bad Request", "{body}");
        let d = v["description"].as_str().unwrap();
        assert!(d.contains(needle), "{body}: {d}");
    }
    let cases = [
        (
            Method::PUT,
            "/acs/api/v1/users/bob",
            json!({"password": "short"}),
            400,
            "password:",
        ),
        (
            Method::PUT,
            "/acs/api/v1/users/bob",
            json!({"description": "x"}),
            400,
            "password: required",
        ),
        (
            Method::PUT,
            "/acs/api/v1/users/bob",
            json!({"public_key": "nope"}),
            400,
            "public_key:",
        ),
        (
            Method::PUT,
            "/acs/api/v1/users/b%20b",
            json!({"password": "long enough"}),
            400,
            "uid:",
        ),
        (
            Method::PUT,
            "/acs/api/v1/users/admin",
            json!({"password": "long enough"}),
            409,
            "already exists",
        ),
        (
            Method::PUT,
            "/acs/api/v1/groups/ops",
            json!({}),
            400,
            "description: required",
        ),
        (
            Method::PUT,
            "/acs/api/v1/acls/dcos:x",
            json!({"description": 1}),
            400,
            "description: must be a string",
        ),
        (
            Method::GET,
            "/acs/api/v1/users/ghost",
            json!(null),
            404,
            "ghost",
        ),
        (
            Method::GET,
            "/acs/api/v1/groups/ghosts",
            json!(null),
            404,
            "ghosts",
        ),
        (
            Method::GET,
            "/acs/api/v1/acls/dcos:ghost",
            json!(null),
            404,
            "dcos:ghost",
        ),
        (
            Method::PUT,
            "/acs/api/v1/acls/dcos:x/users/admin/write",
            json!(null),
            400,
            "action:",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let body = (!body.is_null()).then_some(body);
        let r = env.call(method.clone(), path, &admin, body).await;
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        let d = v["description"].as_str().unwrap();
        assert!(d.contains(needle), "{method} {path}: {d}");
    }
    // Changing a password: the old one stops working, the new one works.
    let r = env
        .call(
            Method::PATCH,
            "/acs/api/v1/users/admin",
            &admin,
            Some(json!({"password": "a new password"})),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(env.login(ADMIN, ADMIN_PASSWORD).await.status(), 401);
    assert_eq!(env.login(ADMIN, "a new password").await.status(), 200);
    let r = env
        .call(
            Method::PATCH,
            "/acs/api/v1/users/admin",
            &admin,
            Some(json!({"password": "short"})),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = env
        .call(Method::GET, "/acs/api/v1/users/ghost", &admin, None)
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ERR_UNKNOWN_USER_ID");
    for (q, needle) in [
        ("uid=admin&action=read", "rid: required"),
        ("uid=admin&rid=dcos:x&action=write", "action:"),
        ("uid=a%20b&rid=dcos:x&action=read", "uid:"),
    ] {
        let r = env
            .client
            .get(env.url(&format!("/internal/acs/api/v1/authorize?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let v: Value = r.json().await.unwrap();
        assert!(v["description"].as_str().unwrap().contains(needle), "{q}");
    }
}
