//! The allocator's internal records of agents, frameworks, roles and offer filters.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use basalt_mesos::{
    AgentId, CapabilityType, FrameworkId, FrameworkInfo, Resource, ResourceValue, Resources,
};

use super::share::{Quantity, ShareKey};

pub(super) type AgentIdx = usize;
pub(super) type FwIdx = usize;
pub(super) type RoleIdx = usize;

/// Sorter entry: (share, name for deterministic tie-breaks, handle).
pub(super) type SortKey = (ShareKey, Arc<str>, usize);

#[derive(Debug)]
pub(super) struct Agent {
    pub(super) id: AgentId,
    /// Total resources, without allocation info.
    pub(super) total: Resources,
    pub(super) total_q: Vec<Quantity>,
    /// `total` minus everything allocated (offered or used), without allocation info.
    pub(super) available: Resources,
    /// Allocations (offered or used), without allocation info, by framework and role.
    pub(super) allocated: BTreeMap<FwIdx, BTreeMap<RoleIdx, Resources>>,
    pub(super) active: bool,
    /// The total holds GPUs (GPU-scarce filtering looks at the total, like Mesos).
    pub(super) has_gpus: bool,
    /// Frameworks that may hold offer filters on this agent (a superset).
    pub(super) filtered_by: BTreeSet<FwIdx>,
}

/// The framework capabilities the allocator looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Caps {
    pub(super) gpu: bool,
    pub(super) revocable: bool,
    pub(super) shared: bool,
    pub(super) refinement: bool,
}

impl Caps {
    pub(super) fn from_info(info: &FrameworkInfo) -> Self {
        Self {
            gpu: info.has_capability(&CapabilityType::GpuResources),
            revocable: info.has_capability(&CapabilityType::RevocableResources),
            shared: info.has_capability(&CapabilityType::SharedResources),
            refinement: info.has_capability(&CapabilityType::ReservationRefinement),
        }
    }

    /// Whether the framework may be offered `r` (Mesos `stripIncapableResources`):
    /// revocable only with REVOCABLE_RESOURCES, shared only with SHARED_RESOURCES,
    /// refined (multi-level) reservations only with RESERVATION_REFINEMENT.
    pub(super) fn can_take(&self, r: &Resource) -> bool {
        (self.revocable || !r.revocable)
            && (self.shared || !r.shared)
            && (self.refinement || r.reservations.len() <= 1)
    }

    /// `pool` without what the framework cannot be offered (borrowed when that is
    /// everything).
    pub(super) fn strip<'a>(&self, pool: &'a Resources) -> Cow<'a, Resources> {
        if pool.iter().all(|r| self.can_take(r)) {
            Cow::Borrowed(pool)
        } else {
            Cow::Owned(pool.filter(|r| self.can_take(r)))
        }
    }
}

/// Resources that `Resources` never merges or counts specially (shared, any disk
/// info): [`contains`] defers to `Resources::contains` when they are involved.
fn is_special(r: &Resource) -> bool {
    r.shared || r.disk.is_some()
}

/// Same identity apart from the value (what `Resources` merges when adding).
fn same_kind(l: &Resource, r: &Resource) -> bool {
    l.name == r.name
        && l.value_type() == r.value_type()
        && l.revocable == r.revocable
        && l.shared == r.shared
        && l.allocation_info == r.allocation_info
        && l.reservations == r.reservations
        && l.disk == r.disk
        && l.provider_id == r.provider_id
}

fn value_contains(l: &ResourceValue, r: &ResourceValue) -> bool {
    match (l, r) {
        (ResourceValue::Scalar(a), ResourceValue::Scalar(b)) => b <= a,
        (ResourceValue::Ranges(a), ResourceValue::Ranges(b)) => a.is_superset(b),
        (ResourceValue::Set(a), ResourceValue::Set(b)) => a.is_superset(b),
        _ => false,
    }
}

/// `outer.contains(inner)` without cloning `outer` (the filter check runs once per
/// framework and agent). Both are normalised, so without shared or disk resources
/// each kind of resource appears at most once on each side and containment is
/// per resource; otherwise this is `Resources::contains`.
pub(super) fn contains(outer: &Resources, inner: &Resources) -> bool {
    if inner.iter().any(is_special) || outer.iter().any(is_special) {
        return outer.contains(inner);
    }
    inner.iter().all(|r| {
        outer
            .iter()
            .any(|l| same_kind(l, r) && value_contains(&l.value, &r.value))
    })
}

