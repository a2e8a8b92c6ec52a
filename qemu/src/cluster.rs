//! A whole Basalt cluster in QEMU: N masters + M agents built from this repository's node
//! images, configured by a real genconf run, on one private L2 segment.
//!
//! ```text
//!   host (127.0.0.1)                       private segment 192.0.2.0/24 (QEMU multicast
//!   ├─ FileServer: genconf serve/ ─┐       socket netdev, on loopback; NIC `cl0`)
//!   │   (guests: 10.0.2.2:<port>)  │       ┌────────────┐   ┌────────────┐
//!   ├─ forwards 127.0.0.1:<p> ─────┼──────>│ m1 .11     │───│ a1 .21     │ …
//!   │   → guest :5050 :8080 :443 … │ user  │ master img │   │ agent img  │
//!   └──────────────────────────────┘ net   └────────────┘   └────────────┘
//! ```
//!
//! Every VM has two NICs: QEMU's user network (DHCP from QEMU, the host's loopback at
//! 10.0.2.2 for the bundle, TCP forwards for the APIs) and `cl0` on the shared segment with
//! a static address from the kernel command line (`ifname=cl0:<mac> ip=<ip>:::<mask>::cl0:off`,
//! turned into networkd files by systemd-network-generator). The bundle comes from
//! `basalt.config=http://10.0.2.2:<port>/bundles/<role>.tar`, so nothing is written into
//! an image. The genconf folder (and so the cluster's keys) is kept in the work folder:
//! an image carries the cluster public key, so reusing the keys reuses the images.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use basalt_nodeimg::node::{NodePayload, build_node_image};
use basalt_nodeimg::{Artifacts, Role};

use crate::error::{QemuError, Result};
use crate::guest::{self, ExecOutput, GuestError};
use crate::http::{FileServer, get_json};
use crate::vm::{Boot, Net, Vm};
use crate::{BootMode, image_vm, wait_until};

/// The cluster segment; masters are .11, .12, …, agents .21, .22, ….
pub const SEGMENT_PREFIX: [u8; 3] = [192, 0, 2];
/// The DC/OS habit for test clusters: `bootstrapuser` / `deleteme`.
pub const SUPERUSER: (&str, &str) = ("bootstrapuser", "deleteme");
/// The interface name of the cluster NIC inside the guests.
pub const CLUSTER_NIC: &str = "cl0";

/// How long [`ClusterNode::exec`] waits for a guest command.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

/// Guest ports forwarded to the host, per role.
pub const MASTER_PORTS: &[u16] = &[5050, 8080, 443, 1050, 2379];
pub const AGENT_PORTS: &[u16] = &[5051, 1050, 61001];

/// What to boot and where.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub masters: usize,
    pub agents: usize,
    /// genconf folder, consoles, overlays.
    pub work_dir: PathBuf,
    /// `<images_dir>/<role>/`: built once, reused while inputs are unchanged.
    pub images_dir: PathBuf,
    pub basaltd: PathBuf,
    pub units_dir: PathBuf,
    pub master_memory_mib: u32,
    pub agent_memory_mib: u32,
    pub cpus: u32,
}

