//! Unit tests for the resource algebra: parsing and its errors, display, arithmetic,
//! reservations and the serde form.

use super::*;

fn res(text: &str) -> Resources {
    Resources::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn parse_err(text: &str) -> ResourcesError {
    match Resources::parse(text) {
        Ok(r) => panic!("{text:?} parsed as {r}"),
        Err(e) => e,
    }
}

fn static_for(role: &str) -> Reservation {
    Reservation::Static { role: role.into() }
}

#[test]
fn parses_scalars_and_ranges() {
    let r = res("cpus:4;mem:8192;ports:[31000-32000]");
    assert_eq!(r.cpus(), 4.0);
    assert_eq!(r.mem_mb(), 8192.0);
    assert_eq!(r.ranges("ports"), vec![(31000, 32000)]);
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|entry| entry.reservation().is_unreserved()));
}

#[test]
fn parses_roles_and_star() {
    let r = res("cpus(ads):4;mem(*):1024");
    assert_eq!(r.reserved("ads"), res("cpus(ads):4"));
    assert_eq!(r.unreserved(), res("mem:1024"));
    let cpus = r.iter().find(|entry| entry.name() == "cpus").unwrap();
    assert_eq!(cpus.reservation(), &static_for("ads"));
    assert_eq!(cpus.reservation().role(), "ads");
    assert_eq!(cpus.value(), &Value::Scalar(Scalar::from_milli(4000).unwrap()));
}

#[test]
fn parses_dynamic_reservations() {
    let r = res("cpus(eng,dynamic):1;cpus(eng, dynamic = alice):2;cpus(eng):4");
    let reservations: Vec<_> = r.iter().map(|entry| entry.reservation().clone()).collect();
    assert_eq!(
        reservations,
        vec![
            static_for("eng"),
            Reservation::Dynamic { role: "eng".into(), principal: None },
            Reservation::Dynamic { role: "eng".into(), principal: Some("alice".into()) },
        ]
    );
    assert_eq!(r.reserved("eng").cpus(), 7.0);
    assert_eq!(r.to_string(), "cpus(eng):4;cpus(eng,dynamic):1;cpus(eng,dynamic=alice):2");
}

#[test]
fn tolerates_whitespace_and_empty_entries() {
    let r = res("  cpus ( ads ) : 4 ;; ports : [ 1 - 10 , 20-30 ] ; ");
    assert_eq!(r, res("cpus(ads):4;ports:[1-10,20-30]"));
    assert_eq!(res(""), Resources::new());
    assert_eq!(res(" ; ;"), Resources::new());
    assert!(res("").is_empty());
}

#[test]
fn sums_repeated_entries_and_coalesces_ranges() {
    assert_eq!(res("cpus:1;cpus:2.5").cpus(), 3.5);
    assert_eq!(res("ports:[1-5];ports:[3-10,12-12]").ranges("ports"), vec![(1, 10), (12, 12)]);
    assert_eq!(res("ports:[6-7,1-5]").ranges("ports"), vec![(1, 7)]);
    assert_eq!(res("ports:[80, 443]").ranges("ports"), vec![(80, 80), (443, 443)]);
    assert_eq!(res("ports:[0-18446744073709551615,5-6]").ranges("ports"), vec![(0, u64::MAX)]);
}

#[test]
fn drops_zero_scalars_and_empty_ranges() {
    assert!(res("cpus:0;ports:[];mem:0.0001").is_empty());
    assert_eq!(res("cpus:0;mem:1"), res("mem:1"));
}

#[test]
fn parses_custom_names() {
    let r = res("foo:3;bar:[1-2];gpus:1;disk:100");
    assert_eq!(r.scalar("foo"), 3.0);
    assert_eq!(r.ranges("bar"), vec![(1, 2)]);
    assert_eq!(r.gpus(), 1.0);
    assert_eq!(r.disk_mb(), 100.0);
    assert_eq!(r.scalar("absent"), 0.0);
    assert!(r.ranges("absent").is_empty());
    assert_eq!(r.names().into_iter().collect::<Vec<_>>(), vec!["bar", "disk", "foo", "gpus"]);
}

