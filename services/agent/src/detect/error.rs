//! The one error type of the detection library.

use std::io;
use std::path::PathBuf;

/// Why detection failed. Every variant names what it was looking at: the file read (as
/// the full path under the [`SystemRoot`](super::SystemRoot)), the config field, the
/// script or the cache file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// A file under the system root could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Full path of the file (root joined with the logical path).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file was read but its content is not what the kernel writes there.
    #[error("parsing {path} line {line}: {reason}")]
    Parse {
        /// Full path of the file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// `statvfs` of a path failed.
    #[error("statvfs {path}: {source}")]
    Statvfs {
        /// The path whose file system was asked for.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A disk has no space left once the reserve is taken away (DC/OS fails hard here too).
    #[error(
        "disk {path}: {available_mib} MiB available is not more than the {reserve_mib} MiB reserve"
    )]
    DiskTooSmall {
        /// Work dir or mount point.
        path: PathBuf,
        /// Space available to unprivileged users, MiB.
        available_mib: u64,
        /// The configured reserve, MiB.
        reserve_mib: u64,
    },
    /// The fault-domain-detect script failed, timed out or printed something that is not
    /// `{"fault_domain":{"region":{"name":..},"zone":{"name":..}}}`.
    #[error("fault-domain script {script}: {reason}")]
    FaultDomainScript {
        /// The script that was run.
        script: PathBuf,
        /// What went wrong, with the start of its output where that helps.
        reason: String,
    },
    /// A [`DetectConfig`](super::DetectConfig) field is invalid.
    #[error("detection config {field}: {reason}")]
    Config {
        /// Field name, e.g. `attributes.rack` or `public_ports`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The resource cache file exists but cannot be used. It is never replaced silently:
    /// drain the agent and run the reset (see [`ResourceCache::reset`](super::ResourceCache::reset)).
    #[error("resource cache {path}: {reason}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing the cache (or its directory) failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl DetectError {
    pub(crate) fn parse(path: impl Into<PathBuf>, line: usize, reason: impl Into<String>) -> Self {
        DetectError::Parse {
            path: path.into(),
            line,
            reason: reason.into(),
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DetectError::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
