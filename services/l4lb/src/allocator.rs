//! Named-VIP address allocation, persisted in etcd.
//!
//! | key (under the store root)  | value              |
//! |-----------------------------|--------------------|
//! | `l4lb/vips/<vip key>`       | `{"ip": "11.x.y.z"}` |
//! | `l4lb/ips/<ip>`             | `{"vip": "<vip key>"}` |
//!
//! `<vip key>` is `basalt_dns::vip_key(name, framework)` (`myapp.marathon`). Both keys
//! are created in **one** etcd transaction, each with create-if-absent, so two
//! allocators racing can never give one name two addresses (the `vips` compare fails
//! for the loser, who then reads the winner's address) nor one address two names (the
//! `ips` compare fails, the loser probes on).
//!
//! The first choice is deterministic, like dcos-net: `first + sha1(key) mod size`, then
//! linear probing (+1, wrapping) past taken addresses, so a restart or a second node
//! computes the same address and allocations do not shuffle. In a range of more than
//! two addresses the network and broadcast addresses are never handed out.

use basalt_store::{Key, Prefix, Store, StoreError};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Allocation failures; each names the VIP.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// Every address of the range is taken.
    #[error("VIP {vip}: no free address left in {range}")]
    Exhausted {
        /// The VIP key.
        vip: String,
        /// The range.
        range: Ipv4Net,
    },
    /// A key could not be formed from the VIP key.
    #[error("VIP {vip}: {source}")]
    Key {
        /// The VIP key.
        vip: String,
        /// The store's complaint.
        #[source]
        source: StoreError,
    },
    /// etcd failed.
    #[error("VIP {vip}: store: {source}")]
    Store {
        /// The VIP key (empty for listings).
        vip: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// The stored address of a VIP lies outside the configured range.
    #[error("VIP {vip}: stored address {ip} is outside {range}")]
    OutOfRange {
        /// The VIP key.
        vip: String,
        /// The stored address.
        ip: Ipv4Addr,
        /// The range.
        range: Ipv4Net,
    },
}

/// `l4lb/vips/<key>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipRecord {
    /// The address.
    pub ip: Ipv4Addr,
}

/// `l4lb/ips/<ip>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRecord {
    /// The VIP key holding the address.
    pub vip: String,
}

/// Allocates named-VIP addresses from a range (module docs). Cheap to clone.
#[derive(Debug, Clone)]
pub struct VipAllocator {
    store: Store,
    range: Ipv4Net,
    first: u32,
    size: u32,
}

fn vip_store_key(vip: &str) -> Result<Key, AllocError> {
    Key::from_segments(["l4lb", "vips", vip]).map_err(|source| AllocError::Key {
        vip: vip.to_string(),
        source,
    })
}

fn ip_store_key(vip: &str, ip: Ipv4Addr) -> Result<Key, AllocError> {
    Key::from_segments(["l4lb".to_string(), "ips".to_string(), ip.to_string()]).map_err(|source| {
        AllocError::Key {
            vip: vip.to_string(),
            source,
        }
    })
}

impl VipAllocator {
    /// An allocator handing out addresses of `range` (DC/OS default `11.0.0.0/8`).
    pub fn new(store: Store, range: Ipv4Net) -> VipAllocator {
        let range = range.trunc();
        let net = u32::from(range.network());
        let total: u64 = 1u64 << (32 - u32::from(range.prefix_len()));
        let (first, size) = if total > 2 {
            (net + 1, (total - 2) as u32)
        } else {
            (net, total as u32)
        };
        VipAllocator {
            store,
            range,
            first,
            size,
        }
    }

    /// The range.
    pub fn range(&self) -> Ipv4Net {
        self.range
    }

    /// The deterministic first choice of `vip` (before probing).
    pub fn first_choice(&self, vip: &str) -> Ipv4Addr {
        let digest = Sha1::digest(vip.as_bytes());
        let h = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Ipv4Addr::from(self.first + h % self.size)
    }

