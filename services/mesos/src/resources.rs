//! [`Resources`]: a normalised collection of [`Resource`]s with Mesos arithmetic.
//!
//! Invariants (kept by every operation, like Mesos' `Resources`):
//! - resources that Mesos can add together (same name, type, reservation stack,
//!   allocation, disk info, revocable/shared flags and provider) are merged into one;
//! - empty resources (zero scalar, empty ranges, empty set) are dropped;
//! - exclusive disks (MOUNT, BLOCK, RAW with an id) and non-shared persistent volumes
//!   are never merged and can only be subtracted by an identical resource;
//! - a shared resource is kept once with a count of copies.
//!
//! Subtraction follows Mesos: each resource on the right is taken from the first
//! resource on the left it can be subtracted from; what is not there is ignored, and
//! a scalar never goes below zero (it disappears). Use [`Resources::contains`] or
//! [`Resources::checked_sub`] when the right side must be contained.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::error::ParseError;
use crate::resource::{
    AllocationInfo, DiskKind, FormattedResource, ReservationInfo, Resource, ResourceFormat,
    ResourceValue, apply_default_role_json,
};
use crate::roles::{DEFAULT_ROLE, validate_role};
use crate::values::{Ranges, Scalar, Set, Value, ValueType};

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    resource: Resource,
    /// Copies of a shared resource; always 1 for non-shared resources.
    count: u64,
}

/// A normalised multiset of resources with Mesos semantics (see the module docs).
#[derive(Clone, Default)]
pub struct Resources {
    entries: Vec<Entry>,
}

/// Same identity apart from the value: the precondition for both `addable` and
/// `subtractable` in Mesos (`src/common/resources.cpp`).
fn same_kind(l: &Resource, r: &Resource) -> bool {
    l.name == r.name
        && l.value_type() == r.value_type()
        && l.shared == r.shared
        && l.revocable == r.revocable
        && l.allocation_info == r.allocation_info
        && l.reservations == r.reservations
        && l.disk == r.disk
        && l.provider_id == r.provider_id
}

/// Exclusive resources are never merged and only subtracted when identical.
fn is_exclusive(r: &Resource) -> bool {
    r.shared
        || r.disk.as_ref().is_some_and(|d| {
            d.persistence.is_some()
                || matches!(d.kind(), DiskKind::Mount | DiskKind::Block)
                || (d.kind() == DiskKind::Raw && d.source.as_ref().is_some_and(|s| s.id.is_some()))
        })
}

fn addable(l: &Resource, r: &Resource) -> bool {
    same_kind(l, r) && !is_exclusive(l)
}

fn subtractable(l: &Resource, r: &Resource) -> bool {
    same_kind(l, r) && (!is_exclusive(l) || l == r)
}

fn value_contains(l: &ResourceValue, r: &ResourceValue) -> bool {
    match (l, r) {
        (ResourceValue::Scalar(a), ResourceValue::Scalar(b)) => b <= a,
        (ResourceValue::Ranges(a), ResourceValue::Ranges(b)) => a.is_superset(b),
        (ResourceValue::Set(a), ResourceValue::Set(b)) => a.is_superset(b),
        _ => false,
    }
}

/// Mesos ignores invalid resources in `+=`/`-=`; we ignore the ones arithmetic cannot
/// handle: empty values and negative scalars.
fn usable(r: &Resource) -> bool {
    !r.is_empty() && !r.scalar_value().is_some_and(Scalar::is_negative)
}

