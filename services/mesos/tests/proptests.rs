#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests for the arithmetic: scalar fixed point, ranges against a brute-force
//! set model, and the Resources laws (a + b - b == a, contains, normalisation,
//! JSON and text round trips).

use std::collections::BTreeSet;

use basalt_mesos::{Range, Ranges, ReservationInfo, Resource, Resources, Scalar, Set};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Scalars

fn scalar_strategy() -> impl Strategy<Value = Scalar> {
    (-1_000_000_000_000i64..1_000_000_000_000).prop_map(Scalar::from_milli)
}

proptest! {
    #[test]
    fn scalar_fixed_point_matches_thousandths(x in -1.0e9f64..1.0e9, y in -1.0e9f64..1.0e9) {
        let (a, b) = (Scalar::try_from_f64(x).unwrap(), Scalar::try_from_f64(y).unwrap());
        prop_assert_eq!(a.milli(), (x * 1000.0).round() as i64);
        prop_assert_eq!((a + b).milli(), a.milli() + b.milli());
        prop_assert_eq!(a + b, b + a);
        prop_assert_eq!(a + b - b, a);
    }

    #[test]
    fn scalar_associative(a in scalar_strategy(), b in scalar_strategy(), c in scalar_strategy()) {
        prop_assert_eq!((a + b) + c, a + (b + c));
        prop_assert_eq!((a - b) - c, a - (b + c));
    }

    #[test]
    fn scalar_decimal_sums_are_exact(xs in prop::collection::vec(0u32..100_000, 1..20)) {
        // Summing decimals with 3 digits gives exactly the decimal sum, in any order.
        let values: Vec<f64> = xs.iter().map(|m| f64::from(*m) / 1000.0).collect();
        let forward: Scalar = values.iter().map(|v| Scalar::try_from_f64(*v).unwrap()).sum();
        let backward: Scalar = values.iter().rev().map(|v| Scalar::try_from_f64(*v).unwrap()).sum();
        let exact: i64 = xs.iter().map(|m| i64::from(*m)).sum();
        prop_assert_eq!(forward, backward);
        prop_assert_eq!(forward.milli(), exact);
    }

    #[test]
    fn scalar_wire_and_text_round_trip(a in scalar_strategy()) {
        prop_assert_eq!(Scalar::try_from_f64(a.as_f64()).unwrap(), a);
        let json = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<Scalar>(&json).unwrap(), a);
        let text: f64 = a.to_string().parse().unwrap();
        prop_assert_eq!(Scalar::try_from_f64(text).unwrap(), a);
    }
}

// ---------------------------------------------------------------------------------------
// Ranges against a BTreeSet model

const UNIVERSE: u64 = 64;

fn ranges_input() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0..UNIVERSE, 0..8u64), 0..8).prop_map(|v| {
        v.into_iter()
            .map(|(b, len)| (b, (b + len).min(UNIVERSE - 1)))
            .collect()
    })
}

fn build(input: &[(u64, u64)]) -> (Ranges, BTreeSet<u64>) {
    let ranges = Ranges::from_ranges(input.iter().map(|(b, e)| Range::new(*b, *e).unwrap()));
    let model = input.iter().flat_map(|(b, e)| *b..=*e).collect();
    (ranges, model)
}

fn model_of(r: &Ranges) -> BTreeSet<u64> {
    r.values().collect()
}

fn is_normalised(r: &Ranges) -> bool {
    r.ranges().iter().all(|x| x.begin <= x.end)
        && r.ranges().windows(2).all(|w| w[1].begin > w[0].end + 1)
}

