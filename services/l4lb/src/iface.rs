//! VIP addresses on the node: the dummy interface [`VIP_INTERFACE`].
//!
//! On nodes every VIP address is put on a dummy interface `basalt-vip` so the kernel
//! accepts traffic for it (and IPVS, or the userspace proxy with
//! [`crate::datapath::BindPolicy::Vip`], can serve it). The controller hands the full
//! address set to a [`VipInterface`] after each state. The rtnetlink implementation is
//! not written yet (this crate carries no netlink dependency); [`FakeInterface`] records
//! the set, for tests and for hosts that bind VIPs on loopback instead.

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
