//! The signed per-role bundle format (schema version 1).
//!
//! A bundle is a plain ustar archive (built with the `tar` crate):
//!
//! ```text
//! manifest.toml        the manifest, see [`Manifest`]
//! manifest.toml.sig    64 raw bytes: Ed25519 signature of the exact bytes of manifest.toml
//!                      by the cluster signing key (verifiable with
//!                      `openssl pkeyutl -verify -pubin -inkey cluster.pub -rawin
//!                       -in manifest.toml -sigfile manifest.toml.sig`)
//! <path>...            the rendered files, sorted by path
//! ```
//!
//! `manifest.toml`:
//!
//! ```toml
//! schema = 1
//! cluster_id = "0f8fad5b-d9cb-469f-a165-70867728950e"   # secrets/cluster-id
//! config_id = "<sha256 hex of Config::canonical_toml()>"
//! role = "master"                                       # master | agent | agent-public
//! basalt_version = "0.1.0"
//!
//! [[file]]                                              # one per file, sorted by path
//! path = "bin/ip-detect"
//! mode = "0755"                                         # octal, ≤ 0777
//! size = 123
//! sha256 = "<hex>"
//! ```
//!
//! # Determinism
//!
//! Same files and secrets → byte-identical archive: entries in a fixed order
//! (manifest, signature, then files sorted by path), ustar headers with
//! mtime 0, uid/gid 0, no user/group names, only the regular-file type, sizes
//! and modes from the input; the signature is deterministic (Ed25519).
//!
//! # Canonical form
//!
//! Every header is exactly what [`canonical_header`] produces for its path, mode
//! and size; data is followed by zero padding to a 512-byte boundary and the
//! archive ends with exactly two zero blocks. The verifier
//! ([`crate::verify`]) accepts only this form, so every byte of a bundle is
//! covered: headers by the canonical check (and the tar checksum), file data and
//! the manifest by hashes and the signature, padding and trailer by zero checks.
//!
//! # Paths
//!
//! Relative, `/`-separated, 1–100 bytes of `[A-Za-z0-9._+@=-]` and `/`, no empty,
//! `.` or `..` component, never `manifest.toml` or `manifest.toml.sig`
//! ([`check_path`]). The master bundle holds each master's own files under
//! `masters/<ip>/` (see [`crate::render`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secrets::Secrets;

/// Manifest schema version written and accepted.
pub const SCHEMA_VERSION: u32 = 1;
/// Archive path of the manifest.
pub const MANIFEST_PATH: &str = "manifest.toml";
/// Archive path of the detached signature.
pub const SIGNATURE_PATH: &str = "manifest.toml.sig";
/// Basalt version written into manifests.
pub const BASALT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Longest allowed path (fits the ustar name field without a prefix).
pub const MAX_PATH_LEN: usize = 100;
/// Highest allowed file mode (no setuid/setgid/sticky bits).
pub const MAX_MODE: u32 = 0o777;
/// mtime of every entry.
pub const MTIME: u64 = 0;

/// A node role; each has its own bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Master (etcd, master, schedulers, IAM, gateway).
    Master,
    /// Private agent.
    Agent,
    /// Public agent (`public_ip:true`, resources reserved to the public role).
    AgentPublic,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Master, Role::Agent, Role::AgentPublic];

    /// `master`, `agent` or `agent-public`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::AgentPublic => "agent-public",
        }
    }

    /// Whether this is an agent role.
    pub fn is_agent(&self) -> bool {
        !matches!(self, Role::Master)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`; one of: master, agent, agent-public"))
    }
}

/// A file mode, written as 4 octal digits (`"0644"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl TryFrom<String> for Mode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() != 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(format!("mode `{s}` is not 4 octal digits"));
        }
        let m = u32::from_str_radix(&s, 8).map_err(|e| format!("mode `{s}`: {e}"))?;
        if m > MAX_MODE {
            return Err(format!("mode `{s}` has bits above 0777"));
        }
        Ok(Mode(m))
    }
}

impl From<Mode> for String {
    fn from(m: Mode) -> String {
        m.to_string()
    }
}

/// One file listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Archive path.
    pub path: String,
    /// Mode bits.
    pub mode: Mode,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Stable cluster id (`secrets/cluster-id`).
    pub cluster_id: String,
    /// SHA-256 hex of the canonical config.
    pub config_id: String,
    /// The role this bundle is for.
    pub role: Role,
    /// Version of Basalt that wrote it.
    pub basalt_version: String,
    /// Every file, sorted by path.
    #[serde(rename = "file", default)]
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// The entry for `path`.
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.files.get(i))
    }
}

/// A file to put into a bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Archive path (see [`check_path`]).
    pub path: String,
    /// Mode bits (≤ 0777).
    pub mode: u32,
    /// Content.
    pub data: Vec<u8>,
}

impl BundleFile {
    /// New file.
    pub fn new(path: impl Into<String>, mode: u32, data: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            mode,
            data: data.into(),
        }
    }
}

impl fmt::Debug for BundleFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Content may be a private key: show only its size.
        f.debug_struct("BundleFile")
            .field("path", &self.path)
            .field("mode", &Mode(self.mode))
            .field("size", &self.data.len())
            .finish()
    }
}

/// What goes into a manifest besides the file list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMeta {
    /// Cluster id.
    pub cluster_id: String,
    /// Config id.
    pub config_id: String,
    /// Role.
    pub role: Role,
}

/// A built bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Its manifest.
    pub manifest: Manifest,
    /// The archive.
    pub bytes: Vec<u8>,
}

impl Bundle {
    /// Lowercase hex SHA-256 of the archive.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("role", &self.manifest.role)
            .field("files", &self.manifest.files.len())
            .field("size", &self.bytes.len())
            .finish()
    }
}

