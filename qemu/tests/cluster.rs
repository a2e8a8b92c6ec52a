//! A whole cluster in QEMU: 1 master + 2 agents booted from this repository's images with
//! a real genconf bundle served over HTTP (one cluster per CI run: every check shares it).
//! Checks, in order: the supervisor verified the bundle on every node, a master is
//! elected, both agents registered with their detected resources (printed, with the
//! boot-to-registered time), etcd and the master's units are healthy
//! (`/system/health/v1`), and a Marathon app launched through the master runs on an
//! agent (its stdout read through that agent's `/files/read`); then the operator's path:
//! TLS to the gateway pinned to the cluster CA, `bootstrapuser` login through IAM, 401
//! without a token, Marathon and the Mesos master through the gateway with it.
//!
//! Then, through the QEMU guest agent (commands inside the guests):
//! - a named VIP through kernel IPVS between the two agents: a 2-instance app with a
//!   `hostname:UNIQUE` constraint and `VIP_0: /web:80` (busybox httpd answering with its
//!   host); from inside agent 1, `web.marathon.l4lb.thisdcos.directory` resolves (node-local
//!   DNS) to the VIP, `ipvsadm -Ln` lists it with both backends, the l4lb logged "data
//!   path: kernel IPVS", and repeated requests are answered by BOTH agents' instances;
//! - the agent's `KillMode=process`: `systemctl restart basalt-agent` on agent 2 keeps its
//!   task's process, and the agent recovers and re-registers with the task TASK_RUNNING;
//! - a killed backend (Marathon kill with `scale=true`) leaves agent 1's IPVS set; the
//!   time from the master's terminal task state to its removal is printed.
//!
//! Needs root, the image tools and qemu-system-x86_64 (scripts/setup.sh installs them);
//! otherwise it prints why it skips. Under TCG on a 2-core machine, boot takes minutes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use basalt_nodeimg::{BuildOptions, Role, required_tools};
use basalt_qemu::cluster::{
    Cluster, ClusterNode, ClusterSpec, MASTER_UNITS, default_images_dir, stage_basaltd,
};
use basalt_qemu::http::{get_json, request};
use basalt_qemu::{QEMU, have_program, target_dir, wait_until, workspace_dir};

const REGISTER_TIMEOUT: Duration = Duration::from_secs(900);
const APP_TIMEOUT: Duration = Duration::from_secs(300);
const AGENTS: usize = 2;
const VIP_NAME: &str = "web.marathon.l4lb.thisdcos.directory";
/// How long after its task ended a killed backend may stay in another agent's IPVS.
const REMOVAL_BOUND: Duration = Duration::from_secs(5);

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