impl Resources {
    /// No resources.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// True when there are no resources.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct (merged) resources; a shared resource counts once.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The distinct resources; a shared resource appears once (see [`Self::shared_count`]).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Resource> + '_ {
        self.entries.iter().map(|e| &e.resource)
    }

    /// Copies held of a shared resource equal to `resource` (0 if none); 1 or 0 for
    /// non-shared resources.
    pub fn shared_count(&self, resource: &Resource) -> u64 {
        self.entries
            .iter()
            .find(|e| e.resource == *resource)
            .map_or(0, |e| e.count)
    }

    /// All resources as a list, with a shared resource repeated once per copy (the
    /// wire form).
    pub fn to_vec(&self) -> Vec<Resource> {
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            for _ in 0..e.count {
                out.push(e.resource.clone());
            }
        }
        out
    }

    fn add_entry(&mut self, resource: Resource, count: u64) {
        if !usable(&resource) || count == 0 {
            return;
        }
        if resource.shared {
            if let Some(e) = self.entries.iter_mut().find(|e| e.resource == resource) {
                e.count = e.count.saturating_add(count);
                return;
            }
        } else if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| addable(&e.resource, &resource))
        {
            match (&mut e.resource.value, &resource.value) {
                (ResourceValue::Scalar(a), ResourceValue::Scalar(b)) => *a += *b,
                (ResourceValue::Ranges(a), ResourceValue::Ranges(b)) => a.add(b),
                (ResourceValue::Set(a), ResourceValue::Set(b)) => *a = a.union(b),
                _ => {}
            }
            return;
        }
        self.entries.push(Entry { resource, count });
    }

    fn subtract_entry(&mut self, resource: &Resource, count: u64) {
        if !usable(resource) || count == 0 {
            return;
        }
        let Some(i) = self
            .entries
            .iter()
            .position(|e| subtractable(&e.resource, resource))
        else {
            return;
        };
        let e = &mut self.entries[i];
        let gone = if e.resource.shared {
            e.count = e.count.saturating_sub(count);
            e.count == 0
        } else {
            match (&mut e.resource.value, &resource.value) {
                (ResourceValue::Scalar(a), ResourceValue::Scalar(b)) => {
                    *a -= *b;
                    !a.is_positive()
                }
                (ResourceValue::Ranges(a), ResourceValue::Ranges(b)) => {
                    a.remove(b);
                    a.is_empty()
                }
                (ResourceValue::Set(a), ResourceValue::Set(b)) => {
                    *a = a.difference(b);
                    a.is_empty()
                }
                _ => false,
            }
        };
        if gone {
            self.entries.remove(i);
        }
    }

    fn contains_entry(&self, resource: &Resource, count: u64) -> bool {
        self.entries.iter().any(|e| {
            if resource.shared {
                e.resource == *resource && e.count >= count
            } else {
                subtractable(&e.resource, resource)
                    && value_contains(&e.resource.value, &resource.value)
            }
        })
    }

    /// Adds one resource (merging, or ignoring it if empty or negative).
    pub fn add_resource(&mut self, resource: Resource) {
        self.add_entry(resource, 1);
    }

    /// Subtracts one resource, Mesos-style (see the module docs).
    pub fn subtract_resource(&mut self, resource: &Resource) {
        self.subtract_entry(resource, 1);
    }

    /// Adds every resource of `other`.
    pub fn add_all(&mut self, other: &Resources) {
        for e in &other.entries {
            self.add_entry(e.resource.clone(), e.count);
        }
    }

    /// Subtracts every resource of `other`, Mesos-style.
    pub fn subtract_all(&mut self, other: &Resources) {
        for e in &other.entries {
            self.subtract_entry(&e.resource, e.count);
        }
    }

    /// True when `resource` is wholly contained.
    pub fn contains_resource(&self, resource: &Resource) -> bool {
        !usable(resource) || self.contains_entry(resource, 1)
    }

    /// True when all of `other` is contained (Mesos `contains`): each of its resources
    /// is found in what remains after taking out the ones before it.
    pub fn contains(&self, other: &Resources) -> bool {
        let mut remaining = self.clone();
        for e in &other.entries {
            if !remaining.contains_entry(&e.resource, e.count) {
                return false;
            }
            remaining.subtract_entry(&e.resource, e.count);
        }
        true
    }

    /// `self - other` when `other` is contained, else `None`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        if !self.contains(other) {
            return None;
        }
        let mut out = self.clone();
        out.subtract_all(other);
        Some(out)
    }

    /// The resources matching `pred` (counts kept).
    pub fn filter(&self, mut pred: impl FnMut(&Resource) -> bool) -> Resources {
        Resources {
            entries: self
                .entries
                .iter()
                .filter(|e| pred(&e.resource))
                .cloned()
                .collect(),
        }
    }

    /// Rebuilds from entries whose resources were changed (re-merging).
    fn remap(&self, mut f: impl FnMut(&mut Resource)) -> Resources {
        let mut out = Resources::new();
        for e in &self.entries {
            let mut r = e.resource.clone();
            f(&mut r);
            out.add_entry(r, e.count);
        }
        out
    }

    /// Unreserved resources (role `*`).
    pub fn unreserved(&self) -> Resources {
        self.filter(Resource::is_unreserved)
    }

    /// Reserved resources: all of them (`None`) or those whose reservation role is `role`.
    pub fn reserved(&self, role: Option<&str>) -> Resources {
        self.filter(|r| r.is_reserved(role))
    }

    /// Resources `role` may be offered: unreserved, reserved to it or to an ancestor.
    pub fn allocatable_to(&self, role: &str) -> Resources {
        self.filter(|r| r.is_allocatable_to(role))
    }

    /// Reserved resources grouped by reservation role.
    pub fn reservations(&self) -> BTreeMap<String, Resources> {
        let mut out: BTreeMap<String, Resources> = BTreeMap::new();
        for e in self.entries.iter().filter(|e| !e.resource.is_unreserved()) {
            out.entry(e.resource.reservation_role().to_owned())
                .or_default()
                .add_entry(e.resource.clone(), e.count);
        }
        out
    }

    /// Statically reserved resources (innermost reservation STATIC).
    pub fn statically_reserved(&self) -> Resources {
        self.filter(Resource::is_statically_reserved)
    }

    /// Dynamically reserved resources (innermost reservation DYNAMIC).
    pub fn dynamically_reserved(&self) -> Resources {
        self.filter(Resource::is_dynamically_reserved)
    }

    /// Revocable resources.
    pub fn revocable(&self) -> Resources {
        self.filter(|r| r.revocable)
    }

    /// Non-revocable resources.
    pub fn non_revocable(&self) -> Resources {
        self.filter(|r| !r.revocable)
    }

    /// Shared resources.
    pub fn shared(&self) -> Resources {
        self.filter(|r| r.shared)
    }

    /// Non-shared resources.
    pub fn non_shared(&self) -> Resources {
        self.filter(|r| !r.shared)
    }

    /// Persistent volumes.
    pub fn persistent_volumes(&self) -> Resources {
        self.filter(Resource::is_persistent_volume)
    }

    /// SCALAR resources.
    pub fn scalars(&self) -> Resources {
        self.filter(|r| r.value_type() == ValueType::Scalar)
    }

    /// Resources named `name`.
    pub fn named(&self, name: &str) -> Resources {
        self.filter(|r| r.name == name)
    }

    /// The same amounts with every reservation removed (Mesos `toUnreserved`, the
    /// post-refinement `flatten()`).
    pub fn flatten(&self) -> Resources {
        self.remap(|r| r.reservations.clear())
    }

    /// The same amounts with every resource reserved statically to exactly `role`
    /// (`*`: unreserved), as Mesos' old `flatten(role)`.
    pub fn flatten_to_role(&self, role: &str) -> Resources {
        self.remap(|r| {
            r.reservations.clear();
            if role != DEFAULT_ROLE {
                r.reservations.push(ReservationInfo::new_static(role));
            }
        })
    }

    /// Every resource with `reservation` pushed on its stack (RESERVE).
    pub fn push_reservation(&self, reservation: &ReservationInfo) -> Resources {
        self.remap(|r| r.push_reservation(reservation.clone()))
    }

    /// Every resource with its innermost reservation popped (UNRESERVE).
    pub fn pop_reservation(&self) -> Resources {
        self.remap(|r| {
            r.pop_reservation();
        })
    }

    /// Every resource marked allocated to `role`.
    pub fn allocate(&self, role: &str) -> Resources {
        self.remap(|r| r.allocation_info = Some(AllocationInfo::new(role)))
    }

    /// Every resource with its allocation info removed.
    pub fn unallocate(&self) -> Resources {
        self.remap(|r| r.allocation_info = None)
    }

    /// Allocated resources grouped by allocation role (resources without one are left out).
    pub fn allocations(&self) -> BTreeMap<String, Resources> {
        let mut out: BTreeMap<String, Resources> = BTreeMap::new();
        for e in &self.entries {
            if let Some(role) = e
                .resource
                .allocation_info
                .as_ref()
                .and_then(|a| a.role.as_ref())
            {
                out.entry(role.clone())
                    .or_default()
                    .add_entry(e.resource.clone(), e.count);
            }
        }
        out
    }

    /// Resource names present.
    pub fn names(&self) -> BTreeSet<&str> {
        self.entries
            .iter()
            .map(|e| e.resource.name.as_str())
            .collect()
    }

    /// Name → type of each resource present.
    pub fn types(&self) -> BTreeMap<&str, ValueType> {
        self.entries
            .iter()
            .map(|e| (e.resource.name.as_str(), e.resource.value_type()))
            .collect()
    }

    /// Sum of every SCALAR resource named `name` whatever its reservation etc.
    /// (Mesos `get<Value::Scalar>(name)`); `None` when there is none.
    pub fn get_scalar(&self, name: &str) -> Option<Scalar> {
        let mut it = self
            .entries
            .iter()
            .filter(|e| e.resource.name == name)
            .filter_map(|e| e.resource.scalar_value())
            .peekable();
        it.peek()?;
        Some(it.sum())
    }

    /// Union of every RANGES resource named `name`.
    pub fn get_ranges(&self, name: &str) -> Option<Ranges> {
        let mut found = None::<Ranges>;
        for r in self.entries.iter().filter(|e| e.resource.name == name) {
            if let Some(v) = r.resource.ranges_value() {
                found = Some(found.map_or_else(|| v.clone(), |f| f.union(v)));
            }
        }
        found
    }

    /// Union of every SET resource named `name`.
    pub fn get_set(&self, name: &str) -> Option<Set> {
        let mut found = None::<Set>;
        for r in self.entries.iter().filter(|e| e.resource.name == name) {
            if let Some(v) = r.resource.set_value() {
                found = Some(found.map_or_else(|| v.clone(), |f| f.union(v)));
            }
        }
        found
    }

    /// Total `cpus`.
    pub fn cpus(&self) -> Option<Scalar> {
        self.get_scalar("cpus")
    }

    /// Total `mem` (MB).
    pub fn mem(&self) -> Option<Scalar> {
        self.get_scalar("mem")
    }

    /// Total `disk` (MB).
    pub fn disk(&self) -> Option<Scalar> {
        self.get_scalar("disk")
    }

    /// Total `gpus`.
    pub fn gpus(&self) -> Option<Scalar> {
        self.get_scalar("gpus")
    }

    /// All `ports`.
    pub fn ports(&self) -> Option<Ranges> {
        self.get_ranges("ports")
    }

    /// Name → total of every scalar resource, ignoring reservations, allocation and
    /// other metadata (Mesos `ResourceQuantities`, what DRF shares are computed on).
    pub fn scalar_quantities(&self) -> BTreeMap<String, Scalar> {
        let mut out: BTreeMap<String, Scalar> = BTreeMap::new();
        for e in &self.entries {
            if let Some(v) = e.resource.scalar_value() {
                *out.entry(e.resource.name.clone()).or_default() += v;
            }
        }
        out
    }

    /// The flat model of `/master/state` (`"resources"`, `"used_resources"`, ...):
    /// `cpus`, `gpus`, `mem`, `disk` always present (0 if absent), every non-revocable
    /// scalar summed by name as a number, ranges as a string like
    /// `"[31000-32000, 33000-34000]"`, sets as `"{a, b}"`.
    pub fn to_state_model(&self) -> Map<String, Json> {
        let mut out = Map::new();
        for name in ["cpus", "gpus", "mem", "disk"] {
            out.insert(name.into(), Json::from(0.0));
        }
        let non_revocable = self.non_revocable();
        for (name, kind) in non_revocable.types() {
            let v = match kind {
                ValueType::Scalar => non_revocable
                    .get_scalar(name)
                    .map(|s| Json::from(s.as_f64())),
                ValueType::Ranges => non_revocable
                    .get_ranges(name)
                    .map(|r| Json::from(r.to_string())),
                ValueType::Set => non_revocable
                    .get_set(name)
                    .map(|s| Json::from(s.to_string())),
                ValueType::Text => None,
            };
            if let Some(v) = v {
                out.insert(name.to_owned(), v);
            }
        }
        out
    }

    /// Checks every resource with [`Resource::validate`].
    pub fn validate(&self) -> Result<(), ParseError> {
        self.entries.iter().try_for_each(|e| e.resource.validate())
    }

    /// A serialisable view of the list in the given JSON form.
    pub fn formatted(&self, format: ResourceFormat) -> FormattedResources<'_> {
        FormattedResources {
            resources: self,
            format,
        }
    }

    /// Parses the agent `--resources` flag with the default role `*`. See
    /// [`Self::parse_with_default_role`].
    pub fn parse(text: &str) -> Result<Resources, ParseError> {
        Self::parse_with_default_role(text, DEFAULT_ROLE)
    }

    /// Parses the agent `--resources` flag: either a JSON array of Mesos resources, or
    /// the text form `cpus:4;mem:4096;ports:[31000-32000];disk(slave_public):100`
    /// (`;`- or newline-separated `name(role):value` tokens; a role makes a static
    /// reservation; values are scalars, `[a-b,..]` ranges or `{a,..}` sets).
    /// Resources without a role get `default_role` (Mesos' deprecated
    /// `--default_role`). Every resource is validated; empty ones are dropped and
    /// repeated ones merged.
    pub fn parse_with_default_role(
        text: &str,
        default_role: &str,
    ) -> Result<Resources, ParseError> {
        validate_role(default_role)?;
        let trimmed = text.trim();
        let list = if trimmed.starts_with('[') {
            let mut raw: Vec<Map<String, Json>> =
                serde_json::from_str(trimmed).map_err(|source| ParseError::Json {
                    what: "resources",
                    source,
                })?;
            for r in &mut raw {
                apply_default_role_json(r, default_role);
            }
            serde_json::from_value::<Vec<Resource>>(Json::Array(
                raw.into_iter().map(Json::Object).collect(),
            ))
            .map_err(|source| ParseError::Json {
                what: "resources",
                source,
            })?
        } else {
            trimmed
                .split([';', '\n'])
                .filter(|t| !t.trim().is_empty())
                .map(|t| parse_token(t, default_role))
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut out = Resources::new();
        for r in list {
            r.validate()?;
            out.add_resource(r);
        }
        Ok(out)
    }
}

