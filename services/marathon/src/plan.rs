//! The deployment planner: pure and deterministic.
//!
//! [`plan`] turns (current apps + instances, target apps) into Marathon's deployment
//! steps: first one step stopping removed apps, then one step starting new apps, then
//! one step per dependency level (apps whose longest dependency chain has the same
//! length share a step; dependencies come first) scaling or restarting what changed.
//!
//! [`next_restart_move`] is the rolling-restart rule the executor applies every time an
//! instance changes: it never lets healthy instances drop below
//! `ceil(minimumHealthCapacity × instances)` nor the instances that hold resources
//! exceed `floor((1 + maximumOverCapacity) × instances)`. When the strategy leaves no
//! room at all (the two bounds are equal, e.g. `{1, 0}`), it does what Marathon does
//! to make progress: kill one old instance before starting its replacement, so healthy
//! capacity dips by exactly one (and no more) for that moment.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::app::{AppDefinition, KillSelection, UpgradeStrategy};
use crate::error::MarathonError;

/// One action of a deployment step (`{"action": "ScaleApplication", "app": "/a"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// `StartApplication`, `StopApplication`, `ScaleApplication` or `RestartApplication`.
    pub action: ActionKind,
    /// The app id.
    pub app: String,
    /// Target instance count (scale/start/restart).
    #[serde(rename = "scaleTo", default, skip_serializing_if = "Option::is_none")]
    pub scale_to: Option<u32>,
    /// Instances chosen to be killed on scale-down, in kill order.
    #[serde(
        rename = "sentencedToDeath",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sentenced: Vec<String>,
}

/// Action names as Marathon writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ActionKind {
    StartApplication,
    StopApplication,
    ScaleApplication,
    RestartApplication,
}

/// One step: its actions run concurrently; the next step starts when all are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Step {
    /// The actions.
    pub actions: Vec<Action>,
}

/// What the planner needs to know about one running instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// Instance id.
    pub id: String,
    /// When it was launched (ms since the epoch).
    pub started_at: u64,
    /// Whether it is running (TASK_RUNNING) rather than staging/starting/unhealthy.
    pub running: bool,
}

/// The instances to kill to go from `instances` down to `keep`, in kill order: not yet
/// running ones first, then by age per `selection` (ties by id, so the result is
/// deterministic).
pub fn kill_order(
    instances: &[InstanceView],
    keep: usize,
    selection: KillSelection,
) -> Vec<String> {
    let mut v: Vec<&InstanceView> = instances.iter().collect();
    v.sort_by(|a, b| {
        a.running
            .cmp(&b.running)
            .then_with(|| match selection {
                KillSelection::YoungestFirst => b.started_at.cmp(&a.started_at),
                KillSelection::OldestFirst => a.started_at.cmp(&b.started_at),
            })
            .then_with(|| a.id.cmp(&b.id))
    });
    let n = instances.len().saturating_sub(keep);
    v.into_iter().take(n).map(|i| i.id.clone()).collect()
}

/// Apps of `target` grouped by the length of their longest dependency chain (level 0:
/// no dependencies inside `target`). Fails on a cycle, naming an app on it.
pub fn dependency_levels(
    target: &BTreeMap<String, AppDefinition>,
) -> Result<Vec<Vec<String>>, MarathonError> {
    fn depth(
        id: &str,
        target: &BTreeMap<String, AppDefinition>,
        memo: &mut BTreeMap<String, usize>,
        visiting: &mut BTreeSet<String>,
    ) -> Result<usize, MarathonError> {
        if let Some(d) = memo.get(id) {
            return Ok(*d);
        }
        if !visiting.insert(id.to_string()) {
            return Err(MarathonError::Cycle(id.to_string()));
        }
        let mut d = 0;
        if let Some(app) = target.get(id) {
            for dep in &app.dependencies {
                // A dependency on a group means every app under it.
                let deps: Vec<&String> = target
                    .keys()
                    .filter(|k| *k == dep || k.starts_with(&format!("{dep}/")))
                    .collect();
                for dep in deps {
                    d = d.max(1 + depth(dep, target, memo, visiting)?);
                }
            }
        }
        visiting.remove(id);
        memo.insert(id.to_string(), d);
        Ok(d)
    }
    let mut memo = BTreeMap::new();
    let mut levels: Vec<Vec<String>> = Vec::new();
    for id in target.keys() {
        let d = depth(id, target, &mut memo, &mut BTreeSet::new())?;
        if levels.len() <= d {
            levels.resize(d + 1, Vec::new());
        }
        levels[d].push(id.clone());
    }
    Ok(levels)
}