#[test]
fn rounds_scalars_to_thousandths() {
    assert_eq!(res("cpus:0.0005").scalar_milli("cpus"), 1);
    assert_eq!(res("cpus:1.23449").scalar_milli("cpus"), 1234);
    assert_eq!(res("cpus:1.2345").scalar_milli("cpus"), 1235);
    assert_eq!(res("cpus:0.9995").scalar_milli("cpus"), 1000);
    assert_eq!(res("cpus:.5").scalar_milli("cpus"), 500);
    assert_eq!(res("cpus:3.").scalar_milli("cpus"), 3000);
    assert_eq!(res("cpus:1e3").scalar_milli("cpus"), 1_000_000);
    assert_eq!(res("cpus:+2").scalar_milli("cpus"), 2000);
    assert_eq!(res("mem:1000000000000").scalar_milli("mem"), MAX_SCALAR_MILLI);
}

#[test]
fn point_one_plus_point_two_is_point_three() {
    let sum = res("cpus:0.1") + res("cpus:0.2");
    assert_eq!(sum, res("cpus:0.3"));
    assert_eq!(sum.cpus(), 0.3);
    let mut r = Resources::new();
    for _ in 0..10 {
        r += &res("cpus:0.1");
    }
    assert_eq!(r, res("cpus:1"));
}

#[test]
fn rejects_bad_scalars() {
    use ResourcesError::*;
    assert!(matches!(parse_err("cpus:-1"), NegativeScalar { .. }));
    assert!(matches!(parse_err("cpus:-0.5"), NegativeScalar { .. }));
    assert!(matches!(parse_err("cpus:NaN"), NonFiniteScalar { .. }));
    assert!(matches!(parse_err("cpus:inf"), NonFiniteScalar { .. }));
    assert!(matches!(parse_err("cpus:-inf"), NonFiniteScalar { .. }));
    assert!(matches!(parse_err("cpus:1e400"), NonFiniteScalar { .. }));
    assert!(matches!(parse_err("cpus:abc"), InvalidNumber { .. }));
    assert!(matches!(parse_err("cpus:"), InvalidNumber { .. }));
    assert!(matches!(parse_err("cpus:."), InvalidNumber { .. }));
    assert!(matches!(parse_err("cpus:1.2.3"), InvalidNumber { .. }));
    assert!(matches!(parse_err("cpus:4:5"), InvalidNumber { .. }));
    assert!(matches!(parse_err("cpus:1e300"), ScalarTooLarge { .. }));
    assert!(matches!(parse_err("mem:1000000000000.001"), ScalarTooLarge { .. }));
    assert!(matches!(parse_err("cpus:99999999999999999999999"), ScalarTooLarge { .. }));
    assert_eq!(
        parse_err("cpus:-1").to_string(),
        "resource `cpus` has negative value `-1`",
        "messages name the resource and the value"
    );
}

#[test]
fn rejects_bad_ranges() {
    use ResourcesError::*;
    assert_eq!(parse_err("ports:[5-1]"), InvalidRange { name: "ports".into(), range: "5-1".into() });
    assert!(matches!(parse_err("ports:[a-b]"), InvalidRange { .. }));
    assert!(matches!(parse_err("ports:[1-2,]"), InvalidRange { .. }));
    assert!(matches!(parse_err("ports:[-1-5]"), InvalidRange { .. }));
    assert!(matches!(parse_err("ports:[1-2-3]"), InvalidRange { .. }));
    assert!(matches!(parse_err("ports:[18446744073709551616]"), InvalidRange { .. }));
    assert!(matches!(parse_err("ports:[1-2"), Syntax { .. }));
    assert!(matches!(parse_err("ports:{1,2}"), Syntax { .. }));
}

