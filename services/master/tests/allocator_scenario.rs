//! An in-process cluster: 20 agents, 3 frameworks in weighted roles launching
//! one-task-per-offer with declines, filters, suppress and revive, tasks ending over
//! time. Asserts weighted DRF fairness and the incremental visit counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use basalt_master::allocator::{Allocator, AllocatorConfig, refuse_filter};
use basalt_mesos::{AgentId, FrameworkId, FrameworkInfo, Resources};

const AGENTS: usize = 20;
const SLOTS_PER_AGENT: usize = 8;
const TASK: &str = "cpus:1;mem:1024";

struct Task {
    fw: usize,
    agent: AgentId,
    resources: Resources,
    ends_at: u64,
}

/// Deterministic pseudo-random task lifetimes (LCG).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn fw_info(role: &str) -> FrameworkInfo {
    let mut i = FrameworkInfo::new("root", role);
    i.role = Some(role.to_owned());
    i
}

#[test]
fn weighted_drf_converges_with_churn_decline_suppress_and_revive() {
    let roles = [("analytics", 1.0), ("services", 2.0), ("batch", 1.0)];
    let mut cfg = AllocatorConfig::default();
    for (r, w) in roles {
        cfg.role_weights.insert(r.to_owned(), w);
    }
    let mut al = Allocator::new(cfg).unwrap();
    let fws: Vec<FrameworkId> = (0..3)
        .map(|i| FrameworkId::new(format!("fw-{i}")))
        .collect();
    for (i, (role, _)) in roles.iter().enumerate() {
        al.add_framework(&fws[i], &fw_info(role), &BTreeMap::new(), true)
            .unwrap();
    }
    for a in 0..AGENTS {
        al.add_agent(
            &AgentId::new(format!("agent-{a:02}")),
            &Resources::parse("cpus:8;mem:8192").unwrap(),
            &BTreeMap::new(),
        )
        .unwrap();
    }
    let task = Resources::parse(TASK).unwrap();
    let mut tasks: Vec<Task> = Vec::new();
    let mut rng = Lcg(7);
    let round = Duration::from_secs(1);
    let total_slots = (AGENTS * SLOTS_PER_AGENT) as f64;
    let weighted = |al: &Allocator| -> Vec<f64> {
        (0..3)
            .map(|i| al.framework_share(&fws[i], roles[i].0).unwrap() / roles[i].1)
            .collect()
    };

    for t in 0..400u64 {
        let now = round * t as u32;
        // Tasks end (while churn lasts): resources come back without a filter.
        if t < 300 {
            let mut i = 0;
            while i < tasks.len() {
                if tasks[i].ends_at <= t {
                    let done = tasks.swap_remove(i);
                    al.recover_resources(&fws[done.fw], &done.agent, &done.resources, None, now)
                        .unwrap();
                } else {
                    i += 1;
                }
            }
        }
        // Batch takes a break between rounds 100 and 160.
        if t == 100 {
            al.suppress(&fws[2], None).unwrap();
        }
        if t == 160 {
            al.revive(&fws[2], None).unwrap();
        }
        for offer in al.allocate(now) {
            let fw = fws.iter().position(|f| *f == offer.framework).unwrap();
            assert!(
                !(100..160).contains(&t) || fw != 2,
                "suppressed batch got an offer"
            );
            let mine = task.allocate(&offer.role);
            // Until round 200, every third offer of services is declined outright with
            // the default filter (a scheduler that is picky for a while).
            if fw == 1 && t < 200 && rng.next(3) == 0 {
                al.recover_resources(
                    &offer.framework,
                    &offer.agent,
                    &offer.resources,
                    refuse_filter(None),
                    now,
                )
                .unwrap();
                continue;
            }
            // Agents hold exactly 8 tasks, so every offer fits one (no memory-only
            // leftovers, whose offers would count towards shares while outstanding).
            assert!(
                offer.resources.contains(&mine),
                "offer {} fits no task",
                offer.resources
            );
            // One task per offer; the rest is declined with refuse_seconds = 0.
            let rest = &offer.resources - &mine;
            al.recover_resources(
                &offer.framework,
                &offer.agent,
                &rest,
                refuse_filter(Some(0.0)),
                now,
            )
            .unwrap();
            tasks.push(Task {
                fw,
                agent: offer.agent.clone(),
                resources: mine,
                ends_at: t + 3 + rng.next(8),
            });
        }
        if (120..160).contains(&t) {
            // While batch is suppressed its share only shrinks; the others share the rest.
            let s = weighted(&al);
            assert!(
                s[2] <= 40.0 / total_slots + 1e-9,
                "batch grew while suppressed: {s:?}"
            );
        }
    }
    // Declines stopped at round 200, churn at 300, every filter has long expired: the
    // cluster is full and shares converged.
    assert_eq!(tasks.len(), AGENTS * SLOTS_PER_AGENT);
    let s = weighted(&al);
    let task_share = 1.0 / total_slots;
    let spread =
        s.iter().cloned().fold(f64::MIN, f64::max) - s.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        spread <= task_share + 1e-9,
        "weighted shares {s:?} differ by more than one task"
    );
    let counts: Vec<usize> = (0..3)
        .map(|f| tasks.iter().filter(|t| t.fw == f).count())
        .collect();
    eprintln!("final weighted shares {s:?}, tasks per framework {counts:?}");
    // Weights 1:2:1 over 160 slots.
    assert!(
        counts[1].abs_diff(80) <= 2 && counts[0].abs_diff(40) <= 2,
        "{counts:?}"
    );
}

#[test]
fn one_event_visits_one_agent_among_thousands() {
    let mut al = Allocator::new(AllocatorConfig::default()).unwrap();
    let fws: Vec<FrameworkId> = (0..10).map(|i| FrameworkId::new(format!("f{i}"))).collect();
    for f in &fws {
        al.add_framework(f, &fw_info("*"), &BTreeMap::new(), true)
            .unwrap();
    }
    for a in 0..2000 {
        al.add_agent(
            &AgentId::new(format!("a{a}")),
            &Resources::parse("cpus:4;mem:4096").unwrap(),
            &BTreeMap::new(),
        )
        .unwrap();
    }
    let out = al.allocate(Duration::ZERO);
    assert_eq!(out.len(), 2000);
    assert_eq!(al.stats().last_agents_visited, 2000);
    // DRF spread the agents evenly.
    for f in &fws {
        assert_eq!(al.allocation(f).unwrap().len(), 200);
    }
    let o = &out[1234];
    al.recover_resources(
        &o.framework,
        &o.agent,
        &o.resources,
        Some(Duration::from_secs(5)),
        Duration::ZERO,
    )
    .unwrap();
    let before = al.stats().agents_visited;
    let again = al.allocate(Duration::from_secs(1));
    assert_eq!(
        al.stats().agents_visited - before,
        1,
        "only the touched agent is visited"
    );
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].framework, o.framework, "the decliner is filtered");
    // Later cycles: the recovery and the two filter expiries touch one agent each.
    al.recover_resources(
        &again[0].framework,
        &again[0].agent,
        &again[0].resources,
        Some(Duration::from_secs(2)),
        Duration::from_secs(1),
    )
    .unwrap();
    for t in 2..8 {
        let before = al.stats().agents_visited;
        al.allocate(Duration::from_secs(t));
        assert!(
            al.stats().agents_visited - before <= 1,
            "cycle at {t} s visited more than one agent"
        );
    }
    assert_eq!(
        al.available(&o.agent).unwrap(),
        &Resources::new(),
        "re-offered to a third framework"
    );
}
