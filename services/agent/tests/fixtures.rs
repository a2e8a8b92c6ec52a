//! Detection against the recorded `/proc` + `/sys` trees in `fixtures/` (see its README),
//! with free space from a fake `FsStats` and fault-domain output from a fake
//! `ScriptRunner`; the real script runner is exercised with real scripts at the end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_agent::detect::{
    DetectConfig, DetectError, DetectedResources, Detector, DiskType, FsStats, FsUsage,
    HostFsStats, HostScriptRunner, Origin, PortRanges, ResourceCache, ScriptOutput, ScriptRunner,
    SystemRoot, reset_cache,
};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const WORK: &str = "/var/lib/mesos/slave";
const PRIVATE_PORTS: &str = "[1025-2180,2182-3887,3889-5049,5052-8079,8082-8180,8182-32000]";

/// `statvfs` answers per path; a path not set is "No such file or directory".
#[derive(Clone, Default)]
struct FakeFs(Arc<Mutex<HashMap<PathBuf, FsUsage>>>);

impl FakeFs {
    fn set(&self, path: &str, total_gib: u64, available_mib: u64) -> &Self {
        self.0.lock().unwrap().insert(
            PathBuf::from(path),
            FsUsage {
                total_bytes: total_gib * GIB,
                available_bytes: available_mib * MIB,
            },
        );
        self
    }
}

