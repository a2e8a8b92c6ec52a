//! The cached base rootfs: `mmdebstrap` writes a tarball under the cache directory, named by
//! [`crate::recipe::base_key`]; an unchanged recipe reuses it. Downloaded .debs are kept in
//! `<cache>/debs` so even a changed package list downloads only what is new.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{ImageError, Result};
use crate::options::BuildOptions;
use crate::recipe;
use crate::runner::{Cmd, CommandRunner, p};

/// An exclusive advisory lock on a file, released on drop.
pub struct DirLock {
    _lock: Flock<File>,
}

/// Takes an exclusive lock on `path` (created if missing); blocks until it is free.
pub fn lock_file(path: &Path) -> Result<DirLock> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
    }
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(ImageError::io(path))?;
    let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::Lock {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(DirLock { _lock: lock })
}

/// Where a base with `key` lives in `cache_dir`.
pub fn base_tarball_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("base-{}.tar", &key[..key.len().min(24)]))
}

/// The outcome of [`ensure_base`].
#[derive(Debug, Clone)]
pub struct Base {
    pub key: String,
    pub tarball: PathBuf,
    /// Whether the tarball came from the cache.
    pub cache_hit: bool,
    pub seconds: f64,
}

/// Returns the base tarball for `opts`, running mmdebstrap when the cache has none.
/// Concurrent builds of the same cache serialize on `<cache>/.lock`.
pub fn ensure_base(opts: &BuildOptions, runner: &dyn CommandRunner) -> Result<Base> {
    let started = Instant::now();
    let key = recipe::base_key(opts);
    let cache = &opts.cache_dir;
    fs::create_dir_all(cache).map_err(ImageError::io(cache))?;
    let _lock = lock_file(&cache.join(".lock"))?;
    let tarball = base_tarball_path(cache, &key);
    if tarball.is_file() {
        tracing::info!(tarball = %tarball.display(), "base rootfs: cache hit");
        return Ok(Base {
            key,
            tarball,
            cache_hit: true,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if !runner.has_program("mmdebstrap") {
        return Err(ImageError::MissingTool("mmdebstrap".into()));
    }
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).map_err(ImageError::io(&debs))?;
    let hooks = cache.join(format!("hooks-{}", &key[..16]));
    write_hooks(&hooks)?;
    let partial = cache.join(format!(".partial-{}.tar", &key[..16]));
    let _ = fs::remove_file(&partial);
    tracing::info!(key = %key, "base rootfs: running mmdebstrap (cache miss)");
    let result = runner.run(&recipe::mmdebstrap_cmd(opts, &hooks, &debs, &partial));
    let _ = fs::remove_dir_all(&hooks);
    result?;
    fs::rename(&partial, &tarball).map_err(ImageError::io(&tarball))?;
    Ok(Base {
        key,
        tarball,
        cache_hit: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Writes dracut.conf and the dracut module into `dir` for mmdebstrap's hooks.
pub fn write_hooks(dir: &Path) -> Result<()> {
    let module = dir.join("modules.d").join(recipe::DRACUT_MODULE_DIR);
    fs::create_dir_all(&module).map_err(ImageError::io(&module))?;
    write(&dir.join("50-basalt.conf"), recipe::DRACUT_CONF)?;
    write(&module.join("module-setup.sh"), recipe::DRACUT_MODULE_SETUP)?;
    set_mode(&module.join("module-setup.sh"), 0o755)?;
    write(
        &module.join("basalt-etc-overlay.service"),
        recipe::DRACUT_ETC_UNIT,
    )?;
    Ok(())
}

/// Unpacks the base tarball into an empty `dest` (ownership, modes and xattrs kept).
pub fn extract(tarball: &Path, dest: &Path, runner: &dyn CommandRunner) -> Result<()> {
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(ImageError::io(dest))?;
    }
    fs::create_dir_all(dest).map_err(ImageError::io(dest))?;
    runner.run(&extract_cmd(tarball, dest))?;
    Ok(())
}

pub fn extract_cmd(tarball: &Path, dest: &Path) -> Cmd {
    Cmd::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "-xpf",
        ])
        .arg(p(tarball))
        .arg("-C")
        .arg(p(dest))
}

pub(crate) fn write(path: &Path, content: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(ImageError::io(parent))?;
    }
    fs::write(path, content).map_err(ImageError::io(path))
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(ImageError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Role;
    use crate::runner::RecordingRunner;

    #[test]
    fn cache_miss_runs_mmdebstrap_then_hit_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = BuildOptions::new(Role::Agent, dir.path().join("out"));
        opts.cache_dir = dir.path().join("cache");
        // the fake mmdebstrap "writes" its target tarball (argument after the suite)
        let runner = RecordingRunner::with_effect(|cmd| {
            let a = cmd.arg_strings();
            let suite = a.iter().position(|s| s == "bookworm").unwrap();
            std::fs::write(&a[suite + 1], b"tar").unwrap();
            Ok(Vec::new())
        });
        let first = ensure_base(&opts, &runner).unwrap();
        assert!(!first.cache_hit);
        assert!(first.tarball.is_file());
        assert_eq!(runner.recorded().len(), 1);
        // hooks were written for the run and cleaned up afterwards
        assert!(!std::fs::read_dir(&opts.cache_dir).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("hooks-")
        }));
        let second = ensure_base(&opts, &runner).unwrap();
        assert!(second.cache_hit);
        assert_eq!(second.tarball, first.tarball);
        assert_eq!(
            runner.recorded().len(),
            1,
            "cache hit must not run mmdebstrap"
        );
        // a different package list is a different base
        opts.extra_packages.push("htop".into());
        let third = ensure_base(&opts, &runner).unwrap();
        assert!(!third.cache_hit);
        assert_ne!(third.tarball, first.tarball);
    }

    #[test]
    fn failed_mmdebstrap_leaves_no_tarball() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = BuildOptions::new(Role::Agent, dir.path().join("out"));
        opts.cache_dir = dir.path().join("cache");
        let runner = RecordingRunner::with_effect(|cmd| {
            Err(ImageError::Command {
                command: cmd.to_string(),
                status: "exit status: 1".into(),
                stderr_tail: "E: no network".into(),
            })
        });
        let err = ensure_base(&opts, &runner).unwrap_err();
        assert!(err.to_string().contains("no network"), "{err}");
        let key = recipe::base_key(&opts);
        assert!(!base_tarball_path(&opts.cache_dir, &key).exists());
    }

    #[test]
    fn hooks_contain_dracut_files() {
        let dir = tempfile::tempdir().unwrap();
        write_hooks(dir.path()).unwrap();
        let m = dir.path().join("modules.d/90basalt-etc");
        assert!(dir.path().join("50-basalt.conf").is_file());
        assert!(m.join("module-setup.sh").is_file());
        assert!(m.join("basalt-etc-overlay.service").is_file());
    }

    #[test]
    fn extract_command_keeps_ownership_and_xattrs() {
        let c = extract_cmd(Path::new("/c/b.tar"), Path::new("/w/root"));
        let a = c.arg_strings();
        assert!(a.contains(&"--numeric-owner".to_string()));
        assert!(a.contains(&"--xattrs".to_string()));
        assert!(a.contains(&"-xpf".to_string()));
        assert_eq!(a.last().unwrap(), "/w/root");
    }
}