#[test]
fn one_master_two_agents_cluster_runs_apps_and_an_ipvs_vip() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED one_master_two_agents_cluster_runs_apps_and_an_ipvs_vip: {why}");
        return;
    }
    let target = target_dir();
    let work = target.join("qemu-cluster-test");
    let basaltd = stage_basaltd(&workspace_dir(), &target, &work.join("stage")).unwrap();
    let spec = ClusterSpec::new(
        1,
        AGENTS,
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
        "boot-to-registered: {:.1} s ({accel:?}, 1 master + {AGENTS} agents)",
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

    // the agents registered with what they detected
    let state = cluster.master_state().unwrap();
    let mut hosts = BTreeSet::new();
    for agent in state["slaves"].as_array().unwrap() {
        let res = &agent["resources"];
        println!(
            "agent {} registered: cpus {} mem {} disk {} ports {}",
            agent["hostname"], res["cpus"], res["mem"], res["disk"], res["ports"]
        );
        hosts.insert(agent["hostname"].as_str().unwrap().to_owned());
        assert!(res["cpus"].as_f64().unwrap() > 0.0, "{res}");
        assert!(res["mem"].as_f64().unwrap() > 0.0, "{res}");
        assert!(res["disk"].as_f64().unwrap() > 0.0, "{res}");
        assert!(res["ports"].as_str().unwrap().starts_with('['), "{res}");
    }
    let want: BTreeSet<String> = (0..AGENTS)
        .map(|i| ClusterSpec::agent_ip(i).to_string())
        .collect();
    assert_eq!(hosts, want);

    // etcd and the master's components are healthy
    let master = cluster.masters().next().unwrap();
    let health = cluster
        .wait_master_units_healthy(MASTER_UNITS, Duration::from_secs(180))
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
    let hello_host = get_json(marathon, "/v2/apps/hello/tasks").unwrap()["tasks"][0]["host"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent_port = agent_at(&cluster, &hello_host).port(5051).unwrap();
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
    assert_eq!(
        slaves["slaves"].as_array().unwrap().len(),
        AGENTS,
        "{slaves}"
    );
    println!("gateway: login as {uid}, 401 without a token, Marathon and Mesos with it");

    // The node's journal through the gateway (dcos-log API on the master, and on an agent
    // through its gateway on :61001).
    let agent_id = slaves["slaves"][0]["id"].as_str().unwrap().to_owned();
    for path in [
        "/system/v1/logs/v1/range/?limit=3&filter=_SYSTEMD_UNIT:basalt-master.service".to_owned(),
        format!(
            "/system/v1/agent/{agent_id}/logs/v1/range/?limit=3&filter=_SYSTEMD_UNIT:basalt-agent.service"
        ),
    ] {
        let r = client
            .get(format!("{gw}{path}"))
            .header("Authorization", &auth)
            .header("Accept", "application/json")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().unwrap();
        let entries: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(entries.len(), 3, "{path}: {body}");
        let unit = path.rsplit(':').next().unwrap();
        assert!(
            entries.iter().all(|e| e["fields"]["_SYSTEMD_UNIT"] == unit),
            "{path}: {body}"
        );
    }
    println!("node logs: master's and agent's journal through /system/v1/logs");

    guest_exec_works(&cluster);
    let web = vip_between_two_agents(&cluster, marathon);
    agent_restart_keeps_its_task(&cluster, &web);
    killed_backend_leaves_ipvs(&cluster, marathon, &web);
}

/// The agent node whose cluster address is `host` (agents register with their IP).
fn agent_at<'c>(cluster: &'c Cluster, host: &str) -> &'c ClusterNode {
    cluster
        .agents()
        .find(|n| n.ip.to_string() == host)
        .unwrap_or_else(|| panic!("no agent node with address {host}"))
}

/// Runs a shell script in `node`; panics with its output unless it exits 0.
fn sh_ok(node: &ClusterNode, script: &str) -> String {
    let o = node
        .sh(script)
        .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", node.vm.console_tail(40)));
    assert!(
        o.success(),
        "{}: `{script}` exited {:?}\nstdout: {}\nstderr: {}",
        node.name,
        o.code,
        o.stdout_str(),
        o.stderr_str()
    );
    o.stdout_str()
}

fn guest_exec_works(cluster: &Cluster) {
    for n in &cluster.nodes {
        let t = n
            .wait_guest_agent(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.consoles(40)));
        println!(
            "{}: guest agent answering ({:.1} s wait)",
            n.name,
            t.as_secs_f64()
        );
    }
    let a1 = cluster.agents().next().unwrap();
    let start = Instant::now();
    let out = a1
        .exec(&["/usr/sbin/ip", "-4", "-o", "addr", "show", "dev", "cl0"])
        .unwrap();
    let took = start.elapsed();
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout_str().contains(&format!("inet {}/", a1.ip)),
        "{out:?}"
    );
    let fail = a1.sh("echo to-stderr >&2; exit 3").unwrap();
    assert_eq!(fail.code, Some(3));
    assert_eq!(fail.stderr_str(), "to-stderr\n");
    let missing = a1.exec(&["/nonexistent"]).unwrap_err().to_string();
    assert!(
        missing.contains("a1") && missing.contains("/nonexistent"),
        "{missing}"
    );
    println!(
        "guest exec: `ip addr` on a1 in {} ms, exit codes and stderr come back, errors name node and command",
        took.as_millis()
    );
}

/// The /web app's tasks: host → (task id, host port).
type WebTasks = BTreeMap<String, (String, u16)>;

