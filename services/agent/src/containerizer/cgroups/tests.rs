//! v1 and v2 logic against the recording fake.

use super::*;

const HYBRID: &str = "\
24 1 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const COMOUNTED: &str = "\
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";

const UNIFIED: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
";

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn layout(text: &str, version: Option<CgroupVersion>, v2: Option<&Path>) -> CgroupLayout {
    CgroupLayout::from_mountinfo(text, Path::new(MOUNTINFO), version, v2).unwrap()
}

fn limits() -> TaskLimits {
    TaskLimits {
        cpus: Some(0.5),
        mem_bytes: Some(64 << 20),
    }
}

#[test]
fn layouts_are_detected() {
    match layout(HYBRID, None, None) {
        CgroupLayout::V1 { mounts } => {
            assert_eq!(mounts["cpu"], p("/sys/fs/cgroup/cpu"));
            assert_eq!(mounts["memory"], p("/sys/fs/cgroup/memory"));
            assert_eq!(mounts["freezer"], p("/sys/fs/cgroup/freezer"));
        }
        other => panic!("{other:?}"),
    }
    // Hybrid, v2 asked for: the unified mount.
    assert_eq!(
        layout(HYBRID, Some(CgroupVersion::V2), None),
        CgroupLayout::V2 {
            mount: p("/sys/fs/cgroup/unified")
        }
    );
    assert_eq!(
        layout(UNIFIED, None, None),
        CgroupLayout::V2 {
            mount: p("/sys/fs/cgroup")
        }
    );
    let e =
        CgroupLayout::from_mountinfo(UNIFIED, Path::new(MOUNTINFO), Some(CgroupVersion::V1), None)
            .unwrap_err();
    assert!(e.to_string().contains("V1"), "{e}");
    assert!(e.to_string().contains(MOUNTINFO), "{e}");
    let e = CgroupLayout::from_mountinfo("", Path::new("/x/mountinfo"), None, None).unwrap_err();
    assert!(e.to_string().contains("/x/mountinfo"), "{e}");
    assert_eq!(unescape("/a\\040b"), "/a b");
}

#[test]
fn limits_follow_mesos() {
    let l = limits();
    assert_eq!(l.cpu_shares(), Some(512));
    assert_eq!(l.cfs_quota_us(), Some(50_000));
    assert_eq!(l.memory_limit(), Some(64 << 20));
    let tiny = TaskLimits {
        cpus: Some(0.001),
        mem_bytes: Some(1 << 20),
    };
    assert_eq!(tiny.cpu_shares(), Some(MIN_CPU_SHARES));
    assert_eq!(tiny.cfs_quota_us(), Some(MIN_CFS_QUOTA_US));
    assert_eq!(tiny.memory_limit(), Some(MIN_MEMORY_BYTES));
    // systemd's conversion: 1024 shares → weight 39, 2 → 1, 262144 → 10000.
    let w = |cpus| {
        TaskLimits {
            cpus: Some(cpus),
            mem_bytes: None,
        }
        .cpu_weight()
    };
    assert_eq!(w(1.0), Some(39));
    assert_eq!(w(0.001), Some(1));
    assert_eq!(w(256.0), Some(10_000));
    assert_eq!(TaskLimits::default().cpu_shares(), None);
}

