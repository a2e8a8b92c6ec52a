//! [`DetectedResources`]: the plain result of detection, its Mesos renderings, and the
//! comparison that finds drift between two detections.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{FaultDomain, Gpu, MountDisk, PortRanges, RootDisk};

/// The unreserved Mesos role.
pub const UNRESERVED_ROLE: &str = "*";

/// What this agent advertises. Plain data: the agent converts it to Mesos `Resource` /
/// `Attribute` / `DomainInfo` values; [`to_mesos_resources_text`](Self::to_mesos_resources_text),
/// [`to_mesos_attributes_text`](Self::to_mesos_attributes_text) and
/// [`to_mesos_resources_json`](Self::to_mesos_resources_json) render the forms a Mesos
/// agent takes on its command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectedResources {
    /// `*` (unreserved) on private agents; the public role (`slave_public`) on public
    /// agents, to which *every* resource is statically reserved.
    pub role: String,
    /// CPUs (may be fractional under a cgroup quota; 3 decimals).
    pub cpus: f64,
    /// Memory, MiB.
    pub mem_mib: u64,
    /// The work dir's disk (Mesos ROOT disk).
    pub root_disk: RootDisk,
    /// MOUNT disks, sorted by mount point.
    pub mount_disks: Vec<MountDisk>,
    /// Port ranges.
    pub ports: PortRanges,
    /// NVIDIA GPUs, sorted by PCI address; `gpus` is their count.
    pub gpus: Vec<Gpu>,
    /// Attributes, name → value (already in Mesos attribute text form).
    pub attributes: BTreeMap<String, String>,
    /// Region and zone, when a fault-domain-detect script is configured.
    pub fault_domain: Option<FaultDomain>,
}

/// A Mesos scalar as Mesos prints it: integers without a fraction, else up to 3 decimals.
pub fn format_scalar(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

impl DetectedResources {
    /// Number of GPUs.
    pub fn gpu_count(&self) -> usize {
        self.gpus.len()
    }

    fn name(&self, name: &str) -> String {
        if self.role == UNRESERVED_ROLE {
            name.to_owned()
        } else {
            format!("{name}({})", self.role)
        }
    }

    /// The Mesos agent `--resources` text form:
    ///
    /// `cpus:4;mem:3072;disk:10240;ports:[1025-2180,2182-3887];gpus:2;disk[MOUNT:/dcos/volume0]:2048`
    ///
    /// On a public agent every name carries the role: `cpus(slave_public):4;…`.
    /// `gpus` is left out when there are none. MOUNT disks use Mesos' own display form
    /// for a disk source (`disk(role)[MOUNT:<root>]:<MiB>`, as Mesos logs them); Mesos'
    /// flag parser reads only `name(role):value`, so a real Mesos agent must be given
    /// MOUNT disks in JSON — see [`to_mesos_resources_json`](Self::to_mesos_resources_json).
    pub fn to_mesos_resources_text(&self) -> String {
        let mut parts = vec![
            format!("{}:{}", self.name("cpus"), format_scalar(self.cpus)),
            format!("{}:{}", self.name("mem"), self.mem_mib),
            format!("{}:{}", self.name("disk"), self.root_disk.size_mib),
            format!("{}:{}", self.name("ports"), self.ports),
        ];
        if !self.gpus.is_empty() {
            parts.push(format!("{}:{}", self.name("gpus"), self.gpus.len()));
        }
        for d in &self.mount_disks {
            parts.push(format!(
                "{}[MOUNT:{}]:{}",
                self.name("disk"),
                d.root.display(),
                d.size_mib
            ));
        }
        parts.join(";")
    }

    /// The Mesos agent `--attributes` text form, sorted by name:
    /// `disk_type:ssd;gpu_model:NVIDIA_A100-SXM4-40GB;public_ip:true;rack:r1`.
    pub fn to_mesos_attributes_text(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.attributes.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            let _ = write!(out, "{k}:{v}");
        }
        out
    }

    /// The resources as a Mesos `Resource` JSON array (what DC/OS wrote into
    /// `MESOS_RESOURCES`), including MOUNT disks
    /// (`"disk":{"source":{"type":"MOUNT","mount":{"root":..}}}`). Reserved resources carry
    /// `"reservations":[{"type":"STATIC","role":..}]`.
    pub fn to_mesos_resources_json(&self) -> serde_json::Value {
        use serde_json::{Value, json};
        let reservations =
            (self.role != UNRESERVED_ROLE).then(|| json!([{"type": "STATIC", "role": self.role}]));
        let with_role = |mut v: Value| {
            if let (Some(r), Some(obj)) = (&reservations, v.as_object_mut()) {
                obj.insert("reservations".into(), r.clone());
            }
            v
        };
        let scalar = |name: &str, value: f64| {
            with_role(json!({"name": name, "type": "SCALAR", "scalar": {"value": value}}))
        };
        let mut out = vec![
            scalar("cpus", self.cpus),
            scalar("mem", self.mem_mib as f64),
            scalar("disk", self.root_disk.size_mib as f64),
            with_role(json!({
                "name": "ports",
                "type": "RANGES",
                "ranges": {"range": self.ports.ranges().iter()
                    .map(|r| json!({"begin": r.begin, "end": r.end}))
                    .collect::<Vec<_>>()},
            })),
        ];
        if !self.gpus.is_empty() {
            out.push(scalar("gpus", self.gpus.len() as f64));
        }
        for d in &self.mount_disks {
            let mut v = scalar("disk", d.size_mib as f64);
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    "disk".into(),
                    json!({"source": {"type": "MOUNT", "mount": {"root": d.root.to_string_lossy()}}}),
                );
            }
            out.push(v);
        }
        Value::Array(out)
    }
}

