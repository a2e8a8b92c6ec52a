//! `manifest.toml`: what was built from what, with the sha256 and size of every artifact.
//! Signing is left to the caller (the cluster key lives in basalt-genconf): sign
//! [`crate::Artifacts::manifest_bytes`] and hand the signature to
//! [`crate::Artifacts::write_signature`].

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ImageError, Result};
use crate::rootimg::sha256_file;

pub const MANIFEST_FILE: &str = "manifest.toml";
pub const SIGNATURE_FILE: &str = "manifest.toml.sig";
pub const SCHEMA: u32 = 1;
/// Size and mtime of every artifact when the manifest was written: a cheap "unchanged since"
/// check, so reusing a multi-GiB `disk.raw` does not mean hashing it again.
pub const STAMP_FILE: &str = ".stamp";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub role: String,
    pub suite: String,
    pub kernel_version: String,
    pub root_fs: String,
    pub root_hash: String,
    pub cmdline: String,
    pub source_date_epoch: u64,
    /// Cache key of the base rootfs.
    pub base_key: String,
    /// sha256 over every input of the build (base key, options, extra files' content).
    pub inputs_digest: String,
    #[serde(rename = "artifact")]
    pub artifacts: Vec<ArtifactEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    pub name: String,
    /// Relative to the manifest's directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl ArtifactEntry {
    /// Measures `dir/rel`.
    pub fn measure(dir: &Path, name: &str, rel: &str) -> Result<ArtifactEntry> {
        let path = dir.join(rel);
        let size = fs::metadata(&path).map_err(ImageError::io(&path))?.len();
        Ok(ArtifactEntry {
            name: name.to_string(),
            path: rel.to_string(),
            size,
            sha256: sha256_file(&path)?,
        })
    }
}

impl Manifest {
    /// The exact bytes written to `manifest.toml` (artifacts sorted by name).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut m = self.clone();
        m.artifacts.sort_by(|a, b| a.name.cmp(&b.name));
        toml::to_string(&m)
            .map(String::into_bytes)
            .map_err(|e| ImageError::Parse {
                path: MANIFEST_FILE.into(),
                reason: e.to_string(),
            })
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let text = fs::read_to_string(path).map_err(ImageError::io(path))?;
        toml::from_str(&text).map_err(|e| ImageError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Whether every listed artifact in `dir` still has its recorded size and sha256.
    pub fn verify_files(&self, dir: &Path) -> bool {
        self.artifacts.iter().all(|a| {
            let path = dir.join(&a.path);
            fs::metadata(&path).map(|m| m.len()).ok() == Some(a.size)
                && sha256_file(&path).ok().as_deref() == Some(a.sha256.as_str())
        })
    }
}

fn file_stamp(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some(format!("{} {} {}", m.len(), m.mtime(), m.mtime_nsec()))
}

fn stamp_text(dir: &Path, m: &Manifest) -> Option<String> {
    let mut s = format!("{}\n", m.inputs_digest);
    let mut arts: Vec<&ArtifactEntry> = m.artifacts.iter().collect();
    arts.sort_by(|a, b| a.path.cmp(&b.path));
    for a in arts {
        s.push_str(&format!("{} {}\n", a.path, file_stamp(&dir.join(&a.path))?));
    }
    Some(s)
}

/// Records the artifacts' current size and mtime next to the manifest.
pub fn write_stamp(dir: &Path, m: &Manifest) -> Result<()> {
    let path = dir.join(STAMP_FILE);
    let text = stamp_text(dir, m).ok_or_else(|| ImageError::Parse {
        path: path.clone(),
        reason: "an artifact is missing".into(),
    })?;
    fs::write(&path, text).map_err(ImageError::io(&path))
}

/// Whether no artifact changed size or mtime since [`write_stamp`].
pub fn stamp_matches(dir: &Path, m: &Manifest) -> bool {
    match (fs::read_to_string(dir.join(STAMP_FILE)), stamp_text(dir, m)) {
        (Ok(old), Some(now)) => old == now,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Manifest {
        fs::write(dir.join("b"), b"bee").unwrap();
        fs::write(dir.join("a"), b"a").unwrap();
        Manifest {
            schema: SCHEMA,
            role: "agent".into(),
            suite: "bookworm".into(),
            kernel_version: "6.1".into(),
            root_fs: "erofs".into(),
            root_hash: "00".repeat(32),
            cmdline: "ro".into(),
            source_date_epoch: 1,
            base_key: "k".into(),
            inputs_digest: "d".into(),
            artifacts: vec![
                ArtifactEntry::measure(dir, "b", "b").unwrap(),
                ArtifactEntry::measure(dir, "a", "a").unwrap(),
            ],
        }
    }

    #[test]
    fn round_trip_sorted_and_measured() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample(dir.path());
        let bytes = m.to_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.find("name = \"a\"").unwrap() < text.find("name = \"b\"").unwrap());
        assert!(text.contains(
            "sha256 = \"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb\""
        ));
        fs::write(dir.path().join(MANIFEST_FILE), &bytes).unwrap();
        let back = Manifest::read(&dir.path().join(MANIFEST_FILE)).unwrap();
        assert_eq!(back.to_bytes().unwrap(), bytes);
        assert!(back.verify_files(dir.path()));
        write_stamp(dir.path(), &back).unwrap();
        assert!(stamp_matches(dir.path(), &back));
        fs::write(dir.path().join("b"), b"bexx").unwrap();
        assert!(
            !back.verify_files(dir.path()),
            "changed content must not verify"
        );
        assert!(
            !stamp_matches(dir.path(), &back),
            "changed size must not match"
        );
    }
}
