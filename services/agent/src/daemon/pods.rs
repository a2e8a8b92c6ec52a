//! Task groups (`LAUNCH_GROUP`, Marathon pods) with the default executor's semantics.
//!
//! The first group of an executor (`ExecutorInfo`, type DEFAULT) makes its executor
//! "container": a sandbox `<work_dir>/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<uuid>`
//! and a network namespace with loopback up, kept as a bind mount at
//! `<work_dir>/netns/<uuid>`. Every task of the executor's groups runs as its own
//! container (own cgroup, pid and mount namespaces) in that network namespace — they
//! reach each other on `127.0.0.1` — with its sandbox at
//! `<executor sandbox>/tasks/<task_id>` (Mesos' layout; `MESOS_SANDBOX` points there).
//!
//! A task of a group that ends FAILED, KILLED, ERROR or LOST gets the rest of its group
//! killed (Mesos' default executor since 1.2); a FINISHED one does not. When no task
//! of the executor is left, the network namespace is released (the sandbox stays until
//! garbage collection).
//!
//! Limits: the executor's own resources are not enforced (no executor process runs);
//! after an agent restart a new group of a recovered executor gets a new network
//! namespace.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use basalt_master::agent_api::LaunchTaskGroup;
use basalt_mesos::{ContainerId, ExecutorId, FrameworkId, TaskId, TaskState};
use nix::libc;

use super::{Inner, Placement, lock, run_placed_task, status};

/// A default executor's shared pieces.
#[derive(Debug, Clone)]
pub(super) struct GroupExecutor {
    /// Its sandbox.
    pub sandbox: PathBuf,
    /// Its network namespace (a bind mount of the namespace file).
    pub netns: PathBuf,
}

/// Handles a `LAUNCH_GROUP`: records the tasks, prepares the executor, launches each.
pub(super) fn launch_group(inner: &Arc<Inner>, g: LaunchTaskGroup) {
    let fw = g.framework_info;
    let Some(fw_id) = fw.id.clone() else {
        tracing::warn!("LAUNCH_GROUP without a framework id ignored");
        return;
    };
    let ex_id = g.executor.executor_id.clone();
    let group = uuid::Uuid::new_v4().to_string();
    let mut added = Vec::new();
    for t in g.task_group.tasks {
        if super::master::add_task(inner, &fw, &t, Some(&ex_id), Some(&group)) {
            added.push(t);
        }
    }
    if added.is_empty() {
        return;
    }
    status::checkpoint(inner);
    let inner = inner.clone();
    tokio::spawn(async move {
        let ex = match ensure_executor(&inner, &fw_id, &ex_id).await {
            Ok(ex) => ex,
            Err(msg) => {
                for t in &added {
                    let st = super::failed_status(
                        &t.task_id,
                        TaskState::Failed,
                        basalt_mesos::TaskStatusReason::ContainerLaunchFailed,
                        format!("executor '{}' of the task group: {msg}", ex_id.as_str()),
                    );
                    status::enqueue(&inner, &fw_id, st);
                }
                release_if_idle(&inner, &fw_id, &ex_id);
                return;
            }
        };
        for t in added {
            let task_id = t.task_id.clone();
            if let Err(e) = crate::containerizer::validate_id("task_id", task_id.as_str()) {
                let st = super::failed_status(
                    &task_id,
                    TaskState::Error,
                    basalt_mesos::TaskStatusReason::TaskInvalid,
                    e.to_string(),
                );
                status::enqueue(&inner, &fw_id, st);
                task_ended(&inner, &fw_id, &task_id);
                continue;
            }
            let placement = Placement {
                executor_id: Some(ex_id.clone()),
                sandbox: Some(ex.sandbox.join("tasks").join(task_id.as_str())),
                netns: Some(ex.netns.clone()),
            };
            let (inner, fw, fw_id) = (inner.clone(), fw.clone(), fw_id.clone());
            tokio::spawn(async move {
                run_placed_task(inner.clone(), fw, fw_id.clone(), t, placement).await;
                task_ended(&inner, &fw_id, &task_id);
            });
        }
    });
}

