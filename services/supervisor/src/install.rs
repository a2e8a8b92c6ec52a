//! Installing the node view under `/run/basalt`.
//!
//! Every file is first written in full to `/run/basalt/.staging` and then renamed into
//! place (a rename within one file system is atomic), so a component never reads a
//! half-written file; files of a previous install that the new view lacks are removed
//! afterwards (the list of installed files is kept in `/run/basalt/.installed`). The
//! whole tree is not swapped with one rename because `/run/basalt/etc/upper` and
//! `/run/basalt/etc/work` belong to the image's `/etc` overlay (basalt-nodeimg); they are
//! never touched. Components start only after the install finished.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, SupervisorError};

/// One file to install: path relative to the node root, mode, content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

const STAGING: &str = ".staging";
const INSTALLED: &str = ".installed";
/// Folders under the node root the installer never writes or removes.
pub const RESERVED: [&str; 2] = ["etc/upper", "etc/work"];

fn checked(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.starts_with('.')
        && !RESERVED
            .iter()
            .any(|r| path == *r || path.starts_with(&format!("{r}/")));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(SupervisorError::Io {
            path: p.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a safe path for the node root",
            ),
        })
    }
}

/// Installs `files` under `root` (see the module docs). Returns the number of files.
pub fn install(root: &Path, files: &[NodeFile]) -> Result<usize> {
    let staging = root.join(STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(SupervisorError::io(&staging))?;
    }
    let mut rels = Vec::with_capacity(files.len());
    for f in files {
        let rel = checked(&f.path)?;
        let p = staging.join(&rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(SupervisorError::io(parent))?;
        }
        std::fs::write(&p, &f.data).map_err(SupervisorError::io(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))
            .map_err(SupervisorError::io(&p))?;
        rels.push(rel);
    }
    for rel in &rels {
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(SupervisorError::io(parent))?;
        }
        let src = staging.join(rel);
        std::fs::rename(&src, &dest).map_err(SupervisorError::io(&dest))?;
    }
    // remove what the previous install had and this one lacks
    let list = root.join(INSTALLED);
    let new: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
    if let Ok(old) = std::fs::read_to_string(&list) {
        for stale in old.lines().filter(|l| !new.contains(*l)) {
            if let Ok(rel) = checked(stale) {
                let p = root.join(rel);
                match std::fs::remove_file(&p) {
                    Ok(()) => {
                        tracing::info!(file = %p.display(), "removed a file the new bundle lacks")
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(SupervisorError::io(p)(e)),
                }
            }
        }
    }
    let tmp = root.join(".installed.tmp");
    let text: String = new.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(&tmp, text).map_err(SupervisorError::io(&tmp))?;
    std::fs::rename(&tmp, &list).map_err(SupervisorError::io(&list))?;
    std::fs::remove_dir_all(&staging).map_err(SupervisorError::io(&staging))?;
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, data: &str) -> NodeFile {
        NodeFile {
            path: path.into(),
            mode: 0o644,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reinstall_replaces_and_prunes_but_never_touches_the_overlay() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc/upper")).unwrap();
        std::fs::write(root.join("etc/upper/x"), "overlay").unwrap();
        install(root, &[f("etc/a", "1"), f("etc/tls/b", "2")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/tls/b")).unwrap(),
            "2"
        );
        install(root, &[f("etc/a", "3")]).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/a")).unwrap(), "3");
        assert!(!root.join("etc/tls/b").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/upper/x")).unwrap(),
            "overlay"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(".installed")).unwrap(),
            "etc/a\n"
        );
    }

    #[test]
    fn unsafe_or_reserved_paths_are_refused_before_anything_is_written() {
        let d = tempfile::tempdir().unwrap();
        for bad in [
            "../x",
            "/etc/passwd",
            "etc/upper/x",
            "etc/work",
            ".installed",
            "",
        ] {
            let e = install(d.path(), &[f("etc/ok", "1"), f(bad, "x")]).unwrap_err();
            assert!(e.to_string().contains("not a safe path"), "{bad}: {e}");
            assert!(!d.path().join("etc/ok").exists(), "{bad}: partial install");
        }
    }
}
