//! Starting the task process with `clone(2)`.
//!
//! ```text
//! no namespaces:  agent ── clone(VM|VFORK) ──▶ task: join cgroups, stdio, netns,
//!                                               setsid, chdir, drop to the user, execve
//! namespaces:     agent ── clone(VM|NEWPID|NEWNS) ──▶ init (pid 1): stdio,
//!                   mount / private (recursive), mount a fresh /proc,
//!                   bind-mount volumes, join a task group's network namespace,
//!                   clone(VM|VFORK) ──▶ task (pid 2): join cgroups, setsid, chdir,
//!                                                     user, execve
//!                   then: forward signals to the task's process group, reap orphans;
//!                   when the task exits, write its wait status to the status file in
//!                   the meta directory and exit (the kernel then kills everything
//!                   left in the namespace)
//! ```
//!
//! Why not `std::process::Command`: the namespaces need the first child to be the
//! namespace's init (a task that is pid 1 itself ignores SIGTERM unless it installs a
//! handler, so the command executor's kill would not work), `/proc` must be mounted
//! before the user is dropped, and std applies `uid`/`gid` before `pre_exec`.
//!
//! Why `CLONE_VM`: a fork of the multi-threaded agent costs a copy-on-write fault (and a
//! TLB shootdown across the agent's threads) for every page the agent writes until the
//! child execs; the namespace init never execs and would keep a private copy of every
//! page the agent changes for the task's whole life. Sharing the agent's memory instead
//! (like `posix_spawn`'s `CLONE_VM|CLONE_VFORK`) costs nothing; the children run on stacks
//! of their own ([`ChildStack`]; the init's lives until the init is reaped) and only
//! read data the launching thread keeps alive until they are done with it (the task
//! has exec'd: end-of-file on the launch pipe). They make raw system calls only
//! ([`rawsys`](super::rawsys): no `errno`, no thread-local storage, no allocation, no
//! locks) — the one exception is glibc's `clone` wrapper in the init, whose `errno`
//! write on failure is harmless there. The credential calls are raw too, so they change
//! the task only (glibc's wrappers broadcast to the agent's threads).
//!
//! The init is not in the task's cgroups (only the task and its descendants are): it
//! shares the agent's memory, so the kernel counts the agent's size for it; in the
//! task's memory cgroup the OOM killer would pick it over the task, and an OOM kill of a
//! process kills every process sharing its memory, the agent included. Outside, it is
//! part of the agent (same memory, same cgroups). The agent kills it by pid (which ends
//! the whole pid namespace). After an agent restart, inits still running keep the old
//! agent's memory mapped (shared, not copied) until their tasks end.
//!
//! Failures before `execve` travel back as `(step, errno)` through a close-on-exec pipe,
//! whose end-of-file tells the agent the exec succeeded. Signals are blocked across the
//! clone so no handler of the agent ever runs in a child, and reset to their defaults
//! (dispositions, then the mask) just before `execve`. Each child's fd table is a copy:
//! the init closes everything but its status pipe; the task marks everything above
//! stderr close-on-exec.
//!
//! The status file (`wait_status` in the run's meta directory, see
//! [`checkpoint`](super::checkpoint)) outlives the agent: a restarted agent can still
//! learn how a namespaced task ended.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::libc::{self, c_char, c_int, c_void};

use super::error::ContainerizerError;
use super::rawsys;

/// What the child needs, prepared by the agent.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    /// `cgroup.procs` files to join.
    pub procs_files: Vec<CString>,
    /// New pid and mount namespaces.
    pub namespaces: bool,
    /// Working directory.
    pub sandbox: CString,
    /// `/dev/null`.
    pub stdin: OwnedFd,
    /// The sandbox's `stdout`.
    pub stdout: OwnedFd,
    /// The sandbox's `stderr`.
    pub stderr: OwnedFd,
    /// `(uid, gid, groups)` to switch to.
    pub creds: Option<(u32, u32, Vec<u32>)>,
    /// With namespaces: the file the init writes the task's wait status to.
    pub status_file: Option<OwnedFd>,
    /// Path for `execve`.
    pub program: CString,
    /// argv.
    pub argv: Vec<CString>,
    /// `NAME=value` strings.
    pub envp: Vec<CString>,
    /// A network namespace to join (the init joins it before starting the task).
    pub netns: Option<OwnedFd>,
    /// With namespaces: `(source, target, read-only)` bind mounts the init makes.
    pub binds: Vec<(CString, CString, bool)>,
}