/// One `name(role):value` token of the text form.
fn parse_token(token: &str, default_role: &str) -> Result<Resource, ParseError> {
    let bad = |reason: String| ParseError::resource(token.trim(), reason);
    // Like Mesos' `strings::tokenize(token, ":")`: empty pieces are skipped.
    let parts: Vec<&str> = token.split(':').filter(|p| !p.is_empty()).collect();
    let [head, value] = parts.as_slice() else {
        return Err(bad(
            "expecting exactly one ':' between name and value".into()
        ));
    };
    let (name, role) = match head.find('(') {
        None => (head.trim(), default_role),
        Some(open) => {
            let close = head
                .find(')')
                .filter(|c| *c > open)
                .ok_or_else(|| bad("mismatched parentheses around the role".into()))?;
            if !head[close + 1..].trim().is_empty() {
                return Err(bad(format!(
                    "unexpected '{}' after the role",
                    head[close + 1..].trim()
                )));
            }
            (head[..open].trim(), head[open + 1..close].trim())
        }
    };
    if name.is_empty() {
        return Err(bad("resource name is empty".into()));
    }
    validate_role(role).map_err(|e| bad(e.to_string()))?;
    let value = match Value::parse(value, false).map_err(|e| bad(e.to_string()))? {
        Value::Scalar(s) => ResourceValue::Scalar(s),
        Value::Ranges(r) => ResourceValue::Ranges(r),
        Value::Set(s) => ResourceValue::Set(s),
        Value::Text(t) => {
            return Err(bad(format!(
                "value '{t}' is not a scalar, ranges [a-b,...] or set {{a,...}}"
            )));
        }
    };
    Ok(Resource::new(name, value).reserved_static(role))
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resources({self})")
    }
}

