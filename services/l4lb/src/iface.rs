//! VIP addresses on the node: the dummy interface [`VIP_INTERFACE`].
//!
//! On nodes every VIP address is put on a dummy interface `basalt-vip` so the kernel
//! accepts traffic for it (and IPVS, or the userspace proxy with
//! [`crate::datapath::BindPolicy::Vip`], can serve it). The controller hands the full
//! address set to a [`VipInterface`] after each state. [`IpCommandInterface`] keeps the
//! real `basalt-vip` dummy interface with iproute2 (`ip link add basalt-vip type dummy`,
//! `ip addr add|del <vip>/32 dev basalt-vip`; needs `CAP_NET_ADMIN`), which is what IPVS
//! needs; [`FakeInterface`] records the set, for tests and for hosts that bind VIPs on
//! loopback instead.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Mutex;

/// The dummy interface carrying the VIP addresses on nodes.
pub const VIP_INTERFACE: &str = "basalt-vip";

/// Interface management failures.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// An address could not be added or removed.
    #[error("interface {interface}: address {addr}: {message}")]
    Address {
        /// The interface.
        interface: String,
        /// The address.
        addr: IpAddr,
        /// What failed.
        message: String,
    },
}

/// Keeps the VIP addresses configured on the node.
#[async_trait::async_trait]
pub trait VipInterface: Send + Sync + 'static {
    /// Makes the interface's addresses exactly `addrs` (adding and removing).
    async fn sync(&self, addrs: &BTreeSet<IpAddr>) -> Result<(), InterfaceError>;
}

/// The `basalt-vip` dummy interface managed with the `ip` command (module docs).
#[derive(Debug, Clone)]
pub struct IpCommandInterface {
    name: String,
    ip: std::path::PathBuf,
}

impl Default for IpCommandInterface {
    fn default() -> Self {
        IpCommandInterface::new(VIP_INTERFACE)
    }
}

impl IpCommandInterface {
    /// Manages the dummy interface `name` with the `ip` found on `PATH`.
    pub fn new(name: &str) -> IpCommandInterface {
        IpCommandInterface {
            name: name.to_string(),
            ip: "ip".into(),
        }
    }

    async fn ip(&self, args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new(&self.ip)
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ip {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn err(&self, addr: IpAddr, message: String) -> InterfaceError {
        InterfaceError::Address {
            interface: self.name.clone(),
            addr,
            message,
        }
    }

    /// Creates the dummy interface (if missing) and sets it up.
    pub async fn ensure(&self) -> Result<(), InterfaceError> {
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        if self.ip(&["link", "show", "dev", &self.name]).await.is_err() {
            self.ip(&["link", "add", &self.name, "type", "dummy"])
                .await
                .map_err(|m| self.err(unspecified, m))?;
        }
        self.ip(&["link", "set", &self.name, "up"])
            .await
            .map_err(|m| self.err(unspecified, m))?;
        Ok(())
    }

    /// The addresses on the interface now.
    pub async fn addresses(&self) -> Result<BTreeSet<IpAddr>, InterfaceError> {
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let text = self
            .ip(&["-o", "addr", "show", "dev", &self.name])
            .await
            .map_err(|m| self.err(unspecified, m))?;
        Ok(parse_ip_addr_show(&text))
    }
}

/// The addresses of `ip -o addr show` output (`… inet 11.1.2.3/32 …`), without IPv6
/// link-local ones (`fe80::/10`): the kernel gives every link one, it is never a VIP, and
/// removing it as `/128` fails on every sync.
pub fn parse_ip_addr_show(text: &str) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if (w == "inet" || w == "inet6")
                && let Some(a) = words.next()
                && let Ok(ip) = a.split('/').next().unwrap_or(a).parse::<IpAddr>()
                && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
            {
                out.insert(ip);
            }
        }
    }
    out
}

#[async_trait::async_trait]
impl VipInterface for IpCommandInterface {
    async fn sync(&self, addrs: &BTreeSet<IpAddr>) -> Result<(), InterfaceError> {
        self.ensure().await?;
        let cur = self.addresses().await?;
        let mut first_err = None;
        for a in addrs.difference(&cur) {
            let cidr = format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 });
            match self.ip(&["addr", "add", &cidr, "dev", &self.name]).await {
                Ok(_) => tracing::info!(interface = %self.name, addr = %a, "VIP address added"),
                Err(m) => {
                    first_err.get_or_insert(self.err(*a, m));
                }
            }
        }
        for a in cur.difference(addrs) {
            let cidr = format!("{a}/{}", if a.is_ipv4() { 32 } else { 128 });
            match self.ip(&["addr", "del", &cidr, "dev", &self.name]).await {
                Ok(_) => tracing::info!(interface = %self.name, addr = %a, "VIP address removed"),
                Err(m) => {
                    first_err.get_or_insert(self.err(*a, m));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// An in-memory interface: remembers the last address set.
#[derive(Debug, Default)]
pub struct FakeInterface {
    addrs: Mutex<BTreeSet<IpAddr>>,
}

impl FakeInterface {
    /// The addresses currently "configured".
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.addrs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait::async_trait]
impl VipInterface for FakeInterface {
    async fn sync(&self, addrs: &BTreeSet<IpAddr>) -> Result<(), InterfaceError> {
        let mut cur = self
            .addrs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for a in addrs.difference(&cur) {
            tracing::debug!(interface = VIP_INTERFACE, addr = %a, "VIP address added");
        }
        for a in cur.difference(addrs) {
            tracing::debug!(interface = VIP_INTERFACE, addr = %a, "VIP address removed");
        }
        *cur = addrs.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_addr_show() {
        let text = "5: basalt-vip    inet 11.1.2.3/32 scope global basalt-vip\\       valid_lft forever preferred_lft forever\n\
                    5: basalt-vip    inet6 fd01:c::5/128 scope global \\       valid_lft forever\n\
                    5: basalt-vip    inet6 fe80::450:8fff:fea3:9e1a/64 scope link \\       valid_lft forever\n\
                    garbage line inet notanip/32\n";
        let got = parse_ip_addr_show(text);
        assert_eq!(
            got,
            BTreeSet::from([
                "11.1.2.3".parse::<IpAddr>().unwrap(),
                "fd01:c::5".parse().unwrap()
            ])
        );
        assert!(parse_ip_addr_show("").is_empty());
    }
}
