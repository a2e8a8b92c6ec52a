//! Every error the CLI reports. Each message says what went wrong and what to do next;
//! `main` prints it as `Error: <message>` and exits with status 1.

use std::path::PathBuf;

/// A CLI failure.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No cluster has been set up.
    #[error("no cluster is configured: run `basalt cluster setup <url>`")]
    NoCluster,
    /// Clusters exist, none is attached.
    #[error(
        "no cluster is attached: run `basalt cluster attach <name>` (`basalt cluster list` shows them)"
    )]
    NotAttached,
    /// `cluster attach/remove <name>` named nothing known.
    #[error("unknown cluster {0:?}: `basalt cluster list` shows the configured clusters")]
    UnknownCluster(String),
    /// A name matches several clusters.
    #[error("{name:?} matches several clusters ({ids}): use the cluster id")]
    AmbiguousCluster {
        /// The name given.
        name: String,
        /// The matching ids.
        ids: String,
    },
    /// The stored token is expired (checked locally, before sending).
    #[error(
        "your login for cluster {cluster} expired at {expired} (unix time): run `basalt auth login`"
    )]
    TokenExpired {
        /// Cluster name.
        cluster: String,
        /// `exp` of the token.
        expired: u64,
    },
    /// The gateway answered 401 to a request carrying (or missing) the token.
    #[error(
        "authentication failed for {url}: {detail}. The token is missing, expired or invalid: run `basalt auth login`"
    )]
    Unauthorized {
        /// The request URL.
        url: String,
        /// The gateway's description.
        detail: String,
    },
    /// 403.
    #[error("permission denied for {url}: {detail} (ask a cluster administrator for access)")]
    Forbidden {
        /// The request URL.
        url: String,
        /// The gateway's description.
        detail: String,
    },
    /// Login refused (wrong password, locked out, …).
    #[error("login to {url} failed: {detail}")]
    LoginFailed {
        /// The cluster URL.
        url: String,
        /// The IAM's description.
        detail: String,
    },
    /// Nothing answers at the URL.
    #[error(
        "cannot reach the gateway at {url}: {detail} (check the URL and that the cluster is up)"
    )]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// TLS verification failed against the pinned CA.
    #[error(
        "TLS verification of {url} failed: {detail}. The gateway's certificate is not signed by the CA pinned for this cluster (or the host name does not match it); if the cluster was reinstalled, run `basalt cluster setup <url>` again"
    )]
    Tls {
        /// The URL.
        url: String,
        /// The TLS error.
        detail: String,
    },
    /// The CA served by the cluster is not the one the user expected.
    #[error(
        "the cluster CA served by {url} has fingerprint {actual}, not the expected {expected}: refusing to trust it (check the fingerprint with your cluster administrator; someone may be intercepting the connection)"
    )]
    FingerprintMismatch {
        /// The URL.
        url: String,
        /// `--ca-fingerprint`.
        expected: String,
        /// What the cluster served.
        actual: String,
    },
    /// The stored CA file no longer matches the pinned fingerprint.
    #[error(
        "the pinned CA {path} no longer has the pinned fingerprint {expected} (it has {actual}): run `basalt cluster setup <url>` again"
    )]
    PinnedCaChanged {
        /// The CA file.
        path: PathBuf,
        /// Pinned fingerprint.
        expected: String,
        /// The file's fingerprint.
        actual: String,
    },
    /// The service answered with an error.
    #[error("{method} {url} answered {status}: {message}")]
    Api {
        /// HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The service's message (Marathon `message`, IAM/gateway `description`).
        message: String,
    },
    /// An endpoint the command needs is not served by this cluster.
    #[error("{what}: the cluster does not serve {path} ({detail})")]
    MissingEndpoint {
        /// What the command wanted.
        what: String,
        /// The path.
        path: String,
        /// What the gateway said.
        detail: String,
    },
    /// A bad answer body.
    #[error("unexpected answer from {url}: {detail}")]
    BadResponse {
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// `reading`, `writing`, …
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A config file could not be parsed.
    #[error("config file {path}: {detail} (fix or remove it; `basalt cluster setup` rewrites it)")]
    Config {
        /// The file.
        path: PathBuf,
        /// Parse error.
        detail: String,
    },
    /// A JSON input could not be parsed.
    #[error("{what} is not valid JSON: {detail}")]
    Json {
        /// Where it came from (`file x.json`, `stdin`).
        what: String,
        /// The parse error.
        detail: String,
    },
    /// The user declined.
    #[error("{0}")]
    Aborted(String),
}

/// The CLI's result type.
pub type Result<T, E = CliError> = std::result::Result<T, E>;