/// A started process.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// The process the agent is parent of (the namespace init, or the task itself).
    pub pid: i32,
    /// A pidfd of it (readable once it exits).
    pub pidfd: OwnedFd,
    /// With namespaces: the init's stacks; must stay mapped until the init is reaped.
    pub stack: Option<ChildStack>,
}

/// Stack for a `CLONE_VM` child: an anonymous mapping with a guard page under each of
/// its `slots` stacks.
#[derive(Debug)]
pub(crate) struct ChildStack {
    base: *mut c_void,
    len: usize,
    slot: usize,
}

// SAFETY: the mapping is owned by this value and only unmapped in Drop.
unsafe impl Send for ChildStack {}
// SAFETY: shared references only read the addresses.
unsafe impl Sync for ChildStack {}

const PAGE: usize = 4096;
const STACK_SIZE: usize = 256 * 1024;

impl ChildStack {
    fn new(slots: usize) -> Result<Self, ContainerizerError> {
        let slot = PAGE + STACK_SIZE;
        let len = slot * slots;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(ContainerizerError::Spawn {
                step: "mmap a child stack",
                errno: Errno::last(),
            });
        }
        let stack = ChildStack { base, len, slot };
        for i in 0..slots {
            // SAFETY: the first page of each slot lies inside our mapping.
            let r = unsafe {
                libc::mprotect(
                    base.cast::<u8>().add(i * slot).cast(),
                    PAGE,
                    libc::PROT_NONE,
                )
            };
            if r != 0 {
                return Err(ContainerizerError::Spawn {
                    step: "mprotect a stack guard page",
                    errno: Errno::last(),
                });
            }
        }
        Ok(stack)
    }

    /// The top (highest address, 16-byte aligned) of stack `i`.
    fn top(&self, i: usize) -> *mut c_void {
        // SAFETY: (i + 1) * slot <= len for the slots that exist; one past the end of
        // a slot is still inside (or one past) the mapping.
        unsafe { self.base.cast::<u8>().add((i + 1) * self.slot).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the child using it has exec'd or been reaped (owners
        // leak the stack rather than drop it otherwise).
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

const STEP_CGROUP: u32 = 0;
const STEP_STDIO: u32 = 1;
const STEP_MOUNT_PRIVATE: u32 = 2;
const STEP_MOUNT_PROC: u32 = 3;
const STEP_FORK: u32 = 4;
const STEP_SETSID: u32 = 5;
const STEP_CHDIR: u32 = 6;
const STEP_SETGROUPS: u32 = 7;
const STEP_SETRESGID: u32 = 8;
const STEP_SETRESUID: u32 = 9;
const STEP_EXEC: u32 = 10;
const STEP_SETNS_NET: u32 = 11;
const STEP_BIND_MOUNT: u32 = 12;

fn step_name(step: u32) -> &'static str {
    match step {
        STEP_CGROUP => "join the cgroup",
        STEP_STDIO => "set up stdin/stdout/stderr",
        STEP_MOUNT_PRIVATE => "make the mount namespace private",
        STEP_MOUNT_PROC => "mount /proc in the pid namespace",
        STEP_FORK => "start the task from the namespace init",
        STEP_SETSID => "setsid",
        STEP_CHDIR => "chdir to the sandbox",
        STEP_SETGROUPS => "setgroups",
        STEP_SETRESGID => "setresgid",
        STEP_SETRESUID => "setresuid",
        STEP_EXEC => "execve",
        STEP_SETNS_NET => "join the network namespace",
        STEP_BIND_MOUNT => "bind-mount a volume",
        _ => "an unknown step",
    }
}

/// What the children read (valid until the launching thread sees the launch pipe's
/// end-of-file, or has reaped the child).
struct ChildCtx<'a> {
    procs: &'a [CString],
    namespaces: bool,
    sandbox: *const c_char,
    stdio: [RawFd; 3],
    err_w: RawFd,
    status_w: RawFd,
    creds: Option<(u32, u32, &'a [u32])>,
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    /// Stack for the task when the init starts it.
    task_stack: *mut c_void,
    /// A network namespace to join, or -1.
    netns: RawFd,
    binds: &'a [(CString, CString, bool)],
}

fn spawn_err(step: &'static str) -> impl FnOnce(Errno) -> ContainerizerError {
    move |errno| ContainerizerError::Spawn { step, errno }
}

/// Starts the process and returns once it has called `execve` (or failed to).
/// Blocking: run it on a blocking thread.
pub(crate) fn spawn(plan: &ChildPlan) -> Result<Spawned, ContainerizerError> {
    let argv: Vec<*const c_char> = plan
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect();
    let envp: Vec<*const c_char> = plan
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect();
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(spawn_err("pipe2"))?;
    // Namespaces: stack 0 for the task, 1 for the init. Otherwise one for the task.
    let stack = ChildStack::new(if plan.namespaces { 2 } else { 1 })?;
    let ctx = ChildCtx {
        procs: &plan.procs_files,
        namespaces: plan.namespaces,
        sandbox: plan.sandbox.as_ptr(),
        stdio: [
            plan.stdin.as_raw_fd(),
            plan.stdout.as_raw_fd(),
            plan.stderr.as_raw_fd(),
        ],
        err_w: err_w.as_raw_fd(),
        status_w: plan.status_file.as_ref().map_or(-1, |f| f.as_raw_fd()),
        creds: plan
            .creds
            .as_ref()
            .map(|(u, g, groups)| (*u, *g, groups.as_slice())),
        program: plan.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        task_stack: stack.top(0),
        netns: plan.netns.as_ref().map_or(-1, |f| f.as_raw_fd()),
        binds: &plan.binds,
    };
    let (entry, top, flags): (extern "C" fn(*mut c_void) -> c_int, _, c_int) = if plan.namespaces {
        (
            init_entry,
            stack.top(1),
            libc::CLONE_VM | libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::SIGCHLD,
        )
    } else {
        (
            task_entry,
            stack.top(0),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        )
    };

    // SAFETY: sigset_t is plain data; sigfillset initialises it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to sigsets; blocking every signal in this thread only
    // (restored right after the clone) keeps the agent's handlers from running in a
    // child before it resets them.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // SAFETY: the child runs `entry` on its own stack (`top`, inside `stack`) with a
    // pointer to `ctx`; both outlive its use: without namespaces this thread is
    // suspended until the child exec'd or exited (CLONE_VFORK); with them, `ctx` lives
    // until the launch pipe's end-of-file or the init is reaped below, and the init's
    // stack moves to the caller, which keeps it until the init is reaped.
    let ret = unsafe {
        libc::clone(
            entry,
            top,
            flags,
            (&ctx as *const ChildCtx<'_>).cast_mut().cast::<c_void>(),
        )
    };
    let clone_errno = Errno::last();
    // SAFETY: restores this thread's mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
    }
    drop(err_w);
    if ret < 0 {
        return Err(ContainerizerError::Spawn {
            step: "clone",
            errno: clone_errno,
        });
    }
    let pid = ret as libc::pid_t;
    // The init keeps running on its stack; the vfork'd task is done with its own.
    let mut stack = Some(stack);
    let abort = |stack: &mut Option<ChildStack>| {
        kill_and_reap(pid);
        drop(stack.take());
    };
    if !plan.namespaces {
        drop(stack.take());
    }

    // SAFETY: pidfd_open takes a pid and flags; we are the parent and have not reaped
    // the child, so the pid cannot have been reused.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        let errno = Errno::last();
        abort(&mut stack);
        return Err(ContainerizerError::Spawn {
            step: "pidfd_open",
            errno,
        });
    }
    // SAFETY: a fresh descriptor returned by pidfd_open, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };

    // Wait for execve: end-of-file with nothing read means it succeeded.
    let mut report = [0u8; 8];
    let mut got = 0;
    let mut err_file = File::from(err_r);
    loop {
        match err_file.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                if got == report.len() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                abort(&mut stack);
                return Err(ContainerizerError::Spawn {
                    step: "read the launch report",
                    errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                });
            }
        }
    }
    if got > 0 {
        abort(&mut stack);
        let mut step = [0u8; 4];
        let mut errno = [0u8; 4];
        step.copy_from_slice(&report[..4]);
        errno.copy_from_slice(&report[4..]);
        return Err(ContainerizerError::Spawn {
            step: if got == 8 {
                step_name(u32::from_le_bytes(step))
            } else {
                "an unknown step (short report)"
            },
            errno: Errno::from_raw(i32::from_le_bytes(errno)),
        });
    }
    Ok(Spawned { pid, pidfd, stack })
}

