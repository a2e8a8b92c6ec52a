use std::path::PathBuf;

/// Everything the QEMU harness can fail with; each variant names the file or command.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("no UEFI firmware found (looked for {0}); install the `ovmf` package")]
    NoFirmware(String),

    #[error("{0}")]
    Timeout(#[from] crate::wait::Timeout),

    #[error("QEMU ({name}) exited with {status} before {waiting_for}; console tail:\n{tail}")]
    Exited {
        name: String,
        status: String,
        waiting_for: String,
        tail: String,
    },

    #[error(transparent)]
    Guest(#[from] crate::guest::GuestError),

    #[error("invalid VM configuration: {0}")]
    Config(String),
}

impl QemuError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> QemuError {
        let path = path.into();
        move |source| QemuError::Io { path, source }
    }
}

pub type Result<T, E = QemuError> = std::result::Result<T, E>;
