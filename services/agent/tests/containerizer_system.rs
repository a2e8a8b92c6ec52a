//! The containerizer against this machine: real processes, real cgroups, real
//! namespaces. Plain tests run anywhere; isolated ones need root and cgroup v1 (or v2)
//! controllers and print why they are skipped otherwise. Every container is held by a
//! guard that kills it and removes its cgroup even when an assertion fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use basalt_agent::containerizer::{
    CgroupVersion, CgroupsConfig, Container, Containerizer, ContainerizerConfig,
    ContainerizerError, Isolation, LaunchSpec, Termination,
};
use basalt_mesos::{
    AgentId, CommandInfo, ContainerId, DiscoveryInfo, DiscoveryPort, DiscoveryPorts,
    DiscoveryVisibility, Environment, FrameworkId, KillPolicy, Nanoseconds, Ranges, Resource,
    TaskId, TaskInfo, TaskState, TaskStatusReason, TaskStatusSource,
};

const WAIT: Duration = Duration::from_secs(30);

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Kills the container and removes its cgroup when dropped (test failure included).
struct Running(Container);

impl std::ops::Deref for Running {
    type Target = Container;
    fn deref(&self) -> &Container {
        &self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.0.destroy_blocking(Duration::from_secs(10)) {
            eprintln!("container {} could not be cleaned up", self.0.id());
        }
    }
}

/// A containerizer in a temporary work dir; removes its cgroup roots when dropped.
struct Env {
    _work: tempfile::TempDir,
    c: Containerizer,
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in self.c.containers() {
            c.destroy_blocking(Duration::from_secs(10));
        }
        if let Some(mgr) = self.c.cgroups() {
            for d in mgr.root_dirs() {
                if d.exists()
                    && let Err(e) = std::fs::remove_dir(&d)
                {
                    eprintln!("removing {}: {e}", d.display());
                }
            }
        }
    }
}

impl Env {
    fn new(isolation: Isolation) -> Env {
        let work = tempfile::tempdir().unwrap();
        let mut cfg = ContainerizerConfig::new(
            work.path(),
            AgentId::new("agent-1"),
            "node-1.example",
            "10.0.0.1:5051",
        );
        cfg.isolation = isolation;
        cfg.oom_check_interval = Duration::from_millis(50);
        Env {
            c: Containerizer::new(cfg).unwrap(),
            _work: work,
        }
    }

    fn plain() -> Env {
        Env::new(Isolation::none())
    }

    /// Namespaces + cgroups under a root of its own, or why not.
    fn isolated(tag: &str) -> Result<Env, String> {
        Env::isolated_with(tag, CgroupsConfig::default())
    }

    fn isolated_with(tag: &str, mut cg: CgroupsConfig) -> Result<Env, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not running as root".into());
        }
        cg.root = Some(unique(&format!("basalt-test-{tag}")));
        let work = tempfile::tempdir().unwrap();
        let mut cfg = ContainerizerConfig::new(
            work.path(),
            AgentId::new("agent-1"),
            "node-1.example",
            "10.0.0.1:5051",
        );
        cfg.isolation = Isolation {
            namespaces: true,
            cgroups: Some(cg),
        };
        cfg.oom_check_interval = Duration::from_millis(50);
        let c = Containerizer::new(cfg).map_err(|e| format!("no usable cgroups: {e}"))?;
        Ok(Env { c, _work: work })
    }

    async fn launch(&self, spec: LaunchSpec) -> Running {
        Running(self.c.launch(spec).await.unwrap())
    }
}

fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}

fn task(id: &str, cmd: CommandInfo, cpus: f64, mem: f64) -> TaskInfo {
    let mut t = TaskInfo::command("test", TaskId::new(id), AgentId::new("agent-1"), cmd);
    t.resources = vec![
        Resource::scalar("cpus", cpus).unwrap(),
        Resource::scalar("mem", mem).unwrap(),
    ];
    t
}

fn spec(cmd: CommandInfo) -> LaunchSpec {
    spec_with(cmd, 0.5, 64.0)
}

fn spec_with(cmd: CommandInfo, cpus: f64, mem: f64) -> LaunchSpec {
    let id = unique("task");
    LaunchSpec::new(
        ContainerId::new(unique("c")),
        FrameworkId::new("fw-1"),
        task(&id, cmd, cpus, mem),
    )
}

async fn wait(c: &Container) -> Termination {
    tokio::time::timeout(WAIT, c.wait())
        .await
        .unwrap_or_else(|_| panic!("container {} did not end in {WAIT:?}", c.id()))
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.as_ref().display()))
}

