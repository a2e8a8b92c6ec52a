//! A real in-process test cluster for the CLI's end-to-end tests, built from the other
//! crates' public test APIs: real etcd and a real master with agents
//! (`basalt_master::testing`; emulated agents, or the real agent daemon), the real IAM
//! (auth on, superuser `admin`), the real Marathon, and the real gateway over TLS with
//! a certificate from a throwaway cluster CA, the real log service (basalt-logs) over a
//! real journal (written with systemd-journal-remote) behind it and behind a real agent
//! gateway, and the real DNS service (basalt-dns, following the master through etcd) as
//! the gateway's `/mesos_dns`. The `basalt` binary runs as a child process with `BASALT_DIR` set to a
//! temporary folder.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use basalt_gateway::{GatewayConfig, GatewayServer, TlsPems};
use basalt_iam::keys::pem_encode;
use basalt_iam::{EtcdIamStore, IamConfig, IamServer, SeedCredential, SuperuserSeed, TokenSigner};
use basalt_logs::testing::{TestEntry, TestJournal};
use basalt_logs::{LogsConfig, LogsServer};
use basalt_marathon::server::{MarathonConfig, MarathonHandle};
use basalt_master::testing::{AgentOptions, Cluster, EmulatedAgent, TEST_CREDENTIAL};
use basalt_store::testing::TestCa;
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_basalt");
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery";
/// A UUID v4 like the ids genconf makes (the DC/OS CLI only lists clusters named so).
pub const CLUSTER_ID: &str = "5b7f3c1e-2a4d-4e6f-8a9b-0c1d2e3f4a5b";
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Which agents the cluster gets.
pub enum Agents {
    /// `n` emulated agents (no processes run; tasks go RUNNING at once).
    Emulated(usize),
    /// One real agent daemon (plain processes, no isolation) on this work dir.
    Real(PathBuf),
}

/// The node log service of the test cluster and the journal it reads.
pub struct Logs {
    pub journal: TestJournal,
    pub server: LogsServer,
    /// An agent gateway (`/system/v1/logs` → the same service), the master gateway's
    /// `agent_gateway_port`: agents on 127.0.0.1 have their logs there.
    pub agent_gw: GatewayServer,
}

/// The entries the test journal starts with.
pub fn journal_entries() -> Vec<TestEntry> {
    vec![
        TestEntry::new("basalt-master.service", "master ready"),
        TestEntry::new("basalt-gateway.service", "gateway listening"),
        TestEntry::new("basalt-master.service", "leading"),
    ]
}

pub struct TestCluster {
    /// `Err`: why the log service could not run here (a tool is missing).
    pub logs: Result<Logs, String>,
    pub master: Cluster,
    pub emulated: Vec<EmulatedAgent>,
    pub real: Option<basalt_agent::daemon::AgentDaemon>,
    pub iam: IamServer<EtcdIamStore>,
    pub marathon: MarathonHandle,
    /// Mesos-DNS's HTTP API behind the gateway's `/mesos_dns` (`dcos node` asks it for
    /// `master.mesos`).
    pub dns: basalt_dns::Service,
    pub gw: GatewayServer,
    pub ca: TestCa,
    pub key_pem: String,
    /// `https://localhost:<port>`.
    pub url: String,
    /// `sha256:<hex>` of the CA.
    pub fingerprint: String,
    /// `BASALT_DIR`.
    pub home: tempfile::TempDir,
}

/// What a `basalt` run printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "basalt failed: {self:?}");
        self
    }

    /// Asserts a failure whose stderr contains every needle.
    pub fn fails_with(self, needles: &[&str]) -> Out {
        assert_eq!(self.code, 1, "expected exit 1: {self:?}");
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}: {self:?}");
        }
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs `basalt args` with `BASALT_DIR=home`, optional stdin and extra env.
pub async fn run_in(home: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env("BASALT_DIR", home)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
    for v in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning basalt");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().unwrap();
        si.write_all(input.as_bytes()).await.unwrap();
        drop(si);
    }
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("basalt {args:?} did not finish"))
        .unwrap();
    Out::of("basalt", args, out)
}

