//! The journal, read through systemd's own `journalctl` (`--output=json`) as a child
//! process per read: no binding to libsystemd, the journal file format stays systemd's
//! business, and `--directory` points a reader at any journal directory (the tests
//! import entries with `systemd-journal-remote`). Every child is spawned with
//! `kill_on_drop`, so dropping an [`EntryStream`] (a client that went away) ends it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::query::Match;

/// The largest `--lines` journalctl takes (it parses a signed 32-bit count); more is
/// the same as all.
const MAX_LINES: u64 = 2_147_483_647;

/// How much of a failed journalctl's stderr is kept for the error.
const STDERR_KEEP: u64 = 4096;

/// One journal entry in dcos-log's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The entry's fields (`MESSAGE`, `_SYSTEMD_UNIT`, …), without the `__` address
    /// fields, which are the members below.
    pub fields: BTreeMap<String, String>,
    /// `__CURSOR`.
    pub cursor: String,
    /// `__MONOTONIC_TIMESTAMP` (µs).
    pub monotonic_timestamp: u64,
    /// `__REALTIME_TIMESTAMP` (µs since the epoch).
    pub realtime_timestamp: u64,
}

/// Why the journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// journalctl could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading journalctl's output failed.
    #[error("reading the output of {program}: {source}")]
    Read {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// journalctl exited unsuccessfully.
    #[error("{program} {args} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its arguments, joined.
        args: String,
        /// Exit status.
        status: String,
        /// Its stderr (trimmed).
        stderr: String,
    },
    /// A line of journalctl's output that is no journal entry.
    #[error("{program} printed a line that is no JSON journal entry ({reason}): {line:.200}")]
    BadEntry {
        /// The program.
        program: String,
        /// Why.
        reason: String,
        /// The line.
        line: String,
    },
}

/// A field value of journalctl's JSON: a string, bytes (an array of numbers, for
/// binary or non-UTF-8 data), or an array of those when the field repeats (the last
/// value is kept, as a map of strings must).
fn field_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(Value::as_u64)
                .map(|n| u8::try_from(n).unwrap_or(b'?'))
                .collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Value::Array(items) => items.iter().rev().find_map(field_value),
        _ => None,
    }
}

fn parse_u64(obj: &serde_json::Map<String, Value>, key: &str) -> Option<u64> {
    obj.get(key).and_then(Value::as_str)?.parse().ok()
}

impl Entry {
    /// Parses one line of `journalctl --output=json`.
    pub fn from_json_line(line: &str) -> Result<Entry, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let Value::Object(obj) = v else {
            return Err("not a JSON object".into());
        };
        let cursor = obj
            .get("__CURSOR")
            .and_then(Value::as_str)
            .ok_or("no __CURSOR")?
            .to_owned();
        let realtime_timestamp = parse_u64(&obj, "__REALTIME_TIMESTAMP").unwrap_or(0);
        let monotonic_timestamp = parse_u64(&obj, "__MONOTONIC_TIMESTAMP").unwrap_or(0);
        let fields = obj
            .iter()
            .filter(|(k, _)| !k.starts_with("__"))
            .filter_map(|(k, v)| field_value(v).map(|s| (k.clone(), s)))
            .collect();
        Ok(Entry {
            fields,
            cursor,
            monotonic_timestamp,
            realtime_timestamp,
        })
    }

    /// A field, or `""`.
    pub fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Where an entry read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The oldest entry.
    Head,
    /// The last `n` entries (`--lines=n`).
    Tail(u64),
    /// The entry with this cursor (`--cursor`).
    At(String),
    /// The entry after this cursor (`--after-cursor`).
    After(String),
}

/// One journalctl invocation.
#[derive(Debug, Clone)]
pub struct Read {
    /// Start position.
    pub start: Start,
    /// Newest first.
    pub reverse: bool,
    /// Keep reading new entries.
    pub follow: bool,
}

/// The journal as journalctl sees it.
#[derive(Debug, Clone)]
pub struct Journal {
    /// The journalctl program.
    pub program: PathBuf,
    /// `--directory`; `None`: the system journal.
    pub directory: Option<PathBuf>,
}

