//! Table of bad configs: each must be rejected with the right TOML path,
//! message and position (line and column of the offending key or value, or
//! the table header / 1:1 for missing keys).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config_support;

use config_support::{HASH, ScriptState, base, locate, problems};

/// Where the problem must point.
#[derive(Clone, Copy, Debug)]
enum Loc {
    /// 1:1 (a missing key of the root or of an absent table).
    Start,
    /// First occurrence of this text.
    At(&'static str),
    /// `n`-th (0-based) occurrence of this text.
    Nth(&'static str, usize),
}

struct Case {
    name: &'static str,
    toml: String,
    script: ScriptState,
    path: &'static str,
    message: &'static str,
    loc: Loc,
}

fn with(pairs: &[(&str, &str)]) -> String {
    let mut s = base();
    for (from, to) in pairs {
        assert!(s.contains(from), "base config lacks {from:?}");
        s = s.replacen(from, to, 1);
    }
    s
}

fn plus(extra: &str) -> String {
    format!("{}\n{extra}\n", base())
}

fn case(
    name: &'static str,
    toml: String,
    path: &'static str,
    message: &'static str,
    loc: Loc,
) -> Case {
    Case {
        name,
        toml,
        script: ScriptState::Good,
        path,
        message,
        loc,
    }
}

const MASTERS: &str = r#"masters = ["192.0.2.10"]"#;
const RESOLVERS: &str = r#"resolvers = ["203.0.113.53"]"#;
const URL: &str = r#"bootstrap_url = "http://192.0.2.5:8080""#;

fn cases() -> Vec<Case> {
    let hash_line = format!("superuser_password_hash = \"{HASH}\"\n");
    vec![
        // --- masters ---
        case(
            "two masters",
            with(&[(MASTERS, r#"masters = ["192.0.2.10", "192.0.2.11"]"#)]),
            "masters",
            "2 entries; a quorum needs 1, 3, 5 or 7",
            Loc::At(r#"["192.0.2.10", "#),
        ),
        case(
            "no masters",
            with(&[(MASTERS, "masters = []")]),
            "masters",
            "0 entries; a quorum needs 1, 3, 5 or 7",
            Loc::At("[]"),
        ),
        case(
            "duplicate master",
            with(&[(
                MASTERS,
                r#"masters = ["192.0.2.10", "192.0.2.11", "192.0.2.10"]"#,
            )]),
            "masters[2]",
            "192.0.2.10 is listed twice (also masters[0])",
            Loc::Nth(r#""192.0.2.10""#, 1),
        ),
        case(
            "master not an IP",
            with(&[(MASTERS, r#"masters = ["master-1"]"#)]),
            "masters[0]",
            "`master-1` is not an IPv4 address",
            Loc::At(r#""master-1""#),
        ),
        case(
            "master IPv6",
            with(&[(MASTERS, r#"masters = ["2001:db8::1"]"#)]),
            "masters[0]",
            "2001:db8::1 is IPv6; masters must be IPv4",
            Loc::At(r#""2001:db8::1""#),
        ),
        case(
            "master loopback",
            with(&[(MASTERS, r#"masters = ["127.0.0.1"]"#)]),
            "masters[0]",
            "127.0.0.1 is a loopback address; other nodes cannot reach it",
            Loc::At(r#""127.0.0.1""#),
        ),
        case(
            "master on node-local DNS",
            with(&[(MASTERS, r#"masters = ["198.51.100.2"]"#)]),
            "masters[0]",
            "198.51.100.2 is a node-local DNS address",
            Loc::At(r#""198.51.100.2""#),
        ),
        case(
            "masters is a string",
            with(&[(MASTERS, r#"masters = "192.0.2.10""#)]),
            "masters",
            "expected an array of IPv4 address strings, found a string",
            Loc::At(r#""192.0.2.10""#),
        ),
        case(
            "master is an integer",
            with(&[(MASTERS, "masters = [3232235786]")]),
            "masters[0]",
            "expected a string, found an integer",
            Loc::At("3232235786"),
        ),
        case(
            "master inside vip_range",
            with(&[(
                RESOLVERS,
                "resolvers = [\"203.0.113.53\"]\nvip_range = \"192.0.2.0/24\"",
            )]),
            "masters[0]",
            "192.0.2.10 is inside vip_range 192.0.2.0/24; VIPs must not overlap masters",
            Loc::At(r#""192.0.2.10""#),
        ),
        // --- required keys ---
        case(
            "missing cluster_name",
            with(&[("cluster_name = \"t\"\n", "")]),
            "cluster_name",
            "required; name this cluster",
            Loc::Start,
        ),
        case(
            "empty cluster_name",
            with(&[("cluster_name = \"t\"", "cluster_name = \"  \"")]),
            "cluster_name",
            "must not be empty",
            Loc::At("\"  \""),
        ),
        // --- bootstrap_url ---
        case(
            "bootstrap_url trailing slash",
            with(&[(URL, r#"bootstrap_url = "http://192.0.2.5:8080/""#)]),
            "bootstrap_url",
            "must not end with '/'",
            Loc::At(r#""http://"#),
        ),
        case(
            "bootstrap_url ftp",
            with(&[(URL, r#"bootstrap_url = "ftp://192.0.2.5""#)]),
            "bootstrap_url",
            "scheme `ftp://` is not supported; use `http://`, `https://`, `file://`",
            Loc::At(r#""ftp"#),
        ),
        case(
            "bootstrap_url relative file",
            with(&[(URL, r#"bootstrap_url = "file://srv/basalt""#)]),
            "bootstrap_url",
            "a file URL needs an absolute path",
            Loc::At(r#""file"#),
        ),
        case(
            "bootstrap_url no host",
            with(&[(URL, r#"bootstrap_url = "https://:8443""#)]),
            "bootstrap_url",
            "`https://:8443` has no host",
            Loc::At(r#""https"#),
        ),
        // --- resolvers ---
        case(
            "resolver is a master",
            with(&[(RESOLVERS, r#"resolvers = ["203.0.113.53", "192.0.2.10"]"#)]),
            "resolvers[1]",
            "192.0.2.10 is a master (masters[0]); a resolver must be outside the cluster",
            Loc::Nth(r#""192.0.2.10""#, 1),
        ),
        case(
            "resolver on node-local DNS",
            with(&[(RESOLVERS, r#"resolvers = ["198.51.100.1:53"]"#)]),
            "resolvers[0]",
            "198.51.100.1 is a node-local DNS address (198.51.100.1–3); pointing there would loop back",
            Loc::At(r#""198.51.100.1:53""#),
        ),
        case(
            "resolver loopback",
            with(&[(RESOLVERS, r#"resolvers = ["127.0.0.53"]"#)]),
            "resolvers[0]",
            "127.0.0.53 is a loopback address",
            Loc::At(r#""127.0.0.53""#),
        ),
        case(
            "resolver hostname",
            with(&[(RESOLVERS, r#"resolvers = ["dns.example"]"#)]),
            "resolvers[0]",
            "`dns.example` is not an IP address or ip:port",
            Loc::At(r#""dns.example""#),
        ),
        case(
            "resolver port 0",
            with(&[(RESOLVERS, r#"resolvers = ["203.0.113.53:0"]"#)]),
            "resolvers[0]",
            "port 0 is not a valid DNS port",
            Loc::At(r#""203.0.113.53:0""#),
        ),
        case(
            "duplicate resolver",
            with(&[(
                RESOLVERS,
                r#"resolvers = ["203.0.113.53", "203.0.113.53:53"]"#,
            )]),
            "resolvers[1]",
            "203.0.113.53 is listed twice (also resolvers[0])",
            Loc::At(r#""203.0.113.53:53""#),
        ),
        case(
            "resolver inside default vip_range",
            with(&[(RESOLVERS, r#"resolvers = ["11.1.1.1"]"#)]),
            "resolvers[0]",
            "11.1.1.1 is inside vip_range 11.0.0.0/8 (the default)",
            Loc::At(r#""11.1.1.1""#),
        ),
        case(
            "missing resolvers",
            with(&[(RESOLVERS, "")]),
            "resolvers",
            "required; list upstream DNS servers",
            Loc::Start,
        ),
        // --- vip_range ---
        case(
            "vip_range host bits",
            with(&[(
                RESOLVERS,
                "resolvers = [\"203.0.113.53\"]\nvip_range = \"11.0.0.1/8\"",
            )]),
            "vip_range",
            "11.0.0.1/8 has host bits set; did you mean 11.0.0.0/8?",
            Loc::At(r#""11.0.0.1/8""#),
        ),
        case(
            "vip_range not CIDR",
            with(&[(
                RESOLVERS,
                "resolvers = [\"203.0.113.53\"]\nvip_range = \"eleven\"",
            )]),
            "vip_range",
            "`eleven` is not an IPv4 CIDR range",
            Loc::At(r#""eleven""#),
        ),
        case(
            "vip_range overlaps node-local DNS",
            with(&[(
                RESOLVERS,
                "resolvers = [\"203.0.113.53\"]\nvip_range = \"198.51.0.0/16\"",
            )]),
            "vip_range",
            "198.51.0.0/16 overlaps the node-local DNS network (198.51.100.0/24)",
            Loc::At(r#""198.51.0.0/16""#),
        ),
        // --- unknown keys ---
        case(
            "typo mastres",
            with(&[("masters =", "mastres =")]),
            "mastres",
            "unknown key `mastres`; did you mean `masters`?",
            Loc::At("mastres"),
        ),
        case(
            "typo in [auth]",
            with(&[("superuser_uid", "superuser_id")]),
            "auth.superuser_id",
            "unknown key `superuser_id`; did you mean `auth.superuser_uid`?",
            Loc::At("superuser_id"),
        ),
        case(
            "key in wrong table",
            with(&[(
                RESOLVERS,
                "resolvers = [\"203.0.113.53\"]\nheartbeat_interval_ms = 50",
            )]),
            "heartbeat_interval_ms",
            "did you mean `etcd.heartbeat_interval_ms`?",
            Loc::At("heartbeat_interval_ms"),
        ),
        case(
            "DC/OS name",
            with(&[("masters =", "master_list =")]),
            "master_list",
            "unknown key `master_list`; did you mean `masters`?",
            Loc::At("master_list"),
        ),
        case(
            "unknown key no hint",
            plus("[image]\nflavour_of_the_month = 3"),
            "image.flavour_of_the_month",
            "known keys here: `channel`, `version`",
            Loc::At("flavour_of_the_month"),
        ),
        // --- types ---
        case(
            "check_time string",
            with(&[(
                RESOLVERS,
                "resolvers = [\"203.0.113.53\"]\ncheck_time = \"yes\"",
            )]),
            "check_time",
            "expected a boolean, found a string",
            Loc::At("\"yes\""),
        ),
        case(
            "reserved memory string",
            plus("[agent]\nreserved_memory_mb = \"1024\""),
            "agent.reserved_memory_mb",
            "expected an integer, found a string",
            Loc::At("\"1024\""),
        ),
        case(
            "reserved memory negative",
            plus("[agent]\nreserved_memory_mb = -1"),
            "agent.reserved_memory_mb",
            "-1 must not be negative",
            Loc::At("-1"),
        ),
        case(
            "agent not a table",
            with(&[(RESOLVERS, "resolvers = [\"203.0.113.53\"]\nagent = 5")]),
            "agent",
            "expected a table, found an integer",
            Loc::At("5\n"),
        ),
        case(
            "agent array of tables",
            plus("[[agent]]\nreserved_memory_mb = 1"),
            "agent",
            "expected a table, found an array of tables",
            Loc::At("[[agent]]"),
        ),
        // --- agent ---
        case(
            "overlapping private ports",
            plus("[agent]\nprivate_ports = \"1025-2000,1500-3000\""),
            "agent.private_ports",
            "`1500-3000` overlaps or is not after `1025-2000`",
            Loc::At("\"1025-2000"),
        ),
        case(
            "public ports include agent port",
            plus("[agent]\npublic_ports = \"1-32000\""),
            "agent.public_ports",
            "includes 5051, the agent's own API port",
            Loc::At("\"1-32000\""),
        ),
        case(
            "port above 65535",
            plus("[agent]\nprivate_ports = \"1025-70000\""),
            "agent.private_ports",
            "`1025-70000`: port 70000 is above 65535",
            Loc::At("\"1025-70000\""),
        ),
        case(
            "attribute bad name",
            plus("[agent.attributes]\n\"rack id\" = \"r1\""),
            "agent.attributes.\"rack id\"",
            "attribute name `rack id` may only use",
            Loc::At("\"rack id\""),
        ),
        case(
            "attribute reserved name",
            plus("[agent.attributes]\npublic_ip = \"false\""),
            "agent.attributes.public_ip",
            "`public_ip` is set by the agent's role",
            Loc::At("public_ip"),
        ),
        case(
            "attribute bad value",
            plus("[agent.attributes]\nzone = \"eu:west\""),
            "agent.attributes.zone",
            "`eu:west` is not a Mesos attribute value",
            Loc::At("\"eu:west\""),
        ),
        case(
            "public role star",
            plus("[agent]\npublic_role = \"*\""),
            "agent.public_role",
            "`*` is not a usable Mesos role name",
            Loc::At("\"*\""),
        ),
        // --- auth ---
        case(
            "auth without uid",
            with(&[("superuser_uid = \"admin\"\n", "")]),
            "auth.superuser_uid",
            "required because auth is enabled by default",
            Loc::At("[auth]"),
        ),
        case(
            "no auth table at all",
            with(&[
                ("[auth]\n", ""),
                ("superuser_uid = \"admin\"\n", ""),
                (&hash_line, ""),
            ]),
            "auth.superuser_uid",
            "required because auth is enabled by default",
            Loc::Start,
        ),
        case(
            "auth without credential",
            with(&[(&hash_line, "enabled = true\n")]),
            "auth.superuser_password_hash",
            "required because auth.enabled is true: set `superuser_password_hash`",
            Loc::At("[auth]"),
        ),
        case(
            "auth with both credentials",
            format!(
                "{}superuser_public_key = \"\"\"\n-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n\"\"\"\n",
                base()
            ),
            "auth.superuser_public_key",
            "set only one of `superuser_password_hash` and `superuser_public_key`",
            Loc::At("\"\"\""),
        ),
        case(
            "password hash not PHC",
            with(&[(HASH, "hunter2")]),
            "auth.superuser_password_hash",
            "not an argon2 PHC string",
            Loc::At("\"hunter2\""),
        ),
        case(
            "password hash wrong algorithm",
            with(&[(HASH, "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")]),
            "auth.superuser_password_hash",
            "algorithm `pbkdf2-sha256` is not argon2",
            Loc::At("\"$pbkdf2"),
        ),
        case(
            "public key not PEM",
            with(&[(&hash_line, "superuser_public_key = \"ssh-ed25519 AAAA\"\n")]),
            "auth.superuser_public_key",
            "must be a PEM block",
            Loc::At("\"ssh-ed25519"),
        ),
        case(
            "token lifetime words",
            with(&[("[auth]\n", "[auth]\ntoken_lifetime = \"5 days\"\n")]),
            "auth.token_lifetime",
            "`5 days` is not a duration like `5d`",
            Loc::At("\"5 days\""),
        ),
        case(
            "token lifetime too short",
            with(&[("[auth]\n", "[auth]\ntoken_lifetime = \"10s\"\n")]),
            "auth.token_lifetime",
            "10s is outside 1m..365d",
            Loc::At("\"10s\""),
        ),
        case(
            "bad uid",
            with(&[("\"admin\"", "\"ad min\"")]),
            "auth.superuser_uid",
            "`ad min` is not a valid uid",
            Loc::At("\"ad min\""),
        ),
        // --- proxy ---
        case(
            "proxy without scheme",
            plus("[proxy]\nhttp_proxy = \"proxy.example:3128\""),
            "proxy.http_proxy",
            "`proxy.example:3128` is not a URL",
            Loc::At("\"proxy.example"),
        ),
        case(
            "no_proxy with comma",
            plus("[proxy]\nno_proxy = [\"a.example\", \"b.example,c.example\"]"),
            "proxy.no_proxy[1]",
            "must be one non-empty host",
            Loc::At("\"b.example"),
        ),
        // --- etcd ---
        case(
            "election below 5x heartbeat",
            plus("[etcd]\nheartbeat_interval_ms = 200\nelection_timeout_ms = 900"),
            "etcd.election_timeout_ms",
            "election_timeout_ms (900 ms) must be at least 5 × heartbeat_interval_ms (200 ms) = 1000 ms",
            Loc::At("900"),
        ),
        case(
            "heartbeat raised over default election",
            plus("[etcd]\nheartbeat_interval_ms = 300"),
            "etcd.heartbeat_interval_ms",
            "election_timeout_ms (1000 ms) must be at least 5 × heartbeat_interval_ms (300 ms)",
            Loc::At("300"),
        ),
        case(
            "election above etcd max",
            plus("[etcd]\nelection_timeout_ms = 60000"),
            "etcd.election_timeout_ms",
            "60000 ms is above etcd's maximum election timeout of 50000 ms",
            Loc::At("60000"),
        ),
        case(
            "heartbeat zero",
            plus("[etcd]\nheartbeat_interval_ms = 0"),
            "etcd.heartbeat_interval_ms",
            "must be at least 1 ms",
            Loc::At("0\n"),
        ),
        // --- image ---
        case(
            "image version not semver",
            plus("[image]\nversion = \"latest\""),
            "image.version",
            "`latest` is not a version like `1.2.3`",
            Loc::At("\"latest\""),
        ),
        case(
            "image channel uppercase",
            plus("[image]\nchannel = \"Stable\""),
            "image.channel",
            "`Stable` is not a channel name",
            Loc::At("\"Stable\""),
        ),
        // --- DNS ---
        case(
            "seven search domains",
            with(&[(
                RESOLVERS,
                "resolvers = [\"203.0.113.53\"]\ndns_search = [\"a.example\", \"b.example\", \"c.example\", \"d.example\", \"e.example\", \"f.example\", \"g.example\"]",
            )]),
            "dns_search",
            "7 domains; resolv.conf allows at most 6",
            Loc::At("[\"a.example\""),
        ),
        case(
            "bad search domain",
            with(&[(
                RESOLVERS,
                "resolvers = [\"203.0.113.53\"]\ndns_search = [\"-bad.example\"]",
            )]),
            "dns_search[0]",
            "`-bad.example` is not a valid domain name",
            Loc::At("\"-bad.example\""),
        ),
        case(
            "forward internal zone",
            plus("[dns_forward_zones]\n\"marathon.mesos\" = [\"203.0.113.60\"]"),
            "dns_forward_zones.\"marathon.mesos\"",
            "zone `marathon.mesos` is served by the cluster itself",
            Loc::At("\"marathon.mesos\""),
        ),
        case(
            "forward zone without resolvers",
            plus("[dns_forward_zones]\n\"corp.example\" = []"),
            "dns_forward_zones.\"corp.example\"",
            "needs at least one resolver",
            Loc::At("[]"),
        ),
        case(
            "forward zone to loopback",
            plus("[dns_forward_zones]\n\"corp.example\" = [\"127.0.0.1:5353\"]"),
            "dns_forward_zones.\"corp.example\"[0]",
            "127.0.0.1 is a loopback address",
            Loc::At("\"127.0.0.1:5353\""),
        ),
        // --- scripts ---
        Case {
            script: ScriptState::Missing,
            ..case(
                "default ip-detect missing",
                base(),
                "ip_detect",
                "script not found at",
                Loc::Start,
            )
        },
        Case {
            script: ScriptState::NotExecutable,
            ..case(
                "ip-detect not executable",
                with(&[(
                    URL,
                    "bootstrap_url = \"http://192.0.2.5:8080\"\nip_detect = \"ip-detect\"",
                )]),
                "ip_detect",
                "is not executable (run `chmod +x",
                Loc::At("\"ip-detect\""),
            )
        },
        Case {
            script: ScriptState::NoShebang,
            ..case(
                "ip-detect without shebang",
                with(&[(
                    URL,
                    "bootstrap_url = \"http://192.0.2.5:8080\"\nip_detect = \"ip-detect\"",
                )]),
                "ip_detect",
                "has no shebang; its first line must start with `#!`",
                Loc::At("\"ip-detect\""),
            )
        },
        Case {
            script: ScriptState::Directory,
            ..case(
                "ip-detect is a directory",
                base(),
                "ip_detect",
                "is not a regular file",
                Loc::Start,
            )
        },
        case(
            "public ip-detect missing",
            with(&[(
                URL,
                "bootstrap_url = \"http://192.0.2.5:8080\"\nip_detect_public = \"scripts/public\"",
            )]),
            "ip_detect_public",
            "script not found at",
            Loc::At("\"scripts/public\""),
        ),
        case(
            "empty script path",
            with(&[(
                URL,
                "bootstrap_url = \"http://192.0.2.5:8080\"\nfault_domain_detect = \"\"",
            )]),
            "fault_domain_detect",
            "empty path",
            Loc::At("\"\"\n"),
        ),
    ]
}

#[test]
fn every_bad_config_is_reported_with_path_message_and_position() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let found = problems(&c.toml, c.script);
        let (line, column) = match c.loc {
            Loc::Start => (1, 1),
            Loc::At(n) => locate(&c.toml, n, 0),
            Loc::Nth(n, i) => locate(&c.toml, n, i),
        };
        let hit = found
            .iter()
            .find(|p| p.path == c.path && p.message.contains(c.message));
        match hit {
            None => failures.push(format!(
                "[{}] no problem at `{}` containing {:?}; got:\n    {}",
                c.name,
                c.path,
                c.message,
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n    ")
            )),
            Some(p) if (p.line, p.column) != (line, column) => failures.push(format!(
                "[{}] `{}` reported at {}:{}, expected {line}:{column}",
                c.name, c.path, p.line, p.column
            )),
            Some(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_base_config_of_the_table_is_valid() {
    // Otherwise every case above would pass for the wrong reason.
    config_support::load_text(&base()).unwrap();
}

#[test]
fn each_single_fault_case_reports_only_its_own_fault() {
    // Cases built from one edit of the valid base config must not drag in
    // unrelated problems (false positives).
    for c in cases() {
        let found = problems(&c.toml, c.script);
        let unrelated: Vec<_> = found
            .iter()
            .filter(|p| {
                !p.path
                    .starts_with(c.path.split(['[', '.']).next().unwrap_or(""))
            })
            .filter(|p| {
                !(c.name == "typo mastres" || c.name == "DC/OS name") || p.path != "masters"
            })
            .filter(|p| !c.name.starts_with("master inside vip_range") || p.path != "vip_range")
            .collect();
        assert!(
            unrelated.is_empty(),
            "[{}] unrelated problems: {unrelated:?}",
            c.name
        );
    }
}
