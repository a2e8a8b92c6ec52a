//! Configuration on disk, in the DC/OS CLI's layout:
//!
//! ```text
//! $BASALT_DIR (default ~/.basalt)/
//!   clusters/<cluster id>/
//!     basalt.toml     [core] dcos_url, dcos_acs_token, ssl_verify, ca_fingerprint; [cluster] name
//!     dcos_ca.crt     the pinned cluster CA (PEM)
//!     attached        empty marker: the cluster commands talk to
//! ```
//!
//! Files holding a token are written 0600 (folders 0700), through a temporary file and a
//! rename, so a crash never leaves half a file. `basalt config show/set/unset` edit the
//! attached cluster's `basalt.toml` by `section.key` names.

use crate::error::{CliError, Result};
use crate::output;
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The config file's name in a cluster folder.
pub const CONFIG_FILE: &str = "basalt.toml";
/// The pinned CA's file name in a cluster folder.
pub const CA_FILE: &str = "dcos_ca.crt";
/// The attached marker's file name.
pub const ATTACHED_FILE: &str = "attached";

/// `[core]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Core {
    /// The cluster URL (`https://<master or load balancer>`).
    pub dcos_url: String,
    /// The login token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcos_acs_token: Option<String>,
    /// `"true"` (public roots), `"false"` (no verification: `--insecure`) or the path of
    /// the pinned CA.
    #[serde(default = "ssl_verify_default")]
    pub ssl_verify: String,
    /// `sha256:<hex>` of the pinned CA (DER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
    /// Request timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

fn ssl_verify_default() -> String {
    "true".to_owned()
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterSection {
    /// The name shown by `cluster list` and used by `cluster attach`.
    pub name: String,
}

/// One `basalt.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `[core]`.
    pub core: Core,
    /// `[cluster]`.
    pub cluster: ClusterSection,
}

/// A cluster as stored.
#[derive(Debug, Clone)]
pub struct StoredCluster {
    /// Folder name: the cluster id.
    pub id: String,
    /// The folder.
    pub dir: PathBuf,
    /// Its config.
    pub config: ClusterConfig,
    /// Whether it is attached.
    pub attached: bool,
}

impl StoredCluster {
    /// The display name.
    pub fn name(&self) -> &str {
        if self.config.cluster.name.is_empty() {
            &self.id
        } else {
            &self.config.cluster.name
        }
    }

    /// Writes `basalt.toml`.
    pub fn save(&self) -> Result<()> {
        let text = toml::to_string(&self.config).map_err(|e| CliError::Config {
            path: self.dir.join(CONFIG_FILE),
            detail: e.to_string(),
        })?;
        write_private(&self.dir.join(CONFIG_FILE), text.as_bytes())
    }
}

/// The config root.
#[derive(Debug, Clone)]
pub struct BasaltDir {
    root: PathBuf,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CliError + 'a {
    move |source| CliError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io("creating", dir))
}

/// Writes `data` to `path` (mode 0600) through a temporary file and a rename.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(&tmp).map_err(io("writing", &tmp))?;
    f.write_all(data).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("writing", path))
}