proptest! {
    #[test]
    fn ranges_match_set_model(a in ranges_input(), b in ranges_input(), probe in 0..UNIVERSE) {
        let (ra, ma) = build(&a);
        let (rb, mb) = build(&b);
        prop_assert!(is_normalised(&ra));
        prop_assert_eq!(model_of(&ra), ma.clone());
        prop_assert_eq!(ra.count(), ma.len() as u64);
        prop_assert_eq!(ra.contains_value(probe), ma.contains(&probe));

        let union = ra.union(&rb);
        prop_assert!(is_normalised(&union));
        prop_assert_eq!(model_of(&union), ma.union(&mb).copied().collect::<BTreeSet<_>>());

        let diff = ra.difference(&rb);
        prop_assert!(is_normalised(&diff));
        prop_assert_eq!(model_of(&diff), ma.difference(&mb).copied().collect::<BTreeSet<_>>());

        let inter = ra.intersection(&rb);
        prop_assert!(is_normalised(&inter));
        prop_assert_eq!(model_of(&inter), ma.intersection(&mb).copied().collect::<BTreeSet<_>>());

        prop_assert_eq!(ra.is_superset(&rb), ma.is_superset(&mb));
        prop_assert_eq!(ra.is_subset(&rb), ma.is_subset(&mb));
    }

    #[test]
    fn ranges_laws(a in ranges_input(), b in ranges_input()) {
        let (ra, _) = build(&a);
        let (rb, _) = build(&b);
        // (a ∪ b) \ b == a \ b; a \ b ∪ (a ∩ b) == a; union commutes; subset after union.
        prop_assert_eq!(ra.union(&rb).difference(&rb), ra.difference(&rb));
        prop_assert_eq!(ra.difference(&rb).union(&ra.intersection(&rb)), ra.clone());
        prop_assert_eq!(ra.union(&rb), rb.union(&ra));
        prop_assert!(ra.union(&rb).is_superset(&ra));
        prop_assert!(ra.is_superset(&ra.difference(&rb)));
        // Normalisation is idempotent and the text and JSON forms round-trip.
        prop_assert_eq!(Ranges::from_ranges(ra.ranges().iter().copied()), ra.clone());
        prop_assert_eq!(Ranges::parse(&ra.to_string()).unwrap(), ra.clone());
        let json = serde_json::to_string(&ra).unwrap();
        prop_assert_eq!(serde_json::from_str::<Ranges>(&json).unwrap(), ra);
    }
}

// ---------------------------------------------------------------------------------------
// Resources

const ROLES: [&str; 3] = ["*", "r1", "r2"];

/// A resource in a small universe. `half` picks which half of the range/set space
/// is used, so resources from different halves are disjoint in ranges and sets.
fn resource(half: Option<bool>) -> impl Strategy<Value = Resource> {
    let (lo, hi, letters): (u64, u64, &'static [&'static str]) = match half {
        None => (0, 64, &["a", "b", "c", "d", "e", "f"]),
        Some(false) => (0, 32, &["a", "b", "c"]),
        Some(true) => (32, 64, &["d", "e", "f"]),
    };
    let role = prop::sample::select(&ROLES[..]);
    let allocated = prop::option::weighted(0.2, prop::sample::select(&["web", "db"][..]));
    let value = prop_oneof![
        (
            prop::sample::select(&["cpus", "mem", "disk"][..]),
            0i64..20_000
        )
            .prop_map(|(n, m)| Resource::new(
                n,
                basalt_mesos::ResourceValue::Scalar(Scalar::from_milli(m))
            )),
        prop::collection::vec((lo..hi, 0..4u64), 0..4).prop_map(move |v| {
            Resource::ranges(
                "ports",
                Ranges::from_ranges(
                    v.into_iter()
                        .map(|(b, l)| Range::new(b, (b + l).min(hi - 1)).unwrap()),
                ),
            )
        }),
        prop::collection::vec(prop::sample::select(letters), 0..3)
            .prop_map(|v| Resource::set("tags", v.into_iter().collect::<Set>())),
    ];
    (value, role, allocated).prop_map(|(r, role, alloc)| {
        let r = r.reserved_static(role);
        match alloc {
            Some(a) => r.allocated_to(a),
            None => r,
        }
    })
}

fn resources(half: Option<bool>) -> impl Strategy<Value = Resources> {
    prop::collection::vec(resource(half), 0..8).prop_map(Resources::from)
}

