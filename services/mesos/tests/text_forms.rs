#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The agent flag text forms: `--resources` (text and JSON) and `--attributes`,
//! including bad inputs and the errors they name.

use basalt_mesos::{
    Attribute, Attributes, ParseError, Ranges, ReservationType, Resources, Scalar, Set, Value,
    ValueType,
};

fn scalar(v: f64) -> Scalar {
    Scalar::try_from_f64(v).unwrap()
}

#[test]
fn resources_flag_example() {
    let r = Resources::parse("cpus:4;mem:4096;ports:[31000-32000];disk(slave_public):100").unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r.cpus(), Some(scalar(4.0)));
    assert_eq!(r.mem(), Some(scalar(4096.0)));
    assert_eq!(r.ports(), Some(Ranges::from_range(31000, 32000).unwrap()));
    assert_eq!(r.unreserved().disk(), None);
    let public = r.reserved(Some("slave_public"));
    assert_eq!(public.disk(), Some(scalar(100.0)));
    let disk = public.iter().next().unwrap();
    assert_eq!(disk.reservations.len(), 1);
    assert_eq!(disk.reservations[0].kind, ReservationType::Static);
    assert_eq!(disk.reservations[0].role, "slave_public");
}

#[test]
fn resources_flag_tolerates_spacing_newlines_and_repeats() {
    let r =
        Resources::parse(" cpus : 2 ;\nmem:1024;;cpus:2; ports:[1-2, 3-4 ,10-20];tags:{b, a};\n")
            .unwrap();
    assert_eq!(r.cpus(), Some(scalar(4.0)));
    assert_eq!(r.ports().unwrap().to_string(), "[1-4, 10-20]");
    assert_eq!(
        r.get_set("tags"),
        Some(["a", "b"].into_iter().collect::<Set>())
    );
    assert!(Resources::parse("").unwrap().is_empty());
    // Zero values are dropped.
    assert!(Resources::parse("cpus:0;ports:[]").unwrap().is_empty());
}

#[test]
fn default_role() {
    let r = Resources::parse_with_default_role("cpus:2;mem(*):10;disk(other):5", "r1").unwrap();
    assert_eq!(r.reserved(Some("r1")).cpus(), Some(scalar(2.0)));
    assert_eq!(r.unreserved().mem(), Some(scalar(10.0)));
    assert_eq!(r.reserved(Some("other")).disk(), Some(scalar(5.0)));
    let e = Resources::parse_with_default_role("cpus:1", "/bad").unwrap_err();
    assert!(
        matches!(e, ParseError::Role { ref role, .. } if role == "/bad"),
        "{e:?}"
    );
}

#[test]
fn resources_flag_json_form() {
    let text = r#"[
        {"name":"cpus","type":"SCALAR","scalar":{"value":2}},
        {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31005}]},"role":"slave_public"},
        {"name":"disk","type":"SCALAR","scalar":{"value":2048},"disk":{"source":{"type":"MOUNT","mount":{"root":"/dcos/volume0"}}}}
    ]"#;
    let r = Resources::parse(text).unwrap();
    assert_eq!(r.cpus(), Some(scalar(2.0)));
    assert_eq!(r.reserved(Some("slave_public")).ports().unwrap().count(), 6);
    assert_eq!(
        r.named("disk").iter().next().unwrap().disk_kind(),
        Some(basalt_mesos::DiskKind::Mount)
    );
    // The default role applies to JSON resources without a role.
    let r = Resources::parse_with_default_role(
        r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":2}},{"name":"mem","type":"SCALAR","scalar":{"value":5},"role":"*"}]"#,
        "r1",
    )
    .unwrap();
    assert_eq!(r.reserved(Some("r1")).cpus(), Some(scalar(2.0)));
    assert_eq!(r.unreserved().mem(), Some(scalar(5.0)));
}

/// Each bad token gives `ParseError::Resource` naming the token and the problem.
#[test]
fn resources_flag_bad_inputs() {
    let cases = [
        ("cpus", "cpus", "':'"),
        ("cpus:4:5", "cpus:4:5", "':'"),
        ("mem:1;cpus:abc", "cpus:abc", "not a scalar"),
        ("cpus:1.2.3", "cpus:1.2.3", "not a valid scalar"),
        ("cpus:-1", "cpus:-1", "negative"),
        ("ports:[5-1]", "ports:[5-1]", "begin greater than end"),
        ("ports:[1-2", "ports:[1-2", "ranges must look like"),
        ("ports:[1,2]", "ports:[1,2]", "begin-end"),
        ("ports:[a-2]", "ports:[a-2]", "non-negative integer"),
        ("tags:{a,b", "tags:{a,b", "sets must look like"),
        (
            "disk(slave_public:100",
            "disk(slave_public:100",
            "parentheses",
        ),
        ("disk)r(:100", "disk)r(:100", "parentheses"),
        ("disk(r)x:100", "disk(r)x:100", "after the role"),
        ("(r):1", "(r):1", "name is empty"),
        ("disk(-bad):1", "disk(-bad):1", "'-bad'"),
        ("disk(a b):1", "disk(a b):1", "whitespace"),
        ("gpus:1.5", "gpus:1.5", "whole number"),
        ("cpus:[1-2]", "cpus:[1-2]", "SCALAR"),
        ("ports:5", "ports:5", "RANGES"),
        ("cpus:1e400", "cpus:1e400", "not a scalar"),
        (
            "cpus:99999999999999999",
            "cpus:99999999999999999",
            "too large",
        ),
    ];
    for (input, token, needle) in cases {
        let e = Resources::parse(input).expect_err(input);
        match &e {
            ParseError::Resource { text, reason } => {
                assert_eq!(text, token, "for input {input:?}: {e}");
                assert!(
                    reason.contains(needle) || e.to_string().contains(needle),
                    "for input {input:?}: '{e}' should mention '{needle}'"
                );
            }
            other => panic!("for input {input:?}: expected ParseError::Resource, got {other:?}"),
        }
    }
}

