//! `genconf/DEFAULTS.md` is the one documented list of keys and defaults; this
//! test parses its table and compares it with the code, so they cannot drift.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_support;

use std::collections::BTreeMap;
use std::path::Path;

use basalt_genconf::validate::{REQUIRED, leaf_keys};

struct Row {
    key: String,
    default: String,
}

fn rows() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("DEFAULTS.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = line.split(" | ").collect();
        assert!(cells.len() >= 3, "malformed DEFAULTS.md row: {line}");
        let key = rest.split('`').next().unwrap().to_owned();
        out.push(Row {
            key,
            default: cells[1].trim().to_owned(),
        });
    }
    out
}

/// Value at a dotted path (`agent.reserved_memory_mb`) of a TOML table.
fn lookup<'v>(v: &'v toml::Value, path: &str) -> Option<&'v toml::Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

#[test]
fn every_schema_key_has_exactly_one_row() {
    let rows = rows();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *count.entry(r.key.clone()).or_default() += 1;
    }
    let schema = leaf_keys();
    for k in &schema {
        assert_eq!(
            count.get(k),
            Some(&1),
            "DEFAULTS.md must have one row for `{k}`"
        );
    }
    for k in count.keys() {
        assert!(
            schema.contains(k),
            "DEFAULTS.md documents `{k}`, which is not in the schema"
        );
    }
}

#[test]
fn documented_defaults_equal_the_code() {
    // A config with only what has no default: what comes out is the defaults.
    let minimal = config_support::base();
    let config = config_support::load_text(&minimal).unwrap().config;
    let expanded: toml::Value = toml::from_str(&config.canonical_toml()).unwrap();
    let written: toml::Value = toml::from_str(&minimal).unwrap();
    let mut compared = 0;
    for row in rows() {
        let d = row.default.as_str();
        if d == "*required*" {
            assert!(
                REQUIRED.contains(&row.key.as_str()),
                "`{}` documented as required but the code does not require it",
                row.key
            );
            continue;
        }
        assert!(
            !REQUIRED.contains(&row.key.as_str()),
            "`{}` is required in code but DEFAULTS.md gives {d}",
            row.key
        );
        if lookup(&written, &row.key).is_some() {
            // Set by the minimal config itself (auth credentials): nothing to compare.
            assert!(
                d.starts_with('*'),
                "`{}`: minimal config sets it, expected a *note* default, got {d}",
                row.key
            );
            continue;
        }
        if d == "*unset*" {
            assert!(
                lookup(&expanded, &row.key).is_none(),
                "`{}` documented unset but defaults to {:?}",
                row.key,
                lookup(&expanded, &row.key)
            );
            continue;
        }
        let actual = lookup(&expanded, &row.key)
            .unwrap_or_else(|| panic!("`{}` has no value in the expanded config", row.key));
        let documented: toml::Value = if d == "*the installer's version*" {
            toml::Value::String(env!("CARGO_PKG_VERSION").to_owned())
        } else {
            let inner = d
                .strip_prefix('`')
                .and_then(|x| x.strip_suffix('`'))
                .unwrap_or_else(|| {
                    panic!(
                        "`{}`: default {d:?} is neither a `TOML value` nor a known *note*",
                        row.key
                    )
                });
            let doc: toml::Value = toml::from_str(&format!("v = {inner}"))
                .unwrap_or_else(|e| panic!("`{}`: default {inner} is not TOML: {e}", row.key));
            doc.get("v").cloned().unwrap()
        };
        assert_eq!(
            actual, &documented,
            "`{}`: code default differs from DEFAULTS.md",
            row.key
        );
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} defaults compared");
}

#[test]
fn required_keys_really_are_required() {
    for key in REQUIRED {
        let text: String = config_support::base()
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .map(|l| format!("{l}\n"))
            .collect();
        let found = config_support::problems(&text, config_support::ScriptState::Good);
        assert!(
            found
                .iter()
                .any(|p| p.path == *key && p.message.starts_with("required")),
            "{key}: {found:?}"
        );
    }
}
