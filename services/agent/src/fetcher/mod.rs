//! The fetcher: downloads a task's `CommandInfo.uris` into its sandbox before the task
//! starts, with Mesos' `URI` semantics.
//!
//! ```text
//! let f = Fetcher::new(FetcherConfig::new(work_dir.join("fetch")))?;
//! f.fetch(&command.uris, &sandbox, owner).await?;   // then launch the task
//! ```
//!
//! For each URI, in order:
//!
//! * **Source**: `http://` and `https://` (GET, any `2xx`; redirects followed), `file://`
//!   URLs and absolute paths (copied). Other schemes (`hdfs`, `s3`, `ftp`, ...) and
//!   relative paths are refused.
//! * **Name**: `output_file` when given (a relative path inside the sandbox, without
//!   `..`), else the last path segment of the URI (query and fragment dropped).
//! * **Checksum** (`checksum`, a Basalt extension: `<sha256 hex>` or `sha256:<hex>`): the
//!   content's SHA-256 must match, else the fetch fails naming the URI, both digests,
//!   and nothing is left in the sandbox or the cache.
//! * **Cache** (`cache: true`): the content is kept under the cache directory, keyed by
//!   SHA-256 of the URI and the checksum; a later fetch of the same key copies it
//!   from there without touching the source. Concurrent fetches of one key download it
//!   once. No size limit or eviction yet.
//! * **`executable: true`**: the file is made `0755` and never extracted.
//! * **`extract`** (default true, as Mesos): `.tar`, `.tar.gz`, `.tgz` and `.zip` are
//!   unpacked into the sandbox (entries that would land outside it are refused); the
//!   archive itself stays. Anything else is kept as is.
//! * **Owner**: everything fetched or extracted is `chown`ed to the task's user.
//!
//! Any failure is a [`FetchError`] whose text names the URI; the daemon turns it into
//! TASK_FAILED (`REASON_CONTAINER_LAUNCH_FAILED`, SOURCE_AGENT), as a Mesos agent does
//! when its fetcher fails.
//!
//! Proxies: the HTTP client ignores `HTTP_PROXY`/`HTTPS_PROXY` (artifacts are served
//! inside the cluster).

mod extract;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_mesos::CommandUri;
use futures::StreamExt;
use sha2::{Digest, Sha256};

pub use extract::{ArchiveKind, archive_kind};

/// Why a URI could not be fetched. Every variant's text names the URI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URI entry is unusable as given.
    #[error("URI '{uri}': {reason}")]
    Invalid {
        /// The URI.
        uri: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The download failed (connection, HTTP status, read).
    #[error("fetching '{uri}': {reason}")]
    Download {
        /// The URI.
        uri: String,
        /// Why.
        reason: String,
    },
    /// The content does not have the expected SHA-256.
    #[error(
        "fetching '{uri}': checksum mismatch: expected sha256 {expected}, the content has sha256 {actual}"
    )]
    Checksum {
        /// The URI.
        uri: String,
        /// The expected digest (hex).
        expected: String,
        /// The content's digest (hex).
        actual: String,
    },
    /// Writing, copying, extracting or chowning a file failed.
    #[error("fetching '{uri}': {what} {path}: {source}")]
    Io {
        /// The URI.
        uri: String,
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The archive could not be unpacked.
    #[error("fetching '{uri}': extracting {path}: {reason}")]
    Extract {
        /// The URI.
        uri: String,
        /// The archive.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("fetcher HTTP client: {0}")]
    Client(String),
}

/// Fetcher settings (Mesos `--fetcher_cache_dir`, `--fetcher_stall_timeout`).
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// Where cached downloads live.
    pub cache_dir: PathBuf,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// Longest a whole download may take.
    pub timeout: Duration,
}

impl FetcherConfig {
    /// Defaults: 10 s to connect, 10 min per download.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(600),
        }
    }
}

/// Who owns what is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

/// One fetched URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The URI.
    pub uri: String,
    /// Where it was saved.
    pub path: PathBuf,
    /// Whether it came from the cache.
    pub cache_hit: bool,
    /// The archive kind it was extracted as, if it was.
    pub extracted: Option<ArchiveKind>,
    /// SHA-256 of the content (hex).
    pub sha256: String,
}

/// Downloads task URIs into sandboxes. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Fetcher {
    cfg: FetcherConfig,
    client: reqwest::Client,
    /// One lock per cache key, so one key is downloaded once at a time.
    cache_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The expected digest of a `checksum` field (lower-case hex).