/// The executor's shared pieces, made on its first group.
async fn ensure_executor(
    inner: &Arc<Inner>,
    fw_id: &FrameworkId,
    ex_id: &ExecutorId,
) -> Result<GroupExecutor, String> {
    let _one_at_a_time = inner.group_lock.lock().await;
    let key = (fw_id.clone(), ex_id.clone());
    if let Some(ex) = lock(&inner.state).executors.get(&key) {
        return Ok(ex.clone());
    }
    crate::containerizer::validate_id("executor_id", ex_id.as_str()).map_err(|e| e.to_string())?;
    crate::containerizer::validate_id("framework_id", fw_id.as_str()).map_err(|e| e.to_string())?;
    let agent_id = lock(&inner.state)
        .agent_id
        .clone()
        .ok_or("the agent is not registered")?;
    let cid = ContainerId::new(uuid::Uuid::new_v4().to_string());
    let sandbox = crate::containerizer::RunPaths::new(
        &inner.cfg.work_dir,
        agent_id.as_str(),
        fw_id.as_str(),
        ex_id.as_str(),
        &cid.value,
    )
    .sandbox;
    let netns = inner.cfg.work_dir.join("netns").join(&cid.value);
    let (sb, ns) = (sandbox.clone(), netns.clone());
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        std::fs::create_dir_all(sb.join("tasks"))
            .map_err(|e| format!("executor sandbox {}: {e}", sb.display()))?;
        link_latest(&sb);
        create_netns(&ns)
    })
    .await
    .map_err(|e| format!("executor setup thread: {e}"))??;
    tracing::info!(executor = %ex_id.as_str(), sandbox = %sandbox.display(), netns = %netns.display(),
        "default executor container ready");
    let ex = GroupExecutor { sandbox, netns };
    lock(&inner.state).executors.insert(key, ex.clone());
    Ok(ex)
}

/// After a task of a group ended: kill the rest of its group when it did not finish,
/// release the executor when none of its tasks is left.
fn task_ended(inner: &Arc<Inner>, fw_id: &FrameworkId, task_id: &TaskId) {
    let (state, group, ex_id) = {
        let s = lock(&inner.state);
        let Some(t) = s.tasks.get(&(fw_id.clone(), task_id.clone())).or_else(|| {
            s.completed
                .iter()
                .rev()
                .find(|t| &t.framework_id == fw_id && &t.task.task_id == task_id)
        }) else {
            return;
        };
        (t.status.state, t.group.clone(), t.executor_id.clone())
    };
    if state != TaskState::Finished
        && let Some(group) = group
    {
        let siblings: Vec<TaskId> = lock(&inner.state)
            .tasks
            .values()
            .filter(|t| {
                &t.framework_id == fw_id
                    && t.group.as_deref() == Some(group.as_str())
                    && !t.status.state.is_terminal()
            })
            .map(|t| t.task.task_id.clone())
            .collect();
        for t in siblings {
            tracing::info!(task = %t.as_str(), because = %task_id.as_str(),
                "killing the rest of the task group");
            super::kill_task(inner, fw_id, &t, None);
        }
    }
    release_if_idle(inner, fw_id, &ex_id);
}

/// Drops the executor's network namespace once none of its tasks is left.
fn release_if_idle(inner: &Arc<Inner>, fw_id: &FrameworkId, ex_id: &ExecutorId) {
    let ex = {
        let mut s = lock(&inner.state);
        let busy = s.tasks.values().any(|t| {
            &t.framework_id == fw_id && &t.executor_id == ex_id && !t.status.state.is_terminal()
        });
        if busy {
            return;
        }
        s.executors.remove(&(fw_id.clone(), ex_id.clone()))
    };
    if let Some(ex) = ex {
        remove_netns(&ex.netns);
        super::gc::schedule(inner, vec![ex.sandbox.clone()]);
        tracing::info!(executor = %ex_id.as_str(), "default executor released");
    }
}

/// Points `runs/latest` at the executor's run (best effort).
fn link_latest(sandbox: &Path) {
    let (Some(runs), Some(name)) = (sandbox.parent(), sandbox.file_name()) else {
        return;
    };
    let latest = runs.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(name, &latest);
}

/// Makes a network namespace with loopback up, kept alive by a bind mount at `path`.
pub(super) fn create_netns(path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let target = path.to_path_buf();
    // A thread of its own: unshare changes the calling thread's namespace only, and
    // the thread ends right after.
    let made = std::thread::Builder::new()
        .name("netns-create".into())
        .spawn(move || -> Result<(), String> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
            loopback_up()?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                format!(
                    "bind-mounting the network namespace at {}: {e}",
                    target.display()
                )
            })
        })
        .map_err(|e| format!("network namespace thread: {e}"))?
        .join()
        .map_err(|_| "the network namespace thread panicked".to_string())?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Unmounts and removes a namespace made by [`create_netns`] (best effort).
pub(super) fn remove_netns(path: &Path) {
    if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        tracing::warn!(path = %path.display(), error = %e, "unmounting a network namespace");
    }
    let _ = std::fs::remove_file(path);
}

/// Sets `lo` up in the calling thread's network namespace.
fn loopback_up() -> Result<(), String> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = CString::new("lo").map_err(|e| e.to_string())?;
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes_with_nul()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags into our ifreq.
    if unsafe { libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(format!(
            "SIOCGIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled in.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads our ifreq.
    if unsafe { libc::ioctl(raw, libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(format!(
            "SIOCSIFFLAGS lo: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
