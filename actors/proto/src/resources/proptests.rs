//! Property tests for the resource algebra over random resources. A failing case is saved
//! under `actors/proptest-regressions/` and replayed first; `PROPTEST_RNG_SEED` fixes the seed.

use proptest::prelude::*;
use proptest::sample::select;

use super::*;

fn reservation() -> impl Strategy<Value = Reservation> {
    let dynamic = |role: &str, principal: Option<&str>| Reservation::Dynamic {
        role: role.into(),
        principal: principal.map(Into::into),
    };
    select(vec![
        Reservation::Unreserved,
        Reservation::Static { role: "eng".into() },
        Reservation::Static { role: "eng/ml".into() },
        Reservation::Static { role: "ops".into() },
        dynamic("eng", None),
        dynamic("eng/ml", Some("alice")),
    ])
}

/// Scalars in thousandths, small ones often so that equal and nearby values meet.
fn milli() -> impl Strategy<Value = u64> {
    prop_oneof![0..=3_000u64, 0..=1_000_000_000u64]
}

fn resource() -> impl Strategy<Value = Resource> {
    let scalar = (select(vec!["cpus", "mem", "disk", "gpus", "foo"]), milli(), reservation()).prop_map(
        |(name, milli, reservation)| {
            let value = Value::Scalar(Scalar::from_milli(milli).expect("below the maximum"));
            Resource::new(name, value, reservation).expect("valid resource")
        },
    );
    let interval = (0..200u64, 0..20u64).prop_map(|(begin, length)| (begin, begin + length));
    let ranges = (select(vec!["ports", "bar"]), prop::collection::vec(interval, 0..4), reservation())
        .prop_map(|(name, intervals, reservation)| {
            Resource::ranges(name, &intervals, reservation).expect("valid resource")
        });
    prop_oneof![scalar, ranges]
}

fn resources() -> impl Strategy<Value = Resources> {
    prop::collection::vec(resource(), 0..10).prop_map(|entries| entries.into_iter().collect())
}

fn roles() -> impl Strategy<Value = &'static str> {
    select(vec!["*", "eng", "eng/ml", "eng/ml/training", "ops", "other"])
}

/// Whether entries are sorted by key, unique and non-zero: the normal form.
fn is_normalised(r: &Resources) -> bool {
    r.entries.windows(2).all(|pair| pair[0].key_cmp(&pair[1]) == Ordering::Less)
        && r.entries.iter().all(|entry| !entry.is_empty())
}

proptest! {
    #[test]
    fn operations_keep_the_normal_form(a in resources(), b in resources(), role in roles()) {
        for r in [&a + &b, &a - &b, a.allocatable_to(role), a.without_reservations(), a.reserved(role)] {
            prop_assert!(is_normalised(&r), "{r}");
        }
    }

    #[test]
    fn add_then_sub_gives_back(a in resources(), b in resources()) {
        // Ranges add as union, so only values not already in `a` come back out.
        let a_ranges = a.filter(|entry| entry.value().kind() == ValueKind::Ranges);
        let b = &b - &a_ranges;
        prop_assert_eq!(&(&a + &b) - &b, a);
    }

    #[test]
    fn a_sum_contains_its_terms(a in resources(), b in resources()) {
        let sum = &a + &b;
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
    }

    #[test]
    fn contains_is_reflexive_and_antisymmetric(a in resources(), b in resources()) {
        prop_assert!(a.contains(&a));
        prop_assert!(a.contains(&Resources::new()));
        if a.contains(&b) && b.contains(&a) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn contains_means_sub_then_add_gives_back(a in resources(), b in resources()) {
        prop_assert_eq!(a.contains(&b), &(&a - &b) + &b == a);
    }

    #[test]
    fn sub_never_grows(a in resources(), b in resources()) {
        let difference = &a - &b;
        prop_assert!(a.contains(&difference));
        prop_assert!((&difference + &b).contains(&a));
    }

    #[test]
    fn add_is_commutative_and_associative(a in resources(), b in resources(), c in resources()) {
        prop_assert_eq!(&a + &b, &b + &a);
        prop_assert_eq!(&(&a + &b) + &c, &a + &(&b + &c));
    }

    #[test]
    fn assign_operators_match_binary_ones(a in resources(), b in resources()) {
        let mut sum = a.clone();
        sum += &b;
        prop_assert_eq!(&sum, &(&a + &b));
        let mut difference = a.clone();
        difference -= &b;
        prop_assert_eq!(&difference, &(&a - &b));
        let mut extended = a.clone();
        extended.extend(b.iter().cloned());
        prop_assert_eq!(&extended, &sum);
        let mut added = a.clone();
        b.iter().for_each(|entry| added.add_resource(entry));
        prop_assert_eq!(added, sum);
    }

    #[test]
    fn text_round_trips(a in resources()) {
        prop_assert_eq!(Resources::parse(&a.to_string()), Ok(a.clone()));
        prop_assert_eq!(a.to_string().parse::<Resources>(), Ok(a));
    }

    #[test]
    fn serde_round_trips(a in resources()) {
        let json = serde_json::to_string(&a).expect("serialises");
        prop_assert_eq!(serde_json::from_str::<Resources>(&json).expect("deserialises"), a.clone());
        let packed = keel_message::message::encode(&a).expect("encodes");
        prop_assert_eq!(keel_message::message::decode::<Resources>(&packed).expect("decodes"), a);
    }

    #[test]
    fn reservation_filters_partition(a in resources(), role in roles()) {
        let by_role: Resources = ["eng", "eng/ml", "ops"].iter().map(|role| a.reserved(role)).sum();
        prop_assert_eq!(&a.unreserved() + &by_role, a.clone());
        let allocatable = a.allocatable_to(role);
        prop_assert!(a.contains(&allocatable));
        prop_assert!(allocatable.contains(&a.unreserved()));
        prop_assert!(allocatable.contains(&a.reserved(role)));
    }

    #[test]
    fn totals_ignore_reservations(a in resources()) {
        let flat = a.without_reservations();
        prop_assert!(flat.iter().all(|entry| entry.reservation().is_unreserved()));
        for (name, milli) in a.scalars_milli() {
            prop_assert_eq!(milli, a.scalar_milli(name));
            prop_assert_eq!(flat.scalar_milli(name), milli);
        }
        prop_assert_eq!(flat.ranges("ports"), a.ranges("ports"));
        prop_assert_eq!(flat.cpus(), a.cpus());
    }

    #[test]
    fn parse_never_panics(text in "[a-z()*,:;=/\\[\\]{}0-9. eE+-]{0,40}") {
        if let Ok(r) = Resources::parse(&text) {
            prop_assert!(is_normalised(&r));
            prop_assert_eq!(Resources::parse(&r.to_string()), Ok(r));
        }
    }

    #[test]
    fn parse_never_panics_on_any_string(text in any::<String>()) {
        let _ = Resources::parse(&text);
        let _ = serde_json::from_str::<Resources>(&text);
    }
}