pub fn parse_checksum(uri: &str, checksum: &str) -> Result<String, FetchError> {
    let hex = checksum
        .trim()
        .strip_prefix("sha256:")
        .unwrap_or(checksum.trim());
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::Invalid {
            uri: uri.to_owned(),
            reason: format!(
                "field 'checksum' {checksum:?} is not a SHA-256 digest (64 hex digits, optionally prefixed with 'sha256:')"
            ),
        });
    }
    Ok(hex.to_ascii_lowercase())
}

/// Where a URI comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Http(String),
    File(PathBuf),
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn source(uri: &str) -> Result<Source, FetchError> {
    let invalid = |reason: String| FetchError::Invalid {
        uri: uri.to_owned(),
        reason,
    };
    let lower = uri.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Source::Http(uri.to_owned()));
    }
    if let Some(rest) = uri.strip_prefix("file://") {
        // file:///path, or file://localhost/path.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(invalid(
                "a file:// URI must name an absolute path on the agent".into(),
            ));
        }
        return Ok(Source::File(PathBuf::from(percent_decode(path))));
    }
    if uri.starts_with('/') {
        return Ok(Source::File(PathBuf::from(uri)));
    }
    match uri.split_once("://") {
        Some((scheme, _)) => Err(invalid(format!(
            "scheme '{scheme}' is not supported (http, https, file or an absolute path)"
        ))),
        None if uri.trim().is_empty() => Err(invalid("field 'value' is empty".into())),
        None => Err(invalid(
            "a relative path is not supported (http, https, file or an absolute path)".into(),
        )),
    }
}

/// The file name a URI is saved as without `output_file`: its last path segment.
fn basename(uri: &str, src: &Source) -> Option<String> {
    let name = match src {
        Source::File(p) => p.file_name()?.to_string_lossy().into_owned(),
        Source::Http(_) => {
            let after_scheme = uri.split_once("://").map_or(uri, |(_, r)| r);
            let path = after_scheme
                .split(['?', '#'])
                .next()
                .unwrap_or(after_scheme);
            let (_, path) = path.split_once('/')?;
            percent_decode(path.rsplit('/').next()?)
        }
    };
    (!name.is_empty() && name != "." && name != ".." && !name.contains('/')).then_some(name)
}

/// Checks `output_file`: relative, inside the sandbox.
fn output_path(uri: &str, out: &str) -> Result<PathBuf, FetchError> {
    let p = Path::new(out);
    let ok = !out.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && p.file_name().is_some();
    if !ok {
        return Err(FetchError::Invalid {
            uri: uri.to_owned(),
            reason: format!(
                "field 'output_file' {out:?} must be a relative path inside the sandbox (no '..', not absolute)"
            ),
        });
    }
    Ok(p.to_path_buf())
}

/// The cache file name of a URI and checksum.
pub fn cache_key(uri: &str, checksum: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(uri.as_bytes());
    h.update([0u8]);
    h.update(checksum.unwrap_or("").as_bytes());
    hex::encode(h.finalize())
}

fn io_err(uri: &str, what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let uri = uri.to_owned();
    let path = path.to_path_buf();
    move |source| FetchError::Io {
        uri,
        what,
        path,
        source,
    }
}

/// A temporary name next to `dest`.
fn temp_next_to(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.fetching.{}", uuid::Uuid::new_v4()))
}

