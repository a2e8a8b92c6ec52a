//! Mesos-side health checks (`TaskInfo.health_check`, Mesos v1 `HealthCheck`), run by
//! the agent with the semantics of Mesos' health checker library and command executor.
//!
//! ```text
//! validate(&check)?;                                   // at launch: TASK_ERROR if bad
//! let checker = HealthChecker::spawn(check, ctx, tx);  // after TASK_RUNNING
//! while let Some(u) = rx.recv().await { ... }          // HealthUpdate: healthy, kill_task
//! ```
//!
//! # Timing
//!
//! The first check runs `delay_seconds` (default 15) after the task started; the next
//! one `interval_seconds` (default 10) after the previous one ended. A check not done
//! within `timeout_seconds` (default 20; 0 = no timeout) failed (a COMMAND check's
//! process group is SIGKILLed).
//!
//! # Results (as Mesos' `HealthChecker`)
//!
//! * Success: an update `healthy: true` on the first success and on the first success
//!   after failures; the failure count resets.
//! * Failure during the grace period (`grace_period_seconds`, default 10, counted from
//!   the start and including the delay) before any success: ignored.
//! * Any other failure: the consecutive failure count grows and an update
//!   `healthy: false` is sent with `kill_task` set once the count reaches
//!   `consecutive_failures` (default 3); the checker stops after that one.
//!
//! The daemon turns updates into TASK_RUNNING statuses with `healthy` set, reason
//! `REASON_TASK_HEALTH_CHECK_STATUS_UPDATED`, source SOURCE_EXECUTOR, and kills the task
//! on `kill_task` (its kill policy's grace period); the terminal TASK_KILLED then
//! carries `healthy: false`, as Mesos' command executor does.
//!
//! # Kinds
//!
//! * `HTTP`: `GET <scheme>://127.0.0.1:<port><path>` (`::1` with `protocol: IPv6`);
//!   scheme `http` (default) or `https` (certificates not verified, as Mesos' `curl -k`);
//!   healthy when the status is in `statuses`, else 200–399.
//! * `TCP`: a TCP connection to `127.0.0.1:<port>` succeeds.
//! * `COMMAND`: the command (`shell` as task commands) with the task's environment
//!   plus the check's own variables, in the sandbox, as the task's user; exit 0 is
//!   healthy. It enters the task's **mount namespace** (and network namespace, when the
//!   task has one of its own, as pod tasks do) with `setns`, but not its pid namespace
//!   or cgroups: its resources are not accounted to the task.
//!
//! HTTP and TCP checks run in the task's network namespace when it has one of its own
//! (a thread that `setns`es, then makes the connection), else in the agent's (which is
//! the task's).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use basalt_mesos::{HealthCheck, HealthCheckType};
use nix::libc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A health check that cannot be run as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health_check: {0}")]
pub struct HealthCheckError(pub String);

/// What a check needs to know about the task.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    /// The task's environment (COMMAND checks start from it).
    pub env: BTreeMap<String, String>,
    /// The sandbox (COMMAND checks' working directory).
    pub sandbox: PathBuf,
    /// A mount namespace to enter (`/proc/<pid>/ns/mnt`) for COMMAND checks.
    pub mount_ns: Option<PathBuf>,
    /// The task's own network namespace (`/proc/<pid>/ns/net` or a bind mount), if it
    /// has one.
    pub net_ns: Option<PathBuf>,
    /// `(uid, gid)` COMMAND checks run as.
    pub user: Option<(u32, u32)>,
}

/// One result the daemon acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthUpdate {
    /// Healthy or not.
    pub healthy: bool,
    /// Consecutive failures so far (0 when healthy).
    pub consecutive_failures: u32,
    /// The task must be killed (failures reached `consecutive_failures`).
    pub kill_task: bool,
    /// Why the check failed.
    pub message: Option<String>,
}

