//! The GPT disk: ESP (systemd-boot + a Boot Loader Specification entry for slot A), root A
//! and its verity partition, root B and its verity partition (empty, same sizes, for
//! upgrades), then free space that systemd-repart turns into the state partition on first
//! boot.
//!
//! Root A's partition UUID is the first half of the root hash and its verity partition's
//! UUID the second half: that is how systemd-veritysetup-generator finds both from
//! `roothash=` alone (the Discoverable Partitions convention). An upgrade writes slot B
//! with the new image's UUIDs and adds a `basalt-b.conf` entry.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{ImageError, Result};
use crate::options::{BuildOptions, RootFsKind};
use crate::rootimg::{derived_uuid, format_uuid};
use crate::runner::{Cmd, CommandRunner, p};

pub const MIB: u64 = 1024 * 1024;
const SECTOR: u64 = 512;

pub const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const TYPE_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
pub const TYPE_ROOT_X86_64_VERITY: &str = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5";

/// Path of systemd-boot inside the rootfs (from the systemd-boot-efi package).
pub const SYSTEMD_BOOT_EFI: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub number: u32,
    pub name: String,
    pub type_guid: &'static str,
    pub uuid: String,
    /// Byte offset.
    pub start: u64,
    /// Bytes.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    pub disk_uuid: String,
    pub partitions: Vec<Partition>,
    /// Size of the raw disk in bytes (free space for the state partition included).
    pub total_size: u64,
}

impl DiskLayout {
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }
}

/// The partition UUIDs systemd-veritysetup-generator derives from a root hash:
/// (data, hash) = (first 128 bits, last 128 bits).
pub fn verity_partition_uuids(root_hash: &str) -> Result<(String, String)> {
    let bytes = hex::decode(root_hash).map_err(|e| ImageError::Parse {
        path: PathBuf::from("roothash"),
        reason: e.to_string(),
    })?;
    if bytes.len() < 32 {
        return Err(ImageError::Parse {
            path: PathBuf::from("roothash"),
            reason: format!("{} bytes, want 32", bytes.len()),
        });
    }
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    a.copy_from_slice(&bytes[..16]);
    b.copy_from_slice(&bytes[bytes.len() - 16..]);
    Ok((format_uuid(&a), format_uuid(&b)))
}

/// The layout for `opts` and a root hash.
pub fn layout(opts: &BuildOptions, root_hash: &str) -> Result<DiskLayout> {
    let (root_uuid, verity_uuid) = verity_partition_uuids(root_hash)?;
    let seed = |what: &str| derived_uuid(&[b"basalt-disk", root_hash.as_bytes(), what.as_bytes()]);
    let parts = [
        ("esp", TYPE_ESP, seed("esp"), opts.esp_size),
        ("root-a", TYPE_ROOT_X86_64, root_uuid, opts.root_slot_size),
        (
            "root-a-verity",
            TYPE_ROOT_X86_64_VERITY,
            verity_uuid,
            opts.verity_slot_size,
        ),
        (
            "root-b",
            TYPE_ROOT_X86_64,
            seed("root-b"),
            opts.root_slot_size,
        ),
        (
            "root-b-verity",
            TYPE_ROOT_X86_64_VERITY,
            seed("root-b-verity"),
            opts.verity_slot_size,
        ),
    ];
    let mut start = MIB;
    let mut partitions = Vec::new();
    for (i, (name, type_guid, uuid, size)) in parts.into_iter().enumerate() {
        partitions.push(Partition {
            number: i as u32 + 1,
            name: name.to_string(),
            type_guid,
            uuid: uuid.to_uppercase(),
            start,
            size,
        });
        start += size;
    }
    // free space for the state partition, plus 1 MiB for the backup GPT
    let total_size = start + opts.state_space + MIB;
    Ok(DiskLayout {
        disk_uuid: seed("disk").to_uppercase(),
        partitions,
        total_size,
    })
}

/// The sfdisk script that writes `layout`'s partition table.
pub fn sfdisk_script(layout: &DiskLayout) -> String {
    let mut s = format!(
        "label: gpt\nlabel-id: {}\nunit: sectors\nfirst-lba: 2048\nsector-size: 512\n\n",
        layout.disk_uuid
    );
    for part in &layout.partitions {
        s.push_str(&format!(
            "start={}, size={}, type={}, uuid={}, name=\"{}\"\n",
            part.start / SECTOR,
            part.size / SECTOR,
            part.type_guid,
            part.uuid,
            part.name
        ));
    }
    s
}

