//! A launched container: the handle ([`Container`]), how it ended ([`Termination`]) and
//! the supervisor task that watches it (exit through a pidfd, kill requests with their
//! grace period, OOM kills through the memory cgroup) and tears it down.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use basalt_mesos::{
    ContainerId, TaskId, TaskState, TaskStatus, TaskStatusReason, TaskStatusSource,
};
use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::cgroups::{CgroupManager, TaskCgroup, TaskLimits};
use super::checkpoint::{TERMINATION_FILE, read_wait_status, write_json};
use super::error::ContainerizerError;
use super::launch::ChildStack;
use super::usage::{MesosBytes, ResourceStatistics};

/// How long teardown waits for a cgroup to empty and be removed.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How a container ended, and the task status it means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Termination {
    /// TASK_FINISHED (exit 0), TASK_FAILED (non-zero exit, signal, memory limit) or
    /// TASK_KILLED (killed on request).
    pub state: TaskState,
    /// `REASON_CONTAINER_LIMITATION_MEMORY` after an OOM kill.
    pub reason: Option<TaskStatusReason>,
    /// SOURCE_EXECUTOR for the task's own end, SOURCE_AGENT for a limitation.
    pub source: TaskStatusSource,
    /// `Command exited with status N`, `Command terminated with signal Killed`, or
    /// `Memory limit exceeded: Requested: 32MB Maximum Used: 32MB`.
    pub message: String,
    /// Exit code, if the task exited.
    pub exit_code: Option<i32>,
    /// Signal number, if the task was killed by a signal.
    pub signal: Option<i32>,
    /// Whether a kill was requested.
    pub killed: bool,
    /// Whether the OOM killer killed something in the container.
    pub oom: bool,
}

impl Termination {
    /// The terminal status update for `task_id`.
    pub fn task_status(&self, task_id: TaskId) -> TaskStatus {
        let mut s = TaskStatus::new(task_id, self.state);
        s.message = Some(self.message.clone());
        s.reason = self.reason.clone();
        s.source = Some(self.source.clone());
        s
    }
}

/// How the task process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(i32),
    Signal(i32),
    /// Nobody could tell (reaped elsewhere).
    Unknown,
}

impl Exit {
    pub(crate) fn from_raw(st: i32) -> Self {
        if libc::WIFEXITED(st) {
            Exit::Code(libc::WEXITSTATUS(st))
        } else if libc::WIFSIGNALED(st) {
            Exit::Signal(libc::WTERMSIG(st))
        } else {
            Exit::Unknown
        }
    }

    /// Mesos' `WSTRINGIFY` after "Command ".
    fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("Command exited with status {c}"),
            Exit::Signal(s) => format!("Command terminated with signal {}", signal_name(s)),
            Exit::Unknown => "Command terminated; its exit status is unknown".to_owned(),
        }
    }
}

/// `strsignal(3)` text for the common signals.
fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "Hangup",
        libc::SIGINT => "Interrupt",
        libc::SIGQUIT => "Quit",
        libc::SIGILL => "Illegal instruction",
        libc::SIGTRAP => "Trace/breakpoint trap",
        libc::SIGABRT => "Aborted",
        libc::SIGBUS => "Bus error",
        libc::SIGFPE => "Floating point exception",
        libc::SIGKILL => "Killed",
        libc::SIGUSR1 => "User defined signal 1",
        libc::SIGSEGV => "Segmentation fault",
        libc::SIGUSR2 => "User defined signal 2",
        libc::SIGPIPE => "Broken pipe",
        libc::SIGALRM => "Alarm clock",
        libc::SIGTERM => "Terminated",
        libc::SIGXCPU => "CPU time limit exceeded",
        libc::SIGXFSZ => "File size limit exceeded",
        _ => return format!("signal {sig}"),
    };
    name.to_owned()
}

/// The termination for an exit, a kill request and an OOM limitation message.
pub(crate) fn termination(exit: Exit, killed: bool, oom: Option<String>) -> Termination {
    let (exit_code, signal) = match exit {
        Exit::Code(c) => (Some(c), None),
        Exit::Signal(s) => (None, Some(s)),
        Exit::Unknown => (None, None),
    };
    let base = Termination {
        state: TaskState::Failed,
        reason: None,
        source: TaskStatusSource::Executor,
        message: exit.describe(),
        exit_code,
        signal,
        killed,
        oom: oom.is_some(),
    };
    if killed {
        return Termination {
            state: TaskState::Killed,
            ..base
        };
    }
    if let Some(message) = oom {
        return Termination {
            state: TaskState::Failed,
            reason: Some(TaskStatusReason::ContainerLimitationMemory),
            source: TaskStatusSource::Agent,
            message,
            ..base
        };
    }
    if exit == Exit::Code(0) {
        return Termination {
            state: TaskState::Finished,
            ..base
        };
    }
    base
}

