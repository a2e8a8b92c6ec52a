//! The containerizer's error type, and how a launch failure becomes a task status.

use std::io;
use std::path::PathBuf;

use basalt_mesos::{TaskId, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource};

use super::cgroups::CgroupError;

/// Why a container could not be launched or managed. Each variant names the task field,
/// user, path or launch step involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerizerError {
    /// The task cannot be run as given (Mesos answers TASK_ERROR).
    #[error("task '{task_id}': {reason}")]
    InvalidTask {
        /// The task.
        task_id: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// An id that becomes a path component is not usable as one.
    #[error("{field} '{value}' is not a valid id: {reason}")]
    InvalidId {
        /// `container_id`, `agent_id`, `framework_id` or `executor_id`.
        field: &'static str,
        /// The id.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The requested user has no passwd entry.
    #[error("user '{user}' does not exist on the agent")]
    UnknownUser {
        /// The user name.
        user: String,
    },
    /// Looking the user up failed.
    #[error("looking up user '{user}': {source}")]
    UserLookup {
        /// The user name.
        user: String,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// The task asks for another user but the agent is not root.
    #[error("cannot run the task as user '{user}': the agent runs as uid {agent_uid}, not root")]
    UserSwitchNotPermitted {
        /// The requested user.
        user: String,
        /// The agent's effective uid.
        agent_uid: u32,
    },
    /// Isolation (namespaces, cgroups) needs root.
    #[error("{what} needs the agent to run as root (it runs as uid {agent_uid})")]
    IsolationNeedsRoot {
        /// `pid and mount namespaces` or `cgroups`.
        what: &'static str,
        /// The agent's effective uid.
        agent_uid: u32,
    },
    /// A SECRET environment variable, and there is no secret resolver.
    #[error("environment variable '{name}' is a secret, and this agent has no secret resolver")]
    SecretEnvironment {
        /// The variable.
        name: String,
    },
    /// A string that goes to `execve` contains a NUL byte.
    #[error("{field} contains a NUL byte")]
    NulByte {
        /// `command.value`, `command.arguments[2]`, `environment variable 'X'`, ...
        field: String,
    },
    /// The program of a non-shell command is not on the task's PATH.
    #[error("command '{program}' not found in PATH '{path}'")]
    CommandNotFound {
        /// `command.value`.
        program: String,
        /// The PATH searched.
        path: String,
    },
    /// Making the sandbox or its stdout/stderr files failed.
    #[error("sandbox {path}: {source}")]
    Sandbox {
        /// The directory or file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing or reading a checkpoint file in the meta directory failed.
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A namespace to join could not be opened.
    #[error("namespace {path}: {source}")]
    Namespace {
        /// The namespace file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// Starting the process failed at a given step (in the agent or in the child before
    /// `execve`).
    #[error("launching the task process: {step}: {errno}")]
    Spawn {
        /// The step: `clone`, `join cgroup`, `mount /proc`, `setuid`, `execve`, ...
        step: &'static str,
        /// The error number.
        errno: nix::errno::Errno,
    },
    /// The launch thread of the async runtime failed.
    #[error("launch task for container '{container_id}' did not finish: {reason}")]
    Runtime {
        /// The container.
        container_id: String,
        /// The join error.
        reason: String,
    },
    /// The container id is already in use.
    #[error("container '{container_id}' already exists")]
    DuplicateContainer {
        /// The container.
        container_id: String,
    },
    /// The task's image could not be pulled or prepared (names the image).
    #[error(transparent)]
    Image(#[from] crate::oci::OciError),
}

impl ContainerizerError {
    /// The task state Mesos reports for this launch failure: TASK_ERROR for a task that
    /// is invalid as given, TASK_FAILED for everything else.
    pub fn task_state(&self) -> TaskState {
        match self {
            ContainerizerError::InvalidTask { .. }
            | ContainerizerError::InvalidId { .. }
            | ContainerizerError::NulByte { .. } => TaskState::Error,
            _ => TaskState::Failed,
        }
    }

    /// The reason: `REASON_TASK_INVALID` with TASK_ERROR, else
    /// `REASON_CONTAINER_LAUNCH_FAILED`.
    pub fn reason(&self) -> TaskStatusReason {
        match self.task_state() {
            TaskState::Error => TaskStatusReason::TaskInvalid,
            _ => TaskStatusReason::ContainerLaunchFailed,
        }
    }

    /// The terminal status update for the task whose launch failed (source
    /// SOURCE_AGENT, the message is this error's text).
    pub fn task_status(&self, task_id: TaskId) -> TaskStatus {
        let mut s = TaskStatus::new(task_id, self.task_state());
        s.message = Some(self.to_string());
        s.reason = Some(self.reason());
        s.source = Some(TaskStatusSource::Agent);
        s
    }
}
