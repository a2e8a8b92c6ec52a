//! Offer filters (`refuse_seconds`) and their expiry min-heap.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::time::Duration;

use basalt_mesos::Resources;

use super::Allocator;
use super::state::{AgentIdx, Expiry, FwIdx, OfferFilter, RoleIdx};

impl Allocator {
    /// Installs a filter: `refused` (without allocation info) is not offered again to
    /// `f` on `a` in role `r` before `now + timeout`.
    pub(super) fn install_filter(
        &mut self,
        f: FwIdx,
        a: AgentIdx,
        r: RoleIdx,
        refused: Resources,
        timeout: Duration,
        now: Duration,
    ) {
        let Some(fw) = self.frameworks.get_mut(f) else {
            return;
        };
        let id = self.next_filter_id;
        self.next_filter_id += 1;
        let at = now.saturating_add(timeout);
        fw.filters.entry((a, r)).or_default().push(OfferFilter {
            id,
            refused,
            expires: at,
        });
        self.live_filters += 1;
        if let Some(agent) = self.agents.get_mut(a) {
            agent.filtered_by.insert(f);
        }
        self.expiries.push(Reverse(Expiry {
            at,
            id,
            framework: f,
            agent: a,
            role: r,
        }));
    }

    /// Removes every filter due at or before `now` and marks their agents dirty.
    pub(super) fn expire_filters(&mut self, now: Duration) {
        while let Some(Reverse(e)) = self.expiries.peek().copied() {
            if e.at > now {
                break;
            }
            self.expiries.pop();
            let Some(fw) = self.frameworks.get_mut(e.framework) else {
                continue;
            };
            let Some(list) = fw.filters.get_mut(&(e.agent, e.role)) else {
                continue;
            };
            let Some(pos) = list.iter().position(|f| f.id == e.id) else {
                continue;
            };
            list.swap_remove(pos);
            if list.is_empty() {
                fw.filters.remove(&(e.agent, e.role));
            }
            self.live_filters -= 1;
            self.touch(e.agent);
        }
    }

    /// Clears the framework's filters in `roles` (all roles when `None`). Returns how
    /// many were removed.
    pub(super) fn clear_filters(&mut self, f: FwIdx, roles: Option<&BTreeSet<RoleIdx>>) -> usize {
        let Some(fw) = self.frameworks.get_mut(f) else {
            return 0;
        };
        let mut dropped = 0;
        fw.filters.retain(|(_, r), list| {
            if roles.is_none_or(|rs| rs.contains(r)) {
                dropped += list.len();
                false
            } else {
                true
            }
        });
        self.live_filters -= dropped;
        self.compact_expiries();
        dropped
    }

    /// Drops every filter on agent `a` (the agent is going away).
    pub(super) fn clear_agent_filters(&mut self, a: AgentIdx) {
        let fws: Vec<FwIdx> = self
            .agents
            .get(a)
            .map(|ag| ag.filtered_by.iter().copied().collect())
            .unwrap_or_default();
        for f in fws {
            let Some(fw) = self.frameworks.get_mut(f) else {
                continue;
            };
            let mut dropped = 0;
            fw.filters.retain(|(fa, _), list| {
                if *fa == a {
                    dropped += list.len();
                    false
                } else {
                    true
                }
            });
            self.live_filters -= dropped;
        }
        self.compact_expiries();
    }

    /// Rebuilds the heap from the live filters once stale entries (of filters cleared
    /// by REVIVE, removal, ...) dominate it, so it stays O(live filters).
    pub(super) fn compact_expiries(&mut self) {
        if self.expiries.len() <= 2 * self.live_filters + 1024 {
            return;
        }
        let mut live = Vec::with_capacity(self.live_filters);
        for (f, fw) in self.frameworks.iter() {
            for (&(a, r), list) in &fw.filters {
                for filter in list {
                    live.push(Reverse(Expiry {
                        at: filter.expires,
                        id: filter.id,
                        framework: f,
                        agent: a,
                        role: r,
                    }));
                }
            }
        }
        self.expiries = live.into();
    }
}