impl FsStats for FakeFs {
    fn usage(&self, path: &Path) -> io::Result<FsUsage> {
        self.0
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

/// Prints canned output; records which script it was asked to run.
#[derive(Clone)]
struct FakeScript {
    output: Result<ScriptOutput, io::ErrorKind>,
    ran: Arc<Mutex<Vec<PathBuf>>>,
}

impl FakeScript {
    fn printing(stdout: &str) -> Self {
        FakeScript {
            output: Ok(ScriptOutput {
                success: true,
                status: "exit status: 0".into(),
                stdout: stdout.as_bytes().to_vec(),
                stderr: Vec::new(),
            }),
            ran: Arc::default(),
        }
    }
    fn none() -> Self {
        FakeScript {
            output: Err(io::ErrorKind::NotFound),
            ran: Arc::default(),
        }
    }
}

impl ScriptRunner for FakeScript {
    fn run(&self, script: &Path, _timeout: Duration) -> io::Result<ScriptOutput> {
        self.ran.lock().unwrap().push(script.to_path_buf());
        self.output.clone().map_err(io::Error::from)
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn detector_at(root: &Path, fs: &FakeFs, script: FakeScript) -> Detector {
    Detector::new(SystemRoot::new(root), fs.clone(), script)
}

fn detector(name: &str, fs: &FakeFs) -> Detector {
    detector_at(&fixture(name), fs, FakeScript::none())
}

fn root_fs() -> FakeFs {
    let fs = FakeFs::default();
    fs.set(WORK, 100, 50_000);
    fs
}

/// A writable copy of a fixture, for tests that break or change it.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dest = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), dest).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&fixture(name), dir.path());
    dir
}

#[test]
fn nvme_ssd_host() {
    let r = detector("nvme-ssd", &root_fs())
        .detect(&DetectConfig::new(WORK))
        .unwrap();
    assert_eq!(r.role, "*");
    assert_eq!(r.cpus, 8.0);
    // (32827212 kB - 1 GiB) in MiB, floored.
    assert_eq!(r.mem_mib, 31033);
    assert_eq!(r.root_disk.size_mib, 49_900);
    assert_eq!(r.root_disk.fs_total_mib, 100 * 1024);
    assert_eq!(r.root_disk.device.as_deref(), Some("nvme0n1p2"));
    assert_eq!(r.root_disk.disk_type, Some(DiskType::Ssd));
    assert!(r.mount_disks.is_empty());
    assert!(
        r.gpus.is_empty(),
        "Intel iGPU and NVMe controller are not NVIDIA GPUs"
    );
    assert_eq!(r.fault_domain, None);
    assert_eq!(
        r.to_mesos_resources_text(),
        format!("cpus:8;mem:31033;disk:49900;ports:{PRIVATE_PORTS}")
    );
    assert_eq!(r.to_mesos_attributes_text(), "disk_type:ssd");
}

#[test]
fn sata_hdd_with_two_mount_disks() {
    let fs = root_fs();
    fs.set("/dcos/volume0", 1863, 1_900_000)
        .set("/dcos/volume1", 476, 480_000);
    let r = detector("sata-hdd-mounts", &fs)
        .detect(&DetectConfig::new(WORK))
        .unwrap();
    assert_eq!(
        r.cpus, 4.0,
        "cgroup v1 quota -1 and cpuset 0-3 do not narrow 4 CPUs"
    );
    assert_eq!(r.mem_mib, 14911, "v1 'unlimited' memory does not cap");
    assert_eq!(r.root_disk.device.as_deref(), Some("sda2"));
    assert_eq!(r.root_disk.disk_type, Some(DiskType::Hdd));

    let roots: Vec<_> = r
        .mount_disks
        .iter()
        .map(|d| d.root.to_str().unwrap())
        .collect();
    assert_eq!(
        roots,
        ["/dcos/volume0", "/dcos/volume1"],
        "/mnt/backup does not match"
    );
    let (v0, v1) = (&r.mount_disks[0], &r.mount_disks[1]);
    assert_eq!((v0.size_mib, v0.fs_total_mib), (1_899_900, 1863 * 1024));
    assert_eq!(v0.device.as_deref(), Some("sdb1"));
    assert_eq!(v0.disk_type, Some(DiskType::Hdd));
    assert_eq!(v1.size_mib, 479_900);
    assert_eq!(
        v1.device.as_deref(),
        Some("sdc"),
        "whole disk, no partition"
    );
    assert_eq!(v1.disk_type, Some(DiskType::Ssd));

    assert_eq!(
        r.to_mesos_resources_text(),
        format!(
            "cpus:4;mem:14911;disk:49900;ports:{PRIVATE_PORTS};\
             disk[MOUNT:/dcos/volume0]:1899900;disk[MOUNT:/dcos/volume1]:479900"
        )
    );
    assert_eq!(
        r.to_mesos_attributes_text(),
        "disk_type:hdd;disk_type_dcos_volume0:hdd;disk_type_dcos_volume1:ssd"
    );
    let json = r.to_mesos_resources_json();
    let mounts: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.get("disk").is_some())
        .collect();
    assert_eq!(mounts.len(), 2);
    assert_eq!(
        mounts[1],
        &serde_json::json!({"name":"disk","type":"SCALAR","scalar":{"value":479900.0},
            "disk":{"source":{"type":"MOUNT","mount":{"root":"/dcos/volume1"}}}})
    );
    assert!(
        json[0].get("reservations").is_none(),
        "private agents are unreserved"
    );
}

#[test]
fn configured_mount_pattern() {
    let fs = root_fs();
    fs.set("/mnt/backup", 931, 10_000);
    let mut cfg = DetectConfig::new(WORK);
    cfg.mount_pattern = "/mnt/*".into();
    cfg.mount_disk_reserve_mib = 1000;
    let r = detector("sata-hdd-mounts", &fs).detect(&cfg).unwrap();
    assert_eq!(r.mount_disks.len(), 1);
    assert_eq!(r.mount_disks[0].root, PathBuf::from("/mnt/backup"));
    assert_eq!(r.mount_disks[0].size_mib, 9_000);
    assert_eq!(r.mount_disks[0].device.as_deref(), Some("sdd1"));
}

#[test]
fn full_disks_and_missing_statvfs_are_named_errors() {
    // A MOUNT disk with no more than the reserve available fails, naming the mount.
    let fs = root_fs();
    fs.set("/dcos/volume0", 1863, 100)
        .set("/dcos/volume1", 476, 480_000);
    let err = detector("sata-hdd-mounts", &fs)
        .detect(&DetectConfig::new(WORK))
        .unwrap_err();
    assert!(
        matches!(&err, DetectError::DiskTooSmall { path, available_mib: 100, reserve_mib: 100 } if path == Path::new("/dcos/volume0")),
        "{err}"
    );
    // The ROOT disk likewise.
    let fs = FakeFs::default();
    fs.set(WORK, 10, 50);
    let err = detector("nvme-ssd", &fs)
        .detect(&DetectConfig::new(WORK))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("disk {WORK}: 50 MiB available is not more than the 100 MiB reserve")
    );
    // statvfs failing names the path.
    let err = detector("nvme-ssd", &FakeFs::default())
        .detect(&DetectConfig::new(WORK))
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!("statvfs {WORK}:")),
        "{err}"
    );
}

