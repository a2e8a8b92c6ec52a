//! [`AllocatorConfig`] and the Mesos `Filters.refuse_seconds` rules.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use basalt_mesos::{Scalar, validate_role};

use super::error::AllocatorError;

/// Mesos' default `Filters.refuse_seconds` (a DECLINE or the unused part of an ACCEPT
/// without `filters`).
pub const DEFAULT_REFUSE_SECONDS: f64 = 5.0;

/// The longest filter Mesos installs: 365 days (`refuse_seconds` is capped to it).
pub const MAX_REFUSE_SECONDS: f64 = 31_536_000.0;

/// The offer filter a `refuse_seconds` value asks for, as Mesos' master computes it:
/// absent → 5 s; NaN or infinite → 5 s; above 365 days → 365 days; zero or negative →
/// no filter (`None`).
pub fn refuse_filter(refuse_seconds: Option<f64>) -> Option<Duration> {
    let secs = match refuse_seconds {
        None => DEFAULT_REFUSE_SECONDS,
        Some(s) if !s.is_finite() => DEFAULT_REFUSE_SECONDS,
        Some(s) => s.min(MAX_REFUSE_SECONDS),
    };
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Allocator settings (the master flags of Mesos' hierarchical allocator).
#[derive(Debug, Clone, PartialEq)]
pub struct AllocatorConfig {
    /// Mesos `--filter_gpu_resources` / DC/OS `gpus_are_scarce`: agents with GPUs (in
    /// their total) are offered only to frameworks with the `GPU_RESOURCES`
    /// capability. Default `true` (the DC/OS default).
    pub gpus_are_scarce: bool,
    /// Mesos `--fair_sharing_excluded_resource_names`: resources that do not count
    /// towards dominant shares. Default `["gpus"]` (what DC/OS sets).
    pub fair_sharing_excluded_resource_names: Vec<String>,
    /// Mesos `--weights`: role → weight (> 0, default 1). A role's dominant share is
    /// divided by its weight before roles are sorted.
    pub role_weights: BTreeMap<String, f64>,
    /// Mesos `--min_allocatable_resources`: resources are offered only when they hold
    /// at least every quantity of one of these sets. Default `cpus:0.01 | mem:32`.
    /// Empty: any non-empty resources are offerable.
    pub min_allocatable_resources: Vec<BTreeMap<String, Scalar>>,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        Self {
            gpus_are_scarce: true,
            fair_sharing_excluded_resource_names: vec!["gpus".to_owned()],
            role_weights: BTreeMap::new(),
            min_allocatable_resources: vec![
                BTreeMap::from([("cpus".to_owned(), Scalar::from_milli(10))]),
                BTreeMap::from([("mem".to_owned(), Scalar::from_int(32))]),
            ],
        }
    }
}

impl AllocatorConfig {
    /// Checks weights (finite, > 0, valid role names) and minimum quantities (> 0).
    pub fn validate(&self) -> Result<(), AllocatorError> {
        for (role, weight) in &self.role_weights {
            validate_weight(role, *weight)?;
        }
        for (i, set) in self.min_allocatable_resources.iter().enumerate() {
            if set.is_empty() {
                return Err(AllocatorError::InvalidMinAllocatable {
                    index: i,
                    reason: "a quantity set cannot be empty".into(),
                });
            }
            if let Some((name, _)) = set.iter().find(|(_, v)| !v.is_positive()) {
                return Err(AllocatorError::InvalidMinAllocatable {
                    index: i,
                    reason: format!("quantity of '{name}' must be positive"),
                });
            }
        }
        Ok(())
    }

    pub(super) fn excluded_names(&self) -> BTreeSet<String> {
        self.fair_sharing_excluded_resource_names
            .iter()
            .cloned()
            .collect()
    }
}

/// A role weight must name a valid role and be finite and positive.
pub(super) fn validate_weight(role: &str, weight: f64) -> Result<(), AllocatorError> {
    validate_role(role).map_err(|source| AllocatorError::InvalidRole {
        role: role.to_owned(),
        source,
    })?;
    if !weight.is_finite() || weight <= 0.0 {
        return Err(AllocatorError::InvalidWeight {
            role: role.to_owned(),
            weight,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuse_seconds_rules() {
        assert_eq!(refuse_filter(None), Some(Duration::from_secs(5)));
        assert_eq!(refuse_filter(Some(f64::NAN)), Some(Duration::from_secs(5)));
        assert_eq!(refuse_filter(Some(0.0)), None);
        assert_eq!(refuse_filter(Some(-3.0)), None);
        assert_eq!(refuse_filter(Some(1.5)), Some(Duration::from_millis(1500)));
        assert_eq!(
            refuse_filter(Some(1e12)),
            Some(Duration::from_secs(31_536_000))
        );
    }

    #[test]
    fn config_validation_names_the_field() {
        AllocatorConfig::default().validate().unwrap();
        let mut c = AllocatorConfig::default();
        c.role_weights.insert("web".into(), 0.0);
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("'web'"), "{e}");
        let mut c = AllocatorConfig::default();
        c.role_weights.insert("a//b".into(), 1.0);
        assert!(matches!(
            c.validate(),
            Err(AllocatorError::InvalidRole { .. })
        ));
        let c = AllocatorConfig {
            min_allocatable_resources: vec![BTreeMap::from([("cpus".into(), Scalar::ZERO)])],
            ..AllocatorConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("cpus"), "{e}");
    }
}