pub fn sfdisk_cmd(disk: &Path, layout: &DiskLayout) -> Cmd {
    Cmd::new("sfdisk")
        .args([
            "--quiet",
            "--no-reread",
            "--no-tell-kernel",
            "--wipe",
            "always",
        ])
        .arg(p(disk))
        .stdin(sfdisk_script(layout).into_bytes())
}

/// The kernel command line of slot A: the contract is documented in nodeimg/README.md.
pub fn kernel_cmdline(kind: RootFsKind, root_hash: &str, extra: &[String]) -> String {
    let mut v = vec![
        "root=/dev/mapper/root".to_string(),
        format!("rootfstype={}", kind.fstype()),
        "ro".to_string(),
        format!("roothash={root_hash}"),
        "systemd.verity_root_options=restart-on-corruption".to_string(),
        "basalt.slot=a".to_string(),
        "console=tty0".to_string(),
        "console=ttyS0,115200".to_string(),
    ];
    v.extend(extra.iter().cloned());
    v.join(" ")
}

pub fn loader_conf() -> &'static str {
    "default basalt-a.conf\ntimeout 0\neditor no\nconsole-mode keep\n"
}

pub fn boot_entry(title: &str, version: &str, slot: &str, cmdline: &str) -> String {
    format!(
        "title {title}\nversion {version}\nlinux /basalt/{slot}/vmlinuz\ninitrd /basalt/{slot}/initrd.img\noptions {cmdline}\n"
    )
}

/// Inputs of the ESP.
pub struct EspContent<'a> {
    pub systemd_boot: &'a Path,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub entry_title: String,
    pub kernel_version: &'a str,
    pub cmdline: &'a str,
}

/// Builds the FAT32 ESP image at `esp_img` from a staging directory (all mtimes = epoch).
pub fn make_esp(
    esp_img: &Path,
    staging: &Path,
    size: u64,
    epoch: u64,
    content: &EspContent<'_>,
    runner: &dyn CommandRunner,
) -> Result<()> {
    if staging.exists() {
        fs::remove_dir_all(staging).map_err(ImageError::io(staging))?;
    }
    let put = |rel: &str, from: Option<&Path>, text: Option<&str>| -> Result<()> {
        let dest = staging.join(rel);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
        }
        match (from, text) {
            (Some(src), _) => fs::copy(src, &dest)
                .map(|_| ())
                .map_err(ImageError::io(src)),
            (None, Some(t)) => fs::write(&dest, t).map_err(ImageError::io(&dest)),
            (None, None) => Ok(()),
        }
    };
    put("EFI/BOOT/BOOTX64.EFI", Some(content.systemd_boot), None)?;
    put(
        "EFI/systemd/systemd-bootx64.efi",
        Some(content.systemd_boot),
        None,
    )?;
    put("loader/loader.conf", None, Some(loader_conf()))?;
    put(
        "loader/entries/basalt-a.conf",
        None,
        Some(&boot_entry(
            &content.entry_title,
            content.kernel_version,
            "a",
            content.cmdline,
        )),
    )?;
    put("basalt/a/vmlinuz", Some(content.kernel), None)?;
    put("basalt/a/initrd.img", Some(content.initrd), None)?;
    set_mtimes(staging, epoch)?;
    if esp_img.exists() {
        fs::remove_file(esp_img).map_err(ImageError::io(esp_img))?;
    }
    let volid = &derived_uuid(&[b"basalt-esp", &epoch.to_le_bytes()])[..8];
    runner.run(
        &Cmd::new("mkfs.vfat")
            .args([
                "-F",
                "32",
                "-n",
                "BASALT-ESP",
                "--invariant",
                "-i",
                volid,
                "-C",
            ])
            .arg(p(esp_img))
            .arg((size / 1024).to_string())
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
    )?;
    let mut top: Vec<PathBuf> = fs::read_dir(staging)
        .map_err(ImageError::io(staging))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    top.sort();
    runner.run(
        &Cmd::new("mcopy")
            .args(["-s", "-m", "-Q", "-i"])
            .arg(p(esp_img))
            .args(top.iter().map(|t| p(t)))
            .arg("::/")
            .env("MTOOLS_SKIP_CHECK", "1")
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
    )?;
    Ok(())
}

