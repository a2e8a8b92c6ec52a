//! Allocator benchmarks (figures printed, not asserted): full DRF cycles over 10,000
//! agents × 100 and × 1,000 frameworks, incremental cycles after one event, and a
//! Mesos `DeclineOffers`-style round where every framework has filtered the previous
//! offers, side by side with the Mesos anchors of
//! `shared/reference/perf-anchors.md` (§1.1, B1).
//!
//! `cargo bench -p basalt-master --bench allocator`; `BASALT_BENCH_QUICK=1` runs
//! 1,000 agents only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use basalt_master::allocator::{Allocation, Allocator, AllocatorConfig};
use basalt_mesos::{AgentId, FrameworkId, FrameworkInfo, Resources};

struct Row {
    scenario: String,
    agents: usize,
    frameworks: usize,
    offers: usize,
    visited: u64,
    time: Duration,
    anchor: &'static str,
}

fn cluster(agents: usize, frameworks: usize) -> (Allocator, Vec<FrameworkId>, Duration) {
    let mut al = Allocator::new(AllocatorConfig::default()).unwrap();
    let fws: Vec<FrameworkId> = (0..frameworks)
        .map(|i| FrameworkId::new(format!("framework-{i:05}")))
        .collect();
    for f in &fws {
        let mut info = FrameworkInfo::new("root", f.as_str());
        info.role = Some("*".to_owned());
        al.add_framework(f, &info, &BTreeMap::new(), true).unwrap();
    }
    // The Mesos benchmark's agent shape.
    let total = Resources::parse("cpus:24;mem:4096;disk:4096;ports:[31000-32000]").unwrap();
    let start = Instant::now();
    for a in 0..agents {
        al.add_agent(
            &AgentId::new(format!("agent-{a:06}")),
            &total,
            &BTreeMap::new(),
        )
        .unwrap();
    }
    (al, fws, start.elapsed())
}

fn timed(al: &mut Allocator, now: Duration) -> (Vec<Allocation>, Duration, u64) {
    let start = Instant::now();
    let out = al.allocate(now);
    let t = start.elapsed();
    (out, t, al.stats().last_agents_visited)
}

fn scenario(agents: usize, frameworks: usize, rows: &mut Vec<Row>, full_anchor: &'static str) {
    // Best of 3 for the cluster build and the full cycle (the machine is shared).
    let mut best: Option<(Allocator, Vec<Allocation>, Duration, u64)> = None;
    let mut add_time = Duration::MAX;
    for _ in 0..3 {
        let (mut al, _fws, added) = cluster(agents, frameworks);
        add_time = add_time.min(added);
        let (out, t, visited) = timed(&mut al, Duration::ZERO);
        if best.as_ref().is_none_or(|b| t < b.2) {
            best = Some((al, out, t, visited));
        }
    }
    let (mut al, out, t, visited) = best.unwrap();
    rows.push(Row {
        scenario: "add agents".into(),
        agents,
        frameworks,
        offers: 0,
        visited: 0,
        time: add_time,
        anchor: if frameworks == 1000 {
            "Mesos 1.7.1: 1.61 s (10k agents)"
        } else {
            "-"
        },
    });
    rows.push(Row {
        scenario: "full cycle".into(),
        agents,
        frameworks,
        offers: out.len(),
        visited,
        time: t,
        anchor: full_anchor,
    });

    // One event: one offer declined without a filter.
    let one = out[agents / 2].clone();
    al.recover_resources(
        &one.framework,
        &one.agent,
        &one.resources,
        None,
        Duration::ZERO,
    )
    .unwrap();
    let (reoffer, t, visited) = timed(&mut al, Duration::from_secs(1));
    rows.push(Row {
        scenario: "incremental: 1 decline".into(),
        agents,
        frameworks,
        offers: reoffer.len(),
        visited,
        time: t,
        anchor: "Mesos rescans every agent",
    });

    // One event: a framework revives with nothing left to offer anywhere.
    al.revive(&one.framework, None).unwrap();
    let (o, t, visited) = timed(&mut al, Duration::from_secs(2));
    rows.push(Row {
        scenario: "incremental: 1 revive".into(),
        agents,
        frameworks,
        offers: o.len(),
        visited,
        time: t,
        anchor: "-",
    });

    // DeclineOffers: every offer declined with a long filter, then a new cycle; in
    // round k each agent first skips the k frameworks that filtered it.
    let mut offers: Vec<Allocation> = out
        .into_iter()
        .filter(|o| o.agent != one.agent)
        .chain(reoffer)
        .collect();
    let last = if frameworks >= 20 { 20 } else { frameworks };
    for round in 1..=last {
        for o in &offers {
            al.recover_resources(
                &o.framework,
                &o.agent,
                &o.resources,
                Some(Duration::from_secs(i32::MAX as u64)),
                Duration::from_secs(2),
            )
            .unwrap();
        }
        let (o, t, visited) = timed(&mut al, Duration::from_secs(3));
        if [1, 2, 5, 10, 20].contains(&round) {
            rows.push(Row {
                scenario: format!("decline-all round {round}"),
                agents,
                frameworks,
                offers: o.len(),
                visited,
                time: t,
                anchor: if frameworks == 1000 {
                    "Mesos 1.7.1 DeclineOffers: 1.06 s"
                } else {
                    "-"
                },
            });
        }
        offers = o;
    }
}

fn main() {
    let quick = std::env::var_os("BASALT_BENCH_QUICK").is_some();
    let agents = if quick { 1_000 } else { 10_000 };
    let mut rows = Vec::new();
    scenario(agents, 100, &mut rows, "-");
    scenario(
        agents,
        1_000,
        &mut rows,
        "Mesos 1.7.1: 1.06 s (was 3.2-3.4 s); target <= 100 ms",
    );
    println!();
    println!(
        "{:<26} {:>7} {:>6} {:>7} {:>8} {:>11} {:>9}  anchor (perf-anchors.md B1)",
        "scenario", "agents", "fws", "offers", "visited", "time", "ns/pair"
    );
    for r in rows {
        let pairs = (r.agents * r.frameworks) as f64;
        let per_pair = r.time.as_nanos() as f64 / pairs;
        println!(
            "{:<26} {:>7} {:>6} {:>7} {:>8} {:>11} {:>9.2}  {}",
            r.scenario,
            r.agents,
            r.frameworks,
            r.offers,
            r.visited,
            format!("{:.3?}", r.time),
            per_pair,
            r.anchor
        );
    }
    println!(
        "(Mesos: optimised C++ on the Mesos developers' machines. Ours: this machine, one \
         thread; full cycle and agent adds best of 3, the other rows single runs.)"
    );
}
