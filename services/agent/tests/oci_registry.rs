#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Image tasks end to end: Debian's `docker-registry` as a real local registry, an
//! image this test builds (a busybox-static root filesystem) and pushes through the
//! distribution API, then tasks from that image launched through a real master and the
//! agent daemon, run by Debian's `crun`. Also: a missing image, an unreachable registry
//! and a corrupted blob give TASK_FAILED naming the image. Needs root, etcd,
//! `docker-registry`, `crun` and busybox-static (scripts/setup.sh installs them); each
//! test prints why it is skipped otherwise.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use basalt_agent::containerizer::{
    CgroupVersion, CgroupsConfig, Containerizer, ContainerizerConfig, Isolation, LaunchSpec,
};
use basalt_agent::daemon::{AgentConfig, AgentDaemon, ResourceSource};
use basalt_master::testing::{Cluster, TEST_CREDENTIAL, TestScheduler, wait_until};
use basalt_mesos::{
    AgentId, Attributes, CommandInfo, ContainerId, ContainerInfo, FrameworkId, Resource, Resources,
    TaskId, TaskInfo, TaskState, TaskStatus, TaskStatusReason,
};
use common::{framework, skip};
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(30);
const REGISTRY: &str = "/usr/bin/docker-registry";
const BUSYBOX: &str = "/bin/busybox";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn in_path(name: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin", "/bin"])
        .any(|d| Path::new(d).join(name).is_file())
}

/// Why the image tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root (namespaces, cgroups, overlayfs, crun)".into());
    }
    if !Path::new(REGISTRY).is_file() {
        return Some(format!(
            "{REGISTRY} missing (Debian package docker-registry)"
        ));
    }
    if !in_path("crun") {
        return Some("crun missing (Debian package crun)".into());
    }
    match std::fs::read(BUSYBOX) {
        Ok(b) if !has_interpreter(&b) => None,
        Ok(_) => Some(format!(
            "{BUSYBOX} is dynamically linked (install busybox-static)"
        )),
        Err(_) => Some(format!("{BUSYBOX} missing (Debian package busybox-static)")),
    }
}