/// Mesos' memory limitation message.
pub(crate) fn memory_message(limit: Option<u64>, peak: Option<u64>) -> String {
    let show =
        |v: Option<u64>| v.map_or_else(|| "unknown".to_owned(), |b| MesosBytes(b).to_string());
    format!(
        "Memory limit exceeded: Requested: {} Maximum Used: {}",
        show(limit),
        show(peak)
    )
}

pub(crate) enum Control {
    Kill(Duration),
}

/// The live containers of a containerizer.
pub(crate) type Registry = Arc<Mutex<HashMap<ContainerId, Container>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the handle and the supervisor share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub id: ContainerId,
    pub task_id: TaskId,
    pub pid: i32,
    pub pidfd: Arc<OwnedFd>,
    pub namespaces: bool,
    pub sandbox: PathBuf,
    pub meta: PathBuf,
    pub cgroup: Option<TaskCgroup>,
    pub cgroups: Option<Arc<CgroupManager>>,
    pub limits: TaskLimits,
    pub grace: Duration,
    /// Set (under the lock) once the process is reaped; signals to its pid are only
    /// sent while it is not, so a reused pid is never hit.
    pub reaped: Mutex<bool>,
    /// The namespace init's stack (it shares the agent's memory): unmapped only once
    /// the init is reaped.
    pub stack: Mutex<Option<ChildStack>>,
    pub control: mpsc::UnboundedSender<Control>,
    pub done: watch::Receiver<Option<Termination>>,
    /// Set as soon as a kill is asked for (the end is TASK_KILLED even if the task
    /// exits on its own before the supervisor handles the request).
    pub kill_requested: AtomicBool,
}

impl Shared {
    /// Signals the task: through the namespace init (which forwards to the task's
    /// process group) or to the task's process group directly.
    fn signal_task(&self, sig: Signal) {
        let reaped = lock(&self.reaped);
        if *reaped {
            return;
        }
        let target = if self.namespaces {
            Pid::from_raw(self.pid)
        } else {
            Pid::from_raw(-self.pid)
        };
        if let Err(e) = kill(target, sig)
            && e != Errno::ESRCH
        {
            tracing::warn!(container = %self.id, %sig, error = %e, "signalling the task");
        }
        if !self.namespaces && sig == Signal::SIGKILL {
            let _ = kill(Pid::from_raw(self.pid), sig);
        }
    }

    /// SIGKILL everything: the namespace init (the kernel then kills the whole pid
    /// namespace) or the process group, and every process in the cgroup.
    fn kill_everything(&self) {
        self.signal_task(Signal::SIGKILL);
        self.kill_cgroup_once();
    }

