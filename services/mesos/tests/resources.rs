#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Resources arithmetic with Mesos semantics: merging, subtraction, containment,
//! reservations, disks, shared volumes, filters and the `/master/state` model.

use basalt_mesos::{
    DiskInfo, DiskSource, Labels, ParseError, Persistence, Ranges, ReservationInfo, Resource,
    Resources, Scalar, Set, Volume,
};

fn res(text: &str) -> Resources {
    Resources::parse(text).unwrap()
}

fn scalar(v: f64) -> Scalar {
    Scalar::try_from_f64(v).unwrap()
}

fn mount_disk(size: f64, root: &str) -> Resource {
    Resource::scalar("disk", size).unwrap().with_disk(DiskInfo {
        source: Some(DiskSource::mount(root)),
        ..DiskInfo::default()
    })
}

fn volume(size: f64, id: &str, role: &str) -> Resource {
    Resource::scalar("disk", size)
        .unwrap()
        .with_reservation(ReservationInfo::new_dynamic(role, Some("ops".into()), None))
        .with_disk(DiskInfo {
            persistence: Some(Persistence {
                id: id.into(),
                principal: Some("ops".into()),
            }),
            volume: Some(Volume {
                container_path: "data".into(),
                ..Volume::default()
            }),
            source: None,
        })
}

#[test]
fn same_identity_merges_and_different_roles_do_not() {
    let r = res("cpus:1") + res("cpus:2.5");
    assert_eq!(r.len(), 1);
    assert_eq!(r.cpus(), Some(scalar(3.5)));

    let r = res("cpus(r1):1;cpus:1;cpus(r1):2");
    assert_eq!(r.len(), 2);
    assert_eq!(r.cpus(), Some(scalar(4.0)));
    assert_eq!(r.reserved(Some("r1")).cpus(), Some(scalar(3.0)));
    assert_eq!(r.unreserved().cpus(), Some(scalar(1.0)));

    let allocated = res("cpus:1").allocate("web") + res("cpus:1");
    assert_eq!(
        allocated.len(),
        2,
        "allocation info is part of the identity"
    );
    assert_eq!(allocated.unallocate(), res("cpus:2"));
}

#[test]
fn fixed_point_sums() {
    let r = res("cpus:0.1") + res("cpus:0.2");
    assert_eq!(r, res("cpus:0.3"));
    assert_eq!(r.cpus().unwrap().as_f64(), 0.3);
    // Below Mesos precision: empty, dropped.
    assert!(res("cpus:0.0001").is_empty());
}

#[test]
fn subtraction_takes_only_what_is_there() {
    let r = res("cpus:2;mem:1024;ports:[31000-32000]");
    assert_eq!(
        &r - &res("cpus:0.5"),
        res("cpus:1.5;mem:1024;ports:[31000-32000]")
    );
    // Not there: ignored.
    assert_eq!(&r - &res("gpus:1"), r);
    assert_eq!(&r - &res("cpus(r1):1"), r);
    // More than there: the scalar disappears, never negative.
    assert_eq!(&r - &res("cpus:5"), res("mem:1024;ports:[31000-32000]"));
    // Ranges: set difference.
    assert_eq!(
        (&r - &res("ports:[31500-31509]"))
            .ports()
            .unwrap()
            .to_string(),
        "[31000-31499, 31510-32000]"
    );
    assert!(r.checked_sub(&res("cpus:3")).is_none());
    assert_eq!(
        r.checked_sub(&res("cpus:2")).unwrap(),
        res("mem:1024;ports:[31000-32000]")
    );
    // Subtracting everything empties it.
    assert!((&r - &r).is_empty());
}

#[test]
fn contains_follows_mesos() {
    let r = res("cpus:2;ports:[1-10];tags:{a,b}");
    assert!(r.contains(&res("cpus:1.5")));
    assert!(r.contains(&res("cpus:2;ports:[3-4,7-8];tags:{a}")));
    assert!(!r.contains(&res("cpus:2.001")));
    assert!(!r.contains(&res("ports:[9-11]")));
    assert!(!r.contains(&res("tags:{c}")));
    assert!(!r.contains(&res("cpus(r1):1")));
    assert!(r.contains(&Resources::new()));
    // Containment is cumulative: both halves must fit at once.
    let two = res("cpus:1") + res("cpus(r1):1");
    assert!(!res("cpus:1.5").contains(&two));
    assert!(res("cpus:1;cpus(r1):1").contains(&two));
}

