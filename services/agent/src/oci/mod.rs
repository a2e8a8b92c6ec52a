//! OCI images: tasks whose `ContainerInfo` names a Docker image (`MESOS` with
//! `mesos.image` of type DOCKER, or Marathon's `DOCKER` with `docker.image`) run from
//! that image through Debian's `crun`, under the same cgroup and sandbox as a command
//! task.
//!
//! * [`registry`]: the distribution API (manifests with OCI and Docker schema 2 media
//!   types, indexes resolved to linux/this architecture, blobs, anonymous bearer
//!   tokens). HTTPS unless the registry is in [`ImageSettings::insecure_registries`].
//! * [`store`]: `<work_dir>/images/`: blobs by sha256 (every one verified before it is
//!   stored), unpacked layers shared between containers, whiteouts in overlayfs form.
//! * [`bundle`]: per container `<work_dir>/images/bundles/<container>/` with `rootfs`
//!   (an overlayfs of the layers with upper and work directories in the bundle, or a
//!   copy where overlayfs is unusable) and a generated `config.json`.
//!
//! # How a container runs
//!
//! The containerizer launches `crun --cgroup-manager=disabled run --bundle B <id>` in
//! place of the task's command, exactly like a command task: in the task's cgroup
//! (which the containerizer made with the task's limits), with the sandbox's
//! `stdout`/`stderr` as its output, supervised through a pidfd. crun stays in the
//! foreground: it forwards signals (the kill's SIGTERM reaches the container's
//! process), returns the container's exit status (128+N for a signal) and deletes its
//! state when the container ends. The container's processes inherit the task's
//! cgroup, so the memory limit, the OOM-kill check (`REASON_CONTAINER_LIMITATION_MEMORY`)
//! and the SIGKILL-everything-in-the-cgroup end of a kill work as for command tasks;
//! `config.json` carries the same `cgroupsPath` and `linux.resources` for the record.
//! crun's own cgroup manager stays off: one owner per cgroup, and crun 1.8 refuses
//! hybrid hosts (v1 with controllers on the unified hierarchy, like this CI machine);
//! there the runtime starts in a private mount namespace with
//! `/sys/fs/cgroup/unified` unmounted.
//!
//! The container gets new pid, mount, ipc and uts namespaces and the host's network;
//! the sandbox at `/mnt/mesos/sandbox` (`MESOS_SANDBOX`, the working directory unless
//! the image sets `WorkingDir`), the host's `/etc/resolv.conf` and `/etc/hosts`
//! read-only. Its environment is the agent's base, then the image's `Env`, then what
//! Mesos sets, then `CommandInfo.environment`. The process follows Mesos' docker
//! runtime isolator: a shell command runs `/bin/sh -c value`; a non-shell `value`
//! replaces Entrypoint and Cmd; otherwise Entrypoint runs with `arguments` (else
//! Cmd), or without an Entrypoint `Cmd[0]` with `arguments` (else the rest of Cmd).
//! The user is the task's (`CommandInfo.user`, else the framework's) looked up in the
//! image's `/etc/passwd`, then on the agent; root when none.
//!
//! When the container ends, `crun delete --force` (for a runtime that was killed), the
//! overlay is unmounted and the bundle removed. Layers and blobs stay in the store.
//!
//! Limits: no device cgroup rules (crun's manager is off), no image garbage
//! collection, no registry credentials (anonymous tokens only), no zstd layers, no
//! schema 1 manifests, host network only; bundles of containers that were running
//! when the agent restarted are not cleaned up.

pub mod bundle;
mod error;
pub mod reference;
pub mod registry;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use basalt_mesos::{CommandInfo, ContainerType, DockerNetwork, ImageType, TaskInfo};

pub use bundle::{Bundle, BundleSpec, CONTAINER_SANDBOX, ContainerUser, RootfsBackend};
pub use error::OciError;
pub use reference::ImageReference;
pub use registry::RegistryClient;
pub use store::{ImageConfig, ImageStore, PulledImage};