/// Plans a deployment from `original` to `target` given the live `instances` per app.
pub fn plan(
    original: &BTreeMap<String, AppDefinition>,
    target: &BTreeMap<String, AppDefinition>,
    instances: &BTreeMap<String, Vec<InstanceView>>,
) -> Result<Vec<Step>, MarathonError> {
    let mut steps = Vec::new();
    let stops: Vec<Action> = original
        .keys()
        .filter(|id| !target.contains_key(*id))
        .map(|id| Action {
            action: ActionKind::StopApplication,
            app: id.clone(),
            scale_to: None,
            sentenced: Vec::new(),
        })
        .collect();
    if !stops.is_empty() {
        steps.push(Step { actions: stops });
    }
    let starts: Vec<Action> = target
        .keys()
        .filter(|id| !original.contains_key(*id))
        .map(|id| Action {
            action: ActionKind::StartApplication,
            app: id.clone(),
            scale_to: Some(0),
            sentenced: Vec::new(),
        })
        .collect();
    if !starts.is_empty() {
        steps.push(Step { actions: starts });
    }
    for level in dependency_levels(target)? {
        let mut actions = Vec::new();
        for id in level {
            let Some(to) = target.get(&id) else { continue };
            let scale_to = u32::try_from(to.instances.max(0)).unwrap_or(u32::MAX);
            let live = instances.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            match original.get(&id) {
                // Unchanged apps are not part of the deployment (healing is not planned).
                Some(from) if from == to => {}
                None => {
                    if scale_to > 0 {
                        actions.push(Action {
                            action: ActionKind::ScaleApplication,
                            app: id.clone(),
                            scale_to: Some(scale_to),
                            sentenced: Vec::new(),
                        });
                    }
                }
                Some(from) if from.needs_restart(to) => actions.push(Action {
                    action: ActionKind::RestartApplication,
                    app: id.clone(),
                    scale_to: Some(scale_to),
                    sentenced: Vec::new(),
                }),
                Some(_) if live.len() != scale_to as usize => actions.push(Action {
                    action: ActionKind::ScaleApplication,
                    app: id.clone(),
                    scale_to: Some(scale_to),
                    sentenced: kill_order(live, scale_to as usize, to.kill_selection),
                }),
                Some(_) => {}
            }
        }
        if !actions.is_empty() {
            steps.push(Step { actions });
        }
    }
    Ok(steps)
}

/// The bounds a rolling restart keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    /// Target instance count.
    pub target: u32,
    /// `ceil(minimumHealthCapacity × target)`.
    pub min_healthy: u32,
    /// `floor((1 + maximumOverCapacity) × target)`.
    pub max_capacity: u32,
}

impl RestartBudget {
    /// The budget of `strategy` for `target` instances.
    pub fn new(target: u32, strategy: UpgradeStrategy) -> RestartBudget {
        let t = f64::from(target);
        let m = strategy.minimum_health_capacity.clamp(0.0, 1.0);
        let o = strategy.maximum_over_capacity.clamp(0.0, 1.0);
        let min_healthy = ((t * m) - 1e-9).ceil().max(0.0) as u32;
        let max_capacity = ((t * (1.0 + o)) + 1e-9).floor() as u32;
        RestartBudget {
            target,
            min_healthy: min_healthy.min(target),
            max_capacity: max_capacity.max(target),
        }
    }

    /// Whether the strategy leaves no room to start before killing.
    pub fn no_headroom(&self) -> bool {
        self.max_capacity <= self.min_healthy
    }
}

/// Instance counts during a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestartCounts {
    /// Old-version instances running and healthy.
    pub old_healthy: u32,
    /// Old-version instances being killed (still holding resources).
    pub old_killing: u32,
    /// New-version instances launched, not yet healthy.
    pub new_pending: u32,
    /// New-version instances healthy.
    pub new_healthy: u32,
}

impl RestartCounts {
    /// Healthy instances of either version.
    pub fn healthy(&self) -> u32 {
        self.old_healthy + self.new_healthy
    }

    /// Instances holding resources.
    pub fn occupied(&self) -> u32 {
        self.old_healthy + self.old_killing + self.new_pending + self.new_healthy
    }

    /// Whether the restart is complete.
    pub fn done(&self, budget: &RestartBudget) -> bool {
        self.old_healthy == 0
            && self.old_killing == 0
            && self.new_pending == 0
            && self.new_healthy == budget.target
    }
}

/// What to do now: kill this many old instances and launch this many new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestartMove {
    /// Old instances to kill now.
    pub kill_old: u32,
    /// New instances to launch now.
    pub launch_new: u32,
}

