//! Unit tests, one or more per allocation rule.

use std::collections::BTreeMap;
use std::time::Duration;

use basalt_mesos::{
    AgentId, Capability, CapabilityType, FrameworkId, FrameworkInfo, ReservationInfo, Resources,
};

use super::*;

fn res(text: &str) -> Resources {
    Resources::parse(text).unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn info(roles: &[&str], caps: &[CapabilityType]) -> FrameworkInfo {
    let mut i = FrameworkInfo::new("root", "test");
    let mut caps: Vec<Capability> = caps.iter().cloned().map(Capability::from).collect();
    if roles.len() == 1 {
        i.role = Some(roles[0].to_owned());
    } else {
        caps.push(CapabilityType::MultiRole.into());
        i.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }
    i.capabilities = caps;
    i
}

fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s)
}

fn aid(s: &str) -> AgentId {
    AgentId::new(s)
}

fn alloc() -> Allocator {
    Allocator::new(AllocatorConfig::default()).unwrap()
}

fn add_fw(al: &mut Allocator, id: &str, roles: &[&str], caps: &[CapabilityType]) {
    al.add_framework(&fid(id), &info(roles, caps), &BTreeMap::new(), true)
        .unwrap();
}

fn add_agent(al: &mut Allocator, id: &str, total: &str) {
    al.add_agent(&aid(id), &res(total), &BTreeMap::new())
        .unwrap();
}

/// (framework, agent, role) of each allocation.
fn who(out: &[Allocation]) -> Vec<(String, String, String)> {
    out.iter()
        .map(|a| (a.framework.to_string(), a.agent.to_string(), a.role.clone()))
        .collect()
}

fn triple(f: &str, a: &str, r: &str) -> (String, String, String) {
    (f.to_owned(), a.to_owned(), r.to_owned())
}

#[test]
fn offers_everything_once_with_allocation_info() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["*"], &[]);
    add_agent(&mut al, "a1", "cpus:4;mem:1024;ports:[31000-32000]");
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f1", "a1", "*")]);
    assert_eq!(
        out[0].resources.unallocate(),
        res("cpus:4;mem:1024;ports:[31000-32000]")
    );
    assert!(
        out[0]
            .resources
            .iter()
            .all(|r| r.allocation_info.as_ref().and_then(|a| a.role.as_deref()) == Some("*"))
    );
    // Offered = allocated: nothing left, nothing offered twice.
    assert!(al.available(&aid("a1")).unwrap().is_empty());
    assert!(al.allocate(secs(1)).is_empty());
    assert_eq!(al.allocated(&fid("f1")).unwrap(), out[0].resources);
}

#[test]
fn drf_alternates_between_equal_frameworks() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["*"], &[]);
    add_fw(&mut al, "f2", &["*"], &[]);
    for i in 0..4 {
        add_agent(&mut al, &format!("a{i}"), "cpus:2;mem:1024");
    }
    let out = al.allocate(secs(0));
    let fws: Vec<String> = out.iter().map(|a| a.framework.to_string()).collect();
    // Ties broken by name, then lowest share first.
    assert_eq!(fws, ["f1", "f2", "f1", "f2"]);
    assert_eq!(al.framework_share(&fid("f1"), "*"), Some(0.5));
}

#[test]
fn drf_uses_the_dominant_resource() {
    let mut al = alloc();
    add_fw(&mut al, "cpu-heavy", &["*"], &[]);
    add_fw(&mut al, "mem-heavy", &["*"], &[]);
    add_agent(&mut al, "a0", "cpus:8;mem:1024");
    add_agent(&mut al, "a1", "cpus:1;mem:8192");
    // Total cpus 9, mem 9216. First agent to cpu-heavy (name order) -> share 8/9.
    let out = al.allocate(secs(0));
    assert_eq!(
        who(&out),
        [
            triple("cpu-heavy", "a0", "*"),
            triple("mem-heavy", "a1", "*")
        ]
    );
    // Give a1 back from mem-heavy: cpu-heavy (share 8/9) still ranks after mem-heavy (0).
    al.recover_resources(
        &fid("mem-heavy"),
        &aid("a1"),
        &out[1].resources,
        None,
        secs(0),
    )
    .unwrap();
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("mem-heavy", "a1", "*")]);
}