impl Out {
    /// The outcome of `program args`; with BASALT_TEST_ECHO=1 (and --nocapture) every run
    /// is shown, for reading the output.
    pub fn of(program: &str, args: &[&str], out: std::process::Output) -> Out {
        let out = Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if std::env::var_os("BASALT_TEST_ECHO").is_some() {
            eprintln!(
                "$ {program} {}\n[exit {}]\n{}{}",
                args.join(" "),
                out.code,
                out.stdout,
                out.stderr
            );
        }
        out
    }
}

/// Starts `basalt args` with stdout piped (for `--follow`); killed when dropped.
pub fn spawn_in(home: &Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args(args)
        .env("BASALT_DIR", home)
        .env_remove("RUST_LOG")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning basalt")
}

/// Polls `check` until it returns `Some` (fails the test after [`DEADLINE`]).
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn new_key_pem() -> String {
    let rng = ring::rand::SystemRandom::new();
    let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    pem_encode("PRIVATE KEY", doc.as_ref())
}

/// A journal with [`journal_entries`], the log service on it, and an agent gateway.
async fn start_logs() -> Result<Logs, String> {
    let mut journal = TestJournal::new()?;
    journal.append(&journal_entries())?;
    let server = LogsServer::start(LogsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        journalctl: journal.journalctl().to_owned(),
        directory: Some(journal.dir().to_owned()),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut acfg = GatewayConfig::agent();
    acfg.http_listen = Some("127.0.0.1:0".parse().unwrap());
    acfg.metrics_listen = None;
    acfg.upstreams.logs = server.addr().to_string();
    let agent_gw = GatewayServer::start(acfg, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Logs {
        journal,
        server,
        agent_gw,
    })
}

impl TestCluster {
    /// Starts everything; `None` (with a SKIPPED line) without etcd.
    pub async fn start(test: &str, agents: Agents) -> Option<TestCluster> {
        let Some(master) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
            eprintln!("SKIPPED {test}: etcd is not installed (set BASALT_ETCD_BIN)");
            return None;
        };
        let leader = master.wait_leader(DEADLINE).await.unwrap();
        let mut emulated = Vec::new();
        let mut real = None;
        match agents {
            Agents::Emulated(n) => {
                for i in 0..n {
                    let opts = AgentOptions::new(
                        &format!("agent-{i}.example"),
                        "cpus:4;mem:4096;disk:1000;ports:[31000-31100]",
                        master.addresses(),
                    )
                    .unwrap();
                    let a = EmulatedAgent::start(opts);
                    a.wait_registered(1, DEADLINE).await.unwrap();
                    emulated.push(a);
                }
            }
            Agents::Real(work) => {
                use basalt_agent::containerizer::Isolation;
                use basalt_agent::daemon::{AgentConfig, AgentDaemon, ResourceSource};
                let mut cfg = AgentConfig::new(
                    master.addresses(),
                    Some(TEST_CREDENTIAL.to_string()),
                    &work,
                    "127.0.0.1",
                );
                cfg.listen = "127.0.0.1:0".parse().unwrap();
                cfg.resources = ResourceSource::Given {
                    resources: basalt_mesos_resources(
                        "cpus:2;mem:1024;disk:1024;ports:[31000-31100]",
                    ),
                    attributes: basalt_mesos::Attributes::default(),
                };
                cfg.containers.isolation = Isolation::none();
                cfg.containers.switch_user = false;
                let agent = AgentDaemon::start(cfg).await.unwrap();
                wait_until("the real agent to register", || async {
                    (agent.connected() && agent.agent_id().is_some()).then_some(())
                })
                .await;
                real = Some(agent);
            }
        }

        let mut mcfg = MarathonConfig::new(master.url(leader));
        mcfg.listen = "127.0.0.1:0".parse().unwrap();
        mcfg.election_ttl = Duration::from_secs(2);
        let marathon = basalt_marathon::server::start(mcfg, master.etcd.store())
            .await
            .unwrap();

        let key_pem = new_key_pem();
        let signer = TokenSigner::from_pkcs8_pem(&key_pem, "basalt-iam").unwrap();
        let public = signer.public_key_pem();
        let iam_config = IamConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            superuser: Some(SuperuserSeed {
                uid: ADMIN.to_owned(),
                credential: SeedCredential::PasswordHash(
                    basalt_genconf::password::hash_password(ADMIN_PASSWORD).unwrap(),
                ),
            }),
            ..IamConfig::default()
        };
        let iam = IamServer::start(EtcdIamStore::new(master.etcd.store()), signer, iam_config)
            .await
            .unwrap();

        let masters = master.addresses();
        let dns = basalt_dns::Service::start(
            basalt_dns::DnsConfig {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                http_listen: Some("127.0.0.1:0".parse().unwrap()),
                external_on: false,
                masters: masters.clone(),
                ..basalt_dns::DnsConfig::default()
            },
            basalt_dns::EtcdWatchSource::new(
                master.etcd.store(),
                basalt_dns::MasterEndpoints::from_masters(&masters),
            )
            .unwrap(),
        )
        .await
        .unwrap();

        let ca = TestCa::new("basalt cli test CA").unwrap();
        let (cert, key) = ca.issue("gateway").unwrap();
        let mut config = GatewayConfig {
            https_listen: Some("127.0.0.1:0".parse().unwrap()),
            http_listen: None,
            metrics_listen: None,
            tls: Some(TlsPems {
                cert_chain: cert,
                key,
            }),
            ca_pem: Some(ca.cert_pem().to_owned()),
            iam_public_key_pem: Some(public),
            state_cache_ttl: Duration::from_millis(200),
            ..GatewayConfig::default()
        };
        config.upstreams.iam = iam.addr().to_string();
        config.upstreams.marathon = marathon.addr.to_string();
        config.upstreams.mesos_dns = dns.http_addr.unwrap().to_string();
        config.metadata.cluster_id = CLUSTER_ID.into();
        let logs = start_logs().await;
        if let Ok(l) = &logs {
            config.upstreams.logs = l.server.addr().to_string();
            config.upstreams.agent_gateway_port = l.agent_gw.http_addr().unwrap().port();
        }
        let gw = GatewayServer::start(config, Some(master.etcd.store()))
            .await
            .unwrap();
        let url = format!("https://localhost:{}", gw.https_addr().unwrap().port());
        let der = basalt_cli::client::pem_certificate_der(ca.cert_pem()).unwrap();
        let fingerprint = basalt_cli::client::fingerprint(&der);

        // Marathon subscribed (its framework id known) before the tests use it.
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let info_url = format!("http://{}/v2/info", marathon.addr);
        wait_until("Marathon to subscribe", || async {
            let v: Value = http.get(&info_url).send().await.ok()?.json().await.ok()?;
            v["frameworkId"].as_str().map(|_| ())
        })
        .await;

        Some(TestCluster {
            logs,
            master,
            emulated,
            real,
            iam,
            marathon,
            dns,
            gw,
            ca,
            key_pem,
            url,
            fingerprint,
            home: tempfile::tempdir().unwrap(),
        })
    }

    pub fn signer(&self) -> TokenSigner {
        TokenSigner::from_pkcs8_pem(&self.key_pem, "basalt-iam").unwrap()
    }

    pub async fn basalt(&self, args: &[&str]) -> Out {
        run_in(self.home.path(), args, None, &[]).await
    }

    pub async fn basalt_stdin(&self, args: &[&str], stdin: &str) -> Out {
        run_in(self.home.path(), args, Some(stdin), &[]).await
    }

    pub async fn basalt_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        run_in(self.home.path(), args, None, env).await
    }

    /// `basalt cluster setup` with the right fingerprint and the admin's password.
    pub async fn setup(&self) {
        self.basalt_env(
            &[
                "cluster",
                "setup",
                &self.url,
                "--ca-fingerprint",
                &self.fingerprint,
                "--username",
                ADMIN,
                "--password-env",
                "BASALT_TEST_PASSWORD",
            ],
            &[("BASALT_TEST_PASSWORD", ADMIN_PASSWORD)],
        )
        .await
        .ok();
    }

    /// The stored cluster folder.
    pub fn cluster_dir(&self) -> PathBuf {
        self.home.path().join("clusters").join(CLUSTER_ID)
    }
}

fn basalt_mesos_resources(text: &str) -> basalt_mesos::Resources {
    basalt_mesos::Resources::parse(text).unwrap()
}
