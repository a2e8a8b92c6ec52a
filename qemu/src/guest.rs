//! Running commands inside a guest through the QEMU guest agent (qemu-guest-agent in the
//! node images, on the virtio-serial port `org.qemu.guest_agent.0` that [`crate::VmConfig`]
//! puts behind a unix socket).
//!
//! The protocol is QMP-shaped JSON, one object per line, one client at a time:
//!
//! ```text
//! host → 0xFF {"execute":"guest-sync-delimited","arguments":{"id":N}}
//! guest ← 0xFF {"return":N}            (0xFF resets the agent's parser and marks where
//!                                       the answer starts: stale output is skipped)
//! host → {"execute":"guest-exec","arguments":{"path":..,"arg":[..],"capture-output":true}}
//! guest ← {"return":{"pid":P}}
//! host → {"execute":"guest-exec-status","arguments":{"pid":P}}     (polled)
//! guest ← {"return":{"exited":true,"exitcode":0,"out-data":"<base64>","err-data":"<base64>"}}
//! ```
//!
//! Errors come back as `{"error":{"class":..,"desc":..}}`. Each [`exec`] opens its own
//! connection and synchronises first, so an earlier client that left mid-answer does not
//! confuse the next one.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::wait::wait_until;

/// How long one answer of the agent may take (an exec is polled, so this bounds only the
/// agent's own reaction time).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `guest-exec-status` is asked while the command runs.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What a guest command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as (lossy) UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Guest-agent failures; each names the node and the command.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{node}: guest agent socket {}: {source} (running `{command}`)", socket.display())]
    Connect {
        node: String,
        socket: PathBuf,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{node}: talking to the guest agent ({step}) for `{command}`: {source}")]
    Io {
        node: String,
        command: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{node}: the guest agent answered {step} for `{command}` with {detail}")]
    Protocol {
        node: String,
        command: String,
        step: &'static str,
        detail: String,
    },
    #[error("{node}: the guest agent refused {step} for `{command}`: {class}: {desc}")]
    Agent {
        node: String,
        command: String,
        step: &'static str,
        class: String,
        desc: String,
    },
    #[error("{node}: `{command}` still running after {waited:?}")]
    Timeout {
        node: String,
        command: String,
        waited: Duration,
    },
}

/// `guest-exec`'s arguments: `argv[0]` is the program (an absolute path: the agent does
/// not search PATH reliably), the rest its arguments; output is captured.
pub fn exec_request(argv: &[&str]) -> Value {
    let (path, args) = argv.split_first().map_or(("", &[][..]), |(p, a)| (*p, a));
    json!({
        "execute": "guest-exec",
        "arguments": {"path": path, "arg": args, "capture-output": true}
    })
}

/// `guest-exec-status` for `pid`.
pub fn status_request(pid: i64) -> Value {
    json!({"execute": "guest-exec-status", "arguments": {"pid": pid}})
}

/// The handshake: the 0xFF that resets the agent's JSON parser, then
/// `guest-sync-delimited` with `id`, one line.
pub fn sync_bytes(id: u64) -> Vec<u8> {
    let mut b = vec![0xFF];
    b.extend_from_slice(
        json!({"execute": "guest-sync-delimited", "arguments": {"id": id}})
            .to_string()
            .as_bytes(),
    );
    b.push(b'\n');
    b
}

/// One answer: `Ok(return value)` or `Err((class, desc))` for an `error` answer; `None`
/// when it is neither.
pub fn parse_reply(v: &Value) -> Option<Result<&Value, (String, String)>> {
    if let Some(r) = v.get("return") {
        return Some(Ok(r));
    }
    let e = v.get("error")?;
    Some(Err((
        e["class"].as_str().unwrap_or("?").to_owned(),
        e["desc"].as_str().unwrap_or("").to_owned(),
    )))
}

/// A `guest-exec-status` answer: `None` while the command runs, else what it did. Invalid
/// base64 is an `Err` naming the field.
pub fn decode_status(r: &Value) -> Result<Option<ExecOutput>, String> {
    if !r["exited"]
        .as_bool()
        .ok_or_else(|| format!("no `exited` in {r}"))?
    {
        return Ok(None);
    }
    let data = |field: &str| -> Result<Vec<u8>, String> {
        match r.get(field).and_then(Value::as_str) {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("`{field}` is not base64: {e}")),
        }
    };
    let int = |field: &str| r.get(field).and_then(Value::as_i64).map(|v| v as i32);
    Ok(Some(ExecOutput {
        code: int("exitcode"),
        signal: int("signal"),
        stdout: data("out-data")?,
        stderr: data("err-data")?,
    }))
}