#[test]
fn resources_flag_bad_json() {
    let e = Resources::parse("[{").unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Json {
                what: "resources",
                ..
            }
        ),
        "{e:?}"
    );
    let e = Resources::parse(r#"[{"name":"cpus","type":"SCALAR"}]"#).unwrap_err();
    assert!(
        e.to_string().contains("resource 'cpus'") && e.to_string().contains("'scalar'"),
        "{e}"
    );
    let e =
        Resources::parse(r#"[{"name":"cpus","type":"SCALAR","scalar":{"value":-3}}]"#).unwrap_err();
    assert!(
        matches!(e, ParseError::Resource { .. }) && e.to_string().contains("negative"),
        "{e}"
    );
}

#[test]
fn attributes_flag() {
    let a = Attributes::parse("rack:r1;zone:a;cores:8;ports:[1-10];tags:{ssd,gpu};weight:-2.5")
        .unwrap();
    let types: Vec<_> = a
        .iter()
        .map(|x| (x.name.as_str(), x.value_type()))
        .collect();
    assert_eq!(
        types,
        [
            ("rack", ValueType::Text),
            ("zone", ValueType::Text),
            ("cores", ValueType::Scalar),
            ("ports", ValueType::Ranges),
            ("tags", ValueType::Set),
            ("weight", ValueType::Scalar),
        ]
    );
    assert_eq!(a.get_text("rack"), Some("r1"));
    assert_eq!(a.get("cores").unwrap().as_scalar(), Some(scalar(8.0)));
    assert_eq!(a.get("weight").unwrap().as_scalar(), Some(scalar(-2.5)));
    assert_eq!(
        a.to_string(),
        "rack:r1;zone:a;cores:8;ports:[1-10];tags:{gpu, ssd};weight:-2.5"
    );
    assert_eq!(Attributes::parse(&a.to_string()).unwrap(), a);
    assert_eq!(
        serde_json::Value::Object(a.to_state_model()),
        serde_json::json!({"rack":"r1","zone":"a","cores":8.0,"ports":"[1-10]","tags":"{gpu, ssd}","weight":-2.5})
    );
}

#[test]
fn attribute_value_rules() {
    // Letters make it text, even when a float parser would accept it.
    assert_eq!(
        Attribute::parse("x:1e5").unwrap().value,
        Value::Text("1e5".into())
    );
    assert_eq!(
        Attribute::parse("x:inf").unwrap().value,
        Value::Text("inf".into())
    );
    // Letter-free but not a number: text (Mesos would reject these).
    assert_eq!(
        Attribute::parse("ip:10.0.0.1").unwrap().value,
        Value::Text("10.0.0.1".into())
    );
    assert_eq!(
        Attribute::parse("v:1.2.3").unwrap().value,
        Value::Text("1.2.3".into())
    );
    // Only the first ':' separates the name.
    assert_eq!(
        Attribute::parse("url:http://x:80").unwrap().value,
        Value::Text("http://x:80".into())
    );
    // Spaces are removed like Mesos does.
    assert_eq!(
        Attribute::parse(" os : debian 12 ").unwrap(),
        Attribute::text("os", "debian12")
    );
}

#[test]
fn attributes_flag_bad_inputs() {
    for (input, token, needle) in [
        ("rack", "rack", "name:value"),
        ("rack:r1;zone", "zone", "name:value"),
        (":r1", ":r1", "name is empty"),
        ("x:", "x:", "non-empty"),
        ("ports:[1-", "ports:[1-", "ranges must look like"),
        ("ports:[9-1]", "ports:[9-1]", "begin greater"),
        ("tags:{a", "tags:{a", "sets must look like"),
    ] {
        let e = Attributes::parse(input).expect_err(input);
        match &e {
            ParseError::Attribute { text, .. } => {
                assert_eq!(text, token, "{e}");
                assert!(
                    e.to_string().contains(needle),
                    "'{e}' should mention '{needle}'"
                );
            }
            other => panic!("{input:?}: expected ParseError::Attribute, got {other:?}"),
        }
    }
}