impl fmt::Display for Resources {
    /// `cpus:4; mem:4096; ports:[31000-32000]; disk(slave_public):100` (Mesos style;
    /// a shared resource is written once per copy).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.entries {
            for _ in 0..e.count {
                if !first {
                    f.write_str("; ")?;
                }
                first = false;
                write!(f, "{}", e.resource)?;
            }
        }
        Ok(())
    }
}

impl PartialEq for Resources {
    /// Mesos equality: each contains the other (order does not matter).
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len() && self.contains(other) && other.contains(self)
    }
}

impl From<Resource> for Resources {
    fn from(r: Resource) -> Self {
        let mut out = Resources::new();
        out.add_resource(r);
        out
    }
}

impl From<Vec<Resource>> for Resources {
    fn from(v: Vec<Resource>) -> Self {
        v.into_iter().collect()
    }
}

impl FromIterator<Resource> for Resources {
    fn from_iter<T: IntoIterator<Item = Resource>>(iter: T) -> Self {
        let mut out = Resources::new();
        for r in iter {
            out.add_resource(r);
        }
        out
    }
}

impl Extend<Resource> for Resources {
    fn extend<T: IntoIterator<Item = Resource>>(&mut self, iter: T) {
        for r in iter {
            self.add_resource(r);
        }
    }
}

