//! Bookkeeping shared by the events and the allocation cycle: role and sorter
//! membership, tracking allocations, and the dirty/available agent sets.

use std::collections::BTreeMap;
use std::sync::Arc;

use basalt_mesos::Resources;

use super::Allocator;
use super::share::{Quantity, ShareKey, apply};
use super::state::{AgentIdx, FwIdx, Member, Role, RoleIdx};

impl Allocator {
    /// The role's handle, creating it (with its configured weight) if needed.
    pub(super) fn role_index(&mut self, name: &str) -> RoleIdx {
        if let Some(&r) = self.role_ids.get(name) {
            return r;
        }
        let weight = self.weights.get(name).copied().unwrap_or(1.0);
        let r = self.roles.insert(Role {
            name: Arc::from(name),
            weight,
            alloc: Vec::new(),
            key: ShareKey(0.0),
            members: BTreeMap::new(),
            sorter: Default::default(),
        });
        self.role_ids.insert(name.to_owned(), r);
        r
    }

    /// Makes the framework a (not yet eligible) member of the role's sorter.
    pub(super) fn ensure_member(&mut self, f: FwIdx, r: RoleIdx) {
        if let Some(fw) = self.frameworks.get_mut(f) {
            fw.tracked.insert(r);
        }
        if let Some(role) = self.roles.get_mut(r) {
            role.members.entry(f).or_insert_with(Member::default);
        }
    }

    /// Puts the member in or out of its role's sorter according to the framework's
    /// state, and the role in or out of the role sorter.
    pub(super) fn sync_member(&mut self, f: FwIdx, r: RoleIdx) {
        let Some(fw) = self.frameworks.get(f) else {
            return;
        };
        let eligible = fw.eligible(r);
        let name = fw.name.clone();
        let Some(role) = self.roles.get_mut(r) else {
            return;
        };
        let Some(member) = role.members.get_mut(&f) else {
            return;
        };
        if member.eligible != eligible {
            member.eligible = eligible;
            let entry = (member.key, name, f);
            if eligible {
                role.sorter.insert(entry);
            } else {
                role.sorter.remove(&entry);
            }
        }
        let top = (role.key, role.name.clone(), r);
        if role.sorter.is_empty() {
            self.role_sorter.remove(&top);
        } else {
            self.role_sorter.insert(top);
        }
    }

    pub(super) fn sync_framework(&mut self, f: FwIdx) {
        let roles: Vec<RoleIdx> = self
            .frameworks
            .get(f)
            .map(|fw| fw.tracked.iter().copied().collect())
            .unwrap_or_default();
        for r in roles {
            self.sync_member(f, r);
        }
    }

    /// Adds `sign * q` to the member's and the role's allocation and re-keys both
    /// in their sorters.
    pub(super) fn change_member_alloc(&mut self, f: FwIdx, r: RoleIdx, q: &[Quantity], sign: i64) {
        let Some(name) = self.frameworks.get(f).map(|fw| fw.name.clone()) else {
            return;
        };
        let Some(role) = self.roles.get_mut(r) else {
            return;
        };
        let Some(member) = role.members.get_mut(&f) else {
            return;
        };
        let old = (member.key, name, f);
        let in_sorter = role.sorter.remove(&old);
        apply(&mut member.alloc, q, sign);
        member.key = ShareKey(self.names.dominant_share(&member.alloc, &self.totals));
        if in_sorter {
            role.sorter.insert((member.key, old.1, f));
        }
        let top = (role.key, role.name.clone(), r);
        let in_top = self.role_sorter.remove(&top);
        apply(&mut role.alloc, q, sign);
        role.key = ShareKey(self.names.dominant_share(&role.alloc, &self.totals) / role.weight);
        if in_top {
            self.role_sorter.insert((role.key, top.1, r));
        }
    }

    /// Records `res` (without allocation info) as allocated to `f` in role `r` on
    /// agent `a`, taking it out of the agent's available resources.
    pub(super) fn track(&mut self, f: FwIdx, a: AgentIdx, r: RoleIdx, res: &Resources) {
        let q = self.names.quantities(res);
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        agent.available.subtract_all(res);
        agent
            .allocated
            .entry(f)
            .or_default()
            .entry(r)
            .or_default()
            .add_all(res);
        if let Some(fw) = self.frameworks.get_mut(f) {
            fw.agents.insert(a);
        }
        self.ensure_member(f, r);
        self.change_member_alloc(f, r, &q, 1);
    }

