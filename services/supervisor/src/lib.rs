//! Basalt's node supervisor (`basaltd supervisor`), the only Basalt unit enabled in a node
//! image. On every boot it:
//!
//! 1. finds the node's bundle on the config-source ladder ([`ladder`]: kernel command line
//!    `basalt.config=<url>`, a `BASALT_CONFIG` volume, NoCloud / config-drive metadata,
//!    `/etc/basalt/bundle`);
//! 2. verifies it with genconf's verifier against the cluster key in the image
//!    (`/usr/share/basalt/cluster.pub`) — any failure starts nothing and names the check
//!    that failed on the console;
//! 3. takes the role from the verified manifest and runs its `bin/ip-detect` until it
//!    prints exactly one IPv4 address ([`ipdetect`]);
//! 4. installs the node view under `/run/basalt` ([`install`]), plus `etc/node-ip` and,
//!    on agents, `etc/resources.json` from hardware detection (`basalt-agent::detect`);
//! 5. starts `basalt-<role>.target` with `StartUnit(…, "replace")` over D-Bus ([`dbus`]),
//!    follows the units' job results and active states, reports `READY=1`;
//! 6. serves node health on port 1050 ([`health`]);
//! 7. points `/etc/resolv.conf` at the node-local DNS while it answers, at the upstream
//!    resolvers otherwise ([`resolv`]).
//!
//! Seams (commands, mounts, clock, fetches, systemd, detection) are traits ([`seams`]) with
//! fakes ([`fake`]); [`Env`] bundles them.

pub mod dbus;
pub mod error;
pub mod fake;
pub mod health;
pub mod install;
pub mod ipdetect;
pub mod ladder;
pub mod layout;
pub mod notify;
pub mod resolv;
pub mod seams;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use basalt_genconf::bundle::Role;
use basalt_genconf::verify::{ClusterPublicKey, verify_bundle};
use futures::StreamExt;

pub use crate::error::{EXIT_CONFIG, Result, SupervisorError};
use crate::install::NodeFile;
pub use crate::layout::Layout;
pub use crate::seams::{Clock, CommandRunner, Fetcher, Mounter, Systemd};

/// The supervisor's own unit.
pub const SUPERVISOR_UNIT: &str = "basalt-supervisor.service";

/// Hardware detection on agents (a seam: tests use a fixed answer).
pub trait ResourceDetector: Send + Sync {
    /// Detects (or takes from the work dir's cache) what the agent advertises, as JSON.
    fn detect(
        &self,
        work_dir: &std::path::Path,
        public: bool,
    ) -> std::result::Result<serde_json::Value, String>;
}

/// `basalt-agent::detect` on this host, for the node's report (`etc/resources.json`): what
/// the agent advertises (its cache) once it has run, a fresh detection before. It never
/// writes the agent's cache: the agent's first start must detect with its full settings
/// (fault-domain script, ports, reserve) and cache that, not this report's defaults.
#[derive(Debug, Default, Clone)]
pub struct HostDetector;

impl ResourceDetector for HostDetector {
    fn detect(
        &self,
        work_dir: &std::path::Path,
        public: bool,
    ) -> std::result::Result<serde_json::Value, String> {
        use basalt_agent::detect::{DetectConfig, Detector, ResourceCache};
        let cache = ResourceCache::in_work_dir(work_dir);
        let resources = match cache.load().map_err(|e| e.to_string())? {
            Some(cached) => cached,
            None => {
                let mut cfg = DetectConfig::new(work_dir);
                cfg.public = public;
                Detector::host().detect(&cfg).map_err(|e| e.to_string())?
            }
        };
        serde_json::to_value(&resources).map_err(|e| e.to_string())
    }
}

/// Everything the supervisor touches.
#[derive(Clone)]
pub struct Env {
    pub layout: Layout,
    pub runner: Arc<dyn CommandRunner>,
    pub mounter: Arc<dyn Mounter>,
    pub clock: Arc<dyn Clock>,
    pub fetcher: Arc<dyn Fetcher>,
    pub systemd: Arc<dyn Systemd>,
    pub detector: Arc<dyn ResourceDetector>,
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct Options {
    pub ladder: ladder::LadderOptions,
    /// How long ip-detect is retried (DHCP may still be running).
    pub ip_detect_wait: Duration,
    /// Where the health API listens.
    pub health_addr: SocketAddr,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ladder: ladder::LadderOptions::default(),
            ip_detect_wait: Duration::from_secs(90),
            health_addr: SocketAddr::from(([0, 0, 0, 0], health::HEALTH_PORT)),
        }
    }
}

/// The target that brings up `role`'s components.
pub fn role_target(role: Role) -> &'static str {
    match role {
        Role::Master => "basalt-master.target",
        Role::Agent => "basalt-agent.target",
        Role::AgentPublic => "basalt-agent-public.target",
    }
}

