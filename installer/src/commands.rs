//! The subcommands, each returning a [`Failure`] that knows its exit code.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use basalt_genconf::bundle::Role;
use basalt_genconf::config::{self, ConfigError};
use basalt_genconf::generate::{self, CONFIG_FILE, GenerateError};
use basalt_genconf::password;
use basalt_genconf::secrets::{self, RotateTarget, SecretsError};
use basalt_genconf::verify::{self, ClusterPublicKey, VerifyError};

/// A failed command: the whole error chain, printed once, and its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Exit 3: the configuration is invalid.
    Config(String),
    /// Exit 4: a bundle failed verification.
    Verify(String),
    /// Exit 5: I/O.
    Io(String),
    /// Exit 1: anything else.
    Other(String),
}

impl Failure {
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Other(_) => 1,
            Failure::Config(_) => 3,
            Failure::Verify(_) => 4,
            Failure::Io(_) => 5,
        }
    }

    pub(crate) fn message(&self) -> &str {
        match self {
            Failure::Config(m) | Failure::Verify(m) | Failure::Io(m) | Failure::Other(m) => m,
        }
    }
}

/// The error and its sources, joined: `outer: inner: innermost`, without repeats.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Read { .. } => Failure::Io(chain(&e)),
            _ => Failure::Config(chain(&e)),
        }
    }
}

impl From<SecretsError> for Failure {
    fn from(e: SecretsError) -> Self {
        match e {
            SecretsError::Io { .. } => Failure::Io(chain(&e)),
            _ => Failure::Other(chain(&e)),
        }
    }
}

impl From<GenerateError> for Failure {
    fn from(e: GenerateError) -> Self {
        match e {
            GenerateError::Config(c) => c.into(),
            GenerateError::Secrets(s) => s.into(),
            GenerateError::Io { .. } => Failure::Io(chain(&e)),
            _ => Failure::Other(chain(&e)),
        }
    }
}

impl From<VerifyError> for Failure {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Io(_) => Failure::Io(chain(&e)),
            _ => Failure::Verify(chain(&e)),
        }
    }
}

pub(crate) fn config_path(dir: &Path) -> std::path::PathBuf {
    dir.join(CONFIG_FILE)
}

/// `genconf [--rotate WHAT]...`: rotations first (each announced with what it
/// breaks), then the serve folder.
pub(crate) fn genconf(dir: &Path, rotate: &[String]) -> Result<(), Failure> {
    let targets = rotate
        .iter()
        .map(|name| name.parse::<RotateTarget>().map_err(Failure::Config))
        .collect::<Result<Vec<_>, _>>()?;
    if !targets.is_empty() {
        // Rotating needs a valid config (leaf certificates name the masters).
        let loaded = config::load(&config_path(dir))?;
        for target in targets {
            eprintln!("rotating {}: {}", target.name(), target.breaks());
            let rotation = secrets::rotate(&secrets::secrets_dir(dir), &loaded.config, target)?;
            for file in &rotation.replaced {
                eprintln!("  replaced secrets/{file}");
            }
        }
    }
    let out = dir.join("serve");
    let generated = generate::generate(dir, &out)?;
    for event in &generated.secret_events {
        eprintln!("secrets: {event}");
    }
    print!("{}", generated.summary);
    Ok(())
}

/// `verify <bundle>`: the node's own check, run by hand.
pub(crate) fn verify(
    dir: &Path,
    bundle: &Path,
    role: Option<Role>,
    public_key: Option<&Path>,
    cluster_id: Option<&str>,
) -> Result<(), Failure> {
    let key_path =
        public_key.map_or_else(|| dir.join("serve").join("cluster.pub"), Path::to_path_buf);
    let pem = std::fs::read_to_string(&key_path).map_err(|e| {
        Failure::Io(format!(
            "cannot read the cluster public key {}: {e}",
            key_path.display()
        ))
    })?;
    let key = ClusterPublicKey::from_pem(&pem)
        .map_err(|e| Failure::Verify(format!("{}: {}", key_path.display(), chain(&e))))?;
    let file = std::fs::File::open(bundle)
        .map_err(|e| Failure::Io(format!("cannot read {}: {e}", bundle.display())))?;
    let verified =
        verify::verify_bundle_reader(file, &key, role, cluster_id).map_err(
            |e| match Failure::from(e) {
                Failure::Verify(m) => Failure::Verify(format!("{}: {m}", bundle.display())),
                other => other,
            },
        )?;
    println!(
        "{}: OK (role {}, cluster {}, config {}, {} files, key {})",
        bundle.display(),
        verified.role(),
        verified.cluster_id(),
        verified.config_id(),
        verified.files.len(),
        key.fingerprint()
    );
    Ok(())
}

pub(crate) fn validate(dir: &Path) -> Result<(), Failure> {
    let loaded = config::load(&config_path(dir))?;
    println!(
        "{}: valid ({} master{}, config id {})",
        loaded.path.display(),
        loaded.config.masters.len(),
        if loaded.config.masters.len() == 1 {
            ""
        } else {
            "s"
        },
        loaded.config.config_id()
    );
    Ok(())
}

pub(crate) fn show_config(dir: &Path, expanded: bool) -> Result<(), Failure> {
    let path = config_path(dir);
    if expanded {
        let loaded = config::load(&path)?;
        print!("{}", loaded.config.expanded_toml(true));
    } else {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::Io(format!("cannot read {}: {e}", path.display())))?;
        print!("{text}");
    }
    Ok(())
}

pub(crate) fn hash_password() -> Result<(), Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Io(format!("cannot read the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']);
    let hash = password::hash_password(password).map_err(|e| Failure::Other(chain(&e)))?;
    println!("{hash}");
    Ok(())
}
