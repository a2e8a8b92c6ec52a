//! Turns the extracted base rootfs into the image tree: takes the kernel and initrd out of
//! `/boot`, trims kernel modules and build-only leftovers, writes the immutable-root
//! configuration (fstab for the state partition, repart.d, masks, the boot marker unit) and
//! copies the caller's extra files in.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use crate::base::{set_mode, write};
use crate::error::{ImageError, Result};
use crate::options::{BuildOptions, ExtraFile};
use crate::runner::{Cmd, CommandRunner, p};

/// The line the image prints on the serial console once `multi-user.target` is reached.
pub const READY_MARKER: &str = "BASALT-IMAGE-READY";
/// Prefix of the boot facts the marker unit prints before [`READY_MARKER`].
pub const FACT_PREFIX: &str = "basalt-image:";
/// GPT partition label of the state partition (mounted on `/var`).
pub const STATE_LABEL: &str = "basalt-state";

/// `/etc/fstab`: only `/var` (the root is mounted by the initrd from the verity device).
pub fn fstab() -> String {
    format!(
        "# Basalt node image: / is a read-only dm-verity device mounted by the initrd; /etc is\n\
         # a tmpfs overlay over the image's /etc (basalt-etc-overlay.service in the initrd).\n\
         # /var is the state partition, created and grown by systemd-repart on first boot.\n\
         PARTLABEL={STATE_LABEL} /var ext4 defaults,noatime,x-systemd.requires=systemd-repart.service,x-systemd.growfs,x-systemd.device-timeout=90s 0 2\n"
    )
}

/// `/usr/lib/repart.d/50-basalt-state.conf`: the state partition takes the free space at the
/// end of the disk, starts with a copy of the image's /var, and grows when the disk does.
pub fn repart_state() -> String {
    format!(
        "[Partition]\n\
         Type=linux-generic\n\
         Label={STATE_LABEL}\n\
         Format=ext4\n\
         CopyFiles=/var:/\n\
         SizeMinBytes=256M\n"
    )
}

pub const READY_SCRIPT: &str = r#"#!/bin/sh
# Prints this node image's boot facts on the console once multi-user.target is reached.
p="basalt-image:"
echo "$p root $(findmnt -no SOURCE,FSTYPE,OPTIONS /)"
for d in /sys/block/dm-*; do
    [ -r "$d/dm/uuid" ] && echo "$p dm $(cat "$d/dm/name") $(cat "$d/dm/uuid")"
done
echo "$p etc $(findmnt -no SOURCE,FSTYPE /etc)"
echo "$p var $(findmnt -no SOURCE,FSTYPE,SIZE /var)"
failed=$(systemctl --failed --no-legend --plain | while read -r u _; do printf '%s ' "$u"; done)
echo "$p failed-units ${failed:-none}"
echo "$p uptime $(cut -d' ' -f1 /proc/uptime)"
echo "BASALT-IMAGE-READY"
"#;

pub const READY_UNIT: &str = r#"[Unit]
Description=Basalt node image boot marker
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/lib/basalt/image-ready
StandardOutput=journal+console
"#;

/// Units that only make sense with a mutable /usr or /etc, or would prompt on the console.
pub const MASKED_UNITS: &[&str] = &[
    "systemd-firstboot.service",
    "ldconfig.service",
    "systemd-hwdb-update.service",
    "systemd-update-done.service",
    "systemd-journal-catalog-update.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    // Debian's own etcd unit (default config on localhost): masters run etcd as
    // `basalt-etcd.service` with the cluster's settings instead.
    "etcd.service",
];

/// Paths (relative to the root) removed from the image: build-time state and the sources of
/// compiled databases.
pub const TRIM_PATHS: &[&str] = &[
    "usr/lib/udev/hwdb.d",
    "var/cache/debconf",
    "var/cache/ldconfig",
    "var/cache/apt",
    "var/lib/apt",
    "var/log/apt",
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/lib/dbus/machine-id",
    "etc/machine-id.old",
];