/// The component units `role_target(role)` wants (kept equal to `units/*.target` by the
/// units test).
pub fn role_units(role: Role) -> &'static [&'static str] {
    match role {
        Role::Master => &[
            "basalt-etcd.service",
            "basalt-master.service",
            "basalt-marathon.service",
            "basalt-iam.service",
            "basalt-dns.service",
            "basalt-l4lb.service",
            "basalt-gateway.service",
            "basalt-logs.service",
        ],
        Role::Agent | Role::AgentPublic => &[
            "basalt-agent.service",
            "basalt-dns.service",
            "basalt-l4lb.service",
            "basalt-gateway.service",
            "basalt-logs.service",
        ],
    }
}

/// DC/OS name of the role in health reports.
pub fn dcos_role(role: Role) -> &'static str {
    match role {
        Role::Master => "master",
        Role::Agent => "agent",
        Role::AgentPublic => "agent_public",
    }
}

/// What [`prepare`] established.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub source: String,
    pub role: Role,
    pub cluster_id: String,
    pub ip: Ipv4Addr,
    pub files_installed: usize,
    /// Agents: why detection failed, if it did (the agent then has no resources.json).
    pub detection_error: Option<String>,
}

/// Steps 1–4: find, verify, ip-detect, install. Nothing is started.
pub async fn prepare(env: &Env, opts: &Options) -> Result<Prepared> {
    let key_path = env.layout.cluster_pub();
    let pem = std::fs::read_to_string(&key_path).map_err(SupervisorError::io(&key_path))?;
    let key = ClusterPublicKey::from_pem(&pem).map_err(|source| SupervisorError::PublicKey {
        path: key_path.clone(),
        source,
    })?;
    let obtained = ladder::obtain_bundle(env, &opts.ladder).await?;
    tracing::info!(source = %obtained.source, bytes = obtained.bytes.len(), "bundle found");
    let verified = verify_bundle(&obtained.bytes, &key, None, None).map_err(|source| {
        SupervisorError::Verify {
            source_name: obtained.source.clone(),
            source,
        }
    })?;
    let role = verified.role();
    tracing::info!(%role, cluster_id = verified.cluster_id(), config_id = verified.config_id(), "bundle verified");
    let script = verified
        .file("bin/ip-detect")
        .ok_or_else(|| SupervisorError::Source {
            source_name: obtained.source.clone(),
            reason: "the verified bundle has no bin/ip-detect".into(),
        })?;
    let ip = ipdetect::detect_ip(env, &script.data, opts.ip_detect_wait).await?;
    tracing::info!(%ip, "ip-detect");
    let view = verified
        .node_files(ip)
        .map_err(|source| SupervisorError::Verify {
            source_name: obtained.source.clone(),
            source,
        })?;
    let mut files: Vec<NodeFile> = view
        .into_iter()
        .map(|f| NodeFile {
            path: f.path,
            mode: f.mode,
            data: f.data,
        })
        .collect();
    files.push(NodeFile {
        path: "etc/node-ip".into(),
        mode: 0o644,
        data: format!("{ip}\n").into_bytes(),
    });
    let mut detection_error = None;
    if role.is_agent() {
        let work = env.layout.agent_work_dir();
        std::fs::create_dir_all(&work).map_err(SupervisorError::io(&work))?;
        let detector = env.detector.clone();
        let public = role == Role::AgentPublic;
        let w = work.clone();
        let detected = tokio::task::spawn_blocking(move || detector.detect(&w, public))
            .await
            .unwrap_or_else(|e| Err(format!("detection task: {e}")));
        match detected {
            Ok(json) => {
                let mut data = serde_json::to_vec_pretty(&json).unwrap_or_default();
                data.push(b'\n');
                files.push(NodeFile {
                    path: "etc/resources.json".into(),
                    mode: 0o644,
                    data,
                });
            }
            Err(e) => {
                eprintln!("basalt-supervisor: ERROR: hardware detection failed: {e}");
                tracing::error!(error = %e, "hardware detection failed");
                detection_error = Some(e);
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let root = env.layout.node_root();
    std::fs::create_dir_all(&root).map_err(SupervisorError::io(&root))?;
    let n = install::install(&root, &files)?;
    tracing::info!(files = n, root = %root.display(), "node view installed");
    Ok(Prepared {
        source: obtained.source,
        role,
        cluster_id: verified.cluster_id().to_string(),
        ip,
        files_installed: n,
        detection_error,
    })
}

/// Step 5: starts the role target and follows its units, logging every change (and
/// printing failures on the console). Returns the task following them.
pub async fn start_role(env: &Env, role: Role) -> Result<tokio::task::JoinHandle<()>> {
    let units: Vec<String> = role_units(role).iter().map(|s| s.to_string()).collect();
    // subscribe before starting, so no change is missed
    let mut events = env.systemd.follow(&units).await?;
    let target = role_target(role);
    env.systemd.start_unit(target).await?;
    eprintln!("basalt-supervisor: started {target}");
    Ok(tokio::spawn(async move {
        let mut last: std::collections::BTreeMap<String, String> = Default::default();
        while let Some(ev) = events.next().await {
            // a new property stream starts with the current value: log changes only
            if let seams::UnitEvent::ActiveState { unit, state } = &ev
                && last.insert(unit.clone(), state.clone()).as_ref() == Some(state)
            {
                continue;
            }
            match &ev {
                seams::UnitEvent::JobRemoved { unit, result } => {
                    tracing::info!(unit, result, "job finished");
                    if result != "done" {
                        eprintln!("basalt-supervisor: {unit}: start job {result}");
                    }
                }
                seams::UnitEvent::ActiveState { unit, state } => {
                    tracing::info!(unit, state, "active state changed");
                    if state == "failed" {
                        eprintln!("basalt-supervisor: {unit} failed");
                    }
                }
            }
        }
    }))
}

/// The health server state for a prepared node.
pub fn health_state(env: &Env, p: &Prepared) -> health::HealthState {
    let mut units = vec![SUPERVISOR_UNIT.to_string()];
    units.extend(role_units(p.role).iter().map(|s| s.to_string()));
    let hostname = std::fs::read_to_string(env.layout.path("/proc/sys/kernel/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    health::HealthState {
        systemd: env.systemd.clone(),
        runner: env.runner.clone(),
        units,
        hostname,
        ip: p.ip.to_string(),
        node_role: dcos_role(p.role).to_string(),
    }
}

/// The whole supervisor: prepare, start the role, report ready, serve health until
/// `shutdown` resolves. A failure is printed on the console (stderr: `journal+console`)
/// before it is returned.
pub async fn run(
    env: Env,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let prepared = match prepare(&env, &opts).await {
        Ok(p) => p,
        Err(e) => {
            let what = if matches!(e, SupervisorError::Verify { .. }) {
                "bundle verification failed; no component was started"
            } else {
                "node preparation failed; no component was started"
            };
            eprintln!("basalt-supervisor: FATAL: {what}: {e}");
            tracing::error!(error = %e, "{what}");
            notify::notify_status(&format!("FATAL: {e}"));
            return Err(e);
        }
    };
    eprintln!(
        "basalt-supervisor: bundle verified: role {} cluster {} from {}; node ip {}; {} files in /run/basalt",
        prepared.role, prepared.cluster_id, prepared.source, prepared.ip, prepared.files_installed
    );
    let listener = tokio::net::TcpListener::bind(opts.health_addr)
        .await
        .map_err(|source| SupervisorError::Listen {
            addr: opts.health_addr.to_string(),
            source,
        })?;
    let follower = start_role(&env, prepared.role).await?;
    notify::notify_ready();
    notify::notify_status(&format!(
        "{} started; health on :{}",
        role_target(prepared.role),
        opts.health_addr.port()
    ));
    let resolv = match resolv::ResolvSettings::from_node_root(
        &env.layout.node_root(),
        env.layout.path(resolv::RESOLV_CONF),
    ) {
        Ok(settings) => Some(tokio::spawn(
            resolv::ResolvFollower::new(settings).run(env.clock.clone()),
        )),
        Err(e) => {
            eprintln!("basalt-supervisor: resolv.conf is left alone: {e}");
            None
        }
    };
    let app = health::router(health_state(&env, &prepared));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| SupervisorError::Listen {
            addr: opts.health_addr.to_string(),
            source,
        });
    follower.abort();
    if let Some(r) = resolv {
        r.abort();
    }
    served
}

#[cfg(test)]
mod host_detector_tests {
    use super::*;
    use basalt_agent::detect::ResourceCache;

    /// On this machine: the report never creates the agent's cache, and shows the cache
    /// once the agent has written one.
    #[test]
    fn the_report_never_writes_the_agents_cache() {
        let work = tempfile::tempdir().unwrap();
        let fresh = HostDetector.detect(work.path(), false).unwrap();
        assert!(fresh["cpus"].as_f64().unwrap() > 0.0, "{fresh}");
        let cache = ResourceCache::in_work_dir(work.path());
        assert!(
            cache.load().unwrap().is_none(),
            "the supervisor wrote the cache"
        );
        // the agent caches what it advertises (here: with a changed memory figure)
        let mut adv: basalt_agent::detect::DetectedResources =
            serde_json::from_value(fresh.clone()).unwrap();
        adv.mem_mib = 12345;
        cache.store(&adv).unwrap();
        let report = HostDetector.detect(work.path(), false).unwrap();
        assert_eq!(report["mem_mib"], 12345, "{report}");
    }
}
