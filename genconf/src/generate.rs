//! `genconf` end to end: `<genconf>/config.toml` + `<genconf>/secrets/` → the
//! serve folder.
//!
//! [`generate`] loads and validates the config, loads (or creates) the secrets,
//! renders and signs one bundle per role and writes, each file atomically:
//!
//! | path (under the serve folder) | mode | content |
//! |---|---|---|
//! | `bundles/master.tar`, `bundles/agent.tar`, `bundles/agent-public.tar` | 0600 | the signed bundles (they hold private keys: keep `serve/` private) |
//! | `cluster.pub` | 0644 | cluster signing public key, `PUBLIC KEY` PEM (the images carry it) |
//! | `cluster.pub.sha256` | 0644 | its fingerprint: hex SHA-256 of the raw 32-byte key |
//! | `index.json` | 0644 | bootstrap index, see [`BootstrapIndex`] |
//! | `summary.txt` | 0644 | human summary |
//!
//! Everything written is deterministic for a given config and secrets folder.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{BASALT_VERSION, Role};
use crate::config::{ConfigError, LoadedConfig};
use crate::render::{RenderError, render_bundle};
use crate::secrets::{SecretEvent, Secrets, SecretsError, secrets_dir};
use crate::verify::ClusterPublicKey;

/// Config file name inside the genconf folder.
pub const CONFIG_FILE: &str = "config.toml";
/// Schema version of `index.json`.
pub const INDEX_SCHEMA: u32 = 1;

/// Errors from [`generate`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The config is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secrets could not be loaded or created.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Rendering or bundling failed.
    #[error("rendering the {role} bundle: {source}")]
    Render {
        /// The role.
        role: Role,
        /// Cause.
        #[source]
        source: RenderError,
    },
    /// Writing output failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// One bundle in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexBundle {
    /// Role.
    pub role: Role,
    /// Path relative to the serve folder (`bundles/<role>.tar`).
    pub path: String,
    /// Hex SHA-256 of the archive.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// `index.json`: what a node or the bootstrap server needs to find bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapIndex {
    /// [`INDEX_SCHEMA`].
    pub schema: u32,
    /// Cluster id.
    pub cluster_id: String,
    /// Config id.
    pub config_id: String,
    /// Basalt version that wrote it.
    pub basalt_version: String,
    /// Fingerprint of the cluster public key.
    pub public_key_sha256: String,
    /// One per role.
    pub bundles: Vec<IndexBundle>,
}

/// What [`generate`] produced.
#[derive(Debug)]
pub struct Generated {
    /// The serve folder.
    pub out_dir: PathBuf,
    /// The index written to `index.json`.
    pub index: BootstrapIndex,
    /// Cluster public key.
    pub public_key: ClusterPublicKey,
    /// What loading the secrets created or re-issued (print these).
    pub secret_events: Vec<SecretEvent>,
    /// The text written to `summary.txt`.
    pub summary: String,
}

/// Loads `<genconf_dir>/config.toml` and `<genconf_dir>/secrets/`, writes the
/// serve folder `out_dir` (usually `<genconf_dir>/serve`).
pub fn generate(genconf_dir: &Path, out_dir: &Path) -> Result<Generated, GenerateError> {
    let loaded = crate::config::load(&genconf_dir.join(CONFIG_FILE))?;
    let secrets = Secrets::load_or_create(&secrets_dir(genconf_dir), &loaded.config)?;
    generate_with(&loaded, &secrets, out_dir)
}

/// [`generate`] with the config and secrets already loaded.
pub fn generate_with(
    loaded: &LoadedConfig,
    secrets: &Secrets,
    out_dir: &Path,
) -> Result<Generated, GenerateError> {
    let bundles_dir = out_dir.join("bundles");
    fs::create_dir_all(&bundles_dir).map_err(|source| GenerateError::Io {
        path: bundles_dir.clone(),
        source,
    })?;
    let public_key = secrets.public_key();
    let mut entries = Vec::new();
    for role in Role::ALL {
        let bundle = render_bundle(loaded, secrets, role)
            .map_err(|source| GenerateError::Render { role, source })?;
        let rel = format!("bundles/{role}.tar");
        write_atomic(&out_dir.join(&rel), &bundle.bytes, 0o600)?;
        entries.push(IndexBundle {
            role,
            path: rel,
            sha256: bundle.sha256(),
            size: bundle.bytes.len() as u64,
        });
    }
    let index = BootstrapIndex {
        schema: INDEX_SCHEMA,
        cluster_id: secrets.cluster_id().to_owned(),
        config_id: loaded.config.config_id(),
        basalt_version: BASALT_VERSION.to_owned(),
        public_key_sha256: public_key.fingerprint(),
        bundles: entries,
    };
    let mut index_json = serde_json::to_string_pretty(&index).map_err(|e| GenerateError::Io {
        path: out_dir.join("index.json"),
        source: std::io::Error::other(e),
    })?;
    index_json.push('\n');
    write_atomic(
        &out_dir.join("cluster.pub"),
        public_key.to_pem().as_bytes(),
        0o644,
    )?;
    write_atomic(
        &out_dir.join("cluster.pub.sha256"),
        format!("{}\n", public_key.fingerprint()).as_bytes(),
        0o644,
    )?;
    write_atomic(&out_dir.join("index.json"), index_json.as_bytes(), 0o644)?;
    let summary = summary(loaded, &index);
    write_atomic(&out_dir.join("summary.txt"), summary.as_bytes(), 0o644)?;
    Ok(Generated {
        out_dir: out_dir.to_path_buf(),
        index,
        public_key,
        secret_events: secrets.events().to_vec(),
        summary,
    })
}

fn summary(loaded: &LoadedConfig, index: &BootstrapIndex) -> String {
    let c = &loaded.config;
    let masters: Vec<String> = c.masters.iter().map(ToString::to_string).collect();
    let mut s = String::new();
    s.push_str(&format!("Basalt cluster `{}`\n", c.cluster_name));
    s.push_str(&format!("  cluster id      {}\n", index.cluster_id));
    s.push_str(&format!("  config id       {}\n", index.config_id));
    s.push_str(&format!("  basalt version  {}\n", index.basalt_version));
    s.push_str(&format!(
        "  masters         {} (quorum {}): {}\n",
        c.masters.len(),
        c.master_quorum(),
        masters.join(", ")
    ));
    s.push_str(&format!("  bootstrap url   {}\n", c.bootstrap_url));
    s.push_str(&format!(
        "  cluster key     cluster.pub, sha256 {}\n",
        index.public_key_sha256
    ));
    s.push_str("  bundles:\n");
    for b in &index.bundles {
        s.push_str(&format!(
            "    {:<13} {:<26} {:>8} bytes  sha256 {}\n",
            b.role.as_str(),
            b.path,
            b.size,
            b.sha256
        ));
    }
    s.push_str(
        "  Bundles contain private keys (master: etcd, gateway, IAM; agents: agent cert, join\n  \
         credential): serve them only to cluster nodes.\n",
    );
    s
}

/// Writes `bytes` to `path` via a temporary file and rename, with `mode`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), GenerateError> {
    let io = |p: &Path, source| GenerateError::Io {
        path: p.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    drop(f);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(|e| io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, e))
}
