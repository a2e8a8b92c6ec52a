//! The seam through which every OS side effect (mmdebstrap, mkfs, veritysetup, sfdisk,
//! qemu-img …) goes: unit tests swap in [`RecordingRunner`] and check the command lines.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::error::{ImageError, Result};

/// One command line, with optional stdin bytes and extra environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
    pub stdin: Option<Vec<u8>>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, it: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(it.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Cmd {
        self.env.push((k.to_string(), v.into()));
        self
    }

    pub fn env_remove(mut self, k: &str) -> Cmd {
        self.env_remove.push(k.to_string());
        self
    }

    pub fn stdin(mut self, bytes: Vec<u8>) -> Cmd {
        self.stdin = Some(bytes);
        self
    }

    /// The arguments as lossy strings (for assertions and logs).
    pub fn arg_strings(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program)?;
        for a in &self.args {
            let s = a.to_string_lossy();
            if s.contains(' ') || s.is_empty() {
                write!(f, " '{s}'")?;
            } else {
                write!(f, " {s}")?;
            }
        }
        Ok(())
    }
}

/// Runs commands. `run` returns stdout on success and a [`ImageError::Command`] naming the
/// command line and the tail of stderr otherwise.
pub trait CommandRunner: Send + Sync {
    fn run(&self, cmd: &Cmd) -> Result<Vec<u8>>;

    /// Whether `program` can be run (looked up in PATH).
    fn has_program(&self, program: &str) -> bool {
        find_in_path(program).is_some()
    }
}

/// Looks `program` up in `$PATH` (plus the sbin directories a non-login root shell may lack).
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        PathBuf::from("/usr/sbin"),
        PathBuf::from("/sbin"),
        PathBuf::from("/usr/bin"),
    ];
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The real thing: spawns the process, captures stdout, streams nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealRunner;

impl CommandRunner for RealRunner {
    fn run(&self, cmd: &Cmd) -> Result<Vec<u8>> {
        tracing::debug!(command = %cmd, "run");
        let program = find_in_path(&cmd.program).unwrap_or_else(|| PathBuf::from(&cmd.program));
        let mut c = Command::new(&program);
        c.args(&cmd.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        for k in &cmd.env_remove {
            c.env_remove(k);
        }
        for (k, v) in &cmd.env {
            c.env(k, v);
        }
        let mut child = c.spawn().map_err(|source| ImageError::Spawn {
            program: cmd.program.clone(),
            source,
        })?;
        if let (Some(bytes), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
            stdin
                .write_all(bytes)
                .map_err(ImageError::io(format!("stdin of {}", cmd.program)))?;
        }
        let out = child
            .wait_with_output()
            .map_err(ImageError::io(format!("waiting for {}", cmd.program)))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(ImageError::Command {
                command: cmd.to_string(),
                status: out.status.to_string(),
                stderr_tail: tail(&out.stderr, &out.stdout),
            })
        }
    }
}

fn tail(stderr: &[u8], stdout: &[u8]) -> String {
    let src = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    };
    let s = String::from_utf8_lossy(src);
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(15);
    lines[start..].join("\n")
}

/// Records every command and answers with a canned stdout; optionally calls a hook that
/// may fake the command's effect on the file system (create its output file).
#[derive(Default)]
pub struct RecordingRunner {
    pub commands: Mutex<Vec<Cmd>>,
    #[allow(clippy::type_complexity)]
    effect: Option<Box<dyn Fn(&Cmd) -> Result<Vec<u8>> + Send + Sync>>,
}

impl RecordingRunner {
    pub fn new() -> RecordingRunner {
        RecordingRunner::default()
    }

    /// A runner whose `run` also calls `f` (to fake outputs) and returns what it returns.
    pub fn with_effect(f: impl Fn(&Cmd) -> Result<Vec<u8>> + Send + Sync + 'static) -> Self {
        RecordingRunner {
            commands: Mutex::new(Vec::new()),
            effect: Some(Box::new(f)),
        }
    }

    /// The recorded commands so far.
    pub fn recorded(&self) -> Vec<Cmd> {
        match self.commands.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl CommandRunner for RecordingRunner {
    fn run(&self, cmd: &Cmd) -> Result<Vec<u8>> {
        match self.commands.lock() {
            Ok(mut g) => g.push(cmd.clone()),
            Err(p) => p.into_inner().push(cmd.clone()),
        }
        match &self.effect {
            Some(f) => f(cmd),
            None => Ok(Vec::new()),
        }
    }

    fn has_program(&self, _program: &str) -> bool {
        true
    }
}

/// `path` as an argument, for command builders.
pub(crate) fn p(path: &Path) -> OsString {
    path.as_os_str().to_os_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_spaces() {
        let c = Cmd::new("echo").arg("a b").arg("c").arg("");
        assert_eq!(c.to_string(), "echo 'a b' c ''");
    }

    #[test]
    fn real_runner_reports_failure_with_stderr() {
        let err = RealRunner
            .run(&Cmd::new("sh").args(["-c", "echo boom >&2; exit 3"]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains("sh -c"), "{msg}");
    }

    #[test]
    fn real_runner_passes_stdin_and_returns_stdout() {
        let out = RealRunner
            .run(&Cmd::new("cat").stdin(b"hello".to_vec()))
            .unwrap();
        assert_eq!(out, b"hello");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = RealRunner
            .run(&Cmd::new("basalt-no-such-program-xyz"))
            .unwrap_err();
        assert!(matches!(err, ImageError::Spawn { .. }), "{err}");
    }
}
