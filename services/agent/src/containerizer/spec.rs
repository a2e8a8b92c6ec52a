//! What a launch needs from the task, worked out in the agent before anything is
//! spawned: ids checked as path components, the Mesos sandbox and meta paths, the
//! argv, the environment, the limits and the kill grace period.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use basalt_mesos::{ContainerId, EnvVariableType, ExecutorId, FrameworkId, TaskInfo};

use super::cgroups::TaskLimits;
use super::error::ContainerizerError;

/// Mesos' command executor default between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(3);

/// The PATH a task gets when neither the agent configuration nor the task sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One task to launch as a command task.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The container id (a UUID chosen by the agent); also the cgroup and run
    /// directory name.
    pub container_id: ContainerId,
    /// The framework the task belongs to.
    pub framework_id: FrameworkId,
    /// `FrameworkInfo.user`: the user when the command names none.
    pub framework_user: Option<String>,
    /// The executor id; the command executor's is the task id (the default).
    pub executor_id: Option<ExecutorId>,
    /// The task (must carry a `command`).
    pub task: TaskInfo,
    /// The sandbox directory when it is not the run directory ([`RunPaths`]): a task of
    /// a task group runs in `<executor sandbox>/tasks/<task_id>`.
    pub sandbox: Option<PathBuf>,
    /// A network namespace to join (`/proc/<pid>/ns/net` or a bind mount of one): the
    /// tasks of a group share one.
    pub netns: Option<PathBuf>,
    /// Host directories made visible in the sandbox (persistent volumes).
    pub volumes: Vec<VolumeMount>,
}

/// A host directory mounted into a task's sandbox: bind-mounted in the task's mount
/// namespace, or a symlink in the sandbox when the task has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The directory on the host.
    pub host_path: PathBuf,
    /// Where it appears, relative to the sandbox (`Volume.container_path`).
    pub container_path: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

impl LaunchSpec {
    /// A spec with the command executor's defaults (executor id = task id, no framework
    /// user).
    pub fn new(container_id: ContainerId, framework_id: FrameworkId, task: TaskInfo) -> Self {
        Self {
            container_id,
            framework_id,
            framework_user: None,
            executor_id: None,
            task,
            sandbox: None,
            netns: None,
            volumes: Vec::new(),
        }
    }

    /// Sets the framework's user.
    pub fn with_framework_user(mut self, user: impl Into<String>) -> Self {
        self.framework_user = Some(user.into());
        self
    }

    /// The executor id (task id unless set).
    pub fn executor_id(&self) -> ExecutorId {
        self.executor_id
            .clone()
            .unwrap_or_else(|| ExecutorId::new(self.task.task_id.value.clone()))
    }

    /// The user to run as: `CommandInfo.user`, else the framework's; `None` for the
    /// agent's own user.
    pub fn user(&self) -> Option<&str> {
        self.task
            .command
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .or(self.framework_user.as_deref())
            .filter(|u| !u.is_empty())
    }

    /// The grace period between SIGTERM and SIGKILL: the task's `kill_policy`, else
    /// [`DEFAULT_GRACE_PERIOD`].
    pub fn grace_period(&self, default: Duration) -> Duration {
        self.task
            .kill_policy
            .as_ref()
            .and_then(|k| k.grace_period)
            .map_or(default, |g| {
                Duration::from_nanos(u64::try_from(g.nanoseconds).unwrap_or(0))
            })
    }

    /// The cgroup limits from the task's `cpus` and `mem` (MB).
    pub fn limits(&self) -> TaskLimits {
        let res = self.task.resource_set();
        TaskLimits {
            cpus: res.cpus().map(|c| c.as_f64()).filter(|c| *c > 0.0),
            mem_bytes: res
                .mem()
                .map(|m| (m.as_f64() * 1024.0 * 1024.0) as u64)
                .filter(|m| *m > 0),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> ContainerizerError {
        ContainerizerError::InvalidTask {
            task_id: self.task.task_id.value.clone(),
            reason: reason.into(),
        }
    }

    /// `(program path, argv)`: `/bin/sh -c <value>` for a shell command, else
    /// `value` with `arguments` as the whole argv (argv\[0\] included, Mesos'
    /// convention; `[value]` when empty).
    pub fn argv(&self) -> Result<(String, Vec<String>), ContainerizerError> {
        let Some(cmd) = &self.task.command else {
            return Err(self.invalid(
                "no 'command': only command tasks can be launched by this containerizer",
            ));
        };
        let value = cmd
            .value
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| self.invalid("'command.value' is empty"))?;
        if cmd.is_shell() {
            Ok((
                "/bin/sh".to_owned(),
                vec!["sh".to_owned(), "-c".to_owned(), value.to_owned()],
            ))
        } else if cmd.arguments.is_empty() {
            Ok((value.to_owned(), vec![value.to_owned()]))
        } else {
            Ok((value.to_owned(), cmd.arguments.clone()))
        }
    }
}

/// Checks an id that becomes a path component (Mesos `validateID`).
pub fn validate_id(field: &'static str, value: &str) -> Result<(), ContainerizerError> {
    let bad = |reason| ContainerizerError::InvalidId {
        field,
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(bad("it is empty"));
    }
    if value == "." || value == ".." {
        return Err(bad("'.' and '..' are not allowed"));
    }
    if value.len() > 255 {
        return Err(bad("it is longer than 255 bytes"));
    }
    if value
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(bad("it contains '/', '\\' or a control character"));
    }
    Ok(())
}

