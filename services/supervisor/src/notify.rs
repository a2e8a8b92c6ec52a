//! `sd_notify(3)` without libsystemd: one datagram to `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`, `STATUS=…`) to the service manager. Without
/// `$NOTIFY_SOCKET` (not started by systemd, or not `Type=notify`) it does nothing and
/// returns `Ok(false)`.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

/// `READY=1`: the component serves. Errors are logged, never fatal.
pub fn notify_ready() {
    if let Err(e) = notify("READY=1") {
        tracing::warn!(error = %e, "sd_notify READY=1 failed");
    }
}

/// `STATUS=<text>`, shown by `systemctl status`.
pub fn notify_status(text: &str) {
    let one_line: String = text.replace('\n', " ");
    if let Err(e) = notify(&format!("STATUS={one_line}")) {
        tracing::warn!(error = %e, "sd_notify STATUS failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_the_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify");
        let server = UnixDatagram::bind(&p).unwrap();
        // SAFETY: single-threaded use of the environment inside this test; no other test
        // reads NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &p) };
        assert!(notify("READY=1").unwrap());
        // SAFETY: as above.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!notify("READY=1").unwrap());
    }
}
