//! The bundle verifier that nodes run before they trust a bundle.
//!
//! [`verify_bundle`] accepts only the canonical form described in
//! [`crate::bundle`] and checks, in this order:
//!
//! 1. size (≤ [`MAX_BUNDLE_BYTES`]);
//! 2. the archive structure, without trusting any content: every header's tar
//!    checksum, regular files only (no links, devices, directories, long-name or
//!    PAX records), safe paths (no absolute paths, `..`, `.` or empty
//!    components), no duplicate entry, every header byte-identical to
//!    [`crate::bundle::canonical_header`], zero padding after each file, exactly
//!    two zero blocks at the end and nothing after them;
//! 3. the Ed25519 signature in `manifest.toml.sig` over the exact bytes of
//!    `manifest.toml`, against the cluster public key — **before** anything in
//!    the manifest is read;
//! 4. the manifest: known schema version, then well-formed, then the expected
//!    role and cluster id;
//! 5. every listed file present with the listed size, SHA-256 and mode; no
//!    file in the archive that the manifest does not list.
//!
//! Because headers are canonical and padding must be zero, flipping any single
//! byte of a bundle fails with an error naming what was hit (see
//! `genconf/tests/bundle_roundtrip.rs`, which flips every byte).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::Ipv4Addr;

use ring::signature::{ED25519, UnparsedPublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::bundle::{
    MANIFEST_PATH, Manifest, Role, SCHEMA_VERSION, SIGNATURE_PATH, canonical_header, check_path,
};
use crate::secrets::{
    ED25519_SPKI_PREFIX, ed25519_spki_der, is_cluster_id, pem_decode_str, pem_encode,
};

/// Largest bundle accepted.
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;

const BLOCK: u64 = 512;

/// The cluster's Ed25519 public key (raw 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClusterPublicKey([u8; 32]);

/// A public key that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid cluster public key: {0}")]
pub struct PublicKeyError(String);

impl ClusterPublicKey {
    /// From the raw 32-byte key.
    pub fn from_raw(raw: [u8; 32]) -> Self {
        Self(raw)
    }

    /// The raw 32-byte key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses a `PUBLIC KEY` PEM (Ed25519 SubjectPublicKeyInfo, as in `serve/cluster.pub`).
    pub fn from_pem(text: &str) -> Result<Self, PublicKeyError> {
        let der = pem_decode_str(text.as_bytes(), "PUBLIC KEY").map_err(PublicKeyError)?;
        match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            Some(raw) if raw.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(raw);
                Ok(Self(k))
            }
            _ => Err(PublicKeyError(
                "not an Ed25519 SubjectPublicKeyInfo".to_owned(),
            )),
        }
    }

    /// `PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &ed25519_spki_der(&self.0))
    }

    /// Whether `signature` is this key's Ed25519 signature of `message` (detached
    /// signatures outside bundles, e.g. a node image's `manifest.toml.sig`).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }

    /// Fingerprint: lowercase hex SHA-256 of the raw 32-byte key.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.0))
    }
}

impl fmt::Debug for ClusterPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterPublicKey(sha256:{})", self.fingerprint())
    }
}

