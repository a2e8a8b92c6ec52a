//! The containerizer for command tasks: one real process per task, isolated like Mesos'
//! `MesosContainerizer` with the `cgroups/cpu,cgroups/mem,namespaces/pid,filesystem/linux`
//! isolators and the command executor's semantics.
//!
//! ```text
//! let c = Containerizer::new(config)?;                // host cgroups detected
//! let container = c.launch(LaunchSpec::new(cid, fw_id, task)).await?;   // TASK_RUNNING
//! container.kill(None);                               // SIGTERM, SIGKILL after grace
//! let t = container.wait().await;                     // Termination → TaskStatus
//! ```
//!
//! # A launch
//!
//! 1. Checks the ids (they become path components), the command (`shell: true` →
//!    `/bin/sh -c value`; else `value` with `arguments` as argv, `value` searched in the
//!    task's PATH), the user (`CommandInfo.user`, else `FrameworkInfo.user`; unknown →
//!    `user 'x' does not exist on the agent`, TASK_FAILED) and SECRET variables (refused:
//!    no secret resolver).
//! 2. Makes the sandbox `<work_dir>/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>`
//!    (Mesos' layout, `runs/latest` pointing at it) with `stdout` and `stderr`, owned by
//!    the task's user, and the meta directory under `<work_dir>/meta/...`.
//! 3. Creates the cgroup `<root>/<container_id>` with the task's limits
//!    ([`cgroups`] module: shares, CFS quota, hard and soft memory limit; v1 and v2).
//! 4. Clones the process (details in the `launch` module; `clone(CLONE_VM)`, so a launch
//!    costs about what `posix_spawn` does): with namespaces, a small init (pid 1 of new
//!    pid and mount namespaces with a private `/proc`; it shares the agent's memory and
//!    stays out of the task's cgroups) starts the task as pid 2. The task joins the
//!    cgroup itself before `execve`, and gets its own session, the sandbox as working
//!    directory, the user's credentials (`setgroups`/`setresgid`/`setresuid` after all
//!    privileged setup) and this environment:
//!    the configured base (PATH), `MESOS_SANDBOX`, `MESOS_DIRECTORY`, `MESOS_TASK_ID`,
//!    `MESOS_FRAMEWORK_ID`, `MESOS_EXECUTOR_ID`, `MESOS_AGENT_ENDPOINT`,
//!    `MESOS_SLAVE_ID`/`MESOS_AGENT_ID`, `MESOS_CONTAINER_NAME`, `HOST`, `PORT0..n`,
//!    `PORT`, `PORTS`, `PORT_<NAME>` (discovery port names), then
//!    `CommandInfo.environment` (Marathon's own `PORT*`, `MARATHON_APP_*` and labels),
//!    which wins.
//! 5. Returns once `execve` succeeded, after checkpointing `container.json` (pid, its
//!    start time, cgroup) in the meta directory ([`checkpoint`]); the init writes the
//!    task's wait status to `wait_status` there when it ends.
//!
//! # The end
//!
//! A supervisor task per container waits on a pidfd. Exit 0 → TASK_FINISHED, else
//! TASK_FAILED `Command exited with status N` / `Command terminated with signal S`
//! (source SOURCE_EXECUTOR). [`Container::kill`] → SIGTERM to the task's process
//! group, SIGKILL to everything (namespace init, process group, every pid in the
//! cgroup) after the grace period (task `kill_policy`, default 3 s) → TASK_KILLED. An
//! OOM kill in the memory cgroup (`oom_kill` of `memory.oom_control` / `memory.events`,
//! polled every `oom_check_interval` and checked at exit) destroys the container →
//! TASK_FAILED, `REASON_CONTAINER_LIMITATION_MEMORY`, SOURCE_AGENT,
//! `Memory limit exceeded: Requested: 32MB Maximum Used: 32MB`. Whatever the end, every
//! process of the container is killed and its cgroup removed before
//! [`Container::wait`] returns, and `termination.json` is checkpointed.
//!
//! # Limits
//!
//! * Without cgroups, a process that leaves the task's process group (`setsid`) is
//!   not found on kill unless namespaces are on (the namespace dies with its init).
//! * Recovery after an agent restart (item 6) can read the checkpoints
//!   ([`checkpoint::list_checkpoints`], [`checkpoint::read_wait_status`]) but
//!   re-attaching to running containers is not implemented yet; when the agent process
//!   ends, its tasks keep running (and their inits keep the old agent's memory mapped
//!   until they end).
//! * The OOM kill is noticed by polling (`oom_check_interval`, default 250 ms) and at
//!   exit, not through eventfd/`memory.events` notifications.
//! * Only top-level containers (no nested container ids) and command tasks; x86_64 and
//!   aarch64 (raw system calls).

