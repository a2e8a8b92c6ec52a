//! Property tests of the allocator over random event sequences: whatever happens, no
//! agent is over-allocated, reserved resources stay in their role, suppressed or
//! inactive frameworks and inactive agents get nothing, filtered resources are not
//! re-offered before expiry, GPU agents go only to GPU frameworks when scarce, and
//! the allocator's books match an independent tally of the offers it made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use basalt_master::allocator::{Allocation, Allocator, AllocatorConfig};
use basalt_mesos::{
    AgentId, Capability, CapabilityType, FrameworkId, FrameworkInfo, Resources, Scalar,
};
use proptest::prelude::*;

const AGENTS: [(&str, &str); 5] = [
    ("a0", "cpus:4;mem:4096;disk:100;ports:[31000-31010]"),
    ("a1", "cpus:2;mem:1024;gpus:2"),
    (
        "a2",
        "cpus(slave_public):2;mem(slave_public):512;ports(slave_public):[80-80];cpus:1;mem:256",
    ),
    ("a3", "cpus(web):1;mem(web):128;cpus:3;mem:2048"),
    ("a4", "cpus:0.005;mem:16"),
];

struct Fw {
    id: &'static str,
    roles: &'static [&'static str],
    gpu: bool,
}

const FRAMEWORKS: [Fw; 4] = [
    Fw {
        id: "marathon",
        roles: &["*"],
        gpu: false,
    },
    Fw {
        id: "public",
        roles: &["slave_public"],
        gpu: false,
    },
    Fw {
        id: "multi",
        roles: &["*", "web"],
        gpu: true,
    },
    Fw {
        id: "batch",
        roles: &["batch"],
        gpu: true,
    },
];

fn info(fw: &Fw) -> FrameworkInfo {
    let mut i = FrameworkInfo::new("root", fw.id);
    if fw.roles.len() == 1 {
        i.role = Some(fw.roles[0].to_owned());
    } else {
        i.roles = fw.roles.iter().map(|r| (*r).to_owned()).collect();
        i.capabilities
            .push(Capability::from(CapabilityType::MultiRole));
    }
    if fw.gpu {
        i.capabilities
            .push(Capability::from(CapabilityType::GpuResources));
    }
    i
}

#[derive(Debug, Clone)]
enum Event {
    Allocate {
        dt_ms: u64,
    },
    /// Recover (part of) an outstanding allocation, with an optional filter.
    Recover {
        pick: usize,
        part: u8,
        filter_s: Option<u64>,
    },
    Suppress {
        fw: usize,
        role: Option<usize>,
    },
    Revive {
        fw: usize,
        role: Option<usize>,
    },
    ToggleFramework {
        fw: usize,
    },
    ToggleAgent {
        agent: usize,
    },
    UpdateAgent {
        agent: usize,
        extra_cpus: u8,
    },
    RemoveReaddFramework {
        fw: usize,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0u64..4000).prop_map(|dt_ms| Event::Allocate { dt_ms }),
        4 => (any::<usize>(), 0u8..3, prop::option::of(0u64..8))
            .prop_map(|(pick, part, filter_s)| Event::Recover { pick, part, filter_s }),
        1 => (0usize..4, prop::option::of(0usize..2))
            .prop_map(|(fw, role)| Event::Suppress { fw, role }),
        1 => (0usize..4, prop::option::of(0usize..2))
            .prop_map(|(fw, role)| Event::Revive { fw, role }),
        1 => (0usize..4).prop_map(|fw| Event::ToggleFramework { fw }),
        1 => (0usize..5).prop_map(|agent| Event::ToggleAgent { agent }),
        1 => (0usize..5, 0u8..3).prop_map(|(agent, extra_cpus)| Event::UpdateAgent { agent, extra_cpus }),
        1 => (0usize..4).prop_map(|fw| Event::RemoveReaddFramework { fw }),
    ]
}

/// An independent model of what the allocator must respect.
struct Model {
    now: Duration,
    totals: Vec<Resources>,
    agent_active: Vec<bool>,
    fw_active: Vec<bool>,
    suppressed: Vec<BTreeSet<String>>,
    /// (fw, agent) → allocated resources (with allocation info).
    held: BTreeMap<(usize, usize), Resources>,
    /// (fw, agent, role, refused without allocation info, expiry).
    filters: Vec<(usize, usize, String, Resources, Duration)>,
}

