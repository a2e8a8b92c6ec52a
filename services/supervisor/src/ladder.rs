//! The config-source ladder: where a node finds its bundle, in this order.
//!
//! 1. **Kernel command line** `basalt.config=<url>` with `http://`, `https://` or
//!    `file:///path`. When present it is the only source (an operator or PXE config named
//!    it): HTTP is retried every 2 s until [`LadderOptions::fetch_timeout`] (the network may
//!    still be coming up); failing that, the supervisor fails instead of falling back.
//! 2. **Config volume** labelled `BASALT_CONFIG` (any file system `mount(8)` knows: ext4,
//!    iso9660, …), or `BASALT_CFG` for vfat, whose labels hold at most 11 characters:
//!    `bundle.tar` at its root (or `basalt/bundle.tar`).
//! 3. **Cloud metadata**:
//!    - NoCloud: a volume labelled `cidata`/`CIDATA`;
//!    - config drive: a volume labelled `config-2`/`CONFIG-2`;
//!
//!    each holding either `basalt/bundle.tar`, or user data (NoCloud `user-data`, config
//!    drive `openstack/latest/user_data`) whose first non-empty line is exactly
//!    `#basalt-bundle` followed by the bundle in base64 (standard alphabet; line breaks and
//!    spaces ignored). A cloud volume without either is not a Basalt source (it may carry
//!    cloud-init data for something else) and the ladder goes on.
//! 4. **Local file** `/etc/basalt/bundle` (the bundle tar itself).
//!
//! Volumes are found through `/dev/disk/by-label`; the ladder waits up to
//! [`LadderOptions::device_wait`] for one to appear (udev may still be probing disks), then
//! mounts it read-only (no exec/suid/dev) in the supervisor's runtime folder, reads the
//! bundle and unmounts it. Nothing read here is trusted: the caller verifies the bytes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::Env;
use crate::error::{Result, SupervisorError};

/// Kernel command line key.
pub const CMDLINE_KEY: &str = "basalt.config";
/// Label of the Basalt config volume.
pub const CONFIG_LABEL: &str = "BASALT_CONFIG";
/// The same for vfat (labels of at most 11 characters).
pub const CONFIG_LABEL_VFAT: &str = "BASALT_CFG";
/// NoCloud labels.
pub const NOCLOUD_LABELS: [&str; 2] = ["cidata", "CIDATA"];
/// Config-drive labels.
pub const CONFIG_DRIVE_LABELS: [&str; 2] = ["config-2", "CONFIG-2"];
/// First line of user data that carries a bundle.
pub const USER_DATA_MARKER: &str = "#basalt-bundle";

/// Timeouts of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderOptions {
    /// How long to wait for a labelled volume before trying the local file.
    pub device_wait: Duration,
    /// How long to retry an `http(s)://` source.
    pub fetch_timeout: Duration,
}

impl Default for LadderOptions {
    fn default() -> Self {
        LadderOptions {
            device_wait: Duration::from_secs(5),
            fetch_timeout: Duration::from_secs(120),
        }
    }
}

/// A bundle as found, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obtained {
    /// Human description of the source, e.g. `volume BASALT_CONFIG (/dev/vdb): bundle.tar`.
    pub source: String,
    pub bytes: Vec<u8>,
}

/// The `basalt.config=` value on a kernel command line, if any (the last one wins, as for
/// kernel parameters).
pub fn cmdline_url(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(CMDLINE_KEY)?.strip_prefix('='))
        .map(|v| v.trim_matches('"').to_string())
        .next_back()
}

/// The bundle carried in user data, if the user data is a Basalt one.
pub fn bundle_from_user_data(text: &[u8]) -> Option<std::result::Result<Vec<u8>, String>> {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    if lines.next()?.trim() != USER_DATA_MARKER {
        return None;
    }
    let b64: String = lines
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_bytes())
            .map_err(|e| format!("user data after {USER_DATA_MARKER}: invalid base64: {e}")),
    )
}