#[test]
fn weighted_roles_get_proportional_shares() {
    let mut cfg = AllocatorConfig::default();
    cfg.role_weights.insert("heavy".into(), 3.0);
    let mut al = Allocator::new(cfg).unwrap();
    add_fw(&mut al, "f-heavy", &["heavy"], &[]);
    add_fw(&mut al, "f-light", &["light"], &[]);
    for i in 0..8 {
        add_agent(&mut al, &format!("a{i}"), "cpus:1;mem:128");
    }
    let out = al.allocate(secs(0));
    let heavy = out.iter().filter(|a| a.role == "heavy").count();
    assert_eq!(heavy, 6, "{:?}", who(&out));
    let shares = al.role_shares();
    assert_eq!(shares[0].role, "heavy");
    assert!((shares[0].dominant_share - 0.75).abs() < 1e-9);
    assert!((shares[1].dominant_share - 0.25).abs() < 1e-9);
    // set_weight re-orders: light now outweighs heavy.
    al.set_weight("light", 10.0).unwrap();
    assert!(matches!(
        al.set_weight("light", -1.0),
        Err(AllocatorError::InvalidWeight { .. })
    ));
}

#[test]
fn reserved_resources_stay_in_their_role() {
    let mut al = alloc();
    add_fw(&mut al, "any", &["*"], &[]);
    add_fw(&mut al, "public", &["slave_public"], &[]);
    add_agent(
        &mut al,
        "pub",
        "cpus(slave_public):4;mem(slave_public):512;cpus:1;mem:128",
    );
    let out = al.allocate(secs(0));
    // Roles in name order at equal shares: "*" < "slave_public".
    assert_eq!(
        who(&out),
        [
            triple("any", "pub", "*"),
            triple("public", "pub", "slave_public")
        ]
    );
    assert_eq!(out[0].resources.unallocate(), res("cpus:1;mem:128"));
    assert_eq!(
        out[1].resources.unallocate(),
        res("cpus(slave_public):4;mem(slave_public):512")
    );
    // Without a slave_public framework, the reservation is never offered.
    let mut al = alloc();
    add_fw(&mut al, "any", &["*"], &[]);
    add_agent(&mut al, "pub", "cpus(slave_public):4;mem(slave_public):512");
    assert!(al.allocate(secs(0)).is_empty());
}

#[test]
fn reserved_role_gets_unreserved_too_and_subroles_get_ancestor_reservations() {
    let mut al = alloc();
    add_fw(&mut al, "eng", &["eng/web"], &[]);
    add_agent(&mut al, "a", "cpus(eng):2;mem(eng):256;cpus:1;mem:64");
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("eng", "a", "eng/web")]);
    assert_eq!(
        out[0].resources.unallocate(),
        res("cpus(eng):2;mem(eng):256;cpus:1;mem:64")
    );
}

#[test]
fn leftover_reservation_goes_to_its_role_after_unreserved_is_gone() {
    let mut al = alloc();
    // "a-star" sorts first and takes the unreserved part; the reservation of "zz"
    // is still offered to "zz" in the same cycle (phase 2 of the agent visit).
    add_fw(&mut al, "f-star", &["*"], &[]);
    add_fw(&mut al, "f-zz", &["zz"], &[]);
    add_fw(&mut al, "f-mid", &["mid"], &[]);
    add_agent(&mut al, "a", "cpus:2;mem:256;cpus(zz):1;mem(zz):64");
    let out = al.allocate(secs(0));
    assert_eq!(
        who(&out),
        [triple("f-star", "a", "*"), triple("f-zz", "a", "zz")]
    );
}

#[test]
fn decline_filter_blocks_until_expiry() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["*"], &[]);
    add_agent(&mut al, "a1", "cpus:4;mem:1024");
    let out = al.allocate(secs(0));
    al.recover_resources(
        &fid("f1"),
        &aid("a1"),
        &out[0].resources,
        refuse_filter(None),
        secs(10),
    )
    .unwrap();
    assert_eq!(al.active_filters(&fid("f1")), 1);
    assert_eq!(al.next_filter_expiry(), Some(secs(15)));
    assert!(al.allocate(secs(10)).is_empty());
    assert!(al.allocate(secs(14)).is_empty());
    // The expiry alone makes the agent dirty again.
    let out = al.allocate(secs(15));
    assert_eq!(who(&out), [triple("f1", "a1", "*")]);
    assert_eq!(al.active_filters(&fid("f1")), 0);
}

