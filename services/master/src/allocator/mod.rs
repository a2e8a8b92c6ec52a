//! The master's resource allocator: Mesos' hierarchical DRF allocator as a pure,
//! synchronous, deterministic state machine.
//!
//! The master's event loop owns one [`Allocator`], feeds it events (agents and
//! frameworks coming and going, offers declined or rescinded, tasks ending,
//! SUPPRESS/REVIVE, operations applied) and calls [`Allocator::allocate`] to learn
//! which offers to make. Nothing here reads a clock, spawns a task or does I/O: time
//! is a [`Duration`] since an epoch the caller picks (e.g. master start) and is passed
//! to the calls that need it, so every behaviour is reproducible in tests.
//!
//! # Semantics (those of Mesos' `HierarchicalDRFAllocator`)
//! - **Offered = allocated.** An [`Allocation`] returned by `allocate` counts as
//!   allocated to the framework until the master gives it back with
//!   [`Allocator::recover_resources`] (DECLINE, the unused part of an ACCEPT, offer
//!   rescind or timeout, a task ending, ...). Nothing is offered twice, and the sum
//!   of allocations on an agent never exceeds its total.
//! - **Weighted DRF, two levels.** Each agent's available resources go first to roles
//!   in ascending order of dominant share ÷ weight, then within a role to frameworks
//!   in ascending order of dominant share; ties are broken by name. A dominant share
//!   is the largest ratio allocated ÷ cluster total over the scalar resources, leaving
//!   out `fair_sharing_excluded_resource_names` (default `gpus`). Shares are updated
//!   after every allocation, so consecutive agents of one cycle go to different
//!   frameworks. Frameworks within a role are unweighted, like Mesos.
//! - **Reservations.** A role is offered what is unreserved plus what is reserved to it
//!   or to an ancestor (`Resource::is_allocatable_to`); statically or dynamically
//!   reserved resources (e.g. `slave_public`) never go to another role. A framework is
//!   offered only in roles it subscribes to ([`FrameworkInfo::effective_roles`]), that
//!   are not suppressed, while it is active; offers are made per (framework, agent,
//!   role) with `allocation_info.role` set on every resource.
//! - **What a framework gets.** Everything the role may take on the agent, minus
//!   revocable resources (without `REVOCABLE_RESOURCES`), shared ones (without
//!   `SHARED_RESOURCES`) and refined reservations (without `RESERVATION_REFINEMENT`),
//!   provided it holds one of `min_allocatable_resources` (default `cpus ≥ 0.01` or
//!   `mem ≥ 32`) and is not filtered.
//! - **GPU-scarce.** With `gpus_are_scarce`, agents whose total has GPUs are offered
//!   only to frameworks with `GPU_RESOURCES`.
//! - **Filters.** `recover_resources(.., Some(timeout), now)` installs a refused-offer
//!   filter: until `now + timeout` the framework is not offered, on that agent in that
//!   role, resources *contained in* what it refused (a larger offer passes). Use
//!   [`refuse_filter`] to turn `Filters.refuse_seconds` into a timeout the Mesos way.
//!   [`Allocator::revive`] clears filters and un-suppresses; deactivating a framework
//!   clears its filters.
//! - **Agents.** Deactivated (unreachable, draining) agents get no offers.
//!
//! # Incremental allocation
//! The allocator keeps a *dirty* set of agents. An event marks only what it affects:
//! an agent added, updated or activated, resources recovered on it, or a filter on it
//! expiring marks that agent; an event that changes *who* may be offered (framework
//! added, activated, updated or revived) marks the agents that currently have
//! something offerable, a set kept up to date on every change (agents fully offered
//! are not in it). Filter expiries sit in a min-heap, so `allocate(now)` pops only the
//! due ones. `allocate` visits the dirty agents only, never every agent; share keys
//! are re-sorted only when the cluster totals changed. [`Allocator::stats`] counts
//! the agents each cycle visited. Agents left with unofferable leftovers cost nothing
//! until something changes for them; this gives the same offers Mesos' periodic full
//! rescan would, since a leftover stays unoffered until one of those events happens.
//! [`Allocator::has_pending_work`] and [`Allocator::next_filter_expiry`] tell the
//! event loop when another cycle is worth running.
//!
//! # Order of calls expected from the master
//! A framework must be added (possibly inactive, as Mesos' master does for frameworks
//! recovered from re-registering agents) before an agent reporting its resources as
//! used is added. Recovering resources of an agent or framework already removed is a
//! no-op (removal untracks everything). Offer timeouts and rescinds are the master's:
//! it recovers the offer's resources (normally without a filter).
//!
//! # Limits
//! No quota, no hierarchical (nested) DRF (roles like `a/b` are sorted as flat
//! siblings, though `a`'s reservations are offered to `a/b`), no region awareness, no
//! maintenance/inverse offers, and shared resources are offered to one framework at a
//! time like exclusive ones. Agents are visited in handle order, not shuffled.

