//! Agent attributes and the Mesos attribute text grammar they must fit.
//!
//! Mesos (`docs/attributes-resources.md`): `attributes : attribute (";" attribute)*`,
//! `attribute : text ":" (scalar | range | text)`, `text : [a-zA-Z0-9_/.-]`. Detected
//! values are made to fit ([`sanitize_text`]: every other character becomes `_`);
//! operator values are validated and rejected with the attribute's name.
//!
//! Detected attributes (operator attributes with the same name replace them):
//!
//! | name | value | when |
//! |---|---|---|
//! | `disk_type` | `ssd` / `hdd` | type of the disk under the work dir is known |
//! | `disk_type_<mount>` | `ssd` / `hdd` | per MOUNT disk, `<mount>` the mount point with `/` → `_` (`/dcos/volume0` → `disk_type_dcos_volume0`) |
//! | `gpu_model` | e.g. `NVIDIA_A100-SXM4-40GB` (distinct models `/`-joined) | NVIDIA GPUs with a loaded driver |
//! | `public_ip` | `true` | public agents (as DC/OS' `mesos-slave-public`) |
//!
//! The fault domain is not an attribute: it is the agent's `domain` (Mesos `DomainInfo`),
//! which schedulers read as `@region` / `@zone`.

/// Whether `c` may appear in a Mesos attribute text value or name.
fn is_text_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-')
}

/// Replaces every character outside `[a-zA-Z0-9_/.-]` with `_`.
pub fn sanitize_text(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| if is_text_char(c) { c } else { '_' })
        .collect()
}

/// Attribute name for the disk type of a MOUNT disk at `mount_point`.
pub fn mount_disk_type_name(mount_point: &std::path::Path) -> String {
    let s = mount_point.to_string_lossy();
    format!(
        "disk_type_{}",
        sanitize_text(s.trim_start_matches('/')).replace('/', "_")
    )
}

/// Checks an operator attribute; the error says what is wrong (the caller names the field).
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty attribute name".into());
    }
    if let Some(c) = name.chars().find(|c| !is_text_char(*c)) {
        return Err(format!("name contains {c:?}; allowed are [a-zA-Z0-9_/.-]"));
    }
    if value.is_empty() {
        return Err("empty value".into());
    }
    if value.parse::<f64>().is_ok_and(f64::is_finite) {
        return Ok(());
    }
    if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        let ok = inner.split(',').all(|r| {
            let (a, b) = r.trim().split_once('-').unwrap_or((r.trim(), r.trim()));
            matches!((a.trim().parse::<u64>(), b.trim().parse::<u64>()), (Ok(a), Ok(b)) if a <= b)
        });
        return if ok {
            Ok(())
        } else {
            Err(format!("{value:?} is not a range value like [1-10,20-30]"))
        };
    }
    if let Some(c) = value.chars().find(|c| !is_text_char(*c)) {
        return Err(format!(
            "value {value:?} contains {c:?}; a text value allows only [a-zA-Z0-9_/.-]"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing_and_names() {
        assert_eq!(sanitize_text(" Tesla T4 "), "Tesla_T4");
        assert_eq!(sanitize_text("a:b;c"), "a_b_c");
        assert_eq!(
            mount_disk_type_name(std::path::Path::new("/dcos/volume0")),
            "disk_type_dcos_volume0"
        );
    }

    #[test]
    fn operator_values() {
        assert!(validate("rack", "r1").is_ok());
        assert!(validate("weight", "2.5").is_ok());
        assert!(validate("slots", "[1-10,20-30]").is_ok());
        assert!(validate("os", "debian/12").is_ok());
        assert!(
            validate("", "x")
                .unwrap_err()
                .contains("empty attribute name")
        );
        assert!(validate("ra ck", "x").unwrap_err().contains("' '"));
        assert!(validate("rack", "").unwrap_err().contains("empty value"));
        assert!(validate("rack", "a;b").unwrap_err().contains("';'"));
        assert!(validate("rack", "a:b").unwrap_err().contains("':'"));
        assert!(
            validate("slots", "[5-1]")
                .unwrap_err()
                .contains("range value")
        );
    }
}
