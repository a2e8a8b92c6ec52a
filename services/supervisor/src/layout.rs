//! Where the supervisor looks and writes. Every path hangs off `root` (`/` on a node, a
//! temporary folder in tests).

use std::path::{Path, PathBuf};

/// The kernel command line.
pub const PROC_CMDLINE: &str = "/proc/cmdline";
/// udev's links to file systems by label.
pub const BY_LABEL: &str = "/dev/disk/by-label";
/// The last rung of the ladder: a bundle baked into (or copied onto) the node.
pub const ETC_BUNDLE: &str = "/etc/basalt/bundle";
/// The cluster public key the image carries (inside its verified root).
pub const CLUSTER_PUB: &str = "/usr/share/basalt/cluster.pub";
/// The supervisor's own runtime folder (`RuntimeDirectory=basalt-supervisor`).
pub const RUNTIME_DIR: &str = "/run/basalt-supervisor";
/// Agents' work dir (detection cache).
pub const AGENT_WORK_DIR: &str = "/var/lib/basalt/agent";

/// The file-system layout, relative to `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            root: PathBuf::from("/"),
        }
    }
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    /// `abs` (an absolute node path) under `root`.
    pub fn path(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }

    pub fn cmdline(&self) -> PathBuf {
        self.path(PROC_CMDLINE)
    }
    pub fn by_label(&self, label: &str) -> PathBuf {
        self.path(BY_LABEL).join(label)
    }
    pub fn etc_bundle(&self) -> PathBuf {
        self.path(ETC_BUNDLE)
    }
    pub fn cluster_pub(&self) -> PathBuf {
        self.path(CLUSTER_PUB)
    }
    /// `/run/basalt`.
    pub fn node_root(&self) -> PathBuf {
        self.path(basalt_genconf::render::NODE_ROOT)
    }
    pub fn runtime_dir(&self) -> PathBuf {
        self.path(RUNTIME_DIR)
    }
    pub fn agent_work_dir(&self) -> PathBuf {
        self.path(AGENT_WORK_DIR)
    }
}
