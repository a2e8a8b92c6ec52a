//! What makes a plain node image a Basalt node: `basaltd`, the units, the cluster public
//! key (never a secret). The installer's `image build` wires [`node_extra_files`] /
//! [`build_node_image`]; the QEMU cluster harness and the supervisor's QEMU tests use them
//! too.
//!
//! | image path | from |
//! |---|---|
//! | `/usr/bin/basaltd` (0755) | the `basaltd` binary |
//! | `/usr/lib/systemd/system/*.service`, `*.target` | `units/` |
//! | `/usr/lib/systemd/system/multi-user.target.d/50-basalt-supervisor.conf` | `units/enable/…`: starts the supervisor at boot (the preset's effect, as a drop-in) |
//! | `/usr/lib/systemd/system-preset/90-basalt.preset` | `units/preset/` |
//! | `/usr/lib/systemd/network/99-basalt-dhcp.network` | `units/network/`: DHCP on every wired NIC (systemd-networkd, pulled in by the supervisor) |
//! | `/usr/share/basalt/cluster.pub` (0644) | genconf's `serve/cluster.pub` |

use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::{Artifacts, BuildOptions, ExtraFile, Role};

type Result<T> = std::result::Result<T, ImageError>;

/// Where the supervisor finds the cluster key in the image.
pub const CLUSTER_PUB_IN_IMAGE: &str = "/usr/share/basalt/cluster.pub";

/// The Basalt payload of a node image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePayload {
    /// The `basaltd` binary (debug or release; same glibc as bookworm).
    pub basaltd: PathBuf,
    /// The repository's `units/` folder.
    pub units_dir: PathBuf,
    /// The cluster public key (`PUBLIC KEY` PEM, genconf `serve/cluster.pub`).
    pub cluster_pub: PathBuf,
}

/// The `extra_files` that put `payload` into an image.
pub fn node_extra_files(payload: &NodePayload) -> Result<Vec<ExtraFile>> {
    let mut v = vec![
        ExtraFile::new("/usr/bin/basaltd", &payload.basaltd, 0o755),
        ExtraFile::new(CLUSTER_PUB_IN_IMAGE, &payload.cluster_pub, 0o644),
    ];
    let u = &payload.units_dir;
    let mut units: Vec<PathBuf> = std::fs::read_dir(u)
        .map_err(|e| ImageError::ExtraFile {
            dest: "/usr/lib/systemd/system".into(),
            src: u.clone(),
            reason: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("service" | "target")
            )
        })
        .collect();
    units.sort();
    for p in units {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        v.push(ExtraFile::new(
            format!("/usr/lib/systemd/system/{name}"),
            p,
            0o644,
        ));
    }
    v.push(ExtraFile::new(
        "/usr/lib/systemd/system/multi-user.target.d",
        u.join("enable/multi-user.target.d"),
        0o644,
    ));
    v.push(ExtraFile::new(
        "/usr/lib/systemd/system-preset",
        u.join("preset"),
        0o644,
    ));
    v.push(ExtraFile::new(
        "/usr/lib/systemd/network",
        u.join("network"),
        0o644,
    ));
    Ok(v)
}

/// Builds (or reuses) a node image for `role` in `out_dir` with `payload`.
pub fn build_node_image(role: Role, out_dir: &Path, payload: &NodePayload) -> Result<Artifacts> {
    let mut opts = BuildOptions::new(role, out_dir);
    opts.extra_files = node_extra_files(payload)?;
    crate::build(&opts)
}