#[test]
fn allocatable_to_roles() {
    let r = res("cpus:1;cpus(slave_public):2;cpus(eng):4;mem(slave_public):512");
    assert_eq!(r.allocatable_to("slave_public").cpus(), Some(scalar(3.0)));
    assert_eq!(r.allocatable_to("slave_public").mem(), Some(scalar(512.0)));
    assert_eq!(r.allocatable_to("other").cpus(), Some(scalar(1.0)));
    assert_eq!(r.allocatable_to("*").cpus(), Some(scalar(1.0)));
    // Hierarchical roles: eng/web may use eng's reservation; engineering may not.
    assert_eq!(r.allocatable_to("eng/web").cpus(), Some(scalar(5.0)));
    assert_eq!(r.allocatable_to("engineering").cpus(), Some(scalar(1.0)));

    let by_role = r.reservations();
    assert_eq!(by_role.keys().collect::<Vec<_>>(), ["eng", "slave_public"]);
    assert_eq!(
        by_role["slave_public"],
        res("cpus(slave_public):2;mem(slave_public):512")
    );
    assert_eq!(r.reserved(None).cpus(), Some(scalar(6.0)));
    assert_eq!(r.statically_reserved().cpus(), Some(scalar(6.0)));
    assert!(r.dynamically_reserved().is_empty());
}

#[test]
fn flatten_and_reservation_stacks() {
    let r = res("cpus(r):2;cpus:1;mem(r):10");
    assert_eq!(r.flatten(), res("cpus:3;mem:10"));
    assert_eq!(r.flatten_to_role("x"), res("cpus(x):3;mem(x):10"));
    assert_eq!(r.flatten_to_role("*"), res("cpus:3;mem:10"));

    // RESERVE then UNRESERVE round trip.
    let unreserved = res("cpus:2");
    let dynamic = ReservationInfo::new_dynamic(
        "web",
        Some("ops".into()),
        Some([("owner", "alice")].into_iter().collect()),
    );
    let reserved = unreserved.push_reservation(&dynamic);
    assert!(reserved.iter().all(Resource::is_dynamically_reserved));
    assert_eq!(reserved.reserved(Some("web")).cpus(), Some(scalar(2.0)));
    assert_eq!(reserved.pop_reservation(), unreserved);

    // Dynamic reservations with different labels are different resources.
    let other = ReservationInfo::new_dynamic("web", Some("ops".into()), Some(Labels::new()));
    let both = &reserved + &unreserved.push_reservation(&other);
    assert_eq!(both.len(), 2);
    assert_eq!(both.cpus(), Some(scalar(4.0)));
    // Labels compare as a multiset (order does not matter).
    let a = ReservationInfo::new_dynamic(
        "w",
        None,
        Some([("a", "1"), ("b", "2")].into_iter().collect()),
    );
    let b = ReservationInfo::new_dynamic(
        "w",
        None,
        Some([("b", "2"), ("a", "1")].into_iter().collect()),
    );
    assert_eq!(
        (unreserved.push_reservation(&a) + unreserved.push_reservation(&b)).len(),
        1
    );
}

#[test]
fn mount_disks_are_exclusive() {
    let a = mount_disk(100.0, "/mnt/a");
    let mut r = Resources::from(a.clone());
    r += a.clone();
    assert_eq!(r.len(), 2, "identical MOUNT disks are not merged");
    assert_eq!(r.disk(), Some(scalar(200.0)));
    // A smaller piece of a MOUNT disk cannot be taken out or contained.
    let half = mount_disk(50.0, "/mnt/a");
    assert!(!r.contains_resource(&half));
    assert_eq!(&r - &Resources::from(half), r);
    // The whole disk can.
    assert!(r.contains_resource(&a));
    r -= &a;
    assert_eq!(r, Resources::from(a.clone()));
    assert_eq!(a.disk_kind(), Some(basalt_mesos::DiskKind::Mount));
}