impl ClusterSpec {
    pub fn new(
        masters: usize,
        agents: usize,
        work_dir: impl Into<PathBuf>,
        images_dir: impl Into<PathBuf>,
        basaltd: impl Into<PathBuf>,
        units_dir: impl Into<PathBuf>,
    ) -> ClusterSpec {
        ClusterSpec {
            masters,
            agents,
            work_dir: work_dir.into(),
            images_dir: images_dir.into(),
            basaltd: basaltd.into(),
            units_dir: units_dir.into(),
            master_memory_mib: 1536,
            agent_memory_mib: 1024,
            cpus: 2,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(1..=9).contains(&self.masters) || self.masters.is_multiple_of(2) {
            return Err(QemuError::Config(format!(
                "masters: {} (1, 3, 5, 7 or 9: etcd needs an odd quorum)",
                self.masters
            )));
        }
        if self.agents > 9 {
            return Err(QemuError::Config(format!(
                "agents: {} (at most 9)",
                self.agents
            )));
        }
        Ok(())
    }

    pub fn master_ip(i: usize) -> Ipv4Addr {
        let [a, b, c] = SEGMENT_PREFIX;
        Ipv4Addr::new(a, b, c, 11 + i as u8)
    }

    pub fn agent_ip(i: usize) -> Ipv4Addr {
        let [a, b, c] = SEGMENT_PREFIX;
        Ipv4Addr::new(a, b, c, 21 + i as u8)
    }

    pub fn genconf_dir(&self) -> PathBuf {
        self.work_dir.join("genconf")
    }
}

/// The ip-detect script of QEMU clusters: the address of the cluster NIC.
pub fn ip_detect_script() -> String {
    format!(
        "#!/bin/sh\n# the address of the cluster NIC ({CLUSTER_NIC}, static from the kernel command line)\n\
         ip -4 -o addr show dev {CLUSTER_NIC} | sed -n 's/.* inet \\([0-9.]*\\)\\/.*/\\1/p'\n"
    )
}

/// Writes `config.toml` + ip-detect into the genconf folder (keeping its `secrets/`) and
/// generates `serve/`. `bootstrap_url` is where guests fetch bundles.
pub fn write_genconf(spec: &ClusterSpec, bootstrap_url: &str) -> Result<PathBuf> {
    let dir = spec.genconf_dir();
    std::fs::create_dir_all(&dir).map_err(QemuError::io(&dir))?;
    let hash_path = dir.join("superuser.hash");
    let hash = match std::fs::read_to_string(&hash_path) {
        Ok(h) if !h.trim().is_empty() => h.trim().to_owned(),
        _ => {
            let h = basalt_genconf::password::hash_password(SUPERUSER.1)
                .map_err(|e| QemuError::Config(format!("hashing the superuser password: {e}")))?;
            std::fs::write(&hash_path, &h).map_err(QemuError::io(&hash_path))?;
            h
        }
    };
    let masters: Vec<String> = (0..spec.masters)
        .map(|i| format!("\"{}\"", ClusterSpec::master_ip(i)))
        .collect();
    let config = format!(
        "# A Basalt cluster in QEMU (written by basalt-qemu)\n\
         cluster_name = \"basalt-qemu\"\n\
         masters = [{}]\n\
         bootstrap_url = \"{bootstrap_url}\"\n\
         ip_detect = \"ip-detect\"\n\
         # QEMU user network's resolver (no outside network in tests)\n\
         resolvers = [\"10.0.2.3\"]\n\n\
         [auth]\n\
         enabled = true\n\
         superuser_uid = \"{}\"\n\
         superuser_password_hash = \"{hash}\"\n",
        masters.join(", "),
        SUPERUSER.0
    );
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config).map_err(QemuError::io(&cfg))?;
    let script = dir.join("ip-detect");
    std::fs::write(&script, ip_detect_script()).map_err(QemuError::io(&script))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .map_err(QemuError::io(&script))?;
    basalt_genconf::generate::generate(&dir, &dir.join("serve"))
        .map_err(|e| QemuError::Config(format!("genconf in {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Builds (or reuses) the images a spec needs.
pub fn build_images(spec: &ClusterSpec) -> Result<BTreeMap<Role, Artifacts>> {
    let payload = NodePayload {
        basaltd: spec.basaltd.clone(),
        units_dir: spec.units_dir.clone(),
        cluster_pub: spec.genconf_dir().join("serve/cluster.pub"),
    };
    let mut roles = vec![Role::Master];
    if spec.agents > 0 {
        roles.push(Role::Agent);
    }
    let mut out = BTreeMap::new();
    for role in roles {
        let a = build_node_image(role, &spec.images_dir.join(role.as_str()), &payload)
            .map_err(|e| QemuError::Config(format!("building the {role} image: {e}")))?;
        out.insert(role, a);
    }
    Ok(out)
}

/// One booted node.
pub struct ClusterNode {
    pub name: String,
    pub role: Role,
    pub ip: Ipv4Addr,
    /// guest port → host port on 127.0.0.1.
    pub ports: BTreeMap<u16, u16>,
    pub vm: Vm,
}

impl ClusterNode {
    /// The host port forwarded to `guest_port`.
    pub fn port(&self, guest_port: u16) -> Option<u16> {
        self.ports.get(&guest_port).copied()
    }

    /// Runs `argv` (`argv[0]` an absolute path) inside this node through its QEMU guest
    /// agent and waits for it to end (at most [`EXEC_TIMEOUT`]).
    pub fn exec(&self, argv: &[&str]) -> Result<ExecOutput, GuestError> {
        self.exec_timeout(argv, EXEC_TIMEOUT)
    }

    /// [`ClusterNode::exec`] with its own time limit.
    pub fn exec_timeout(&self, argv: &[&str], timeout: Duration) -> Result<ExecOutput, GuestError> {
        guest::exec(
            &self.name,
            &self.vm.config.guest_agent_path(),
            argv,
            timeout,
        )
    }

    /// `/bin/sh -c script` inside this node.
    pub fn sh(&self, script: &str) -> Result<ExecOutput, GuestError> {
        self.exec(&["/bin/sh", "-c", script])
    }

    /// Waits until the node's guest agent answers (it starts with the guest's udev); on
    /// timeout the last failure is the error.
    pub fn wait_guest_agent(&self, timeout: Duration) -> Result<Duration, GuestError> {
        let start = Instant::now();
        let socket = self.vm.config.guest_agent_path();
        let mut last = None;
        wait_until(
            &format!("the guest agent of {}", self.name),
            timeout,
            Duration::from_millis(500),
            || match guest::ping(&self.name, &socket) {
                Ok(()) => Some(()),
                Err(e) => {
                    last = Some(e);
                    None
                }
            },
        )
        .map_err(|t| {
            last.unwrap_or_else(|| GuestError::Timeout {
                node: self.name.clone(),
                command: "guest-sync".into(),
                waited: t.waited,
            })
        })?;
        Ok(start.elapsed())
    }
}

/// A running cluster; dropping it stops every VM and the bundle server.
pub struct Cluster {
    pub spec: ClusterSpec,
    pub nodes: Vec<ClusterNode>,
    pub images: BTreeMap<Role, Artifacts>,
    pub started: Instant,
    pub bundles: FileServer,
}

fn free_tcp_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(QemuError::io("127.0.0.1:0"))?;
    Ok(l.local_addr().map_err(QemuError::io("127.0.0.1:0"))?.port())
}

fn free_udp_port() -> Result<u16> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(QemuError::io("127.0.0.1:0/udp"))?;
    Ok(s.local_addr()
        .map_err(QemuError::io("127.0.0.1:0/udp"))?
        .port())
}

impl Cluster {
    /// genconf, images, bundle server, then every VM (masters first). Returns once QEMU
    /// runs; use [`Cluster::wait_registered`] to wait for the cluster itself.
    pub fn boot(spec: ClusterSpec) -> Result<Cluster> {
        spec.validate()?;
        std::fs::create_dir_all(&spec.work_dir).map_err(QemuError::io(&spec.work_dir))?;
        let serve = spec.genconf_dir().join("serve");
        std::fs::create_dir_all(&serve).map_err(QemuError::io(&serve))?;
        let bundles = FileServer::start(&serve)?;
        write_genconf(&spec, &format!("http://10.0.2.2:{}", bundles.port))?;
        let images = build_images(&spec)?;
        let group = SocketAddrV4::new(Ipv4Addr::new(230, 0, 0, 1), free_udp_port()?);
        let mut plan: Vec<(String, Role, Ipv4Addr)> = (0..spec.masters)
            .map(|i| {
                (
                    format!("m{}", i + 1),
                    Role::Master,
                    ClusterSpec::master_ip(i),
                )
            })
            .collect();
        plan.extend(
            (0..spec.agents)
                .map(|i| (format!("a{}", i + 1), Role::Agent, ClusterSpec::agent_ip(i))),
        );
        let started = Instant::now();
        let mut nodes = Vec::new();
        for (n, (name, role, ip)) in plan.into_iter().enumerate() {
            let artifacts = images
                .get(&role)
                .ok_or_else(|| QemuError::Config(format!("no {role} image")))?;
            let guest_ports = if role == Role::Master {
                MASTER_PORTS
            } else {
                AGENT_PORTS
            };
            let mut ports = BTreeMap::new();
            for g in guest_ports {
                ports.insert(*g, free_tcp_port()?);
            }
            let mac = format!("52:54:00:ba:5a:{:02x}", n + 1);
            let node_dir = spec.work_dir.join(&name);
            let _ = std::fs::remove_dir_all(&node_dir);
            let mut cfg = image_vm(&name, artifacts, None, BootMode::Direct, &node_dir, 2 << 30)?;
            if let Boot::Direct { cmdline, .. } = &mut cfg.boot {
                cmdline.push_str(&format!(
                    " basalt.config=http://10.0.2.2:{}/bundles/{}.tar ifname={CLUSTER_NIC}:{mac} \
                     ip={ip}:::255.255.255.0:{name}:{CLUSTER_NIC}:off",
                    bundles.port,
                    role.as_str()
                ));
            }
            cfg.memory_mib = if role == Role::Master {
                spec.master_memory_mib
            } else {
                spec.agent_memory_mib
            };
            cfg.cpus = spec.cpus;
            cfg.nets = vec![
                Net::User {
                    restrict: false,
                    forwards: ports.iter().map(|(g, h)| (*h, *g)).collect(),
                },
                Net::Multicast { group, mac },
            ];
            let vm = Vm::start(cfg)?;
            tracing::info!(node = %name, %ip, console = %vm.console_path().display(), "booting");
            nodes.push(ClusterNode {
                name,
                role,
                ip,
                ports,
                vm,
            });
        }
        Ok(Cluster {
            spec,
            nodes,
            images,
            started,
            bundles,
        })
    }

    pub fn masters(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.role == Role::Master)
    }

    pub fn agents(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.role != Role::Master)
    }

