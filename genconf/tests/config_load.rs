//! Loading: several faults in one run, syntax vs. validation errors, the
//! unknown-key hint, and canonical TOML determinism.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_support;

use std::path::Path;

use basalt_genconf::config::{Config, ConfigError};
use config_support::{HASH, ScriptState, base, load_text, locate, problems, write};

#[test]
fn several_faults_are_all_reported_in_one_run_in_document_order() {
    let text = format!(
        r#"cluster_name = "multi"
masters = ["192.0.2.10", "192.0.2.11"]
bootstrap_url = "https://boot.example/"
resolvers = ["192.0.2.11", "198.51.100.3"]
check_time = "sometimes"
mastres = []

[agent]
reserved_memory_mb = -5
public_ports = "1-70000"

[auth]
superuser_uid = "admin"
superuser_password_hash = "{HASH}"
token_lifetime = "forever"

[etcd]
heartbeat_interval_ms = 100
election_timeout_ms = 400
"#
    );
    let found = problems(&text, ScriptState::NotExecutable);
    let got: Vec<(String, usize)> = found.iter().map(|p| (p.path.clone(), p.line)).collect();
    let want: Vec<(&str, usize)> = vec![
        ("ip_detect", 1),
        ("masters", 2),
        ("bootstrap_url", 3),
        ("resolvers[0]", 4),
        ("resolvers[1]", 4),
        ("check_time", 5),
        ("mastres", 6),
        ("agent.reserved_memory_mb", 9),
        ("agent.public_ports", 10),
        ("auth.token_lifetime", 15),
        ("etcd.election_timeout_ms", 19),
    ];
    let want: Vec<(String, usize)> = want.into_iter().map(|(p, l)| (p.to_owned(), l)).collect();
    assert_eq!(got, want, "all problems:\n{found:#?}");
    // Spot-check messages and the rendered form.
    let rendered: Vec<String> = found.iter().map(|p| p.display_in("config.toml")).collect();
    assert!(
        rendered.contains(
            &"config.toml:2:11: masters: 2 entries; a quorum needs 1, 3, 5 or 7".to_owned()
        ),
        "{rendered:#?}"
    );
    assert!(
        rendered.contains(&"config.toml:3:17: bootstrap_url: must not end with '/'".to_owned()),
        "{rendered:#?}"
    );
    assert!(rendered.iter().any(|r| {
        r.starts_with("config.toml:6:1: mastres: unknown key `mastres`; did you mean `masters`?")
    }));
}

#[test]
fn the_error_display_lists_every_problem_with_file_line_and_column() {
    let text = base().replace(
        r#"masters = ["192.0.2.10"]"#,
        r#"masters = ["192.0.2.10", "192.0.2.10"]"#,
    );
    let w = write(&text, ScriptState::Good);
    let err = basalt_genconf::config::load(&w.path).unwrap_err();
    let shown = err.to_string();
    let file = w.path.display().to_string();
    assert!(
        shown.starts_with(&format!("{file} is invalid (2 problems):")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "{file}:2:11: masters: 2 entries; a quorum needs 1, 3, 5 or 7"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "{file}:2:26: masters[1]: 192.0.2.10 is listed twice (also masters[0])"
        )),
        "{shown}"
    );
}

#[test]
fn unknown_key_hint_names_the_closest_key() {
    let text = base().replace("masters =", "mastres =");
    let found = problems(&text, ScriptState::Good);
    let p = found
        .iter()
        .find(|p| p.path == "mastres")
        .expect("mastres reported");
    assert_eq!(p.message, "unknown key `mastres`; did you mean `masters`?");
    assert_eq!((p.line, p.column), locate(&text, "mastres", 0));
    // The missing real key is reported as well, at 1:1.
    assert!(
        found
            .iter()
            .any(|p| p.path == "masters" && p.line == 1 && p.message.starts_with("required"))
    );
    // Hints work inside tables too, including inline and dotted forms.
    for text in [
        format!("{}\n[etcd]\nheartbeat_intervall_ms = 100\n", base()),
        base().replace(
            "resolvers = [\"203.0.113.53\"]",
            "resolvers = [\"203.0.113.53\"]\netcd = { heartbeat_intervall_ms = 100 }",
        ),
        base().replace(
            "resolvers = [\"203.0.113.53\"]",
            "resolvers = [\"203.0.113.53\"]\netcd.heartbeat_intervall_ms = 100",
        ),
    ] {
        let found = problems(&text, ScriptState::Good);
        let p = found
            .iter()
            .find(|p| p.path == "etcd.heartbeat_intervall_ms")
            .unwrap_or_else(|| panic!("{found:#?}\n{text}"));
        assert_eq!(
            p.message,
            "unknown key `heartbeat_intervall_ms`; did you mean `etcd.heartbeat_interval_ms`?"
        );
        assert_eq!(
            (p.line, p.column),
            locate(&text, "heartbeat_intervall_ms", 0),
            "{text}"
        );
    }
}