#[test]
fn filter_matches_only_offers_contained_in_the_refused_resources() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["*"], &[]);
    add_agent(&mut al, "a1", "cpus:4;mem:1024");
    let out = al.allocate(secs(0));
    // Decline half, keep half (a task).
    let half = res("cpus:2;mem:512").allocate("*");
    al.recover_resources(&fid("f1"), &aid("a1"), &half, Some(secs(100)), secs(0))
        .unwrap();
    assert!(
        al.allocate(secs(1)).is_empty(),
        "cpus:2;mem:512 is filtered"
    );
    // The task ends: cpus:4;mem:1024 is available, not contained in the filter.
    let rest = &out[0].resources - &half;
    al.recover_resources(&fid("f1"), &aid("a1"), &rest, None, secs(2))
        .unwrap();
    let out = al.allocate(secs(2));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resources.unallocate(), res("cpus:4;mem:1024"));
}

#[test]
fn filtered_framework_is_skipped_for_the_next_one() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["*"], &[]);
    add_fw(&mut al, "f2", &["*"], &[]);
    add_agent(&mut al, "a1", "cpus:4;mem:1024");
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f1", "a1", "*")]);
    al.recover_resources(
        &fid("f1"),
        &aid("a1"),
        &out[0].resources,
        Some(secs(5)),
        secs(0),
    )
    .unwrap();
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f2", "a1", "*")]);
}

#[test]
fn revive_clears_filters_and_suppression() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["*"], &[]);
    add_agent(&mut al, "a1", "cpus:4;mem:1024");
    let out = al.allocate(secs(0));
    al.recover_resources(
        &fid("f1"),
        &aid("a1"),
        &out[0].resources,
        Some(secs(1000)),
        secs(0),
    )
    .unwrap();
    assert!(al.allocate(secs(1)).is_empty());
    al.revive(&fid("f1"), None).unwrap();
    assert_eq!(al.active_filters(&fid("f1")), 0);
    assert_eq!(al.allocate(secs(1)).len(), 1);
}

#[test]
fn suppressed_roles_get_nothing_until_revived() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["a", "b"], &[]);
    al.suppress(&fid("f1"), Some(&["a".to_owned()])).unwrap();
    add_agent(&mut al, "n1", "cpus(a):1;mem(a):64;cpus(b):1;mem(b):64");
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f1", "n1", "b")]);
    al.suppress(&fid("f1"), None).unwrap();
    al.recover_resources(&fid("f1"), &aid("n1"), &out[0].resources, None, secs(0))
        .unwrap();
    assert!(al.allocate(secs(0)).is_empty());
    assert!(matches!(
        al.revive(&fid("f1"), Some(&["c".to_owned()])),
        Err(AllocatorError::NotSubscribed { ref role, .. }) if role == "c"
    ));
    al.revive(&fid("f1"), Some(&["a".to_owned()])).unwrap();
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f1", "n1", "a")]);
    al.revive(&fid("f1"), None).unwrap();
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f1", "n1", "b")]);
}

#[test]
fn gpu_agents_go_only_to_gpu_frameworks_when_scarce() {
    let mut al = alloc();
    add_fw(&mut al, "plain", &["*"], &[]);
    add_agent(&mut al, "gpu", "cpus:4;mem:1024;gpus:2");
    add_agent(&mut al, "cpu", "cpus:4;mem:1024");
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("plain", "cpu", "*")]);
    add_fw(&mut al, "gpu-fw", &["*"], &[CapabilityType::GpuResources]);
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("gpu-fw", "gpu", "*")]);
    assert_eq!(
        out[0].resources.gpus(),
        Some(basalt_mesos::Scalar::from_int(2))
    );

    let cfg = AllocatorConfig {
        gpus_are_scarce: false,
        ..AllocatorConfig::default()
    };
    let mut al = Allocator::new(cfg).unwrap();
    add_fw(&mut al, "plain", &["*"], &[]);
    add_agent(&mut al, "gpu", "cpus:4;mem:1024;gpus:2");
    assert_eq!(who(&al.allocate(secs(0))), [triple("plain", "gpu", "*")]);
}