use crate::containerizer::{
    CgroupLayout, CgroupManager, ContainerizerError, DEFAULT_PATH, EnvContext, LaunchSpec,
    RunPaths, TaskLimits, resolve_program, task_environment,
};

/// Image settings of the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSettings {
    /// The registry of references without one (`docker.io`, Docker Hub).
    pub default_registry: String,
    /// Registries (`host[:port]`, as written in references) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// The OCI runtime: a path, or a name searched in the default PATH (`crun`).
    pub runtime: String,
    /// How root filesystems are assembled.
    pub backend: RootfsBackend,
    /// Connect and read timeout of registry requests.
    pub registry_timeout: Duration,
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            default_registry: reference::DOCKER_HUB.to_owned(),
            insecure_registries: Vec::new(),
            runtime: "crun".to_owned(),
            backend: RootfsBackend::Auto,
            registry_timeout: Duration::from_secs(30),
        }
    }
}

/// The image a task asks for: `Ok(None)` for a plain command task.
pub fn task_image(task: &TaskInfo) -> Result<Option<String>, String> {
    let Some(c) = &task.container else {
        return Ok(None);
    };
    if c.kind == ContainerType::Docker {
        let name = c.docker.as_ref().map(|d| d.image.trim()).unwrap_or("");
        if name.is_empty() {
            return Err("container.docker.image is empty for a DOCKER container".to_owned());
        }
        if let Some(net) = c.docker.as_ref().and_then(|d| d.network.as_ref())
            && (*net == DockerNetwork::Bridge || *net == DockerNetwork::User)
        {
            let name = serde_json::to_value(net)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(format!(
                "container.docker.network {name}: only HOST networking is supported for images on this agent"
            ));
        }
        return Ok(Some(name.to_owned()));
    }
    if c.kind == ContainerType::Mesos {
        let Some(image) = c.mesos.as_ref().and_then(|m| m.image.as_ref()) else {
            return Ok(None);
        };
        if image.kind == Some(ImageType::Appc) {
            return Err("container.mesos.image: APPC images are not supported".to_owned());
        }
        let name = image.docker.as_ref().map(|d| d.name.trim()).unwrap_or("");
        if name.is_empty() {
            return Err("container.mesos.image.docker.name is empty".to_owned());
        }
        return Ok(Some(name.to_owned()));
    }
    Ok(None)
}

/// `process.args` from the task's command and the image (Mesos' rules, see the
/// module documentation).
pub fn process_args(cmd: Option<&CommandInfo>, image: &ImageConfig) -> Result<Vec<String>, String> {
    let value = cmd
        .and_then(|c| c.value.as_deref())
        .filter(|v| !v.trim().is_empty());
    let arguments: &[String] = cmd.map_or(&[], |c| c.arguments.as_slice());
    let shell = cmd.is_some_and(CommandInfo::is_shell);
    if let Some(v) = value {
        if shell {
            return Ok(vec!["/bin/sh".into(), "-c".into(), v.to_owned()]);
        }
        let mut args = vec![v.to_owned()];
        args.extend(arguments.iter().skip(1).cloned());
        return Ok(args);
    }
    let entrypoint = image.entrypoint.clone().unwrap_or_default();
    let cmd_default = image.cmd.clone().unwrap_or_default();
    if !entrypoint.is_empty() {
        let mut args = entrypoint;
        if arguments.is_empty() {
            args.extend(cmd_default);
        } else {
            args.extend(arguments.iter().cloned());
        }
        return Ok(args);
    }
    if let Some((first, rest)) = cmd_default.split_first() {
        let mut args = vec![first.clone()];
        if arguments.is_empty() {
            args.extend(rest.iter().cloned());
        } else {
            args.extend(arguments.iter().cloned());
        }
        return Ok(args);
    }
    if !arguments.is_empty() {
        return Ok(arguments.to_vec());
    }
    Err(
        "no command to run: the task has no command.value and the image neither Entrypoint nor Cmd"
            .to_owned(),
    )
}

