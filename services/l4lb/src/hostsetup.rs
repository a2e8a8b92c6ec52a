//! What the kernel needs, besides the IPVS services, so that a client *on the node itself*
//! reaches a VIP whose backend runs on another node (dcos-net's pre-start did the same).
//!
//! A local client connecting to a VIP on `basalt-vip` gets the VIP as its source address
//! (the local route's preferred source). IPVS rewrites only the destination, so the
//! backend would answer the VIP, an address that exists on every node: the reply never
//! comes back. Two settings fix it:
//!
//! - `net.ipv4.vs.conntrack = 1` (`/proc/sys/net/ipv4/vs/conntrack`, present once
//!   `ip_vs` is loaded): IPVS keeps the netfilter connection entries of the connections
//!   it forwards, so NAT can apply to them;
//! - an nftables table `ip basalt_l4lb` with one postrouting NAT rule: packets leaving a
//!   non-loopback interface with a source in the VIP range are masqueraded to the
//!   interface's address (backends on the node itself are reached over `lo` and keep
//!   the VIP source).
//!
//! The table is replaced as a whole in one `nft -f -` transaction (delete + create), so
//! applying it again is harmless and never leaves a half-written rule set. nftables'
//! command-line tool is used rather than raw nf_tables netlink: it is in the node image
//! (Debian `nftables`) and one atomic ruleset file is all that is needed here.
//!
//! Limits: only named VIPs (the `vip_range`) are covered; an IP VIP outside the range
//! reached from its own node with a remote backend gets no answer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

/// The sysctl that keeps conntrack entries for IPVS connections.
pub const CONNTRACK_SYSCTL: &str = "/proc/sys/net/ipv4/vs/conntrack";
/// The nftables table this module owns.
pub const NFT_TABLE: &str = "basalt_l4lb";

/// Host-setup failures; each names the file or the command.
#[derive(Debug, thiserror::Error)]
pub enum HostSetupError {
    /// A sysctl could not be written.
    #[error("writing {value} to {}: {source}", path.display())]
    Sysctl {
        /// The `/proc/sys` file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` could not be started.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the rule set.
    #[error("`{program} -f -` failed ({status}): {stderr}")]
    Nft {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// The nftables rule set (one atomic transaction) that masquerades VIP-sourced packets
/// leaving the node.
pub fn masquerade_ruleset(vip_range: Ipv4Net) -> String {
    format!(
        "# basalt-l4lb: VIP traffic from local clients to remote IPVS backends\n\
         table ip {NFT_TABLE}\n\
         delete table ip {NFT_TABLE}\n\
         table ip {NFT_TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {vip_range} oifname != \"lo\" masquerade\n\
         \t}}\n\
         }}\n"
    )
}

/// Writes `value` to the `/proc/sys` file `path`.
pub fn write_sysctl(path: &Path, value: &str) -> Result<(), HostSetupError> {
    std::fs::write(path, value).map_err(|source| HostSetupError::Sysctl {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

/// Feeds `ruleset` to `nft -f -`.
pub fn apply_nft(program: &str, ruleset: &str) -> Result<(), HostSetupError> {
    let spawn = |source| HostSetupError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = Command::new(program)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // a program that exits early closes the pipe: its exit status says why
        match stdin.write_all(ruleset.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(spawn(e)),
            _ => {}
        }
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(HostSetupError::Nft {
            program: program.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Sets up the node for local clients of IPVS VIPs (module docs): conntrack for IPVS,
/// then the masquerade table. Call after IPVS is loaded (after [`crate::Ipvs::new`]).
pub fn prepare_local_clients(vip_range: Ipv4Net) -> Result<(), HostSetupError> {
    write_sysctl(Path::new(CONNTRACK_SYSCTL), "1")?;
    apply_nft("nft", &masquerade_ruleset(vip_range))?;
    tracing::info!(
        sysctl = CONNTRACK_SYSCTL,
        table = NFT_TABLE,
        %vip_range,
        "IPVS local clients: conntrack on, VIP sources masqueraded"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_replaces_the_table_and_masquerades_the_range() {
        let r = masquerade_ruleset("11.0.0.0/8".parse().unwrap());
        let lines: Vec<&str> = r.lines().map(str::trim).collect();
        // create-if-absent, delete, create: one transaction that works the first time too
        let create = lines
            .iter()
            .position(|l| *l == "table ip basalt_l4lb")
            .unwrap();
        let delete = lines
            .iter()
            .position(|l| *l == "delete table ip basalt_l4lb")
            .unwrap();
        assert!(create < delete);
        assert!(lines.contains(&"type nat hook postrouting priority srcnat; policy accept;"));
        assert!(lines.contains(&"ip saddr 11.0.0.0/8 oifname != \"lo\" masquerade"));
        assert_eq!(r.matches('{').count(), r.matches('}').count());
    }

    #[test]
    fn failures_name_the_file_and_the_command() {
        let dir = std::env::temp_dir().join("basalt-l4lb-no-such-dir");
        let e = write_sysctl(&dir.join("conntrack"), "1").unwrap_err();
        assert!(
            e.to_string().contains("basalt-l4lb-no-such-dir/conntrack"),
            "{e}"
        );
        let e = apply_nft("/nonexistent/nft", "").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/nft"), "{e}");
        // a program that reads the rule set and fails: its stderr is in the error
        let e = apply_nft("false", "table ip x").unwrap_err();
        assert!(matches!(e, HostSetupError::Nft { .. }), "{e}");
    }
}