fn secs(field: &str, v: f64) -> Result<Duration, HealthCheckError> {
    if !v.is_finite() || v < 0.0 {
        return Err(HealthCheckError(format!(
            "'{field}' must be a non-negative number of seconds, not {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Checks a health check the way Mesos' validation does; the error names the field.
pub fn validate(check: &HealthCheck) -> Result<(), HealthCheckError> {
    let bad = |m: &str| Err(HealthCheckError(m.to_owned()));
    secs("delay_seconds", check.delay())?;
    secs("interval_seconds", check.interval())?;
    secs("timeout_seconds", check.timeout())?;
    secs("grace_period_seconds", check.grace_period())?;
    match &check.kind {
        None => bad("'type' is required (COMMAND, HTTP or TCP)"),
        Some(HealthCheckType::Command) => {
            let Some(c) = &check.command else {
                return bad("'command' is required for a COMMAND health check");
            };
            if c.value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                return bad("'command.value' is empty");
            }
            Ok(())
        }
        Some(HealthCheckType::Http) => {
            let Some(h) = &check.http else {
                return bad("'http' is required for an HTTP health check");
            };
            if h.port == 0 || h.port > 65535 {
                return Err(HealthCheckError(format!(
                    "'http.port' {} is not a port",
                    h.port
                )));
            }
            if let Some(s) = h.scheme.as_deref()
                && s != "http"
                && s != "https"
            {
                return Err(HealthCheckError(format!(
                    "'http.scheme' must be 'http' or 'https', not '{s}'"
                )));
            }
            if let Some(p) = h.path.as_deref()
                && !p.is_empty()
                && !p.starts_with('/')
            {
                return Err(HealthCheckError(format!(
                    "'http.path' '{p}' must start with '/'"
                )));
            }
            Ok(())
        }
        Some(HealthCheckType::Tcp) => {
            let Some(t) = &check.tcp else {
                return bad("'tcp' is required for a TCP health check");
            };
            if t.port == 0 || t.port > 65535 {
                return Err(HealthCheckError(format!(
                    "'tcp.port' {} is not a port",
                    t.port
                )));
            }
            Ok(())
        }
        Some(HealthCheckType::Other(t)) => Err(HealthCheckError(format!(
            "'type' {t} is not supported (COMMAND, HTTP or TCP)"
        ))),
    }
}

/// A running checker; dropping it stops the checks.
#[derive(Debug)]
pub struct HealthChecker {
    handle: JoinHandle<()>,
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl HealthChecker {
    /// Starts checking now (the first check after `delay_seconds`). Fails only on an
    /// invalid check ([`validate`]).
    pub fn spawn(
        check: HealthCheck,
        ctx: CheckContext,
        tx: mpsc::UnboundedSender<HealthUpdate>,
    ) -> Result<Self, HealthCheckError> {
        validate(&check)?;
        let handle = tokio::spawn(run(check, ctx, tx));
        Ok(Self { handle })
    }
}

async fn run(check: HealthCheck, ctx: CheckContext, tx: mpsc::UnboundedSender<HealthUpdate>) {
    let start = Instant::now();
    let d = |v: f64| Duration::from_secs_f64(v.max(0.0));
    let (delay, interval, timeout, grace) = (
        d(check.delay()),
        d(check.interval()),
        d(check.timeout()),
        d(check.grace_period()),
    );
    let max_failures = check.failures();
    tokio::time::sleep(delay).await;
    let mut initializing = true;
    let mut failures = 0u32;
    loop {
        let res = if timeout.is_zero() {
            check_once(&check, &ctx).await
        } else {
            match tokio::time::timeout(timeout, check_once(&check, &ctx)).await {
                Ok(r) => r,
                Err(_) => Err(format!("the check timed out after {timeout:?}")),
            }
        };
        match res {
            Ok(()) => {
                if initializing || failures > 0 {
                    tracing::info!(check = ?check.kind, "task is healthy");
                    let _ = tx.send(HealthUpdate {
                        healthy: true,
                        consecutive_failures: 0,
                        kill_task: false,
                        message: None,
                    });
                }
                initializing = false;
                failures = 0;
            }
            Err(msg) if initializing && !grace.is_zero() && start.elapsed() <= grace => {
                tracing::debug!(error = %msg, "health check failed within the grace period; ignored");
            }
            Err(msg) => {
                failures += 1;
                let kill = failures >= max_failures;
                tracing::warn!(failures, kill, error = %msg, "health check failed");
                let _ = tx.send(HealthUpdate {
                    healthy: false,
                    consecutive_failures: failures,
                    kill_task: kill,
                    message: Some(format!(
                        "health check failed {failures} time(s) consecutively: {msg}"
                    )),
                });
                if kill {
                    return;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Runs one check (no timeout of its own): `Ok` when healthy, else why not.
pub async fn check_once(check: &HealthCheck, ctx: &CheckContext) -> Result<(), String> {
    match &check.kind {
        Some(HealthCheckType::Http) => {
            let h = check.http.clone().ok_or("no 'http' section")?;
            in_netns(ctx.net_ns.clone(), move || http_check(h)).await
        }
        Some(HealthCheckType::Tcp) => {
            let t = check.tcp.clone().ok_or("no 'tcp' section")?;
            in_netns(ctx.net_ns.clone(), move || tcp_check(t)).await
        }
        Some(HealthCheckType::Command) => command_check(check, ctx).await,
        _ => Err("unsupported health check type".into()),
    }
}

fn loopback(protocol: Option<&str>) -> &'static str {
    if protocol.is_some_and(|p| p.eq_ignore_ascii_case("IPv6")) {
        "[::1]"
    } else {
        "127.0.0.1"
    }
}

async fn http_check(h: basalt_mesos::HttpCheckInfo) -> Result<(), String> {
    let scheme = h.scheme.as_deref().unwrap_or("http");
    let path = h.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
    let url = format!(
        "{scheme}://{}:{}{path}",
        loopback(h.protocol.as_deref()),
        h.port
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", chain(&e)))?;
    let code = u32::from(resp.status().as_u16());
    let ok = if h.statuses.is_empty() {
        (200..400).contains(&code)
    } else {
        h.statuses.contains(&code)
    };
    if ok {
        Ok(())
    } else {
        Err(format!("GET {url} answered {code}"))
    }
}

async fn tcp_check(t: basalt_mesos::TcpCheckInfo) -> Result<(), String> {
    let addr = format!("{}:{}", loopback(t.protocol.as_deref()), t.port);
    tokio::net::TcpStream::connect(&addr)
        .await
        .map(drop)
        .map_err(|e| format!("connecting to {addr}: {e}"))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        cur = c.source();
    }
    s
}

/// Runs `f` in the network namespace `ns` (a thread that `setns`es, with a runtime of
/// its own), or here when `None`.
async fn in_netns<F, Fut>(ns: Option<PathBuf>, f: F) -> Result<(), String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let Some(ns) = ns else {
        return f().await;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("health-netns".into())
        .spawn(move || {
            let res = (|| {
                let fd = std::fs::File::open(&ns)
                    .map_err(|e| format!("opening network namespace {}: {e}", ns.display()))?;
                nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering network namespace {}: {e}", ns.display()))?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("check runtime: {e}"))?;
                rt.block_on(f())
            })();
            let _ = tx.send(res);
        });
    if let Err(e) = spawned {
        return Err(format!("starting the check thread: {e}"));
    }
    rx.await
        .unwrap_or_else(|_| Err("the check thread ended without a result".into()))
}

fn open_ns(p: &Option<PathBuf>) -> Result<Option<OwnedFd>, String> {
    p.as_ref()
        .map(|p| {
            std::fs::File::open(p)
                .map(OwnedFd::from)
                .map_err(|e| format!("opening namespace {}: {e}", p.display()))
        })
        .transpose()
}

async fn command_check(check: &HealthCheck, ctx: &CheckContext) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let cmd = check.command.as_ref().ok_or("no 'command'")?;
    let value = cmd.value.clone().unwrap_or_default();
    let mut c = if cmd.is_shell() {
        let mut c = std::process::Command::new("/bin/sh");
        c.arg0("sh").arg("-c").arg(&value);
        c
    } else {
        let mut c = std::process::Command::new(&value);
        if let Some((first, rest)) = cmd.arguments.split_first() {
            c.arg0(first).args(rest);
        }
        c
    };
    c.env_clear().envs(&ctx.env);
    if let Some(env) = &cmd.environment {
        for v in &env.variables {
            c.env(&v.name, v.value.clone().unwrap_or_default());
        }
    }
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    let mnt = open_ns(&ctx.mount_ns)?;
    let net = open_ns(&ctx.net_ns)?;
    let dir = CString::new(ctx.sandbox.display().to_string())
        .map_err(|_| "the sandbox path contains a NUL byte".to_string())?;
    let (mnt_fd, net_fd) = (
        mnt.as_ref().map_or(-1, |f| f.as_raw_fd()),
        net.as_ref().map_or(-1, |f| f.as_raw_fd()),
    );
    let user = ctx.user;
    // SAFETY: the closure runs in the forked child before exec and makes only raw system
    // calls (setns, chdir, setgroups, setresgid, setresuid): no allocation, no locks.
    // The descriptors and the path live in this function until the spawn returned.
    unsafe {
        c.pre_exec(move || {
            if net_fd >= 0 && libc::setns(net_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Entering a mount namespace moves cwd and root to its root: chdir after.
            if mnt_fd >= 0 && libc::setns(mnt_fd, libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::chdir(dir.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((uid, gid)) = user {
                let groups = [gid];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(c)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the check command: {e}"))?;
    drop((mnt, net));
    let pgid = child.id().map(|p| p as i32);
    // Kills the check's process group if the check is dropped (timeout) while the
    // leader is not reaped yet (`group` drops before `child`).
    struct Group(Option<i32>);
    impl Drop for Group {
        fn drop(&mut self) {
            if let Some(p) = self.0 {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let mut group = Group(pgid);
    let st = child
        .wait()
        .await
        .map_err(|e| format!("waiting for the check command: {e}"))?;
    // Reaped: its pid (the group id) may be reused from now on, so no killpg.
    group.0 = None;
    if st.success() {
        Ok(())
    } else {
        Err(format!("the check command {value:?} ended: {st}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basalt_mesos::{CommandInfo, HttpCheckInfo, TcpCheckInfo};

    fn http(port: u32) -> HealthCheck {
        HealthCheck {
            kind: Some(HealthCheckType::Http),
            http: Some(HttpCheckInfo {
                port,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate(&http(8080)).is_ok());
        let cases: Vec<(HealthCheck, &str)> = vec![
            (HealthCheck::default(), "'type'"),
            (http(0), "'http.port'"),
            (
                HealthCheck {
                    kind: Some(HealthCheckType::Tcp),
                    ..Default::default()
                },
                "'tcp'",
            ),
            (
                HealthCheck {
                    kind: Some(HealthCheckType::Command),
                    command: Some(CommandInfo::shell(" ")),
                    ..Default::default()
                },
                "'command.value'",
            ),
            (
                HealthCheck {
                    interval_seconds: Some(-1.0),
                    ..http(80)
                },
                "'interval_seconds'",
            ),
            (
                HealthCheck {
                    http: Some(HttpCheckInfo {
                        port: 80,
                        scheme: Some("ftp".into()),
                        ..Default::default()
                    }),
                    ..http(80)
                },
                "'http.scheme'",
            ),
            (
                HealthCheck {
                    http: Some(HttpCheckInfo {
                        port: 80,
                        path: Some("health".into()),
                        ..Default::default()
                    }),
                    ..http(80)
                },
                "'http.path'",
            ),
        ];
        for (c, field) in cases {
            let e = validate(&c).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        let tcp = HealthCheck {
            kind: Some(HealthCheckType::Tcp),
            tcp: Some(TcpCheckInfo {
                port: 70000,
                protocol: None,
            }),
            ..Default::default()
        };
        assert!(
            validate(&tcp)
                .unwrap_err()
                .to_string()
                .contains("'tcp.port'")
        );
    }
}
