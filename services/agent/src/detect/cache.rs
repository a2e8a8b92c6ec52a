//! The resource cache: the first detection is written to
//! `<work_dir>/detected-resources.json` and advertised on every later start, so a restart
//! (or a disk filling up, or a GPU falling off the bus) never changes what the master
//! knows about this agent — Mesos refuses to recover an agent whose resources changed
//! ("Incompatible agent info"), which in DC/OS cost every task on the node.
//!
//! A later detection that differs does not replace the cache: the cached values are
//! still advertised and the difference is reported as a [`DetectionDrift`].
//!
//! **Deliberate change (drain and reset)** — this is what `basaltd agent reset-resources`
//! will run (CLI wiring comes with the agent binary):
//!
//! 1. drain the agent (Mesos maintenance / `DRAIN_AGENT`) and wait until no task runs;
//! 2. stop the agent;
//! 3. [`ResourceCache::reset`] (or [`reset_cache`]): the cache is moved aside to
//!    `detected-resources.json.previous`, kept for comparison;
//! 4. start the agent: it detects afresh, writes a new cache and registers with a new
//!    agent id (the agent's own checkpoint of its id is removed by the agent's reset, as
//!    DC/OS removed `meta/slaves/latest`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::resources::DriftItem;
use super::{DetectError, DetectedResources};

/// File name of the cache inside the work dir.
pub const CACHE_FILE: &str = "detected-resources.json";
/// Suffix the reset gives the old cache.
pub const PREVIOUS_SUFFIX: &str = ".previous";
/// Version of the cache file layout.
pub const CACHE_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    resources: DetectedResources,
}

/// Where the cached detection lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCache {
    path: PathBuf,
}

impl ResourceCache {
    /// `<work_dir>/detected-resources.json`.
    pub fn in_work_dir(work_dir: impl AsRef<Path>) -> Self {
        ResourceCache {
            path: work_dir.as_ref().join(CACHE_FILE),
        }
    }

    /// A cache at an explicit path.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        ResourceCache { path: path.into() }
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached detection; `None` when there is none. A file that exists but cannot be
    /// read or parsed is an error — never treated as absent.
    pub fn load(&self) -> Result<Option<DetectedResources>, DetectError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(DetectError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let bad = |reason: String| DetectError::Cache {
            path: self.path.clone(),
            reason: format!("{reason}; drain the agent and reset it to detect afresh"),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(f) if f == u64::from(CACHE_FORMAT) => {}
            Some(f) => {
                return Err(bad(format!(
                    "format {f} is not the supported {CACHE_FORMAT}"
                )));
            }
            None => return Err(bad("no `format` number; not a resource cache".into())),
        }
        let file: CacheFile = serde_json::from_value(value)
            .map_err(|e| bad(format!("not a resource cache ({e})")))?;
        Ok(Some(file.resources))
    }

    /// Writes the cache atomically (temp file, fsync, rename, fsync of the directory).
    pub fn store(&self, resources: &DetectedResources) -> Result<(), DetectError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DetectError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(werr(dir))?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&CacheFile {
            format: CACHE_FORMAT,
            resources: resources.clone(),
        })
        .map_err(|e| DetectError::Cache {
            path: self.path.clone(),
            reason: format!("cannot serialize: {e}"),
        })?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(werr(&tmp))?;
            f.write_all(&body).map_err(werr(&tmp))?;
            f.write_all(b"\n").map_err(werr(&tmp))?;
            f.sync_all().map_err(werr(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(werr(&self.path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(werr(dir))?;
        Ok(())
    }

    /// The drain-and-reset step: moves the cache aside to `<file>.previous` (replacing an
    /// older one) so the next start detects afresh. Returns where the old cache went, or
    /// `None` when there was no cache. Only call this on a drained, stopped agent.
    pub fn reset(&self) -> Result<Option<PathBuf>, DetectError> {
        let mut prev = self.path.clone().into_os_string();
        prev.push(PREVIOUS_SUFFIX);
        let prev = PathBuf::from(prev);
        match std::fs::rename(&self.path, &prev) {
            Ok(()) => {
                tracing::warn!(cache = %self.path.display(), previous = %prev.display(), "resource cache reset; the next start detects afresh");
                Ok(Some(prev))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DetectError::Write {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// [`ResourceCache::reset`] for the cache in `work_dir`; backs `basaltd agent reset-resources`
/// (run only after draining the agent).
pub fn reset_cache(work_dir: impl AsRef<Path>) -> Result<Option<PathBuf>, DetectError> {
    ResourceCache::in_work_dir(work_dir).reset()
}

/// A new detection that differs from the cached one. The cached values stay advertised.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionDrift {
    /// Each difference.
    pub changes: Vec<DriftItem>,
    /// The full new detection (what a reset would advertise).
    pub detected: DetectedResources,
}

impl std::fmt::Display for DetectionDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} change(s) since the cached detection: ",
            self.changes.len()
        )?;
        for (i, c) in self.changes.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {} -> {}", c.what, c.cached, c.detected)?;
        }
        f.write_str(". Still advertising the cached values; to advertise the new ones drain the agent and run `basaltd agent reset-resources`")
    }
}

/// Where the advertised values came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The cache (a restart).
    Cache,
    /// This detection (first start, or after a reset); the cache now holds it.
    Detected,
}

/// What to advertise, from [`Detector::detect_cached`](super::Detector::detect_cached).
#[derive(Debug)]
pub struct Advertised {
    /// The values to advertise.
    pub resources: DetectedResources,
    /// Whether they came from the cache.
    pub origin: Origin,
    /// Set when a new detection differs from the cache.
    pub drift: Option<DetectionDrift>,
    /// Set when a cache exists but detecting afresh failed (e.g. the disk filled up past
    /// the reserve): the cached values are advertised and this says why nothing could be
    /// compared.
    pub redetect_error: Option<DetectError>,
}