fn set_mtimes(dir: &Path, epoch: u64) -> Result<()> {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    for e in fs::read_dir(dir).map_err(ImageError::io(dir))? {
        let e = e.map_err(ImageError::io(dir))?;
        let path = e.path();
        if path.is_dir() {
            set_mtimes(&path, epoch)?;
        }
        let f = File::open(&path).map_err(ImageError::io(&path))?;
        f.set_modified(t).map_err(ImageError::io(&path))?;
    }
    Ok(())
}

/// Copies `src` into `dest` at byte `offset`, seeking over all-zero chunks so the output
/// stays sparse.
pub fn copy_into(src: &Path, dest: &mut File, dest_name: &Path, offset: u64) -> Result<u64> {
    let mut f = File::open(src).map_err(ImageError::io(src))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = offset;
    loop {
        let n = read_full(&mut f, &mut buf).map_err(ImageError::io(src))?;
        if n == 0 {
            break;
        }
        for chunk in buf[..n].chunks(64 * 1024) {
            if chunk.iter().any(|&b| b != 0) {
                dest.seek(SeekFrom::Start(pos))
                    .map_err(ImageError::io(dest_name))?;
                dest.write_all(chunk).map_err(ImageError::io(dest_name))?;
            }
            pos += chunk.len() as u64;
        }
    }
    Ok(pos - offset)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// What goes into which partition.
pub struct DiskContent<'a> {
    pub esp: &'a Path,
    pub root: &'a Path,
    pub verity: &'a Path,
}

/// Writes `disk.raw`: sparse file, GPT from sfdisk, then the partition contents.
pub fn assemble(
    disk: &Path,
    layout: &DiskLayout,
    content: &DiskContent<'_>,
    runner: &dyn CommandRunner,
) -> Result<()> {
    let fits = |what: &str, path: &Path, part: &str| -> Result<u64> {
        let size = fs::metadata(path).map_err(ImageError::io(path))?.len();
        let slot = layout.partition(part).map(|p| p.size).unwrap_or(0);
        if size > slot {
            return Err(ImageError::TooBig {
                what: what.to_string(),
                size,
                slot,
            });
        }
        Ok(size)
    };
    fits("ESP image", content.esp, "esp")?;
    fits("root image", content.root, "root-a")?;
    fits("verity hash tree", content.verity, "root-a-verity")?;
    if disk.exists() {
        fs::remove_file(disk).map_err(ImageError::io(disk))?;
    }
    {
        let f = File::create(disk).map_err(ImageError::io(disk))?;
        f.set_len(layout.total_size).map_err(ImageError::io(disk))?;
    }
    runner.run(&sfdisk_cmd(disk, layout))?;
    let mut f = File::options()
        .write(true)
        .open(disk)
        .map_err(ImageError::io(disk))?;
    for (src, part) in [
        (content.esp, "esp"),
        (content.root, "root-a"),
        (content.verity, "root-a-verity"),
    ] {
        let start = layout.partition(part).map(|p| p.start).unwrap_or(0);
        copy_into(src, &mut f, disk, start)?;
    }
    f.sync_all().map_err(ImageError::io(disk))?;
    Ok(())
}

