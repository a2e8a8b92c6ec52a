//! Errors of the supervisor. Each names the file, unit or source it concerns.

use std::path::PathBuf;

use basalt_genconf::verify::{PublicKeyError, VerifyError};

/// Why the supervisor could not bring the node up.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No source on the ladder held a bundle.
    #[error("no bundle found: {tried}")]
    NoBundle { tried: String },
    /// A source was named (or found) but its bundle could not be read.
    #[error("config source {source_name}: {reason}")]
    Source { source_name: String, reason: String },
    /// The cluster public key in the image is missing or unreadable.
    #[error("cluster public key {}: {source}", path.display())]
    PublicKey {
        path: PathBuf,
        #[source]
        source: PublicKeyError,
    },
    /// The bundle failed verification (the genconf check that failed is in `source`).
    #[error("bundle from {source_name} failed verification: {source}")]
    Verify {
        source_name: String,
        #[source]
        source: VerifyError,
    },
    /// ip-detect did not print exactly one IPv4 address.
    #[error("ip-detect: {0}")]
    IpDetect(String),
    /// A command could not be run.
    #[error("running {program}: {reason}")]
    Command { program: String, reason: String },
    /// Mounting a config volume failed.
    #[error("mounting {} on {}: {reason}", device.display(), target.display())]
    Mount {
        device: PathBuf,
        target: PathBuf,
        reason: String,
    },
    /// A systemd call over D-Bus failed.
    #[error("systemd: {op} {unit}: {reason}")]
    Systemd {
        op: &'static str,
        unit: String,
        reason: String,
    },
    /// The health server could not listen.
    #[error("health server on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl SupervisorError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> SupervisorError {
        let path = path.into();
        move |source| SupervisorError::Io { path, source }
    }

    /// Whether restarting the supervisor cannot help (bad bundle, bad ip-detect, no bundle,
    /// a missing key): the unit exits with [`EXIT_CONFIG`] and is not restarted.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SupervisorError::Verify { .. }
                | SupervisorError::IpDetect(_)
                | SupervisorError::PublicKey { .. }
                | SupervisorError::NoBundle { .. }
        )
    }
}

/// Exit status for permanent configuration failures (sysexits `EX_CONFIG`); the unit's
/// `RestartPreventExitStatus=78` keeps systemd from restarting in a loop.
pub const EXIT_CONFIG: u8 = 78;

pub type Result<T, E = SupervisorError> = std::result::Result<T, E>;