/// The kernel found in the tree.
#[derive(Debug, Clone)]
pub struct BootFiles {
    pub kernel_version: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Copies `/boot/vmlinuz-*` and its `initrd.img-*` to `dest_dir/{vmlinuz,initrd.img}` and
/// empties `/boot` (the ESP carries them).
pub fn take_boot_files(root: &Path, dest_dir: &Path) -> Result<BootFiles> {
    let boot = root.join("boot");
    let mut versions: Vec<String> = fs::read_dir(&boot)
        .map_err(ImageError::io(&boot))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .collect();
    versions.sort();
    let kernel_version = match versions.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(ImageError::Rootfs {
                root: root.to_path_buf(),
                reason: "no /boot/vmlinuz-* (is linux-image-amd64 in the package list?)".into(),
            });
        }
        many => {
            return Err(ImageError::Rootfs {
                root: root.to_path_buf(),
                reason: format!("several kernels in /boot: {many:?}"),
            });
        }
    };
    let src_kernel = boot.join(format!("vmlinuz-{kernel_version}"));
    let src_initrd = boot.join(format!("initrd.img-{kernel_version}"));
    if !src_initrd.is_file() {
        return Err(ImageError::Rootfs {
            root: root.to_path_buf(),
            reason: format!("no {} (did dracut run?)", src_initrd.display()),
        });
    }
    fs::create_dir_all(dest_dir).map_err(ImageError::io(dest_dir))?;
    let kernel = dest_dir.join("vmlinuz");
    let initrd = dest_dir.join("initrd.img");
    fs::copy(&src_kernel, &kernel).map_err(ImageError::io(&src_kernel))?;
    fs::copy(&src_initrd, &initrd).map_err(ImageError::io(&src_initrd))?;
    set_mode(&kernel, 0o644)?;
    set_mode(&initrd, 0o644)?;
    clear_dir(&boot)?;
    for link in ["vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"] {
        let l = root.join(link);
        if l.symlink_metadata().is_ok() {
            fs::remove_file(&l).map_err(ImageError::io(&l))?;
        }
    }
    Ok(BootFiles {
        kernel_version,
        kernel,
        initrd,
    })
}

/// What module trimming did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleTrim {
    pub kept: usize,
    pub removed: usize,
    pub removed_bytes: u64,
}

