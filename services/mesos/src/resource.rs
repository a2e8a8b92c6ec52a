//! A single Mesos [`Resource`]: name, typed value, reservations, allocation, disk info,
//! shared/revocable flags; its JSON forms (pre- and post-reservation-refinement) and
//! Mesos validation rules.
//!
//! The model is Mesos' *post-reservation-refinement* form: a resource is unreserved
//! when `reservations` is empty, otherwise its role is the role of the last
//! reservation. When reading JSON, the older form (`"role":"slave_public"` meaning a
//! static reservation, plus `"reservation":{principal,labels}` for a dynamic one) is
//! accepted too; when writing, the *endpoint* form Mesos serves from `/master/state`
//! and `/api/v1` is used by default: both `role` (and `reservation` for a single
//! dynamic reservation) and `reservations`. See [`ResourceFormat`].

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::container::Volume;
use crate::error::ParseError;
use crate::ids::ResourceProviderId;
use crate::labels::Labels;
use crate::roles::{DEFAULT_ROLE, is_strict_subrole_of, validate_role};
use crate::values::{Ranges, Scalar, Set, ValueType};

/// `ReservationInfo.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReservationType {
    /// `STATIC`: made by the operator on the agent (`--resources=disk(slave_public):100`).
    #[serde(rename = "STATIC")]
    Static,
    /// `DYNAMIC`: made by a framework (RESERVE) or an operator (`RESERVE_RESOURCES`).
    #[serde(rename = "DYNAMIC")]
    Dynamic,
}

/// One level of a reservation stack (`Resource.reservations[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationInfo {
    /// STATIC or DYNAMIC.
    #[serde(rename = "type")]
    pub kind: ReservationType,
    /// The role reserved to.
    pub role: String,
    /// Who made a dynamic reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Labels of a dynamic reservation (used to tell reservations apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

impl ReservationInfo {
    /// A static reservation to `role`.
    pub fn new_static(role: impl Into<String>) -> Self {
        Self {
            kind: ReservationType::Static,
            role: role.into(),
            principal: None,
            labels: None,
        }
    }

    /// A dynamic reservation to `role`.
    pub fn new_dynamic(
        role: impl Into<String>,
        principal: Option<String>,
        labels: Option<Labels>,
    ) -> Self {
        Self {
            kind: ReservationType::Dynamic,
            role: role.into(),
            principal,
            labels,
        }
    }
}

/// `Resource.AllocationInfo`: the role a resource is offered/allocated to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct AllocationInfo {
    /// The role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl AllocationInfo {
    /// Allocated to `role`.
    pub fn new(role: impl Into<String>) -> Self {
        Self {
            role: Some(role.into()),
        }
    }
}

/// `DiskInfo.Persistence`: marks a disk resource as a persistent volume.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Persistence {
    /// Volume ID, unique per role on an agent.
    pub id: String,
    /// Principal that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

open_enum! {
    /// `DiskInfo.Source.Type`. A disk resource without a `source` is the agent's ROOT
    /// disk (its work directory's file system).
    pub enum DiskSourceType {
        /// `PATH`: a directory on another file system; may be shared and split.
        Path = "PATH",
        /// `MOUNT`: a whole mounted file system; exclusive, cannot be split.
        Mount = "MOUNT",
        /// `BLOCK`: a raw block device (CSI); exclusive.
        Block = "BLOCK",
        /// `RAW`: unformatted storage (CSI).
        Raw = "RAW",
    }
}

/// `{"root":"/mnt/disk0"}` of a PATH or MOUNT disk source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DiskRoot {
    /// Root path on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

/// `DiskInfo.Source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSource {
    /// PATH, MOUNT, BLOCK or RAW.
    #[serde(rename = "type")]
    pub kind: DiskSourceType,
    /// Root of a PATH disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<DiskRoot>,
    /// Root of a MOUNT disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<DiskRoot>,
    /// CSI vendor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// CSI volume id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// CSI metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Labels>,
    /// Storage profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl DiskSource {
    /// A PATH source rooted at `root`.
    pub fn path(root: impl Into<String>) -> Self {
        Self::with_root(DiskSourceType::Path, root.into())
    }

    /// A MOUNT source rooted at `root`.
    pub fn mount(root: impl Into<String>) -> Self {
        Self::with_root(DiskSourceType::Mount, root.into())
    }

    fn with_root(kind: DiskSourceType, root: String) -> Self {
        let r = Some(DiskRoot { root: Some(root) });
        let (path, mount) = match kind {
            DiskSourceType::Mount => (None, r),
            _ => (r, None),
        };
        Self {
            kind,
            path,
            mount,
            vendor: None,
            id: None,
            metadata: None,
            profile: None,
        }
    }

    /// The root path of a PATH or MOUNT source.
    pub fn root(&self) -> Option<&str> {
        match self.kind {
            DiskSourceType::Mount => self.mount.as_ref(),
            _ => self.path.as_ref(),
        }
        .and_then(|r| r.root.as_deref())
    }
}

