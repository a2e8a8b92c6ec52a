//! Shared by the supervisor's tests: a genconf folder generated in a temp dir (real
//! signed bundles and the cluster key) and an [`Env`] of fakes rooted in a temp dir.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use basalt_supervisor::fake::{FakeClock, FakeFetcher, FakeMounter, FakeRunner, FakeSystemd};
use basalt_supervisor::{Env, Layout, ResourceDetector};

/// ip-detect for the QEMU guests: the one global IPv4 address (QEMU user net: 10.0.2.15).
pub const IP_DETECT: &str = "#!/bin/sh\n# the node's one global IPv4 address\nip -4 -o addr show scope global | sed -n 's/.* inet \\([0-9.]*\\)\\/.*/\\1/p'\n";

/// A fault-domain-detect script that fails, as one does on a machine without the cloud
/// metadata it asks: the agent refuses to start without its fault domain (the QEMU test's
/// deliberately failing component; the fake-systemd tests never run it).
pub const FAULT_DOMAIN_DETECT: &str =
    "#!/bin/sh\necho 'no metadata service: cannot tell the zone' >&2\nexit 1\n";

pub fn config_toml(masters: &[&str]) -> String {
    let list: Vec<String> = masters.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        r#"cluster_name = "supervisor-test"
masters = [{}]
bootstrap_url = "http://192.0.2.5:8080"
ip_detect = "ip-detect"
fault_domain_detect = "fault-domain-detect"
resolvers = ["203.0.113.53"]

[auth]
enabled = false
"#,
        list.join(", ")
    )
}

/// A generated genconf folder: `serve/bundles/<role>.tar`, `serve/cluster.pub`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub fn new(masters: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), config_toml(masters)).unwrap();
        let script = dir.path().join("ip-detect");
        std::fs::write(&script, IP_DETECT).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fd = dir.path().join("fault-domain-detect");
        std::fs::write(&fd, FAULT_DOMAIN_DETECT).unwrap();
        std::fs::set_permissions(&fd, std::fs::Permissions::from_mode(0o755)).unwrap();
        basalt_genconf::generate::generate(dir.path(), &dir.path().join("serve")).unwrap();
        Cluster { dir }
    }
    pub fn bundle_path(&self, role: &str) -> PathBuf {
        self.dir.path().join(format!("serve/bundles/{role}.tar"))
    }
    pub fn bundle(&self, role: &str) -> Vec<u8> {
        std::fs::read(self.bundle_path(role)).unwrap()
    }
    pub fn public_key_path(&self) -> PathBuf {
        self.dir.path().join("serve/cluster.pub")
    }
}

pub struct FixedDetector;

impl ResourceDetector for FixedDetector {
    fn detect(&self, work_dir: &Path, public: bool) -> Result<serde_json::Value, String> {
        assert!(work_dir.is_dir());
        Ok(serde_json::json!({ "cpus": 2.0, "mem": 1024, "public": public }))
    }
}

/// A node root in a temp dir with the cluster key where the image has it.
pub struct Node {
    pub root: tempfile::TempDir,
    pub runner: Arc<FakeRunner>,
    pub mounter: Arc<FakeMounter>,
    pub clock: Arc<FakeClock>,
    pub fetcher: Arc<FakeFetcher>,
    pub systemd: Arc<FakeSystemd>,
}

impl Node {
    pub fn new(cluster: &Cluster) -> Node {
        let root = tempfile::tempdir().unwrap();
        let n = Node {
            root,
            runner: Arc::default(),
            mounter: Arc::default(),
            clock: Arc::default(),
            fetcher: Arc::default(),
            systemd: Arc::default(),
        };
        let key = n.path("/usr/share/basalt/cluster.pub");
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        std::fs::copy(cluster.public_key_path(), key).unwrap();
        n.write("/proc/cmdline", b"root=/dev/mapper/root ro console=ttyS0\n");
        n
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        Layout::new(self.root.path()).path(abs)
    }

    pub fn write(&self, abs: &str, data: &[u8]) {
        let p = self.path(abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    pub fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.path(abs)).unwrap()
    }

    /// A volume with `label` whose content is `files` (relative path → bytes).
    pub fn volume(&self, label: &str, dev: &str, files: &[(&str, &[u8])]) {
        let content = self.root.path().join("volumes").join(label);
        for (p, data) in files {
            let f = content.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, data).unwrap();
        }
        self.write(dev, b"");
        let link = self.path(&format!("/dev/disk/by-label/{label}"));
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(self.path(dev), &link).unwrap();
        self.mounter
            .volumes
            .lock()
            .unwrap()
            .insert(std::fs::canonicalize(self.path(dev)).unwrap(), content);
    }

    pub fn env(&self) -> Env {
        Env {
            layout: Layout::new(self.root.path()),
            runner: self.runner.clone(),
            mounter: self.mounter.clone(),
            clock: self.clock.clone(),
            fetcher: self.fetcher.clone(),
            systemd: self.systemd.clone(),
            detector: Arc::new(FixedDetector),
        }
    }
}
