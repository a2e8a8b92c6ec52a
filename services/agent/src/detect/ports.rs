//! Port ranges, DC/OS defaults per agent role.
//!
//! Private agents skip 2181 (ZooKeeper), 3888, 5050/5051 (Mesos), 8080/8081 (Marathon),
//! 8181 (Exhibitor); public agents skip 22 (ssh) and 5051 (the agent itself).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// DC/OS private agents: `[1025-2180,2182-3887,3889-5049,5052-8079,8082-8180,8182-32000]`.
pub const DCOS_PRIVATE_PORTS: &[(u16, u16)] = &[
    (1025, 2180),
    (2182, 3887),
    (3889, 5049),
    (5052, 8079),
    (8082, 8180),
    (8182, 32000),
];

/// DC/OS public agents: `[1-21,23-5050,5052-32000]`.
pub const DCOS_PUBLIC_PORTS: &[(u16, u16)] = &[(1, 21), (23, 5050), (5052, 32000)];

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub begin: u16,
    /// Last port (inclusive).
    pub end: u16,
}

/// Sorted, non-overlapping port ranges. Display and parse use Mesos' range text:
/// `[1025-2180,2182-3887]` (brackets optional on input, a lone `80` means `80-80`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<PortRange>", into = "Vec<PortRange>")]
pub struct PortRanges(Vec<PortRange>);

impl PortRanges {
    /// Validates and sorts ranges: each `1 <= begin <= end`, none overlapping, at least one.
    pub fn new(mut ranges: Vec<PortRange>) -> Result<Self, String> {
        if ranges.is_empty() {
            return Err("no port ranges".into());
        }
        for r in &ranges {
            if r.begin == 0 {
                return Err(format!("range {}-{} includes port 0", r.begin, r.end));
            }
            if r.begin > r.end {
                return Err(format!("range {}-{} ends before it begins", r.begin, r.end));
            }
        }
        ranges.sort();
        for w in ranges.windows(2) {
            if w[1].begin <= w[0].end {
                return Err(format!(
                    "ranges {}-{} and {}-{} overlap",
                    w[0].begin, w[0].end, w[1].begin, w[1].end
                ));
            }
        }
        Ok(PortRanges(ranges))
    }

    fn from_static(r: &[(u16, u16)]) -> Self {
        PortRanges(
            r.iter()
                .map(|&(begin, end)| PortRange { begin, end })
                .collect(),
        )
    }

    /// DC/OS' private-agent default.
    pub fn dcos_private() -> Self {
        Self::from_static(DCOS_PRIVATE_PORTS)
    }

    /// DC/OS' public-agent default.
    pub fn dcos_public() -> Self {
        Self::from_static(DCOS_PUBLIC_PORTS)
    }

    /// The ranges.
    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }

    /// Number of ports covered.
    pub fn count(&self) -> u32 {
        self.0.iter().map(|r| u32::from(r.end - r.begin) + 1).sum()
    }
}

impl TryFrom<Vec<PortRange>> for PortRanges {
    type Error = String;
    fn try_from(v: Vec<PortRange>) -> Result<Self, String> {
        PortRanges::new(v)
    }
}

impl From<PortRanges> for Vec<PortRange> {
    fn from(p: PortRanges) -> Self {
        p.0
    }
}

impl fmt::Display for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}-{}", r.begin, r.end)?;
        }
        f.write_str("]")
    }
}

impl FromStr for PortRanges {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_prefix('[').map_or(Ok(t), |rest| {
            rest.strip_suffix(']')
                .ok_or_else(|| format!("{s:?}: `[` without `]`"))
        })?;
        let mut ranges = Vec::new();
        for part in t.split(',') {
            let part = part.trim();
            let port = |x: &str| -> Result<u16, String> {
                x.trim().parse().map_err(|_| {
                    format!("{part:?} is not a port or `begin-end` range of ports 1-65535")
                })
            };
            let (begin, end) = match part.split_once('-') {
                Some((a, b)) => (port(a)?, port(b)?),
                None => {
                    let p = port(part)?;
                    (p, p)
                }
            };
            ranges.push(PortRange { begin, end });
        }
        PortRanges::new(ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_as_dcos_wrote_them() {
        assert_eq!(
            PortRanges::dcos_private().to_string(),
            "[1025-2180,2182-3887,3889-5049,5052-8079,8082-8180,8182-32000]"
        );
        assert_eq!(
            PortRanges::dcos_public().to_string(),
            "[1-21,23-5050,5052-32000]"
        );
        // Every default is valid under the same rules as an override.
        PortRanges::new(PortRanges::dcos_private().ranges().to_vec()).unwrap();
        PortRanges::new(PortRanges::dcos_public().ranges().to_vec()).unwrap();
    }

    #[test]
    fn parse_round_trip_and_errors() {
        let p: PortRanges = "[31000-32000, 80]".parse().unwrap();
        assert_eq!(p.to_string(), "[80-80,31000-32000]");
        assert_eq!(p.count(), 1002);
        assert_eq!(
            "1-21,23-5050".parse::<PortRanges>().unwrap().count(),
            21 + 5028
        );
        for (bad, want) in [
            ("", "is not a port"),
            ("[1-2", "without `]`"),
            ("0-10", "port 0"),
            ("10-5", "ends before"),
            ("1-100,50-60", "overlap"),
            ("1-70000", "is not a port"),
            ("a-b", "is not a port"),
        ] {
            let err = bad.parse::<PortRanges>().unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn serde_validates() {
        let p: PortRanges = serde_json::from_str(r#"[{"begin":1,"end":5}]"#).unwrap();
        assert_eq!(p.count(), 5);
        assert!(serde_json::from_str::<PortRanges>(r#"[{"begin":5,"end":1}]"#).is_err());
    }
}
