//! The read-only root image and its dm-verity hash tree.
//!
//! Reproducibility: every timestamp in the image is `source_date_epoch`, the file system
//! UUID is derived from the role and epoch, the verity salt is the sha256 of the image and
//! the verity UUID is derived from the salt. So the same tree gives the same image, the same
//! hash tree and the same root hash.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{ImageError, Result};
use crate::options::RootFsKind;
use crate::runner::{Cmd, CommandRunner, p};

/// Data and hash block size of the verity device.
pub const VERITY_BLOCK: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootImage {
    pub kind: RootFsKind,
    pub image: PathBuf,
    pub verity: PathBuf,
    /// Hex sha256 root hash of the verity tree (goes on the kernel command line).
    pub root_hash: String,
    pub salt: String,
}

/// A UUID string made from the first 16 bytes of `sha256(parts…)`, RFC 4122 v4/variant
/// bits set so every tool accepts it.
pub fn derived_uuid(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
        h.update([0]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` of 16 bytes, in order.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The file system creation command for `tree` → `out`.
pub fn mkfs_cmd(kind: RootFsKind, tree: &Path, out: &Path, epoch: u64, fs_uuid: &str) -> Cmd {
    match kind {
        RootFsKind::Erofs => Cmd::new("mkfs.erofs")
            .arg("-zlz4hc")
            .arg("-C65536")
            .arg(format!("-T{epoch}"))
            .arg(format!("-U{fs_uuid}"))
            .arg("--quiet")
            .arg(p(out))
            .arg(p(tree)),
        RootFsKind::Squashfs => Cmd::new("mksquashfs")
            .arg(p(tree))
            .arg(p(out))
            .args(["-noappend", "-quiet", "-no-progress", "-comp", "zstd"])
            .args(["-Xcompression-level", "15", "-b", "1M"])
            .arg("-mkfs-time")
            .arg(epoch.to_string())
            .arg("-all-time")
            .arg(epoch.to_string()),
    }
    // Both tools read SOURCE_DATE_EPOCH too, with other semantics: erofs-utils 1.5 then keeps
    // per-file mtimes (ignoring -T) and mksquashfs refuses -all-time. The flags say it all.
    .env_remove("SOURCE_DATE_EPOCH")
}

/// `veritysetup format` with fixed block sizes, hash, salt and UUID.
pub fn verity_format_cmd(
    image: &Path,
    hash: &Path,
    salt: &str,
    uuid: &str,
    root_hash_file: &Path,
) -> Cmd {
    Cmd::new("veritysetup")
        .arg("format")
        .arg(format!("--data-block-size={VERITY_BLOCK}"))
        .arg(format!("--hash-block-size={VERITY_BLOCK}"))
        .arg("--hash=sha256")
        .arg(format!("--salt={salt}"))
        .arg(format!("--uuid={uuid}"))
        .arg(format!("--root-hash-file={}", root_hash_file.display()))
        .arg(p(image))
        .arg(p(hash))
}

/// Builds `<out_dir>/root.<fstype>` and `<out_dir>/root.verity` from `tree`.
pub fn make_root_image(
    tree: &Path,
    out_dir: &Path,
    kind: RootFsKind,
    epoch: u64,
    fs_uuid_seed: &str,
    runner: &dyn CommandRunner,
) -> Result<RootImage> {
    fs::create_dir_all(out_dir).map_err(ImageError::io(out_dir))?;
    let image = out_dir.join(format!("root.{}", kind.fstype()));
    let verity = out_dir.join("root.verity");
    let roothash_file = out_dir.join(".roothash");
    for f in [&image, &verity, &roothash_file] {
        if f.exists() {
            fs::remove_file(f).map_err(ImageError::io(f))?;
        }
    }
    let fs_uuid = derived_uuid(&[
        b"basalt-rootfs",
        fs_uuid_seed.as_bytes(),
        &epoch.to_le_bytes(),
    ]);
    runner.run(&mkfs_cmd(kind, tree, &image, epoch, &fs_uuid))?;
    pad_to_block(&image)?;
    let salt = sha256_file(&image)?;
    let verity_uuid = derived_uuid(&[b"basalt-verity", salt.as_bytes()]);
    runner.run(&verity_format_cmd(
        &image,
        &verity,
        &salt,
        &verity_uuid,
        &roothash_file,
    ))?;
    let root_hash = fs::read_to_string(&roothash_file)
        .map_err(ImageError::io(&roothash_file))?
        .trim()
        .to_string();
    let _ = fs::remove_file(&roothash_file);
    if root_hash.len() != 64 || !root_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageError::Parse {
            path: roothash_file,
            reason: format!("not a sha256 root hash: {root_hash:?}"),
        });
    }
    Ok(RootImage {
        kind,
        image,
        verity,
        root_hash,
        salt,
    })
}

/// Pads `path` with zeros to a multiple of [`VERITY_BLOCK`] (dm-verity works in blocks).
pub fn pad_to_block(path: &Path) -> Result<u64> {
    let len = fs::metadata(path).map_err(ImageError::io(path))?.len();
    let padded = len.div_ceil(VERITY_BLOCK) * VERITY_BLOCK;
    if padded != len {
        let f = File::options()
            .write(true)
            .open(path)
            .map_err(ImageError::io(path))?;
        f.set_len(padded).map_err(ImageError::io(path))?;
    }
    Ok(padded)
}

/// Hex sha256 of a file's content.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(ImageError::io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(ImageError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::RecordingRunner;

    #[test]
    fn uuid_shape_and_determinism() {
        let a = derived_uuid(&[b"x", b"y"]);
        assert_eq!(a, derived_uuid(&[b"x", b"y"]));
        assert_ne!(a, derived_uuid(&[b"xy"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn erofs_and_verity_command_lines() {
        let c = mkfs_cmd(
            RootFsKind::Erofs,
            Path::new("/t"),
            Path::new("/o/root.erofs"),
            1700000000,
            "u",
        );
        let a = c.arg_strings();
        assert_eq!(c.program, "mkfs.erofs");
        assert!(a.contains(&"-T1700000000".to_string()));
        assert!(a.contains(&"-Uu".to_string()));
        assert_eq!(a[a.len() - 2..], ["/o/root.erofs", "/t"]);
        let s = mkfs_cmd(
            RootFsKind::Squashfs,
            Path::new("/t"),
            Path::new("/o/r"),
            5,
            "u",
        );
        let a = s.arg_strings();
        assert!(a.windows(2).any(|w| w == ["-all-time", "5"]));
        assert!(a.windows(2).any(|w| w == ["-mkfs-time", "5"]));
        assert_eq!(s.env_remove, ["SOURCE_DATE_EPOCH"]);
        assert_eq!(c.env_remove, ["SOURCE_DATE_EPOCH"]);

        let v = verity_format_cmd(
            Path::new("/o/root.erofs"),
            Path::new("/o/root.verity"),
            "ab",
            "u",
            Path::new("/o/.rh"),
        );
        let a = v.arg_strings();
        assert_eq!(a[0], "format");
        assert!(a.contains(&"--salt=ab".to_string()));
        assert!(a.contains(&"--uuid=u".to_string()));
        assert!(a.contains(&"--root-hash-file=/o/.rh".to_string()));
    }

    #[test]
    fn make_root_image_runs_mkfs_then_verity_with_content_salt() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_path_buf();
        let runner = RecordingRunner::with_effect(|cmd| {
            let a = cmd.arg_strings();
            match cmd.program.as_str() {
                "mkfs.erofs" => std::fs::write(&a[a.len() - 2], vec![7u8; 5000]).unwrap(),
                "veritysetup" => {
                    let f = a
                        .iter()
                        .find_map(|s| s.strip_prefix("--root-hash-file="))
                        .unwrap();
                    std::fs::write(f, format!("{}\n", "ab".repeat(32))).unwrap();
                }
                _ => {}
            }
            Ok(Vec::new())
        });
        let r = make_root_image(
            Path::new("/tree"),
            &out,
            RootFsKind::Erofs,
            1,
            "agent",
            &runner,
        )
        .unwrap();
        assert_eq!(r.root_hash, "ab".repeat(32));
        // padded to a whole block before hashing
        assert_eq!(std::fs::metadata(&r.image).unwrap().len(), 8192);
        let mut padded = vec![7u8; 5000];
        padded.resize(8192, 0);
        assert_eq!(r.salt, hex::encode(Sha256::digest(&padded)));
        let cmds = runner.recorded();
        assert_eq!(cmds.len(), 2);
        assert!(
            cmds[1]
                .arg_strings()
                .contains(&format!("--salt={}", r.salt))
        );
    }

    #[test]
    fn garbage_root_hash_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let runner = RecordingRunner::with_effect(|cmd| {
            let a = cmd.arg_strings();
            if cmd.program == "mkfs.erofs" {
                std::fs::write(&a[a.len() - 2], b"x").unwrap();
            } else {
                let f = a
                    .iter()
                    .find_map(|s| s.strip_prefix("--root-hash-file="))
                    .unwrap();
                std::fs::write(f, "nope").unwrap();
            }
            Ok(Vec::new())
        });
        let err = make_root_image(
            Path::new("/t"),
            dir.path(),
            RootFsKind::Erofs,
            1,
            "a",
            &runner,
        )
        .unwrap_err();
        assert!(err.to_string().contains("root hash"), "{err}");
    }
}
