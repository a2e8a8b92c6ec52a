//! Disk helpers: copy-on-write overlays (a VM never writes the built image), sparse copies
//! and byte flips for tamper tests.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use nix::unistd::{Whence, lseek};

use crate::error::{QemuError, Result};

/// Image formats QEMU is told about explicitly (never probed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }

    /// From the file name: `.qcow2` is qcow2, anything else raw.
    pub fn from_path(path: &Path) -> DiskFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("qcow2") => DiskFormat::Qcow2,
            _ => DiskFormat::Raw,
        }
    }
}

/// `qemu-img create` arguments for a qcow2 overlay on `backing`, `size` bytes (None: the
/// backing file's size).
pub fn overlay_args(
    backing: &Path,
    fmt: DiskFormat,
    overlay: &Path,
    size: Option<u64>,
) -> Vec<String> {
    let mut v = vec![
        "create".to_string(),
        "-q".to_string(),
        "-f".to_string(),
        "qcow2".to_string(),
        "-F".to_string(),
        fmt.as_str().to_string(),
        "-b".to_string(),
        backing.display().to_string(),
        overlay.display().to_string(),
    ];
    if let Some(s) = size {
        v.push(s.to_string());
    }
    v
}

/// Creates a qcow2 overlay on `backing` (which must be an absolute path).
pub fn create_overlay(backing: &Path, overlay: &Path, size: Option<u64>) -> Result<()> {
    if !backing.is_absolute() {
        return Err(QemuError::Config(format!(
            "backing file {} must be absolute",
            backing.display()
        )));
    }
    let args = overlay_args(backing, DiskFormat::from_path(backing), overlay, size);
    let out = Command::new("qemu-img")
        .args(&args)
        .output()
        .map_err(|source| QemuError::Spawn {
            program: "qemu-img".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(QemuError::Command {
            command: format!("qemu-img {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Copies `src` to `dst` keeping holes (SEEK_DATA/SEEK_HOLE), so a sparse multi-GiB
/// `disk.raw` costs only its data.
pub fn sparse_copy(src: &Path, dst: &Path) -> Result<u64> {
    let mut from = File::open(src).map_err(QemuError::io(src))?;
    let len = from.metadata().map_err(QemuError::io(src))?.len();
    let mut to = File::create(dst).map_err(QemuError::io(dst))?;
    to.set_len(len).map_err(QemuError::io(dst))?;
    let mut copied = 0u64;
    let mut pos: i64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    while (pos as u64) < len {
        let data = match lseek(&from, pos, Whence::SeekData) {
            Ok(d) => d,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole is left
            Err(e) => {
                return Err(QemuError::Io {
                    path: src.to_path_buf(),
                    source: e.into(),
                });
            }
        };
        let hole = lseek(&from, data, Whence::SeekHole).map_err(|e| QemuError::Io {
            path: src.to_path_buf(),
            source: e.into(),
        })?;
        from.seek(SeekFrom::Start(data as u64))
            .map_err(QemuError::io(src))?;
        to.seek(SeekFrom::Start(data as u64))
            .map_err(QemuError::io(dst))?;
        let mut left = (hole - data) as u64;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            from.read_exact(&mut buf[..n]).map_err(QemuError::io(src))?;
            to.write_all(&buf[..n]).map_err(QemuError::io(dst))?;
            left -= n as u64;
            copied += n as u64;
        }
        pos = hole;
    }
    to.sync_all().map_err(QemuError::io(dst))?;
    Ok(copied)
}

/// Inverts every bit of the byte at `offset`; returns (old, new).
pub fn flip_byte(path: &Path, offset: u64) -> Result<(u8, u8)> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(QemuError::io(path))?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset))
        .map_err(QemuError::io(path))?;
    f.read_exact(&mut b).map_err(QemuError::io(path))?;
    let new = !b[0];
    f.seek(SeekFrom::Start(offset))
        .map_err(QemuError::io(path))?;
    f.write_all(&[new]).map_err(QemuError::io(path))?;
    f.sync_all().map_err(QemuError::io(path))?;
    Ok((b[0], new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.raw");
        {
            let mut f = File::create(&src).unwrap();
            f.set_len(64 << 20).unwrap();
            f.seek(SeekFrom::Start(1 << 20)).unwrap();
            f.write_all(b"first").unwrap();
            f.seek(SeekFrom::Start(40 << 20)).unwrap();
            f.write_all(b"second").unwrap();
        }
        let dst = dir.path().join("dst.raw");
        sparse_copy(&src, &dst).unwrap();
        let a = fs::read(&src).unwrap();
        let b = fs::read(&dst).unwrap();
        assert_eq!(a, b);
        let allocated = fs::metadata(&dst).unwrap().blocks() * 512;
        assert!(
            allocated < 8 << 20,
            "copy is sparse: {allocated} bytes allocated"
        );
    }

    #[test]
    fn flip_byte_inverts() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("img");
        fs::write(&f, [0x00, 0x0f, 0xff]).unwrap();
        assert_eq!(flip_byte(&f, 1).unwrap(), (0x0f, 0xf0));
        assert_eq!(fs::read(&f).unwrap(), [0x00, 0xf0, 0xff]);
    }

    #[test]
    fn overlay_arguments() {
        let a = overlay_args(
            Path::new("/img/disk.raw"),
            DiskFormat::Raw,
            Path::new("/w/o.qcow2"),
            Some(4096),
        );
        assert_eq!(
            a,
            [
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                "/img/disk.raw",
                "/w/o.qcow2",
                "4096"
            ]
        );
        assert_eq!(
            DiskFormat::from_path(Path::new("a.qcow2")),
            DiskFormat::Qcow2
        );
        assert_eq!(DiskFormat::from_path(Path::new("a.raw")), DiskFormat::Raw);
        assert!(create_overlay(Path::new("rel.raw"), Path::new("/w/o"), None).is_err());
    }
}