#[test]
fn v1_create_writes_limits_in_each_controller() {
    let fs = Arc::new(FakeCgroupFs::new());
    let mgr = CgroupManager::new(
        fs.clone(),
        layout(HYBRID, None, None),
        CgroupsConfig::default(),
    )
    .unwrap();
    let cg = mgr.create("c1", &limits()).unwrap();
    assert_eq!(cg.version, CgroupVersion::V1);
    assert_eq!(
        cg.dirs,
        vec![
            p("/sys/fs/cgroup/cpu/basalt/c1"),
            p("/sys/fs/cgroup/cpuacct/basalt/c1"),
            p("/sys/fs/cgroup/memory/basalt/c1"),
            p("/sys/fs/cgroup/freezer/basalt/c1"),
        ]
    );
    assert_eq!(
        fs.writes(),
        vec![
            (p("/sys/fs/cgroup/cpu/basalt/c1/cpu.shares"), "512".into()),
            (
                p("/sys/fs/cgroup/cpu/basalt/c1/cpu.cfs_period_us"),
                "100000".into()
            ),
            (
                p("/sys/fs/cgroup/cpu/basalt/c1/cpu.cfs_quota_us"),
                "50000".into()
            ),
            (
                p("/sys/fs/cgroup/memory/basalt/c1/memory.limit_in_bytes"),
                "67108864".into()
            ),
            (
                p("/sys/fs/cgroup/memory/basalt/c1/memory.soft_limit_in_bytes"),
                "67108864".into()
            ),
        ]
    );
    assert_eq!(
        cg.procs_files()[2],
        p("/sys/fs/cgroup/memory/basalt/c1/cgroup.procs")
    );
    assert!(mgr.root_dirs().contains(&p("/sys/fs/cgroup/memory/basalt")));

    // Without CFS quota, no period/quota; a co-mounted cpu,cpuacct is one directory.
    let fs = Arc::new(FakeCgroupFs::new());
    let cfg = CgroupsConfig {
        cfs_quota: false,
        root: Some("basalt-test/x".into()),
        ..CgroupsConfig::default()
    };
    let mgr = CgroupManager::new(fs.clone(), layout(COMOUNTED, None, None), cfg).unwrap();
    let cg = mgr.create("c2", &limits()).unwrap();
    assert_eq!(
        cg.dirs,
        vec![
            p("/sys/fs/cgroup/cpu,cpuacct/basalt-test/x/c2"),
            p("/sys/fs/cgroup/memory/basalt-test/x/c2"),
        ]
    );
    assert_eq!(cg.cpu, cg.cpuacct);
    assert!(
        !fs.writes()
            .iter()
            .any(|(f, _)| f.ends_with("cpu.cfs_quota_us"))
    );
}

#[test]
fn v1_missing_controller_is_an_error() {
    let text = "33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let e = CgroupManager::new(
        Arc::new(FakeCgroupFs::new()),
        layout(text, None, None),
        CgroupsConfig::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("'cpu'"), "{e}");
    // Memory only is fine when cpu is off.
    let cfg = CgroupsConfig {
        cpu: false,
        ..CgroupsConfig::default()
    };
    assert!(
        CgroupManager::new(Arc::new(FakeCgroupFs::new()), layout(text, None, None), cfg).is_ok()
    );
}

#[test]
fn bad_roots_are_refused() {
    for root in ["", "/abs", "a/../b", "."] {
        let cfg = CgroupsConfig {
            root: Some(root.into()),
            ..CgroupsConfig::default()
        };
        let e = CgroupManager::new(
            Arc::new(FakeCgroupFs::new()),
            layout(UNIFIED, None, None),
            cfg,
        )
        .unwrap_err();
        assert!(matches!(e, CgroupError::InvalidRoot { .. }), "{root}: {e}");
    }
}

fn v2_fs(subtree_root: &str) -> Arc<FakeCgroupFs> {
    let fs = Arc::new(FakeCgroupFs::new());
    fs.set_file(
        "/sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory pids",
    );
    fs.set_file("/sys/fs/cgroup/cgroup.subtree_control", subtree_root);
    fs
}

#[test]
fn v2_enables_controllers_down_to_the_root_and_writes_limits() {
    let fs = v2_fs("memory pids");
    // The delegated directory systemd made, with nothing enabled yet.
    fs.set_file("/sys/fs/cgroup/basalt.slice/cgroup.subtree_control", "");
    let mgr = CgroupManager::new(
        fs.clone(),
        layout(UNIFIED, None, None),
        CgroupsConfig::default(),
    )
    .unwrap();
    let cg = mgr.create("c1", &limits()).unwrap();
    assert_eq!(cg.version, CgroupVersion::V2);
    assert_eq!(cg.dirs, vec![p("/sys/fs/cgroup/basalt.slice/c1")]);
    assert_eq!(
        fs.writes(),
        vec![
            (p("/sys/fs/cgroup/cgroup.subtree_control"), "+cpu".into()),
            (
                p("/sys/fs/cgroup/basalt.slice/cgroup.subtree_control"),
                "+cpu +memory".into()
            ),
            (p("/sys/fs/cgroup/basalt.slice/c1/cpu.weight"), "20".into()),
            (
                p("/sys/fs/cgroup/basalt.slice/c1/cpu.max"),
                "50000 100000".into()
            ),
            (
                p("/sys/fs/cgroup/basalt.slice/c1/memory.max"),
                "67108864".into()
            ),
            (
                p("/sys/fs/cgroup/basalt.slice/c1/memory.low"),
                "67108864".into()
            ),
        ]
    );
    // The root is prepared once.
    fs.clear_ops();
    mgr.create("c2", &TaskLimits::default()).unwrap();
    assert_eq!(
        fs.ops(),
        vec![CgroupOp::Mkdir(p("/sys/fs/cgroup/basalt.slice/c2"))]
    );
}