pub mod cgroups;
pub mod checkpoint;
mod container;
mod error;
mod launch;
mod rawsys;
mod spec;
pub mod usage;
mod user;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_mesos::{AgentId, ContainerId};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};

pub use cgroups::{
    CgroupError, CgroupFs, CgroupLayout, CgroupManager, CgroupVersion, CgroupsConfig, FakeCgroupFs,
    HostCgroupFs, TaskCgroup, TaskLimits,
};
pub use checkpoint::ContainerCheckpoint;
pub use container::{Container, Termination};
pub use error::ContainerizerError;
pub use spec::{
    DEFAULT_GRACE_PERIOD, DEFAULT_PATH, EnvContext, LaunchSpec, RunPaths, VolumeMount,
    port_env_name, resolve_program, task_environment, validate_id,
};
pub use usage::ResourceStatistics;
pub use user::TaskUser;

use container::{Registry, Shared, Supervisor, lock};
use launch::ChildPlan;

/// Which isolation tasks get.
#[derive(Debug, Clone, PartialEq)]
pub struct Isolation {
    /// New pid and mount namespaces (with a private `/proc`) per task.
    pub namespaces: bool,
    /// A cgroup per task, with limits; `None` for none.
    pub cgroups: Option<CgroupsConfig>,
}

impl Isolation {
    /// Plain processes: no namespaces, no cgroups (runs without root).
    pub fn none() -> Self {
        Self {
            namespaces: false,
            cgroups: None,
        }
    }

    /// Namespaces and cgroups with the default settings.
    pub fn full() -> Self {
        Self {
            namespaces: true,
            cgroups: Some(CgroupsConfig::default()),
        }
    }
}

/// Containerizer settings (the agent's flags).
#[derive(Debug, Clone)]
pub struct ContainerizerConfig {
    /// The agent's `--work_dir` (DC/OS: `/var/lib/mesos/slave`).
    pub work_dir: PathBuf,
    /// The agent id (sandbox path, `MESOS_SLAVE_ID`).
    pub agent_id: AgentId,
    /// `HOST` for tasks.
    pub hostname: String,
    /// `MESOS_AGENT_ENDPOINT` (`ip:port`).
    pub agent_endpoint: String,
    /// Namespaces and cgroups.
    pub isolation: Isolation,
    /// Run tasks as their user (Mesos `--switch_user`, default true).
    pub switch_user: bool,
    /// Grace period of a kill when the task has no kill policy (3 s).
    pub default_grace_period: Duration,
    /// Variables every task starts with (Mesos `--executor_environment_variables`);
    /// `PATH` defaults to [`DEFAULT_PATH`].
    pub environment: BTreeMap<String, String>,
    /// How often the memory cgroup's OOM-kill count is checked while a task runs.
    pub oom_check_interval: Duration,
    /// Registries and runtime of image tasks ([`crate::oci`]).
    pub images: crate::oci::ImageSettings,
}

impl ContainerizerConfig {
    /// Defaults: full isolation, switch user, 3 s grace, PATH only, OOM check every
    /// 250 ms.
    pub fn new(
        work_dir: impl Into<PathBuf>,
        agent_id: AgentId,
        hostname: impl Into<String>,
        agent_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            work_dir: work_dir.into(),
            agent_id,
            hostname: hostname.into(),
            agent_endpoint: agent_endpoint.into(),
            isolation: Isolation::full(),
            switch_user: true,
            default_grace_period: DEFAULT_GRACE_PERIOD,
            environment: BTreeMap::from([("PATH".to_owned(), DEFAULT_PATH.to_owned())]),
            oom_check_interval: Duration::from_millis(250),
            images: crate::oci::ImageSettings::default(),
        }
    }
}