    /// Reverses [`Self::track`] for `res` (which the caller checked is allocated);
    /// the resources go back to the agent's available resources.
    pub(super) fn untrack(&mut self, f: FwIdx, a: AgentIdx, r: RoleIdx, res: &Resources) {
        let q = self.names.quantities(res);
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        agent.available.add_all(res);
        let mut gone = false;
        if let Some(by_role) = agent.allocated.get_mut(&f) {
            if let Some(held) = by_role.get_mut(&r) {
                held.subtract_all(res);
                if held.is_empty() {
                    by_role.remove(&r);
                }
            }
            gone = by_role.is_empty();
        }
        if gone {
            agent.allocated.remove(&f);
            if let Some(fw) = self.frameworks.get_mut(f) {
                fw.agents.remove(&a);
            }
        }
        self.change_member_alloc(f, r, &q, -1);
        self.maybe_untrack_role(f, r);
    }

    /// Drops the framework from a role it neither subscribes to nor holds anything in.
    pub(super) fn maybe_untrack_role(&mut self, f: FwIdx, r: RoleIdx) {
        let Some(fw) = self.frameworks.get(f) else {
            return;
        };
        if fw.subscribed.contains(&r) || !fw.tracked.contains(&r) {
            return;
        }
        let holds = fw.agents.iter().any(|a| {
            self.agents
                .get(*a)
                .and_then(|ag| ag.allocated.get(&f))
                .is_some_and(|by_role| by_role.contains_key(&r))
        });
        if !holds {
            self.remove_member(f, r);
        }
    }

    /// Removes the framework from the role's sorter and its filters for that role;
    /// removes the role when it has no members left.
    pub(super) fn remove_member(&mut self, f: FwIdx, r: RoleIdx) {
        let mut dropped = 0;
        if let Some(fw) = self.frameworks.get_mut(f) {
            fw.tracked.remove(&r);
            fw.subscribed.remove(&r);
            fw.suppressed.remove(&r);
            fw.filters.retain(|(_, fr), list| {
                if *fr == r {
                    dropped += list.len();
                    false
                } else {
                    true
                }
            });
        }
        self.live_filters -= dropped;
        let Some(role) = self.roles.get_mut(r) else {
            return;
        };
        if let Some(member) = role.members.remove(&f) {
            if member.eligible
                && let Some(name) = self.frameworks.get(f).map(|fw| fw.name.clone())
            {
                role.sorter.remove(&(member.key, name, f));
            }
            let top = (role.key, role.name.clone(), r);
            let in_top = self.role_sorter.remove(&top);
            // A member leaves with nothing allocated in the role (or is being
            // removed along with its allocations), so the role's key is unchanged
            // unless the caller already adjusted it.
            if in_top && !role.sorter.is_empty() {
                self.role_sorter.insert(top);
            }
        }
        if role.members.is_empty() {
            let name = role.name.clone();
            self.role_sorter.remove(&(role.key, name.clone(), r));
            self.roles.remove(r);
            self.role_ids.remove(&*name);
        }
    }

    /// Recomputes every share key (the cluster totals changed) and rebuilds the
    /// sorters. O((roles + frameworks) · log).
    pub(super) fn resort_all(&mut self) {
        self.role_sorter.clear();
        let names = &self.names;
        let totals = &self.totals;
        for (r, role) in self.roles.iter_mut() {
            role.sorter.clear();
            for (&f, member) in &mut role.members {
                member.key = ShareKey(names.dominant_share(&member.alloc, totals));
                if member.eligible
                    && let Some(fw) = self.frameworks.get(f)
                {
                    role.sorter.insert((member.key, fw.name.clone(), f));
                }
            }
            role.key = ShareKey(names.dominant_share(&role.alloc, totals) / role.weight);
            if !role.sorter.is_empty() {
                self.role_sorter.insert((role.key, role.name.clone(), r));
            }
        }
        self.shares_stale = false;
    }

    /// Whether `res` is worth offering (Mesos `allocatable`, `--min_allocatable_resources`).
    pub(super) fn is_allocatable(&self, res: &Resources) -> bool {
        if res.is_empty() {
            return false;
        }
        if self.config.min_allocatable_resources.is_empty() {
            return true;
        }
        self.config.min_allocatable_resources.iter().any(|set| {
            set.iter()
                .all(|(name, min)| res.get_scalar(name).is_some_and(|v| v >= *min))
        })
    }

    /// Re-evaluates whether the agent has something offerable.
    pub(super) fn refresh_available(&mut self, a: AgentIdx) {
        let offerable = self
            .agents
            .get(a)
            .is_some_and(|ag| ag.active && self.is_allocatable(&ag.available));
        if offerable {
            self.with_available.insert(a);
        } else {
            self.with_available.remove(&a);
        }
    }

    /// The agent's resources changed: look at it in the next cycle if it has
    /// something to offer.
    pub(super) fn touch(&mut self, a: AgentIdx) {
        self.refresh_available(a);
        if self.with_available.contains(&a) {
            self.dirty.insert(a);
        }
    }

    /// Who may be offered what changed (a framework or role became eligible or lost
    /// filters): every agent with something to offer is looked at in the next cycle.
    pub(super) fn touch_all_available(&mut self) {
        let all = &self.with_available;
        self.dirty.extend(all.iter().copied());
    }
}