fn check_offers(model: &Model, al: &Allocator, out: &[Allocation]) -> Result<(), TestCaseError> {
    let min_ok = |r: &Resources| {
        r.cpus().is_some_and(|c| c >= Scalar::from_milli(10))
            || r.mem().is_some_and(|m| m >= Scalar::from_int(32))
    };
    for o in out {
        let f = FRAMEWORKS
            .iter()
            .position(|f| f.id == o.framework.as_str())
            .unwrap();
        let a = AGENTS.iter().position(|a| a.0 == o.agent.as_str()).unwrap();
        let role = o.role.as_str();
        prop_assert!(
            model.fw_active[f],
            "offer to inactive framework {}",
            o.framework
        );
        prop_assert!(
            model.agent_active[a],
            "offer from inactive agent {}",
            o.agent
        );
        prop_assert!(
            FRAMEWORKS[f].roles.contains(&role),
            "role {role} not subscribed"
        );
        prop_assert!(
            !model.suppressed[f].contains(role),
            "offer to suppressed {role}"
        );
        prop_assert!(
            min_ok(&o.resources),
            "below min allocatable: {}",
            o.resources
        );
        for r in o.resources.iter() {
            prop_assert_eq!(
                r.allocation_info.as_ref().and_then(|a| a.role.as_deref()),
                Some(role)
            );
            prop_assert!(r.is_allocatable_to(role), "{r} offered to role {role}");
        }
        if model.totals[a].gpus().is_some_and(|g| g.is_positive()) {
            prop_assert!(
                FRAMEWORKS[f].gpu,
                "GPU agent {} offered to {}",
                o.agent,
                o.framework
            );
        }
        let plain = o.resources.unallocate();
        for (ff, fa, fr, refused, exp) in &model.filters {
            if *ff == f && *fa == a && fr == role && *exp > model.now {
                prop_assert!(
                    !refused.contains(&plain),
                    "{plain} re-offered to {} before filter expiry",
                    o.framework
                );
            }
        }
    }
    // Books: the allocator's allocation equals our tally, and nothing is over-allocated.
    for (f, fw) in FRAMEWORKS.iter().enumerate() {
        let books = al.allocation(&FrameworkId::new(fw.id)).unwrap_or_default();
        for (a, (agent, _)) in AGENTS.iter().enumerate() {
            let ours = model.held.get(&(f, a)).cloned().unwrap_or_default();
            let theirs = books
                .get(&AgentId::new(*agent))
                .cloned()
                .unwrap_or_default();
            prop_assert_eq!(&ours, &theirs, "books of {} on {}", fw.id, agent);
        }
    }
    for (a, (agent, _)) in AGENTS.iter().enumerate() {
        let mut sum = Resources::new();
        for f in 0..FRAMEWORKS.len() {
            if let Some(h) = model.held.get(&(f, a)) {
                sum += h.unallocate();
            }
        }
        let total = al.total(&AgentId::new(*agent)).unwrap();
        prop_assert!(
            total.contains(&sum),
            "agent {agent} over-allocated: {sum} > {total}"
        );
        let avail = al.available(&AgentId::new(*agent)).unwrap();
        prop_assert_eq!(
            &(&sum + avail),
            total,
            "allocated + available == total on {}",
            agent
        );
    }
    Ok(())
}

