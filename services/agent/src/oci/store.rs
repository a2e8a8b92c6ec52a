//! The content-addressed image store under `<work_dir>/images/`:
//!
//! ```text
//! blobs/sha256/<hex>    verified blobs (configs, compressed layers)
//! layers/<hex>/         unpacked layers, shared by every container using them,
//!                       whiteouts in overlayfs form (see below)
//! tmp/                  downloads and unpacks in progress (renamed into place)
//! bundles/<container>/  one OCI runtime bundle per running container
//! ```
//!
//! A layer's `.wh.<name>` becomes a character device 0/0 named `<name>` and
//! `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory: overlayfs
//! reads them as they are, and the copy backend applies them while copying.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::error::OciError;
use super::reference::{ImageReference, validate_digest};
use super::registry::RegistryClient;

/// The `config` part of an image configuration blob (Docker/OCI field names).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `KEY=value` entries.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The default command (arguments of the entrypoint).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// The working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// The image's user.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<ImageConfig>,
    #[serde(default)]
    os: Option<String>,
}

/// An image ready to be assembled: its unpacked layers (bottom first) and
/// configuration.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference as the task gave it.
    pub name: String,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// The image configuration.
    pub config: ImageConfig,
}

/// Pulls images into the store.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    client: RegistryClient,
    default_registry: String,
}

fn mkdirs(p: &Path) -> Result<(), OciError> {
    std::fs::create_dir_all(p).map_err(OciError::io(p))
}