/// Whether an ELF64 binary has a PT_INTERP program header (is dynamically linked);
/// anything unparsable counts as dynamic.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    if !elf.starts_with(b"\x7fELF") || elf.get(4) != Some(&2) {
        return true;
    }
    let (Some(phoff), Some(size), Some(n)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return true;
    };
    (0..n).any(|i| {
        let o = phoff + i * size;
        elf.get(o..o + 4).is_none_or(|t| t == [3, 0, 0, 0])
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` process with filesystem storage in a temporary directory.
struct LocalRegistry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalRegistry {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let reg = LocalRegistry {
            child,
            host: format!("127.0.0.1:{port}"),
            _dir: dir,
        };
        let url = format!("http://{}/v2/", reg.host);
        let http = client();
        wait_until("docker-registry answering /v2/", T, || async {
            let r = http.get(&url).send().await.ok()?;
            (r.status().as_u16() == 200).then_some(())
        })
        .await
        .unwrap();
        reg
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Monolithic blob upload: POST for an upload URL, PUT the bytes with their digest.
async fn push_blob(base: &str, repo: &str, data: &[u8]) -> String {
    let http = client();
    let d = digest(data);
    let r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{:?}", r.text().await);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let loc = if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{loc}{sep}digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    d
}

async fn push_manifest(base: &str, repo: &str, tag: &str, media: &str, body: &[u8]) {
    let r = client()
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", media)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
}

fn hdr() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// A gzip'd layer: busybox-static as /bin/busybox, applets as symlinks, /etc/passwd
/// with an unprivileged user, /tmp.
fn busybox_layer() -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32| {
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        b.append_data(&mut h, p, &[][..]).unwrap();
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32, data: &[u8]| {
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, p, data).unwrap();
    };
    dir(&mut b, "bin", 0o755);
    dir(&mut b, "etc", 0o755);
    dir(&mut b, "tmp", 0o1777);
    file(
        &mut b,
        "bin/busybox",
        0o755,
        &std::fs::read(BUSYBOX).unwrap(),
    );
    for applet in ["sh", "echo", "cat", "sleep", "id", "head", "dd", "ls"] {
        let mut h = hdr();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nappuser:x:4321:4321::/tmp:/bin/sh\n",
    );
    file(&mut b, "etc/group", 0o644, b"root:x:0:\nappuser:x:4321:\n");
    let tar = b.into_inner().unwrap();
    let diff_id = digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Builds and pushes `basalt/busybox`: tag `1.0` (Docker schema 2 manifest) and tag
/// `multi` (an OCI index with an arm64 and an amd64 entry).
async fn push_image(reg: &LocalRegistry) -> String {
    let base = format!("http://{}", reg.host);
    let repo = "basalt/busybox";
    let (layer, diff_id) = busybox_layer();
    let layer_digest = push_blob(&base, repo, &layer).await;
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin", "IMAGE_VAR=from-image"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo default-cmd ran; exit 3"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = push_blob(&base, repo, &config).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": DOCKER_LAYER, "size": layer.len(), "digest": layer_digest}],
    }))
    .unwrap();
    push_manifest(&base, repo, "1.0", DOCKER_MANIFEST, &manifest).await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "size": manifest.len(), "digest": digest(&manifest),
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": DOCKER_MANIFEST, "size": manifest.len(), "digest": digest(&manifest),
             "platform": {"architecture": basalt_agent::oci::registry::host_architecture(), "os": "linux"}},
        ],
    }))
    .unwrap();
    push_manifest(&base, repo, "multi", OCI_INDEX, &index).await;
    layer_digest
}

fn cgroup_root(work: &Path) -> String {
    format!(
        "basalt-oci-test{}",
        work.display().to_string().replace(['/', '.'], "-")
    )
}

fn agent_config(c: &Cluster, work: &Path, registry: &str) -> AgentConfig {
    let mut cfg = AgentConfig::new(
        c.addresses(),
        Some(TEST_CREDENTIAL.to_string()),
        work,
        "agent-oci.example",
    );
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.resources = ResourceSource::Given {
        resources: Resources::parse("cpus:4;mem:2048;disk:1024;ports:[31000-31100]").unwrap(),
        attributes: Attributes::parse("rack:r1").unwrap(),
    };
    cfg.containers.isolation = Isolation {
        namespaces: true,
        cgroups: Some(CgroupsConfig {
            root: Some(cgroup_root(work)),
            ..CgroupsConfig::default()
        }),
    };
    cfg.containers.oom_check_interval = Duration::from_millis(50);
    cfg.containers.default_grace_period = Duration::from_secs(2);
    cfg.containers.images.insecure_registries = vec![registry.to_owned()];
    cfg.containers.images.registry_timeout = Duration::from_secs(5);
    cfg
}

async fn remove_roots(work: &Path) {
    let root = cgroup_root(work);
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup").join(&root)];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(rd.filter_map(Result::ok).map(|e| e.path().join(&root)));
    }
    let deadline = std::time::Instant::now() + T;
    loop {
        dirs.retain(|d| d.exists() && std::fs::remove_dir(d).is_err());
        if dirs.is_empty() || std::time::Instant::now() > deadline {
            assert!(dirs.is_empty(), "cgroup roots not removable: {dirs:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn task(id: &str, agent: &AgentId, cmd: CommandInfo, container: ContainerInfo) -> TaskInfo {
    let mut t = TaskInfo::command(id, TaskId::new(id), agent.clone(), cmd);
    t.resources = vec![
        Resource::scalar("cpus", 0.2).unwrap(),
        Resource::scalar("mem", 64.0).unwrap(),
    ];
    t.container = Some(container);
    t
}

fn docker_container(image: &str) -> ContainerInfo {
    serde_json::from_value(serde_json::json!({
        "type": "DOCKER",
        "docker": {"image": image, "network": "HOST"},
    }))
    .unwrap()
}

async fn launch(s: &TestScheduler, agent: &AgentId, t: TaskInfo) -> usize {
    let offer = s
        .wait_outstanding_offer(T, |o| {
            &o.agent_id == agent && o.resources.cpus().is_some_and(|c| c.as_f64() >= 0.2)
        })
        .await
        .unwrap();
    let from = s.event_count();
    let r = s
        .launch(std::slice::from_ref(&offer.id), vec![t], Some(0.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    from
}

/// Waits for `state` (or a terminal one) of `task` at index ≥ `from`, acknowledging.
async fn wait_state(s: &TestScheduler, task: &str, from: usize, state: TaskState) -> TaskStatus {
    let mut acked = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + T;
    let st = 'found: loop {
        for e in s.events().iter().skip(from) {
            let Some(u) = e.update.as_ref() else { continue };
            if u.status.task_id.as_str() != task {
                continue;
            }
            if let Some(uuid) = u.status.uuid.clone()
                && acked.insert(uuid)
            {
                s.acknowledge(&u.status).await.unwrap();
            }
            if u.status.state == state || u.status.state.is_terminal() {
                break 'found u.status.clone();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {state:?} of {task}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(st.state, state, "{task}: {st:?}");
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_tasks_run_from_a_local_registry_through_the_master() {
    let test = "image_tasks_run_from_a_local_registry_through_the_master";
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    if let Some(why) = missing_prerequisite() {
        return skip(test, &why);
    }
    let Some(c) = Cluster::start(1, 1, |_| {}).await.unwrap() else {
        return skip(test, "etcd is not installed");
    };
    let reg = LocalRegistry::start().await;
    let layer_digest = push_image(&reg).await;
    let work = tempfile::tempdir().unwrap();
    let agent = AgentDaemon::start(agent_config(&c, work.path(), &reg.host))
        .await
        .unwrap();
    let agent_id = wait_until("agent registration", T, || async {
        agent.connected().then(|| agent.agent_id()).flatten()
    })
    .await
    .unwrap();
    let s = TestScheduler::subscribe(c.addresses(), framework("oci"))
        .await
        .unwrap();
    let fw: FrameworkId = s.framework_id().unwrap();

    // A MESOS container with a Docker image and a shell command: runs in the image
    // (busybox only exists there), with the image's and Mesos' environment, the
    // sandbox mounted, a writable root filesystem and the task's memory limit.
    let image = format!("{}/basalt/busybox:1.0", reg.host);
    let cmd = CommandInfo::shell(
        "echo \"hello from $IMAGE_VAR in $MESOS_SANDBOX as $(id -u)\"; echo scratch > /tmp/f; \
         cat /tmp/f; echo in-sandbox > $MESOS_SANDBOX/marker; \
         trap 'echo got TERM; exit 0' TERM; sleep 60 & wait",
    );
    let t1 = task(
        "img1",
        &agent_id,
        cmd,
        ContainerInfo::mesos_with_docker_image(image.clone()),
    );
    let from = launch(&s, &agent_id, t1).await;
    wait_state(&s, "img1", from, TaskState::Running).await;
    let container = agent
        .container(&fw, &TaskId::new("img1"))
        .expect("container");
    let stdout = container.sandbox().join("stdout");
    let out = wait_until("the task's output in the sandbox", T, || async {
        let o = std::fs::read_to_string(&stdout).ok()?;
        o.contains("scratch").then_some(o)
    })
    .await
    .unwrap_or_else(|e| {
        let err = std::fs::read_to_string(container.sandbox().join("stderr")).unwrap_or_default();
        panic!("{e}; stderr: {err}")
    });
    assert!(
        out.contains("hello from from-image in /mnt/mesos/sandbox as 0"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(container.sandbox().join("marker")).unwrap(),
        "in-sandbox\n"
    );
    // The layer is in the store, unpacked once; the container's writes are not.
    let hex = layer_digest.trim_start_matches("sha256:");
    let images = work.path().join("images");
    assert!(images.join("blobs/sha256").join(hex).is_file());
    assert!(
        images
            .join("layers")
            .join(hex)
            .join("bin/busybox")
            .is_file()
    );
    assert!(!images.join("layers").join(hex).join("tmp/f").exists());
    // The memory limit is on the container's cgroup, and the container's processes
    // (crun's container init and the task) are in it.
    let cg = container.cgroup().expect("cgroup").clone();
    let mem_dir = cg.memory.clone().expect("memory cgroup");
    let limit_file = match cg.version {
        CgroupVersion::V1 => "memory.limit_in_bytes",
        CgroupVersion::V2 => "memory.max",
    };
    assert_eq!(
        std::fs::read_to_string(mem_dir.join(limit_file))
            .unwrap()
            .trim(),
        (64u64 << 20).to_string()
    );
    let procs = std::fs::read_to_string(mem_dir.join("cgroup.procs")).unwrap();
    let has_sleep = procs.split_whitespace().any(|p| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep\0") || c.starts_with("/bin/sleep\0"))
    });
    assert!(has_sleep, "no sleep among the cgroup's processes {procs}");
    let bundle = images.join("bundles").join(&container.id().value);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["linux"]["resources"]["memory"]["limit"], 64u64 << 20);
    assert_eq!(
        config["linux"]["cgroupsPath"],
        format!("/{}/{}", cgroup_root(work.path()), container.id().value)
    );

    // Killed through the master: crun passes the SIGTERM on to the container (its
    // trap runs), TASK_KILLED, then the overlay is unmounted and the bundle removed.
    let from = s.event_count();
    s.kill(&TaskId::new("img1")).await.unwrap();
    wait_state(&s, "img1", from, TaskState::Killed).await;
    assert!(
        std::fs::read_to_string(&stdout)
            .unwrap()
            .contains("got TERM")
    );
    wait_until("the bundle removed", T, || async {
        (!bundle.exists()).then_some(())
    })
    .await
    .unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&bundle.display().to_string()),
        "rootfs still mounted"
    );

    // Marathon's DOCKER container without a command, by an OCI index: the image's
    // Entrypoint and Cmd run (and exit 3).
    let mut none = CommandInfo::shell("");
    none.shell = Some(false);
    none.value = None;
    let t2 = task(
        "img2",
        &agent_id,
        none,
        docker_container(&format!("{}/basalt/busybox:multi", reg.host)),
    );
    let from = launch(&s, &agent_id, t2).await;
    let st = wait_state(&s, "img2", from, TaskState::Failed).await;
    assert!(st.message.as_deref().unwrap_or("").contains('3'), "{st:?}");
    let sandbox = agent
        .task(&fw, &TaskId::new("img2"))
        .and_then(|t| t.sandbox)
        .expect("img2 sandbox");
    assert!(
        std::fs::read_to_string(sandbox.join("stdout"))
            .unwrap()
            .contains("default-cmd ran")
    );

    // More memory than the limit: the OOM killer, and the containerizer's reason.
    let t5 = task(
        "img5",
        &agent_id,
        CommandInfo::shell("exec dd if=/dev/zero of=/dev/null bs=256M count=1"),
        ContainerInfo::mesos_with_docker_image(image.clone()),
    );
    let from = launch(&s, &agent_id, t5).await;
    let st = wait_state(&s, "img5", from, TaskState::Failed).await;
    assert_eq!(
        st.reason,
        Some(TaskStatusReason::ContainerLimitationMemory),
        "{st:?}"
    );

    // An image that does not exist and an unreachable registry: TASK_FAILED naming
    // the image; the agent stays up.
    let missing = format!("{}/basalt/nope:1", reg.host);
    let t3 = task(
        "img3",
        &agent_id,
        CommandInfo::shell("true"),
        ContainerInfo::mesos_with_docker_image(missing.clone()),
    );
    let from = launch(&s, &agent_id, t3).await;
    let st = wait_state(&s, "img3", from, TaskState::Failed).await;
    assert_eq!(st.reason, Some(TaskStatusReason::ContainerLaunchFailed));
    let msg = st.message.unwrap_or_default();
    assert!(msg.contains(&missing) && msg.contains("not found"), "{msg}");

    let dead = format!("127.0.0.1:{}/basalt/busybox:1.0", free_port());
    let t4 = task(
        "img4",
        &agent_id,
        CommandInfo::shell("true"),
        docker_container(&dead),
    );
    let from = launch(&s, &agent_id, t4).await;
    let st = wait_state(&s, "img4", from, TaskState::Failed).await;
    assert_eq!(st.reason, Some(TaskStatusReason::ContainerLaunchFailed));
    let msg = st.message.unwrap_or_default();
    assert!(msg.contains(&dead) && msg.contains("unreachable"), "{msg}");
    assert!(agent.connected(), "{:?}", agent.last_error());

    agent.stop().await;
    remove_roots(work.path()).await;
}

/// A real registry verifies what is pushed and never serves a corrupted blob, so
/// this case is served by a small axum fake: a valid manifest and config, and a layer
/// whose bytes do not match its digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_digest_fails_the_launch() {
    let test = "a_blob_that_does_not_match_its_digest_fails_the_launch";
    if let Some(why) = missing_prerequisite() {
        return skip(test, &why);
    }
    use axum::http::header;
    let config = br#"{"os":"linux","config":{"Cmd":["/bin/true"]}}"#.to_vec();
    let good_layer = b"the real layer".to_vec();
    let config_digest = digest(&config);
    let layer_digest = digest(&good_layer);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": DOCKER_LAYER, "size": good_layer.len(), "digest": layer_digest}],
    }))
    .unwrap();
    let app = axum::Router::new()
        .route(
            "/v2/bad/image/manifests/1",
            axum::routing::get(move || async move {
                ([(header::CONTENT_TYPE, DOCKER_MANIFEST)], manifest.clone())
            }),
        )
        .route(
            &format!("/v2/bad/image/blobs/{config_digest}"),
            axum::routing::get(move || async move { config.clone() }),
        )
        .route(
            &format!("/v2/bad/image/blobs/{layer_digest}"),
            axum::routing::get(|| async { b"a corrupted layer".to_vec() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let work = tempfile::tempdir().unwrap();
    let mut cfg = ContainerizerConfig::new(
        work.path(),
        AgentId::new("agent-1"),
        "agent.example",
        "127.0.0.1:5051",
    );
    cfg.isolation = Isolation::none();
    cfg.images.insecure_registries = vec![host.clone()];
    let cz = Containerizer::new(cfg).unwrap();
    let image = format!("{host}/bad/image:1");
    let mut t = TaskInfo::command(
        "t",
        TaskId::new("t"),
        AgentId::new("agent-1"),
        CommandInfo::shell("true"),
    );
    t.container = Some(ContainerInfo::mesos_with_docker_image(image.clone()));
    let err = cz
        .launch(LaunchSpec::new(
            ContainerId::new("c1"),
            FrameworkId::new("fw"),
            t,
        ))
        .await
        .unwrap_err();
    let st = err.task_status(TaskId::new("t"));
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.reason, Some(TaskStatusReason::ContainerLaunchFailed));
    let msg = st.message.unwrap();
    assert!(
        msg.contains(&image) && msg.contains("digest mismatch") && msg.contains(&layer_digest),
        "{msg}"
    );
    // The verified config is stored; the corrupted layer left nothing behind.
    let blobs = work.path().join("images/blobs/sha256");
    assert!(
        blobs
            .join(config_digest.trim_start_matches("sha256:"))
            .is_file()
    );
    assert!(
        !blobs
            .join(layer_digest.trim_start_matches("sha256:"))
            .exists()
    );
    assert_eq!(
        std::fs::read_dir(work.path().join("images/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert!(cz.containers().is_empty());
    server.abort();
}

/// Registry answers the client must refuse, each naming the image: an index without
/// this platform, a manifest whose announced digest does not match, a schema 1
/// manifest, a server error. Served by an axum fake (a real registry produces none of
/// these); needs neither root nor crun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registry_answers_are_refused_naming_the_image() {
    use axum::http::{HeaderMap, StatusCode, header};
    let other_arch = if basalt_agent::oci::registry::host_architecture() == "amd64" {
        "s390x"
    } else {
        "amd64"
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "size": 10,
            "digest": format!("sha256:{}", "0".repeat(64)),
            "platform": {"architecture": other_arch, "os": "linux"}}],
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": 2, "digest": digest(b"{}")},
        "layers": [],
    }))
    .unwrap();
    let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#.to_vec();
    let app = axum::Router::new()
        .route(
            "/v2/idx/manifests/1",
            axum::routing::get(move || async move {
                ([(header::CONTENT_TYPE, OCI_INDEX)], index.clone())
            }),
        )
        .route(
            "/v2/lying/manifests/1",
            axum::routing::get(move || async move {
                let mut h = HeaderMap::new();
                h.insert(header::CONTENT_TYPE, DOCKER_MANIFEST.parse().unwrap());
                h.insert(
                    "docker-content-digest",
                    format!("sha256:{}", "1".repeat(64)).parse().unwrap(),
                );
                (h, manifest.clone())
            }),
        )
        .route(
            "/v2/old/manifests/1",
            axum::routing::get(move || async move { schema1.clone() }),
        )
        .route(
            "/v2/broken/manifests/1",
            axum::routing::get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "storage down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let work = tempfile::tempdir().unwrap();
    let client =
        basalt_agent::oci::RegistryClient::new(vec![host.clone()], Duration::from_secs(5)).unwrap();
    let store = basalt_agent::oci::ImageStore::new(
        work.path().join("images"),
        client,
        "docker.io".to_owned(),
    );
    for (repo, want) in [
        (
            "idx",
            format!(
                "no manifest for platform linux/{}",
                basalt_agent::oci::registry::host_architecture()
            ),
        ),
        ("lying", "digest mismatch for manifest".to_owned()),
        ("old", "schema 1 is not supported".to_owned()),
        ("broken", "HTTP 500: storage down".to_owned()),
    ] {
        let image = format!("{host}/{repo}:1");
        let e = store.pull(&image).await.unwrap_err().to_string();
        assert!(
            e.contains(&format!("image '{image}'")) && e.contains(&want),
            "{e}"
        );
    }
    // A reference that does not parse names itself and the part.
    let e = store.pull("Bad Name").await.unwrap_err().to_string();
    assert!(e.contains("image 'Bad Name': invalid reference"), "{e}");
    // Nothing was stored.
    let blobs = work.path().join("images/blobs/sha256");
    assert_eq!(
        std::fs::read_dir(blobs).map(Iterator::count).unwrap_or(0),
        0
    );
    server.abort();
}

/// The copy backend (no overlayfs) and the task's user from the image's
/// `/etc/passwd`, through the containerizer alone: the process runs as that uid, can
/// write to the sandbox (chowned to it) and exits 0 → TASK_FINISHED; the bundle is
/// removed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_backend_runs_the_image_as_the_image_user() {
    let test = "copy_backend_runs_the_image_as_the_image_user";
    if let Some(why) = missing_prerequisite() {
        return skip(test, &why);
    }
    if nix::unistd::User::from_name("appuser")
        .ok()
        .flatten()
        .is_some()
    {
        return skip(
            test,
            "this host has a user 'appuser'; the test needs it only in the image",
        );
    }
    let reg = LocalRegistry::start().await;
    push_image(&reg).await;
    let work = tempfile::tempdir().unwrap();
    let mut cfg = ContainerizerConfig::new(
        work.path(),
        AgentId::new("agent-1"),
        "agent.example",
        "127.0.0.1:5051",
    );
    cfg.isolation = Isolation {
        namespaces: true,
        cgroups: Some(CgroupsConfig {
            root: Some(cgroup_root(work.path())),
            ..CgroupsConfig::default()
        }),
    };
    cfg.images.insecure_registries = vec![reg.host.clone()];
    cfg.images.backend = basalt_agent::oci::RootfsBackend::Copy;
    let cz = Containerizer::new(cfg).unwrap();
    let mut t = TaskInfo::command(
        "t",
        TaskId::new("t"),
        AgentId::new("agent-1"),
        CommandInfo::shell("id -u; echo mine > $MESOS_SANDBOX/owned; cat /etc/passwd | head -1"),
    );
    t.resources = vec![
        Resource::scalar("cpus", 0.1).unwrap(),
        Resource::scalar("mem", 32.0).unwrap(),
    ];
    t.container = Some(ContainerInfo::mesos_with_docker_image(format!(
        "{}/basalt/busybox:1.0",
        reg.host
    )));
    let spec = LaunchSpec::new(ContainerId::new("c1"), FrameworkId::new("fw"), t)
        .with_framework_user("appuser");
    let c = cz.launch(spec).await.unwrap();
    let bundle = work.path().join("images/bundles/c1");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&bundle.display().to_string()),
        "the copy backend mounts nothing"
    );
    let end = c.wait().await;
    let out = std::fs::read_to_string(c.sandbox().join("stdout")).unwrap();
    let err = std::fs::read_to_string(c.sandbox().join("stderr")).unwrap();
    assert_eq!(end.state, TaskState::Finished, "{end:?} {out} {err}");
    assert!(out.starts_with("4321\n"), "{out}");
    assert!(out.contains("root:x:0:0"), "{out}");
    let owned = c.sandbox().join("owned");
    assert_eq!(std::fs::read_to_string(&owned).unwrap(), "mine\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&owned).unwrap().uid(), 4321);
    wait_until("the bundle removed", T, || async {
        (!bundle.exists()).then_some(())
    })
    .await
    .unwrap();
    remove_roots(work.path()).await;
}