/// Why a bundle was rejected. Each variant names the part that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Reading the bundle failed.
    #[error("reading bundle: {0}")]
    Io(#[source] std::io::Error),
    /// Larger than [`MAX_BUNDLE_BYTES`].
    #[error("bundle is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// A tar header is damaged (checksum, number fields) or data is cut short.
    #[error("tar header at byte {offset}: {reason}")]
    BadTarHeader {
        /// Offset of the header in the archive.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A header differs from the canonical header for its path, mode and size.
    #[error("`{path}`: tar header at byte {offset} is not in canonical form")]
    NonCanonicalHeader {
        /// The entry.
        path: String,
        /// Offset of the header.
        offset: u64,
    },
    /// A link, device, directory or other non-regular entry.
    #[error("`{path}`: entry type {entry_type} is not allowed (regular files only)")]
    ForbiddenEntryType {
        /// The entry.
        path: String,
        /// The tar type flag, as a character.
        entry_type: char,
    },
    /// An absolute path, `..`, or otherwise unsafe path.
    #[error("`{path}`: unsafe path: {reason}")]
    UnsafePath {
        /// The path (lossy UTF-8).
        path: String,
        /// Why.
        reason: String,
    },
    /// The same path twice in the archive or the manifest.
    #[error("`{path}` appears more than once")]
    DuplicateEntry {
        /// The path.
        path: String,
    },
    /// Non-zero bytes in the padding after a file's data.
    #[error("`{path}`: non-zero padding after its data")]
    NonZeroPadding {
        /// The entry.
        path: String,
    },
    /// The end-of-archive marker is missing, damaged, or followed by data.
    #[error("end of archive at byte {offset}: {reason}")]
    BadTrailer {
        /// Where the trailer starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify against the cluster public key.
    #[error("signature of manifest.toml does not verify against the cluster public key")]
    BadSignature,
    /// The signed manifest has a schema version this verifier does not know.
    #[error("manifest schema version {0} is not supported (this verifier knows {SCHEMA_VERSION})")]
    UnknownSchema(u64),
    /// The manifest (signed, so written by genconf) cannot be understood.
    #[error("malformed manifest: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The bundle is for another role.
    #[error("bundle is for role {found}, expected {expected}")]
    RoleMismatch {
        /// Expected role.
        expected: Role,
        /// Role in the manifest.
        found: Role,
    },
    /// The bundle is for another cluster.
    #[error("bundle is for cluster {found}, expected {expected}")]
    ClusterMismatch {
        /// Expected cluster id.
        expected: String,
        /// Cluster id in the manifest.
        found: String,
    },
    /// A file's content does not match the manifest.
    #[error("`{path}`: content does not match the manifest's sha256/size")]
    HashMismatch {
        /// The file.
        path: String,
    },
    /// A file's mode does not match the manifest.
    #[error("`{path}`: mode {found:04o} in the archive, {expected:04o} in the manifest")]
    ModeMismatch {
        /// The file.
        path: String,
        /// Mode in the manifest.
        expected: u32,
        /// Mode in the archive.
        found: u32,
    },
    /// A file in the archive that the manifest does not list.
    #[error("`{path}` is in the archive but not in the manifest")]
    UnexpectedFile {
        /// The file.
        path: String,
    },
    /// A file the manifest lists (or the manifest/signature itself) is not in the archive.
    #[error("`{path}` is missing from the archive")]
    MissingFile {
        /// The file.
        path: String,
    },
    /// [`VerifiedBundle::node_files`]: this node is not one of the bundle's masters.
    #[error("{ip} is not one of this master bundle's masters ({masters})")]
    NotAMaster {
        /// The node's IP.
        ip: Ipv4Addr,
        /// The masters the bundle holds files for.
        masters: String,
    },
}

/// A file of a verified bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    /// Path in the bundle.
    pub path: String,
    /// Mode bits.
    pub mode: u32,
    /// Content.
    pub data: Vec<u8>,
}

impl fmt::Debug for VerifiedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("size", &self.data.len())
            .finish()
    }
}

/// A bundle that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// The signed manifest.
    pub manifest: Manifest,
    /// The files, in manifest (path) order.
    pub files: Vec<VerifiedFile>,
}

impl VerifiedBundle {
    /// The bundle's role.
    pub fn role(&self) -> Role {
        self.manifest.role
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.manifest.cluster_id
    }

    /// The config id.
    pub fn config_id(&self) -> &str {
        &self.manifest.config_id
    }