#[test]
fn excluded_resources_do_not_count_towards_shares() {
    let mut al = alloc();
    add_fw(&mut al, "g", &["*"], &[CapabilityType::GpuResources]);
    add_agent(&mut al, "gpu", "cpus:1;mem:100;gpus:8");
    add_agent(&mut al, "big", "cpus:99;mem:9900");
    let out = al.allocate(secs(0));
    assert_eq!(out.len(), 2);
    al.recover_resources(&fid("g"), &aid("big"), &out[1].resources, None, secs(0))
        .unwrap();
    // Holds all 8 GPUs but only 1% of cpus/mem.
    let share = al.framework_share(&fid("g"), "*").unwrap();
    assert!((share - 0.01).abs() < 1e-9, "{share}");

    let cfg = AllocatorConfig {
        fair_sharing_excluded_resource_names: Vec::new(),
        ..AllocatorConfig::default()
    };
    let mut al = Allocator::new(cfg).unwrap();
    add_fw(&mut al, "g", &["*"], &[CapabilityType::GpuResources]);
    add_agent(&mut al, "gpu", "cpus:1;mem:100;gpus:8");
    add_agent(&mut al, "big", "cpus:99;mem:9900");
    let out = al.allocate(secs(0));
    al.recover_resources(&fid("g"), &aid("big"), &out[1].resources, None, secs(0))
        .unwrap();
    assert_eq!(al.framework_share(&fid("g"), "*"), Some(1.0));
}

#[test]
fn below_minimum_allocatable_is_not_offered() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["*"], &[]);
    add_agent(&mut al, "tiny", "cpus:0.005;mem:16;disk:1000");
    add_agent(&mut al, "cpu-only", "cpus:0.01");
    add_agent(&mut al, "mem-only", "mem:32");
    let out = al.allocate(secs(0));
    assert_eq!(
        who(&out),
        [triple("f", "cpu-only", "*"), triple("f", "mem-only", "*")]
    );
    assert_eq!(
        al.available(&aid("tiny")).unwrap(),
        &res("cpus:0.005;mem:16;disk:1000")
    );
}

#[test]
fn inactive_agents_and_frameworks_get_nothing() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["*"], &[]);
    add_agent(&mut al, "a", "cpus:1;mem:64");
    al.deactivate_agent(&aid("a")).unwrap();
    assert!(al.allocate(secs(0)).is_empty());
    al.activate_agent(&aid("a")).unwrap();
    al.deactivate_framework(&fid("f")).unwrap();
    assert!(al.allocate(secs(0)).is_empty());
    al.activate_framework(&fid("f")).unwrap();
    assert_eq!(al.allocate(secs(0)).len(), 1);
}

#[test]
fn deactivating_a_framework_clears_its_filters() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["*"], &[]);
    add_agent(&mut al, "a", "cpus:1;mem:64");
    let out = al.allocate(secs(0));
    al.recover_resources(
        &fid("f"),
        &aid("a"),
        &out[0].resources,
        Some(secs(100)),
        secs(0),
    )
    .unwrap();
    al.deactivate_framework(&fid("f")).unwrap();
    assert_eq!(al.active_filters(&fid("f")), 0);
    al.activate_framework(&fid("f")).unwrap();
    assert_eq!(al.allocate(secs(1)).len(), 1);
}

#[test]
fn revocable_resources_need_the_capability() {
    let mut al = alloc();
    add_fw(&mut al, "plain", &["*"], &[]);
    add_fw(
        &mut al,
        "rev",
        &["*"],
        &[CapabilityType::RevocableResources],
    );
    let mut total = res("cpus:2;mem:256");
    total.add_resource(
        basalt_mesos::Resource::scalar("cpus", 8.0)
            .unwrap()
            .into_revocable(),
    );
    al.add_agent(&aid("a"), &total, &BTreeMap::new()).unwrap();
    let out = al.allocate(secs(0));
    // "plain" sorts first but cannot take the revocable cpus: "rev" gets them.
    assert_eq!(
        who(&out),
        [triple("plain", "a", "*"), triple("rev", "a", "*")]
    );
    assert!(out[0].resources.iter().all(|r| !r.revocable));
    assert!(out[1].resources.iter().all(|r| r.revocable));
}

