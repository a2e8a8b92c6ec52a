//! Read-only views for `/master/state`, `/metrics/snapshot` and tests.

use std::collections::BTreeMap;

use basalt_mesos::{AgentId, FrameworkId, Resources};

use super::Allocator;

/// Counters of the allocator's work, for metrics and for tests of incrementality.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Calls to [`Allocator::allocate`].
    pub allocation_runs: u64,
    /// Agents visited by all cycles together.
    pub agents_visited: u64,
    /// Agents visited by the last cycle.
    pub last_agents_visited: u64,
    /// Allocations (offers) returned by all cycles together.
    pub offers_made: u64,
}

/// A role's place in the DRF order.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleShare {
    /// The role.
    pub role: String,
    /// Its weight.
    pub weight: f64,
    /// Dominant share of everything allocated (offered or used) in the role, before
    /// weighting.
    pub dominant_share: f64,
    /// Frameworks subscribed to it or holding resources in it.
    pub frameworks: usize,
    /// Scalar quantities allocated in it, by resource name.
    pub allocated: BTreeMap<String, f64>,
}

impl Allocator {
    /// What is allocated (offered or used) to the framework, per agent, each resource
    /// with its `allocation_info.role`; `None` for an unknown framework.
    pub fn allocation(&self, framework: &FrameworkId) -> Option<BTreeMap<AgentId, Resources>> {
        let f = *self.framework_ids.get(framework)?;
        let fw = self.frameworks.get(f)?;
        let mut out = BTreeMap::new();
        for &a in &fw.agents {
            let Some(ag) = self.agents.get(a) else {
                continue;
            };
            let mut res = Resources::new();
            for (r, held) in ag.allocated.get(&f).into_iter().flatten() {
                if let Some(role) = self.roles.get(*r) {
                    res.add_all(&held.allocate(&role.name));
                }
            }
            out.insert(ag.id.clone(), res);
        }
        Some(out)
    }

    /// Everything allocated to the framework, summed over agents (with allocation info).
    pub fn allocated(&self, framework: &FrameworkId) -> Option<Resources> {
        let mut sum = Resources::new();
        for res in self.allocation(framework)?.values() {
            sum.add_all(res);
        }
        Some(sum)
    }

    /// What the agent has unallocated (offerable or not), without allocation info.
    pub fn available(&self, agent: &AgentId) -> Option<&Resources> {
        let a = *self.agent_ids.get(agent)?;
        self.agents.get(a).map(|ag| &ag.available)
    }

    /// The agent's total as the allocator sees it (after operations).
    pub fn total(&self, agent: &AgentId) -> Option<&Resources> {
        let a = *self.agent_ids.get(agent)?;
        self.agents.get(a).map(|ag| &ag.total)
    }

    /// Every known role with its share, by name.
    pub fn role_shares(&self) -> Vec<RoleShare> {
        let mut out: Vec<RoleShare> = self
            .roles
            .iter()
            .map(|(_, role)| RoleShare {
                role: role.name.to_string(),
                weight: role.weight,
                dominant_share: self.names.dominant_share(&role.alloc, &self.totals),
                frameworks: role.members.len(),
                allocated: role
                    .alloc
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v != 0)
                    .map(|(i, v)| (self.names.name(i).to_owned(), *v as f64 / 1000.0))
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.role.cmp(&b.role));
        out
    }

    /// The framework's dominant share in `role` (what orders it among the role's
    /// frameworks); `None` when it is not tracked in that role.
    pub fn framework_share(&self, framework: &FrameworkId, role: &str) -> Option<f64> {
        let f = *self.framework_ids.get(framework)?;
        let r = *self.role_ids.get(role)?;
        let member = self.roles.get(r)?.members.get(&f)?;
        Some(self.names.dominant_share(&member.alloc, &self.totals))
    }

    /// Live offer filters of the framework (0 for an unknown framework).
    pub fn active_filters(&self, framework: &FrameworkId) -> usize {
        self.framework_ids
            .get(framework)
            .and_then(|f| self.frameworks.get(*f))
            .map_or(0, |fw| fw.filters.values().map(Vec::len).sum())
    }

    /// Agents known to the allocator.
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Frameworks known to the allocator.
    pub fn framework_count(&self) -> usize {
        self.frameworks.len()
    }

    /// Work counters.
    pub fn stats(&self) -> AllocatorStats {
        self.stats
    }

    /// Mesos allocator metrics (names as in Mesos' `/metrics/snapshot`):
    /// `allocator/mesos/allocation_runs`, `allocator/mesos/resources/<name>/total`,
    /// `allocator/mesos/resources/<name>/offered_or_allocated`,
    /// `allocator/mesos/roles/<role>/shares/dominant` and
    /// `allocator/mesos/offer_filters/roles/<role>/active`.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        out.insert(
            "allocator/mesos/allocation_runs".to_owned(),
            self.stats.allocation_runs as f64,
        );
        let mut allocated = vec![0_i64; self.names.len()];
        for (_, role) in self.roles.iter() {
            for (i, v) in role.alloc.iter().enumerate() {
                if let Some(slot) = allocated.get_mut(i) {
                    *slot += v;
                }
            }
        }
        for i in 0..self.names.len() {
            let name = self.names.name(i);
            let total = self.totals.get(i).copied().unwrap_or(0);
            out.insert(
                format!("allocator/mesos/resources/{name}/total"),
                total as f64 / 1000.0,
            );
            out.insert(
                format!("allocator/mesos/resources/{name}/offered_or_allocated"),
                allocated.get(i).copied().unwrap_or(0) as f64 / 1000.0,
            );
        }
        let mut filters: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, fw) in self.frameworks.iter() {
            for (&(_, r), list) in &fw.filters {
                if let Some(role) = self.roles.get(r) {
                    *filters.entry(&role.name).or_default() += list.len();
                }
            }
        }
        for (_, role) in self.roles.iter() {
            out.insert(
                format!("allocator/mesos/roles/{}/shares/dominant", role.name),
                self.names.dominant_share(&role.alloc, &self.totals),
            );
            out.insert(
                format!("allocator/mesos/offer_filters/roles/{}/active", role.name),
                filters.get(&*role.name).copied().unwrap_or(0) as f64,
            );
        }
        out
    }
}
