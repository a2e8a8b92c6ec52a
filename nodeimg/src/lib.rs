//! Basalt's immutable node image pipeline.
//!
//! [`build`] turns a role and a few inputs into bootable artifacts:
//!
//! ```text
//! mmdebstrap (cached by package list/suite/variant) ──> base.tar
//!   └─ extract ─> tree ─ kernel+initrd out of /boot, modules and leftovers trimmed,
//!                        fstab/repart.d/masks/marker unit written, extra files copied in
//!        └─ mkfs.erofs (fixed timestamps/uuid) ─> root.erofs ─ veritysetup ─> root.verity + root hash
//!             └─ ESP (systemd-boot + entry with roothash=) + GPT (sfdisk) ─> disk.raw ─> disk.qcow2
//!                  └─ manifest.toml (sha256 + size of every artifact; the caller signs it)
//! ```
//!
//! The pipeline, the partition layout and the kernel command line contract are described in
//! `nodeimg/README.md`.

pub mod base;
pub mod customize;
pub mod disk;
pub mod error;
pub mod manifest;
pub mod node;
pub mod options;
pub mod recipe;
pub mod rootimg;
pub mod runner;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

pub use crate::customize::{FACT_PREFIX, READY_MARKER, STATE_LABEL};
pub use crate::disk::DiskLayout;
pub use crate::error::{ImageError, Result};
pub use crate::manifest::Manifest;
pub use crate::options::{BuildOptions, ExtraFile, Role, RootFsKind, default_cache_dir};
pub use crate::runner::{Cmd, CommandRunner, RealRunner, RecordingRunner};

/// File names inside the output directory.
pub mod names {
    pub const KERNEL: &str = "vmlinuz";
    pub const INITRD: &str = "initrd.img";
    pub const VERITY: &str = "root.verity";
    pub const DISK_RAW: &str = "disk.raw";
    pub const DISK_QCOW2: &str = "disk.qcow2";
    pub const CMDLINE: &str = "cmdline";
    pub const ESP: &str = "esp.img";
}

/// Bumped when the customization steps change (part of the inputs digest).
const PIPELINE_VERSION: u32 = 1;

/// What [`build`] produced.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub dir: PathBuf,
    pub role: Role,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub root_image: PathBuf,
    pub root_verity: PathBuf,
    pub esp_image: PathBuf,
    pub disk_raw: PathBuf,
    pub disk_qcow2: Option<PathBuf>,
    pub manifest_path: PathBuf,
    pub kernel_version: String,
    pub root_hash: String,
    /// Slot A's kernel command line (also in `cmdline` and the ESP entry).
    pub cmdline: String,
    pub layout: DiskLayout,
    pub manifest: Manifest,
    /// The base rootfs came from the cache.
    pub base_cache_hit: bool,
    /// Nothing was rebuilt: `out_dir` already held artifacts of the same inputs.
    pub reused: bool,
    /// Seconds per phase.
    pub timings: Vec<(String, f64)>,
}

impl Artifacts {
    /// The bytes of `manifest.toml` as written: what the cluster key signs.
    pub fn manifest_bytes(&self) -> Result<Vec<u8>> {
        fs::read(&self.manifest_path).map_err(ImageError::io(&self.manifest_path))
    }

    /// Stores a detached signature of [`Artifacts::manifest_bytes`] next to the manifest.
    pub fn write_signature(&self, signature: &[u8]) -> Result<PathBuf> {
        let path = self.dir.join(manifest::SIGNATURE_FILE);
        fs::write(&path, signature).map_err(ImageError::io(&path))?;
        Ok(path)
    }

    /// A printable table: every artifact's size and the space it takes on disk.
    pub fn size_table(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        let mut s = format!(
            "{:<16} {:>12} {:>12}  {}\n",
            "artifact", "size MiB", "on disk MiB", "sha256"
        );
        for a in &self.manifest.artifacts {
            let alloc = fs::metadata(self.dir.join(&a.path))
                .map(|m| m.blocks() * 512)
                .unwrap_or(0);
            s.push_str(&format!(
                "{:<16} {:>12.1} {:>12.1}  {}\n",
                a.name,
                a.size as f64 / 1048576.0,
                alloc as f64 / 1048576.0,
                &a.sha256[..16]
            ));
        }
        s
    }
}

