//! The supervisor against a real systemd: an agent node image (basalt-nodeimg) carrying
//! `basaltd`, `units/` and the cluster public key, booted in QEMU with the bundle on a
//! second virtio disk (ext4 labelled `BASALT_CONFIG`, made with `mkfs.ext4 -d`).
//!
//! - a valid agent bundle: the supervisor verifies it, installs /run/basalt, starts
//!   `basalt-agent.target` over D-Bus, and `/system/health/v1` (through a QEMU `hostfwd`
//!   to guest port 1050) lists the units; the bundle's fault-domain-detect script fails
//!   (as without cloud metadata), so [`FAILING_UNIT`] (the agent) refuses to start and
//!   must be reported unhealthy with its journal tail naming the script's error, while the
//!   others run, and the supervisor's follower reports the failed job on the console;
//! - one changed byte in the bundle: no component starts and the console names the check.
//!
//! Both boots share one image build. Needs root, mmdebstrap and the nodeimg tools,
//! qemu-system-x86_64 and mkfs.ext4; otherwise each test prints why it skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use basalt_nodeimg::{Artifacts, BuildOptions, Role, required_tools};
use basalt_qemu::cluster::stage_basaltd;
use basalt_qemu::http::request;
use basalt_qemu::node::{NodePayload, build_node_image};
use basalt_qemu::{
    BootMode, QEMU, READY_MARKER, Vm, have_program, image_vm, target_dir, wait_until, workspace_dir,
};
use support::Cluster;

/// The component that fails on purpose: `basaltd agent` stops when the bundle's
/// fault-domain-detect script fails (support::FAULT_DOMAIN_DETECT).
const FAILING_UNIT: &str = "basalt-agent.service";
/// What its journal tail must say (the script's stderr, passed on by the agent).
const FAILING_OUTPUT: &str = "no metadata service";

/// TCG on a busy 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(480);

fn test_dir(name: &str) -> PathBuf {
    target_dir().join("nodeimg-test").join(name)
}

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("building a node image needs root".into());
    }
    let opts = BuildOptions::new(Role::Agent, test_dir("supervisor-agent"));
    let mut tools: Vec<&str> = required_tools(&opts);
    tools.extend(["mmdebstrap", QEMU, "mkfs.ext4"]);
    let missing: Vec<&str> = tools.into_iter().filter(|t| !have_program(t)).collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing {} (scripts/setup.sh installs them)",
            missing.join(", ")
        ));
    }
    None
}

struct Image {
    cluster: Cluster,
    artifacts: Artifacts,
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let t = Instant::now();
        let cluster = Cluster::new(&["192.0.2.10"]);
        let stage = test_dir("supervisor-stage");
        std::fs::create_dir_all(&stage).unwrap();
        let payload = NodePayload {
            basaltd: stage_basaltd(&workspace_dir(), &target_dir(), &stage).unwrap(),
            units_dir: workspace_dir().join("units"),
            cluster_pub: cluster.public_key_path(),
        };
        let artifacts =
            build_node_image(Role::Agent, &test_dir("supervisor-agent"), &payload).unwrap();
        println!(
            "agent node image with basaltd: {:.1} s (base cached: {}, reused: {})\n{}",
            t.elapsed().as_secs_f64(),
            artifacts.base_cache_hit,
            artifacts.reused,
            artifacts.size_table()
        );
        Image { cluster, artifacts }
    })
}

/// An 8 MiB ext4 image labelled BASALT_CONFIG holding `bundle.tar` (vfat labels cannot
/// be longer than 11 characters; `mkfs.ext4 -d` fills it without mounting).
fn config_disk(work: &Path, bundle: &[u8]) -> PathBuf {
    let content = work.join("config");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("bundle.tar"), bundle).unwrap();
    let img = work.join("config.img");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "BASALT_CONFIG", "-d"])
        .arg(&content)
        .arg(&img)
        .arg("8M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn boot(name: &str, bundle: &[u8], health_port: u16) -> Vm {
    let work = test_dir(name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let disk = config_disk(&work, bundle);
    let a = &image().artifacts;
    let mut cfg = image_vm(name, a, None, BootMode::Direct, &work, 512 << 20).unwrap();
    cfg.extra_args = vec![
        "-netdev".into(),
        format!("user,id=h0,restrict=on,hostfwd=tcp:127.0.0.1:{health_port}-:1050"),
        "-device".into(),
        "virtio-net-pci,netdev=h0".into(),
        "-drive".into(),
        format!("if=virtio,format=raw,readonly=on,file={}", disk.display()),
    ];
    Vm::start(cfg).unwrap()
}

/// GET on the forwarded port: (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    request(port, "GET", path, None)
}

fn unit<'a>(report: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    report["units"].as_array()?.iter().find(|u| u["id"] == id)
}

fn fail(vm: &Vm, what: impl std::fmt::Display) -> ! {
    panic!(
        "{what}\nconsole ({}), last lines:\n{}",
        vm.console_path().display(),
        vm.console_tail(60)
    )
}

/// One test function for both boots: they share one image build, and nextest runs each
/// `#[test]` in its own process, so two test functions would build (and stage) the image
/// twice at once. The two boots still run in parallel, on threads.
#[test]
fn qemu_node_boots() {
    std::thread::scope(|s| {
        let valid = s.spawn(valid_agent_bundle_starts_the_agent_target_and_reports_failing_units);
        let tampered = s.spawn(one_changed_byte_in_the_bundle_starts_no_component);
        let valid = valid.join();
        let tampered = tampered.join();
        if let Err(e) = valid {
            std::panic::resume_unwind(e);
        }
        if let Err(e) = tampered {
            std::panic::resume_unwind(e);
        }
    });
}

