//! Shared helpers for the bundle and secrets tests: configs built in code and
//! a secrets folder in a temporary directory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use basalt_genconf::config::{Config, LoadedConfig, Script, Scripts};

/// An argon2 PHC hash accepted by validation (password "basalt-example").
pub const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmFzYWx0LWV4YW1wbGUtc2FsdA$jvbFvsfMsnGoh+pFrjm5R5pxuPEtpTu8krgq4/g2FAQ";

pub const IP_DETECT: &str = "#!/bin/sh\n# test ip-detect\nip route get 192.0.2.10 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'\n";
pub const IP_DETECT_PUBLIC: &str = "#!/bin/sh\necho 203.0.113.7\n";
pub const FAULT_DOMAIN: &str = "#!/bin/sh\necho '{\"fault_domain\":{\"region\":{\"name\":\"r1\"},\"zone\":{\"name\":\"z1\"}}}'\n";

/// Config TOML text for `masters`.
pub fn config_text(masters: &[&str]) -> String {
    let list: Vec<String> = masters.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        r#"cluster_name = "bundle-test"
masters = [{}]
bootstrap_url = "http://192.0.2.5:8080"
ip_detect = "ip-detect"
ip_detect_public = "ip-detect-public"
fault_domain_detect = "fault-domain-detect"
resolvers = ["203.0.113.53", "203.0.113.54:5353"]
dns_search = ["corp.example", "example.org"]

[agent]
reserved_memory_mb = 2048

[agent.attributes]
rack = "r1"
disk = "ssd"

[auth]
enabled = true
superuser_uid = "admin"
superuser_password_hash = "{PASSWORD_HASH}"

[proxy]
http_proxy = "http://proxy.example:3128"

[etcd]
heartbeat_interval_ms = 150
election_timeout_ms = 1500
"#,
        list.join(", ")
    )
}

/// A validated config for `masters` (parsed from [`config_text`]).
pub fn config(masters: &[&str]) -> Config {
    Config::from_toml_str(&config_text(masters), Path::new("test-config.toml"))
        .unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

fn script(name: &str, contents: &str) -> Script {
    Script {
        configured: PathBuf::from(name),
        path: PathBuf::from("/nonexistent").join(name),
        contents: contents.as_bytes().to_vec(),
    }
}

/// A loaded config with in-memory scripts.
pub fn loaded(masters: &[&str]) -> LoadedConfig {
    LoadedConfig {
        config: config(masters),
        path: PathBuf::from("/nonexistent/config.toml"),
        dir: PathBuf::from("/nonexistent"),
        scripts: Scripts {
            ip_detect: script("ip-detect", IP_DETECT),
            ip_detect_public: Some(script("ip-detect-public", IP_DETECT_PUBLIC)),
            fault_domain_detect: Some(script("fault-domain-detect", FAULT_DOMAIN)),
        },
    }
}

/// Writes a genconf folder (config.toml + scripts) into `dir`.
pub fn write_genconf(dir: &Path, masters: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.toml"), config_text(masters)).unwrap();
    for (name, body) in [
        ("ip-detect", IP_DETECT),
        ("ip-detect-public", IP_DETECT_PUBLIC),
        ("fault-domain-detect", FAULT_DOMAIN),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Every file under `dir` (relative path → bytes).
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Mode bits of `path`.
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