/// Builds the image for `opts` with the real tools. Needs root.
pub fn build(opts: &BuildOptions) -> Result<Artifacts> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid != 0 {
        return Err(ImageError::NotRoot(uid));
    }
    build_with(opts, &RealRunner)
}

/// The tools a build runs (mmdebstrap only on a base cache miss).
pub fn required_tools(opts: &BuildOptions) -> Vec<&'static str> {
    let mut v = vec![
        "tar",
        "chroot",
        "veritysetup",
        "sfdisk",
        "mkfs.vfat",
        "mcopy",
    ];
    v.push(match opts.root_fs {
        RootFsKind::Erofs => "mkfs.erofs",
        RootFsKind::Squashfs => "mksquashfs",
    });
    if opts.qcow2 {
        v.push("qemu-img");
    }
    v
}

/// [`build`] with an explicit command runner.
pub fn build_with(opts: &BuildOptions, runner: &dyn CommandRunner) -> Result<Artifacts> {
    opts.validate()?;
    for tool in required_tools(opts) {
        if !runner.has_program(tool) {
            return Err(ImageError::MissingTool(tool.to_string()));
        }
    }
    let out = &opts.out_dir;
    fs::create_dir_all(out).map_err(ImageError::io(out))?;
    let _lock = base::lock_file(&out.join(".lock"))?;
    let mut timings = Vec::new();
    let mut phase = |name: &str, t: Instant| {
        let secs = t.elapsed().as_secs_f64();
        tracing::info!(phase = name, seconds = format!("{secs:.1}"), "nodeimg");
        timings.push((name.to_string(), secs));
    };

    let t = Instant::now();
    let base = base::ensure_base(opts, runner)?;
    phase(
        if base.cache_hit {
            "base (cached)"
        } else {
            "base (mmdebstrap)"
        },
        t,
    );

    let inputs_digest = inputs_digest(opts, &base.key)?;
    let manifest_path = out.join(manifest::MANIFEST_FILE);
    if opts.reuse_outputs
        && let Ok(m) = Manifest::read(&manifest_path)
        && m.inputs_digest == inputs_digest
        && manifest::stamp_matches(out, &m)
    {
        tracing::info!(dir = %out.display(), "nodeimg: outputs up to date, reused");
        let mut a = artifacts_from(opts, m, base.cache_hit)?;
        a.reused = true;
        a.timings = timings;
        return Ok(a);
    }
    let _ = fs::remove_file(&manifest_path);
    let _ = fs::remove_file(out.join(manifest::STAMP_FILE));

    let work = out.join(".work");
    let tree = work.join("rootfs");
    let t = Instant::now();
    base::extract(&base.tarball, &tree, runner)?;
    phase("extract", t);

    let t = Instant::now();
    let boot = customize::take_boot_files(&tree, out)?;
    let systemd_boot = work.join("systemd-bootx64.efi");
    let sd_boot_src = tree.join(disk::SYSTEMD_BOOT_EFI);
    fs::copy(&sd_boot_src, &systemd_boot).map_err(ImageError::io(&sd_boot_src))?;
    let trim = customize::trim_modules(&tree, &boot.kernel_version, &opts.keep_modules, runner)?;
    let freed = customize::trim_paths(&tree)?;
    customize::install_image_config(&tree, opts, &base.key)?;
    let extra = customize::install_extra_files(&tree, &opts.extra_files)?;
    tracing::info!(
        modules_kept = trim.kept,
        modules_removed = trim.removed,
        module_mib_removed = trim.removed_bytes / 1048576,
        other_mib_removed = freed / 1048576,
        extra_files = extra,
        "nodeimg: tree customized"
    );
    phase("customize", t);

    let t = Instant::now();
    let root = rootimg::make_root_image(
        &tree,
        out,
        opts.root_fs,
        opts.source_date_epoch,
        opts.role.as_str(),
        runner,
    )?;
    phase("root image + verity", t);

    let t = Instant::now();
    let cmdline = disk::kernel_cmdline(opts.root_fs, &root.root_hash, &opts.extra_cmdline);
    let layout = disk::layout(opts, &root.root_hash)?;
    let esp = out.join(names::ESP);
    disk::make_esp(
        &esp,
        &work.join("esp"),
        layout
            .partition("esp")
            .map(|p| p.size)
            .unwrap_or(opts.esp_size),
        opts.source_date_epoch,
        &disk::EspContent {
            systemd_boot: &systemd_boot,
            kernel: &boot.kernel,
            initrd: &boot.initrd,
            entry_title: format!("Basalt {} (slot A)", opts.role),
            kernel_version: &boot.kernel_version,
            cmdline: &cmdline,
        },
        runner,
    )?;
    let disk_raw = out.join(names::DISK_RAW);
    disk::assemble(
        &disk_raw,
        &layout,
        &disk::DiskContent {
            esp: &esp,
            root: &root.image,
            verity: &root.verity,
        },
        runner,
    )?;
    phase("disk.raw", t);
    let qcow2 = out.join(names::DISK_QCOW2);
    if qcow2.exists() {
        fs::remove_file(&qcow2).map_err(ImageError::io(&qcow2))?;
    }
    if opts.qcow2 {
        let t = Instant::now();
        runner.run(&disk::qcow2_cmd(&disk_raw, &qcow2))?;
        phase("disk.qcow2", t);
    }
    let cmdline_path = out.join(names::CMDLINE);
    fs::write(&cmdline_path, format!("{cmdline}\n")).map_err(ImageError::io(&cmdline_path))?;

    let t = Instant::now();
    let root_name = format!("root.{}", opts.root_fs.fstype());
    let mut entries = vec![
        ("kernel", names::KERNEL),
        ("initrd", names::INITRD),
        ("root", root_name.as_str()),
        ("root-verity", names::VERITY),
        ("esp", names::ESP),
        ("disk-raw", names::DISK_RAW),
        ("cmdline", names::CMDLINE),
    ];
    if opts.qcow2 {
        entries.push(("disk-qcow2", names::DISK_QCOW2));
    }
    let mut artifacts = entries
        .into_iter()
        .map(|(name, rel)| manifest::ArtifactEntry::measure(out, name, rel))
        .collect::<Result<Vec<_>>>()?;
    artifacts.sort_by(|a, b| a.name.cmp(&b.name));
    let m = Manifest {
        schema: manifest::SCHEMA,
        role: opts.role.to_string(),
        suite: opts.suite.clone(),
        kernel_version: boot.kernel_version.clone(),
        root_fs: opts.root_fs.fstype().to_string(),
        root_hash: root.root_hash.clone(),
        cmdline: cmdline.clone(),
        source_date_epoch: opts.source_date_epoch,
        base_key: base.key.clone(),
        inputs_digest,
        artifacts,
    };
    let bytes = m.to_bytes()?;
    fs::write(&manifest_path, &bytes).map_err(ImageError::io(&manifest_path))?;
    manifest::write_stamp(out, &m)?;
    let _ = fs::remove_file(out.join(manifest::SIGNATURE_FILE));
    phase("manifest", t);

    if let Err(e) = fs::remove_dir_all(&work) {
        tracing::warn!(dir = %work.display(), error = %e, "nodeimg: cannot remove work dir");
    }
    let mut a = artifacts_from(opts, m, base.cache_hit)?;
    a.timings = timings;
    tracing::info!("nodeimg: built {}\n{}", out.display(), a.size_table());
    Ok(a)
}