/// The next move of a rolling restart (see the module docs for the rule).
pub fn next_restart_move(budget: &RestartBudget, c: &RestartCounts) -> RestartMove {
    let new_total = c.new_pending + c.new_healthy;
    // Old instances beyond what is still needed for capacity can go.
    let kill_old = c
        .old_healthy
        .min(c.healthy().saturating_sub(budget.min_healthy));
    let launch_new = budget
        .target
        .saturating_sub(new_total)
        .min(budget.max_capacity.saturating_sub(c.occupied()));
    if kill_old == 0
        && launch_new == 0
        && c.old_killing == 0
        && c.new_pending == 0
        && c.old_healthy > 0
    {
        // No room at all: kill one to make progress (Marathon does the same).
        return RestartMove {
            kill_old: 1,
            launch_new: 0,
        };
    }
    RestartMove {
        kill_old,
        launch_new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn app(v: serde_json::Value) -> AppDefinition {
        let mut a = AppDefinition::from_json(v).unwrap();
        a.normalize("/");
        a
    }

    fn map(apps: Vec<AppDefinition>) -> BTreeMap<String, AppDefinition> {
        apps.into_iter().map(|a| (a.id.clone(), a)).collect()
    }

    #[test]
    fn new_apps_start_in_dependency_order() {
        let target = map(vec![
            app(json!({"id": "/db", "cmd": "x"})),
            app(json!({"id": "/api", "cmd": "x", "dependencies": ["/db"]})),
            app(json!({"id": "/web", "cmd": "x", "dependencies": ["/api"], "instances": 2})),
        ]);
        let steps = plan(&BTreeMap::new(), &target, &BTreeMap::new()).unwrap();
        let names: Vec<Vec<(ActionKind, &str)>> = steps
            .iter()
            .map(|s| {
                s.actions
                    .iter()
                    .map(|a| (a.action, a.app.as_str()))
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                vec![
                    (ActionKind::StartApplication, "/api"),
                    (ActionKind::StartApplication, "/db"),
                    (ActionKind::StartApplication, "/web")
                ],
                vec![(ActionKind::ScaleApplication, "/db")],
                vec![(ActionKind::ScaleApplication, "/api")],
                vec![(ActionKind::ScaleApplication, "/web")],
            ]
        );
        assert_eq!(steps[3].actions[0].scale_to, Some(2));
    }

    #[test]
    fn cycles_are_rejected() {
        let target = map(vec![
            app(json!({"id": "/a", "cmd": "x", "dependencies": ["/b"]})),
            app(json!({"id": "/b", "cmd": "x", "dependencies": ["/a"]})),
        ]);
        assert!(matches!(
            plan(&BTreeMap::new(), &target, &BTreeMap::new()),
            Err(MarathonError::Cycle(_))
        ));
    }

    #[test]
    fn scale_down_sentences_youngest_or_oldest() {
        let from = app(json!({"id": "/a", "cmd": "x", "instances": 3}));
        let mut to = from.clone();
        to.instances = 1;
        let live = vec![
            InstanceView {
                id: "i1".into(),
                started_at: 1,
                running: true,
            },
            InstanceView {
                id: "i2".into(),
                started_at: 2,
                running: true,
            },
            InstanceView {
                id: "i3".into(),
                started_at: 3,
                running: true,
            },
        ];
        let instances = BTreeMap::from([("/a".to_string(), live.clone())]);
        let steps = plan(&map(vec![from.clone()]), &map(vec![to.clone()]), &instances).unwrap();
        assert_eq!(steps[0].actions[0].sentenced, vec!["i3", "i2"]);
        to.kill_selection = KillSelection::OldestFirst;
        let steps = plan(&map(vec![from]), &map(vec![to]), &instances).unwrap();
        // killSelection alone is a config change → restart; kill order is still checked:
        assert_eq!(steps[0].actions[0].action, ActionKind::RestartApplication);
        assert_eq!(
            kill_order(&live, 1, KillSelection::OldestFirst),
            vec!["i1", "i2"]
        );
        let mut staging = live.clone();
        staging[0].running = false;
        assert_eq!(
            kill_order(&staging, 2, KillSelection::YoungestFirst),
            vec!["i1"]
        );
    }

    #[test]
    fn config_change_restarts_and_removal_stops() {
        let a = app(json!({"id": "/a", "cmd": "x"}));
        let b = app(json!({"id": "/b", "cmd": "x"}));
        let mut a2 = a.clone();
        a2.cmd = Some("y".into());
        let steps = plan(&map(vec![a, b]), &map(vec![a2]), &BTreeMap::new()).unwrap();
        assert_eq!(steps[0].actions[0].action, ActionKind::StopApplication);
        assert_eq!(steps[0].actions[0].app, "/b");
        assert_eq!(steps[1].actions[0].action, ActionKind::RestartApplication);
    }

    #[test]
    fn budget_bounds() {
        let b = RestartBudget::new(
            10,
            UpgradeStrategy {
                minimum_health_capacity: 0.5,
                maximum_over_capacity: 0.2,
            },
        );
        assert_eq!((b.min_healthy, b.max_capacity), (5, 12));
        let b = RestartBudget::new(3, UpgradeStrategy::DEFAULT);
        assert_eq!((b.min_healthy, b.max_capacity), (3, 6));
        assert!(
            RestartBudget::new(
                3,
                UpgradeStrategy {
                    minimum_health_capacity: 1.0,
                    maximum_over_capacity: 0.0
                }
            )
            .no_headroom()
        );
    }

    proptest! {
        /// At every moment of a rolling restart, under any order in which kills finish
        /// and new instances turn healthy: healthy ≥ min (− 1 only when there is no
        /// headroom) and occupied ≤ max; and the restart always completes.
        #[test]
        fn rolling_restart_keeps_capacity(
            target in 0u32..25,
            old in 0u32..25,
            m in 0.0f64..=1.0,
            o in 0.0f64..=1.0,
            choices in proptest::collection::vec(any::<u32>(), 400),
        ) {
            let budget = RestartBudget::new(target, UpgradeStrategy { minimum_health_capacity: m, maximum_over_capacity: o });
            let mut c = RestartCounts { old_healthy: old, ..Default::default() };
            let floor = budget.min_healthy.min(old);
            let allowed_dip = u32::from(budget.no_headroom());
            let ceiling = budget.max_capacity.max(old);
            let mut i = 0;
            let mut steps = 0;
            while !c.done(&budget) {
                steps += 1;
                prop_assert!(steps < 10_000, "no progress: {:?} {:?}", budget, c);
                let mv = next_restart_move(&budget, &c);
                c.old_healthy -= mv.kill_old;
                c.old_killing += mv.kill_old;
                c.new_pending += mv.launch_new;
                prop_assert!(c.healthy() + allowed_dip >= floor, "healthy {} < {} ({:?} {:?})", c.healthy(), floor, budget, c);
                prop_assert!(c.occupied() <= ceiling, "occupied {} > {} ({:?} {:?})", c.occupied(), ceiling, budget, c);
                // one asynchronous event happens
                let choice = choices.get(i % choices.len()).copied().unwrap_or(0);
                i += 1;
                let can_finish_kill = c.old_killing > 0;
                let can_turn_healthy = c.new_pending > 0;
                match (can_finish_kill, can_turn_healthy) {
                    (true, true) => if choice % 2 == 0 { c.old_killing -= 1 } else { c.new_pending -= 1; c.new_healthy += 1 },
                    (true, false) => c.old_killing -= 1,
                    (false, true) => { c.new_pending -= 1; c.new_healthy += 1 }
                    (false, false) => {}
                }
                prop_assert!(c.healthy() + allowed_dip >= floor);
                prop_assert!(c.occupied() <= ceiling);
            }
        }

        /// Every changed app lands in a step after all of its (changed) dependencies.
        #[test]
        fn plans_respect_dependencies(edges in proptest::collection::vec((0usize..8, 0usize..8), 0..12), n in 1usize..8) {
            let mut apps = Vec::new();
            for i in 0..n {
                let deps: Vec<String> = edges.iter().filter(|(a, b)| *a == i && *b < i).map(|(_, b)| format!("/a{b}")).collect();
                apps.push(app(json!({"id": format!("/a{i}"), "cmd": "x", "dependencies": deps})));
            }
            let target = map(apps);
            let steps = plan(&BTreeMap::new(), &target, &BTreeMap::new()).unwrap();
            let mut step_of = BTreeMap::new();
            for (k, s) in steps.iter().enumerate() {
                for a in &s.actions {
                    if a.action == ActionKind::ScaleApplication {
                        prop_assert!(step_of.insert(a.app.clone(), k).is_none(), "app twice");
                    }
                }
            }
            prop_assert_eq!(step_of.len(), n);
            for (id, app) in &target {
                for d in &app.dependencies {
                    prop_assert!(step_of[d] < step_of[id], "{} before its dependency {}", id, d);
                }
            }
        }
    }
}
