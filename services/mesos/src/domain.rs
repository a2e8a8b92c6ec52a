//! Fault domains: `{"fault_domain":{"region":{"name":"aws-us-east-1"},"zone":{"name":"aws-us-east-1a"}}}`.

use serde::{Deserialize, Serialize};

/// A named region or zone: `{"name":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DomainName {
    /// The name.
    pub name: String,
}

/// `DomainInfo.FaultDomain`: both region and zone are required by Mesos.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaultDomain {
    /// `region{name}`.
    pub region: DomainName,
    /// `zone{name}`.
    pub zone: DomainName,
}

/// `DomainInfo`, carried by masters, agents and offers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DomainInfo {
    /// The fault domain, if the node has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_domain: Option<FaultDomain>,
}

impl DomainInfo {
    /// A domain in `region` / `zone`.
    pub fn new(region: impl Into<String>, zone: impl Into<String>) -> Self {
        Self {
            fault_domain: Some(FaultDomain {
                region: DomainName {
                    name: region.into(),
                },
                zone: DomainName { name: zone.into() },
            }),
        }
    }

    /// The region name, if set.
    pub fn region(&self) -> Option<&str> {
        self.fault_domain.as_ref().map(|f| f.region.name.as_str())
    }

    /// The zone name, if set.
    pub fn zone(&self) -> Option<&str> {
        self.fault_domain.as_ref().map(|f| f.zone.name.as_str())
    }

    /// True when both are in the same region, or neither has a fault domain (Mesos
    /// treats an agent without a domain as local to a master without one). A
    /// framework without `REGION_AWARE` is offered only agents local to the master.
    pub fn same_region(&self, other: &DomainInfo) -> bool {
        self.region() == other.region()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form() {
        let json =
            r#"{"fault_domain":{"region":{"name":"us-east-1"},"zone":{"name":"us-east-1a"}}}"#;
        let d: DomainInfo = serde_json::from_str(json).unwrap();
        assert_eq!(d, DomainInfo::new("us-east-1", "us-east-1a"));
        assert_eq!(d.region(), Some("us-east-1"));
        assert_eq!(d.zone(), Some("us-east-1a"));
        assert_eq!(serde_json::to_string(&d).unwrap(), json);
        assert_eq!(serde_json::to_string(&DomainInfo::default()).unwrap(), "{}");
        assert!(d.same_region(&DomainInfo::new("us-east-1", "us-east-1b")));
        assert!(!d.same_region(&DomainInfo::default()));
        let e = serde_json::from_str::<DomainInfo>(r#"{"fault_domain":{"region":{"name":"r"}}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("zone"), "{e}");
    }
}