/// `Resource.DiskInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskInfo {
    /// Set for persistent volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
    /// Where a persistent volume is mounted in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<Volume>,
    /// The disk's source; absent for the ROOT disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DiskSource>,
}

/// What kind of disk a `disk` resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskKind {
    /// No source: the agent's ROOT disk.
    Root,
    /// PATH source.
    Path,
    /// MOUNT source.
    Mount,
    /// BLOCK source.
    Block,
    /// RAW source.
    Raw,
    /// A source type this crate does not know.
    Other,
}

impl DiskInfo {
    /// The disk kind (ROOT when there is no source).
    pub fn kind(&self) -> DiskKind {
        match self.source.as_ref().map(|s| &s.kind) {
            None => DiskKind::Root,
            Some(DiskSourceType::Path) => DiskKind::Path,
            Some(DiskSourceType::Mount) => DiskKind::Mount,
            Some(DiskSourceType::Block) => DiskKind::Block,
            Some(DiskSourceType::Raw) => DiskKind::Raw,
            Some(DiskSourceType::Other(_)) => DiskKind::Other,
        }
    }
}

/// The value of a resource: SCALAR, RANGES or SET (TEXT is for attributes only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceValue {
    /// e.g. cpus, mem, disk, gpus.
    Scalar(Scalar),
    /// e.g. ports.
    Ranges(Ranges),
    /// Custom set resources.
    Set(Set),
}

impl ResourceValue {
    /// The value type.
    pub fn value_type(&self) -> ValueType {
        match self {
            ResourceValue::Scalar(_) => ValueType::Scalar,
            ResourceValue::Ranges(_) => ValueType::Ranges,
            ResourceValue::Set(_) => ValueType::Set,
        }
    }

    /// Zero scalar, empty ranges or empty set.
    pub fn is_empty(&self) -> bool {
        match self {
            ResourceValue::Scalar(s) => s.is_zero(),
            ResourceValue::Ranges(r) => r.is_empty(),
            ResourceValue::Set(s) => s.is_empty(),
        }
    }
}

impl fmt::Display for ResourceValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceValue::Scalar(s) => write!(f, "{s}"),
            ResourceValue::Ranges(r) => write!(f, "{r}"),
            ResourceValue::Set(s) => write!(f, "{s}"),
        }
    }
}

/// A Mesos `Resource`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// `cpus`, `mem`, `disk`, `gpus`, `ports`, or a custom name.
    pub name: String,
    /// The typed value.
    pub value: ResourceValue,
    /// The reservation stack; empty means unreserved (role `*`).
    pub reservations: Vec<ReservationInfo>,
    /// The role this resource is allocated/offered to, if any.
    pub allocation_info: Option<AllocationInfo>,
    /// Disk details (only for `disk`).
    pub disk: Option<DiskInfo>,
    /// Revocable (oversubscribed) resource.
    pub revocable: bool,
    /// Shared resource (persistent volumes only); `Resources` counts copies of it.
    pub shared: bool,
    /// The resource provider it comes from (absent for agent default resources).
    pub provider_id: Option<ResourceProviderId>,
}

/// Which JSON form [`Resource`] is written in (Mesos `ResourceFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResourceFormat {
    /// What Mesos' endpoints serve: `role` always (`*` when unreserved), `reservation`
    /// for a single dynamic reservation, and `reservations` (omitted when empty).
    #[default]
    Endpoint,
    /// For frameworks without RESERVATION_REFINEMENT: `role` and `reservation` only.
    /// A refined (multi-level) reservation cannot be expressed and is written with
    /// `reservations` as in the endpoint form.
    PreReservationRefinement,
    /// `reservations` only, no `role`/`reservation`.
    PostReservationRefinement,
}

