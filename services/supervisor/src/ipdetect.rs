//! Running the bundle's ip-detect script: it must print exactly one IPv4 address.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::Env;
use crate::error::{Result, SupervisorError};

/// How long one run may take.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses ip-detect's output: exactly one non-empty line, an IPv4 address.
pub fn parse_output(stdout: &[u8]) -> std::result::Result<Ipv4Addr, String> {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [one] => one
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("printed {one:?}, which is not an IPv4 address")),
        [] => Err("printed nothing (exactly one IPv4 address is required)".into()),
        many => Err(format!(
            "printed {} lines ({}); exactly one IPv4 address is required",
            many.len(),
            many.join(", ")
        )),
    }
}

/// Writes `script` (the bundle's `bin/ip-detect`) to the runtime folder and runs it until
/// it prints one IPv4 address or `wait` has passed (DHCP may not be done yet).
pub async fn detect_ip(env: &Env, script: &[u8], wait: Duration) -> Result<Ipv4Addr> {
    let dir = env.layout.runtime_dir();
    std::fs::create_dir_all(&dir).map_err(SupervisorError::io(&dir))?;
    let path = dir.join("ip-detect");
    std::fs::write(&path, script).map_err(SupervisorError::io(&path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .map_err(SupervisorError::io(&path))?;
    let deadline = env.clock.now() + wait;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let why = match env.runner.run(&path, &[], RUN_TIMEOUT).await {
            Ok(out) if out.success() => match parse_output(&out.stdout) {
                Ok(ip) => return Ok(ip),
                Err(why) => why,
            },
            Ok(out) => format!(
                "exited with {} ({})",
                out.code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "a signal".into()),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => e.to_string(),
        };
        if env.clock.now() >= deadline {
            return Err(SupervisorError::IpDetect(format!(
                "{why} (after {attempt} attempts in {} s)",
                wait.as_secs()
            )));
        }
        tracing::info!(attempt, reason = %why, "ip-detect gave no address yet; retrying");
        env.clock.sleep(Duration::from_secs(1)).await;
    }
}
