//! What is checkpointed about a container in its meta directory
//! (`<work_dir>/meta/slaves/<agent>/frameworks/<fw>/executors/<ex>/runs/<container>`), so
//! a restarted agent can find its tasks again (issue #4 item 6):
//!
//! * `container.json` ([`ContainerCheckpoint`]): written once the task process has
//!   exec'd — the pid the agent was parent of (the namespace init, or the task), its
//!   start time from `/proc/<pid>/stat` (so a reused pid is not mistaken for it), the
//!   cgroup directories, the sandbox, the user and the limits;
//! * `wait_status`: with namespaces, the task's raw `wait(2)` status in decimal, written
//!   by the namespace init when the task exits (so it survives an agent restart);
//! * `termination.json` ([`Termination`](super::Termination)): written when it ended.
//!
//! Files are written to a temporary name and renamed, so a crash never leaves half a
//! file.

use std::path::{Path, PathBuf};

use basalt_mesos::{ContainerId, ExecutorId, FrameworkId, TaskId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::cgroups::{TaskCgroup, TaskLimits};
use super::error::ContainerizerError;

/// File name of the container checkpoint.
pub const CONTAINER_FILE: &str = "container.json";
/// File name of the termination checkpoint.
pub const TERMINATION_FILE: &str = "termination.json";
/// File name of the task's wait status, written by the namespace init.
pub const WAIT_STATUS_FILE: &str = "wait_status";

/// The task's raw wait status from `<meta>/wait_status`, if the init wrote it.
pub fn read_wait_status(meta: &Path) -> Option<i32> {
    std::fs::read_to_string(meta.join(WAIT_STATUS_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A running container as checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerCheckpoint {
    /// The container.
    pub container_id: ContainerId,
    /// The task.
    pub task_id: TaskId,
    /// The framework.
    pub framework_id: FrameworkId,
    /// The executor (the task id for command tasks).
    pub executor_id: ExecutorId,
    /// The process the agent started (namespace init, or the task itself).
    pub pid: i32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub pid_start_time: Option<u64>,
    /// Whether it is the init of its own pid and mount namespaces.
    pub namespaces: bool,
    /// Its cgroup, if any.
    pub cgroup: Option<TaskCgroup>,
    /// The sandbox directory.
    pub sandbox: PathBuf,
    /// The user it runs as (`None`: the agent's).
    pub user: Option<String>,
    /// Its limits.
    pub limits: TaskLimits,
}

/// Writes `value` as JSON to `path` atomically (temporary file + rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ContainerizerError> {
    let err = |source| ContainerizerError::Checkpoint {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_vec_pretty(value).map_err(|e| err(std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads a JSON checkpoint; `Ok(None)` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ContainerizerError> {
    let err = |source| ContainerizerError::Checkpoint {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Start time of a process in clock ticks after boot (`/proc/<pid>/stat` field 22).
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Every container checkpoint under `<work_dir>/meta/slaves/<agent_id>`, for recovery.
/// Runs without a `container.json` (the agent died before the exec) are skipped.
pub fn list_checkpoints(
    work_dir: &Path,
    agent_id: &str,
) -> Result<Vec<(PathBuf, ContainerCheckpoint)>, ContainerizerError> {
    let mut out = Vec::new();
    let base = work_dir.join("meta").join("slaves").join(agent_id);
    let dirs = |p: &Path| -> Result<Vec<PathBuf>, ContainerizerError> {
        match std::fs::read_dir(p) {
            Ok(rd) => Ok(rd
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(ContainerizerError::Checkpoint {
                path: p.to_path_buf(),
                source,
            }),
        }
    };
    for fw in dirs(&base.join("frameworks"))? {
        for ex in dirs(&fw.join("executors"))? {
            for run in dirs(&ex.join("runs"))? {
                if let Some(cp) = read_json::<ContainerCheckpoint>(&run.join(CONTAINER_FILE))? {
                    out.push((run, cp));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir
            .path()
            .join("meta/slaves/a1/frameworks/fw/executors/t1/runs/c1");
        std::fs::create_dir_all(&run).unwrap();
        let cp = ContainerCheckpoint {
            container_id: ContainerId::new("c1"),
            task_id: TaskId::new("t1"),
            framework_id: FrameworkId::new("fw"),
            executor_id: ExecutorId::new("t1"),
            pid: 42,
            pid_start_time: Some(7),
            namespaces: true,
            cgroup: None,
            sandbox: PathBuf::from("/s"),
            user: Some("nobody".into()),
            limits: TaskLimits {
                cpus: Some(0.1),
                mem_bytes: Some(1 << 25),
            },
        };
        write_json(&run.join(CONTAINER_FILE), &cp).unwrap();
        assert!(!run.join("container.json.tmp").exists());
        let back: ContainerCheckpoint = read_json(&run.join(CONTAINER_FILE)).unwrap().unwrap();
        assert_eq!(back, cp);
        let listed = list_checkpoints(dir.path(), "a1").unwrap();
        assert_eq!(listed, vec![(run.clone(), cp)]);
        assert!(list_checkpoints(dir.path(), "other").unwrap().is_empty());
        assert!(
            read_json::<ContainerCheckpoint>(&run.join("missing.json"))
                .unwrap()
                .is_none()
        );
        std::fs::write(run.join(CONTAINER_FILE), "{").unwrap();
        let e = list_checkpoints(dir.path(), "a1").unwrap_err();
        assert!(e.to_string().contains("container.json"), "{e}");
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        assert!(pid_start_time(me).is_some());
        assert_eq!(pid_start_time(i32::MAX), None);
    }
}