#[test]
fn rejects_bad_names_roles_and_syntax() {
    use ResourcesError::*;
    assert!(matches!(parse_err(":4"), EmptyName { .. }));
    assert!(matches!(parse_err("(ads):4"), EmptyName { .. }));
    assert!(matches!(parse_err("c pu:4"), InvalidName { .. }));
    assert!(matches!(parse_err("cpus!:4"), InvalidName { .. }));
    assert!(matches!(parse_err(&format!("{}:1", "x".repeat(129))), InvalidName { .. }));
    assert!(matches!(parse_err("cpus(bad role!):1"), InvalidRole { .. }));
    assert!(matches!(parse_err("cpus(/eng):1"), InvalidRole { .. }));
    assert!(matches!(parse_err("cpus():1"), InvalidRole { .. }));
    assert!(matches!(parse_err("cpus(*,dynamic):1"), InvalidRole { .. }));
    assert!(matches!(parse_err("cpus(eng,dynamic=):1"), InvalidPrincipal { .. }));
    assert!(matches!(parse_err("cpus(eng,dynamic=a:b):1"), InvalidPrincipal { .. }));
    assert!(matches!(parse_err("cpus(eng,static):1"), Syntax { .. }));
    assert!(matches!(parse_err("cpus(eng,dynamicx):1"), Syntax { .. }));
    assert!(matches!(parse_err("cpus"), Syntax { .. }));
    assert!(matches!(parse_err("cpus 4"), Syntax { .. }));
    assert!(matches!(parse_err("cpus(ads:4"), Syntax { .. }));
    assert!(matches!(parse_err("cpus(ads)x:4"), Syntax { .. }));
}

#[test]
fn rejects_mixed_and_wrong_kinds() {
    use ResourcesError::*;
    assert_eq!(
        parse_err("cpus:1;cpus:[1-2]"),
        WrongKind { name: "cpus".into(), expected: ValueKind::Scalar }
    );
    assert_eq!(parse_err("ports:4"), WrongKind { name: "ports".into(), expected: ValueKind::Ranges });
    assert_eq!(parse_err("foo:1;foo(eng):[1-2]"), MixedKinds { name: "foo".into() });
    assert_eq!(parse_err("foo:0;foo:[]"), MixedKinds { name: "foo".into() });
}

#[test]
fn validates_roles() {
    for role in ["*", "eng", "eng/ml/training", "a.b", "a_b-c", "x..y", "0", &"r".repeat(256)] {
        assert_eq!(validate_role(role), Ok(()), "{role:?}");
    }
    for role in [
        "",
        "/eng",
        "eng/",
        "eng//ml",
        ".",
        "..",
        "eng/..",
        "eng/./x",
        "bad role",
        "-eng",
        "eng/-x",
        "eng/*",
        "*/eng",
        "**",
        "é",
        &"r".repeat(257),
    ] {
        assert!(matches!(validate_role(role), Err(ResourcesError::InvalidRole { .. })), "{role:?}");
    }
}

#[test]
fn displays_in_normalised_order() {
    let r = res("mem:1024;cpus(ads):4;cpus:0.5;ports:[5-6,1-2];cpus:0.125;disk(eng/ml):10.25");
    assert_eq!(r.to_string(), "cpus:0.625;cpus(ads):4;disk(eng/ml):10.25;mem:1024;ports:[1-2, 5-6]");
    assert_eq!(res(&r.to_string()), r);
    assert_eq!(Resources::new().to_string(), "");
    assert_eq!(res("mem:1000000000000").to_string(), "mem:1000000000000");
}

#[test]
fn subtraction_saturates_per_entry() {
    assert!((res("cpus:1") - res("cpus:2")).is_empty());
    assert_eq!(res("cpus:1;mem:10") - res("cpus:2;mem:3"), res("mem:7"));
    assert_eq!(res("ports:[1-10]") - res("ports:[3-4,10-20]"), res("ports:[1-2,5-9]"));
    assert_eq!(res("cpus:1") - res("mem:5;ports:[1-2]"), res("cpus:1"));
    assert_eq!(res("cpus(a):1") - res("cpus:1"), res("cpus(a):1"));
    let mut r = res("cpus:2;ports:[1-3]");
    r -= &res("cpus:2;ports:[1-3]");
    assert!(r.is_empty());
}

#[test]
fn addition_saturates_at_the_maximum() {
    let max = res("mem:1000000000000");
    assert_eq!(&max + &max, max);
    assert_eq!(Scalar::MAX.saturating_add(Scalar::MAX), Scalar::MAX);
}