/// SIGKILL and reap a child that failed before or at `execve`.
fn kill_and_reap(pid: libc::pid_t) {
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
}

// ---- the children: raw system calls only (see the module docs) -------------------------

/// Reports `(step, errno)` to the agent and exits.
///
/// # Safety
/// Child only.
unsafe fn fail(c: &ChildCtx<'_>, step: u32, errno: i32) -> ! {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&step.to_le_bytes());
    buf[4..].copy_from_slice(&errno.to_le_bytes());
    // SAFETY: writing a stack buffer to our pipe, then exiting.
    unsafe {
        let _ = rawsys::write(c.err_w, &buf);
        rawsys::exit(127)
    }
}

/// Joins the task's cgroups ("0" is the writing process).
///
/// # Safety
/// Child only.
unsafe fn join_cgroups(c: &ChildCtx<'_>) {
    // SAFETY: raw system calls on the prepared C strings.
    unsafe {
        for p in c.procs {
            let fd = match rawsys::open_write(p.as_ptr()) {
                Ok(fd) => fd,
                Err(e) => fail(c, STEP_CGROUP, e),
            };
            match rawsys::write(fd, b"0") {
                Ok(1) => {}
                Ok(_) => fail(c, STEP_CGROUP, libc::EIO),
                Err(e) => fail(c, STEP_CGROUP, e),
            }
            rawsys::close(fd);
        }
    }
}

