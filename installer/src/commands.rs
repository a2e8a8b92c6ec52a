//! The subcommands, each returning a [`Failure`] that knows its exit code.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use basalt_genconf::config::{self, ConfigError};
use basalt_genconf::password;

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

fn config_path(dir: &Path) -> std::path::PathBuf {
    dir.join("config.toml")
}

pub(crate) fn validate(dir: &Path) -> Result<(), Failure> {
    let loaded = config::load(&config_path(dir))?;
    println!(
        "{}: valid ({} master{}, config id {})",
        loaded.path.display(),
        loaded.config.masters.len(),
        if loaded.config.masters.len() == 1 { "" } else { "s" },
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