impl Journal {
    fn base_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(d) = &self.directory {
            args.push(format!("--directory={}", d.display()));
        }
        args.extend(["--no-pager".to_owned(), "--quiet".to_owned()]);
        args
    }

    fn spawn(&self, args: Vec<String>) -> Result<(Child, String), JournalError> {
        let program = self.program.display().to_string();
        tracing::debug!(program = %program, args = ?args, "journalctl");
        let child = Command::new(&self.program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| JournalError::Spawn {
                program: program.clone(),
                source,
            })?;
        Ok((child, args.join(" ")))
    }

    /// Starts reading entries matching `matches` (journal match semantics: the same
    /// field twice is either value, different fields are both).
    pub fn entries(&self, read: &Read, matches: &[Match]) -> Result<EntryStream, JournalError> {
        let mut args = self.base_args();
        args.extend(["--output=json".to_owned(), "--all".to_owned()]);
        match &read.start {
            Start::Head => {
                if read.follow {
                    // --follow alone shows only the last 10
                    args.push("--no-tail".to_owned());
                }
            }
            Start::Tail(n) => args.push(format!("--lines={}", (*n).min(MAX_LINES))),
            Start::At(c) => args.push(format!("--cursor={c}")),
            Start::After(c) => args.push(format!("--after-cursor={c}")),
        }
        if read.reverse {
            args.push("--reverse".to_owned());
        }
        if read.follow {
            args.push("--follow".to_owned());
        }
        args.extend(matches.iter().map(ToString::to_string));
        let (mut child, joined) = self.spawn(args)?;
        let program = self.program.display().to_string();
        let stdout = child.stdout.take().ok_or_else(|| JournalError::Read {
            program: program.clone(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        let stderr = child.stderr.take().map(|e| {
            tokio::spawn(async move {
                let mut s = String::new();
                let _ = e.take(STDERR_KEEP).read_to_string(&mut s).await;
                s
            })
        });
        Ok(EntryStream {
            program,
            args: joined,
            child,
            lines: BufReader::new(stdout).lines(),
            stderr,
        })
    }

    /// The unique values of `field` (`journalctl --field`), sorted.
    pub async fn unique_values(&self, field: &str) -> Result<Vec<String>, JournalError> {
        let mut args = self.base_args();
        args.push(format!("--field={field}"));
        let (child, joined) = self.spawn(args)?;
        let program = self.program.display().to_string();
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| JournalError::Read {
                program: program.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(JournalError::Failed {
                program,
                args: joined,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let mut values: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// A running journalctl, one entry at a time; dropping it kills the child.
#[derive(Debug)]
pub struct EntryStream {
    program: String,
    args: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
}

impl EntryStream {
    /// The next entry; `None` at the end (never, with `follow`, until the child dies).
    pub async fn next(&mut self) -> Result<Option<Entry>, JournalError> {
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .map_err(|source| JournalError::Read {
                    program: self.program.clone(),
                    source,
                })?;
            let Some(line) = line else {
                return self.finish().await.map(|()| None);
            };
            if line.trim().is_empty() {
                continue;
            }
            return Entry::from_json_line(&line).map(Some).map_err(|reason| {
                JournalError::BadEntry {
                    program: self.program.clone(),
                    reason,
                    line,
                }
            });
        }
    }

    async fn finish(&mut self) -> Result<(), JournalError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| JournalError::Read {
                program: self.program.clone(),
                source,
            })?;
        if status.success() {
            return Ok(());
        }
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        Err(JournalError::Failed {
            program: self.program.clone(),
            args: self.args.clone(),
            status: status.to_string(),
            stderr: stderr.trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_journalctl_json() {
        let e = Entry::from_json_line(
            r#"{"__CURSOR":"s=a;i=1","__REALTIME_TIMESTAMP":"1700000000000000","__MONOTONIC_TIMESTAMP":"5","__SEQNUM":"1","MESSAGE":"hi","BIN":[104,105,255],"TWICE":["a","b"],"BIG":null,"_PID":"7"}"#,
        )
        .unwrap();
        assert_eq!(e.cursor, "s=a;i=1");
        assert_eq!(e.realtime_timestamp, 1_700_000_000_000_000);
        assert_eq!(e.monotonic_timestamp, 5);
        assert_eq!(e.field("MESSAGE"), "hi");
        assert_eq!(e.field("BIN"), "hi\u{fffd}");
        assert_eq!(e.field("TWICE"), "b");
        assert!(!e.fields.contains_key("BIG"));
        assert!(!e.fields.contains_key("__SEQNUM"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["fields"]["_PID"], "7");
        assert_eq!(v["realtime_timestamp"], 1_700_000_000_000_000u64);
        assert!(Entry::from_json_line("[]").is_err());
        assert!(Entry::from_json_line("{}").is_err());
        assert!(Entry::from_json_line("nope").is_err());
    }
}
