//! DRF bookkeeping: interned resource names, scalar quantity vectors, dominant shares
//! and the totally ordered [`ShareKey`] the sorters are keyed by.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use basalt_mesos::Resources;

/// A dominant share (or weighted share) with a total order (`f64::total_cmp`), so it can
/// key a `BTreeSet`. Shares are computed from exact fixed-point quantities, so the
/// same state always yields the same key.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ShareKey(pub(super) f64);

impl PartialEq for ShareKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ShareKey {}

impl PartialOrd for ShareKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShareKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A sparse scalar quantity: (name id, thousandths).
pub(super) type Quantity = (usize, i64);

/// Interned scalar resource names and which of them are excluded from fair sharing.
#[derive(Debug, Default)]
pub(super) struct Names {
    ids: HashMap<String, usize>,
    names: Vec<String>,
    excluded: Vec<bool>,
    excluded_names: BTreeSet<String>,
}

impl Names {
    pub(super) fn new(excluded_names: BTreeSet<String>) -> Self {
        Self {
            excluded_names,
            ..Self::default()
        }
    }

    pub(super) fn id(&mut self, name: &str) -> usize {
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.names.len();
        self.ids.insert(name.to_owned(), i);
        self.names.push(name.to_owned());
        self.excluded.push(self.excluded_names.contains(name));
        i
    }

    pub(super) fn name(&self, id: usize) -> &str {
        self.names.get(id).map_or("", String::as_str)
    }

    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// The scalar quantities of `res` (all reservations, revocable or not), by name.
    pub(super) fn quantities(&mut self, res: &Resources) -> Vec<Quantity> {
        let mut out: Vec<Quantity> = Vec::with_capacity(res.len());
        for r in res.iter() {
            let Some(v) = r.scalar_value() else { continue };
            let id = self.id(&r.name);
            if let Some(q) = out.iter_mut().find(|q| q.0 == id) {
                q.1 += v.milli();
            } else {
                out.push((id, v.milli()));
            }
        }
        out
    }

    /// max over non-excluded names of `alloc / total` (names with no total skipped).
    pub(super) fn dominant_share(&self, alloc: &[i64], totals: &[i64]) -> f64 {
        let mut share = 0.0_f64;
        for (i, &a) in alloc.iter().enumerate() {
            if a <= 0 || self.excluded.get(i).copied().unwrap_or(false) {
                continue;
            }
            let t = totals.get(i).copied().unwrap_or(0);
            if t > 0 {
                share = share.max(a as f64 / t as f64);
            }
        }
        share
    }
}

/// `dense += sign * sparse`, growing `dense` as needed.
pub(super) fn apply(dense: &mut Vec<i64>, sparse: &[Quantity], sign: i64) {
    for &(id, v) in sparse {
        if dense.len() <= id {
            dense.resize(id + 1, 0);
        }
        dense[id] += sign * v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominant_share_skips_excluded_and_zero_totals() {
        let mut n = Names::new(BTreeSet::from(["gpus".to_owned()]));
        let res = Resources::parse("cpus:2;mem:512;gpus:4;ports:[1-10]").unwrap();
        let q = n.quantities(&res);
        assert_eq!(q.len(), 3, "ports are not scalar");
        let mut alloc = Vec::new();
        apply(&mut alloc, &q, 1);
        let mut totals = Vec::new();
        let t = n.quantities(&Resources::parse("cpus:10;mem:1024;gpus:4").unwrap());
        apply(&mut totals, &t, 1);
        // cpus 0.2, mem 0.5, gpus 1.0 but excluded.
        assert!((n.dominant_share(&alloc, &totals) - 0.5).abs() < 1e-12);
        apply(&mut alloc, &q, -1);
        assert_eq!(n.dominant_share(&alloc, &totals), 0.0);
        assert_eq!(n.dominant_share(&[5], &[]), 0.0);
        let mem = n.id("mem");
        assert_eq!(n.name(mem), "mem");
    }

    #[test]
    fn share_keys_are_totally_ordered() {
        let mut v = [
            ShareKey(0.5),
            ShareKey(0.0),
            ShareKey(f64::NAN),
            ShareKey(0.25),
        ];
        v.sort();
        assert_eq!(v[0], ShareKey(0.0));
        assert_eq!(v[2], ShareKey(0.5));
    }
}