/// Parses `modules.dep` into `module -> dependencies` (paths relative to the kver dir).
pub fn parse_modules_dep(text: &str) -> HashMap<String, Vec<String>> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, deps)| {
            (
                m.trim().to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// The modules to keep: those under a `keep` prefix (relative to `kernel/`), plus everything
/// they depend on, transitively.
pub fn modules_to_keep(deps: &HashMap<String, Vec<String>>, keep: &[String]) -> BTreeSet<String> {
    let matches = |m: &str| {
        let rel = m.strip_prefix("kernel/").unwrap_or(m);
        keep.iter().any(|k| match k.strip_suffix('*') {
            Some(prefix) => rel.starts_with(prefix),
            None => {
                let k = k.trim_end_matches('/');
                rel == k || rel.starts_with(&format!("{k}/"))
            }
        })
    };
    let mut out = BTreeSet::new();
    let mut stack: Vec<String> = deps.keys().filter(|m| matches(m)).cloned().collect();
    while let Some(m) = stack.pop() {
        if out.insert(m.clone())
            && let Some(ds) = deps.get(&m)
        {
            stack.extend(ds.iter().filter(|d| !out.contains(*d)).cloned());
        }
    }
    out
}

/// Removes every module not kept by [`modules_to_keep`], then regenerates the module
/// indexes with the image's own depmod.
pub fn trim_modules(
    root: &Path,
    kver: &str,
    keep: &[String],
    runner: &dyn CommandRunner,
) -> Result<ModuleTrim> {
    let kdir = root.join("usr/lib/modules").join(kver);
    let dep_path = kdir.join("modules.dep");
    let text = fs::read_to_string(&dep_path).map_err(ImageError::io(&dep_path))?;
    let deps = parse_modules_dep(&text);
    let kept = modules_to_keep(&deps, keep);
    let mut stats = ModuleTrim {
        kept: kept.len(),
        ..ModuleTrim::default()
    };
    for m in deps.keys() {
        if kept.contains(m) {
            continue;
        }
        let path = kdir.join(m);
        if let Ok(md) = path.symlink_metadata() {
            stats.removed_bytes += md.len();
            fs::remove_file(&path).map_err(ImageError::io(&path))?;
            stats.removed += 1;
        }
    }
    remove_empty_dirs(&kdir.join("kernel"))?;
    runner.run(&depmod_cmd(root, kver))?;
    Ok(stats)
}

pub fn depmod_cmd(root: &Path, kver: &str) -> Cmd {
    Cmd::new("chroot")
        .arg(p(root))
        .args(["/sbin/depmod", "-a", kver])
}

/// Removes build-only leftovers ([`TRIM_PATHS`]) and empties /dev, /run, /tmp.
pub fn trim_paths(root: &Path) -> Result<u64> {
    let mut freed = 0;
    for rel in TRIM_PATHS {
        let path = root.join(rel);
        match path.symlink_metadata() {
            Ok(md) if md.is_dir() => {
                freed += tree_size(&path);
                fs::remove_dir_all(&path).map_err(ImageError::io(&path))?;
            }
            Ok(md) => {
                freed += md.len();
                fs::remove_file(&path).map_err(ImageError::io(&path))?;
            }
            Err(_) => {}
        }
    }
    for d in ["dev", "run", "tmp"] {
        clear_dir(&root.join(d))?;
    }
    Ok(freed)
}

/// Writes the immutable-root configuration into the tree.
pub fn install_image_config(root: &Path, opts: &BuildOptions, base_key: &str) -> Result<()> {
    write(&root.join("etc/fstab"), &fstab())?;
    write(
        &root.join("usr/lib/repart.d/50-basalt-state.conf"),
        &repart_state(),
    )?;
    write(&root.join("etc/hostname"), "basalt\n")?;
    // a regular file the supervisor rewrites in place (its sandbox allows that file only)
    let resolv = root.join("etc/resolv.conf");
    if resolv.symlink_metadata().is_ok() {
        fs::remove_file(&resolv).map_err(ImageError::io(&resolv))?;
    }
    write(
        &resolv,
        "# rewritten at boot by basalt-supervisor (node-local DNS or the cluster's resolvers)\n",
    )?;
    // empty machine-id: systemd generates one per boot on the volatile /etc
    write(&root.join("etc/machine-id"), "")?;
    let script = root.join("usr/lib/basalt/image-ready");
    write(&script, READY_SCRIPT)?;
    set_mode(&script, 0o755)?;
    let unit_dir = root.join("usr/lib/systemd/system");
    write(&unit_dir.join("basalt-image-ready.service"), READY_UNIT)?;
    let wants = unit_dir.join("multi-user.target.wants");
    fs::create_dir_all(&wants).map_err(ImageError::io(&wants))?;
    replace_symlink(
        Path::new("../basalt-image-ready.service"),
        &wants.join("basalt-image-ready.service"),
    )?;
    // `ip=`/`ifname=` on the kernel command line (the PXE and QEMU contract for static
    // addresses) become .network/.link files in /run/systemd/network
    let sysinit = unit_dir.join("sysinit.target.wants");
    fs::create_dir_all(&sysinit).map_err(ImageError::io(&sysinit))?;
    replace_symlink(
        Path::new("../systemd-network-generator.service"),
        &sysinit.join("systemd-network-generator.service"),
    )?;
    // the ESP is not auto-mounted, and no unit prompts or rewrites /usr-derived caches
    let gens = root.join("etc/systemd/system-generators");
    fs::create_dir_all(&gens).map_err(ImageError::io(&gens))?;
    replace_symlink(
        Path::new("/dev/null"),
        &gens.join("systemd-gpt-auto-generator"),
    )?;
    let etc_units = root.join("etc/systemd/system");
    fs::create_dir_all(&etc_units).map_err(ImageError::io(&etc_units))?;
    for u in MASKED_UNITS {
        replace_symlink(Path::new("/dev/null"), &etc_units.join(u))?;
    }
    write(
        &root.join("usr/lib/basalt/image.toml"),
        &format!(
            "# written by basalt-nodeimg\nrole = \"{}\"\nsuite = \"{}\"\nbase_key = \"{}\"\nsource_date_epoch = {}\n",
            opts.role, opts.suite, base_key, opts.source_date_epoch
        ),
    )?;
    Ok(())
}

/// Copies the caller's files in. Refuses paths outside the image, API file systems, and
/// anything that looks like a private key.
pub fn install_extra_files(root: &Path, files: &[ExtraFile]) -> Result<usize> {
    let mut count = 0;
    for f in files {
        let rel = check_dest(f)?;
        let dest = root.join(&rel);
        let md = fs::metadata(&f.src).map_err(|e| ImageError::ExtraFile {
            dest: f.dest.clone(),
            src: f.src.clone(),
            reason: e.to_string(),
        })?;
        if md.is_dir() {
            count += copy_tree(&f.src, &dest, f)?;
        } else {
            copy_one(&f.src, &dest, f)?;
            count += 1;
        }
    }
    Ok(count)
}

fn check_dest(f: &ExtraFile) -> Result<PathBuf> {
    let bad = |reason: &str| ImageError::ExtraFile {
        dest: f.dest.clone(),
        src: f.src.clone(),
        reason: reason.to_string(),
    };
    let dest = Path::new(&f.dest);
    if !dest.is_absolute() {
        return Err(bad("dest must be an absolute path in the image"));
    }
    let mut rel = PathBuf::new();
    for c in dest.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(s) => rel.push(s),
            _ => return Err(bad("dest must not contain '.' or '..'")),
        }
    }
    let first = rel
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    match first.as_deref() {
        None => Err(bad("dest is the image root")),
        Some("proc" | "sys" | "dev" | "run" | "tmp" | "boot") => Err(bad(
            "dest is on a file system mounted at boot; it would be hidden",
        )),
        Some(_) => Ok(rel),
    }
}

