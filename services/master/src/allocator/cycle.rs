//! The allocation cycle: weighted DRF over the dirty agents.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::ops::Bound::{Excluded, Unbounded};
use std::time::Duration;

use basalt_mesos::Resources;

use super::state::{AgentIdx, RoleIdx, SortKey};
use super::{Allocation, Allocator};

/// The first entry of `set` after `cursor` (from the start when `None`).
fn next_after(set: &BTreeSet<SortKey>, cursor: Option<&SortKey>) -> Option<SortKey> {
    match cursor {
        None => set.iter().next().cloned(),
        Some(c) => set.range((Excluded(c), Unbounded)).next().cloned(),
    }
}

impl Allocator {
    /// Runs one allocation cycle at time `now` (the same clock as the filters'
    /// `now`): expires due filters, then offers what the dirty agents have available,
    /// agent by agent (in handle order), to roles in weighted-DRF order and, within a
    /// role, to frameworks in DRF order. Only dirty agents are visited (see the
    /// module docs); the returned allocations are already counted as allocated.
    pub fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        self.expire_filters(now);
        if self.shares_stale {
            self.resort_all();
        }
        let dirty = std::mem::take(&mut self.dirty);
        let mut out = Vec::new();
        self.stats.allocation_runs += 1;
        self.stats.last_agents_visited = 0;
        for a in dirty {
            if self.agents.get(a).is_none() {
                continue;
            }
            self.stats.last_agents_visited += 1;
            self.allocate_agent(a, now, &mut out);
        }
        self.stats.agents_visited += self.stats.last_agents_visited;
        self.stats.offers_made += out.len() as u64;
        tracing::debug!(
            visited = self.stats.last_agents_visited,
            offers = out.len(),
            "allocation cycle"
        );
        out
    }

    fn allocate_agent(&mut self, a: AgentIdx, now: Duration, out: &mut Vec<Allocation>) {
        let offerable = self
            .agents
            .get(a)
            .is_some_and(|ag| ag.active && self.is_allocatable(&ag.available));
        if !offerable {
            self.refresh_available(a);
            return;
        }
        let mut allocated_roles: Vec<RoleIdx> = Vec::new();
        // Phase 1: every eligible role in weighted-DRF order, while unreserved
        // resources worth offering are left (any role may take those).
        let mut cursor: Option<SortKey> = None;
        let mut exhausted = false;
        if self.unreserved_offerable(a) {
            loop {
                let Some(entry) = next_after(&self.role_sorter, cursor.as_ref()) else {
                    exhausted = true;
                    break;
                };
                let r = entry.2;
                cursor = Some(entry);
                if allocated_roles.contains(&r) {
                    continue;
                }
                if self.allocate_role(a, r, now, out) {
                    allocated_roles.push(r);
                    if !self.agent_offerable(a) {
                        exhausted = true;
                        break;
                    }
                    if !self.unreserved_offerable(a) {
                        break;
                    }
                }
            }
        }
        // Phase 2: only reserved resources are worth offering; only roles they are
        // reserved to (or subroles) can take them. Roles already visited in phase 1
        // are not visited again (each role is visited once per agent, like Mesos).
        if !exhausted && self.agent_offerable(a) {
            let mut candidates: Vec<SortKey> = Vec::new();
            let reservation_roles: Vec<String> = self
                .agents
                .get(a)
                .map(|ag| ag.available.reservations().into_keys().collect())
                .unwrap_or_default();
            for res_role in &reservation_roles {
                let prefix = format!("{res_role}/");
                let exact = self.role_ids.get(res_role.as_str()).copied();
                let subroles = self
                    .role_ids
                    .range(prefix.clone()..)
                    .take_while(|(name, _)| name.starts_with(&prefix))
                    .map(|(_, &r)| r);
                for r in exact.into_iter().chain(subroles) {
                    let Some(role) = self.roles.get(r) else {
                        continue;
                    };
                    let key = (role.key, role.name.clone(), r);
                    let visited =
                        allocated_roles.contains(&r) || cursor.as_ref().is_some_and(|c| key <= *c);
                    if !role.sorter.is_empty() && !visited && !candidates.contains(&key) {
                        candidates.push(key);
                    }
                }
            }
            candidates.sort();
            for (_, _, r) in candidates {
                self.allocate_role(a, r, now, out);
                if !self.agent_offerable(a) {
                    break;
                }
            }
        }
        self.refresh_available(a);
    }

    fn agent_offerable(&self, a: AgentIdx) -> bool {
        self.agents
            .get(a)
            .is_some_and(|ag| self.is_allocatable(&ag.available))
    }

    fn unreserved_offerable(&self, a: AgentIdx) -> bool {
        self.agents.get(a).is_some_and(|ag| {
            if ag.available.iter().all(|r| r.is_unreserved()) {
                self.is_allocatable(&ag.available)
            } else {
                self.is_allocatable(&ag.available.unreserved())
            }
        })
    }

    /// Offers what agent `a` has for role `r` to the role's eligible frameworks in
    /// DRF order; each takes everything it can. True when something was allocated.
    fn allocate_role(
        &mut self,
        a: AgentIdx,
        r: RoleIdx,
        now: Duration,
        out: &mut Vec<Allocation>,
    ) -> bool {
        let (Some(agent), Some(role)) = (self.agents.get(a), self.roles.get(r)) else {
            return false;
        };
        let mut pool: Resources = agent.available.allocatable_to(&role.name);
        if !self.is_allocatable(&pool) {
            return false;
        }
        let has_gpus = agent.has_gpus;
        let role_name = role.name.clone();
        let mut cursor: Option<SortKey> = None;
        let mut taken: Vec<usize> = Vec::new();
        loop {
            // The next framework in DRF order that takes something, found without
            // mutating anything (one walk of the sorter).
            let found = {
                let Some(role) = self.roles.get(r) else {
                    break;
                };
                let entries = match &cursor {
                    None => role.sorter.range::<SortKey, _>(..),
                    Some(c) => role.sorter.range((Excluded(c), Unbounded)),
                };
                let mut found = None;
                for entry in entries {
                    let f = entry.2;
                    if taken.contains(&f) {
                        continue;
                    }
                    let Some(fw) = self.frameworks.get(f) else {
                        continue;
                    };
                    if self.config.gpus_are_scarce && has_gpus && !fw.caps.gpu {
                        continue;
                    }
                    let offer = fw.caps.strip(&pool);
                    if !self.is_allocatable(&offer) || fw.is_filtered(a, r, &offer, now) {
                        continue;
                    }
                    // `None`: the framework takes the whole pool.
                    let stripped = match offer {
                        Cow::Borrowed(_) => None,
                        Cow::Owned(o) => Some(o),
                    };
                    found = Some((entry.clone(), stripped, fw.id.clone()));
                    break;
                }
                found
            };
            let Some((entry, stripped, framework)) = found else {
                break;
            };
            let f = entry.2;
            cursor = Some(entry);
            let Some(agent_id) = self.agents.get(a).map(|ag| ag.id.clone()) else {
                break;
            };
            let offer = match stripped {
                Some(o) => {
                    pool.subtract_all(&o);
                    o
                }
                None => std::mem::take(&mut pool),
            };
            self.track(f, a, r, &offer);
            out.push(Allocation {
                framework,
                agent: agent_id,
                role: role_name.to_string(),
                resources: offer.allocate(&role_name),
            });
            taken.push(f);
            if !self.is_allocatable(&pool) {
                break;
            }
        }
        !taken.is_empty()
    }
}