fn web_tasks(marathon: u16) -> Option<WebTasks> {
    let v = get_json(marathon, "/v2/apps/web/tasks")?;
    v["tasks"]
        .as_array()?
        .iter()
        .filter(|t| t["state"].as_str().unwrap_or("TASK_RUNNING") == "TASK_RUNNING")
        .map(|t| {
            Some((
                t["host"].as_str()?.to_owned(),
                (t["id"].as_str()?.to_owned(), t["ports"][0].as_u64()? as u16),
            ))
        })
        .collect()
}

/// `ipvsadm -Ln -t <vip>` inside `node`: the backends, `None` while the service is absent.
fn ipvs_backends(node: &ClusterNode, vip: SocketAddr) -> Option<BTreeSet<SocketAddr>> {
    let o = node
        .exec(&["/usr/sbin/ipvsadm", "-Ln", "-t", &vip.to_string()])
        .ok()?;
    o.success().then(|| {
        o.stdout_str()
            .lines()
            .filter_map(|l| l.trim().strip_prefix("->"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    })
}

/// `n` requests to `url` from inside `node` (busybox wget): the answers, counted.
fn spread(node: &ClusterNode, url: &str, n: usize) -> BTreeMap<String, usize> {
    let out = sh_ok(
        node,
        &format!(
            // (busybox 1.35's wget crashes on -T: coreutils' timeout bounds each request)
            "for i in $(seq {n}); do timeout 10 /bin/busybox wget -q -O - {url} || echo FAILED; done"
        ),
    );
    let mut counts = BTreeMap::new();
    for l in out.lines() {
        *counts.entry(l.trim().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// What the web app state is after the VIP check.
struct Web {
    vip: SocketAddr,
    tasks: WebTasks,
}

fn vip_between_two_agents(cluster: &Cluster, marathon: u16) -> Web {
    let app = r#"{"id": "/web", "instances": 2, "cpus": 0.1, "mem": 32,
        "cmd": "mkdir -p www && echo \"web on $HOST\" > www/index.html && exec /bin/busybox httpd -f -p $PORT0 -h www",
        "constraints": [["hostname", "UNIQUE"]],
        "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http", "labels": {"VIP_0": "/web:80"}}]}"#;
    let (status, body) = request(marathon, "POST", "/v2/apps", Some(app)).unwrap();
    assert_eq!(status, 201, "{body}");
    let tasks = wait_until(
        "/web running on both agents",
        APP_TIMEOUT,
        Duration::from_millis(500),
        || web_tasks(marathon).filter(|t| t.len() == AGENTS),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.consoles(60)));
    println!("/web tasks (host → id, port): {tasks:?}");
    let a1 = cluster.agents().next().unwrap();
    // the node-local DNS answers the VIP name with the VIP the masters allocated
    let vip_ip = wait_until(
        "a1 resolving the VIP name",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || {
            let o = a1.exec(&["/usr/bin/getent", "hosts", VIP_NAME]).ok()?;
            let first = o.stdout_str().split_whitespace().next()?.to_owned();
            o.success().then_some(first)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.consoles(40)));
    let vips = sh_ok(
        a1,
        "timeout 10 /bin/busybox wget -q -O - http://192.0.2.11:62080/v1/vips",
    );
    assert!(vips.contains(&vip_ip), "{vip_ip} not in /v1/vips: {vips}");
    let vip: SocketAddr = format!("{vip_ip}:80").parse().unwrap();
    let want: BTreeSet<SocketAddr> = tasks
        .iter()
        .map(|(host, (_, port))| format!("{host}:{port}").parse().unwrap())
        .collect();
    wait_until(
        "a1's IPVS service for the VIP with both backends",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || (ipvs_backends(a1, vip)? == want).then_some(()),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nipvsadm -Ln: {}\n{}",
            a1.sh("/usr/sbin/ipvsadm -Ln")
                .map(|o| o.stdout_str())
                .unwrap_or_default(),
            cluster.consoles(40)
        )
    });
    let table = sh_ok(a1, "/usr/sbin/ipvsadm -Ln; cat /proc/net/ip_vs");
    println!("{VIP_NAME} → {vip}; a1's IPVS:\n{table}");
    let log = sh_ok(a1, "journalctl -u basalt-l4lb.service --no-pager -o cat");
    assert!(log.contains("data path: kernel IPVS"), "l4lb log:\n{log}");
    assert!(log.contains("IPVS local clients"), "l4lb log:\n{log}");
    println!(
        "a1's masquerade table:\n{}",
        sh_ok(a1, "/usr/sbin/nft list table ip basalt_l4lb")
    );
    // both agents answer through the VIP, by name and by address
    for url in [format!("http://{VIP_NAME}/"), format!("http://{vip}/")] {
        let counts = spread(a1, &url, 20);
        println!("VIP spread from a1 over 20 requests to {url}: {counts:?}");
        assert!(!counts.contains_key("FAILED"), "{counts:?}");
        for host in tasks.keys() {
            assert!(
                counts.get(&format!("web on {host}")).copied().unwrap_or(0) > 0,
                "no answer from {host}: {counts:?}"
            );
        }
    }
    Web { vip, tasks }
}

