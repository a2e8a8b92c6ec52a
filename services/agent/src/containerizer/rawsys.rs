//! Raw Linux system calls for the launch children (`launch` module).
//!
//! Those children share the agent's memory (`CLONE_VM`) and its thread pointer, so they
//! must not touch thread-local storage: glibc's wrappers store `errno` there, which is
//! the launching agent thread's `errno`. These return `-errno` instead, like the kernel.
//! Only x86_64 and aarch64 are supported.

use nix::libc::{self, c_char, c_int, c_long};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the containerizer's raw system calls support x86_64 and aarch64 only");

/// One system call; returns the kernel's result (`-errno` on failure).
///
/// # Safety
/// The arguments must be valid for system call `n`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn syscall(n: c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 system call convention; rcx and r11 are clobbered by `syscall`.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// One system call; returns the kernel's result (`-errno` on failure).
///
/// # Safety
/// The arguments must be valid for system call `n`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn syscall(n: c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the aarch64 system call convention (number in x8, result in x0).
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

/// `Err(errno)` for a negative result.
fn check(r: isize) -> Result<isize, i32> {
    if r < 0 { Err((-r) as i32) } else { Ok(r) }
}

/// The kernel's `struct sigaction` (x86_64 and aarch64 share the layout).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Size of the kernel's signal set.
const SIGSET_SIZE: usize = 8;

/// `open(path, O_WRONLY | O_CLOEXEC)`.
///
/// # Safety
/// `path` must be a NUL-terminated string.
pub unsafe fn open_write(path: *const c_char) -> Result<c_int, i32> {
    let flags = (libc::O_WRONLY | libc::O_CLOEXEC) as usize;
    // SAFETY: openat(AT_FDCWD, path, flags, 0).
    let r = unsafe {
        syscall(
            libc::SYS_openat,
            [libc::AT_FDCWD as usize, path as usize, flags, 0, 0, 0],
        )
    };
    check(r).map(|fd| fd as c_int)
}

/// `write(fd, buf)`; returns the bytes written.
///
/// # Safety
/// Any fd; `buf` is a valid slice.
pub unsafe fn write(fd: c_int, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: the buffer is valid for its length.
    let r = unsafe {
        syscall(
            libc::SYS_write,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
        )
    };
    check(r).map(|n| n as usize)
}

/// `close(fd)`.
///
/// # Safety
/// The fd must not be in use by other code of this process.
pub unsafe fn close(fd: c_int) {
    // SAFETY: closing a descriptor number.
    unsafe { syscall(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]) };
}

/// `close_range(first, last, flags)`; errors (old kernels) are ignored.
///
/// # Safety
/// The descriptors must not be in use by other code of this process.
pub unsafe fn close_range(first: u32, last: u32, flags: u32) {
    if first > last {
        return;
    }
    // SAFETY: plain integers.
    unsafe {
        syscall(
            libc::SYS_close_range,
            [first as usize, last as usize, flags as usize, 0, 0, 0],
        )
    };
}

/// Makes `fd` descriptor `target` (without close-on-exec).
///
/// # Safety
/// `target` may be replaced.
pub unsafe fn dup_to(fd: c_int, target: c_int) -> Result<(), i32> {
    // SAFETY: fcntl(F_SETFD, 0) / dup3 on descriptor numbers.
    let r = unsafe {
        if fd == target {
            syscall(
                libc::SYS_fcntl,
                [fd as usize, libc::F_SETFD as usize, 0, 0, 0, 0],
            )
        } else {
            syscall(libc::SYS_dup3, [fd as usize, target as usize, 0, 0, 0, 0])
        }
    };
    check(r).map(|_| ())
}

/// `mount(2)`.
///
/// # Safety
/// Pointers must be null or NUL-terminated strings.
pub unsafe fn mount(
    source: *const c_char,
    target: *const c_char,
    fstype: *const c_char,
    flags: libc::c_ulong,
) -> Result<(), i32> {
    // SAFETY: valid pointers per the contract.
    let r = unsafe {
        syscall(
            libc::SYS_mount,
            [
                source as usize,
                target as usize,
                fstype as usize,
                flags as usize,
                0,
                0,
            ],
        )
    };
    check(r).map(|_| ())
}

/// `setns(fd, nstype)`.
///
/// # Safety
/// Changes this thread's namespace.
pub unsafe fn setns(fd: c_int, nstype: c_int) -> Result<(), i32> {
    // SAFETY: plain integer arguments.
    check(unsafe { syscall(libc::SYS_setns, [fd as usize, nstype as usize, 0, 0, 0, 0]) })
        .map(|_| ())
}

