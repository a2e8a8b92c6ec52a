//! The seam under the cgroup code: every directory made or removed and every control
//! file read or written goes through a [`CgroupFs`]. [`HostCgroupFs`] is the real file
//! system; [`FakeCgroupFs`] is an in-memory tree that records each operation, so the
//! v1 and v2 logic is unit-tested without root or a cgroup mount.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// File operations on a cgroup file system.
pub trait CgroupFs: Send + Sync + fmt::Debug {
    /// `mkdir -p`.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// `rmdir` (fails with `EBUSY` while the cgroup still has processes or children).
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Writes `value` to an existing control file in one `write(2)`.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Reads a control file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Whether the path exists.
    fn exists(&self, path: &Path) -> bool;
}

/// The real cgroup file systems under `/sys/fs/cgroup`.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostCgroupFs;

impl CgroupFs for HostCgroupFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // Control files take one write; no create, no truncate.
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(value.as_bytes())
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// One operation recorded by [`FakeCgroupFs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupOp {
    /// `create_dir_all`.
    Mkdir(PathBuf),
    /// `remove_dir`.
    Rmdir(PathBuf),
    /// `write` of a value.
    Write(PathBuf, String),
}

#[derive(Debug, Default)]
struct FakeState {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, String>,
    ops: Vec<CgroupOp>,
}

/// An in-memory cgroup tree that records every change.
///
/// Directories must exist before files are written into them (like the kernel, which
/// creates the control files with the directory); reads of files nobody wrote or
/// [`set_file`](Self::set_file) fail with `NotFound`. `remove_dir` drops the directory's
/// files and fails with `EBUSY` while a non-empty `cgroup.procs` is inside.
#[derive(Debug, Default)]
pub struct FakeCgroupFs {
    state: Mutex<FakeState>,
}

impl FakeCgroupFs {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A panic while holding the lock (a failed assertion in a test) must not hide
        // the state from the next reader.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Presets a file (as the kernel would provide it), creating its directories; not
    /// recorded as an operation.
    pub fn set_file(&self, path: impl Into<PathBuf>, value: impl Into<String>) {
        let path = path.into();
        let mut st = self.lock();
        if let Some(parent) = path.parent() {
            for a in parent.ancestors() {
                st.dirs.insert(a.to_path_buf());
            }
        }
        st.files.insert(path, value.into());
    }

    /// The current content of a file.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<String> {
        self.lock().files.get(path.as_ref()).cloned()
    }

    /// Whether a directory exists.
    pub fn has_dir(&self, path: impl AsRef<Path>) -> bool {
        self.lock().dirs.contains(path.as_ref())
    }

    /// Every recorded operation, in order.
    pub fn ops(&self) -> Vec<CgroupOp> {
        self.lock().ops.clone()
    }

    /// The recorded writes, in order.
    pub fn writes(&self) -> Vec<(PathBuf, String)> {
        self.lock()
            .ops
            .iter()
            .filter_map(|op| match op {
                CgroupOp::Write(p, v) => Some((p.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Forgets the recorded operations (the tree stays).
    pub fn clear_ops(&self) {
        self.lock().ops.clear();
    }
}

impl CgroupFs for FakeCgroupFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        for a in path.ancestors() {
            st.dirs.insert(a.to_path_buf());
        }
        st.ops.push(CgroupOp::Mkdir(path.to_path_buf()));
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        if !st.dirs.contains(path) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        if st.dirs.iter().any(|d| d != path && d.starts_with(path)) {
            return Err(io::Error::from_raw_os_error(nix::libc::EBUSY));
        }
        let procs = path.join("cgroup.procs");
        if st.files.get(&procs).is_some_and(|p| !p.trim().is_empty()) {
            return Err(io::Error::from_raw_os_error(nix::libc::EBUSY));
        }
        st.dirs.remove(path);
        st.files.retain(|f, _| f.parent() != Some(path));
        st.ops.push(CgroupOp::Rmdir(path.to_path_buf()));
        Ok(())
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut st = self.lock();
        match path.parent() {
            Some(parent) if st.dirs.contains(parent) => {}
            _ => return Err(io::Error::from(io::ErrorKind::NotFound)),
        }
        st.files.insert(path.to_path_buf(), value.to_owned());
        st.ops
            .push(CgroupOp::Write(path.to_path_buf(), value.to_owned()));
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        self.lock()
            .files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        st.dirs.contains(path) || st.files.contains_key(path)
    }
}