#[test]
fn recover_validates_and_ignores_removed_parties() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["*"], &[]);
    add_agent(&mut al, "a", "cpus:1;mem:64");
    let out = al.allocate(secs(0));
    let e = al
        .recover_resources(
            &fid("f"),
            &aid("a"),
            &res("cpus:2").allocate("*"),
            None,
            secs(0),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("framework f") && e.to_string().contains("agent a"),
        "{e}"
    );
    let e = al
        .recover_resources(
            &fid("f"),
            &aid("a"),
            &res("cpus:1").allocate("other"),
            None,
            secs(0),
        )
        .unwrap_err();
    assert!(matches!(e, AllocatorError::NotAllocated { ref role, .. } if role == "other"));
    // Resources without allocation info: the single role is inferred.
    al.recover_resources(&fid("f"), &aid("a"), &res("cpus:0.5"), None, secs(0))
        .unwrap();
    al.recover_resources(&fid("ghost"), &aid("a"), &out[0].resources, None, secs(0))
        .unwrap();
    al.remove_agent(&aid("a")).unwrap();
    al.recover_resources(&fid("f"), &aid("a"), &out[0].resources, None, secs(0))
        .unwrap();
    assert_eq!(al.allocated(&fid("f")).unwrap(), Resources::new());
}

#[test]
fn agents_with_used_resources() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["*"], &[]);
    add_fw(&mut al, "f2", &["*"], &[]);
    let used = BTreeMap::from([(fid("f1"), res("cpus:3;mem:300"))]);
    al.add_agent(&aid("a"), &res("cpus:4;mem:400"), &used)
        .unwrap();
    add_agent(&mut al, "b", "cpus:4;mem:400");
    // f1 holds 3/8 of the cluster: f2 ranks first for both agents' leftovers.
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f2", "a", "*"), triple("f2", "b", "*")]);
    assert_eq!(out[0].resources.unallocate(), res("cpus:1;mem:100"));

    let e = al
        .add_agent(
            &aid("c"),
            &res("cpus:1"),
            &BTreeMap::from([(fid("zz"), res("cpus:1"))]),
        )
        .unwrap_err();
    assert!(matches!(e, AllocatorError::UnknownFramework { .. }));
    let e = al
        .add_agent(
            &aid("c"),
            &res("cpus:1"),
            &BTreeMap::from([(fid("f1"), res("cpus:2"))]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("agent c"), "{e}");
    assert!(
        al.total(&aid("c")).is_none(),
        "a refused call changes nothing"
    );
    assert!(matches!(
        al.add_agent(&aid("a"), &res("cpus:1"), &BTreeMap::new()),
        Err(AllocatorError::AgentExists { .. })
    ));
}

#[test]
fn frameworks_with_used_resources() {
    let mut al = alloc();
    add_agent(&mut al, "a", "cpus:4;mem:400");
    let used = BTreeMap::from([(aid("a"), res("cpus:1;mem:100").allocate("web"))]);
    al.add_framework(&fid("f"), &info(&["web", "db"], &[]), &used, false)
        .unwrap();
    assert_eq!(al.available(&aid("a")).unwrap(), &res("cpus:3;mem:300"));
    let bare = BTreeMap::from([(aid("a"), res("cpus:1"))]);
    let e = al
        .add_framework(&fid("g"), &info(&["x", "y"], &[]), &bare, true)
        .unwrap_err();
    assert!(
        matches!(e, AllocatorError::MissingAllocationRole { .. }),
        "{e}"
    );
    let too_much = BTreeMap::from([(aid("a"), res("cpus:4"))]);
    assert!(matches!(
        al.add_framework(&fid("g"), &info(&["x"], &[]), &too_much, true),
        Err(AllocatorError::UsedExceedsTotal { .. })
    ));
    assert!(matches!(
        al.add_framework(&fid("f"), &info(&["x"], &[]), &BTreeMap::new(), true),
        Err(AllocatorError::FrameworkExists { .. })
    ));
    assert!(matches!(
        al.add_framework(&fid("h"), &info(&["bad role"], &[]), &BTreeMap::new(), true),
        Err(AllocatorError::InvalidRole { .. })
    ));
    assert_eq!(al.framework_count(), 1);
}

