//! Helpers shared by the `config_*` tests: write a config (and its ip-detect
//! script) into a temporary folder and load it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use basalt_genconf::config::{self, ConfigError, LoadedConfig, Problem};

/// argon2id hash of "basalt-example" (same as the shipped example).
pub const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmFzYWx0LWV4YW1wbGUtc2FsdA$jvbFvsfMsnGoh+pFrjm5R5pxuPEtpTu8krgq4/g2FAQ";

/// A valid minimal config.
pub fn base() -> String {
    format!(
        r#"cluster_name = "t"
masters = ["192.0.2.10"]
bootstrap_url = "http://192.0.2.5:8080"
resolvers = ["203.0.113.53"]

[auth]
superuser_uid = "admin"
superuser_password_hash = "{HASH}"
"#
    )
}

/// What state to leave the `ip-detect` script in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptState {
    Good,
    Missing,
    NotExecutable,
    NoShebang,
    Directory,
}

pub struct Written {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn write(text: &str, script: ScriptState) -> Written {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let ip = dir.path().join("ip-detect");
    match script {
        ScriptState::Missing => {}
        ScriptState::Directory => std::fs::create_dir(&ip).unwrap(),
        s => {
            let body = if s == ScriptState::NoShebang {
                "echo 192.0.2.10\n"
            } else {
                "#!/bin/sh\necho 192.0.2.10\n"
            };
            std::fs::write(&ip, body).unwrap();
            let mode = if s == ScriptState::NotExecutable {
                0o644
            } else {
                0o755
            };
            std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    Written { dir, path }
}

pub fn load_text(text: &str) -> Result<LoadedConfig, ConfigError> {
    let w = write(text, ScriptState::Good);
    config::load(&w.path)
}

/// The problems of an invalid config; panics on any other outcome.
pub fn problems(text: &str, script: ScriptState) -> Vec<Problem> {
    let w = write(text, script);
    match config::load(&w.path) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("expected Invalid, got {other}\n--- config ---\n{text}"),
        Ok(_) => panic!("expected Invalid, config loaded\n--- config ---\n{text}"),
    }
}

/// 1-based (line, column) of the `nth` (0-based) occurrence of `needle`.
pub fn locate(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("needle {needle:?} #{nth} not in config:\n{text}"))
        .0;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}