/// `setsid()`.
///
/// # Safety
/// Changes this process' session.
pub unsafe fn setsid() -> Result<(), i32> {
    // SAFETY: no arguments.
    check(unsafe { syscall(libc::SYS_setsid, [0; 6]) }).map(|_| ())
}

/// `chdir(path)`.
///
/// # Safety
/// `path` must be a NUL-terminated string.
pub unsafe fn chdir(path: *const c_char) -> Result<(), i32> {
    // SAFETY: valid path per the contract.
    check(unsafe { syscall(libc::SYS_chdir, [path as usize, 0, 0, 0, 0, 0]) }).map(|_| ())
}

/// `setgroups`, `setresgid`, `setresuid` (this process only, unlike glibc's wrappers);
/// `Err((step, errno))` with step 0, 1 or 2.
///
/// # Safety
/// Changes this process' credentials.
pub unsafe fn set_credentials(uid: u32, gid: u32, groups: &[u32]) -> Result<(), (u32, i32)> {
    // SAFETY: the group slice is valid for its length.
    unsafe {
        check(syscall(
            libc::SYS_setgroups,
            [groups.len(), groups.as_ptr() as usize, 0, 0, 0, 0],
        ))
        .map_err(|e| (0, e))?;
        let g = gid as usize;
        check(syscall(libc::SYS_setresgid, [g, g, g, 0, 0, 0])).map_err(|e| (1, e))?;
        let u = uid as usize;
        check(syscall(libc::SYS_setresuid, [u, u, u, 0, 0, 0])).map_err(|e| (2, e))?;
    }
    Ok(())
}

/// Sets `sig` to its default action.
///
/// # Safety
/// Changes this process' signal table (private: the children are cloned without
/// `CLONE_SIGHAND`).
pub unsafe fn signal_default(sig: c_int) {
    let act = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: a valid kernel sigaction, no old action wanted.
    unsafe {
        syscall(
            libc::SYS_rt_sigaction,
            [
                sig as usize,
                &act as *const KernelSigaction as usize,
                0,
                SIGSET_SIZE,
                0,
                0,
            ],
        )
    };
}

/// Unblocks every signal.
///
/// # Safety
/// Pending signals may be delivered right after.
pub unsafe fn unblock_all_signals() {
    let none: u64 = 0;
    // SAFETY: a valid set, no old set wanted.
    unsafe {
        syscall(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_SETMASK as usize,
                &none as *const u64 as usize,
                0,
                SIGSET_SIZE,
                0,
                0,
            ],
        )
    };
}

/// Waits for any signal (all must be blocked); returns its number.
///
/// # Safety
/// Plain system call.
pub unsafe fn wait_any_signal() -> Result<c_int, i32> {
    let all: u64 = !0;
    // SAFETY: a valid set; no info, no timeout.
    let r = unsafe {
        syscall(
            libc::SYS_rt_sigtimedwait,
            [&all as *const u64 as usize, 0, 0, SIGSET_SIZE, 0, 0],
        )
    };
    check(r).map(|s| s as c_int)
}

/// `wait4(-1, &status, WNOHANG)`: `Some((pid, status))` for a reaped child.
///
/// # Safety
/// Plain system call.
pub unsafe fn reap_any() -> Option<(c_int, c_int)> {
    let mut status: c_int = 0;
    // SAFETY: a valid status pointer; no rusage.
    let r = unsafe {
        syscall(
            libc::SYS_wait4,
            [
                -1isize as usize,
                &mut status as *mut c_int as usize,
                libc::WNOHANG as usize,
                0,
                0,
                0,
            ],
        )
    };
    (r > 0).then_some((r as c_int, status))
}

/// `kill(pid, sig)`.
///
/// # Safety
/// Sends a signal.
pub unsafe fn kill(pid: c_int, sig: c_int) -> Result<(), i32> {
    // SAFETY: plain integers.
    check(unsafe {
        syscall(
            libc::SYS_kill,
            [pid as isize as usize, sig as usize, 0, 0, 0, 0],
        )
    })
    .map(|_| ())
}

/// `execve`; returns only on failure, with the errno.
///
/// # Safety
/// NUL-terminated path and NULL-terminated arrays of NUL-terminated strings.
pub unsafe fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> i32 {
    // SAFETY: valid per the contract.
    let r = unsafe {
        syscall(
            libc::SYS_execve,
            [path as usize, argv as usize, envp as usize, 0, 0, 0],
        )
    };
    (-r) as i32
}

/// Ends this process.
///
/// # Safety
/// Runs no destructors or exit handlers.
pub unsafe fn exit(code: c_int) -> ! {
    loop {
        // SAFETY: exit_group does not return.
        unsafe { syscall(libc::SYS_exit_group, [code as usize, 0, 0, 0, 0, 0]) };
    }
}
