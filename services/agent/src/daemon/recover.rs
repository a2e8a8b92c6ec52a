//! Recovery after a daemon restart: checkpointed tasks whose process still lives are
//! kept (and reported when re-registering); a watcher notices when they end, and
//! watches their memory cgroup for OOM kills as the containerizer does for its own
//! containers (an OOM kill destroys the container → TASK_FAILED,
//! `REASON_CONTAINER_LIMITATION_MEMORY`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use basalt_mesos::{AgentId, TaskState, TaskStatus, TaskStatusSource};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::status::{Checkpointed, enqueue};
use super::{Inner, State, lock};
use crate::containerizer::checkpoint::{
    CONTAINER_FILE, ContainerCheckpoint, pid_start_time, read_json, read_wait_status,
};

/// Whether `pid` is a zombie (ended, not reaped yet). One whose parent is this process
/// (a task launched by an earlier daemon in the same process) is reaped here.
fn zombie(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let dead = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..i + 3))
        .is_some_and(|st| st == "Z" || st == "X");
    if dead {
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
    dead
}

/// Whether the checkpointed process of a run still lives (same pid, same start time,
/// not a zombie).
fn alive(meta: &Path, pid: i32) -> bool {
    if zombie(pid) {
        return false;
    }
    let cp = read_json::<ContainerCheckpoint>(&meta.join(CONTAINER_FILE))
        .ok()
        .flatten();
    let now = pid_start_time(pid);
    match (cp.and_then(|c| c.pid_start_time), now) {
        (Some(then), Some(now)) => then == now,
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

/// Loads the checkpointed state into a fresh daemon's state.
pub(super) fn restore(state: &mut State, cp: Checkpointed, agent_id: &AgentId) {
    for f in cp.frameworks {
        if let Some(id) = f.id.clone() {
            state.frameworks.insert(id, f);
        }
    }
    for t in cp.tasks {
        tracing::info!(agent_id = %agent_id.as_str(), task = %t.task.task_id.as_str(),
            state = ?t.status.state, "recovered task");
        state
            .tasks
            .insert((t.framework_id.clone(), t.task.task_id.clone()), t);
    }
    state.pending = cp.pending;
}

/// Signals a recovered task: SIGTERM now, SIGKILL after `grace` (the namespace init's
/// death takes the whole pid namespace with it).
pub(super) fn kill_recovered(pid: i32, grace: Duration) {
    let p = Pid::from_raw(pid);
    if let Err(e) = kill(p, Signal::SIGTERM) {
        tracing::debug!(pid, error = %e, "SIGTERM of a recovered task failed");
    }
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        let _ = kill(p, Signal::SIGKILL);
    });
}

/// Kills what is left in a recovered task's cgroups and removes them (best effort).
fn remove_cgroups(meta: &Path) {
    let Some(cg) = read_json::<ContainerCheckpoint>(&meta.join(CONTAINER_FILE))
        .ok()
        .flatten()
        .and_then(|c| c.cgroup)
    else {
        return;
    };
    for dir in &cg.dirs {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(cgroup = %dir.display(), error = %e,
                "the cgroup of a recovered task could not be removed"),
        }
    }
}