fn agent_restart_keeps_its_task(cluster: &Cluster, web: &Web) {
    let a2 = cluster.agents().nth(1).unwrap();
    let (task_id, port) = &web.tasks[&a2.ip.to_string()];
    // the task's httpd, found by its command line (its argv[0] is busybox)
    let pid = sh_ok(
        a2,
        &format!(
            "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null \
             | grep -q '^/bin/busybox httpd -f -p {port} ' && echo ${{p#/proc/}}; done; true"
        ),
    )
    .trim()
    .to_owned();
    assert!(
        !pid.is_empty() && !pid.contains(char::is_whitespace),
        "httpd pids on a2: {pid:?}"
    );
    let main_pid = |n: &ClusterNode| sh_ok(n, "systemctl show -p MainPID --value basalt-agent");
    let before = main_pid(a2);
    let state = cluster.master_state().unwrap();
    let slave_before = state["slaves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hostname"] == a2.ip.to_string())
        .cloned()
        .unwrap();
    let start = Instant::now();
    sh_ok(a2, "systemctl restart basalt-agent");
    let restarted = start.elapsed();
    let after = main_pid(a2);
    assert_ne!(
        before.trim(),
        after.trim(),
        "the agent's MainPID did not change"
    );
    let cmdline = sh_ok(a2, &format!("tr '\\0' ' ' < /proc/{pid}/cmdline"));
    assert!(
        cmdline.contains(&format!("httpd -f -p {port}")),
        "pid {pid} is now {cmdline:?}"
    );
    // the restarted agent recovered the task and re-registered with it
    let agent_port = a2.port(5051).unwrap();
    wait_until(
        "a2's restarted agent serving the recovered task",
        Duration::from_secs(120),
        Duration::from_millis(250),
        || {
            let s = get_json(agent_port, "/state")?;
            s["frameworks"]
                .as_array()?
                .iter()
                .flat_map(|f| f["executors"].as_array().cloned().unwrap_or_default())
                .flat_map(|e| e["tasks"].as_array().cloned().unwrap_or_default())
                .any(|t| t["id"] == task_id.as_str() && t["state"] == "TASK_RUNNING")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\na2 agent log:\n{}",
            a2.sh("journalctl -u basalt-agent.service --no-pager -o cat | tail -60")
                .map(|o| o.stdout_str())
                .unwrap_or_default()
        )
    });
    let reregistered = wait_until(
        "a2 re-registered with the master, its task TASK_RUNNING",
        Duration::from_secs(120),
        Duration::from_millis(250),
        || {
            let s = cluster.master_state()?;
            let slave = s["slaves"]
                .as_array()?
                .iter()
                .find(|x| x["hostname"] == a2.ip.to_string())?
                .clone();
            let again = slave.get("reregistered_time").filter(|t| !t.is_null())?;
            (Some(again) != slave_before.get("reregistered_time")).then_some(())?;
            let running = s["frameworks"]
                .as_array()?
                .iter()
                .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
                .any(|t| t["id"] == task_id.as_str() && t["state"] == "TASK_RUNNING");
            running.then_some(start.elapsed())
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nmaster state: {}",
            cluster.master_state().unwrap_or_default()
        )
    });
    println!(
        "agent restart on a2: systemctl restart took {:.1} s, httpd pid {pid} survived, \
         re-registered with the task TASK_RUNNING {:.1} s after the restart began",
        restarted.as_secs_f64(),
        reregistered.as_secs_f64()
    );
}