#[test]
fn syntax_errors_are_separate_from_validation_errors() {
    let text = base().replace("cluster_name = \"t\"", "cluster_name = \"t");
    let w = write(&text, ScriptState::Good);
    match basalt_genconf::config::load(&w.path) {
        Err(ConfigError::Syntax { line, message, .. }) => {
            assert_eq!(line, 1, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    // A duplicate key is a TOML error too, with its position.
    let text = base().replacen("masters = [", "cluster_name = \"again\"\nmasters = [", 1);
    let w = write(&text, ScriptState::Good);
    match basalt_genconf::config::load(&w.path) {
        Err(ConfigError::Syntax { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn unreadable_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    match basalt_genconf::config::load(&missing) {
        Err(e @ ConfigError::Read { .. }) => assert!(e.to_string().contains("nope.toml")),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn canonical_toml_ignores_key_order_comments_and_layout() {
    let a = format!(
        r#"# first layout
cluster_name = "same"
masters = ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
bootstrap_url = "http://192.0.2.5"
resolvers = ["203.0.113.53:53", "[2001:db8::53]:5353"]
dns_search = ["Corp.Example."]

[dns_forward_zones]
"b.example" = ["203.0.113.61"]
"a.example" = ["203.0.113.60"]

[agent.attributes]
zone = "z1"
rack = 12

[auth]
superuser_uid = "admin"
superuser_password_hash = "{HASH}"
token_lifetime = "120h"

[proxy]
no_proxy = ["internal.example", "localhost"]
"#
    );
    let b = format!(
        r#"proxy = {{ no_proxy = ["internal.example"] }}
auth.token_lifetime = "5d"   # same as 120h
auth.superuser_password_hash = "{HASH}"
auth.superuser_uid = "admin"
resolvers = [
  "203.0.113.53",        # port 53 is implied
  "[2001:db8::53]:5353",
]
dns_search = ["corp.example"]
bootstrap_url = "http://192.0.2.5"
masters = ["192.0.2.10", "192.0.2.11", "192.0.2.12"]
cluster_name = "same"
check_time = true
dns_forward_zones = {{ "a.example" = ["203.0.113.60"], "b.example" = ["203.0.113.61:53"] }}

[agent]
attributes = {{ rack = "12", zone = "z1" }}
reserved_memory_mb = 1024
"#
    );
    let ca = load_text(&a).unwrap().config;
    let cb = load_text(&b).unwrap().config;
    assert_eq!(ca, cb);
    assert_eq!(ca.canonical_toml(), cb.canonical_toml());
    assert_eq!(ca.config_id(), cb.config_id());
    // Deterministic across calls, and a different meaning gives a different id.
    assert_eq!(ca.canonical_toml(), ca.canonical_toml());
    let c = load_text(&a.replace("zone = \"z1\"", "zone = \"z2\""))
        .unwrap()
        .config;
    assert_ne!(c.config_id(), ca.config_id());
    // The canonical text is itself a valid config with the same meaning.
    let again = Config::from_toml_str(&ca.canonical_toml(), Path::new("canonical.toml")).unwrap();
    assert_eq!(again, ca);
    assert_eq!(ca.master_quorum(), 2);
    assert_eq!(
        ca.proxy.no_proxy,
        [
            "internal.example",
            ".mesos",
            ".thisdcos.directory",
            ".dcos.directory",
            "127.0.0.1",
            "localhost"
        ]
    );
}

#[test]
fn auth_can_be_disabled_and_public_key_is_accepted() {
    let text = base()
        .replace("[auth]\n", "[auth]\nenabled = false\n")
        .replace("superuser_uid = \"admin\"\n", "")
        .replace(&format!("superuser_password_hash = \"{HASH}\"\n"), "");
    let c = load_text(&text).unwrap().config;
    assert!(!c.auth.enabled);
    let text = base().replace(
        &format!("superuser_password_hash = \"{HASH}\"\n"),
        "superuser_public_key = \"\"\"\n-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n\"\"\"\n",
    );
    let c = load_text(&text).unwrap().config;
    assert!(
        c.auth
            .superuser_public_key
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

#[test]
fn offline_cluster_may_have_no_resolvers_and_scripts_are_read() {
    let text = base().replace("resolvers = [\"203.0.113.53\"]", "resolvers = []");
    let loaded = load_text(&text).unwrap();
    assert!(loaded.config.resolvers.is_empty());
    assert_eq!(
        loaded.scripts.ip_detect.contents,
        b"#!/bin/sh\necho 192.0.2.10\n"
    );
    assert!(loaded.scripts.ip_detect_public.is_none());
}
