//! Reliable status updates: queue, checkpoint, send until `202`, keep until acknowledged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use basalt_master::agent_api::{AGENT_API_PATH, AgentCall, StatusUpdate};
use basalt_mesos::{AgentId, FrameworkId, FrameworkInfo, TaskId, TaskStatus};
use serde::{Deserialize, Serialize};

use super::{AgentError, Inner, TaskEntry, lock, master::post, slaves_meta};

/// A status update not yet acknowledged by its framework.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The task's framework.
    pub framework_id: FrameworkId,
    /// The status, with its uuid.
    pub status: TaskStatus,
    /// The master answered `202` on the current subscription.
    #[serde(skip)]
    pub accepted: bool,
}

/// What `agent_state.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Checkpointed {
    pub frameworks: Vec<FrameworkInfo>,
    pub tasks: Vec<TaskEntry>,
    pub pending: Vec<PendingUpdate>,
}

const STATE_FILE: &str = "agent_state.json";

fn state_path(work_dir: &Path, agent_id: &AgentId) -> PathBuf {
    slaves_meta(work_dir)
        .join(agent_id.as_str())
        .join(STATE_FILE)
}

/// The checkpointed agent id (`<work_dir>/meta/slaves/latest` → `<agent_id>`).
pub(super) fn read_latest(work_dir: &Path) -> Result<Option<AgentId>, AgentError> {
    let path = slaves_meta(work_dir).join("latest");
    match std::fs::read_link(&path) {
        Ok(target) => {
            let id = target
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| AgentError::CorruptCheckpoint {
                    path: path.clone(),
                    reason: format!("link target {} is not an agent id", target.display()),
                })?;
            Ok(Some(AgentId::new(id)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AgentError::Checkpoint { path, source }),
    }
}

/// Points `latest` at the agent id's directory.
pub(super) fn write_latest(work_dir: &Path, agent_id: &AgentId) -> Result<(), AgentError> {
    let base = slaves_meta(work_dir);
    let dir = base.join(agent_id.as_str());
    std::fs::create_dir_all(&dir).map_err(|source| AgentError::Checkpoint {
        path: dir.clone(),
        source,
    })?;
    let link = base.join("latest");
    if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(agent_id.as_str())) {
        return Ok(());
    }
    let tmp = base.join("latest.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(agent_id.as_str(), &tmp).map_err(|source| {
        AgentError::Checkpoint {
            path: tmp.clone(),
            source,
        }
    })?;
    std::fs::rename(&tmp, &link).map_err(|source| AgentError::Checkpoint { path: link, source })
}