/// Walks the ladder; see the module docs.
pub async fn obtain_bundle(env: &Env, opts: &LadderOptions) -> Result<Obtained> {
    let mut tried: Vec<String> = Vec::new();

    // 1. kernel command line
    let cmdline_path = env.layout.cmdline();
    let cmdline = std::fs::read_to_string(&cmdline_path).unwrap_or_default();
    if let Some(url) = cmdline_url(&cmdline) {
        return from_url(env, &url, opts).await;
    }
    tried.push(format!("no {CMDLINE_KEY}= on the kernel command line"));

    // 2 + 3. volumes, waiting a little for udev
    let deadline = env.clock.now() + opts.device_wait;
    loop {
        if let Some(dev) = find_label(env, &[CONFIG_LABEL, CONFIG_LABEL_VFAT]) {
            let label = dev
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = format!("volume {label} ({})", dev.display());
            let found =
                read_volume(env, &dev, &name, &["bundle.tar", "basalt/bundle.tar"], None).await?;
            return found.ok_or_else(|| SupervisorError::Source {
                source_name: name,
                reason: "holds neither bundle.tar nor basalt/bundle.tar".into(),
            });
        }
        let mut cloud_seen = false;
        for (kind, labels, user_data) in [
            ("NoCloud", &NOCLOUD_LABELS, "user-data"),
            (
                "config drive",
                &CONFIG_DRIVE_LABELS,
                "openstack/latest/user_data",
            ),
        ] {
            if let Some(dev) = find_label(env, labels) {
                cloud_seen = true;
                let name = format!("{kind} volume ({})", dev.display());
                if let Some(found) =
                    read_volume(env, &dev, &name, &["basalt/bundle.tar"], Some(user_data)).await?
                {
                    return Ok(found);
                }
                tried.push(format!(
                    "{name}: no basalt/bundle.tar and no Basalt user data"
                ));
            }
        }
        if cloud_seen || env.clock.now() >= deadline {
            break;
        }
        env.clock.sleep(Duration::from_millis(250)).await;
    }
    tried.push(format!(
        "no volume labelled {CONFIG_LABEL}, {} or {} within {} s",
        NOCLOUD_LABELS.join("/"),
        CONFIG_DRIVE_LABELS.join("/"),
        opts.device_wait.as_secs()
    ));

    // 4. local file
    let local = env.layout.etc_bundle();
    match std::fs::read(&local) {
        Ok(bytes) => {
            return Ok(Obtained {
                source: format!("local file {}", crate::layout::ETC_BUNDLE),
                bytes,
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tried.push(format!("no {}", crate::layout::ETC_BUNDLE));
        }
        Err(e) => return Err(SupervisorError::io(local)(e)),
    }
    Err(SupervisorError::NoBundle {
        tried: tried.join("; "),
    })
}

fn find_label(env: &Env, labels: &[&str]) -> Option<PathBuf> {
    labels
        .iter()
        .map(|l| env.layout.by_label(l))
        .find(|p| p.exists())
}

async fn from_url(env: &Env, url: &str, opts: &LadderOptions) -> Result<Obtained> {
    let source = format!("{CMDLINE_KEY}={url}");
    if let Some(path) = url.strip_prefix("file://") {
        let p = env.layout.path(path);
        let bytes = std::fs::read(&p).map_err(|e| SupervisorError::Source {
            source_name: source.clone(),
            reason: format!("{}: {e}", p.display()),
        })?;
        return Ok(Obtained { source, bytes });
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(SupervisorError::Source {
            source_name: source,
            reason: "only http://, https:// and file:// URLs are supported".into(),
        });
    }
    let deadline = env.clock.now() + opts.fetch_timeout;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match env.fetcher.fetch(url).await {
            Ok(bytes) => return Ok(Obtained { source, bytes }),
            Err(reason) => {
                if env.clock.now() >= deadline {
                    return Err(SupervisorError::Source {
                        source_name: source,
                        reason: format!("{reason} (gave up after {attempt} attempts)"),
                    });
                }
                tracing::warn!(url, attempt, %reason, "fetching the bundle failed; retrying");
                env.clock.sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// Mounts `dev`, reads the first of `files` present (or the user data), unmounts.
async fn read_volume(
    env: &Env,
    dev: &Path,
    name: &str,
    files: &[&str],
    user_data: Option<&str>,
) -> Result<Option<Obtained>> {
    let mnt = env.layout.runtime_dir().join("config-volume");
    std::fs::create_dir_all(&mnt).map_err(SupervisorError::io(&mnt))?;
    env.mounter.mount_ro(dev, &mnt).await?;
    let found = read_mounted(&mnt, name, files, user_data);
    if let Err(e) = env.mounter.unmount(&mnt).await {
        tracing::warn!(error = %e, "unmounting the config volume failed");
    }
    found
}

fn read_mounted(
    mnt: &Path,
    name: &str,
    files: &[&str],
    user_data: Option<&str>,
) -> Result<Option<Obtained>> {
    for f in files {
        let p = mnt.join(f);
        match std::fs::read(&p) {
            Ok(bytes) => {
                return Ok(Some(Obtained {
                    source: format!("{name}: {f}"),
                    bytes,
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SupervisorError::io(p)(e)),
        }
    }
    if let Some(ud) = user_data {
        let p = mnt.join(ud);
        match std::fs::read(&p) {
            Ok(text) => match bundle_from_user_data(&text) {
                Some(Ok(bytes)) => {
                    return Ok(Some(Obtained {
                        source: format!("{name}: {ud}"),
                        bytes,
                    }));
                }
                Some(Err(reason)) => {
                    return Err(SupervisorError::Source {
                        source_name: format!("{name}: {ud}"),
                        reason,
                    });
                }
                None => {}
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SupervisorError::io(p)(e)),
        }
    }
    Ok(None)
}
