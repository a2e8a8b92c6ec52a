//! The real open-source DC/OS CLI (PyPI `dcoscli` 0.6.1, installed by
//! `scripts/dcos-cli.sh`) against the real gateway (TLS, auth on) of the test cluster:
//! `dcos cluster setup` with the cluster CA, then nodes, Marathon apps and tasks,
//! services, and the error a command gives before anyone logged in.
//!
//! The `dcos` executable is `$BASALT_DCOS_CLI`, else the one `scripts/dcos-cli.sh`
//! installs (`${XDG_CACHE_HOME:-$HOME/.cache}/basalt/dcoscli-venv/bin/dcos`); without
//! it the test prints a SKIPPED line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where `scripts/dcos-cli.sh` puts (or would put) the `dcos` executable.
fn dcos_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("BASALT_DCOS_CLI") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("BASALT_DCOS_CLI={} is not a file", p.display()))
        };
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(c) if !c.is_empty() => PathBuf::from(c),
        _ => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".cache"),
            None => return Err("neither XDG_CACHE_HOME nor HOME is set".into()),
        },
    };
    let venv = std::env::var_os("DCOS_CLI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("basalt/dcoscli-venv"));
    let p = venv.join("bin/dcos");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing (run scripts/dcos-cli.sh or set BASALT_DCOS_CLI)",
            p.display()
        ))
    }
}

/// Runs the real `dcos` with its own `DCOS_DIR` and no proxy or DC/OS settings from the
/// environment.
struct Dcos {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Dcos {
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env("DCOS_DIR", self.dir.path())
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.to_ascii_lowercase().ends_with("_proxy") || k.starts_with("DCOS_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env("DCOS_DIR", self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(DEADLINE, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("dcos {args:?} did not finish"))
            .expect("running dcos");
        Out::of("dcos", args, out)
    }