impl ImageStore {
    /// A store at `root` (created on first pull).
    pub fn new(root: PathBuf, client: RegistryClient, default_registry: String) -> Self {
        Self {
            root,
            client,
            default_registry,
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of blob `digest` (which must be valid).
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs").join("sha256").join(hex)
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{what}.{}", uuid::Uuid::new_v4()))
    }

    async fn ensure_blob(
        &self,
        image: &str,
        r: &ImageReference,
        digest: &str,
    ) -> Result<PathBuf, OciError> {
        let hex = validate_digest(digest).map_err(|reason| OciError::Manifest {
            image: image.to_owned(),
            reason,
        })?;
        let dest = self.blob_path(hex);
        if tokio::fs::metadata(&dest).await.is_ok() {
            return Ok(dest);
        }
        let tmp = self.tmp_path(hex);
        tracing::info!(image, digest, "pulling blob");
        self.client
            .fetch_blob(image, r, digest, &tmp, &dest)
            .await?;
        Ok(dest)
    }

    /// Pulls `image` (manifest, config, layers; blobs already in the store are not
    /// fetched again) and unpacks its layers.
    pub async fn pull(&self, image: &str) -> Result<PulledImage, OciError> {
        let r = ImageReference::parse(image, &self.default_registry)?;
        for d in ["blobs/sha256", "layers", "tmp"] {
            mkdirs(&self.root.join(d))?;
        }
        tracing::info!(image, reference = %r, "pulling image");
        let manifest = self.client.manifest(image, &r).await?;
        let config_path = self.ensure_blob(image, &r, &manifest.config.digest).await?;
        let raw = tokio::fs::read(&config_path)
            .await
            .map_err(OciError::io(&config_path))?;
        let blob: ConfigBlob = serde_json::from_slice(&raw).map_err(|e| OciError::Manifest {
            image: image.to_owned(),
            reason: format!(
                "the image configuration {} is invalid: {e}",
                manifest.config.digest
            ),
        })?;
        if let Some(os) = blob.os.as_deref().filter(|o| *o != "linux") {
            return Err(OciError::Manifest {
                image: image.to_owned(),
                reason: format!("the image is for os '{os}', not linux"),
            });
        }
        let mut layers = Vec::new();
        for l in &manifest.layers {
            let blob = self.ensure_blob(image, &r, &l.digest).await?;
            let hex = validate_digest(&l.digest)
                .map_err(|reason| OciError::Manifest {
                    image: image.to_owned(),
                    reason,
                })?
                .to_owned();
            let dir = self.root.join("layers").join(&hex);
            if tokio::fs::metadata(&dir).await.is_err() {
                let tmp = self.tmp_path(&format!("layer-{hex}"));
                let (img, dg, d2) = (image.to_owned(), l.digest.clone(), dir.clone());
                tokio::task::spawn_blocking(move || unpack_layer_into(&img, &dg, &blob, &tmp, &d2))
                    .await
                    .map_err(|e| OciError::Layer {
                        image: image.to_owned(),
                        digest: l.digest.clone(),
                        reason: e.to_string(),
                    })??;
            }
            layers.push(dir);
        }
        Ok(PulledImage {
            name: image.to_owned(),
            layers,
            config: blob.config.unwrap_or_default(),
        })
    }
}

/// Unpacks `blob` into `tmp`, then renames it to `dest` (a concurrent unpack of the
/// same layer that won the race is kept).
fn unpack_layer_into(
    image: &str,
    digest: &str,
    blob: &Path,
    tmp: &Path,
    dest: &Path,
) -> Result<(), OciError> {
    let fail = |reason: String| OciError::Layer {
        image: image.to_owned(),
        digest: digest.to_owned(),
        reason,
    };
    // The blob was verified when it was stored; check again in case the file changed
    // (streamed: layers can be large).
    let actual = file_digest(blob).map_err(OciError::io(blob))?;
    if actual != digest {
        let _ = std::fs::remove_file(blob);
        return Err(OciError::DigestMismatch {
            image: image.to_owned(),
            what: "blob",
            expected: digest.to_owned(),
            actual,
        });
    }
    mkdirs(tmp)?;
    let open = || {
        std::fs::File::open(blob)
            .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(OciError::io(blob))
    };
    let mut magic = [0u8; 4];
    let n = open()?.read(&mut magic).map_err(OciError::io(blob))?;
    let result = if magic[..n].starts_with(&[0x1f, 0x8b]) {
        unpack_tar(flate2::read::GzDecoder::new(open()?), tmp)
    } else if magic[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
        Err("zstd-compressed layers are not supported".to_owned())
    } else {
        unpack_tar(open()?, tmp)
    };
    if let Err(reason) = result {
        let _ = std::fs::remove_dir_all(tmp);
        return Err(fail(reason));
    }
    if let Err(e) = std::fs::rename(tmp, dest) {
        let _ = std::fs::remove_dir_all(tmp);
        if !dest.is_dir() {
            return Err(OciError::Io {
                path: dest.to_path_buf(),
                source: e,
            });
        }
    }
    Ok(())
}

/// `sha256:<hex>` of a file, read in chunks.
fn file_digest(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Sets `trusted.overlay.opaque=y` on `dir`.
fn set_opaque(dir: &Path) -> std::io::Result<()> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both strings are NUL-terminated and outlive the call; the value is a
    // one-byte buffer whose length is passed.
    let rc =
        unsafe { nix::libc::lsetxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `dir` carries `trusted.overlay.opaque=y`.
fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let name = c"trusted.overlay.opaque";
    let mut buf = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and outlive the call; `buf` is writable
    // for the length passed.
    let n = unsafe {
        nix::libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// A relative path inside the layer, or why not.
fn safe_relative(p: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(format!("entry '{}' leaves the layer", p.display())),
        }
    }
    Ok(out)
}

fn whiteout(dst: &Path, rel: &Path) -> Result<(), String> {
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rel_parent = rel.parent().unwrap_or(Path::new(""));
    // Never through a symlink an earlier entry made (it could point out of the layer).
    let mut walk = dst.to_path_buf();
    for c in rel_parent.components() {
        walk.push(c);
        if std::fs::symlink_metadata(&walk).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!(
                "whiteout '{}' lies under the symlink '{}'",
                rel.display(),
                walk.display()
            ));
        }
    }
    let parent = dst.join(rel_parent);
    std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    if name == ".wh..wh..opq" {
        return set_opaque(&parent).map_err(|e| format!("opaque {}: {e}", parent.display()));
    }
    let Some(target) = name.strip_prefix(".wh.") else {
        return Ok(());
    };
    let target = parent.join(target);
    if let Ok(m) = std::fs::symlink_metadata(&target) {
        if m.is_dir() {
            let _ = std::fs::remove_dir_all(&target);
        } else {
            let _ = std::fs::remove_file(&target);
        }
    }
    nix::sys::stat::mknod(
        &target,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .map_err(|e| format!("whiteout {}: {e}", target.display()))
}

fn unpack_tar(reader: impl Read, dst: &Path) -> Result<(), String> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading the tar: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("entry path: {e}"))?
            .into_owned();
        let rel = safe_relative(&path)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let is_wh = rel
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".wh."));
        if is_wh {
            whiteout(dst, &rel)?;
            continue;
        }
        entry
            .unpack_in(dst)
            .map_err(|e| format!("{}: {}", rel.display(), error_chain(&e)))?;
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Applies the layers (bottom first) onto `rootfs` by copying: the backend when
/// overlayfs cannot be used.
pub fn copy_layers(layers: &[PathBuf], rootfs: &Path) -> Result<(), String> {
    mkdirs(rootfs).map_err(|e| e.to_string())?;
    for layer in layers {
        copy_tree(layer, rootfs)?;
    }
    Ok(())
}