#[test]
fn operators_take_owned_and_borrowed_operands() {
    let (a, b) = (res("cpus:2"), res("cpus:1;mem:4"));
    let sum = res("cpus:3;mem:4");
    assert_eq!(&a + &b, sum);
    assert_eq!(&a + b.clone(), sum);
    assert_eq!(a.clone() + &b, sum);
    assert_eq!(a.clone() + b.clone(), sum);
    assert_eq!(&sum - &b, a);
    assert_eq!(&sum - b.clone(), a);
    assert_eq!(sum.clone() - &b, a);
    assert_eq!(sum.clone() - b.clone(), a);
    assert_eq!([a.clone(), b.clone()].iter().sum::<Resources>(), sum);
    assert_eq!(vec![a, b].into_iter().sum::<Resources>(), sum);
}

#[test]
fn contains_respects_reservations() {
    assert!(!res("cpus(ads):4").contains(&res("cpus:1")));
    assert!(!res("cpus:4").contains(&res("cpus(ads):1")));
    assert!(!res("cpus(ads):4").contains(&res("cpus(ads,dynamic):1")));
    assert!(res("cpus:4;cpus(ads):1").contains(&res("cpus:3;cpus(ads):1")));
    assert!(!res("cpus:4;cpus(ads):1").contains(&res("cpus:3;cpus(ads):1.001")));
    assert!(res("ports:[1-100]").contains(&res("ports:[5-6,90-100]")));
    assert!(!res("ports:[1-10,12-20]").contains(&res("ports:[9-13]")));
    assert!(res("cpus:1").contains(&Resources::new()));
    assert!(Resources::new().contains(&Resources::new()));
    assert!(!res("cpus:1").contains(&res("cpus:1;mem:1")));
    assert!(res("cpus:1;mem:1;ports:[1-2]").contains(&res("mem:1")));
}

#[test]
fn allocatable_to_includes_ancestor_reservations() {
    let r = res(
        "cpus:1;cpus(eng):2;cpus(eng/ml):4;cpus(eng/mlx):8;cpus(ops):16;cpus(eng/ml/training,dynamic):32",
    );
    assert_eq!(r.allocatable_to("eng/ml"), res("cpus:1;cpus(eng):2;cpus(eng/ml):4"));
    assert_eq!(r.allocatable_to("eng").cpus(), 3.0);
    assert_eq!(r.allocatable_to("eng/ml/training").cpus(), 39.0);
    assert_eq!(r.allocatable_to("ops").cpus(), 17.0);
    assert_eq!(r.allocatable_to("engineering").cpus(), 1.0);
    assert_eq!(r.allocatable_to("*"), r.unreserved());
    assert!(is_self_or_ancestor("eng", "eng/ml"));
    assert!(!is_self_or_ancestor("eng/ml", "eng"));
    assert!(!is_self_or_ancestor("*", "eng"));
}

#[test]
fn reservation_filters_and_flattening() {
    let r = res(
        "cpus:1;cpus(eng):2;cpus(eng,dynamic=bob):4;cpus(eng/ml):8;mem(eng):10;ports(ops):[1-2];ports:[3-4]",
    );
    assert_eq!(r.unreserved(), res("cpus:1;ports:[3-4]"));
    assert_eq!(r.reserved("eng"), res("cpus(eng):2;cpus(eng,dynamic=bob):4;mem(eng):10"));
    assert!(r.reserved("*").is_empty());
    assert!(r.reserved("nobody").is_empty());
    assert_eq!(r.without_reservations(), res("cpus:15;mem:10;ports:[1-4]"));
    assert_eq!(r.flatten_to("x/y").unwrap(), res("cpus(x/y):15;mem(x/y):10;ports(x/y):[1-4]"));
    assert_eq!(r.flatten_to("*").unwrap(), r.without_reservations());
    assert!(r.flatten_to("bad role").is_err());
    assert_eq!(r.filter(|entry| entry.name() == "mem"), res("mem(eng):10"));
}

