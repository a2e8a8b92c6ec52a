//! The same tree gives the same root image and the same verity root hash, whatever order the
//! files were created in and whatever their timestamps; one changed byte changes the hash.
//! Runs the real mkfs.erofs / mksquashfs and veritysetup (skips with a reason without them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

use basalt_nodeimg::rootimg::{make_root_image, sha256_file};
use basalt_nodeimg::runner::find_in_path;
use basalt_nodeimg::{RealRunner, RootFsKind};

const FILES: &[(&str, &str)] = &[
    ("usr/bin/basaltd", "#!/bin/sh\necho basalt\n"),
    (
        "usr/lib/systemd/system/basalt.target",
        "[Unit]\nDescription=x\n",
    ),
    ("etc/hostname", "basalt\n"),
    ("etc/os-release", "ID=debian\n"),
    ("var/lib/state/README", "state\n"),
];

/// Writes FILES in `order`, stamping each with a different mtime.
fn make_tree(root: &Path, order: &[usize], mtime_base: u64) {
    for (n, &i) in order.iter().enumerate() {
        let (rel, content) = FILES[i];
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        let f = fs::File::open(&p).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_base + n as u64))
            .unwrap();
    }
    // a big, compressible file so the image has real extents
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("usr/lib/big.bin"), big).unwrap();
    symlink("../lib/big.bin", root.join("usr/bin/big")).unwrap();
}

fn skip(kind: RootFsKind) -> Option<String> {
    let mkfs = match kind {
        RootFsKind::Erofs => "mkfs.erofs",
        RootFsKind::Squashfs => "mksquashfs",
    };
    let missing: Vec<&str> = [mkfs, "veritysetup"]
        .into_iter()
        .filter(|t| find_in_path(t).is_none())
        .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

fn check(kind: RootFsKind) {
    if let Some(why) = skip(kind) {
        println!("SKIPPED reproducibility for {kind:?}: {why} (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (t1, t2, t3) = (
        dir.path().join("t1"),
        dir.path().join("t2"),
        dir.path().join("t3"),
    );
    make_tree(&t1, &[0, 1, 2, 3, 4], 1_000);
    make_tree(&t2, &[4, 3, 2, 1, 0], 2_000_000);
    make_tree(&t3, &[0, 1, 2, 3, 4], 1_000);
    fs::write(t3.join("etc/hostname"), "basalu\n").unwrap();

    let build = |tree: &Path, name: &str| {
        make_root_image(
            tree,
            &dir.path().join(name),
            kind,
            1_700_000_000,
            "agent",
            &RealRunner,
        )
        .unwrap()
    };
    let a = build(&t1, "o1");
    let a_again = build(&t1, "o1-again");
    let b = build(&t2, "o2");
    let c = build(&t3, "o3");
    assert_eq!(a.root_hash, a_again.root_hash, "same tree twice");
    assert_eq!(
        sha256_file(&a.image).unwrap(),
        sha256_file(&a_again.image).unwrap()
    );
    assert_eq!(
        sha256_file(&a.verity).unwrap(),
        sha256_file(&a_again.verity).unwrap()
    );
    assert_eq!(
        a.root_hash, b.root_hash,
        "creation order and timestamps must not matter"
    );
    assert_ne!(
        a.root_hash, c.root_hash,
        "one changed byte must change the hash"
    );
    println!("{kind:?}: root hash {} (reproduced 3 times)", a.root_hash);
}

#[test]
fn erofs_root_image_is_reproducible() {
    check(RootFsKind::Erofs);
}

#[test]
fn squashfs_root_image_is_reproducible() {
    check(RootFsKind::Squashfs);
}