#[test]
fn multi_role_framework_gets_one_offer_per_role() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["a", "b"], &[]);
    add_agent(&mut al, "n", "cpus:1;mem:64;cpus(b):2;mem(b):128");
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f", "n", "a"), triple("f", "n", "b")]);
    assert_eq!(out[1].resources.unallocate(), res("cpus(b):2;mem(b):128"));
    // Recover both offers in one call: roles come from allocation_info.
    let both = &out[0].resources + &out[1].resources;
    al.recover_resources(&fid("f"), &aid("n"), &both, Some(secs(5)), secs(0))
        .unwrap();
    assert_eq!(al.active_filters(&fid("f")), 2);
}

#[test]
fn update_allocation_reserves_inside_an_offer() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["web"], &[]);
    add_fw(&mut al, "other", &["*"], &[]);
    add_agent(&mut al, "a", "cpus:4;mem:400");
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("other", "a", "*")]);
    al.recover_resources(
        &fid("other"),
        &aid("a"),
        &out[0].resources,
        Some(secs(1000)),
        secs(0),
    )
    .unwrap();
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f", "a", "web")]);
    // RESERVE cpus:2;mem:200 for "web" inside the offer.
    let from = res("cpus:2;mem:200").allocate("web");
    let to = res("cpus:2;mem:200")
        .push_reservation(&ReservationInfo::new_dynamic("web", Some("p".into()), None))
        .allocate("web");
    let bad = res("cpus:3;mem:200").allocate("web");
    assert!(matches!(
        al.update_allocation(&fid("f"), &aid("a"), &from, &bad),
        Err(AllocatorError::QuantityMismatch { .. })
    ));
    assert!(matches!(
        al.update_allocation(&fid("f"), &aid("a"), &from, &to.unallocate().allocate("*")),
        Err(AllocatorError::RoleMismatch { .. })
    ));
    al.update_allocation(&fid("f"), &aid("a"), &from, &to)
        .unwrap();
    let total = al.total(&aid("a")).unwrap().clone();
    assert_eq!(total.reserved(Some("web")), to.unallocate());
    // Decline everything. "other" is still filtered: cpus:2;mem:200 is contained in
    // what it refused. Once it revives it gets the unreserved part only; the
    // reservation only ever goes back to "web".
    let all = al.allocated(&fid("f")).unwrap();
    al.recover_resources(&fid("f"), &aid("a"), &all, Some(secs(1000)), secs(1))
        .unwrap();
    assert!(al.allocate(secs(1)).is_empty());
    al.revive(&fid("other"), None).unwrap();
    let out = al.allocate(secs(1));
    assert_eq!(who(&out), [triple("other", "a", "*")]);
    assert_eq!(out[0].resources.unallocate(), res("cpus:2;mem:200"));
    assert_eq!(al.available(&aid("a")).unwrap(), &to.unallocate());
}

#[test]
fn update_available_changes_unallocated_shape() {
    let mut al = alloc();
    add_fw(&mut al, "web", &["web"], &[]);
    al.suppress(&fid("web"), None).unwrap();
    add_agent(&mut al, "a", "cpus:4;mem:400");
    assert!(al.allocate(secs(0)).is_empty());
    let from = res("cpus:1;mem:100");
    let to = from.push_reservation(&ReservationInfo::new_dynamic("web", None, None));
    assert!(matches!(
        al.update_available(&aid("a"), &res("cpus:9"), &res("cpus:9")),
        Err(AllocatorError::NotAvailable { .. })
    ));
    al.update_available(&aid("a"), &from, &to).unwrap();
    add_fw(&mut al, "star", &["*"], &[]);
    let out = al.allocate(secs(0));
    assert_eq!(out[0].resources.unallocate(), res("cpus:3;mem:300"));
    al.revive(&fid("web"), None).unwrap();
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("web", "a", "web")]);
    assert_eq!(out[0].resources.unallocate(), to);
}