#[test]
fn work_dir_on_a_mount_disk_is_refused() {
    let fs = FakeFs::default();
    fs.set("/dcos/volume0/mesos", 1863, 1_900_000)
        .set("/dcos/volume0", 1863, 1_900_000)
        .set("/dcos/volume1", 476, 480_000);
    let err = detector("sata-hdd-mounts", &fs)
        .detect(&DetectConfig::new("/dcos/volume0/mesos"))
        .unwrap_err();
    assert!(
        matches!(&err, DetectError::Config { field, reason } if field == "work_dir" && reason.contains("/dcos/volume0")),
        "{err}"
    );
}

#[test]
fn two_nvidia_gpus() {
    let r = detector("two-gpus", &root_fs())
        .detect(&DetectConfig::new(WORK))
        .unwrap();
    assert_eq!(r.cpus, 32.0);
    assert_eq!(r.mem_mib, 256_634);
    assert_eq!(
        r.gpu_count(),
        2,
        "NVSwitch (class 0x0680) and ASPEED VGA are not GPUs"
    );
    let addrs: Vec<_> = r.gpus.iter().map(|g| g.pci_address.as_str()).collect();
    assert_eq!(addrs, ["0000:3b:00.0", "0000:86:00.0"]);
    assert!(
        r.gpus
            .iter()
            .all(|g| g.model.as_deref() == Some("NVIDIA A100-SXM4-40GB"))
    );
    assert!(
        r.gpus
            .iter()
            .all(|g| g.device_id.as_deref() == Some("0x20b0"))
    );
    assert_eq!(
        r.gpus.iter().map(|g| g.minor).collect::<Vec<_>>(),
        [Some(0), Some(1)]
    );
    assert!(
        r.to_mesos_resources_text().ends_with(";gpus:2"),
        "{}",
        r.to_mesos_resources_text()
    );
    assert_eq!(
        r.attributes.get("gpu_model").map(String::as_str),
        Some("NVIDIA_A100-SXM4-40GB")
    );
}

#[test]
fn gpu_without_driver_is_counted_without_model() {
    let dir = copy_fixture("two-gpus");
    std::fs::remove_dir_all(dir.path().join("proc/driver/nvidia/gpus/0000:86:00.0")).unwrap();
    let r = detector_at(dir.path(), &root_fs(), FakeScript::none())
        .detect(&DetectConfig::new(WORK))
        .unwrap();
    assert_eq!(r.gpu_count(), 2);
    assert_eq!(r.gpus[1].model, None);
    assert_eq!(r.gpus[1].minor, None);
    // No driver at all: still counted, no model attribute.
    std::fs::remove_dir_all(dir.path().join("proc/driver")).unwrap();
    let r = detector_at(dir.path(), &root_fs(), FakeScript::none())
        .detect(&DetectConfig::new(WORK))
        .unwrap();
    assert_eq!(r.gpu_count(), 2);
    assert!(!r.attributes.contains_key("gpu_model"));
}

#[test]
fn cgroup_v2_quota_on_an_ancestor_slice() {
    let d = detector("cgroup-v2-confined", &root_fs());
    let limits = d.cgroup_limits().unwrap();
    assert_eq!(limits.cpu_quota, Some(2.0));
    assert_eq!(limits.cpuset_cpus, Some(16));
    assert_eq!(limits.memory_limit_bytes, Some(4 * GIB));
    let r = d.detect(&DetectConfig::new(WORK)).unwrap();
    assert_eq!(
        r.cpus, 2.0,
        "cpu.max 200000 100000 on basalt.slice confines 16 CPUs to 2"
    );
    assert_eq!(r.mem_mib, 3072, "4 GiB memory.max minus the 1 GiB reserve");
    assert_eq!(
        r.root_disk.disk_type,
        Some(DiskType::Hdd),
        "virtio disks report rotational 1"
    );
}

#[test]
fn cgroup_v1_docker_container() {
    let d = detector("cgroup-v1-docker", &root_fs());
    let limits = d.cgroup_limits().unwrap();
    assert_eq!(limits.cpu_quota, Some(1.5));
    assert_eq!(limits.cpuset_cpus, Some(4));
    assert_eq!(limits.memory_limit_bytes, Some(2 * GIB));
    let r = d.detect(&DetectConfig::new(WORK)).unwrap();
    assert_eq!(r.cpus, 1.5);
    assert_eq!(r.mem_mib, 1024);
    assert_eq!(r.root_disk.device, None, "overlay has no block device");
    assert_eq!(r.root_disk.disk_type, None);
    assert!(!r.attributes.contains_key("disk_type"));
    assert!(
        r.to_mesos_resources_text()
            .starts_with("cpus:1.5;mem:1024;")
    );

    // The bind-mounted /srv/data (sdb1, an SSD) is found through its major:minor.
    let fs = FakeFs::default();
    fs.set("/srv/data/mesos", 200, 100_000);
    let r = detector("cgroup-v1-docker", &fs)
        .detect(&DetectConfig::new("/srv/data/mesos"))
        .unwrap();
    assert_eq!(r.root_disk.device.as_deref(), Some("sdb1"));
    assert_eq!(r.root_disk.disk_type, Some(DiskType::Ssd));
    assert_eq!(
        r.attributes.get("disk_type").map(String::as_str),
        Some("ssd")
    );
}