/// Where a run lives on disk, Mesos' layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// `<work_dir>/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>`.
    pub sandbox: PathBuf,
    /// `<work_dir>/meta/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>`.
    pub meta: PathBuf,
}

impl RunPaths {
    /// The paths of one run (ids must be valid, see [`validate_id`]).
    pub fn new(
        work_dir: &Path,
        agent_id: &str,
        framework_id: &str,
        executor_id: &str,
        container_id: &str,
    ) -> Self {
        let tail = |base: PathBuf| {
            base.join("slaves")
                .join(agent_id)
                .join("frameworks")
                .join(framework_id)
                .join("executors")
                .join(executor_id)
                .join("runs")
                .join(container_id)
        };
        Self {
            sandbox: tail(work_dir.to_path_buf()),
            meta: tail(work_dir.join("meta")),
        }
    }
}

/// What the environment is built from besides the task.
#[derive(Debug, Clone)]
pub struct EnvContext<'a> {
    /// Variables every task starts with (the agent's executor environment; PATH).
    pub base: &'a BTreeMap<String, String>,
    /// `HOST`.
    pub hostname: &'a str,
    /// `MESOS_AGENT_ENDPOINT` (`ip:port`).
    pub agent_endpoint: &'a str,
    /// The agent id (`MESOS_SLAVE_ID`, `MESOS_AGENT_ID`).
    pub agent_id: &'a str,
}

