//! What goes into the base rootfs and how mmdebstrap makes it: the package lists, the dpkg
//! path filters that keep docs/man/locales out, the dracut configuration (initrd with
//! systemd + systemd-veritysetup + the /etc overlay), and the cache key over all of it.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::options::{BuildOptions, Role};
use crate::runner::{Cmd, p};

/// Bump when anything below changes in a way the key does not already capture.
pub const RECIPE_VERSION: u32 = 2;

/// mmdebstrap's own hook that sets up merged-/usr with directory symlinks and installs
/// `usr-is-merged`; without it apt satisfies init-system-helpers with `usrmerge`, which
/// drags ~50 MiB of perl into the image.
pub const MERGED_USR_HOOK_DIR: &str = "/usr/share/mmdebstrap/hooks/merged-usr";

/// Packages on every node.
pub const COMMON_PACKAGES: &[&str] = &[
    // pid 1, device manager, bus
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    // kernel + modules, and the initrd builder (dracut with its systemd modules)
    "linux-image-amd64",
    "dracut",
    "dmsetup",
    "kmod",
    // systemd-repart formats the state partition (mkfs.ext4) on first boot
    "e2fsprogs",
    // the bootloader binary copied onto the ESP (version-matched with systemd)
    "systemd-boot-efi",
    // dracut compresses the initrd with it
    "zstd",
    // node software
    "iproute2",
    "ipvsadm",
    "crun",
    "ca-certificates",
    // the l4lb's IPVS data path masquerades locally-originated VIP traffic (nft rule)
    "nftables",
    // QEMU guest agent: the QEMU harness runs commands in guests over virtio-serial
    // (started by Debian's udev rule only when that port exists: idle elsewhere)
    "qemu-guest-agent",
];

/// Role-specific packages.
pub fn role_packages(role: Role) -> &'static [&'static str] {
    match role {
        Role::Master => &["etcd-server"],
        // busybox: httpd/wget/nc for plain command tasks without a container image
        // (the QEMU cluster test's VIP backends and client)
        Role::Agent | Role::AgentPublic => &["busybox"],
    }
}