fn copy_tree(src: &Path, dest: &Path, f: &ExtraFile) -> Result<usize> {
    fs::create_dir_all(dest).map_err(ImageError::io(dest))?;
    set_mode(dest, 0o755)?;
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(ImageError::io(src))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let mut n = 0;
    for e in entries {
        let s = e.path();
        let d = dest.join(e.file_name());
        let md = fs::metadata(&s).map_err(ImageError::io(&s))?;
        if md.is_dir() {
            n += copy_tree(&s, &d, f)?;
        } else {
            copy_one(&s, &d, f)?;
            n += 1;
        }
    }
    Ok(n)
}

fn copy_one(src: &Path, dest: &Path, f: &ExtraFile) -> Result<()> {
    let bytes = fs::read(src).map_err(ImageError::io(src))?;
    if looks_like_private_key(&bytes) {
        return Err(ImageError::SecretInImage {
            dest: f.dest.clone(),
            src: src.to_path_buf(),
        });
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
    }
    if dest.symlink_metadata().is_ok() {
        fs::remove_file(dest).map_err(ImageError::io(dest))?;
    }
    fs::write(dest, &bytes).map_err(ImageError::io(dest))?;
    set_mode(dest, f.mode)
}

/// PEM private keys of any kind, and OpenSSH private keys.
pub fn looks_like_private_key(bytes: &[u8]) -> bool {
    let needle_a = b"-----BEGIN ";
    bytes.windows(needle_a.len()).enumerate().any(|(i, w)| {
        w == needle_a && {
            let rest = &bytes[i + needle_a.len()..];
            let line_end = rest.iter().position(|&b| b == b'-').unwrap_or(rest.len());
            let label = &rest[..line_end];
            label.ends_with(b"PRIVATE KEY ") || label.ends_with(b"PRIVATE KEY")
        }
    })
}

fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        fs::remove_file(link).map_err(ImageError::io(link))?;
    }
    symlink(target, link).map_err(ImageError::io(link))
}

fn clear_dir(dir: &Path) -> Result<()> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.filter_map(|e| e.ok()) {
        let path = e.path();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            fs::remove_dir_all(&path).map_err(ImageError::io(&path))?;
        } else {
            fs::remove_file(&path).map_err(ImageError::io(&path))?;
        }
    }
    Ok(())
}

fn remove_empty_dirs(dir: &Path) -> Result<bool> {
    let mut empty = true;
    let rd = fs::read_dir(dir).map_err(ImageError::io(dir))?;
    for e in rd.filter_map(|e| e.ok()) {
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && remove_empty_dirs(&e.path())? {
            let path = e.path();
            fs::remove_dir(&path).map_err(ImageError::io(&path))?;
        } else {
            empty = false;
        }
    }
    Ok(empty)
}