#[test]
fn totals_are_summed_over_reservations() {
    let r =
        res("cpus:1;cpus(a):0.5;cpus(b,dynamic):0.25;mem:10;mem(a):6;ports:[1-2];ports(a):[3-5,9-9];zeta:1");
    assert_eq!(r.cpus(), 1.75);
    assert_eq!(r.scalar_milli("cpus"), 1750);
    assert_eq!(r.mem_mb(), 16.0);
    assert_eq!(r.ranges("ports"), vec![(1, 5), (9, 9)]);
    let totals: Vec<_> = r.scalars_milli().collect();
    assert_eq!(totals, vec![("cpus", 1750), ("mem", 16000), ("zeta", 1000)]);
    assert_eq!(Resources::new().scalars_milli().count(), 0);
}

#[test]
fn resources_built_by_hand_are_validated_and_normalised() {
    use ResourcesError::*;
    let cpus = Resource::scalar("cpus", 1.5, Reservation::Unreserved).unwrap();
    let ports = Resource::ranges("ports", &[(5, 6), (1, 2)], static_for("eng")).unwrap();
    let r: Resources = [cpus.clone(), ports, cpus.clone()].into_iter().collect();
    assert_eq!(r, res("cpus:3;ports(eng):[1-2,5-6]"));
    assert_eq!(Resources::from(cpus.clone()), res("cpus:1.5"));
    let mut extended = Resources::from(cpus.clone());
    extended.extend([cpus.clone()]);
    extended.add_resource(&cpus);
    assert_eq!(extended, res("cpus:4.5"));
    assert!(Resources::from(Resource::scalar("cpus", 0.0, Reservation::Unreserved).unwrap()).is_empty());

    assert!(matches!(Resource::scalar("cpus", -1.0, Reservation::Unreserved), Err(NegativeScalar { .. })));
    assert!(matches!(
        Resource::scalar("cpus", f64::NAN, Reservation::Unreserved),
        Err(NonFiniteScalar { .. })
    ));
    assert!(matches!(Resource::scalar("", 1.0, Reservation::Unreserved), Err(EmptyName { .. })));
    assert!(matches!(
        Resource::ranges("ports", &[(2, 1)], Reservation::Unreserved),
        Err(InvalidRange { .. })
    ));
    assert!(matches!(Resource::scalar("ports", 1.0, Reservation::Unreserved), Err(WrongKind { .. })));
    assert!(matches!(Resource::scalar("cpus", 1.0, static_for("*")), Err(InvalidRole { .. })));
    assert!(matches!(Resource::scalar("cpus", 1.0, static_for("a//b")), Err(InvalidRole { .. })));
    let bad_principal = Reservation::Dynamic { role: "eng".into(), principal: Some("a b".into()) };
    assert!(matches!(Resource::scalar("cpus", 1.0, bad_principal), Err(InvalidPrincipal { .. })));
    assert_eq!(Reservation::for_role("*").unwrap(), Reservation::Unreserved);
    assert_eq!(Reservation::for_role("eng").unwrap(), static_for("eng"));
}

#[test]
fn mixed_kinds_from_arithmetic_are_kept() {
    let sum = res("foo:1") + res("foo:[1-2]");
    assert_eq!(sum.len(), 2);
    assert!(sum.contains(&res("foo:1")) && sum.contains(&res("foo:[1-2]")));
    assert_eq!(sum.scalar("foo"), 1.0);
    assert_eq!(sum.ranges("foo"), vec![(1, 2)]);
    assert_eq!(sum.scalars_milli().collect::<Vec<_>>(), vec![("foo", 1000)]);
    assert_eq!(sum - res("foo:1"), res("foo:[1-2]"));
}

