//! A whole cluster in QEMU: 1 master + 1 agent booted from this repository's images with a
//! real genconf bundle served over HTTP. Checks, in order: the supervisor verified the
//! bundle on both nodes, a master is elected, the agent registered with its detected
//! resources (printed, with the boot-to-registered time), etcd and the master's units are
//! healthy (`/system/health/v1`), and a Marathon app launched through the master runs on
//! the agent (its stdout read through the agent's `/files/read`); then the operator's
//! path: TLS to the gateway pinned to the cluster CA, `bootstrapuser` login through IAM,
//! 401 without a token, Marathon and the Mesos master through the gateway with it.
//!
//! Needs root, the image tools and qemu-system-x86_64 (scripts/setup.sh installs them);
//! otherwise it prints why it skips. Under TCG on a 2-core machine, boot takes minutes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use basalt_nodeimg::{BuildOptions, Role, required_tools};
use basalt_qemu::cluster::{Cluster, ClusterSpec, default_images_dir, stage_basaltd};
use basalt_qemu::http::{get_json, request};
use basalt_qemu::{QEMU, have_program, target_dir, wait_until, workspace_dir};

const REGISTER_TIMEOUT: Duration = Duration::from_secs(900);
const APP_TIMEOUT: Duration = Duration::from_secs(300);

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("building node images needs root".into());
    }
    let opts = BuildOptions::new(
        Role::Master,
        default_images_dir(&target_dir()).join("master"),
    );
    let mut tools: Vec<&str> = required_tools(&opts);
    tools.extend(["mmdebstrap", QEMU]);
    let missing: Vec<&str> = tools.into_iter().filter(|t| !have_program(t)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "missing {} (scripts/setup.sh installs them)",
            missing.join(", ")
        )
    })
}

fn unit_health(report: &serde_json::Value, id: &str) -> Option<i64> {
    report["units"].as_array()?.iter().find(|u| u["id"] == id)?["health"].as_i64()
}

#[test]
fn one_master_one_agent_cluster_runs_a_marathon_app() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED one_master_one_agent_cluster_runs_a_marathon_app: {why}");
        return;
    }
    let target = target_dir();
    let work = target.join("qemu-cluster-test");
    let basaltd = stage_basaltd(&workspace_dir(), &target, &work.join("stage")).unwrap();
    let spec = ClusterSpec::new(
        1,
        1,
        &work,
        default_images_dir(&target),
        basaltd,
        workspace_dir().join("units"),
    );
    let mut cluster = Cluster::boot(spec).unwrap();
    for (role, a) in &cluster.images {
        println!(
            "{role} image (base cached: {}, reused: {}):\n{}",
            a.base_cache_hit,
            a.reused,
            a.size_table()
        );
    }
    let accel = cluster.nodes[0].vm.accel;
    let registered = match cluster.wait_registered(REGISTER_TIMEOUT) {
        Ok(t) => t,
        Err(e) => panic!("{e}\n{}", cluster.consoles(80)),
    };
    println!(
        "boot-to-registered: {:.1} s ({accel:?}, 1 master + 1 agent)",
        registered.as_secs_f64()
    );
    for n in &cluster.nodes {
        let console = n.vm.console();
        assert!(
            console.contains(&format!(
                "basalt-supervisor: bundle verified: role {}",
                n.role
            )),
            "{}: no verification line\n{}",
            n.name,
            n.vm.console_tail(60)
        );
    }

    // the agent registered with what it detected
    let state = cluster.master_state().unwrap();
    let agent = &state["slaves"][0];
    let res = &agent["resources"];
    println!(
        "agent {} registered: cpus {} mem {} disk {} ports {}",
        agent["hostname"], res["cpus"], res["mem"], res["disk"], res["ports"]
    );
    assert_eq!(agent["hostname"], ClusterSpec::agent_ip(0).to_string());
    assert!(res["cpus"].as_f64().unwrap() > 0.0, "{res}");
    assert!(res["mem"].as_f64().unwrap() > 0.0, "{res}");
    assert!(res["disk"].as_f64().unwrap() > 0.0, "{res}");
    assert!(res["ports"].as_str().unwrap().starts_with('['), "{res}");

    // etcd and the master's components are healthy
    let master = cluster.masters().next().unwrap();
    let health_port = master.port(1050).unwrap();
    let health = wait_until(
        "etcd, master, marathon, iam and gateway healthy on m1",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || {
            let r = get_json(health_port, "/system/health/v1")?;
            [
                "basalt-etcd.service",
                "basalt-master.service",
                "basalt-marathon.service",
            ]
            .iter()
            .all(|u| unit_health(&r, u) == Some(0))
            .then_some(r)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.consoles(80)));
    println!("master units: {}", health["units"]);

    // a Marathon app runs on the agent
    let marathon = master.port(8080).unwrap();
    let app = r#"{"id": "/hello", "cmd": "echo hello-from-basalt; exec sleep 3600", "cpus": 0.1, "mem": 32, "instances": 1}"#;
    let (status, body) = wait_until(
        "Marathon accepting POST /v2/apps",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || request(marathon, "POST", "/v2/apps", Some(app)).filter(|(s, _)| *s != 503),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    wait_until(
        "/hello running",
        APP_TIMEOUT,
        Duration::from_millis(500),
        || {
            let v = get_json(marathon, "/v2/apps/hello")?;
            (v["app"]["tasksRunning"].as_u64()? == 1).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.consoles(60)));
    let agent_port = cluster.agents().next().unwrap().port(5051).unwrap();
    let stdout = wait_until(
        "the task's stdout through the agent's /files/read",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let s = get_json(agent_port, "/state")?;
            let dir = s["frameworks"]
                .as_array()?
                .iter()
                .flat_map(|f| f["executors"].as_array().cloned().unwrap_or_default())
                .find_map(|e| e["directory"].as_str().map(str::to_owned))?;
            let r = get_json(
                agent_port,
                &format!("/files/read?path={dir}/stdout&offset=0"),
            )?;
            let data = r["data"].as_str()?.to_owned();
            data.contains("hello-from-basalt").then_some(data)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.consoles(60)));
    println!("task stdout: {}", stdout.trim());

    // the operator's path: TLS pinned to the cluster CA, login, token checks
    let ca = std::fs::read(cluster.genconf_dir().join("secrets/ca.crt")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let gw = format!("https://127.0.0.1:{}", master.port(443).unwrap());
    let (uid, password) = basalt_qemu::cluster::SUPERUSER;
    let token = wait_until(
        "login through the gateway",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || {
            let r = client
                .post(format!("{gw}/acs/api/v1/auth/login"))
                .json(&serde_json::json!({ "uid": uid, "password": password }))
                .send()
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            let v: serde_json::Value = r.json().ok()?;
            v["token"].as_str().map(str::to_owned)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.consoles(60)));
    let r = client.get(format!("{gw}/marathon/v2/apps")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "oauthjwt");
    let auth = format!("token={token}");
    let apps: serde_json::Value = client
        .get(format!("{gw}/marathon/v2/apps"))
        .header("Authorization", &auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(apps["apps"][0]["id"], "/hello", "{apps}");
    let slaves: serde_json::Value = client
        .get(format!("{gw}/mesos/master/slaves"))
        .header("Authorization", &auth)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(slaves["slaves"].as_array().unwrap().len(), 1, "{slaves}");
    println!("gateway: login as {uid}, 401 without a token, Marathon and Mesos with it");
}
