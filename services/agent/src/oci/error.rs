//! Errors of the image path; each names the image (as the task gave it) and the
//! registry URL, blob digest or file involved.

use std::io;
use std::path::PathBuf;

/// Why an image could not be pulled, unpacked or turned into a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The image reference cannot be parsed.
    #[error("image '{image}': invalid reference: {reason}")]
    InvalidReference {
        /// The reference as given.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry could not be reached (connection refused, DNS, TLS, timeout).
    #[error("image '{image}': registry unreachable at {url}: {reason}")]
    Unreachable {
        /// The image.
        image: String,
        /// The URL requested.
        url: String,
        /// The transport error, with its causes.
        reason: String,
    },
    /// The registry has no such manifest (HTTP 404).
    #[error("image '{image}': not found in the registry ({url} answered 404)")]
    NotFound {
        /// The image.
        image: String,
        /// The manifest URL.
        url: String,
    },
    /// Any other HTTP error of the registry.
    #[error("image '{image}': {url} answered HTTP {status}: {body}")]
    Http {
        /// The image.
        image: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A manifest or blob does not hash to its digest.
    #[error("image '{image}': digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The image.
        image: String,
        /// `manifest` or `blob`.
        what: &'static str,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// The manifest, index or image configuration is unusable.
    #[error("image '{image}': {reason}")]
    Manifest {
        /// The image.
        image: String,
        /// What is wrong, naming the field or media type.
        reason: String,
    },
    /// A layer could not be unpacked.
    #[error("image '{image}': unpacking layer {digest}: {reason}")]
    Layer {
        /// The image.
        image: String,
        /// The layer's digest.
        digest: String,
        /// Why.
        reason: String,
    },
    /// A file of the image store or the bundle.
    #[error("image store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Assembling the root filesystem or the runtime configuration failed.
    #[error("image '{image}': preparing the container: {reason}")]
    Bundle {
        /// The image.
        image: String,
        /// Why.
        reason: String,
    },
    /// The OCI runtime (crun) cannot be used.
    #[error("OCI runtime: {reason}")]
    Runtime {
        /// Why.
        reason: String,
    },
}

impl OciError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> OciError {
        let path = path.into();
        move |source| OciError::Io { path, source }
    }
}