/// Errors building a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A path breaks the rules of [`check_path`].
    #[error("bundle file `{path}`: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Two files with one path.
    #[error("bundle file `{path}` appears twice")]
    DuplicatePath {
        /// The path.
        path: String,
    },
    /// Mode above 0777.
    #[error("bundle file `{path}`: mode {mode:o} has bits above 0777")]
    BadMode {
        /// The path.
        path: String,
        /// The mode.
        mode: u32,
    },
    /// The manifest could not be serialised.
    #[error("serialising manifest: {0}")]
    Manifest(String),
    /// Writing the archive failed.
    #[error("writing bundle archive: {0}")]
    Archive(#[source] std::io::Error),
}

/// Checks a bundle file path; `Err` says why it is refused.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".to_owned());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!("longer than {MAX_PATH_LEN} bytes"));
    }
    if path.starts_with('/') {
        return Err("absolute path".to_owned());
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._+@=-/".contains(*c)))
    {
        return Err(format!("character {c:?} not allowed"));
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err("empty path component (`//` or trailing `/`)".to_owned()),
            "." | ".." => return Err(format!("`{comp}` component")),
            _ => {}
        }
    }
    if path == MANIFEST_PATH || path == SIGNATURE_PATH {
        return Err("reserved for the manifest".to_owned());
    }
    Ok(())
}

/// The one header the format allows for a regular file `path` with `mode` and `size`.
pub fn canonical_header(path: &str, mode: u32, size: u64) -> std::io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(size);
    h.set_cksum();
    Ok(h)
}

/// Builds and signs a bundle with the cluster signing key in `secrets`.
pub fn build_bundle(
    meta: &BundleMeta,
    files: &[BundleFile],
    secrets: &Secrets,
) -> Result<Bundle, BundleError> {
    build_bundle_with(meta, files, &|m| secrets.sign(m))
}

/// Builds a bundle, signing the manifest with `sign` (Ed25519, 64 bytes).
pub fn build_bundle_with(
    meta: &BundleMeta,
    files: &[BundleFile],
    sign: &dyn Fn(&[u8]) -> [u8; 64],
) -> Result<Bundle, BundleError> {
    let mut sorted: Vec<&BundleFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for w in sorted.windows(2) {
        if let [a, b] = w
            && a.path == b.path
        {
            return Err(BundleError::DuplicatePath {
                path: a.path.clone(),
            });
        }
    }
    for f in &sorted {
        check_path(&f.path).map_err(|reason| BundleError::BadPath {
            path: f.path.clone(),
            reason,
        })?;
        if f.mode > MAX_MODE {
            return Err(BundleError::BadMode {
                path: f.path.clone(),
                mode: f.mode,
            });
        }
    }
    let manifest = Manifest {
        schema: SCHEMA_VERSION,
        cluster_id: meta.cluster_id.clone(),
        config_id: meta.config_id.clone(),
        role: meta.role,
        basalt_version: BASALT_VERSION.to_owned(),
        files: sorted
            .iter()
            .map(|f| ManifestFile {
                path: f.path.clone(),
                mode: Mode(f.mode),
                size: f.data.len() as u64,
                sha256: hex::encode(Sha256::digest(&f.data)),
            })
            .collect(),
    };
    let manifest_bytes =
        toml::to_string(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    let sig = sign(manifest_bytes.as_bytes());

    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |path: &str, mode: u32, data: &[u8]| -> Result<(), BundleError> {
        let h =
            canonical_header(path, mode, data.len() as u64).map_err(|e| BundleError::BadPath {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        builder.append(&h, data).map_err(BundleError::Archive)
    };
    append(MANIFEST_PATH, 0o644, manifest_bytes.as_bytes())?;
    append(SIGNATURE_PATH, 0o644, &sig)?;
    for f in &sorted {
        append(&f.path, f.mode, &f.data)?;
    }
    let bytes = builder.into_inner().map_err(BundleError::Archive)?;
    Ok(Bundle { manifest, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in [
            "etc/resolvers",
            "bin/ip-detect",
            "masters/10.0.0.1/etc/tls/etcd-peer.key",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a b",
            "a\\b",
            "manifest.toml",
            "manifest.toml.sig",
            "é",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path(&"a".repeat(101)).is_err());
        assert!(check_path(&"a".repeat(100)).is_ok());
    }

    #[test]
    fn modes() {
        assert_eq!(Mode::try_from("0755".to_owned()).unwrap(), Mode(0o755));
        assert_eq!(Mode(0o600).to_string(), "0600");
        for bad in ["755", "0758", "4755", "07777", "abcd"] {
            assert!(Mode::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("slave_public".parse::<Role>().is_err());
    }

    #[test]
    fn build_rejects_bad_input() {
        let meta = BundleMeta {
            cluster_id: "c".into(),
            config_id: "x".into(),
            role: Role::Agent,
        };
        let sign = |_: &[u8]| [0u8; 64];
        let dup = [
            BundleFile::new("a", 0o644, "1"),
            BundleFile::new("a", 0o644, "2"),
        ];
        assert!(matches!(
            build_bundle_with(&meta, &dup, &sign),
            Err(BundleError::DuplicatePath { path }) if path == "a"
        ));
        let trav = [BundleFile::new("../a", 0o644, "1")];
        assert!(matches!(
            build_bundle_with(&meta, &trav, &sign),
            Err(BundleError::BadPath { path, .. }) if path == "../a"
        ));
        let suid = [BundleFile::new("a", 0o4755, "1")];
        assert!(matches!(
            build_bundle_with(&meta, &suid, &sign),
            Err(BundleError::BadMode { .. })
        ));
    }
}
