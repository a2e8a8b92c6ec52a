//! Permissions, groups, the gateway's authorize endpoint, lockouts and the superuser
//! bootstrap, through real HTTP against a real etcd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use basalt_iam::store::IamStore;
use basalt_iam::{Action, EtcdIamStore, IamServer, Threshold};
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

macro_rules! env_or_skip {
    ($config:expr) => {
        match start($config).await {
            Some(env) => env,
            None => return,
        }
    };
}

const MARATHON: &str = "dcos:adminrouter:service:marathon";

/// Polls the gateway-side mirror until it gives `want`.
async fn cached(cache: &basalt_iam::PolicyCache, uid: &str, rid: &str, action: Action, want: bool) {
    poll(
        &format!("policy cache: {uid} {rid} {action} = {want}"),
        || async { (cache.authorize(uid, rid, action).allowed == want).then_some(()) },
    )
    .await;
}

async fn authorize(env: &Env, uid: &str, rid: &str, action: &str) -> u16 {
    let r = env
        .client
        .get(env.url("/internal/acs/api/v1/authorize"))
        .query(&[("uid", uid), ("rid", rid), ("action", action)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["allowed"], status == 200);
    status
}

async fn ok(r: reqwest::Response, want: u16) -> reqwest::Response {
    let status = r.status().as_u16();
    if status != want {
        panic!("want {want}, got {status}: {}", r.text().await.unwrap());
    }
    r
}

#[tokio::test]
async fn grants_groups_and_superusers() {
    let env = env_or_skip!(admin_config());
    let admin = env.admin().await;
    let cache = basalt_iam::PolicyCache::start(env.etcd.store())
        .await
        .unwrap();
    assert!(cache.authorize(ADMIN, MARATHON, Action::Read).allowed);
    let put = |path: String, body: Option<Value>| {
        let (env, admin) = (&env, admin.clone());
        async move { env.call(Method::PUT, &path, &admin, body).await }
    };
    let del = |path: String| {
        let (env, admin) = (&env, admin.clone());
        async move { env.call(Method::DELETE, &path, &admin, None).await }
    };
    ok(
        put(
            "/acs/api/v1/users/alice".into(),
            Some(json!({"password": "alice-password"})),
        )
        .await,
        201,
    )
    .await;
    ok(
        put(
            "/acs/api/v1/groups/ops".into(),
            Some(json!({"description": "operators"})),
        )
        .await,
        201,
    )
    .await;
    ok(
        put(
            format!("/acs/api/v1/acls/{MARATHON}"),
            Some(json!({"description": "Marathon UI"})),
        )
        .await,
        201,
    )
    .await;
    ok(
        put(
            format!("/acs/api/v1/acls/{MARATHON}"),
            Some(json!({"description": "again"})),
        )
        .await,
        409,
    )
    .await;

    assert_eq!(authorize(&env, "alice", MARATHON, "read").await, 403);
    // A grant needs the ACL and the account to exist.
    let r = put(
        "/acs/api/v1/acls/dcos:nothing/users/alice/read".into(),
        None,
    )
    .await;
    let v: Value = ok(r, 404).await.json().await.unwrap();
    assert_eq!(v["code"], "ERR_UNKNOWN_RESOURCE_ID");
    let r = put(
        format!("/acs/api/v1/acls/{MARATHON}/users/ghost/read"),
        None,
    )
    .await;
    let v: Value = ok(r, 404).await.json().await.unwrap();
    assert_eq!(v["code"], "ERR_UNKNOWN_USER_ID");

    // full implies read (and everything else); revoking takes it away.
    ok(
        put(
            format!("/acs/api/v1/acls/{MARATHON}/users/alice/full"),
            None,
        )
        .await,
        204,
    )
    .await;
    assert_eq!(authorize(&env, "alice", MARATHON, "read").await, 200);
    assert_eq!(authorize(&env, "alice", MARATHON, "delete").await, 200);
    cached(&cache, "alice", MARATHON, Action::Delete, true).await;
    assert_eq!(
        authorize(&env, "alice", "dcos:adminrouter:ops:mesos", "read").await,
        403
    );
    ok(
        del(format!("/acs/api/v1/acls/{MARATHON}/users/alice/full")).await,
        204,
    )
    .await;
    assert_eq!(authorize(&env, "alice", MARATHON, "read").await, 403);

    // read only: read yes, update no.
    ok(
        put(
            format!("/acs/api/v1/acls/{MARATHON}/users/alice/read"),
            None,
        )
        .await,
        204,
    )
    .await;
    assert_eq!(authorize(&env, "alice", MARATHON, "read").await, 200);
    assert_eq!(authorize(&env, "alice", MARATHON, "update").await, 403);
    ok(
        del(format!("/acs/api/v1/acls/{MARATHON}/users/alice")).await,
        204,
    )
    .await;
    assert_eq!(authorize(&env, "alice", MARATHON, "read").await, 403);

    // Through a group.
    ok(
        put(
            format!("/acs/api/v1/acls/{MARATHON}/groups/ops/update"),
            None,
        )
        .await,
        204,
    )
    .await;
    assert_eq!(authorize(&env, "alice", MARATHON, "update").await, 403);
    ok(
        put("/acs/api/v1/groups/ops/users/alice".into(), None).await,
        204,
    )
    .await;
    assert_eq!(authorize(&env, "alice", MARATHON, "update").await, 200);
    cached(&cache, "alice", MARATHON, Action::Update, true).await;
    assert!(!cache.authorize("alice", MARATHON, Action::Read).allowed);
    let perms: Value = env
        .call(
            Method::GET,
            "/acs/api/v1/users/alice/permissions",
            &admin,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(perms["direct"].as_array().unwrap().len(), 0);
    assert_eq!(perms["groups"][0]["rid"], MARATHON);
    assert_eq!(perms["groups"][0]["gid"], "ops");
    assert_eq!(perms["groups"][0]["actions"][0]["name"], "update");
    let members: Value = env
        .call(Method::GET, "/acs/api/v1/groups/ops/users", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members["array"][0]["user"]["uid"], "alice");
    let acl: Value = env
        .call(
            Method::GET,
            &format!("/acs/api/v1/acls/{MARATHON}/permissions"),
            &admin,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(acl["groups"][0]["gid"], "ops");
    ok(del("/acs/api/v1/groups/ops/users/alice".into()).await, 204).await;
    assert_eq!(authorize(&env, "alice", MARATHON, "update").await, 403);

    // Alice may read herself but not manage anything.
    let alice = env.token("alice", "alice-password").await;
    ok(
        env.call(Method::GET, "/acs/api/v1/users/alice", &alice, None)
            .await,
        200,
    )
    .await;
    ok(
        env.call(
            Method::GET,
            "/acs/api/v1/users/alice/permissions",
            &alice,
            None,
        )
        .await,
        200,
    )
    .await;
    let r = ok(
        env.call(Method::GET, "/acs/api/v1/users", &alice, None)
            .await,
        403,
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ERR_FORBIDDEN");
    ok(
        env.call(
            Method::PUT,
            "/acs/api/v1/users/mallory",
            &alice,
            Some(json!({"password": "mallory-pass"})),
        )
        .await,
        403,
    )
    .await;

    // Superuser through a group, then the superuser bypass for any resource.
    ok(
        put(
            "/acs/api/v1/groups/admins".into(),
            Some(json!({"description": "admins"})),
        )
        .await,
        201,
    )
    .await;
    ok(
        put(
            "/acs/api/v1/acls/dcos:superuser/groups/admins/full".into(),
            None,
        )
        .await,
        204,
    )
    .await;
    ok(
        put("/acs/api/v1/groups/admins/users/alice".into(), None).await,
        204,
    )
    .await;
    assert_eq!(
        authorize(
            &env,
            "alice",
            "dcos:mesos:master:framework:role:*",
            "create"
        )
        .await,
        200
    );
    ok(
        env.call(Method::GET, "/acs/api/v1/users", &alice, None)
            .await,
        200,
    )
    .await;
    assert_eq!(
        authorize(&env, ADMIN, "dcos:adminrouter:ops:mesos", "full").await,
        200
    );

    // Deleting a group drops its grants and memberships.
    ok(del("/acs/api/v1/groups/admins".into()).await, 204).await;
    assert_eq!(
        authorize(&env, "alice", "dcos:adminrouter:ops:mesos", "read").await,
        403
    );
    let store = EtcdIamStore::new(env.etcd.store());
    assert!(store.groups_of("alice").await.unwrap().is_empty());
    let su = store.get_acl("dcos:superuser").await.unwrap().unwrap();
    assert!(su.groups.is_empty());
    // Deleting a user: unknown afterwards, tokens refused, never authorized.
    ok(del("/acs/api/v1/users/alice".into()).await, 204).await;
    ok(del("/acs/api/v1/users/alice".into()).await, 404).await;
    ok(
        env.call(Method::GET, "/acs/api/v1/users/alice", &alice, None)
            .await,
        401,
    )
    .await;
    assert_eq!(authorize(&env, "alice", MARATHON, "read").await, 403);
    ok(
        put(
            format!("/acs/api/v1/acls/{MARATHON}/users/admin/read"),
            None,
        )
        .await,
        204,
    )
    .await;
    cached(&cache, ADMIN, MARATHON, Action::Read, true).await;
    assert!(
        cache
            .authorize("alice", MARATHON, Action::Read)
            .grant
            .is_none()
    );

    // The library form agrees.
    let d = basalt_iam::Authorizer::new(store)
        .authorize(ADMIN, MARATHON, Action::Update)
        .await
        .unwrap();
    assert!(d.allowed);

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
        metrics.contains("basalt_iam_authorizations_total{result=\"deny\"}"),
        "{metrics}"
    );
    let audit: Value = env
        .call(Method::GET, "/acs/api/v1/audit", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        audit["array"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"] == "permission_denied")
    );
}

fn lockout_config(uid_max: u32, addr_max: u32) -> basalt_iam::IamConfig {
    let t = |max| Threshold {
        max_failures: max,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(2),
    };
    basalt_iam::IamConfig {
        uid_lockout: t(uid_max),
        addr_lockout: t(addr_max),
        ..admin_config()
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_uid_out_until_the_lockout_ends() {
    let env = env_or_skip!(lockout_config(3, 0));
    for _ in 0..3 {
        assert_eq!(env.login(ADMIN, "wrong password").await.status(), 401);
    }
    // Locked: even the right password is refused, with Retry-After.
    let r = env.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "ERR_TOO_MANY_LOGIN_ATTEMPTS");
    // Other accounts are not affected (per-address counting is off here).
    assert_eq!(
        env.login("someone-else", "x-wrong-pass").await.status(),
        401
    );
    // The lockout lives in etcd: every master sees it.
    let store = EtcdIamStore::new(env.etcd.store());
    let subject = basalt_iam::Subject {
        kind: basalt_iam::SubjectKind::Uid,
        id: ADMIN.to_owned(),
    };
    assert!(store.lockout(&subject, 0).await.unwrap().is_some());
    // After the lockout the right password works again.
    let status = poll("the lockout to end", || async {
        let r = env.login(ADMIN, ADMIN_PASSWORD).await;
        (r.status() != 429).then_some(r.status())
    })
    .await;
    assert_eq!(status, 200);
    let metrics = env
        .client
        .get(env.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("basalt_iam_lockouts_total 1"), "{metrics}");
    assert!(
        !metrics.contains("basalt_iam_logins_total{result=\"locked\"} 0"),
        "{metrics}"
    );
    let events: Vec<String> = env
        .server
        .iam()
        .audit
        .snapshot()
        .iter()
        .map(|r| r.event.to_owned())
        .collect();
    for e in ["login_failure", "lockout", "login_locked", "login_success"] {
        assert!(events.iter().any(|x| x == e), "{e} missing in {events:?}");
    }
}

#[tokio::test]
async fn repeated_failures_from_one_address_lock_that_address_out() {
    let env = env_or_skip!(lockout_config(0, 3));
    let from = |ip: &'static str, uid: &'static str, password: &'static str| {
        let env = &env;
        async move {
            env.client
                .post(env.url("/acs/api/v1/auth/login"))
                .header("X-Forwarded-For", format!("198.51.100.7, {ip}"))
                .json(&json!({"uid": uid, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for uid in ["u1", "u2", "u3"] {
        assert_eq!(from("203.0.113.9", uid, "guess-guess").await, 401);
    }
    assert_eq!(from("203.0.113.9", "admin", ADMIN_PASSWORD).await, 429);
    assert_eq!(from("203.0.113.10", "admin", ADMIN_PASSWORD).await, 200);
    let status = poll("the address lockout to end", || async {
        let s = from("203.0.113.9", "admin", ADMIN_PASSWORD).await;
        (s != 429).then_some(s)
    })
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn superuser_bootstrap_is_idempotent_across_concurrent_masters() {
    let Some(etcd) = basalt_store::testing::EtcdCluster::start(1)
        .await
        .expect("starting etcd")
    else {
        return;
    };
    let key = new_key_pem();
    let config = admin_config();
    let start = || {
        let (store, key, config) = (etcd.store(), key.clone(), config.clone());
        async move {
            let signer = basalt_iam::TokenSigner::from_pkcs8_pem(&key, "basalt-iam").unwrap();
            IamServer::start(EtcdIamStore::new(store), signer, config).await
        }
    };
    let (a, b) = tokio::join!(start(), start());
    let (a, b) = (a.unwrap(), b.unwrap());
    let created: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|s| s.iam().audit.snapshot())
        .filter(|r| r.event == "superuser_bootstrap")
        .map(|r| r.detail)
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(
        created.iter().filter(|d| *d == "created").count(),
        1,
        "{created:?}"
    );
    // A third start (a restart) changes nothing.
    let c = start().await.unwrap();
    let store = EtcdIamStore::new(etcd.store());
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    let su = store.get_acl("dcos:superuser").await.unwrap().unwrap();
    assert_eq!(su.users.len(), 1);
    assert!(su.users[ADMIN].contains(&Action::Full));
    // Every instance logs the superuser in.
    let client = reqwest::Client::new();
    for s in [&a, &b, &c] {
        let r = client
            .post(format!("http://{}/acs/api/v1/auth/login", s.addr()))
            .json(&json!({"uid": ADMIN, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