pub fn qcow2_cmd(raw: &Path, qcow2: &Path) -> Cmd {
    Cmd::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2", "-c", "-m", "4"])
        .arg(p(raw))
        .arg(p(qcow2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Role;

    fn hash() -> String {
        "0b5a6f9b3bf59de0ae35312d6f873ab00b70b8762d8f85cbecdab1283da7cf3c".to_string()
    }

    #[test]
    fn verity_uuids_are_the_halves_of_the_root_hash() {
        let (a, b) = verity_partition_uuids(&hash()).unwrap();
        assert_eq!(a, "0b5a6f9b-3bf5-9de0-ae35-312d6f873ab0");
        assert_eq!(b, "0b70b876-2d8f-85cb-ecda-b1283da7cf3c");
        assert!(verity_partition_uuids("abcd").is_err());
        assert!(verity_partition_uuids("zz").is_err());
    }

    #[test]
    fn layout_is_aligned_contiguous_and_leaves_state_space() {
        let o = BuildOptions::new(Role::Agent, "/o");
        let l = layout(&o, &hash()).unwrap();
        let names: Vec<&str> = l.partitions.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["esp", "root-a", "root-a-verity", "root-b", "root-b-verity"]
        );
        assert_eq!(l.partitions[0].start, MIB);
        for w in l.partitions.windows(2) {
            assert_eq!(w[0].start + w[0].size, w[1].start);
        }
        for part in &l.partitions {
            assert_eq!(part.start % MIB, 0);
        }
        let a = l.partition("root-a").unwrap();
        let b = l.partition("root-b").unwrap();
        assert_eq!(a.size, b.size);
        assert_eq!(a.uuid, "0B5A6F9B-3BF5-9DE0-AE35-312D6F873AB0");
        let last = l.partitions.last().unwrap();
        assert_eq!(l.total_size, last.start + last.size + o.state_space + MIB);
        // all partition UUIDs differ, and the layout is a pure function of its inputs
        let mut uuids: Vec<&str> = l.partitions.iter().map(|p| p.uuid.as_str()).collect();
        uuids.sort();
        uuids.dedup();
        assert_eq!(uuids.len(), 5);
        assert_eq!(l, layout(&o, &hash()).unwrap());
    }

    #[test]
    fn sfdisk_script_lines() {
        let o = BuildOptions::new(Role::Agent, "/o");
        let l = layout(&o, &hash()).unwrap();
        let s = sfdisk_script(&l);
        assert!(s.starts_with("label: gpt\n"));
        assert!(s.contains(&format!("label-id: {}", l.disk_uuid)));
        assert!(s.contains("start=2048, size=262144, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"));
        assert!(s.contains("uuid=0B5A6F9B-3BF5-9DE0-AE35-312D6F873AB0, name=\"root-a\""));
        assert_eq!(s.lines().filter(|l| l.starts_with("start=")).count(), 5);
        let c = sfdisk_cmd(Path::new("/o/disk.raw"), &l);
        assert_eq!(c.stdin.as_deref(), Some(s.as_bytes()));
    }

    #[test]
    fn cmdline_contract() {
        let c = kernel_cmdline(RootFsKind::Erofs, &hash(), &["quiet".into()]);
        assert!(c.starts_with("root=/dev/mapper/root rootfstype=erofs ro roothash=0b5a"));
        assert!(c.contains("systemd.verity_root_options=restart-on-corruption"));
        assert!(c.contains("console=ttyS0,115200"));
        assert!(c.ends_with(" quiet"));
        assert!(
            !c.contains("basalt.config="),
            "reserved for the operator/supervisor"
        );
        let e = boot_entry("Basalt agent", "6.1", "a", &c);
        assert!(e.contains("linux /basalt/a/vmlinuz\n"));
        assert!(e.contains(&format!("options {c}\n")));
        assert!(loader_conf().contains("editor no"));
    }

    #[test]
    fn copy_into_keeps_holes_and_places_data() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let mut data = vec![0u8; 3 * 64 * 1024];
        data[64 * 1024 + 5] = 0xaa;
        fs::write(&src, &data).unwrap();
        let dest_path = dir.path().join("disk");
        let mut dest = File::create(&dest_path).unwrap();
        dest.set_len(4 * MIB).unwrap();
        let n = copy_into(&src, &mut dest, &dest_path, MIB).unwrap();
        assert_eq!(n, data.len() as u64);
        drop(dest);
        let all = fs::read(&dest_path).unwrap();
        assert_eq!(all.len() as u64, 4 * MIB);
        assert_eq!(all[MIB as usize + 64 * 1024 + 5], 0xaa);
        assert_eq!(all.iter().filter(|&&b| b != 0).count(), 1);
        use std::os::unix::fs::MetadataExt;
        let blocks = fs::metadata(&dest_path).unwrap().blocks();
        assert!(
            blocks * 512 <= 128 * 1024,
            "only one chunk written: {blocks} blocks"
        );
    }

    #[test]
    fn too_big_root_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = BuildOptions::new(Role::Agent, "/o");
        o.root_slot_size = MIB;
        let l = layout(&o, &hash()).unwrap();
        let small = dir.path().join("small");
        let big = dir.path().join("big");
        fs::write(&small, b"x").unwrap();
        fs::write(&big, vec![1u8; 2 * MIB as usize]).unwrap();
        let runner = crate::runner::RecordingRunner::new();
        let err = assemble(
            &dir.path().join("disk.raw"),
            &l,
            &DiskContent {
                esp: &small,
                root: &big,
                verity: &small,
            },
            &runner,
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::TooBig { .. }), "{err}");
        assert!(runner.recorded().is_empty());
    }
}
