//! One QEMU virtual machine: its configuration, its command line, the running process with
//! its serial console in a file, and teardown on drop.

use std::fs;
use std::net::SocketAddrV4;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::accel::Accel;
use crate::disk::{DiskFormat, create_overlay};
use crate::error::{QemuError, Result};
use crate::wait::wait_until;

pub const QEMU: &str = "qemu-system-x86_64";

/// The virtio-serial port name qemu-guest-agent looks for (Debian's udev rule starts
/// `qemu-guest-agent.service` when it appears).
pub const GUEST_AGENT_PORT: &str = "org.qemu.guest_agent.0";

/// UEFI firmware (OVMF): read-only code and a template for the per-VM variable store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

impl Firmware {
    /// Debian's `ovmf` package (4 MiB build first).
    pub fn find() -> Result<Firmware> {
        let candidates = [
            (
                "/usr/share/OVMF/OVMF_CODE_4M.fd",
                "/usr/share/OVMF/OVMF_VARS_4M.fd",
            ),
            (
                "/usr/share/OVMF/OVMF_CODE.fd",
                "/usr/share/OVMF/OVMF_VARS.fd",
            ),
        ];
        candidates
            .iter()
            .map(|(c, v)| (PathBuf::from(c), PathBuf::from(v)))
            .find(|(c, v)| c.is_file() && v.is_file())
            .map(|(code, vars_template)| Firmware {
                code,
                vars_template,
            })
            .ok_or_else(|| {
                QemuError::NoFirmware(
                    candidates
                        .iter()
                        .map(|(c, _)| *c)
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
    }
}

/// How the VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Firmware → systemd-boot on the disk's ESP → the entry's kernel and command line.
    Uefi(Firmware),
    /// QEMU loads kernel and initrd itself (skips firmware and bootloader: faster).
    Direct {
        kernel: PathBuf,
        initrd: PathBuf,
        cmdline: String,
    },
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    /// QEMU's user-mode stack; `restrict` cuts the guest off from the host and outside
    /// (unrestricted, the guest reaches the host's loopback at 10.0.2.2). `forwards` are
    /// `(host port on 127.0.0.1, guest port)` TCP forwards.
    User {
        restrict: bool,
        forwards: Vec<(u16, u16)>,
    },
    /// A private L2 segment shared by every VM using the same multicast group (on loopback).
    Multicast { group: SocketAddrV4, mac: String },
}

/// Everything needed to start a VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub name: String,
    /// Console log, overlay disk and firmware variables live here.
    pub work_dir: PathBuf,
    pub disk: PathBuf,
    /// Boot from a qcow2 overlay of `disk` (the image itself is never written), optionally
    /// larger than the image (the state partition grows into it).
    pub overlay: bool,
    pub overlay_size: Option<u64>,
    pub boot: Boot,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub nets: Vec<Net>,
    /// Exit instead of rebooting (a verity failure with restart-on-corruption ends QEMU).
    pub no_reboot: bool,
    pub extra_args: Vec<String>,
    /// A virtio-serial port `org.qemu.guest_agent.0` behind the unix socket
    /// [`VmConfig::guest_agent_path`] (QEMU listens; [`crate::guest`] talks to the image's
    /// qemu-guest-agent through it). On by default.
    pub guest_agent: bool,
    /// A kernel to boot for the KVM probe when `accel` is `Auto` (the direct-boot kernel is
    /// used if this is unset).
    pub probe_kernel: Option<PathBuf>,
}

impl VmConfig {
    pub fn new(
        name: &str,
        work_dir: impl Into<PathBuf>,
        disk: impl Into<PathBuf>,
        boot: Boot,
    ) -> Self {
        VmConfig {
            name: name.to_string(),
            work_dir: work_dir.into(),
            disk: disk.into(),
            overlay: true,
            overlay_size: None,
            boot,
            accel: Accel::Tcg,
            memory_mib: 1024,
            cpus: 2,
            nets: Vec::new(),
            no_reboot: true,
            extra_args: Vec::new(),
            guest_agent: true,
            probe_kernel: None,
        }
    }

    pub fn console_path(&self) -> PathBuf {
        self.work_dir.join(format!("{}-console.log", self.name))
    }

    pub fn overlay_path(&self) -> PathBuf {
        self.work_dir.join(format!("{}-disk.qcow2", self.name))
    }

    /// The unix socket of the guest agent's port.
    pub fn guest_agent_path(&self) -> PathBuf {
        self.work_dir.join(format!("{}-qga.sock", self.name))
    }

    pub fn vars_path(&self) -> PathBuf {
        self.work_dir.join(format!("{}-OVMF_VARS.fd", self.name))
    }

