//! The unit files in `units/`: `systemd-analyze verify` accepts every one (in a temporary
//! root holding the host's systemd units and stub `/usr/bin/basaltd`, `/usr/bin/etcd`, since
//! verify checks that ExecStart binaries exist), the targets want exactly the units the
//! supervisor reports, and the preset enables only the supervisor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use basalt_genconf::bundle::Role;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../units")
}

fn unit_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(units_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("service" | "target")
            )
        })
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// `Key=` values of a unit file (all sections).
fn values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        println!(
            "SKIPPED systemd_analyze_verify_accepts_every_unit: systemd-analyze is not installed"
        );
        return;
    };
    let host_units = Path::new("/usr/lib/systemd/system");
    if !host_units.is_dir() {
        println!(
            "SKIPPED systemd_analyze_verify_accepts_every_unit: no {}",
            host_units.display()
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let sys = r.join("usr/lib/systemd");
    std::fs::create_dir_all(&sys).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(host_units)
        .arg(&sys)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    // the programs the units run that the image has (systemd-analyze checks they exist)
    for stub in [
        "usr/bin/basaltd",
        "usr/bin/etcd",
        "usr/lib/systemd/systemd-networkd-wait-online",
    ] {
        let p = r.join(stub);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dest = r.join("etc/systemd/system");
    std::fs::create_dir_all(&dest).unwrap();
    let mut names = Vec::new();
    for f in unit_files() {
        let name = f.file_name().unwrap().to_owned();
        std::fs::copy(&f, dest.join(&name)).unwrap();
        names.push(dest.join(&name));
    }
    assert!(names.len() >= 12, "{names:?}");
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .args(&names)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // it prints warnings (unknown keys, bad values) without failing: none allowed
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );

    // and it does fail for a unit whose binary is missing (the check is real)
    std::fs::remove_file(r.join("usr/bin/etcd")).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg(dest.join("basalt-etcd.service"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/usr/bin/etcd"));
}

#[test]
fn components_are_notify_units_run_by_basaltd_with_restart_back_off() {
    for f in unit_files() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let Some(base) = name.strip_suffix(".service") else {
            continue;
        };
        let text = read(&f);
        assert_eq!(values(&text, "Type"), ["notify"], "{name}");
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        if base == "basalt-etcd" {
            assert_eq!(exec, "/usr/bin/etcd");
            assert_eq!(
                values(&text, "EnvironmentFile"),
                ["/run/basalt/etc/etcd.env"]
            );
        } else {
            let component = base.strip_prefix("basalt-").unwrap();
            assert_eq!(exec, format!("/usr/bin/basaltd {component}"), "{name}");
        }
        let restart = values(&text, "Restart");
        assert!(
            restart == ["always"] || (base == "basalt-supervisor" && restart == ["on-failure"]),
            "{name}: {restart:?}"
        );
        assert!(
            !values(&text, "RestartSec").is_empty(),
            "{name}: no back-off"
        );
        if base == "basalt-agent" {
            assert_eq!(values(&text, "Delegate"), ["yes"]);
            assert!(
                values(&text, "ProtectSystem").is_empty(),
                "containers need the host"
            );
        } else {
            assert_eq!(values(&text, "ProtectSystem"), ["strict"], "{name}");
            assert_eq!(values(&text, "NoNewPrivileges"), ["yes"], "{name}");
        }
    }
}

#[test]
fn targets_want_the_units_the_supervisor_reports() {
    for role in Role::ALL {
        let target = basalt_supervisor::role_target(role);
        let text = read(&units_dir().join(target));
        let mut wants = values(&text, "Wants");
        wants.sort();
        let mut expected: Vec<String> = basalt_supervisor::role_units(role)
            .iter()
            .map(|s| s.to_string())
            .collect();
        expected.sort();
        assert_eq!(wants, expected, "{target}");
        for u in &wants {
            assert!(units_dir().join(u).is_file(), "{target} wants missing {u}");
        }
    }
}

#[test]
fn preset_enables_only_the_supervisor() {
    let text = read(&units_dir().join("preset/90-basalt.preset"));
    let rules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules,
        ["enable basalt-supervisor.service", "disable basalt-*"]
    );
    // no component is enabled by an [Install] section of its own
    for f in unit_files() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let has_install = read(&f).contains("[Install]");
        assert_eq!(has_install, name == "basalt-supervisor.service", "{name}");
    }
}