impl AddAssign<&Resources> for Resources {
    fn add_assign(&mut self, rhs: &Resources) {
        self.add_all(rhs);
    }
}

impl AddAssign<Resources> for Resources {
    fn add_assign(&mut self, rhs: Resources) {
        for e in rhs.entries {
            self.add_entry(e.resource, e.count);
        }
    }
}

impl AddAssign<Resource> for Resources {
    fn add_assign(&mut self, rhs: Resource) {
        self.add_resource(rhs);
    }
}

impl SubAssign<&Resources> for Resources {
    fn sub_assign(&mut self, rhs: &Resources) {
        self.subtract_all(rhs);
    }
}

impl SubAssign<Resources> for Resources {
    fn sub_assign(&mut self, rhs: Resources) {
        self.subtract_all(&rhs);
    }
}

impl SubAssign<&Resource> for Resources {
    fn sub_assign(&mut self, rhs: &Resource) {
        self.subtract_resource(rhs);
    }
}

impl Add<&Resources> for &Resources {
    type Output = Resources;
    fn add(self, rhs: &Resources) -> Resources {
        let mut out = self.clone();
        out += rhs;
        out
    }
}

impl Add<Resources> for Resources {
    type Output = Resources;
    fn add(mut self, rhs: Resources) -> Resources {
        self += rhs;
        self
    }
}