#[test]
fn scalar_and_ranges_helpers() {
    assert_eq!(Scalar::from_f64(0.1).map(Scalar::milli), Some(100));
    assert_eq!(Scalar::from_f64(-0.1), None);
    assert_eq!(Scalar::from_f64(f64::INFINITY), None);
    assert_eq!(Scalar::from_milli(MAX_SCALAR_MILLI + 1), None);
    assert_eq!(Scalar::from_milli(1).unwrap().to_string(), "0.001");
    assert_eq!(Scalar::from_milli(1010).unwrap().to_string(), "1.01");
    assert_eq!(Scalar::from_milli(1100).unwrap().to_string(), "1.1");
    let ranges = Ranges::new([(10, 20), (1, 2), (3, 5)]).unwrap();
    assert_eq!(ranges.as_slice(), &[(1, 5), (10, 20)]);
    assert_eq!(ranges.count(), 16);
    assert!(ranges.contains_value(10) && !ranges.contains_value(7) && !ranges.contains_value(21));
    assert_eq!(Ranges::new([(2, 1)]), None);
    let all = Ranges::new([(0, u64::MAX)]).unwrap();
    assert_eq!(all.count(), 1 << 64);
    assert_eq!(all.difference(&ranges).as_slice(), &[(0, 0), (6, 9), (21, u64::MAX)]);
    assert_eq!(all.difference(&all), Ranges::default());
}

#[test]
fn serialises_as_a_documented_list() {
    let r = res("cpus:4;mem(eng):0.5;ports(eng,dynamic=alice):[1-2,5-5];gpus(ops,dynamic):1");
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"[{"name":"cpus","scalar":4.0,"role":"*"},"#,
            r#"{"name":"gpus","scalar":1.0,"role":"ops","dynamic":true},"#,
            r#"{"name":"mem","scalar":0.5,"role":"eng"},"#,
            r#"{"name":"ports","ranges":[[1,2],[5,5]],"role":"eng","dynamic":true,"principal":"alice"}]"#
        )
    );
    assert_eq!(serde_json::from_str::<Resources>(&json).unwrap(), r);
    let encoded = keel_message::message::encode(&r).unwrap();
    assert_eq!(keel_message::message::decode::<Resources>(&encoded).unwrap(), r);
}

#[test]
fn deserialisation_validates_and_normalises() {
    let parse = |json: &str| serde_json::from_str::<Resources>(json);
    let summed = parse(
        r#"[{"name":"cpus","scalar":1},{"name":"cpus","scalar":0.5,"extra":1},{"name":"mem","scalar":0}]"#,
    );
    assert_eq!(summed.unwrap(), res("cpus:1.5"));
    assert_eq!(parse(r#"[{"name":"ports","ranges":[[5,6],[1,5]]}]"#).unwrap(), res("ports:[1-6]"));
    assert_eq!(parse("[]").unwrap(), Resources::new());
    for bad in [
        r#"[{"name":"cpus","scalar":-1}]"#,
        r#"[{"name":"cpus","scalar":1e300}]"#,
        r#"[{"name":"cpus","scalar":"1"}]"#,
        r#"[{"name":"cpus"}]"#,
        r#"[{"name":"foo","scalar":1,"ranges":[[1,2]]}]"#,
        r#"[{"name":"ports","ranges":[[2,1]]}]"#,
        r#"[{"name":"ports","ranges":[[-1,1]]}]"#,
        r#"[{"name":"cpus","scalar":1,"role":"bad role"}]"#,
        r#"[{"name":"cpus","scalar":1,"role":"*","dynamic":true}]"#,
        r#"[{"name":"cpus","scalar":1,"role":"eng","principal":"alice"}]"#,
        r#"[{"name":"","scalar":1}]"#,
        r#"[{"name":"foo","scalar":1},{"name":"foo","ranges":[[1,2]]}]"#,
        r#"{"name":"cpus","scalar":1}"#,
        r#"[{"scalar":1}]"#,
    ] {
        assert!(parse(bad).is_err(), "{bad} should be rejected");
    }
    let nan = keel_message::message::encode(&vec![serde_json::json!({"name": "cpus", "scalar": f64::NAN})]);
    assert!(keel_message::message::decode::<Resources>(&nan.unwrap()).is_err());
}

#[test]
fn largest_scalars_round_trip_through_json() {
    for milli in [MAX_SCALAR_MILLI, MAX_SCALAR_MILLI - 1, 999_999_999_999_999, 123_456_789_012_345, 1] {
        let r = Resources::from(
            Resource::new("mem", Value::Scalar(Scalar::from_milli(milli).unwrap()), Reservation::Unreserved)
                .unwrap(),
        );
        let back: Resources = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.scalar_milli("mem"), milli);
    }
}