#[test]
fn removing_frameworks_and_agents_frees_everything() {
    let mut al = alloc();
    add_fw(&mut al, "f1", &["r1"], &[]);
    add_fw(&mut al, "f2", &["r2"], &[]);
    add_agent(&mut al, "a", "cpus:1;mem:64");
    add_agent(&mut al, "b", "cpus:1;mem:64");
    let out = al.allocate(secs(0));
    assert_eq!(out.len(), 2);
    al.recover_resources(
        &fid("f1"),
        &aid("a"),
        &out[0].resources,
        Some(secs(99)),
        secs(0),
    )
    .unwrap();
    al.remove_framework(&fid("f1")).unwrap();
    assert!(
        al.role_shares().iter().all(|r| r.role != "r1"),
        "role r1 is gone"
    );
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f2", "a", "r2")]);
    al.remove_agent(&aid("a")).unwrap();
    assert_eq!(al.agent_count(), 1);
    assert_eq!(al.allocation(&fid("f2")).unwrap().len(), 1);
    let m = al.metrics();
    assert_eq!(m["allocator/mesos/resources/cpus/total"], 1.0);
    assert_eq!(
        m["allocator/mesos/resources/cpus/offered_or_allocated"],
        1.0
    );
    assert_eq!(m["allocator/mesos/roles/r2/shares/dominant"], 1.0);
    assert!(matches!(
        al.remove_framework(&fid("f1")),
        Err(AllocatorError::UnknownFramework { .. })
    ));
}

#[test]
fn update_framework_changes_roles_and_capabilities() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["a"], &[]);
    add_agent(&mut al, "gpu", "cpus:1;mem:64;gpus:1;cpus(b):1;mem(b):64");
    assert!(al.allocate(secs(0)).is_empty());
    al.update_framework(&fid("f"), &info(&["b"], &[CapabilityType::GpuResources]))
        .unwrap();
    let out = al.allocate(secs(0));
    assert_eq!(who(&out), [triple("f", "gpu", "b")]);
    assert!(al.role_shares().iter().all(|r| r.role != "a"));
}

#[test]
fn update_agent_changes_total() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["*"], &[]);
    add_agent(&mut al, "a", "cpus:1;mem:64");
    let out = al.allocate(secs(0));
    al.update_agent(&aid("a"), &res("cpus:3;mem:64")).unwrap();
    let out2 = al.allocate(secs(0));
    assert_eq!(out2.len(), 1);
    assert_eq!(out2[0].resources.unallocate(), res("cpus:2"));
    assert_eq!(al.metrics()["allocator/mesos/resources/cpus/total"], 3.0);
    drop(out);
}

#[test]
fn only_dirty_agents_are_visited() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["*"], &[]);
    for i in 0..50 {
        add_agent(&mut al, &format!("a{i:02}"), "cpus:1;mem:64");
    }
    let out = al.allocate(secs(0));
    assert_eq!(out.len(), 50);
    assert_eq!(al.stats().last_agents_visited, 50);
    assert!(!al.has_pending_work());
    assert!(al.allocate(secs(1)).is_empty());
    assert_eq!(al.stats().last_agents_visited, 0);
    let a7 = out.iter().find(|o| o.agent == aid("a07")).unwrap();
    al.recover_resources(
        &fid("f"),
        &aid("a07"),
        &a7.resources,
        Some(secs(5)),
        secs(1),
    )
    .unwrap();
    assert!(al.allocate(secs(2)).is_empty());
    assert_eq!(al.stats().last_agents_visited, 1);
    assert!(al.allocate(secs(3)).is_empty());
    assert_eq!(al.stats().last_agents_visited, 0, "nothing changed");
    let out = al.allocate(secs(6));
    assert_eq!(
        al.stats().last_agents_visited,
        1,
        "filter expiry visits one agent"
    );
    assert_eq!(who(&out), [triple("f", "a07", "*")]);
    // Revive with nothing left anywhere: no agent to visit.
    al.revive(&fid("f"), None).unwrap();
    al.allocate(secs(7));
    assert_eq!(al.stats().last_agents_visited, 0);
}

#[test]
fn filter_expiry_heap_stays_bounded_under_revive_churn() {
    let mut al = alloc();
    add_fw(&mut al, "f", &["*"], &[]);
    add_agent(&mut al, "a", "cpus:1;mem:64");
    for i in 0..5000 {
        let out = al.allocate(secs(i));
        assert_eq!(out.len(), 1);
        al.recover_resources(
            &fid("f"),
            &aid("a"),
            &out[0].resources,
            Some(secs(1_000_000)),
            secs(i),
        )
        .unwrap();
        al.revive(&fid("f"), None).unwrap();
    }
    assert!(al.expiries.len() <= 1024 + 2, "{}", al.expiries.len());
}