/// Structural normal form: no empty resource, no two resources Mesos could merge.
fn resources_normalised(r: &Resources) -> bool {
    let v: Vec<&Resource> = r.iter().collect();
    v.iter().all(|x| !x.is_empty())
        && v.iter().enumerate().all(|(i, x)| {
            v[i + 1..].iter().all(|y| {
                !(x.name == y.name
                    && x.value_type() == y.value_type()
                    && x.reservations == y.reservations
                    && x.allocation_info == y.allocation_info)
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn add_then_subtract_is_identity(a in resources(Some(false)), b in resources(Some(true))) {
        // Ranges and sets are disjoint between the halves (for overlapping ones, union
        // then difference cannot give the overlap back; scalars always can).
        let sum = &a + &b;
        prop_assert_eq!(&sum - &b, a.clone());
        prop_assert_eq!(&sum - &a, b.clone());
        prop_assert_eq!(sum.checked_sub(&b), Some(a));
    }

    #[test]
    fn scalar_resources_add_subtract_any(a in resources(None), b in resources(None)) {
        let (a, b) = (a.scalars(), b.scalars());
        prop_assert_eq!(&(&a + &b) - &b, a);
    }

    #[test]
    fn sum_contains_parts(a in resources(None), b in resources(None)) {
        let sum = &a + &b;
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
        prop_assert!(sum.contains(&sum));
        prop_assert!(a.contains(&Resources::new()));
        prop_assert_eq!(&a + &b, &b + &a);
        prop_assert!(resources_normalised(&sum));
    }

    #[test]
    fn subtraction_stays_inside(a in resources(None), b in resources(None)) {
        let diff = &a - &b;
        prop_assert!(a.contains(&diff));
        prop_assert!(resources_normalised(&diff));
        // Whatever is contained can be taken out and put back.
        prop_assert!(a.contains(&diff));
        prop_assert_eq!(&(&a - &diff) + &diff, a.clone());
        // contains(b) iff checked_sub succeeds.
        prop_assert_eq!(a.checked_sub(&b).is_some(), a.contains(&b));
    }

    #[test]
    fn addition_associative(a in resources(None), b in resources(None), c in resources(None)) {
        prop_assert_eq!(&(&a + &b) + &c, &a + &(&b + &c));
    }

    #[test]
    fn normalisation_idempotent(a in resources(None)) {
        prop_assert!(resources_normalised(&a));
        let again = Resources::from(a.to_vec());
        prop_assert_eq!(again.to_vec(), a.to_vec());
        prop_assert_eq!(&a + &Resources::new(), a.clone());
        prop_assert_eq!(a.flatten().flatten(), a.flatten());
        prop_assert_eq!(a.flatten().scalar_quantities(), a.scalar_quantities());
    }

    #[test]
    fn json_round_trip(a in resources(None)) {
        let json = serde_json::to_string(&a).unwrap();
        let back: Resources = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back.to_vec(), a.to_vec());
        for format in [basalt_mesos::ResourceFormat::PreReservationRefinement,
                       basalt_mesos::ResourceFormat::PostReservationRefinement] {
            let json = serde_json::to_string(&a.formatted(format)).unwrap();
            let back: Resources = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.to_vec(), a.to_vec());
        }
    }

    #[test]
    fn text_round_trip(a in resources(None)) {
        // The flag text form carries no allocation info.
        let a = a.unallocate();
        let back = Resources::parse(&a.to_string()).unwrap();
        prop_assert_eq!(back, a);
    }

    #[test]
    fn role_filters_partition(a in resources(None)) {
        let reserved: Resources = a.reservations().values().fold(Resources::new(), |acc, r| &acc + r);
        prop_assert_eq!(&a.unreserved() + &reserved, a.clone());
        for role in ["r1", "r2", "other"] {
            let mine = a.allocatable_to(role);
            prop_assert_eq!(mine, &a.unreserved() + &a.reserved(Some(role)));
        }
        let dynamic = a.push_reservation(&ReservationInfo::new_dynamic("r1/x", Some("p".into()), None));
        prop_assert_eq!(dynamic.pop_reservation(), a);
    }
}
