//! Real journal files for tests (feature `testing`): entries are written in systemd's
//! journal export format and imported with `systemd-journal-remote --output=…`, so
//! journalctl reads files systemd itself wrote. Appending while a `--follow` reader
//! runs works (the file is extended in place and journalctl is woken by inotify).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where `systemd-journal-remote` may be.
const REMOTE: [&str; 2] = [
    "/usr/lib/systemd/systemd-journal-remote",
    "/lib/systemd/systemd-journal-remote",
];

/// The boot id of every test entry.
pub const BOOT_ID: &str = "0123456789abcdef0123456789abcdef";

/// One entry to write.
#[derive(Debug, Clone)]
pub struct TestEntry {
    /// `_SYSTEMD_UNIT` (and `SYSLOG_IDENTIFIER` without `.service`).
    pub unit: String,
    /// `MESSAGE`.
    pub message: String,
    /// More fields.
    pub extra: Vec<(String, String)>,
}

impl TestEntry {
    /// An entry of `unit` saying `message`.
    pub fn new(unit: &str, message: &str) -> TestEntry {
        TestEntry {
            unit: unit.to_owned(),
            message: message.to_owned(),
            extra: Vec::new(),
        }
    }
}

/// A journal directory holding one journal file.
#[derive(Debug)]
pub struct TestJournal {
    dir: tempfile::TempDir,
    remote: PathBuf,
    journalctl: PathBuf,
    /// µs since the epoch of the next entry (one second apart).
    next_realtime: u64,
    written: u64,
}

fn find_journalctl() -> Option<PathBuf> {
    ["/usr/bin/journalctl", "/bin/journalctl"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl TestJournal {
    /// An empty journal directory; `Err`: why it cannot be made here (a tool is
    /// missing: install `systemd` and `systemd-journal-remote`, as scripts/setup.sh does).
    pub fn new() -> Result<TestJournal, String> {
        let remote = REMOTE
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or(
                "systemd-journal-remote is not installed (Debian package systemd-journal-remote)",
            )?;
        let journalctl =
            find_journalctl().ok_or("journalctl is not installed (Debian package systemd)")?;
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        Ok(TestJournal {
            dir,
            remote,
            journalctl,
            next_realtime: 1_700_000_000_000_000,
            written: 0,
        })
    }

    /// The directory (`journalctl --directory`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The journalctl found.
    pub fn journalctl(&self) -> &Path {
        &self.journalctl
    }

    /// A log service configuration reading this journal, on a free loopback port.
    pub fn config(&self) -> crate::LogsConfig {
        crate::LogsConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            journalctl: self.journalctl.clone(),
            directory: Some(self.dir().to_owned()),
        }
    }

    /// Entries written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// No entries yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Appends entries (host `node1`, PID 100 + n, one second apart).
    pub fn append(&mut self, entries: &[TestEntry]) -> Result<(), String> {
        let mut export = Vec::new();
        for e in entries {
            let t = self.next_realtime;
            self.next_realtime += 1_000_000;
            self.written += 1;
            let ident = e.unit.strip_suffix(".service").unwrap_or(&e.unit);
            let mut fields = vec![
                ("__REALTIME_TIMESTAMP".to_owned(), t.to_string()),
                ("__MONOTONIC_TIMESTAMP".to_owned(), (t / 1000).to_string()),
                ("_BOOT_ID".to_owned(), BOOT_ID.to_owned()),
                ("_HOSTNAME".to_owned(), "node1".to_owned()),
                ("_SYSTEMD_UNIT".to_owned(), e.unit.clone()),
                ("SYSLOG_IDENTIFIER".to_owned(), ident.to_owned()),
                ("_PID".to_owned(), (100 + self.written).to_string()),
                ("PRIORITY".to_owned(), "6".to_owned()),
                ("MESSAGE".to_owned(), e.message.clone()),
            ];
            fields.extend(e.extra.iter().cloned());
            for (k, v) in fields {
                if v.contains('\n') {
                    // binary-safe form: name, newline, little-endian u64 length, data
                    export.extend_from_slice(k.as_bytes());
                    export.push(b'\n');
                    export.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    export.extend_from_slice(v.as_bytes());
                    export.push(b'\n');
                } else {
                    export.extend_from_slice(format!("{k}={v}\n").as_bytes());
                }
            }
            export.push(b'\n');
        }
        let out = self.dir.path().join("remote.journal");
        let mut child = Command::new(&self.remote)
            .arg(format!("--output={}", out.display()))
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.remote.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&export)
                .map_err(|e| format!("writing to systemd-journal-remote: {e}"))?;
        }
        let o = child
            .wait_with_output()
            .map_err(|e| format!("waiting for systemd-journal-remote: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "systemd-journal-remote failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Ok(())
    }
}
