//! `basalt-installer image build|verify`: node images for this cluster.
//!
//! `build` makes one image per role with `basalt-nodeimg` (cached Debian base, erofs +
//! dm-verity root, GPT disk), puts `basaltd`, the units and the cluster public key in it
//! (never a secret), and signs each image's `manifest.toml` with the cluster signing key
//! (`manifest.toml.sig`, detached Ed25519 over the exact bytes). `verify` checks that
//! signature against `serve/cluster.pub` and every artifact's size and sha256.

use std::path::{Path, PathBuf};

use basalt_genconf::config;
use basalt_genconf::secrets::{self, SIGNING_KEY_FILE, Secrets};
use basalt_genconf::verify::ClusterPublicKey;
use basalt_nodeimg::Role;
use basalt_nodeimg::manifest::{MANIFEST_FILE, Manifest, SIGNATURE_FILE};
use basalt_nodeimg::node::{NodePayload, build_node_image};
use basalt_nodeimg::rootimg::sha256_file;

use crate::commands::{Failure, chain, config_path};

/// Which roles `image build` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RoleChoice {
    Master,
    Agent,
    AgentPublic,
    All,
}

impl RoleChoice {
    fn roles(self) -> Vec<Role> {
        match self {
            RoleChoice::Master => vec![Role::Master],
            RoleChoice::Agent => vec![Role::Agent],
            RoleChoice::AgentPublic => vec![Role::AgentPublic],
            RoleChoice::All => Role::ALL.to_vec(),
        }
    }
}

/// Where images go by default: `<genconf dir>/serve/images/<role>/`.
pub(crate) fn default_out(dir: &Path) -> PathBuf {
    dir.join("serve/images")
}

/// The `basaltd` next to this installer (both come out of one `cargo build`, or both are
/// in `/usr/bin`).
fn default_basaltd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("basaltd");
    candidate.is_file().then_some(candidate)
}

/// `image build`.
pub(crate) fn build(
    dir: &Path,
    role: RoleChoice,
    out: Option<&Path>,
    basaltd: Option<&Path>,
    units: &Path,
) -> Result<(), Failure> {
    let loaded = config::load(&config_path(dir))?;
    let secrets_dir = secrets::secrets_dir(dir);
    if !secrets_dir.join(SIGNING_KEY_FILE).is_file() {
        return Err(Failure::Other(format!(
            "no cluster secrets in {}: run `basalt-installer genconf` first (the images carry \
             the cluster public key and their manifests are signed with the cluster key)",
            secrets_dir.display()
        )));
    }
    let secrets = Secrets::load_or_create(&secrets_dir, &loaded.config)?;
    let cluster_pub = dir.join("serve/cluster.pub");
    if !cluster_pub.is_file() {
        return Err(Failure::Io(format!(
            "{} is missing: run `basalt-installer genconf` first",
            cluster_pub.display()
        )));
    }
    let basaltd = match basaltd {
        Some(p) => p.to_path_buf(),
        None => default_basaltd().ok_or_else(|| {
            Failure::Io(
                "no basaltd next to basalt-installer: build it (`cargo build -p basaltd`) or \
                 pass --basaltd <path>"
                    .to_owned(),
            )
        })?,
    };
    for (what, p) in [("--basaltd", &basaltd), ("--units", &units.to_path_buf())] {
        if !p.exists() {
            return Err(Failure::Io(format!(
                "{what} {}: no such file or directory",
                p.display()
            )));
        }
    }
    let payload = NodePayload {
        basaltd,
        units_dir: units.to_path_buf(),
        cluster_pub,
    };
    let out = out.map_or_else(|| default_out(dir), Path::to_path_buf);
    for role in role.roles() {
        let role_dir = out.join(role.as_str());
        eprintln!("building the {role} image in {}", role_dir.display());
        let artifacts = build_node_image(role, &role_dir, &payload)
            .map_err(|e| Failure::Other(format!("{role} image: {}", chain(&e))))?;
        let manifest = artifacts
            .manifest_bytes()
            .map_err(|e| Failure::Io(chain(&e)))?;
        let sig = artifacts
            .write_signature(&secrets.sign(&manifest))
            .map_err(|e| Failure::Io(chain(&e)))?;
        println!(
            "{role} image: {} (base cached: {}, reused: {}), root hash {}\nmanifest signed: {}\n{}",
            artifacts.dir.display(),
            artifacts.base_cache_hit,
            artifacts.reused,
            artifacts.root_hash,
            sig.display(),
            artifacts.size_table()
        );
    }
    Ok(())
}

/// `image verify`: the manifest signature, then every artifact. Read-only.
pub(crate) fn verify(
    dir: &Path,
    image_dir: &Path,
    public_key: Option<&Path>,
) -> Result<(), Failure> {
    let key_path = public_key.map_or_else(|| dir.join("serve/cluster.pub"), Path::to_path_buf);
    let key_text = std::fs::read_to_string(&key_path)
        .map_err(|e| Failure::Io(format!("reading {}: {e}", key_path.display())))?;
    let key = ClusterPublicKey::from_pem(&key_text)
        .map_err(|e| Failure::Verify(format!("{}: {e}", key_path.display())))?;
    let manifest_path = image_dir.join(MANIFEST_FILE);
    let sig_path = image_dir.join(SIGNATURE_FILE);
    let manifest_bytes = std::fs::read(&manifest_path)
        .map_err(|e| Failure::Io(format!("reading {}: {e}", manifest_path.display())))?;
    let sig = std::fs::read(&sig_path).map_err(|e| {
        Failure::Verify(format!(
            "{}: {e} (images are signed by `basalt-installer image build`)",
            sig_path.display()
        ))
    })?;
    if !key.verifies(&manifest_bytes, &sig) {
        return Err(Failure::Verify(format!(
            "{} is not signed by the cluster key {} (sha256:{})",
            manifest_path.display(),
            key_path.display(),
            key.fingerprint()
        )));
    }
    let manifest = Manifest::read(&manifest_path).map_err(|e| Failure::Verify(chain(&e)))?;
    for a in &manifest.artifacts {
        let path = image_dir.join(&a.path);
        let size = std::fs::metadata(&path)
            .map_err(|e| Failure::Verify(format!("artifact {} ({}): {e}", a.name, path.display())))?
            .len();
        if size != a.size {
            return Err(Failure::Verify(format!(
                "artifact {} ({}) has {size} bytes, the manifest says {}",
                a.name,
                path.display(),
                a.size
            )));
        }
        let digest = sha256_file(&path).map_err(|e| Failure::Io(chain(&e)))?;
        if digest != a.sha256 {
            return Err(Failure::Verify(format!(
                "artifact {} ({}) has sha256 {digest}, the manifest says {}",
                a.name,
                path.display(),
                a.sha256
            )));
        }
    }
    println!(
        "{}: {} image, signature ok (key sha256:{}), {} artifacts ok, root hash {}",
        image_dir.display(),
        manifest.role,
        key.fingerprint(),
        manifest.artifacts.len(),
        manifest.root_hash
    );
    Ok(())
}