/// The artifacts already in `opts.out_dir` (from its manifest), without building; fails if
/// a file changed since the manifest was written.
pub fn load(opts: &BuildOptions) -> Result<Artifacts> {
    let path = opts.out_dir.join(manifest::MANIFEST_FILE);
    let m = Manifest::read(&path)?;
    if !manifest::stamp_matches(&opts.out_dir, &m) {
        return Err(ImageError::Parse {
            path,
            reason: "an artifact changed since the manifest was written (rebuild)".into(),
        });
    }
    let mut a = artifacts_from(opts, m, true)?;
    a.reused = true;
    Ok(a)
}

fn artifacts_from(opts: &BuildOptions, m: Manifest, base_cache_hit: bool) -> Result<Artifacts> {
    let out = &opts.out_dir;
    let layout = disk::layout(opts, &m.root_hash)?;
    Ok(Artifacts {
        dir: out.clone(),
        role: opts.role,
        kernel: out.join(names::KERNEL),
        initrd: out.join(names::INITRD),
        root_image: out.join(format!("root.{}", opts.root_fs.fstype())),
        root_verity: out.join(names::VERITY),
        esp_image: out.join(names::ESP),
        disk_raw: out.join(names::DISK_RAW),
        disk_qcow2: opts.qcow2.then(|| out.join(names::DISK_QCOW2)),
        manifest_path: out.join(manifest::MANIFEST_FILE),
        kernel_version: m.kernel_version.clone(),
        root_hash: m.root_hash.clone(),
        cmdline: m.cmdline.clone(),
        layout,
        manifest: m,
        base_cache_hit,
        reused: false,
        timings: Vec::new(),
    })
}