/// Polls `f` until true, failing after `timeout`.
async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_output(c: &Container, needle: &str) {
    let out = c.sandbox().join("stdout");
    eventually(&format!("'{needle}' in {}", out.display()), WAIT, || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains(needle))
    })
    .await;
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
}

// ---- plain processes (no root needed) ---------------------------------------------------

#[tokio::test]
async fn plain_task_gets_mesos_environment_sandbox_and_finishes() {
    let env = Env::plain();
    let mut cmd = CommandInfo::shell(
        "echo \"sandbox=$MESOS_SANDBOX\"; echo \"task=$MESOS_TASK_ID fw=$MESOS_FRAMEWORK_ID\"; \
         echo \"host=$HOST agent=$MESOS_AGENT_ENDPOINT\"; echo \"ports=$PORTS p0=$PORT0 p1=$PORT1 web=$PORT_WEB\"; \
         echo \"label=$MARATHON_APP_LABEL_TEAM\"; echo \"cwd=$(pwd)\"; echo to-stderr >&2",
    );
    let mut vars = Environment::default();
    vars.push("MARATHON_APP_LABEL_TEAM", "infra");
    cmd.environment = Some(vars);
    let mut s = spec(cmd);
    s.task.resources.push(Resource::ranges(
        "ports",
        Ranges::parse("[31000-31001]").unwrap(),
    ));
    s.task.discovery = Some(DiscoveryInfo {
        visibility: DiscoveryVisibility::Framework,
        name: None,
        environment: None,
        location: None,
        version: None,
        ports: Some(DiscoveryPorts {
            ports: vec![DiscoveryPort {
                number: 31001,
                name: Some("web".into()),
                ..Default::default()
            }],
        }),
        labels: None,
        extra: Default::default(),
    });
    let task_id = s.task.task_id.value.clone();
    let cid = s.container_id.value.clone();
    let c = env.launch(s).await;
    let t = wait(&c).await;
    assert_eq!(t.state, TaskState::Finished, "{}", t.message);
    assert_eq!(t.message, "Command exited with status 0");
    assert_eq!(t.exit_code, Some(0));

    let sandbox = c.sandbox().to_path_buf();
    assert!(
        sandbox.ends_with(format!(
            "slaves/agent-1/frameworks/fw-1/executors/{task_id}/runs/{cid}"
        )),
        "{}",
        sandbox.display()
    );
    let out = read(sandbox.join("stdout"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!("sandbox={}", sandbox.display()),
            format!("task={task_id} fw=fw-1"),
            "host=node-1.example agent=10.0.0.1:5051".to_owned(),
            "ports=31000,31001 p0=31000 p1=31001 web=31001".to_owned(),
            "label=infra".to_owned(),
            format!("cwd={}", sandbox.display()),
        ]
    );
    assert_eq!(read(sandbox.join("stderr")), "to-stderr\n");
    // runs/latest points here; the checkpoints are in the meta dir.
    let latest = sandbox.parent().unwrap().join("latest");
    assert_eq!(std::fs::read_link(latest).unwrap(), PathBuf::from(&cid));
    let cp: serde_json::Value =
        serde_json::from_str(&read(c.meta_dir().join("container.json"))).unwrap();
    assert_eq!(cp["pid"], c.pid());
    assert_eq!(cp["task_id"]["value"], task_id.as_str());
    let term: Termination =
        serde_json::from_str(&read(c.meta_dir().join("termination.json"))).unwrap();
    assert_eq!(term, t);
    assert!(
        env.c.get(c.id()).is_none(),
        "ended containers leave the registry"
    );
}

#[tokio::test]
async fn plain_exit_codes_and_argv() {
    let env = Env::plain();
    let c = env.launch(spec(CommandInfo::shell("exit 3"))).await;
    let t = wait(&c).await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.message, "Command exited with status 3");
    let st = t.task_status(c.task_id().clone());
    assert_eq!(st.source, Some(TaskStatusSource::Executor));

    // Not a shell: `arguments` is the whole argv, spaces kept.
    let mut cmd = CommandInfo::shell("printf");
    cmd.shell = Some(false);
    cmd.arguments = vec![
        "printf".into(),
        "%s|%s".into(),
        "a b".into(),
        "$HOME".into(),
    ];
    let c = env.launch(spec(cmd)).await;
    let t = wait(&c).await;
    assert_eq!(t.state, TaskState::Finished, "{}", t.message);
    assert_eq!(read(c.sandbox().join("stdout")), "a b|$HOME");

    // Killed by a signal it did not ask for.
    let c = env.launch(spec(CommandInfo::shell("kill -SEGV $$"))).await;
    let t = wait(&c).await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(
        t.message,
        "Command terminated with signal Segmentation fault"
    );
}