/// The sorted, de-duplicated package list of a build.
pub fn packages(opts: &BuildOptions) -> Vec<String> {
    let mut v: Vec<String> = COMMON_PACKAGES
        .iter()
        .chain(role_packages(opts.role))
        .map(|s| s.to_string())
        .chain(opts.extra_packages.iter().cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// dpkg filters: nothing under these paths is ever unpacked (copyright files excepted).
pub const DPKG_OPTS: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/bash-completion/*",
    "path-exclude=/usr/share/zsh/*",
];

/// `/etc/dracut.conf.d/50-basalt.conf`: a generic (not host-only) initrd with systemd,
/// systemd-veritysetup, and exactly the drivers needed to find and mount a verity root on
/// virtio, NVMe, AHCI or SCSI disks.
pub const DRACUT_CONF: &str = r#"# Basalt node image initrd (written by basalt-nodeimg).
hostonly="no"
compress="zstd"
dracutmodules=" systemd systemd-initrd systemd-veritysetup dracut-systemd dm base fs-lib kernel-modules rootfs-block udev-rules basalt-etc "
drivers=" virtio_pci virtio_blk virtio_scsi nvme ahci sd_mod erofs squashfs overlay dm_mod dm_verity "
"#;

/// The dracut module that puts a tmpfs overlay over `/sysroot/etc` before switch-root.
pub const DRACUT_MODULE_SETUP: &str = r#"#!/bin/bash
# Basalt: /etc is the image's /etc plus a tmpfs upper layer, rebuilt on every boot.
check() { return 255; }
depends() { echo systemd; return 0; }
installkernel() { instmods overlay; }
install() {
    inst_multiple mkdir mount
    inst_simple "$moddir/basalt-etc-overlay.service" "$systemdsystemunitdir/basalt-etc-overlay.service"
    mkdir -p "$initdir$systemdsystemunitdir/initrd-root-fs.target.wants"
    ln_r "$systemdsystemunitdir/basalt-etc-overlay.service" "$systemdsystemunitdir/initrd-root-fs.target.wants/basalt-etc-overlay.service"
}
"#;

pub const DRACUT_ETC_UNIT: &str = r#"[Unit]
Description=Basalt volatile /etc overlay
DefaultDependencies=no
ConditionPathExists=/etc/initrd-release
Requires=sysroot.mount
After=sysroot.mount
Before=initrd-root-fs.target initrd-parse-etc.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mkdir -p /run/basalt/etc/upper /run/basalt/etc/work
ExecStart=/bin/mount -t overlay basalt-etc -o lowerdir=/sysroot/etc,upperdir=/run/basalt/etc/upper,workdir=/run/basalt/etc/work /sysroot/etc
"#;

/// Directory (inside the hooks dir) holding the dracut module.
pub const DRACUT_MODULE_DIR: &str = "90basalt-etc";

/// The cache key of the base rootfs: sha256 over everything that shapes it, i.e. the whole
/// mmdebstrap command line (package list, suite, variant, mirrors, dpkg filters, hooks; with
/// placeholder paths) and the dracut files its hooks copy in.
pub fn base_key(opts: &BuildOptions) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &str| {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    };
    field("recipe", &RECIPE_VERSION.to_string());
    let cmd = mmdebstrap_cmd(
        opts,
        Path::new("/HOOKS"),
        Path::new("/DEBS"),
        Path::new("/OUT"),
    );
    for a in cmd.arg_strings() {
        field("arg", &a);
    }
    for (k, v) in &cmd.env {
        field(k, v);
    }
    field("dracut.conf", DRACUT_CONF);
    field("dracut.module", DRACUT_MODULE_SETUP);
    field("dracut.unit", DRACUT_ETC_UNIT);
    hex::encode(h.finalize())
}

/// The mmdebstrap command that writes the base rootfs to `tarball`. `hooks` holds
/// `dracut.conf` and the dracut module directory; `debs` is the persistent .deb cache.
pub fn mmdebstrap_cmd(opts: &BuildOptions, hooks: &Path, debs: &Path, tarball: &Path) -> Cmd {
    let mut c = Cmd::new("mmdebstrap")
        .arg("--mode=root")
        .arg(format!("--variant={}", opts.variant))
        .arg(format!("--hook-dir={MERGED_USR_HOOK_DIR}"))
        .arg("--format=tar")
        .arg(format!("--include={}", packages(opts).join(",")));
    for o in DPKG_OPTS {
        c = c.arg(format!("--dpkgopt={o}"));
    }
    let debs_s = debs.display().to_string();
    let hooks_s = hooks.display().to_string();
    c = c
        // reuse and refill the .deb cache
        .arg(r#"--setup-hook=mkdir -p "$1"/var/cache/apt/archives/"#)
        .arg(format!(
            "--setup-hook=sync-in {debs_s} /var/cache/apt/archives/"
        ))
        // dracut configuration and module must exist before the kernel's postinst runs
        .arg(r#"--essential-hook=mkdir -p "$1"/etc/dracut.conf.d "$1"/usr/lib/dracut/modules.d"#)
        .arg(format!(
            "--essential-hook=copy-in {hooks_s}/50-basalt.conf /etc/dracut.conf.d/"
        ))
        .arg(format!(
            "--essential-hook=sync-in {hooks_s}/modules.d /usr/lib/dracut/modules.d/"
        ))
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {debs_s}"
        ))
        .arg(r#"--customize-hook=rm -f "$1"/var/cache/apt/archives/*.deb"#)
        .arg("--skip=download/empty")
        .arg("--skip=essential/unlink")
        .arg(&opts.suite)
        .arg(p(tarball));
    for m in &opts.mirrors {
        c = c.arg(m);
    }
    c.env("SOURCE_DATE_EPOCH", opts.source_date_epoch.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_has_etcd_and_agent_does_not() {
        let m = packages(&BuildOptions::new(Role::Master, "/o"));
        let a = packages(&BuildOptions::new(Role::Agent, "/o"));
        assert!(m.contains(&"etcd-server".to_string()));
        assert!(!a.contains(&"etcd-server".to_string()));
        for must in [
            "systemd",
            "linux-image-amd64",
            "crun",
            "ipvsadm",
            "iproute2",
            "dbus",
            "nftables",
            "qemu-guest-agent",
            "busybox",
        ] {
            assert!(a.contains(&must.to_string()), "{must}");
        }
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(a, sorted);
    }

    #[test]
    fn key_changes_with_packages_suite_and_variant_only() {
        let base = BuildOptions::new(Role::Agent, "/o");
        let k = base_key(&base);
        assert_eq!(k, base_key(&base.clone()));
        // out_dir, epoch, extra files do not shape the base
        let mut same = base.clone();
        same.out_dir = "/elsewhere".into();
        same.cache_dir = "/other-cache".into();
        same.extra_files
            .push(crate::options::ExtraFile::new("/usr/bin/x", "/x", 0o755));
        assert_eq!(k, base_key(&same));
        let mut mirror = base.clone();
        mirror.mirrors.pop();
        assert_ne!(k, base_key(&mirror));
        let mut more = base.clone();
        more.extra_packages.push("htop".into());
        assert_ne!(k, base_key(&more));
        let mut suite = base.clone();
        suite.suite = "trixie".into();
        assert_ne!(k, base_key(&suite));
        let mut variant = base.clone();
        variant.variant = "minbase".into();
        assert_ne!(k, base_key(&variant));
        assert_ne!(k, base_key(&BuildOptions::new(Role::Master, "/o")));
    }

    #[test]
    fn mmdebstrap_command_line() {
        let o = BuildOptions::new(Role::Master, "/o");
        let c = mmdebstrap_cmd(
            &o,
            Path::new("/h"),
            Path::new("/c/debs"),
            Path::new("/c/b.tar"),
        );
        let a = c.arg_strings();
        assert_eq!(c.program, "mmdebstrap");
        assert!(a.contains(&"--variant=essential".to_string()));
        assert!(a.contains(&"--mode=root".to_string()));
        assert!(a.contains(&format!("--hook-dir={MERGED_USR_HOOK_DIR}")));
        let inc = a.iter().find(|s| s.starts_with("--include=")).unwrap();
        assert!(inc.contains("etcd-server") && inc.contains("linux-image-amd64"));
        assert!(a.contains(&"--dpkgopt=path-exclude=/usr/share/man/*".to_string()));
        assert!(a.contains(&"--setup-hook=sync-in /c/debs /var/cache/apt/archives/".to_string()));
        assert!(a.contains(
            &"--essential-hook=copy-in /h/50-basalt.conf /etc/dracut.conf.d/".to_string()
        ));
        // suite, target, then the mirrors, in that order
        let suite = a.iter().position(|s| s == "bookworm").unwrap();
        assert_eq!(a[suite + 1], "/c/b.tar");
        assert!(a[suite + 2].starts_with("deb http://deb.debian.org/debian bookworm main"));
        assert_eq!(a.len(), suite + 2 + o.mirrors.len());
        assert!(c.env.iter().any(|(k, _)| k == "SOURCE_DATE_EPOCH"));
    }

    #[test]
    fn dracut_config_includes_verity_and_the_etc_module() {
        assert!(DRACUT_CONF.contains("systemd-veritysetup"));
        assert!(DRACUT_CONF.contains("basalt-etc"));
        assert!(DRACUT_CONF.contains("dm_verity"));
        assert!(DRACUT_CONF.contains("erofs"));
        assert!(DRACUT_MODULE_SETUP.contains("basalt-etc-overlay.service"));
        assert!(DRACUT_ETC_UNIT.contains("lowerdir=/sysroot/etc"));
    }
}
