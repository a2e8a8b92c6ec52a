//! `/proc/self/mountinfo` (proc(5)): one line per mount,
//! `id parent major:minor root mount_point options [optional...] - fstype source super_options`.

use std::path::{Path, PathBuf};

use super::{DetectError, SystemRoot};

/// The logical path of the mount table detection reads.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device major number (0 for virtual file systems and btrfs subvolumes).
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// The directory of the file system that is mounted (`/` or a bind-mount subdir).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// File system type (`ext4`, `cgroup2`, ...).
    pub fs_type: String,
    /// Source (`/dev/sda1`, `tmpfs`, ...).
    pub source: String,
    /// Per-superblock options (for `cgroup` mounts they list the controllers).
    pub super_options: Vec<String>,
}

/// Reads and parses the mount table under `root`, in file order (later mounts on the same
/// point hide earlier ones).
pub fn read_mounts(root: &SystemRoot) -> Result<Vec<Mount>, DetectError> {
    let text = root.read_to_string(MOUNTINFO)?;
    parse(&text, &root.path(MOUNTINFO))
}

/// Parses mountinfo text; `path` is only used in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Mount>, DetectError> {
    let mut mounts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: &str| DetectError::parse(path, i + 1, reason.to_owned());
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields
            .iter()
            .position(|f| *f == "-")
            .ok_or_else(|| err("no ` - ` separator"))?;
        if sep < 6 || fields.len() < sep + 4 {
            return Err(err("too few fields"));
        }
        let (major, minor) = fields[2]
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| err(&format!("bad major:minor {:?}", fields[2])))?;
        mounts.push(Mount {
            major,
            minor,
            root: PathBuf::from(unescape(fields[3])),
            mount_point: PathBuf::from(unescape(fields[4])),
            fs_type: fields[sep + 1].to_owned(),
            source: unescape(fields[sep + 2]),
            super_options: fields[sep + 3].split(',').map(str::to_owned).collect(),
        });
    }
    Ok(mounts)
}

/// The mount holding `path`: the last mount whose mount point is the longest
/// component-wise prefix of `path`.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for m in mounts {
        if path.starts_with(&m.mount_point)
            && best.is_none_or(|b| {
                m.mount_point.components().count() >= b.mount_point.components().count()
            })
        {
            best = Some(m);
        }
    }
    best
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) && oct[0] <= b'3' {
                out.push(oct.iter().fold(0u8, |acc, b| acc * 8 + (b - b'0')));
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines copied from a real Debian 12 host (cgroup v2) and this CI host (v1/hybrid).
    const REAL: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
30 1 259:2 / /var/lib/mesos rw,relatime shared:1 master:2 - xfs /dev/nvme0n1p2 rw,attr2
31 1 8:17 / /dcos/volume\\0400 rw shared:7 - ext4 /dev/sdb1 rw
";

    #[test]
    fn parses_real_lines_with_optional_fields_and_escapes() {
        let m = parse(REAL, Path::new("mi")).unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!((m[1].major, m[1].minor), (254, 0));
        assert_eq!(m[1].mount_point, PathBuf::from("/"));
        assert_eq!(m[2].super_options, vec!["rw", "cpu"]);
        assert_eq!(m[4].fs_type, "xfs");
        assert_eq!(m[4].source, "/dev/nvme0n1p2");
        assert_eq!(m[5].mount_point, PathBuf::from("/dcos/volume 0"));
    }

    #[test]
    fn mount_of_picks_longest_prefix_by_component() {
        let m = parse(REAL, Path::new("mi")).unwrap();
        let w = mount_of(&m, Path::new("/var/lib/mesos/slave")).unwrap();
        assert_eq!(w.mount_point, PathBuf::from("/var/lib/mesos"));
        let w = mount_of(&m, Path::new("/var/lib/mesosx")).unwrap();
        assert_eq!(w.mount_point, PathBuf::from("/"));
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let err = parse("22 27 0:21 / /proc rw\n", Path::new("/fx/mi")).unwrap_err();
        assert_eq!(err.to_string(), "parsing /fx/mi line 1: no ` - ` separator");
        let err = parse(
            &format!("{REAL}1 2 x:y / / rw - ext4 /dev/a rw\n"),
            Path::new("/fx/mi"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("line 7: bad major:minor \"x:y\""),
            "{err}"
        );
    }
}