fn run(events: Vec<Event>) -> Result<(), TestCaseError> {
    let mut al = Allocator::new(AllocatorConfig::default()).unwrap();
    let mut m = Model {
        now: Duration::ZERO,
        totals: AGENTS
            .iter()
            .map(|(_, r)| Resources::parse(r).unwrap())
            .collect(),
        agent_active: vec![true; AGENTS.len()],
        fw_active: vec![true; FRAMEWORKS.len()],
        suppressed: vec![BTreeSet::new(); FRAMEWORKS.len()],
        held: BTreeMap::new(),
        filters: Vec::new(),
    };
    for fw in &FRAMEWORKS {
        al.add_framework(&FrameworkId::new(fw.id), &info(fw), &BTreeMap::new(), true)
            .unwrap();
    }
    for (i, (id, _)) in AGENTS.iter().enumerate() {
        al.add_agent(&AgentId::new(*id), &m.totals[i], &BTreeMap::new())
            .unwrap();
    }
    for ev in events {
        match ev {
            Event::Allocate { dt_ms } => {
                m.now += Duration::from_millis(dt_ms);
                let out = al.allocate(m.now);
                for o in &out {
                    let f = FRAMEWORKS
                        .iter()
                        .position(|f| f.id == o.framework.as_str())
                        .unwrap();
                    let a = AGENTS.iter().position(|a| a.0 == o.agent.as_str()).unwrap();
                    *m.held.entry((f, a)).or_default() += &o.resources;
                }
                check_offers(&m, &al, &out)?;
            }
            Event::Recover {
                pick,
                part,
                filter_s,
            } => {
                let keys: Vec<(usize, usize)> = m
                    .held
                    .iter()
                    .filter(|(_, r)| !r.is_empty())
                    .map(|(k, _)| *k)
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let (f, a) = keys[pick % keys.len()];
                let held = m.held[&(f, a)].clone();
                let give = match part {
                    0 => held.clone(),
                    1 => held.filter(|r| r.name == "cpus"),
                    _ => held.filter(|r| r.name != "cpus"),
                };
                if give.is_empty() {
                    continue;
                }
                let filter = filter_s.map(Duration::from_secs);
                al.recover_resources(
                    &FrameworkId::new(FRAMEWORKS[f].id),
                    &AgentId::new(AGENTS[a].0),
                    &give,
                    filter,
                    m.now,
                )
                .unwrap();
                if let Some(d) = filter.filter(|d| !d.is_zero()) {
                    for (role, part) in give.allocations() {
                        m.filters.push((f, a, role, part.unallocate(), m.now + d));
                    }
                }
                let h = m.held.get_mut(&(f, a)).unwrap();
                *h -= &give;
            }
            Event::Suppress { fw, role } => {
                let roles: Vec<String> = match role {
                    Some(i) => FRAMEWORKS[fw]
                        .roles
                        .get(i)
                        .map(|r| vec![(*r).to_owned()])
                        .unwrap_or_default(),
                    None => FRAMEWORKS[fw]
                        .roles
                        .iter()
                        .map(|r| (*r).to_owned())
                        .collect(),
                };
                if roles.is_empty() {
                    continue;
                }
                al.suppress(&FrameworkId::new(FRAMEWORKS[fw].id), Some(&roles))
                    .unwrap();
                m.suppressed[fw].extend(roles);
            }
            Event::Revive { fw, role } => {
                let roles: Vec<String> = match role {
                    Some(i) => FRAMEWORKS[fw]
                        .roles
                        .get(i)
                        .map(|r| vec![(*r).to_owned()])
                        .unwrap_or_default(),
                    None => FRAMEWORKS[fw]
                        .roles
                        .iter()
                        .map(|r| (*r).to_owned())
                        .collect(),
                };
                if roles.is_empty() {
                    continue;
                }
                al.revive(&FrameworkId::new(FRAMEWORKS[fw].id), Some(&roles))
                    .unwrap();
                m.suppressed[fw].retain(|r| !roles.contains(r));
                m.filters
                    .retain(|(f, _, r, _, _)| *f != fw || !roles.contains(r));
            }
            Event::ToggleFramework { fw } => {
                let id = FrameworkId::new(FRAMEWORKS[fw].id);
                if m.fw_active[fw] {
                    al.deactivate_framework(&id).unwrap();
                    m.filters.retain(|(f, ..)| *f != fw);
                } else {
                    al.activate_framework(&id).unwrap();
                }
                m.fw_active[fw] = !m.fw_active[fw];
            }
            Event::ToggleAgent { agent } => {
                let id = AgentId::new(AGENTS[agent].0);
                if m.agent_active[agent] {
                    al.deactivate_agent(&id).unwrap();
                } else {
                    al.activate_agent(&id).unwrap();
                }
                m.agent_active[agent] = !m.agent_active[agent];
            }
            Event::UpdateAgent { agent, extra_cpus } => {
                // Grow only, so allocations always fit in the new total.
                let extra = Resources::parse(&format!("cpus:{}", 1 + extra_cpus)).unwrap();
                let total = &m.totals[agent] + &extra;
                al.update_agent(&AgentId::new(AGENTS[agent].0), &total)
                    .unwrap();
                m.totals[agent] = total;
            }
            Event::RemoveReaddFramework { fw } => {
                let id = FrameworkId::new(FRAMEWORKS[fw].id);
                // Re-add (as after a failover) with the same used resources.
                let used: BTreeMap<AgentId, Resources> = m
                    .held
                    .iter()
                    .filter(|((f, _), r)| *f == fw && !r.is_empty())
                    .map(|((_, a), r)| (AgentId::new(AGENTS[*a].0), r.clone()))
                    .collect();
                al.remove_framework(&id).unwrap();
                al.add_framework(&id, &info(&FRAMEWORKS[fw]), &used, m.fw_active[fw])
                    .unwrap();
                m.suppressed[fw].clear();
                m.filters.retain(|(f, ..)| *f != fw);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn allocator_invariants_hold(events in prop::collection::vec(event(), 1..80)) {
        run(events)?;
    }
}

#[test]
fn a_fixed_long_sequence_holds_too() {
    // A deterministic long run mixing every event, beyond proptest's sizes.
    let mut events = Vec::new();
    for i in 0..2000usize {
        events.push(match i % 11 {
            0 | 3 | 7 => Event::Allocate {
                dt_ms: (i as u64 * 37) % 3000,
            },
            1 | 4 | 8 => Event::Recover {
                pick: i * 7,
                part: (i % 3) as u8,
                filter_s: (i % 4 != 0).then_some((i % 5) as u64),
            },
            2 => Event::Suppress {
                fw: i % 4,
                role: (i % 2 == 0).then_some(i % 2),
            },
            5 => Event::Revive {
                fw: (i / 3) % 4,
                role: None,
            },
            6 => Event::ToggleAgent { agent: i % 5 },
            9 => Event::ToggleFramework { fw: (i / 5) % 4 },
            _ => Event::UpdateAgent {
                agent: i % 5,
                extra_cpus: (i % 3) as u8,
            },
        });
    }
    run(events).unwrap();
}