/// Installs stdin/stdout/stderr.
///
/// # Safety
/// Child only.
unsafe fn redirect(c: &ChildCtx<'_>) {
    // SAFETY: raw system calls on the prepared descriptors.
    unsafe {
        for (i, fd) in c.stdio.iter().enumerate() {
            if let Err(e) = rawsys::dup_to(*fd, i as c_int) {
                fail(c, STEP_STDIO, e);
            }
        }
    }
}

/// Entry of the task process (cloned with `CLONE_VM | CLONE_VFORK`).
extern "C" fn task_entry(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the launching thread's `ChildCtx`, alive while we run (the
    // cloning process is suspended until we exec or exit).
    unsafe {
        let c = &*(arg as *const ChildCtx<'_>);
        // The task joins the cgroups itself, the init never does: see `init_entry`.
        join_cgroups(c);
        if !c.namespaces {
            redirect(c);
            join_netns(c);
        }
        exec_task(c)
    }
}

/// Joins the network namespace, if one was given.
///
/// # Safety
/// Child only.
unsafe fn join_netns(c: &ChildCtx<'_>) {
    // SAFETY: a raw system call on a descriptor the launching thread keeps open.
    unsafe {
        if c.netns >= 0
            && let Err(e) = rawsys::setns(c.netns, libc::CLONE_NEWNET)
        {
            fail(c, STEP_SETNS_NET, e);
        }
    }
}

/// Bind-mounts the volumes (in the init's private mount namespace).
///
/// # Safety
/// Namespace init only.
unsafe fn bind_volumes(c: &ChildCtx<'_>) {
    // SAFETY: raw system calls on the prepared C strings.
    unsafe {
        for (src, dst, read_only) in c.binds {
            if let Err(e) = rawsys::mount(
                src.as_ptr(),
                dst.as_ptr(),
                ptr::null(),
                libc::MS_BIND | libc::MS_REC,
            ) {
                fail(c, STEP_BIND_MOUNT, e);
            }
            if *read_only
                && let Err(e) = rawsys::mount(
                    ptr::null(),
                    dst.as_ptr(),
                    ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                )
            {
                fail(c, STEP_BIND_MOUNT, e);
            }
        }
    }
}

/// # Safety
/// Child only.
unsafe fn exec_task(c: &ChildCtx<'_>) -> ! {
    // SAFETY: raw system calls on prepared data.
    unsafe {
        if let Err(e) = rawsys::setsid() {
            fail(c, STEP_SETSID, e);
        }
        if let Err(e) = rawsys::chdir(c.sandbox) {
            fail(c, STEP_CHDIR, e);
        }
        if let Some((uid, gid, groups)) = c.creds
            && let Err((which, e)) = rawsys::set_credentials(uid, gid, groups)
        {
            fail(c, STEP_SETGROUPS + which, e);
        }
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                rawsys::signal_default(sig);
            }
        }
        rawsys::unblock_all_signals();
        // Nothing of the agent's leaks into the task (std marks its descriptors
        // close-on-exec; other libraries may not).
        rawsys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
        let e = rawsys::execve(c.program, c.argv, c.envp);
        fail(c, STEP_EXEC, e)
    }
}