    async fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args, &[]).await;
        assert_eq!(out.code, 0, "dcos {args:?} failed: {out:?}");
        out
    }

    async fn json(&self, args: &[&str]) -> Value {
        self.ok(args).await.json()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_real_dcos_cli_works_against_the_gateway() {
    const NAME: &str = "the_real_dcos_cli_works_against_the_gateway";
    let bin = match dcos_bin() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIPPED {NAME}: {why}");
            return;
        }
    };
    let Some(c) = TestCluster::start(NAME, Agents::Emulated(2)).await else {
        return;
    };
    let dcos = Dcos {
        bin,
        dir: tempfile::tempdir().unwrap(),
    };
    let files = tempfile::tempdir().unwrap();
    let ca = write(files.path(), "ca.pem", c.ca.cert_pem());

    let out = dcos.ok(&["--version"]).await;
    assert!(out.stdout.contains("dcoscli.version=0.6.1"), "{out:?}");

    // setup: the CA pinned by file, the superuser's password from the environment.
    let out = dcos
        .run(
            &[
                "cluster",
                "setup",
                &c.url,
                &format!("--ca-certs={ca}"),
                &format!("--username={ADMIN}"),
                "--password-env=DCOS_TEST_PW",
            ],
            &[("DCOS_TEST_PW", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let clusters = dcos.json(&["cluster", "list", "--json"]).await;
    let clusters = clusters.as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    assert_eq!(clusters[0]["cluster_id"], CLUSTER_ID);
    assert_eq!(clusters[0]["url"], c.url.as_str());
    assert_eq!(clusters[0]["status"], "AVAILABLE");
    assert_eq!(clusters[0]["attached"], true);
    let providers = dcos.json(&["auth", "list-providers", "--json"]).await;
    assert!(
        providers.get("dcos-users").is_some(),
        "no dcos-users login provider: {providers}"
    );

    // node: the leading master (found through Mesos-DNS's master.mesos) and both agents.
    let nodes = dcos.json(&["node", "--json"]).await;
    let nodes = nodes.as_array().unwrap();
    let mut agents: Vec<&str> = nodes
        .iter()
        .filter(|n| n["type"] == "agent")
        .map(|n| n["hostname"].as_str().unwrap())
        .collect();
    agents.sort_unstable();
    assert_eq!(agents, ["agent-0.example", "agent-1.example"], "{nodes:?}");
    assert!(
        nodes
            .iter()
            .any(|n| n["type"] == "master (leader)" && n["ip"] == "127.0.0.1"),
        "no leading master: {nodes:?}"
    );
    let table = dcos.ok(&["node"]).await.stdout;
    assert!(
        table.contains("HOSTNAME") && table.contains("agent-1.example"),
        "{table}"
    );

    // marathon app add <file>, then list / show until both instances run.
    let app = write(
        files.path(),
        "app.json",
        r#"{"id": "/dcos/web", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 2}"#,
    );
    let out = dcos.ok(&["marathon", "app", "add", &app]).await;
    assert!(out.stdout.starts_with("Created deployment "), "{out:?}");
    let dup = dcos.run(&["marathon", "app", "add", &app], &[]).await;
    assert_eq!(dup.code, 1, "{dup:?}");
    assert!(dup.stderr.contains("already exists"), "{dup:?}");
    wait_until("/dcos/web at 2 running", || async {
        let apps = dcos.json(&["marathon", "app", "list", "--json"]).await;
        let app = apps.as_array()?.iter().find(|a| a["id"] == "/dcos/web")?;
        let idle = app["deployments"].as_array().is_none_or(Vec::is_empty);
        (app["tasksRunning"] == 2 && idle).then_some(())
    })
    .await;
    let table = dcos.ok(&["marathon", "app", "list"]).await.stdout;
    assert!(
        table.contains("/dcos/web") && table.contains("2/2"),
        "{table}"
    );
    let shown = dcos.json(&["marathon", "app", "show", "/dcos/web"]).await;
    assert_eq!(shown["id"], "/dcos/web");
    assert_eq!(shown["instances"], 2);
    assert_eq!(shown["cmd"], "sleep 1000");
    let mut app_tasks: Vec<String> = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    app_tasks.sort();
    assert_eq!(app_tasks.len(), 2, "{shown}");

    // marathon task list: the same two tasks, running.
    let tasks = dcos.json(&["marathon", "task", "list", "--json"]).await;
    let tasks = tasks.as_array().unwrap();
    let mut ids: Vec<String> = tasks
        .iter()
        .filter(|t| t["appId"] == "/dcos/web" && t["state"] == "TASK_RUNNING")
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, app_tasks, "{tasks:?}");

    // service: Marathon's framework, with the app's two tasks.
    let services = dcos.json(&["service", "--json"]).await;
    let marathon = services
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "marathon")
        .unwrap_or_else(|| panic!("no marathon framework: {services}"));
    assert_eq!(marathon["active"], true);
    assert_eq!(marathon["tasks"].as_array().unwrap().len(), 2, "{marathon}");

    // task: Mesos' view of the same tasks.
    let mesos_tasks = dcos.json(&["task", "--json"]).await;
    let mut ids: Vec<String> = mesos_tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING" && t["name"] == "web.dcos")
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, app_tasks, "{mesos_tasks}");
    let table = dcos.ok(&["task"]).await.stdout;
    assert!(
        table.contains("web.dcos") && table.contains(&app_tasks[0]),
        "{table}"
    );

    // marathon app remove: gone from Marathon, its tasks killed in Mesos.
    dcos.ok(&["marathon", "app", "remove", "/dcos/web"]).await;
    wait_until("/dcos/web to be removed", || async {
        let apps = dcos.json(&["marathon", "app", "list", "--json"]).await;
        let tasks = dcos.json(&["task", "--json"]).await;
        (apps.as_array()?.is_empty() && tasks.as_array()?.is_empty()).then_some(())
    })
    .await;
    let gone = dcos
        .run(&["marathon", "app", "show", "/dcos/web"], &[])
        .await;
    assert_eq!(gone.code, 1, "{gone:?}");
    assert!(gone.stderr.contains("does not exist"), "{gone:?}");

    // Without a login: the URL and CA configured by hand, no token. The Mesos client
    // sees the gateway's 401 + `WWW-Authenticate: oauthjwt` and says to log in;
    // `dcos auth login` (through the `dcos-users` provider) then gets a token and the
    // same command works.
    let anon = Dcos {
        bin: dcos.bin.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    anon.ok(&["config", "set", "core.dcos_url", &c.url]).await;
    anon.ok(&["config", "set", "core.ssl_verify", &ca]).await;
    let out = anon.run(&["node", "--json"], &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("Authentication failed") && out.stderr.contains("dcos auth login"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    // The CLI's Marathon client turns every error body without Marathon's `message` /
    // `errors` into its own text ("Service likely misconfigured" for our JSON 401,
    // "Error decoding response … HTTP 401" for Admin Router's HTML one): it fails,
    // shows nothing.
    let out = anon.run(&["marathon", "app", "list", "--json"], &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let wrong = anon
        .run(
            &[
                "auth",
                "login",
                &format!("--username={ADMIN}"),
                "--password=wrong password",
            ],
            &[],
        )
        .await;
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(wrong.stderr.contains("Authentication failed"), "{wrong:?}");
    let out = anon
        .run(
            &[
                "auth",
                "login",
                "--provider=dcos-users",
                &format!("--username={ADMIN}"),
                "--password-env=DCOS_TEST_PW",
            ],
            &[("DCOS_TEST_PW", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let nodes = anon.json(&["node", "--json"]).await;
    assert_eq!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["type"] == "agent")
            .count(),
        2,
        "{nodes}"
    );
}