/// Polls until `check` returns `Some`; returns it with the time since `start` and how
/// long one check took on average (the resolution of that time).
fn timed<T>(
    what: &str,
    start: Instant,
    mut check: impl FnMut() -> Option<T>,
) -> (T, Duration, Duration) {
    let mut rounds = 0u32;
    let v = wait_until(what, Duration::from_secs(120), Duration::ZERO, || {
        rounds += 1;
        check()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let at = start.elapsed();
    (v, at, at / rounds.max(1))
}

fn task_ended(state: &serde_json::Value, task_id: &str) -> bool {
    state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| {
            let mut all = f["tasks"].as_array().cloned().unwrap_or_default();
            all.extend(f["completed_tasks"].as_array().cloned().unwrap_or_default());
            all
        })
        .any(|t| {
            t["id"] == task_id
                && !matches!(
                    t["state"].as_str(),
                    Some("TASK_RUNNING" | "TASK_KILLING" | "TASK_STAGING" | "TASK_STARTING")
                )
        })
}

fn killed_backend_leaves_ipvs(cluster: &Cluster, marathon: u16, web: &Web) {
    let a1 = cluster.agents().next().unwrap();
    let a2 = cluster.agents().nth(1).unwrap();
    let (task_id, port) = web.tasks[&a2.ip.to_string()].clone();
    let gone: SocketAddr = format!("{}:{port}", a2.ip).parse().unwrap();
    assert!(ipvs_backends(a1, web.vip).unwrap().contains(&gone));
    let start = Instant::now();
    let (status, body) = request(
        marathon,
        "DELETE",
        &format!("/v2/apps/web/tasks/{task_id}?scale=true"),
        None,
    )
    .unwrap();
    assert!((200..300).contains(&status), "{status} {body}");
    // Two pollers side by side, so each time's resolution is one round of its own poll:
    // the master's state over HTTP, and a1's IPVS table through guest exec.
    let ((left, removed, removed_res), ended, ended_res) = std::thread::scope(|s| {
        let ipvs = s.spawn(|| {
            timed("the killed backend to leave a1's IPVS", start, || {
                ipvs_backends(a1, web.vip).filter(|b| !b.contains(&gone))
            })
        });
        let ((), ended, ended_res) = timed("the master showing the task ended", start, || {
            task_ended(&cluster.master_state()?, &task_id).then_some(())
        });
        (ipvs.join().unwrap(), ended, ended_res)
    });
    println!(
        "backend removal: the master showed the task ended {} ms after the kill (±{} ms), \
         it left a1's IPVS {} ms after the kill (±{} ms): {} ms after the task ended",
        ended.as_millis(),
        ended_res.as_millis(),
        removed.as_millis(),
        removed_res.as_millis(),
        removed.as_millis() as i128 - ended.as_millis() as i128
    );
    // Event-driven all the way (etcd watch → /master/state fetch → feed long-poll →
    // netlink), no timer: under TCG the /master/state fetches of a debug master dominate
    // (0.85-2.2 s measured on a 2-core host with 3 guests); the bound catches a fall back
    // to polling or a held feed, the printed figure is the measurement.
    assert!(
        removed.saturating_sub(ended) < REMOVAL_BOUND,
        "the backend left IPVS {} ms after its task ended",
        removed.saturating_sub(ended).as_millis()
    );
    assert_eq!(left.len(), 1, "{left:?}");
    let counts = spread(a1, &format!("http://{}/", web.vip), 5);
    assert_eq!(
        counts,
        BTreeMap::from([(format!("web on {}", a1.ip), 5)]),
        "after the kill"
    );
}