/// Marathon's `PORT_<NAME>` form of a port name: upper case, anything but letters and
/// digits as `_`.
pub fn port_env_name(name: &str) -> String {
    let mut s = String::from("PORT_");
    s.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

/// The task's environment: `ctx.base`, then what Mesos and Marathon set (`MESOS_*`,
/// `HOST`, `PORT0..n`, `PORT`, `PORTS`, `PORT_<NAME>`), then `CommandInfo.environment`,
/// which wins (Marathon passes its own `PORT*`, `MARATHON_APP_*` and labels there).
pub fn task_environment(
    ctx: &EnvContext<'_>,
    spec: &LaunchSpec,
    sandbox: &Path,
) -> Result<BTreeMap<String, String>, ContainerizerError> {
    let mut env = ctx.base.clone();
    env.entry("PATH".to_owned())
        .or_insert_with(|| DEFAULT_PATH.to_owned());
    let sandbox = sandbox.display().to_string();
    let task = &spec.task;
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set("MESOS_SANDBOX", sandbox.clone());
    set("MESOS_DIRECTORY", sandbox);
    set("MESOS_TASK_ID", task.task_id.value.clone());
    set("MESOS_FRAMEWORK_ID", spec.framework_id.value.clone());
    set("MESOS_EXECUTOR_ID", spec.executor_id().value);
    set("MESOS_AGENT_ENDPOINT", ctx.agent_endpoint.to_owned());
    set("MESOS_SLAVE_ID", ctx.agent_id.to_owned());
    set("MESOS_AGENT_ID", ctx.agent_id.to_owned());
    set(
        "MESOS_CONTAINER_NAME",
        format!("mesos-{}", spec.container_id.value),
    );
    set("HOST", ctx.hostname.to_owned());

    let ports: Vec<u64> = task
        .resource_set()
        .ports()
        .map(|r| r.values().collect())
        .unwrap_or_default();
    for (i, p) in ports.iter().enumerate() {
        set(&format!("PORT{i}"), p.to_string());
    }
    if let Some(first) = ports.first() {
        set("PORT", first.to_string());
        set(
            "PORTS",
            ports
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if let Some(d) = &task.discovery {
        for p in d.port_list() {
            if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                set(&port_env_name(name), p.number.to_string());
            }
        }
    }

    if let Some(vars) = task.command.as_ref().and_then(|c| c.environment.as_ref()) {
        for v in &vars.variables {
            if v.kind == Some(EnvVariableType::Secret) || v.secret.is_some() {
                return Err(ContainerizerError::SecretEnvironment {
                    name: v.name.clone(),
                });
            }
            if v.name.is_empty() || v.name.contains('=') {
                return Err(ContainerizerError::InvalidTask {
                    task_id: task.task_id.value.clone(),
                    reason: format!(
                        "environment variable name '{}' is empty or contains '='",
                        v.name
                    ),
                });
            }
            env.insert(v.name.clone(), v.value.clone().unwrap_or_default());
        }
    }
    Ok(env)
}

/// The program `execve` gets: paths with a `/` as given (relative ones resolve in the
/// sandbox, the task's working directory), bare names searched in `path` (the task's
/// PATH; an empty entry means the sandbox).
pub fn resolve_program(
    program: &str,
    path: &str,
    sandbox: &Path,
) -> Result<String, ContainerizerError> {
    if program.contains('/') {
        return Ok(program.to_owned());
    }
    for dir in path.split(':') {
        let dir = if dir.is_empty() {
            sandbox
        } else {
            Path::new(dir)
        };
        let candidate = dir.join(program);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate.display().to_string());
        }
    }
    Err(ContainerizerError::CommandNotFound {
        program: program.to_owned(),
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_mesos::{
        AgentId, CommandInfo, DiscoveryInfo, DiscoveryPort, DiscoveryPorts, DiscoveryVisibility,
        Environment, KillPolicy, Nanoseconds, Ranges, Resource, TaskId,
    };

    fn task(cmd: CommandInfo) -> TaskInfo {
        let mut t = TaskInfo::command("t", TaskId::new("app.1"), AgentId::new("a1"), cmd);
        t.resources = vec![
            Resource::scalar("cpus", 0.5).unwrap(),
            Resource::scalar("mem", 64.0).unwrap(),
            Resource::ranges(
                "ports",
                Ranges::parse("[31002-31003, 31000-31000]").unwrap(),
            ),
        ];
        t
    }

    fn spec(cmd: CommandInfo) -> LaunchSpec {
        LaunchSpec::new(ContainerId::new("c1"), FrameworkId::new("fw1"), task(cmd))
    }

    #[test]
    fn argv_shell_and_exec() {
        let s = spec(CommandInfo::shell("echo $HOST"));
        assert_eq!(
            s.argv().unwrap(),
            (
                "/bin/sh".to_owned(),
                vec!["sh".into(), "-c".into(), "echo $HOST".into()]
            )
        );
        let mut c = CommandInfo::shell("/bin/echo");
        c.shell = Some(false);
        assert_eq!(
            spec(c.clone()).argv().unwrap(),
            ("/bin/echo".to_owned(), vec!["/bin/echo".to_owned()])
        );
        c.arguments = vec!["echo".into(), "a b".into()];
        assert_eq!(
            spec(c).argv().unwrap(),
            ("/bin/echo".to_owned(), vec!["echo".into(), "a b".into()])
        );
    }

    #[test]
    fn argv_errors_name_the_field() {
        let mut s = spec(CommandInfo::shell("  "));
        let e = s.argv().unwrap_err();
        assert!(e.to_string().contains("command.value"), "{e}");
        assert_eq!(e.task_state(), basalt_mesos::TaskState::Error);
        s.task.command = None;
        let e = s.argv().unwrap_err();
        assert!(e.to_string().contains("'command'"), "{e}");
    }

    #[test]
    fn environment_has_mesos_and_port_variables() {
        let mut cmd = CommandInfo::shell("true");
        let mut env = Environment::default();
        env.push("MARATHON_APP_LABEL_TEAM", "infra");
        env.push("PORT1", "9999"); // Marathon's own value wins
        cmd.environment = Some(env);
        let mut s = spec(cmd);
        s.task.discovery = Some(DiscoveryInfo {
            visibility: DiscoveryVisibility::Framework,
            name: None,
            environment: None,
            location: None,
            version: None,
            ports: Some(DiscoveryPorts {
                ports: vec![DiscoveryPort {
                    number: 31000,
                    name: Some("http-api".into()),
                    ..Default::default()
                }],
            }),
            labels: None,
            extra: Default::default(),
        });
        let base = BTreeMap::from([("LANG".to_owned(), "C.UTF-8".to_owned())]);
        let ctx = EnvContext {
            base: &base,
            hostname: "node1",
            agent_endpoint: "10.0.0.1:5051",
            agent_id: "a1",
        };
        let env = task_environment(&ctx, &s, Path::new("/w/sandbox")).unwrap();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("MESOS_SANDBOX"), Some("/w/sandbox"));
        assert_eq!(get("MESOS_TASK_ID"), Some("app.1"));
        assert_eq!(get("MESOS_FRAMEWORK_ID"), Some("fw1"));
        assert_eq!(get("MESOS_EXECUTOR_ID"), Some("app.1"));
        assert_eq!(get("MESOS_AGENT_ENDPOINT"), Some("10.0.0.1:5051"));
        assert_eq!(get("MESOS_CONTAINER_NAME"), Some("mesos-c1"));
        assert_eq!(get("HOST"), Some("node1"));
        assert_eq!(get("PORT0"), Some("31000"));
        assert_eq!(get("PORT1"), Some("9999"));
        assert_eq!(get("PORT2"), Some("31003"));
        assert_eq!(get("PORT3"), None);
        assert_eq!(get("PORT"), Some("31000"));
        assert_eq!(get("PORTS"), Some("31000,31002,31003"));
        assert_eq!(get("PORT_HTTP_API"), Some("31000"));
        assert_eq!(get("MARATHON_APP_LABEL_TEAM"), Some("infra"));
        assert_eq!(get("LANG"), Some("C.UTF-8"));
        assert_eq!(get("PATH"), Some(DEFAULT_PATH));
    }

    #[test]
    fn environment_refuses_secrets_and_bad_names() {
        let base = BTreeMap::new();
        let ctx = EnvContext {
            base: &base,
            hostname: "h",
            agent_endpoint: "e",
            agent_id: "a",
        };
        let mut cmd = CommandInfo::shell("true");
        let mut env = Environment::default();
        env.variables.push(basalt_mesos::EnvVariable {
            name: "TOKEN".into(),
            kind: Some(EnvVariableType::Secret),
            value: None,
            secret: Some(serde_json::json!({"type":"REFERENCE"})),
        });
        cmd.environment = Some(env);
        let e = task_environment(&ctx, &spec(cmd.clone()), Path::new("/s")).unwrap_err();
        assert!(e.to_string().contains("'TOKEN'"), "{e}");
        let mut env = Environment::default();
        env.push("A=B", "x");
        cmd.environment = Some(env);
        let e = task_environment(&ctx, &spec(cmd), Path::new("/s")).unwrap_err();
        assert!(e.to_string().contains("'A=B'"), "{e}");
    }

    #[test]
    fn limits_and_grace() {
        let mut s = spec(CommandInfo::shell("true"));
        let l = s.limits();
        assert_eq!(l.cpus, Some(0.5));
        assert_eq!(l.mem_bytes, Some(64 << 20));
        assert_eq!(s.grace_period(DEFAULT_GRACE_PERIOD), Duration::from_secs(3));
        s.task.kill_policy = Some(KillPolicy {
            grace_period: Some(Nanoseconds {
                nanoseconds: 1_500_000_000,
            }),
            extra: Default::default(),
        });
        assert_eq!(
            s.grace_period(DEFAULT_GRACE_PERIOD),
            Duration::from_millis(1500)
        );
        s.task.resources.clear();
        assert_eq!(s.limits(), TaskLimits::default());
    }

    #[test]
    fn user_choice() {
        let mut s = spec(CommandInfo::shell("true")).with_framework_user("fwuser");
        assert_eq!(s.user(), Some("fwuser"));
        if let Some(c) = s.task.command.as_mut() {
            c.user = Some("nobody".into());
        }
        assert_eq!(s.user(), Some("nobody"));
        s.framework_user = Some(String::new());
        if let Some(c) = s.task.command.as_mut() {
            c.user = None;
        }
        assert_eq!(s.user(), None);
    }

    #[test]
    fn ids_and_paths() {
        assert!(validate_id("container_id", "4f2e-aa").is_ok());
        for bad in ["", ".", "..", "a/b", "a\nb"] {
            let e = validate_id("framework_id", bad).unwrap_err();
            assert!(e.to_string().starts_with("framework_id"), "{e}");
        }
        let p = RunPaths::new(Path::new("/var/lib/mesos/slave"), "a1", "fw", "ex", "c1");
        assert_eq!(
            p.sandbox,
            Path::new("/var/lib/mesos/slave/slaves/a1/frameworks/fw/executors/ex/runs/c1")
        );
        assert_eq!(
            p.meta,
            Path::new("/var/lib/mesos/slave/meta/slaves/a1/frameworks/fw/executors/ex/runs/c1")
        );
    }

    #[test]
    fn program_resolution() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_program("./run.sh", "/nonexistent", dir.path()).unwrap(),
            "./run.sh"
        );
        let sh = resolve_program("sh", "/nonexistent:/bin:/usr/bin", dir.path()).unwrap();
        assert!(sh.ends_with("/sh"), "{sh}");
        let e = resolve_program("no-such-program-xyz", "/bin", dir.path()).unwrap_err();
        assert!(e.to_string().contains("no-such-program-xyz"), "{e}");
        // An empty PATH entry is the sandbox; a non-executable file does not count.
        let f = dir.path().join("tool");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        assert!(resolve_program("tool", ":/bin", dir.path()).is_err());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            resolve_program("tool", ":/bin", dir.path()).unwrap(),
            f.display().to_string()
        );
    }
}