mod book;
mod config;
mod cycle;
mod error;
mod filters;
mod query;
mod share;
mod slab;
mod state;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use basalt_mesos::{AgentId, FrameworkId, FrameworkInfo, Resources, validate_role};

pub use config::{AllocatorConfig, DEFAULT_REFUSE_SECONDS, MAX_REFUSE_SECONDS, refuse_filter};
pub use error::AllocatorError;
pub use query::{AllocatorStats, RoleShare};

use config::validate_weight;
use share::Names;
use slab::Slab;
use state::{Agent, AgentIdx, Caps, Expiry, Framework, FwIdx, Role, RoleIdx, SortKey};

/// One offer to make: `resources` (each with `allocation_info.role == role`) of
/// `agent`, to `framework`, in `role`. Already counted as allocated.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// The framework to offer to.
    pub framework: FrameworkId,
    /// The agent the resources are on.
    pub agent: AgentId,
    /// The role they are offered in (the offer's `allocation_info.role`).
    pub role: String,
    /// The resources, with `allocation_info` set.
    pub resources: Resources,
}

/// The hierarchical weighted-DRF allocator (see the module docs).
#[derive(Debug)]
pub struct Allocator {
    config: AllocatorConfig,
    names: Names,
    /// Cluster total of each scalar resource (by name id), all agents included.
    totals: Vec<i64>,
    agents: Slab<Agent>,
    agent_ids: HashMap<AgentId, AgentIdx>,
    frameworks: Slab<Framework>,
    framework_ids: HashMap<FrameworkId, FwIdx>,
    roles: Slab<Role>,
    /// Sorted, for subrole range queries.
    role_ids: BTreeMap<String, RoleIdx>,
    weights: BTreeMap<String, f64>,
    /// Roles with at least one eligible framework, in weighted-DRF order.
    role_sorter: BTreeSet<SortKey>,
    /// Agents to visit in the next cycle.
    dirty: BTreeSet<AgentIdx>,
    /// Active agents with something offerable.
    with_available: BTreeSet<AgentIdx>,
    expiries: BinaryHeap<Reverse<Expiry>>,
    next_filter_id: u64,
    live_filters: usize,
    /// The totals changed: share keys must be recomputed before the next cycle.
    shares_stale: bool,
    stats: AllocatorStats,
}

/// Splits resources into allocation role → resources without allocation info.
/// Resources without `allocation_info` go to `default_role`, or fail when there is none.
fn split_by_role(
    res: &Resources,
    default_role: Option<&str>,
    framework: &FrameworkId,
    agent: &AgentId,
) -> Result<BTreeMap<String, Resources>, AllocatorError> {
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    for (role, part) in res.allocations() {
        validate_role(&role).map_err(|source| AllocatorError::InvalidRole {
            role: role.clone(),
            source,
        })?;
        out.entry(role).or_default().add_all(&part.unallocate());
    }
    let bare = res.filter(|r| r.allocation_info.as_ref().is_none_or(|a| a.role.is_none()));
    if !bare.is_empty() {
        let Some(role) = default_role else {
            return Err(AllocatorError::MissingAllocationRole {
                framework: framework.clone(),
                agent: agent.clone(),
            });
        };
        out.entry(role.to_owned())
            .or_default()
            .add_all(&bare.unallocate());
    }
    Ok(out)
}

/// The framework's subscribed roles, validated and deduplicated.
fn framework_roles(info: &FrameworkInfo) -> Result<BTreeSet<String>, AllocatorError> {
    let mut out = BTreeSet::new();
    for role in info.effective_roles() {
        validate_role(role).map_err(|source| AllocatorError::InvalidRole {
            role: role.to_owned(),
            source,
        })?;
        out.insert(role.to_owned());
    }
    Ok(out)
}

