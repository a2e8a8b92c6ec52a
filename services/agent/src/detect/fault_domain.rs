//! Fault domain from the fault-domain-detect script (DC/OS contract: an executable that
//! prints `{"fault_domain":{"region":{"name":"<region>"},"zone":{"name":"<zone>"}}}` and
//! exits 0; DC/OS exported it as `MESOS_DOMAIN`).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DetectError, ScriptRunner};

/// Region and zone of this agent (Mesos `DomainInfo.fault_domain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultDomain {
    /// Region name, e.g. `aws/us-west-2`.
    pub region: String,
    /// Zone name, e.g. `aws/us-west-2a`.
    pub zone: String,
}

#[derive(Deserialize, Serialize)]
struct Named {
    name: String,
}

#[derive(Deserialize, Serialize)]
struct Inner {
    region: Named,
    zone: Named,
}

#[derive(Deserialize, Serialize)]
struct Outer {
    fault_domain: Inner,
}

impl FaultDomain {
    /// Mesos `DomainInfo` JSON, exactly the script contract:
    /// `{"fault_domain":{"region":{"name":..},"zone":{"name":..}}}` (the agent's `--domain`).
    pub fn to_mesos_json(&self) -> serde_json::Value {
        serde_json::json!({
            "fault_domain": {
                "region": {"name": self.region},
                "zone": {"name": self.zone},
            }
        })
    }

    /// Parses the script's stdout; the error text says what is wrong.
    pub fn parse(stdout: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(stdout).map_err(|e| format!("output is not UTF-8: {e}"))?;
        if text.trim().is_empty() {
            return Err("printed nothing; expected {\"fault_domain\":{\"region\":{\"name\":..},\"zone\":{\"name\":..}}}".into());
        }
        let outer: Outer = serde_json::from_str(text.trim()).map_err(|e| {
            format!(
                "malformed output ({e}); expected {{\"fault_domain\":{{\"region\":{{\"name\":..}},\"zone\":{{\"name\":..}}}}}}, got {:?}",
                excerpt(text)
            )
        })?;
        let region = outer.fault_domain.region.name.trim().to_owned();
        let zone = outer.fault_domain.zone.name.trim().to_owned();
        if region.is_empty() {
            return Err("fault_domain.region.name is empty".into());
        }
        if zone.is_empty() {
            return Err("fault_domain.zone.name is empty".into());
        }
        Ok(FaultDomain { region, zone })
    }
}

fn excerpt(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

/// Runs `script` and parses its output; every failure names the script.
pub fn run_script(
    runner: &dyn ScriptRunner,
    script: &Path,
    timeout: Duration,
) -> Result<FaultDomain, DetectError> {
    let fail = |reason: String| DetectError::FaultDomainScript {
        script: script.to_path_buf(),
        reason,
    };
    let out = runner.run(script, timeout).map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            fail(format!("timed out: {e}"))
        } else {
            fail(format!("could not run: {e}"))
        }
    })?;
    if !out.success {
        return Err(fail(format!(
            "{}; stderr: {:?}",
            out.status,
            excerpt(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    let domain = FaultDomain::parse(&out.stdout).map_err(fail)?;
    tracing::info!(script = %script.display(), region = %domain.region, zone = %domain.zone, "fault domain detected");
    Ok(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_contract() {
        let d = FaultDomain::parse(br#"{"fault_domain":{"region":{"name":"aws/us-west-2"},"zone":{"name":"aws/us-west-2a"}}}"#).unwrap();
        assert_eq!(d.region, "aws/us-west-2");
        assert_eq!(d.zone, "aws/us-west-2a");
        let back: FaultDomain =
            FaultDomain::parse(d.to_mesos_json().to_string().as_bytes()).unwrap();
        assert_eq!(back, d);
        assert!(
            FaultDomain::parse(b"")
                .unwrap_err()
                .contains("printed nothing")
        );
        assert!(
            FaultDomain::parse(b"region=r zone=z")
                .unwrap_err()
                .contains("malformed output")
        );
        assert!(
            FaultDomain::parse(br#"{"fault_domain":{"region":{"name":"r"}}}"#)
                .unwrap_err()
                .contains("zone")
        );
        assert!(
            FaultDomain::parse(br#"{"fault_domain":{"region":{"name":""},"zone":{"name":"z"}}}"#)
                .unwrap_err()
                .contains("region.name is empty")
        );
    }
}
