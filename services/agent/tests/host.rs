//! Detection against this real machine (`/`, real `statvfs`): sane values, printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use basalt_agent::detect::{DetectConfig, Detector, Origin, PortRanges, ResourceCache};

#[test]
fn detects_this_machine() {
    let work = tempfile::tempdir().unwrap();
    let d = Detector::host();
    let cfg = DetectConfig::new(work.path());
    let r = d.detect(&cfg).unwrap();
    let limits = d.cgroup_limits().unwrap();
    eprintln!("cgroup limits: {limits:?}");
    eprintln!("detected: {r:#?}");
    eprintln!("--resources={}", r.to_mesos_resources_text());
    eprintln!("--attributes={}", r.to_mesos_attributes_text());

    assert!(r.cpus >= 0.001, "cpus {}", r.cpus);
    // An independent upper bound: the CPU directories sysfs has.
    let present = std::fs::read_dir("/sys/devices/system/cpu")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix("cpu")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    assert!(
        r.cpus <= present as f64,
        "cpus {} but {present} CPUs present",
        r.cpus
    );
    if limits.cpu_quota.is_none() {
        assert!(r.cpus >= 1.0, "no quota but cpus {}", r.cpus);
    }
    assert!(r.mem_mib > 0);
    assert_eq!(r.role, "*");
    assert_eq!(r.ports, PortRanges::dcos_private());
    assert!(r.root_disk.size_mib > 0);
    assert!(r.root_disk.fs_total_mib >= r.root_disk.size_mib);

    // Memory never exceeds MemTotal.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        r.mem_mib < total_kb / 1024,
        "{} MiB of {} kB",
        r.mem_mib,
        total_kb
    );

    // The public role on the same machine takes DC/OS' public ports and reserves everything.
    let mut public = cfg.clone();
    public.public = true;
    let p = d.detect(&public).unwrap();
    assert_eq!(p.ports, PortRanges::dcos_public());
    assert!(
        p.to_mesos_resources_text()
            .starts_with("cpus(slave_public):")
    );
    assert_eq!(
        p.attributes.get("public_ip").map(String::as_str),
        Some("true")
    );

    // GPUs: compare with nvidia-smi when the machine has it.
    match std::process::Command::new("nvidia-smi").arg("-L").output() {
        Ok(out) if out.status.success() => {
            let listed = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count();
            eprintln!(
                "nvidia-smi lists {listed} GPU(s); sysfs found {}",
                r.gpu_count()
            );
            assert!(
                r.gpu_count() >= listed,
                "sysfs found fewer GPUs than nvidia-smi"
            );
            if listed > 0 {
                assert!(r.attributes.contains_key("gpu_model"));
            }
        }
        _ => eprintln!(
            "nvidia-smi not available: GPU count ({}) not cross-checked",
            r.gpu_count()
        ),
    }

    // Cache round trip on the real work dir.
    let cache = ResourceCache::in_work_dir(work.path());
    let first = d.detect_cached(&cfg, &cache).unwrap();
    assert_eq!(first.origin, Origin::Detected);
    let second = d.detect_cached(&cfg, &cache).unwrap();
    assert_eq!(second.origin, Origin::Cache);
    assert_eq!(second.resources, first.resources);
    assert!(
        second.drift.is_none(),
        "{:?}",
        second.drift.map(|d| d.to_string())
    );
}