impl Allocator {
    /// An empty allocator; fails when the config does not validate.
    pub fn new(config: AllocatorConfig) -> Result<Self, AllocatorError> {
        config.validate()?;
        Ok(Self {
            names: Names::new(config.excluded_names()),
            weights: config.role_weights.clone(),
            config,
            totals: Vec::new(),
            agents: Slab::default(),
            agent_ids: HashMap::new(),
            frameworks: Slab::default(),
            framework_ids: HashMap::new(),
            roles: Slab::default(),
            role_ids: BTreeMap::new(),
            role_sorter: BTreeSet::new(),
            dirty: BTreeSet::new(),
            with_available: BTreeSet::new(),
            expiries: BinaryHeap::new(),
            next_filter_id: 0,
            live_filters: 0,
            shares_stale: false,
            stats: AllocatorStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    fn fw_index(&self, framework: &FrameworkId) -> Result<FwIdx, AllocatorError> {
        self.framework_ids
            .get(framework)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownFramework {
                framework: framework.clone(),
            })
    }

    fn agent_index(&self, agent: &AgentId) -> Result<AgentIdx, AllocatorError> {
        self.agent_ids
            .get(agent)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownAgent {
                agent: agent.clone(),
            })
    }

    /// Role handles of `roles` (all subscribed roles when `None`), each of which the
    /// framework must subscribe to.
    fn subscribed_roles(
        &self,
        f: FwIdx,
        framework: &FrameworkId,
        roles: Option<&[String]>,
    ) -> Result<BTreeSet<RoleIdx>, AllocatorError> {
        let Some(fw) = self.frameworks.get(f) else {
            return Err(AllocatorError::UnknownFramework {
                framework: framework.clone(),
            });
        };
        let Some(roles) = roles else {
            return Ok(fw.subscribed.clone());
        };
        let mut out = BTreeSet::new();
        for role in roles {
            match self.role_ids.get(role.as_str()) {
                Some(&r) if fw.subscribed.contains(&r) => {
                    out.insert(r);
                }
                _ => {
                    return Err(AllocatorError::NotSubscribed {
                        framework: framework.clone(),
                        role: role.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn change_totals(&mut self, q: &[share::Quantity], sign: i64) {
        share::apply(&mut self.totals, q, sign);
        self.shares_stale = true;
    }

    // -----------------------------------------------------------------------------
    // Frameworks

    /// Adds a framework subscribed to `info.effective_roles()`, with the resources
    /// it already uses on known agents (`used`; each resource's allocation role from
    /// its `allocation_info`, or the framework's role when it has exactly one).
    /// Active frameworks are offered resources from the next cycle.
    pub fn add_framework(
        &mut self,
        framework: &FrameworkId,
        info: &FrameworkInfo,
        used: &BTreeMap<AgentId, Resources>,
        active: bool,
    ) -> Result<(), AllocatorError> {
        if self.framework_ids.contains_key(framework) {
            return Err(AllocatorError::FrameworkExists {
                framework: framework.clone(),
            });
        }
        let roles = framework_roles(info)?;
        let default_role = (roles.len() == 1).then(|| roles.iter().next()).flatten();
        let mut plan: Vec<(AgentIdx, BTreeMap<String, Resources>)> = Vec::new();
        for (agent_id, res) in used {
            let a = self.agent_index(agent_id)?;
            let groups = split_by_role(res, default_role.map(String::as_str), framework, agent_id)?;
            let mut sum = Resources::new();
            for part in groups.values() {
                sum.add_all(part);
            }
            let fits = self
                .agents
                .get(a)
                .is_some_and(|ag| ag.available.contains(&sum));
            if !fits {
                return Err(AllocatorError::UsedExceedsTotal {
                    agent: agent_id.clone(),
                    resources: sum.to_string(),
                });
            }
            plan.push((a, groups));
        }
        let f = self.frameworks.insert(Framework {
            id: framework.clone(),
            name: Arc::from(framework.as_str()),
            subscribed: BTreeSet::new(),
            suppressed: BTreeSet::new(),
            tracked: BTreeSet::new(),
            active,
            caps: Caps::from_info(info),
            agents: BTreeSet::new(),
            filters: HashMap::new(),
        });
        self.framework_ids.insert(framework.clone(), f);
        for role in &roles {
            let r = self.role_index(role);
            if let Some(fw) = self.frameworks.get_mut(f) {
                fw.subscribed.insert(r);
            }
            self.ensure_member(f, r);
        }
        for (a, groups) in plan {
            for (role, res) in groups {
                let r = self.role_index(&role);
                self.track(f, a, r, &res);
            }
            self.refresh_available(a);
        }
        self.sync_framework(f);
        if active {
            self.touch_all_available();
        }
        tracing::debug!(%framework, ?roles, active, "allocator: framework added");
        Ok(())
    }

    /// Applies a new `FrameworkInfo` (roles, capabilities) of a framework. Roles it
    /// leaves lose their suppression and filters; allocations in them stay counted
    /// until recovered.
    pub fn update_framework(
        &mut self,
        framework: &FrameworkId,
        info: &FrameworkInfo,
    ) -> Result<(), AllocatorError> {
        let f = self.fw_index(framework)?;
        let roles = framework_roles(info)?;
        let old: Vec<RoleIdx> = self
            .frameworks
            .get(f)
            .map(|fw| fw.subscribed.iter().copied().collect())
            .unwrap_or_default();
        for r in old {
            let keep = self
                .roles
                .get(r)
                .is_some_and(|role| roles.contains(&*role.name));
            if !keep {
                if let Some(fw) = self.frameworks.get_mut(f) {
                    fw.subscribed.remove(&r);
                    fw.suppressed.remove(&r);
                }
                self.clear_filters(f, Some(&BTreeSet::from([r])));
                self.sync_member(f, r);
                self.maybe_untrack_role(f, r);
            }
        }
        for role in &roles {
            let r = self.role_index(role);
            if let Some(fw) = self.frameworks.get_mut(f) {
                fw.subscribed.insert(r);
            }
            self.ensure_member(f, r);
        }
        if let Some(fw) = self.frameworks.get_mut(f) {
            fw.caps = Caps::from_info(info);
        }
        self.sync_framework(f);
        self.touch_all_available();
        Ok(())
    }

    /// Removes a framework; whatever is still allocated to it becomes available.
    pub fn remove_framework(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.fw_index(framework)?;
        let agents: Vec<AgentIdx> = self
            .frameworks
            .get(f)
            .map(|fw| fw.agents.iter().copied().collect())
            .unwrap_or_default();
        for a in agents {
            let held: Vec<(RoleIdx, Resources)> = self
                .agents
                .get(a)
                .and_then(|ag| ag.allocated.get(&f))
                .map(|by_role| by_role.iter().map(|(r, res)| (*r, res.clone())).collect())
                .unwrap_or_default();
            for (r, res) in held {
                self.untrack(f, a, r, &res);
            }
            self.touch(a);
        }
        let filtered: Vec<AgentIdx> = self
            .frameworks
            .get(f)
            .map(|fw| fw.filters.keys().map(|(a, _)| *a).collect())
            .unwrap_or_default();
        for a in filtered {
            if let Some(ag) = self.agents.get_mut(a) {
                ag.filtered_by.remove(&f);
            }
        }
        self.clear_filters(f, None);
        let tracked: Vec<RoleIdx> = self
            .frameworks
            .get(f)
            .map(|fw| fw.tracked.iter().copied().collect())
            .unwrap_or_default();
        for r in tracked {
            self.remove_member(f, r);
        }
        self.frameworks.remove(f);
        self.framework_ids.remove(framework);
        tracing::debug!(%framework, "allocator: framework removed");
        Ok(())
    }

    /// Marks a framework active: it is offered resources again.
    pub fn activate_framework(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.fw_index(framework)?;
        if let Some(fw) = self.frameworks.get_mut(f) {
            fw.active = true;
        }
        self.sync_framework(f);
        self.touch_all_available();
        Ok(())
    }

    /// Marks a framework inactive (disconnected): no offers, its filters are cleared
    /// (as Mesos does); its allocations stay counted.
    pub fn deactivate_framework(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.fw_index(framework)?;
        if let Some(fw) = self.frameworks.get_mut(f) {
            fw.active = false;
        }
        self.clear_filters(f, None);
        self.sync_framework(f);
        Ok(())
    }

    /// SUPPRESS: no offers to the framework in `roles` (all its roles when `None`)
    /// until revived.
    pub fn suppress(
        &mut self,
        framework: &FrameworkId,
        roles: Option<&[String]>,
    ) -> Result<(), AllocatorError> {
        let f = self.fw_index(framework)?;
        let rs = self.subscribed_roles(f, framework, roles)?;
        if let Some(fw) = self.frameworks.get_mut(f) {
            fw.suppressed.extend(rs.iter().copied());
        }
        for r in rs {
            self.sync_member(f, r);
        }
        Ok(())
    }

    /// REVIVE: un-suppresses the framework in `roles` (all its roles when `None`) and
    /// clears its filters there.
    pub fn revive(
        &mut self,
        framework: &FrameworkId,
        roles: Option<&[String]>,
    ) -> Result<(), AllocatorError> {
        let f = self.fw_index(framework)?;
        let rs = self.subscribed_roles(f, framework, roles)?;
        if let Some(fw) = self.frameworks.get_mut(f) {
            fw.suppressed.retain(|r| !rs.contains(r));
        }
        self.clear_filters(f, if roles.is_some() { Some(&rs) } else { None });
        for &r in &rs {
            self.sync_member(f, r);
        }
        self.touch_all_available();
        Ok(())
    }

    /// UPDATE_WEIGHTS: sets a role's weight (finite, > 0).
    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        validate_weight(role, weight)?;
        self.weights.insert(role.to_owned(), weight);
        if let Some(&r) = self.role_ids.get(role)
            && let Some(entry) = self.roles.get_mut(r)
        {
            let top = (entry.key, entry.name.clone(), r);
            let in_top = self.role_sorter.remove(&top);
            entry.weight = weight;
            entry.key =
                share::ShareKey(self.names.dominant_share(&entry.alloc, &self.totals) / weight);
            if in_top {
                self.role_sorter.insert((entry.key, top.1, r));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // Agents

    /// Adds an active agent with `total` resources, of which `used` (framework →
    /// resources, allocation roles as in [`Self::add_framework`]) are already in use
    /// by known frameworks.
    pub fn add_agent(
        &mut self,
        agent: &AgentId,
        total: &Resources,
        used: &BTreeMap<FrameworkId, Resources>,
    ) -> Result<(), AllocatorError> {
        if self.agent_ids.contains_key(agent) {
            return Err(AllocatorError::AgentExists {
                agent: agent.clone(),
            });
        }
        let total = total.unallocate();
        let mut plan: Vec<(FwIdx, BTreeMap<String, Resources>)> = Vec::new();
        let mut sum = Resources::new();
        for (framework, res) in used {
            let f = self.fw_index(framework)?;
            let default_role = self.single_role(f);
            let groups = split_by_role(res, default_role.as_deref(), framework, agent)?;
            for part in groups.values() {
                sum.add_all(part);
            }
            plan.push((f, groups));
        }
        if !total.contains(&sum) {
            return Err(AllocatorError::UsedExceedsTotal {
                agent: agent.clone(),
                resources: sum.to_string(),
            });
        }
        let total_q = self.names.quantities(&total);
        let a = self.agents.insert(Agent {
            id: agent.clone(),
            has_gpus: total.gpus().is_some_and(|g| g.is_positive()),
            available: total.clone(),
            total,
            total_q: total_q.clone(),
            allocated: BTreeMap::new(),
            active: true,
            filtered_by: BTreeSet::new(),
        });
        self.agent_ids.insert(agent.clone(), a);
        self.change_totals(&total_q, 1);
        for (f, groups) in plan {
            for (role, res) in groups {
                let r = self.role_index(&role);
                self.track(f, a, r, &res);
            }
        }
        self.touch(a);
        tracing::debug!(%agent, "allocator: agent added");
        Ok(())
    }

    /// The framework's only subscribed role, if it has exactly one.
    fn single_role(&self, f: FwIdx) -> Option<String> {
        let fw = self.frameworks.get(f)?;
        let mut it = fw.subscribed.iter();
        match (it.next(), it.next()) {
            (Some(&r), None) => self.roles.get(r).map(|role| role.name.to_string()),
            _ => None,
        }
    }

    /// Replaces an agent's total (reconfiguration, oversubscription). Allocations are
    /// kept; what is available becomes the new total minus them.
    pub fn update_agent(
        &mut self,
        agent: &AgentId,
        total: &Resources,
    ) -> Result<(), AllocatorError> {
        let a = self.agent_index(agent)?;
        let total = total.unallocate();
        let new_q = self.names.quantities(&total);
        let Some(ag) = self.agents.get_mut(a) else {
            return Err(AllocatorError::UnknownAgent {
                agent: agent.clone(),
            });
        };
        let old_q = std::mem::replace(&mut ag.total_q, new_q.clone());
        let mut available = total.clone();
        for by_role in ag.allocated.values() {
            for res in by_role.values() {
                available.subtract_all(res);
            }
        }
        ag.has_gpus = total.gpus().is_some_and(|g| g.is_positive());
        ag.total = total;
        ag.available = available;
        self.change_totals(&old_q, -1);
        self.change_totals(&new_q, 1);
        self.touch(a);
        Ok(())
    }

    /// Removes an agent with everything allocated on it and every filter for it.
    pub fn remove_agent(&mut self, agent: &AgentId) -> Result<(), AllocatorError> {
        let a = self.agent_index(agent)?;
        let held: Vec<(FwIdx, RoleIdx, Resources)> = self
            .agents
            .get(a)
            .map(|ag| {
                ag.allocated
                    .iter()
                    .flat_map(|(f, by_role)| {
                        by_role.iter().map(move |(r, res)| (*f, *r, res.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (f, r, res) in held {
            self.untrack(f, a, r, &res);
        }
        self.clear_agent_filters(a);
        if let Some(ag) = self.agents.remove(a) {
            self.change_totals(&ag.total_q, -1);
        }
        self.agent_ids.remove(agent);
        self.dirty.remove(&a);
        self.with_available.remove(&a);
        tracing::debug!(%agent, "allocator: agent removed");
        Ok(())
    }

    /// Marks an agent reachable again: it is offered from the next cycle.
    pub fn activate_agent(&mut self, agent: &AgentId) -> Result<(), AllocatorError> {
        let a = self.agent_index(agent)?;
        if let Some(ag) = self.agents.get_mut(a) {
            ag.active = true;
        }
        self.touch(a);
        Ok(())
    }

    /// Marks an agent unreachable (or draining): nothing on it is offered.
    pub fn deactivate_agent(&mut self, agent: &AgentId) -> Result<(), AllocatorError> {
        let a = self.agent_index(agent)?;
        if let Some(ag) = self.agents.get_mut(a) {
            ag.active = false;
        }
        self.refresh_available(a);
        self.dirty.remove(&a);
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // Resources

    /// Gives back resources allocated to `framework` on `agent` (an offer declined,
    /// rescinded or timed out, the unused part of an ACCEPT, a task ended). Each
    /// resource's role comes from its `allocation_info` (or is inferred when the
    /// framework holds resources in a single role there). With `filter`, installs a
    /// refused-offer filter until `now + filter` (see [`refuse_filter`]). Unknown
    /// framework or agent (already removed): nothing to do, `Ok`.
    pub fn recover_resources(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        filter: Option<Duration>,
        now: Duration,
    ) -> Result<(), AllocatorError> {
        let (Some(&f), Some(&a)) = (self.framework_ids.get(framework), self.agent_ids.get(agent))
        else {
            tracing::debug!(%framework, %agent, "allocator: recover for a removed framework or agent");
            return Ok(());
        };
        let groups = self.allocated_groups(f, a, framework, agent, resources)?;
        for (r, res) in &groups {
            self.untrack(f, a, *r, res);
        }
        if let Some(timeout) = filter.filter(|t| !t.is_zero()) {
            for (r, res) in groups {
                if !res.is_empty() {
                    self.install_filter(f, a, r, res, timeout, now);
                }
            }
        }
        self.touch(a);
        Ok(())
    }

    /// Splits `resources` by allocation role and checks each part is allocated to
    /// `f` on `a`.
    fn allocated_groups(
        &mut self,
        f: FwIdx,
        a: AgentIdx,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<Vec<(RoleIdx, Resources)>, AllocatorError> {
        let held = self.agents.get(a).and_then(|ag| ag.allocated.get(&f));
        let default_role = match held.map(|by_role| by_role.keys().copied().collect::<Vec<_>>()) {
            Some(rs) if rs.len() == 1 => rs
                .first()
                .and_then(|r| self.roles.get(*r))
                .map(|role| role.name.to_string()),
            _ => self.single_role(f),
        };
        let groups = split_by_role(resources, default_role.as_deref(), framework, agent)?;
        let mut out = Vec::with_capacity(groups.len());
        for (role, res) in groups {
            let r = self.role_ids.get(role.as_str()).copied();
            let ok = r.is_some_and(|r| {
                held.and_then(|by_role| by_role.get(&r))
                    .is_some_and(|h| h.contains(&res))
            });
            match r {
                Some(r) if ok => out.push((r, res)),
                _ => {
                    return Err(AllocatorError::NotAllocated {
                        framework: framework.clone(),
                        agent: agent.clone(),
                        role,
                        resources: res.to_string(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Applies an operation on allocated resources (RESERVE, UNRESERVE, CREATE,
    /// DESTROY in an ACCEPT): `from` (allocated to the framework on the agent) becomes
    /// `to` in both the allocation and the agent's total. Quantities and the
    /// allocation role must not change.
    pub fn update_allocation(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        let f = self.fw_index(framework)?;
        let a = self.agent_index(agent)?;
        let from_groups = self.allocated_groups(f, a, framework, agent, from)?;
        let default_role = match from_groups.as_slice() {
            [(r, _)] => self.roles.get(*r).map(|role| role.name.to_string()),
            _ => None,
        };
        let to_groups = split_by_role(to, default_role.as_deref(), framework, agent)?;
        let same_roles = from_groups.len() == to_groups.len()
            && from_groups.iter().all(|(r, _)| {
                self.roles
                    .get(*r)
                    .is_some_and(|role| to_groups.contains_key(&*role.name))
            });
        if !same_roles {
            return Err(AllocatorError::RoleMismatch {
                framework: framework.clone(),
                agent: agent.clone(),
            });
        }
        for (r, from_res) in &from_groups {
            let role = self
                .roles
                .get(*r)
                .map(|role| role.name.to_string())
                .unwrap_or_default();
            let to_res = to_groups.get(&role).cloned().unwrap_or_default();
            if from_res.scalar_quantities() != to_res.scalar_quantities() {
                return Err(AllocatorError::QuantityMismatch {
                    agent: agent.clone(),
                    from: from_res.to_string(),
                    to: to_res.to_string(),
                });
            }
        }
        for (r, from_res) in from_groups {
            let role = self
                .roles
                .get(r)
                .map(|role| role.name.to_string())
                .unwrap_or_default();
            let to_res = to_groups.get(&role).cloned().unwrap_or_default();
            let Some(ag) = self.agents.get_mut(a) else {
                break;
            };
            if let Some(held) = ag
                .allocated
                .get_mut(&f)
                .and_then(|by_role| by_role.get_mut(&r))
            {
                held.subtract_all(&from_res);
                held.add_all(&to_res);
            }
            ag.total.subtract_all(&from_res);
            ag.total.add_all(&to_res);
        }
        Ok(())
    }

    /// Applies an operation on unallocated resources (operator RESERVE_RESOURCES,
    /// UNRESERVE_RESOURCES, CREATE_VOLUMES, DESTROY_VOLUMES): `from` (available on the
    /// agent) becomes `to`. Quantities must not change.
    pub fn update_available(
        &mut self,
        agent: &AgentId,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        let a = self.agent_index(agent)?;
        let from = from.unallocate();
        let to = to.unallocate();
        let Some(ag) = self.agents.get_mut(a) else {
            return Err(AllocatorError::UnknownAgent {
                agent: agent.clone(),
            });
        };
        if !ag.available.contains(&from) {
            return Err(AllocatorError::NotAvailable {
                agent: agent.clone(),
                resources: from.to_string(),
            });
        }
        if from.scalar_quantities() != to.scalar_quantities() {
            return Err(AllocatorError::QuantityMismatch {
                agent: agent.clone(),
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        ag.available.subtract_all(&from);
        ag.available.add_all(&to);
        ag.total.subtract_all(&from);
        ag.total.add_all(&to);
        self.touch(a);
        Ok(())
    }

    /// True when agents wait to be looked at by [`Self::allocate`].
    pub fn has_pending_work(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// When the earliest pending filter expires (a cycle then may offer more); may name
    /// a filter already cleared by REVIVE, which makes that cycle a cheap no-op.
    pub fn next_filter_expiry(&self) -> Option<Duration> {
        self.expiries.peek().map(|Reverse(e)| e.at)
    }
}

#[cfg(test)]
mod tests;