    /// `/master/state` of the first master that answers (followers answer too).
    pub fn master_state(&self) -> Option<serde_json::Value> {
        master_state_of(&self.nodes)
    }

    /// The first node whose QEMU has exited, as an error.
    fn exited(nodes: &mut [ClusterNode], waiting_for: &str) -> Option<QemuError> {
        nodes.iter_mut().find_map(|n| {
            n.vm.exit_status().map(|status| QemuError::Exited {
                name: n.name.clone(),
                status: status.to_string(),
                waiting_for: waiting_for.to_owned(),
                tail: n.vm.console_tail(40),
            })
        })
    }

    /// Waits until a master is elected and every agent has registered; returns the time
    /// since the VMs were started. Fails early when a VM exits.
    pub fn wait_registered(&mut self, timeout: Duration) -> Result<Duration> {
        let want = self.spec.agents;
        let what = format!("an elected master and {want} registered agents");
        let mut exited = None;
        let nodes = &mut self.nodes;
        wait_until(&what, timeout, Duration::from_millis(500), || {
            if let Some(e) = Cluster::exited(nodes, &what) {
                exited = Some(e);
                return Some(());
            }
            let s = master_state_of(nodes)?;
            s["leader"].as_str().filter(|l| !l.is_empty())?;
            (s["slaves"].as_array()?.len() == want).then_some(())
        })?;
        match exited {
            Some(e) => Err(e),
            None => Ok(self.started.elapsed()),
        }
    }