/// The `cgroupsPath` of container `id`: its cgroup relative to the hierarchy mount.
pub fn cgroups_path(mgr: &CgroupManager, id: &str) -> Option<String> {
    let cg = mgr.task_cgroup(id);
    let dir = cg.memory.clone().or_else(|| cg.dirs.first().cloned())?;
    let mounts: Vec<PathBuf> = match mgr.layout() {
        CgroupLayout::V1 { mounts } => mounts.values().cloned().collect(),
        CgroupLayout::V2 { mount } => vec![mount.clone()],
    };
    mounts
        .iter()
        .find_map(|m| dir.strip_prefix(m).ok())
        .map(|rel| format!("/{}", rel.display()))
}

/// Whether the host is cgroup v1 with controllers on the unified (v2) hierarchy,
/// which crun refuses.
fn cgroup_hybrid() -> bool {
    !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .is_ok_and(|t| !t.trim().is_empty())
}

/// crun's state directory (root's default `--root`).
const CRUN_STATE: &str = "/run/crun";

/// Removes the bundles of containers crun no longer knows (they ended while no agent
/// watched them, e.g. across an agent restart): unmounts their root filesystems.
fn sweep_bundles(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let id = e.file_name().to_string_lossy().into_owned();
        if Path::new(CRUN_STATE).join(&id).exists() {
            continue;
        }
        tracing::info!(container = %id, "removing the bundle of an ended container");
        Bundle {
            dir: e.path(),
            container_id: id,
            overlay: true,
            user: ContainerUser {
                uid: 0,
                gid: 0,
                additional_gids: Vec::new(),
            },
        }
        .cleanup();
    }
}

/// What a launch of an image task needs besides a command task's.
pub(crate) struct ImageLaunch<'a> {
    pub spec: &'a LaunchSpec,
    pub image: &'a str,
    pub paths: &'a RunPaths,
    pub ctx: EnvContext<'a>,
    pub cgroups: Option<&'a Arc<CgroupManager>>,
    pub limits: TaskLimits,
    pub switch_user: bool,
}

/// The runtime invocation that replaces the task's command, and its bundle.
#[derive(Debug)]
pub(crate) struct PreparedImage {
    pub program: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub bundle: Bundle,
}

/// Pulls images and runs them through the OCI runtime.
#[derive(Debug)]
pub struct OciRuntime {
    settings: ImageSettings,
    store: ImageStore,
    hybrid: bool,
}