/// One connection to a guest agent, synchronised.
struct Session {
    node: String,
    command: String,
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Session {
    fn open(node: &str, socket: &Path, command: &str) -> Result<Session, GuestError> {
        let connect = |source| GuestError::Connect {
            node: node.to_owned(),
            socket: socket.to_path_buf(),
            command: command.to_owned(),
            source,
        };
        let stream = UnixStream::connect(socket).map_err(connect)?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(connect)?;
        stream
            .set_write_timeout(Some(REPLY_TIMEOUT))
            .map_err(connect)?;
        let reader = BufReader::new(stream.try_clone().map_err(connect)?);
        let mut s = Session {
            node: node.to_owned(),
            command: command.to_owned(),
            writer: stream,
            reader,
        };
        s.sync()?;
        Ok(s)
    }

    fn io(&self, step: &'static str) -> impl FnOnce(std::io::Error) -> GuestError {
        let (node, command) = (self.node.clone(), self.command.clone());
        move |source| GuestError::Io {
            node,
            command,
            step,
            source,
        }
    }

    fn protocol(&self, step: &'static str, detail: String) -> GuestError {
        GuestError::Protocol {
            node: self.node.clone(),
            command: self.command.clone(),
            step,
            detail,
        }
    }

    /// Sends the delimited sync and skips everything up to its answer.
    fn sync(&mut self) -> Result<(), GuestError> {
        let id = u64::from(std::process::id()) << 20 | (now_nanos() & 0xFFFFF);
        self.writer
            .write_all(&sync_bytes(id))
            .map_err(self.io("guest-sync"))?;
        loop {
            let mut skipped = Vec::new();
            self.reader
                .read_until(0xFF, &mut skipped)
                .map_err(self.io("guest-sync"))?;
            if skipped.last() != Some(&0xFF) {
                return Err(self.protocol("guest-sync", "end of stream".into()));
            }
            let v = self.read_line("guest-sync")?;
            if v.get("return").and_then(Value::as_u64) == Some(id) {
                return Ok(());
            }
            // an older client's sync answer: keep looking
        }
    }

    fn read_line(&mut self, step: &'static str) -> Result<Value, GuestError> {
        loop {
            let mut line = Vec::new();
            self.reader
                .read_until(b'\n', &mut line)
                .map_err(self.io(step))?;
            if line.is_empty() {
                return Err(self.protocol(step, "end of stream".into()));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{FFFD}');
            if text.is_empty() {
                continue;
            }
            return serde_json::from_str(text)
                .map_err(|e| self.protocol(step, format!("{text:?} ({e})")));
        }
    }

    /// Sends one command and returns its `return` value.
    fn call(&mut self, step: &'static str, request: &Value) -> Result<Value, GuestError> {
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(self.io(step))?;
        let v = self.read_line(step)?;
        match parse_reply(&v) {
            Some(Ok(r)) => Ok(r.clone()),
            Some(Err((class, desc))) => Err(GuestError::Agent {
                node: self.node.clone(),
                command: self.command.clone(),
                step,
                class,
                desc,
            }),
            None => Err(self.protocol(step, v.to_string())),
        }
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
}

/// Whether the agent behind `socket` answers a sync now.
pub fn ping(node: &str, socket: &Path) -> Result<(), GuestError> {
    Session::open(node, socket, "guest-sync").map(|_| ())
}

/// Runs `argv` in the guest of `node` (agent socket `socket`), waits at most `timeout` for
/// it to end, and returns its exit status and output.
pub fn exec(
    node: &str,
    socket: &Path,
    argv: &[&str],
    timeout: Duration,
) -> Result<ExecOutput, GuestError> {
    let command = argv.join(" ");
    let started = Instant::now();
    let mut s = Session::open(node, socket, &command)?;
    let r = s.call("guest-exec", &exec_request(argv))?;
    let pid = r["pid"]
        .as_i64()
        .ok_or_else(|| s.protocol("guest-exec", format!("no pid in {r}")))?;
    tracing::debug!(node, pid, command, "guest-exec started");
    let mut failed = None;
    let out = wait_until(
        &format!("`{command}` on {node}"),
        timeout.saturating_sub(started.elapsed()),
        POLL_INTERVAL,
        || match s.call("guest-exec-status", &status_request(pid)) {
            Err(e) => {
                failed = Some(e);
                Some(None)
            }
            Ok(r) => match decode_status(&r) {
                Ok(None) => None,
                Ok(Some(o)) => Some(Some(o)),
                Err(detail) => {
                    failed = Some(s.protocol("guest-exec-status", detail));
                    Some(None)
                }
            },
        },
    )
    .map_err(|t| GuestError::Timeout {
        node: node.to_owned(),
        command: command.clone(),
        waited: t.waited,
    })?;
    match (out, failed) {
        (Some(o), _) => {
            tracing::debug!(node, command, code = ?o.code, "guest-exec ended");
            Ok(o)
        }
        (None, Some(e)) => Err(e),
        (None, None) => Err(s.protocol("guest-exec-status", "no answer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn requests_have_the_agents_shape() {
        assert_eq!(
            exec_request(&["/bin/sh", "-c", "echo hi"]),
            json!({"execute": "guest-exec", "arguments": {
                "path": "/bin/sh", "arg": ["-c", "echo hi"], "capture-output": true}})
        );
        assert_eq!(
            status_request(42),
            json!({"execute": "guest-exec-status", "arguments": {"pid": 42}})
        );
        let b = sync_bytes(7);
        assert_eq!(b[0], 0xFF);
        assert_eq!(b.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&b[1..]).unwrap();
        assert_eq!(v["execute"], "guest-sync-delimited");
        assert_eq!(v["arguments"]["id"], 7);
    }

    #[test]
    fn status_answers_decode() {
        let running = json!({"exited": false});
        assert_eq!(decode_status(&running).unwrap(), None);
        let done =
            json!({"exited": true, "exitcode": 3, "out-data": "aGVsbG8K", "err-data": "b29wcw=="});
        let o = decode_status(&done).unwrap().unwrap();
        assert_eq!(o.code, Some(3));
        assert_eq!(o.stdout, b"hello\n");
        assert_eq!(o.stderr_str(), "oops");
        assert!(!o.success());
        let killed = json!({"exited": true, "signal": 9});
        let o = decode_status(&killed).unwrap().unwrap();
        assert_eq!((o.code, o.signal), (None, Some(9)));
        assert!(o.stdout.is_empty());
        let bad = json!({"exited": true, "exitcode": 0, "out-data": "***"});
        assert!(decode_status(&bad).unwrap_err().contains("out-data"));
        assert!(decode_status(&json!({})).is_err());
    }

    #[test]
    fn replies_and_errors_are_told_apart() {
        let ok = json!({"return": {"pid": 5}});
        assert_eq!(parse_reply(&ok).unwrap().unwrap()["pid"], 5);
        let err = json!({"error": {"class": "GenericError", "desc": "Guest agent command failed"}});
        assert_eq!(
            parse_reply(&err).unwrap().unwrap_err(),
            ("GenericError".into(), "Guest agent command failed".into())
        );
        assert!(parse_reply(&json!({"event": "x"})).is_none());
    }

    /// A stand-in agent on a unix socket: answers like qemu-ga (stale output first, the
    /// delimited sync, one exec that is running once, then exited).
    #[test]
    fn exec_round_trip_against_a_fake_agent() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qga.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let agent = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            // leftovers of an earlier client, before the reset byte
            w.write_all(b"{\"return\": {\"pid\": 1}}\n").unwrap();
            let mut lead = [0u8; 1];
            std::io::Read::read_exact(&mut r, &mut lead).unwrap();
            assert_eq!(lead[0], 0xFF);
            let mut seen = Vec::new();
            let mut polls = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let v: Value = serde_json::from_str(&line).unwrap();
                let answer = match v["execute"].as_str().unwrap() {
                    "guest-sync-delimited" => {
                        // a stale sync answer first, then the right one
                        w.write_all(b"\xFF{\"return\": 1}\n").unwrap();
                        w.write_all(b"\xFF").unwrap();
                        json!({"return": v["arguments"]["id"]})
                    }
                    "guest-exec" => {
                        seen.push(v["arguments"].clone());
                        json!({"return": {"pid": 77}})
                    }
                    "guest-exec-status" => {
                        assert_eq!(v["arguments"]["pid"], 77);
                        polls += 1;
                        if polls == 1 {
                            json!({"return": {"exited": false}})
                        } else {
                            json!({"return": {"exited": true, "exitcode": 0, "out-data": "YTEK"}})
                        }
                    }
                    other => panic!("unexpected {other}"),
                };
                w.write_all(format!("{answer}\n").as_bytes()).unwrap();
            }
            (seen, polls)
        });
        let out = exec("a1", &sock, &["/bin/hostname"], Duration::from_secs(10)).unwrap();
        assert!(out.success());
        assert_eq!(out.stdout_str(), "a1\n");
        let (seen, polls) = agent.join().unwrap();
        assert_eq!(
            seen,
            vec![json!({"path": "/bin/hostname", "arg": [], "capture-output": true})]
        );
        assert_eq!(polls, 2);
    }

    #[test]
    fn errors_name_the_node_and_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(
            "a2",
            &dir.path().join("none.sock"),
            &["/bin/true", "x"],
            Duration::from_secs(1),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("a2") && s.contains("/bin/true x"), "{s}");
    }
}