/// A refused-offer filter (Mesos `RefusedOfferFilter`): while active, resources
/// contained in `refused` are not offered to the framework on that agent in that role.
#[derive(Debug, Clone)]
pub(super) struct OfferFilter {
    pub(super) id: u64,
    pub(super) refused: Resources,
    pub(super) expires: Duration,
}

#[derive(Debug)]
pub(super) struct Framework {
    pub(super) id: FrameworkId,
    pub(super) name: Arc<str>,
    pub(super) subscribed: BTreeSet<RoleIdx>,
    /// Always a subset of `subscribed`.
    pub(super) suppressed: BTreeSet<RoleIdx>,
    /// Roles it is a sorter member of: `subscribed` plus roles it still holds
    /// allocations in.
    pub(super) tracked: BTreeSet<RoleIdx>,
    pub(super) active: bool,
    pub(super) caps: Caps,
    /// Agents it holds allocations on.
    pub(super) agents: BTreeSet<AgentIdx>,
    pub(super) filters: HashMap<(AgentIdx, RoleIdx), Vec<OfferFilter>>,
}

impl Framework {
    pub(super) fn eligible(&self, r: RoleIdx) -> bool {
        self.active && self.subscribed.contains(&r) && !self.suppressed.contains(&r)
    }

    pub(super) fn is_filtered(
        &self,
        a: AgentIdx,
        r: RoleIdx,
        offer: &Resources,
        now: Duration,
    ) -> bool {
        self.filters.get(&(a, r)).is_some_and(|fs| {
            fs.iter()
                .any(|f| f.expires > now && contains(&f.refused, offer))
        })
    }
}

/// A framework's place in one role's sorter.
#[derive(Debug, Default)]
pub(super) struct Member {
    /// Scalar quantities allocated to the framework in this role.
    pub(super) alloc: Vec<i64>,
    pub(super) key: ShareKey,
    /// Active, subscribed and not suppressed: present in the role's sorter.
    pub(super) eligible: bool,
}

#[derive(Debug)]
pub(super) struct Role {
    pub(super) name: Arc<str>,
    pub(super) weight: f64,
    /// Scalar quantities allocated to the role (sum over its members).
    pub(super) alloc: Vec<i64>,
    /// Weighted dominant share.
    pub(super) key: ShareKey,
    pub(super) members: BTreeMap<FwIdx, Member>,
    /// Eligible members in DRF order.
    pub(super) sorter: std::collections::BTreeSet<SortKey>,
}

/// A pending filter expiry in the min-heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Expiry {
    pub(super) at: Duration,
    pub(super) id: u64,
    pub(super) framework: FwIdx,
    pub(super) agent: AgentIdx,
    pub(super) role: RoleIdx,
}

#[cfg(test)]
mod tests {
    use basalt_mesos::{ReservationInfo, Resource, Resources};
    use proptest::prelude::*;

    use super::contains;

    fn resource() -> impl Strategy<Value = Resource> {
        let name = prop_oneof![Just("cpus"), Just("mem"), Just("gpus")];
        (
            name,
            0u32..8,
            prop::option::of(prop_oneof![Just("web"), Just("slave_public")]),
            any::<bool>(),
            prop::option::of(prop_oneof![Just("*"), Just("web")]),
        )
            .prop_map(|(name, v, role, revocable, alloc)| {
                let mut r = Resource::scalar(name, f64::from(v) / 2.0).unwrap();
                if let Some(role) = role {
                    r.push_reservation(ReservationInfo::new_static(role));
                }
                if revocable {
                    r = r.into_revocable();
                }
                if let Some(a) = alloc {
                    r = r.allocated_to(a);
                }
                r
            })
    }

    fn ports() -> impl Strategy<Value = Resource> {
        (0u64..20, 0u64..20).prop_map(|(a, b)| {
            let (lo, hi) = (a.min(b), a.max(b));
            Resource::ranges(
                "ports",
                basalt_mesos::Ranges::from_range(31000 + lo, 31000 + hi).unwrap(),
            )
        })
    }

    fn resources() -> impl Strategy<Value = Resources> {
        prop::collection::vec(prop_oneof![4 => resource(), 1 => ports()], 0..6)
            .prop_map(Resources::from)
    }

    proptest! {
        #[test]
        fn fast_contains_agrees_with_resources_contains(a in resources(), b in resources()) {
            prop_assert_eq!(contains(&a, &b), a.contains(&b));
            prop_assert_eq!(contains(&b, &a), b.contains(&a));
            let sum = &a + &b;
            prop_assert!(contains(&sum, &a));
            prop_assert_eq!(contains(&sum, &b), sum.contains(&b));
        }
    }
}