fn remove_any(p: &Path) {
    if let Ok(m) = std::fs::symlink_metadata(p) {
        let _ = if m.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
    }
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), String> {
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let rd = std::fs::read_dir(src).map_err(|e| err(src, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| err(src, e))?;
        let from = ent.path();
        let to = dst.join(ent.file_name());
        let m = std::fs::symlink_metadata(&from).map_err(|e| err(&from, e))?;
        let ft = m.file_type();
        if is_whiteout(&m) {
            remove_any(&to);
            continue;
        }
        if ft.is_dir() {
            match std::fs::symlink_metadata(&to) {
                Ok(t) if t.is_dir() => {
                    if is_opaque(&from) {
                        std::fs::remove_dir_all(&to).map_err(|e| err(&to, e))?;
                        std::fs::create_dir(&to).map_err(|e| err(&to, e))?;
                    }
                }
                Ok(_) => {
                    remove_any(&to);
                    std::fs::create_dir(&to).map_err(|e| err(&to, e))?;
                }
                Err(_) => std::fs::create_dir(&to).map_err(|e| err(&to, e))?,
            }
            copy_tree(&from, &to)?;
        } else {
            remove_any(&to);
            if ft.is_symlink() {
                let target = std::fs::read_link(&from).map_err(|e| err(&from, e))?;
                std::os::unix::fs::symlink(&target, &to).map_err(|e| err(&to, e))?;
            } else if ft.is_file() {
                std::fs::copy(&from, &to).map_err(|e| err(&to, e))?;
            } else {
                let kind = if ft.is_char_device() {
                    nix::sys::stat::SFlag::S_IFCHR
                } else if ft.is_block_device() {
                    nix::sys::stat::SFlag::S_IFBLK
                } else if ft.is_fifo() {
                    nix::sys::stat::SFlag::S_IFIFO
                } else {
                    continue;
                };
                nix::sys::stat::mknod(
                    &to,
                    kind,
                    nix::sys::stat::Mode::from_bits_truncate(m.mode() & 0o7777),
                    m.rdev(),
                )
                .map_err(|e| format!("{}: {e}", to.display()))?;
            }
        }
        std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid())).map_err(|e| err(&to, e))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(|e| err(&to, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr() -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = hdr();
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_are_applied_by_the_copy_backend() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "SKIPPED whiteouts_are_applied_by_the_copy_backend: needs root (mknod, trusted xattrs)"
            );
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let l1 = t.path().join("l1");
        let l2 = t.path().join("l2");
        std::fs::create_dir_all(&l1).unwrap();
        std::fs::create_dir_all(&l2).unwrap();
        unpack_tar(
            &layer(&[
                ("etc", None),
                ("etc/a", Some(b"1")),
                ("etc/b", Some(b"2")),
                ("opt", None),
                ("opt/x", Some(b"x")),
            ])[..],
            &l1,
        )
        .unwrap();
        unpack_tar(
            &layer(&[
                ("etc/.wh.a", Some(b"")),
                ("opt/.wh..wh..opq", Some(b"")),
                ("opt/y", Some(b"y")),
            ])[..],
            &l2,
        )
        .unwrap();
        assert!(is_whiteout(
            &std::fs::symlink_metadata(l2.join("etc/a")).unwrap()
        ));
        assert!(is_opaque(&l2.join("opt")));
        let root = t.path().join("rootfs");
        copy_layers(&[l1, l2], &root).unwrap();
        assert!(!root.join("etc/a").exists());
        assert_eq!(std::fs::read(root.join("etc/b")).unwrap(), b"2");
        assert!(!root.join("opt/x").exists());
        assert_eq!(std::fs::read(root.join("opt/y")).unwrap(), b"y");
    }

    #[test]
    fn whiteouts_do_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"keep").unwrap();
        let l = t.path().join("l");
        std::fs::create_dir_all(&l).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "esc", &outside).unwrap();
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        b.append_data(&mut h, "esc/.wh.victim", &[][..]).unwrap();
        let data = b.into_inner().unwrap();
        let e = unpack_tar(&data[..], &l).unwrap_err();
        assert!(e.contains("under the symlink"), "{e}");
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep");
    }

    #[test]
    fn entries_leaving_the_layer_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        // `append_data` refuses `..`; write the name into the header directly.
        h.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let e = unpack_tar(&data[..], t.path()).unwrap_err();
        assert!(e.contains("../evil"), "{e}");
        assert!(!t.path().parent().unwrap().join("evil").exists());
    }
}