#[test]
fn public_agent_reserves_everything_to_slave_public() {
    let mut cfg = DetectConfig::new(WORK);
    cfg.public = true;
    let r = detector("two-gpus", &root_fs()).detect(&cfg).unwrap();
    assert_eq!(r.role, "slave_public");
    assert_eq!(
        r.to_mesos_resources_text(),
        "cpus(slave_public):32;mem(slave_public):256634;disk(slave_public):49900;\
         ports(slave_public):[1-21,23-5050,5052-32000];gpus(slave_public):2"
    );
    assert_eq!(
        r.attributes.get("public_ip").map(String::as_str),
        Some("true")
    );
    let json = r.to_mesos_resources_json();
    for res in json.as_array().unwrap() {
        assert_eq!(
            res["reservations"],
            serde_json::json!([{"type":"STATIC","role":"slave_public"}]),
            "{res}"
        );
    }
}

#[test]
fn operator_attributes_and_port_overrides() {
    let mut cfg = DetectConfig::new(WORK);
    cfg.attributes.insert("rack".into(), "r12".into());
    cfg.attributes.insert("disk_type".into(), "nvme".into());
    cfg.private_ports = "[10000-20000]".parse::<PortRanges>().unwrap();
    let r = detector("nvme-ssd", &root_fs()).detect(&cfg).unwrap();
    assert_eq!(r.to_mesos_attributes_text(), "disk_type:nvme;rack:r12");
    assert!(
        r.to_mesos_resources_text()
            .ends_with(";ports:[10000-20000]")
    );

    cfg.attributes.insert("zone".into(), "us east".into());
    let err = detector("nvme-ssd", &root_fs()).detect(&cfg).unwrap_err();
    assert!(
        matches!(&err, DetectError::Config { field, .. } if field == "attributes.zone"),
        "{err}"
    );
}