    /// One pass of SIGKILL over the cgroup; true when it was already empty.
    fn kill_cgroup_once(&self) -> bool {
        let (Some(mgr), Some(cg)) = (&self.cgroups, &self.cgroup) else {
            return true;
        };
        match mgr.kill_all(cg) {
            Ok(true) => return mgr.pids(cg).map(|p| p.is_empty()).unwrap_or(true),
            Ok(false) => {}
            Err(e) => tracing::warn!(container = %self.id, error = %e, "cgroup.kill"),
        }
        match mgr.pids(cg) {
            Ok(pids) if pids.is_empty() => true,
            Ok(pids) => {
                for p in pids {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
                false
            }
            Err(e) => {
                tracing::warn!(container = %self.id, error = %e, "listing cgroup processes");
                true
            }
        }
    }

    /// Waits (without reaping) until the process has exited; `Err(ECHILD)` when it was
    /// reaped already.
    fn exited(&self) -> Result<bool, Errno> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        loop {
            match waitid(Id::Pid(Pid::from_raw(self.pid)), flags) {
                Ok(WaitStatus::StillAlive) => return Ok(false),
                Ok(_) => return Ok(true),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reaps the exited process; `None` when it was reaped already.
    fn reap(&self) -> Option<i32> {
        let mut reaped = lock(&self.reaped);
        if *reaped {
            return None;
        }
        // Leftovers of the process group die with the task (the zombie leader still
        // holds the group id, so it cannot name another group yet).
        if !self.namespaces {
            let _ = kill(Pid::from_raw(-self.pid), Signal::SIGKILL);
        }
        let mut st: libc::c_int = 0;
        let r = loop {
            // SAFETY: waitpid on our own child with a valid status pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut st, 0) };
            if r < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            break r;
        };
        *reaped = true;
        drop(lock(&self.stack).take());
        (r == self.pid).then_some(st)
    }

    fn oom_kills(&self) -> u64 {
        let (Some(mgr), Some(cg)) = (&self.cgroups, &self.cgroup) else {
            return 0;
        };
        match mgr.oom_kills(cg) {
            Ok(n) => n.unwrap_or(0),
            Err(e) => {
                tracing::debug!(container = %self.id, error = %e, "reading OOM kills");
                0
            }
        }
    }

    fn memory_limitation(&self) -> String {
        let peak = match (&self.cgroups, &self.cgroup) {
            (Some(mgr), Some(cg)) => mgr.memory_peak(cg).ok().flatten(),
            _ => None,
        };
        memory_message(self.limits.memory_limit(), peak)
    }

    /// Kills what is left in the cgroup and removes it, within `timeout`. Blocking.
    fn teardown_cgroup_blocking(&self, timeout: Duration) -> bool {
        let (Some(mgr), Some(cg)) = (&self.cgroups, &self.cgroup) else {
            return true;
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let empty = self.kill_cgroup_once();
            if empty {
                match mgr.destroy(cg) {
                    Ok(()) => return true,
                    Err(e) if std::time::Instant::now() >= deadline => {
                        tracing::warn!(container = %self.id, error = %e, "cgroup left behind");
                        return false;
                    }
                    Err(_) => {}
                }
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(container = %self.id, "cgroup still has processes");
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // An init that was never reaped may still run on its stack: leak it.
        let reaped = *lock(&self.reaped);
        if !reaped && let Some(stack) = lock(&self.stack).take() {
            std::mem::forget(stack);
        }
    }
}

/// A launched container. Cheap to clone; every clone is the same container.
#[derive(Debug, Clone)]
pub struct Container {
    pub(crate) shared: Arc<Shared>,
}

impl Container {
    /// The container id.
    pub fn id(&self) -> &ContainerId {
        &self.shared.id
    }

    /// The task it runs.
    pub fn task_id(&self) -> &TaskId {
        &self.shared.task_id
    }

    /// The pid the agent started: the pid namespace's init, or the task itself.
    pub fn pid(&self) -> i32 {
        self.shared.pid
    }

    /// Whether the task runs in its own pid and mount namespaces.
    pub fn has_namespaces(&self) -> bool {
        self.shared.namespaces
    }

    /// The sandbox directory (holds `stdout` and `stderr`).
    pub fn sandbox(&self) -> &Path {
        &self.shared.sandbox
    }

    /// The meta (checkpoint) directory.
    pub fn meta_dir(&self) -> &Path {
        &self.shared.meta
    }

    /// The task's cgroup, if cgroups are on.
    pub fn cgroup(&self) -> Option<&TaskCgroup> {
        self.shared.cgroup.as_ref()
    }

    /// The limits it was given.
    pub fn limits(&self) -> TaskLimits {
        self.shared.limits
    }

    /// The grace period a kill without one uses (the task's kill policy, else the
    /// containerizer's default).
    pub fn grace_period(&self) -> Duration {
        self.shared.grace
    }

    /// How it ended, once it has.
    pub fn termination(&self) -> Option<Termination> {
        self.shared.done.borrow().clone()
    }

    /// Waits until the container has ended and been torn down (processes gone, cgroup
    /// removed, `termination.json` written).
    pub async fn wait(&self) -> Termination {
        let mut rx = self.shared.done.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(t) => (*t).clone().unwrap_or_else(lost),
            Err(_) => lost(),
        }
    }

    /// Asks for the container to be killed: SIGTERM now, SIGKILL to everything after
    /// `grace` (`None`: [`grace_period`](Self::grace_period)). A later call with a
    /// shorter grace period brings the SIGKILL forward. Returns at once; [`wait`](Self::wait)
    /// for the end (TASK_KILLED).
    pub fn kill(&self, grace: Option<Duration>) {
        let grace = grace.unwrap_or(self.shared.grace);
        self.shared.kill_requested.store(true, Ordering::SeqCst);
        if self.shared.control.send(Control::Kill(grace)).is_err() {
            tracing::debug!(container = %self.shared.id, "kill after the supervisor ended");
        }
    }

    /// Kills with `grace` and waits for the end.
    pub async fn kill_and_wait(&self, grace: Option<Duration>) -> Termination {
        self.kill(grace);
        self.wait().await
    }

    /// Current CPU and memory usage: from the cgroup, else from `/proc/<pid>` of the
    /// process the agent started (that process only).
    pub fn usage(&self) -> Result<ResourceStatistics, ContainerizerError> {
        let mut st = match (&self.shared.cgroups, &self.shared.cgroup) {
            (Some(mgr), Some(cg)) => {
                let mut st = mgr.usage(cg)?;
                st.processes = mgr.pids(cg).ok().map(|p| p.len() as u32);
                st
            }
            _ => proc_usage(self.shared.pid),
        };
        st.timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        st.cpus_limit = self.shared.limits.cpus;
        st.mem_limit_bytes = self.shared.limits.memory_limit();
        st.mem_soft_limit_bytes = self.shared.limits.memory_limit();
        Ok(st)
    }

    /// Synchronous teardown for shutdown paths and test guards, usable where the async
    /// runtime cannot run (a `Drop`): SIGKILL everything, reap, remove the cgroup.
    /// Returns false if something was still there after `timeout`.
    pub fn destroy_blocking(&self, timeout: Duration) -> bool {
        let sh = &self.shared;
        if sh.done.borrow().is_some() {
            return true;
        }
        sh.kill_requested.store(true, Ordering::SeqCst);
        sh.kill_everything();
        let deadline = std::time::Instant::now() + timeout;
        let mut gone = false;
        while std::time::Instant::now() < deadline {
            match sh.exited() {
                Ok(true) => {
                    sh.reap();
                    gone = true;
                    break;
                }
                Ok(false) => {
                    sh.kill_everything();
                    let mut pfd = libc::pollfd {
                        fd: sh.pidfd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; waits at most 20 ms.
                    unsafe { libc::poll(&mut pfd, 1, 20) };
                }
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        gone && sh.teardown_cgroup_blocking(left.max(Duration::from_millis(100)))
    }
}

fn lost() -> Termination {
    Termination {
        state: TaskState::Lost,
        reason: None,
        source: TaskStatusSource::Agent,
        message: "the containerizer stopped watching the container".to_owned(),
        exit_code: None,
        signal: None,
        killed: false,
        oom: false,
    }
}

/// CPU times and RSS of one process from `/proc/<pid>/stat`.
fn proc_usage(pid: i32) -> ResourceStatistics {
    let mut st = ResourceStatistics::default();
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return st;
    };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return st;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let hz = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    };
    // Fields after the name start at field 3 (state), so field N is index N - 3.
    st.cpus_user_time_secs = num(11).map(|t| t as f64 / hz);
    st.cpus_system_time_secs = num(12).map(|t| t as f64 / hz);
    let page = match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(p)) if p > 0 => p as u64,
        _ => 4096,
    };
    st.mem_rss_bytes = num(21).map(|p| p * page);
    st.mem_total_bytes = st.mem_rss_bytes;
    st.processes = Some(1);
    st
}

/// Watches one container until it has ended and is torn down.
pub(crate) struct Supervisor {
    pub shared: Arc<Shared>,
    pub pidfd: AsyncFd<Arc<OwnedFd>>,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub done: watch::Sender<Option<Termination>>,
    pub oom_interval: Duration,
    pub registry: Registry,
}

impl Supervisor {
    pub async fn run(mut self) {
        let sh = Arc::clone(&self.shared);
        let watch_oom = sh.cgroup.as_ref().is_some_and(|c| c.memory.is_some());
        let mut oom_tick = tokio::time::interval(self.oom_interval);
        oom_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut killed = false;
        let mut kill_at: Option<Instant> = None;
        let mut escalated = false;
        let mut oom: Option<String> = None;
        loop {
            tokio::select! {
                r = self.pidfd.readable() => {
                    match r {
                        Ok(mut guard) => match sh.exited() {
                            Ok(false) => guard.clear_ready(),
                            Ok(true) | Err(_) => break,
                        },
                        Err(e) => {
                            tracing::warn!(container = %sh.id, error = %e, "pidfd poll; polling instead");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            if !matches!(sh.exited(), Ok(false)) {
                                break;
                            }
                        }
                    }
                }
                Some(Control::Kill(grace)) = self.control.recv() => {
                    let at = Instant::now() + grace;
                    if !killed {
                        killed = true;
                        tracing::info!(container = %sh.id, task = %sh.task_id, ?grace, "killing task");
                        if grace.is_zero() {
                            sh.kill_everything();
                            escalated = true;
                        } else {
                            sh.signal_task(Signal::SIGTERM);
                        }
                        kill_at = Some(at);
                    } else if kill_at.is_none_or(|k| at < k) {
                        kill_at = Some(at);
                    }
                }
                _ = tokio::time::sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() && !escalated => {
                    tracing::info!(container = %sh.id, "grace period over; SIGKILL");
                    sh.kill_everything();
                    escalated = true;
                }
                _ = oom_tick.tick(), if watch_oom && oom.is_none() && !killed => {
                    if sh.oom_kills() > 0 {
                        let msg = sh.memory_limitation();
                        tracing::info!(container = %sh.id, message = %msg, "memory limit exceeded");
                        oom = Some(msg);
                        sh.kill_everything();
                        escalated = true;
                    }
                }
            }
        }
        let raw = sh.reap();
        // With namespaces the agent reaps the init; the task's own status is in the
        // file the init wrote (absent when the init was SIGKILLed first).
        let task_status = if sh.namespaces {
            read_wait_status(&sh.meta)
        } else {
            None
        };
        let exit = task_status.or(raw).map_or(Exit::Unknown, Exit::from_raw);
        if oom.is_none() && !killed && watch_oom && sh.oom_kills() > 0 {
            oom = Some(sh.memory_limitation());
        }
        let teardown = {
            let sh = Arc::clone(&sh);
            tokio::task::spawn_blocking(move || sh.teardown_cgroup_blocking(TEARDOWN_TIMEOUT))
        };
        if let Err(e) = teardown.await {
            tracing::warn!(container = %sh.id, error = %e, "cgroup teardown task");
        }
        let killed = killed || sh.kill_requested.load(Ordering::SeqCst);
        let t = termination(exit, killed, oom);
        tracing::info!(container = %sh.id, task = %sh.task_id, state = %t.state, message = %t.message, "container ended");
        if let Err(e) = write_json(&sh.meta.join(TERMINATION_FILE), &t) {
            tracing::warn!(container = %sh.id, error = %e, "checkpointing the termination");
        }
        lock(&self.registry).remove(&sh.id);
        self.done.send_replace(Some(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminations_follow_mesos() {
        let t = termination(Exit::Code(0), false, None);
        assert_eq!(t.state, TaskState::Finished);
        assert_eq!(t.message, "Command exited with status 0");
        assert_eq!(t.source, TaskStatusSource::Executor);

        let t = termination(Exit::Code(3), false, None);
        assert_eq!(t.state, TaskState::Failed);
        assert_eq!(t.message, "Command exited with status 3");
        assert_eq!(t.exit_code, Some(3));

        let t = termination(Exit::Signal(libc::SIGSEGV), false, None);
        assert_eq!(t.state, TaskState::Failed);
        assert_eq!(
            t.message,
            "Command terminated with signal Segmentation fault"
        );

        let t = termination(Exit::Signal(libc::SIGTERM), true, None);
        assert_eq!(t.state, TaskState::Killed);
        assert_eq!(t.message, "Command terminated with signal Terminated");
        assert_eq!(
            termination(Exit::Code(0), true, None).state,
            TaskState::Killed
        );

        let msg = memory_message(Some(32 << 20), Some(32 << 20));
        assert_eq!(
            msg,
            "Memory limit exceeded: Requested: 32MB Maximum Used: 32MB"
        );
        let t = termination(Exit::Signal(libc::SIGKILL), false, Some(msg.clone()));
        assert_eq!(t.state, TaskState::Failed);
        assert_eq!(t.reason, Some(TaskStatusReason::ContainerLimitationMemory));
        assert_eq!(t.source, TaskStatusSource::Agent);
        assert!(t.oom);
        let s = t.task_status(TaskId::new("t1"));
        assert_eq!(s.message.as_deref(), Some(msg.as_str()));
        assert_eq!(s.reason, Some(TaskStatusReason::ContainerLimitationMemory));
        assert_eq!(s.source, Some(TaskStatusSource::Agent));
        assert_eq!(
            serde_json::to_value(&s).unwrap()["reason"],
            "REASON_CONTAINER_LIMITATION_MEMORY"
        );
    }

    #[test]
    fn raw_wait_statuses() {
        assert_eq!(Exit::from_raw(0), Exit::Code(0));
        assert_eq!(Exit::from_raw(3 << 8), Exit::Code(3));
        assert_eq!(Exit::from_raw(libc::SIGKILL), Exit::Signal(libc::SIGKILL));
    }
}