#[test]
fn path_and_root_disks_merge_and_split() {
    let path = |v| {
        Resource::scalar("disk", v).unwrap().with_disk(DiskInfo {
            source: Some(DiskSource::path("/mnt/p")),
            ..DiskInfo::default()
        })
    };
    let r = Resources::from(path(10.0)) + Resources::from(path(5.0)) + res("disk:7");
    assert_eq!(r.len(), 2);
    assert_eq!(r.disk(), Some(scalar(22.0)));
    assert!(r.contains_resource(&path(12.0)));
    let left = &r - &Resources::from(path(12.0));
    assert_eq!(left, Resources::from(path(3.0)) + res("disk:7"));
    assert_eq!(
        path(1.0).disk.unwrap().source.unwrap().root(),
        Some("/mnt/p")
    );
}

#[test]
fn persistent_volumes_subtract_only_when_identical() {
    let v1 = volume(64.0, "v1", "db");
    let v2 = volume(64.0, "v2", "db");
    let r = Resources::from(v1.clone()) + Resources::from(v2.clone());
    assert_eq!(r.len(), 2);
    assert_eq!(r.persistent_volumes().len(), 2);
    let smaller = volume(32.0, "v1", "db");
    assert!(!r.contains_resource(&smaller));
    assert_eq!(&r - &Resources::from(smaller), r);
    assert_eq!(&r - &Resources::from(v1), Resources::from(v2));
}