/// sha256 over every input of a build: the base key, the options that shape the tree and
/// the disk, and the content of every extra file.
pub fn inputs_digest(opts: &BuildOptions, base_key: &str) -> Result<String> {
    let mut h = Sha256::new();
    let mut field = |k: &str, v: &str| {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    };
    field("pipeline", &PIPELINE_VERSION.to_string());
    field("base", base_key);
    field("role", opts.role.as_str());
    field("rootfs", opts.root_fs.fstype());
    field("epoch", &opts.source_date_epoch.to_string());
    field(
        "sizes",
        &format!(
            "{} {} {} {}",
            opts.esp_size, opts.root_slot_size, opts.verity_slot_size, opts.state_space
        ),
    );
    field("qcow2", &opts.qcow2.to_string());
    for a in &opts.extra_cmdline {
        field("cmdline", a);
    }
    for m in &opts.keep_modules {
        field("keep", m);
    }
    for f in &opts.extra_files {
        field("extra.dest", &f.dest);
        field("extra.mode", &format!("{:o}", f.mode));
        field("extra.content", &content_digest(&f.src)?);
    }
    Ok(hex::encode(h.finalize()))
}

fn content_digest(path: &Path) -> Result<String> {
    let md = fs::metadata(path).map_err(ImageError::io(path))?;
    if !md.is_dir() {
        return rootimg::sha256_file(path);
    }
    let mut names: Vec<_> = fs::read_dir(path)
        .map_err(ImageError::io(path))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    let mut h = Sha256::new();
    for n in names {
        h.update(n.as_encoded_bytes());
        h.update([0]);
        h.update(content_digest(&path.join(&n))?.as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_digest_follows_extra_file_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("basaltd");
        fs::write(&f, b"v1").unwrap();
        let mut o = BuildOptions::new(Role::Agent, dir.path().join("out"));
        o.extra_files = vec![ExtraFile::new("/usr/bin/basaltd", &f, 0o755)];
        let d1 = inputs_digest(&o, "k").unwrap();
        assert_eq!(d1, inputs_digest(&o, "k").unwrap());
        assert_ne!(d1, inputs_digest(&o, "k2").unwrap());
        fs::write(&f, b"v2").unwrap();
        assert_ne!(d1, inputs_digest(&o, "k").unwrap());
        o.extra_files[0].src = dir.path().join("missing");
        assert!(inputs_digest(&o, "k").is_err());
    }

    #[test]
    fn build_reports_missing_tools_first() {
        struct NoTools;
        impl CommandRunner for NoTools {
            fn run(&self, _: &Cmd) -> Result<Vec<u8>> {
                Ok(Vec::new())
            }
            fn has_program(&self, p: &str) -> bool {
                p != "veritysetup"
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let o = BuildOptions::new(Role::Agent, dir.path().join("out"));
        let err = build_with(&o, &NoTools).unwrap_err();
        assert!(
            matches!(err, ImageError::MissingTool(ref t) if t == "veritysetup"),
            "{err}"
        );
        assert!(
            !o.out_dir.exists(),
            "nothing is written before the checks pass"
        );
    }
}