impl OciRuntime {
    /// The runtime of an agent with `work_dir` (the store is `<work_dir>/images`).
    pub fn new(work_dir: &Path, settings: ImageSettings) -> Result<Self, OciError> {
        let client = RegistryClient::new(
            settings.insecure_registries.clone(),
            settings.registry_timeout,
        )?;
        // Downloads and unpacks a previous run left unfinished.
        let tmp = work_dir.join("images").join("tmp");
        if let Err(e) = std::fs::remove_dir_all(&tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %tmp.display(), error = %e, "clearing the image store's tmp");
        }
        sweep_bundles(&work_dir.join("images").join("bundles"));
        let store = ImageStore::new(
            work_dir.join("images"),
            client,
            settings.default_registry.clone(),
        );
        Ok(Self {
            settings,
            store,
            hybrid: cgroup_hybrid(),
        })
    }

    /// The image store.
    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &ImageSettings {
        &self.settings
    }

    /// `(program, argv)` running the runtime with `args`.
    fn invocation(&self, args: &[&str]) -> Result<(String, Vec<String>), OciError> {
        let not_found = |what: &str| OciError::Runtime {
            reason: format!("'{what}' not found in PATH '{DEFAULT_PATH}' (install Debian's crun)"),
        };
        let crun = resolve_program(&self.settings.runtime, DEFAULT_PATH, Path::new("/"))
            .map_err(|_| not_found(&self.settings.runtime))?;
        let mut argv = vec![crun.clone(), "--cgroup-manager=disabled".to_owned()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        if !self.hybrid {
            return Ok((crun, argv));
        }
        let unshare = resolve_program("unshare", DEFAULT_PATH, Path::new("/"))
            .map_err(|_| not_found("unshare"))?;
        let mut wrapped: Vec<String> = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            "umount -l /sys/fs/cgroup/unified && exec \"$@\"",
            "sh",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        wrapped.extend(argv);
        Ok((unshare, wrapped))
    }

    /// Pulls the image and prepares the bundle; returns the runtime command the
    /// containerizer starts in place of the task's.
    pub(crate) async fn prepare(
        &self,
        l: ImageLaunch<'_>,
    ) -> Result<PreparedImage, ContainerizerError> {
        let cid = l.spec.container_id.value.as_str();
        if !nix::unistd::geteuid().is_root() {
            return Err(OciError::Runtime {
                reason: format!(
                    "image '{}': running images needs the agent to run as root",
                    l.image
                ),
            }
            .into());
        }
        let dir = self.store.root().join("bundles").join(cid);
        let bundle_arg = dir.display().to_string();
        let (program, argv) = self.invocation(&["run", "--bundle", &bundle_arg, cid])?;
        let pulled = self.store.pull(l.image).await?;
        let args =
            process_args(l.spec.task.command.as_ref(), &pulled.config).map_err(|reason| {
                ContainerizerError::InvalidTask {
                    task_id: l.spec.task.task_id.value.clone(),
                    reason: format!("image '{}': {reason}", l.image),
                }
            })?;
        // The agent's base, then the image's Env, then Mesos' variables and the task's.
        let mut base = l.ctx.base.clone();
        for kv in pulled.config.env.iter().flatten() {
            if let Some((k, v)) = kv.split_once('=') {
                base.insert(k.to_owned(), v.to_owned());
            }
        }
        let ctx = EnvContext {
            base: &base,
            ..l.ctx
        };
        let mut env = task_environment(&ctx, l.spec, Path::new(CONTAINER_SANDBOX))?;
        if env.get("MESOS_DIRECTORY").map(String::as_str) == Some(CONTAINER_SANDBOX) {
            env.insert(
                "MESOS_DIRECTORY".to_owned(),
                l.paths.sandbox.display().to_string(),
            );
        }
        std::fs::create_dir_all(&l.paths.sandbox).map_err(OciError::io(&l.paths.sandbox))?;
        let hostname = l
            .spec
            .task
            .container
            .as_ref()
            .and_then(|c| c.hostname.clone())
            .unwrap_or_else(|| l.ctx.hostname.to_owned());
        let user = if l.switch_user {
            l.spec.user().map(str::to_owned)
        } else {
            None
        };
        let bspec = BundleSpec {
            image: pulled,
            container_id: cid.to_owned(),
            dir,
            sandbox: l.paths.sandbox.clone(),
            args,
            env,
            user,
            hostname,
            cgroups_path: l.cgroups.and_then(|m| cgroups_path(m, cid)),
            limits: l.limits,
            backend: self.settings.backend,
        };
        let bundle = tokio::task::spawn_blocking(move || bundle::prepare(&bspec))
            .await
            .map_err(|e| OciError::Bundle {
                image: l.image.to_owned(),
                reason: e.to_string(),
            })??;
        tracing::info!(
            image = l.image,
            container = cid,
            overlay = bundle.overlay,
            bundle = %bundle.dir.display(),
            "OCI bundle ready"
        );
        let env = BTreeMap::from([("PATH".to_owned(), DEFAULT_PATH.to_owned())]);
        Ok(PreparedImage {
            program,
            argv,
            env,
            bundle,
        })
    }

    /// After the container ended: deletes the runtime's state (if the runtime was
    /// killed) and the bundle.
    pub(crate) async fn release(self: Arc<Self>, bundle: Bundle) {
        let this = Arc::clone(&self);
        let r = tokio::task::spawn_blocking(move || {
            let id = bundle.container_id.clone();
            if let Ok((program, argv)) = this.invocation(&["delete", "--force", &id]) {
                let mut cmd = std::process::Command::new(&program);
                cmd.args(argv.iter().skip(1))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                let _ = cmd.status();
            }
            bundle.cleanup();
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "OCI bundle cleanup task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(shell: bool, value: Option<&str>, args: &[&str]) -> CommandInfo {
        let mut c = CommandInfo::shell("x");
        c.shell = Some(shell);
        c.value = value.map(str::to_owned);
        c.arguments = args.iter().map(|a| (*a).to_owned()).collect();
        c
    }

    fn image(ep: &[&str], cmd: &[&str]) -> ImageConfig {
        let v = |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|a| (*a).to_owned()).collect());
        ImageConfig {
            entrypoint: v(ep),
            cmd: v(cmd),
            ..ImageConfig::default()
        }
    }

    #[test]
    fn process_args_follow_mesos_rules() {
        let both = image(&["/ep", "-x"], &["c1", "c2"]);
        let cmd_only = image(&[], &["/c", "d"]);
        let none = image(&[], &[]);
        let run = |c: Option<&CommandInfo>, i: &ImageConfig| process_args(c, i).unwrap().join(" ");
        assert_eq!(
            run(Some(&cmd(true, Some("echo hi"), &[])), &both),
            "/bin/sh -c echo hi"
        );
        assert_eq!(
            run(Some(&cmd(false, Some("/bin/app"), &["app", "-v"])), &both),
            "/bin/app -v"
        );
        assert_eq!(run(Some(&cmd(false, None, &[])), &both), "/ep -x c1 c2");
        assert_eq!(run(Some(&cmd(false, None, &["a"])), &both), "/ep -x a");
        assert_eq!(run(None, &both), "/ep -x c1 c2");
        assert_eq!(run(Some(&cmd(false, None, &[])), &cmd_only), "/c d");
        assert_eq!(run(Some(&cmd(false, None, &["z"])), &cmd_only), "/c z");
        assert_eq!(run(Some(&cmd(false, None, &["/a", "b"])), &none), "/a b");
        let e = process_args(Some(&cmd(false, None, &[])), &none).unwrap_err();
        assert!(e.contains("neither Entrypoint nor Cmd"), "{e}");
    }

    #[test]
    fn task_image_reads_both_container_kinds() {
        let mut t = TaskInfo::command(
            "t",
            basalt_mesos::TaskId::new("t"),
            basalt_mesos::AgentId::new("a"),
            CommandInfo::shell("true"),
        );
        assert_eq!(task_image(&t), Ok(None));
        t.container = Some(basalt_mesos::ContainerInfo::mesos_with_docker_image(
            "reg:5000/x:1",
        ));
        assert_eq!(task_image(&t), Ok(Some("reg:5000/x:1".to_owned())));
        let json = serde_json::json!({"type": "DOCKER", "docker": {"image": "nginx:1.25"}});
        t.container = Some(serde_json::from_value(json).unwrap());
        assert_eq!(task_image(&t), Ok(Some("nginx:1.25".to_owned())));
        let json = serde_json::json!({"type": "DOCKER", "docker": {"image": " "}});
        t.container = Some(serde_json::from_value(json).unwrap());
        assert!(
            task_image(&t)
                .unwrap_err()
                .contains("docker.image is empty")
        );
        let json =
            serde_json::json!({"type": "DOCKER", "docker": {"image": "x", "network": "BRIDGE"}});
        t.container = Some(serde_json::from_value(json).unwrap());
        let e = task_image(&t).unwrap_err();
        assert!(e.contains("docker.network BRIDGE"), "{e}");
        let json = serde_json::json!({"type": "MESOS", "mesos": {"image": {"type": "APPC", "appc": {"name": "x"}}}});
        t.container = Some(serde_json::from_value(json).unwrap());
        assert!(task_image(&t).unwrap_err().contains("APPC"));
        let json = serde_json::json!({"type": "MESOS", "volumes": []});
        t.container = Some(serde_json::from_value(json).unwrap());
        assert_eq!(task_image(&t), Ok(None));
    }
}