impl Fetcher {
    /// A fetcher with its HTTP client (rustls).
    pub fn new(cfg: FetcherConfig) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Self {
            cfg,
            client,
            cache_locks: Mutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn config(&self) -> &FetcherConfig {
        &self.cfg
    }

    /// Fetches every URI into `sandbox` (created if missing), in order; stops at the
    /// first failure.
    pub async fn fetch(
        &self,
        uris: &[CommandUri],
        sandbox: &Path,
        owner: Option<Owner>,
    ) -> Result<Vec<Fetched>, FetchError> {
        let mut out = Vec::with_capacity(uris.len());
        for u in uris {
            let f = self.fetch_one(u, sandbox, owner).await?;
            tracing::info!(uri = %f.uri, path = %f.path.display(), cache_hit = f.cache_hit,
                extracted = ?f.extracted, "fetched");
            out.push(f);
        }
        Ok(out)
    }

    async fn fetch_one(
        &self,
        u: &CommandUri,
        sandbox: &Path,
        owner: Option<Owner>,
    ) -> Result<Fetched, FetchError> {
        let uri = u.value.trim().to_owned();
        let src = source(&uri)?;
        let expected = u
            .checksum
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .map(|c| parse_checksum(&uri, c))
            .transpose()?;
        let rel = match u.output_file.as_deref().filter(|o| !o.is_empty()) {
            Some(o) => output_path(&uri, o)?,
            None => PathBuf::from(basename(&uri, &src).ok_or_else(|| FetchError::Invalid {
                uri: uri.clone(),
                reason: "the URI has no file name; set 'output_file'".into(),
            })?),
        };
        let dest = sandbox.join(&rel);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_err(
                &uri,
                "creating directory",
                dir,
            ))?;
        }
        let (sha256, cache_hit) = if u.cache.unwrap_or(false) {
            self.via_cache(&uri, &src, expected.as_deref(), &dest)
                .await?
        } else {
            let sha = self.download(&uri, &src, &dest).await?;
            if let Some(exp) = &expected
                && *exp != sha
            {
                let _ = tokio::fs::remove_file(&dest).await;
                return Err(FetchError::Checksum {
                    uri,
                    expected: exp.clone(),
                    actual: sha,
                });
            }
            (sha, false)
        };
        let executable = u.executable.unwrap_or(false);
        let kind = if executable || !u.extract.unwrap_or(true) {
            None
        } else {
            archive_kind(&dest)
        };
        let post = {
            let uri = uri.clone();
            let dest = dest.clone();
            let sandbox = sandbox.to_path_buf();
            tokio::task::spawn_blocking(move || -> Result<(), FetchError> {
                if executable {
                    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
                        .map_err(io_err(&uri, "chmod", &dest))?;
                }
                let mut created = vec![dest.clone()];
                if let Some(k) = kind {
                    created.extend(extract::extract(&uri, k, &dest, &sandbox)?);
                }
                if let Some(o) = owner {
                    for p in &created {
                        chown_tree(&uri, p, o)?;
                    }
                    // Directories `output_file` made.
                    let mut d = dest.parent();
                    while let Some(dir) = d
                        && dir != sandbox
                        && dir.starts_with(&sandbox)
                    {
                        std::os::unix::fs::lchown(dir, Some(o.uid), Some(o.gid))
                            .map_err(io_err(&uri, "chown", dir))?;
                        d = dir.parent();
                    }
                }
                Ok(())
            })
        };
        post.await.map_err(|e| FetchError::Download {
            uri: uri.clone(),
            reason: format!("the fetch thread failed: {e}"),
        })??;
        Ok(Fetched {
            uri,
            path: dest,
            cache_hit,
            extracted: kind,
            sha256,
        })
    }

    /// Fetches through the cache; returns the digest and whether it was a hit.
    async fn via_cache(
        &self,
        uri: &str,
        src: &Source,
        expected: Option<&str>,
        dest: &Path,
    ) -> Result<(String, bool), FetchError> {
        let key = cache_key(uri, expected);
        let lock = {
            let mut m = self
                .cache_locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            m.entry(key.clone()).or_default().clone()
        };
        let _held = lock.lock().await;
        let dir = &self.cfg.cache_dir;
        tokio::fs::create_dir_all(dir).await.map_err(io_err(
            uri,
            "creating the cache directory",
            dir,
        ))?;
        let cached = dir.join(&key);
        let hit = tokio::fs::try_exists(&cached).await.unwrap_or(false);
        if !hit {
            let tmp = temp_next_to(&cached);
            let sha = match self.download(uri, src, &tmp).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
            };
            if let Some(exp) = expected
                && exp != sha
            {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(FetchError::Checksum {
                    uri: uri.to_owned(),
                    expected: exp.to_owned(),
                    actual: sha,
                });
            }
            tokio::fs::rename(&tmp, &cached).await.map_err(io_err(
                uri,
                "renaming into the cache",
                &cached,
            ))?;
        }
        let sha = {
            let (u, cached, dest) = (uri.to_owned(), cached.clone(), dest.to_path_buf());
            tokio::task::spawn_blocking(move || copy_hashing(&u, &cached, &dest))
                .await
                .map_err(|e| FetchError::Download {
                    uri: uri.to_owned(),
                    reason: format!("the copy thread failed: {e}"),
                })??
        };
        if hit
            && let Some(exp) = expected
            && exp != sha
        {
            // A corrupted cache entry: drop it, so the next fetch downloads again.
            let _ = tokio::fs::remove_file(&cached).await;
            let _ = tokio::fs::remove_file(dest).await;
            return Err(FetchError::Checksum {
                uri: uri.to_owned(),
                expected: exp.to_owned(),
                actual: sha,
            });
        }
        Ok((sha, hit))
    }

    /// Downloads or copies the source to `dest`; returns the content's SHA-256.
    async fn download(&self, uri: &str, src: &Source, dest: &Path) -> Result<String, FetchError> {
        match src {
            Source::File(p) => {
                let (u, p, dest) = (uri.to_owned(), p.clone(), dest.to_path_buf());
                tokio::task::spawn_blocking(move || copy_hashing(&u, &p, &dest))
                    .await
                    .map_err(|e| FetchError::Download {
                        uri: uri.to_owned(),
                        reason: format!("the copy thread failed: {e}"),
                    })?
            }
            Source::Http(url) => {
                let derr = |reason: String| FetchError::Download {
                    uri: uri.to_owned(),
                    reason,
                };
                let resp = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| derr(error_chain(&e)))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(derr(format!("the server answered HTTP {status}")));
                }
                let mut file =
                    std::fs::File::create(dest).map_err(io_err(uri, "creating", dest))?;
                let mut h = Sha256::new();
                let mut body = resp.bytes_stream();
                while let Some(chunk) = body.next().await {
                    let chunk = match chunk {
                        Ok(c) => c,
                        Err(e) => {
                            drop(file);
                            let _ = std::fs::remove_file(dest);
                            return Err(derr(format!("reading the body: {}", error_chain(&e))));
                        }
                    };
                    h.update(&chunk);
                    if let Err(e) = file.write_all(&chunk) {
                        drop(file);
                        let _ = std::fs::remove_file(dest);
                        return Err(io_err(uri, "writing", dest)(e));
                    }
                }
                file.sync_all().map_err(io_err(uri, "syncing", dest))?;
                Ok(hex::encode(h.finalize()))
            }
        }
    }
}

