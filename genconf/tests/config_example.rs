//! The shipped example `genconf/config.toml` loads cleanly; canonical and
//! expanded forms behave.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use basalt_genconf::config::{self, Config, MASK};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")
}

#[test]
fn shipped_example_loads_cleanly() {
    let loaded = match config::load(&example()) {
        Ok(l) => l,
        Err(e) => panic!("example config must load:\n{e}"),
    };
    let c = &loaded.config;
    assert_eq!(c.cluster_name, "basalt-example");
    assert_eq!(c.masters.len(), 1);
    assert_eq!(c.master_quorum(), 1);
    assert_eq!(c.ip_detect, PathBuf::from("ip-detect"));
    assert!(loaded.scripts.ip_detect.contents.starts_with(b"#!"));
    assert_eq!(
        loaded.scripts.ip_detect.path,
        Path::new(env!("CARGO_MANIFEST_DIR")).join("ip-detect")
    );
    assert!(c.auth.enabled);
    assert!(c.proxy.no_proxy.iter().any(|x| x == ".mesos"));
    if std::env::var_os("SHOW_CONFIG").is_some() {
        println!("{}", c.canonical_toml());
    }
}

#[test]
fn example_canonical_round_trips() {
    let c = config::load(&example()).unwrap().config;
    let canon = c.canonical_toml();
    // Our own loader accepts it and gives the same config.
    let again = Config::from_toml_str(&canon, Path::new("canonical.toml")).unwrap();
    assert_eq!(again, c);
    assert_eq!(again.canonical_toml(), canon);
    // So does plain serde (the derives agree with the loader).
    let via_serde: Config = toml::from_str(&canon).unwrap();
    assert_eq!(via_serde, c);
    // Unmasked expanded form reloads to the same config too.
    let expanded = c.expanded_toml(false);
    assert_eq!(
        Config::from_toml_str(&expanded, Path::new("expanded.toml")).unwrap(),
        c
    );
    assert_eq!(c.config_id().len(), 64);
}

#[test]
fn expanded_masks_secrets() {
    let mut c = config::load(&example()).unwrap().config;
    c.proxy.http_proxy = Some("http://bob:hunter2@proxy.example:3128".to_owned());
    let hash = c.auth.superuser_password_hash.clone().unwrap();
    let masked = c.expanded_toml(true);
    assert!(!masked.contains(&hash), "{masked}");
    assert!(!masked.contains("hunter2"), "{masked}");
    assert!(masked.contains(&format!("superuser_password_hash = \"{MASK}\"")));
    assert!(masked.contains("http://bob:********@proxy.example:3128"));
    let plain = c.expanded_toml(false);
    assert!(plain.contains(&hash));
    assert!(plain.contains("hunter2"));
    // Masking changes only the shown text, never the config id.
    assert!(masked.contains(&c.config_id()));
}
