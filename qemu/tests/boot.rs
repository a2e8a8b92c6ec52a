//! Builds the agent image (base rootfs from the cache when present) and boots it in QEMU.
//!
//! Needs root, mmdebstrap and friends, qemu-system-x86_64 and OVMF (scripts/setup.sh installs
//! them); without them each test prints why it skips. Both tests share one build: they lock
//! the output directory and the second reuses what the first built.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use basalt_nodeimg::{Artifacts, BuildOptions, Role, required_tools};
use basalt_qemu::disk::{flip_byte, sparse_copy};
use basalt_qemu::{
    BootMode, Firmware, Net, QEMU, READY_MARKER, Vm, console_fact, have_program, image_vm,
    wait_until,
};

/// Generous: TCG on a busy 2-core CI machine, and a cold base build before it.
const READY_TIMEOUT: Duration = Duration::from_secs(420);

fn target_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.parent().unwrap().join("target"))
}

fn options() -> BuildOptions {
    BuildOptions::new(Role::Agent, target_dir().join("nodeimg-test").join("agent"))
}

/// Why this machine cannot run the image tests, if it cannot.
fn skip_reason(need_uefi: bool) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("building a node image needs root".into());
    }
    let mut tools: Vec<&str> = required_tools(&options());
    tools.extend(["mmdebstrap", QEMU]);
    let missing: Vec<&str> = tools.into_iter().filter(|t| !have_program(t)).collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing {} (scripts/setup.sh installs them)",
            missing.join(", ")
        ));
    }
    if need_uefi && let Err(e) = Firmware::find() {
        return Some(e.to_string());
    }
    None
}

fn build() -> Artifacts {
    let t = Instant::now();
    let a = basalt_nodeimg::build(&options()).expect("building the agent image");
    println!(
        "agent image: {} in {:.1} s (base from cache: {}, outputs reused: {})",
        a.dir.display(),
        t.elapsed().as_secs_f64(),
        a.base_cache_hit,
        a.reused
    );
    for (phase, secs) in &a.timings {
        println!("  {phase:<22} {secs:>6.1} s");
    }
    println!("{}", a.size_table());
    a
}

fn work_dir(name: &str) -> PathBuf {
    let d = target_dir().join("nodeimg-test").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn agent_image_boots_to_multi_user_on_a_verity_root() {
    if let Some(why) = skip_reason(true) {
        println!("SKIPPED agent_image_boots_to_multi_user_on_a_verity_root: {why}");
        return;
    }
    let a = build();
    let work = work_dir("vm-boot");
    let mut cfg = image_vm("agent", &a, None, BootMode::Uefi, &work, 512 << 20).unwrap();
    cfg.nets = vec![Net::User {
        restrict: true,
        forwards: Vec::new(),
    }];
    let mut vm = Vm::start(cfg).unwrap();
    let ready = vm
        .wait_for_console(READY_MARKER, READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\nconsole: {}", vm.console_path().display()));
    let console = vm.console();
    let tail = vm.console_tail(40);

    // booted through systemd-boot with the image's own command line
    assert!(
        console.contains(&format!("roothash={}", a.root_hash)),
        "kernel command line lacks the root hash:\n{tail}"
    );
    let root = console_fact(&console, "root").expect("root fact");
    let mut root_fields = root.split_whitespace();
    assert_eq!(root_fields.next(), Some("/dev/mapper/root"), "{root}");
    assert_eq!(root_fields.next(), Some("erofs"), "{root}");
    let opts = root_fields.next().unwrap_or_default();
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "root not read-only: {root}"
    );
    let dm = console_fact(&console, "dm").expect("dm fact");
    assert!(
        dm.starts_with("root CRYPT-VERITY-"),
        "root device is not dm-verity: {dm}"
    );
    let etc = console_fact(&console, "etc").expect("etc fact");
    assert!(
        etc.contains("overlay"),
        "/etc is not the volatile overlay: {etc}"
    );
    let var = console_fact(&console, "var").expect("var fact");
    assert!(
        var.contains("ext4"),
        "/var is not the state partition created by systemd-repart: {var}"
    );
    assert_eq!(
        console_fact(&console, "failed-units").as_deref(),
        Some("none"),
        "failed units:\n{tail}"
    );
    let uptime = console_fact(&console, "uptime").unwrap_or_default();
    println!(
        "boot: ready {:.1} s after QEMU start ({:?}, UEFI → systemd-boot → dracut initrd → systemd), guest uptime {uptime} s",
        ready.as_secs_f64(),
        vm.accel
    );
    println!("root: {root}\ndm: {dm}\n/etc: {etc}\n/var: {var}");
    drop(vm);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn one_flipped_byte_in_the_root_image_stops_boot_at_verification() {
    if let Some(why) = skip_reason(false) {
        println!("SKIPPED one_flipped_byte_in_the_root_image_stops_boot_at_verification: {why}");
        return;
    }
    let a = build();
    let work = work_dir("vm-tampered");
    let disk = work.join("tampered.raw");
    sparse_copy(&a.disk_raw, &disk).unwrap();
    // a byte of the erofs superblock (block 0 of root A): read by every mount
    let root_a = a.layout.partition("root-a").unwrap();
    let offset = root_a.start + 1024 + 8;
    let (old, new) = flip_byte(&disk, offset).unwrap();
    println!("flipped byte {offset:#x} of the disk (root A + 0x408): {old:#04x} -> {new:#04x}");

    let cfg = image_vm("tampered", &a, Some(&disk), BootMode::Direct, &work, 0).unwrap();
    let mut vm = Vm::start(cfg).unwrap();
    let started = Instant::now();
    let verity_error = wait_until(
        "a dm-verity corruption report on the console",
        READY_TIMEOUT,
        Duration::from_millis(250),
        || {
            let c = vm.console();
            c.lines()
                .find(|l| l.contains("verity") && l.contains("corrupted"))
                .map(str::to_string)
        },
    )
    .unwrap_or_else(|e| panic!("{e}; console tail:\n{}", vm.console_tail(40)));
    println!(
        "verity stopped the boot after {:.1} s: {verity_error}",
        started.elapsed().as_secs_f64()
    );
    // restart-on-corruption reboots; with -no-reboot QEMU then exits
    let status = vm
        .wait_for_exit(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}; console tail:\n{}", vm.console_tail(40)));
    println!("QEMU exited ({status}) after the verity failure");
    let console = vm.console();
    assert!(
        !console.contains(READY_MARKER),
        "a tampered image must never reach the ready marker"
    );
    assert!(
        !console.contains("Reached target multi-user.target"),
        "a tampered image must not reach multi-user.target"
    );
    drop(vm);
    let _ = std::fs::remove_dir_all(&work);
}
