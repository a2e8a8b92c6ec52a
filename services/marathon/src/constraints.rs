//! Offer matching (pure): does an offer fit one instance of an app — resources in the
//! accepted roles, host ports (`requirePorts` or picked from the offer's ranges), and
//! the placement constraints against the instances already placed.
//!
//! Field values: `hostname`/`@hostname` → the agent hostname, `@region`/`@zone` → its
//! fault domain, anything else → the agent attribute formatted Mesos-style (text as is,
//! scalars with up to 3 decimals, ranges `[a-b,c-d]`, sets `{a,b}`). An offer without
//! the field satisfies only `UNLIKE`.

use std::collections::{BTreeMap, BTreeSet};

use basalt_mesos::{Attribute, DomainInfo, Ranges, Resource, Value};
use regex::Regex;

use crate::app::AppDefinition;
use crate::state::Instance;

/// What matching needs to know about an offer.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferView {
    /// Agent hostname.
    pub hostname: String,
    /// Attributes, formatted.
    pub attributes: BTreeMap<String, String>,
    /// Fault domain region.
    pub region: Option<String>,
    /// Fault domain zone.
    pub zone: Option<String>,
    /// The offered resources.
    pub resources: Vec<Resource>,
}

/// Formats an attribute value the way constraints compare it.
pub fn format_attribute(a: &Attribute) -> String {
    match &a.value {
        Value::Text(t) => t.clone(),
        Value::Scalar(s) => s.to_string(),
        Value::Ranges(r) => r.to_string(),
        Value::Set(s) => s.to_string(),
    }
}

impl OfferView {
    /// Builds the view from an offer's parts.
    pub fn new(
        hostname: &str,
        attributes: &[Attribute],
        domain: Option<&DomainInfo>,
        resources: Vec<Resource>,
    ) -> OfferView {
        OfferView {
            hostname: hostname.to_string(),
            attributes: attributes
                .iter()
                .map(|a| (a.name.clone(), format_attribute(a)))
                .collect(),
            region: domain.and_then(|d| d.region()).map(str::to_string),
            zone: domain.and_then(|d| d.zone()).map(str::to_string),
            resources,
        }
    }
}

/// The value of a constraint field on an agent.
fn field_of<'a>(
    field: &str,
    host: &'a str,
    attrs: &'a BTreeMap<String, String>,
    region: Option<&'a str>,
    zone: Option<&'a str>,
) -> Option<&'a str> {
    match field {
        "hostname" | "@hostname" => Some(host),
        "@region" => region,
        "@zone" => zone,
        other => attrs.get(other).map(String::as_str),
    }
}

fn offer_field<'a>(field: &str, o: &'a OfferView) -> Option<&'a str> {
    field_of(
        field,
        &o.hostname,
        &o.attributes,
        o.region.as_deref(),
        o.zone.as_deref(),
    )
}

fn instance_field<'a>(field: &str, i: &'a Instance) -> Option<&'a str> {
    field_of(
        field,
        &i.host,
        &i.attributes,
        i.region.as_deref(),
        i.zone.as_deref(),
    )
}

fn full_match(pattern: &str, value: &str) -> bool {
    Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

/// Whether placing one more instance on `offer` keeps constraint `c`, given the app's
/// other live instances `placed`.
pub fn meets_constraint(c: &[String], offer: &OfferView, placed: &[&Instance]) -> bool {
    let (Some(field), Some(op)) = (c.first(), c.get(1)) else {
        return false;
    };
    let value = c.get(2);
    let Some(mine) = offer_field(field, offer) else {
        return op == "UNLIKE";
    };
    let count = |v: &str| {
        placed
            .iter()
            .filter(|i| instance_field(field, i) == Some(v))
            .count()
    };
    match op.as_str() {
        "UNIQUE" => count(mine) == 0,
        "CLUSTER" => match value {
            Some(v) if !v.is_empty() => mine == v,
            _ => placed
                .iter()
                .filter_map(|i| instance_field(field, i))
                .all(|v| v == mine),
        },
        "IS" => value.is_some_and(|v| v == mine),
        "LIKE" => value.is_some_and(|p| full_match(p, mine)),
        "UNLIKE" => value.is_some_and(|p| !full_match(p, mine)),
        "MAX_PER" => value
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| count(mine) < n),
        "GROUP_BY" => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for i in placed {
                if let Some(v) = instance_field(field, i) {
                    *counts.entry(v).or_default() += 1;
                }
            }
            let expected = value.and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            let here = counts.get(mine).copied().unwrap_or(0);
            if here == 0 {
                return true;
            }
            if counts.len() < expected {
                return false; // wait for an offer with an unused value
            }
            here <= counts.values().copied().min().unwrap_or(0)
        }
        _ => false,
    }
}