impl Resource {
    /// An unreserved, unallocated resource.
    pub fn new(name: impl Into<String>, value: ResourceValue) -> Self {
        Self {
            name: name.into(),
            value,
            reservations: Vec::new(),
            allocation_info: None,
            disk: None,
            revocable: false,
            shared: false,
            provider_id: None,
        }
    }

    /// An unreserved scalar resource; fails when `value` is not finite, negative or huge.
    pub fn scalar(name: impl Into<String>, value: f64) -> Result<Self, ParseError> {
        let name = name.into();
        let v =
            Scalar::try_from_f64(value).map_err(|e| ParseError::resource(&name, e.to_string()))?;
        if v.is_negative() {
            return Err(ParseError::resource(
                name,
                "scalar value must not be negative",
            ));
        }
        Ok(Self::new(name, ResourceValue::Scalar(v)))
    }

    /// An unreserved ranges resource.
    pub fn ranges(name: impl Into<String>, ranges: Ranges) -> Self {
        Self::new(name, ResourceValue::Ranges(ranges))
    }

    /// An unreserved set resource.
    pub fn set(name: impl Into<String>, set: Set) -> Self {
        Self::new(name, ResourceValue::Set(set))
    }

    /// With a reservation pushed on top of the stack (builder form of
    /// [`Resource::push_reservation`]).
    pub fn with_reservation(mut self, reservation: ReservationInfo) -> Self {
        self.push_reservation(reservation);
        self
    }

    /// Statically reserved to `role` (`*` leaves it unreserved).
    pub fn reserved_static(self, role: impl Into<String>) -> Self {
        let role = role.into();
        if role == DEFAULT_ROLE {
            self
        } else {
            self.with_reservation(ReservationInfo::new_static(role))
        }
    }

    /// Allocated to `role`.
    pub fn allocated_to(mut self, role: impl Into<String>) -> Self {
        self.allocation_info = Some(AllocationInfo::new(role));
        self
    }

    /// With disk info.
    pub fn with_disk(mut self, disk: DiskInfo) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Marked shared.
    pub fn into_shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Marked revocable.
    pub fn into_revocable(mut self) -> Self {
        self.revocable = true;
        self
    }

    /// The value type.
    pub fn value_type(&self) -> ValueType {
        self.value.value_type()
    }

    /// The scalar value, for SCALAR resources.
    pub fn scalar_value(&self) -> Option<Scalar> {
        match &self.value {
            ResourceValue::Scalar(s) => Some(*s),
            _ => None,
        }
    }

    /// The ranges, for RANGES resources.
    pub fn ranges_value(&self) -> Option<&Ranges> {
        match &self.value {
            ResourceValue::Ranges(r) => Some(r),
            _ => None,
        }
    }

    /// The set, for SET resources.
    pub fn set_value(&self) -> Option<&Set> {
        match &self.value {
            ResourceValue::Set(s) => Some(s),
            _ => None,
        }
    }

    /// Zero scalar, empty ranges or empty set (Mesos drops these from `Resources`).
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// True when not reserved (role `*`).
    pub fn is_unreserved(&self) -> bool {
        self.reservations.is_empty()
    }

    /// The role of the innermost (last) reservation, or `*` when unreserved.
    pub fn reservation_role(&self) -> &str {
        self.reservations
            .last()
            .map_or(DEFAULT_ROLE, |r| r.role.as_str())
    }

    /// Mesos `isReserved(resource, role)`: reserved at all (`None`), or reserved with
    /// `role` as the reservation role.
    pub fn is_reserved(&self, role: Option<&str>) -> bool {
        !self.is_unreserved() && role.is_none_or(|r| r == self.reservation_role())
    }

    /// Reserved, and the innermost reservation is STATIC.
    pub fn is_statically_reserved(&self) -> bool {
        self.reservations
            .last()
            .is_some_and(|r| r.kind == ReservationType::Static)
    }

    /// Reserved, and the innermost reservation is DYNAMIC.
    pub fn is_dynamically_reserved(&self) -> bool {
        self.reservations
            .last()
            .is_some_and(|r| r.kind == ReservationType::Dynamic)
    }

