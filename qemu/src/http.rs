//! A minimal HTTP/1.0 client for the host side of QEMU tests (forwarded ports on
//! 127.0.0.1) and a static file server the guests fetch their bundles from (10.0.2.2 in
//! QEMU's user network is the host's loopback).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{QemuError, Result};

/// One request to `127.0.0.1:<port>`: `(status, body)`, `None` when the connection fails or
/// the answer is not HTTP (a guest that is still booting).
pub fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// GET returning parsed JSON when the status is 2xx.
pub fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let (status, body) = request(port, "GET", path, None)?;
    if !(200..300).contains(&status) {
        return None;
    }
    serde_json::from_str(&body).ok()
}

/// Serves the files under a folder (GET only, no listing) on `127.0.0.1:<port>`.
/// Stops when dropped.
pub struct FileServer {
    pub port: u16,
    pub root: PathBuf,
    served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Binds a free port on loopback and serves `root` from a thread.
    pub fn start(root: &Path) -> Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(QemuError::io(root))?;
        let port = listener.local_addr().map_err(QemuError::io(root))?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (root_t, stop_t, served_t) = (root.to_path_buf(), stop.clone(), served.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop_t.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(mut conn) = conn
                    && serve_one(&root_t, &mut conn)
                {
                    served_t.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Ok(FileServer {
            port,
            root: root.to_path_buf(),
            served,
            stop,
            thread: Some(thread),
        })
    }

    /// How many files were served.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the accept loop
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `root` + the request path, refusing anything but plain relative components.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let rel = Path::new(url_path.split('?').next()?.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

/// Answers one request; true when a file was sent.
fn serve_one(root: &Path, conn: &mut TcpStream) -> bool {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return false,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return false;
    }
    // drain the headers
    let mut h = String::new();
    while reader.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
        h.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let file = (method == "GET")
        .then(|| resolve(root, path))
        .flatten()
        .and_then(|p| std::fs::read(p).ok());
    let ok = file.is_some();
    let (status, body) = match file {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let _ = write!(
        conn,
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(&body);
    let _ = conn.shutdown(Shutdown::Write);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_files_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bundles")).unwrap();
        std::fs::write(dir.path().join("bundles/agent.tar"), b"tar bytes").unwrap();
        let srv = FileServer::start(dir.path()).unwrap();
        let (status, body) = request(srv.port, "GET", "/bundles/agent.tar", None).unwrap();
        assert_eq!((status, body.as_str()), (200, "tar bytes"));
        assert_eq!(
            request(srv.port, "GET", "/../etc/passwd", None).unwrap().0,
            404
        );
        assert_eq!(
            request(srv.port, "GET", "/bundles/none.tar", None)
                .unwrap()
                .0,
            404
        );
        assert_eq!(
            request(srv.port, "POST", "/bundles/agent.tar", Some("x"))
                .unwrap()
                .0,
            404
        );
        assert_eq!(srv.served(), 1);
    }
}