impl BasaltDir {
    /// `$BASALT_DIR`, else `$HOME/.basalt`.
    pub fn from_env() -> Result<BasaltDir> {
        if let Some(d) = std::env::var_os("BASALT_DIR").filter(|d| !d.is_empty()) {
            return Ok(BasaltDir { root: d.into() });
        }
        match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            Some(h) => Ok(BasaltDir {
                root: PathBuf::from(h).join(".basalt"),
            }),
            None => Err(CliError::Usage(
                "neither BASALT_DIR nor HOME is set: set BASALT_DIR to the folder for the CLI's configuration".into(),
            )),
        }
    }

    /// A root at `root`.
    pub fn at(root: impl Into<PathBuf>) -> BasaltDir {
        BasaltDir { root: root.into() }
    }

    /// `<root>/clusters`.
    pub fn clusters_dir(&self) -> PathBuf {
        self.root.join("clusters")
    }

    /// Every configured cluster, sorted by name.
    pub fn list(&self) -> Result<Vec<StoredCluster>> {
        let dir = self.clusters_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("reading", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io("reading", &dir))?;
            let path = entry.path();
            let file = path.join(CONFIG_FILE);
            if !file.is_file() {
                continue;
            }
            out.push(self.load(&path)?);
        }
        out.sort_by(|a, b| a.name().cmp(b.name()).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    fn load(&self, dir: &Path) -> Result<StoredCluster> {
        let file = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file).map_err(io("reading", &file))?;
        let config: ClusterConfig = toml::from_str(&text).map_err(|e| CliError::Config {
            path: file.clone(),
            detail: e.to_string(),
        })?;
        Ok(StoredCluster {
            id: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_owned(),
            config,
            attached: dir.join(ATTACHED_FILE).exists(),
        })
    }

    /// The attached cluster (the only one, if just one is configured).
    pub fn attached(&self) -> Result<StoredCluster> {
        let all = self.list()?;
        if all.is_empty() {
            return Err(CliError::NoCluster);
        }
        if let Some(c) = all.iter().find(|c| c.attached) {
            return Ok(c.clone());
        }
        match <[StoredCluster; 1]>::try_from(all) {
            Ok([only]) => Ok(only),
            Err(_) => Err(CliError::NotAttached),
        }
    }

    /// The cluster named or with id `name` (an id prefix works too).
    pub fn find(&self, name: &str) -> Result<StoredCluster> {
        let all = self.list()?;
        if all.is_empty() {
            return Err(CliError::NoCluster);
        }
        let exact: Vec<&StoredCluster> = all
            .iter()
            .filter(|c| c.id == name || c.name() == name)
            .collect();
        let hits = if exact.is_empty() {
            all.iter().filter(|c| c.id.starts_with(name)).collect()
        } else {
            exact
        };
        match hits.as_slice() {
            [] => Err(CliError::UnknownCluster(name.to_owned())),
            [one] => Ok((*one).clone()),
            many => Err(CliError::AmbiguousCluster {
                name: name.to_owned(),
                ids: many
                    .iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Makes `id` the attached cluster (and no other).
    pub fn attach(&self, id: &str) -> Result<()> {
        for c in self.list()? {
            let marker = c.dir.join(ATTACHED_FILE);
            if c.id == id {
                write_private(&marker, b"")?;
            } else if c.attached {
                std::fs::remove_file(&marker).map_err(io("removing", &marker))?;
            }
        }
        Ok(())
    }

    /// Creates (or replaces) a cluster folder with its config and CA.
    pub fn store(
        &self,
        id: &str,
        config: ClusterConfig,
        ca_pem: Option<&str>,
    ) -> Result<StoredCluster> {
        let dir = self.clusters_dir().join(id);
        create_private_dir(&dir)?;
        let mut config = config;
        if let Some(pem) = ca_pem {
            let path = dir.join(CA_FILE);
            write_private(&path, pem.as_bytes())?;
            config.core.ssl_verify = path.display().to_string();
        }
        let c = StoredCluster {
            id: id.to_owned(),
            dir: dir.clone(),
            config,
            attached: dir.join(ATTACHED_FILE).exists(),
        };
        c.save()?;
        Ok(c)
    }

    /// Removes a cluster folder.
    pub fn remove(&self, c: &StoredCluster) -> Result<()> {
        std::fs::remove_dir_all(&c.dir).map_err(io("removing", &c.dir))
    }
}

/// `basalt config …`: the attached cluster's settings.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the settings (`section.key value`), or one setting's value.
    Show {
        /// e.g. `core.dcos_url`.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set one setting, e.g. `basalt config set core.timeout 30`.
    Set {
        /// `core.dcos_url`, `core.dcos_acs_token`, `core.ssl_verify`, `core.timeout`,
        /// `cluster.name`.
        name: String,
        /// The new value.
        value: String,
    },
    /// Remove an optional setting (`core.dcos_acs_token`, `core.timeout`).
    Unset {
        /// The setting.
        name: String,
    },
}

/// Settings and their values (the token masked unless `reveal`).
fn settings(c: &ClusterConfig, reveal: bool) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("cluster.name", Some(c.cluster.name.clone())),
        ("core.ca_fingerprint", c.core.ca_fingerprint.clone()),
        (
            "core.dcos_acs_token",
            c.core
                .dcos_acs_token
                .as_ref()
                .map(|t| if reveal { t.clone() } else { "*".repeat(8) }),
        ),
        ("core.dcos_url", Some(c.core.dcos_url.clone())),
        ("core.ssl_verify", Some(c.core.ssl_verify.clone())),
        ("core.timeout", c.core.timeout.map(|t| t.to_string())),
    ]
}

const SETTABLE: &str =
    "core.dcos_url, core.dcos_acs_token, core.ssl_verify, core.timeout, cluster.name";

/// Runs `basalt config …`.
pub fn run(dirs: &BasaltDir, cmd: ConfigCmd) -> Result<()> {
    let mut c = dirs.attached()?;
    match cmd {
        ConfigCmd::Show { name, json } => {
            let all = settings(&c.config, false);
            if let Some(name) = name {
                let Some((_, v)) = all.iter().find(|(k, _)| *k == name) else {
                    return Err(CliError::Usage(format!(
                        "unknown setting {name:?}: known are {}",
                        all.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                    )));
                };
                match v {
                    Some(v) => println!("{v}"),
                    None => {
                        return Err(CliError::Usage(format!("setting {name:?} is not set")));
                    }
                }
                return Ok(());
            }
            if json {
                let m: serde_json::Map<String, serde_json::Value> = all
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.into())))
                    .collect();
                return output::print_json(&m);
            }
            for (k, v) in all {
                if let Some(v) = v {
                    println!("{k} {v}");
                }
            }
            Ok(())
        }
        ConfigCmd::Set { name, value } => {
            let core = &mut c.config.core;
            match name.as_str() {
                "core.dcos_url" => core.dcos_url = value.trim_end_matches('/').to_owned(),
                "core.dcos_acs_token" => core.dcos_acs_token = Some(value),
                "core.ssl_verify" => core.ssl_verify = value,
                "core.timeout" => {
                    core.timeout = Some(value.parse().map_err(|_| {
                        CliError::Usage(format!(
                            "core.timeout: {value:?} is not a number of seconds"
                        ))
                    })?);
                }
                "cluster.name" => c.config.cluster.name = value,
                _ => {
                    return Err(CliError::Usage(format!(
                        "cannot set {name:?}: settable are {SETTABLE}"
                    )));
                }
            }
            c.save()?;
            eprintln!("[{name}]: changed");
            Ok(())
        }
        ConfigCmd::Unset { name } => {
            match name.as_str() {
                "core.dcos_acs_token" => c.config.core.dcos_acs_token = None,
                "core.timeout" => c.config.core.timeout = None,
                _ => {
                    return Err(CliError::Usage(format!(
                        "cannot unset {name:?}: only core.dcos_acs_token and core.timeout are optional"
                    )));
                }
            }
            c.save()?;
            eprintln!("Removed [{name}]");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn store_attach_find_and_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let d = BasaltDir::at(tmp.path());
        assert!(matches!(d.attached(), Err(CliError::NoCluster)));
        let mut cfg = ClusterConfig::default();
        cfg.core.dcos_url = "https://a.example".into();
        cfg.cluster.name = "alpha".into();
        let a = d.store("id-a", cfg.clone(), Some("PEM")).unwrap();
        assert!(a.config.core.ssl_verify.ends_with(CA_FILE));
        // One cluster: attached implicitly.
        assert_eq!(d.attached().unwrap().id, "id-a");
        cfg.cluster.name = "beta".into();
        d.store("id-b", cfg, None).unwrap();
        assert!(matches!(d.attached(), Err(CliError::NotAttached)));
        d.attach("id-b").unwrap();
        assert_eq!(d.attached().unwrap().name(), "beta");
        d.attach("id-a").unwrap();
        assert_eq!(d.attached().unwrap().name(), "alpha");
        assert_eq!(d.find("beta").unwrap().id, "id-b");
        assert_eq!(d.find("id-b").unwrap().id, "id-b");
        assert!(matches!(
            d.find("id-"),
            Err(CliError::AmbiguousCluster { .. })
        ));
        assert!(matches!(d.find("gamma"), Err(CliError::UnknownCluster(_))));
        let loaded = d.find("alpha").unwrap();
        assert_eq!(loaded.config.core.dcos_url, "https://a.example");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(loaded.dir.join(CONFIG_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_broken_config_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let d = BasaltDir::at(tmp.path());
        let dir = d.clusters_dir().join("x");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CONFIG_FILE), "[core\n").unwrap();
        let e = d.attached().unwrap_err().to_string();
        assert!(e.contains(CONFIG_FILE), "{e}");
    }
}