    /// Mesos `isAllocatableTo`: unreserved, reserved to `role`, or reserved to an
    /// ancestor of `role` (hierarchical roles).
    pub fn is_allocatable_to(&self, role: &str) -> bool {
        self.is_unreserved()
            || role == self.reservation_role()
            || is_strict_subrole_of(role, self.reservation_role())
    }

    /// Has `disk.persistence`.
    pub fn is_persistent_volume(&self) -> bool {
        self.disk.as_ref().is_some_and(|d| d.persistence.is_some())
    }

    /// The disk kind, for `disk` resources (ROOT when there is no source).
    pub fn disk_kind(&self) -> Option<DiskKind> {
        if self.name != "disk" {
            return None;
        }
        Some(self.disk.as_ref().map_or(DiskKind::Root, DiskInfo::kind))
    }

    /// Pushes a (refined) reservation on the stack, as RESERVE does.
    pub fn push_reservation(&mut self, reservation: ReservationInfo) {
        self.reservations.push(reservation);
    }

    /// Pops the innermost reservation, as UNRESERVE does.
    pub fn pop_reservation(&mut self) -> Option<ReservationInfo> {
        self.reservations.pop()
    }

    /// Mesos' resource validation (`Resources::validate` plus the GPU and known-name
    /// checks done on agent flags and task launches): non-empty name; non-negative
    /// scalar; `cpus`/`mem`/`disk`/`gpus` SCALAR and `ports` RANGES; whole `gpus`;
    /// disk info only on `disk`; `shared` only on persistent volumes; valid roles,
    /// no reservation to `*`, STATIC only at the bottom of the stack and every
    /// refinement to a strict subrole of the level below.
    pub fn validate(&self) -> Result<(), ParseError> {
        let err = |reason: String| ParseError::resource(self.to_string(), reason);
        if self.name.is_empty() {
            return Err(err("resource name is empty".into()));
        }
        if let ResourceValue::Scalar(s) = &self.value
            && s.is_negative()
        {
            return Err(err("scalar value must not be negative".into()));
        }
        let expected = match self.name.as_str() {
            "cpus" | "mem" | "disk" | "gpus" => Some(ValueType::Scalar),
            "ports" => Some(ValueType::Ranges),
            _ => None,
        };
        if let Some(t) = expected
            && t != self.value_type()
        {
            return Err(err(format!(
                "'{}' must be of type {t}, not {}",
                self.name,
                self.value_type()
            )));
        }
        if self.name == "gpus" && self.scalar_value().is_some_and(|s| !s.is_whole()) {
            return Err(err("'gpus' must be a whole number".into()));
        }
        if self.disk.is_some() && self.name != "disk" {
            return Err(err(format!(
                "disk info is only allowed on 'disk', not '{}'",
                self.name
            )));
        }
        if self.shared && !self.is_persistent_volume() {
            return Err(err("only persistent volumes can be shared".into()));
        }
        if let Some(role) = self
            .allocation_info
            .as_ref()
            .and_then(|a| a.role.as_deref())
        {
            validate_role(role).map_err(|e| err(format!("allocation_info: {e}")))?;
        }
        for (i, r) in self.reservations.iter().enumerate() {
            validate_role(&r.role).map_err(|e| err(format!("reservations[{i}]: {e}")))?;
            if r.role == DEFAULT_ROLE {
                return Err(err(format!(
                    "reservations[{i}]: cannot reserve to role '*'"
                )));
            }
            if i > 0 {
                if r.kind == ReservationType::Static {
                    return Err(err(format!(
                        "reservations[{i}]: a STATIC reservation can only be the first"
                    )));
                }
                let below = &self.reservations[i - 1].role;
                if !is_strict_subrole_of(&r.role, below) {
                    return Err(err(format!(
                        "reservations[{i}]: role '{}' must be a subrole of '{below}'",
                        r.role
                    )));
                }
            }
        }
        Ok(())
    }

    /// A serialisable view in the given JSON form.
    pub fn formatted(&self, format: ResourceFormat) -> FormattedResource<'_> {
        FormattedResource {
            resource: self,
            format,
        }
    }

    /// True when the text form (`name(role):value`) describes this resource exactly.
    fn is_simple(&self) -> bool {
        self.allocation_info.is_none()
            && self.disk.is_none()
            && !self.revocable
            && !self.shared
            && self.provider_id.is_none()
            && match self.reservations.as_slice() {
                [] => true,
                [r] => r.kind == ReservationType::Static,
                _ => false,
            }
    }
}