fn valid_agent_bundle_starts_the_agent_target_and_reports_failing_units() {
    if let Some(why) = skip_reason() {
        println!(
            "SKIPPED valid_agent_bundle_starts_the_agent_target_and_reports_failing_units: {why}"
        );
        return;
    }
    let img = image();
    let port = free_port();
    let mut vm = boot("supervisor-valid", &img.cluster.bundle("agent"), port);
    let started = vm
        .wait_for_console(
            "basalt-supervisor: started basalt-agent.target",
            BOOT_TIMEOUT,
        )
        .unwrap_or_else(|e| fail(&vm, e));
    let console = vm.console();
    assert!(
        console.contains("basalt-supervisor: bundle verified: role agent"),
        "no verification line:\n{}",
        vm.console_tail(60)
    );
    assert!(
        console.contains("volume BASALT_CONFIG"),
        "not from the config volume"
    );

    // health through the hostfwd: every unit listed; FAILING_UNIT unhealthy with its
    // journal tail, the gateway healthy
    let report = wait_until(
        "the failing unit reported unhealthy with its journal tail, the gateway healthy",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || {
            let (status, body) = http_get(port, "/system/health/v1")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let failing = unit(&v, FAILING_UNIT)?;
            let gateway = unit(&v, "basalt-gateway.service")?;
            (status == 200
                && gateway["health"] == 0
                && failing["health"] == 1
                && failing["output"].as_str()?.contains(FAILING_OUTPUT))
            .then_some(v)
        },
    )
    .unwrap_or_else(|e| fail(&vm, e));
    let healthy_at = vm.started.elapsed();
    for id in [
        "basalt-supervisor.service",
        "basalt-agent.service",
        "basalt-dns.service",
        "basalt-l4lb.service",
        "basalt-gateway.service",
    ] {
        assert!(unit(&report, id).is_some(), "{id} missing from {report:#}");
    }
    assert_eq!(
        unit(&report, "basalt-supervisor.service").unwrap()["health"],
        0,
        "{report:#}"
    );
    assert_eq!(report["node_role"], "agent");
    assert_eq!(report["ip"], "10.0.2.15", "ip-detect on QEMU user net");
    let (status, body) = http_get(port, &format!("/system/health/v1/units/{FAILING_UNIT}"))
        .unwrap_or_else(|| fail(&vm, "unit endpoint did not answer"));
    assert_eq!(status, 200);
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["health"], 1);
    assert!(
        one["description"]
            .as_str()
            .unwrap()
            .starts_with("Basalt agent"),
        "{one:#}"
    );
    let (status, _) = http_get(port, "/system/health/v1/units/ssh.service").unwrap();
    assert_eq!(status, 404);

    // the supervisor follows unit changes: the failed start job is on the console
    vm.wait_for_console(
        &format!("basalt-supervisor: {FAILING_UNIT}: start job failed"),
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| fail(&vm, e));
    println!(
        "supervisor started basalt-agent.target {:.1} s after QEMU start ({:?}); health reported the failing unit at {:.1} s",
        started.as_secs_f64(),
        vm.accel,
        healthy_at.as_secs_f64()
    );
    println!(
        "failing unit health:\n{}",
        serde_json::to_string_pretty(&one).unwrap()
    );
}

fn one_changed_byte_in_the_bundle_starts_no_component() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED one_changed_byte_in_the_bundle_starts_no_component: {why}");
        return;
    }
    let img = image();
    let mut bundle = img.cluster.bundle("agent");
    let at = bundle.len() / 2;
    bundle[at] ^= 0x20;
    let key = basalt_genconf::verify::ClusterPublicKey::from_pem(
        &std::fs::read_to_string(img.cluster.public_key_path()).unwrap(),
    )
    .unwrap();
    let expected = basalt_genconf::verify::verify_bundle(&bundle, &key, None, None)
        .expect_err("the changed bundle must not verify")
        .to_string();
    println!("changed byte {at} of the bundle; the verifier says: {expected}");
    let port = free_port();
    let mut vm = boot("supervisor-tampered", &bundle, port);
    let fatal = vm
        .wait_for_console(
            "basalt-supervisor: FATAL: bundle verification failed",
            BOOT_TIMEOUT,
        )
        .unwrap_or_else(|e| fail(&vm, e));
    // the image's own ready marker comes after multi-user.target, which waited for the
    // supervisor: by then anything that would have started, has
    vm.wait_for_console(READY_MARKER, BOOT_TIMEOUT)
        .unwrap_or_else(|e| fail(&vm, e));
    let console = vm.console();
    let line = console
        .lines()
        .find(|l| l.contains("FATAL: bundle verification failed"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(&expected),
        "console does not name the check `{expected}`:\n{line}"
    );
    assert!(
        !console.contains("started basalt-agent.target"),
        "a target was started"
    );
    for component in ["Basalt agent", "Basalt DNS", "Basalt L4", "Basalt gateway"] {
        assert!(
            !console.contains(component),
            "{component} appears on the console: something started"
        );
    }
    assert!(
        http_get(port, "/system/health/v1").is_none(),
        "health served after a failed verification"
    );
    println!(
        "verification failure on the console {:.1} s after QEMU start: {line}",
        fatal.as_secs_f64()
    );
}