#[tokio::test]
async fn plain_kill_with_sigterm_handler_ends_within_grace() {
    let env = Env::plain();
    let c = env
        .launch(spec(CommandInfo::shell(
            "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        )))
        .await;
    wait_for_output(&c, "ready").await;
    let u = c.usage().unwrap();
    assert_eq!(u.cpus_limit, Some(0.5));
    assert_eq!(u.mem_limit_bytes, Some(64 << 20));
    assert!(u.mem_rss_bytes.unwrap_or(0) > 0, "{u:?}");
    let start = Instant::now();
    let t = tokio::time::timeout(WAIT, c.kill_and_wait(Some(Duration::from_secs(20))))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(t.state, TaskState::Killed);
    assert_eq!(t.message, "Command exited with status 0");
    assert!(read(c.sandbox().join("stdout")).contains("got-term"));
}

#[tokio::test]
async fn plain_kill_ignoring_sigterm_gets_sigkill_after_grace() {
    let env = Env::plain();
    let c = env
        .launch(spec(CommandInfo::shell(
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        )))
        .await;
    wait_for_output(&c, "ready").await;
    let grace = Duration::from_millis(400);
    let start = Instant::now();
    let t = tokio::time::timeout(WAIT, c.kill_and_wait(Some(grace)))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= grace,
        "SIGKILL came before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(t.state, TaskState::Killed);
    assert_eq!(t.signal, Some(nix::libc::SIGKILL));
    assert_eq!(t.message, "Command terminated with signal Killed");
    assert!(!alive(c.pid()));
}

#[tokio::test]
async fn the_kill_policy_is_the_default_grace() {
    let env = Env::plain();
    let mut s = spec(CommandInfo::shell(
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    ));
    s.task.kill_policy = Some(KillPolicy {
        grace_period: Some(Nanoseconds {
            nanoseconds: 200_000_000,
        }),
        extra: Default::default(),
    });
    let c = env.launch(s).await;
    assert_eq!(c.grace_period(), Duration::from_millis(200));
    wait_for_output(&c, "ready").await;
    let start = Instant::now();
    let t = tokio::time::timeout(WAIT, c.kill_and_wait(None))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(t.state, TaskState::Killed);
}

#[tokio::test]
async fn bad_inputs_give_clear_errors_and_leave_nothing_running() {
    let env = Env::plain();
    let mut cmd = CommandInfo::shell("true");
    cmd.user = Some("no-such-user-basalt".into());
    let s = spec(cmd);
    let task_id = s.task.task_id.clone();
    let e = env.c.launch(s).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "user 'no-such-user-basalt' does not exist on the agent"
    );
    let st = e.task_status(task_id);
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.reason, Some(TaskStatusReason::ContainerLaunchFailed));
    assert_eq!(
        st.message.as_deref(),
        Some("user 'no-such-user-basalt' does not exist on the agent")
    );

    // The framework's user counts when the command names none.
    let s = spec(CommandInfo::shell("true")).with_framework_user("no-such-fw-user");
    let e = env.c.launch(s).await.unwrap_err();
    assert!(matches!(e, ContainerizerError::UnknownUser { .. }), "{e}");

    let mut s = spec(CommandInfo::shell("true"));
    s.task.command = None;
    let e = env.c.launch(s).await.unwrap_err();
    assert_eq!(e.task_state(), TaskState::Error);

    let mut cmd = CommandInfo::shell("no-such-program-basalt");
    cmd.shell = Some(false);
    let e = env.c.launch(spec(cmd)).await.unwrap_err();
    assert!(
        e.to_string().contains("'no-such-program-basalt' not found"),
        "{e}"
    );

    // A path that is not there fails at execve, reported back from the child.
    let mut cmd = CommandInfo::shell("/nonexistent/basalt-prog");
    cmd.shell = Some(false);
    let e = env.c.launch(spec(cmd)).await.unwrap_err();
    match &e {
        ContainerizerError::Spawn { step, errno } => {
            assert_eq!(*step, "execve");
            assert_eq!(*errno, nix::errno::Errno::ENOENT);
        }
        other => panic!("{other}"),
    }

    let mut s = spec(CommandInfo::shell("true"));
    s.container_id = ContainerId::new("../escape");
    let e = env.c.launch(s).await.unwrap_err();
    assert!(e.to_string().starts_with("container_id '../escape'"), "{e}");

    // One container id, one container.
    let s = spec(CommandInfo::shell("echo ready; sleep 30"));
    let mut again = spec(CommandInfo::shell("true"));
    again.container_id = s.container_id.clone();
    let c = env.launch(s).await;
    let e = env.c.launch(again).await.unwrap_err();
    assert!(
        matches!(e, ContainerizerError::DuplicateContainer { .. }),
        "{e}"
    );
    assert_eq!(env.c.containers().len(), 1);
    let t = tokio::time::timeout(WAIT, c.kill_and_wait(Some(Duration::ZERO)))
        .await
        .unwrap();
    assert_eq!(t.state, TaskState::Killed);
    assert!(env.c.containers().is_empty());
}

// ---- isolated: namespaces + cgroups (root) ------------------------------------------------

fn v1_file(c: &Container, controller: &str, file: &str) -> String {
    let cg = c.cgroup().expect("cgroup");
    let dir = cg
        .dirs
        .iter()
        .find(|d| d.components().any(|x| x.as_os_str() == controller))
        .unwrap_or_else(|| panic!("no {controller} dir in {:?}", cg.dirs));
    read(dir.join(file)).trim().to_owned()
}

fn cgroup_pids(c: &Container) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    for f in c.cgroup().unwrap().procs_files() {
        if let Ok(t) = std::fs::read_to_string(f) {
            pids.extend(t.split_whitespace().map(|p| p.parse::<i32>().unwrap()));
        }
    }
    pids
}