fn ended_status(entry: &super::TaskEntry) -> TaskStatus {
    let task_id = entry.task.task_id.clone();
    if let Some(msg) = &entry.oom {
        let mut st = TaskStatus::new(task_id, TaskState::Failed);
        st.message = Some(msg.clone());
        st.reason = Some(basalt_mesos::TaskStatusReason::ContainerLimitationMemory);
        st.source = Some(TaskStatusSource::Agent);
        return st;
    }
    if entry.kill_requested.is_some() {
        let mut st = TaskStatus::new(task_id, TaskState::Killed);
        st.message = Some("Command terminated with signal Killed".into());
        st.source = Some(TaskStatusSource::Executor);
        return st;
    }
    let ws = entry.meta_dir.as_deref().and_then(read_wait_status);
    let mut st = match ws {
        Some(ws) if exited(ws) && exit_code(ws) == 0 => {
            let mut st = TaskStatus::new(task_id, TaskState::Finished);
            st.message = Some("Command exited with status 0".into());
            st
        }
        Some(ws) if exited(ws) => {
            let mut st = TaskStatus::new(task_id, TaskState::Failed);
            st.message = Some(format!("Command exited with status {}", exit_code(ws)));
            st
        }
        Some(ws) => {
            let mut st = TaskStatus::new(task_id, TaskState::Failed);
            st.message = Some(format!("Command terminated with signal {}", ws & 0x7f));
            st
        }
        None => {
            let mut st = TaskStatus::new(task_id, TaskState::Failed);
            st.message = Some(
                "the task's process ended while the agent was down; its exit status is unknown"
                    .into(),
            );
            st
        }
    };
    st.source = Some(TaskStatusSource::Executor);
    st
}

fn exited(ws: i32) -> bool {
    ws & 0x7f == 0
}

fn exit_code(ws: i32) -> i32 {
    (ws >> 8) & 0xff
}

/// An OOM kill in a recovered task's memory cgroup: kills what is left of the task and
/// returns the memory limitation message.
fn oom_check(inner: &Arc<Inner>, meta: &Path, pid: i32) -> Option<String> {
    let cz = lock(&inner.state).containerizer.clone()?;
    let mgr = cz.cgroups()?.clone();
    let cp = read_json::<ContainerCheckpoint>(&meta.join(CONTAINER_FILE))
        .ok()
        .flatten()?;
    let cg = cp.cgroup.as_ref().filter(|c| c.memory.is_some())?;
    if mgr.oom_kills(cg).ok().flatten().unwrap_or(0) == 0 {
        return None;
    }
    let peak = mgr.memory_peak(cg).ok().flatten();
    let show = |v: Option<u64>| {
        v.map_or_else(
            || "unknown".to_owned(),
            |b| crate::containerizer::usage::MesosBytes(b).to_string(),
        )
    };
    let msg = format!(
        "Memory limit exceeded: Requested: {} Maximum Used: {}",
        show(cp.limits.memory_limit()),
        show(peak)
    );
    tracing::info!(pid, message = %msg, "a recovered task exceeded its memory limit; destroying it");
    if alive(meta, pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Err(e) = mgr.kill_all(cg) {
        tracing::warn!(error = %e, "killing a recovered task's cgroup");
    }
    Some(msg)
}

/// Polls recovered tasks (no live container, a pid) and reports them when they end.
pub(super) async fn watch(inner: Arc<Inner>) {
    loop {
        let candidates: Vec<_> = lock(&inner.state)
            .tasks
            .values()
            .filter(|t| t.container.is_none() && !t.status.state.is_terminal())
            .filter_map(|t| Some((t.clone(), t.pid?, t.meta_dir.clone()?)))
            .collect();
        for (mut entry, pid, meta) in candidates {
            if entry.oom.is_none()
                && entry.kill_requested.is_none()
                && let Some(msg) = oom_check(&inner, &meta, pid)
            {
                let key = (entry.framework_id.clone(), entry.task.task_id.clone());
                if let Some(t) = lock(&inner.state).tasks.get_mut(&key) {
                    t.oom = Some(msg.clone());
                }
                entry.oom = Some(msg);
            }
            if !alive(&meta, pid) {
                // The launch may have finished meanwhile in this daemon.
                let still = lock(&inner.state)
                    .tasks
                    .get(&(entry.framework_id.clone(), entry.task.task_id.clone()))
                    .is_some_and(|t| t.container.is_none() && !t.status.state.is_terminal());
                if still {
                    remove_cgroups(&meta);
                    let fw = entry.framework_id.clone();
                    enqueue(&inner, &fw, ended_status(&entry));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
