//! The repository's example `genconf/` (config.toml + ip-detect scripts), for tests of
//! other crates that need a real rendered bundle. Behind the `example` feature: it reads
//! files from this crate's source folder, which only exists in a checkout.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::bundle::Role;
use crate::generate::{Generated, generate};

/// The example's files, relative to `genconf/`.
pub const EXAMPLE_FILES: [&str; 4] = [
    "config.toml",
    "ip-detect",
    "ip-detect.examples/fixed-interface",
    "ip-detect.examples/cloud-metadata",
];

/// Copies the example (config and scripts, never secrets) into `dst`, creating it.
pub fn copy_example(dst: &Path) -> io::Result<()> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in EXAMPLE_FILES {
        let to = dst.join(f);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(src.join(f), &to)?;
    }
    Ok(())
}

/// Copies the example to `<dir>/genconf`, generates `<dir>/serve` and unpacks the
/// `role` bundle into `<dir>/node`; returns that node root and what was generated.
pub fn example_node_root(dir: &Path, role: Role) -> io::Result<(PathBuf, Generated)> {
    let genconf = dir.join("genconf");
    copy_example(&genconf)?;
    let out = dir.join("serve");
    let generated = generate(&genconf, &out).map_err(io::Error::other)?;
    let bundle = generated
        .index
        .bundles
        .iter()
        .find(|b| b.role == role)
        .ok_or_else(|| io::Error::other(format!("no {role} bundle in the index")))?;
    let root = dir.join("node");
    tar::Archive::new(fs::File::open(out.join(&bundle.path))?).unpack(&root)?;
    Ok((root, generated))
}