#[test]
fn fault_domain_from_script_output() {
    let script = FakeScript::printing(
        r#"{"fault_domain":{"region":{"name":"aws/us-west-2"},"zone":{"name":"aws/us-west-2a"}}}"#,
    );
    let mut cfg = DetectConfig::new(WORK);
    cfg.fault_domain_script = Some("/opt/basalt/bin/detect_fault_domain".into());
    let r = detector_at(&fixture("nvme-ssd"), &root_fs(), script.clone())
        .detect(&cfg)
        .unwrap();
    let d = r.fault_domain.unwrap();
    assert_eq!(
        (d.region.as_str(), d.zone.as_str()),
        ("aws/us-west-2", "aws/us-west-2a")
    );
    assert_eq!(
        *script.ran.lock().unwrap(),
        [PathBuf::from("/opt/basalt/bin/detect_fault_domain")]
    );

    let bad = FakeScript::printing("region: aws/us-west-2\n");
    let err = detector_at(&fixture("nvme-ssd"), &root_fs(), bad)
        .detect(&cfg)
        .unwrap_err();
    assert!(
        err.to_string().starts_with(
            "fault-domain script /opt/basalt/bin/detect_fault_domain: malformed output"
        ),
        "{err}"
    );
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn real_fault_domain_scripts() {
    if !Path::new("/bin/sh").exists() {
        eprintln!("SKIP real_fault_domain_scripts: /bin/sh not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Detector::new(
        SystemRoot::new(fixture("nvme-ssd")),
        root_fs(),
        HostScriptRunner,
    );
    let mut cfg = DetectConfig::new(WORK);

    cfg.fault_domain_script = Some(script(
        dir.path(),
        "ok",
        r#"echo '{"fault_domain":{"region":{"name":"r1"},"zone":{"name":"r1-b"}}}'"#,
    ));
    let dom = d.detect(&cfg).unwrap().fault_domain.unwrap();
    assert_eq!((dom.region.as_str(), dom.zone.as_str()), ("r1", "r1-b"));

    let failing = script(
        dir.path(),
        "failing",
        "echo 'no metadata service' >&2; exit 3",
    );
    cfg.fault_domain_script = Some(failing.clone());
    let err = d.detect(&cfg).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("fault-domain script {}:", failing.display())),
        "{err}"
    );
    assert!(
        err.contains("exit status: 3") && err.contains("no metadata service"),
        "{err}"
    );

    let empty = script(dir.path(), "empty", "true");
    cfg.fault_domain_script = Some(empty);
    assert!(
        d.detect(&cfg)
            .unwrap_err()
            .to_string()
            .contains("printed nothing")
    );

    // A script that hangs (and leaves a child holding its stdout) is killed at the timeout.
    let hang = script(dir.path(), "hang", "sleep 600 & sleep 600");
    cfg.fault_domain_script = Some(hang);
    cfg.fault_domain_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let err = d.detect(&cfg).unwrap_err().to_string();
    assert!(err.contains("timed out"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );

    cfg.fault_domain_script = Some(dir.path().join("missing"));
    let err = d.detect(&cfg).unwrap_err().to_string();
    assert!(err.contains("could not run"), "{err}");
}

#[test]
fn malformed_kernel_files_name_the_file() {
    let dir = copy_fixture("nvme-ssd");
    let d = || detector_at(dir.path(), &root_fs(), FakeScript::none());
    let cfg = DetectConfig::new(WORK);

    std::fs::write(dir.path().join("sys/devices/system/cpu/online"), "\n").unwrap();
    let err = d().detect(&cfg).unwrap_err();
    let online = dir.path().join("sys/devices/system/cpu/online");
    assert!(
        matches!(&err, DetectError::Parse { path, line: 1, .. } if *path == online),
        "{err}"
    );
    std::fs::write(&online, "0-7\n").unwrap();

    std::fs::write(
        dir.path().join("sys/fs/cgroup/system.slice/cpu.max"),
        "200000\n",
    )
    .unwrap();
    let err = d().detect(&cfg).unwrap_err().to_string();
    assert!(err.contains("system.slice/cpu.max line 1"), "{err}");
    std::fs::write(
        dir.path().join("sys/fs/cgroup/system.slice/cpu.max"),
        "max 100000\n",
    )
    .unwrap();

    std::fs::write(
        dir.path().join("sys/block/nvme0n1/queue/rotational"),
        "yes\n",
    )
    .unwrap();
    let err = d().detect(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("nvme0n1/queue/rotational line 1: expected 0 or 1"),
        "{err}"
    );
    std::fs::write(dir.path().join("sys/block/nvme0n1/queue/rotational"), "0\n").unwrap();

    std::fs::remove_file(dir.path().join("proc/meminfo")).unwrap();
    let err = d().detect(&cfg).unwrap_err();
    assert!(
        matches!(&err, DetectError::Read { path, source } if *path == dir.path().join("proc/meminfo") && source.kind() == io::ErrorKind::NotFound),
        "{err}"
    );
}

#[test]
fn cache_keeps_values_and_reports_drift() {
    let work = tempfile::tempdir().unwrap();
    let cache = ResourceCache::in_work_dir(work.path());
    let fs = root_fs();
    fs.set("/dcos/volume0", 1863, 1_900_000)
        .set("/dcos/volume1", 476, 480_000);
    let cfg = DetectConfig::new(WORK);

    // First start: detected and stored.
    let first = detector("sata-hdd-mounts", &fs)
        .detect_cached(&cfg, &cache)
        .unwrap();
    assert_eq!(first.origin, Origin::Detected);
    assert!(first.drift.is_none());
    assert!(cache.path().exists());
    assert_eq!(cache.load().unwrap().unwrap(), first.resources);

    // Restart after tasks filled some disk: same values, no drift (free space is not compared).
    fs.set(WORK, 100, 20_000)
        .set("/dcos/volume0", 1863, 1_000_000);
    let again = detector("sata-hdd-mounts", &fs)
        .detect_cached(&cfg, &cache)
        .unwrap();
    assert_eq!(again.origin, Origin::Cache);
    assert!(again.drift.is_none(), "{:?}", again.drift);
    assert_eq!(again.resources, first.resources);
    assert_eq!(again.resources.root_disk.size_mib, 49_900);

    // The machine changed: volume1 is gone and the memory reserve grew. Cached values are
    // still advertised; the drift says what changed.
    let changed = copy_fixture("sata-hdd-mounts");
    let mi = changed.path().join("proc/self/mountinfo");
    let text = std::fs::read_to_string(&mi).unwrap();
    std::fs::write(
        &mi,
        text.lines()
            .filter(|l| !l.contains("/dcos/volume1"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
    .unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.mem_reserve_mib = 2048;
    let drifted = detector_at(changed.path(), &fs, FakeScript::none())
        .detect_cached(&cfg2, &cache)
        .unwrap();
    assert_eq!(drifted.origin, Origin::Cache);
    assert_eq!(drifted.resources, first.resources);
    let drift = drifted.drift.expect("drift");
    let whats: Vec<_> = drift.changes.iter().map(|c| c.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "mem",
            "mount_disks[/dcos/volume1]",
            "attributes.disk_type_dcos_volume1"
        ]
    );
    assert_eq!(
        (
            drift.changes[0].cached.as_str(),
            drift.changes[0].detected.as_str()
        ),
        ("14911", "13887")
    );
    assert_eq!(drift.changes[1].detected, "absent");
    assert_eq!(drift.detected.mount_disks.len(), 1);
    let msg = drift.to_string();
    assert!(
        msg.contains("mem: 14911 -> 13887") && msg.contains("basaltd agent reset-resources"),
        "{msg}"
    );

    // Drain-and-reset: the next detection is advertised and cached.
    let prev = reset_cache(work.path()).unwrap().expect("a cache to move");
    assert!(prev.ends_with("detected-resources.json.previous"));
    assert!(!cache.path().exists());
    let after = detector_at(changed.path(), &fs, FakeScript::none())
        .detect_cached(&cfg2, &cache)
        .unwrap();
    assert_eq!(after.origin, Origin::Detected);
    assert_eq!(after.resources.mem_mib, 13887);
    assert_eq!(after.resources.mount_disks.len(), 1);
    assert_eq!(
        reset_cache(tempfile::tempdir().unwrap().path()).unwrap(),
        None
    );
}

#[test]
fn cache_survives_a_failed_redetection_and_refuses_garbage() {
    let work = tempfile::tempdir().unwrap();
    let cache = ResourceCache::in_work_dir(work.path());
    let cfg = DetectConfig::new(WORK);
    let first = detector("nvme-ssd", &root_fs())
        .detect_cached(&cfg, &cache)
        .unwrap();

    // The disk filled past the reserve: detection fails, the cache is still advertised.
    let full = FakeFs::default();
    full.set(WORK, 100, 10);
    let adv = detector("nvme-ssd", &full)
        .detect_cached(&cfg, &cache)
        .unwrap();
    assert_eq!(adv.origin, Origin::Cache);
    assert_eq!(adv.resources, first.resources);
    assert!(matches!(
        adv.redetect_error,
        Some(DetectError::DiskTooSmall { .. })
    ));

    // A corrupt cache is an error naming it, never silently replaced.
    std::fs::write(cache.path(), "{\"format\":1,\"resources\":{\"cpus\":").unwrap();
    let err = detector("nvme-ssd", &root_fs())
        .detect_cached(&cfg, &cache)
        .unwrap_err();
    assert!(
        matches!(&err, DetectError::Cache { path, .. } if path == cache.path()),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(cache.path())
            .unwrap()
            .ends_with("\"cpus\":")
    );
    std::fs::write(cache.path(), "{\"format\":7,\"resources\":null}").unwrap();
    assert!(cache.load().unwrap_err().to_string().contains("format 7"));
}

#[test]
fn cache_file_round_trips_every_field() {
    let work = tempfile::tempdir().unwrap();
    let cache = ResourceCache::in_work_dir(work.path());
    let mut cfg = DetectConfig::new(WORK);
    cfg.public = true;
    cfg.attributes.insert("rack".into(), "r1".into());
    let r: DetectedResources = detector_at(
        &fixture("two-gpus"),
        &root_fs(),
        FakeScript::printing(r#"{"fault_domain":{"region":{"name":"r"},"zone":{"name":"z"}}}"#),
    )
    .detect(&{
        let mut c = cfg.clone();
        c.fault_domain_script = Some("/detect".into());
        c
    })
    .unwrap();
    cache.store(&r).unwrap();
    assert_eq!(cache.load().unwrap().unwrap(), r);
    let _ = HostFsStats; // the real statvfs is covered by tests/host.rs
}