/// An error with its sources (reqwest hides the cause, e.g. "Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Copies `from` to `dest`, hashing the bytes.
fn copy_hashing(uri: &str, from: &Path, dest: &Path) -> Result<String, FetchError> {
    let mut input = std::fs::File::open(from).map_err(io_err(uri, "opening", from))?;
    if input.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(FetchError::Invalid {
            uri: uri.to_owned(),
            reason: format!("{} is a directory", from.display()),
        });
    }
    let out = std::fs::File::create(dest).map_err(io_err(uri, "creating", dest))?;
    let mut w = HashingWriter {
        inner: out,
        hash: Sha256::new(),
    };
    std::io::copy(&mut input, &mut w).map_err(io_err(uri, "copying to", dest))?;
    Ok(hex::encode(w.hash.finalize()))
}

struct HashingWriter {
    inner: std::fs::File,
    hash: Sha256,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `chown -R` without following symlinks.
fn chown_tree(uri: &str, p: &Path, o: Owner) -> Result<(), FetchError> {
    std::os::unix::fs::lchown(p, Some(o.uid), Some(o.gid)).map_err(io_err(uri, "chown", p))?;
    let md = std::fs::symlink_metadata(p).map_err(io_err(uri, "stat", p))?;
    if md.is_dir() {
        for e in std::fs::read_dir(p).map_err(io_err(uri, "listing", p))? {
            let e = e.map_err(io_err(uri, "listing", p))?;
            chown_tree(uri, &e.path(), o)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_names() {
        let s = source("http://h:1/a/b/app.tgz?x=1#f").unwrap();
        assert_eq!(
            basename("http://h:1/a/b/app.tgz?x=1#f", &s).as_deref(),
            Some("app.tgz")
        );
        assert_eq!(basename("http://h:1/", &s), None);
        assert_eq!(basename("http://h:1", &s), None);
        assert_eq!(
            source("file:///tmp/a%20b.txt").unwrap(),
            Source::File("/tmp/a b.txt".into())
        );
        assert_eq!(
            source("file://localhost/x").unwrap(),
            Source::File("/x".into())
        );
        assert_eq!(source("/opt/x").unwrap(), Source::File("/opt/x".into()));
        let e = source("hdfs://nn/x").unwrap_err().to_string();
        assert!(
            e.contains("'hdfs://nn/x'") && e.contains("scheme 'hdfs'"),
            "{e}"
        );
        let e = source("relative/x").unwrap_err().to_string();
        assert!(e.contains("relative"), "{e}");
        let e = source("file://host/x").unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn output_files_and_checksums() {
        assert_eq!(output_path("u", "a/b.txt").unwrap(), Path::new("a/b.txt"));
        for bad in ["/etc/passwd", "../x", "a/../../x", "."] {
            let e = output_path("u", bad).unwrap_err().to_string();
            assert!(e.contains("output_file"), "{bad}: {e}");
        }
        let d = "A".repeat(64);
        assert_eq!(parse_checksum("u", &d).unwrap(), "a".repeat(64));
        assert_eq!(
            parse_checksum("u", &format!("sha256:{d}")).unwrap(),
            "a".repeat(64)
        );
        let e = parse_checksum("u", "md5:abc").unwrap_err().to_string();
        assert!(e.contains("'checksum'") && e.contains("'u'"), "{e}");
        assert_ne!(cache_key("u", None), cache_key("u", Some(&d)));
        assert_eq!(cache_key("u", None), cache_key("u", None));
    }
}