    /// The QEMU command line (without the program name). `accel` must be resolved (not
    /// `Auto`); the disk is the overlay when `overlay` is set.
    pub fn args(&self, accel: Accel) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&["-name", &self.name, "-machine", "q35", "-nodefaults"]);
        match accel {
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
            _ => push(&["-accel", "tcg,thread=multi"]),
        }
        push(&[
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            &format!("file:{}", self.console_path().display()),
            "-device",
            "virtio-rng-pci",
        ]);
        if self.no_reboot {
            push(&["-no-reboot"]);
        }
        match &self.boot {
            Boot::Uefi(fw) => {
                push(&[
                    "-drive",
                    &format!(
                        "if=pflash,format=raw,unit=0,readonly=on,file={}",
                        fw.code.display()
                    ),
                    "-drive",
                    &format!(
                        "if=pflash,format=raw,unit=1,file={}",
                        self.vars_path().display()
                    ),
                ]);
            }
            Boot::Direct {
                kernel,
                initrd,
                cmdline,
            } => {
                push(&[
                    "-kernel",
                    &kernel.display().to_string(),
                    "-initrd",
                    &initrd.display().to_string(),
                    "-append",
                    cmdline,
                ]);
            }
        }
        let (disk, fmt) = if self.overlay {
            (self.overlay_path(), DiskFormat::Qcow2)
        } else {
            (self.disk.clone(), DiskFormat::from_path(&self.disk))
        };
        push(&[
            "-drive",
            &format!(
                "if=virtio,format={},file={},cache=unsafe,discard=unmap",
                fmt.as_str(),
                disk.display()
            ),
        ]);
        if self.nets.is_empty() {
            push(&["-nic", "none"]);
        }
        for (i, n) in self.nets.iter().enumerate() {
            let id = format!("n{i}");
            match n {
                Net::User { restrict, forwards } => push(&[
                    "-netdev",
                    &format!(
                        "user,id={id},restrict={}{}",
                        if *restrict { "on" } else { "off" },
                        forwards
                            .iter()
                            .map(|(h, g)| format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"))
                            .collect::<String>()
                    ),
                    "-device",
                    &format!("virtio-net-pci,netdev={id}"),
                ]),
                Net::Multicast { group, mac } => push(&[
                    "-netdev",
                    &format!("socket,id={id},mcast={group},localaddr=127.0.0.1"),
                    "-device",
                    &format!("virtio-net-pci,netdev={id},mac={mac}"),
                ]),
            }
        }
        if self.guest_agent {
            push(&[
                "-chardev",
                &format!(
                    "socket,path={},server=on,wait=off,id=qga0",
                    self.guest_agent_path().display()
                ),
                "-device",
                "virtio-serial",
                "-device",
                &format!("virtserialport,chardev=qga0,name={GUEST_AGENT_PORT}"),
            ]);
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// A running VM. Dropping it kills QEMU (and QEMU dies with the thread that started it).
pub struct Vm {
    pub config: VmConfig,
    /// The accelerator actually used.
    pub accel: Accel,
    pub started: Instant,
    child: Child,
    exit: Option<ExitStatus>,
}

impl Vm {
    /// Prepares the work dir (overlay, firmware variables), resolves the accelerator and
    /// starts QEMU.
    pub fn start(config: VmConfig) -> Result<Vm> {
        fs::create_dir_all(&config.work_dir).map_err(QemuError::io(&config.work_dir))?;
        let console = config.console_path();
        fs::write(&console, b"").map_err(QemuError::io(&console))?;
        if config.overlay {
            let ov = config.overlay_path();
            let _ = fs::remove_file(&ov);
            let disk = fs::canonicalize(&config.disk).map_err(QemuError::io(&config.disk))?;
            create_overlay(&disk, &ov, config.overlay_size)?;
        }
        if config.guest_agent {
            // a socket left by an earlier run would make QEMU's bind fail
            let sock = config.guest_agent_path();
            let _ = fs::remove_file(&sock);
        }
        if let Boot::Uefi(fw) = &config.boot {
            let vars = config.vars_path();
            fs::copy(&fw.vars_template, &vars).map_err(QemuError::io(&fw.vars_template))?;
        }
        let probe_kernel = match &config.boot {
            Boot::Direct { kernel, .. } => Some(kernel.clone()),
            Boot::Uefi(_) => config.probe_kernel.clone(),
        };
        let accel = config
            .accel
            .resolve(probe_kernel.as_deref(), &config.work_dir);
        let args = config.args(accel);
        tracing::info!(vm = %config.name, accel = ?accel, "starting {QEMU} {}", args.join(" "));
        let log = config.work_dir.join(format!("{}-qemu.log", config.name));
        let log_file = fs::File::create(&log).map_err(QemuError::io(&log))?;
        let log_err = log_file.try_clone().map_err(QemuError::io(&log))?;
        let mut cmd = Command::new(QEMU);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err));
        // SAFETY: the closure runs in the forked child before exec and only calls
        // prctl(PR_SET_PDEATHSIG), which is async-signal-safe; it touches no Rust state.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().map_err(|source| QemuError::Spawn {
            program: QEMU.into(),
            source,
        })?;
        Ok(Vm {
            config,
            accel,
            started: Instant::now(),
            child,
            exit: None,
        })
    }

    /// The serial console so far (lossy UTF-8).
    pub fn console(&self) -> String {
        fs::read(self.config.console_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn console_path(&self) -> PathBuf {
        self.config.console_path()
    }

    /// The last `n` lines of the console.
    pub fn console_tail(&self, n: usize) -> String {
        let c = self.console();
        let lines: Vec<&str> = c.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// QEMU's exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(s)) = self.child.try_wait()
        {
            self.exit = Some(s);
        }
        self.exit
    }

    /// Waits until the console contains `needle`; returns the time since start. Fails early
    /// if QEMU exits first.
    pub fn wait_for_console(&mut self, needle: &str, timeout: Duration) -> Result<Duration> {
        let what = format!("{:?} on {}'s console", needle, self.config.name);
        let mut exited = None;
        let r = wait_until(&what, timeout, Duration::from_millis(250), || {
            if self.console().contains(needle) {
                return Some(Ok(self.started.elapsed()));
            }
            if let Some(s) = self.exit_status() {
                // one more look: the line may have been flushed just before exit
                if self.console().contains(needle) {
                    return Some(Ok(self.started.elapsed()));
                }
                exited = Some(s);
                return Some(Err(()));
            }
            None
        })?;
        match r {
            Ok(d) => Ok(d),
            Err(()) => Err(QemuError::Exited {
                name: self.config.name.clone(),
                status: exited.map(|s| s.to_string()).unwrap_or_default(),
                waiting_for: what,
                tail: self.console_tail(30),
            }),
        }
    }

    /// Waits until QEMU exits (e.g. the guest rebooted with `-no-reboot`).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.config.name);
        Ok(wait_until(
            &what,
            timeout,
            Duration::from_millis(250),
            || self.exit_status(),
        )?)
    }

    /// Kills QEMU and reaps it.
    pub fn kill(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.exit = Some(s);
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    #[allow(dead_code)]
    fn work_dir(&self) -> &Path {
        &self.config.work_dir
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct() -> Boot {
        Boot::Direct {
            kernel: "/img/vmlinuz".into(),
            initrd: "/img/initrd.img".into(),
            cmdline: "root=/dev/mapper/root ro".into(),
        }
    }

    fn joined(a: &[String]) -> String {
        a.join(" ")
    }

    #[test]
    fn tcg_direct_boot_command_line() {
        let c = VmConfig::new("agent", "/w", "/img/disk.raw", direct());
        let a = c.args(Accel::Tcg);
        let s = joined(&a);
        assert!(s.contains("-accel tcg,thread=multi"), "{s}");
        assert!(s.contains("-serial file:/w/agent-console.log"));
        assert!(s.contains("-kernel /img/vmlinuz -initrd /img/initrd.img"));
        let i = a.iter().position(|x| x == "-append").unwrap();
        assert_eq!(
            a[i + 1],
            "root=/dev/mapper/root ro",
            "cmdline is one argument"
        );
        assert!(s.contains("-drive if=virtio,format=qcow2,file=/w/agent-disk.qcow2"));
        assert!(s.contains("-no-reboot"));
        assert!(s.contains("-nic none"));
        assert!(s.contains(
            "-chardev socket,path=/w/agent-qga.sock,server=on,wait=off,id=qga0 \
             -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"
        ));
        let mut off = c.clone();
        off.guest_agent = false;
        assert!(!joined(&off.args(Accel::Tcg)).contains("virtserialport"));
    }

    #[test]
    fn kvm_uefi_and_networks() {
        let fw = Firmware {
            code: "/fw/CODE.fd".into(),
            vars_template: "/fw/VARS.fd".into(),
        };
        let mut c = VmConfig::new("m1", "/w", "/img/disk.raw", Boot::Uefi(fw));
        c.overlay = false;
        c.nets = vec![
            Net::User {
                restrict: true,
                forwards: vec![(15050, 5050)],
            },
            Net::Multicast {
                group: "230.0.0.1:5555".parse().unwrap(),
                mac: "52:54:00:00:00:01".into(),
            },
        ];
        let s = joined(&c.args(Accel::Kvm));
        assert!(s.contains("-accel kvm -cpu host"));
        assert!(s.contains("if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd"));
        assert!(s.contains("if=pflash,format=raw,unit=1,file=/w/m1-OVMF_VARS.fd"));
        assert!(s.contains("-drive if=virtio,format=raw,file=/img/disk.raw"));
        assert!(s.contains(
            "-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:15050-:5050 -device virtio-net-pci,netdev=n0"
        ));
        assert!(s.contains(
            "-netdev socket,id=n1,mcast=230.0.0.1:5555,localaddr=127.0.0.1 -device virtio-net-pci,netdev=n1,mac=52:54:00:00:00:01"
        ));
        assert!(!s.contains("-nic none"));
        assert!(!s.contains("-kernel"));
    }
}
