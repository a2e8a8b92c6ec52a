//! Garbage collection of finished sandboxes (Mesos `--gc_delay`, default one week): when
//! a task ends, its sandbox and meta run directory are deleted `gc_delay` later; a task
//! group's executor sandbox when its last task has ended. Timers live in the daemon: a
//! restarted daemon does not collect what its predecessor scheduled.

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use super::Inner;

/// Deletes `paths` after the configured delay (unless the daemon stopped meanwhile).
pub(super) fn schedule(inner: &Arc<Inner>, paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let delay = inner.cfg.gc_delay;
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        for p in paths {
            match tokio::fs::remove_dir_all(&p).await {
                Ok(()) => tracing::info!(path = %p.display(), "garbage-collected"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %p.display(), error = %e, "garbage collection"),
            }
        }
    });
}
