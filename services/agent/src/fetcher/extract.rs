//! Unpacking fetched archives into the sandbox: `.tar`, `.tar.gz`/`.tgz` (tar crate,
//! flate2) and `.zip` (zip crate). Entries that would land outside the sandbox (`..`,
//! absolute paths) are refused.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::FetchError;

/// An archive the fetcher extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `.tar`
    Tar,
    /// `.tar.gz`, `.tgz`
    TarGz,
    /// `.zip`
    Zip,
}

/// The archive kind of a file, by its name (Mesos decides by extension too).
pub fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(ArchiveKind::TarGz)
    } else if name.ends_with(".tar") {
        Some(ArchiveKind::Tar)
    } else if name.ends_with(".zip") {
        Some(ArchiveKind::Zip)
    } else {
        None
    }
}

/// Extracts `archive` into `dir`; returns the top-level paths it created (for chown).
pub(super) fn extract(
    uri: &str,
    kind: ArchiveKind,
    archive: &Path,
    dir: &Path,
) -> Result<Vec<PathBuf>, FetchError> {
    let fail = |reason: String| FetchError::Extract {
        uri: uri.to_owned(),
        path: archive.to_path_buf(),
        reason,
    };
    let file = File::open(archive).map_err(|e| fail(e.to_string()))?;
    let mut tops = std::collections::BTreeSet::new();
    match kind {
        ArchiveKind::Tar => {
            unpack_tar(tar::Archive::new(BufReader::new(file)), dir, &mut tops).map_err(fail)?
        }
        ArchiveKind::TarGz => unpack_tar(
            tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file))),
            dir,
            &mut tops,
        )
        .map_err(fail)?,
        ArchiveKind::Zip => {
            let mut z =
                zip::ZipArchive::new(BufReader::new(file)).map_err(|e| fail(e.to_string()))?;
            for i in 0..z.len() {
                let entry = z.by_index_raw(i).map_err(|e| fail(e.to_string()))?;
                let Some(name) = entry.enclosed_name() else {
                    return Err(fail(format!(
                        "entry '{}' would land outside the sandbox",
                        String::from_utf8_lossy(entry.name_raw())
                    )));
                };
                if let Some(first) = name.components().next() {
                    tops.insert(dir.join(first));
                }
            }
            z.extract(dir).map_err(|e| fail(e.to_string()))?;
        }
    }
    Ok(tops.into_iter().collect())
}

fn unpack_tar<R: std::io::Read>(
    mut a: tar::Archive<R>,
    dir: &Path,
    tops: &mut std::collections::BTreeSet<PathBuf>,
) -> Result<(), String> {
    a.set_preserve_permissions(true);
    a.set_overwrite(true);
    for entry in a.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "entry '{}' would land outside the sandbox",
                path.display()
            ));
        }
        if let Some(first) = path
            .components()
            .find(|c| matches!(c, std::path::Component::Normal(_)))
        {
            tops.insert(dir.join(first));
        }
        entry
            .unpack_in(dir)
            .map_err(|e| format!("entry '{}': {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name() {
        assert_eq!(archive_kind(Path::new("a.tar")), Some(ArchiveKind::Tar));
        assert_eq!(archive_kind(Path::new("a.TGZ")), Some(ArchiveKind::TarGz));
        assert_eq!(
            archive_kind(Path::new("x/a.tar.gz")),
            Some(ArchiveKind::TarGz)
        );
        assert_eq!(archive_kind(Path::new("a.zip")), Some(ArchiveKind::Zip));
        assert_eq!(archive_kind(Path::new("a.gz")), None);
        assert_eq!(archive_kind(Path::new("a.txt")), None);
    }

    #[test]
    fn tar_with_parent_dir_entry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("evil.tar");
        // Hand-made header: the tar crate's builder refuses '..' itself.
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../evil.t");
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        let mut data = header.as_bytes().to_vec();
        data.extend_from_slice(b"x");
        data.resize(512 * 4, 0);
        std::fs::write(&archive, data).unwrap();
        let sandbox = dir.path().join("sb");
        std::fs::create_dir(&sandbox).unwrap();
        let e = extract("u", ArchiveKind::Tar, &archive, &sandbox)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the sandbox"), "{e}");
        assert!(!dir.path().join("evil.t").exists());
    }
}