/// Launches and tracks command-task containers.
#[derive(Debug)]
pub struct Containerizer {
    config: ContainerizerConfig,
    cgroups: Option<Arc<CgroupManager>>,
    containers: Registry,
    /// Container ids being launched (not yet in `containers`).
    launching: Arc<Mutex<HashSet<ContainerId>>>,
    /// Image tasks.
    oci: Arc<crate::oci::OciRuntime>,
}

/// Holds a container id in `launching` until dropped.
struct Reservation {
    set: Arc<Mutex<HashSet<ContainerId>>>,
    id: ContainerId,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.id);
    }
}

impl Containerizer {
    /// A containerizer on this host: the cgroup layout is read from
    /// `/proc/self/mountinfo` when cgroups are on. Isolation needs root.
    pub fn new(config: ContainerizerConfig) -> Result<Self, ContainerizerError> {
        let cgroups = match &config.isolation.cgroups {
            Some(c) => Some(Arc::new(CgroupManager::host(c.clone())?)),
            None => None,
        };
        Self::with_cgroups(config, cgroups)
    }

    /// A containerizer with the given cgroup manager (`None`: no cgroups, whatever
    /// `config.isolation.cgroups` says).
    pub fn with_cgroups(
        config: ContainerizerConfig,
        cgroups: Option<Arc<CgroupManager>>,
    ) -> Result<Self, ContainerizerError> {
        validate_id("agent_id", config.agent_id.as_str())?;
        let me = nix::unistd::Uid::effective();
        if !me.is_root() {
            let what = if config.isolation.namespaces {
                Some("pid and mount namespaces")
            } else if cgroups.is_some() {
                Some("cgroups")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(ContainerizerError::IsolationNeedsRoot {
                    what,
                    agent_uid: me.as_raw(),
                });
            }
        }
        let oci = Arc::new(crate::oci::OciRuntime::new(
            &config.work_dir,
            config.images.clone(),
        )?);
        Ok(Self {
            config,
            cgroups,
            containers: Arc::new(Mutex::new(HashMap::new())),
            launching: Arc::new(Mutex::new(HashSet::new())),
            oci,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ContainerizerConfig {
        &self.config
    }

    /// The cgroup manager, if cgroups are on.
    pub fn cgroups(&self) -> Option<&Arc<CgroupManager>> {
        self.cgroups.as_ref()
    }

    /// A live container by id.
    pub fn get(&self, id: &ContainerId) -> Option<Container> {
        lock(&self.containers).get(id).cloned()
    }

    /// Every live container.
    pub fn containers(&self) -> Vec<Container> {
        lock(&self.containers).values().cloned().collect()
    }

    /// Launches a command task; returns once its process has exec'd (TASK_RUNNING).
    /// On error nothing is left running and no cgroup is left;
    /// [`ContainerizerError::task_status`] gives the TASK_ERROR/TASK_FAILED update.
    pub async fn launch(&self, spec: LaunchSpec) -> Result<Container, ContainerizerError> {
        let cid = spec.container_id.clone();
        if cid.parent.is_some() {
            return Err(ContainerizerError::InvalidId {
                field: "container_id",
                value: cid.to_string(),
                reason: "nested containers are not supported",
            });
        }
        validate_id("container_id", &cid.value)?;
        validate_id("framework_id", spec.framework_id.as_str())?;
        let executor_id = spec.executor_id();
        validate_id("executor_id", executor_id.as_str())?;
        let _reservation = {
            let mut launching = lock(&self.launching);
            if lock(&self.containers).contains_key(&cid) || !launching.insert(cid.clone()) {
                return Err(ContainerizerError::DuplicateContainer {
                    container_id: cid.value.clone(),
                });
            }
            Reservation {
                set: Arc::clone(&self.launching),
                id: cid.clone(),
            }
        };
        let image = crate::oci::task_image(&spec.task).map_err(|reason| {
            ContainerizerError::InvalidTask {
                task_id: spec.task.task_id.value.clone(),
                reason,
            }
        })?;
        let limits = spec.limits();
        let grace = spec.grace_period(self.config.default_grace_period);
        let mut paths = RunPaths::new(
            &self.config.work_dir,
            self.config.agent_id.as_str(),
            spec.framework_id.as_str(),
            executor_id.as_str(),
            &cid.value,
        );
        if let Some(s) = &spec.sandbox {
            paths.sandbox = s.clone();
        }
        let ctx = EnvContext {
            base: &self.config.environment,
            hostname: &self.config.hostname,
            agent_endpoint: &self.config.agent_endpoint,
            agent_id: self.config.agent_id.as_str(),
        };
        // An image task runs the OCI runtime in place of its command (see `oci`).
        let (program, argv, env, user, bundle) = match &image {
            Some(image) => {
                let p = self
                    .oci
                    .prepare(crate::oci::ImageLaunch {
                        spec: &spec,
                        image,
                        paths: &paths,
                        ctx,
                        cgroups: self.cgroups.as_ref(),
                        limits,
                        switch_user: self.config.switch_user,
                    })
                    .await?;
                (p.program, p.argv, p.env, None, Some(p.bundle))
            }
            None => {
                let (program, argv) = spec.argv()?;
                let user = user::resolve(spec.user(), self.config.switch_user)?;
                let env = task_environment(&ctx, &spec, &paths.sandbox)?;
                let path_var = env.get("PATH").cloned().unwrap_or_default();
                let program = resolve_program(&program, &path_var, &paths.sandbox)?;
                (program, argv, env, user, None)
            }
        };
        let release_bundle = |oci: &Arc<crate::oci::OciRuntime>| {
            if let Some(b) = bundle.clone() {
                tokio::spawn(Arc::clone(oci).release(b));
            }
        };
        let prepared = Prepared {
            program,
            argv,
            env,
            user,
            limits,
            paths,
            namespaces: self.config.isolation.namespaces,
            own_sandbox: spec.sandbox.is_some(),
            netns: spec.netns.clone(),
            volumes: spec.volumes.clone(),
            cgroups: self.cgroups.clone(),
            checkpoint: CheckpointIds {
                container_id: cid.clone(),
                task_id: spec.task.task_id.clone(),
                framework_id: spec.framework_id.clone(),
                executor_id,
            },
        };
        let started = tokio::task::spawn_blocking(move || prepared.start())
            .await
            .map_err(|e| ContainerizerError::Runtime {
                container_id: cid.value.clone(),
                reason: e.to_string(),
            })
            .and_then(|r| r)
            .inspect_err(|_| release_bundle(&self.oci))?;

        let pidfd = Arc::new(started.spawned.pidfd);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            id: cid.clone(),
            task_id: spec.task.task_id.clone(),
            pid: started.spawned.pid,
            pidfd: Arc::clone(&pidfd),
            namespaces: self.config.isolation.namespaces,
            sandbox: started.paths.sandbox,
            meta: started.paths.meta,
            cgroup: started.cgroup,
            cgroups: self.cgroups.clone(),
            limits,
            grace,
            reaped: Mutex::new(false),
            stack: Mutex::new(started.spawned.stack),
            control: control_tx,
            done: done_rx,
            kill_requested: std::sync::atomic::AtomicBool::new(false),
        });
        let container = Container {
            shared: Arc::clone(&shared),
        };
        // SAFETY: the pidfd is an open descriptor owned by the `Arc<OwnedFd>`, which the
        // `AsyncFd` keeps alive (and never replaces) for as long as it exists.
        let registered =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
        let async_fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                let (_, e) = e.into_parts();
                container.destroy_blocking(Duration::from_secs(10));
                release_bundle(&self.oci);
                return Err(ContainerizerError::Spawn {
                    step: "register the pidfd with the runtime",
                    errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                });
            }
        };
        lock(&self.containers).insert(cid.clone(), container.clone());
        tracing::info!(
            container = %cid,
            task = %spec.task.task_id,
            pid = shared.pid,
            sandbox = %shared.sandbox.display(),
            "task launched"
        );
        let supervisor = Supervisor {
            shared,
            pidfd: async_fd,
            control: control_rx,
            done: done_tx,
            oom_interval: self.config.oom_check_interval,
            registry: Arc::clone(&self.containers),
        };
        tokio::spawn(supervisor.run());
        if let Some(b) = bundle {
            let (c, oci) = (container.clone(), Arc::clone(&self.oci));
            tokio::spawn(async move {
                c.wait().await;
                oci.release(b).await;
            });
        }
        Ok(container)
    }
}