#[test]
fn v2_without_the_controllers_fails_and_leaves_nothing() {
    let fs = Arc::new(FakeCgroupFs::new());
    fs.set_file("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb");
    let mgr = CgroupManager::new(
        fs.clone(),
        layout(HYBRID, Some(CgroupVersion::V2), None),
        CgroupsConfig::default(),
    )
    .unwrap();
    let e = mgr.create("c1", &limits()).unwrap_err();
    assert!(
        matches!(
            e,
            CgroupError::ControllerUnavailable {
                controller: "cpu",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("/sys/fs/cgroup/unified/cgroup.controllers")
    );
    assert!(fs.ops().is_empty());

    // With the controllers off it only tracks processes.
    let cfg = CgroupsConfig {
        cpu: false,
        memory: false,
        ..CgroupsConfig::default()
    };
    let mgr = CgroupManager::new(
        fs.clone(),
        layout(HYBRID, Some(CgroupVersion::V2), None),
        cfg,
    )
    .unwrap();
    fs.set_file("/sys/fs/cgroup/unified/cgroup.subtree_control", "");
    fs.set_file(
        "/sys/fs/cgroup/unified/basalt.slice/cgroup.subtree_control",
        "",
    );
    let cg = mgr.create("c1", &limits()).unwrap();
    assert_eq!(cg.memory, None);
    assert_eq!(cg.cpu, None);
    assert!(fs.writes().is_empty());
}

#[test]
fn failed_limit_write_removes_the_directories() {
    /// A fake whose memory limit writes fail, as the kernel does for a limit below
    /// current usage.
    #[derive(Debug)]
    struct Failing(FakeCgroupFs);
    impl CgroupFs for Failing {
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            self.0.create_dir_all(path)
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            self.0.remove_dir(path)
        }
        fn write(&self, path: &Path, value: &str) -> io::Result<()> {
            if path.ends_with("memory.limit_in_bytes") {
                return Err(io::Error::from_raw_os_error(nix::libc::EBUSY));
            }
            self.0.write(path, value)
        }
        fn read(&self, path: &Path) -> io::Result<String> {
            self.0.read(path)
        }
        fn exists(&self, path: &Path) -> bool {
            self.0.exists(path)
        }
    }
    let fs = Arc::new(Failing(FakeCgroupFs::new()));
    let mgr = CgroupManager::new(
        fs.clone(),
        layout(HYBRID, None, None),
        CgroupsConfig::default(),
    )
    .unwrap();
    let e = mgr.create("c1", &limits()).unwrap_err();
    assert!(
        e.to_string()
            .contains("/sys/fs/cgroup/memory/basalt/c1/memory.limit_in_bytes"),
        "{e}"
    );
    for d in mgr.task_cgroup("c1").dirs {
        assert!(!fs.0.has_dir(&d), "{} left behind", d.display());
    }
    assert!(fs.0.has_dir("/sys/fs/cgroup/memory/basalt"));
}

#[test]
fn pids_oom_usage_and_destroy() {
    let fs = Arc::new(FakeCgroupFs::new());
    let mgr = CgroupManager::new(
        fs.clone(),
        layout(HYBRID, None, None),
        CgroupsConfig::default(),
    )
    .unwrap();
    let cg = mgr.create("c1", &limits()).unwrap();
    let mem = p("/sys/fs/cgroup/memory/basalt/c1");
    let cpu = p("/sys/fs/cgroup/cpu/basalt/c1");
    let acct = p("/sys/fs/cgroup/cpuacct/basalt/c1");
    fs.set_file(mem.join("cgroup.procs"), "12\n7\n");
    fs.set_file(cpu.join("cgroup.procs"), "7\n");
    assert_eq!(mgr.pids(&cg).unwrap(), vec![7, 12]);
    // Busy while processes remain.
    assert!(mgr.destroy(&cg).is_err());
    assert!(!mgr.kill_all(&cg).unwrap(), "v1 has no cgroup.kill");

    assert_eq!(mgr.oom_kills(&cg).unwrap(), None);
    fs.set_file(
        mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    assert_eq!(mgr.oom_kills(&cg).unwrap(), Some(2));
    fs.set_file(mem.join("memory.max_usage_in_bytes"), "33554432\n");
    assert_eq!(mgr.memory_peak(&cg).unwrap(), Some(32 << 20));

    fs.set_file(acct.join("cpuacct.stat"), "user 250\nsystem 50\n");
    fs.set_file(
        cpu.join("cpu.stat"),
        "nr_periods 10\nnr_throttled 4\nthrottled_time 2000000000\n",
    );
    fs.set_file(mem.join("memory.usage_in_bytes"), "1048576\n");
    fs.set_file(
        mem.join("memory.stat"),
        "cache 1\nrss 2\ntotal_cache 4096\ntotal_rss 8192\n",
    );
    let u = mgr.usage(&cg).unwrap();
    assert_eq!(u.cpus_user_time_secs, Some(2.5));
    assert_eq!(u.cpus_system_time_secs, Some(0.5));
    assert_eq!(u.cpus_nr_periods, Some(10));
    assert_eq!(u.cpus_nr_throttled, Some(4));
    assert_eq!(u.cpus_throttled_time_secs, Some(2.0));
    assert_eq!(u.mem_total_bytes, Some(1 << 20));
    assert_eq!(u.mem_rss_bytes, Some(8192));
    assert_eq!(u.mem_cache_bytes, Some(4096));

    fs.set_file(mem.join("cgroup.procs"), "");
    fs.set_file(cpu.join("cgroup.procs"), "");
    mgr.destroy(&cg).unwrap();
    assert!(!mgr.exists(&cg));
    // Destroying again is fine.
    mgr.destroy(&cg).unwrap();
    assert_eq!(mgr.pids(&cg).unwrap(), Vec::<i32>::new());

    fs.set_file(mem.join("cgroup.procs"), "x\n");
    let e = mgr.pids(&cg).unwrap_err();
    assert!(e.to_string().contains("'x' is not a pid"), "{e}");
}

#[test]
fn v2_kill_oom_and_usage() {
    let fs = v2_fs("cpu memory");
    fs.set_file(
        "/sys/fs/cgroup/basalt.slice/cgroup.subtree_control",
        "cpu memory",
    );
    let mgr = CgroupManager::new(
        fs.clone(),
        layout(UNIFIED, None, None),
        CgroupsConfig::default(),
    )
    .unwrap();
    let cg = mgr.create("c1", &limits()).unwrap();
    let dir = p("/sys/fs/cgroup/basalt.slice/c1");
    // Kernels before 5.14 have no cgroup.kill.
    assert!(!mgr.kill_all(&cg).unwrap());
    fs.set_file(dir.join("cgroup.kill"), "");
    fs.clear_ops();
    assert!(mgr.kill_all(&cg).unwrap());
    assert_eq!(fs.writes(), vec![(dir.join("cgroup.kill"), "1".into())]);

    fs.set_file(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n",
    );
    assert_eq!(mgr.oom_kills(&cg).unwrap(), Some(1));
    fs.set_file(
        dir.join("cpu.stat"),
        "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 5\nnr_throttled 1\nthrottled_usec 500000\n",
    );
    fs.set_file(dir.join("memory.current"), "4096\n");
    fs.set_file(dir.join("memory.stat"), "anon 1024\nfile 2048\n");
    let u = mgr.usage(&cg).unwrap();
    assert_eq!(u.cpus_user_time_secs, Some(2.0));
    assert_eq!(u.cpus_system_time_secs, Some(1.0));
    assert_eq!(u.cpus_throttled_time_secs, Some(0.5));
    assert_eq!(u.mem_total_bytes, Some(4096));
    assert_eq!(u.mem_rss_bytes, Some(1024));
    assert_eq!(u.mem_cache_bytes, Some(2048));
}
