//! The seams between detection and the operating system.
//!
//! * [`SystemRoot`]: every read of `/proc`, `/sys` and the mount table goes through a root
//!   directory — `/` on a machine, a recorded fixture tree in tests.
//! * [`FsStats`]: free and total space of a path (`statvfs`). [`HostFsStats`] is the real
//!   one; tests implement the trait with fixed numbers.
//! * [`ScriptRunner`]: runs the fault-domain-detect script. [`HostScriptRunner`] spawns it
//!   as a real process with a timeout; tests may implement the trait with canned output.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::DetectError;

/// A directory that plays the part of `/` for every read of kernel-provided files.
///
/// Logical paths are absolute (`/proc/self/mountinfo`); [`SystemRoot::path`] maps them
/// under the root. Errors name the mapped path, so a fixture problem names the fixture
/// file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemRoot {
    root: PathBuf,
}

impl SystemRoot {
    /// The machine itself (`/`).
    pub fn host() -> Self {
        SystemRoot {
            root: PathBuf::from("/"),
        }
    }

    /// A recorded tree (e.g. `fixtures/nvme-ssd`) standing in for `/`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SystemRoot { root: root.into() }
    }

    /// The directory standing in for `/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a logical absolute path under the root. `..` and `.` are dropped lexically,
    /// so a logical path can never leave the root.
    pub fn path(&self, logical: impl AsRef<Path>) -> PathBuf {
        let mut out = self.root.clone();
        for c in logical.as_ref().components() {
            match c {
                Component::Normal(part) => out.push(part),
                Component::ParentDir => {
                    if out != self.root {
                        out.pop();
                    }
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        out
    }

    /// Reads a whole file.
    pub fn read_to_string(&self, logical: impl AsRef<Path>) -> Result<String, DetectError> {
        let path = self.path(logical);
        std::fs::read_to_string(&path).map_err(|source| DetectError::Read { path, source })
    }

    /// Reads a whole file; `None` when it does not exist (any other error is an error).
    pub fn read_optional(&self, logical: impl AsRef<Path>) -> Result<Option<String>, DetectError> {
        let path = self.path(logical);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DetectError::Read { path, source }),
        }
    }

    /// Names in a directory, sorted; empty when the directory does not exist.
    pub fn list_dir(&self, logical: impl AsRef<Path>) -> Result<Vec<String>, DetectError> {
        let path = self.path(logical);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(DetectError::Read { path, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| DetectError::Read {
                path: path.clone(),
                source,
            })?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Whether a logical path exists under the root (follows symlinks, as sysfs needs).
    pub fn exists(&self, logical: impl AsRef<Path>) -> bool {
        self.path(logical).exists()
    }

    /// Resolves symlinks in a logical path inside the root; falls back to the lexical
    /// path when it does not exist or resolves outside the root.
    pub fn canonicalize(&self, logical: &Path) -> PathBuf {
        let lexical = Path::new("/").join(
            self.path(logical)
                .strip_prefix(&self.root)
                .unwrap_or(logical),
        );
        let (Ok(real), Ok(root)) = (
            std::fs::canonicalize(self.path(logical)),
            std::fs::canonicalize(&self.root),
        ) else {
            return lexical;
        };
        match real.strip_prefix(&root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => lexical,
        }
    }
}

/// Size of the file system holding a path, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Size of the file system (`f_blocks * f_frsize`).
    pub total_bytes: u64,
    /// Space available to unprivileged users (`f_bavail * f_frsize`) — what DC/OS'
    /// `make_disk_resources.py` called "free".
    pub available_bytes: u64,
}

/// `statvfs` seam. Paths are logical (as in the mount table / config), not mapped under
/// a [`SystemRoot`].
pub trait FsStats {
    /// Total and available bytes of the file system holding `path`.
    fn usage(&self, path: &Path) -> io::Result<FsUsage>;
}

/// The real `statvfs(3)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFsStats;

impl FsStats for HostFsStats {
    // The statvfs field types are u32 or u64 depending on the platform.
    #[allow(clippy::useless_conversion)]
    fn usage(&self, path: &Path) -> io::Result<FsUsage> {
        let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
        let frag = u64::from(st.fragment_size());
        Ok(FsUsage {
            total_bytes: u64::from(st.blocks()).saturating_mul(frag),
            available_bytes: u64::from(st.blocks_available()).saturating_mul(frag),
        })
    }
}

/// What a script printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutput {
    /// Exited with status 0.
    pub success: bool,
    /// How it ended, for messages (`exit status: 3`, `signal: 9 (SIGKILL)`).
    pub status: String,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Seam for running the fault-domain-detect script.
pub trait ScriptRunner {
    /// Runs `script` with no arguments and stdin from `/dev/null`. An error of kind
    /// [`io::ErrorKind::TimedOut`] means it ran past `timeout` and was killed.
    fn run(&self, script: &Path, timeout: Duration) -> io::Result<ScriptOutput>;
}

/// Runs the script as a real process in its own process group; on timeout the whole
/// group is killed with SIGKILL.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostScriptRunner;

/// How often [`HostScriptRunner`] checks whether the script has exited.
const SCRIPT_POLL: Duration = Duration::from_millis(10);

impl ScriptRunner for HostScriptRunner {
    fn run(&self, script: &Path, timeout: Duration) -> io::Result<ScriptOutput> {
        use std::os::unix::process::CommandExt;

        let mut child = Command::new(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                let pgid = i32::try_from(child.id())
                    .map(nix::unistd::Pid::from_raw)
                    .map_err(|_| io::Error::other("pid out of range"))?;
                // The group may already be gone; the wait below reaps the leader either way.
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("still running after {timeout:?}; killed"),
                ));
            }
            std::thread::sleep(SCRIPT_POLL);
        };
        let join =
            |h: Option<std::thread::JoinHandle<io::Result<Vec<u8>>>>| -> io::Result<Vec<u8>> {
                match h {
                    Some(h) => h
                        .join()
                        .map_err(|_| io::Error::other("output reader panicked"))?,
                    None => Ok(Vec::new()),
                }
            };
        Ok(ScriptOutput {
            success: status.success(),
            status: status.to_string(),
            stdout: join(stdout)?,
            stderr: join(stderr)?,
        })
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)?;
        Ok(buf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_maps_under_root_and_never_escapes() {
        let r = SystemRoot::new("/fx/a");
        assert_eq!(
            r.path("/proc/self/cgroup"),
            PathBuf::from("/fx/a/proc/self/cgroup")
        );
        assert_eq!(
            r.path("/../../etc/passwd"),
            PathBuf::from("/fx/a/etc/passwd")
        );
        assert_eq!(
            SystemRoot::host().path("/sys/block"),
            PathBuf::from("/sys/block")
        );
    }

    #[test]
    fn missing_files_are_none_but_named_when_required() {
        let dir = tempfile::tempdir().unwrap();
        let r = SystemRoot::new(dir.path());
        assert_eq!(r.read_optional("/nope").unwrap(), None);
        assert!(r.list_dir("/nope").unwrap().is_empty());
        let err = r.read_to_string("/proc/meminfo").unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("{}/proc/meminfo", dir.path().display())),
            "{err}"
        );
    }

    #[test]
    fn canonicalize_stays_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/mesos")).unwrap();
        std::os::unix::fs::symlink("/data/mesos", dir.path().join("work")).unwrap();
        let r = SystemRoot::new(dir.path());
        // An absolute link inside a fixture points outside it: fall back to the lexical path.
        assert_eq!(r.canonicalize(Path::new("/work")), PathBuf::from("/work"));
        std::fs::remove_file(dir.path().join("work")).unwrap();
        std::os::unix::fs::symlink("data/mesos", dir.path().join("work")).unwrap();
        assert_eq!(
            r.canonicalize(Path::new("/work")),
            PathBuf::from("/data/mesos")
        );
        assert_eq!(
            r.canonicalize(Path::new("/missing/x")),
            PathBuf::from("/missing/x")
        );
    }
}