impl fmt::Display for Resource {
    /// The agent text form `name(role):value` for unreserved or statically reserved
    /// resources (parseable by [`crate::Resources::parse`]); Mesos' verbose form
    /// `name(allocated: r)(reservations: [(DYNAMIC,r,principal)])[Mount(/mnt),id:path]{REV}<SHARED>:value`
    /// otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        f.write_str(&r.name)?;
        if r.is_simple() {
            if let Some(res) = r.reservations.first() {
                write!(f, "({})", res.role)?;
            }
            return write!(f, ":{}", r.value);
        }
        if let Some(role) = r.allocation_info.as_ref().and_then(|a| a.role.as_deref()) {
            write!(f, "(allocated: {role})")?;
        }
        if !r.reservations.is_empty() {
            f.write_str("(reservations: [")?;
            for (i, res) in r.reservations.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                let kind = match res.kind {
                    ReservationType::Static => "STATIC",
                    ReservationType::Dynamic => "DYNAMIC",
                };
                write!(f, "({kind},{}", res.role)?;
                if let Some(p) = &res.principal {
                    write!(f, ",{p}")?;
                }
                f.write_str(")")?;
            }
            f.write_str("])")?;
        }
        if let Some(d) = &r.disk {
            f.write_str("[")?;
            match d.kind() {
                DiskKind::Root => {}
                kind => {
                    write!(f, "{kind:?}")?;
                    if let Some(root) = d.source.as_ref().and_then(DiskSource::root) {
                        write!(f, "({root})")?;
                    }
                }
            }
            if let Some(p) = &d.persistence {
                write!(f, "{}{}", if d.source.is_some() { "," } else { "" }, p.id)?;
                if let Some(v) = &d.volume {
                    write!(f, ":{}", v.container_path)?;
                }
            }
            f.write_str("]")?;
        }
        if r.revocable {
            f.write_str("{REV}")?;
        }
        if r.shared {
            f.write_str("<SHARED>")?;
        }
        write!(f, ":{}", r.value)
    }
}

// ---------------------------------------------------------------------------------------
// JSON

/// An empty message (`revocable: {}`, `shared: {}`); tolerates unknown fields.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct LegacyReservation {
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    labels: Option<Labels>,
}

#[derive(Deserialize)]
struct ResourceWire {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<ValueType>,
    #[serde(default)]
    scalar: Option<Scalar>,
    #[serde(default)]
    ranges: Option<Ranges>,
    #[serde(default)]
    set: Option<Set>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    reservation: Option<LegacyReservation>,
    #[serde(default)]
    reservations: Vec<ReservationInfo>,
    #[serde(default)]
    allocation_info: Option<AllocationInfo>,
    #[serde(default)]
    disk: Option<DiskInfo>,
    #[serde(default)]
    revocable: Option<Empty>,
    #[serde(default)]
    shared: Option<Empty>,
    #[serde(default)]
    provider_id: Option<ResourceProviderId>,
}

impl TryFrom<ResourceWire> for Resource {
    type Error = String;

    fn try_from(w: ResourceWire) -> Result<Self, String> {
        let name = w.name;
        let err = |reason: &str| format!("resource '{name}': {reason}");
        // `type` is required by Mesos; tolerate its absence when exactly one value is set.
        let kind = match w.kind {
            Some(k) => k,
            None => match (&w.scalar, &w.ranges, &w.set) {
                (Some(_), None, None) => ValueType::Scalar,
                (None, Some(_), None) => ValueType::Ranges,
                (None, None, Some(_)) => ValueType::Set,
                _ => return Err(err("missing field 'type'")),
            },
        };
        let value = match kind {
            ValueType::Scalar => ResourceValue::Scalar(
                w.scalar
                    .ok_or_else(|| err("type SCALAR requires field 'scalar'"))?,
            ),
            ValueType::Ranges => ResourceValue::Ranges(
                w.ranges
                    .ok_or_else(|| err("type RANGES requires field 'ranges'"))?,
            ),
            ValueType::Set => {
                ResourceValue::Set(w.set.ok_or_else(|| err("type SET requires field 'set'"))?)
            }
            ValueType::Text => return Err(err("type TEXT is not allowed for resources")),
        };
        let reservations = if !w.reservations.is_empty() {
            // Post-refinement (or endpoint) form: `reservations` wins over `role`.
            w.reservations
        } else {
            match (w.role.as_deref(), w.reservation) {
                (None | Some(DEFAULT_ROLE), None) => Vec::new(),
                (None | Some(DEFAULT_ROLE), Some(_)) => {
                    return Err(err("'reservation' is set but 'role' is '*' (unreserved)"));
                }
                (Some(role), None) => vec![ReservationInfo::new_static(role)],
                (Some(role), Some(r)) => {
                    vec![ReservationInfo::new_dynamic(role, r.principal, r.labels)]
                }
            }
        };
        Ok(Resource {
            name,
            value,
            reservations,
            allocation_info: w.allocation_info,
            disk: w.disk,
            revocable: w.revocable.is_some(),
            shared: w.shared.is_some(),
            provider_id: w.provider_id,
        })
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = ResourceWire::deserialize(d)?;
        Resource::try_from(w).map_err(serde::de::Error::custom)
    }
}