/// One difference between the cached and a new detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftItem {
    /// What differs, e.g. `cpus`, `attributes.rack`, `mount_disks[/dcos/volume1]`.
    pub what: String,
    /// The cached (advertised) value.
    pub cached: String,
    /// The newly detected value.
    pub detected: String,
}

/// Differences that matter between two detections.
///
/// Disk *sizes* are not compared: they come from free space, which moves as tasks write;
/// a disk's file-system size, its type, and which MOUNT disks exist are compared.
pub fn compare(cached: &DetectedResources, detected: &DetectedResources) -> Vec<DriftItem> {
    let mut items = Vec::new();
    let mut diff = |what: &str, a: String, b: String| {
        if a != b {
            items.push(DriftItem {
                what: what.to_owned(),
                cached: a,
                detected: b,
            });
        }
    };
    let opt = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    diff("role", cached.role.clone(), detected.role.clone());
    diff(
        "cpus",
        format_scalar(cached.cpus),
        format_scalar(detected.cpus),
    );
    diff(
        "mem",
        cached.mem_mib.to_string(),
        detected.mem_mib.to_string(),
    );
    diff(
        "ports",
        cached.ports.to_string(),
        detected.ports.to_string(),
    );
    let gpus = |r: &DetectedResources| {
        let models: Vec<&str> = r
            .gpus
            .iter()
            .map(|g| g.model.as_deref().unwrap_or("unknown"))
            .collect();
        format!("{} [{}]", r.gpus.len(), models.join(", "))
    };
    diff("gpus", gpus(cached), gpus(detected));
    let dom = |r: &DetectedResources| {
        opt(r
            .fault_domain
            .as_ref()
            .map(|d| format!("{}/{}", d.region, d.zone)))
    };
    diff("fault_domain", dom(cached), dom(detected));
    diff(
        "root_disk.path",
        cached.root_disk.path.display().to_string(),
        detected.root_disk.path.display().to_string(),
    );
    diff(
        "root_disk.fs_total_mib",
        cached.root_disk.fs_total_mib.to_string(),
        detected.root_disk.fs_total_mib.to_string(),
    );
    diff(
        "root_disk.disk_type",
        opt(cached.root_disk.disk_type.map(|t| t.to_string())),
        opt(detected.root_disk.disk_type.map(|t| t.to_string())),
    );
    let roots: std::collections::BTreeSet<_> = cached
        .mount_disks
        .iter()
        .chain(&detected.mount_disks)
        .map(|d| d.root.clone())
        .collect();
    for root in roots {
        let a = cached.mount_disks.iter().find(|d| d.root == root);
        let b = detected.mount_disks.iter().find(|d| d.root == root);
        let label = format!("mount_disks[{}]", root.display());
        let desc = |d: Option<&MountDisk>| match d {
            None => "absent".to_owned(),
            Some(d) => format!(
                "file system of {} MiB, {}",
                d.fs_total_mib,
                d.disk_type.map_or("unknown type", |t| t.as_str())
            ),
        };
        diff(&label, desc(a), desc(b));
    }
    let names: std::collections::BTreeSet<_> = cached
        .attributes
        .keys()
        .chain(detected.attributes.keys())
        .collect();
    for name in names {
        diff(
            &format!("attributes.{name}"),
            opt(cached.attributes.get(name).cloned()),
            opt(detected.attributes.get(name).cloned()),
        );
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(format_scalar(4.0), "4");
        assert_eq!(format_scalar(1.5), "1.5");
        assert_eq!(format_scalar(0.001), "0.001");
        assert_eq!(format_scalar(2.25), "2.25");
    }
}
