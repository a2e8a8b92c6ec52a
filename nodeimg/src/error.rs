//! Errors of the image pipeline. Every variant names the file or command it is about.

use std::path::PathBuf;

/// Everything `build` and its steps can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start `{program}`: {source} (is it installed? scripts/setup.sh installs it)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr_tail}")]
    Command {
        command: String,
        status: String,
        stderr_tail: String,
    },

    #[error("required tool `{0}` is not installed (scripts/setup.sh installs it)")]
    MissingTool(String),

    #[error(
        "building a node image needs root (mmdebstrap, tar ownership, chroot); running as uid {0}"
    )]
    NotRoot(u32),

    #[error("invalid build option: {0}")]
    InvalidOption(String),

    #[error("extra file {src} -> {dest}: {reason}")]
    ExtraFile {
        dest: String,
        src: PathBuf,
        reason: String,
    },

    #[error("{src} looks like a private key; secrets never go into an image (dest {dest})")]
    SecretInImage { dest: String, src: PathBuf },

    #[error("rootfs {root}: {reason}")]
    Rootfs { root: PathBuf, reason: String },

    #[error("{what} is {size} bytes but its slot holds only {slot} bytes (raise the slot size)")]
    TooBig { what: String, size: u64, slot: u64 },

    #[error("{path}: cannot parse: {reason}")]
    Parse { path: PathBuf, reason: String },

    #[error("lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