impl Add<&Resources> for Resources {
    type Output = Resources;
    fn add(mut self, rhs: &Resources) -> Resources {
        self += rhs;
        self
    }
}

impl Sub<&Resources> for &Resources {
    type Output = Resources;
    fn sub(self, rhs: &Resources) -> Resources {
        let mut out = self.clone();
        out -= rhs;
        out
    }
}

impl Sub<Resources> for Resources {
    type Output = Resources;
    fn sub(mut self, rhs: Resources) -> Resources {
        self -= &rhs;
        self
    }
}

impl Sub<&Resources> for Resources {
    type Output = Resources;
    fn sub(mut self, rhs: &Resources) -> Resources {
        self -= rhs;
        self
    }
}

/// [`Resources`] written as a JSON array in a chosen [`ResourceFormat`].
#[derive(Debug, Clone, Copy)]
pub struct FormattedResources<'a> {
    resources: &'a Resources,
    format: ResourceFormat,
}

impl Serialize for FormattedResources<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let total: u64 = self.resources.entries.iter().map(|e| e.count).sum();
        let mut seq = s.serialize_seq(usize::try_from(total).ok())?;
        for e in &self.resources.entries {
            let f: FormattedResource<'_> = e.resource.formatted(self.format);
            for _ in 0..e.count {
                seq.serialize_element(&f)?;
            }
        }
        seq.end()
    }
}

impl Serialize for Resources {
    /// A JSON array in the [`ResourceFormat::Endpoint`] form.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.formatted(ResourceFormat::Endpoint).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Resources {
    /// A JSON array of resources, normalised (merged; empty ones dropped). Not validated:
    /// call [`Resources::validate`] on untrusted input.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Resource>::deserialize(d)?.into_iter().collect())
    }
}