/// What an accepted offer gives one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Host ports, in the app's port order.
    pub ports: Vec<u64>,
    /// The role the resources come from.
    pub role: String,
}

/// Why an offer did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum NoMatch {
    InsufficientCpus,
    InsufficientMemory,
    InsufficientDisk,
    InsufficientGpus,
    InsufficientPorts,
    UnfulfilledConstraint,
}

fn role_ok(app: &AppDefinition, r: &Resource) -> bool {
    let role = r.reservation_role();
    match &app.accepted_resource_roles {
        Some(roles) => roles.iter().any(|x| x == role),
        None => true,
    }
}

fn scalar(resources: &[Resource], name: &str, app: &AppDefinition) -> f64 {
    resources
        .iter()
        .filter(|r| r.name == name && role_ok(app, r) && !r.is_persistent_volume())
        .filter_map(|r| r.scalar_value().map(|s| s.as_f64()))
        .sum()
}

/// Whether one instance of `app` fits `offer` (minus what was already taken from it,
/// given as `used_ports` and the scalar amounts in `used`), and with which ports.
pub fn match_offer(
    app: &AppDefinition,
    offer: &OfferView,
    placed: &[&Instance],
    used: &BTreeMap<&'static str, f64>,
    used_ports: &BTreeSet<u64>,
) -> Result<Placement, NoMatch> {
    let left = |name: &'static str| {
        scalar(&offer.resources, name, app) - used.get(name).copied().unwrap_or(0.0)
    };
    let eps = 1e-6;
    if left("cpus") + eps < app.cpus {
        return Err(NoMatch::InsufficientCpus);
    }
    if left("mem") + eps < app.mem {
        return Err(NoMatch::InsufficientMemory);
    }
    if left("disk") + eps < app.disk {
        return Err(NoMatch::InsufficientDisk);
    }
    if left("gpus") + eps < app.gpus as f64 {
        return Err(NoMatch::InsufficientGpus);
    }
    if !app
        .constraints
        .iter()
        .all(|c| meets_constraint(c, offer, placed))
    {
        return Err(NoMatch::UnfulfilledConstraint);
    }
    let mut ranges = Ranges::default();
    for r in offer
        .resources
        .iter()
        .filter(|r| r.name == "ports" && role_ok(app, r))
    {
        if let Some(rs) = r.ranges_value() {
            ranges = ranges.union(rs);
        }
    }
    let mut taken = used_ports.clone();
    let mut ports = Vec::new();
    let requests = app.host_port_requests();
    for p in &requests {
        if app.require_ports && *p > 0 {
            let p = *p as u64;
            if !ranges.contains_value(p) || taken.contains(&p) {
                return Err(NoMatch::InsufficientPorts);
            }
            taken.insert(p);
            ports.push(p);
        } else {
            let Some(p) = ranges.values().find(|v| !taken.contains(v)) else {
                return Err(NoMatch::InsufficientPorts);
            };
            taken.insert(p);
            ports.push(p);
        }
    }
    let role = offer
        .resources
        .iter()
        .find(|r| r.name == "cpus" && role_ok(app, r))
        .map(|r| r.reservation_role().to_string())
        .unwrap_or_else(|| "*".to_string());
    Ok(Placement { ports, role })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(v: serde_json::Value) -> AppDefinition {
        let mut a = AppDefinition::from_json(v).unwrap();
        a.normalize("/");
        a
    }

    fn offer(host: &str, attrs: &[(&str, &str)], zone: &str) -> OfferView {
        let resources: Vec<Resource> = serde_json::from_value(json!([
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 4}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 4096}},
            {"name": "disk", "type": "SCALAR", "scalar": {"value": 1000}},
            {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31002}]}},
        ]))
        .unwrap();
        OfferView {
            hostname: host.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            region: Some("r1".into()),
            zone: Some(zone.into()),
            resources,
        }
    }

    fn inst(host: &str, zone: &str, rack: &str) -> Instance {
        Instance {
            instance_id: format!("{host}-{zone}"),
            task_id: "t".into(),
            app_id: "/a".into(),
            version: "v".into(),
            agent_id: "a".into(),
            host: host.into(),
            state: "TASK_RUNNING".into(),
            ports: vec![],
            staged_at_ms: 0,
            started_at_ms: None,
            healthy: None,
            killing: false,
            region: Some("r1".into()),
            zone: Some(zone.into()),
            attributes: BTreeMap::from([("rack".to_string(), rack.to_string())]),
            message: None,
            unreachable_since_ms: None,
            ready: false,
            containers: Vec::new(),
        }
    }

    fn ok(c: &[&str], o: &OfferView, placed: &[Instance]) -> bool {
        let c: Vec<String> = c.iter().map(|s| s.to_string()).collect();
        let p: Vec<&Instance> = placed.iter().collect();
        meets_constraint(&c, o, &p)
    }

    #[test]
    fn constraint_operators() {
        let o = offer("h1", &[("rack", "r1")], "z1");
        let on_h1 = [inst("h1", "z1", "r1")];
        assert!(ok(&["hostname", "UNIQUE"], &o, &[]));
        assert!(!ok(&["hostname", "UNIQUE"], &o, &on_h1));
        assert!(ok(&["rack", "CLUSTER", "r1"], &o, &[]));
        assert!(!ok(&["rack", "CLUSTER", "r2"], &o, &[]));
        assert!(ok(&["rack", "LIKE", "r[0-9]"], &o, &[]));
        assert!(!ok(&["rack", "LIKE", "r"], &o, &[]), "LIKE is a full match");
        assert!(!ok(&["rack", "UNLIKE", "r1"], &o, &[]));
        assert!(
            ok(&["missing", "UNLIKE", "x"], &o, &[]),
            "missing attribute: only UNLIKE"
        );
        assert!(!ok(&["missing", "LIKE", ".*"], &o, &[]));
        assert!(ok(&["@zone", "MAX_PER", "2"], &o, &on_h1));
        assert!(!ok(&["@zone", "MAX_PER", "1"], &o, &on_h1));
        assert!(ok(&["@region", "IS", "r1"], &o, &[]));
        assert!(!ok(&["@hostname", "IS", "h2"], &o, &[]));
        // GROUP_BY: z1 already has one, z2 none → z1 waits, z2 fits.
        let spread = [inst("h1", "z1", "r1")];
        assert!(!ok(&["@zone", "GROUP_BY", "2"], &o, &spread));
        assert!(ok(
            &["@zone", "GROUP_BY", "2"],
            &offer("h2", &[], "z2"),
            &spread
        ));
        let balanced = [inst("h1", "z1", "r1"), inst("h2", "z2", "r1")];
        assert!(ok(&["@zone", "GROUP_BY"], &o, &balanced));
    }

    #[test]
    fn resources_and_ports() {
        let o = offer("h1", &[], "z1");
        let a = app(
            json!({"id": "/a", "cmd": "x", "cpus": 1, "mem": 128, "portDefinitions": [{"port": 0}, {"port": 0}]}),
        );
        let p = match_offer(&a, &o, &[], &BTreeMap::new(), &BTreeSet::new()).unwrap();
        assert_eq!(p.ports, vec![31000, 31001]);
        let used = BTreeMap::from([("cpus", 3.5)]);
        assert_eq!(
            match_offer(&a, &o, &[], &used, &BTreeSet::new()),
            Err(NoMatch::InsufficientCpus)
        );
        let taken = BTreeSet::from([31000, 31001]);
        assert_eq!(
            match_offer(&a, &o, &[], &BTreeMap::new(), &taken),
            Err(NoMatch::InsufficientPorts)
        );
        let fixed = app(
            json!({"id": "/a", "cmd": "x", "requirePorts": true, "portDefinitions": [{"port": 31002}]}),
        );
        assert_eq!(
            match_offer(&fixed, &o, &[], &BTreeMap::new(), &BTreeSet::new())
                .unwrap()
                .ports,
            vec![31002]
        );
        let outside = app(
            json!({"id": "/a", "cmd": "x", "requirePorts": true, "portDefinitions": [{"port": 80}]}),
        );
        assert_eq!(
            match_offer(&outside, &o, &[], &BTreeMap::new(), &BTreeSet::new()),
            Err(NoMatch::InsufficientPorts)
        );
        let public =
            app(json!({"id": "/a", "cmd": "x", "acceptedResourceRoles": ["slave_public"]}));
        assert_eq!(
            match_offer(&public, &o, &[], &BTreeMap::new(), &BTreeSet::new()),
            Err(NoMatch::InsufficientCpus)
        );
        let big = app(json!({"id": "/a", "cmd": "x", "mem": 10000}));
        assert_eq!(
            match_offer(&big, &o, &[], &BTreeMap::new(), &BTreeSet::new()),
            Err(NoMatch::InsufficientMemory)
        );
    }
}