    fn store_err(vip: &str) -> impl FnOnce(StoreError) -> AllocError + '_ {
        move |source| AllocError::Store {
            vip: vip.to_string(),
            source,
        }
    }

    /// The address of `vip`, allocating one if it has none.
    pub async fn allocate(&self, vip: &str) -> Result<Ipv4Addr, AllocError> {
        let vkey = vip_store_key(vip)?;
        if let Some(rec) = self
            .store
            .get::<VipRecord>(&vkey)
            .await
            .map_err(Self::store_err(vip))?
        {
            return self.checked(vip, rec.value.ip);
        }
        let start = u32::from(self.first_choice(vip)) - self.first;
        let vfull = self.store.full_key(&vkey);
        // Two passes: the second re-lists, seeing addresses released during the first.
        for _pass in 0..2 {
            let mut taken: BTreeSet<Ipv4Addr> = self.taken(vip).await?;
            for step in 0..self.size {
                let ip = Ipv4Addr::from(self.first + (start + step) % self.size);
                if taken.contains(&ip) {
                    continue;
                }
                let ikey = ip_store_key(vip, ip)?;
                let res = self
                    .store
                    .txn()
                    .put_if_version(&vkey, &VipRecord { ip }, 0)
                    .put_if_version(
                        &ikey,
                        &IpRecord {
                            vip: vip.to_string(),
                        },
                        0,
                    )
                    .commit()
                    .await;
                match res {
                    Ok(_) => {
                        tracing::info!(vip = %vip, ip = %ip, "VIP address allocated");
                        return Ok(ip);
                    }
                    Err(StoreError::Conflict { key, .. }) if key == vfull => {
                        // Another allocator won the name: use its address.
                        let rec = self
                            .store
                            .get::<VipRecord>(&vkey)
                            .await
                            .map_err(Self::store_err(vip))?;
                        if let Some(rec) = rec {
                            return self.checked(vip, rec.value.ip);
                        }
                        // Released in between: probe this address again.
                        taken.remove(&ip);
                    }
                    Err(StoreError::Conflict { .. }) => {
                        // The address went to another name meanwhile.
                        taken.insert(ip);
                    }
                    Err(source) => {
                        return Err(AllocError::Store {
                            vip: vip.to_string(),
                            source,
                        });
                    }
                }
            }
            // Every address was taken as of the listing; another allocator may have given
            // this very name one after our first read.
            if let Some(rec) = self
                .store
                .get::<VipRecord>(&vkey)
                .await
                .map_err(Self::store_err(vip))?
            {
                return self.checked(vip, rec.value.ip);
            }
        }
        Err(AllocError::Exhausted {
            vip: vip.to_string(),
            range: self.range,
        })
    }

    fn checked(&self, vip: &str, ip: Ipv4Addr) -> Result<Ipv4Addr, AllocError> {
        if self.range.contains(&ip) {
            Ok(ip)
        } else {
            Err(AllocError::OutOfRange {
                vip: vip.to_string(),
                ip,
                range: self.range,
            })
        }
    }

    async fn taken(&self, vip: &str) -> Result<BTreeSet<Ipv4Addr>, AllocError> {
        let prefix = Prefix::from_segments(["l4lb", "ips"]).map_err(Self::store_err(vip))?;
        let keys = self
            .store
            .list_keys(&prefix)
            .await
            .map_err(Self::store_err(vip))?;
        Ok(keys
            .iter()
            .filter_map(|k| k.name().parse::<Ipv4Addr>().ok())
            .collect())
    }

    /// Every allocation: VIP key → address.
    pub async fn list(&self) -> Result<BTreeMap<String, Ipv4Addr>, AllocError> {
        let prefix = Prefix::from_segments(["l4lb", "vips"]).map_err(Self::store_err(""))?;
        let listing = self
            .store
            .list::<VipRecord>(&prefix)
            .await
            .map_err(Self::store_err(""))?;
        Ok(listing
            .items
            .into_iter()
            .map(|(k, v)| (k.name(), v.value.ip))
            .collect())
    }

    /// Frees the address of `vip` (both keys, in one transaction guarded by the versions
    /// read, so a concurrent re-allocation is never torn). Returns whether it had one.
    pub async fn release(&self, vip: &str) -> Result<bool, AllocError> {
        let vkey = vip_store_key(vip)?;
        let Some(rec) = self
            .store
            .get::<VipRecord>(&vkey)
            .await
            .map_err(Self::store_err(vip))?
        else {
            return Ok(false);
        };
        let ikey = ip_store_key(vip, rec.value.ip)?;
        let owner = self
            .store
            .get::<IpRecord>(&ikey)
            .await
            .map_err(Self::store_err(vip))?;
        let mut txn = self.store.txn().delete_if_version(&vkey, rec.version);
        if let Some(o) = owner.filter(|o| o.value.vip == vip) {
            txn = txn.delete_if_version(&ikey, o.version);
        }
        match txn.commit().await {
            Ok(_) => {
                tracing::info!(vip = %vip, ip = %rec.value.ip, "VIP address released");
                Ok(true)
            }
            // Changed meanwhile (re-allocated or released by another node): leave it.
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(source) => Err(AllocError::Store {
                vip: vip.to_string(),
                source,
            }),
        }
    }
}