    /// The file at `path`.
    pub fn file(&self, path: &str) -> Option<&VerifiedFile> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.files.get(i))
    }

    /// The files one node installs: for agent bundles every file; for the master
    /// bundle the shared files plus `masters/<ip>/…` of this master with that
    /// prefix removed (other masters' files are dropped). Sorted by path.
    pub fn node_files(&self, ip: Ipv4Addr) -> Result<Vec<VerifiedFile>, VerifyError> {
        if self.role().is_agent() {
            return Ok(self.files.clone());
        }
        let own = format!("{}/{ip}/", crate::render::MASTERS_DIR);
        let any = format!("{}/", crate::render::MASTERS_DIR);
        let mut out: Vec<VerifiedFile> = Vec::new();
        let mut found = false;
        for f in &self.files {
            if let Some(rest) = f.path.strip_prefix(&own) {
                found = true;
                out.push(VerifiedFile {
                    path: rest.to_owned(),
                    mode: f.mode,
                    data: f.data.clone(),
                });
            } else if !f.path.starts_with(&any) {
                out.push(f.clone());
            }
        }
        if !found {
            let mut masters: Vec<&str> = self
                .files
                .iter()
                .filter_map(|f| f.path.strip_prefix(&any))
                .filter_map(|r| r.split('/').next())
                .collect();
            masters.dedup();
            return Err(VerifyError::NotAMaster {
                ip,
                masters: masters.join(", "),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        for w in out.windows(2) {
            if let [a, b] = w
                && a.path == b.path
            {
                return Err(VerifyError::DuplicateEntry {
                    path: a.path.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// Verifies a bundle read from `reader` (at most [`MAX_BUNDLE_BYTES`]); see
/// [`verify_bundle`].
pub fn verify_bundle_reader(
    reader: impl Read,
    key: &ClusterPublicKey,
    expected_role: Option<Role>,
    expected_cluster_id: Option<&str>,
) -> Result<VerifiedBundle, VerifyError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(VerifyError::Io)?;
    verify_bundle(&bytes, key, expected_role, expected_cluster_id)
}

struct RawEntry {
    mode: u32,
    data: Vec<u8>,
}

/// Verifies `bytes` as a bundle signed by `key`; see the module docs for the
/// checks and their order. `expected_role` / `expected_cluster_id` are checked
/// when given.
pub fn verify_bundle(
    bytes: &[u8],
    key: &ClusterPublicKey,
    expected_role: Option<Role>,
    expected_cluster_id: Option<&str>,
) -> Result<VerifiedBundle, VerifyError> {
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(VerifyError::TooLarge {
            limit: MAX_BUNDLE_BYTES,
        });
    }

    // 2. Structure, trusting nothing.
    let entries = scan_archive(bytes)?;

    // 3. Signature before anything in the manifest is looked at.
    let manifest_bytes = &entries
        .get(MANIFEST_PATH)
        .ok_or_else(|| VerifyError::MissingFile {
            path: MANIFEST_PATH.to_owned(),
        })?
        .data;
    let sig = &entries
        .get(SIGNATURE_PATH)
        .ok_or_else(|| VerifyError::MissingFile {
            path: SIGNATURE_PATH.to_owned(),
        })?
        .data;
    if sig.len() != 64 {
        return Err(VerifyError::BadSignature);
    }
    UnparsedPublicKey::new(&ED25519, key.as_bytes())
        .verify(manifest_bytes, sig)
        .map_err(|_| VerifyError::BadSignature)?;

    // 4. Manifest.
    let manifest = parse_manifest(manifest_bytes)?;
    if let Some(expected) = expected_role
        && manifest.role != expected
    {
        return Err(VerifyError::RoleMismatch {
            expected,
            found: manifest.role,
        });
    }
    if let Some(expected) = expected_cluster_id
        && manifest.cluster_id != expected
    {
        return Err(VerifyError::ClusterMismatch {
            expected: expected.to_owned(),
            found: manifest.cluster_id.clone(),
        });
    }

    // 5. Files against the manifest.
    let mut files = Vec::with_capacity(manifest.files.len());
    for mf in &manifest.files {
        let entry = entries
            .get(&mf.path)
            .ok_or_else(|| VerifyError::MissingFile {
                path: mf.path.clone(),
            })?;
        if entry.data.len() as u64 != mf.size
            || hex::encode(Sha256::digest(&entry.data)) != mf.sha256
        {
            return Err(VerifyError::HashMismatch {
                path: mf.path.clone(),
            });
        }
        if entry.mode != mf.mode.0 {
            return Err(VerifyError::ModeMismatch {
                path: mf.path.clone(),
                expected: mf.mode.0,
                found: entry.mode,
            });
        }
        files.push(VerifiedFile {
            path: mf.path.clone(),
            mode: entry.mode,
            data: entry.data.clone(),
        });
    }
    for path in entries.keys() {
        if path != MANIFEST_PATH && path != SIGNATURE_PATH && manifest.file(path).is_none() {
            return Err(VerifyError::UnexpectedFile { path: path.clone() });
        }
    }
    Ok(VerifiedBundle { manifest, files })
}

fn scan_archive(bytes: &[u8]) -> Result<BTreeMap<String, RawEntry>, VerifyError> {
    let mut archive = tar::Archive::new(bytes);
    let mut out: BTreeMap<String, RawEntry> = BTreeMap::new();
    let mut next_header: u64 = 0;
    let iter = archive.entries().map_err(|e| VerifyError::BadTarHeader {
        offset: 0,
        reason: e.to_string(),
    })?;
    for entry in iter.raw(true) {
        let mut entry = entry.map_err(|e| {
            if (bytes.len() as u64).saturating_sub(next_header) <= 2 * BLOCK {
                // No room for another entry plus the end marker: this block can
                // only be the end-of-archive marker, damaged.
                VerifyError::BadTrailer {
                    offset: next_header,
                    reason: "end-of-archive marker is not all zeros".to_owned(),
                }
            } else {
                VerifyError::BadTarHeader {
                    offset: next_header,
                    reason: e.to_string(),
                }
            }
        })?;
        let offset = entry.raw_header_position();
        let header = entry.header().clone();
        let path_bytes = header.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&path_bytes).into_owned();
        let kind = header.entry_type();
        if !kind.is_file() || header.as_bytes()[156] != b'0' {
            return Err(VerifyError::ForbiddenEntryType {
                path,
                entry_type: char::from(header.as_bytes()[156]),
            });
        }
        if std::str::from_utf8(&path_bytes).is_err() {
            return Err(VerifyError::UnsafePath {
                path,
                reason: "not UTF-8".to_owned(),
            });
        }
        if path != MANIFEST_PATH && path != SIGNATURE_PATH {
            check_path(&path).map_err(|reason| VerifyError::UnsafePath {
                path: path.clone(),
                reason,
            })?;
        }
        let bad_header = |reason: String| VerifyError::BadTarHeader { offset, reason };
        let mode = header.mode().map_err(|e| bad_header(e.to_string()))?;
        let size = header.entry_size().map_err(|e| bad_header(e.to_string()))?;
        if size > MAX_BUNDLE_BYTES {
            return Err(bad_header(format!("size {size} is too large")));
        }
        let canonical =
            canonical_header(&path, mode, size).map_err(|_| VerifyError::NonCanonicalHeader {
                path: path.clone(),
                offset,
            })?;
        if canonical.as_bytes() != header.as_bytes() {
            return Err(VerifyError::NonCanonicalHeader { path, offset });
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad_header(format!("reading data of `{path}`: {e}")))?;
        if data.len() as u64 != size {
            return Err(bad_header(format!(
                "`{path}` is cut short: {} of {size} bytes",
                data.len()
            )));
        }
        let data_end = entry.raw_file_position() + size;
        let padded_end = data_end.div_ceil(BLOCK) * BLOCK;
        let padding = slice(bytes, data_end, padded_end)
            .ok_or_else(|| bad_header(format!("`{path}`: archive ends inside its padding")))?;
        if padding.iter().any(|b| *b != 0) {
            return Err(VerifyError::NonZeroPadding { path });
        }
        next_header = padded_end;
        if out.contains_key(&path) {
            return Err(VerifyError::DuplicateEntry { path });
        }
        out.insert(path, RawEntry { mode, data });
    }
    // Exactly two zero blocks, then nothing.
    let rest = slice(bytes, next_header, bytes.len() as u64).unwrap_or(&[]);
    let trailer = |reason: &str| VerifyError::BadTrailer {
        offset: next_header,
        reason: reason.to_owned(),
    };
    if rest.len() < 2 * BLOCK as usize {
        return Err(trailer("missing end-of-archive marker (two zero blocks)"));
    }
    if rest.len() > 2 * BLOCK as usize {
        return Err(trailer("data after the end-of-archive marker"));
    }
    if rest.iter().any(|b| *b != 0) {
        return Err(trailer("end-of-archive marker is not all zeros"));
    }
    Ok(out)
}

fn slice(bytes: &[u8], start: u64, end: u64) -> Option<&[u8]> {
    let s = usize::try_from(start).ok()?;
    let e = usize::try_from(end).ok()?;
    bytes.get(s..e)
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, VerifyError> {
    let malformed = |reason: String| VerifyError::Malformed { reason };
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8".to_owned()))?;

    #[derive(Deserialize)]
    struct SchemaOnly {
        schema: Option<toml::Value>,
    }
    let probe: SchemaOnly =
        toml::from_str(text).map_err(|e| malformed(format!("not TOML: {e}")))?;
    match probe.schema {
        Some(toml::Value::Integer(n)) if n == i64::from(SCHEMA_VERSION) => {}
        Some(toml::Value::Integer(n)) => {
            return Err(VerifyError::UnknownSchema(
                u64::try_from(n).unwrap_or(u64::MAX),
            ));
        }
        Some(_) => return Err(malformed("`schema` is not an integer".to_owned())),
        None => return Err(malformed("no `schema` key".to_owned())),
    }
    let manifest: Manifest = toml::from_str(text).map_err(|e| malformed(e.to_string()))?;
    if !is_cluster_id(&manifest.cluster_id) {
        return Err(malformed(format!(
            "cluster_id `{}` is not a cluster id",
            manifest.cluster_id
        )));
    }
    if manifest.config_id.len() != 64
        || !manifest
            .config_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(malformed("config_id is not a sha256 hex digest".to_owned()));
    }
    for (i, f) in manifest.files.iter().enumerate() {
        check_path(&f.path).map_err(|reason| VerifyError::UnsafePath {
            path: f.path.clone(),
            reason,
        })?;
        if f.sha256.len() != 64 {
            return Err(malformed(format!(
                "`{}`: sha256 is not 64 hex digits",
                f.path
            )));
        }
        if i > 0 {
            let prev = &manifest.files[i - 1].path;
            if prev == &f.path {
                return Err(VerifyError::DuplicateEntry {
                    path: f.path.clone(),
                });
            }
            if prev > &f.path {
                return Err(malformed(format!(
                    "files are not sorted by path (`{prev}` before `{}`)",
                    f.path
                )));
            }
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_pem_round_trip() {
        let k = ClusterPublicKey::from_raw([7u8; 32]);
        let pem = k.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(ClusterPublicKey::from_pem(&pem).unwrap(), k);
        assert_eq!(k.fingerprint().len(), 64);
        assert!(ClusterPublicKey::from_pem("nonsense").is_err());
        let other = pem_encode("PUBLIC KEY", &[1, 2, 3]);
        assert!(ClusterPublicKey::from_pem(&other).is_err());
    }

    #[test]
    fn manifest_schema_probe() {
        assert!(matches!(
            parse_manifest(b"schema = 2\nfoo = 1\n"),
            Err(VerifyError::UnknownSchema(2))
        ));
        assert!(matches!(
            parse_manifest(b"schema = \"1\"\n"),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_manifest(b"role = \"master\"\n"),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_manifest(b"\xff"),
            Err(VerifyError::Malformed { .. })
        ));
    }
}
