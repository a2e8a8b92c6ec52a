//! KVM when it really works, TCG otherwise.
//!
//! `/dev/kvm` existing is not enough: on nested setups (a Firecracker VM, for one) KVM_CREATE_VM
//! succeeds and the guest then hangs in the kernel's decompressor. So `Auto` boots the image's
//! kernel once under KVM with no root (it prints its banner and panics) and uses KVM only if
//! the banner appears within [`PROBE_TIMEOUT`]. The answer is cached per host boot
//! (`/proc/sys/kernel/random/boot_id`) in the temp dir, so a test suite probes once.
//! `BASALT_QEMU_ACCEL=kvm|tcg|auto` overrides.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use crate::vm::QEMU;
use crate::wait::wait_until;

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
    /// Probe KVM, fall back to TCG.
    Auto,
}

impl FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Accel, String> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            "auto" => Ok(Accel::Auto),
            o => Err(format!("unknown accelerator {o:?} (kvm, tcg, auto)")),
        }
    }
}

impl Accel {
    /// `BASALT_QEMU_ACCEL` if set and valid, else `Auto`.
    pub fn from_env() -> Accel {
        std::env::var("BASALT_QEMU_ACCEL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Accel::Auto)
    }

    /// Turns `Auto` into `Kvm` or `Tcg`. `kernel` is booted for the probe; without one,
    /// `Auto` uses a cached answer or TCG.
    pub fn resolve(self, kernel: Option<&Path>, scratch: &Path) -> Accel {
        match self {
            Accel::Kvm | Accel::Tcg => self,
            Accel::Auto => {
                if !kvm_device_usable() {
                    return Accel::Tcg;
                }
                let cache = cache_file();
                if let Some(c) = cache.as_ref().and_then(|p| fs::read_to_string(p).ok()) {
                    match c.trim() {
                        "kvm" => return Accel::Kvm,
                        "tcg" => return Accel::Tcg,
                        _ => {}
                    }
                }
                let Some(kernel) = kernel else {
                    return Accel::Tcg;
                };
                let works = probe_kvm(kernel, scratch);
                tracing::info!(kvm_works = works, "KVM probe");
                let answer = if works { Accel::Kvm } else { Accel::Tcg };
                if let Some(p) = cache {
                    let _ = fs::write(p, if works { "kvm\n" } else { "tcg\n" });
                }
                answer
            }
        }
    }
}

/// `/dev/kvm` can be opened read-write.
pub fn kvm_device_usable() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn cache_file() -> Option<std::path::PathBuf> {
    let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(std::env::temp_dir().join(format!("basalt-qemu-kvm-probe-{}", id.trim())))
}

/// Boots `kernel` under KVM without a root file system; true if its banner reaches the
/// serial console in time.
pub fn probe_kvm(kernel: &Path, scratch: &Path) -> bool {
    let log = scratch.join("kvm-probe-console.log");
    if fs::create_dir_all(scratch).is_err() || fs::write(&log, b"").is_err() {
        return false;
    }
    let child = Command::new(QEMU)
        .args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults"])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let ok = wait_until(
        "KVM guest banner",
        PROBE_TIMEOUT,
        Duration::from_millis(200),
        || {
            let text = fs::read(&log).unwrap_or_default();
            if String::from_utf8_lossy(&text).contains("Linux version") {
                return Some(true);
            }
            match child.try_wait() {
                Ok(Some(_)) => Some(false),
                _ => None,
            }
        },
    )
    .unwrap_or(false);
    let _ = child.kill();
    let _ = child.wait();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_fixed_resolution() {
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("hvf".parse::<Accel>().is_err());
        let d = Path::new("/nonexistent");
        assert_eq!(Accel::Kvm.resolve(None, d), Accel::Kvm);
        assert_eq!(Accel::Tcg.resolve(None, d), Accel::Tcg);
        let auto = Accel::Auto.resolve(None, d);
        assert!(matches!(auto, Accel::Kvm | Accel::Tcg));
    }
}