/// Entry of the pid namespace's init (cloned with `CLONE_VM | CLONE_NEWPID |
/// CLONE_NEWNS`): sets the namespace up, starts the task, forwards signals to the
/// task's process group, reaps, and reports the task's wait status.
extern "C" fn init_entry(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the launching thread's `ChildCtx`, alive until it sees the launch
    // pipe's end-of-file (after our `close(err_w)` below, when we no longer read it) or
    // has reaped us.
    unsafe {
        let c = &*(arg as *const ChildCtx<'_>);
        // The init stays in the agent's cgroups: it shares the agent's memory, so in the
        // task's memory cgroup the OOM killer would rate it by the agent's size, and an
        // OOM kill of it also kills every process sharing its memory — the agent.
        redirect(c);
        if let Err(e) = rawsys::mount(
            ptr::null(),
            c"/".as_ptr(),
            ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
        ) {
            fail(c, STEP_MOUNT_PRIVATE, e);
        }
        if let Err(e) = rawsys::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        ) {
            fail(c, STEP_MOUNT_PROC, e);
        }
        bind_volumes(c);
        // The task inherits the init's network namespace.
        join_netns(c);
        // Children must stay waitable even if the agent ignores SIGCHLD. Set before the
        // task starts: setting SIGCHLD to SIG_DFL (an "ignore" default) discards a
        // pending SIGCHLD, which a task as quick as /bin/true would already have sent.
        rawsys::signal_default(libc::SIGCHLD);
        // Suspended until the task has exec'd or exited.
        let task = libc::clone(
            task_entry,
            c.task_stack,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg,
        );
        if task < 0 {
            // glibc's wrapper put the errno in thread-local storage we share with the
            // launching thread, which is blocked reading the launch pipe.
            fail(c, STEP_FORK, Errno::last_raw());
        }
        let status_w = c.status_w;
        let err_w = c.err_w;
        // From here on `c` is not read: the launching thread may free it once it sees
        // end-of-file on the launch pipe.
        rawsys::close(err_w);
        // Hold nothing of the agent's (other launches' pipes included) but the status
        // file and stdio.
        rawsys::close_range(3, (status_w - 1) as u32, 0);
        rawsys::close_range((status_w + 1) as u32, u32::MAX, 0);
        init_loop(task, status_w)
    }
}

/// # Safety
/// Namespace init only.
unsafe fn init_loop(task: c_int, status_w: c_int) -> ! {
    // Every signal is still blocked (inherited from the launching thread), so signals
    // to pid 1 are queued and taken here, not ignored. Children are reaped before every
    // wait, so an exit is never missed.
    // SAFETY: raw system calls on our own values.
    unsafe {
        loop {
            while let Some((pid, st)) = rawsys::reap_any() {
                if pid == task {
                    let mut buf = [0u8; 16];
                    let text = decimal_line(st, &mut buf);
                    let _ = rawsys::write(status_w, text);
                    rawsys::exit(0);
                }
            }
            if let Ok(sig) = rawsys::wait_any_signal()
                && sig != libc::SIGCHLD
                && rawsys::kill(-task, sig).is_err()
            {
                let _ = rawsys::kill(task, sig);
            }
        }
    }
}

/// `"<n>\n"` in `buf`, without allocating.
fn decimal_line(n: c_int, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len() - 1;
    buf[i] = b'\n';
    let neg = n < 0;
    let mut v = (n as i64).unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_lines() {
        let mut b = [0u8; 16];
        assert_eq!(decimal_line(0, &mut b), b"0\n");
        assert_eq!(decimal_line(2304, &mut b), b"2304\n");
        assert_eq!(decimal_line(-7, &mut b), b"-7\n");
        assert_eq!(decimal_line(i32::MIN, &mut b), b"-2147483648\n");
    }
}