/// Apparent size of the regular files under `dir`.
pub fn tree_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Role;
    use crate::runner::RecordingRunner;

    const DEP: &str = "\
kernel/fs/erofs/erofs.ko: kernel/lib/lz4/lz4_decompress.ko
kernel/lib/lz4/lz4_decompress.ko:
kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/lib/reed_solomon/reed_solomon.ko
kernel/drivers/md/dm-bufio.ko:
kernel/lib/reed_solomon/reed_solomon.ko:
kernel/sound/core/snd.ko: kernel/drivers/base/soundcore.ko
kernel/drivers/base/soundcore.ko:
kernel/drivers/net/tun.ko:
kernel/drivers/net/tunnel.ko:
";

    #[test]
    fn keep_set_is_prefix_matched_and_dependency_closed() {
        let deps = parse_modules_dep(DEP);
        let keep = modules_to_keep(&deps, &["fs/erofs".into(), "drivers/net/tun.ko".into()]);
        let expected: BTreeSet<String> = [
            "kernel/fs/erofs/erofs.ko",
            "kernel/lib/lz4/lz4_decompress.ko",
            "kernel/drivers/net/tun.ko",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(keep, expected, "tun.ko must not pull tunnel.ko by prefix");
        let md = modules_to_keep(&deps, &["drivers/md/".into()]);
        assert!(md.contains("kernel/lib/reed_solomon/reed_solomon.ko"));
        assert!(!md.contains("kernel/sound/core/snd.ko"));
        let glob = modules_to_keep(&deps, &["drivers/md/dm-v*".into()]);
        assert!(glob.contains("kernel/drivers/md/dm-verity.ko"));
        assert!(
            glob.contains("kernel/drivers/md/dm-bufio.ko"),
            "dependency of dm-verity"
        );
        let none = modules_to_keep(&deps, &["drivers/md/dm-x*".into()]);
        assert!(none.is_empty());
    }

    #[test]
    fn trim_modules_removes_the_rest_and_runs_depmod() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let kdir = root.join("usr/lib/modules/6.1.0-test");
        for line in DEP.lines() {
            let m = line.split(':').next().unwrap();
            write(&kdir.join(m), "ko").unwrap();
        }
        write(&kdir.join("modules.dep"), DEP).unwrap();
        let runner = RecordingRunner::new();
        let stats = trim_modules(root, "6.1.0-test", &["fs/erofs".into()], &runner).unwrap();
        assert_eq!(stats.kept, 2);
        assert_eq!(stats.removed, 7);
        assert!(kdir.join("kernel/fs/erofs/erofs.ko").is_file());
        assert!(kdir.join("kernel/lib/lz4/lz4_decompress.ko").is_file());
        assert!(!kdir.join("kernel/sound").exists(), "empty dirs go too");
        let cmds = runner.recorded();
        assert_eq!(cmds.len(), 1);
        assert_eq!(cmds[0].program, "chroot");
        assert_eq!(
            cmds[0].arg_strings()[1..],
            ["/sbin/depmod", "-a", "6.1.0-test"]
        );
    }

    #[test]
    fn boot_files_are_taken_out_of_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write(&root.join("boot/vmlinuz-6.1.0-9-amd64"), "kernel").unwrap();
        write(&root.join("boot/initrd.img-6.1.0-9-amd64"), "initrd").unwrap();
        write(&root.join("boot/config-6.1.0-9-amd64"), "cfg").unwrap();
        symlink("boot/vmlinuz-6.1.0-9-amd64", root.join("vmlinuz")).unwrap();
        let out = dir.path().join("out");
        let b = take_boot_files(&root, &out).unwrap();
        assert_eq!(b.kernel_version, "6.1.0-9-amd64");
        assert_eq!(fs::read_to_string(&b.kernel).unwrap(), "kernel");
        assert_eq!(fs::read_to_string(&b.initrd).unwrap(), "initrd");
        assert_eq!(fs::read_dir(root.join("boot")).unwrap().count(), 0);
        assert!(root.join("vmlinuz").symlink_metadata().is_err());
    }

    #[test]
    fn missing_initrd_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("boot/vmlinuz-6.1"), "k").unwrap();
        let err = take_boot_files(dir.path(), &dir.path().join("o")).unwrap_err();
        assert!(err.to_string().contains("initrd.img-6.1"), "{err}");
    }

    #[test]
    fn image_config_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        install_image_config(root, &BuildOptions::new(Role::Agent, "/o"), "k").unwrap();
        let fstab = fs::read_to_string(root.join("etc/fstab")).unwrap();
        assert!(fstab.contains("PARTLABEL=basalt-state /var ext4"));
        assert!(fstab.contains("x-systemd.requires=systemd-repart.service"));
        let repart =
            fs::read_to_string(root.join("usr/lib/repart.d/50-basalt-state.conf")).unwrap();
        assert!(repart.contains("Label=basalt-state") && repart.contains("CopyFiles=/var:/"));
        let wants =
            root.join("usr/lib/systemd/system/multi-user.target.wants/basalt-image-ready.service");
        assert!(wants.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/systemd-firstboot.service")).unwrap(),
            Path::new("/dev/null")
        );
        assert!(READY_SCRIPT.contains(READY_MARKER));
        assert_eq!(fs::read(root.join("etc/machine-id")).unwrap(), b"");
    }

    #[test]
    fn extra_files_are_copied_with_mode_and_secrets_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let src = dir.path().join("src");
        write(&src.join("basaltd"), "#!/bin/true\n").unwrap();
        write(&src.join("units/a.service"), "[Unit]\n").unwrap();
        write(&src.join("units/sub/b.target"), "[Unit]\n").unwrap();
        write(&src.join("cluster.pub"), "-----BEGIN PUBLIC KEY-----\nAA\n").unwrap();
        let n = install_extra_files(
            &root,
            &[
                ExtraFile::new("/usr/bin/basaltd", src.join("basaltd"), 0o755),
                ExtraFile::new("/usr/lib/systemd/system", src.join("units"), 0o644),
                ExtraFile::new(
                    "/usr/share/basalt/cluster.pub",
                    src.join("cluster.pub"),
                    0o644,
                ),
            ],
        )
        .unwrap();
        assert_eq!(n, 4);
        let mode = fs::metadata(root.join("usr/bin/basaltd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(root.join("usr/lib/systemd/system/sub/b.target").is_file());

        write(
            &src.join("key.pem"),
            "x\n-----BEGIN EC PRIVATE KEY-----\nAA\n",
        )
        .unwrap();
        let err = install_extra_files(
            &root,
            &[ExtraFile::new(
                "/etc/basalt/key.pem",
                src.join("key.pem"),
                0o600,
            )],
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::SecretInImage { .. }), "{err}");

        for bad in ["relative/x", "/usr/../etc/x", "/run/x", "/"] {
            let err =
                install_extra_files(&root, &[ExtraFile::new(bad, src.join("basaltd"), 0o644)])
                    .unwrap_err();
            assert!(matches!(err, ImageError::ExtraFile { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn private_key_detection() {
        assert!(looks_like_private_key(b"-----BEGIN PRIVATE KEY-----\n"));
        assert!(looks_like_private_key(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\n"
        ));
        assert!(looks_like_private_key(b"-----BEGIN RSA PRIVATE KEY-----"));
        assert!(!looks_like_private_key(b"-----BEGIN PUBLIC KEY-----\n"));
        assert!(!looks_like_private_key(b"-----BEGIN CERTIFICATE-----\n"));
        assert!(!looks_like_private_key(b"\x7fELF binary"));
    }

    #[test]
    fn trim_paths_empties_api_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("dev/null"), "").unwrap();
        write(&root.join("var/cache/debconf/config.dat"), "x").unwrap();
        write(&root.join("usr/lib/udev/hwdb.d/20-x.hwdb"), "xx").unwrap();
        let freed = trim_paths(root).unwrap();
        assert_eq!(freed, 3);
        assert!(root.join("dev").is_dir());
        assert_eq!(fs::read_dir(root.join("dev")).unwrap().count(), 0);
        assert!(!root.join("usr/lib/udev/hwdb.d").exists());
    }
}
