//! The shipped ip-detect scripts: executable, with a shebang, `bash -n`
//! clean, and they print one IPv4 address (run against loopback and a local
//! fake metadata service).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

fn genconf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scripts() -> Vec<PathBuf> {
    let mut v = vec![genconf_dir().join("ip-detect")];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(genconf_dir().join("ip-detect.examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    examples.sort();
    v.extend(examples);
    v
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_script_is_executable_with_shebang_and_parses() {
    let all = scripts();
    let names: Vec<String> = all
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["ip-detect", "cloud-metadata", "fixed-interface"]);
    for p in &all {
        // The same checks `load` applies to a configured script.
        basalt_genconf::validate::check_script(p).unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode & 0o755, 0o755, "{} mode {mode:o}", p.display());
        for shell in ["bash", "sh"] {
            if !have(shell) {
                eprintln!("SKIP {shell} -n {}: {shell} not installed", p.display());
                continue;
            }
            let out = Command::new(shell).arg("-n").arg(p).output().unwrap();
            assert!(
                out.status.success(),
                "{shell} -n {}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn default_ip_detect_targets_the_first_master_of_the_example() {
    let script = std::fs::read_to_string(genconf_dir().join("ip-detect")).unwrap();
    let config = basalt_genconf::config::load(&genconf_dir().join("config.toml"))
        .unwrap()
        .config;
    let first = config.masters[0];
    assert!(
        script.contains(&format!("FIRST_MASTER={first}\n")),
        "ip-detect must route to {first}"
    );
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Exactly one IPv4 address and a newline, as DC/OS's check_ip demands.
fn assert_one_ipv4(out: &str) -> Ipv4Addr {
    let line = out
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no trailing newline: {out:?}"));
    assert!(!line.contains('\n') && !line.contains(' '), "{out:?}");
    line.parse()
        .unwrap_or_else(|_| panic!("not an IPv4 address: {out:?}"))
}

#[test]
fn route_ip_detect_prints_the_source_address() {
    if !have("ip") {
        eprintln!("SKIP route_ip_detect_prints_the_source_address: iproute2 `ip` not installed");
        return;
    }
    // Point it at loopback, which has a route on every machine.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(genconf_dir().join("ip-detect")).unwrap();
    let first = basalt_genconf::config::load(&genconf_dir().join("config.toml"))
        .unwrap()
        .config
        .masters[0];
    let local = dir.path().join("ip-detect");
    std::fs::write(
        &local,
        text.replace(&format!("FIRST_MASTER={first}"), "FIRST_MASTER=127.0.0.1"),
    )
    .unwrap();
    let ip = assert_one_ipv4(&run_ok(Command::new("sh").arg(&local)));
    assert_eq!(ip, Ipv4Addr::LOCALHOST);
}

#[test]
fn fixed_interface_prints_that_interfaces_address_or_fails_clearly() {
    if !have("ip") || !have("awk") {
        eprintln!("SKIP fixed_interface: `ip` or `awk` not installed");
        return;
    }
    let script = genconf_dir().join("ip-detect.examples/fixed-interface");
    // lo has only host-scope addresses: the script must fail, not print garbage.
    let out = Command::new("sh")
        .arg(&script)
        .env("INTERFACE", "lo")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no global IPv4 address on lo"));
    // Any interface with a global IPv4 address: the script prints exactly it.
    let listing = run_ok(Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]));
    let Some(line) = listing.lines().next() else {
        eprintln!("SKIP fixed_interface positive case: no interface with a global IPv4 address");
        return;
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (iface, addr) = (fields[1], fields[3].split('/').next().unwrap());
    let ip = assert_one_ipv4(&run_ok(
        Command::new("sh").arg(&script).env("INTERFACE", iface),
    ));
    assert_eq!(ip.to_string(), addr);
}

/// A one-thread fake of the EC2 metadata service: serves `/latest/api/token`
/// (PUT) and `/latest/meta-data/<field>` with `body`, for `requests` requests.
fn fake_metadata(
    body: &'static str,
    requests: usize,
) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/latest", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..requests {
            let (mut stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut sink = vec![0; len];
            reader.read_exact(&mut sink).unwrap();
            let reply = if request_line.starts_with("PUT /latest/api/token") {
                "tok-123"
            } else {
                body
            };
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            )
            .unwrap();
            seen.push(request_line.trim().to_owned());
        }
        seen
    });
    (url, handle)
}

#[test]
fn cloud_metadata_asks_the_metadata_service() {
    if !have("curl") {
        eprintln!("SKIP cloud_metadata: curl not installed");
        return;
    }
    let script = genconf_dir().join("ip-detect.examples/cloud-metadata");
    let (url, server) = fake_metadata("10.1.2.3", 2);
    let ip = assert_one_ipv4(&run_ok(
        Command::new("sh").arg(&script).env("METADATA_URL", &url),
    ));
    assert_eq!(ip, Ipv4Addr::new(10, 1, 2, 3));
    let seen = server.join().unwrap();
    assert_eq!(
        seen,
        [
            "PUT /latest/api/token HTTP/1.1",
            "GET /latest/meta-data/local-ipv4 HTTP/1.1"
        ]
    );

    // A non-address answer is an error, not output.
    let (url, server) = fake_metadata("<html>captive portal</html>", 2);
    let out = Command::new("sh")
        .arg(&script)
        .env("METADATA_URL", &url)
        .output()
        .unwrap();
    server.join().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());

    // Nothing listening: fails (quickly) instead of hanging.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/latest", closed.local_addr().unwrap());
    drop(closed);
    let out = Command::new("sh")
        .arg(&script)
        .env("METADATA_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}