#[test]
fn shared_volumes_are_counted() {
    let v = volume(64.0, "shared1", "db").into_shared();
    v.validate().unwrap();
    let mut r = Resources::from(v.clone());
    r += v.clone();
    assert_eq!(r.len(), 1);
    assert_eq!(r.shared_count(&v), 2);
    assert_eq!(r.to_vec().len(), 2);
    assert!(r.contains(&(Resources::from(v.clone()) + Resources::from(v.clone()))));
    let three: Resources = vec![v.clone(), v.clone(), v.clone()].into();
    assert!(!r.contains(&three));
    r -= &v;
    assert_eq!(r.shared_count(&v), 1);
    assert_eq!(r, Resources::from(v.clone()));
    // The JSON list repeats a shared resource once per copy.
    let json = serde_json::to_value(Resources::from(vec![v.clone(), v.clone()])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    let back: Resources = serde_json::from_value(json).unwrap();
    assert_eq!(back.shared_count(&v), 2);
}

#[test]
fn empty_values_are_dropped() {
    let mut r = Resources::new();
    r += Resource::scalar("cpus", 0.0).unwrap();
    r += Resource::ranges("ports", Ranges::empty());
    r += Resource::set("tags", Set::empty());
    assert!(r.is_empty());
    // A negative resource is ignored, as Mesos ignores invalid ones.
    let mut neg = Resource::scalar("cpus", 1.0).unwrap();
    neg.value = basalt_mesos::ResourceValue::Scalar(Scalar::from_int(-1));
    r += neg.clone();
    assert!(r.is_empty());
    assert!(neg.validate().is_err());
}

#[test]
fn equality_ignores_order() {
    assert_eq!(
        res("cpus:1;mem:2;ports:[1-2]"),
        res("ports:[1-2];mem:2;cpus:1")
    );
    assert_ne!(res("cpus:1;mem:2"), res("cpus:1"));
    assert_ne!(res("cpus:1"), res("cpus(r):1"));
}

#[test]
fn quantities_and_getters() {
    let r = res("cpus:1;cpus(r):2;mem:100;gpus:1;ports:[1-5];ports(r):[10-12];tags:{a}");
    let q = r.scalar_quantities();
    assert_eq!(q["cpus"], scalar(3.0));
    assert_eq!(q["mem"], scalar(100.0));
    assert_eq!(q["gpus"], scalar(1.0));
    assert!(!q.contains_key("ports"));
    assert_eq!(r.ports().unwrap().to_string(), "[1-5, 10-12]");
    assert_eq!(r.get_set("tags").unwrap().to_string(), "{a}");
    assert_eq!(r.disk(), None);
    assert_eq!(
        r.names().into_iter().collect::<Vec<_>>(),
        ["cpus", "gpus", "mem", "ports", "tags"]
    );
}

#[test]
fn state_model() {
    let mut r = res("cpus:4;mem:14861;disk:35577;ports:[1025-2180,2182-3887];tags:{b,a}");
    r += Resource::scalar("cpus", 2.0).unwrap().into_revocable();
    let m = serde_json::Value::Object(r.to_state_model());
    assert_eq!(
        m,
        serde_json::json!({
            "cpus": 4.0, "gpus": 0.0, "mem": 14861.0, "disk": 35577.0,
            "ports": "[1025-2180, 2182-3887]", "tags": "{a, b}"
        })
    );
}

#[test]
fn display_is_the_flag_form() {
    let r = res("cpus:4;mem:4096;ports:[31000-32000];disk(slave_public):100");
    assert_eq!(
        r.to_string(),
        "cpus:4; mem:4096; ports:[31000-32000]; disk(slave_public):100"
    );
    assert_eq!(Resources::parse(&r.to_string()).unwrap(), r);
    let v = volume(64.0, "v1", "db");
    assert_eq!(
        v.to_string(),
        "disk(reservations: [(DYNAMIC,db,ops)])[v1:data]:64"
    );
    let alloc = Resource::scalar("cpus", 1.0)
        .unwrap()
        .allocated_to("web")
        .into_revocable();
    assert_eq!(alloc.to_string(), "cpus(allocated: web){REV}:1");
}

#[test]
fn validation_names_the_problem() {
    let check = |r: Resource, needle: &str| {
        let e = r.validate().unwrap_err();
        assert!(matches!(e, ParseError::Resource { .. }), "{e:?}");
        assert!(
            e.to_string().contains(needle),
            "'{e}' should mention '{needle}'"
        );
    };
    let mut neg = Resource::scalar("cpus", 1.0).unwrap();
    neg.value = basalt_mesos::ResourceValue::Scalar(Scalar::from_int(-2));
    check(neg, "negative");
    check(Resource::scalar("gpus", 1.5).unwrap(), "whole");
    check(
        Resource::ranges("cpus", Ranges::from_range(1, 2).unwrap()),
        "must be of type SCALAR",
    );
    check(
        Resource::scalar("ports", 1.0).unwrap(),
        "must be of type RANGES",
    );
    check(
        Resource::scalar("cpus", 1.0)
            .unwrap()
            .with_disk(DiskInfo::default()),
        "disk info",
    );
    check(
        Resource::scalar("disk", 1.0).unwrap().into_shared(),
        "shared",
    );
    check(
        Resource::scalar("cpus", 1.0)
            .unwrap()
            .with_reservation(ReservationInfo::new_static("*")),
        "'*'",
    );
    check(
        Resource::scalar("cpus", 1.0)
            .unwrap()
            .with_reservation(ReservationInfo::new_static("a b")),
        "whitespace",
    );
    check(
        Resource::scalar("cpus", 1.0)
            .unwrap()
            .with_reservation(ReservationInfo::new_static("eng"))
            .with_reservation(ReservationInfo::new_dynamic("ops", None, None)),
        "subrole of 'eng'",
    );
    check(
        Resource::scalar("cpus", 1.0)
            .unwrap()
            .with_reservation(ReservationInfo::new_dynamic("eng", None, None))
            .with_reservation(ReservationInfo::new_static("eng/web")),
        "STATIC",
    );
    check(Resource::scalar("", 1.0).unwrap(), "name is empty");
    // A refined reservation to a subrole is fine.
    Resource::scalar("cpus", 1.0)
        .unwrap()
        .with_reservation(ReservationInfo::new_static("eng"))
        .with_reservation(ReservationInfo::new_dynamic(
            "eng/web",
            Some("p".into()),
            None,
        ))
        .validate()
        .unwrap();
    assert!(Resource::scalar("cpus", -1.0).is_err());
    assert!(Resource::scalar("cpus", f64::NAN).is_err());
}

#[test]
fn allocations_group_by_role() {
    let r = res("cpus:1").allocate("a") + res("cpus:2;mem:5").allocate("b") + res("mem:1");
    let by = r.allocations();
    assert_eq!(by.len(), 2);
    assert_eq!(by["a"].cpus(), Some(scalar(1.0)));
    assert_eq!(by["b"].mem(), Some(scalar(5.0)));
}