#[tokio::test]
async fn isolated_task_runs_under_its_cgroup_limits() {
    let env = match Env::isolated("limits") {
        Ok(e) => e,
        Err(r) => return skip("isolated_task_runs_under_its_cgroup_limits", &r),
    };
    let c = env
        .launch(spec_with(
            CommandInfo::shell("cat /proc/self/cgroup; sleep 60 & echo ready; wait"),
            0.5,
            64.0,
        ))
        .await;
    wait_for_output(&c, "ready").await;
    let cg = c.cgroup().unwrap().clone();
    match cg.version {
        CgroupVersion::V1 => {
            assert_eq!(v1_file(&c, "cpu", "cpu.shares"), "512");
            assert_eq!(v1_file(&c, "cpu", "cpu.cfs_period_us"), "100000");
            assert_eq!(v1_file(&c, "cpu", "cpu.cfs_quota_us"), "50000");
            assert_eq!(
                v1_file(&c, "memory", "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            assert_eq!(
                v1_file(&c, "memory", "memory.soft_limit_in_bytes"),
                (64u64 << 20).to_string()
            );
        }
        CgroupVersion::V2 => {
            let dir = &cg.dirs[0];
            assert_eq!(read(dir.join("cpu.weight")).trim(), "20");
            assert_eq!(read(dir.join("cpu.max")).trim(), "50000 100000");
            assert_eq!(
                read(dir.join("memory.max")).trim(),
                (64u64 << 20).to_string()
            );
        }
    }
    // The task itself says it is in the container's cgroup.
    let out = read(c.sandbox().join("stdout"));
    assert!(
        out.lines()
            .any(|l| l.contains("memory") && l.ends_with(&c.id().value))
            || out
                .lines()
                .any(|l| l.starts_with("0::") && l.ends_with(&c.id().value)),
        "{out}"
    );
    let pids = cgroup_pids(&c);
    assert!(pids.len() >= 2, "shell and sleep: {pids:?}");
    // The namespace init shares the agent's memory and stays out of the task's cgroups.
    assert!(!pids.contains(&c.pid()), "{pids:?}");
    let u = c.usage().unwrap();
    assert!(u.mem_total_bytes.unwrap_or(0) > 0, "{u:?}");
    assert!(u.processes.unwrap_or(0) >= 2, "{u:?}");
    assert!(u.cpus_user_time_secs.is_some(), "{u:?}");

    let t = tokio::time::timeout(WAIT, c.kill_and_wait(Some(Duration::from_millis(200))))
        .await
        .unwrap();
    assert_eq!(t.state, TaskState::Killed);
    for p in pids.iter().chain([&c.pid()]) {
        assert!(!alive(*p), "pid {p} of the container survived the kill");
    }
    for d in &cg.dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[tokio::test]
async fn isolated_task_has_its_own_pid_namespace_and_proc() {
    let env = match Env::isolated("pidns") {
        Ok(e) => e,
        Err(r) => return skip("isolated_task_has_its_own_pid_namespace_and_proc", &r),
    };
    let c = env
        .launch(spec(CommandInfo::shell(
            "echo \"self=$$\"; echo \"procs=$(ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' ')\"",
        )))
        .await;
    let t = wait(&c).await;
    assert_eq!(t.state, TaskState::Finished, "{}", t.message);
    let out = read(c.sandbox().join("stdout"));
    assert!(
        out.contains("self=2\n"),
        "the task is pid 2 under the namespace init: {out}"
    );
    let procs: Vec<i32> = out
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(procs[..2], [1, 2], "{out}");
    assert!(
        procs.len() <= 8 && procs.iter().all(|p| *p < 50),
        "only its own processes: {out}"
    );
    // The agent's /proc is untouched by the task's mount.
    assert!(Path::new(&format!("/proc/{}", std::process::id())).exists());
    assert_eq!(read(c.meta_dir().join("wait_status")), "0\n");

    // The init exits 0 whatever the task did: the task's own status comes through the
    // wait_status file the init writes.
    let c = env.launch(spec(CommandInfo::shell("exit 3"))).await;
    let t = wait(&c).await;
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.message, "Command exited with status 3");
    assert_eq!(
        read(c.meta_dir().join("wait_status")),
        format!("{}\n", 3 << 8)
    );
}

#[tokio::test]
async fn isolated_task_runs_as_the_requested_user() {
    let env = match Env::isolated("user") {
        Ok(e) => e,
        Err(r) => return skip("isolated_task_runs_as_the_requested_user", &r),
    };
    let Some(nobody) = nix::unistd::User::from_name("nobody").unwrap() else {
        return skip(
            "isolated_task_runs_as_the_requested_user",
            "no 'nobody' user",
        );
    };
    let mut cmd = CommandInfo::shell("id -u; id -g; echo written > \"$MESOS_SANDBOX/own-file\"");
    cmd.user = Some("nobody".into());
    let c = env.launch(spec(cmd)).await;
    let t = wait(&c).await;
    assert_eq!(t.state, TaskState::Finished, "{}", t.message);
    let out = read(c.sandbox().join("stdout"));
    assert_eq!(
        out,
        format!("{}\n{}\n", nobody.uid.as_raw(), nobody.gid.as_raw())
    );
    assert_eq!(read(c.sandbox().join("own-file")), "written\n");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(c.sandbox().join("stdout")).unwrap();
    assert_eq!(meta.uid(), nobody.uid.as_raw());
}

#[tokio::test]
async fn isolated_task_over_its_memory_is_oom_killed() {
    let env = match Env::isolated("oom") {
        Ok(e) => e,
        Err(r) => return skip("isolated_task_over_its_memory_is_oom_killed", &r),
    };
    // The agent (this test) is bigger than the task may grow: the OOM killer must
    // still pick the task, never the namespace init that shares the agent's memory
    // (an OOM kill of the init would kill this process too).
    let ballast = vec![7u8; 96 << 20];
    std::hint::black_box(&ballast);
    // `tail` keeps a newline-free stream in memory: 200 MiB against a 32 MiB limit.
    let c = env
        .launch(spec_with(
            CommandInfo::shell("head -c 200M /dev/zero | tail"),
            0.1,
            32.0,
        ))
        .await;
    let cg = c.cgroup().unwrap().clone();
    let t = wait(&c).await;
    assert_eq!(t.state, TaskState::Failed, "{t:?}");
    assert_eq!(t.reason, Some(TaskStatusReason::ContainerLimitationMemory));
    assert_eq!(t.source, TaskStatusSource::Agent);
    assert!(t.oom);
    assert!(
        t.message
            .starts_with("Memory limit exceeded: Requested: 32MB Maximum Used: "),
        "{}",
        t.message
    );
    let st = t.task_status(c.task_id().clone());
    assert_eq!(st.reason, Some(TaskStatusReason::ContainerLimitationMemory));
    for d in &cg.dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[tokio::test]
async fn isolated_kill_goes_through_the_namespace_init() {
    let env = match Env::isolated("term") {
        Ok(e) => e,
        Err(r) => return skip("isolated_kill_goes_through_the_namespace_init", &r),
    };
    // SIGTERM reaches the task (pid 2) through the init, which forwards it.
    let c = env
        .launch(spec(CommandInfo::shell(
            "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        )))
        .await;
    wait_for_output(&c, "ready").await;
    let start = Instant::now();
    let t = tokio::time::timeout(WAIT, c.kill_and_wait(Some(Duration::from_secs(20))))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(t.state, TaskState::Killed);
    assert_eq!(t.message, "Command exited with status 0");
    assert!(read(c.sandbox().join("stdout")).contains("got-term"));

    // A task that ignores SIGTERM and leaves children behind: SIGKILL after the grace
    // period, and nothing of it survives.
    let c = env
        .launch(spec(CommandInfo::shell(
            "trap '' TERM; sleep 300 & sleep 300 & (trap '' TERM; setsid sleep 300 &); echo ready; wait",
        )))
        .await;
    wait_for_output(&c, "ready").await;
    let cg = c.cgroup().unwrap().clone();
    let pids = cgroup_pids(&c);
    assert!(pids.len() >= 4, "shell, three sleeps: {pids:?}");
    let pids: BTreeSet<i32> = pids.into_iter().chain([c.pid()]).collect();
    let grace = Duration::from_millis(300);
    let start = Instant::now();
    let t = tokio::time::timeout(WAIT, c.kill_and_wait(Some(grace)))
        .await
        .unwrap();
    assert!(start.elapsed() >= grace);
    assert_eq!(t.state, TaskState::Killed);
    for p in &pids {
        assert!(!alive(*p), "pid {p} survived");
    }
    for d in &cg.dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[tokio::test]
async fn isolated_v2_unified_hierarchy_when_available() {
    let test = "isolated_v2_unified_hierarchy_when_available";
    let mountinfo = read("/proc/self/mountinfo");
    let Some(mount) = mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f.get(sep + 1) == Some(&"cgroup2")).then(|| PathBuf::from(f[4]))
    }) else {
        return skip(test, "no cgroup2 mount");
    };
    let offered = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| offered.split_whitespace().any(|o| o == c);
    let limits = has("cpu") && has("memory");
    let cfg = CgroupsConfig {
        version: Some(CgroupVersion::V2),
        v2_mount: Some(mount.clone()),
        cpu: limits,
        memory: limits,
        ..CgroupsConfig::default()
    };
    if !limits {
        eprintln!(
            "{test}: {} offers '{}' (no cpu+memory): testing process tracking and kill only",
            mount.display(),
            offered.trim()
        );
    }
    let env = match Env::isolated_with("v2", cfg) {
        Ok(e) => e,
        Err(r) => return skip(test, &r),
    };
    let c = env
        .launch(spec(CommandInfo::shell("sleep 60 & echo ready; wait")))
        .await;
    wait_for_output(&c, "ready").await;
    let cg = c.cgroup().unwrap().clone();
    assert_eq!(cg.version, CgroupVersion::V2);
    assert!(cg.dirs[0].starts_with(&mount));
    let pids = cgroup_pids(&c);
    assert!(!pids.contains(&c.pid()) && pids.len() >= 2, "{pids:?}");
    if limits {
        assert_eq!(read(cg.dirs[0].join("cpu.max")).trim(), "50000 100000");
        assert_eq!(
            read(cg.dirs[0].join("memory.max")).trim(),
            (64u64 << 20).to_string()
        );
    }
    let t = tokio::time::timeout(WAIT, c.kill_and_wait(Some(Duration::from_millis(100))))
        .await
        .unwrap();
    assert_eq!(t.state, TaskState::Killed);
    for p in &pids {
        assert!(!alive(*p), "pid {p} survived");
    }
    assert!(!cg.dirs[0].exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_quick_tasks_all_finish() {
    // /bin/true exits before the namespace init is ready to wait: every exit must
    // still be seen (a lost SIGCHLD once left such tasks running forever).
    let env = match Env::isolated("quick") {
        Ok(e) => e,
        Err(r) => return skip("isolated_quick_tasks_all_finish", &r),
    };
    let env = std::sync::Arc::new(env);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let env = std::sync::Arc::clone(&env);
        set.spawn(async move {
            for _ in 0..25 {
                let mut cmd = CommandInfo::shell("/bin/true");
                cmd.shell = Some(false);
                let c = env.launch(spec(cmd)).await;
                let t = wait(&c).await;
                assert_eq!(t.state, TaskState::Finished, "{}", t.message);
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert!(env.c.containers().is_empty());
}