#[derive(Serialize)]
struct LegacyReservationOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<&'a Labels>,
}

#[derive(Serialize)]
struct ResourceOut<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: ValueType,
    #[serde(skip_serializing_if = "Option::is_none")]
    scalar: Option<&'a Scalar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ranges: Option<&'a Ranges>,
    #[serde(skip_serializing_if = "Option::is_none")]
    set: Option<&'a Set>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation: Option<LegacyReservationOut<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    reservations: &'a [ReservationInfo],
    #[serde(skip_serializing_if = "Option::is_none")]
    allocation_info: Option<&'a AllocationInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk: Option<&'a DiskInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revocable: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shared: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_id: Option<&'a ResourceProviderId>,
}

/// A [`Resource`] written in a chosen [`ResourceFormat`].
#[derive(Debug, Clone, Copy)]
pub struct FormattedResource<'a> {
    resource: &'a Resource,
    format: ResourceFormat,
}

impl Serialize for FormattedResource<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.resource;
        let (scalar, ranges, set) = match &r.value {
            ResourceValue::Scalar(v) => (Some(v), None, None),
            ResourceValue::Ranges(v) => (None, Some(v), None),
            ResourceValue::Set(v) => (None, None, Some(v)),
        };
        let single = match r.reservations.as_slice() {
            [one] => Some(one),
            _ => None,
        };
        let (role, reservation, reservations) = match self.format {
            ResourceFormat::PostReservationRefinement => (None, None, r.reservations.as_slice()),
            ResourceFormat::Endpoint | ResourceFormat::PreReservationRefinement => {
                let role = match r.reservations.as_slice() {
                    [] => Some(DEFAULT_ROLE),
                    [one] => Some(one.role.as_str()),
                    _ => None,
                };
                let reservation = single
                    .filter(|one| one.kind == ReservationType::Dynamic)
                    .map(|one| LegacyReservationOut {
                        principal: one.principal.as_ref(),
                        labels: one.labels.as_ref(),
                    });
                let keep_stack =
                    self.format == ResourceFormat::Endpoint || r.reservations.len() > 1;
                let stack: &[ReservationInfo] = if keep_stack { &r.reservations } else { &[] };
                (role, reservation, stack)
            }
        };
        ResourceOut {
            name: &r.name,
            kind: r.value_type(),
            scalar,
            ranges,
            set,
            role,
            reservation,
            reservations,
            allocation_info: r.allocation_info.as_ref(),
            disk: r.disk.as_ref(),
            revocable: r.revocable.then_some(Empty {}),
            shared: r.shared.then_some(Empty {}),
            provider_id: r.provider_id.as_ref(),
        }
        .serialize(s)
    }
}

impl Serialize for Resource {
    /// Writes the [`ResourceFormat::Endpoint`] form.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.formatted(ResourceFormat::Endpoint).serialize(s)
    }
}

/// Applies `default_role` to a JSON resource that has neither `role` nor
/// `reservations` (Mesos `--resources` JSON with `--default_role`).
pub(crate) fn apply_default_role_json(resource: &mut Map<String, Json>, default_role: &str) {
    if default_role != DEFAULT_ROLE
        && !resource.contains_key("role")
        && !resource.contains_key("reservations")
    {
        resource.insert("role".into(), Json::String(default_role.into()));
    }
}