    /// Waits until every master's node health report (`/system/health/v1`, guest port
    /// 1050) shows each of `units` healthy; returns the first master's report.
    pub fn wait_master_units_healthy(
        &self,
        units: &[&str],
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let what = format!("{} healthy on every master", units.join(", "));
        let ports: Vec<u16> = self.masters().filter_map(|m| m.port(1050)).collect();
        let report = wait_until(&what, timeout, Duration::from_millis(500), || {
            let reports: Vec<serde_json::Value> = ports
                .iter()
                .map(|p| get_json(*p, "/system/health/v1"))
                .collect::<Option<_>>()?;
            reports
                .iter()
                .all(|r| units.iter().all(|u| unit_health(r, u) == Some(0)))
                .then(|| reports.into_iter().next())
                .flatten()
        })?;
        Ok(report)
    }

    /// Every node's console tail, for failure messages.
    pub fn consoles(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "── {} ({}, {}) console {}:\n{}\n",
                    n.name,
                    n.role,
                    n.ip,
                    n.vm.console_path().display(),
                    n.vm.console_tail(lines)
                )
            })
            .collect()
    }

    /// Where the folder of a spec's genconf lives.
    pub fn genconf_dir(&self) -> PathBuf {
        self.spec.genconf_dir()
    }
}

/// The master units a user needs before the cluster is usable (the gateway's login and
/// routes included): what `basalt-qemu up` and the cluster test wait for.
pub const MASTER_UNITS: &[&str] = &[
    "basalt-etcd.service",
    "basalt-master.service",
    "basalt-marathon.service",
    "basalt-iam.service",
    "basalt-gateway.service",
    "basalt-logs.service",
];

/// The `health` of unit `id` in a node health report (0 = healthy).
pub fn unit_health(report: &serde_json::Value, id: &str) -> Option<i64> {
    report["units"].as_array()?.iter().find(|u| u["id"] == id)?["health"].as_i64()
}

fn master_state_of(nodes: &[ClusterNode]) -> Option<serde_json::Value> {
    nodes
        .iter()
        .filter(|n| n.role == Role::Master)
        .find_map(|m| get_json(m.port(5050)?, "/master/state"))
}

/// Where cluster images live by default: `<target>/nodeimg-cluster` (shared by `up` and
/// the cluster test, so one build serves both).
pub fn default_images_dir(target: &Path) -> PathBuf {
    target.join("nodeimg-cluster")
}

/// Builds `basaltd` (debug; a no-op when up to date) with the workspace's cargo and puts a
/// stripped copy in `stage` (an image wants no debug info). For tests and `basalt-qemu up`.
pub fn stage_basaltd(workspace: &Path, target: &Path, stage: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(&cargo)
        .args(["build", "-p", "basaltd"])
        .current_dir(workspace)
        .output()
        .map_err(|source| QemuError::Spawn {
            program: "cargo".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(QemuError::Command {
            command: "cargo build -p basaltd".into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    std::fs::create_dir_all(stage).map_err(QemuError::io(stage))?;
    let built = target.join("debug/basaltd");
    let staged = stage.join("basaltd");
    std::fs::copy(&built, &staged).map_err(QemuError::io(&built))?;
    if crate::have_program("strip") {
        let out = std::process::Command::new("strip")
            .arg(&staged)
            .output()
            .map_err(|source| QemuError::Spawn {
                program: "strip".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(QemuError::Command {
                command: format!("strip {}", staged.display()),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
    }
    Ok(staged)
}