struct CheckpointIds {
    container_id: ContainerId,
    task_id: basalt_mesos::TaskId,
    framework_id: basalt_mesos::FrameworkId,
    executor_id: basalt_mesos::ExecutorId,
}

/// Everything decided in the async part, carried to the blocking launch thread.
struct Prepared {
    program: String,
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    user: Option<TaskUser>,
    limits: TaskLimits,
    paths: RunPaths,
    namespaces: bool,
    /// The sandbox is not the run directory (no `runs/latest` link).
    own_sandbox: bool,
    netns: Option<PathBuf>,
    volumes: Vec<spec::VolumeMount>,
    cgroups: Option<Arc<CgroupManager>>,
    checkpoint: CheckpointIds,
}

struct Started {
    spawned: launch::Spawned,
    paths: RunPaths,
    cgroup: Option<TaskCgroup>,
}

fn cstring(field: impl FnOnce() -> String, s: &str) -> Result<CString, ContainerizerError> {
    CString::new(s).map_err(|_| ContainerizerError::NulByte { field: field() })
}

fn sandbox_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerizerError + '_ {
    move |source| ContainerizerError::Sandbox {
        path: path.to_path_buf(),
        source,
    }
}

impl Prepared {
    /// Makes the volumes visible in the sandbox: with namespaces, the mount points and
    /// `(host path, mount point, read-only)` for the init to bind-mount; without, a
    /// symlink at the container path. The volume is given to the task's user.
    #[allow(clippy::type_complexity)]
    fn volume_mounts(
        &self,
        sandbox: &Path,
    ) -> Result<Vec<(CString, CString, bool)>, ContainerizerError> {
        let mut out = Vec::new();
        for v in &self.volumes {
            let rel = &v.container_path;
            if rel.as_os_str().is_empty()
                || !rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(ContainerizerError::InvalidTask {
                    task_id: self.checkpoint.task_id.value.clone(),
                    reason: format!(
                        "volume container_path '{}' must be a relative path inside the sandbox",
                        rel.display()
                    ),
                });
            }
            let target = sandbox.join(rel);
            if let Some(u) = &self.user {
                std::os::unix::fs::chown(&v.host_path, Some(u.uid), Some(u.gid))
                    .map_err(sandbox_err(&v.host_path))?;
            }
            if self.namespaces {
                std::fs::create_dir_all(&target).map_err(sandbox_err(&target))?;
                out.push((
                    cstring(
                        || "volume host path".into(),
                        &v.host_path.display().to_string(),
                    )?,
                    cstring(
                        || "volume container path".into(),
                        &target.display().to_string(),
                    )?,
                    v.read_only,
                ));
            } else {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(sandbox_err(parent))?;
                }
                match std::fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {
                        std::fs::remove_dir(&target).map_err(sandbox_err(&target))?
                    }
                    Ok(_) => std::fs::remove_file(&target).map_err(sandbox_err(&target))?,
                    Err(_) => {}
                }
                std::os::unix::fs::symlink(&v.host_path, &target).map_err(sandbox_err(&target))?;
            }
        }
        Ok(out)
    }

    /// Blocking part of a launch: directories, files, cgroup, clone, checkpoint.
    fn start(self) -> Result<Started, ContainerizerError> {
        let argv = self
            .argv
            .iter()
            .enumerate()
            .map(|(i, a)| cstring(|| format!("command argv[{i}]"), a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = self
            .env
            .iter()
            .map(|(k, v)| {
                cstring(
                    || format!("environment variable '{k}'"),
                    &format!("{k}={v}"),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let program = cstring(|| "command.value".to_owned(), &self.program)?;
        let sandbox = &self.paths.sandbox;
        let sandbox_c = cstring(|| "sandbox path".to_owned(), &sandbox.display().to_string())?;

        std::fs::create_dir_all(sandbox).map_err(sandbox_err(sandbox))?;
        std::fs::create_dir_all(&self.paths.meta).map_err(sandbox_err(&self.paths.meta))?;
        let open_log = |name: &str| -> Result<OwnedFd, ContainerizerError> {
            let p = sandbox.join(name);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .custom_flags(nix::libc::O_CLOEXEC)
                .open(&p)
                .map_err(sandbox_err(&p))?;
            if let Some(u) = &self.user {
                std::os::unix::fs::fchown(&f, Some(u.uid), Some(u.gid)).map_err(sandbox_err(&p))?;
            }
            Ok(OwnedFd::from(f))
        };
        let stdout = open_log("stdout")?;
        let stderr = open_log("stderr")?;
        if let Some(u) = &self.user {
            std::os::unix::fs::chown(sandbox, Some(u.uid), Some(u.gid))
                .map_err(sandbox_err(sandbox))?;
        }
        let null = Path::new("/dev/null");
        let stdin = OwnedFd::from(
            OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_CLOEXEC)
                .open(null)
                .map_err(sandbox_err(null))?,
        );
        if !self.own_sandbox {
            link_latest(sandbox);
        }
        let netns = match &self.netns {
            Some(p) => Some(OwnedFd::from(
                OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_CLOEXEC)
                    .open(p)
                    .map_err(|source| ContainerizerError::Namespace {
                        path: p.clone(),
                        source,
                    })?,
            )),
            None => None,
        };
        let binds = self.volume_mounts(sandbox)?;

        let status_file = if self.namespaces {
            let p = self.paths.meta.join(checkpoint::WAIT_STATUS_FILE);
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o644)
                .custom_flags(nix::libc::O_CLOEXEC)
                .open(&p)
                .map_err(|source| ContainerizerError::Checkpoint { path: p, source })?;
            Some(OwnedFd::from(f))
        } else {
            None
        };
        let cgroup = match &self.cgroups {
            Some(mgr) => Some(mgr.create(&self.checkpoint.container_id.value, &self.limits)?),
            None => None,
        };
        let remove_cgroup = |cg: &Option<TaskCgroup>| {
            if let (Some(mgr), Some(cg)) = (&self.cgroups, cg)
                && let Err(e) = mgr.destroy(cg)
            {
                tracing::warn!(error = %e, "removing the cgroup of a failed launch");
            }
        };
        let procs_files = match cgroup
            .as_ref()
            .map(|cg| {
                cg.procs_files()
                    .iter()
                    .map(|p| cstring(|| "cgroup path".to_owned(), &p.display().to_string()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
        {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                remove_cgroup(&cgroup);
                return Err(e);
            }
        };
        let plan = ChildPlan {
            procs_files,
            namespaces: self.namespaces,
            sandbox: sandbox_c,
            stdin,
            stdout,
            stderr,
            creds: self.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone())),
            status_file,
            program,
            argv,
            envp,
            netns,
            binds,
        };
        let spawned = match launch::spawn(&plan) {
            Ok(s) => s,
            Err(e) => {
                remove_cgroup(&cgroup);
                return Err(e);
            }
        };
        let cp = ContainerCheckpoint {
            container_id: self.checkpoint.container_id,
            task_id: self.checkpoint.task_id,
            framework_id: self.checkpoint.framework_id,
            executor_id: self.checkpoint.executor_id,
            pid: spawned.pid,
            pid_start_time: checkpoint::pid_start_time(spawned.pid),
            namespaces: self.namespaces,
            cgroup: cgroup.clone(),
            sandbox: sandbox.clone(),
            user: self.user.as_ref().map(|u| u.name.clone()),
            limits: self.limits,
        };
        if let Err(e) =
            checkpoint::write_json(&self.paths.meta.join(checkpoint::CONTAINER_FILE), &cp)
        {
            // Without a checkpoint the task could not be recovered: do not run it.
            // The group first: the unreaped leader keeps its id from being reused.
            if !self.namespaces {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(-spawned.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(spawned.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawned.pid), None);
            remove_cgroup(&cgroup);
            return Err(e);
        }
        Ok(Started {
            spawned,
            paths: self.paths,
            cgroup,
        })
    }
}

/// Points `runs/latest` at this run, like Mesos (best effort).
fn link_latest(sandbox: &Path) {
    let (Some(runs), Some(name)) = (sandbox.parent(), sandbox.file_name()) else {
        return;
    };
    let tmp = runs.join(format!(".latest.{}", name.to_string_lossy()));
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = std::os::unix::fs::symlink(name, &tmp)
        .and_then(|()| std::fs::rename(&tmp, runs.join("latest")))
    {
        tracing::debug!(path = %runs.display(), error = %e, "runs/latest link");
    }
}
