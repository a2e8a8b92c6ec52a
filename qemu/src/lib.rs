//! Test support for booting Basalt node images in QEMU.
//!
//! - [`Vm`]: one QEMU process, serial console captured to a file, killed on drop (and with
//!   the thread that started it).
//! - [`wait_until`]: poll a condition with a deadline; tests never sleep for a fixed time.
//! - [`Accel`]: KVM when a probe boot shows it works, TCG otherwise.
//! - [`Net`]: `-netdev user,restrict=on` for a lone VM, a multicast socket segment for a
//!   private L2 network between VMs.
//! - [`guest`]: commands inside a guest through the image's QEMU guest agent
//!   ([`guest::exec`], [`cluster::ClusterNode::exec`]).
//! - [`image_vm`]: a [`VmConfig`] for a built `basalt-nodeimg` image (UEFI through the disk's
//!   ESP, or direct kernel boot with the image's command line).

pub mod accel;
pub mod cluster;
pub mod disk;
pub mod error;
pub mod guest;
pub mod http;
pub mod vm;
pub mod wait;

use std::path::{Path, PathBuf};

pub use crate::accel::Accel;
pub use crate::error::{QemuError, Result};
pub use crate::guest::{ExecOutput, GuestError};
pub use crate::vm::{Boot, Firmware, GUEST_AGENT_PORT, Net, QEMU, Vm, VmConfig};
pub use crate::wait::{Timeout, wait_until};
pub use basalt_nodeimg::{Artifacts, FACT_PREFIX, READY_MARKER, node};

/// How an image VM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// OVMF → systemd-boot on the ESP: exercises the whole disk.
    Uefi,
    /// `-kernel/-initrd/-append` with the image's own files and command line.
    Direct,
}

/// A VM configuration for a built image: its `disk.raw` behind an overlay with `extra_space`
/// bytes more room (the state partition grows into it), accelerator from the environment.
pub fn image_vm(
    name: &str,
    artifacts: &Artifacts,
    disk: Option<&Path>,
    mode: BootMode,
    work_dir: &Path,
    extra_space: u64,
) -> Result<VmConfig> {
    let disk: PathBuf = disk
        .map(Path::to_path_buf)
        .unwrap_or_else(|| artifacts.disk_raw.clone());
    let boot = match mode {
        BootMode::Uefi => Boot::Uefi(Firmware::find()?),
        BootMode::Direct => Boot::Direct {
            kernel: artifacts.kernel.clone(),
            initrd: artifacts.initrd.clone(),
            cmdline: artifacts.cmdline.clone(),
        },
    };
    let size = std::fs::metadata(&disk)
        .map_err(error::QemuError::io(&disk))?
        .len();
    let mut c = VmConfig::new(name, work_dir, disk, boot);
    c.overlay_size = Some(size + extra_space);
    c.accel = Accel::from_env();
    c.probe_kernel = Some(artifacts.kernel.clone());
    Ok(c)
}

/// The value of a `basalt-image: <key> <value>` fact line the image prints at boot.
pub fn console_fact(console: &str, key: &str) -> Option<String> {
    let prefix = format!("{FACT_PREFIX} {key} ");
    console.lines().find_map(|l| {
        l.find(&prefix)
            .map(|i| l[i + prefix.len()..].trim().to_string())
    })
}

/// The repository this harness was built from (tests find `units/` and `basaltd` there).
pub fn workspace_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// Cargo's target folder: `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// Whether `program` is on PATH (or in the sbin directories).
pub fn have_program(program: &str) -> bool {
    basalt_nodeimg::runner::find_in_path(program).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_found_after_journal_prefixes() {
        let console = "[   29.8] image-ready[298]: basalt-image: root /dev/mapper/root erofs ro,relatime\n\
                       basalt-image: failed-units none\n";
        assert_eq!(
            console_fact(console, "root").unwrap(),
            "/dev/mapper/root erofs ro,relatime"
        );
        assert_eq!(console_fact(console, "failed-units").unwrap(), "none");
        assert!(console_fact(console, "var").is_none());
    }
}