/// Loads `agent_state.json` of `agent_id`, if there is one.
pub(super) fn load_state(
    work_dir: &Path,
    agent_id: &AgentId,
) -> Result<Option<Checkpointed>, AgentError> {
    let path = state_path(work_dir, agent_id);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| AgentError::CorruptCheckpoint {
                    path,
                    reason: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AgentError::Checkpoint { path, source }),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Writes the tasks, frameworks and pending updates (under the state lock, so
/// checkpoints are written in the order the state changed).
pub(super) fn checkpoint(inner: &Inner) {
    if inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let s = lock(&inner.state);
    let Some(agent_id) = s.agent_id.clone() else {
        return;
    };
    let cp = Checkpointed {
        frameworks: s.frameworks.values().cloned().collect(),
        tasks: s.tasks.values().cloned().collect(),
        pending: s.pending.clone(),
    };
    let path = state_path(&inner.cfg.work_dir, &agent_id);
    let res = serde_json::to_vec(&cp)
        .map_err(std::io::Error::other)
        .and_then(|b| write_atomic(&path, &b));
    if let Err(e) = res {
        tracing::error!(path = %path.display(), error = %e, "agent checkpoint failed");
    }
}

/// Records a new status of a task, queues it (checkpointed) and wakes the sender.
pub(super) fn enqueue(inner: &Arc<Inner>, fw: &FrameworkId, mut status: TaskStatus) {
    if inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
        tracing::debug!(task = %status.task_id.as_str(), state = ?status.state,
            "status of a stopped daemon dropped; its successor reports the task");
        return;
    }
    let mut collect = Vec::new();
    {
        let mut s = lock(&inner.state);
        status.uuid = Some(basalt_master::core::new_status_uuid());
        status.agent_id = s.agent_id.clone();
        status.timestamp = Some(super::now_secs());
        let key = (fw.clone(), status.task_id.clone());
        if let Some(t) = s.tasks.get_mut(&key) {
            status.executor_id = Some(t.executor_id.clone());
            t.status = status.clone();
            t.statuses.push(status.clone());
            if status.state.is_terminal() {
                t.container = None;
                collect = t.sandbox.iter().chain(t.meta_dir.iter()).cloned().collect();
            }
        }
        if status.state.is_terminal() {
            *s.terminal_counts.entry(status.state).or_default() += 1;
        }
        tracing::info!(task = %status.task_id.as_str(), state = ?status.state,
            message = status.message.as_deref().unwrap_or(""), "status update queued");
        s.pending.push(PendingUpdate {
            framework_id: fw.clone(),
            status,
            accepted: false,
        });
    }
    checkpoint(inner);
    inner.updates_wake.notify_one();
    super::gc::schedule(inner, collect);
}

/// Drops the acknowledged update; a terminal task with nothing pending moves to the
/// completed list.
pub(super) fn acknowledge(inner: &Inner, fw: &FrameworkId, task: &TaskId, uuid: &str) {
    {
        let mut s = lock(&inner.state);
        let before = s.pending.len();
        s.pending.retain(|p| {
            !(p.framework_id == *fw
                && p.status.task_id == *task
                && p.status.uuid.as_deref() == Some(uuid))
        });
        if s.pending.len() == before {
            tracing::debug!(task = %task.as_str(), uuid, "ACKNOWLEDGE of an unknown update");
            return;
        }
        let key = (fw.clone(), task.clone());
        let done = s
            .tasks
            .get(&key)
            .is_some_and(|t| t.status.state.is_terminal())
            && !s
                .pending
                .iter()
                .any(|p| p.framework_id == *fw && p.status.task_id == *task);
        if done && let Some(t) = s.tasks.remove(&key) {
            s.completed.push(t);
            let max = inner.cfg.max_completed_tasks;
            if s.completed.len() > max {
                let extra = s.completed.len() - max;
                s.completed.drain(..extra);
            }
        }
    }
    checkpoint(inner);
}

/// Sends queued updates in order until each gets `202`; backs off on failures.
pub(super) async fn sender(inner: Arc<Inner>) {
    let mut backoff = inner.cfg.update_retry_initial;
    loop {
        let next = {
            let s = lock(&inner.state);
            let conn = match (&s.agent_id, &s.master, &s.stream_id) {
                (Some(a), Some(m), Some(sid)) => Some((a.clone(), m.clone(), sid.clone())),
                _ => None,
            };
            conn.and_then(|c| {
                s.pending
                    .iter()
                    .find(|p| !p.accepted)
                    .cloned()
                    .map(|p| (c, p))
            })
        };
        let Some(((agent_id, master, stream_id), p)) = next else {
            tokio::select! {
                _ = inner.updates_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        };
        let mut call = AgentCall::new("UPDATE", Some(agent_id));
        call.update = Some(StatusUpdate {
            framework_id: p.framework_id.clone(),
            status: p.status.clone(),
        });
        let url = format!("{master}{AGENT_API_PATH}");
        let outcome = match post(&inner, &url, &call, Some(&stream_id)).await {
            Ok(r) if r.status().as_u16() == 202 => Ok(()),
            Ok(r) => {
                let code = r.status();
                Err(format!(
                    "{code}: {}",
                    r.text().await.unwrap_or_default().trim()
                ))
            }
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                backoff = inner.cfg.update_retry_initial;
                let mut s = lock(&inner.state);
                s.updates_sent += 1;
                if let Some(q) = s
                    .pending
                    .iter_mut()
                    .find(|q| q.status.uuid == p.status.uuid)
                {
                    q.accepted = true;
                }
            }
            Err(e) => {
                tracing::warn!(task = %p.status.task_id.as_str(), error = %e, retry_in = ?backoff,
                    "status UPDATE not accepted");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(inner.cfg.update_retry_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_and_state_checkpoints_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_latest(dir.path()).unwrap(), None);
        let id = AgentId::new("m-S1");
        write_latest(dir.path(), &id).unwrap();
        write_latest(dir.path(), &id).unwrap();
        assert_eq!(read_latest(dir.path()).unwrap(), Some(id.clone()));
        assert!(load_state(dir.path(), &id).unwrap().is_none());

        let mut status = TaskStatus::new(TaskId::new("t"), basalt_mesos::TaskState::Running);
        status.uuid = Some("dXVpZA==".into());
        let cp = Checkpointed {
            frameworks: vec![],
            tasks: vec![],
            pending: vec![PendingUpdate {
                framework_id: FrameworkId::new("f"),
                status,
                accepted: true,
            }],
        };
        let path = state_path(dir.path(), &id);
        write_atomic(&path, &serde_json::to_vec(&cp).unwrap()).unwrap();
        let back = load_state(dir.path(), &id).unwrap().unwrap();
        assert_eq!(back.pending.len(), 1);
        // "accepted" is per subscription: a restarted agent sends it again.
        assert!(!back.pending[0].accepted);

        std::fs::write(&path, b"{not json").unwrap();
        let e = load_state(dir.path(), &id).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
